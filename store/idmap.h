/*
 * A hash map from content id to a 32-bit value (open addressing, linear
 * probing, the id's first bytes as hash: ids are SHA-256, already uniform).
 * Not thread-safe: callers lock.
 */
#ifndef STASH_IDMAP_H
#define STASH_IDMAP_H

#include "cas.h"

#include <stdint.h>

struct idmap;

struct idmap *idmap_new(void);
void idmap_free(struct idmap *m);
/* 0 and *val when found, else -ENOENT. */
int idmap_get(const struct idmap *m, const struct cas_id *id, uint32_t *val);
/* Insert or replace.  0 or -ENOMEM. */
int idmap_put(struct idmap *m, const struct cas_id *id, uint32_t val);
uint64_t idmap_count(const struct idmap *m);

#endif
