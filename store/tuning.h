/*
 * Tuning: the sizes, counts and times that trade speed, memory and
 * requests against each other, in one place, each with what it weighs.
 * Part of the base (it includes nothing): every layer may use it.
 *
 * Not here: what a format fixes (chunk sizes in store/chunker.h: another
 * value cuts every file differently, so nothing dedupes against the
 * snapshots made before), and the caps on what a remote or a catalog may
 * claim (store/repo.h, store/catalog.h, remote/http*.c), which bound a
 * hostile input rather than tune a fast path.
 */
#ifndef STASH_TUNING_H
#define STASH_TUNING_H

/* ---- the mount's requests (fs/ops.c, fs/serve.c) ---- */

/* Seconds the kernel may keep names and attributes: they change only through us. */
#define ATTR_TIMEOUT 86400.0
/* A small file read into a stack buffer (and pushed from one) up to this. */
#define SMALL_READ (32u << 10)
/* Files of one chunk up to this are pushed into the page cache: their READs (128 KiB each) replaced. */
#define PUSH_MAX (1u << 20)
/* libfuse's worker threads: at most, and kept idle. */
#define FUSE_MAX_THREADS 32
#define FUSE_IDLE_THREADS 8

/* ---- directories listed ahead (fs/lister.c) ---- */

#define LIST_QUEUE 256 /* directories waiting; a power of two */
#define LIST_MIN 3 /* entries: fewer, and the lookups are as cheap */
#define LIST_MAX 4096 /* entries: more, and the job may want few of them */
#define BROAD_DIRS 16 /* directories walked before the job may be reading broadly */

/* ---- fetching (fs/fetch.c, fs/fetch_mem.c) ---- */

/* Background fetchers (read-ahead and record), network-bound: GETs in flight at a time. */
#define FETCH_THREADS 6
/* Chunks up to this a batch fetched are kept in memory until read (no cache-file round trip). */
#define FETCH_MEM_MAX (64u << 10)
/*
 * Small chunks kept in memory until their cache files are written: up to
 * 256 MiB, a sixteenth of the machine's memory on small ones (see
 * docs/decisions.md).
 */
#define MEM_BYTES_MAX ((size_t)256 << 20)
#define INDEX_BATCH 256 /* objects written behind per index transaction */
#define WRITE_QUIET_NS (1000LL * 1000000) /* no chunk kept for this long: the writer starts */
#define FAILED_RING 64 /* failed fetches remembered */
#define FAILED_HOLD_NS (2 * 1000000000LL) /* a failed fetch answers repeats this long */
/* A miss brings its neighbours in the pack (its directory) up to this. */
#define NEIGHBOUR_BYTES (1u << 20)
/* One GET of the read record's chunks: up to this, and this many small files. */
#define PREFETCH_BATCH (4u << 20)
#define PREFETCH_CHUNKS 4096
/* A range spans gaps of up to this (one GET rather than two; the gap's bytes come too). */
#define MAX_GAP (64u << 10)
/* A scan's pack windows grow to this. */
#define WINDOW_BYTES (4u << 20)
#define SCAN_SLACK 16 /* a miss this close after the last batch may continue a scan */
/* A batch of the read record's chunks spans gaps of up to this. */
#define RECORD_GAP (256u << 10)
#define READ_AHEAD_CHUNKS 6 /* a sequential reader's chunks queued ahead of it */

/* ---- the mount's state (fs/overlay.c, fs/state.c) ---- */

/* Space held back in the state for removals on a full disk (fs/overlay.c). */
#define BALLAST_BYTES (8 << 20)
/* The longest umount waits for a daemon to write its state, in seconds. */
#define DAEMON_WAIT_S 30

/* ---- the store (store/) ---- */

/* A pack is sealed and uploaded at this size. */
#define PACK_TARGET (16u << 20)
/* Compressed output must save at least 1/32 or the chunk is stored raw. */
#define PACK_MIN_SAVING 32
/* save reads a file this much at a time (at least the largest chunk). */
#define SAVE_WINDOW (16u << 20)
/* restore's GETs: one spans chunks up to this much of a pack, across gaps up to this. */
#define RESTORE_BATCH_MAX (8u << 20)
#define RESTORE_BATCH_GAP (256u << 10)
/* Objects this large start their writeback when put (see store_object_put). */
#define STORE_WRITE_BEHIND (256u << 10)
/* A machine marks a key used on a remote at most this often. */
#define USED_EVERY_NS (3600 * 1000000000LL)
/* Key records prune reads at a time: a team's remote holds thousands. */
#define PRUNE_READERS 8

/* ---- HTTP and S3 (remote/http*.c) ---- */

#define HTTP_TRIES 5 /* a request's tries, transient failures retried with backoff */
#define EXPECT_WAIT_MS 200 /* S3 PUTs over 1 MiB: the longest wait for a 100 Continue */
#define AHEAD_TTL 5.0 /* seconds an adopted, unused connection is worth taking */
#define POOL_MAX 16 /* idle connections kept */
#define AHEAD_MAX 8 /* connections the command opened that the daemon takes */

#endif
