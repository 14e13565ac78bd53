/*
 * Packs: many chunks concatenated into one remote object, so tens of
 * thousands of small files are a handful of uploads.  Each chunk stays
 * reachable alone by (pack, offset, stored length), recorded in the
 * catalog.  A pack's name is the SHA-256 of its bytes; a chunk's id is the
 * SHA-256 of its raw (decompressed) bytes, checked on every decode.
 */
#ifndef STASH_PACK_H
#define STASH_PACK_H

#include "cas.h"
#include "util.h"
#include "tuning.h"

#include <stdint.h>

struct pack_codec;

struct pack_codec *pack_codec_new(int level);
void pack_codec_free(struct pack_codec *pc);

/*
 * Encode raw into out (replacing its contents): zstd when it saves space,
 * else the raw bytes.  *flags gets CHUNK_ZSTD or 0.  0 or -errno.
 */
int pack_encode(struct pack_codec *pc, const void *raw, size_t n, struct buf *out, uint32_t *flags);

/*
 * Decode stored bytes into raw[0..raw_len) and check the hash.
 * -EBADMSG when the bytes do not decode to exactly raw_len bytes whose
 * SHA-256 is *expect.
 */
int pack_decode(struct pack_codec *pc, const void *stored, size_t stored_len, uint32_t flags,
		void *raw, size_t raw_len, const struct cas_id *expect);

/* A pack being written to a temp file. */
struct pack_writer;

int pack_writer_new(const char *tmpdir, struct pack_writer **out);
/* Append bytes; their offset in the pack in *off. */
int pack_writer_append(struct pack_writer *w, const void *data, size_t n, uint64_t *off);
uint64_t pack_writer_size(const struct pack_writer *w);
/*
 * fsync and close; the pack's id in *id and its temp path in path (4096).
 * The writer is freed either way.
 */
int pack_writer_finish(struct pack_writer *w, struct cas_id *id, char *path);
/* Drop the temp file. */
void pack_writer_abort(struct pack_writer *w);

#endif
