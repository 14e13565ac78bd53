/*
 * The fetcher's state, shared by the fetching (fs/fetch.c) and the
 * small-object memory cache with its writer behind (fs/fetch_mem.c).
 * Private to those two.
 */
#ifndef STASH_FETCH_INT_H
#define STASH_FETCH_INT_H

#include "fetch.h"
#include "mount.h"
#include "../store/tuning.h"

#include <pthread.h>

#define MEM_CHUNK_MAX FETCH_MEM_MAX
#define ALONE 0x80000000u /* queued chunk to fetch by itself (read-ahead) */
#define WINDOW 0x40000000u /* queued chunk starting a pack window (a scan) */

enum { MEM_KEPT, MEM_THERE, MEM_FULL, MEM_NO }; /* mem_keep */

enum {
	M_DIRTY = 1, /* in memory only: its cache file is not written yet */
	M_WRITING = 2, /* a writer is writing it from mem[] (keep the bytes) */
	M_READ = 4, /* read to its end: drop once written */
};

/* A growing FIFO of chunk indices; its user holds the lock. */
struct ring {
	uint32_t *q;
	size_t head, tail, cap;
};

struct fetcher {
	struct repo *r;
	struct catalog *cat;
	struct mount_stats *stats;
	uint32_t n; /* chunks */
	int reads_fd;
	int pushed_fd; /* pushed.log: chunks handed to the kernel unasked (see fetch.h) */
	uint64_t *seen; /* chunks already in the read record */
	uint64_t *pushed; /* chunks in pushed.log */
	uint32_t *order; /* chunk indices sorted by (pack, offset) */
	uint32_t *pos; /* chunk -> index in order */
	uint32_t *dir; /* chunk -> directory of the first file using it */
	uint8_t *inflight; /* per chunk; written under lock */
	uint8_t *have; /* per chunk: known cached (a hint) */
	uint8_t *wanted; /* per chunk: in the read record */
	uint32_t *served; /* per chunk: bytes served from its cache file (large ones) */
	pthread_mutex_t lock;
	/*
	 * Chunks whose fetch failed lately, and when (under lock): the kernel
	 * repeats a read whose readahead failed, and readers waiting on the
	 * same fetch come back; within FAILED_HOLD_NS they fail at once
	 * instead of paying another --timeout each.
	 */
	struct {
		uint32_t c;
		int64_t at;
	} failed[FAILED_RING];
	unsigned failed_next;
	pthread_mutex_t pick; /* one prefetcher at a time chooses its batch; before lock */
	pthread_cond_t done;
	/* background queue, under lock */
	struct ring queue;
	pthread_cond_t work;
	pthread_t threads[FETCH_THREADS];
	int nthreads;
	int stop;
	uint32_t seq_next; /* order position after the last foreground batch */
	uint32_t seq_first; /* order position of its first chunk */
	uint32_t scan_bytes; /* a scan's next foreground window (0: no scan) */
	uint32_t seq_read; /* furthest order position a reader has read */
	uint32_t window_pending; /* next window to fetch once the reader nears it */
	uint32_t window_len;
	/*
	 * Small chunks just fetched, kept in memory: a job reading what a
	 * batch brought is served without opening and reading cache files.
	 * A dirty one has no cache file yet: it stays until written, and is
	 * queued for the writer.  Bounded in bytes, under mem_lock.
	 */
	pthread_mutex_t mem_lock;
	void **mem; /* per chunk: its bytes, or NULL */
	uint8_t *mflags; /* per chunk: M_DIRTY, M_WRITING, M_READ */
	size_t mem_bytes;
	size_t mem_cap; /* at most this many bytes in mem[] */
	struct ring wq; /* dirty chunks, oldest first */
	pthread_cond_t wq_cond;
	pthread_t writer;
	int writer_on; /* started */
	int writer_stop;
	int64_t kept_at; /* mono_ns() of the last chunk kept dirty */
	int no_mem_reads; /* STASHFS_NO_MEM_READS: serve from the cache files only */
	/* told of each chunk cached from now on (fetch_on_landed) */
	pthread_mutex_t landed_lock;
	void (*landed)(void *arg, uint32_t chunk);
	void *landed_arg;
};

/* The queue's FIFO (its user holds the lock). */
int ring_push(struct ring *r, uint32_t c);
int ring_empty(const struct ring *r);
uint32_t ring_pop(struct ring *r);

/* fs/fetch_mem.c */
/* Index n objects just cached (their files are in place), logging a failure. */
void index_cached(struct fetcher *f, size_t n, const struct cas_id *ids, const size_t *lens);
int mem_keep(struct fetcher *f, uint32_t c, void **p, size_t len);
/* Write queued dirty chunks' cache files (idle: as the writer thread). */
void write_queued(struct fetcher *f, int idle);
/* Chunk c's cache file, written now from memory if it is dirty there: 0 or -errno. */
int write_now(struct fetcher *f, uint32_t c);

#endif
