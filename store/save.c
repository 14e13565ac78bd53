/*
 * stashfs save: snapshot a real directory.
 *
 * 1. Walk (one thread, store/save_walk.c): every directory's children are read, sorted and
 *    given a contiguous block of entry indices, which is the catalog's
 *    layout.  Sockets, FIFOs and devices are skipped with a warning.
 * 2. Content (threads): files are taken in entry order (so packs follow
 *    the directory layout), cut into content-defined chunks, hashed, and
 *    looked up: in this save, in the key's previous snapshot, and in the
 *    store's index of chunks the remote already holds.  New chunks are
 *    compressed and appended to the current pack; a full pack is sealed
 *    and uploaded by the thread that filled it.
 * 3. The catalog is built, stored and uploaded; then the key is published.
 *    Nothing is published unless everything before it succeeded.
 *
 * Locking: s->lock protects the chunk table (ci), the id maps, the pack
 * table and the stats; s->pack_lock protects the open pack writer.  The
 * order is pack_lock, then lock.
 */
#define _GNU_SOURCE
#include "save_int.h"
#include "chunker.h"
#include "idmap.h"
#include "pack.h"

#include <assert.h>
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

static int set_err(struct saver *s, int rc)
{
	int zero = 0;

	atomic_compare_exchange_strong(&s->err, &zero, rc);
	return rc;
}

/* ---- content ---- */

static int grow_ci(struct saver *s)
{
	if (s->nci == s->capci) {
		uint64_t nc = s->capci ? s->capci * 2 : 4096;
		struct cinfo *n = realloc(s->ci, nc * sizeof(*n));

		if (!n)
			return -ENOMEM;
		s->ci = n;
		s->capci = nc;
	}
	return 0;
}

/* Index in s->packs of pack id, adding it.  Under s->lock. */
static int pack_index(struct saver *s, const struct cas_id *id, int state, uint32_t *out)
{
	int rc;

	if (id && idmap_get(s->packmap, id, out) == 0)
		return 0;
	if (s->npacks == s->cappacks) {
		uint64_t nc = s->cappacks ? s->cappacks * 2 : 64;
		struct packinfo *n = realloc(s->packs, nc * sizeof(*n));

		if (!n)
			return -ENOMEM;
		s->packs = n;
		s->cappacks = nc;
	}
	memset(&s->packs[s->npacks], 0, sizeof(s->packs[0]));
	if (id) {
		s->packs[s->npacks].id = *id;
		rc = idmap_put(s->packmap, id, (uint32_t)s->npacks);
		if (rc)
			return rc;
	}
	s->packs[s->npacks].state = state;
	s->packs[s->npacks].cat = NONE;
	*out = (uint32_t)s->npacks++;
	return 0;
}

static int add_ref(struct fileref *fr, uint64_t off, uint32_t ci)
{
	if (fr->n == fr->cap) {
		uint32_t nc = fr->cap ? fr->cap * 2 : 1;
		struct cat_ref *n = realloc(fr->v, nc * sizeof(*n));

		if (!n)
			return -ENOMEM;
		fr->v = n;
		fr->cap = nc;
	}
	fr->v[fr->n].off = off;
	fr->v[fr->n].chunk = ci;
	fr->v[fr->n].pad = 0;
	fr->n++;
	return 0;
}

static int seal_and_upload(struct saver *s, struct pack_writer *w, uint32_t idx)
{
	char tmp[4096], name[128], hex[CAS_HEX_LEN + 1];
	struct cas_id id;
	uint64_t size = pack_writer_size(w);
	int rc;

	rc = pack_writer_finish(w, &id, tmp);
	if (rc) {
		log_err("save: writing pack in %s: %s", qpath(store_tmpdir(s->r->store)),
			strerror(-rc));
		return rc;
	}
	cas_id_hex(&id, hex);
	repo_object_name(name, "packs", &id);
	rc = remote_exists(s->r->primary, name);
	if (rc == 0)
		rc = remote_put_file(s->r->primary, name, tmp, 1);
	else if (rc == 1)
		rc = 0, size = 0;
	unlink(tmp);
	if (rc) {
		log_err("save: uploading pack %s to %s: %s", hex, s->r->primary->url,
			strerror(-rc));
		return rc;
	}
	pthread_mutex_lock(&s->lock);
	s->packs[idx].id = id;
	s->packs[idx].state = 1;
	idmap_put(s->packmap, &id, idx);
	s->st->packs_uploaded += size ? 1 : 0;
	s->st->bytes_uploaded += size;
	pthread_mutex_unlock(&s->lock);
	return 0;
}

/* Is a chunk the index says the remote holds really there?  Under s->lock. */
static int known_location(struct saver *s, const struct cas_id *id, uint32_t *out)
{
	struct store_loc loc;
	uint32_t pidx;
	char name[REPO_NAME_MAX];
	int rc;

	rc = store_loc_get(s->r->store, s->r->primary->url, id, &loc);
	if (rc)
		return rc;
	rc = pack_index(s, &loc.pack, 0, &pidx);
	if (rc)
		return rc;
	if (s->packs[pidx].state == 0) {
		repo_object_name(name, "packs", &loc.pack);
		rc = remote_exists(s->r->primary, name);
		s->packs[pidx].state = rc == 1 ? 1 : 2;
		if (rc == 0)
			store_loc_forget_pack(s->r->store, s->r->primary->url, &loc.pack);
	}
	if (s->packs[pidx].state != 1)
		return -ENOENT;
	rc = grow_ci(s);
	if (rc)
		return rc;
	s->ci[s->nci] = (struct cinfo){ *id,  pidx, loc.raw_len, loc.off, loc.stored_len, loc.flags,
					NONE, 0 };
	rc = idmap_put(s->map, id, (uint32_t)s->nci);
	if (rc)
		return rc;
	*out = (uint32_t)s->nci++;
	return 0;
}

static int do_chunk(struct saver *s, struct pack_codec *pc, struct buf *enc, const uint8_t *p,
		    size_t n, uint64_t off, struct fileref *fr)
{
	struct cas_id id;
	uint32_t ci, flags, pidx;
	uint64_t poff;
	struct pack_writer *full = NULL;
	int rc, fresh = 0;

	cas_hash(p, n, &id);
	pthread_mutex_lock(&s->lock);
	s->st->chunks++;
	if (idmap_get(s->map, &id, &ci) != 0) {
		rc = known_location(s, &id, &ci);
		if (rc == -ENOENT) {
			rc = grow_ci(s);
			if (!rc)
				rc = idmap_put(s->map, &id, (uint32_t)s->nci);
			if (!rc) {
				s->ci[s->nci] =
					(struct cinfo){ id, NONE, (uint32_t)n, 0, 0, 0, NONE, 1 };
				ci = (uint32_t)s->nci++;
				fresh = 1;
				s->st->chunks_new++;
				s->st->bytes_new += n;
			}
		}
		if (rc) {
			pthread_mutex_unlock(&s->lock);
			return rc;
		}
	}
	assert(ci < s->nci);
	pthread_mutex_unlock(&s->lock);
	rc = add_ref(fr, off, ci);
	if (rc || !fresh)
		return rc;

	rc = pack_encode(pc, p, n, enc, &flags);
	if (rc)
		return rc;
	pthread_mutex_lock(&s->pack_lock);
	if (!s->pw) {
		rc = pack_writer_new(store_tmpdir(s->r->store), &s->pw);
		if (!rc) {
			pthread_mutex_lock(&s->lock);
			rc = pack_index(s, NULL, 0, &s->pw_idx);
			pthread_mutex_unlock(&s->lock);
		}
		if (rc) {
			pthread_mutex_unlock(&s->pack_lock);
			return rc;
		}
	}
	rc = pack_writer_append(s->pw, enc->p, enc->len, &poff);
	pidx = s->pw_idx;
	if (!rc && pack_writer_size(s->pw) >= PACK_TARGET) {
		full = s->pw;
		s->pw = NULL;
	}
	pthread_mutex_unlock(&s->pack_lock);
	if (rc) {
		log_err("save: writing pack in %s: %s", qpath(store_tmpdir(s->r->store)),
			strerror(-rc));
		return rc;
	}
	pthread_mutex_lock(&s->lock);
	s->ci[ci].pack = pidx;
	s->ci[ci].off = poff;
	s->ci[ci].stored_len = (uint32_t)enc->len;
	s->ci[ci].flags = flags;
	pthread_mutex_unlock(&s->lock);
	if (full)
		rc = seal_and_upload(s, full, pidx);
	return rc;
}

static int save_file(struct saver *s, uint32_t idx, struct pack_codec *pc, uint8_t *win,
		     struct buf *enc)
{
	const char *path = s->t->paths[idx];
	struct fileref *fr = &s->refs[idx];
	size_t start = 0, have = 0;
	uint64_t off = 0;
	int fd, eof = 0, rc = 0;

	fd = openat(s->rootfd, path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOATIME);
	if (fd < 0 && errno == EPERM)
		fd = openat(s->rootfd, path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		rc = -errno;
		log_err("save: cannot read '%s/%s': %s", qpath(s->o->dir), qpath(path),
			strerror(errno));
		return rc;
	}
	for (;;) {
		size_t cut;

		while (!eof && have < CHUNK_MAX) {
			ssize_t r;

			if (start + have == SAVE_WINDOW) {
				memmove(win, win + start, have);
				start = 0;
			}
			r = read(fd, win + start + have, SAVE_WINDOW - start - have);
			if (r < 0) {
				if (errno == EINTR)
					continue;
				rc = -errno;
				log_err("save: cannot read '%s/%s': %s", qpath(s->o->dir),
					qpath(path), strerror(errno));
				goto out;
			}
			if (r == 0)
				eof = 1;
			have += (size_t)r;
		}
		if (have == 0)
			break;
		cut = chunker_next(&chunker_default, win + start, have, eof);
		rc = do_chunk(s, pc, enc, win + start, cut, off, fr);
		if (rc) {
			if (rc != -ENOSPC && rc != -EIO)
				log_err("save: '%s/%s': %s", qpath(s->o->dir), qpath(path),
					strerror(-rc));
			goto out;
		}
		off += cut;
		start += cut;
		have -= cut;
		if (s->o->progress)
			__atomic_add_fetch(&s->o->progress->done_bytes, cut, __ATOMIC_RELAXED);
		if (atomic_load(&s->err))
			goto out;
	}
	if (off != s->t->e[idx].size)
		log_warn("'%s/%s' changed size while saving (%llu -> %llu bytes); saved what was "
			 "read",
			 qpath(s->o->dir), qpath(path), (unsigned long long)s->t->e[idx].size,
			 (unsigned long long)off);
	s->t->e[idx].size = off;
	if (s->o->progress)
		__atomic_add_fetch(&s->o->progress->done_files, 1, __ATOMIC_RELAXED);
out:
	close(fd);
	return rc;
}

static void *worker(void *arg)
{
	struct saver *s = arg;
	struct pack_codec *pc = pack_codec_new(s->o->level);
	uint8_t *win = malloc(SAVE_WINDOW);
	struct buf enc = BUF_INIT;

	if (!pc || !win) {
		set_err(s, -ENOMEM);
		goto out;
	}
	while (!atomic_load(&s->err)) {
		uint64_t i = atomic_fetch_add(&s->next, 1);
		int rc;

		if (i >= s->nfiles)
			break;
		rc = save_file(s, s->files[i], pc, win, &enc);
		if (rc)
			set_err(s, rc);
	}
out:
	buf_free(&enc);
	free(win);
	pack_codec_free(pc);
	return NULL;
}

/*
 * Put every chunk of catalog c into the dedup map (its packs are on the
 * primary).  With cmap, *cmap[i] is the ci index of c's chunk i.
 */
static int import_catalog(struct saver *s, const struct catalog *c, int state, uint32_t **cmap)
{
	const struct cat_header *h = catalog_header(c);
	uint32_t *pmap = NULL, *cm = NULL;
	uint64_t i;
	int rc = -ENOMEM;

	pmap = malloc((h->n_packs ? h->n_packs : 1) * sizeof(*pmap));
	cm = malloc((h->n_chunks ? h->n_chunks : 1) * sizeof(*cm));
	if (!pmap || !cm)
		goto out;
	rc = 0;
	for (i = 0; i < h->n_packs && !rc; i++)
		rc = pack_index(s, catalog_pack(c, (uint32_t)i), state, &pmap[i]);
	for (i = 0; i < h->n_chunks && !rc; i++) {
		const struct cat_chunk *ch = catalog_chunk(c, (uint32_t)i);

		if (idmap_get(s->map, &ch->id, &cm[i]) == 0)
			continue;
		rc = grow_ci(s);
		if (!rc)
			rc = idmap_put(s->map, &ch->id, (uint32_t)s->nci);
		if (!rc) {
			cm[i] = (uint32_t)s->nci;
			s->ci[s->nci++] = (struct cinfo){ ch->id,	  pmap[ch->pack],
							  ch->raw_len,	  ch->pack_off,
							  ch->stored_len, ch->flags,
							  NONE,		  0 };
		}
	}
out:
	free(pmap);
	if (!rc && cmap)
		*cmap = cm;
	else
		free(cm);
	return rc;
}

/* Seed the dedup map with the key's current snapshot on the primary. */
static int load_key_base(struct saver *s)
{
	struct key_rec rec;
	struct catalog *c = NULL;
	int rc;

	rc = keys_get(s->r->primary, s->o->key, &rec);
	if (rc == -ENOENT)
		return 0;
	if (rc)
		return rc;
	rc = repo_catalog(s->r, &rec.catalog, &c);
	if (rc) {
		log_warn("previous snapshot of '%s' unreadable; saving without it", s->o->key);
		return 0;
	}
	rc = import_catalog(s, c, 1, NULL); /* the key's snapshot: its packs are on the primary */
	catalog_close(c);
	return rc;
}

/* Copy a pack from whichever remote has it to the primary, verified. */
static int copy_pack(struct saver *s, const struct cas_id *id, const char *name)
{
	struct buf b = BUF_INIT;
	struct cas_id got;
	char hex[CAS_HEX_LEN + 1];
	int rc;

	cas_id_hex(id, hex);
	rc = repo_get(s->r, name, 0, REMOTE_WHOLE, &b, 1u << 30);
	if (rc) {
		log_err("pack %s of the base snapshot: %s", hex,
			rc == -ENOENT ? "missing on every remote" : strerror(-rc));
		goto out;
	}
	cas_hash(b.p, b.len, &got);
	if (cas_id_cmp(&got, id) != 0) {
		log_err("pack %s of the base snapshot: hash mismatch; not copied", hex);
		rc = -EBADMSG;
		goto out;
	}
	rc = remote_put_buf(s->r->primary, name, b.p, b.len);
	if (rc) {
		log_err("pack %s: copying to %s: %s", hex, s->r->primary->url, strerror(-rc));
		goto out;
	}
	s->st->bytes_uploaded += b.len;
	s->st->packs_uploaded++;
out:
	buf_free(&b);
	return rc;
}

/*
 * Entries whose content is unchanged from the base snapshot reuse its
 * chunk list: nothing is read.  The base's packs must be on the primary
 * (checked once per pack).
 */
static int seed_from_base(struct saver *s, const struct catalog *base)
{
	uint32_t *cmap = NULL;
	uint64_t i, j;
	int rc;

	/* the mount's base may come from a read remote: its packs are unknown */
	rc = import_catalog(s, base, 0, &cmap);
	if (rc)
		return rc;
	for (i = 0; i < s->npacks; i++) {
		struct packinfo *p = &s->packs[i];
		char name[128], hex[CAS_HEX_LEN + 1];

		if (p->state != 0)
			continue;
		cas_id_hex(&p->id, hex);
		repo_object_name(name, "packs", &p->id);
		rc = remote_exists(s->r->primary, name);
		if (rc < 0)
			goto out;
		/* mounted from a read remote (a pull request reading main's
		 * cache): the new snapshot must not depend on a scope it cannot
		 * write, so the pack is copied into the primary */
		rc = rc == 0 ? copy_pack(s, &p->id, name) : 0;
		if (rc)
			goto out;
		p->state = 1;
	}
	for (i = 0; i < s->t->n && !rc; i++) {
		const struct cat_entry *be;
		const struct cat_ref *r;

		if (s->t->base[i] == SNAP_NONE || !S_ISREG(s->t->e[i].mode) || s->t->e[i].ino != i)
			continue;
		be = catalog_entry(base, s->t->base[i]);
		r = catalog_refs(base, be);
		s->t->e[i].size = be->size;
		for (j = 0; j < be->count && !rc; j++)
			rc = add_ref(&s->refs[i], r[j].off, cmap[r[j].chunk]);
		s->st->chunks += be->count;
	}
	if (!rc && s->n_reads) {
		s->read_ci = malloc(s->n_reads * sizeof(*s->read_ci));
		if (!s->read_ci)
			rc = -ENOMEM;
		for (i = 0; !rc && i < s->n_reads; i++)
			s->read_ci[i] = cmap[s->reads[i]];
	}
out:
	free(cmap);
	return rc;
}

static int xattr_cmp(const void *a, const void *b, void *strings)
{
	const struct cat_xattr *x = a, *y = b;
	const char *str = strings;

	if (x->entry != y->entry)
		return x->entry < y->entry ? -1 : 1;
	return catalog_name_cmp(str + x->name_off, x->name_len, str + y->name_off, y->name_len);
}

static int build_catalog(struct saver *s, struct buf *img)
{
	struct cat_ref *refs = NULL;
	struct cat_chunk *chunks = NULL;
	struct cas_id *packs = NULL;
	uint32_t *reads = NULL;
	uint64_t nrefs = 0, nchunks = 0, npacks = 0, nreads = 0, nx, i, j;
	int rc = -ENOMEM;

	for (i = 0; i < s->t->n; i++)
		nrefs += s->refs[i].n;
	refs = malloc((nrefs ? nrefs : 1) * sizeof(*refs));
	chunks = malloc((s->nci ? s->nci : 1) * sizeof(*chunks));
	packs = malloc((s->npacks ? s->npacks : 1) * sizeof(*packs));
	if (!refs || !chunks || !packs)
		goto out;
	nrefs = 0;
	for (i = 0; i < s->t->n; i++) {
		struct cat_entry *e = &s->t->e[i];

		if (S_ISREG(e->mode)) {
			if (e->ino != i) {
				e->size = s->t->e[e->ino].size;
				continue;
			}
			e->first = nrefs;
			e->count = s->refs[i].n;
		}
		for (j = 0; S_ISREG(e->mode) && j < s->refs[i].n; j++) {
			struct cinfo *c = &s->ci[s->refs[i].v[j].chunk];
			struct packinfo *p = &s->packs[c->pack];

			if (c->cat == NONE) {
				if (p->cat == NONE) {
					p->cat = (uint32_t)npacks;
					packs[npacks++] = p->id;
				}
				c->cat = (uint32_t)nchunks;
				chunks[nchunks++] =
					(struct cat_chunk){ c->id,  p->cat,	   c->raw_len,
							    c->off, c->stored_len, c->flags };
			}
			refs[nrefs].off = s->refs[i].v[j].off;
			refs[nrefs].chunk = c->cat;
			refs[nrefs].pad = 0;
			nrefs++;
		}
	}
	if (s->read_ci) {
		reads = malloc(s->n_reads * sizeof(*reads));
		if (!reads) {
			rc = -ENOMEM;
			goto out;
		}
		for (i = 0; i < s->n_reads; i++)
			if (s->ci[s->read_ci[i]].cat != NONE)
				reads[nreads++] = s->ci[s->read_ci[i]].cat;
	}
	nx = s->t->xattrs.len / sizeof(struct cat_xattr);
	if (nx)
		qsort_r(s->t->xattrs.p, nx, sizeof(struct cat_xattr), xattr_cmp, s->t->strings.p);
	s->st->xattrs = nx;
	rc = catalog_build(img, s->t->e, s->t->n, refs, nrefs, chunks, nchunks, packs, npacks,
			   reads, nreads, (const struct cat_xattr *)s->t->xattrs.p, nx,
			   (const char *)s->t->strings.p, s->t->strings.len);
out:
	free(reads);
	free(refs);
	free(chunks);
	free(packs);
	return rc;
}

static int record_locations(struct saver *s)
{
	uint64_t i;
	int rc;

	rc = store_loc_begin(s->r->store);
	for (i = 0; !rc && i < s->nci; i++) {
		struct cinfo *c = &s->ci[i];
		struct store_loc loc;

		if (!c->is_new || c->pack == NONE)
			continue;
		loc.pack = s->packs[c->pack].id;
		loc.off = c->off;
		loc.stored_len = c->stored_len;
		loc.raw_len = c->raw_len;
		loc.flags = c->flags;
		rc = store_loc_put(s->r->store, s->r->primary->url, &c->id, &loc);
	}
	return store_loc_commit(s->r->store) ?: rc;
}

/* Content, catalog, publish: shared by save and commit. */
static int publish(struct saver *s, const struct catalog *base)
{
	struct snap_tree *t = s->t;
	struct snap_stats *st = s->st;
	pthread_t th[64];
	struct buf img = BUF_INIT;
	struct key_rec rec;
	int nth, i, rc;
	uint64_t k;

	s->refs = calloc(t->n, sizeof(*s->refs));
	s->files = malloc(t->n * sizeof(*s->files));
	if (!s->refs || !s->files) {
		rc = -ENOMEM;
		goto out;
	}
	rc = count_links(t);
	if (!rc)
		rc = load_key_base(s);
	if (!rc && base)
		rc = seed_from_base(s, base);
	if (rc)
		goto out;
	for (k = 0; k < t->n; k++) {
		struct cat_entry *e = &t->e[k];

		if (S_ISDIR(e->mode))
			st->dirs++;
		else if (!S_ISREG(e->mode))
			*(e->ino != k	     ? &st->hardlinks
			  : S_ISLNK(e->mode) ? &st->symlinks
					     : &st->specials) += 1;
		else {
			/* files once each, as the catalog and the mount count
			 * them; a hard link's other names apart */
			if (e->ino != k)
				st->hardlinks++;
			else
				st->files++;
			if (e->ino == k && e->size > 0 && t->base[k] == SNAP_NONE && t->paths[k])
				s->files[s->nfiles++] = (uint32_t)k;
			else if (e->ino == k && t->base[k] == SNAP_NONE)
				e->size = 0;
		}
	}

	if (s->o->progress) {
		for (k = 0; k < s->nfiles; k++)
			s->o->progress->total_bytes += t->e[s->files[k]].size;
		s->o->progress->total_files = s->nfiles;
	}
	nth = s->o->threads > 0 ? s->o->threads : (int)sysconf(_SC_NPROCESSORS_ONLN);
	if (nth < 1)
		nth = 1;
	if (nth > (int)ARRAY_SIZE(th))
		nth = (int)ARRAY_SIZE(th);
	for (i = 0; i < nth; i++) {
		if (pthread_create(&th[i], NULL, worker, s) != 0) {
			set_err(s, -EAGAIN);
			break;
		}
	}
	nth = i;
	for (i = 0; i < nth; i++)
		pthread_join(th[i], NULL);
	rc = atomic_load(&s->err);
	if (!rc && s->pw) {
		struct pack_writer *w = s->pw;

		s->pw = NULL;
		rc = seal_and_upload(s, w, s->pw_idx);
	}
	if (rc)
		goto out;
	for (k = 0; k < t->n; k++)
		if (S_ISREG(t->e[k].mode) && t->e[k].ino == k)
			st->bytes += t->e[k].size;
	rc = record_locations(s);
	if (rc)
		goto out;
	rc = build_catalog(s, &img);
	if (rc) {
		log_err("building catalog: %s", strerror(-rc));
		goto out;
	}
	rc = repo_put_catalog(s->r, &img, &st->catalog, &st->bytes_uploaded);
	if (rc)
		goto out;
	memset(&rec, 0, sizeof(rec));
	snprintf(rec.key, sizeof(rec.key), "%s", s->o->key);
	rec.catalog = st->catalog;
	rec.time_ns = now_ns();
	rec.files = st->files;
	rec.bytes = st->bytes;
	if (s->o->sources) {
		rec.has_sources = 1;
		rec.sources = *s->o->sources;
	}
	rc = keys_publish(s->r, &rec);
out:
	buf_free(&img);
	return rc;
}

static int saver_init(struct saver *s, struct repo *r, const struct save_opts *o,
		      struct snap_tree *t, struct snap_stats *st)
{
	memset(s, 0, sizeof(*s));
	memset(st, 0, sizeof(*st));
	s->r = r;
	s->o = o;
	s->t = t;
	s->st = st;
	s->rootfd = -1;
	pthread_mutex_init(&s->lock, NULL);
	pthread_mutex_init(&s->pack_lock, NULL);
	s->map = idmap_new();
	s->packmap = idmap_new();
	return s->map && s->packmap ? 0 : -ENOMEM;
}

static void saver_release(struct saver *s)
{
	uint64_t k;

	if (s->pw)
		pack_writer_abort(s->pw);
	if (s->rootfd >= 0 && s->rootfd != AT_FDCWD)
		close(s->rootfd);
	for (k = 0; s->refs && k < s->t->n; k++)
		free(s->refs[k].v);
	free(s->refs);
	free(s->files);
	free(s->lnks);
	free(s->ci);
	free(s->packs);
	free(s->read_ci);
	idmap_free(s->map);
	idmap_free(s->packmap);
	pthread_mutex_destroy(&s->lock);
	pthread_mutex_destroy(&s->pack_lock);
}

int snapshot_save(struct repo *r, const struct save_opts *o, struct snap_stats *st)
{
	struct snap_tree t;
	struct saver s;
	int rc;

	memset(&t, 0, sizeof(t));
	rc = saver_init(&s, r, o, &t, st);
	if (rc)
		goto out;
	s.rootfd = open(o->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (s.rootfd < 0) {
		rc = -errno;
		log_err("save: cannot open directory '%s': %s", qpath(o->dir), strerror(errno));
		goto out;
	}
	rc = walk(&s);
	if (!rc)
		rc = link_groups(&s);
	if (!rc)
		rc = save_xattrs(&s);
	if (!rc)
		rc = publish(&s, NULL);
out:
	saver_release(&s);
	snap_tree_release(&t);
	return rc;
}

int snapshot_publish(struct repo *r, struct snap_tree *t, const struct catalog *base,
		     const uint32_t *reads, uint64_t n_reads, const struct save_opts *o,
		     struct snap_stats *st)
{
	struct saver s;
	int rc;

	rc = saver_init(&s, r, o, t, st);
	if (!rc) {
		s.rootfd = AT_FDCWD;
		s.reads = reads;
		s.n_reads = n_reads;
		rc = publish(&s, base);
	}
	saver_release(&s);
	return rc;
}
