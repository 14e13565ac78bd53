/*
 * Extended attributes of the writable layer: a snapshot file's come from
 * the catalog until one changes; then all of that inode's are copied into
 * the xattrs table, which holds them from there on.
 */
#define _GNU_SOURCE
#include "overlay_int.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <time.h>

/* ---- xattrs ---- */

/* Are ino's xattrs the table's (made here, or copied up)?  Lock held. */
static int xattrs_in_table(struct ov *ov, uint64_t ino)
{
	return ino > ov->ncat || ovi_set_has(&ov->xups, ino);
}

/* The catalog's xattrs of catalog inode ino. */
static const struct cat_xattr *cat_xattrs(struct ov *ov, uint64_t ino, uint32_t *n)
{
	if (!ov->cat_xattrs) {
		*n = 0;
		return NULL;
	}
	return catalog_xattrs(ov->cat, (uint32_t)(ino - 1), n);
}

/* Before the first change of a catalog inode's xattrs: copy them into
 * the table, which holds them from then on.  In a transaction. */
static int xattrs_copy_up(struct ov *ov, uint64_t ino)
{
	const struct cat_xattr *x;
	sqlite3_stmt *st = NULL;
	uint32_t n, i;
	int rc;

	if (xattrs_in_table(ov, ino))
		return 0;
	x = cat_xattrs(ov, ino, &n);
	rc = ovi_prep(ov, &st, "INSERT OR REPLACE INTO xattrs VALUES(?1,?2,?3)");
	for (i = 0; i < n && !rc; i++) {
		sqlite3_bind_int64(st, 1, (sqlite3_int64)ino);
		sqlite3_bind_text(st, 2, catalog_str(ov->cat, x[i].name_off), (int)x[i].name_len,
				  SQLITE_STATIC);
		sqlite3_bind_blob(st, 3, catalog_str(ov->cat, x[i].value_off), (int)x[i].value_len,
				  SQLITE_STATIC);
		rc = ovi_sqlerr(ov, sqlite3_step(st), "copy xattrs");
		sqlite3_reset(st);
	}
	sqlite3_finalize(st);
	st = NULL;
	if (!rc)
		rc = ovi_prep(ov, &st, "INSERT OR IGNORE INTO xup VALUES(?1)");
	if (!rc) {
		sqlite3_bind_int64(st, 1, (sqlite3_int64)ino);
		rc = ovi_sqlerr(ov, sqlite3_step(st), "copy xattrs");
	}
	sqlite3_finalize(st);
	if (!rc)
		rc = ovi_set_add(&ov->xups, ino);
	if (!rc && n)
		ov->has_xattrs = 1;
	return rc;
}

/* An xattr changed: ctime now.  In a transaction. */
static int xattrs_touch(struct ov *ov, uint64_t ino)
{
	struct ov_attr a;
	int rc = ovi_ensure_row(ov, ino, &a);

	if (rc)
		return rc;
	ovi_now_ts(&a.ctime_s, &a.ctime_ns);
	return ovi_save_row(ov, &a);
}

int ov_setxattr(struct ov *ov, uint64_t ino, const char *name, const void *v, size_t n, int flags)
{
	sqlite3_stmt *st = NULL;
	struct ov_attr a;
	int rc, exists = 0;

	rc = ovi_begin(ov);
	if (!rc)
		rc = ovi_attr_locked(ov, ino, &a);
	if (!rc)
		rc = xattrs_copy_up(ov, ino);
	if (!rc)
		rc = ovi_prep(ov, &st, "SELECT 1 FROM xattrs WHERE ino=?1 AND name=?2");
	if (rc)
		goto out;
	sqlite3_bind_int64(st, 1, (sqlite3_int64)ino);
	sqlite3_bind_text(st, 2, name, -1, SQLITE_STATIC);
	exists = sqlite3_step(st) == SQLITE_ROW;
	sqlite3_finalize(st);
	st = NULL;
	if ((flags & XATTR_CREATE) && exists) {
		rc = -EEXIST;
		goto out;
	}
	if ((flags & XATTR_REPLACE) && !exists) {
		rc = -ENODATA;
		goto out;
	}
	rc = ovi_prep(ov, &st, "INSERT OR REPLACE INTO xattrs VALUES(?1,?2,?3)");
	if (rc)
		goto out;
	sqlite3_bind_int64(st, 1, (sqlite3_int64)ino);
	sqlite3_bind_text(st, 2, name, -1, SQLITE_STATIC);
	sqlite3_bind_blob(st, 3, n ? v : "", (int)n, SQLITE_STATIC);
	rc = ovi_sqlerr(ov, sqlite3_step(st), "set xattr");
	if (!rc)
		ov->has_xattrs = 1;
	if (!rc)
		rc = xattrs_touch(ov, ino);
out:
	sqlite3_finalize(st);
	return ovi_end(ov, rc);
}

/* Copy value (len bytes) out as getxattr does: size only when n is 0. */
static ssize_t xattr_out(const void *value, size_t len, void *v, size_t n)
{
	if (n == 0)
		return (ssize_t)len;
	if (len > n)
		return -ERANGE;
	if (len) /* an empty value may come as NULL */
		memcpy(v, value, len);
	return (ssize_t)len;
}

ssize_t ov_getxattr(struct ov *ov, uint64_t ino, const char *name, void *v, size_t n)
{
	sqlite3_stmt *st = NULL;
	ssize_t rc;

	if (!ov->has_xattrs && !ov->cat_xattrs)
		return -ENODATA;
	pthread_rwlock_rdlock(&ov->lock);
	if (!xattrs_in_table(ov, ino)) {
		uint32_t k, nx;
		const struct cat_xattr *x = cat_xattrs(ov, ino, &nx);
		size_t nl = strlen(name);

		rc = -ENODATA;
		for (k = 0; k < nx; k++)
			if (x[k].name_len == nl &&
			    !memcmp(catalog_str(ov->cat, x[k].name_off), name, nl))
				rc = xattr_out(catalog_str(ov->cat, x[k].value_off), x[k].value_len,
					       v, n);
		pthread_rwlock_unlock(&ov->lock);
		return rc;
	}
	rc = ov->has_xattrs ? ovi_prep(ov, &st, "SELECT value FROM xattrs WHERE ino=?1 AND name=?2")
			    : 1;
	if (!rc) {
		sqlite3_bind_int64(st, 1, (sqlite3_int64)ino);
		sqlite3_bind_text(st, 2, name, -1, SQLITE_STATIC);
		if (sqlite3_step(st) == SQLITE_ROW)
			rc = xattr_out(sqlite3_column_blob(st, 0),
				       (size_t)sqlite3_column_bytes(st, 0), v, n);
		else
			rc = -ENODATA;
	} else if (rc == 1) {
		rc = -ENODATA;
	}
	sqlite3_finalize(st);
	pthread_rwlock_unlock(&ov->lock);
	return rc;
}

/* Append name (len bytes, then a NUL) to a listxattr answer. */
static int list_add(char *v, size_t n, size_t *total, const char *name, size_t len)
{
	if (n && *total + len + 1 > n)
		return -ERANGE;
	if (n) {
		memcpy(v + *total, name, len);
		v[*total + len] = '\0';
	}
	*total += len + 1;
	return 0;
}

ssize_t ov_listxattr(struct ov *ov, uint64_t ino, char *v, size_t n)
{
	sqlite3_stmt *st = NULL;
	size_t total = 0;
	ssize_t rc = 0;

	if (!ov->has_xattrs && !ov->cat_xattrs)
		return 0;
	pthread_rwlock_rdlock(&ov->lock);
	if (!xattrs_in_table(ov, ino)) {
		uint32_t k, nx;
		const struct cat_xattr *x = cat_xattrs(ov, ino, &nx);

		for (k = 0; k < nx && !rc; k++)
			rc = list_add(v, n, &total, catalog_str(ov->cat, x[k].name_off),
				      x[k].name_len);
	} else if (ov->has_xattrs) {
		rc = ovi_prep(ov, &st, "SELECT name FROM xattrs WHERE ino=?1 ORDER BY name");
		if (!rc)
			sqlite3_bind_int64(st, 1, (sqlite3_int64)ino);
		while (!rc && sqlite3_step(st) == SQLITE_ROW)
			rc = list_add(v, n, &total, (const char *)sqlite3_column_text(st, 0),
				      (size_t)sqlite3_column_bytes(st, 0));
	}
	if (!rc)
		rc = (ssize_t)total;
	sqlite3_finalize(st);
	pthread_rwlock_unlock(&ov->lock);
	return rc;
}

static int removexattr_once(struct ov *ov, uint64_t ino, const char *name)
{
	sqlite3_stmt *st = NULL;
	int rc;

	rc = ovi_begin(ov);
	if (!rc)
		rc = xattrs_copy_up(ov, ino);
	if (!rc)
		rc = ovi_prep(ov, &st, "DELETE FROM xattrs WHERE ino=?1 AND name=?2");
	if (!rc) {
		sqlite3_bind_int64(st, 1, (sqlite3_int64)ino);
		sqlite3_bind_text(st, 2, name, -1, SQLITE_STATIC);
		rc = ovi_sqlerr(ov, sqlite3_step(st), "remove xattr");
		if (!rc && sqlite3_changes(ov->db) == 0)
			rc = -ENODATA;
	}
	sqlite3_finalize(st);
	st = NULL;
	if (!rc)
		rc = xattrs_touch(ov, ino);
	return ovi_end(ov, rc);
}

/* A removal: it works on a full disk (see ovi_ballast_make). */
int ov_removexattr(struct ov *ov, uint64_t ino, const char *name)
{
	int rc = removexattr_once(ov, ino, name);

	if (rc == -ENOSPC && ovi_ballast_release(ov))
		rc = removexattr_once(ov, ino, name);
	return rc;
}
