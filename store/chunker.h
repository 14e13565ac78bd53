/*
 * Content-defined chunking (a gear-hash, FastCDC-style cut finder with
 * normalized chunk sizes).  An edit inside a large file moves only the cut
 * points near it, so the edited file shares most chunks with its old self.
 *
 * Stateless: the caller keeps a window of at least max bytes (or the rest
 * of the file) and asks where the next chunk ends.
 */
#ifndef STASH_CHUNKER_H
#define STASH_CHUNKER_H

#include <stddef.h>
#include <stdint.h>

#define CHUNK_MIN (256u << 10)
#define CHUNK_AVG (1u << 20)
#define CHUNK_MAX (4u << 20)

struct chunker_params {
	size_t min, avg, max; /* avg must be a power of two */
};

extern const struct chunker_params chunker_default;

/*
 * Length of the next chunk at data[0..n).  When eof is false and no cut is
 * found before n (< max), returns 0: the caller must supply more bytes.
 * Never returns more than max or n.
 */
size_t chunker_next(const struct chunker_params *p, const uint8_t *data, size_t n, int eof);

#endif
