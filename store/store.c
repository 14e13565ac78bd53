/*
 * Local store and its SQLite index; see store.h.
 *
 * SQLite errors are translated here and logged with their message: busy
 * becomes -EBUSY, a full disk -ENOSPC, anything else -EIO.
 */
#define _GNU_SOURCE
#include "store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

struct store {
	char path[PATH_MAX];
	char tmp[PATH_MAX];
	sqlite3 *db;
	pthread_mutex_t lock; /* serializes multi-statement transactions */
	sqlite3_stmt *loc_get, *loc_put, *obj_put, *obj_touch;
	int no_tmpfile; /* O_TMPFILE or /proc missing: objects go through tmp/ */
};

static const char schema[] =
	"PRAGMA journal_mode=WAL;"
	"PRAGMA synchronous=NORMAL;"
	"CREATE TABLE IF NOT EXISTS objects("
	" id BLOB PRIMARY KEY, size INTEGER NOT NULL, atime INTEGER NOT NULL)"
	" WITHOUT ROWID;"
	"CREATE INDEX IF NOT EXISTS objects_atime ON objects(atime);"
	"CREATE TABLE IF NOT EXISTS locations("
	" remote TEXT NOT NULL, id BLOB NOT NULL, pack BLOB NOT NULL,"
	" off INTEGER NOT NULL, slen INTEGER NOT NULL, rlen INTEGER NOT NULL,"
	" flags INTEGER NOT NULL, PRIMARY KEY(remote, id)) WITHOUT ROWID;"
	"CREATE TABLE IF NOT EXISTS catalogs("
	" id BLOB PRIMARY KEY, size INTEGER NOT NULL, atime INTEGER NOT NULL)"
	" WITHOUT ROWID;"
	"CREATE TABLE IF NOT EXISTS keys("
	" key TEXT PRIMARY KEY, time_ns INTEGER NOT NULL, catalog BLOB NOT NULL,"
	" files INTEGER NOT NULL, bytes INTEGER NOT NULL, sources BLOB)"
	" WITHOUT ROWID;"
	"CREATE TABLE IF NOT EXISTS used("
	" remote TEXT NOT NULL, key TEXT NOT NULL, at_ns INTEGER NOT NULL,"
	" PRIMARY KEY(remote, key)) WITHOUT ROWID;";

static int sql_err(struct store *s, int rc, const char *what)
{
	switch (rc) {
	case SQLITE_OK:
	case SQLITE_DONE:
	case SQLITE_ROW: return 0;
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		log_err("index %s/index.db: %s: database is busy", s->path, what);
		return -EBUSY;
	case SQLITE_FULL:
		log_err("index %s/index.db: %s: disk full", s->path, what);
		return -ENOSPC;
	default:
		log_err("index %s/index.db: %s: %s", s->path, what, sqlite3_errmsg(s->db));
		return -EIO;
	}
}

int store_db_open(const char *path, const char *sql, const char *what, sqlite3 **out)
{
	sqlite3 *db = NULL;
	char *err = NULL;
	int rc, i;

	rc = sqlite3_open_v2(path, &db,
			     SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX,
			     NULL);
	if (rc != SQLITE_OK) {
		log_err("%s '%s': cannot open: %s", what, qpath(path),
			db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
		sqlite3_close(db);
		return -EIO;
	}
	/* private to the store's user, as the rest of the store (SQLite makes
	 * files 0644, and its -wal and -shm take the database's mode) */
	{
		static const char *const sfx[] = { "", "-wal", "-shm" };
		char p[PATH_MAX + 8];
		size_t k;

		for (k = 0; k < ARRAY_SIZE(sfx); k++) {
			snprintf(p, sizeof(p), "%s%s", path, sfx[k]);
			if (chmod(p, 0600) < 0 && errno != ENOENT)
				log_debug("%s '%s': chmod: %s", what, qpath(p), strerror(errno));
		}
	}
	sqlite3_busy_timeout(db, 30000);
	for (i = 0; i < 400; i++) {
		rc = sqlite3_exec(db, sql, NULL, NULL, &err);
		if (rc != SQLITE_BUSY && rc != SQLITE_LOCKED)
			break;
		sqlite3_free(err);
		err = NULL;
		usleep(25000);
	}
	if (rc != SQLITE_OK) {
		log_err("%s '%s': %s", what, qpath(path), err ? err : sqlite3_errstr(rc));
		sqlite3_free(err);
		sqlite3_close(db);
		return rc == SQLITE_FULL ? -ENOSPC : -EIO;
	}
	*out = db;
	return 0;
}

static int prep(struct store *s, sqlite3_stmt **st, const char *sql)
{
	return sql_err(s, sqlite3_prepare_v2(s->db, sql, -1, st, NULL), "prepare");
}

/*
 * Remove what killed writers left in tmp/.  Every file there is named
 * KIND-PID-...: a file goes when no one holds its flock and its writer is
 * gone (or it is a day old: a pid of another namespace, or reused).
 */
void store_sweep_tmp(struct store *s)
{
	DIR *d = opendir(s->tmp);
	struct dirent *e;
	time_t now = time(NULL);

	if (!d)
		return;
	while ((e = readdir(d))) {
		const char *dash = strchr(e->d_name, '-');
		struct stat st;
		long pid;
		int fd, alive;

		if (e->d_name[0] == '.' || !dash)
			continue;
		pid = strtol(dash + 1, NULL, 10);
		fd = openat(dirfd(d), e->d_name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
		if (fd < 0)
			continue;
		if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) ||
		    flock(fd, LOCK_EX | LOCK_NB) < 0) {
			close(fd);
			continue;
		}
		alive = pid > 0 && pid <= INT_MAX &&
			(pid == getpid() || kill((pid_t)pid, 0) == 0 || errno == EPERM);
		if (!alive || now - st.st_mtime > 86400)
			unlinkat(dirfd(d), e->d_name, 0);
		close(fd);
	}
	closedir(d);
}

int store_open(const char *path, struct store **out)
{
	struct store *s = calloc(1, sizeof(*s));
	char dbpath[PATH_MAX + 16], sub[PATH_MAX + 16];
	static const char *const dirs[] = { "objects", "catalogs", "tmp", "mounts" };
	size_t i;
	int rc;

	if (!s)
		return -ENOMEM;
	pthread_mutex_init(&s->lock, NULL);
	if (strlen(path) >= sizeof(s->path) - 64) {
		rc = -ENAMETOOLONG;
		goto fail;
	}
	snprintf(s->path, sizeof(s->path), "%s", path);
	rc = mkdir_p(path, 0700);
	if (rc) {
		log_err("store '%s': cannot create: %s", qpath(path), strerror(-rc));
		goto fail;
	}
	for (i = 0; i < ARRAY_SIZE(dirs); i++) {
		snprintf(sub, sizeof(sub), "%s/%s", path, dirs[i]);
		if (mkdir(sub, 0700) < 0 && errno != EEXIST) {
			rc = -errno;
			log_err("store '%s': cannot create %s: %s", qpath(path), dirs[i],
				strerror(errno));
			goto fail;
		}
	}
	snprintf(s->tmp, sizeof(s->tmp), "%s/tmp", path);
	store_sweep_tmp(s);
	snprintf(dbpath, sizeof(dbpath), "%s/index.db", path);
	rc = store_db_open(dbpath, schema, "index", &s->db);
	if (rc)
		goto fail;
	rc = prep(s, &s->loc_get,
		  "SELECT pack, off, slen, rlen, flags FROM locations WHERE remote=?1 AND id=?2");
	if (!rc)
		rc = prep(s, &s->loc_put,
			  "INSERT OR REPLACE INTO locations VALUES(?1,?2,?3,?4,?5,?6,?7)");
	if (!rc)
		rc = prep(s, &s->obj_put, "INSERT OR REPLACE INTO objects VALUES(?1,?2,?3)");
	if (!rc)
		rc = prep(s, &s->obj_touch, "UPDATE objects SET atime=?3 WHERE id=?1");
	if (rc)
		goto fail;
	*out = s;
	return 0;
fail:
	store_close(s);
	return rc;
}

void store_close(struct store *s)
{
	if (!s)
		return;
	sqlite3_finalize(s->loc_get);
	sqlite3_finalize(s->loc_put);
	sqlite3_finalize(s->obj_put);
	sqlite3_finalize(s->obj_touch);
	if (s->db)
		sqlite3_close(s->db);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

const char *store_path(const struct store *s)
{
	return s->path;
}

const char *store_tmpdir(const struct store *s)
{
	return s->tmp;
}

void store_object_path(const struct store *s, const struct cas_id *id, char *out, size_t n)
{
	char hex[CAS_HEX_LEN + 1];

	cas_id_hex(id, hex);
	snprintf(out, n, "%s/objects/%.2s/%s", s->path, hex, hex + 2);
}

void store_catalog_path(const struct store *s, const struct cas_id *id, char *out, size_t n)
{
	char hex[CAS_HEX_LEN + 1];

	cas_id_hex(id, hex);
	snprintf(out, n, "%s/catalogs/%s", s->path, hex);
}

static int64_t now_s(void)
{
	return now_ns() / 1000000000;
}

/* mkdir the directory of path (an object's shard); 0 or -errno */
static int make_parent(const char *path)
{
	char dir[PATH_MAX];
	char *slash;

	snprintf(dir, sizeof(dir), "%s", path);
	slash = strrchr(dir, '/');
	*slash = '\0';
	return mkdir(dir, 0700) < 0 && errno != EEXIST ? -errno : 0;
}

/*
 * Start writing a large object to disk now (no waiting): a large file's
 * chunk is read once through a mount, after which the kernel holds its
 * bytes in the mount's page cache, and the mount drops this file's pages
 * (posix_fadvise DONTNEED) — which it can only do once they are clean.
 * Small objects are left to the usual writeback.
 */
static void write_behind(int fd, size_t n)
{
	if (n >= STORE_WRITE_BEHIND)
		(void)sync_file_range(fd, 0, (off_t)n, SYNC_FILE_RANGE_WRITE);
}

/* put_file's fallback: a named temporary file in tmp/, renamed into place. */
static int put_file_named(struct store *s, const char *path, const void *p, size_t n)
{
	char tmp[PATH_MAX + 40];
	int fd, rc;

	snprintf(tmp, sizeof(tmp), "%s/obj-%d-XXXXXX", s->tmp, (int)getpid());
	fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0)
		return -errno;
	rc = write_full(fd, p, n);
	if (!rc)
		write_behind(fd, n);
	if (close(fd) < 0 && !rc)
		rc = -errno;
	if (!rc && rename(tmp, path) < 0) {
		rc = -errno;
		if (rc == -ENOENT && make_parent(path) == 0)
			rc = rename(tmp, path) < 0 ? -errno : 0;
	}
	if (rc)
		unlink(tmp);
	return rc;
}

/*
 * An object file is written unnamed (O_TMPFILE) in its own shard directory
 * and linked under its name once whole: a crash leaves no temporary file,
 * and writers do not all create and rename through one shared directory
 * (the fetchers' six threads spent more time in that directory's lock and
 * inode allocation than in writing the bytes).  Where O_TMPFILE or /proc is
 * missing, a named temporary file is renamed into place instead.  No
 * fsync (see store.h): a short file after a crash is fetched again.
 */
static int put_file(struct store *s, const struct cas_id *id, const void *p, size_t n)
{
	char path[PATH_MAX], shard[PATH_MAX], proc[64];
	int fd, rc;

	store_object_path(s, id, path, sizeof(path));
	if (__atomic_load_n(&s->no_tmpfile, __ATOMIC_RELAXED))
		return put_file_named(s, path, p, n);
	snprintf(shard, sizeof(shard), "%s", path);
	*strrchr(shard, '/') = '\0';
	fd = open(shard, O_TMPFILE | O_WRONLY | O_CLOEXEC, 0600);
	if (fd < 0 && errno == ENOENT) {
		rc = make_parent(path);
		if (rc)
			return rc;
		fd = open(shard, O_TMPFILE | O_WRONLY | O_CLOEXEC, 0600);
	}
	if (fd < 0) {
		if (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL)
			return -errno;
		__atomic_store_n(&s->no_tmpfile, 1, __ATOMIC_RELAXED);
		return put_file_named(s, path, p, n);
	}
	rc = write_full(fd, p, n);
	if (rc) {
		close(fd);
		return rc;
	}
	write_behind(fd, n);
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
	if (linkat(AT_FDCWD, proc, AT_FDCWD, path, AT_SYMLINK_FOLLOW) == 0 || errno == EEXIST) {
		rc = 0; /* EEXIST: another writer put the same bytes */
	} else if (errno == ENOENT && access("/proc/self/fd", F_OK) < 0) {
		__atomic_store_n(&s->no_tmpfile, 1, __ATOMIC_RELAXED);
		rc = put_file_named(s, path, p, n);
	} else {
		rc = -errno;
	}
	if (close(fd) < 0 && !rc)
		rc = -errno;
	return rc;
}

/*
 * Run st (objects: ?1 id, ?2 size, ?3 now) for n objects in one
 * transaction; lens may be NULL when st has no size.
 */
static int objects_batch(struct store *s, sqlite3_stmt *st, const char *what, size_t n,
			 const struct cas_id *ids, const size_t *lens)
{
	int64_t now = now_s();
	size_t i;
	int rc;

	pthread_mutex_lock(&s->lock);
	rc = sql_err(s, sqlite3_exec(s->db, "BEGIN IMMEDIATE", NULL, NULL, NULL), "begin");
	for (i = 0; i < n && !rc; i++) {
		sqlite3_bind_blob(st, 1, ids[i].b, CAS_ID_LEN, SQLITE_STATIC);
		if (lens)
			sqlite3_bind_int64(st, 2, (sqlite3_int64)lens[i]);
		sqlite3_bind_int64(st, 3, now);
		rc = sql_err(s, sqlite3_step(st), what);
		sqlite3_reset(st);
	}
	if (rc)
		sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
	else
		rc = sql_err(s, sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL), "commit");
	pthread_mutex_unlock(&s->lock);
	return rc;
}

int store_object_place(struct store *s, const struct cas_id *id, const void *p, size_t n)
{
	return put_file(s, id, p, n);
}

int store_objects_index(struct store *s, size_t n, const struct cas_id *ids, const size_t *lens)
{
	return objects_batch(s, s->obj_put, "add object", n, ids, lens);
}

int store_objects_put(struct store *s, size_t n, const struct cas_id *ids, const void *const *ps,
		      const size_t *lens)
{
	size_t i;
	int rc = 0;

	for (i = 0; i < n && !rc; i++)
		rc = store_object_place(s, &ids[i], ps[i], lens[i]);
	if (rc)
		return rc;
	/* the files are in place; the index follows in one transaction */
	return store_objects_index(s, n, ids, lens);
}

int store_object_put(struct store *s, const struct cas_id *id, const void *p, size_t n)
{
	return store_objects_put(s, 1, id, &p, &n);
}

int store_object_has(struct store *s, const struct cas_id *id)
{
	char path[PATH_MAX];

	store_object_path(s, id, path, sizeof(path));
	return access(path, F_OK) == 0;
}

int store_objects_touch(struct store *s, size_t n, const struct cas_id *ids)
{
	return objects_batch(s, s->obj_touch, "touch object", n, ids, NULL);
}

int store_catalog_note(struct store *s, const struct cas_id *id, uint64_t size)
{
	sqlite3_stmt *st = NULL;
	int rc;

	rc = prep(s, &st, "INSERT OR REPLACE INTO catalogs VALUES(?1,?2,?3)");
	if (rc)
		return rc;
	sqlite3_bind_blob(st, 1, id->b, CAS_ID_LEN, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, (sqlite3_int64)size);
	sqlite3_bind_int64(st, 3, now_s());
	rc = sql_err(s, sqlite3_step(st), "add catalog");
	sqlite3_finalize(st);
	return rc;
}

int store_loc_get(struct store *s, const char *remote, const struct cas_id *id,
		  struct store_loc *out)
{
	int rc, step;

	sqlite3_mutex_enter(sqlite3_db_mutex(s->db));
	sqlite3_bind_text(s->loc_get, 1, remote, -1, SQLITE_STATIC);
	sqlite3_bind_blob(s->loc_get, 2, id->b, CAS_ID_LEN, SQLITE_STATIC);
	step = sqlite3_step(s->loc_get);
	if (step == SQLITE_ROW && sqlite3_column_bytes(s->loc_get, 0) == CAS_ID_LEN) {
		memcpy(out->pack.b, sqlite3_column_blob(s->loc_get, 0), CAS_ID_LEN);
		out->off = (uint64_t)sqlite3_column_int64(s->loc_get, 1);
		out->stored_len = (uint32_t)sqlite3_column_int64(s->loc_get, 2);
		out->raw_len = (uint32_t)sqlite3_column_int64(s->loc_get, 3);
		out->flags = (uint32_t)sqlite3_column_int64(s->loc_get, 4);
		rc = 0;
	} else if (step == SQLITE_DONE || step == SQLITE_ROW) {
		rc = -ENOENT;
	} else {
		rc = sql_err(s, step, "find location");
	}
	sqlite3_reset(s->loc_get);
	sqlite3_mutex_leave(sqlite3_db_mutex(s->db));
	return rc;
}

int store_loc_begin(struct store *s)
{
	pthread_mutex_lock(&s->lock);
	return sql_err(s, sqlite3_exec(s->db, "BEGIN IMMEDIATE", NULL, NULL, NULL), "begin");
}

int store_loc_put(struct store *s, const char *remote, const struct cas_id *id,
		  const struct store_loc *loc)
{
	int rc;

	sqlite3_bind_text(s->loc_put, 1, remote, -1, SQLITE_STATIC);
	sqlite3_bind_blob(s->loc_put, 2, id->b, CAS_ID_LEN, SQLITE_STATIC);
	sqlite3_bind_blob(s->loc_put, 3, loc->pack.b, CAS_ID_LEN, SQLITE_STATIC);
	sqlite3_bind_int64(s->loc_put, 4, (sqlite3_int64)loc->off);
	sqlite3_bind_int64(s->loc_put, 5, loc->stored_len);
	sqlite3_bind_int64(s->loc_put, 6, loc->raw_len);
	sqlite3_bind_int64(s->loc_put, 7, loc->flags);
	rc = sql_err(s, sqlite3_step(s->loc_put), "add location");
	sqlite3_reset(s->loc_put);
	return rc;
}

int store_loc_commit(struct store *s)
{
	int rc = sql_err(s, sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL), "commit");

	if (rc)
		sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
	pthread_mutex_unlock(&s->lock);
	return rc;
}

int store_loc_forget_pack(struct store *s, const char *remote, const struct cas_id *pack)
{
	sqlite3_stmt *st = NULL;
	int rc;

	rc = prep(s, &st, "DELETE FROM locations WHERE remote=?1 AND pack=?2");
	if (rc)
		return rc;
	sqlite3_bind_text(st, 1, remote, -1, SQLITE_STATIC);
	sqlite3_bind_blob(st, 2, pack->b, CAS_ID_LEN, SQLITE_STATIC);
	rc = sql_err(s, sqlite3_step(st), "forget pack");
	sqlite3_finalize(st);
	return rc;
}

int store_object_bytes(struct store *s, uint64_t *bytes, uint64_t *files)
{
	sqlite3_stmt *st = NULL;
	int rc;

	rc = prep(s, &st, "SELECT COALESCE(SUM(size),0), COUNT(*) FROM objects");
	if (rc)
		return rc;
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		*bytes = (uint64_t)sqlite3_column_int64(st, 0);
		*files = (uint64_t)sqlite3_column_int64(st, 1);
		rc = 0;
	} else {
		rc = sql_err(s, rc, "sum objects");
	}
	sqlite3_finalize(st);
	return rc;
}

int store_gc(struct store *s, uint64_t max, uint64_t *files, uint64_t *bytes)
{
	sqlite3_stmt *sel = NULL, *del = NULL;
	uint64_t total = 0, nfiles = 0;
	char path[PATH_MAX];
	int rc;

	*files = *bytes = 0;
	rc = store_object_bytes(s, &total, &nfiles);
	if (rc || total <= max)
		return rc;
	rc = prep(s, &sel, "SELECT id, size FROM objects ORDER BY atime ASC");
	if (!rc)
		rc = prep(s, &del, "DELETE FROM objects WHERE id=?1");
	if (rc)
		goto out;
	while (total > max && sqlite3_step(sel) == SQLITE_ROW) {
		struct cas_id id;
		uint64_t sz = (uint64_t)sqlite3_column_int64(sel, 1);

		if (sqlite3_column_bytes(sel, 0) != CAS_ID_LEN)
			continue;
		memcpy(id.b, sqlite3_column_blob(sel, 0), CAS_ID_LEN);
		store_object_path(s, &id, path, sizeof(path));
		/* a mount holding the file open keeps reading it: unlink is safe */
		if (unlink(path) < 0 && errno != ENOENT)
			continue;
		sqlite3_bind_blob(del, 1, id.b, CAS_ID_LEN, SQLITE_STATIC);
		sqlite3_step(del);
		sqlite3_reset(del);
		total -= sz < total ? sz : total;
		(*files)++;
		*bytes += sz;
	}
out:
	sqlite3_finalize(sel);
	sqlite3_finalize(del);
	return rc;
}

int store_key_note(struct store *s, const struct key_rec *rec)
{
	sqlite3_stmt *st = NULL;
	int rc;

	pthread_mutex_lock(&s->lock);
	rc = sqlite3_prepare_v2(s->db,
				"INSERT INTO keys(key, time_ns, catalog, files, bytes, sources)"
				" VALUES(?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT(key) DO UPDATE SET"
				" time_ns = ?2, catalog = ?3, files = ?4, bytes = ?5, sources = ?6"
				" WHERE excluded.time_ns >= keys.time_ns",
				-1, &st, NULL);
	if (rc == SQLITE_OK) {
		sqlite3_bind_text(st, 1, rec->key, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 2, rec->time_ns);
		sqlite3_bind_blob(st, 3, rec->catalog.b, CAS_ID_LEN, SQLITE_STATIC);
		sqlite3_bind_int64(st, 4, (sqlite3_int64)rec->files);
		sqlite3_bind_int64(st, 5, (sqlite3_int64)rec->bytes);
		if (rec->has_sources)
			sqlite3_bind_blob(st, 6, rec->sources.b, CAS_ID_LEN, SQLITE_STATIC);
		else
			sqlite3_bind_null(st, 6);
		rc = sqlite3_step(st);
	}
	sqlite3_finalize(st);
	pthread_mutex_unlock(&s->lock);
	return sql_err(s, rc, "noting a key");
}

int store_key_forget(struct store *s, const struct key_rec *rec)
{
	sqlite3_stmt *st = NULL;
	int rc;

	pthread_mutex_lock(&s->lock);
	rc = sqlite3_prepare_v2(s->db, "DELETE FROM keys WHERE key = ?1 AND time_ns <= ?2", -1, &st,
				NULL);
	if (rc == SQLITE_OK) {
		sqlite3_bind_text(st, 1, rec->key, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 2, rec->time_ns);
		rc = sqlite3_step(st);
	}
	sqlite3_finalize(st);
	pthread_mutex_unlock(&s->lock);
	return sql_err(s, rc, "forgetting a key");
}

int store_used_get(struct store *s, const char *remote, const char *key, int64_t *at_ns)
{
	sqlite3_stmt *st = NULL;
	int rc, found = 0;

	pthread_mutex_lock(&s->lock);
	rc = sqlite3_prepare_v2(s->db, "SELECT at_ns FROM used WHERE remote = ?1 AND key = ?2", -1,
				&st, NULL);
	if (rc == SQLITE_OK) {
		sqlite3_bind_text(st, 1, remote, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 2, key, -1, SQLITE_STATIC);
		rc = sqlite3_step(st);
		if (rc == SQLITE_ROW) {
			*at_ns = sqlite3_column_int64(st, 0);
			found = 1;
		}
	}
	sqlite3_finalize(st);
	pthread_mutex_unlock(&s->lock);
	if (found)
		return 0;
	return rc == SQLITE_DONE ? -ENOENT : sql_err(s, rc, "reading use marks");
}

int store_used_set(struct store *s, const char *remote, const char *key, int64_t at_ns)
{
	sqlite3_stmt *st = NULL;
	int rc;

	pthread_mutex_lock(&s->lock);
	rc = sqlite3_prepare_v2(s->db,
				"INSERT OR REPLACE INTO used(remote, key, at_ns)"
				" VALUES(?1, ?2, ?3)",
				-1, &st, NULL);
	if (rc == SQLITE_OK) {
		sqlite3_bind_text(st, 1, remote, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 2, key, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 3, at_ns);
		rc = sqlite3_step(st);
	}
	sqlite3_finalize(st);
	pthread_mutex_unlock(&s->lock);
	return sql_err(s, rc, "noting a use");
}

static int key_row(struct store *s, const char *sql, const char *arg, struct key_rec *out)
{
	sqlite3_stmt *st = NULL;
	int rc, found = 0;

	pthread_mutex_lock(&s->lock);
	rc = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);
	if (rc == SQLITE_OK) {
		sqlite3_bind_text(st, 1, arg, -1, SQLITE_STATIC);
		rc = sqlite3_step(st);
		if (rc == SQLITE_ROW && sqlite3_column_bytes(st, 2) == CAS_ID_LEN) {
			memset(out, 0, sizeof(*out));
			snprintf(out->key, sizeof(out->key), "%s",
				 (const char *)sqlite3_column_text(st, 0));
			out->time_ns = sqlite3_column_int64(st, 1);
			memcpy(out->catalog.b, sqlite3_column_blob(st, 2), CAS_ID_LEN);
			out->files = (uint64_t)sqlite3_column_int64(st, 3);
			out->bytes = (uint64_t)sqlite3_column_int64(st, 4);
			if (sqlite3_column_bytes(st, 5) == CAS_ID_LEN) {
				out->has_sources = 1;
				memcpy(out->sources.b, sqlite3_column_blob(st, 5), CAS_ID_LEN);
			}
			found = 1;
		}
	}
	sqlite3_finalize(st);
	pthread_mutex_unlock(&s->lock);
	if (found)
		return 0;
	return rc == SQLITE_DONE || rc == SQLITE_ROW ? -ENOENT : sql_err(s, rc, "reading keys");
}

int store_key_get(struct store *s, const char *key, struct key_rec *out)
{
	return key_row(s,
		       "SELECT key, time_ns, catalog, files, bytes, sources FROM keys"
		       " WHERE key = ?1",
		       key, out);
}

int store_key_newest(struct store *s, const char *prefix, struct key_rec *out)
{
	return key_row(s,
		       "SELECT key, time_ns, catalog, files, bytes, sources FROM keys"
		       " WHERE substr(key, 1, length(?1)) = ?1 ORDER BY time_ns DESC LIMIT 1",
		       prefix, out);
}
