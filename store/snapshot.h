/*
 * Snapshots of real directories: save (walk, chunk, hash, compress, pack,
 * upload, catalog, publish) and restore (materialize a catalog into a real
 * directory).  Both report what they did in struct snap_stats.
 */
#ifndef STASH_SNAPSHOT_H
#define STASH_SNAPSHOT_H

#include "repo.h"

#include <sys/stat.h>

#include <stdint.h>

struct snap_stats {
	uint64_t files, dirs, symlinks, hardlinks, specials, skipped;
	uint64_t xattrs, xattrs_dropped; /* kept; not kept (a warning says which) */
	uint64_t bytes; /* content bytes in the tree */
	uint64_t chunks, chunks_new;
	uint64_t bytes_new; /* raw bytes of chunks that were uploaded */
	uint64_t bytes_uploaded; /* stored bytes sent, packs + catalog */
	uint64_t packs_uploaded;
	uint64_t bytes_fetched; /* restore: stored bytes read from remotes */
	uint64_t setid_dropped; /* restore: files whose set-id bits were dropped */
	int unchanged; /* commit: the mounted snapshot itself, nothing uploaded */
	uint64_t pruned, pruned_bytes; /* commit --prune-unread: files left out */
	struct cas_id catalog;
};

/* Counters a caller may watch (atomics) to show progress. */
struct snap_progress {
	uint64_t total_bytes, done_bytes;
	uint64_t total_files, done_files;
};

struct save_opts {
	const char *dir;
	const char *key;
	int threads; /* 0: one per core */
	int level; /* zstd level */
	int preserve_owner;
	const struct cas_id *sources; /* a sources manifest to name in the key record */
	struct snap_progress *progress; /* may be NULL */
};

/* 0 or -errno; every failure is logged as one line naming what and where. */
MUST_CHECK int snapshot_save(struct repo *r, const struct save_opts *o, struct snap_stats *st);

#define SNAP_NONE UINT32_MAX

/*
 * A tree being assembled into a snapshot by another source than a real
 * directory (the mount's commit).  The caller lays it out as a catalog
 * wants: each directory's children a contiguous name-sorted block (set
 * e[dir].first/count, and a directory's nlink), hard-link members' e[i].ino
 * pointing at the first member (nlink of non-directories is derived from
 * that).  Per entry, content comes from paths[i] (an absolute
 * path, read and chunked) or from base[i] (a leader index in the base
 * catalog whose chunks are reused without reading anything).
 */
struct snap_tree {
	struct cat_entry *e;
	char **paths; /* owned, may be NULL */
	uint32_t *base; /* SNAP_NONE or a base catalog index */
	uint64_t n, cap;
	struct buf strings;
	struct buf xattrs; /* struct cat_xattr, any order */
};

/* Append an entry (path is taken over); its index in *idx. */
int snap_tree_add(struct snap_tree *t, uint32_t parent, const char *name, size_t len,
		  const struct stat *st, char *path, uint32_t *idx);
int snap_tree_set_target(struct snap_tree *t, uint32_t idx, const char *target, size_t len);
/* Add an extended attribute of leader idx. */
int snap_tree_add_xattr(struct snap_tree *t, uint32_t idx, const char *name, const void *value,
			size_t len);
/* Which xattrs a snapshot keeps: user.*, trusted.*, security.* but SELinux labels. */
int snap_xattr_kept(const char *name);
void snap_tree_release(struct snap_tree *t);

/*
 * Upload what is new in t, write its catalog with the read record (base
 * chunk indices in first-read order), publish o->key.
 */
MUST_CHECK int snapshot_publish(struct repo *r, struct snap_tree *t, const struct catalog *base,
				const uint32_t *reads, uint64_t n_reads, const struct save_opts *o,
				struct snap_stats *st);

struct restore_opts {
	const char *dir;
	int threads;
	int preserve_owner; /* lchown to the recorded owner */
	struct snap_progress *progress; /* may be NULL */
};

MUST_CHECK int snapshot_restore(struct repo *r, struct catalog *c, const struct restore_opts *o,
				struct snap_stats *st);

#endif
