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
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
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

int sources_iter_init(struct sources_iter *it, const struct buf *raw)
{
	if (raw->len < 16 || memcmp(raw->p, MAGIC, 8))
		return -EBADMSG;
	memcpy(&it->left, raw->p + 8, 8);
	it->p = raw->p + 16;
	it->end = raw->p + raw->len;
	return 0;
}

int sources_next(struct sources_iter *it, struct source_rec *r)
{
	uint16_t len;

	if (it->left == 0)
		return it->p == it->end ? 0 : -EBADMSG;
	if (it->end - it->p < 2)
		return -EBADMSG;
	memcpy(&len, it->p, 2);
	it->p += 2;
	if ((size_t)(it->end - it->p) < (size_t)len + 52 || len == 0 || len >= sizeof(r->rel))
		return -EBADMSG;
	memcpy(r->rel, it->p, len);
	r->rel[len] = '\0';
	it->p += len;
	memcpy(&r->size, it->p, 8);
	memcpy(r->want.b, it->p + 8, 32);
	memcpy(&r->sec, it->p + 40, 8);
	memcpy(&r->nsec, it->p + 48, 4);
	it->p += 52;
	it->left--;
	if (memchr(r->rel, 0, len) || r->rel[0] == '/' || r->nsec >= 1000000000u)
		return -EBADMSG;
	return 1;
}

/*
 * Check the whole manifest, then apply it: each file is opened beneath src
 * without following a symlink anywhere on its path, so a manifest (or a
 * checkout with symlinks in it) never sets a time outside src.
 */
int sources_touch(const char *src, const struct buf *raw, struct touch_stats *st)
{
	struct sources_iter it;
	struct source_rec *r = malloc(sizeof(*r));
	int dfd = -1, rc;

	memset(st, 0, sizeof(*st));
	if (!r)
		return -ENOMEM;
	rc = sources_iter_init(&it, raw);
	while (!rc && (rc = sources_next(&it, r)) == 1)
		rc = 0;
	if (rc)
		goto out;
	dfd = open(src, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0) {
		rc = -errno;
		goto out;
	}
	sources_iter_init(&it, raw);
	while (sources_next(&it, r) == 1) {
		struct open_how how;
		struct cas_id got;
		struct stat sb;
		int fd;

		memset(&how, 0, sizeof(how));
		how.flags = O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC;
		how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
		fd = (int)syscall(SYS_openat2, dfd, r->rel, &how, sizeof(how));
		if (fd < 0 || fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode)) {
			if (fd >= 0)
				close(fd);
			st->missing++;
			continue;
		}
		if ((uint64_t)sb.st_size != r->size || cas_hash_fd(fd, &got) ||
		    cas_id_cmp(&got, &r->want)) {
			close(fd);
			st->changed++;
			continue;
		}
		if (sb.st_mtim.tv_sec == r->sec && (uint32_t)sb.st_mtim.tv_nsec == r->nsec) {
			st->same++;
		} else {
			struct timespec ts[2] = { { 0, UTIME_OMIT }, { r->sec, r->nsec } };

			if (futimens(fd, ts) < 0) {
				rc = -errno;
				log_err("touch-sources: cannot set mtime of '%s/%s': %s",
					qpath(src), qpath(r->rel), strerror(errno));
				close(fd);
				goto out;
			}
			st->touched++;
		}
		close(fd);
	}
out:
	if (dfd >= 0)
		close(dfd);
	free(r);
	return rc;
}
