/*
 * http:// and https:// remotes (any server with GET, PUT and HEAD: nginx
 * WebDAV, bazel-remote-style caches) and s3://bucket/prefix (any
 * S3-compatible store, SigV4 signed by libcurl), on libcurl.
 *
 * Each request borrows an easy handle from a small pool, so concurrent
 * callers (save's and restore's worker threads, the mount's readers) run
 * in parallel and each handle keeps its connections alive for reuse.
 *
 * A command that hands the next requests to another process (the mount's
 * daemon) can have connections opened ahead (remote_preconnect) to the
 * address its own requests went to; the other process adopts them and
 * curl takes one, still open and to the same address, instead of
 * connecting (CURLOPT_OPENSOCKETFUNCTION, CURL_SOCKOPT_ALREADY_CONNECTED).
 *
 * Every operation has a deadline (the remote timeout, default 60 s): a
 * connect timeout, a low-speed abort for stalled bodies, and retries with
 * backoff on 5xx, 429, resets, timeouts and short bodies, all inside it.
 * CURLcode and HTTP status become errno here: 404 -> ENOENT, 401/403 ->
 * EACCES, timeouts -> ETIMEDOUT, the rest -> EIO; the detail is logged with
 * the URL's secrets removed.
 */
#define _GNU_SOURCE
#include "remote.h"
#include "../store/cas.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define POOL_MAX 16
#define MAX_TRIES 5
#define ERR_BODY_MAX 512 /* bytes of an error answer kept to name it */
#define EXPECT_WAIT_MS 200 /* S3 PUTs over 1 MiB: the longest wait for a 100 Continue */
#define AHEAD_MAX 8
#define AHEAD_TTL 5.0 /* seconds an adopted, unused connection is worth taking */

struct http_remote {
	char *base; /* URL prefix ending without '/' */
	char *bucket_url; /* S3: the bucket's URL, for listings */
	char *key_prefix; /* S3: what names are below in the bucket ("" or "p/") */
	char *shown; /* for messages: no credentials */
	int s3;
	char *sigv4; /* "aws:amz:REGION:s3" */
	char *userpwd; /* S3 key:secret (never logged) */
	struct curl_slist *auth_headers; /* bearer token, S3 session token */
	double timeout; /* seconds for one operation, retries included */
	int insecure;
	int https; /* the base URL is https: nothing goes over plain http */
	int etag_bare; /* atomic: the server matches If-Match without quotes */
	pthread_mutex_t lock;
	CURL *pool[POOL_MAX];
	int npool;
	/* under lock: where the first request went (for remote_preconnect) */
	struct sockaddr_storage peer;
	socklen_t peer_len;
	/* under lock: adopted sockets (remote_adopt), for new connections */
	int ahead[AHEAD_MAX];
	int nahead;
	int adopting;
	double ahead_at;
	uint64_t *ahead_used;
};

/* The adopted socket curl is opening on this thread, till its sockopt call. */
static __thread int ahead_fd = -1;

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;

static void curl_init_once(void)
{
	curl_global_init(CURL_GLOBAL_DEFAULT);
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static CURL *take(struct http_remote *h)
{
	CURL *c = NULL;

	pthread_mutex_lock(&h->lock);
	if (h->npool)
		c = h->pool[--h->npool];
	pthread_mutex_unlock(&h->lock);
	if (!c)
		c = curl_easy_init();
	else
		curl_easy_reset(c);
	return c;
}

static void give(struct http_remote *h, CURL *c)
{
	pthread_mutex_lock(&h->lock);
	if (h->npool < POOL_MAX) {
		h->pool[h->npool++] = c;
		c = NULL;
	}
	pthread_mutex_unlock(&h->lock);
	if (c)
		curl_easy_cleanup(c);
}

struct request;
static size_t on_err_body(char *p, size_t sz, size_t n, void *arg);

struct sink {
	struct request *rq; /* an error answer's body goes to rq->err */
	struct buf *out;
	size_t start;
	size_t cap;
	int too_big;
	CURL *c;
	const struct remote_progress *pr; /* NULL: nobody to tell */
	int ranged; /* Range asked for: only a 206's body is the range */
	uint64_t off, want; /* the range (want REMOTE_WHOLE: to the end) */
	uint64_t seen; /* bytes of a whole-object answer gone by */
	int done; /* the range is in: the rest of a whole-object answer is not read */
};

static size_t on_body(char *p, size_t sz, size_t n, void *arg)
{
	struct sink *s = arg;
	size_t len = sz * n;
	long status = 0;

	curl_easy_getinfo(s->c, CURLINFO_RESPONSE_CODE, &status);
	if (status >= 400) /* not the object: kept only to name the error */
		return on_err_body(p, sz, n, s->rq);
	if (s->ranged && status != 206) {
		/*
		 * The server ignored Range and sends the whole object: keep
		 * only the range as it streams by, and stop once it is in, so
		 * memory and time are the range's, whatever the object's size.
		 */
		uint64_t a = s->seen, end = s->want == REMOTE_WHOLE || s->off + s->want < s->off
						    ? UINT64_MAX
						    : s->off + s->want;
		uint64_t lo = a > s->off ? a : s->off, hi = a + len < end ? a + len : end;

		s->seen += len;
		if (hi > lo) {
			if (s->out->len - s->start + (hi - lo) > s->cap) {
				s->too_big = 1;
				return 0;
			}
			if (buf_append(s->out, p + (lo - a), (size_t)(hi - lo)))
				return 0;
			if (s->pr)
				s->pr->arrived(s->pr->arg, s->out->p + s->start,
					       s->out->len - s->start);
		}
		if (s->seen >= end) {
			s->done = 1;
			return 0;
		}
		return len;
	}
	if (s->out->len - s->start + len > s->cap) {
		s->too_big = 1;
		return 0;
	}
	if (buf_append(s->out, p, len))
		return 0;
	if (s->pr && (s->ranged || status == 200))
		s->pr->arrived(s->pr->arg, s->out->p + s->start, s->out->len - s->start);
	return len;
}

static void sha256_hex(const void *p, size_t n, char *hex)
{
	struct cas_id id;

	cas_hash(p, n, &id);
	cas_id_hex(&id, hex);
}

static int file_sha256_hex(const char *path, char *hex)
{
	struct cas_id id;
	int fd = open(path, O_RDONLY | O_CLOEXEC), rc;

	if (fd < 0)
		return -errno;
	rc = cas_hash_fd(fd, &id);
	close(fd);
	if (!rc)
		cas_id_hex(&id, hex);
	return rc;
}

enum method { M_GET, M_HEAD, M_PUT, M_DELETE };

struct request {
	enum method m;
	const char *name;
	const char *url; /* NULL: base/name (a listing's URL, with its query) */
	uint64_t off, len; /* GET range; len REMOTE_WHOLE: all */
	struct buf *out; /* GET body */
	size_t cap;
	const struct remote_progress *pr; /* GET: told as the body arrives */
	const void *body; /* PUT from memory */
	size_t body_len;
	const char *path; /* PUT from a file */
	char payload_sha[65]; /* for S3 */
	char err[ERR_BODY_MAX]; /* the start of the last error answer's body */
	char *etag; /* GET: the answer's ETag goes here (ETAG_MAX), if not NULL */
	const char *cond; /* PUT: an If-Match or If-None-Match header line */
	size_t err_len;
};

/* An error answer's body (or a PUT's answer): its start kept only to name the error. */
static size_t on_err_body(char *p, size_t sz, size_t n, void *arg)
{
	struct request *rq = arg;
	size_t len = sz * n, take = sizeof(rq->err) - 1 - rq->err_len;

	if (take > len)
		take = len;
	memcpy(rq->err + rq->err_len, p, take);
	rq->err_len += take;
	rq->err[rq->err_len] = 0;
	return len;
}

/*
 * The error an S3-style XML body names (<Code>SignatureDoesNotMatch</Code>),
 * printable characters only, into out; "" when there is none.
 */
static void err_code(const char *body, size_t n, char *out, size_t on)
{
	const char *a = memmem(body, n, "<Code>", 6), *b;
	size_t i, k = 0;

	out[0] = 0;
	if (!a)
		return;
	a += 6;
	b = memmem(a, n - (size_t)(a - body), "</Code>", 7);
	if (!b)
		return;
	for (i = 0; a + i < b && k + 1 < on; i++)
		if (a[i] > ' ' && a[i] < 127)
			out[k++] = a[i];
	out[k] = 0;
}

struct upload {
	const uint8_t *p;
	size_t n, pos;
	FILE *f;
};

static size_t on_upload(char *dst, size_t sz, size_t n, void *arg)
{
	struct upload *u = arg;
	size_t want = sz * n;

	if (u->f)
		return fread(dst, 1, want, u->f);
	if (want > u->n - u->pos)
		want = u->n - u->pos;
	memcpy(dst, u->p + u->pos, want);
	u->pos += want;
	return want;
}

/* curl rewinds an upload when it must resend it on a fresh connection */
static int on_seek(void *arg, curl_off_t off, int origin)
{
	struct upload *u = arg;

	if (origin != SEEK_SET || off < 0)
		return CURL_SEEKFUNC_CANTSEEK;
	if (u->f)
		return fseeko(u->f, (off_t)off, SEEK_SET) == 0 ? CURL_SEEKFUNC_OK
							       : CURL_SEEKFUNC_FAIL;
	if ((size_t)off > u->n)
		return CURL_SEEKFUNC_FAIL;
	u->pos = (size_t)off;
	return CURL_SEEKFUNC_OK;
}

static int retryable(CURLcode cc, long status)
{
	switch (cc) {
	case CURLE_OK: return status >= 500 || status == 429 || status == 408;
	case CURLE_COULDNT_CONNECT:
	case CURLE_OPERATION_TIMEDOUT:
	case CURLE_RECV_ERROR:
	case CURLE_SEND_ERROR:
	case CURLE_PARTIAL_FILE:
	case CURLE_GOT_NOTHING:
	case CURLE_HTTP2:
	case CURLE_HTTP2_STREAM:
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_SEND_FAIL_REWIND: return 1;
	default: return 0;
	}
}

/* Remember the address c's connection went to (the server, or a proxy). */
static void note_peer(struct http_remote *h, CURL *c)
{
	struct sockaddr_storage sa;
	socklen_t len = sizeof(sa);
	curl_socket_t s = CURL_SOCKET_BAD;

	if (curl_easy_getinfo(c, CURLINFO_ACTIVESOCKET, &s) != CURLE_OK || s == CURL_SOCKET_BAD ||
	    getpeername(s, (struct sockaddr *)&sa, &len) != 0 ||
	    (sa.ss_family != AF_INET && sa.ss_family != AF_INET6))
		return;
	pthread_mutex_lock(&h->lock);
	if (!h->peer_len) {
		memcpy(&h->peer, &sa, len);
		h->peer_len = len;
	}
	pthread_mutex_unlock(&h->lock);
}

static int same_peer(const struct sockaddr *a, const struct sockaddr *b)
{
	if (a->sa_family != b->sa_family)
		return 0;
	if (a->sa_family == AF_INET) {
		const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;

		return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
	}
	if (a->sa_family == AF_INET6) {
		const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;

		return x->sin6_port == y->sin6_port &&
		       !memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(x->sin6_addr)) &&
		       x->sin6_scope_id == y->sin6_scope_id;
	}
	return 0;
}

/*
 * An adopted socket connected to addr, alive and unused, or -1.  One that
 * failed, was closed by the server or got too old is closed on the way.
 */
static int take_ahead(struct http_remote *h, const struct sockaddr *addr)
{
	int i, fd = -1;

	pthread_mutex_lock(&h->lock);
	for (i = 0; i < h->nahead;) {
		struct sockaddr_storage p;
		socklen_t len = sizeof(p);
		struct pollfd pf = { h->ahead[i], POLLIN | POLLRDHUP, 0 };
		int dead = now_s() - h->ahead_at > AHEAD_TTL ||
			   getpeername(pf.fd, (struct sockaddr *)&p, &len) != 0 ||
			   poll(&pf, 1, 0) != 0;

		if (dead || same_peer((struct sockaddr *)&p, addr)) {
			if (dead)
				close(h->ahead[i]);
			else
				fd = h->ahead[i];
			h->ahead[i] = h->ahead[--h->nahead];
			if (fd >= 0)
				break;
			continue;
		}
		i++;
	}
	pthread_mutex_unlock(&h->lock);
	if (fd >= 0 && h->ahead_used)
		__atomic_add_fetch(h->ahead_used, 1, __ATOMIC_RELAXED);
	return fd;
}

static curl_socket_t open_sock(void *arg, curlsocktype purpose, struct curl_sockaddr *a)
{
	int fd = purpose == CURLSOCKTYPE_IPCXN ? take_ahead(arg, &a->addr) : -1;

	ahead_fd = fd;
	if (fd >= 0)
		return fd;
	return socket(a->family, a->socktype, a->protocol);
}

static int sock_opt(void *arg, curl_socket_t fd, curlsocktype purpose)
{
	(void)arg;
	(void)purpose;
	if (fd < 0 || fd != ahead_fd)
		return CURL_SOCKOPT_OK;
	ahead_fd = -1;
	return CURL_SOCKOPT_ALREADY_CONNECTED;
}

#define ETAG_MAX 256

/* A header line of a GET whose ETag is wanted. */
static size_t on_header(char *p, size_t sz, size_t n, void *arg)
{
	struct request *rq = arg;
	size_t len = sz * n, k;

	if (len > 5 && !strncasecmp(p, "etag:", 5)) {
		const char *v = p + 5, *end = p + len;

		while (v < end && (*v == ' ' || *v == '\t'))
			v++;
		while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' '))
			end--;
		k = (size_t)(end - v) < ETAG_MAX - 1 ? (size_t)(end - v) : 0;
		for (size_t i = 0; i < k; i++)
			if ((unsigned char)v[i] < 0x20 || (unsigned char)v[i] > 0x7e)
				k = 0; /* not a header value to send back */
		memcpy(rq->etag, v, k);
		rq->etag[k] = '\0';
	}
	return len;
}

static int one_try(struct http_remote *h, struct request *rq, double deadline, long *status,
		   CURLcode *ccout, int *too_big, int *short_body)
{
	char url[8192], range[64], hdr[128];
	struct curl_slist *hl = NULL, *it;
	struct sink sink = {
		rq, rq->out, rq->out ? rq->out->len : 0, rq->cap, 0, NULL, NULL, 0, 0, 0, 0, 0
	};
	struct upload up = { NULL, 0, 0, NULL };
	double left = deadline - now_s();
	CURLcode cc;
	CURL *c;
	int rc = 0;

	if (left <= 0.05)
		return -ETIMEDOUT;
	c = take(h);
	if (!c)
		return -ENOMEM;
	sink.c = c;
	sink.pr = rq->pr;
	sink.ranged = rq->off || rq->len != REMOTE_WHOLE;
	sink.off = rq->off;
	sink.want = rq->len;
	if (rq->url)
		snprintf(url, sizeof(url), "%s", rq->url);
	else
		snprintf(url, sizeof(url), "%s/%s", h->base, rq->name);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)(left * 1000));
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)(left < 10 ? left * 1000 : 10000));
	/* a body that stalls (under 1 kB/s for 10 s, or a fifth of the budget) fails */
	curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1024L);
	curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME,
			 (long)(h->timeout / 5 < 10 ? h->timeout / 5 + 1 : 10));
	curl_easy_setopt(c, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
	curl_easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L);
	if (__atomic_load_n(&h->adopting, __ATOMIC_RELAXED)) {
		curl_easy_setopt(c, CURLOPT_OPENSOCKETFUNCTION, open_sock);
		curl_easy_setopt(c, CURLOPT_OPENSOCKETDATA, h);
		curl_easy_setopt(c, CURLOPT_SOCKOPTFUNCTION, sock_opt);
		curl_easy_setopt(c, CURLOPT_SOCKOPTDATA, h);
	}
	/*
	 * Only http(s), and never from https down to http.  No redirect at
	 * all for a request that carries credentials of its own (S3's
	 * signature and session token, STASHFS_TOKEN): curl would carry a
	 * custom header to whatever host the server names.  Plain requests
	 * follow (a server may send them to a CDN); curl sends a URL's or
	 * netrc's user and password only to the host they were given for.
	 */
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, h->https ? "https" : "http,https");
	curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, h->https ? "https" : "http,https");
	if (!h->s3 && !h->auth_headers) {
		curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
		curl_easy_setopt(c, CURLOPT_MAXREDIRS, 5L);
	}
	curl_easy_setopt(c, CURLOPT_NETRC, (long)CURL_NETRC_OPTIONAL);
	if (getenv("NETRC"))
		curl_easy_setopt(c, CURLOPT_NETRC_FILE, getenv("NETRC"));
	if (h->insecure) {
		curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 0L);
		curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 0L);
	}
	if (getenv("STASHFS_CA_BUNDLE"))
		curl_easy_setopt(c, CURLOPT_CAINFO, getenv("STASHFS_CA_BUNDLE"));
	if (getenv("STASHFS_CLIENT_CERT"))
		curl_easy_setopt(c, CURLOPT_SSLCERT, getenv("STASHFS_CLIENT_CERT"));
	if (getenv("STASHFS_CLIENT_KEY"))
		curl_easy_setopt(c, CURLOPT_SSLKEY, getenv("STASHFS_CLIENT_KEY"));
	for (it = h->auth_headers; it; it = it->next)
		hl = curl_slist_append(hl, it->data);
	if (h->s3) {
		curl_easy_setopt(c, CURLOPT_AWS_SIGV4, h->sigv4);
		curl_easy_setopt(c, CURLOPT_USERPWD, h->userpwd);
		snprintf(hdr, sizeof(hdr), "x-amz-content-sha256: %s", rq->payload_sha);
		hl = curl_slist_append(hl, hdr);
	}
	switch (rq->m) {
	case M_GET:
		if (rq->off || rq->len != REMOTE_WHOLE) {
			if (rq->len == REMOTE_WHOLE)
				snprintf(range, sizeof(range), "%llu-",
					 (unsigned long long)rq->off);
			else if (rq->len == 0)
				snprintf(range, sizeof(range), "%llu-%llu",
					 (unsigned long long)rq->off, (unsigned long long)rq->off);
			else
				snprintf(range, sizeof(range), "%llu-%llu",
					 (unsigned long long)rq->off,
					 (unsigned long long)(rq->off + rq->len - 1));
			curl_easy_setopt(c, CURLOPT_RANGE, range);
		}
		curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
		curl_easy_setopt(c, CURLOPT_WRITEDATA, &sink);
		if (rq->etag) {
			rq->etag[0] = '\0';
			curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
			curl_easy_setopt(c, CURLOPT_HEADERDATA, rq);
		}
		break;
	case M_HEAD: curl_easy_setopt(c, CURLOPT_NOBODY, 1L); break;
	case M_DELETE:
		curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, "DELETE");
		curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_err_body);
		curl_easy_setopt(c, CURLOPT_WRITEDATA, rq);
		break;
	case M_PUT:
		if (rq->path) {
			struct stat st;

			up.f = fopen(rq->path, "rb");
			if (!up.f || fstat(fileno(up.f), &st) < 0) {
				rc = -errno;
				goto out;
			}
			curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, (curl_off_t)st.st_size);
		} else {
			up.p = rq->body;
			up.n = rq->body_len;
			curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, (curl_off_t)rq->body_len);
		}
		curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
		curl_easy_setopt(c, CURLOPT_READFUNCTION, on_upload);
		curl_easy_setopt(c, CURLOPT_READDATA, &up);
		curl_easy_setopt(c, CURLOPT_SEEKFUNCTION, on_seek);
		curl_easy_setopt(c, CURLOPT_SEEKDATA, &up);
		/*
		 * The answer's body (an error's XML) is never curl's default
		 * stdout: it is kept to name the error.
		 */
		curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_err_body);
		curl_easy_setopt(c, CURLOPT_WRITEDATA, rq);
		/*
		 * No "Expect: 100-continue" wait on plain HTTP.  Not on S3:
		 * libcurl before 8.3 signs a header emptied to suppress it
		 * but does not send it, and the signature then fails.  curl
		 * sends the header itself only for bodies over 1 MiB, unsigned
		 * (SigV4 checks only the headers it lists), and waits at most
		 * EXPECT_WAIT_MS for the 100.
		 */
		if (h->s3)
			curl_easy_setopt(c, CURLOPT_EXPECT_100_TIMEOUT_MS, (long)EXPECT_WAIT_MS);
		else
			hl = curl_slist_append(hl, "Expect:");
		if (rq->cond)
			hl = curl_slist_append(hl, rq->cond);
		break;
	}
	if (hl)
		curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
	cc = curl_easy_perform(c);
	if (cc == CURLE_WRITE_ERROR && sink.done)
		cc = CURLE_OK; /* stopped on purpose: the range is in */
	*ccout = cc;
	if (cc == CURLE_OK && !__atomic_load_n(&h->peer_len, __ATOMIC_RELAXED))
		note_peer(h, c);
	*status = 0;
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
	*too_big = sink.too_big;
	/* a whole-object answer that ended before the range began */
	*short_body = sink.ranged && *status == 200 && sink.seen < sink.off;
	if (cc != CURLE_OK && rq->out)
		rq->out->len = sink.start;
out:
	if (up.f)
		fclose(up.f);
	curl_slist_free_all(hl);
	give(h, c);
	return rc;
}

static int do_request(struct remote *r, struct request *rq)
{
	struct http_remote *h = r->priv;
	double deadline = now_s() + h->timeout, backoff = 0.1;
	static const char *const mname[] = { "GET", "HEAD", "PUT", "DELETE" };
	long status = 0;
	CURLcode cc = CURLE_OK;
	int tries, rc = 0, too_big = 0, short_body = 0;
	size_t start = rq->out ? rq->out->len : 0;

	for (tries = 1;; tries++) {
		if (rq->out)
			rq->out->len = start;
		rq->err_len = 0;
		rq->err[0] = 0;
		rc = one_try(h, rq, deadline, &status, &cc, &too_big, &short_body);
		if (rc)
			break;
		if (too_big) {
			rc = -EFBIG;
			break;
		}
		if (cc == CURLE_OK && status >= 200 && status < 300) {
			if (rq->m == M_GET && rq->out && rq->len != REMOTE_WHOLE &&
			    rq->out->len - start > rq->len) {
				log_err("GET %s/%s: the server answered more than the %llu "
					"bytes asked for",
					h->shown, rq->name, (unsigned long long)rq->len);
				return -EIO;
			}
			if (short_body) {
				log_err("GET %s/%s: the server ignored Range and the object ends "
					"before offset %llu",
					h->shown, rq->name, (unsigned long long)rq->off);
				return -EIO;
			}
			return 0;
		}
		if (cc == CURLE_OK && status == 404)
			return -ENOENT;
		if (cc == CURLE_OK && rq->cond && (status == 412 || status == 409))
			return -EAGAIN; /* another writer got there first */
		if (cc == CURLE_OK && status == 416)
			return -EINVAL;
		if (!retryable(cc, status) || tries == MAX_TRIES || now_s() + backoff >= deadline)
			break;
		log_debug("%s %s/%s: %s; retrying", mname[rq->m], h->shown, rq->name,
			  cc ? curl_easy_strerror(cc) : "server error");
		usleep((useconds_t)(backoff * 1e6));
		backoff *= 2;
	}
	if (rc == -EFBIG || too_big) {
		log_err("%s %s/%s: response over %zu bytes", mname[rq->m], h->shown, rq->name,
			rq->cap);
		return -EFBIG;
	}
	if (rc)
		return rc;
	if (cc != CURLE_OK) {
		log_err("%s %s/%s: %s (after %d tries)", mname[rq->m], h->shown, rq->name,
			curl_easy_strerror(cc), tries);
		if (cc == CURLE_OPERATION_TIMEDOUT)
			return -ETIMEDOUT;
		if (cc == CURLE_COULDNT_CONNECT || cc == CURLE_COULDNT_RESOLVE_HOST ||
		    cc == CURLE_COULDNT_RESOLVE_PROXY)
			return -EHOSTUNREACH; /* unreachable: callers may fall back */
		if (cc == CURLE_PEER_FAILED_VERIFICATION || cc == CURLE_SSL_CACERT_BADFILE)
			return -EACCES;
		return -EIO;
	}
	{
		char code[64];

		err_code(rq->err, rq->err_len, code, sizeof(code));
		log_err("%s %s/%s: HTTP %ld%s%s%s (after %d tries)", mname[rq->m], h->shown,
			rq->name, status, *code ? " " : "", code,
			!strcmp(code, "SignatureDoesNotMatch")
				? ": the server computes another signature (is "
				  "AWS_SECRET_ACCESS_KEY right?)"
			: !strcmp(code, "InvalidAccessKeyId")
				? ": the server does not know AWS_ACCESS_KEY_ID"
			: status >= 300 && status < 400
				? ": a redirect, not followed for a request that carries "
				  "credentials (S3, STASHFS_TOKEN)"
				: "",
			tries);
	}
	if (status == 401 || status == 403)
		return -EACCES;
	if (status == 507 || status == 413)
		return -ENOSPC;
	return -EIO;
}

static const char empty_sha[] = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

static int http_get(struct remote *r, const char *name, uint64_t off, uint64_t len, struct buf *out,
		    size_t cap, const struct remote_progress *pr)
{
	struct request rq;

	memset(&rq, 0, sizeof(rq));
	rq.m = M_GET;
	rq.name = name;
	rq.off = off;
	rq.len = len;
	rq.out = out;
	rq.pr = pr;
	rq.cap = cap;
	memcpy(rq.payload_sha, empty_sha, sizeof(empty_sha));
	if (len == 0)
		return 0;
	{
		int rc = do_request(r, &rq);

		if (!rc && out->len > cap)
			return -EFBIG;
		return rc;
	}
}

static int http_put_buf(struct remote *r, const char *name, const void *p, size_t n)
{
	struct request rq;

	memset(&rq, 0, sizeof(rq));
	rq.m = M_PUT;
	rq.name = name;
	rq.body = p;
	rq.body_len = n;
	if (((struct http_remote *)r->priv)->s3)
		sha256_hex(p, n, rq.payload_sha);
	return do_request(r, &rq);
}

static int http_put_file(struct remote *r, const char *name, const char *path, int may_move)
{
	struct request rq;
	int rc;

	(void)may_move;
	memset(&rq, 0, sizeof(rq));
	rq.m = M_PUT;
	rq.name = name;
	rq.path = path;
	if (((struct http_remote *)r->priv)->s3) {
		rc = file_sha256_hex(path, rq.payload_sha);
		if (rc)
			return rc;
	}
	return do_request(r, &rq);
}

static int http_exists(struct remote *r, const char *name)
{
	struct request rq;
	int rc;

	memset(&rq, 0, sizeof(rq));
	rq.m = M_HEAD;
	rq.name = name;
	memcpy(rq.payload_sha, empty_sha, sizeof(empty_sha));
	rc = do_request(r, &rq);
	if (rc == -ENOENT)
		return 0;
	return rc ? rc : 1;
}

static int http_preconnect(struct remote *r, int n, int *fds)
{
	struct http_remote *h = r->priv;
	struct sockaddr_storage sa;
	socklen_t len;
	int i, k = 0;

	pthread_mutex_lock(&h->lock);
	sa = h->peer;
	len = h->peer_len;
	pthread_mutex_unlock(&h->lock);
	for (i = 0; len && i < n; i++) {
		int fd = socket(sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

		if (fd < 0)
			break;
		if (connect(fd, (struct sockaddr *)&sa, len) != 0 && errno != EINPROGRESS) {
			close(fd);
			break;
		}
		fds[k++] = fd;
	}
	return k;
}

static void http_adopt(struct remote *r, const int *fds, int n, uint64_t *used)
{
	struct http_remote *h = r->priv;
	int i;

	if (n <= 0)
		return; /* nothing to take: new connections stay on curl's own path */
	pthread_mutex_lock(&h->lock);
	for (i = 0; i < n; i++) {
		if (h->nahead < AHEAD_MAX)
			h->ahead[h->nahead++] = fds[i];
		else
			close(fds[i]);
	}
	h->ahead_at = now_s();
	h->ahead_used = used;
	__atomic_store_n(&h->adopting, 1, __ATOMIC_RELAXED);
	pthread_mutex_unlock(&h->lock);
}

static void http_free(struct remote *r)
{
	struct http_remote *h = r->priv;
	int i;

	if (!h)
		return;
	for (i = 0; i < h->npool; i++)
		curl_easy_cleanup(h->pool[i]);
	for (i = 0; i < h->nahead; i++)
		close(h->ahead[i]);
	curl_slist_free_all(h->auth_headers);
	if (h->userpwd) {
		explicit_bzero(h->userpwd, strlen(h->userpwd));
		free(h->userpwd);
	}
	free(h->sigv4);
	free(h->base);
	free(h->bucket_url);
	free(h->key_prefix);
	free(h->shown);
	pthread_mutex_destroy(&h->lock);
	free(h);
}

/* "If-Match: ETAG", the quotes taken off for a server that wants it bare. */
static void if_match(char *out, size_t n, const char *etag, int bare)
{
	size_t len = strlen(etag);

	if (bare && len >= 2 && etag[0] == '"' && etag[len - 1] == '"')
		snprintf(out, n, "If-Match: %.*s", (int)len - 2, etag + 1);
	else
		snprintf(out, n, "If-Match: %s", etag);
}

/*
 * Read-modify-write by conditional PUT: If-Match on the ETag the GET saw,
 * or If-None-Match: * where there was nothing.  A 412 (or 409) means
 * another writer won: read its version and try again, after a random
 * pause that grows.
 */
static int http_update(struct remote *r, const char *name, size_t cap, remote_update_fn fn,
		       void *arg)
{
	struct http_remote *h = r->priv;
	struct buf cur = BUF_INIT, out = BUF_INIT;
	char etag[ETAG_MAX], last[ETAG_MAX] = "", cond[ETAG_MAX + 32];
	int rc = -EAGAIN, tries;

	for (tries = 0; rc == -EAGAIN && tries < 32; tries++) {
		struct request rq;

		if (tries)
			usleep((useconds_t)(1000 * (5 + random() % (10 * tries + 20))));
		buf_reset(&cur);
		buf_reset(&out);
		memset(&rq, 0, sizeof(rq));
		rq.m = M_GET;
		rq.name = name;
		rq.len = REMOTE_WHOLE;
		rq.out = &cur;
		rq.cap = cap;
		rq.etag = etag;
		memcpy(rq.payload_sha, empty_sha, sizeof(empty_sha));
		rc = do_request(r, &rq);
		if (rc && rc != -ENOENT)
			break;
		if (tries && *etag && !strcmp(etag, last))
			/* refused on an ETag that has not changed: the server
			 * compares it without its quotes (Ceph RGW 16 does) */
			__atomic_store_n(&h->etag_bare, 1, __ATOMIC_RELAXED);
		if (rc == -ENOENT)
			snprintf(cond, sizeof(cond), "If-None-Match: *");
		else if (*etag)
			if_match(cond, sizeof(cond), etag,
				 __atomic_load_n(&h->etag_bare, __ATOMIC_RELAXED));
		else
			cond[0] = '\0'; /* no ETag: the last writer wins */
		snprintf(last, sizeof(last), "%s", etag);
		rc = fn(&cur, rc == 0, &out, arg);
		if (rc)
			break;
		memset(&rq, 0, sizeof(rq));
		rq.m = M_PUT;
		rq.name = name;
		rq.body = out.p;
		rq.body_len = out.len;
		rq.cond = *cond ? cond : NULL;
		if (h->s3)
			sha256_hex(out.p, out.len, rq.payload_sha);
		rc = do_request(r, &rq);
	}
	if (rc == -EAGAIN)
		log_err("PUT %s/%s: other writers won 32 times in a row", h->shown, name);
	buf_free(&cur);
	buf_free(&out);
	return rc;
}

/* ---- listings and deletes ---- */

#define LIST_PAGE_CAP (16u << 20) /* one ListObjectsV2 page (1000 keys: ~300 kB) */
#define LIST_DIR_CAP (256u << 20) /* one autoindex answer: a million names */
#define LIST_MAX_PAGES 100000

static int http_del(struct remote *r, const char *name)
{
	struct request rq;

	memset(&rq, 0, sizeof(rq));
	rq.m = M_DELETE;
	rq.name = name;
	memcpy(rq.payload_sha, empty_sha, sizeof(empty_sha));
	return do_request(r, &rq);
}

/* Percent-encoding as SigV4's canonical query wants it: all but A-Za-z0-9-_.~ */
static void query_enc(struct buf *b, const char *s, size_t n)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t i;

	for (i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)s[i];

		if ((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
		    (ch >= '0' && ch <= '9') || ch == '-' || ch == '_' || ch == '.' || ch == '~') {
			buf_append(b, s + i, 1);
		} else {
			char e[3] = { '%', hex[ch >> 4], hex[ch & 15] };

			buf_append(b, e, 3);
		}
	}
}

/* The text of the first <tag>...</tag> in [p, end), or NULL. */
static const char *xml_tag(const char *p, const char *end, const char *tag, size_t *len)
{
	char open[64], close[64];
	size_t ol, cl;
	const char *a, *b;

	ol = (size_t)snprintf(open, sizeof(open), "<%s>", tag);
	cl = (size_t)snprintf(close, sizeof(close), "</%s>", tag);
	a = memmem(p, (size_t)(end - p), open, ol);
	if (!a)
		return NULL;
	a += ol;
	b = memmem(a, (size_t)(end - a), close, cl);
	if (!b)
		return NULL;
	*len = (size_t)(b - a);
	return a;
}

/* "2026-12-05T07:50:39.000Z" (S3) or "Sat, 05 Dec 2026 07:50:39 GMT" (HTTP). */
static int64_t parse_time(const char *p, size_t n)
{
	char t[64];
	struct tm tm;
	const char *end;

	if (n == 0 || n >= sizeof(t))
		return -1;
	memcpy(t, p, n);
	t[n] = '\0';
	memset(&tm, 0, sizeof(tm));
	end = strptime(t, "%Y-%m-%dT%H:%M:%S", &tm);
	if (!end)
		end = strptime(t, "%a, %d %b %Y %H:%M:%S", &tm);
	if (!end)
		return -1;
	return (int64_t)timegm(&tm);
}

static int parse_u64(const char *p, size_t n, uint64_t *v)
{
	uint64_t x = 0;
	size_t i;

	if (n == 0 || n > 19)
		return -1;
	for (i = 0; i < n; i++) {
		if (p[i] < '0' || p[i] > '9')
			return -1;
		x = x * 10 + (uint64_t)(p[i] - '0');
	}
	*v = x;
	return 0;
}

/*
 * One name below the listed directory: plain characters, no '/' and no
 * XML or JSON escapes (stashfs names are hex; anything else is not ours).
 */
static int plain_name(const char *p, size_t n, char *out, size_t on)
{
	size_t i;

	if (n == 0 || n >= on)
		return -1;
	for (i = 0; i < n; i++)
		if (p[i] == '/' || p[i] == '&' || p[i] == '\\' || p[i] == '"' ||
		    (unsigned char)p[i] < 0x21 || (unsigned char)p[i] > 0x7e)
			return -1;
	memcpy(out, p, n);
	out[n] = '\0';
	return 0;
}

/* S3 ListObjectsV2 of KEY_PREFIX + dir + "/", page by page. */
static int s3_list(struct remote *r, const char *dir, remote_list_fn fn, void *arg)
{
	struct http_remote *h = r->priv;
	struct buf url = BUF_INIT, page = BUF_INIT, token = BUF_INIT, want = BUF_INIT;
	char shown[PATH_MAX];
	int rc = 0, pages;

	buf_printf(&want, "%s%s/", h->key_prefix, dir);
	snprintf(shown, sizeof(shown), "%s/ (ListObjectsV2)", dir);
	for (pages = 0; !rc; pages++) {
		struct request rq;
		const char *p, *end, *t;
		size_t tl;

		if (pages == LIST_MAX_PAGES) {
			log_err("%s/%s: more than %d pages", h->shown, shown, LIST_MAX_PAGES);
			rc = -EIO;
			break;
		}
		/* the query sorted and encoded as SigV4 signs it */
		buf_reset(&url);
		buf_printf(&url, "%s/?", h->bucket_url);
		if (token.len) {
			buf_append(&url, "continuation-token=", 19);
			query_enc(&url, (const char *)token.p, token.len);
			buf_append(&url, "&", 1);
		}
		buf_append(&url, "list-type=2&prefix=", 19);
		query_enc(&url, (const char *)want.p, want.len);
		buf_append(&url, "", 1);
		buf_reset(&page);
		memset(&rq, 0, sizeof(rq));
		rq.m = M_GET;
		rq.name = shown;
		rq.url = (const char *)url.p;
		rq.len = REMOTE_WHOLE;
		rq.out = &page;
		rq.cap = LIST_PAGE_CAP;
		memcpy(rq.payload_sha, empty_sha, sizeof(empty_sha));
		rc = do_request(r, &rq);
		if (rc)
			break;
		p = page.p ? (const char *)page.p : "";
		end = p + page.len;
		while (!rc && (t = xml_tag(p, end, "Contents", &tl))) {
			const char *k, *sz, *lm;
			size_t kl = 0, szl = 0, lml = 0;
			char name[256];
			uint64_t size;
			int64_t mt;

			p = t + tl;
			k = xml_tag(t, t + tl, "Key", &kl);
			sz = xml_tag(t, t + tl, "Size", &szl);
			lm = xml_tag(t, t + tl, "LastModified", &lml);
			if (!k || !sz || !lm || kl <= want.len || memcmp(k, want.p, want.len) ||
			    plain_name(k + want.len, kl - want.len, name, sizeof(name)) ||
			    parse_u64(sz, szl, &size) || (mt = parse_time(lm, lml)) < 0)
				continue; /* not one of ours */
			rc = fn(name, size, mt, arg);
		}
		if (rc)
			break;
		t = xml_tag(page.p ? (const char *)page.p : "", end, "IsTruncated", &tl);
		if (!t || tl != 4 || memcmp(t, "true", 4))
			break;
		t = xml_tag((const char *)page.p, end, "NextContinuationToken", &tl);
		if (!t || tl == 0 || tl > 4096 || (tl == token.len && !memcmp(t, token.p, tl))) {
			log_err("%s/%s: a truncated listing without a new continuation token",
				h->shown, shown);
			rc = -EIO;
			break;
		}
		buf_reset(&token);
		buf_append(&token, t, tl);
	}
	buf_free(&url);
	buf_free(&page);
	buf_free(&token);
	buf_free(&want);
	return rc;
}

/* The value of "field": in one JSON object [p, end): a string's or a number's text. */
static const char *json_field(const char *p, const char *end, const char *field, size_t *len)
{
	char k[32];
	size_t kl = (size_t)snprintf(k, sizeof(k), "\"%s\"", field);
	const char *a = memmem(p, (size_t)(end - p), k, kl), *b;

	if (!a)
		return NULL;
	a += kl;
	while (a < end && (*a == ' ' || *a == ':' || *a == '\t'))
		a++;
	if (a < end && *a == '"') {
		a++;
		b = memchr(a, '"', (size_t)(end - a));
	} else {
		for (b = a; b < end && *b >= '0' && *b <= '9'; b++)
			;
	}
	if (!b)
		return NULL;
	*len = (size_t)(b - a);
	return a;
}

/*
 * Plain HTTP: a directory answered as nginx's autoindex JSON
 * (autoindex on; autoindex_format json;), one array of
 * {"name", "type", "mtime", "size"}.
 */
static int autoindex_list(struct remote *r, const char *dir, remote_list_fn fn, void *arg)
{
	struct http_remote *h = r->priv;
	struct buf page = BUF_INIT;
	struct request rq;
	char name[PATH_MAX];
	const char *p, *end;
	int rc;

	snprintf(name, sizeof(name), "%s/", dir);
	memset(&rq, 0, sizeof(rq));
	rq.m = M_GET;
	rq.name = name;
	rq.len = REMOTE_WHOLE;
	rq.out = &page;
	rq.cap = LIST_DIR_CAP;
	rc = do_request(r, &rq);
	if (rc == -ENOENT) {
		rc = 0; /* nothing there yet */
		goto out;
	}
	p = page.p ? (const char *)page.p : "";
	end = p + page.len;
	while (p < end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t'))
		p++;
	if (rc == -EACCES || (!rc && (p == end || *p != '['))) {
		log_err("%s/%s: the server does not list directories as JSON (nginx: "
			"autoindex on; autoindex_format json;)",
			h->shown, name);
		rc = -EOPNOTSUPP;
		goto out;
	}
	while (!rc && p < end) {
		const char *o = memchr(p, '{', (size_t)(end - p)), *c, *v;
		char n[256];
		size_t vl;
		uint64_t size;
		int64_t mt;

		if (!o)
			break;
		c = memchr(o, '}', (size_t)(end - o));
		if (!c)
			break;
		p = c + 1;
		v = json_field(o, c, "type", &vl);
		if (!v || vl != 4 || memcmp(v, "file", 4))
			continue;
		v = json_field(o, c, "name", &vl);
		if (!v || plain_name(v, vl, n, sizeof(n)))
			continue;
		v = json_field(o, c, "size", &vl);
		if (!v || parse_u64(v, vl, &size))
			continue;
		v = json_field(o, c, "mtime", &vl);
		if (!v || (mt = parse_time(v, vl)) < 0)
			continue;
		rc = fn(n, size, mt, arg);
	}
out:
	buf_free(&page);
	return rc;
}

static int http_list(struct remote *r, const char *dir, remote_list_fn fn, void *arg)
{
	struct http_remote *h = r->priv;

	return h->s3 ? s3_list(r, dir, fn, arg) : autoindex_list(r, dir, fn, arg);
}

static const struct remote_ops http_ops = {
	.scheme = "http",
	.get = http_get,
	.put_file = http_put_file,
	.put_buf = http_put_buf,
	.exists = http_exists,
	.update = http_update,
	.free = http_free,
	.preconnect = http_preconnect,
	.adopt = http_adopt,
	.list = http_list,
	.del = http_del,
};

/* "scheme://user:pass@host/..." shown as "scheme://host/...". */
static double env_timeout(void)
{
	double v;

	return parse_seconds(getenv("STASHFS_TIMEOUT"), &v) ? 60.0 : v;
}

/*
 * Add "name: [scheme ]value" to the headers every request sends.  The
 * formatted copy holds a secret: it is wiped before it is freed.
 */
static int add_auth_header(struct http_remote *h, const char *name, const char *scheme,
			   const char *value)
{
	struct curl_slist *l;
	char *hd;

	if (asprintf(&hd, "%s: %s%s%s", name, scheme ? scheme : "", scheme ? " " : "", value) < 0)
		return -ENOMEM;
	l = curl_slist_append(h->auth_headers, hd);
	explicit_bzero(hd, strlen(hd));
	free(hd);
	if (!l)
		return -ENOMEM;
	h->auth_headers = l;
	return 0;
}

static const char *profile_name(void)
{
	const char *p = getenv("AWS_PROFILE");

	if (!p || !*p)
		p = getenv("AWS_DEFAULT_PROFILE");
	return p && *p ? p : "default";
}

/* The AWS CLI's credentials (config 0) or config (1) file. */
static const char *aws_file(int config, char *out, size_t n)
{
	const char *e = getenv(config ? "AWS_CONFIG_FILE" : "AWS_SHARED_CREDENTIALS_FILE");
	const char *home = getenv("HOME");

	if (e && *e)
		snprintf(out, n, "%s", e);
	else
		snprintf(out, n, "%s/.aws/%s", home ? home : "", config ? "config" : "credentials");
	return out;
}

/*
 * name's value in the profile's section of the credentials file ([NAME])
 * or the config file ([profile NAME], [default]).  0, or -ENOENT.
 */
static int aws_profile(int config, const char *name, char *out, size_t n)
{
	char path[PATH_MAX], want[300], line[4096];
	const char *prof = profile_name();
	int in = 0, rc = -ENOENT;
	FILE *f = fopen(aws_file(config, path, sizeof(path)), "re");

	if (!f)
		return -ENOENT;
	if (config && strcmp(prof, "default"))
		snprintf(want, sizeof(want), "profile %s", prof);
	else
		snprintf(want, sizeof(want), "%s", prof);
	while (rc && fgets(line, sizeof(line), f)) {
		char *p = line, *end, *eq;

		while (*p == ' ' || *p == '\t')
			p++;
		end = p + strlen(p);
		while (end > p &&
		       (end[-1] == '\n' || end[-1] == '\r' || end[-1] == ' ' || end[-1] == '\t'))
			*--end = '\0';
		if (*p == '[') {
			char *q = strchr(p, ']');

			if (q) {
				*q = '\0';
				p++;
				while (*p == ' ')
					p++;
				for (q--; q > p && *q == ' '; q--)
					*q = '\0';
				in = !strcmp(p, want);
			}
			continue;
		}
		if (!in || *p == '#' || *p == ';' || !(eq = strchr(p, '=')))
			continue;
		*eq = '\0';
		for (end = eq; end > p && (end[-1] == ' ' || end[-1] == '\t'); end--)
			end[-1] = '\0';
		if (strcmp(p, name))
			continue;
		for (p = eq + 1; *p == ' ' || *p == '\t'; p++)
			;
		if (*p && strlen(p) < n) {
			memcpy(out, p, strlen(p) + 1);
			rc = 0;
		}
	}
	fclose(f);
	return rc;
}

int remote_http_open(const char *url, struct remote *r)
{
	struct http_remote *h = calloc(1, sizeof(*h));
	/* a read remote may be another server: it gets STASHFS_READ_TOKEN
	 * when that is set (empty: none), never the write token */
	const char *tok = r->read_only && getenv("STASHFS_READ_TOKEN")
				  ? getenv("STASHFS_READ_TOKEN")
				  : getenv("STASHFS_TOKEN");
	size_t len;
	int rc = -ENOMEM;

	if (!h)
		return -ENOMEM;
	pthread_once(&curl_once, curl_init_once);
	pthread_mutex_init(&h->lock, NULL);
	h->timeout = env_timeout();
	h->insecure = getenv("STASHFS_INSECURE") && *getenv("STASHFS_INSECURE") == '1';
	if (strncmp(url, "s3://", 5) == 0) {
		const char *bucket = url + 5, *slash = strchr(bucket, '/');
		const char *ep = getenv("STASHFS_S3_ENDPOINT");
		const char *region = getenv("AWS_REGION");
		const char *key = getenv("AWS_ACCESS_KEY_ID"),
			   *secret = getenv("AWS_SECRET_ACCESS_KEY");
		const char *session = getenv("AWS_SESSION_TOKEN");
		const char *ps = getenv("STASHFS_S3_PATH_STYLE");
		char f_key[256], f_secret[256], f_session[4096], f_region[64], f_ep[512],
			f_path[PATH_MAX];
		size_t blen = slash ? (size_t)(slash - bucket) : strlen(bucket);
		const char *prefix = slash ? slash + 1 : "";
		int path_style;

		if (!ep || !*ep)
			ep = getenv("AWS_ENDPOINT_URL");
		if (!region || !*region)
			region = getenv("AWS_DEFAULT_REGION");
		/* then the AWS CLI's files, as it reads them: the environment wins */
		if (!key || !*key || !secret || !*secret) {
			if (!aws_profile(0, "aws_access_key_id", f_key, sizeof(f_key)) &&
			    !aws_profile(0, "aws_secret_access_key", f_secret, sizeof(f_secret))) {
				key = f_key;
				secret = f_secret;
				if (!aws_profile(0, "aws_session_token", f_session,
						 sizeof(f_session)))
					session = f_session;
			}
		}
		if ((!region || !*region) && !aws_profile(1, "region", f_region, sizeof(f_region)))
			region = f_region;
		if ((!ep || !*ep) && !aws_profile(1, "endpoint_url", f_ep, sizeof(f_ep)))
			ep = f_ep;
		if (!region || !*region)
			region = "us-east-1";
		if (blen == 0) {
			log_err("remote '%s': no bucket (use s3://bucket/prefix)", url);
			rc = -EINVAL;
			goto fail;
		}
		if (!key || !secret) {
			log_err("remote '%s': no credentials: set AWS_ACCESS_KEY_ID and "
				"AWS_SECRET_ACCESS_KEY, or give profile '%s' keys in %s",
				url, profile_name(), aws_file(0, f_path, sizeof(f_path)));
			rc = -EINVAL;
			goto fail;
		}
		/* a custom endpoint (MinIO, Ceph RGW, R2...) means path style unless told */
		path_style = ps ? *ps == '1' : (ep && *ep);
		while (*prefix == '/')
			prefix++;
		len = strlen(prefix);
		while (len && prefix[len - 1] == '/')
			len--;
		if (ep && *ep) {
			size_t el = strlen(ep);

			while (el && ep[el - 1] == '/')
				el--;
			if (path_style)
				rc = asprintf(&h->base, "%.*s/%.*s%s%.*s", (int)el, ep, (int)blen,
					      bucket, len ? "/" : "", (int)len, prefix);
			else {
				const char *sch = strstr(ep, "://");
				const char *host = sch ? sch + 3 : ep;

				rc = asprintf(&h->base, "%.*s%.*s.%.*s%s%.*s", (int)(host - ep), ep,
					      (int)blen, bucket, (int)(el - (size_t)(host - ep)),
					      host, len ? "/" : "", (int)len, prefix);
			}
		} else {
			rc = asprintf(&h->base, "https://%.*s.s3.%s.amazonaws.com%s%.*s", (int)blen,
				      bucket, region, len ? "/" : "", (int)len, prefix);
		}
		if (rc < 0) {
			h->base = NULL;
			rc = -ENOMEM;
			goto fail;
		}
		h->s3 = 1;
		{
			/* the bucket's URL is base without the prefix */
			size_t bl = strlen(h->base) - (len ? len + 1 : 0);

			h->bucket_url = strndup(h->base, bl);
			if (asprintf(&h->key_prefix, "%.*s%s", (int)len, prefix, len ? "/" : "") <
			    0)
				h->key_prefix = NULL;
			if (!h->bucket_url || !h->key_prefix) {
				rc = -ENOMEM;
				goto fail;
			}
		}
		if (asprintf(&h->sigv4, "aws:amz:%s:s3", region) < 0 ||
		    asprintf(&h->userpwd, "%s:%s", key, secret) < 0) {
			rc = -ENOMEM;
			goto fail;
		}
		if (session && *session &&
		    add_auth_header(h, "x-amz-security-token", NULL, session))
			goto fail;
		explicit_bzero(f_secret, sizeof(f_secret));
		explicit_bzero(f_session, sizeof(f_session));
	} else {
		len = strlen(url);
		while (len > 8 && url[len - 1] == '/')
			len--;
		h->base = strndup(url, len);
		if (!h->base)
			goto fail;
		if (tok && *tok && add_auth_header(h, "Authorization", "Bearer", tok))
			goto fail;
	}
	h->https = strncasecmp(h->base, "https://", 8) == 0;
	h->shown = remote_redact(h->base);
	if (!h->shown)
		goto fail;
	if (h->insecure)
		log_warn("TLS verification is OFF for %s (STASHFS_INSECURE/--insecure): "
			 "anyone on the path can read and change what is transferred",
			 h->shown);
	r->ops = &http_ops;
	r->priv = h;
	/* messages show the redacted URL */
	free(r->url);
	r->url = strdup(h->shown);
	return r->url ? 0 : -ENOMEM;
fail:
	r->priv = h;
	http_free(r);
	r->priv = NULL;
	return rc < 0 ? rc : -ENOMEM;
}
