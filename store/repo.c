/* Repo: store + remotes, and catalogs to and from them; see repo.h (keys: store/keys.c). */
#define _GNU_SOURCE
#include "repo.h"
#include "prune.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zstd.h>

/* The primary's URL: the spec's, or file://STORE/remote (in def). */
static int primary_url(const struct repo_spec *spec, char *def, size_t n, const char **url)
{
	char cwd[PATH_MAX];

	*url = spec->remote;
	if (*url && **url)
		return 0;
	if (spec->store_path[0] == '/') {
		snprintf(def, n, "file://%s/remote", spec->store_path);
	} else {
		if (!getcwd(cwd, sizeof(cwd)))
			return -errno;
		snprintf(def, n, "file://%s/%s/remote", cwd, spec->store_path);
	}
	*url = def;
	return 0;
}

int repo_open(struct repo *r, const struct repo_spec *spec)
{
	char def[PATH_MAX + 32];
	const char *remote_url;
	int rc, i;

	memset(r, 0, sizeof(*r));
	r->spec = spec;
	rc = store_open(spec->store_path, &r->store);
	if (rc)
		return rc;
	rc = primary_url(spec, def, sizeof(def), &remote_url);
	if (rc)
		goto fail;
	rc = remote_open(remote_url, 0, spec->cfg, &r->primary);
	if (rc)
		goto fail;
	if (spec->n_reads > REPO_MAX_READS) {
		log_err("too many read remotes (%d, at most %d)", spec->n_reads, REPO_MAX_READS);
		rc = -EINVAL;
		goto fail;
	}
	for (i = 0; i < spec->n_reads; i++) {
		rc = remote_open(spec->reads[i], 1, spec->cfg, &r->reads[i]);
		if (rc)
			goto fail;
		r->n_reads++;
	}
	return 0;
fail:
	repo_close(r);
	return rc;
}

void repo_close(struct repo *r)
{
	int i;

	remote_free(r->primary);
	if (!r->shares) {
		for (i = 0; i < r->n_reads; i++)
			remote_free(r->reads[i]);
		store_close(r->store);
	}
	memset(r, 0, sizeof(*r));
}

int repo_split(const struct repo *r, struct repo *out)
{
	char def[PATH_MAX + 32];
	const char *url;
	int rc;

	*out = *r;
	out->shares = 1;
	out->primary = NULL;
	rc = primary_url(r->spec, def, sizeof(def), &url);
	if (!rc)
		rc = remote_open(url, 0, r->spec->cfg, &out->primary);
	if (rc)
		memset(out, 0, sizeof(*out));
	return rc;
}

int repo_preconnect(struct repo *r, int n, int *fds)
{
	return remote_preconnect(r->primary, n, fds);
}

void repo_adopt(struct repo *r, const int *fds, int n, uint64_t *used)
{
	remote_adopt(r->primary, fds, n, used);
}

struct remote *repo_remote(struct repo *r, int i)
{
	return i == 0 ? r->primary : r->reads[i - 1];
}

int repo_get_progress(struct repo *r, const char *name, uint64_t off, uint64_t len, struct buf *out,
		      size_t cap, const struct remote_progress *pr)
{
	int i, rc = -ENOENT;
	size_t start = out->len;

	for (i = 0; i <= r->n_reads; i++) {
		out->len = start;
		rc = remote_get_progress(repo_remote(r, i), name, off, len, out, cap, pr);
		if (rc != -ENOENT)
			return rc;
	}
	return rc;
}

int repo_get(struct repo *r, const char *name, uint64_t off, uint64_t len, struct buf *out,
	     size_t cap)
{
	return repo_get_progress(r, name, off, len, out, cap, NULL);
}

void repo_object_name(char *out, const char *dir, const struct cas_id *id)
{
	char hex[CAS_HEX_LEN + 1];

	cas_id_hex(id, hex);
	snprintf(out, REPO_NAME_MAX, "%s/%s", dir, hex);
}

static const char *tmp_name(const struct repo *r)
{
	static __thread char tmp[PATH_MAX + 64];

	snprintf(tmp, sizeof(tmp), "%s/cat-%d-%ld", store_tmpdir(r->store), (int)getpid(),
		 (long)gettid());
	return tmp;
}

static void unlink_tmp(const struct repo *r)
{
	unlink(tmp_name(r));
}

/*
 * Unpack a catalog object into tmp, hashing as it goes: memory
 * stays a few buffers whatever the catalog's size, and no more than the
 * declared size is ever written.
 */
static int inflate_catalog(const struct buf *z, unsigned long long rsz, const char *tmp,
			   struct cas_id *got, const char *hex)
{
	ZSTD_DCtx *dc = ZSTD_createDCtx();
	struct cas_hasher *hs = cas_hasher_new();
	ZSTD_inBuffer in = { z->p, z->len, 0 };
	size_t cap = ZSTD_DStreamOutSize(), left = 1;
	uint8_t *o = malloc(cap);
	unsigned long long made = 0;
	int fd = -1, rc = 0;

	if (!dc || !hs || !o) {
		rc = -ENOMEM;
		goto out;
	}
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		rc = -errno;
		log_err("catalog %s: cannot cache: %s", hex, strerror(-rc));
		goto out;
	}
	while (left) {
		ZSTD_outBuffer ob = { o, cap, 0 };

		left = ZSTD_decompressStream(dc, &ob, &in);
		if (ZSTD_isError(left)) {
			log_err("catalog %s: corrupt or truncated (%s)", hex,
				ZSTD_getErrorName(left));
			rc = -EBADMSG;
			break;
		}
		made += ob.pos;
		if (made > rsz) {
			log_err("catalog %s: unpacks past its declared %llu bytes", hex, rsz);
			rc = -EBADMSG;
			break;
		}
		cas_hasher_update(hs, o, ob.pos);
		rc = write_full(fd, o, ob.pos);
		if (rc) {
			log_err("catalog %s: cannot cache: %s", hex, strerror(-rc));
			break;
		}
		if (left && in.pos == in.size && ob.pos < cap) {
			log_err("catalog %s: corrupt or truncated (frame ends early)", hex);
			rc = -EBADMSG;
			break;
		}
	}
	if (!rc && (made != rsz || in.pos != in.size)) {
		log_err("catalog %s: corrupt or truncated (%llu of %llu bytes)", hex, made, rsz);
		rc = -EBADMSG;
	}
	if (!rc && fsync(fd) < 0)
		rc = -errno;
	if (!rc)
		cas_hasher_final(hs, got);
out:
	if (fd >= 0)
		close(fd);
	if (rc && fd >= 0)
		unlink(tmp);
	cas_hasher_free(hs);
	ZSTD_freeDCtx(dc);
	free(o);
	return rc;
}

int repo_catalog(struct repo *r, const struct cas_id *id, struct catalog **out)
{
	char path[PATH_MAX], hex[CAS_HEX_LEN + 1], name[128], why[256];
	struct buf z = BUF_INIT;
	unsigned long long rsz;
	struct cas_id got;
	int rc;

	cas_id_hex(id, hex);
	store_catalog_path(r->store, id, path, sizeof(path));
	rc = catalog_open(path, out, why, sizeof(why));
	if (rc == 0)
		return 0;
	if (rc != -ENOENT)
		log_warn("cached catalog %s: %s; fetching it again", hex,
			 rc == -EBADMSG ? why : strerror(-rc));
	snprintf(name, sizeof(name), "catalogs/%s", hex);
	rc = repo_get(r, name, 0, REMOTE_WHOLE, &z, CATALOG_OBJECT_CAP);
	if (rc) {
		log_err("catalog %s: %s", hex,
			rc == -ENOENT ? "missing on every remote" : strerror(-rc));
		goto out;
	}
	rsz = ZSTD_getFrameContentSize(z.p, z.len);
	if (rsz == ZSTD_CONTENTSIZE_ERROR || rsz == ZSTD_CONTENTSIZE_UNKNOWN ||
	    rsz > CATALOG_MAX_BYTES) {
		log_err("catalog %s: corrupt or truncated (no valid zstd frame)", hex);
		rc = -EBADMSG;
		goto out;
	}
	if (rsz > (unsigned long long)z.len * CATALOG_MAX_RATIO + (1u << 20)) {
		log_err("catalog %s: %zu bytes declare %llu unpacked, past what a catalog "
			"compresses to (%d:1); refusing it",
			hex, z.len, rsz, CATALOG_MAX_RATIO);
		rc = -EBADMSG;
		goto out;
	}
	rc = inflate_catalog(&z, rsz, tmp_name(r), &got, hex);
	if (rc)
		goto out;
	if (cas_id_cmp(&got, id) != 0) {
		log_err("catalog %s: hash mismatch, refusing it", hex);
		unlink_tmp(r);
		rc = -EBADMSG;
		goto out;
	}
	/* validated where it lies, mapped: no second copy in memory */
	rc = catalog_open(tmp_name(r), out, why, sizeof(why));
	if (rc) {
		log_err("catalog %s: %s", hex, rc == -EBADMSG ? why : strerror(-rc));
		unlink_tmp(r);
		goto out;
	}
	if (rename(tmp_name(r), path) < 0) {
		rc = -errno;
		log_err("catalog %s: cannot cache in %s: %s", hex, qpath(store_path(r->store)),
			strerror(-rc));
		unlink_tmp(r);
		catalog_close(*out);
		*out = NULL;
		goto out;
	}
	fsync_dir_of(path);
	store_catalog_note(r->store, id, rsz);
out:
	buf_free(&z);
	return rc;
}

int repo_put_catalog(struct repo *r, const struct buf *img, struct cas_id *id, uint64_t *uploaded)
{
	char path[PATH_MAX], hex[CAS_HEX_LEN + 1], name[128];
	struct buf z = BUF_INIT;
	ZSTD_CCtx *cc = NULL;
	size_t bound, zn;
	int rc;

	cas_hash(img->p, img->len, id);
	cas_id_hex(id, hex);
	store_catalog_path(r->store, id, path, sizeof(path));
	rc = write_file_atomic(path, img->p, img->len, 0600);
	if (rc) {
		log_err("catalog %s: cannot write to store: %s", hex, strerror(-rc));
		return rc;
	}
	store_catalog_note(r->store, id, img->len);
	snprintf(name, sizeof(name), "catalogs/%s", hex);
	rc = remote_exists(r->primary, name);
	if (rc == 1)
		return 0;
	bound = ZSTD_compressBound(img->len);
	rc = buf_reserve(&z, bound);
	if (rc)
		goto out;
	cc = ZSTD_createCCtx();
	if (!cc) {
		rc = -ENOMEM;
		goto out;
	}
	/* multithreaded when libzstd has it; harmless when it does not */
	ZSTD_CCtx_setParameter(cc, ZSTD_c_compressionLevel, 3);
	ZSTD_CCtx_setParameter(cc, ZSTD_c_nbWorkers, 2);
	ZSTD_CCtx_setParameter(cc, ZSTD_c_contentSizeFlag, 1);
	ZSTD_CCtx_setPledgedSrcSize(cc, img->len);
	zn = ZSTD_compress2(cc, z.p, bound, img->p, img->len);
	if (ZSTD_isError(zn)) {
		log_err("catalog %s: compress: %s", hex, ZSTD_getErrorName(zn));
		rc = -EIO;
		goto out;
	}
	z.len = zn;
	rc = remote_put_buf(r->primary, name, z.p, z.len);
	if (rc)
		log_err("catalog %s: upload to %s: %s", hex, r->primary->url, strerror(-rc));
	else
		*uploaded += z.len;
out:
	ZSTD_freeCCtx(cc);
	buf_free(&z);
	return rc;
}
