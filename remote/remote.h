/*
 * Remotes: where snapshots are shared.  One interface, several backends
 * (file:// here; http(s):// and s3:// implement the same table).
 *
 * Names are relative paths like "packs/<hex>", "catalogs/<hex>",
 * "keys/<hex>".  Content objects are immutable and content-addressed;
 * key records are small and replaced whole (a reader sees the old or the
 * new record, never a mix).
 *
 * Every call returns 0 (or a count) or -errno: -ENOENT for a missing
 * name, -EROFS for a write to a read-only remote, -ETIMEDOUT, -EACCES,
 * -EIO for anything else (details are logged at the boundary).
 */
#ifndef STASH_REMOTE_H
#define STASH_REMOTE_H

#include "../store/util.h"

#include <stdint.h>

#define REMOTE_WHOLE UINT64_MAX

struct remote;

/*
 * Told as a GET's body arrives, for a caller that works on the first bytes
 * while the rest is on the way: the body's first `have` bytes are at p
 * (valid during the call only).  After a retry the count starts again from
 * zero with the same bytes.  A backend may also never call it: the whole
 * body is in out when the get returns, as always.
 */
struct remote_progress {
	void (*arrived)(void *arg, const uint8_t *p, size_t have);
	void *arg;
};

/* What an object becomes: out from cur (cur->len 0 and exists 0 when it is
 * not there).  0, or -errno to give up. */
typedef int (*remote_update_fn)(const struct buf *cur, int exists, struct buf *out, void *arg);

/* One object of a listing: its name below the listed directory, its size and
 * when it was last written (seconds since the epoch).  0 to go on, or
 * -errno to stop the listing with that error. */
typedef int (*remote_list_fn)(const char *name, uint64_t size, int64_t mtime, void *arg);

struct remote_ops {
	const char *scheme;
	/* bytes [off, off + len) of name appended to out (len REMOTE_WHOLE:
	 * to the end); -EFBIG past cap bytes.  pr: NULL, or told as the
	 * bytes arrive. */
	int (*get)(struct remote *r, const char *name, uint64_t off, uint64_t len, struct buf *out,
		   size_t cap, const struct remote_progress *pr);
	/* Store the file at path under name.  With may_move the backend may
	 * take the file (rename) instead of copying it. */
	int (*put_file)(struct remote *r, const char *name, const char *path, int may_move);
	int (*put_buf)(struct remote *r, const char *name, const void *p, size_t n);
	/* 1 present, 0 absent, or -errno */
	int (*exists)(struct remote *r, const char *name);
	void (*free)(struct remote *r);
	/* optional (NULL: a get then a put, the last writer winning); see
	 * remote_update */
	int (*update)(struct remote *r, const char *name, size_t cap, remote_update_fn fn,
		      void *arg);
	/* optional (NULL: not done); see remote_preconnect, remote_adopt */
	int (*preconnect)(struct remote *r, int n, int *fds);
	void (*adopt)(struct remote *r, const int *fds, int n, uint64_t *used);
	/* optional (NULL: -EOPNOTSUPP); see remote_list, remote_delete */
	int (*list)(struct remote *r, const char *dir, remote_list_fn fn, void *arg);
	int (*del)(struct remote *r, const char *name);
};

struct remote {
	const struct remote_ops *ops;
	char *url; /* as given, for messages (never holds secrets) */
	int read_only;
	int offline; /* remote_config.offline on a network remote: not used */
	void *priv;
};

/*
 * What a remote is opened with besides its URL.  The remote reads no
 * environment: the command fills this in (tools/cli.c, from the
 * environment, the config file and its options) and passes it down.
 * Strings are borrowed (they must outlive the remote); NULL or "" is unset.
 */
struct remote_config {
	double timeout; /* seconds for one operation, retries included; 0: 60 */
	int insecure; /* TLS certificates not verified (said loudly at open) */
	int offline; /* a network remote is not used: keys and content local */
	const char *token; /* bearer token for http(s) */
	const char *read_token; /* for read remotes instead of token; "" none */
	int read_token_set; /* read_token was given (even empty) */
	const char *netrc; /* curl's netrc file; NULL: ~/.netrc */
	const char *ca_bundle, *client_cert, *client_key;
	/* S3 */
	const char *key_id, *secret, *session_token, *region, *endpoint;
	int path_style; /* 1 path style, -1 virtual-hosted, 0 path style exactly
			 * when an endpoint is given */
	/* the AWS CLI's files, read for what the fields above leave unset */
	const char *aws_profile; /* NULL: "default" */
	const char *aws_credentials, *aws_config; /* their paths; NULL: not read */
};

/* url without its user and password, for messages; malloc'd, NULL: ENOMEM. */
char *remote_redact(const char *url);

/*
 * Open by URL: file:///abs/dir, http(s)://host/path, s3://bucket/prefix,
 * with cfg (NULL: the defaults).  -EINVAL with a logged reason.
 */
MUST_CHECK int remote_open(const char *url, int read_only, const struct remote_config *cfg,
			   struct remote **out);
void remote_free(struct remote *r);

MUST_CHECK int remote_get(struct remote *r, const char *name, uint64_t off, uint64_t len,
			  struct buf *out, size_t cap);
MUST_CHECK int remote_get_progress(struct remote *r, const char *name, uint64_t off, uint64_t len,
				   struct buf *out, size_t cap, const struct remote_progress *pr);
MUST_CHECK int remote_put_file(struct remote *r, const char *name, const char *path, int may_move);
MUST_CHECK int remote_put_buf(struct remote *r, const char *name, const void *p, size_t n);
int remote_exists(struct remote *r, const char *name);
/*
 * Replace name with what fn makes of it, atomically against other writers
 * where the backend allows: file:// under a lock, HTTP and S3 by
 * conditional PUT (If-Match on the ETag read, If-None-Match: * for a new
 * object), fn running again on the winner's content when a write lost.
 * A server that ignores the conditions leaves the last writer winning.
 */
MUST_CHECK int remote_update(struct remote *r, const char *name, size_t cap, remote_update_fn fn,
			     void *arg);

/*
 * The objects directly below dir ("packs", "keys"...), in no order: fn is
 * told each one's name, size and last write.  A directory that does not
 * exist lists nothing.  -EOPNOTSUPP where the backend cannot list (plain
 * HTTP needs a server that answers a directory with nginx's autoindex
 * JSON), after one logged line saying so.
 */
MUST_CHECK int remote_list(struct remote *r, const char *dir, remote_list_fn fn, void *arg);
/* Delete name: 0, or 0 when it was not there; -EROFS on a read remote. */
int remote_delete(struct remote *r, const char *name);

/*
 * Connections opened ahead, for another process to use: up to n TCP
 * connects started now, without waiting, to the address r's last request
 * went to (the server, or the proxy); their descriptors go into fds.
 * Returns how many (0 where the backend has none: file://, or nothing
 * asked yet).  The caller owns the descriptors.
 */
int remote_preconnect(struct remote *r, int n, int *fds);
/*
 * Give r sockets from remote_preconnect (made before a fork): its next new
 * connections take one still open to the address they are for instead of
 * connecting, so their first request costs no handshake.  r owns them
 * from here (the rest are closed when r is freed); *used (may be NULL) is
 * incremented for each one taken.
 */
void remote_adopt(struct remote *r, const int *fds, int n, uint64_t *used);

/* Backends, for remote.c: file:// and http(s):// / s3:// (remote/http.c). */
int remote_file_open(const char *url, struct remote *r);
int remote_http_open(const char *url, const struct remote_config *cfg, struct remote *r);

#endif
