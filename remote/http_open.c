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
		const char *bucket = url + 5, *slash = strchr(bucket, '/');
		const char *ep = cfg->endpoint, *region = cfg->region;
		const char *key = cfg->key_id, *secret = cfg->secret;
		const char *session = cfg->session_token;
		char f_key[256], f_secret[256], f_session[4096], f_region[64], f_ep[512];
		size_t blen = slash ? (size_t)(slash - bucket) : strlen(bucket);
		const char *prefix = slash ? slash + 1 : "";
		int path_style;

		/* then the AWS CLI's files, as it reads them: the given values win */
		if (!set(key) || !set(secret)) {
			if (!aws_profile(cfg, 0, "aws_access_key_id", f_key, sizeof(f_key)) &&
			    !aws_profile(cfg, 0, "aws_secret_access_key", f_secret,
					 sizeof(f_secret))) {
				key = f_key;
				secret = f_secret;
				if (!aws_profile(cfg, 0, "aws_session_token", f_session,
						 sizeof(f_session)))
					session = f_session;
			}
		}
		if (!set(region) && !aws_profile(cfg, 1, "region", f_region, sizeof(f_region)))
			region = f_region;
		if (!set(ep) && !aws_profile(cfg, 1, "endpoint_url", f_ep, sizeof(f_ep)))
			ep = f_ep;
		if (!region || !*region)
			region = "us-east-1";
		if (blen == 0) {
			log_err("remote '%s': no bucket (use s3://bucket/prefix)", url);
			rc = -EINVAL;
			goto fail;
		}
		if (!set(key) || !set(secret)) {
			log_err("remote '%s': no credentials: set AWS_ACCESS_KEY_ID and "
				"AWS_SECRET_ACCESS_KEY, or give profile '%s' keys in %s",
				url, profile_name(cfg),
				set(cfg->aws_credentials) ? cfg->aws_credentials
							  : "~/.aws/credentials");
			rc = -EINVAL;
			goto fail;
		}
		/* a custom endpoint (MinIO, Ceph RGW, R2...) means path style unless told */
		path_style = cfg->path_style ? cfg->path_style > 0 : set(ep);
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
