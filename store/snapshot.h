/*
 * Snapshots of real directories: save (walk, chunk, hash, compress, pack,
 * upload, catalog, publish) and restore (materialize a catalog into a real
 * directory).  Both report what they did in struct snap_stats.
 */
#ifndef STASH_SNAPSHOT_H
#define STASH_SNAPSHOT_H

#include "repo.h"

#include <stdint.h>

struct snap_stats {
	uint64_t files, dirs, symlinks, hardlinks, skipped;
	uint64_t bytes;          /* content bytes in the tree */
	uint64_t chunks, chunks_new;
	uint64_t bytes_new;      /* raw bytes of chunks that were uploaded */
	uint64_t bytes_uploaded; /* stored bytes sent, packs + catalog */
	uint64_t packs_uploaded;
	uint64_t bytes_fetched;  /* restore: stored bytes read from remotes */
	struct cas_id catalog;
};

struct save_opts {
	const char *dir;
	const char *key;
	int threads;     /* 0: one per core */
	int level;       /* zstd level */
	int preserve_owner;
};

/* 0 or -errno; every failure is logged as one line naming what and where. */
int snapshot_save(struct repo *r, const struct save_opts *o, struct snap_stats *st);

struct restore_opts {
	const char *dir;
	int threads;
	int preserve_owner; /* lchown to the recorded owner */
};

int snapshot_restore(struct repo *r, struct catalog *c, const struct restore_opts *o,
		     struct snap_stats *st);

#endif
