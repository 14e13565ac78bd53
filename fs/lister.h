/*
 * Directories listed ahead.  A job that opens a second name in a snapshot
 * directory is taken to be walking it: a thread of the daemon lists that
 * directory through the mount, and the kernel's READDIRPLUS reply puts
 * every entry of it in its dentry cache at once.  The job's lookups of
 * the names that follow are then found there: one listing instead of a
 * LOOKUP round trip per file.  Names and attributes only; nothing is
 * fetched and nothing is recorded as read.
 */
#ifndef STASH_LISTER_H
#define STASH_LISTER_H

#include "../store/catalog.h"
#include "mount.h"

#include <stdint.h>

struct lister;

/* A lister for the mount at mnt (the string is kept); NULL when it cannot
 * run (no memory, no thread), which only costs the lookups. */
struct lister *lister_start(const char *mnt, struct catalog *cat, struct mount_stats *stats);

/* A lookup found catalog entry idx: its directory is listed at the second.
 * Any thread, no lock taken on the way; NULL l does nothing. */
void lister_note(struct lister *l, uint32_t idx);

/* Stop the thread (a listing in progress finishes first) and free. */
void lister_stop(struct lister *l);

#endif
