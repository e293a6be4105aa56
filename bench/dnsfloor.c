/*
 * bench/dnsfloor.c: the least work a voting DNS front can do over UDP, as a yardstick for
 * the DNS front's CPU per query (bench/dns.sh runs it as "vote-floor").
 *
 * One thread, one epoll set, no DNS parsing beyond the message ID: a query read from a
 * client is sent to three servers under an ID of the front's own (one connected socket per
 * server), the three answers are compared byte for byte after their IDs, and the first is
 * sent to the client under the client's ID. Heterogeneous servers' answers differ in bytes
 * that a real front normalizes (flags, compression, EDNS, TTLs), which this one cannot parse:
 * it only counts the differences (printed at exit: SIGTERM) and answers all the same. What
 * it spends per query is close to what the kernel charges any front that sends three
 * queries and one answer over loopback UDP.
 *
 * Usage: dnsfloor LISTEN_PORT PORT1 PORT2 PORT3   (all on 127.0.0.1)
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <signal.h>
#include <unistd.h>

#define K 3
#define MSG 4096

struct pending {
	struct sockaddr_in client;
	uint16_t client_id;
	int got;
	int differs;
	ssize_t len;
	unsigned char first[MSG];
};

static struct pending table[65536]; /* by the front's own ID */
static volatile sig_atomic_t stop;
static void onterm(int sig) { (void)sig; stop = 1; }

static void die(const char *what) {
	perror(what);
	exit(1);
}

static int udp(int port, int do_connect) {
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0) die("socket");
	if (do_connect ? connect(fd, (struct sockaddr *)&a, sizeof a) : bind(fd, (struct sockaddr *)&a, sizeof a)) die("bind/connect");
	return fd;
}

int main(int argc, char **argv) {
	if (argc != 2 + K) {
		fprintf(stderr, "usage: dnsfloor LISTEN_PORT PORT1 PORT2 PORT3\n");
		return 2;
	}
	int front = udp(atoi(argv[1]), 0), up[K];
	int ep = epoll_create1(0);
	struct epoll_event ev = {.events = EPOLLIN, .data.u32 = K};
	epoll_ctl(ep, EPOLL_CTL_ADD, front, &ev);
	for (int i = 0; i < K; i++) {
		up[i] = udp(atoi(argv[2 + i]), 1);
		ev.data.u32 = i;
		epoll_ctl(ep, EPOLL_CTL_ADD, up[i], &ev);
	}
	signal(SIGTERM, onterm);
	unsigned long queries = 0, differing = 0;
	uint16_t next = 0;
	unsigned char buf[MSG];
	struct epoll_event evs[64];
	while (!stop) {
		int n = epoll_wait(ep, evs, 64, -1);
		for (int e = 0; e < n; e++) {
			unsigned src = evs[e].data.u32;
			for (;;) { /* drain the socket */
				struct sockaddr_in from;
				socklen_t fl = sizeof from;
				ssize_t m = src == K ? recvfrom(front, buf, sizeof buf, 0, (struct sockaddr *)&from, &fl)
				                     : recv(up[src], buf, sizeof buf, 0);
				if (m < 0) break;
				if (m < 12) continue;
				if (src == K) {
					struct pending *p = &table[++next];
					p->client = from, p->client_id = (buf[0] << 8) | buf[1], p->got = 0, p->differs = 0;
					buf[0] = next >> 8, buf[1] = next & 0xff;
					for (int i = 0; i < K; i++) send(up[i], buf, m, 0);
					continue;
				}
				struct pending *p = &table[(buf[0] << 8) | buf[1]];
				if (p->got == 0) {
					memcpy(p->first, buf, m);
					p->len = m;
				} else if (m != p->len || memcmp(buf + 2, p->first + 2, m - 2) != 0) {
					p->differs = 1;
				}
				if (++p->got == K) {
					p->first[0] = p->client_id >> 8, p->first[1] = p->client_id & 0xff;
					queries++, differing += p->differs;
					sendto(front, p->first, p->len, 0, (struct sockaddr *)&p->client, sizeof p->client);
				}
			}
		}
	}
	fprintf(stderr, "dnsfloor: %lu queries answered, %lu with answers that differ in bytes\n", queries, differing);
	return 0;
}
