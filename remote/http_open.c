/*
 * Opening an http(s):// or s3:// remote: its base URL, the bearer token
 * (the read token for a read remote), TLS settings, and for S3 the
 * bucket's URL (path or virtual-hosted style), region and credentials,
 * from the remote_config and then the AWS CLI's files.
 */
#define _GNU_SOURCE
#include "http.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

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

static int set(const char *s)
{
	return s && *s;
}

static const char *profile_name(const struct remote_config *cfg)
{
	return set(cfg->aws_profile) ? cfg->aws_profile : "default";
}

/*
 * name's value in the profile's section of the credentials file ([NAME])
 * or the config file ([profile NAME], [default]).  0, or -ENOENT.
 */
static int aws_profile(const struct remote_config *cfg, int config, const char *name, char *out,
		       size_t n)
{
	char want[300], line[4096];
	const char *prof = profile_name(cfg);
	const char *path = config ? cfg->aws_config : cfg->aws_credentials;
	int in = 0, rc = -ENOENT;
	FILE *f = set(path) ? fopen(path, "re") : NULL;

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

static const char *opt_str(const char *s)
{
	return set(s) ? s : NULL;
}

/* S3's settings: the remote_config's, then the AWS CLI's files, as it reads them. */
struct s3_settings {
	const char *key, *secret, *session, *region, *endpoint;
	char f_key[256], f_secret[256], f_session[4096], f_region[64], f_ep[512];
};

static void s3_settings(const struct remote_config *cfg, struct s3_settings *st)
{
	st->key = cfg->key_id;
	st->secret = cfg->secret;
	st->session = cfg->session_token;
	st->region = cfg->region;
	st->endpoint = cfg->endpoint;
	if (!set(st->key) || !set(st->secret)) {
		if (!aws_profile(cfg, 0, "aws_access_key_id", st->f_key, sizeof(st->f_key)) &&
		    !aws_profile(cfg, 0, "aws_secret_access_key", st->f_secret,
				 sizeof(st->f_secret))) {
			st->key = st->f_key;
			st->secret = st->f_secret;
			if (!aws_profile(cfg, 0, "aws_session_token", st->f_session,
					 sizeof(st->f_session)))
				st->session = st->f_session;
		}
	}
	if (!set(st->region) && !aws_profile(cfg, 1, "region", st->f_region, sizeof(st->f_region)))
		st->region = st->f_region;
	if (!set(st->endpoint) && !aws_profile(cfg, 1, "endpoint_url", st->f_ep, sizeof(st->f_ep)))
		st->endpoint = st->f_ep;
	if (!set(st->region))
		st->region = "us-east-1";
}

/*
 * h->base (the prefix's URL), bucket_url and key_prefix of bucket (blen
 * bytes) and prefix: below a custom endpoint in path or virtual-hosted
 * style, else at AWS.  0 or -ENOMEM.
 */
static int s3_urls(struct http_remote *h, const char *bucket, size_t blen, const char *prefix,
		   const char *ep, const char *region, int path_style)
{
	size_t len, bl;
	int rc;

	while (*prefix == '/')
		prefix++;
	len = strlen(prefix);
	while (len && prefix[len - 1] == '/')
		len--;
	if (set(ep)) {
		size_t el = strlen(ep);

		while (el && ep[el - 1] == '/')
			el--;
		if (path_style) {
			rc = asprintf(&h->base, "%.*s/%.*s%s%.*s", (int)el, ep, (int)blen, bucket,
				      len ? "/" : "", (int)len, prefix);
		} else {
			const char *sch = strstr(ep, "://");
			const char *host = sch ? sch + 3 : ep;

			rc = asprintf(&h->base, "%.*s%.*s.%.*s%s%.*s", (int)(host - ep), ep,
				      (int)blen, bucket, (int)(el - (size_t)(host - ep)), host,
				      len ? "/" : "", (int)len, prefix);
		}
	} else {
		rc = asprintf(&h->base, "https://%.*s.s3.%s.amazonaws.com%s%.*s", (int)blen, bucket,
			      region, len ? "/" : "", (int)len, prefix);
	}
	if (rc < 0) {
		h->base = NULL;
		return -ENOMEM;
	}
	/* the bucket's URL is base without the prefix */
	bl = strlen(h->base) - (len ? len + 1 : 0);
	h->bucket_url = strndup(h->base, bl);
	if (asprintf(&h->key_prefix, "%.*s%s", (int)len, prefix, len ? "/" : "") < 0)
		h->key_prefix = NULL;
	return h->bucket_url && h->key_prefix ? 0 : -ENOMEM;
}

static int open_s3(struct http_remote *h, const char *url, const struct remote_config *cfg)
{
	const char *bucket = url + 5, *slash = strchr(bucket, '/');
	size_t blen = slash ? (size_t)(slash - bucket) : strlen(bucket);
	struct s3_settings *st = calloc(1, sizeof(*st));
	int rc;

	if (!st)
		return -ENOMEM;
	s3_settings(cfg, st);
	if (blen == 0) {
		log_err("remote '%s': no bucket (use s3://bucket/prefix)", url);
		rc = -EINVAL;
	} else if (!set(st->key) || !set(st->secret)) {
		log_err("remote '%s': no credentials: set AWS_ACCESS_KEY_ID and "
			"AWS_SECRET_ACCESS_KEY, or give profile '%s' keys in %s",
			url, profile_name(cfg),
			set(cfg->aws_credentials) ? cfg->aws_credentials : "~/.aws/credentials");
		rc = -EINVAL;
	} else {
		/* a custom endpoint (MinIO, Ceph RGW, R2...) means path style unless told */
		rc = s3_urls(h, bucket, blen, slash ? slash + 1 : "", st->endpoint, st->region,
			     cfg->path_style ? cfg->path_style > 0 : set(st->endpoint));
	}
	h->s3 = 1;
	if (!rc && (asprintf(&h->sigv4, "aws:amz:%s:s3", st->region) < 0 ||
		    asprintf(&h->userpwd, "%s:%s", st->key, st->secret) < 0))
		rc = -ENOMEM;
	if (!rc && set(st->session) &&
	    add_auth_header(h, "x-amz-security-token", NULL, st->session))
		rc = -ENOMEM;
	explicit_bzero(st, sizeof(*st));
	free(st);
	return rc;
}

int remote_http_open(const char *url, const struct remote_config *cfg, struct remote *r)
{
	struct http_remote *h = calloc(1, sizeof(*h));
	/* a read remote may be another server: it gets the read token when
	 * one is set (empty: none), never the write token */
	const char *tok = r->read_only && cfg->read_token_set ? cfg->read_token : cfg->token;
	size_t len;
	int rc = -ENOMEM;

	if (!h)
		return -ENOMEM;
	http_global_init();
	pthread_mutex_init(&h->lock, NULL);
	h->timeout = cfg->timeout > 0 ? cfg->timeout : 60.0;
	h->insecure = cfg->insecure;
	h->netrc = opt_str(cfg->netrc);
	h->ca_bundle = opt_str(cfg->ca_bundle);
	h->client_cert = opt_str(cfg->client_cert);
	h->client_key = opt_str(cfg->client_key);
	if (strncmp(url, "s3://", 5) == 0) {
		rc = open_s3(h, url, cfg);
		if (rc)
			goto fail;
	} else {
		len = strlen(url);
		while (len > 8 && url[len - 1] == '/')
			len--;
		h->base = strndup(url, len);
		if (!h->base)
			goto fail;
		if (set(tok) && add_auth_header(h, "Authorization", "Bearer", tok))
			goto fail;
	}
	h->https = strncasecmp(h->base, "https://", 8) == 0;
	h->shown = remote_redact(h->base);
	if (!h->shown)
		goto fail;
	if (h->insecure)
		log_warn("TLS verification is OFF for %s (--insecure, STASHFS_INSECURE=1): "
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
