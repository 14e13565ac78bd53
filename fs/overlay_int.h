/*
 * The writable layer's state and the helpers its parts share: records,
 * names and transactions (fs/overlay.c), changes (fs/overlay_change.c),
 * extended attributes (fs/overlay_xattr.c).  Private to those three; the
 * locking is said at the top of overlay.c.
 */
#ifndef STASH_OVERLAY_INT_H
#define STASH_OVERLAY_INT_H

#include "overlay.h"

#include <limits.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdint.h>

#ifndef RENAME_NOREPLACE
#define RENAME_NOREPLACE (1 << 0)
#endif
#ifndef RENAME_EXCHANGE
#define RENAME_EXCHANGE (1 << 1)
#endif

struct u64set {
	uint64_t *v; /* 0 marks a free slot: inode 0 does not exist */
	size_t cap, n;
};

struct ov {
	char dir[PATH_MAX];
	struct catalog *cat;
	uint64_t ncat;
	struct ov_opts o;
	sqlite3 *db;
	pthread_rwlock_t lock;
	pthread_mutex_t copy_lock;
	struct u64set rows;
	struct u64set uppers; /* rows with upper = 1 (never cleared) */
	struct u64set dirty;
	struct u64set xups; /* catalog inodes whose xattrs are in the table */
	uint64_t next_ino;
	int wal_fd; /* state.db-wal, for ov_sync; -1 until the first */
	int has_xattrs; /* in the table */
	int cat_xattrs; /* in the catalog */
	sqlite3_stmt *get_ino, *put_ino, *get_dent, *put_dent, *del_dent, *list_dent;
};

int ovi_set_has(const struct u64set *s, uint64_t x);
int ovi_set_add(struct u64set *s, uint64_t x);
int ovi_sqlerr(struct ov *ov, int rc, const char *what);
void ovi_now_ts(int64_t *s, uint32_t *ns);
void ovi_ballast_make(struct ov *ov);
int ovi_ballast_release(struct ov *ov);
int ovi_begin(struct ov *ov);
int ovi_end(struct ov *ov, int rc);
int ovi_get_row(struct ov *ov, uint64_t ino, struct ov_attr *a, struct buf *target);
int ovi_put_row(struct ov *ov, const struct ov_attr *a, const char *target, size_t tlen);
int ovi_attr_locked(struct ov *ov, uint64_t ino, struct ov_attr *a);
int ovi_save_row(struct ov *ov, const struct ov_attr *a);
int ovi_ensure_row(struct ov *ov, uint64_t ino, struct ov_attr *a);
int ovi_lookup_locked(struct ov *ov, uint64_t parent, const char *name, uint64_t *ino);
int ovi_set_dentry(struct ov *ov, uint64_t parent, const char *name, uint64_t ino);
int ovi_remove_name(struct ov *ov, uint64_t parent, const char *name);
int ovi_touch_dir(struct ov *ov, uint64_t dir, int delta);
int ovi_prep(struct ov *ov, sqlite3_stmt **st, const char *sql);
int ovi_list_locked(struct ov *ov, uint64_t dir, struct ov_dirent **v, size_t *n);

#endif
