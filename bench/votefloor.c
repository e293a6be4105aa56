/*
 * bench/votefloor.c: the least work a voting HTTP front can do, as a yardstick for the
 * gateway's CPU per request (bench/gateway.sh --floor).
 *
 * One thread, one epoll set, no parsing beyond what framing needs: for every client
 * connection it opens one kept-alive connection to each of three executors; a request read
 * from the client (GET, no body, not pipelined) is written unchanged to the three, their
 * answers are read to the end of their Content-Length bodies, the bodies are compared, and
 * the first answer is written to the client (502 when the bodies differ). It checks nothing
 * else, builds no head, keeps no statistics: what it spends per request is close to what the
 * kernel charges any front that sends three requests and one answer over loopback TCP.
 *
 * Usage: votefloor LISTEN_PORT PORT1 PORT2 PORT3   (all on 127.0.0.1)
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define K 3
#define BUF 65536

struct conn;
struct end {
	struct conn *c;
	int idx; /* -1: the client; 0..K-1: an executor */
	int fd;
	char buf[BUF];
	size_t len;
	long want; /* bytes of the whole answer once its head is read, else -1 */
	long head; /* bytes of its head, once read */
};
struct conn {
	struct end client, up[K];
	int done; /* answers complete */
	int dead; /* closed; kept allocated, since events of the same batch may still name it */
};

static int ep;
static int ports[K];

static void die(const char *what) {
	perror(what);
	exit(1);
}

static int dial(int port) {
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) < 0) die("connect");
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	return fd;
}

static void watch(struct end *e) {
	struct epoll_event ev = {.events = EPOLLIN, .data.ptr = e};
	if (epoll_ctl(ep, EPOLL_CTL_ADD, e->fd, &ev) < 0) die("epoll_ctl");
}

static void drop(struct conn *c) {
	close(c->client.fd);
	for (int i = 0; i < K; i++) close(c->up[i].fd);
	c->dead = 1;
}

/* frame returns the answer's whole length once its head is in e->buf, or -1. */
static long frame(struct end *e) {
	char *end = memmem(e->buf, e->len, "\r\n\r\n", 4);
	if (!end) return -1;
	long head = end + 4 - e->buf, cl = 0;
	e->head = head;
	for (char *p = e->buf; p < end; p++) {
		if ((p == e->buf || p[-1] == '\n') && strncasecmp(p, "content-length:", 15) == 0) {
			cl = strtol(p + 15, NULL, 10);
			break;
		}
	}
	return head + cl;
}

static void answered(struct conn *c) {
	long b0 = c->up[0].want - c->up[0].head;
	int same = 1;
	for (int i = 1; i < K; i++) {
		struct end *u = &c->up[i];
		if (u->want - u->head != b0 || memcmp(u->buf + u->head, c->up[0].buf + c->up[0].head, b0) != 0) same = 0;
	}
	if (same) {
		if (write(c->client.fd, c->up[0].buf, c->up[0].want) != c->up[0].want) die("write client");
	} else {
		static const char bad[] = "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n";
		if (write(c->client.fd, bad, sizeof bad - 1) < 0) die("write client");
	}
	for (int i = 0; i < K; i++) c->up[i].len = 0, c->up[i].want = -1;
	c->done = 0;
}

static void readable(struct end *e) {
	struct conn *c = e->c;
	if (c->dead) return;
	ssize_t n = read(e->fd, e->buf + e->len, BUF - e->len);
	if (n <= 0) {
		if (n < 0 && errno == EAGAIN) return;
		drop(c);
		return;
	}
	e->len += n;
	if (e->idx < 0) {
		if (!memmem(e->buf, e->len, "\r\n\r\n", 4)) return;
		for (int i = 0; i < K; i++)
			if (write(c->up[i].fd, e->buf, e->len) != (ssize_t)e->len) die("write executor");
		e->len = 0;
		return;
	}
	if (e->want < 0) e->want = frame(e);
	if (e->want >= 0 && (long)e->len >= e->want && ++c->done == K) answered(c);
}

int main(int argc, char **argv) {
	if (argc != 2 + K) {
		fprintf(stderr, "usage: votefloor LISTEN_PORT PORT1 PORT2 PORT3\n");
		return 2;
	}
	for (int i = 0; i < K; i++) ports[i] = atoi(argv[2 + i]);
	int ls = socket(AF_INET, SOCK_STREAM, 0), one = 1;
	setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[1]))};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(ls, (struct sockaddr *)&a, sizeof a) < 0 || listen(ls, 1024) < 0) die("listen");
	ep = epoll_create1(0);
	struct end lend = {.idx = -2, .fd = ls};
	struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &lend};
	epoll_ctl(ep, EPOLL_CTL_ADD, ls, &ev);
	struct epoll_event evs[256];
	for (;;) {
		int n = epoll_wait(ep, evs, 256, -1);
		for (int i = 0; i < n; i++) {
			struct end *e = evs[i].data.ptr;
			if (e->idx == -2) {
				int fd = accept4(ls, NULL, NULL, SOCK_NONBLOCK);
				if (fd < 0) continue;
				setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
				struct conn *c = calloc(1, sizeof *c);
				c->client = (struct end){.c = c, .idx = -1, .fd = fd, .want = -1};
				watch(&c->client);
				for (int j = 0; j < K; j++) {
					c->up[j].c = c, c->up[j].idx = j, c->up[j].fd = dial(ports[j]), c->up[j].want = -1;
					watch(&c->up[j]);
				}
				continue;
			}
			readable(e);
		}
	}
}
