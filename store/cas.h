/*
 * Content IDs: SHA-256 of an object's bytes, kept binary; hex only at the
 * edges.  This is the only place that talks to OpenSSL.
 */
#ifndef STASH_CAS_H
#define STASH_CAS_H

#include "util.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define CAS_ID_LEN 32
#define CAS_HEX_LEN 64

struct cas_id {
	uint8_t b[CAS_ID_LEN];
};

/* Incremental hashing; opaque state allocated by cas_hasher_new. */
struct cas_hasher;

struct cas_hasher *cas_hasher_new(void);
void cas_hasher_update(struct cas_hasher *h, const void *data, size_t n);
/* Finish into *out and reset the hasher for reuse. */
void cas_hasher_final(struct cas_hasher *h, struct cas_id *out);
void cas_hasher_free(struct cas_hasher *h);

void cas_hash(const void *data, size_t n, struct cas_id *out);
/* SHA-256 of everything read from fd (to EOF).  0 or -errno. */
int cas_hash_fd(int fd, struct cas_id *out);

static inline int cas_id_cmp(const struct cas_id *a, const struct cas_id *b)
{
	return memcmp(a->b, b->b, CAS_ID_LEN);
}

static inline int cas_id_is_zero(const struct cas_id *a)
{
	static const struct cas_id zero;

	return memcmp(a->b, zero.b, CAS_ID_LEN) == 0;
}

/* out must hold CAS_HEX_LEN + 1 bytes. */
void cas_id_hex(const struct cas_id *id, char *out);
/* 0, or -EINVAL unless s is exactly 64 hex digits. */
MUST_CHECK int cas_id_parse(struct cas_id *id, const char *s);

#endif
