/* Source manifests and touch-sources; see sources.h. */
#define _GNU_SOURCE
#include "sources.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#define MAGIC "STASHSR1"

static int walk(const char *root, const char *rel, const char *skip, struct buf *out, uint64_t *n)
{
	char path[PATH_MAX];
	struct dirent *de;
	DIR *d;
	int rc = 0;

	snprintf(path, sizeof(path), "%s%s%s", root, *rel ? "/" : "", rel);
	if (skip) {
		char real[PATH_MAX];

		if (realpath(path, real) && !strcmp(real, skip))
			return 0;
	}
	d = opendir(path);
	if (!d) {
		rc = -errno;
		log_err("sources: cannot read directory '%s': %s", qpath(path), strerror(errno));
		return rc;
	}
	while (!rc && (de = readdir(d))) {
		char sub[PATH_MAX], full[PATH_MAX];
		struct stat st;

		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..") ||
		    !strcmp(de->d_name, ".git"))
			continue;
		snprintf(sub, sizeof(sub), "%s%s%s", rel, *rel ? "/" : "", de->d_name);
		snprintf(full, sizeof(full), "%s/%s", root, sub);
		if (lstat(full, &st) < 0)
			continue;
		if (S_ISDIR(st.st_mode)) {
			rc = walk(root, sub, skip, out, n);
		} else if (S_ISREG(st.st_mode)) {
			struct cas_id id;
			uint16_t len = (uint16_t)strlen(sub);
			uint64_t size = (uint64_t)st.st_size;
			int64_t sec = st.st_mtim.tv_sec;
			uint32_t nsec = (uint32_t)st.st_mtim.tv_nsec;
			int fd = open(full, O_RDONLY | O_CLOEXEC);

			if (fd < 0) {
				rc = -errno;
				log_err("sources: cannot read '%s': %s", qpath(full),
					strerror(errno));
				break;
			}
			rc = cas_hash_fd(fd, &id);
			close(fd);
			if (rc)
				break;
			buf_append(out, &len, 2);
			buf_append(out, sub, len);
			buf_append(out, &size, 8);
			buf_append(out, id.b, 32);
			buf_append(out, &sec, 8);
			rc = buf_append(out, &nsec, 4);
			(*n)++;
		}
	}
	closedir(d);
	return rc;
}

int sources_build(const char *src, const char *skip, struct buf *out, uint64_t *nfiles)
{
	uint64_t n = 0;
	int rc;

	buf_reset(out);
	buf_append(out, MAGIC, 8);
	buf_append(out, &n, 8);
	rc = walk(src, "", skip, out, &n);
	if (rc)
		return rc;
	memcpy(out->p + 8, &n, 8);
	*nfiles = n;
	return 0;
}

int sources_put(struct repo *r, const struct buf *raw, struct cas_id *id, uint64_t *uploaded)
{
	char name[128], hex[CAS_HEX_LEN + 1];
	size_t bound = ZSTD_compressBound(raw->len), z;
	struct buf c = BUF_INIT;
	int rc;

	cas_hash(raw->p, raw->len, id);
	cas_id_hex(id, hex);
	snprintf(name, sizeof(name), "sources/%s", hex);
	if (remote_exists(r->primary, name) == 1)
		return 0;
	rc = buf_reserve(&c, bound);
	if (rc)
		return rc;
	z = ZSTD_compress(c.p, bound, raw->p, raw->len, 3);
	if (ZSTD_isError(z)) {
		buf_free(&c);
		return -EIO;
	}
	rc = remote_put_buf(r->primary, name, c.p, z);
	if (!rc)
		*uploaded += z;
	else
		log_err("sources manifest %s: upload to %s: %s", hex, r->primary->url,
			strerror(-rc));
	buf_free(&c);
	return rc;
}

int sources_get(struct repo *r, const struct cas_id *id, struct buf *raw)
{
	char name[128], hex[CAS_HEX_LEN + 1];
	struct buf c = BUF_INIT;
	unsigned long long sz;
	struct cas_id got;
	size_t d;
	int rc;

	cas_id_hex(id, hex);
	snprintf(name, sizeof(name), "sources/%s", hex);
	rc = repo_get(r, name, 0, REMOTE_WHOLE, &c, SOURCES_MAX_BYTES);
	if (rc) {
		log_err("sources manifest %s: %s", hex,
			rc == -ENOENT ? "missing on every remote" : strerror(-rc));
		goto out;
	}
	sz = ZSTD_getFrameContentSize(c.p, c.len);
	if (sz == ZSTD_CONTENTSIZE_ERROR || sz == ZSTD_CONTENTSIZE_UNKNOWN ||
	    sz > SOURCES_MAX_BYTES) {
		log_err("sources manifest %s: corrupt", hex);
		rc = -EBADMSG;
		goto out;
	}
	buf_reset(raw);
	rc = buf_reserve(raw, (size_t)sz);
	if (rc)
		goto out;
	d = ZSTD_decompress(raw->p, (size_t)sz, c.p, c.len);
	if (ZSTD_isError(d) || d != sz) {
		log_err("sources manifest %s: corrupt", hex);
		rc = -EBADMSG;
		goto out;
	}
	raw->len = d;
	cas_hash(raw->p, raw->len, &got);
	if (cas_id_cmp(&got, id)) {
		log_err("sources manifest %s: hash mismatch", hex);
		rc = -EBADMSG;
	}
out:
	buf_free(&c);
	return rc;
}

int sources_touch(const char *src, const struct buf *raw, struct touch_stats *st)
{
	const uint8_t *p = raw->p, *end = raw->p + raw->len;
	uint64_t n, i;

	memset(st, 0, sizeof(*st));
	if (raw->len < 16 || memcmp(p, MAGIC, 8))
		return -EBADMSG;
	memcpy(&n, p + 8, 8);
	p += 16;
	for (i = 0; i < n; i++) {
		char rel[PATH_MAX], full[PATH_MAX];
		uint16_t len;
		uint64_t size;
		struct cas_id want, got;
		int64_t sec;
		uint32_t nsec;
		struct stat sb;
		int fd, rc;

		if (end - p < 2)
			return -EBADMSG;
		memcpy(&len, p, 2);
		p += 2;
		if ((size_t)(end - p) < (size_t)len + 52 || len == 0 || len >= sizeof(rel))
			return -EBADMSG;
		memcpy(rel, p, len);
		rel[len] = '\0';
		p += len;
		memcpy(&size, p, 8);
		memcpy(want.b, p + 8, 32);
		memcpy(&sec, p + 40, 8);
		memcpy(&nsec, p + 48, 4);
		p += 52;
		if (strstr(rel, "..") || rel[0] == '/' || nsec >= 1000000000u)
			return -EBADMSG;
		snprintf(full, sizeof(full), "%s/%s", src, rel);
		if (lstat(full, &sb) < 0 || !S_ISREG(sb.st_mode)) {
			st->missing++;
			continue;
		}
		if ((uint64_t)sb.st_size != size) {
			st->changed++;
			continue;
		}
		fd = open(full, O_RDONLY | O_CLOEXEC);
		if (fd < 0) {
			st->changed++;
			continue;
		}
		rc = cas_hash_fd(fd, &got);
		if (rc || cas_id_cmp(&got, &want)) {
			close(fd);
			st->changed++;
			continue;
		}
		if (sb.st_mtim.tv_sec == sec && (uint32_t)sb.st_mtim.tv_nsec == nsec) {
			st->same++;
		} else {
			struct timespec ts[2] = { { 0, UTIME_OMIT }, { sec, nsec } };

			if (futimens(fd, ts) < 0) {
				rc = -errno;
				log_err("touch-sources: cannot set mtime of '%s': %s", qpath(full),
					strerror(errno));
				close(fd);
				return rc;
			}
			st->touched++;
		}
		close(fd);
	}
	return 0;
}
