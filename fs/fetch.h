/*
 * Lazy content for the mount: a byte range of a catalog file is served
 * from the store's object cache, fetching (and verifying) only the chunks
 * that cover it.  Concurrent readers of a missing chunk fetch it once.
 * Every chunk read for the first time is appended to the read record
 * (reads.log, uint32 catalog chunk indices) that commit turns into the
 * next snapshot's prefetch order; chunks put in the kernel's page cache
 * before anyone asked go to pushed.log, which commit appends to the
 * record after what was read (a reader may have read them unseen).
 */
#ifndef STASH_FETCH_H
#define STASH_FETCH_H

#include "../store/repo.h"
#include "../store/tuning.h"

#include <stdint.h>
#include <sys/types.h>

struct fetcher;
struct mount_stats;

/* statedir: where reads.log and pushed.log are kept (NULL: no record). */
MUST_CHECK int fetcher_new(struct repo *r, struct catalog *cat, const char *statedir,
			   struct mount_stats *stats, struct fetcher **out);
void fetcher_free(struct fetcher *f);
/* A debugging knob, and how the tests have every cache file written when
 * first needed instead of behind: no copies kept in memory. */
void fetcher_no_mem_reads(struct fetcher *f);
/*
 * Close reads.log and pushed.log: the record is complete.  Call it once
 * nothing reads through the fetcher any more (the FUSE loop has ended);
 * fetcher_free then finishes the background work (GETs in flight, cache
 * files still queued, the LRU marks), none of which is the mount's state.
 */
void fetcher_close_logs(struct fetcher *f);

/* Up to n bytes at off of catalog file idx (a leader); short only at EOF. */
ssize_t fetch_read(struct fetcher *f, uint32_t idx, uint64_t off, void *buf, size_t n);

/* An open fd of cached chunk chunk_idx (fetching it if needed); caller closes. */
int fetch_chunk_fd(struct fetcher *f, uint32_t chunk_idx);
/*
 * n bytes at off of a small chunk (up to FETCH_MEM_MAX) a batch fetched
 * lately, from memory (dropped once read to its end and its cache file
 * is written): 1 if served, 0 if not there.
 */
int fetch_mem_read(struct fetcher *f, uint32_t chunk_idx, uint64_t off, void *buf, size_t n);

/*
 * All n bytes of chunk chunk_idx into buf if they are here (in memory or
 * the cache), never fetching: 1 if copied, 0 if not.
 */
int fetch_peek(struct fetcher *f, uint32_t chunk_idx, void *buf, size_t n);

/* If chunk chunk_idx is cached, start reading it into the page cache. */
void fetch_advise_cached(struct fetcher *f, uint32_t chunk_idx);

/*
 * n bytes of a reply were served from fd, chunk chunk_idx's cache file:
 * once all of a large chunk has been served, the kernel holds its bytes in
 * the mount's page cache, and the cache file's own pages are dropped
 * (those already written back: see STORE_WRITE_BEHIND), so a job reading
 * a large tree keeps one copy of it in memory, not two.
 */
void fetch_served(struct fetcher *f, uint32_t chunk_idx, int fd, uint32_t n);

/* Note that chunk chunk_idx was read (for the read record). */
void fetch_note_read(struct fetcher *f, uint32_t chunk_idx);

/*
 * Note that chunk chunk_idx was handed to the kernel unasked: the job may
 * read it from the page cache without a request, so the next record keeps
 * it (after what was seen read) unless a read of it is noted.
 */
void fetch_note_pushed(struct fetcher *f, uint32_t chunk_idx);

/* Is chunk chunk_idx in the read record queued by fetch_prefetch_record? */
int fetch_recorded(struct fetcher *f, uint32_t chunk_idx);

/*
 * cb(arg, chunk) for each chunk known cached now, then for each a fetch
 * caches from now on and each recorded chunk the prefetch finds cached
 * already (a chunk may come more than once); NULL stops it (no call is in
 * progress once this returns).  Called from fetching threads: cb must not
 * block nor call back into the fetcher.
 */
void fetch_on_landed(struct fetcher *f, void (*cb)(void *arg, uint32_t chunk), void *arg);

/* Queue the catalog's read record for background fetching; its length. */
int fetch_prefetch_record(struct fetcher *f);

/* A reader is streaming catalog file idx at ref: fetch the next chunks ahead. */
void fetch_read_ahead(struct fetcher *f, uint32_t idx, uint32_t ref);

#endif
