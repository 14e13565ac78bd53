/*
 * The writable layer of a mount: an SQLite database and a data directory
 * in STORE/mounts/<id>/, laid over the immutable catalog.
 *
 * Inode numbers: catalog entry i is inode i + 1 (hard-link members all
 * use their group leader's); inodes made in the mount are numbered after
 * the catalog's and never reused.  State:
 *
 *   inodes(ino, mode, uid, gid, nlink, size, mtime, ctime, target, upper,
 *          cat, atime, rdev)
 *       a full record for every inode made or changed in the mount; a
 *       catalog inode without a row is exactly as the catalog says (its
 *       atime is its mtime).  atime is what was set (utimensat): reads do
 *       not update it.
 *       upper = 1: content lives in data/<ino> (size and mtime are that
 *       file's).  nlink 0: unlinked; kept while it may be open, dropped
 *       on the next open of the state.
 *   dentries(parent, name, ino)
 *       names added in the mount, and whiteouts (ino 0) that hide a
 *       catalog name.  A name in a catalog directory is looked up here
 *       first, then in the catalog.
 *   xattrs(ino, name, value), xup(ino)
 *       the xattrs of inodes made in the mount, and of catalog inodes in
 *       xup (copied up at their first xattr change); the others' are the
 *       catalog's.
 *
 * Everything is in the kernel's hands as soon as an operation returns
 * (SQLite WAL, data files written through), so a killed daemon loses
 * nothing: opening the same state again resumes it.  What survives a
 * power loss is what an fsync covered (ov_sync).
 *
 * Thread-safe: lookups take a read lock, changes a write lock and one
 * transaction each.  Functions return 0 or -errno.
 */
#ifndef STASH_OVERLAY_H
#define STASH_OVERLAY_H

#include "../store/catalog.h"

#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

#define OV_NONE UINT32_MAX

struct ov;

struct ov_attr {
	uint64_t ino;
	uint32_t mode, uid, gid, nlink;
	uint64_t size;
	int64_t mtime_s, ctime_s, atime_s;
	uint32_t mtime_ns, ctime_ns, atime_ns;
	uint64_t rdev; /* character and block devices */
	int upper; /* content in the data file */
	uint32_t cat_idx; /* catalog index of the content/record, OV_NONE if new */
};

/* a's fields as a struct stat. */
struct stat;
void ov_attr_stat(const struct ov_attr *a, struct stat *st);

struct ov_dirent {
	char *name;
	size_t len;
	uint64_t ino;
	uint32_t mode;
};

/* Read catalog content for copy-up: n bytes at off of catalog leader idx. */
typedef int (*ov_read_lower_fn)(void *arg, uint32_t idx, uint64_t off, void *buf, size_t n);

struct ov_opts {
	int preserve_owner;
	uid_t uid; /* owner shown for catalog entries without --preserve-owner */
	gid_t gid;
	ov_read_lower_fn read_lower;
	void *read_arg;
	int readonly; /* a reader beside a running daemon (commit, status) */
};

/* Open (creating) the state in dir over catalog cat (borrowed). */
MUST_CHECK int ov_open(const char *dir, struct catalog *cat, const struct ov_opts *o,
		       struct ov **out);
void ov_close(struct ov *ov);

/* Meta values (key, catalog id, ...) kept with the state. */
int ov_meta_get(struct ov *ov, const char *k, char *v, size_t n);
int ov_meta_set(struct ov *ov, const char *k, const char *v);
/* Read a meta value of the state in dir without opening it: 0, -ENOENT. */
int ov_peek_meta(const char *dir, const char *k, char *v, size_t n);

int ov_getattr(struct ov *ov, uint64_t ino, struct ov_attr *a);
/*
 * Where ino's content is: 1 = its data file (upper), 0 = catalog entry
 * *cat_idx (lower), or -errno.  Cheap for lower files (no SQLite).
 */
int ov_content(struct ov *ov, uint64_t ino, uint32_t *cat_idx);
int ov_lookup(struct ov *ov, uint64_t parent, const char *name, struct ov_attr *a);
/* Symlink target into buf (n bytes, NUL-terminated); its length. */
ssize_t ov_readlink(struct ov *ov, uint64_t ino, char *buf, size_t n);

/* Merged listing of a directory; free with ov_dirents_free. */
int ov_list(struct ov *ov, uint64_t dir, struct ov_dirent **v, size_t *n);
void ov_dirents_free(struct ov_dirent *v, size_t n);

/* Create a file of any kind: a symlink with target non-NULL, a device
 * with rdev. */
MUST_CHECK int ov_create(struct ov *ov, uint64_t parent, const char *name, mode_t mode, uid_t uid,
			 gid_t gid, const char *target, dev_t rdev, struct ov_attr *a);
MUST_CHECK int ov_link(struct ov *ov, uint64_t ino, uint64_t parent, const char *name,
		       struct ov_attr *a);
int ov_unlink(struct ov *ov, uint64_t parent, const char *name, int dir);
int ov_rename(struct ov *ov, uint64_t parent, const char *name, uint64_t newparent,
	      const char *newname, unsigned int flags);

#define OV_SET_MODE 1
#define OV_SET_UID 2
#define OV_SET_GID 4
#define OV_SET_SIZE 8
#define OV_SET_MTIME 16
#define OV_SET_MTIME_NOW 32
#define OV_SET_CTIME 64
#define OV_SET_ATIME 128
#define OV_SET_ATIME_NOW 256
MUST_CHECK int ov_setattr(struct ov *ov, uint64_t ino, int what, const struct stat *st,
			  struct ov_attr *a);

/*
 * Make ino's content writable in data/<ino> (copying it from the catalog
 * unless truncate), keeping its times.  Idempotent.
 */
MUST_CHECK int ov_copy_up(struct ov *ov, uint64_t ino, int truncate);
/* Path of ino's data file (out holds 4096). */
void ov_data_path(struct ov *ov, uint64_t ino, char *out);

int ov_setxattr(struct ov *ov, uint64_t ino, const char *name, const void *v, size_t n, int flags);
ssize_t ov_getxattr(struct ov *ov, uint64_t ino, const char *name, void *v, size_t n);
ssize_t ov_listxattr(struct ov *ov, uint64_t ino, char *v, size_t n);
int ov_removexattr(struct ov *ov, uint64_t ino, const char *name);

/* Inode number for a catalog index (its hard-link leader's). */
uint64_t ov_cat_ino(struct ov *ov, uint32_t idx);
uint64_t ov_changes(struct ov *ov); /* rows in the writable layer */
/* The kernel evicted ino: if it has no name left, drop its data and record. */
int ov_forget(struct ov *ov, uint64_t ino);
/* Make every change so far durable (fsync, fsyncdir). */
MUST_CHECK int ov_sync(struct ov *ov);

#endif
