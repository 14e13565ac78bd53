/*
 * stashfs commit: the mounted view (catalog + writable layer) becomes a
 * new snapshot.  Runs beside the daemon, reading the state database and
 * data files; unchanged files reuse the base catalog's chunks without
 * being read, changed ones are read from their data files.
 */
#define _GNU_SOURCE
#include "mount.h"
#include "overlay.h"
#include "../store/idmap.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

struct walker {
	struct ov *ov;
	struct snap_tree *t;
	struct idmap *links; /* inode -> first entry index */
	uint32_t *members; /* per entry: hard-link group size (leaders) */
	uint64_t xattrs_dropped; /* names a snapshot does not keep */
	const struct catalog *cat; /* the snapshot mounted */
	const uint64_t *used; /* --prune-unread: the catalog entries the job used */
	uint64_t n_used; /* bits in used */
	uint64_t pruned, pruned_bytes; /* files left out as unused */
};

/* The xattrs of inode ino for entry idx of the tree. */
static int add_xattrs(struct walker *w, uint64_t ino, uint32_t idx)
{
	char names[65536], *nm;
	char *val = NULL;
	ssize_t n = ov_listxattr(w->ov, ino, names, sizeof(names));
	int rc = 0;

	if (n <= 0)
		return n < 0 ? (int)n : 0;
	val = malloc(CATALOG_MAX_XATTR_VALUE);
	if (!val)
		return -ENOMEM;
	for (nm = names; nm < names + n && !rc; nm += strlen(nm) + 1) {
		ssize_t vl;

		if (!snap_xattr_kept(nm) || strlen(nm) > CATALOG_MAX_XATTR_NAME) {
			w->xattrs_dropped++;
			continue;
		}
		vl = ov_getxattr(w->ov, ino, nm, val, CATALOG_MAX_XATTR_VALUE);
		if (vl == -ERANGE) {
			w->xattrs_dropped++;
			continue;
		}
		if (vl < 0)
			rc = (int)vl;
		else
			rc = snap_tree_add_xattr(w->t, idx, nm, val, (size_t)vl);
	}
	free(val);
	return rc;
}

static void ino_key(uint64_t ino, struct cas_id *k)
{
	memset(k, 0, sizeof(*k));
	memcpy(k->b, &ino, sizeof(ino));
}

/* Count the regular files below snapshot directory dir as left out (the
 * catalog's depth is capped at validation, so recursion is bounded). */
static void subtree_out(struct walker *w, uint32_t dir)
{
	const struct cat_entry *d = catalog_entry(w->cat, dir);
	uint64_t i;

	for (i = d->first; i < d->first + d->count; i++) {
		const struct cat_entry *e = catalog_entry(w->cat, (uint32_t)i);

		if (S_ISDIR(e->mode)) {
			subtree_out(w, (uint32_t)i);
		} else if (S_ISREG(e->mode)) {
			w->pruned++;
			w->pruned_bytes += e->size;
		}
	}
}

static int add_child(struct walker *w, uint32_t parent, const struct ov_dirent *d, uint32_t *idx)
{
	struct ov_attr a;
	struct stat st;
	struct cas_id k;
	uint32_t leader;
	int rc;

	rc = ov_getattr(w->ov, d->ino, &a);
	if (rc)
		return rc;
	/*
	 * --prune-unread: a snapshot entry the job never looked up stays out;
	 * a directory with all below it (nothing below it can have been used
	 * or written: a path is looked up a component at a time)
	 */
	if (w->used && !a.upper && a.cat_idx != OV_NONE &&
	    (a.cat_idx >= w->n_used || !((w->used[a.cat_idx / 64] >> (a.cat_idx % 64)) & 1))) {
		if (S_ISDIR(a.mode)) {
			subtree_out(w, a.cat_idx);
		} else if (S_ISREG(a.mode)) {
			w->pruned++;
			w->pruned_bytes += a.size;
		}
		return 1;
	}
	ov_attr_stat(&a, &st);
	rc = snap_tree_add(w->t, parent, d->name, d->len, &st, NULL, idx);
	if (rc)
		return rc;
	if (S_ISLNK(a.mode)) { /* every name of a symlink carries its target */
		char target[CATALOG_MAX_TARGET + 1];
		ssize_t n = ov_readlink(w->ov, a.ino, target, sizeof(target));

		if (n < 0)
			return (int)n;
		rc = snap_tree_set_target(w->t, *idx, target, (size_t)n);
		if (rc)
			return rc;
	}
	if (!S_ISDIR(a.mode)) {
		ino_key(a.ino, &k);
		if (idmap_get(w->links, &k, &leader) == 0) {
			w->t->e[*idx].ino = leader;
			return 0;
		}
		rc = idmap_put(w->links, &k, *idx);
		if (rc)
			return rc;
	}
	if (S_ISREG(a.mode)) {
		if (a.upper) {
			char path[PATH_MAX];

			ov_data_path(w->ov, a.ino, path);
			w->t->paths[*idx] = strdup(path);
			if (!w->t->paths[*idx])
				return -ENOMEM;
		} else {
			w->t->base[*idx] = a.cat_idx;
		}
	}
	return add_xattrs(w, a.ino, *idx);
}

/*
 * The view's root lost everything its snapshot had and holds one new
 * directory: that is what `rm -rf DIR; mv NEW DIR` does to a mount point
 * (BuildKit's cache rotation): the rm cannot remove DIR, the mv nests NEW
 * inside it.  The commit goes on; the user hears about it.
 */
static void warn_rotation(const struct catalog *cat, const struct snap_tree *t, const char *real)
{
	const struct cat_entry *root = catalog_entry(cat, 0), *e;
	const char *name;
	uint32_t idx;

	if (!root->count || t->n < 2 || t->e[0].count != 1)
		return;
	e = &t->e[t->e[0].first];
	name = (const char *)t->strings.p + e->name_off;
	if (!S_ISDIR(e->mode) || catalog_lookup(cat, 0, name, e->name_len, &idx) == 0)
		return;
	log_warn("commit: '%s' lost everything its snapshot had and now holds one new directory, "
		 "'%.*s': a rotation onto the mount point (rm -rf DIR; mv NEW DIR) puts NEW "
		 "inside DIR; mount the parent and rotate inside it (docs/recipes.md, BuildKit)",
		 qpath(real), (int)e->name_len, name);
}

/* Lay the view out like save does: each directory's children a block. */
static int walk_view(struct walker *w)
{
	struct ov_attr root;
	struct stat st;
	uint32_t *stack = NULL, idx;
	uint64_t sp = 0, scap = 0, *inos = NULL;
	int rc;

	rc = ov_getattr(w->ov, 1, &root);
	if (rc)
		return rc;
	ov_attr_stat(&root, &st);
	rc = snap_tree_add(w->t, 0, "", 0, &st, NULL, &idx);
	if (!rc)
		rc = add_xattrs(w, 1, idx);
	if (rc)
		return rc;
	/* stack of (entry index, inode) of directories to list */
	scap = 64;
	stack = malloc(scap * sizeof(*stack));
	inos = malloc(scap * sizeof(*inos));
	if (!stack || !inos) {
		rc = -ENOMEM;
		goto out;
	}
	stack[sp] = 0;
	inos[sp] = 1;
	sp++;
	while (sp > 0 && !rc) {
		struct ov_dirent *v = NULL;
		size_t n = 0, i;
		uint32_t dir;
		uint64_t dino, first, subdirs = 0;

		sp--;
		dir = stack[sp];
		dino = inos[sp];
		rc = ov_list(w->ov, dino, &v, &n);
		if (rc)
			break;
		first = w->t->n;
		{
			size_t k = 0; /* the children kept, in v's first k */

			for (i = 0; i < n && !rc; i++) {
				rc = add_child(w, dir, &v[i], &idx);
				if (rc == 1) {
					rc = 0;
					free(v[i].name);
					continue;
				}
				v[k++] = v[i];
			}
			for (; i < n; i++)
				v[k++] = v[i];
			n = k;
		}
		if (!rc) {
			w->t->e[dir].first = first;
			w->t->e[dir].count = (uint32_t)n;
		}
		for (i = n; !rc && i-- > 0;) {
			if (!S_ISDIR(w->t->e[first + i].mode))
				continue;
			subdirs++;
			if (sp == scap) {
				uint32_t *ns;
				uint64_t *ni;

				scap *= 2;
				ns = realloc(stack, scap * sizeof(*ns));
				ni = ns ? realloc(inos, scap * sizeof(*ni)) : NULL;
				if (ns)
					stack = ns;
				if (ni)
					inos = ni;
				if (!ns || !ni) {
					rc = -ENOMEM;
					break;
				}
			}
			stack[sp] = (uint32_t)(first + i);
			inos[sp] = v[i].ino;
			sp++;
		}
		w->t->e[dir].nlink = (uint32_t)(2 + subdirs);
		ov_dirents_free(v, n);
	}
out:
	free(stack);
	free(inos);
	return rc;
}

/*
 * Did the job read just what cat's read record says (the same chunks, in
 * any order)?  Then the record the commit would write tells nothing new.
 */
static int reads_same(const struct catalog *cat, const struct buf *reads)
{
	uint64_t n, i, nchunks = catalog_header(cat)->n_chunks, hits = 0;
	const uint32_t *rec = catalog_reads(cat, &n);
	uint8_t *in = calloc(nchunks / 8 + 1, 1);
	int same = reads->len / 4 == n; /* both hold each chunk once */

	if (!in)
		return 0;
	for (i = 0; i < n; i++)
		in[rec[i] / 8] |= (uint8_t)(1 << (rec[i] % 8));
	for (i = 0; same && i < reads->len / 4; i++) {
		uint32_t c;

		memcpy(&c, reads->p + i * 4, 4);
		same = c < nchunks && (in[c / 8] & (1 << (c % 8)));
		hits++;
	}
	free(in);
	return same && hits == n;
}

/*
 * Nothing changed in a mount of a snapshot: that snapshot is the commit.
 * Its own key is left alone; another key gets a record naming it.  No
 * catalog and no pack is uploaded.
 */
static int commit_unchanged(struct repo *r, const char *statedir, struct catalog *cat,
			    const struct cas_id *base, const char *key, const struct commit_opts *o,
			    struct snap_stats *st)
{
	char matched[KEY_MAX + 1] = "";
	struct key_rec rec;
	uint32_t i, n = catalog_count(cat);

	memset(st, 0, sizeof(*st));
	st->unchanged = 1;
	st->catalog = *base;
	st->files = catalog_header(cat)->n_files;
	st->bytes = catalog_header(cat)->total_bytes;
	for (i = 0; i < n; i++)
		st->dirs += S_ISDIR(catalog_entry(cat, i)->mode) ? 1 : 0;
	ov_peek_meta(statedir, "matched_key", matched, sizeof(matched));
	if (!strcmp(matched, key) && !o->sources)
		return 0;
	memset(&rec, 0, sizeof(rec));
	snprintf(rec.key, sizeof(rec.key), "%s", key);
	rec.catalog = *base;
	rec.time_ns = now_ns();
	rec.files = st->files;
	rec.bytes = st->bytes;
	if (o->sources) {
		rec.has_sources = 1;
		rec.sources = *o->sources;
	}
	return keys_publish(r, &rec);
}

/*
 * The read record the snapshot gets: reads.log, then what was pushed into
 * the kernel unasked (fs/fetch.h), valid chunk numbers only, each at its
 * first place.  0 or -ENOMEM.
 */
static int read_record(const char *statedir, const struct catalog *cat, struct buf *reads)
{
	char path[PATH_MAX];
	struct buf pushed = BUF_INIT;
	uint64_t nchunks = catalog_header(cat)->n_chunks, i, k = 0;
	uint8_t *seen;
	int rc = 0;

	snprintf(path, sizeof(path), "%s/reads.log", statedir);
	if (read_file(path, reads, 1u << 30) != 0)
		buf_reset(reads);
	reads->len &= ~(size_t)3; /* a torn last entry */
	snprintf(path, sizeof(path), "%s/pushed.log", statedir);
	if (read_file(path, &pushed, 1u << 30) == 0 && buf_append(reads, pushed.p, pushed.len))
		rc = -ENOMEM;
	buf_free(&pushed);
	if (rc)
		return rc;
	seen = calloc(nchunks / 8 + 1, 1);
	if (!seen)
		return -ENOMEM;
	for (i = 0; i < reads->len / 4; i++) {
		uint32_t c;

		memcpy(&c, reads->p + i * 4, 4);
		if (c >= nchunks || (seen[c / 8] & (1 << (c % 8))))
			continue;
		seen[c / 8] |= (uint8_t)(1 << (c % 8));
		memcpy(reads->p + k * 4, &c, 4);
		k++;
	}
	free(seen);
	reads->len = k * 4;
	return 0;
}

/* --prune-unread: the bits the mount's --track-use kept, for the walker. */
static int read_used(const char *statedir, const char *real, struct buf *used, struct walker *w)
{
	char path[PATH_MAX];

	snprintf(path, sizeof(path), "%s/used.bits", statedir);
	if (read_file(path, used, 1u << 30)) {
		log_err("commit: --prune-unread needs a mount made with --track-use; '%s' was not "
			"(or was mounted again without it since)",
			qpath(real));
		return -EINVAL;
	}
	w->used = (const uint64_t *)used->p;
	w->n_used = (uint64_t)(used->len / 8) * 64;
	return 0;
}

/* What the commit made, in the state and its counters. */
static void note_committed(struct ov *ov, const char *statedir, const char *key,
			   const struct snap_stats *st)
{
	char hex[CAS_HEX_LEN + 1];
	struct mount_stats *stats = NULL;

	cas_id_hex(&st->catalog, hex);
	ov_meta_set(ov, "committed_key", key);
	ov_meta_set(ov, "committed_catalog", hex);
	if (fs_stats_map(statedir, 0, &stats) == 0) {
		__atomic_add_fetch(&stats->bytes_uploaded, st->bytes_uploaded, __ATOMIC_RELAXED);
		__atomic_add_fetch(&stats->commits, 1, __ATOMIC_RELAXED);
		munmap(stats, sizeof(*stats));
	}
}

int fs_commit(struct repo *r, const struct commit_opts *o, struct snap_stats *st, char *key_out,
	      size_t key_len)
{
	char statedir[PATH_MAX], real[PATH_MAX], dbpath[PATH_MAX + 16], v[KEY_MAX + 1];
	struct catalog *cat = NULL;
	struct ov *ov = NULL;
	struct ov_opts oo;
	struct snap_tree t;
	struct walker w;
	struct save_opts so;
	struct cas_id base;
	struct buf reads = BUF_INIT, used = BUF_INIT;
	int rc, fd;

	memset(&t, 0, sizeof(t));
	memset(&w, 0, sizeof(w));
	rc = fs_state_dir(r, o->dir, statedir, sizeof(statedir), real, sizeof(real));
	if (rc) {
		log_err("commit: '%s': %s", qpath(o->dir), strerror(-rc));
		return rc;
	}
	snprintf(dbpath, sizeof(dbpath), "%s/state.db", statedir);
	if (access(dbpath, F_OK) != 0) {
		log_err("commit: '%s' is not a stashfs mount of store %s", qpath(real),
			store_path(r->store));
		return -ENOENT;
	}
	/* dirty pages of mmap writers reach the daemon before we read */
	fd = open(real, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0) {
		syncfs(fd);
		close(fd);
	}
	if (ov_peek_meta(statedir, "catalog", v, sizeof(v)) != 0 || cas_id_parse(&base, v) != 0) {
		log_err("commit: mount state %s is unreadable", statedir);
		return -EBADMSG;
	}
	if (ov_peek_meta(statedir, "key", v, sizeof(v)) != 0)
		v[0] = '\0';
	snprintf(key_out, key_len, "%s", o->key ? o->key : v);
	rc = repo_catalog(r, &base, &cat);
	if (rc)
		goto out;
	memset(&oo, 0, sizeof(oo));
	oo.readonly = 1;
	oo.preserve_owner = 1; /* the snapshot keeps recorded owners */
	rc = ov_open(statedir, cat, &oo, &ov);
	if (rc)
		goto out;
	w.ov = ov;
	w.cat = cat;
	w.t = &t;
	if (o->prune_unread && (rc = read_used(statedir, real, &used, &w)) != 0)
		goto out;
	w.links = idmap_new();
	if (!w.links) {
		rc = -ENOMEM;
		goto out;
	}
	rc = walk_view(&w);
	if (rc) {
		log_err("commit: reading the view of '%s': %s", qpath(real), strerror(-rc));
		goto out;
	}
	warn_rotation(cat, &t, real);
	rc = read_record(statedir, cat, &reads);
	if (rc)
		goto out;
	/* nothing written, and read what the snapshot's record says */
	if (ov_changes(ov) == 0 && !w.pruned && ov_peek_meta(statedir, "hit", v, sizeof(v)) == 0 &&
	    strcmp(v, "miss") && reads_same(cat, &reads)) {
		rc = commit_unchanged(r, statedir, cat, &base, key_out, o, st);
		goto out;
	}
	memset(&so, 0, sizeof(so));
	so.dir = real;
	so.key = key_out;
	so.level = 1;
	so.sources = o->sources;
	so.progress = o->progress;
	rc = snapshot_publish(r, &t, cat, (const uint32_t *)reads.p, reads.len / 4, &so, st);
	if (rc)
		goto out;
	st->xattrs_dropped = w.xattrs_dropped;
	st->pruned = w.pruned;
	st->pruned_bytes = w.pruned_bytes;
	note_committed(ov, statedir, key_out, st);
out:
	buf_free(&reads);
	buf_free(&used);
	idmap_free(w.links);
	snap_tree_release(&t);
	ov_close(ov);
	catalog_close(cat);
	return rc;
}
