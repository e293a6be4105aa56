/*
 * bench/dnsfloor.c: the least work a voting DNS front can do over UDP, as a yardstick for
 * the DNS front's CPU per query (bench/dns.sh runs it as "vote-floor").
 *
 * One thread, one epoll set, no DNS parsing beyond the message ID: a query read from a
 * client is sent to three servers under an ID of the front's own (one connected socket per
 * server), the three answers are compared byte for byte after their IDs, and the first is
 * sent to the client under the client's ID. Heterogeneous servers' answers differ in bytes
 * that a real front normalizes (flags, compression, EDNS, TTLs), which this one cannot parse:
 * it only counts the differences (printed at exit: SIGTERM) and answers all the same.
 *
 * It reads and writes in batches, as the Go front does: each socket is read with recvmmsg
 * (up to B datagrams a call); each batch of queries goes to each server in one sendmmsg, and
 * the answers decided during one epoll wakeup go to the clients in one sendmmsg at its end.
 * A sendmmsg entry is a run of datagrams of one size to one destination (the last may be
 * shorter) sent with UDP segmentation offload (a UDP_SEGMENT control message), so the
 * kernel routes it once; a socket whose segmented send is refused sends one datagram per
 * entry from then on. What it spends per query is close to the least the kernel charges any
 * front that sends three queries and one answer over loopback UDP.
 *
 * Usage: dnsfloor LISTEN_PORT PORT1 PORT2 PORT3   (all on 127.0.0.1)
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/udp.h>
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
#define B 64                  /* datagrams per recvmmsg */
#define READS 4               /* recvmmsg calls per socket per wakeup, at most */
#define OUT (K * READS * B)   /* answers decided in one wakeup, at most */
#define MAX_SEGMENTS 64       /* datagrams in one segmented entry, at most */
#define MAX_SEGMENTED 60000   /* bytes in one segmented entry, at most */
#define MAX_SEGMENT 1200      /* a longer datagram is sent alone */

struct pending {
	struct sockaddr_in client;
	uint16_t client_id;
	int got;
	int differs;
	ssize_t len;
	unsigned char first[MSG];
};

/* A datagram to send: its bytes, and its destination (NULL over a connected socket). */
struct out {
	unsigned char *b;
	int len;
	struct sockaddr_in *to;
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

/* samedest: whether two datagrams go to one destination. */
static int samedest(const struct out *a, const struct out *b) {
	if (!a->to || !b->to) return a->to == b->to;
	return a->to->sin_addr.s_addr == b->to->sin_addr.s_addr && a->to->sin_port == b->to->sin_port;
}

/* bydest_longest: the order of a batch: by destination, then by size, longest first. */
static int bydest_longest(const void *x, const void *y) {
	const struct out *a = x, *b = y;
	if (a->to && b->to) {
		uint64_t da = (uint64_t)a->to->sin_addr.s_addr << 16 | a->to->sin_port;
		uint64_t db = (uint64_t)b->to->sin_addr.s_addr << 16 | b->to->sin_port;
		if (da != db) return da < db ? -1 : 1;
	}
	return b->len - a->len;
}

/*
 * sendbatch: sends the n datagrams of o over fd with one sendmmsg (more if the kernel takes
 * fewer entries). While *segment holds, o is sorted and each entry is a run: datagrams of
 * one size to one destination, then at most one shorter one, at most MAX_SEGMENTS and
 * MAX_SEGMENTED bytes, with a UDP_SEGMENT control message of their size (none for a run of
 * one; a datagram above MAX_SEGMENT is one alone). A run the kernel refuses (EINVAL, EIO)
 * clears *segment, and the rest is sent again one datagram per entry. Other failures drop
 * the entry, as a failed sendto would.
 */
static void sendbatch(int fd, struct out *o, int n, int *segment) {
	static struct mmsghdr mm[OUT];
	static struct iovec iov[OUT];
	static int start[OUT]; /* the first datagram of each entry */
	static union {
		char buf[CMSG_SPACE(sizeof(uint16_t))];
		struct cmsghdr align;
	} ctl[OUT];
	int entries = 0;
	if (n > 1 && *segment) qsort(o, n, sizeof *o, bydest_longest);
	for (int i = 0; i < n;) {
		int j = i + 1, bytes = o[i].len;
		if (*segment && o[i].len <= MAX_SEGMENT) {
			while (j < n && j - i < MAX_SEGMENTS && samedest(&o[i], &o[j]) && bytes + o[j].len <= MAX_SEGMENTED) {
				bytes += o[j].len;
				if (o[j++].len != o[i].len) break; /* a shorter one ends the run */
			}
		}
		struct msghdr *h = &mm[entries].msg_hdr;
		memset(h, 0, sizeof *h);
		for (int k = i; k < j; k++) iov[k] = (struct iovec){.iov_base = o[k].b, .iov_len = o[k].len};
		h->msg_iov = &iov[i], h->msg_iovlen = j - i;
		if (o[i].to) h->msg_name = o[i].to, h->msg_namelen = sizeof *o[i].to;
		if (j - i > 1) {
			struct cmsghdr *c = &ctl[entries].align;
			h->msg_control = ctl[entries].buf, h->msg_controllen = sizeof ctl[entries].buf;
			c->cmsg_level = SOL_UDP, c->cmsg_type = UDP_SEGMENT, c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
			uint16_t size = o[i].len;
			memcpy(CMSG_DATA(c), &size, sizeof size);
		}
		start[entries++] = i;
		i = j;
	}
	for (int e = 0; e < entries;) {
		int r = sendmmsg(fd, mm + e, entries - e, 0);
		if (r > 0) {
			e += r;
			continue;
		}
		if (mm[e].msg_hdr.msg_controllen && (errno == EINVAL || errno == EIO)) {
			fprintf(stderr, "dnsfloor: segmented send refused (%s): one datagram at a time from now on\n", strerror(errno));
			*segment = 0;
			sendbatch(fd, o + start[e], n - start[e], segment); /* mm is not read again */
			return;
		}
		e++; /* drop it */
	}
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
	int segment[K + 1] = {1, 1, 1, 1}; /* per socket (up[0..K-1], front): may it segment */
	unsigned long queries = 0, differing = 0;
	uint16_t next = 0;
	static unsigned char buf[B][MSG];
	static struct sockaddr_in from[B];
	static struct mmsghdr rm[B];
	static struct iovec riov[B];
	static struct out asks[B], replies[OUT];
	struct epoll_event evs[64];
	for (int i = 0; i < B; i++) {
		riov[i] = (struct iovec){.iov_base = buf[i], .iov_len = MSG};
		rm[i].msg_hdr = (struct msghdr){.msg_iov = &riov[i], .msg_iovlen = 1};
	}
	while (!stop) {
		int n = epoll_wait(ep, evs, 64, -1), nreplies = 0;
		for (int e = 0; e < n; e++) {
			unsigned src = evs[e].data.u32;
			/* Read until a batch comes short (the socket is empty: epoll says when it is not),
			 * at most READS batches, so that one wakeup decides at most OUT answers. */
			for (int r = 0, got = B; r < READS && got == B; r++) {
				for (int i = 0; i < B; i++) {
					rm[i].msg_hdr.msg_name = src == K ? &from[i] : NULL;
					rm[i].msg_hdr.msg_namelen = src == K ? sizeof from[i] : 0;
				}
				got = recvmmsg(src == K ? front : up[src], rm, B, 0, NULL);
				if (got <= 0) break;
				int nasks = 0;
				for (int d = 0; d < got; d++) {
					unsigned char *b = buf[d];
					ssize_t m = rm[d].msg_len;
					if (m < 12) continue;
					if (src == K) {
						struct pending *p = &table[++next];
						p->client = from[d], p->client_id = (b[0] << 8) | b[1], p->got = 0, p->differs = 0;
						b[0] = next >> 8, b[1] = next & 0xff;
						asks[nasks++] = (struct out){.b = b, .len = m};
						continue;
					}
					struct pending *p = &table[(b[0] << 8) | b[1]];
					if (p->got == 0) {
						memcpy(p->first, b, m);
						p->len = m;
					} else if (m != p->len || memcmp(b + 2, p->first + 2, m - 2) != 0) {
						p->differs = 1;
					}
					if (++p->got == K) {
						p->first[0] = p->client_id >> 8, p->first[1] = p->client_id & 0xff;
						queries++, differing += p->differs;
						replies[nreplies++] = (struct out){.b = p->first, .len = p->len, .to = &p->client};
					}
				}
				for (int i = 0; i < K && nasks > 0; i++) sendbatch(up[i], asks, nasks, &segment[i]); /* the batch to each server */
			}
		}
		if (nreplies > 0) sendbatch(front, replies, nreplies, &segment[K]);
	}
	fprintf(stderr, "dnsfloor: %lu queries answered, %lu with answers that differ in bytes\n", queries, differing);
	return 0;
}
