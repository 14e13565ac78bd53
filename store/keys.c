/*
 * Key records on the remotes (see repo.h for the layout): reading,
 * publishing and withdrawing them and the prefix indexes, the use marks,
 * and resolving a key (exact, then restore keys) for save, restore and
 * mount.
 */
#define _GNU_SOURCE
#include "repo.h"
#include "prune.h"
#include "tuning.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char separators[] = "-_/.:@+=,";

size_t key_indexed_len(const char *s)
{
	size_t i, cut = 0;

	for (i = 0; s[i]; i++)
		if (strchr(separators, s[i]))
			cut = i + 1;
	return cut;
}

const char *hit_kind_name(enum hit_kind k)
{
	switch (k) {
	case HIT_EXACT: return "exact";
	case HIT_PARTIAL: return "partial";
	default: return "miss";
	}
}

int key_valid(const char *key)
{
	size_t i, n = strlen(key);

	if (n == 0 || n > KEY_MAX)
		return -EINVAL;
	for (i = 0; i < n; i++)
		if ((unsigned char)key[i] < 0x20 || (unsigned char)key[i] > 0x7e)
			return -EINVAL;
	return 0;
}

static void key_name(const char *key, char *out, size_t n)
{
	struct cas_id h;
	char hex[CAS_HEX_LEN + 1];

	cas_hash(key, strlen(key), &h);
	cas_id_hex(&h, hex);
	snprintf(out, n, "keys/%s", hex);
}

static void used_name(const char *key, char *out, size_t n)
{
	struct cas_id h;
	char hex[CAS_HEX_LEN + 1];

	cas_hash(key, strlen(key), &h);
	cas_id_hex(&h, hex);
	snprintf(out, n, "used/%s", hex);
}

static void index_name(const char *prefix, size_t plen, char *out, size_t n)
{
	struct buf b = BUF_INIT;
	struct cas_id h;
	char hex[CAS_HEX_LEN + 1];

	buf_append(&b, "p", 2); /* "p\0" */
	buf_append(&b, prefix, plen);
	cas_hash(b.p, b.len, &h);
	buf_free(&b);
	cas_id_hex(&h, hex);
	snprintf(out, n, "index/%s", hex);
}

/* One line "time catalog files bytes key".  0 or -EBADMSG. */
static int parse_index_line(const char *line, size_t len, struct key_rec *rec)
{
	char tmp[KEY_MAX + 200];
	char hex[CAS_HEX_LEN + 1];
	long long t;
	unsigned long long files, bytes;
	int used = 0;

	if (len >= sizeof(tmp))
		return -EBADMSG;
	memcpy(tmp, line, len);
	tmp[len] = '\0';
	if (sscanf(tmp, "%lld %64s %llu %llu %n", &t, hex, &files, &bytes, &used) != 4 || !used)
		return -EBADMSG;
	if (cas_id_parse(&rec->catalog, hex) || key_valid(tmp + used))
		return -EBADMSG;
	snprintf(rec->key, sizeof(rec->key), "%s", tmp + used);
	rec->time_ns = t;
	rec->files = files;
	rec->bytes = bytes;
	rec->has_sources = 0;
	return 0;
}

static void format_line(struct buf *b, const struct key_rec *rec)
{
	char hex[CAS_HEX_LEN + 1];

	cas_id_hex(&rec->catalog, hex);
	buf_printf(b, "%" PRId64 " %s %" PRIu64 " %" PRIu64 " %s\n", rec->time_ns, hex, rec->files,
		   rec->bytes, rec->key);
}

#define KEY_MAGIC "stashfs-key 1\n"
#define INDEX_MAGIC "stashfs-index 1\n"

/* Parse a record body holding magic then lines; calls fn per valid line. */
static int parse_lines(const struct buf *b, const char *magic, const char *where,
		       int (*fn)(const struct key_rec *, void *), void *arg)
{
	size_t ml = strlen(magic), pos;
	struct key_rec rec;

	if (b->len < ml || memcmp(b->p, magic, ml) != 0) {
		log_err("%s: not a stashfs record", where);
		return -EBADMSG;
	}
	pos = ml;
	while (pos < b->len) {
		const char *line = (const char *)b->p + pos;
		const char *nl = memchr(line, '\n', b->len - pos);
		size_t len = nl ? (size_t)(nl - line) : b->len - pos;

		if (!nl) {
			log_err("%s: truncated record", where);
			return -EBADMSG;
		}
		if (parse_index_line(line, len, &rec) == 0) {
			int rc = fn(&rec, arg);

			if (rc)
				return rc;
		} else {
			log_err("%s: malformed line", where);
			return -EBADMSG;
		}
		pos += len + 1;
	}
	return 0;
}

struct recvec {
	struct key_rec *v;
	size_t n, cap;
	const char *prefix;
};

static int recvec_add(const struct key_rec *rec, void *arg)
{
	struct recvec *rv = arg;
	size_t i;

	/* callers fill the rest; index lines carry no sources */
	if (rv->prefix && strncmp(rec->key, rv->prefix, strlen(rv->prefix)) != 0)
		return 0;
	for (i = 0; i < rv->n; i++) {
		if (strcmp(rv->v[i].key, rec->key) == 0) {
			if (rec->time_ns > rv->v[i].time_ns)
				rv->v[i] = *rec;
			return 0;
		}
	}
	if (rv->n == rv->cap) {
		size_t nc = rv->cap ? rv->cap * 2 : 16;
		struct key_rec *nv = realloc(rv->v, nc * sizeof(*nv));

		if (!nv)
			return -ENOMEM;
		rv->v = nv;
		rv->cap = nc;
	}
	rv->v[rv->n++] = *rec;
	return 0;
}

static int rec_newest_first(const void *a, const void *b)
{
	const struct key_rec *x = a, *y = b;

	if (x->time_ns != y->time_ns)
		return x->time_ns > y->time_ns ? -1 : 1;
	return strcmp(x->key, y->key);
}

/* A remote that did not answer at all (not one that said "no"). */
static int unreachable(int rc)
{
	return rc == -EHOSTUNREACH || rc == -ETIMEDOUT || rc == -ENETDOWN || rc == -ENETUNREACH;
}

/* Read one index record from one remote into rv (missing: nothing). */
static int read_index(struct remote *rem, const char *prefix, size_t plen, struct recvec *rv)
{
	char name[128], where[PATH_MAX];
	struct buf b = BUF_INIT;
	int rc;

	index_name(prefix, plen, name, sizeof(name));
	rc = remote_get(rem, name, 0, REMOTE_WHOLE, &b, INDEX_RECORD_CAP);
	if (rc == -ENOENT) {
		rc = 0;
		goto out;
	}
	snprintf(where, sizeof(where), "key index %s on %s", name, rem->url);
	if (rc) {
		if (!unreachable(rc))
			log_err("%s: %s", where, strerror(-rc));
		goto out;
	}
	rc = parse_lines(&b, INDEX_MAGIC, where, recvec_add, rv);
out:
	buf_free(&b);
	return rc;
}

struct index_add {
	const struct key_rec *rec;
	const char *where;
	int remove; /* take rec out (unless the key was published again since) */
};

/*
 * An index with rec added, or taken out (remote_update's fn): newest
 * first, INDEX_KEEP.  -ECANCELED: a removal that leaves it as it is.
 */
static int index_with(const struct buf *cur, int exists, struct buf *out, void *arg)
{
	const struct index_add *ia = arg;
	struct recvec rv = { NULL, 0, 0, NULL };
	size_t i;
	int rc = exists ? parse_lines(cur, INDEX_MAGIC, ia->where, recvec_add, &rv) : 0;

	if (!rc && !ia->remove)
		rc = recvec_add(ia->rec, &rv);
	if (!rc && ia->remove) {
		size_t kept = 0;

		for (i = 0; i < rv.n; i++)
			if (strcmp(rv.v[i].key, ia->rec->key) || rv.v[i].time_ns > ia->rec->time_ns)
				rv.v[kept++] = rv.v[i];
		if (kept == rv.n)
			rc = -ECANCELED;
		rv.n = kept;
	}
	if (!rc) {
		qsort(rv.v, rv.n, sizeof(*rv.v), rec_newest_first);
		buf_append(out, INDEX_MAGIC, strlen(INDEX_MAGIC));
		for (i = 0; i < rv.n && i < INDEX_KEEP; i++)
			format_line(out, &rv.v[i]);
	}
	free(rv.v);
	return rc;
}

/*
 * Add rec to an index.  Concurrent publishers of keys with one prefix each
 * rewrite the same index: remote_update makes that one atomic
 * read-modify-write where the backend can, so no key drops out.
 */
static int update_index(struct remote *rem, const char *prefix, size_t plen,
			const struct key_rec *rec, int remove)
{
	char name[128], where[PATH_MAX];
	struct index_add ia = { rec, where, remove };
	int rc;

	index_name(prefix, plen, name, sizeof(name));
	snprintf(where, sizeof(where), "key index %s on %s", name, rem->url);
	rc = remote_update(rem, name, INDEX_RECORD_CAP, index_with, &ia);
	if (rc == -ECANCELED)
		rc = 0;
	if (rc)
		log_err("key index on %s: cannot write: %s", rem->url, strerror(-rc));
	return rc;
}

/* rec added to (or taken out of) the index of "" and of every prefix of
 * its key that ends with a separator */
static int update_indexes(struct remote *rem, const struct key_rec *rec, int remove)
{
	size_t i, n = strlen(rec->key);
	int rc = update_index(rem, rec->key, 0, rec, remove);

	for (i = 0; !rc && i < n; i++)
		if (strchr(separators, rec->key[i]))
			rc = update_index(rem, rec->key, i + 1, rec, remove);
	return rc;
}

int keys_publish(struct repo *r, const struct key_rec *rec)
{
	struct buf b = BUF_INIT;
	char name[128];
	int rc;

	/* nothing it uses may be on its way out (a prune running) */
	rc = prune_guard(r, rec);
	if (rc)
		return rc;
	buf_append(&b, KEY_MAGIC, strlen(KEY_MAGIC));
	format_line(&b, rec);
	if (rec->has_sources) {
		char hex[CAS_HEX_LEN + 1];

		cas_id_hex(&rec->sources, hex);
		buf_printf(&b, "sources %s\n", hex);
	}
	key_name(rec->key, name, sizeof(name));
	/* the key record is the publish: one atomic replace */
	rc = remote_put_buf(r->primary, name, b.p, b.len);
	buf_free(&b);
	if (rc) {
		log_err("key '%s' on %s: cannot publish: %s", rec->key, r->primary->url,
			strerror(-rc));
		return rc;
	}
	store_key_note(r->store, rec); /* known here, for a remote that is gone later */
	/* then the prefix indexes that restore keys and ls read */
	return update_indexes(r->primary, rec, 0);
}

int keys_withdraw(struct repo *r, const struct key_rec *rec, int *republished)
{
	struct key_rec now;
	char name[128], used[128];
	int rc;

	*republished = 0;
	key_name(rec->key, name, sizeof(name));
	/* a job that published the key again since it was listed wins */
	rc = keys_get(r->primary, rec->key, &now);
	if (rc == 0 && (now.time_ns != rec->time_ns || cas_id_cmp(&now.catalog, &rec->catalog))) {
		*republished = 1;
		return 0;
	}
	if (rc && rc != -ENOENT)
		return rc;
	rc = remote_delete(r->primary, name);
	if (!rc) {
		used_name(rec->key, used, sizeof(used));
		rc = remote_delete(r->primary, used);
	}
	if (rc) {
		log_err("key '%s' on %s: cannot delete: %s", rec->key, r->primary->url,
			strerror(-rc));
		return rc;
	}
	store_key_forget(r->store, rec);
	return update_indexes(r->primary, rec, 1);
}

int keys_parse_record(struct buf *b, const char *key, const char *where, struct key_rec *out)
{
	struct recvec rv = { NULL, 0, 0, NULL };
	int rc;

	{
		/* an optional "sources HEX" line names the sources manifest */
		char *sl = b->len ? memmem(b->p, b->len, "\nsources ", 9) : NULL;
		struct cas_id sid;
		int has = 0;

		if (sl && (size_t)(sl - (char *)b->p) + 10 + CAS_HEX_LEN <= b->len) {
			char hex[CAS_HEX_LEN + 1];

			memcpy(hex, sl + 9, CAS_HEX_LEN);
			hex[CAS_HEX_LEN] = '\0';
			if (cas_id_parse(&sid, hex) == 0)
				has = 1;
			b->len = (size_t)(sl - (char *)b->p) + 1;
		}
		rc = parse_lines(b, KEY_MAGIC, where, recvec_add, &rv);
		if (!rc && rv.n == 1) {
			rv.v[0].has_sources = has;
			if (has)
				rv.v[0].sources = sid;
		}
	}
	if (!rc && (rv.n != 1 || (key && strcmp(rv.v[0].key, key) != 0))) {
		log_err("%s: record does not match key '%s'", where, key ? key : "");
		rc = -EBADMSG;
	}
	if (!rc)
		*out = rv.v[0];
	free(rv.v);
	return rc;
}

int keys_parse_index(const struct buf *b, const char *where, const char *prefix, struct key_rec **v,
		     size_t *n)
{
	struct recvec rv = { NULL, 0, 0, prefix };
	int rc = parse_lines(b, INDEX_MAGIC, where, recvec_add, &rv);

	if (rc) {
		free(rv.v);
		return rc;
	}
	*v = rv.v;
	*n = rv.n;
	return 0;
}

int keys_get(struct remote *rem, const char *key, struct key_rec *out)
{
	struct buf b = BUF_INIT;
	char name[128], where[PATH_MAX];
	int rc;

	key_name(key, name, sizeof(name));
	rc = remote_get(rem, name, 0, REMOTE_WHOLE, &b, KEY_RECORD_CAP);
	if (rc == -ENOENT)
		goto out;
	snprintf(where, sizeof(where), "key record %s on %s", name, rem->url);
	if (rc) {
		if (!unreachable(rc)) /* the remote's layer said why already */
			log_err("%s: %s", where, strerror(-rc));
		goto out;
	}
	rc = keys_parse_record(&b, key, where, out);
out:
	buf_free(&b);
	return rc;
}

int keys_get_named(struct remote *rem, const char *hex, struct key_rec *out)
{
	struct buf b = BUF_INIT;
	char name[128], where[PATH_MAX], h[CAS_HEX_LEN + 1];
	struct cas_id id;
	int rc;

	snprintf(name, sizeof(name), "keys/%s", hex);
	rc = remote_get(rem, name, 0, REMOTE_WHOLE, &b, KEY_RECORD_CAP);
	if (rc)
		goto out;
	snprintf(where, sizeof(where), "key record %s on %s", name, rem->url);
	rc = keys_parse_record(&b, NULL, where, out);
	if (rc)
		goto out;
	cas_hash(out->key, strlen(out->key), &id);
	cas_id_hex(&id, h);
	if (strcmp(h, hex)) {
		log_err("%s: holds the record of another key ('%s')", where, out->key);
		rc = -EBADMSG;
	}
out:
	buf_free(&b);
	return rc;
}

#define USED_MAGIC "stashfs-used 1\n"

static void *mark_used(void *arg)
{
	struct used_mark *m = arg;
	int rc;

	/* a scope this job may only read refuses it: that is no error of the job's */
	log_muted = 1;
	rc = remote_put_buf(m->r->primary, m->name, USED_MAGIC, strlen(USED_MAGIC));
	log_muted = 0;
	if (rc)
		log_debug("%s on %s: not marked used: %s", m->name, m->r->primary->url,
			  strerror(-rc));
	else
		store_used_set(m->r->store, m->r->primary->url, m->key, now_ns());
	return NULL;
}

void keys_mark_used_begin(struct repo *r, const struct key_rec *rec, struct used_mark *m)
{
	int64_t at = 0;

	memset(m, 0, sizeof(*m));
	/* only the primary keeps marks; a read remote is not written */
	if (rec->from != 0 || r->primary->read_only || r->primary->offline)
		return;
	if (store_used_get(r->store, r->primary->url, rec->key, &at) == 0 &&
	    now_ns() - at < USED_EVERY_NS)
		return;
	m->r = r;
	snprintf(m->key, sizeof(m->key), "%s", rec->key);
	used_name(rec->key, m->name, sizeof(m->name));
	m->started = pthread_create(&m->t, NULL, mark_used, m) == 0;
	if (!m->started)
		mark_used(m);
}

void keys_mark_used_end(struct used_mark *m)
{
	if (m->started)
		pthread_join(m->t, NULL);
	m->started = 0;
}

struct used_scan {
	struct key_used *v;
	size_t n, cap;
};

static int used_add(const char *name, uint64_t size, int64_t mtime, void *arg)
{
	struct used_scan *u = arg;
	struct cas_id id;

	(void)size;
	if (cas_id_parse(&id, name))
		return 0; /* not a mark */
	if (u->n == u->cap) {
		size_t nc = u->cap ? u->cap * 2 : 64;
		struct key_used *nv = realloc(u->v, nc * sizeof(*nv));

		if (!nv)
			return -ENOMEM;
		u->v = nv;
		u->cap = nc;
	}
	u->v[u->n].id = id;
	u->v[u->n].at = mtime;
	u->n++;
	return 0;
}

static int used_cmp(const void *a, const void *b)
{
	return cas_id_cmp(&((const struct key_used *)a)->id, &((const struct key_used *)b)->id);
}

int keys_used_list(struct remote *rem, struct key_used **out, size_t *n)
{
	struct used_scan u = { NULL, 0, 0 };
	int rc = remote_list(rem, "used", used_add, &u);

	if (rc) {
		free(u.v);
		return rc;
	}
	if (u.n)
		qsort(u.v, u.n, sizeof(*u.v), used_cmp);
	*out = u.v;
	*n = u.n;
	return 0;
}

int64_t keys_used_at(const struct key_used *v, size_t n, const char *key)
{
	struct key_used k, *hit;

	cas_hash(key, strlen(key), &k.id);
	hit = n ? bsearch(&k, v, n, sizeof(*v), used_cmp) : NULL;
	return hit ? hit->at : -1;
}

/* Newest key starting with prefix on one remote: 0, -ENOENT, -errno. */
static int newest_with_prefix(struct remote *rem, const char *prefix, struct key_rec *out)
{
	struct recvec rv = { NULL, 0, 0, prefix };
	int rc;

	/* the index of the longest indexed prefix of prefix holds every
	 * key that starts with prefix (up to INDEX_KEEP of them) */
	rc = read_index(rem, prefix, key_indexed_len(prefix), &rv);
	if (rc)
		goto out;
	if (rv.n == 0) {
		rc = -ENOENT;
		goto out;
	}
	qsort(rv.v, rv.n, sizeof(*rv.v), rec_newest_first);
	*out = rv.v[0];
out:
	free(rv.v);
	return rc;
}

/* What this machine knows of key and the restore keys, without a remote. */
static int resolve_local(struct repo *r, const char *key, char *const *restore, int n_restore,
			 struct key_rec *out, enum hit_kind *kind)
{
	int j;

	if (store_key_get(r->store, key, out) == 0) {
		*kind = HIT_EXACT;
		out->from = -1;
		return 0;
	}
	for (j = 0; j < n_restore; j++) {
		if (store_key_newest(r->store, restore[j], out) == 0) {
			*kind = HIT_PARTIAL;
			out->from = -1;
			return 0;
		}
	}
	*kind = HIT_MISS;
	return -ENOENT;
}

static int resolve_remote(struct repo *r, const char *key, char *const *restore, int n_restore,
			  struct key_rec *out, enum hit_kind *kind)
{
	int i, j, rc;

	*kind = HIT_MISS;
	for (i = 0; i <= r->n_reads; i++) {
		rc = keys_get(repo_remote(r, i), key, out);
		if (rc == 0) {
			*kind = HIT_EXACT;
			out->from = i;
			return 0;
		}
		if (rc != -ENOENT)
			return rc;
	}
	for (j = 0; j < n_restore; j++) {
		for (i = 0; i <= r->n_reads; i++) {
			rc = newest_with_prefix(repo_remote(r, i), restore[j], out);
			if (rc == 0) {
				*kind = HIT_PARTIAL;
				out->from = i;
				return 0;
			}
			if (rc != -ENOENT)
				return rc;
		}
	}
	return 0;
}

int keys_resolve(struct repo *r, const char *key, char *const *restore, int n_restore,
		 struct key_rec *out, enum hit_kind *kind)
{
	int rc = resolve_remote(r, key, restore, n_restore, out, kind);

	if (rc == 0) {
		if (*kind != HIT_MISS)
			store_key_note(r->store, out);
		return 0;
	}
	if (!unreachable(rc))
		return rc;
	/* no answer (or --offline): the newest record this machine has seen */
	if (resolve_local(r, key, restore, n_restore, out, kind) != 0) {
		if (rc == -ENETDOWN) { /* --offline: nothing known is a miss */
			*kind = HIT_MISS;
			return 0;
		}
		return rc;
	}
	{
		char age[64];
		double secs = (double)(now_ns() - out->time_ns) / 1e9;

		fmt_age(age, sizeof(age), secs);
		log_warn("%s: using the record of '%s' known here, published %s ago",
			 rc == -ENETDOWN ? "offline" : "remote unreachable", out->key, age);
	}
	return 0;
}

int keys_list(struct repo *r, const char *prefix, struct key_rec **out, size_t *n)
{
	struct recvec rv = { NULL, 0, 0, prefix };
	size_t cut = key_indexed_len(prefix);
	int i, rc = 0;

	for (i = 0; i <= r->n_reads && !rc; i++)
		rc = read_index(repo_remote(r, i), prefix, cut, &rv);
	if (rc) {
		free(rv.v);
		return rc;
	}
	if (rv.n)
		qsort(rv.v, rv.n, sizeof(*rv.v), rec_newest_first);
	*out = rv.v;
	*n = rv.n;
	return 0;
}

/* The temporary name a catalog is unpacked to before it is known good:
 * in STORE/tmp, named by its writer, so that what a killed one left is
 * swept (store_open). */
