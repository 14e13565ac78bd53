/*
 * Retention on the remote (stashfs prune) and the guard every publish
 * passes, so that a prune and the jobs publishing meanwhile never leave a
 * key that names a deleted object.
 *
 * The protocol (docs/ARCHITECTURE.md, "Retention"): an object no kept key
 * references is first condemned (a line in prune/condemned with the time),
 * and deleted only by a prune at least `grace` later that still finds it
 * unreferenced, which first marks it deleting in that list by a
 * conditional write.  A publish reads the list: the objects its snapshot
 * uses that are condemned it takes back out (conditional write too); one
 * already marked deleting makes the publish fail, nothing published.
 * Objects written within `grace` are never condemned (a commit's new
 * packs go out before its key).
 */
#ifndef STASH_PRUNE_H
#define STASH_PRUNE_H

#include "repo.h"

#include <stdio.h>

#define PRUNE_LIST "prune/condemned"
#define PRUNE_GRACE_DEFAULT (6 * 3600)

struct prune_opts {
	int64_t keep_within; /* seconds; -1: no such policy */
	int64_t keep_last; /* keys per group; -1: none */
	uint64_t max_size; /* bytes; UINT64_MAX: none */
	int64_t grace; /* seconds */
	int dry_run;
	FILE *json; /* NULL, or where the JSON report goes */
};

struct prune_stats {
	uint64_t keys, keys_dropped, keys_republished;
	uint64_t objects, bytes; /* on the remote, listed */
	uint64_t kept_objects, kept_bytes; /* what kept keys reference */
	uint64_t young_objects; /* unreferenced, written within grace */
	uint64_t condemned, condemned_bytes; /* newly */
	uint64_t deleted, deleted_bytes;
	uint64_t rescued; /* taken off the list: a key uses them again */
	uint64_t marks_deleted; /* use marks of keys that are gone */
};

/* Drop keys by the policies, then condemn and delete as above.  0 or -errno. */
int repo_prune(struct repo *r, const struct prune_opts *o, struct prune_stats *st);

/* Called by keys_publish before the key goes out: 0, -ESTALE (a prune is
 * deleting an object rec's snapshot uses; logged), or -errno. */
int prune_guard(struct repo *r, const struct key_rec *rec);

/* The list of condemned objects as this code reads it (lines it cannot
 * read left out), written out again; *n lines.  For the fuzz target. */
int prune_list_normalize(const struct buf *in, struct buf *out, size_t *n);

#endif
