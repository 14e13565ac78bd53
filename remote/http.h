/*
 * What the pieces of the http(s):// and s3:// backend share: requests and
 * the pool in remote/http.c, listings in remote/http_list.c, opening (URL,
 * credentials, S3 settings) in remote/http_open.c.  Private to remote/.
 */
#ifndef STASH_HTTP_H
#define STASH_HTTP_H

#include "remote.h"
#include "../store/tuning.h"

#include <curl/curl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>

#define ERR_BODY_MAX 512 /* bytes of an error answer kept to name it */

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
	/* TLS and netrc files (borrowed from the remote_config; NULL: curl's own) */
	const char *netrc, *ca_bundle, *client_cert, *client_key;
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

/* The SHA-256 of nothing, hex: the payload hash of a bodiless S3 request. */
extern const char empty_sha[65];
extern const struct remote_ops http_ops;

/* curl_global_init, once per process. */
void http_global_init(void);
/* One operation, retried inside its deadline: 0 or -errno (logged). */
int do_request(struct remote *r, struct request *rq);
void http_free(struct remote *r);
/* The listing of dir (remote_ops.list): S3's ListObjectsV2 or nginx's
 * autoindex JSON. */
int http_list(struct remote *r, const char *dir, remote_list_fn fn, void *arg);

#endif
