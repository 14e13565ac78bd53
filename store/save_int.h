/*
 * The saver: one save's (or commit's) state, shared by its walk
 * (store/save_walk.c) and its content, catalog and publishing
 * (store/save.c).  Private to those two; the locking is said in save.c.
 */
#ifndef STASH_SAVE_INT_H
#define STASH_SAVE_INT_H

#include "snapshot.h"
#include "tuning.h"

#include <pthread.h>
#include <stdatomic.h>
#include <sys/types.h>

#define NONE UINT32_MAX

struct cinfo {
	struct cas_id id;
	uint32_t pack; /* index in s->packs, NONE until appended */
	uint32_t raw_len;
	uint64_t off;
	uint32_t stored_len;
	uint32_t flags;
	uint32_t cat; /* index in the catalog's chunk table */
	uint32_t is_new;
};

struct packinfo {
	struct cas_id id;
	int state; /* 0 unknown, 1 present on the primary, 2 missing */
	uint32_t cat;
};

struct fileref {
	struct cat_ref *v;
	uint32_t n, cap;
};

struct lnk {
	uint32_t idx;
	dev_t dev;
	ino_t ino;
};

struct saver {
	struct repo *r;
	const struct save_opts *o;
	int rootfd;
	struct snap_tree *t;
	const uint32_t *reads; /* read record: base chunk indices */
	uint64_t n_reads;
	uint32_t *read_ci; /* base chunk index -> ci, for the record */
	struct lnk *lnks; /* non-directories with st_nlink > 1 */
	uint64_t nlnks, caplnks;

	uint32_t *files;
	uint64_t nfiles;
	atomic_uint_fast64_t next;
	struct fileref *refs; /* per entry */

	pthread_mutex_t lock;
	pthread_mutex_t pack_lock;
	struct idmap *map; /* chunk id -> ci index */
	struct idmap *packmap; /* pack id -> packs index */
	struct cinfo *ci;
	uint64_t nci, capci;
	struct packinfo *packs;
	uint64_t npacks, cappacks;
	struct pack_writer *pw;
	uint32_t pw_idx;
	atomic_int err;
	struct snap_stats *st;
};

/* The walk: the tree of o->dir (rootfd) into s->t, in catalog order. */
int walk(struct saver *s);
/* Hard links: members point at their group's leader. */
int link_groups(struct saver *s);
/* The kept extended attributes of every leader. */
int save_xattrs(struct saver *s);
/* nlink of every directory and link group, as the tree has them. */
int count_links(struct snap_tree *t);

#endif
