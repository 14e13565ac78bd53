/*
 * The HTTP backend's error mapping and retries below the store, against a
 * scripted server on loopback: each path names what it answers.
 *   /r/s<NNN>    status NNN, no body
 *   /r/ok        200 "hello"
 *   /r/flaky     503 on the first request, then 200 "again"
 *   /r/big       200 with 64 KiB (over a 4 KiB cap)
 *   /r/short     200 that promises 10 bytes and sends 5
 * It also counts the requests, so retries are seen, and checks that a
 * bearer token goes out as the Authorization header.
 */
#define _GNU_SOURCE
#include "../../remote/remote.h"
#include "check.h"
#include "../loopback.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int port;
static int flaky_seen, requests, authorized;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static void answer(int fd, const char *status, const char *body, size_t n, size_t claim)
{
	char head[256];
	int hl = snprintf(head, sizeof(head),
			  "HTTP/1.1 %s\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n", status,
			  claim);

	if (write(fd, head, (size_t)hl) != hl || (n && write(fd, body, n) != (ssize_t)n))
		return;
}

static void *serve(void *arg)
{
	int ls = *(int *)arg;
	static char big[64 << 10];

	memset(big, 'x', sizeof(big));
	for (;;) {
		char req[8192], path[256] = "";
		size_t got = 0;
		ssize_t n;
		int fd = accept(ls, NULL, NULL);

		if (fd < 0)
			continue;
		while (got < sizeof(req) - 1 &&
		       (n = read(fd, req + got, sizeof(req) - 1 - got)) > 0) {
			got += (size_t)n;
			req[got] = '\0';
			if (strstr(req, "\r\n\r\n"))
				break;
		}
		req[got] = '\0';
		sscanf(req, "%*s %255s", path);
		pthread_mutex_lock(&lock);
		requests++;
		if (strstr(req, "Authorization: Bearer sekrit\r\n"))
			authorized++;
		pthread_mutex_unlock(&lock);
		if (!strncmp(path, "/r/s", 4) && strlen(path) == 7) {
			char st[32];

			snprintf(st, sizeof(st), "%s X", path + 4);
			answer(fd, st, NULL, 0, 0);
		} else if (!strcmp(path, "/r/ok")) {
			answer(fd, "200 OK", "hello", 5, 5);
		} else if (!strcmp(path, "/r/flaky")) {
			pthread_mutex_lock(&lock);
			n = flaky_seen++;
			pthread_mutex_unlock(&lock);
			if (n == 0)
				answer(fd, "503 Busy", NULL, 0, 0);
			else
				answer(fd, "200 OK", "again", 5, 5);
		} else if (!strcmp(path, "/r/big")) {
			answer(fd, "200 OK", big, sizeof(big), sizeof(big));
		} else if (!strcmp(path, "/r/short")) {
			answer(fd, "200 OK", "12345", 5, 10);
		} else {
			answer(fd, "404 Not Found", NULL, 0, 0);
		}
		close(fd);
	}
	return NULL;
}

static int get(struct remote *r, const char *name, struct buf *out, size_t cap)
{
	buf_reset(out);
	return remote_get(r, name, 0, REMOTE_WHOLE, out, cap);
}

int main(void)
{
	static int ls;
	struct remote_config cfg;
	struct remote *r = NULL;
	struct buf out = BUF_INIT;
	char url[64];
	pthread_t th;
	int before;

	ls = loopback_listen(&port);
	if (ls < 0) {
		perror("test_http: a loopback socket");
		return 1;
	}
	pthread_create(&th, NULL, serve, &ls);
	log_quiet = 1;

	memset(&cfg, 0, sizeof(cfg));
	cfg.timeout = 2; /* the retried failures end within it */
	cfg.token = "sekrit";
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/r", port);
	CHECK_EQ(remote_open(url, 0, &cfg, &r), 0);
	if (!r)
		return check_done("http");

	CHECK_EQ(get(r, "ok", &out, 4096), 0);
	CHECK(out.len == 5 && !memcmp(out.p, "hello", 5));
	CHECK(authorized >= 1);
	CHECK_EQ(get(r, "s404", &out, 4096), -ENOENT);
	CHECK_EQ(get(r, "s401", &out, 4096), -EACCES);
	CHECK_EQ(get(r, "s403", &out, 4096), -EACCES);
	CHECK_EQ(get(r, "s413", &out, 4096), -ENOSPC);
	CHECK_EQ(get(r, "s507", &out, 4096), -ENOSPC);
	CHECK_EQ(get(r, "s416", &out, 4096), -EINVAL);
	CHECK_EQ(get(r, "s400", &out, 4096), -EIO); /* not retried */
	CHECK_EQ(remote_exists(r, "ok"), 1);
	CHECK_EQ(remote_exists(r, "missing"), 0);

	/* a 503 is retried; the second answer is the one returned */
	before = requests;
	CHECK_EQ(get(r, "flaky", &out, 4096), 0);
	CHECK(out.len == 5 && !memcmp(out.p, "again", 5));
	CHECK_EQ(requests - before, 2);

	/* a 500 is retried until the deadline, then fails; nothing is kept */
	before = requests;
	CHECK_EQ(get(r, "s500", &out, 4096), -EIO);
	CHECK(requests - before >= 2);
	CHECK_EQ(out.len, 0);

	/* bounded memory: a body over the cap is refused, not kept */
	CHECK_EQ(get(r, "big", &out, 4096), -EFBIG);
	CHECK(out.len <= 4096);
	/* a body shorter than its length is an error after the retries */
	CHECK(get(r, "short", &out, 4096) < 0);
	remote_free(r);

	/* a read remote gets no write token when a read token is set empty */
	cfg.read_token = "";
	cfg.read_token_set = 1;
	CHECK_EQ(remote_open(url, 1, &cfg, &r), 0);
	before = authorized;
	CHECK_EQ(get(r, "ok", &out, 4096), 0);
	CHECK_EQ(authorized, before);
	remote_free(r);

	/* offline: a network remote is not asked at all */
	cfg.offline = 1;
	CHECK_EQ(remote_open(url, 0, &cfg, &r), 0);
	before = requests;
	CHECK(get(r, "ok", &out, 4096) < 0);
	CHECK_EQ(requests, before);
	remote_free(r);
	buf_free(&out);
	return check_done("http");
}
