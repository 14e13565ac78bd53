/* Lazy chunk fetching and lower-file reads; see fetch.h. */
#define _GNU_SOURCE
#include "fetch.h"
#include "mount.h"
#include "../store/pack.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct fetcher {
	struct repo *r;
	struct catalog *cat;
	struct mount_stats *stats;
	int reads_fd;
	uint64_t *seen;          /* bitmap of chunks already in the read record */
	pthread_mutex_t lock;    /* protects inflight */
	pthread_cond_t done;
	uint32_t *inflight;
	size_t n_inflight, cap_inflight;
};

int fetcher_new(struct repo *r, struct catalog *cat, const char *reads_log,
		struct mount_stats *stats, struct fetcher **out)
{
	struct fetcher *f = calloc(1, sizeof(*f));
	uint64_t n = catalog_header(cat)->n_chunks;

	if (!f)
		return -ENOMEM;
	f->r = r;
	f->cat = cat;
	f->stats = stats;
	f->seen = calloc(n / 64 + 1, sizeof(uint64_t));
	pthread_mutex_init(&f->lock, NULL);
	pthread_cond_init(&f->done, NULL);
	f->reads_fd = reads_log ? open(reads_log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600) : -1;
	if (!f->seen) {
		fetcher_free(f);
		return -ENOMEM;
	}
	if (f->reads_fd >= 0) {
		/* a resumed mount: chunks already recorded stay recorded once */
		struct buf b = BUF_INIT;
		size_t i;

		if (read_file(reads_log, &b, 1u << 30) == 0)
			for (i = 0; i + 4 <= b.len; i += 4) {
				uint32_t c;

				memcpy(&c, b.p + i, 4);
				if (c < n)
					f->seen[c / 64] |= 1ULL << (c % 64);
			}
		buf_free(&b);
	}
	*out = f;
	return 0;
}

void fetcher_free(struct fetcher *f)
{
	if (!f)
		return;
	if (f->reads_fd >= 0)
		close(f->reads_fd);
	free(f->seen);
	free(f->inflight);
	pthread_mutex_destroy(&f->lock);
	pthread_cond_destroy(&f->done);
	free(f);
}

void fetch_note_read(struct fetcher *f, uint32_t c)
{
	uint64_t bit = 1ULL << (c % 64);

	if (__atomic_load_n(&f->seen[c / 64], __ATOMIC_RELAXED) & bit)
		return;
	if (__atomic_fetch_or(&f->seen[c / 64], bit, __ATOMIC_RELAXED) & bit)
		return;
	if (f->reads_fd >= 0 && write(f->reads_fd, &c, sizeof(c)) != sizeof(c)) {
		/* the record is a hint for prefetch; losing an entry is harmless */
	}
}

static int is_inflight(struct fetcher *f, uint32_t c)
{
	size_t i;

	for (i = 0; i < f->n_inflight; i++)
		if (f->inflight[i] == c)
			return 1;
	return 0;
}

/* Fetch one chunk from the remotes into the object cache. */
static int fetch_one(struct fetcher *f, uint32_t c)
{
	const struct cat_chunk *ch = catalog_chunk(f->cat, c);
	char name[128], hex[CAS_HEX_LEN + 1], chex[CAS_HEX_LEN + 1];
	struct buf in = BUF_INIT;
	struct pack_codec *pc = NULL;
	uint8_t *raw = NULL;
	int rc;

	cas_id_hex(catalog_pack(f->cat, ch->pack), hex);
	cas_id_hex(&ch->id, chex);
	snprintf(name, sizeof(name), "packs/%s", hex);
	rc = repo_get(f->r, name, ch->pack_off, ch->stored_len, &in, ch->stored_len);
	if (rc) {
		log_err("fetch: object %s in pack %s: %s", chex, hex,
			rc == -ENOENT ? "missing on every remote" : strerror(-rc));
		/* the reader gets EIO for this read; everything cached keeps working */
		rc = -EIO;
		goto out;
	}
	__atomic_add_fetch(&f->stats->bytes_fetched, in.len, __ATOMIC_RELAXED);
	if (in.len != ch->stored_len) {
		log_err("fetch: pack %s truncated at offset %llu", hex,
			(unsigned long long)ch->pack_off);
		rc = -EIO;
		goto out;
	}
	pc = pack_codec_new(1);
	raw = malloc(ch->raw_len);
	if (!pc || !raw) {
		rc = -ENOMEM;
		goto out;
	}
	rc = pack_decode(pc, in.p, in.len, ch->flags, raw, ch->raw_len, &ch->id);
	if (rc) {
		log_err("fetch: object %s in pack %s: hash mismatch; not served", chex, hex);
		rc = -EIO;
		goto out;
	}
	rc = store_object_put(f->r->store, &ch->id, raw, ch->raw_len);
	if (rc) {
		log_err("fetch: caching object %s in %s: %s", chex, store_path(f->r->store),
			strerror(-rc));
		goto out;
	}
	__atomic_add_fetch(&f->stats->objects_fetched, 1, __ATOMIC_RELAXED);
out:
	if (rc)
		__atomic_add_fetch(&f->stats->fetch_errors, 1, __ATOMIC_RELAXED);
	pack_codec_free(pc);
	free(raw);
	buf_free(&in);
	return rc;
}

int fetch_chunk_fd(struct fetcher *f, uint32_t c)
{
	const struct cat_chunk *ch = catalog_chunk(f->cat, c);
	char path[PATH_MAX];
	int fd, rc = 0, tries;

	store_object_path(f->r->store, &ch->id, path, sizeof(path));
	for (tries = 0; tries < 3; tries++) {
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd >= 0)
			return fd;
		if (errno != ENOENT)
			return -errno;
		pthread_mutex_lock(&f->lock);
		if (is_inflight(f, c)) {
			while (is_inflight(f, c))
				pthread_cond_wait(&f->done, &f->lock);
			pthread_mutex_unlock(&f->lock);
			continue;
		}
		if (f->n_inflight == f->cap_inflight) {
			size_t nc = f->cap_inflight ? f->cap_inflight * 2 : 16;
			uint32_t *n = realloc(f->inflight, nc * sizeof(*n));

			if (!n) {
				pthread_mutex_unlock(&f->lock);
				return -ENOMEM;
			}
			f->inflight = n;
			f->cap_inflight = nc;
		}
		f->inflight[f->n_inflight++] = c;
		pthread_mutex_unlock(&f->lock);

		rc = fetch_one(f, c);

		pthread_mutex_lock(&f->lock);
		for (size_t i = 0; i < f->n_inflight; i++)
			if (f->inflight[i] == c) {
				f->inflight[i] = f->inflight[--f->n_inflight];
				break;
			}
		pthread_cond_broadcast(&f->done);
		pthread_mutex_unlock(&f->lock);
		if (rc)
			return rc;
	}
	return -EIO;
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
		size_t take = ch->raw_len - within < n - done ? (size_t)(ch->raw_len - within) : n - done;
		ssize_t got;
		int fd = fetch_chunk_fd(f, ref->chunk);

		if (fd < 0)
			return fd;
		got = pread_full(fd, (char *)buf + done, take, (off_t)within);
		close(fd);
		if (got != (ssize_t)take) {
			log_err("fetch: cached object for chunk %u is short; dropping it", ref->chunk);
			{
				char path[PATH_MAX];

				store_object_path(f->r->store, &ch->id, path, sizeof(path));
				unlink(path);
			}
			return -EIO;
		}
		fetch_note_read(f, ref->chunk);
		done += take;
		r++;
	}
	__atomic_add_fetch(&f->stats->bytes_read, done, __ATOMIC_RELAXED);
	return (ssize_t)done;
}
