/*
 * The HTTP response path: a loopback server answers each request with the
 * input's bytes (status line, headers, body), and the remote GETs an
 * object, a range of one, and HEADs one through libcurl and stashfs's body
 * and error handling.  What may not happen: a crash, a leak, a body past
 * its cap, a range answer longer than the range.
 */
#define _GNU_SOURCE
#include "fuzz.h"
#include "remote.h"
#include "../loopback.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static uint8_t *answer;
static size_t answer_len;
static int port;
static struct remote_config cfg;
static char endpoint[64];

static void *serve(void *arg)
{
	int ls = *(int *)arg;

	for (;;) {
		char req[16384];
		size_t got = 0;
		int fd = accept(ls, NULL, NULL);

		if (fd < 0)
			continue;
		while (got < sizeof(req) - 1) {
			ssize_t n = read(fd, req + got, sizeof(req) - 1 - got);

			if (n <= 0)
				break;
			got += (size_t)n;
			req[got] = 0;
			if (strstr(req, "\r\n\r\n"))
				break;
		}
		pthread_mutex_lock(&lock);
		if (answer_len && write(fd, answer, answer_len) < 0) {
			/* the client went away */
		}
		pthread_mutex_unlock(&lock);
		shutdown(fd, SHUT_WR);
		close(fd);
	}
	return NULL;
}

static void start(void)
{
	static int ls;
	pthread_t th;

	ls = loopback_listen(&port);
	if (ls < 0)
		abort();
	pthread_create(&th, NULL, serve, &ls);
	/* a failure is retried while the budget lasts: 0.1 s leaves one try */
	cfg.timeout = 0.1;
	snprintf(endpoint, sizeof(endpoint), "http://127.0.0.1:%d", port);
	cfg.endpoint = endpoint;
	cfg.key_id = "k";
	cfg.secret = "s";
	log_fd = -1;
}

/* What a listing may hand on: a name of plain characters, no '/'. */
static int listed(const char *name, uint64_t size, int64_t mtime, void *arg)
{
	size_t n = strlen(name);

	(void)size;
	(void)mtime;
	(void)arg;
	if (n == 0 || n > 255 || strchr(name, '/') || strchr(name, '"'))
		abort();
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int started;
	struct remote *r = NULL;
	struct buf out = BUF_INIT;
	char url[64];

	if (!started) {
		start();
		started = 1;
	}
	pthread_mutex_lock(&lock);
	free(answer);
	answer = malloc(size ? size : 1);
	memcpy(answer, data, size);
	answer_len = size;
	pthread_mutex_unlock(&lock);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/c", port);
	if (remote_open(url, 1, &cfg, &r))
		abort();
	if (remote_get(r, "keys/k", 0, REMOTE_WHOLE, &out, 4096) == 0 && out.len > 4096)
		abort();
	buf_reset(&out);
	if (remote_get(r, "packs/p", 10, 20, &out, 4096) == 0 && out.len > 20)
		abort();
	remote_exists(r, "packs/p");
	buf_free(&out);
	remote_free(r);
	/* a directory listing, as nginx's autoindex JSON and as S3's XML */
	if (remote_open(url, 0, &cfg, &r))
		abort();
	(void)remote_list(r, "packs", listed, NULL); /* any answer; listed() checks the names */
	remote_free(r);
	snprintf(url, sizeof(url), "s3://b/p");
	if (remote_open(url, 0, &cfg, &r))
		abort();
	(void)remote_list(r, "packs", listed, NULL); /* any answer; listed() checks the names */
	remote_free(r);
	return 0;
}
