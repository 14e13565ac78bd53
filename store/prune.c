/* Retention on the remote and the publish guard; see prune.h. */
#define _GNU_SOURCE
#include "prune.h"

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

/* Key records read READERS at a time: a team's remote holds thousands. */
#define READERS 8

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
	pthread_t t[READERS];
	int n = 0;

	rd.recs = calloc(names->n ? names->n : 1, sizeof(*rd.recs));
	rd.rcs = calloc(names->n ? names->n : 1, sizeof(*rd.rcs));
	*recs = rd.recs;
	*rcs = rd.rcs;
	if (!rd.recs || !rd.rcs)
		return -ENOMEM;
	while (n < READERS && (size_t)n < names->n &&
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

int repo_prune(struct repo *r, const struct prune_opts *o, struct prune_stats *st)
{
	struct remote *rem = r->primary;
	struct namevec names = { NULL, 0, 0 };
	struct key_used *used = NULL;
	struct key_rec *recs = NULL;
	int *rcs = NULL;
	size_t nused = 0, nk = 0, i, j;
	struct pkey *keys = NULL, **order = NULL;
	struct onamevec refs = { NULL, 0, 0 }, kept = { NULL, 0, 0 };
	struct objvec objs = { NULL, 0, 0, 0 };
	struct sweep sw;
	uint8_t *counted = NULL;
	int64_t now = (int64_t)time(NULL);
	int rc, k;
	char why_within[96], why_last[96], why_size[96];

	memset(st, 0, sizeof(*st));
	memset(&sw, 0, sizeof(sw));
	if (rem->read_only)
		return -EROFS;
	/* every key and when it was last used */
	rc = remote_list(rem, "keys", name_add, &names);
	if (!rc)
		rc = keys_used_list(rem, &used, &nused);
	if (rc)
		goto out;
	keys = calloc(names.n ? names.n : 1, sizeof(*keys));
	order = calloc(names.n ? names.n : 1, sizeof(*order));
	if (!keys || !order) {
		rc = -ENOMEM;
		goto out;
	}
	rc = read_records(rem, &names, &recs, &rcs);
	if (rc)
		goto out;
	for (i = 0; i < names.n; i++) {
		struct pkey *pk = &keys[nk];

		rc = rcs[i];
		pk->rec = recs[i];
		if (rc == -ENOENT) {
			rc = 0; /* gone meanwhile */
			continue;
		}
		if (rc) {
			/* what a record this code cannot read uses is unknown: a
			 * newer version's, or damage; nothing may be deleted */
			log_err("prune: keys/%s on %s: %s; nothing was pruned (remove it, or prune "
				"with the stashfs that wrote it)",
				names.v[i], rem->url,
				rc == -EBADMSG ? "not a key record this version reads"
					       : strerror(-rc));
			goto out;
		}
		pk->used = keys_used_at(used, nused, pk->rec.key);
		pk->first = refs.n;
		rc = key_refs(r, &pk->rec, &refs);
		if (rc == -ENOENT) {
			refs.n = pk->first;
			pk->why = "its catalog is missing";
			rc = 0;
		}
		if (rc) {
			log_err("prune: reading the snapshot of '%s': %s", pk->rec.key,
				strerror(-rc));
			goto out;
		}
		pk->n = refs.n - pk->first;
		order[nk] = pk;
		nk++;
	}
	st->keys = nk;
	/* every content object, with its size and age */
	for (k = 0; k < K_N && !rc; k++) {
		objs.kind = (uint8_t)k;
		rc = remote_list(rem, kdir[k], obj_add, &objs);
	}
	if (rc)
		goto out;
	if (objs.n)
		qsort(objs.v, objs.n, sizeof(*objs.v), oname_cmp);
	st->objects = objs.n;
	for (i = 0; i < objs.n; i++)
		st->bytes += objs.v[i].size;

	/* the policies */
	if (o->keep_within >= 0) {
		char d[32];

		fmt_age(d, sizeof(d), (double)o->keep_within);
		snprintf(why_within, sizeof(why_within), "not used within %s", d);
		for (i = 0; i < nk; i++)
			if (!keys[i].why && now - key_used(&keys[i]) > o->keep_within)
				keys[i].why = why_within;
	}
	if (o->keep_last >= 0 && nk) {
		int64_t rank = 0;

		snprintf(why_last, sizeof(why_last),
			 "not among the newest %" PRId64 " of its prefix", o->keep_last);
		qsort(order, nk, sizeof(*order), by_group);
		for (i = 0; i < nk; i++) {
			size_t g = key_indexed_len(order[i]->rec.key);

			if (i && (g != key_indexed_len(order[i - 1]->rec.key) ||
				  memcmp(order[i]->rec.key, order[i - 1]->rec.key, g)))
				rank = 0;
			if (order[i]->why)
				continue;
			if (rank++ >= o->keep_last)
				order[i]->why = why_last;
		}
	}
	if (o->max_size != UINT64_MAX && nk) {
		uint64_t total = 0;
		int over = 0;
		char sz[32];

		fmt_size(sz, sizeof(sz), o->max_size);
		snprintf(why_size, sizeof(why_size), "over --max-size %s, least recently used", sz);
		counted = calloc(objs.n ? objs.n : 1, 1);
		if (!counted) {
			rc = -ENOMEM;
			goto out;
		}
		qsort(order, nk, sizeof(*order), by_use);
		for (i = 0; i < nk; i++) {
			struct pkey *pk = order[i];
			uint64_t add = 0;

			if (pk->why)
				continue;
			for (j = 0; !over && j < pk->n; j++) {
				struct obj *ob = obj_find(&objs, &refs.v[pk->first + j]);

				if (ob && !counted[ob - objs.v])
					add += ob->size;
			}
			if (over || total + add > o->max_size) {
				over = 1;
				pk->why = why_size;
				continue;
			}
			for (j = 0; j < pk->n; j++) {
				struct obj *ob = obj_find(&objs, &refs.v[pk->first + j]);

				if (ob)
					counted[ob - objs.v] = 1;
			}
			total += add;
		}
	}

	/* the dropped keys go */
	for (i = 0; i < nk; i++) {
		struct pkey *pk = &keys[i];
		char age[32];

		if (!pk->why)
			continue;
		fmt_age(age, sizeof(age), (double)(now - key_used(pk)));
		log_info("prune: %s '%s' (%s; last used %s ago)",
			 o->dry_run ? "would drop" : "dropping", pk->rec.key, pk->why, age);
		st->keys_dropped++;
		if (!o->dry_run) {
			int again = 0;

			rc = keys_withdraw(r, &pk->rec, &again);
			if (rc)
				goto out;
			if (again) {
				log_info("prune: '%s' was published again meanwhile: kept",
					 pk->rec.key);
				st->keys_dropped--;
				st->keys_republished++;
				pk->why = NULL; /* its new snapshot went through the guard */
			}
		}
	}
	/* what the kept keys reference stays */
	for (i = 0; i < nk; i++) {
		if (keys[i].why)
			continue;
		for (j = 0; j < keys[i].n; j++) {
			rc = onv_add(&kept, refs.v[keys[i].first + j].kind,
				     &refs.v[keys[i].first + j].id);
			if (rc)
				goto out;
		}
	}
	onv_sort(&kept);
	for (i = 0; i < objs.n; i++) {
		if (onv_has(&kept, &objs.v[i].n)) {
			st->kept_objects++;
			st->kept_bytes += objs.v[i].size;
		}
	}

	/* condemn, and delete what was condemned a grace ago */
	sw.objs = &objs;
	sw.kept = &kept;
	sw.now = now;
	sw.grace = o->grace;
	sw.listed = malloc(objs.n ? objs.n : 1);
	if (!sw.listed) {
		rc = -ENOMEM;
		goto out;
	}
	if (o->dry_run) {
		struct buf cur = BUF_INIT, out = BUF_INIT;

		rc = remote_get(rem, PRUNE_LIST, 0, REMOTE_WHOLE, &cur, PRUNE_LIST_CAP);
		if (rc == 0 || rc == -ENOENT)
			rc = sweep_fn(&cur, rc == 0, &out, &sw);
		buf_free(&cur);
		buf_free(&out);
	} else {
		rc = remote_update(rem, PRUNE_LIST, PRUNE_LIST_CAP, sweep_fn, &sw);
	}
	if (rc) {
		log_err("prune: %s on %s: %s", PRUNE_LIST, rem->url, strerror(-rc));
		goto out;
	}
	st->condemned = sw.st.condemned;
	st->condemned_bytes = sw.st.condemned_bytes;
	st->rescued = sw.st.rescued;
	st->young_objects = sw.st.young_objects;
	for (i = 0; i < sw.del.n; i++) {
		struct obj *ob = obj_find(&objs, &sw.del.v[i]);
		char name[128];

		format_oname(&sw.del.v[i], name, sizeof(name));
		if (!o->dry_run) {
			rc = remote_delete(rem, name);
			if (rc) {
				log_err("prune: deleting %s on %s: %s", name, rem->url,
					strerror(-rc));
				goto out;
			}
		}
		st->deleted++;
		st->deleted_bytes += ob ? ob->size : 0;
	}
	/* use marks of keys that are gone (and were not used since) */
	for (i = 0; i < nused; i++) {
		char hex[CAS_HEX_LEN + 1], name[128];
		int has = 0;

		if (now - used[i].at < o->grace)
			continue;
		cas_id_hex(&used[i].id, hex);
		for (j = 0; j < names.n && !has; j++)
			has = !strcmp(names.v[j], hex);
		if (has)
			continue;
		snprintf(name, sizeof(name), "used/%s", hex);
		if (!o->dry_run && (rc = remote_delete(rem, name)) != 0)
			goto out;
		st->marks_deleted++;
	}
	if (o->json) {
		int first = 1;

		fprintf(o->json, "{\"dry_run\":%s,\"keys\":%" PRIu64 ",\"dropped\":[",
			o->dry_run ? "true" : "false", st->keys);
		for (i = 0; i < nk; i++)
			if (keys[i].why) {
				json_key_why(o->json, &keys[i], first);
				first = 0;
			}
		fprintf(o->json,
			"],\"republished\":%" PRIu64 ",\"objects\":%" PRIu64 ",\"bytes\":%" PRIu64
			",\"kept_objects\":%" PRIu64 ",\"kept_bytes\":%" PRIu64
			",\"young_objects\":%" PRIu64 ",\"condemned\":%" PRIu64
			",\"condemned_bytes\":%" PRIu64 ",\"deleted\":%" PRIu64
			",\"deleted_bytes\":%" PRIu64 ",\"rescued\":%" PRIu64
			",\"marks_deleted\":%" PRIu64 ",\"grace_seconds\":%" PRId64 "}\n",
			st->keys_republished, st->objects, st->bytes, st->kept_objects,
			st->kept_bytes, st->young_objects, st->condemned, st->condemned_bytes,
			st->deleted, st->deleted_bytes, st->rescued, st->marks_deleted, o->grace);
	}
out:
	free(names.v);
	free(recs);
	free(rcs);
	free(used);
	free(keys);
	free(order);
	free(refs.v);
	free(kept.v);
	free(objs.v);
	free(counted);
	free(sw.listed);
	free(sw.del.v);
	return rc;
}
