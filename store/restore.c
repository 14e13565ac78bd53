/*
 * stashfs restore: materialize a catalog into a real directory.
 *
 * 1. Create the tree in entry order (parents before children): directories
 *    (0700 for now, so read-only ones can be filled), empty regular files
 *    sized to their final length, symlinks, then hard links to the group's
 *    first member.
 * 2. Content: every (chunk, file, offset) target is sorted by the chunk's
 *    place in its pack and cut into batches, each one ranged read of a
 *    pack.  Worker threads fetch batches, decode and verify every chunk
 *    (bytes whose hash does not match are never written), and write each
 *    chunk to every place it appears.
 * 3. Metadata in reverse entry order (children before parents, so writing
 *    a child cannot bump a restored directory mtime): mode, owner when
 *    asked, then mtime to the nanosecond.
 */
#define _GNU_SOURCE
#include "snapshot.h"
#include "pack.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define BATCH_MAX (8u << 20)
#define BATCH_GAP (256u << 10)

struct target {
	uint32_t chunk;
	uint32_t entry;
	uint64_t off;
};

struct batch {
	uint64_t first, count; /* range in targets */
	uint32_t pack;
	uint64_t off, len; /* byte range of the pack */
};

struct restorer {
	struct repo *r;
	struct catalog *c;
	const struct restore_opts *o;
	int rootfd;
	char **paths;
	struct target *t;
	uint64_t nt;
	struct batch *b;
	uint64_t nb;
	atomic_uint_fast64_t next;
	atomic_int err;
	atomic_uint_fast64_t fetched;
};

static int target_cmp(const void *a, const void *b, void *cat)
{
	const struct target *x = a, *y = b;
	const struct cat_chunk *cx = catalog_chunk(cat, x->chunk);
	const struct cat_chunk *cy = catalog_chunk(cat, y->chunk);

	if (cx->pack != cy->pack)
		return cx->pack < cy->pack ? -1 : 1;
	if (cx->pack_off != cy->pack_off)
		return cx->pack_off < cy->pack_off ? -1 : 1;
	if (x->entry != y->entry)
		return x->entry < y->entry ? -1 : 1;
	return x->off < y->off ? -1 : x->off > y->off;
}

static int make_paths(struct restorer *s)
{
	uint32_t n = catalog_count(s->c), i;

	s->paths = calloc(n, sizeof(*s->paths));
	if (!s->paths)
		return -ENOMEM;
	s->paths[0] = strdup(".");
	if (!s->paths[0])
		return -ENOMEM;
	for (i = 1; i < n; i++) {
		const struct cat_entry *e = catalog_entry(s->c, i);
		const char *pp = s->paths[e->parent];
		int rc;

		if (e->parent == 0)
			rc = asprintf(&s->paths[i], "%.*s", (int)e->name_len,
				      catalog_name(s->c, e));
		else
			rc = asprintf(&s->paths[i], "%s/%.*s", pp, (int)e->name_len,
				      catalog_name(s->c, e));
		if (rc < 0) {
			s->paths[i] = NULL;
			return -ENOMEM;
		}
	}
	return 0;
}

static int fail_at(struct restorer *s, const char *what, uint32_t i, int rc)
{
	log_err("restore: %s '%s/%s': %s", what, qpath(s->o->dir), qpath(s->paths[i]),
		strerror(-rc));
	return rc;
}

static int create_tree(struct restorer *s, struct snap_stats *st)
{
	uint32_t n = catalog_count(s->c), i;

	for (i = 1; i < n; i++) {
		const struct cat_entry *e = catalog_entry(s->c, i);
		const char *p = s->paths[i];
		int fd;

		switch (e->mode & S_IFMT) {
		case S_IFDIR:
			st->dirs++;
			if (mkdirat(s->rootfd, p, 0700) < 0) {
				struct stat sb;

				if (errno != EEXIST ||
				    fstatat(s->rootfd, p, &sb, AT_SYMLINK_NOFOLLOW) < 0 ||
				    !S_ISDIR(sb.st_mode))
					return fail_at(s, "creating directory", i, -EEXIST);
				fchmodat(s->rootfd, p, 0700, 0);
			}
			break;
		case S_IFLNK:
			st->symlinks++;
			unlinkat(s->rootfd, p, 0);
			{
				char *t = strndup(catalog_target(s->c, e), e->count);

				if (!t)
					return -ENOMEM;
				if (symlinkat(t, s->rootfd, p) < 0) {
					int rc = -errno;

					free(t);
					return fail_at(s, "creating symlink", i, rc);
				}
				free(t);
			}
			break;
		case S_IFREG:
			st->files++;
			unlinkat(s->rootfd, p, 0);
			if (e->ino != i) {
				st->hardlinks++;
				if (linkat(s->rootfd, s->paths[e->ino], s->rootfd, p, 0) < 0)
					return fail_at(s, "creating hard link", i, -errno);
				break;
			}
			st->bytes += e->size;
			fd = openat(s->rootfd, p,
				    O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
			if (fd < 0)
				return fail_at(s, "creating", i, -errno);
			if (e->size && ftruncate(fd, (off_t)e->size) < 0) {
				int rc = -errno;

				close(fd);
				return fail_at(s, "sizing", i, rc);
			}
			close(fd);
			break;
		}
	}
	return 0;
}

static int plan(struct restorer *s)
{
	uint32_t n = catalog_count(s->c), i, j;
	uint64_t nt = 0, k;

	for (i = 0; i < n; i++) {
		const struct cat_entry *e = catalog_entry(s->c, i);

		if (S_ISREG(e->mode) && e->ino == i)
			nt += e->count;
	}
	s->t = malloc((nt ? nt : 1) * sizeof(*s->t));
	s->b = malloc((nt ? nt : 1) * sizeof(*s->b));
	if (!s->t || !s->b)
		return -ENOMEM;
	for (i = 0; i < n; i++) {
		const struct cat_entry *e = catalog_entry(s->c, i);
		const struct cat_ref *r;

		if (!S_ISREG(e->mode) || e->ino != i)
			continue;
		r = catalog_refs(s->c, e);
		for (j = 0; j < e->count; j++)
			s->t[s->nt++] = (struct target){ r[j].chunk, i, r[j].off };
	}
	qsort_r(s->t, s->nt, sizeof(*s->t), target_cmp, s->c);
	for (k = 0; k < s->nt; k++) {
		const struct cat_chunk *ch = catalog_chunk(s->c, s->t[k].chunk);
		struct batch *b = s->nb ? &s->b[s->nb - 1] : NULL;
		uint64_t end = ch->pack_off + ch->stored_len;

		if (b && b->pack == ch->pack && ch->pack_off >= b->off &&
		    ch->pack_off <= b->off + b->len + BATCH_GAP &&
		    (end <= b->off + b->len || end - b->off <= BATCH_MAX)) {
			if (end > b->off + b->len)
				b->len = end - b->off;
			b->count++;
			continue;
		}
		s->b[s->nb++] = (struct batch){ k, 1, ch->pack, ch->pack_off, ch->stored_len };
	}
	return 0;
}

static int all_zero(const uint8_t *p, size_t n)
{
	static const uint8_t z[4096];

	while (n) {
		size_t k = n < sizeof(z) ? n : sizeof(z);

		if (memcmp(p, z, k))
			return 0;
		p += k;
		n -= k;
	}
	return 1;
}

static int write_target(struct restorer *s, const struct target *t, const void *p, size_t n)
{
	int fd, rc;

	/* the file was sized with ftruncate: zeros are already there, and
	 * leaving them as a hole keeps sparse files sparse */
	if (all_zero(p, n)) {
		if (s->o->progress)
			__atomic_add_fetch(&s->o->progress->done_bytes, n, __ATOMIC_RELAXED);
		return 0;
	}

	fd = openat(s->rootfd, s->paths[t->entry], O_WRONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return fail_at(s, "opening", t->entry, -errno);
	rc = pwrite_full(fd, p, n, (off_t)t->off);
	if (close(fd) < 0 && !rc)
		rc = -errno;
	if (rc)
		return fail_at(s, "writing", t->entry, rc);
	if (s->o->progress)
		__atomic_add_fetch(&s->o->progress->done_bytes, n, __ATOMIC_RELAXED);
	return 0;
}

static int do_batch(struct restorer *s, const struct batch *b, struct pack_codec *pc,
		    struct buf *in, struct buf *raw)
{
	char name[128], hex[CAS_HEX_LEN + 1];
	const struct cas_id *pid = catalog_pack(s->c, b->pack);
	uint64_t k;
	int rc;

	cas_id_hex(pid, hex);
	snprintf(name, sizeof(name), "packs/%s", hex);
	buf_reset(in);
	rc = repo_get(s->r, name, b->off, b->len, in, b->len);
	if (rc) {
		log_err("restore: pack %s: %s", hex,
			rc == -ENOENT ? "missing on every remote" : strerror(-rc));
		return rc;
	}
	atomic_fetch_add(&s->fetched, in->len);
	if (in->len != b->len) {
		log_err("restore: pack %s: truncated (%zu of %llu bytes at offset %llu)", hex,
			in->len, (unsigned long long)b->len, (unsigned long long)b->off);
		return -EBADMSG;
	}
	for (k = b->first; k < b->first + b->count; k++) {
		const struct target *t = &s->t[k];
		const struct cat_chunk *ch = catalog_chunk(s->c, t->chunk);

		if (k == b->first || s->t[k - 1].chunk != t->chunk) {
			rc = buf_reserve(raw, ch->raw_len);
			if (rc)
				return rc;
			rc = pack_decode(pc, in->p + (ch->pack_off - b->off), ch->stored_len,
					 ch->flags, raw->p, ch->raw_len, &ch->id);
			if (rc) {
				char chex[CAS_HEX_LEN + 1];

				cas_id_hex(&ch->id, chex);
				log_err("restore: object %s in pack %s: hash mismatch (corrupt "
					"object); "
					"not written",
					chex, hex);
				return rc;
			}
		}
		rc = write_target(s, t, raw->p, ch->raw_len);
		if (rc)
			return rc;
	}
	return 0;
}

static void *worker(void *arg)
{
	struct restorer *s = arg;
	struct pack_codec *pc = pack_codec_new(1);
	struct buf in = BUF_INIT, raw = BUF_INIT;
	int zero = 0;

	if (!pc) {
		atomic_compare_exchange_strong(&s->err, &zero, -ENOMEM);
		return NULL;
	}
	while (!atomic_load(&s->err)) {
		uint64_t i = atomic_fetch_add(&s->next, 1);
		int rc;

		if (i >= s->nb)
			break;
		rc = do_batch(s, &s->b[i], pc, &in, &raw);
		if (rc) {
			zero = 0;
			atomic_compare_exchange_strong(&s->err, &zero, rc);
		}
	}
	buf_free(&in);
	buf_free(&raw);
	pack_codec_free(pc);
	return NULL;
}

static int apply_meta(struct restorer *s)
{
	uint32_t n = catalog_count(s->c), i;

	for (i = n; i-- > 0;) {
		const struct cat_entry *e = catalog_entry(s->c, i);
		struct timespec ts[2];

		if (S_ISREG(e->mode) && e->ino != i)
			continue;
		if (s->o->preserve_owner &&
		    fchownat(s->rootfd, s->paths[i], e->uid, e->gid, AT_SYMLINK_NOFOLLOW) < 0)
			return fail_at(s, "setting owner of", i, -errno);
		if (!S_ISLNK(e->mode) && fchmodat(s->rootfd, s->paths[i], e->mode & 07777, 0) < 0)
			return fail_at(s, "setting mode of", i, -errno);
		ts[0].tv_sec = e->mtime_sec;
		ts[0].tv_nsec = e->mtime_nsec;
		ts[1] = ts[0];
		if (utimensat(s->rootfd, s->paths[i], ts, AT_SYMLINK_NOFOLLOW) < 0)
			return fail_at(s, "setting mtime of", i, -errno);
	}
	return 0;
}

int snapshot_restore(struct repo *r, struct catalog *c, const struct restore_opts *o,
		     struct snap_stats *st)
{
	struct restorer s;
	pthread_t th[64];
	int nth, i, rc;
	uint32_t k;

	memset(&s, 0, sizeof(s));
	memset(st, 0, sizeof(*st));
	s.r = r;
	s.c = c;
	s.o = o;
	st->dirs = 1; /* the root */
	s.rootfd = open(o->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (s.rootfd < 0) {
		rc = -errno;
		log_err("restore: cannot open directory '%s': %s", qpath(o->dir), strerror(errno));
		goto out;
	}
	rc = make_paths(&s);
	if (!rc)
		rc = create_tree(&s, st);
	if (!rc)
		rc = plan(&s);
	if (rc)
		goto out;
	if (o->progress) {
		uint64_t k2;

		for (k2 = 0; k2 < s.nt; k2++)
			o->progress->total_bytes += catalog_chunk(c, s.t[k2].chunk)->raw_len;
		o->progress->total_files = st->files;
	}
	nth = o->threads > 0 ? o->threads : 4;
	if (nth > (int)ARRAY_SIZE(th))
		nth = (int)ARRAY_SIZE(th);
	for (i = 0; i < nth; i++)
		if (pthread_create(&th[i], NULL, worker, &s) != 0)
			break;
	nth = i;
	if (nth == 0)
		worker(&s);
	for (i = 0; i < nth; i++)
		pthread_join(th[i], NULL);
	rc = atomic_load(&s.err);
	st->bytes_fetched = atomic_load(&s.fetched);
	st->chunks = s.nt;
	if (!rc)
		rc = apply_meta(&s);
out:
	if (s.paths)
		for (k = 0; k < catalog_count(c); k++)
			free(s.paths[k]);
	free(s.paths);
	free(s.t);
	free(s.b);
	if (s.rootfd >= 0)
		close(s.rootfd);
	return rc;
}
