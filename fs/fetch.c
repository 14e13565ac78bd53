/*
 * Lazy chunk fetching for the mount; see fetch.h.
 *
 * A miss never costs a round trip for one small file alone: chunks are
 * laid out in packs in directory order, so a miss fetches, in one ranged
 * GET, the missing chunk and the chunks after it in the same pack that
 * belong to files of the same directory (up to NEIGHBOUR_BYTES).  Large
 * files being streamed get their next chunks queued for the background
 * fetchers, and a snapshot that carries a read record (what the previous
 * job read, in order) has all of it queued at mount time.  Foreground
 * misses never wait for the queue: they fetch directly, and the
 * background is limited to FETCH_THREADS requests at a time.
 *
 * Every chunk is marked in flight while a batch holding it is fetched;
 * a reader that wants it waits for that batch instead of fetching again.
 *
 * A small chunk (up to MEM_CHUNK_MAX) is served from memory as soon as it
 * is verified and its cache file is written behind, by a thread of its own
 * at idle priority, or at once by whoever needs the file first: creating
 * a file per small object cost the fetchers more time than everything
 * else they do for it, on the CPUs the job needs for its own reads.  The
 * writer starts once fetching has paused for WRITE_QUIET_NS, memory is
 * half full, or the mount is leaving: while a job keeps fetching, even an
 * idle-priority writer took kernel time from it (the read-all job on the
 * small-file tree 2.55 -> 2.37 s with the writer held back).
 */
#define _GNU_SOURCE
#include "fetch_int.h"
#include "../store/chunker.h"
#include "../store/pack.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int by_place(const void *a, const void *b, void *cat)
{
	const struct cat_chunk *x = catalog_chunk(cat, *(const uint32_t *)a);
	const struct cat_chunk *y = catalog_chunk(cat, *(const uint32_t *)b);

	if (x->pack != y->pack)
		return x->pack < y->pack ? -1 : 1;
	return x->pack_off < y->pack_off ? -1 : x->pack_off > y->pack_off;
}

/* The chunks a log (of a mount resumed) holds already, into bits. */
static void load_log(struct fetcher *f, const char *path, uint64_t *bits)
{
	struct buf b = BUF_INIT;
	size_t i;

	if (read_file(path, &b, 1u << 30) == 0)
		for (i = 0; i + 4 <= b.len; i += 4) {
			uint32_t c;

			memcpy(&c, b.p + i, 4);
			if (c < f->n)
				bits[c / 64] |= 1ULL << (c % 64);
		}
	buf_free(&b);
}

int fetcher_new(struct repo *r, struct catalog *cat, const char *statedir,
		struct mount_stats *stats, struct fetcher **out)
{
	char path[PATH_MAX];
	struct fetcher *f = calloc(1, sizeof(*f));
	uint32_t i, k, n = (uint32_t)catalog_header(cat)->n_chunks;

	if (!f)
		return -ENOMEM;
	f->r = r;
	f->cat = cat;
	f->stats = stats;
	f->n = n;
	f->reads_fd = -1;
	f->pushed_fd = -1;
	f->seq_next = UINT32_MAX - 64; /* no scan seen yet */
	{
		long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
		size_t ram = pages > 0 && psz > 0 ? (size_t)pages * (size_t)psz : 0;

		f->mem_cap = ram && ram / 16 < MEM_BYTES_MAX ? ram / 16 : MEM_BYTES_MAX;
	}
	pthread_mutex_init(&f->lock, NULL);
	pthread_mutex_init(&f->pick, NULL);
	pthread_mutex_init(&f->mem_lock, NULL);
	pthread_mutex_init(&f->landed_lock, NULL);
	pthread_cond_init(&f->done, NULL);
	pthread_cond_init(&f->work, NULL);
	pthread_cond_init(&f->wq_cond, NULL);
	f->seen = calloc(n / 64 + 1, sizeof(uint64_t));
	f->pushed = calloc(n / 64 + 1, sizeof(uint64_t));
	f->order = malloc((n ? n : 1) * sizeof(uint32_t));
	f->pos = malloc((n ? n : 1) * sizeof(uint32_t));
	f->dir = malloc((n ? n : 1) * sizeof(uint32_t));
	f->inflight = calloc(n ? n : 1, 1);
	f->have = calloc(n ? n : 1, 1);
	f->wanted = calloc(n ? n : 1, 1);
	f->served = calloc(n ? n : 1, sizeof(uint32_t));
	f->mem = calloc(n ? n : 1, sizeof(void *));
	f->mflags = calloc(n ? n : 1, 1);
	if (!f->seen || !f->pushed || !f->order || !f->pos || !f->dir || !f->inflight || !f->have ||
	    !f->wanted || !f->served || !f->mem || !f->mflags) {
		fetcher_free(f);
		return -ENOMEM;
	}
	for (i = 0; i < n; i++) {
		f->order[i] = i;
		f->dir[i] = UINT32_MAX;
	}
	qsort_r(f->order, n, sizeof(uint32_t), by_place, cat);
	for (i = 0; i < n; i++)
		f->pos[f->order[i]] = i;
	for (i = 0; i < catalog_count(cat); i++) {
		const struct cat_entry *e = catalog_entry(cat, i);
		const struct cat_ref *rf;

		if (!S_ISREG(e->mode) || e->ino != i)
			continue;
		rf = catalog_refs(cat, e);
		for (k = 0; k < e->count; k++)
			if (f->dir[rf[k].chunk] == UINT32_MAX)
				f->dir[rf[k].chunk] = e->parent;
	}
	if (statedir) {
		snprintf(path, sizeof(path), "%s/reads.log", statedir);
		load_log(f, path, f->seen);
		f->reads_fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
		snprintf(path, sizeof(path), "%s/pushed.log", statedir);
		load_log(f, path, f->pushed);
		f->pushed_fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	}
	*out = f;
	return 0;
}

/*
 * The store's gc drops the least recently used objects: what this mount
 * read (and the record it was given) is marked used now, once, at the end
 * rather than an SQLite write on every read.
 */
static void touch_read(struct fetcher *f)
{
	struct cas_id *ids = NULL;
	size_t n = 0, cap = 0;
	uint32_t c;

	for (c = 0; c < f->n; c++) {
		if (!(f->seen[c / 64] & (1ULL << (c % 64))))
			continue;
		if (n == cap) {
			size_t nc = cap ? cap * 2 : 1024;
			struct cas_id *v = realloc(ids, nc * sizeof(*ids));

			if (!v)
				break;
			ids = v;
			cap = nc;
		}
		ids[n++] = catalog_chunk(f->cat, c)->id;
	}
	if (n && store_objects_touch(f->r->store, n, ids))
		log_err("mount: marking %zu read objects as used failed; gc may drop them first",
			n);
	free(ids);
}

void fetcher_close_logs(struct fetcher *f)
{
	if (!f)
		return;
	if (f->reads_fd >= 0)
		close(f->reads_fd);
	if (f->pushed_fd >= 0)
		close(f->pushed_fd);
	f->reads_fd = f->pushed_fd = -1;
}

void fetcher_no_mem_reads(struct fetcher *f)
{
	f->no_mem_reads = 1;
}

void fetcher_free(struct fetcher *f)
{
	uint32_t c;
	int i;

	if (!f)
		return;
	pthread_mutex_lock(&f->lock);
	f->stop = 1;
	pthread_cond_broadcast(&f->work);
	pthread_mutex_unlock(&f->lock);
	for (i = 0; i < f->nthreads; i++)
		pthread_join(f->threads[i], NULL);
	if (f->writer_on) {
		/* what the idle writer has not written yet, written now at our
		 * priority (it may still finish the one it is on) */
		write_queued(f, 0);
		pthread_mutex_lock(&f->mem_lock);
		f->writer_stop = 1;
		pthread_cond_broadcast(&f->wq_cond);
		pthread_mutex_unlock(&f->mem_lock);
		pthread_join(f->writer, NULL);
	}
	if (f->seen)
		touch_read(f);
	fetcher_close_logs(f);
	free(f->seen);
	free(f->pushed);
	free(f->order);
	free(f->pos);
	free(f->dir);
	free(f->inflight);
	free(f->have);
	free(f->wanted);
	free(f->served);
	free(f->queue.q);
	for (c = 0; f->mem && c < f->n; c++)
		free(f->mem[c]);
	free(f->mem);
	free(f->mflags);
	free(f->wq.q);
	pthread_mutex_destroy(&f->mem_lock);
	pthread_mutex_destroy(&f->landed_lock);
	pthread_mutex_destroy(&f->lock);
	pthread_mutex_destroy(&f->pick);
	pthread_cond_destroy(&f->done);
	pthread_cond_destroy(&f->work);
	pthread_cond_destroy(&f->wq_cond);
	free(f);
}

static void enqueue(struct fetcher *f, uint32_t c);
static void start_threads(struct fetcher *f);

/* Append c to ring r; -ENOMEM if it cannot grow. */
int ring_push(struct ring *r, uint32_t c)
{
	if (r->tail - r->head == r->cap) {
		size_t nc = r->cap ? r->cap * 2 : 1024, i;
		uint32_t *q = malloc(nc * sizeof(*q));

		if (!q)
			return -ENOMEM;
		for (i = 0; i < r->tail - r->head; i++)
			q[i] = r->q[(r->head + i) % r->cap];
		free(r->q);
		r->q = q;
		r->tail -= r->head;
		r->head = 0;
		r->cap = nc;
	}
	assert(r->tail - r->head < r->cap);
	r->q[r->tail++ % r->cap] = c;
	return 0;
}

int ring_empty(const struct ring *r)
{
	return r->head == r->tail;
}

uint32_t ring_pop(struct ring *r)
{
	assert(r->head != r->tail);
	return r->q[r->head++ % r->cap];
}

/* Append c to a log (reads.log, pushed.log) unless its bit says it is there. */
static void log_once(uint64_t *bits, int fd, uint32_t c)
{
	uint64_t bit = 1ULL << (c % 64);

	if (__atomic_fetch_or(&bits[c / 64], bit, __ATOMIC_RELAXED) & bit)
		return;
	if (fd >= 0 && write(fd, &c, sizeof(c)) != sizeof(c)) {
		/* the record is a hint for prefetch; losing an entry is harmless */
	}
}

void fetch_note_read(struct fetcher *f, uint32_t c)
{
	uint64_t bit = 1ULL << (c % 64);
	uint32_t p = f->pos[c];

	/* a scan reading ahead: release the next window as the reader nears it */
	if (p > __atomic_load_n(&f->seq_read, __ATOMIC_RELAXED)) {
		__atomic_store_n(&f->seq_read, p, __ATOMIC_RELAXED);
		if (__atomic_load_n(&f->window_pending, __ATOMIC_RELAXED)) {
			pthread_mutex_lock(&f->lock);
			if (f->window_pending && p + f->window_len >= f->window_pending) {
				if (f->window_pending < f->n) {
					enqueue(f, f->order[f->window_pending] | WINDOW);
					start_threads(f);
				}
				f->window_pending = 0;
			}
			pthread_mutex_unlock(&f->lock);
		}
	}
	if (!(__atomic_load_n(&f->seen[c / 64], __ATOMIC_RELAXED) & bit))
		log_once(f->seen, f->reads_fd, c);
}

void fetch_note_pushed(struct fetcher *f, uint32_t c)
{
	if (!(__atomic_load_n(&f->seen[c / 64], __ATOMIC_RELAXED) & (1ULL << (c % 64))))
		log_once(f->pushed, f->pushed_fd, c);
}

int fetch_recorded(struct fetcher *f, uint32_t c)
{
	return c < f->n && f->wanted[c];
}

static int cached(struct fetcher *f, uint32_t c)
{
	char path[PATH_MAX];
	struct stat st;
	const struct cat_chunk *ch = catalog_chunk(f->cat, c);

	if (__atomic_load_n(&f->have[c], __ATOMIC_RELAXED))
		return 1;
	store_object_path(f->r->store, &ch->id, path, sizeof(path));
	if (stat(path, &st) == 0 && (uint64_t)st.st_size == ch->raw_len) {
		__atomic_store_n(&f->have[c], 1, __ATOMIC_RELAXED);
		return 1;
	}
	return 0;
}

enum pick { PICK_NEIGHBOURS, PICK_RECORD, PICK_WINDOW };

/*
 * Choose a batch starting at chunk c: c, then the chunks after it in the
 * same pack (within `limit` bytes, gaps up to MAX_GAP) that are not cached
 * nor in flight and that belong to the same directory (PICK_NEIGHBOURS) or
 * are in the read record (PICK_RECORD).  Marks them in flight.  Under
 * lock.  Returns the count, chunks in out.
 */
static size_t pick_batch(struct fetcher *f, uint32_t c, uint32_t limit, enum pick how,
			 uint32_t *out, size_t max)
{
	const struct cat_chunk *first = catalog_chunk(f->cat, c);
	uint64_t end = first->pack_off + first->stored_len;
	uint32_t p;
	size_t n = 0;

	out[n++] = c;
	__atomic_store_n(&f->inflight[c], 1, __ATOMIC_RELAXED);
	for (p = f->pos[c] + 1; p < f->n && n < max; p++) {
		uint32_t d = f->order[p];
		const struct cat_chunk *ch = catalog_chunk(f->cat, d);

		if (ch->pack != first->pack ||
		    ch->pack_off > end + (how == PICK_RECORD ? RECORD_GAP : MAX_GAP) ||
		    ch->pack_off + ch->stored_len - first->pack_off > limit)
			break;
		if (how == PICK_NEIGHBOURS && f->dir[d] != f->dir[c])
			break;
		if (how == PICK_RECORD && !f->wanted[d])
			continue;
		if (f->inflight[d] || __atomic_load_n(&f->have[d], __ATOMIC_RELAXED))
			continue;
		__atomic_store_n(&f->inflight[d], 1, __ATOMIC_RELAXED);
		out[n++] = d;
		end = ch->pack_off + ch->stored_len;
	}
	assert(n <= max);
	return n;
}

/*
 * One batch's GET as its body arrives: each chunk is decoded (its hash
 * checked), put in place in the cache and let go to its readers as soon
 * as its last byte is in, so the job reads the start of a batch while its
 * end is still on the wire.  The cache's index follows once per batch.
 */
struct arrival {
	struct fetcher *f;
	const uint32_t *cs;
	size_t n;
	uint64_t off; /* pack offset of the body's first byte */
	struct pack_codec *pc;
	struct cas_id *ids; /* the chunks cached, for the index */
	size_t *lens;
	size_t cached;
	size_t kept; /* chunks kept in memory, their cache files written behind */
	size_t done; /* chunks [0, done) cached, or found bad, and let go */
	int mem_full;
	int rc; /* first error */
	const char *hex; /* the pack, for messages */
};

/* Tell fetch_on_landed's callback which of cs[0..n) are cached now. */
static void tell_landed(struct fetcher *f, const uint32_t *cs, size_t n)
{
	size_t i;

	if (!__atomic_load_n(&f->landed, __ATOMIC_RELAXED))
		return;
	pthread_mutex_lock(&f->landed_lock);
	for (i = 0; f->landed && i < n; i++)
		if (__atomic_load_n(&f->have[cs[i]], __ATOMIC_RELAXED))
			f->landed(f->landed_arg, cs[i]);
	pthread_mutex_unlock(&f->landed_lock);
}

void fetch_on_landed(struct fetcher *f, void (*cb)(void *arg, uint32_t chunk), void *arg)
{
	uint32_t c;

	pthread_mutex_lock(&f->landed_lock);
	f->landed_arg = arg;
	__atomic_store_n(&f->landed, cb, __ATOMIC_RELAXED);
	for (c = 0; cb && c < f->n; c++)
		if (__atomic_load_n(&f->have[c], __ATOMIC_RELAXED))
			cb(arg, c); /* cached before the call */
	pthread_mutex_unlock(&f->landed_lock);
}

/* The body's first `have` bytes are in: cache the chunks they complete. */
static void arrived(void *arg, const uint8_t *p, size_t have)
{
	struct arrival *a = arg;
	struct fetcher *f = a->f;
	char chex[CAS_HEX_LEN + 1];
	size_t from = a->done, i;

	while (a->done < a->n && a->rc != -ENOMEM && a->rc != -ENOSPC) {
		uint32_t c = a->cs[a->done];
		const struct cat_chunk *ch = catalog_chunk(f->cat, c);
		void *raw;
		int prc, k;

		if (ch->pack_off - a->off + ch->stored_len > have)
			break;
		raw = malloc(ch->raw_len ? ch->raw_len : 1);
		if (!raw) {
			a->rc = -ENOMEM;
			break;
		}
		if (pack_decode(a->pc, p + (ch->pack_off - a->off), ch->stored_len, ch->flags, raw,
				ch->raw_len, &ch->id)) {
			cas_id_hex(&ch->id, chex);
			log_err("fetch: object %s in pack %s: hash mismatch; not served", chex,
				a->hex);
			if (a->done == 0 && !a->rc)
				a->rc = -EIO;
			free(raw);
			a->done++;
			continue;
		}
		k = a->mem_full ? MEM_FULL : mem_keep(f, c, &raw, ch->raw_len);
		a->mem_full = k == MEM_FULL;
		if (k == MEM_KEPT || k == MEM_THERE) {
			/* served from memory now; its cache file is written behind */
			a->kept += k == MEM_KEPT;
			__atomic_store_n(&f->have[c], 1, __ATOMIC_RELAXED);
		} else if ((prc = store_object_place(f->r->store, &ch->id, raw, ch->raw_len))) {
			log_err("fetch: caching objects in %s: %s", store_path(f->r->store),
				strerror(-prc));
			if (!a->rc || a->rc == -EIO)
				a->rc = prc == -ENOSPC ? -ENOSPC : -EIO;
		} else {
			a->ids[a->cached] = ch->id;
			a->lens[a->cached++] = ch->raw_len;
			__atomic_store_n(&f->have[c], 1, __ATOMIC_RELAXED);
		}
		free(raw);
		a->done++;
	}
	if (a->done == from)
		return;
	pthread_mutex_lock(&f->lock);
	for (i = from; i < a->done; i++)
		__atomic_store_n(&f->inflight[a->cs[i]], 0, __ATOMIC_RELAXED);
	pthread_cond_broadcast(&f->done);
	pthread_mutex_unlock(&f->lock);
	tell_landed(f, a->cs + from, a->done - from);
}

/* Fetch the chunks of one batch (one ranged GET), cache them, clear in-flight. */
static int fetch_batch(struct fetcher *f, const uint32_t *cs, size_t n, int background)
{
	const struct cat_chunk *first = catalog_chunk(f->cat, cs[0]);
	const struct cat_chunk *last = catalog_chunk(f->cat, cs[n - 1]);
	char name[128], hex[CAS_HEX_LEN + 1];
	uint64_t off = first->pack_off, len = last->pack_off + last->stored_len - off;
	struct buf in = BUF_INIT;
	struct arrival a = { .f = f, .cs = cs, .n = n, .off = off, .hex = hex };
	struct remote_progress pr = { arrived, &a };
	size_t i;
	int rc;

	cas_id_hex(catalog_pack(f->cat, first->pack), hex);
	repo_object_name(name, "packs", catalog_pack(f->cat, first->pack));
	a.pc = pack_codec_new(1);
	a.ids = malloc(n * sizeof(*a.ids));
	a.lens = malloc(n * sizeof(*a.lens));
	if (!a.pc || !a.ids || !a.lens || buf_reserve(&in, (size_t)len)) {
		a.rc = -ENOMEM;
		goto out;
	}
	rc = repo_get_progress(f->r, name, off, len, &in, (size_t)len, &pr);
	if (rc) {
		log_err("fetch: pack %s [%llu, +%llu): %s", hex, (unsigned long long)off,
			(unsigned long long)len,
			rc == -ENOENT ? "missing on every remote" : strerror(-rc));
		/* the reader gets EIO for this read; everything cached keeps working */
		a.rc = -EIO;
		goto out;
	}
	__atomic_add_fetch(&f->stats->bytes_fetched, in.len, __ATOMIC_RELAXED);
	if (background)
		__atomic_add_fetch(&f->stats->bytes_prefetched, in.len, __ATOMIC_RELAXED);
	if (in.len != len) {
		log_err("fetch: pack %s truncated at offset %llu", hex, (unsigned long long)off);
		a.rc = -EIO;
		goto out;
	}
	/* what the backend did not tell as it came (all of it, for file://) */
	arrived(&a, in.p, in.len);
out:
	/* chunks cached before an error stay cached: they were verified */
	index_cached(f, a.cached, a.ids, a.lens);
	__atomic_add_fetch(&f->stats->objects_fetched, a.cached + a.kept, __ATOMIC_RELAXED);
	if (a.rc && a.rc != -ENOSPC)
		__atomic_add_fetch(&f->stats->fetch_errors, 1, __ATOMIC_RELAXED);
	pthread_mutex_lock(&f->lock);
	for (i = a.done; i < n; i++)
		__atomic_store_n(&f->inflight[cs[i]], 0, __ATOMIC_RELAXED);
	pthread_cond_broadcast(&f->done);
	pthread_mutex_unlock(&f->lock);
	free(a.ids);
	free(a.lens);
	pack_codec_free(a.pc);
	buf_free(&in);
	return a.rc;
}

static void enqueue(struct fetcher *f, uint32_t c)
{
	if (ring_push(&f->queue, c))
		return;
	ahead_begin(f->stats); /* ended by the prefetcher that takes it */
	__atomic_add_fetch(&f->stats->prefetch_queued, 1, __ATOMIC_RELAXED);
	pthread_cond_signal(&f->work);
}

static void *prefetcher(void *arg)
{
	struct fetcher *f = arg;
	uint32_t *batch = malloc(PREFETCH_CHUNKS * sizeof(*batch));

	if (!batch)
		return NULL;
	for (;;) {
		uint32_t c, alone, window;
		size_t n = 0;
		int here = 0;

		/*
		 * One thread at a time takes from the queue and picks its batch:
		 * one still looking for the first chunk in the cache must not be
		 * overtaken by one picking from the chunk after it (the batch
		 * would be split in two GETs, the first chunk's alone).
		 */
		pthread_mutex_lock(&f->pick);
		pthread_mutex_lock(&f->lock);
		while (!f->stop && ring_empty(&f->queue))
			pthread_cond_wait(&f->work, &f->lock);
		if (f->stop) {
			pthread_mutex_unlock(&f->lock);
			pthread_mutex_unlock(&f->pick);
			break;
		}
		c = ring_pop(&f->queue);
		alone = c & ALONE;
		window = c & WINDOW;
		c &= ~(ALONE | WINDOW);
		__atomic_add_fetch(&f->stats->prefetch_done, 1, __ATOMIC_RELAXED);
		if (!f->inflight[c] && !f->have[c]) {
			pthread_mutex_unlock(&f->lock);
			here = cached(f, c);
			pthread_mutex_lock(&f->lock);
			/* (a reader may have fetched it meanwhile) */
			if (!here && !f->inflight[c] && !f->have[c])
				n = pick_batch(f, c,
					       alone	? 0
					       : window ? WINDOW_BYTES
							: PREFETCH_BATCH,
					       window ? PICK_WINDOW : PICK_RECORD, batch,
					       PREFETCH_CHUNKS);
		}
		pthread_mutex_unlock(&f->lock);
		pthread_mutex_unlock(&f->pick);
		if (here)
			tell_landed(f, &c, 1); /* cached before this mount */
		if (n > 0)
			fetch_batch(f, batch, n, 1);
		if (n > 0 && window) {
			/* keep one window ahead of the reader, no further */
			uint32_t sp = f->pos[batch[0]], ep = f->pos[batch[n - 1]] + 1;

			pthread_mutex_lock(&f->lock);
			if (ep >= f->n) {
				/* the last window: nothing after it */
			} else if (f->seq_read + (ep - sp) >= sp) {
				enqueue(f, f->order[ep] | WINDOW);
			} else {
				f->window_pending = ep;
				f->window_len = ep - sp;
			}
			pthread_mutex_unlock(&f->lock);
		}
		ahead_end(f->stats); /* after the pushes it queued, the window after it */
	}
	free(batch);
	return NULL;
}

static void start_threads(struct fetcher *f)
{
	while (f->nthreads < FETCH_THREADS &&
	       pthread_create(&f->threads[f->nthreads], NULL, prefetcher, f) == 0)
		f->nthreads++;
}

int fetch_prefetch_record(struct fetcher *f)
{
	uint64_t n, i;
	const uint32_t *rd = catalog_reads(f->cat, &n);

	if (n == 0)
		return 0;
	pthread_mutex_lock(&f->lock);
	for (i = 0; i < n; i++)
		f->wanted[rd[i]] = 1;
	for (i = 0; i < n; i++)
		enqueue(f, rd[i]);
	start_threads(f);
	pthread_mutex_unlock(&f->lock);
	return (int)(n > INT32_MAX ? INT32_MAX : n);
}

void fetch_read_ahead(struct fetcher *f, uint32_t idx, uint32_t ref)
{
	const struct cat_entry *e = catalog_entry(f->cat, idx);
	const struct cat_ref *refs = catalog_refs(f->cat, e) - e->first;
	uint32_t k;

	pthread_mutex_lock(&f->lock);
	for (k = ref + 1; k <= ref + READ_AHEAD_CHUNKS && k < e->first + e->count; k++)
		if (!f->inflight[refs[k].chunk] && !f->have[refs[k].chunk])
			enqueue(f, refs[k].chunk | ALONE);
	start_threads(f);
	pthread_mutex_unlock(&f->lock);
}

/* Have readers read at least half of the chunks at order positions [lo, hi)? */
static int mostly_read(struct fetcher *f, uint32_t lo, uint32_t hi)
{
	uint32_t p, read = 0;

	if (hi > f->n || lo >= hi)
		return 0;
	for (p = lo; p < hi; p++) {
		uint32_t c = f->order[p];

		read += !!(__atomic_load_n(&f->seen[c / 64], __ATOMIC_RELAXED) &
			   (1ULL << (c % 64)));
	}
	return read * 2 >= hi - lo;
}

/* Did c's fetch fail within FAILED_HOLD_NS?  Under lock. */
static int failed_lately(struct fetcher *f, uint32_t c)
{
	int64_t now = now_ns();
	unsigned i;

	for (i = 0; i < FAILED_RING; i++)
		if (f->failed[i].at && f->failed[i].c == c &&
		    now - f->failed[i].at < FAILED_HOLD_NS)
			return 1;
	return 0;
}

int fetch_chunk_fd(struct fetcher *f, uint32_t c)
{
	const struct cat_chunk *ch = catalog_chunk(f->cat, c);
	char path[PATH_MAX];
	uint32_t batch[256];
	struct stat st;
	int fd, rc = 0, tries, rechecked = 0;

	store_object_path(f->r->store, &ch->id, path, sizeof(path));
	for (tries = 0; tries < 4; tries++) {
		size_t n;

		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd >= 0) {
			if (fstat(fd, &st) == 0 && (uint64_t)st.st_size == ch->raw_len)
				return fd;
			/* short after a crash: drop it and fetch again */
			close(fd);
			unlink(path);
			__atomic_store_n(&f->have[c], 0, __ATOMIC_RELAXED);
		} else if (errno != ENOENT) {
			return -errno;
		} else if ((rc = write_now(f, c)) <= 0) {
			/* it was in memory only: its file is written now */
			if (rc < 0)
				return rc;
			continue;
		}
		pthread_mutex_lock(&f->lock);
		if (f->inflight[c]) {
			while (f->inflight[c])
				pthread_cond_wait(&f->done, &f->lock);
			pthread_mutex_unlock(&f->lock);
			continue;
		}
		if (f->have[c] && !rechecked) {
			/* a batch cached it between our open and the lock */
			rechecked = 1;
			pthread_mutex_unlock(&f->lock);
			continue;
		}
		if (failed_lately(f, c)) {
			pthread_mutex_unlock(&f->lock);
			return -EIO;
		}
		f->have[c] = 0;
		if (ch->raw_len >= CHUNK_MIN) {
			/* a large file's chunk: alone (streaming readers get read-ahead) */
			n = pick_batch(f, c, 0, PICK_NEIGHBOURS, batch, 1);
		} else if (f->pos[c] >= f->seq_next && f->pos[c] <= f->seq_next + SCAN_SLACK &&
			   mostly_read(f, f->seq_first, f->seq_next)) {
			/*
			 * Misses walking the packs in order, having read most of
			 * what the last batch brought: a job reading the tree in
			 * directory order.  Windows grow as the scan goes on (1,
			 * 2, 4 MiB), as the kernel's readahead does, so a job
			 * reading one package stops after a small one; at full
			 * size the next is queued for the background fetchers.
			 */
			f->scan_bytes = f->scan_bytes ? f->scan_bytes * 2 : NEIGHBOUR_BYTES;
			if (f->scan_bytes > WINDOW_BYTES)
				f->scan_bytes = WINDOW_BYTES;
			n = pick_batch(f, c, f->scan_bytes, PICK_WINDOW, batch,
				       sizeof(batch) / sizeof(batch[0]));
			f->seq_first = f->pos[c];
			f->seq_next = f->pos[batch[n - 1]] + 1;
			if (f->scan_bytes == WINDOW_BYTES && f->seq_next < f->n) {
				enqueue(f, f->order[f->seq_next] | WINDOW);
				start_threads(f);
			}
		} else {
			/*
			 * Small files bring their neighbours: same pack, same
			 * directory.  A job reading one file in twenty lands here
			 * at every miss, and fetches about what it reads.
			 */
			n = pick_batch(f, c, NEIGHBOUR_BYTES, PICK_NEIGHBOURS, batch,
				       sizeof(batch) / sizeof(batch[0]));
			f->seq_first = f->pos[c];
			f->seq_next = f->pos[batch[n - 1]] + 1;
			f->scan_bytes = 0;
		}
		pthread_mutex_unlock(&f->lock);
		rc = fetch_batch(f, batch, n, 0);
		/* a GET that failed after c's bytes came still cached c */
		if (rc && !__atomic_load_n(&f->have[c], __ATOMIC_RELAXED)) {
			pthread_mutex_lock(&f->lock);
			f->failed[f->failed_next % FAILED_RING].c = c;
			f->failed[f->failed_next % FAILED_RING].at = now_ns();
			f->failed_next++;
			pthread_mutex_unlock(&f->lock);
			return rc;
		}
	}
	return -EIO;
}

int fetch_peek(struct fetcher *f, uint32_t c, void *buf, size_t n)
{
	const struct cat_chunk *ch = catalog_chunk(f->cat, c);
	char path[PATH_MAX];
	int fd, ok;

	if (n != ch->raw_len)
		return 0;
	if (fetch_mem_read(f, c, 0, buf, n))
		return 1;
	store_object_path(f->r->store, &ch->id, path, sizeof(path));
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	ok = pread_full(fd, buf, n, 0) == (ssize_t)n;
	close(fd);
	return ok;
}

void fetch_advise_cached(struct fetcher *f, uint32_t c)
{
	const struct cat_chunk *ch = catalog_chunk(f->cat, c);
	char path[PATH_MAX];
	int fd;

	store_object_path(f->r->store, &ch->id, path, sizeof(path));
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	posix_fadvise(fd, 0, 0, POSIX_FADV_WILLNEED);
	close(fd);
}

void fetch_served(struct fetcher *f, uint32_t c, int fd, uint32_t n)
{
	const struct cat_chunk *ch = catalog_chunk(f->cat, c);
	uint32_t before;

	if (ch->raw_len < STORE_WRITE_BEHIND)
		return;
	/*
	 * Each time as much as the whole chunk has been served, in whatever
	 * order the kernel's concurrent READs came (dropping at the last
	 * byte's READ, a READ still copying would read pages back in).  A
	 * re-read, after the kernel let go of its copy, drops them again.
	 * (The count wraps after 4 GiB; that only moves one drop.)
	 */
	before = __atomic_fetch_add(&f->served[c], n, __ATOMIC_RELAXED);
	if ((before + n) / ch->raw_len != before / ch->raw_len)
		posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
}

ssize_t fetch_read(struct fetcher *f, uint32_t idx, uint64_t off, void *buf, size_t n)
{
	const struct cat_entry *e = catalog_entry(f->cat, idx);
	const struct cat_ref *refs;
	uint32_t r;
	size_t done = 0;

	if (off >= e->size || n == 0)
		return 0;
	if (n > e->size - off)
		n = (size_t)(e->size - off);
	refs = catalog_refs(f->cat, e) - e->first;
	r = catalog_ref_at(f->cat, e, off);
	while (done < n) {
		const struct cat_ref *ref = &refs[r];
		const struct cat_chunk *ch = catalog_chunk(f->cat, ref->chunk);
		uint64_t within = off + done - ref->off;
		size_t take =
			ch->raw_len - within < n - done ? (size_t)(ch->raw_len - within) : n - done;
		ssize_t got;
		int fd;

		if (fetch_mem_read(f, ref->chunk, within, (char *)buf + done, take)) {
			fetch_note_read(f, ref->chunk);
			done += take;
			r++;
			continue;
		}
		fd = fetch_chunk_fd(f, ref->chunk);
		if (fd < 0)
			return fd;
		got = pread_full(fd, (char *)buf + done, take, (off_t)within);
		if (got == (ssize_t)take)
			fetch_served(f, ref->chunk, fd, (uint32_t)take);
		close(fd);
		if (got != (ssize_t)take)
			return -EIO;
		fetch_note_read(f, ref->chunk);
		done += take;
		r++;
	}
	__atomic_add_fetch(&f->stats->bytes_read, done, __ATOMIC_RELAXED);
	return (ssize_t)done;
}
