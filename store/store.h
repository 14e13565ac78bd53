/*
 * The local store: a directory holding the object cache, cached catalogs,
 * temp files, mount state and an SQLite index (WAL) of what it holds.
 * Shared safely by concurrent commands and mounts: files appear whole
 * only (an object is linked in from an O_TMPFILE, anything else renamed
 * from tmp/), and the index is written after the file is in place.
 *
 *   STORE/index.db         SQLite: objects, locations, catalogs
 *   STORE/objects/ab/<hex> cached raw chunk content
 *   STORE/catalogs/<hex>   uncompressed catalogs (mmap-able)
 *   STORE/tmp/             temp files (same filesystem, for rename)
 *   STORE/remote/          the default file remote when none is given
 *
 * A struct store may be used from several threads; the index connection
 * is serialized by SQLite (FULLMUTEX).
 */
#ifndef STASH_STORE_H
#define STASH_STORE_H

#include "cas.h"
#include "tuning.h"
#include "util.h"

#include <stdint.h>

#define KEY_MAX 512

struct store;

/* A published key: its snapshot and when it was published. */
struct key_rec {
	char key[KEY_MAX + 1];
	struct cas_id catalog;
	int64_t time_ns;
	uint64_t files;
	uint64_t bytes;
	int has_sources; /* key records only: a sources manifest */
	struct cas_id sources;
	int from; /* keys_resolve: 0 the primary, i the i-th read remote, -1 this machine */
};

/*
 * Key records seen on a remote or published from here, kept so that a
 * remote that cannot be reached still leaves what this machine knew.
 * note: keep rec (a newer record of the same key wins).  get: the key's
 * record; newest: the newest key starting with prefix.  0 or -ENOENT.
 */
int store_key_note(struct store *s, const struct key_rec *rec);
int store_key_get(struct store *s, const char *key, struct key_rec *out);
int store_key_newest(struct store *s, const char *prefix, struct key_rec *out);
/* Forget rec (a prune withdrew it), unless a newer record is known. */
int store_key_forget(struct store *s, const struct key_rec *rec);
/* When this machine last marked key used on remote: 0 or -ENOENT. */
int store_used_get(struct store *s, const char *remote, const char *key, int64_t *at_ns);
int store_used_set(struct store *s, const char *remote, const char *key, int64_t at_ns);

struct store;

/* Where a chunk lives on a remote (for dedup on save). */
struct store_loc {
	struct cas_id pack;
	uint64_t off;
	uint32_t stored_len;
	uint32_t raw_len;
	uint32_t flags;
};

struct sqlite3;

/*
 * Open (creating) an SQLite database for several threads and processes:
 * serialized connection, 30 s busy timeout, then run schema.  Switching a
 * new database to WAL takes an exclusive lock the busy handler does not
 * wait for, so schema is retried for up to 10 s.  Errors are logged as
 * "what 'path': ...".  0, -ENOSPC or -EIO.
 */
MUST_CHECK int store_db_open(const char *path, const char *schema, const char *what,
			     struct sqlite3 **out);

/* Create if needed and open.  0 or -errno (a clear error is logged). */
MUST_CHECK int store_open(const char *path, struct store **out);
/* Remove what killed writers left in STORE/tmp (store_open does). */
void store_sweep_tmp(struct store *s);
void store_close(struct store *s);

const char *store_path(const struct store *s);
const char *store_tmpdir(const struct store *s);

/* Path of a cached object / catalog (whether or not it exists). */
void store_object_path(const struct store *s, const struct cas_id *id, char *out, size_t n);
void store_catalog_path(const struct store *s, const struct cas_id *id, char *out, size_t n);

/*
 * Put raw chunk bytes into the object cache (temp file, rename, then the
 * index).  The caller has verified the hash.  0 or -errno (-ENOSPC).
 *
 * Cached objects are not fsync'ed: they can always be fetched again, and
 * an fsync per object made a cold read of 10,000 small files cost 10,000
 * journal commits.  After a power loss an object may be short or empty;
 * readers check its size against the catalog and drop it if it is wrong.
 * Packs, catalogs, key records and mount state are fsync'ed.  Objects of
 * STORE_WRITE_BEHIND bytes or more (large files' chunks) start their
 * writeback at once, so that a mount can drop their pages once it has
 * served them (the kernel then holds the bytes in the mount's page cache).
 */
int store_object_put(struct store *s, const struct cas_id *id, const void *p, size_t n);
/* Several at once, indexed in one transaction. */
int store_objects_put(struct store *s, size_t n, const struct cas_id *ids, const void *const *ps,
		      const size_t *lens);
/*
 * store_objects_put in two steps, for objects arriving one by one: the
 * file goes in place at once (readers open it by path), the index follows
 * for many in one transaction.
 */
int store_object_place(struct store *s, const struct cas_id *id, const void *p, size_t n);
int store_objects_index(struct store *s, size_t n, const struct cas_id *ids, const size_t *lens);
/* 1 if cached (and the file has the recorded size), 0 if not. */
int store_object_has(struct store *s, const struct cas_id *id);
/* Mark objects used now, in one transaction (gc drops least recently used). */
int store_objects_touch(struct store *s, size_t n, const struct cas_id *ids);

/* Record that a catalog file is cached. */
int store_catalog_note(struct store *s, const struct cas_id *id, uint64_t size);

/* Known chunk locations on a remote (by URL). */
int store_loc_get(struct store *s, const char *remote, const struct cas_id *id,
		  struct store_loc *out);
/* Batch insert: begin, put..., commit. */
int store_loc_begin(struct store *s);
int store_loc_put(struct store *s, const char *remote, const struct cas_id *id,
		  const struct store_loc *loc);
int store_loc_commit(struct store *s);
/* Forget every location in a pack the remote no longer has. */
int store_loc_forget_pack(struct store *s, const char *remote, const struct cas_id *pack);

/* Trim the object cache to max bytes, least recently used first.
 * Counts of what was removed in *files and *bytes. */
int store_gc(struct store *s, uint64_t max, uint64_t *files, uint64_t *bytes);
/* Total cached object bytes. */
int store_object_bytes(struct store *s, uint64_t *bytes, uint64_t *files);

#endif
