/* Retention on the remote and the publish guard; see prune.h. */
#define _GNU_SOURCE
#include "prune.h"
#include "tuning.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PRUNE_MAGIC "stashfs-condemned 1\n"
#define PRUNE_LIST_CAP (64u << 20)

enum okind { K_PACK, K_CATALOG, K_SOURCES, K_N };
static const char *const kdir[K_N] = { "packs", "catalogs", "sources" };

/* One content object of the remote: packs/HEX, catalogs/HEX, sources/HEX. */
struct oname {
	struct cas_id id;
	uint8_t kind;
};

struct obj {
	struct oname n;
	uint64_t size;
	int64_t mtime;
};

struct cond {
	struct oname n;
	char state; /* 'c' condemned, 'd' being deleted */
	int64_t at;
};

static int oname_cmp(const void *a, const void *b)
{
	const struct oname *x = a, *y = b;

	if (x->kind != y->kind)
		return x->kind < y->kind ? -1 : 1;
	return cas_id_cmp(&x->id, &y->id);
}

static int grow(void **v, size_t *cap, size_t n, size_t size)
{
	void *nv;
	size_t nc;

	if (n < *cap)
		return 0;
	nc = *cap ? *cap * 2 : 256;
	nv = realloc(*v, nc * size);
	if (!nv)
		return -ENOMEM;
	*v = nv;
	*cap = nc;
	return 0;
}

/* "packs/HEX" and the like.  0 or -EINVAL. */
static int parse_oname(const char *s, size_t len, struct oname *out)
{
	char hex[CAS_HEX_LEN + 1];
	int k;

	for (k = 0; k < K_N; k++) {
		size_t dl = strlen(kdir[k]);

		if (len == dl + 1 + CAS_HEX_LEN && !memcmp(s, kdir[k], dl) && s[dl] == '/') {
			memcpy(hex, s + dl + 1, CAS_HEX_LEN);
			hex[CAS_HEX_LEN] = '\0';
			out->kind = (uint8_t)k;
			return cas_id_parse(&out->id, hex);
		}
	}
	return -EINVAL;
}

static void format_oname(const struct oname *n, char *out, size_t len)
{
	char hex[CAS_HEX_LEN + 1];

	cas_id_hex(&n->id, hex);
	snprintf(out, len, "%s/%s", kdir[n->kind], hex);
}

struct condvec {
	struct cond *v;
	size_t n, cap;
};

/*
 * The list's lines "c|d TIME NAME".  A line that is not one is left out
 * (it names nothing this code would delete); 0 or -ENOMEM.
 */
static int parse_list(const struct buf *b, struct condvec *cv)
{
	size_t ml = strlen(PRUNE_MAGIC), pos;

	cv->n = 0;
	if (b->len < ml || memcmp(b->p, PRUNE_MAGIC, ml)) {
		if (b->len)
			log_warn("%s: not a list of condemned objects; read as empty", PRUNE_LIST);
		return 0;
	}
	for (pos = ml; pos < b->len;) {
		const char *line = (const char *)b->p + pos;
		const char *nl = memchr(line, '\n', b->len - pos);
		size_t len = nl ? (size_t)(nl - line) : b->len - pos;
		struct cond c;
		const char *end = line + 2;
		int64_t at = 0;

		pos += len + 1;
		if (len < 4 || (line[0] != 'c' && line[0] != 'd') || line[1] != ' ')
			continue;
		/* the time: up to 18 digits (the line is not NUL-terminated) */
		while (end < line + len && *end >= '0' && *end <= '9' && end - line < 20)
			at = at * 10 + (*end++ - '0');
		if (end == line + 2 || end >= line + len || *end != ' ')
			continue;
		if (parse_oname(end + 1, (size_t)(line + len - end - 1), &c.n))
			continue;
		c.state = line[0];
		c.at = at;
		if (grow((void **)&cv->v, &cv->cap, cv->n, sizeof(*cv->v)))
			return -ENOMEM;
		cv->v[cv->n++] = c;
	}
	return 0;
}

static void format_list(struct buf *out, const struct cond *v, size_t n)
{
	size_t i;

	buf_append(out, PRUNE_MAGIC, strlen(PRUNE_MAGIC));
	for (i = 0; i < n; i++) {
		char name[128];

		format_oname(&v[i].n, name, sizeof(name));
		buf_printf(out, "%c %" PRId64 " %s\n", v[i].state, v[i].at, name);
	}
}

struct onamevec {
	struct oname *v;
	size_t n, cap;
};

static int onv_add(struct onamevec *ov, uint8_t kind, const struct cas_id *id)
{
	if (grow((void **)&ov->v, &ov->cap, ov->n, sizeof(*ov->v)))
		return -ENOMEM;
	ov->v[ov->n].kind = kind;
	ov->v[ov->n].id = *id;
	ov->n++;
	return 0;
}

static void onv_sort(struct onamevec *ov)
{
	size_t i, k = 0;

	if (!ov->n)
		return;
	qsort(ov->v, ov->n, sizeof(*ov->v), oname_cmp);
	for (i = 0; i < ov->n; i++)
		if (!k || oname_cmp(&ov->v[k - 1], &ov->v[i]))
			ov->v[k++] = ov->v[i];
	ov->n = k;
}

static int onv_has(const struct onamevec *ov, const struct oname *n)
{
	return ov->n && bsearch(n, ov->v, ov->n, sizeof(*ov->v), oname_cmp);
}

/* What a key's snapshot uses: its catalog, its sources, the catalog's packs. */
static int key_refs(struct repo *r, const struct key_rec *rec, struct onamevec *out)
{
	struct catalog *cat = NULL;
	uint64_t i, np;
	int rc;

	rc = onv_add(out, K_CATALOG, &rec->catalog);
	if (!rc && rec->has_sources)
		rc = onv_add(out, K_SOURCES, &rec->sources);
	if (!rc)
		rc = repo_catalog(r, &rec->catalog, &cat);
	if (rc)
		return rc;
	np = catalog_header(cat)->n_packs;
	for (i = 0; i < np && !rc; i++)
		rc = onv_add(out, K_PACK, catalog_pack(cat, (uint32_t)i));
	catalog_close(cat);
	return rc;
}

int prune_list_normalize(const struct buf *in, struct buf *out, size_t *n)
{
	struct condvec cv = { NULL, 0, 0 };
	int rc = parse_list(in, &cv);

	if (!rc)
		format_list(out, cv.v, cv.n);
	*n = cv.n;
	free(cv.v);
	return rc;
}

/* ---- the guard ---- */

struct rescue {
	const struct onamevec *mine;
	struct oname stale; /* set with -ESTALE */
};

/* The list without mine's condemned entries; -ESTALE if one is being deleted. */
static int rescue_fn(const struct buf *cur, int exists, struct buf *out, void *arg)
{
	struct rescue *rs = arg;
	struct condvec cv = { NULL, 0, 0 };
	size_t i, k = 0;
	int rc = exists ? parse_list(cur, &cv) : 0;

	for (i = 0; !rc && i < cv.n; i++) {
		if (!onv_has(rs->mine, &cv.v[i].n)) {
			cv.v[k++] = cv.v[i];
		} else if (cv.v[i].state == 'd') {
			rs->stale = cv.v[i].n;
			rc = -ESTALE;
		}
	}
	if (!rc) {
		if (k == cv.n)
			rc = -ECANCELED; /* nothing of ours there (any more) */
		else
			format_list(out, cv.v, k);
	}
	free(cv.v);
	return rc;
}

int prune_guard(struct repo *r, const struct key_rec *rec)
{
	struct buf b = BUF_INIT;
	struct condvec cv = { NULL, 0, 0 };
	struct onamevec mine = { NULL, 0, 0 };
	struct rescue rs;
	size_t i;
	int rc, hit = 0;

	rc = remote_get(r->primary, PRUNE_LIST, 0, REMOTE_WHOLE, &b, PRUNE_LIST_CAP);
	if (rc == -ENOENT) {
		rc = 0; /* never pruned */
		goto out;
	}
	if (rc) {
		log_err("%s on %s: cannot read it before publishing '%s': %s", PRUNE_LIST,
			r->primary->url, rec->key, strerror(-rc));
		goto out;
	}
	rc = parse_list(&b, &cv);
	if (rc || !cv.n)
		goto out;
	rc = key_refs(r, rec, &mine);
	if (rc) {
		log_err("publishing '%s': cannot read its own catalog: %s", rec->key,
			strerror(-rc));
		goto out;
	}
	onv_sort(&mine);
	for (i = 0; i < cv.n && !hit; i++)
		hit = onv_has(&mine, &cv.v[i].n);
	if (!hit)
		goto out;
	/* take ours off the list, atomically against a prune marking them */
	memset(&rs, 0, sizeof(rs));
	rs.mine = &mine;
	rc = remote_update(r->primary, PRUNE_LIST, PRUNE_LIST_CAP, rescue_fn, &rs);
	if (rc == -ECANCELED)
		rc = 0;
	if (rc == -ESTALE) {
		char name[128];

		format_oname(&rs.stale, name, sizeof(name));
		log_err("publishing '%s': a prune on %s is deleting %s, which this snapshot "
			"uses; nothing was published",
			rec->key, r->primary->url, name);
	} else if (rc) {
		log_err("%s on %s: cannot take back what '%s' uses: %s", PRUNE_LIST,
			r->primary->url, rec->key, strerror(-rc));
	}
out:
	buf_free(&b);
	free(cv.v);
	free(mine.v);
	return rc;
}

/* ---- prune ---- */

struct pkey {
	struct key_rec rec;
	int64_t used; /* last use: publish or mark, seconds */
	size_t first, n; /* its references in refs */
	const char *why; /* dropped: the reason */
};

struct objvec {
	struct obj *v;
	size_t n, cap;
	uint8_t kind; /* while listing */
};

static int obj_add(const char *name, uint64_t size, int64_t mtime, void *arg)
{
	struct objvec *ov = arg;
	struct obj o;

	if (cas_id_parse(&o.n.id, name))
		return 0; /* not ours */
	o.n.kind = ov->kind;
	o.size = size;
	o.mtime = mtime;
	if (grow((void **)&ov->v, &ov->cap, ov->n, sizeof(*ov->v)))
		return -ENOMEM;
	ov->v[ov->n++] = o;
	return 0;
}

static struct obj *obj_find(const struct objvec *ov, const struct oname *n)
{
	return ov->n ? bsearch(n, ov->v, ov->n, sizeof(*ov->v), oname_cmp) : NULL;
}

struct namevec {
	char (*v)[CAS_HEX_LEN + 1];
	size_t n, cap;
};

static int name_add(const char *name, uint64_t size, int64_t mtime, void *arg)
{
	struct namevec *nv = arg;
	struct cas_id id;

	(void)size;
	(void)mtime;
	if (cas_id_parse(&id, name))
		return 0;
	if (grow((void **)&nv->v, &nv->cap, nv->n, sizeof(*nv->v)))
		return -ENOMEM;
	snprintf(nv->v[nv->n++], CAS_HEX_LEN + 1, "%s", name);
	return 0;
}

struct reader {
	struct remote *rem;
	const struct namevec *names;
	struct key_rec *recs;
	int *rcs;
	size_t next; /* atomic: the next name to read */
};

static void *read_some(void *arg)
{
	struct reader *rd = arg;
	size_t i;

	while ((i = __atomic_fetch_add(&rd->next, 1, __ATOMIC_RELAXED)) < rd->names->n)
		rd->rcs[i] = keys_get_named(rd->rem, rd->names->v[i], &rd->recs[i]);
	return NULL;
}

/* Every record of names: (*recs)[i] and (*rcs)[i] its 0 or -errno. */
static int read_records(struct remote *rem, const struct namevec *names, struct key_rec **recs,
			int **rcs)
{
	struct reader rd = { rem, names, NULL, NULL, 0 };
	pthread_t t[PRUNE_READERS];
	int n = 0;

	rd.recs = calloc(names->n ? names->n : 1, sizeof(*rd.recs));
	rd.rcs = calloc(names->n ? names->n : 1, sizeof(*rd.rcs));
	*recs = rd.recs;
	*rcs = rd.rcs;
	if (!rd.recs || !rd.rcs)
		return -ENOMEM;
	while (n < PRUNE_READERS && (size_t)n < names->n &&
	       pthread_create(&t[n], NULL, read_some, &rd) == 0)
		n++;
	read_some(&rd); /* and this thread, which also covers a failed create */
	while (n > 0)
		pthread_join(t[--n], NULL);
	return 0;
}

static int64_t key_used(const struct pkey *k)
{
	int64_t pub = k->rec.time_ns / 1000000000LL;

	return k->used > pub ? k->used : pub;
}

/* newest published first within a group */
static int by_group(const void *a, const void *b)
{
	const struct pkey *x = *(struct pkey *const *)a, *y = *(struct pkey *const *)b;
	size_t gx = key_indexed_len(x->rec.key), gy = key_indexed_len(y->rec.key);
	int c = gx != gy ? (gx < gy ? -1 : 1) : memcmp(x->rec.key, y->rec.key, gx);

	if (c)
		return c;
	if (x->rec.time_ns != y->rec.time_ns)
		return x->rec.time_ns > y->rec.time_ns ? -1 : 1;
	return strcmp(x->rec.key, y->rec.key);
}

/* most recently used first */
static int by_use(const void *a, const void *b)
{
	const struct pkey *x = *(struct pkey *const *)a, *y = *(struct pkey *const *)b;
	int64_t ux = key_used(x), uy = key_used(y);

	if (ux != uy)
		return ux > uy ? -1 : 1;
	if (x->rec.time_ns != y->rec.time_ns)
		return x->rec.time_ns > y->rec.time_ns ? -1 : 1;
	return strcmp(x->rec.key, y->rec.key);
}

/* What the list becomes (remote_update's fn), and what to delete. */
struct sweep {
	const struct objvec *objs;
	const struct onamevec *kept;
	int64_t now, grace;
	/* out, made again by every call */
	uint8_t *listed; /* objs[i] is on the list */
	struct onamevec del;
	struct prune_stats st;
};

static int sweep_fn(const struct buf *cur, int exists, struct buf *out, void *arg)
{
	struct sweep *sw = arg;
	struct condvec cv = { NULL, 0, 0 };
	size_t i, k = 0;
	int rc = exists ? parse_list(cur, &cv) : 0;

	sw->del.n = 0;
	sw->st.condemned = sw->st.condemned_bytes = sw->st.rescued = sw->st.young_objects = 0;
	memset(sw->listed, 0, sw->objs->n);
	for (i = 0; !rc && i < cv.n; i++) {
		struct cond c = cv.v[i];
		struct obj *o = obj_find(sw->objs, &c.n);

		if (onv_has(sw->kept, &c.n)) {
			sw->st.rescued++; /* used again */
			continue;
		}
		if (!o) {
			/* gone: a deleting mark stays for grace, for a publish that
			 * saw the object a moment before it went */
			if (c.state == 'd' && sw->now - c.at < sw->grace)
				cv.v[k++] = c;
			continue;
		}
		sw->listed[o - sw->objs->v] = 1;
		if (c.state == 'c' && sw->now - c.at >= sw->grace) {
			c.state = 'd';
			c.at = sw->now;
		}
		if (c.state == 'd')
			rc = onv_add(&sw->del, c.n.kind, &c.n.id);
		cv.v[k++] = c;
	}
	cv.n = k;
	for (i = 0; !rc && i < sw->objs->n; i++) {
		const struct obj *o = &sw->objs->v[i];

		if (sw->listed[i] || onv_has(sw->kept, &o->n))
			continue;
		if (sw->now - o->mtime < sw->grace) {
			sw->st.young_objects++; /* a commit's, on its way */
			continue;
		}
		if (grow((void **)&cv.v, &cv.cap, cv.n, sizeof(*cv.v))) {
			rc = -ENOMEM;
			break;
		}
		cv.v[cv.n++] = (struct cond){ o->n, 'c', sw->now };
		sw->st.condemned++;
		sw->st.condemned_bytes += o->size;
	}
	if (!rc)
		format_list(out, cv.v, cv.n);
	free(cv.v);
	return rc;
}

static void json_key_why(FILE *f, const struct pkey *k, int first)
{
	fprintf(f, "%s{\"key\":", first ? "" : ",");
	json_str(f, k->rec.key);
	fprintf(f, ",\"why\":");
	json_str(f, k->why);
	fprintf(f, ",\"last_used\":%" PRId64 "}", key_used(k));
}

/* One prune's state, through its steps. */
struct pruning {
	struct repo *r;
	struct remote *rem;
	const struct prune_opts *o;
	struct prune_stats *st;
	int64_t now;
	struct namevec names; /* keys/ */
	struct key_used *used; /* used/ */
	size_t nused;
	struct key_rec *recs;
	int *rcs;
	struct pkey *keys, **order;
	size_t nk;
	struct onamevec refs, kept;
	struct objvec objs;
	struct sweep sw;
	uint8_t *counted;
	char why_within[96], why_last[96], why_size[96];
};

/* Every key, when it was last used, and what its snapshot references. */
static int gather_keys(struct pruning *p)
{
	size_t i;
	int rc;

	rc = remote_list(p->rem, "keys", name_add, &p->names);
	if (!rc)
		rc = keys_used_list(p->rem, &p->used, &p->nused);
	if (rc)
		return rc;
	p->keys = calloc(p->names.n ? p->names.n : 1, sizeof(*p->keys));
	p->order = calloc(p->names.n ? p->names.n : 1, sizeof(*p->order));
	if (!p->keys || !p->order)
		return -ENOMEM;
	rc = read_records(p->rem, &p->names, &p->recs, &p->rcs);
	if (rc)
		return rc;
	for (i = 0; i < p->names.n; i++) {
		struct pkey *pk = &p->keys[p->nk];

		rc = p->rcs[i];
		pk->rec = p->recs[i];
		if (rc == -ENOENT)
			continue; /* gone meanwhile */
		if (rc) {
			/* what a record this code cannot read uses is unknown: a
			 * newer version's, or damage; nothing may be deleted */
			log_err("prune: keys/%s on %s: %s; nothing was pruned (remove it, or prune "
				"with the stashfs that wrote it)",
				p->names.v[i], p->rem->url,
				rc == -EBADMSG ? "not a key record this version reads"
					       : strerror(-rc));
			return rc;
		}
		pk->used = keys_used_at(p->used, p->nused, pk->rec.key);
		pk->first = p->refs.n;
		rc = key_refs(p->r, &pk->rec, &p->refs);
		if (rc == -ENOENT) {
			p->refs.n = pk->first;
			pk->why = "its catalog is missing";
			rc = 0;
		}
		if (rc) {
			log_err("prune: reading the snapshot of '%s': %s", pk->rec.key,
				strerror(-rc));
			return rc;
		}
		pk->n = p->refs.n - pk->first;
		p->order[p->nk++] = pk;
	}
	p->st->keys = p->nk;
	return 0;
}

/* Every content object, with its size and age. */
static int gather_objects(struct pruning *p)
{
	size_t i;
	int k, rc = 0;

	for (k = 0; k < K_N && !rc; k++) {
		p->objs.kind = (uint8_t)k;
		rc = remote_list(p->rem, kdir[k], obj_add, &p->objs);
	}
	if (rc)
		return rc;
	if (p->objs.n)
		qsort(p->objs.v, p->objs.n, sizeof(*p->objs.v), oname_cmp);
	p->st->objects = p->objs.n;
	for (i = 0; i < p->objs.n; i++)
		p->st->bytes += p->objs.v[i].size;
	return 0;
}

/* --keep-within and --keep-last: say why each key they drop goes. */
static void keep_within_last(struct pruning *p)
{
	const struct prune_opts *o = p->o;
	size_t i;

	if (o->keep_within >= 0) {
		char d[32];

		fmt_age(d, sizeof(d), (double)o->keep_within);
		snprintf(p->why_within, sizeof(p->why_within), "not used within %s", d);
		for (i = 0; i < p->nk; i++)
			if (!p->keys[i].why && p->now - key_used(&p->keys[i]) > o->keep_within)
				p->keys[i].why = p->why_within;
	}
	if (o->keep_last >= 0 && p->nk) {
		int64_t rank = 0;

		snprintf(p->why_last, sizeof(p->why_last),
			 "not among the newest %" PRId64 " of its prefix", o->keep_last);
		qsort(p->order, p->nk, sizeof(*p->order), by_group);
		for (i = 0; i < p->nk; i++) {
			struct pkey *pk = p->order[i];
			size_t g = key_indexed_len(pk->rec.key);

			if (i && (g != key_indexed_len(p->order[i - 1]->rec.key) ||
				  memcmp(pk->rec.key, p->order[i - 1]->rec.key, g)))
				rank = 0;
			if (pk->why)
				continue;
			if (rank++ >= o->keep_last)
				pk->why = p->why_last;
		}
	}
}

/* --max-size: the most recently used keys are kept while what they
 * reference fits; from the first that does not, the rest go. */
static int keep_max_size(struct pruning *p)
{
	uint64_t total = 0;
	int over = 0;
	size_t i, j;
	char sz[32];

	if (p->o->max_size == UINT64_MAX || !p->nk)
		return 0;
	fmt_size(sz, sizeof(sz), p->o->max_size);
	snprintf(p->why_size, sizeof(p->why_size), "over --max-size %s, least recently used", sz);
	p->counted = calloc(p->objs.n ? p->objs.n : 1, 1);
	if (!p->counted)
		return -ENOMEM;
	qsort(p->order, p->nk, sizeof(*p->order), by_use);
	for (i = 0; i < p->nk; i++) {
		struct pkey *pk = p->order[i];
		uint64_t add = 0;

		if (pk->why)
			continue;
		for (j = 0; !over && j < pk->n; j++) {
			struct obj *ob = obj_find(&p->objs, &p->refs.v[pk->first + j]);

			if (ob && !p->counted[ob - p->objs.v])
				add += ob->size;
		}
		if (over || total + add > p->o->max_size) {
			over = 1;
			pk->why = p->why_size;
			continue;
		}
		for (j = 0; j < pk->n; j++) {
			struct obj *ob = obj_find(&p->objs, &p->refs.v[pk->first + j]);

			if (ob)
				p->counted[ob - p->objs.v] = 1;
		}
		total += add;
	}
	return 0;
}

/* The dropped keys go (a key published again meanwhile is kept). */
static int drop_keys(struct pruning *p)
{
	size_t i;
	int rc;

	for (i = 0; i < p->nk; i++) {
		struct pkey *pk = &p->keys[i];
		char age[32];
		int again = 0;

		if (!pk->why)
			continue;
		fmt_age(age, sizeof(age), (double)(p->now - key_used(pk)));
		log_info("prune: %s '%s' (%s; last used %s ago)",
			 p->o->dry_run ? "would drop" : "dropping", pk->rec.key, pk->why, age);
		p->st->keys_dropped++;
		if (p->o->dry_run)
			continue;
		rc = keys_withdraw(p->r, &pk->rec, &again);
		if (rc)
			return rc;
		if (again) {
			log_info("prune: '%s' was published again meanwhile: kept", pk->rec.key);
			p->st->keys_dropped--;
			p->st->keys_republished++;
			pk->why = NULL; /* its new snapshot went through the guard */
		}
	}
	return 0;
}

/* What the kept keys reference stays. */
static int note_kept(struct pruning *p)
{
	size_t i, j;
	int rc;

	for (i = 0; i < p->nk; i++) {
		if (p->keys[i].why)
			continue;
		for (j = 0; j < p->keys[i].n; j++) {
			const struct oname *ref = &p->refs.v[p->keys[i].first + j];

			rc = onv_add(&p->kept, ref->kind, &ref->id);
			if (rc)
				return rc;
		}
	}
	onv_sort(&p->kept);
	for (i = 0; i < p->objs.n; i++) {
		if (onv_has(&p->kept, &p->objs.v[i].n)) {
			p->st->kept_objects++;
			p->st->kept_bytes += p->objs.v[i].size;
		}
	}
	return 0;
}

/* Condemn, and delete what was condemned a grace ago. */
static int sweep(struct pruning *p)
{
	struct sweep *sw = &p->sw;
	size_t i;
	int rc;

	sw->objs = &p->objs;
	sw->kept = &p->kept;
	sw->now = p->now;
	sw->grace = p->o->grace;
	sw->listed = malloc(p->objs.n ? p->objs.n : 1);
	if (!sw->listed)
		return -ENOMEM;
	if (p->o->dry_run) {
		struct buf cur = BUF_INIT, out = BUF_INIT;

		rc = remote_get(p->rem, PRUNE_LIST, 0, REMOTE_WHOLE, &cur, PRUNE_LIST_CAP);
		if (rc == 0 || rc == -ENOENT)
			rc = sweep_fn(&cur, rc == 0, &out, sw);
		buf_free(&cur);
		buf_free(&out);
	} else {
		rc = remote_update(p->rem, PRUNE_LIST, PRUNE_LIST_CAP, sweep_fn, sw);
	}
	if (rc) {
		log_err("prune: %s on %s: %s", PRUNE_LIST, p->rem->url, strerror(-rc));
		return rc;
	}
	p->st->condemned = sw->st.condemned;
	p->st->condemned_bytes = sw->st.condemned_bytes;
	p->st->rescued = sw->st.rescued;
	p->st->young_objects = sw->st.young_objects;
	for (i = 0; i < sw->del.n; i++) {
		struct obj *ob = obj_find(&p->objs, &sw->del.v[i]);
		char name[128];

		format_oname(&sw->del.v[i], name, sizeof(name));
		if (!p->o->dry_run) {
			rc = remote_delete(p->rem, name);
			if (rc) {
				log_err("prune: deleting %s on %s: %s", name, p->rem->url,
					strerror(-rc));
				return rc;
			}
		}
		p->st->deleted++;
		p->st->deleted_bytes += ob ? ob->size : 0;
	}
	return 0;
}

/* Use marks of keys that are gone (and were not used since). */
static int drop_marks(struct pruning *p)
{
	size_t i, j;
	int rc;

	for (i = 0; i < p->nused; i++) {
		char hex[CAS_HEX_LEN + 1], name[128];
		int has = 0;

		if (p->now - p->used[i].at < p->o->grace)
			continue;
		cas_id_hex(&p->used[i].id, hex);
		for (j = 0; j < p->names.n && !has; j++)
			has = !strcmp(p->names.v[j], hex);
		if (has)
			continue;
		snprintf(name, sizeof(name), "used/%s", hex);
		if (!p->o->dry_run && (rc = remote_delete(p->rem, name)) != 0)
			return rc;
		p->st->marks_deleted++;
	}
	return 0;
}

static void print_json(const struct pruning *p, FILE *f)
{
	const struct prune_stats *st = p->st;
	size_t i;
	int first = 1;

	fprintf(f, "{\"dry_run\":%s,\"keys\":%" PRIu64 ",\"dropped\":[",
		p->o->dry_run ? "true" : "false", st->keys);
	for (i = 0; i < p->nk; i++)
		if (p->keys[i].why) {
			json_key_why(f, &p->keys[i], first);
			first = 0;
		}
	fprintf(f,
		"],\"republished\":%" PRIu64 ",\"objects\":%" PRIu64 ",\"bytes\":%" PRIu64
		",\"kept_objects\":%" PRIu64 ",\"kept_bytes\":%" PRIu64
		",\"young_objects\":%" PRIu64 ",\"condemned\":%" PRIu64
		",\"condemned_bytes\":%" PRIu64 ",\"deleted\":%" PRIu64
		",\"deleted_bytes\":%" PRIu64 ",\"rescued\":%" PRIu64 ",\"marks_deleted\":%" PRIu64
		",\"grace_seconds\":%" PRId64 "}\n",
		st->keys_republished, st->objects, st->bytes, st->kept_objects, st->kept_bytes,
		st->young_objects, st->condemned, st->condemned_bytes, st->deleted,
		st->deleted_bytes, st->rescued, st->marks_deleted, p->o->grace);
}

int repo_prune(struct repo *r, const struct prune_opts *o, struct prune_stats *st)
{
	struct pruning p;
	int rc;

	memset(&p, 0, sizeof(p));
	memset(st, 0, sizeof(*st));
	p.r = r;
	p.rem = r->primary;
	p.o = o;
	p.st = st;
	p.now = (int64_t)time(NULL);
	if (p.rem->read_only)
		return -EROFS;
	rc = gather_keys(&p);
	if (!rc)
		rc = gather_objects(&p);
	if (!rc) {
		keep_within_last(&p);
		rc = keep_max_size(&p);
	}
	if (!rc)
		rc = drop_keys(&p);
	if (!rc)
		rc = note_kept(&p);
	if (!rc)
		rc = sweep(&p);
	if (!rc)
		rc = drop_marks(&p);
	if (!rc && o->json)
		print_json(&p, o->json);
	free(p.names.v);
	free(p.recs);
	free(p.rcs);
	free(p.used);
	free(p.keys);
	free(p.order);
	free(p.refs.v);
	free(p.kept.v);
	free(p.objs.v);
	free(p.counted);
	free(p.sw.listed);
	free(p.sw.del.v);
	return rc;
}
