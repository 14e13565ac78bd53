/* URL dispatch and the thin wrappers around struct remote_ops. */
#define _GNU_SOURCE
#include "remote.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

char *remote_redact(const char *url)
{
	const char *p = strstr(url, "://"), *at;
	char *out;

	/*
	 * Everything up to the last '@' goes: a password may hold '/', ':'
	 * or '@' itself, and no parser agrees on where such a URL's
	 * authority ends.  A path with an '@' loses more than it must,
	 * never less.
	 */
	p = p ? p + 3 : url;
	at = strrchr(p, '@');
	if (!at)
		return strdup(url);
	if (asprintf(&out, "%.*s***@%s", (int)(p - url), url, at + 1) < 0)
		return NULL;
	return out;
}

int remote_open(const char *url, int read_only, const struct remote_config *cfg,
		struct remote **out)
{
	static const struct remote_config none = { 0 };

	struct remote *r = calloc(1, sizeof(*r));
	int rc;

	if (!cfg)
		cfg = &none;
	if (!r)
		return -ENOMEM;
	r->url = remote_redact(url); /* what messages show */
	r->read_only = read_only;
	if (!r->url) {
		rc = -ENOMEM;
		goto fail;
	}
	if (strncmp(url, "file://", 7) == 0) {
		rc = remote_file_open(url, r);
	} else if (strncasecmp(url, "http://", 7) == 0 || strncasecmp(url, "https://", 8) == 0 ||
		   strncmp(url, "s3://", 5) == 0) {
		rc = remote_http_open(url, cfg, r);
	} else {
		log_err("remote '%s': unsupported scheme (use file:///dir, http(s)://host/path "
			"or s3://bucket/prefix)",
			r->url);
		rc = -EINVAL;
	}
	if (rc)
		goto fail;
	r->offline = strncmp(url, "file://", 7) != 0 && cfg->offline;
	*out = r;
	return 0;
fail:
	free(r->url);
	free(r);
	return rc;
}

void remote_free(struct remote *r)
{
	if (!r)
		return;
	if (r->ops && r->ops->free)
		r->ops->free(r);
	free(r->url);
	free(r);
}

int remote_get(struct remote *r, const char *name, uint64_t off, uint64_t len, struct buf *out,
	       size_t cap)
{
	return remote_get_progress(r, name, off, len, out, cap, NULL);
}

/* --offline: nothing goes to a network remote; said once per process. */
static int offline(struct remote *r)
{
	static int told;

	if (!r->offline)
		return 0;
	if (!__atomic_exchange_n(&told, 1, __ATOMIC_RELAXED))
		log_warn("offline: %s is not used (--offline)", r->url);
	return -ENETDOWN;
}

int remote_get_progress(struct remote *r, const char *name, uint64_t off, uint64_t len,
			struct buf *out, size_t cap, const struct remote_progress *pr)
{
	if (r->offline)
		return offline(r);
	return r->ops->get(r, name, off, len, out, cap, pr);
}

int remote_put_file(struct remote *r, const char *name, const char *path, int may_move)
{
	if (r->read_only)
		return -EROFS;
	if (r->offline)
		return offline(r);
	return r->ops->put_file(r, name, path, may_move);
}

int remote_put_buf(struct remote *r, const char *name, const void *p, size_t n)
{
	if (r->read_only)
		return -EROFS;
	if (r->offline)
		return offline(r);
	return r->ops->put_buf(r, name, p, n);
}

int remote_exists(struct remote *r, const char *name)
{
	if (r->offline)
		return offline(r);
	return r->ops->exists(r, name);
}

int remote_update(struct remote *r, const char *name, size_t cap, remote_update_fn fn, void *arg)
{
	struct buf cur = BUF_INIT, out = BUF_INIT;
	int rc;

	if (r->read_only)
		return -EROFS;
	if (r->offline)
		return offline(r);
	if (r->ops->update)
		return r->ops->update(r, name, cap, fn, arg);
	rc = r->ops->get(r, name, 0, REMOTE_WHOLE, &cur, cap, NULL);
	if (rc == 0 || rc == -ENOENT)
		rc = fn(&cur, rc == 0, &out, arg);
	if (rc == 0)
		rc = r->ops->put_buf(r, name, out.p, out.len);
	buf_free(&cur);
	buf_free(&out);
	return rc;
}

int remote_list(struct remote *r, const char *dir, remote_list_fn fn, void *arg)
{
	if (r->offline)
		return offline(r);
	if (!r->ops->list) {
		log_err("%s: this remote cannot be listed", r->url);
		return -EOPNOTSUPP;
	}
	return r->ops->list(r, dir, fn, arg);
}

int remote_delete(struct remote *r, const char *name)
{
	int rc;

	if (r->read_only)
		return -EROFS;
	if (r->offline)
		return offline(r);
	if (!r->ops->del)
		return -EOPNOTSUPP;
	rc = r->ops->del(r, name);
	return rc == -ENOENT ? 0 : rc;
}

int remote_preconnect(struct remote *r, int n, int *fds)
{
	if (r->offline)
		return 0;
	return r->ops->preconnect ? r->ops->preconnect(r, n, fds) : 0;
}

void remote_adopt(struct remote *r, const int *fds, int n, uint64_t *used)
{
	int i;

	if (r->ops->adopt) {
		r->ops->adopt(r, fds, n, used);
		return;
	}
	for (i = 0; i < n; i++)
		close(fds[i]);
}
