/*
 * Source manifests for touch-sources: each regular file below a source
 * tree with its path, size, SHA-256 and mtime (ns), recorded at save or
 * commit time.  After a fresh checkout, touch-sources gives every file
 * whose content still matches its recorded mtime and leaves changed files
 * alone, so cargo (or make) rebuilds exactly what changed.
 *
 * Manifest (little-endian): "STASHSR1", u64 count, then per file u16 path
 * length, path bytes, u64 size, 32-byte SHA-256, i64 mtime seconds, u32
 * nanoseconds.  Stored zstd-compressed on the remote as sources/<sha256>,
 * named from the key record.
 */
#ifndef STASH_SOURCES_H
#define STASH_SOURCES_H

#include "repo.h"

#define SOURCES_MAX_BYTES (1ULL << 30)

/* Walk src (skipping .git and the path `skip`, a realpath or NULL). */
int sources_build(const char *src, const char *skip, struct buf *out, uint64_t *nfiles);
/* Compress and upload; its id in *id. */
int sources_put(struct repo *r, const struct buf *raw, struct cas_id *id, uint64_t *uploaded);
int sources_get(struct repo *r, const struct cas_id *id, struct buf *raw);

struct touch_stats {
	uint64_t touched; /* content matched: mtime set */
	uint64_t same; /* content and mtime already matched */
	uint64_t changed; /* content differs: left alone */
	uint64_t missing; /* recorded but not there */
};

/* Reading a manifest record by record (the parser touch-sources uses). */
struct sources_iter {
	const uint8_t *p, *end;
	uint64_t left;
};
struct source_rec {
	char rel[4096];
	uint64_t size;
	struct cas_id want;
	int64_t sec;
	uint32_t nsec;
};
int sources_iter_init(struct sources_iter *it, const struct buf *raw);
/* 1 and the next record in *r, 0 at the end, -EBADMSG. */
int sources_next(struct sources_iter *it, struct source_rec *r);

/* Apply a manifest to src.  -EBADMSG (nothing done) if it is malformed. */
int sources_touch(const char *src, const struct buf *raw, struct touch_stats *st);

#endif
