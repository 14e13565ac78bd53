/*
 * Listings of an http(s):// or s3:// remote (remote_list): S3's
 * ListObjectsV2, its XML read by hand within caps, and nginx's autoindex
 * JSON.  Every name handed on is plain (no '/', no quote, at most 255
 * bytes); anything else in an answer is skipped or refused.
 */
#define _GNU_SOURCE
#include "http.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define LIST_PAGE_CAP (16u << 20) /* one ListObjectsV2 page (1000 keys: ~300 kB) */
#define LIST_DIR_CAP (256u << 20) /* one autoindex answer: a million names */
#define LIST_MAX_PAGES 100000

/* Percent-encoding as SigV4's canonical query wants it: all but A-Za-z0-9-_.~ */
static int query_enc(struct buf *b, const char *s, size_t n)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t i;
	int rc = 0;

	for (i = 0; i < n && !rc; i++) {
		unsigned char ch = (unsigned char)s[i];

		if ((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
		    (ch >= '0' && ch <= '9') || ch == '-' || ch == '_' || ch == '.' || ch == '~') {
			rc = buf_append(b, s + i, 1);
		} else {
			char e[3] = { '%', hex[ch >> 4], hex[ch & 15] };

			rc = buf_append(b, e, 3);
		}
	}
	return rc;
}

/* A ListObjectsV2 URL, its query sorted and encoded as SigV4 signs it. */
static int list_url(struct buf *url, const char *bucket_url, const struct buf *token,
		    const struct buf *want)
{
	int rc;

	buf_reset(url);
	rc = buf_printf(url, "%s/?", bucket_url);
	if (!rc && token->len) {
		rc = buf_append(url, "continuation-token=", 19);
		if (!rc)
			rc = query_enc(url, (const char *)token->p, token->len);
		if (!rc)
			rc = buf_append(url, "&", 1);
	}
	if (!rc)
		rc = buf_append(url, "list-type=2&prefix=", 19);
	if (!rc)
		rc = query_enc(url, (const char *)want->p, want->len);
	if (!rc)
		rc = buf_append(url, "", 1);
	return rc;
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
	int rc, pages;

	rc = buf_printf(&want, "%s%s/", h->key_prefix, dir);
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
		rc = list_url(&url, h->bucket_url, &token, &want);
		if (rc)
			break;
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
		rc = buf_append(&token, t, tl);
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

int http_list(struct remote *r, const char *dir, remote_list_fn fn, void *arg)
{
	struct http_remote *h = r->priv;

	return h->s3 ? s3_list(r, dir, fn, arg) : autoindex_list(r, dir, fn, arg);
}
