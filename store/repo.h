/*
 * A repo is what a command works on: the local store plus the remotes.
 * The primary remote is written to; read remotes (--read-remote) are
 * restored from, never written.  Content objects are fetched from the
 * first remote that has them.
 *
 * Key records (remote layout, no directory listing needed):
 *   keys/<sha256(key)>            the key's newest snapshot
 *   index/<sha256("p\0" prefix)>  recent keys starting with prefix, for
 *                                 prefix "" and every prefix that ends
 *                                 with a separator (- _ / . : @ + = ,)
 *   catalogs/<sha256(catalog)>    zstd-compressed catalog
 *   packs/<sha256(pack)>          packed chunks
 */
#ifndef STASH_REPO_H
#define STASH_REPO_H

#include "../remote/remote.h"
#include "cas.h"
#include "catalog.h"
#include "store.h"

#include <pthread.h>

#define REPO_MAX_READS 16
/* caps on records read from a remote */
#define KEY_RECORD_CAP (8u << 10)
#define INDEX_RECORD_CAP (1u << 20)
#define INDEX_KEEP 512
#define CATALOG_OBJECT_CAP (2ULL << 30)
/* A catalog's hashes, names and sizes keep it far from this compression
 * ratio (a tree of files: about 3:1; 100,000 empty files with one mtime:
 * 28:1); a frame claiming more is refused before it is unpacked. */
#define CATALOG_MAX_RATIO 1000

/*
 * What a repo is opened on.  Borrowed by the repo, so it must outlive it:
 * a mount's daemon (a fork of the command) opens its own repo on the same
 * spec.
 */
struct repo_spec {
	const char *store_path;
	const char *remote; /* NULL or "": file://STORE/remote */
	char *const *reads; /* read remotes' URLs */
	int n_reads;
	const struct remote_config *cfg; /* NULL: the defaults */
};

struct repo {
	struct store *store;
	struct remote *primary;
	struct remote *reads[REPO_MAX_READS];
	int n_reads;
	const struct repo_spec *spec; /* what it was opened on */
	int shares; /* a repo_split: store and read remotes are another's */
};

/* 0 or -errno (logged). */
MUST_CHECK int repo_open(struct repo *r, const struct repo_spec *spec);
void repo_close(struct repo *r);
/*
 * out: r's store and read remotes with a primary connection of its own, for
 * work that must not wait behind r's requests (a mount's use mark).  r must
 * outlive it; repo_close(out) closes only that connection.  0 or -errno.
 */
MUST_CHECK int repo_split(const struct repo *r, struct repo *out);

/*
 * Connections to the primary opened ahead, for a process forked after this
 * call (see remote_preconnect), and that process's repo taking them (see
 * remote_adopt; *used counts those taken).
 */
int repo_preconnect(struct repo *r, int n, int *fds);
void repo_adopt(struct repo *r, const int *fds, int n, uint64_t *used);

/* Remote i of r: 0 the primary, 1..n_reads the read remotes. */
struct remote *repo_remote(struct repo *r, int i);
/* Get from the primary, then each read remote; -ENOENT when none has it. */
MUST_CHECK int repo_get(struct repo *r, const char *name, uint64_t off, uint64_t len,
			struct buf *out, size_t cap);
/* The same, telling pr as the bytes arrive (see remote.h). */
MUST_CHECK int repo_get_progress(struct repo *r, const char *name, uint64_t off, uint64_t len,
				 struct buf *out, size_t cap, const struct remote_progress *pr);

/* The remote's name of object id in dir ("packs", "catalogs", "sources"):
 * DIR/HEX, in out of REPO_NAME_MAX bytes.  The remote layout's one spelling. */
#define REPO_NAME_MAX 96
void repo_object_name(char *out, const char *dir, const struct cas_id *id);

enum hit_kind { HIT_MISS = 0, HIT_EXACT, HIT_PARTIAL };
const char *hit_kind_name(enum hit_kind k);

/* The length of the longest prefix of s that has an index: up to its last
 * separator (- _ / . : @ + = ,); 0 for none.  Prune's key groups too. */
size_t key_indexed_len(const char *s);

/* 0 if key is 1..512 printable ASCII bytes, else -EINVAL. */
int key_valid(const char *key);

/* The record of exactly key on one remote: 0, -ENOENT or -errno. */
MUST_CHECK int keys_get(struct remote *rem, const char *key, struct key_rec *out);
/* The parsers of what keys_get and the prefix indexes read (where names the
 * object in messages); b may be shortened.  0 or -EBADMSG. */
MUST_CHECK int keys_parse_record(struct buf *b, const char *key, const char *where,
				 struct key_rec *out);
MUST_CHECK int keys_parse_index(const struct buf *b, const char *where, const char *prefix,
				struct key_rec **v, size_t *n);

/* Publish rec on the primary: the key record, then the prefix indexes
 * (after prune_guard: -ESTALE when a prune is deleting what it uses). */
MUST_CHECK int keys_publish(struct repo *r, const struct key_rec *rec);

/*
 * Take rec off the primary (prune): its key record, its use mark and its
 * lines in the prefix indexes.  A key published again since rec was read
 * stays (*republished 1).  0 or -errno.
 */
MUST_CHECK int keys_withdraw(struct repo *r, const struct key_rec *rec, int *republished);

/* The record stored as keys/HEX (the key's hash checked): 0, -ENOENT, -errno. */
int keys_get_named(struct remote *rem, const char *hex, struct key_rec *out);

/*
 * Use marks: restore, mount and touch-sources put used/<sha256(key)> on
 * the primary when the key came from it (at most once an hour per machine,
 * on a thread of its own between begin and end; the mount's daemon sends
 * it while it serves); the object's write time
 * is the key's last use, which ls shows and prune's --keep-within reads.
 */
struct used_mark {
	pthread_t t;
	int started;
	struct repo *r;
	char name[128];
	char key[KEY_MAX + 1];
};
void keys_mark_used_begin(struct repo *r, const struct key_rec *rec, struct used_mark *m);
void keys_mark_used_end(struct used_mark *m);

/* When each key was last used, from a listing of used/ (sorted by id). */
struct key_used {
	struct cas_id id; /* sha256(key) */
	int64_t at; /* seconds since the epoch */
};
int keys_used_list(struct remote *rem, struct key_used **out, size_t *n);
/* key's last use in v, or -1 when it has no mark. */
int64_t keys_used_at(const struct key_used *v, size_t n, const char *key);

/*
 * The exact key, else for each restore prefix in order the newest key
 * starting with it; each tried on the primary then the read remotes.
 * 0 with *kind (HIT_MISS leaves out untouched), or -errno.
 */
MUST_CHECK int keys_resolve(struct repo *r, const char *key, char *const *restore, int n_restore,
			    struct key_rec *out, enum hit_kind *kind);

/* Keys starting with prefix, newest first, from every remote.  Caller frees *out. */
int keys_list(struct repo *r, const char *prefix, struct key_rec **out, size_t *n);

/*
 * The catalog with this id, fetched and verified into the store's cache if
 * needed, then opened.  -EBADMSG (logged with where) when corrupt.
 */
MUST_CHECK int repo_catalog(struct repo *r, const struct cas_id *id, struct catalog **out);

/*
 * Write a built catalog image: into the local cache and, compressed, to
 * the primary.  Its id in *id.
 */
MUST_CHECK int repo_put_catalog(struct repo *r, const struct buf *img, struct cas_id *id,
				uint64_t *uploaded);

#endif
