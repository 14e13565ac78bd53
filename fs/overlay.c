/*
 * The mount's writable layer; see overlay.h for the model.
 *
 * Locking: ov->lock (rwlock) guards the database and the two in-memory
 * sets; every change runs under the write lock in one transaction.
 * ov->copy_lock serializes copy-ups, which read content (maybe from the
 * remote) without holding ov->lock.
 *
 * The sets are caches that let the hot paths skip SQLite: "rows" holds the
 * inodes that have a record, "dirty" the directories that have dentries.
 * A set may claim more than the database holds (after a rolled-back
 * transaction); every reader falls back to the catalog when a row is
 * missing, so that is harmless.
 */
#define _GNU_SOURCE
#include "overlay_int.h"
#include "../store/store.h"
#include "../store/tuning.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static size_t slot_of(const struct u64set *s, uint64_t x)
{
	size_t i = (size_t)((x * 0x9e3779b97f4a7c15ULL) >> 20) & (s->cap - 1);

	while (s->v[i] && s->v[i] != x)
		i = (i + 1) & (s->cap - 1);
	return i;
}

int ovi_set_has(const struct u64set *s, uint64_t x)
{
	return s->cap && s->v[slot_of(s, x)] == x;
}

int ovi_set_add(struct u64set *s, uint64_t x)
{
	size_t i;

	if ((s->n + 1) * 2 > s->cap) {
		struct u64set ns = { NULL, s->cap ? s->cap * 2 : 1024, 0 };

		ns.v = calloc(ns.cap, sizeof(*ns.v));
		if (!ns.v)
			return -ENOMEM;
		for (i = 0; i < s->cap; i++)
			if (s->v[i]) {
				ns.v[slot_of(&ns, s->v[i])] = s->v[i];
				ns.n++;
			}
		free(s->v);
		*s = ns;
	}
	i = slot_of(s, x);
	if (!s->v[i]) {
		s->v[i] = x;
		s->n++;
	}
	return 0;
}

static const char schema[] =
	"PRAGMA journal_mode=WAL;"
	"PRAGMA synchronous=NORMAL;"
	/* a checkpoint fsyncs: with the default (1000 pages) a build creating
	 * 10,000 files paid ~100 of them; the WAL may grow to ~64 MB instead */
	"PRAGMA wal_autocheckpoint=16000;"
	"CREATE TABLE IF NOT EXISTS meta(k TEXT PRIMARY KEY, v TEXT NOT NULL);"
	"CREATE TABLE IF NOT EXISTS inodes(ino INTEGER PRIMARY KEY, mode INTEGER NOT NULL,"
	" uid INTEGER NOT NULL, gid INTEGER NOT NULL, nlink INTEGER NOT NULL,"
	" size INTEGER NOT NULL, mtime_s INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,"
	" ctime_s INTEGER NOT NULL, ctime_ns INTEGER NOT NULL, target BLOB,"
	" upper INTEGER NOT NULL, cat INTEGER NOT NULL, atime_s INTEGER, atime_ns INTEGER,"
	" rdev INTEGER NOT NULL DEFAULT 0);"
	"CREATE TABLE IF NOT EXISTS dentries(parent INTEGER NOT NULL, name BLOB NOT NULL,"
	" ino INTEGER NOT NULL, PRIMARY KEY(parent, name)) WITHOUT ROWID;"
	"CREATE TABLE IF NOT EXISTS xattrs(ino INTEGER NOT NULL, name TEXT NOT NULL,"
	" value BLOB NOT NULL, PRIMARY KEY(ino, name)) WITHOUT ROWID;"
	"CREATE TABLE IF NOT EXISTS xup(ino INTEGER PRIMARY KEY);";

/* States written before atime, devices and catalog xattrs: the columns
 * they lack (an error where a column is there is the expected answer),
 * and their xattrs, which were all the table's. */
static const char *const migrate[] = {
	"ALTER TABLE inodes ADD COLUMN atime_s INTEGER",
	"ALTER TABLE inodes ADD COLUMN atime_ns INTEGER",
	"ALTER TABLE inodes ADD COLUMN rdev INTEGER NOT NULL DEFAULT 0",
};

int ovi_sqlerr(struct ov *ov, int rc, const char *what)
{
	if (rc == SQLITE_OK || rc == SQLITE_DONE || rc == SQLITE_ROW)
		return 0;
	log_err("mount state %s: %s: %s", ov->dir, what, sqlite3_errmsg(ov->db));
	if (rc == SQLITE_FULL)
		return -ENOSPC;
	if (rc == SQLITE_BUSY || rc == SQLITE_LOCKED)
		return -EBUSY;
	return -EIO;
}

void ovi_now_ts(int64_t *s, uint32_t *ns)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	*s = ts.tv_sec;
	*ns = (uint32_t)ts.tv_nsec;
}

/*
 * STATE/ballast: space held back for a full disk.  Removing a name writes
 * to the state too (a WAL frame or a few), so on a full filesystem an rm
 * would fail with ENOSPC and nothing could be freed from inside the
 * mount.  A removal that meets ENOSPC releases the ballast and tries once
 * more; writers that add data get ENOSPC as usual.  It is made again when
 * space comes back (a forgotten inode's data freed, the next mount).
 */

void ovi_ballast_make(struct ov *ov)
{
	char path[PATH_MAX + 16], tmp[PATH_MAX + 16];
	int fd;

	snprintf(path, sizeof(path), "%s/ballast", ov->dir);
	if (access(path, F_OK) == 0)
		return;
	snprintf(tmp, sizeof(tmp), "%s/ballast.tmp", ov->dir);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return;
	if (posix_fallocate(fd, 0, BALLAST_BYTES) != 0 || rename(tmp, path) < 0)
		unlink(tmp);
	close(fd);
}

/* 1 if there was ballast to give back. */
int ovi_ballast_release(struct ov *ov)
{
	char path[PATH_MAX + 16];

	snprintf(path, sizeof(path), "%s/ballast", ov->dir);
	if (unlink(path) < 0)
		return 0;
	log_warn("mount state %s: the disk is full; released the space held back so that "
		 "removals still work",
		 ov->dir);
	return 1;
}

void ov_data_path(struct ov *ov, uint64_t ino, char *out)
{
	snprintf(out, PATH_MAX, "%s/data/%llu", ov->dir, (unsigned long long)ino);
}

uint64_t ov_cat_ino(struct ov *ov, uint32_t idx)
{
	return (uint64_t)catalog_entry(ov->cat, idx)->ino + 1;
}

/* ---- transactions ---- */

int ovi_begin(struct ov *ov)
{
	pthread_rwlock_wrlock(&ov->lock);
	return ovi_sqlerr(ov, sqlite3_exec(ov->db, "BEGIN IMMEDIATE", NULL, NULL, NULL), "begin");
}

int ovi_end(struct ov *ov, int rc)
{
	if (rc == 0)
		rc = ovi_sqlerr(ov, sqlite3_exec(ov->db, "COMMIT", NULL, NULL, NULL), "commit");
	if (rc)
		sqlite3_exec(ov->db, "ROLLBACK", NULL, NULL, NULL);
	pthread_rwlock_unlock(&ov->lock);
	return rc;
}

/* ---- records ---- */

/*
 * Readers share the prepared statements under the read lock: the
 * connection's (recursive) mutex keeps each bind..step..reset whole, so one
 * thread never reads columns another thread has reset.
 */
#define STMT_BEGIN(ov) sqlite3_mutex_enter(sqlite3_db_mutex((ov)->db))
#define STMT_END(ov) sqlite3_mutex_leave(sqlite3_db_mutex((ov)->db))

int ovi_get_row(struct ov *ov, uint64_t ino, struct ov_attr *a, struct buf *target)
{
	sqlite3_stmt *st = ov->get_ino;
	int rc;

	STMT_BEGIN(ov);
	sqlite3_bind_int64(st, 1, (sqlite3_int64)ino);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		a->ino = ino;
		a->mode = (uint32_t)sqlite3_column_int64(st, 0);
		a->uid = (uint32_t)sqlite3_column_int64(st, 1);
		a->gid = (uint32_t)sqlite3_column_int64(st, 2);
		a->nlink = (uint32_t)sqlite3_column_int64(st, 3);
		a->size = (uint64_t)sqlite3_column_int64(st, 4);
		a->mtime_s = sqlite3_column_int64(st, 5);
		a->mtime_ns = (uint32_t)sqlite3_column_int64(st, 6);
		a->ctime_s = sqlite3_column_int64(st, 7);
		a->ctime_ns = (uint32_t)sqlite3_column_int64(st, 8);
		a->upper = sqlite3_column_int(st, 10);
		a->cat_idx = (uint32_t)sqlite3_column_int64(st, 11);
		if (sqlite3_column_type(st, 12) == SQLITE_NULL) {
			a->atime_s = a->mtime_s;
			a->atime_ns = a->mtime_ns;
		} else {
			a->atime_s = sqlite3_column_int64(st, 12);
			a->atime_ns = (uint32_t)sqlite3_column_int64(st, 13);
		}
		a->rdev = (uint64_t)sqlite3_column_int64(st, 14);
		if (target) {
			buf_reset(target);
			rc = buf_append(target, sqlite3_column_blob(st, 9),
					(size_t)sqlite3_column_bytes(st, 9));
			if (!rc)
				rc = buf_append(target, "", 1);
		} else {
			rc = 0;
		}
	} else if (rc == SQLITE_DONE) {
		rc = -ENOENT;
	} else {
		rc = ovi_sqlerr(ov, rc, "read inode");
	}
	sqlite3_reset(st);
	STMT_END(ov);
	return rc;
}

int ovi_put_row(struct ov *ov, const struct ov_attr *a, const char *target, size_t tlen)
{
	sqlite3_stmt *st = ov->put_ino;
	int rc;

	sqlite3_bind_int64(st, 1, (sqlite3_int64)a->ino);
	sqlite3_bind_int64(st, 2, a->mode);
	sqlite3_bind_int64(st, 3, a->uid);
	sqlite3_bind_int64(st, 4, a->gid);
	sqlite3_bind_int64(st, 5, a->nlink);
	sqlite3_bind_int64(st, 6, (sqlite3_int64)a->size);
	sqlite3_bind_int64(st, 7, a->mtime_s);
	sqlite3_bind_int64(st, 8, a->mtime_ns);
	sqlite3_bind_int64(st, 9, a->ctime_s);
	sqlite3_bind_int64(st, 10, a->ctime_ns);
	if (target)
		sqlite3_bind_blob(st, 11, target, (int)tlen, SQLITE_STATIC);
	else
		sqlite3_bind_null(st, 11);
	sqlite3_bind_int(st, 12, a->upper);
	sqlite3_bind_int64(st, 13, a->cat_idx);
	sqlite3_bind_int64(st, 14, a->atime_s);
	sqlite3_bind_int64(st, 15, a->atime_ns);
	sqlite3_bind_int64(st, 16, (sqlite3_int64)a->rdev);
	rc = ovi_sqlerr(ov, sqlite3_step(st), "write inode");
	sqlite3_reset(st);
	if (!rc)
		rc = ovi_set_add(&ov->rows, a->ino);
	if (!rc && a->upper)
		rc = ovi_set_add(&ov->uppers, a->ino);
	return rc;
}

static void cat_attr(struct ov *ov, uint32_t idx, struct ov_attr *a)
{
	const struct cat_entry *e = catalog_entry(ov->cat, idx);

	memset(a, 0, sizeof(*a));
	a->ino = (uint64_t)idx + 1;
	a->mode = e->mode;
	a->uid = ov->o.preserve_owner ? e->uid : ov->o.uid;
	a->gid = ov->o.preserve_owner ? e->gid : ov->o.gid;
	a->nlink = e->nlink;
	a->size = S_ISDIR(e->mode) ? 4096 : e->size;
	a->mtime_s = a->ctime_s = a->atime_s = e->mtime_sec;
	a->mtime_ns = a->ctime_ns = a->atime_ns = e->mtime_nsec;
	if (S_ISCHR(e->mode) || S_ISBLK(e->mode))
		a->rdev = e->first;
	a->cat_idx = idx;
}

/* Attributes of ino; with the lock held (either way). */
int ovi_attr_locked(struct ov *ov, uint64_t ino, struct ov_attr *a)
{
	int rc = -ENOENT;

	if (ovi_set_has(&ov->rows, ino)) {
		rc = ovi_get_row(ov, ino, a, NULL);
		if (rc && rc != -ENOENT)
			return rc;
	}
	if (rc == -ENOENT) {
		uint32_t idx;

		if (ino == 0 || ino > ov->ncat)
			return -ENOENT;
		idx = (uint32_t)(ino - 1);
		if (catalog_entry(ov->cat, idx)->ino != idx)
			return -ENOENT; /* a hard-link member's own index: not an inode */
		cat_attr(ov, idx, a);
		return 0;
	}
	if (a->upper) {
		char path[PATH_MAX];
		struct stat st;

		ov_data_path(ov, ino, path);
		if (stat(path, &st) == 0) {
			a->size = (uint64_t)st.st_size;
			a->mtime_s = st.st_mtim.tv_sec;
			a->mtime_ns = (uint32_t)st.st_mtim.tv_nsec;
			if (st.st_ctim.tv_sec > a->ctime_s ||
			    (st.st_ctim.tv_sec == a->ctime_s &&
			     (uint32_t)st.st_ctim.tv_nsec > a->ctime_ns)) {
				a->ctime_s = st.st_ctim.tv_sec;
				a->ctime_ns = (uint32_t)st.st_ctim.tv_nsec;
			}
		}
	}
	return 0;
}

/* Write a's record, keeping a symlink's target (from its row or the catalog). */
int ovi_save_row(struct ov *ov, const struct ov_attr *a)
{
	struct buf t = BUF_INIT;
	struct ov_attr tmp;
	int rc;

	if (!S_ISLNK(a->mode))
		return ovi_put_row(ov, a, NULL, 0);
	if (ovi_set_has(&ov->rows, a->ino) && ovi_get_row(ov, a->ino, &tmp, &t) == 0 && t.len > 1) {
		rc = ovi_put_row(ov, a, (const char *)t.p, t.len - 1);
	} else if (a->cat_idx != OV_NONE) {
		const struct cat_entry *e = catalog_entry(ov->cat, a->cat_idx);

		rc = ovi_put_row(ov, a, catalog_target(ov->cat, e), e->count);
	} else {
		rc = -EIO;
	}
	buf_free(&t);
	return rc;
}

/* Make sure ino has a row (copying the catalog's record); its attrs in *a. */
int ovi_ensure_row(struct ov *ov, uint64_t ino, struct ov_attr *a)
{
	int rc = ovi_attr_locked(ov, ino, a);

	if (rc)
		return rc;
	if (ovi_set_has(&ov->rows, ino)) {
		struct ov_attr tmp;

		if (ovi_get_row(ov, ino, &tmp, NULL) == 0)
			return 0;
	}
	return ovi_save_row(ov, a);
}

/* Catalog child of parent named name (parent must be a catalog dir). */
static int cat_has(struct ov *ov, uint64_t parent, const char *name, uint32_t *idx)
{
	if (parent == 0 || parent > ov->ncat)
		return -ENOENT;
	if (!S_ISDIR(catalog_entry(ov->cat, (uint32_t)(parent - 1))->mode))
		return -ENOTDIR;
	return catalog_lookup(ov->cat, (uint32_t)(parent - 1), name, strlen(name), idx);
}

/* Inode of parent/name, or -ENOENT.  Lock held. */
int ovi_lookup_locked(struct ov *ov, uint64_t parent, const char *name, uint64_t *ino)
{
	uint32_t idx;
	int rc;

	if (ovi_set_has(&ov->dirty, parent)) {
		sqlite3_stmt *st = ov->get_dent;

		STMT_BEGIN(ov);
		sqlite3_bind_int64(st, 1, (sqlite3_int64)parent);
		sqlite3_bind_blob(st, 2, name, (int)strlen(name), SQLITE_STATIC);
		rc = sqlite3_step(st);
		if (rc == SQLITE_ROW)
			*ino = (uint64_t)sqlite3_column_int64(st, 0);
		sqlite3_reset(st);
		STMT_END(ov);
		if (rc == SQLITE_ROW)
			return *ino ? 0 : -ENOENT;
		if (rc != SQLITE_DONE)
			return ovi_sqlerr(ov, rc, "lookup");
	}
	rc = cat_has(ov, parent, name, &idx);
	if (rc)
		return rc == -ENOTDIR ? -ENOENT : rc;
	*ino = ov_cat_ino(ov, idx);
	return 0;
}

int ovi_set_dentry(struct ov *ov, uint64_t parent, const char *name, uint64_t ino)
{
	sqlite3_stmt *st = ov->put_dent;
	int rc;

	sqlite3_bind_int64(st, 1, (sqlite3_int64)parent);
	sqlite3_bind_blob(st, 2, name, (int)strlen(name), SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, (sqlite3_int64)ino);
	rc = ovi_sqlerr(ov, sqlite3_step(st), "write name");
	sqlite3_reset(st);
	if (!rc)
		rc = ovi_set_add(&ov->dirty, parent);
	return rc;
}

/* Remove a name: a whiteout where the catalog has it, else drop the row. */
int ovi_remove_name(struct ov *ov, uint64_t parent, const char *name)
{
	uint32_t idx;
	sqlite3_stmt *st = ov->del_dent;
	int rc;

	if (cat_has(ov, parent, name, &idx) == 0)
		return ovi_set_dentry(ov, parent, name, 0);
	sqlite3_bind_int64(st, 1, (sqlite3_int64)parent);
	sqlite3_bind_blob(st, 2, name, (int)strlen(name), SQLITE_STATIC);
	rc = ovi_sqlerr(ov, sqlite3_step(st), "remove name");
	sqlite3_reset(st);
	return rc;
}

/* A directory's entries changed: mtime and ctime now, nlink += delta. */
int ovi_touch_dir(struct ov *ov, uint64_t dir, int delta)
{
	struct ov_attr a;
	int rc = ovi_ensure_row(ov, dir, &a);

	if (rc)
		return rc;
	ovi_now_ts(&a.mtime_s, &a.mtime_ns);
	a.ctime_s = a.mtime_s;
	a.ctime_ns = a.mtime_ns;
	a.nlink = (uint32_t)((int)a.nlink + delta);
	return ovi_save_row(ov, &a);
}

/* ---- open/close ---- */

int ovi_prep(struct ov *ov, sqlite3_stmt **st, const char *sql)
{
	return ovi_sqlerr(ov, sqlite3_prepare_v2(ov->db, sql, -1, st, NULL), "prepare");
}

static int load_sets(struct ov *ov)
{
	sqlite3_stmt *st = NULL;
	int rc;

	rc = ovi_prep(ov, &st, "SELECT ino, upper FROM inodes");
	while (!rc && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		uint64_t ino = (uint64_t)sqlite3_column_int64(st, 0);

		rc = ovi_set_add(&ov->rows, ino);
		if (!rc && sqlite3_column_int(st, 1))
			rc = ovi_set_add(&ov->uppers, ino);
	}
	rc = rc == SQLITE_DONE ? 0 : rc;
	sqlite3_finalize(st);
	st = NULL;
	if (!rc)
		rc = ovi_prep(ov, &st, "SELECT DISTINCT parent FROM dentries");
	while (!rc && (rc = sqlite3_step(st)) == SQLITE_ROW)
		rc = ovi_set_add(&ov->dirty, (uint64_t)sqlite3_column_int64(st, 0));
	rc = rc == SQLITE_DONE ? 0 : rc;
	sqlite3_finalize(st);
	st = NULL;
	if (!rc)
		rc = ovi_prep(ov, &st, "SELECT ino FROM xup");
	while (!rc && (rc = sqlite3_step(st)) == SQLITE_ROW)
		rc = ovi_set_add(&ov->xups, (uint64_t)sqlite3_column_int64(st, 0));
	rc = rc == SQLITE_DONE ? 0 : rc;
	sqlite3_finalize(st);
	st = NULL;
	if (!rc)
		rc = ovi_prep(ov, &st, "SELECT COUNT(*) FROM xattrs");
	if (!rc && sqlite3_step(st) == SQLITE_ROW)
		ov->has_xattrs = sqlite3_column_int64(st, 0) > 0;
	sqlite3_finalize(st);
	return rc > 0 ? ovi_sqlerr(ov, rc, "load") : rc;
}

/* Unlinked inodes can no longer be open: drop them and their data. */
static int drop_orphans(struct ov *ov)
{
	sqlite3_stmt *st = NULL;
	char path[PATH_MAX];
	int rc;

	rc = ovi_prep(ov, &st, "SELECT ino FROM inodes WHERE nlink = 0");
	while (!rc && sqlite3_step(st) == SQLITE_ROW) {
		ov_data_path(ov, (uint64_t)sqlite3_column_int64(st, 0), path);
		unlink(path);
	}
	sqlite3_finalize(st);
	if (!rc)
		rc = ovi_sqlerr(
			ov,
			sqlite3_exec(ov->db,
				     "DELETE FROM xattrs WHERE ino IN (SELECT ino FROM inodes "
				     "WHERE nlink = 0);"
				     "DELETE FROM inodes WHERE nlink = 0;",
				     NULL, NULL, NULL),
			"drop orphans");
	return rc;
}

int ov_meta_get(struct ov *ov, const char *k, char *v, size_t n)
{
	sqlite3_stmt *st = NULL;
	int rc = ovi_prep(ov, &st, "SELECT v FROM meta WHERE k = ?1");

	if (rc)
		return rc;
	sqlite3_bind_text(st, 1, k, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		snprintf(v, n, "%s", (const char *)sqlite3_column_text(st, 0));
		rc = 0;
	} else {
		rc = rc == SQLITE_DONE ? -ENOENT : ovi_sqlerr(ov, rc, "read meta");
	}
	sqlite3_finalize(st);
	return rc;
}

int ov_meta_set(struct ov *ov, const char *k, const char *v)
{
	sqlite3_stmt *st = NULL;
	int rc = ovi_prep(ov, &st, "INSERT OR REPLACE INTO meta VALUES(?1, ?2)");

	if (rc)
		return rc;
	sqlite3_bind_text(st, 1, k, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, v, -1, SQLITE_STATIC);
	rc = ovi_sqlerr(ov, sqlite3_step(st), "write meta");
	sqlite3_finalize(st);
	return rc;
}

int ov_peek_meta(const char *dir, const char *k, char *v, size_t n)
{
	char path[PATH_MAX + 16];
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;
	int rc = -ENOENT;

	snprintf(path, sizeof(path), "%s/state.db", dir);
	if (access(path, F_OK) != 0)
		return -ENOENT;
	if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK)
		goto out;
	sqlite3_busy_timeout(db, 30000);
	if (sqlite3_prepare_v2(db, "SELECT v FROM meta WHERE k = ?1", -1, &st, NULL) != SQLITE_OK)
		goto out;
	sqlite3_bind_text(st, 1, k, -1, SQLITE_STATIC);
	if (sqlite3_step(st) == SQLITE_ROW) {
		snprintf(v, n, "%s", (const char *)sqlite3_column_text(st, 0));
		rc = 0;
	}
out:
	sqlite3_finalize(st);
	if (db)
		sqlite3_close(db);
	return rc;
}

int ov_open(const char *dir, struct catalog *cat, const struct ov_opts *o, struct ov **out)
{
	struct ov *ov = calloc(1, sizeof(*ov));
	char path[PATH_MAX + 32];
	int rc;

	if (!ov)
		return -ENOMEM;
	snprintf(ov->dir, sizeof(ov->dir), "%s", dir);
	ov->cat = cat;
	ov->ncat = catalog_count(cat);
	ov->cat_xattrs = catalog_header(cat)->n_xattrs > 0;
	ov->wal_fd = -1;
	ov->o = *o;
	pthread_rwlock_init(&ov->lock, NULL);
	pthread_mutex_init(&ov->copy_lock, NULL);
	snprintf(path, sizeof(path), "%s/data", dir);
	rc = mkdir_p(path, 0700);
	if (rc)
		goto fail;
	snprintf(path, sizeof(path), "%s/state.db", dir);
	rc = store_db_open(path, schema, "mount state", &ov->db);
	if (rc)
		goto fail;
	{
		size_t i;

		for (i = 0; i < ARRAY_SIZE(migrate); i++)
			sqlite3_exec(ov->db, migrate[i], NULL, NULL, NULL);
		if (!o->readonly)
			sqlite3_exec(ov->db,
				     "INSERT OR IGNORE INTO xup SELECT DISTINCT ino FROM xattrs",
				     NULL, NULL, NULL);
	}
	rc = ovi_prep(ov, &ov->get_ino,
		      "SELECT mode, uid, gid, nlink, size, mtime_s, mtime_ns, ctime_s, ctime_ns,"
		      " target, upper, cat, atime_s, atime_ns, rdev FROM inodes WHERE ino = ?1");
	if (!rc)
		rc = ovi_prep(ov, &ov->put_ino,
			      "INSERT OR REPLACE INTO inodes(ino, mode, uid, gid, nlink, size,"
			      " mtime_s, mtime_ns, ctime_s, ctime_ns, target, upper, cat, atime_s,"
			      " atime_ns, rdev) VALUES"
			      "(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16)");
	if (!rc)
		rc = ovi_prep(ov, &ov->get_dent,
			      "SELECT ino FROM dentries WHERE parent=?1 AND name=?2");
	if (!rc)
		rc = ovi_prep(ov, &ov->put_dent,
			      "INSERT OR REPLACE INTO dentries VALUES(?1,?2,?3)");
	if (!rc)
		rc = ovi_prep(ov, &ov->del_dent,
			      "DELETE FROM dentries WHERE parent=?1 AND name=?2");
	if (!rc)
		rc = ovi_prep(ov, &ov->list_dent,
			      "SELECT name, ino FROM dentries WHERE parent=?1 ORDER BY name");
	if (!rc && !o->readonly)
		rc = drop_orphans(ov);
	if (!rc && !o->readonly)
		ovi_ballast_make(ov);
	if (!rc)
		rc = load_sets(ov);
	if (rc)
		goto fail;
	/* new inodes are numbered after the catalog's and every recorded one */
	ov->next_ino = ov->ncat + 1;
	{
		sqlite3_stmt *st = NULL;

		if (ovi_prep(ov, &st, "SELECT COALESCE(MAX(ino), 0) FROM inodes") == 0 &&
		    sqlite3_step(st) == SQLITE_ROW &&
		    (uint64_t)sqlite3_column_int64(st, 0) >= ov->next_ino)
			ov->next_ino = (uint64_t)sqlite3_column_int64(st, 0) + 1;
		sqlite3_finalize(st);
	}
	*out = ov;
	return 0;
fail:
	ov_close(ov);
	return rc;
}

void ov_close(struct ov *ov)
{
	if (!ov)
		return;
	sqlite3_finalize(ov->get_ino);
	sqlite3_finalize(ov->put_ino);
	sqlite3_finalize(ov->get_dent);
	sqlite3_finalize(ov->put_dent);
	sqlite3_finalize(ov->del_dent);
	sqlite3_finalize(ov->list_dent);
	if (ov->db)
		sqlite3_close(ov->db);
	if (ov->wal_fd >= 0)
		close(ov->wal_fd);
	free(ov->rows.v);
	free(ov->uppers.v);
	free(ov->dirty.v);
	free(ov->xups.v);
	pthread_rwlock_destroy(&ov->lock);
	pthread_mutex_destroy(&ov->copy_lock);
	free(ov);
}

/*
 * Make every change made so far durable.  The state runs WAL with
 * synchronous=NORMAL: commits are written to the WAL but synced only at a
 * checkpoint.  Syncing the WAL is what a commit under synchronous=FULL
 * does, and covers every commit before it; the directories make data
 * files and the WAL itself durable names.
 */
int ov_sync(struct ov *ov)
{
	char path[PATH_MAX + 16];
	int fd, rc = 0;

	fd = __atomic_load_n(&ov->wal_fd, __ATOMIC_ACQUIRE);
	if (fd < 0) {
		int none = -1;

		snprintf(path, sizeof(path), "%s/state.db-wal", ov->dir);
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd >= 0 && !__atomic_compare_exchange_n(&ov->wal_fd, &none, fd, 0,
							    __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
			close(fd);
			fd = none; /* another thread's */
		}
	}
	if (fd >= 0 && fdatasync(fd) < 0)
		rc = -errno;
	snprintf(path, sizeof(path), "%s/data", ov->dir);
	fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0) {
		if (fsync(fd) < 0 && !rc)
			rc = -errno;
		close(fd);
	}
	fd = open(ov->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0) {
		if (fsync(fd) < 0 && !rc)
			rc = -errno;
		close(fd);
	}
	return rc;
}

uint64_t ov_changes(struct ov *ov)
{
	return ov->rows.n + ov->dirty.n;
}

/* ---- reads ---- */

int ov_getattr(struct ov *ov, uint64_t ino, struct ov_attr *a)
{
	int rc;

	pthread_rwlock_rdlock(&ov->lock);
	rc = ovi_attr_locked(ov, ino, a);
	pthread_rwlock_unlock(&ov->lock);
	return rc;
}

void ov_attr_stat(const struct ov_attr *a, struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = a->ino;
	st->st_mode = a->mode;
	st->st_nlink = a->nlink;
	st->st_uid = a->uid;
	st->st_gid = a->gid;
	st->st_size = (off_t)a->size;
	st->st_blksize = 4096;
	st->st_blocks = (blkcnt_t)((a->size + 511) / 512);
	st->st_mtim.tv_sec = a->mtime_s;
	st->st_mtim.tv_nsec = a->mtime_ns;
	st->st_atim.tv_sec = a->atime_s;
	st->st_atim.tv_nsec = a->atime_ns;
	st->st_rdev = (dev_t)a->rdev;
	st->st_ctim.tv_sec = a->ctime_s;
	st->st_ctim.tv_nsec = a->ctime_ns;
}

int ov_content(struct ov *ov, uint64_t ino, uint32_t *cat_idx)
{
	struct ov_attr a;
	int rc;

	pthread_rwlock_rdlock(&ov->lock);
	if (ovi_set_has(&ov->uppers, ino)) {
		rc = 1;
	} else {
		rc = ovi_attr_locked(ov, ino, &a);
		if (!rc && S_ISDIR(a.mode))
			rc = -EISDIR;
		else if (!rc && a.upper)
			rc = 1;
		else if (!rc && a.cat_idx == OV_NONE)
			rc = -EIO; /* a file made here is always upper */
		else if (!rc)
			*cat_idx = a.cat_idx;
	}
	pthread_rwlock_unlock(&ov->lock);
	return rc;
}

int ov_lookup(struct ov *ov, uint64_t parent, const char *name, struct ov_attr *a)
{
	uint64_t ino;
	int rc;

	pthread_rwlock_rdlock(&ov->lock);
	rc = ovi_lookup_locked(ov, parent, name, &ino);
	if (!rc)
		rc = ovi_attr_locked(ov, ino, a);
	pthread_rwlock_unlock(&ov->lock);
	return rc;
}

ssize_t ov_readlink(struct ov *ov, uint64_t ino, char *out, size_t n)
{
	struct ov_attr a;
	struct buf t = BUF_INIT;
	ssize_t rc;

	pthread_rwlock_rdlock(&ov->lock);
	if (ovi_set_has(&ov->rows, ino) && ovi_get_row(ov, ino, &a, &t) == 0) {
		rc = S_ISLNK(a.mode) ? (ssize_t)t.len - 1 : -EINVAL;
		if (rc > 0)
			snprintf(out, n, "%s", (const char *)t.p);
	} else if (ino >= 1 && ino <= ov->ncat) {
		const struct cat_entry *e = catalog_entry(ov->cat, (uint32_t)(ino - 1));

		rc = S_ISLNK(e->mode) ? (ssize_t)e->count : -EINVAL;
		if (rc > 0)
			snprintf(out, n, "%.*s", (int)e->count, catalog_target(ov->cat, e));
	} else {
		rc = -ENOENT;
	}
	pthread_rwlock_unlock(&ov->lock);
	buf_free(&t);
	return rc;
}

void ov_dirents_free(struct ov_dirent *v, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		free(v[i].name);
	free(v);
}

struct dvec {
	struct ov_dirent *v;
	size_t n, cap;
};

static int dvec_add(struct dvec *d, const char *name, size_t len, uint64_t ino, uint32_t mode)
{
	if (d->n == d->cap) {
		size_t nc = d->cap ? d->cap * 2 : 64;
		struct ov_dirent *nv = realloc(d->v, nc * sizeof(*nv));

		if (!nv)
			return -ENOMEM;
		d->v = nv;
		d->cap = nc;
	}
	d->v[d->n].name = strndup(name, len);
	if (!d->v[d->n].name)
		return -ENOMEM;
	d->v[d->n].len = len;
	d->v[d->n].ino = ino;
	d->v[d->n].mode = mode;
	d->n++;
	return 0;
}

/* An added name, with its inode's type. */
static int add_db_name(struct ov *ov, struct dvec *d, const struct ov_dirent *x)
{
	struct ov_attr a;

	if (x->ino == 0 || ovi_attr_locked(ov, x->ino, &a))
		return 0;
	return dvec_add(d, x->name, x->len, x->ino, a.mode);
}

int ovi_list_locked(struct ov *ov, uint64_t dir, struct ov_dirent **v, size_t *n)
{
	struct dvec db = { NULL, 0, 0 }, out = { NULL, 0, 0 };
	struct ov_attr a;
	size_t i = 0, j;
	uint64_t c = 0, cn = 0;
	int rc;

	rc = ovi_attr_locked(ov, dir, &a);
	if (!rc && !S_ISDIR(a.mode))
		rc = -ENOTDIR;
	if (!rc && ovi_set_has(&ov->dirty, dir)) {
		sqlite3_stmt *st = ov->list_dent;

		STMT_BEGIN(ov);
		sqlite3_bind_int64(st, 1, (sqlite3_int64)dir);
		while (!rc && (rc = sqlite3_step(st)) == SQLITE_ROW)
			rc = dvec_add(&db, sqlite3_column_blob(st, 0),
				      (size_t)sqlite3_column_bytes(st, 0),
				      (uint64_t)sqlite3_column_int64(st, 1), 0);
		rc = rc == SQLITE_DONE ? 0 : rc > 0 ? ovi_sqlerr(ov, rc, "list") : rc;
		sqlite3_reset(st);
		STMT_END(ov);
	}
	if (!rc && dir <= ov->ncat) {
		const struct cat_entry *d = catalog_entry(ov->cat, (uint32_t)(dir - 1));

		c = d->first;
		cn = d->first + d->count;
	}
	/* merge two name-sorted lists; an added name or whiteout wins */
	while (!rc && (c < cn || i < db.n)) {
		const struct cat_entry *e = c < cn ? catalog_entry(ov->cat, (uint32_t)c) : NULL;
		int cmp;

		if (!e)
			cmp = 1;
		else if (i == db.n)
			cmp = -1;
		else
			cmp = catalog_name_cmp(catalog_name(ov->cat, e), e->name_len, db.v[i].name,
					       db.v[i].len);
		if (cmp < 0) {
			rc = dvec_add(&out, catalog_name(ov->cat, e), e->name_len,
				      ov_cat_ino(ov, (uint32_t)c), e->mode);
			c++;
		} else {
			rc = add_db_name(ov, &out, &db.v[i]);
			i++;
			if (cmp == 0)
				c++;
		}
	}
	for (j = 0; j < db.n; j++)
		free(db.v[j].name);
	free(db.v);
	if (rc) {
		ov_dirents_free(out.v, out.n);
		return rc;
	}
	*v = out.v;
	*n = out.n;
	return 0;
}

int ov_list(struct ov *ov, uint64_t dir, struct ov_dirent **v, size_t *n)
{
	int rc;

	pthread_rwlock_rdlock(&ov->lock);
	rc = ovi_list_locked(ov, dir, v, n);
	pthread_rwlock_unlock(&ov->lock);
	return rc;
}
