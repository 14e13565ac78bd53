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
#include "http.h"
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

/* The adopted socket curl is opening on this thread, till its sockopt call. */
static __thread int ahead_fd = -1;

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;

static void curl_init_once(void)
{
	curl_global_init(CURL_GLOBAL_DEFAULT);
}

void http_global_init(void)
{
	pthread_once(&curl_once, curl_init_once);
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

/*
 * What every request of h sets: URL, deadlines, adopted sockets, the
 * protocols and redirects allowed, netrc and TLS, the credentials.  The
 * headers to send, or NULL.
 */
static struct curl_slist *set_common(struct http_remote *h, CURL *c, const struct request *rq,
				     const char *url, double left)
{
	struct curl_slist *hl = NULL, *it;
	char hdr[128];

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
	if (h->netrc)
		curl_easy_setopt(c, CURLOPT_NETRC_FILE, h->netrc);
	if (h->insecure) {
		curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 0L);
		curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 0L);
	}
	if (h->ca_bundle)
		curl_easy_setopt(c, CURLOPT_CAINFO, h->ca_bundle);
	if (h->client_cert)
		curl_easy_setopt(c, CURLOPT_SSLCERT, h->client_cert);
	if (h->client_key)
		curl_easy_setopt(c, CURLOPT_SSLKEY, h->client_key);
	for (it = h->auth_headers; it; it = it->next)
		hl = curl_slist_append(hl, it->data);
	if (h->s3) {
		curl_easy_setopt(c, CURLOPT_AWS_SIGV4, h->sigv4);
		curl_easy_setopt(c, CURLOPT_USERPWD, h->userpwd);
		snprintf(hdr, sizeof(hdr), "x-amz-content-sha256: %s", rq->payload_sha);
		hl = curl_slist_append(hl, hdr);
	}
	return hl;
}

/* The method's part: range and body sink for a GET, the body for a PUT. */
static int set_method(struct http_remote *h, CURL *c, struct request *rq, struct sink *sink,
		      struct upload *up, struct curl_slist **hlp)
{
	struct curl_slist *hl = *hlp;
	char range[64];

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
		curl_easy_setopt(c, CURLOPT_WRITEDATA, sink);
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

			up->f = fopen(rq->path, "rb");
			if (!up->f || fstat(fileno(up->f), &st) < 0) {
				return -errno;
			}
			curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, (curl_off_t)st.st_size);
		} else {
			up->p = rq->body;
			up->n = rq->body_len;
			curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, (curl_off_t)rq->body_len);
		}
		curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
		curl_easy_setopt(c, CURLOPT_READFUNCTION, on_upload);
		curl_easy_setopt(c, CURLOPT_READDATA, up);
		curl_easy_setopt(c, CURLOPT_SEEKFUNCTION, on_seek);
		curl_easy_setopt(c, CURLOPT_SEEKDATA, up);
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
	*hlp = hl;
	return 0;
}

static int one_try(struct http_remote *h, struct request *rq, double deadline, long *status,
		   CURLcode *ccout, int *too_big, int *short_body)
{
	char url[8192];
	struct curl_slist *hl;
	struct sink sink = {
		rq, rq->out, rq->out ? rq->out->len : 0, rq->cap, 0, NULL, NULL, 0, 0, 0, 0, 0
	};
	struct upload up = { NULL, 0, 0, NULL };
	double left = deadline - now_s();
	CURLcode cc;
	CURL *c;
	int rc;

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
	hl = set_common(h, c, rq, url, left);
	rc = set_method(h, c, rq, &sink, &up, &hl);
	if (rc)
		goto out;
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

int do_request(struct remote *r, struct request *rq)
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
		if (!retryable(cc, status) || tries == HTTP_TRIES || now_s() + backoff >= deadline)
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

const char empty_sha[65] = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

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

void http_free(struct remote *r)
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

static int http_del(struct remote *r, const char *name)
{
	struct request rq;

	memset(&rq, 0, sizeof(rq));
	rq.m = M_DELETE;
	rq.name = name;
	memcpy(rq.payload_sha, empty_sha, sizeof(empty_sha));
	return do_request(r, &rq);
}

const struct remote_ops http_ops = {
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
