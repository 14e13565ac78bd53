/*
 * The fetcher's memory of small objects (fetch.c's head says why): chunks
 * up to MEM_CHUNK_MAX kept as they are verified, served from memory, and
 * their cache files written behind by an idle-priority thread, or at once
 * by whoever needs the file first.
 */
#define _GNU_SOURCE
#include "fetch_int.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Index n objects just cached (their files are in place), logging a failure. */
void index_cached(struct fetcher *f, size_t n, const struct cas_id *ids, const size_t *lens)
{
	int rc = n ? store_objects_index(f->r->store, n, ids, lens) : 0;

	if (rc)
		log_err("fetch: indexing cached objects in %s: %s", store_path(f->r->store),
			strerror(-rc));
}

/* Drop chunk c's bytes from memory.  Under mem_lock. */
static void mem_drop(struct fetcher *f, uint32_t c)
{
	f->mem_bytes -= catalog_chunk(f->cat, c)->raw_len;
	free(f->mem[c]);
	f->mem[c] = NULL;
	f->mflags[c] = 0;
}

static void *cache_writer(void *arg);

/*
 * Keep small chunk c's verified bytes in memory (taking *p), dirty, and
 * queue its cache file for the writer.  MEM_THERE: dirty in memory
 * already; MEM_FULL: no room (the caller writes the file); MEM_NO: not a
 * small chunk.
 */
int mem_keep(struct fetcher *f, uint32_t c, void **p, size_t len)
{
	int rc = MEM_KEPT;

	if (len > MEM_CHUNK_MAX || len == 0)
		return MEM_NO;
	pthread_mutex_lock(&f->mem_lock);
	if (f->mem[c] && (f->mflags[c] & M_DIRTY)) {
		rc = MEM_THERE;
		goto out;
	}
	if (f->mem[c])
		mem_drop(f, c); /* clean: its file may be gone since, write it again */
	if (f->mem_bytes + len > f->mem_cap) {
		rc = MEM_FULL;
		goto out;
	}
	if (!f->writer_on) {
		if (pthread_create(&f->writer, NULL, cache_writer, f) != 0) {
			rc = MEM_FULL;
			goto out;
		}
		f->writer_on = 1;
	}
	if (ring_push(&f->wq, c)) {
		rc = MEM_FULL;
		goto out;
	}
	f->mem[c] = *p;
	*p = NULL;
	f->mflags[c] = M_DIRTY;
	f->mem_bytes += len;
	f->kept_at = mono_ns();
	pthread_cond_signal(&f->wq_cond);
out:
	pthread_mutex_unlock(&f->mem_lock);
	return rc;
}

/*
 * Write dirty chunk c's cache file from memory unless someone is at it.
 * Under mem_lock, dropped while writing.  1 written, 0 nothing to do, or
 * an error (the bytes are dropped: readers fetch the chunk again).
 */
static int write_one(struct fetcher *f, uint32_t c)
{
	const struct cat_chunk *ch = catalog_chunk(f->cat, c);
	const void *p = f->mem[c]; /* kept while M_WRITING */
	int rc;

	if ((f->mflags[c] & (M_DIRTY | M_WRITING)) != M_DIRTY)
		return 0;
	f->mflags[c] |= M_WRITING;
	pthread_mutex_unlock(&f->mem_lock);
	rc = store_object_place(f->r->store, &ch->id, p, ch->raw_len);
	pthread_mutex_lock(&f->mem_lock);
	f->mflags[c] &= (uint8_t) ~(M_WRITING | M_DIRTY);
	if (rc) {
		__atomic_store_n(&f->have[c], 0, __ATOMIC_RELAXED);
		mem_drop(f, c);
		return rc;
	}
	__atomic_add_fetch(&f->stats->written_behind, 1, __ATOMIC_RELAXED);
	if (f->mflags[c] & M_READ)
		mem_drop(f, c);
	return 1;
}

/* The idle writer may write now (see the top of this file).  Under mem_lock. */
static int writer_may(struct fetcher *f)
{
	return f->writer_stop || __atomic_load_n(&f->stats->leaving, __ATOMIC_RELAXED) ||
	       f->mem_bytes >= f->mem_cap / 2 || mono_ns() - f->kept_at >= WRITE_QUIET_NS;
}

/*
 * Write the queued cache files, indexing them in batches.  idle: the
 * writer thread, waiting for more until told to stop; else until the
 * queue is empty.
 */
void write_queued(struct fetcher *f, int idle)
{
	struct cas_id ids[INDEX_BATCH];
	size_t lens[INDEX_BATCH], n = 0;
	int rc, failed = 0;

	pthread_mutex_lock(&f->mem_lock);
	for (;;) {
		uint32_t c;

		if (n == INDEX_BATCH || (n && ring_empty(&f->wq))) {
			pthread_mutex_unlock(&f->mem_lock);
			index_cached(f, n, ids, lens);
			n = 0;
			pthread_mutex_lock(&f->mem_lock);
			continue;
		}
		if (ring_empty(&f->wq)) {
			if (!idle || f->writer_stop)
				break;
			pthread_cond_wait(&f->wq_cond, &f->mem_lock);
			continue;
		}
		if (idle && !writer_may(f)) {
			/* polled: a job fetching keeps it waiting, and the
			 * mount leaving sets no condition of ours */
			pthread_mutex_unlock(&f->mem_lock);
			usleep(50000);
			pthread_mutex_lock(&f->mem_lock);
			continue;
		}
		c = ring_pop(&f->wq);
		rc = write_one(f, c);
		if (rc == 1) {
			ids[n] = catalog_chunk(f->cat, c)->id;
			lens[n++] = catalog_chunk(f->cat, c)->raw_len;
		} else if (rc < 0 && !failed++) {
			log_err("fetch: caching objects in %s: %s", store_path(f->r->store),
				strerror(-rc));
		}
	}
	pthread_mutex_unlock(&f->mem_lock);
}

/*
 * The writer: at idle priority, so the cache files of what the job has in
 * memory already are written on CPU time the job leaves unused.
 */
static void *cache_writer(void *arg)
{
	struct sched_param sp = { 0 };

	pthread_setschedparam(pthread_self(), SCHED_IDLE, &sp);
	write_queued(arg, 1);
	return NULL;
}

/*
 * Chunk c's cache file is wanted now: write it if it is in memory only.
 * 0 written, 1 not in memory only (nothing to write), or an error.
 */
int write_now(struct fetcher *f, uint32_t c)
{
	const struct cat_chunk *ch = catalog_chunk(f->cat, c);
	void *copy;
	int rc;

	pthread_mutex_lock(&f->mem_lock);
	if (!(f->mflags[c] & M_DIRTY)) {
		pthread_mutex_unlock(&f->mem_lock);
		return 1;
	}
	if (!(f->mflags[c] & M_WRITING)) {
		rc = write_one(f, c);
		pthread_mutex_unlock(&f->mem_lock);
	} else {
		/* the idle writer is at it: rather than wait for it, write a
		 * copy (the second link of the same bytes finds the first) */
		copy = malloc(ch->raw_len);
		if (copy)
			memcpy(copy, f->mem[c], ch->raw_len);
		pthread_mutex_unlock(&f->mem_lock);
		if (!copy)
			return -ENOMEM;
		rc = store_object_place(f->r->store, &ch->id, copy, ch->raw_len);
		free(copy);
		rc = rc ? rc : 1;
	}
	if (rc != 1)
		return rc;
	index_cached(f, 1, &ch->id, (const size_t[]){ ch->raw_len });
	return 0;
}

int fetch_mem_read(struct fetcher *f, uint32_t c, uint64_t off, void *buf, size_t n)
{
	uint32_t len = catalog_chunk(f->cat, c)->raw_len;
	int rc = 0;

	if (f->no_mem_reads || len > MEM_CHUNK_MAX)
		return 0; /* never kept: no need for the lock */
	pthread_mutex_lock(&f->mem_lock);
	if (f->mem[c] && off + n <= len) {
		memcpy(buf, (char *)f->mem[c] + off, n);
		rc = 1;
		if (off + n == len) {
			/* read to its end: most readers are done with it */
			if (f->mflags[c] & (M_DIRTY | M_WRITING))
				f->mflags[c] |= M_READ;
			else
				mem_drop(f, c);
		}
	}
	pthread_mutex_unlock(&f->mem_lock);
	return rc;
}
