/*
 * Catalog image: building, validation and read access.  See catalog.h for
 * the layout.  The host is assumed little-endian (checked at build time).
 */
#define _GNU_SOURCE
#include "catalog.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the catalog format is little-endian; add byte swapping for this host"
#endif

_Static_assert(sizeof(struct cat_header) == 160, "header size");
_Static_assert(offsetof(struct cat_header, n_xattrs) == CATALOG_V1_HEADER, "v1 header");
_Static_assert(sizeof(struct cat_xattr) == 32, "xattr size");
_Static_assert(sizeof(struct cat_entry) == 72, "entry size");
_Static_assert(sizeof(struct cat_ref) == 16, "ref size");
_Static_assert(sizeof(struct cat_chunk) == 56, "chunk size");

struct catalog {
	const uint8_t *base;
	size_t size;
	int mapped;
	struct cat_header h_; /* the header, a version 1 one completed */
	const struct cat_header *h;
	const struct cat_entry *e;
	const struct cat_ref *r;
	const struct cat_chunk *c;
	const struct cas_id *p;
	const uint32_t *rd;
	const struct cat_xattr *x;
	const char *s;
};

static uint64_t align8(uint64_t v)
{
	return (v + 7) & ~7ULL;
}

int catalog_build(struct buf *out, const struct cat_entry *entries, uint64_t n_entries,
		  const struct cat_ref *refs, uint64_t n_refs, const struct cat_chunk *chunks,
		  uint64_t n_chunks, const struct cas_id *packs, uint64_t n_packs,
		  const uint32_t *reads, uint64_t n_reads, const struct cat_xattr *xattrs,
		  uint64_t n_xattrs, const char *strings, uint64_t strings_len)
{
	struct cat_header h;
	uint64_t off, i;
	static const uint8_t zeros[8];
	int rc;

	memset(&h, 0, sizeof(h));
	memcpy(h.magic, CATALOG_MAGIC, 8);
	h.version = CATALOG_VERSION;
	h.header_size = sizeof(h);
	h.n_entries = n_entries;
	h.n_refs = n_refs;
	h.n_chunks = n_chunks;
	h.n_packs = n_packs;
	h.strings_len = strings_len;
	off = sizeof(h);
	h.off_entries = off;
	off += n_entries * sizeof(*entries);
	h.off_refs = off;
	off += n_refs * sizeof(*refs);
	h.off_chunks = off;
	off += n_chunks * sizeof(*chunks);
	h.off_packs = off;
	off += n_packs * sizeof(*packs);
	h.n_reads = n_reads;
	h.off_reads = off;
	off = align8(off + n_reads * sizeof(*reads));
	h.n_xattrs = n_xattrs;
	h.off_xattrs = off;
	off += n_xattrs * sizeof(*xattrs);
	h.off_strings = off;
	off += strings_len;
	h.total_size = align8(off);
	h.created_ns = now_ns();
	for (i = 0; i < n_entries; i++) {
		if (S_ISREG(entries[i].mode) && entries[i].ino == i) {
			h.n_files++;
			h.total_bytes += entries[i].size;
		}
	}
	if (h.total_size > CATALOG_MAX_BYTES)
		return -EFBIG;
	buf_reset(out);
	rc = buf_reserve(out, h.total_size);
	if (rc)
		return rc;
	buf_append(out, &h, sizeof(h));
	buf_append(out, entries, n_entries * sizeof(*entries));
	buf_append(out, refs, n_refs * sizeof(*refs));
	buf_append(out, chunks, n_chunks * sizeof(*chunks));
	buf_append(out, packs, n_packs * sizeof(*packs));
	buf_append(out, reads, n_reads * sizeof(*reads));
	buf_append(out, zeros, h.off_xattrs - out->len);
	buf_append(out, xattrs, n_xattrs * sizeof(*xattrs));
	buf_append(out, strings, strings_len);
	buf_append(out, zeros, h.total_size - out->len);
	return 0;
}

int catalog_name_cmp(const char *a, size_t al, const char *b, size_t bl)
{
	int c = memcmp(a, b, al < bl ? al : bl);

	if (c)
		return c;
	return al < bl ? -1 : al > bl;
}

static int bad(char *why, size_t whylen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int bad(char *why, size_t whylen, const char *fmt, ...)
{
	va_list ap;

	if (why && whylen) {
		va_start(ap, fmt);
		vsnprintf(why, whylen, fmt, ap);
		va_end(ap);
	}
	return -EBADMSG;
}

/* section [off, off + cnt * sz) inside [hdr, total) without overflow */
static int section_ok(uint64_t off, uint64_t cnt, uint64_t sz, uint64_t total)
{
	if (off < CATALOG_V1_HEADER || off > total || (off & 7))
		return 0;
	if (cnt > (total - off) / sz)
		return 0;
	return 1;
}

/* The header of image p (n bytes) into h, a version 1 one completed. */
static int read_header(const void *p, size_t n, struct cat_header *h, char *why, size_t whylen)
{
	if (n < CATALOG_V1_HEADER)
		return bad(why, whylen, "truncated: %zu bytes, header needs %zu", n,
			   (size_t)CATALOG_V1_HEADER);
	memset(h, 0, sizeof(*h));
	memcpy(h, p, CATALOG_V1_HEADER);
	if (memcmp(h->magic, CATALOG_MAGIC, 8) != 0)
		return bad(why, whylen, "not a stashfs catalog (bad magic)");
	if (h->version == 1 && h->header_size == CATALOG_V1_HEADER)
		return 0;
	if (h->version != CATALOG_VERSION || h->header_size != sizeof(*h))
		return bad(why, whylen, "unsupported catalog version %u", h->version);
	if (n < sizeof(*h))
		return bad(why, whylen, "truncated: %zu bytes, header needs %zu", n, sizeof(*h));
	memcpy(h, p, sizeof(*h));
	return 0;
}

/* The link group of member x (index i) is sound: a leader of its kind. */
static int member_ok(const struct cat_entry *e, uint64_t n, uint64_t i)
{
	const struct cat_entry *x = &e[i], *l;

	if (x->ino >= n)
		return 0;
	l = &e[x->ino];
	if (l->ino != x->ino || (l->mode & S_IFMT) != (x->mode & S_IFMT))
		return 0;
	if (S_ISREG(x->mode))
		return x->count == 0 && l->size == x->size;
	if (S_ISCHR(x->mode) || S_ISBLK(x->mode))
		return l->first == x->first;
	return 1;
}

static int validate_xattrs(const struct cat_header *h, const struct cat_entry *e,
			   const struct cat_xattr *x, const char *s, char *why, size_t whylen)
{
	uint64_t i;

	for (i = 0; i < h->n_xattrs; i++) {
		const struct cat_xattr *a = &x[i];

		if (a->entry >= h->n_entries || e[a->entry].ino != a->entry)
			return bad(why, whylen, "xattr %llu: not of a leader",
				   (unsigned long long)i);
		if (a->name_len == 0 || a->name_len > CATALOG_MAX_XATTR_NAME ||
		    a->name_off > h->strings_len || a->name_len > h->strings_len - a->name_off ||
		    memchr(s + a->name_off, 0, a->name_len))
			return bad(why, whylen, "xattr %llu: bad name", (unsigned long long)i);
		if (a->value_len > CATALOG_MAX_XATTR_VALUE || a->value_off > h->strings_len ||
		    a->value_len > h->strings_len - a->value_off)
			return bad(why, whylen, "xattr %llu: value out of bounds",
				   (unsigned long long)i);
		if (i > 0 && (x[i - 1].entry > a->entry ||
			      (x[i - 1].entry == a->entry &&
			       catalog_name_cmp(s + x[i - 1].name_off, x[i - 1].name_len,
						s + a->name_off, a->name_len) >= 0)))
			return bad(why, whylen, "xattr %llu: not sorted", (unsigned long long)i);
	}
	return 0;
}

/* What validate's steps share: the catalog's sections, where to say why. */
struct vctx {
	const struct cat_header *h;
	const struct cat_entry *e;
	const struct cat_ref *r;
	const struct cat_chunk *c;
	const char *s;
	uint16_t *depth; /* levels below the root, per entry */
	char *why;
	size_t whylen;
};

/* The read record's chunk numbers, and each chunk's pack, sizes, offset. */
static int validate_chunks(const struct vctx *v, const uint32_t *rd)
{
	const struct cat_header *h = v->h;
	const struct cat_chunk *c = v->c;
	uint64_t i;

	for (i = 0; i < h->n_reads; i++)
		if (rd[i] >= h->n_chunks)
			return bad(v->why, v->whylen, "read record %llu out of range",
				   (unsigned long long)i);
	for (i = 0; i < h->n_chunks; i++) {
		if (c[i].pack >= h->n_packs)
			return bad(v->why, v->whylen, "chunk %llu: pack out of range",
				   (unsigned long long)i);
		if (c[i].raw_len == 0 || c[i].raw_len > (64u << 20) || c[i].stored_len == 0 ||
		    c[i].stored_len > (65u << 20) || (c[i].flags & ~CHUNK_ZSTD) ||
		    (!(c[i].flags & CHUNK_ZSTD) && c[i].stored_len != c[i].raw_len))
			return bad(v->why, v->whylen, "chunk %llu: bad sizes",
				   (unsigned long long)i);
		if (c[i].pack_off > UINT64_MAX - c[i].stored_len)
			return bad(v->why, v->whylen, "chunk %llu: bad offset",
				   (unsigned long long)i);
	}
	return 0;
}

/*
 * Entry i's name and place: a plain name, in its parent's range, after its
 * elder sibling, no deeper than readers (restore's walk, catalog_path) can
 * follow.  Sets its depth.
 */
static int validate_place(const struct vctx *v, uint64_t i)
{
	const struct cat_header *h = v->h;
	const struct cat_entry *x = &v->e[i], *d, *prev;
	const char *nm;

	if (x->name_off > h->strings_len || x->name_len > h->strings_len - x->name_off ||
	    x->name_len > CATALOG_MAX_NAME)
		return bad(v->why, v->whylen, "entry %llu: name out of bounds",
			   (unsigned long long)i);
	if (i == 0)
		return 0;
	nm = v->s + x->name_off;
	if (x->parent >= i)
		return bad(v->why, v->whylen, "entry %llu: bad parent", (unsigned long long)i);
	d = &v->e[x->parent];
	if (x->name_len == 0 || memchr(nm, '/', x->name_len) || memchr(nm, 0, x->name_len) ||
	    (x->name_len == 1 && nm[0] == '.') ||
	    (x->name_len == 2 && nm[0] == '.' && nm[1] == '.'))
		return bad(v->why, v->whylen, "entry %llu: bad name", (unsigned long long)i);
	if (!S_ISDIR(d->mode) || i < d->first || i - d->first >= d->count)
		return bad(v->why, v->whylen, "entry %llu: bad parent", (unsigned long long)i);
	if (v->depth[x->parent] >= CATALOG_MAX_DEPTH)
		return bad(v->why, v->whylen, "entry %llu: deeper than %d levels",
			   (unsigned long long)i, CATALOG_MAX_DEPTH);
	v->depth[i] = (uint16_t)(v->depth[x->parent] + 1);
	prev = &v->e[i - 1];
	if (i > d->first &&
	    catalog_name_cmp(v->s + prev->name_off, prev->name_len, nm, x->name_len) >= 0)
		return bad(v->why, v->whylen, "entry %llu: names not sorted",
			   (unsigned long long)i);
	return 0;
}

/* A regular file leader's chunk list covers its size, in order. */
static int validate_refs(const struct vctx *v, uint64_t i)
{
	const struct cat_entry *x = &v->e[i];
	uint64_t pos = 0, j;

	if (x->first > v->h->n_refs || x->count > v->h->n_refs - x->first)
		return bad(v->why, v->whylen, "entry %llu: refs out of range",
			   (unsigned long long)i);
	for (j = 0; j < x->count; j++) {
		const struct cat_ref *rr = &v->r[x->first + j];

		if (rr->chunk >= v->h->n_chunks || rr->off != pos)
			return bad(v->why, v->whylen, "entry %llu: bad chunk list",
				   (unsigned long long)i);
		pos += v->c[rr->chunk].raw_len;
	}
	if (pos != x->size)
		return bad(v->why, v->whylen, "entry %llu: chunks do not cover size",
			   (unsigned long long)i);
	return 0;
}

/* Entry i as its kind wants it; a directory adds its children to *members. */
static int validate_kind(const struct vctx *v, uint64_t i, uint64_t *members)
{
	const struct cat_header *h = v->h;
	const struct cat_entry *x = &v->e[i];

	if (x->mtime_nsec >= 1000000000u)
		return bad(v->why, v->whylen, "entry %llu: bad mtime", (unsigned long long)i);
	switch (x->mode & S_IFMT) {
	case S_IFDIR:
		if (x->count && (x->first <= i || x->first > h->n_entries ||
				 x->count > h->n_entries - x->first))
			return bad(v->why, v->whylen, "entry %llu: bad children",
				   (unsigned long long)i);
		if (x->ino != i)
			return bad(v->why, v->whylen, "entry %llu: linked directory",
				   (unsigned long long)i);
		*members += x->count;
		return 0;
	case S_IFLNK:
		if (x->count == 0 || x->count > CATALOG_MAX_TARGET || x->first > h->strings_len ||
		    x->count > h->strings_len - x->first || memchr(v->s + x->first, 0, x->count) ||
		    (x->ino != i && (h->version < 2 || !member_ok(v->e, h->n_entries, i))))
			return bad(v->why, v->whylen, "entry %llu: bad symlink",
				   (unsigned long long)i);
		return 0;
	case S_IFIFO:
	case S_IFSOCK:
	case S_IFCHR:
	case S_IFBLK:
		if (h->version < 2 || x->count || x->size ||
		    ((S_ISFIFO(x->mode) || S_ISSOCK(x->mode)) && x->first) ||
		    (x->ino != i && !member_ok(v->e, h->n_entries, i)))
			return bad(v->why, v->whylen, "entry %llu: bad special file",
				   (unsigned long long)i);
		return 0;
	case S_IFREG:
		if (x->ino >= h->n_entries || (x->ino != i && !member_ok(v->e, h->n_entries, i)))
			return bad(v->why, v->whylen, "entry %llu: bad link group",
				   (unsigned long long)i);
		return x->ino == i ? validate_refs(v, i) : 0;
	default: return bad(v->why, v->whylen, "entry %llu: bad type", (unsigned long long)i);
	}
}

static int validate(const void *p, size_t n, char *why, size_t whylen, uint16_t **depthp)
{
	struct cat_header hc;
	const struct cat_header *h = &hc;
	struct vctx v;
	uint64_t i, members = 0;
	int rc = read_header(p, n, &hc, why, whylen);

	if (rc)
		return rc;
	if (h->total_size != n)
		return bad(why, whylen, "truncated: %zu bytes of %llu", n,
			   (unsigned long long)h->total_size);
	if (!section_ok(h->off_entries, h->n_entries, sizeof(struct cat_entry), n) ||
	    !section_ok(h->off_refs, h->n_refs, sizeof(struct cat_ref), n) ||
	    !section_ok(h->off_chunks, h->n_chunks, sizeof(struct cat_chunk), n) ||
	    !section_ok(h->off_packs, h->n_packs, sizeof(struct cas_id), n) ||
	    !section_ok(h->off_reads, h->n_reads, sizeof(uint32_t), n) ||
	    (h->n_xattrs && !section_ok(h->off_xattrs, h->n_xattrs, sizeof(struct cat_xattr), n)) ||
	    h->off_strings < h->header_size || h->off_strings > n ||
	    h->strings_len > n - h->off_strings)
		return bad(why, whylen, "section out of bounds");
	if (h->n_entries < 1 || h->n_entries > UINT32_MAX || h->n_chunks > UINT32_MAX ||
	    h->n_packs > UINT32_MAX)
		return bad(why, whylen, "bad entry count");
	v.h = h;
	v.e = (const void *)((const uint8_t *)p + h->off_entries);
	v.r = (const void *)((const uint8_t *)p + h->off_refs);
	v.c = (const void *)((const uint8_t *)p + h->off_chunks);
	v.s = (const char *)p + h->off_strings;
	v.why = why;
	v.whylen = whylen;
	v.depth = *depthp = malloc(h->n_entries * sizeof(*v.depth));
	if (!v.depth)
		return bad(why, whylen, "out of memory for %llu entries",
			   (unsigned long long)h->n_entries);
	v.depth[0] = 0;
	rc = validate_chunks(&v, (const void *)((const uint8_t *)p + h->off_reads));
	if (rc)
		return rc;
	if (!S_ISDIR(v.e[0].mode) || v.e[0].parent != 0 || v.e[0].name_len != 0)
		return bad(why, whylen, "root is not a directory");
	for (i = 0; i < h->n_entries; i++)
		if ((rc = validate_place(&v, i)) != 0 || (rc = validate_kind(&v, i, &members)) != 0)
			return rc;
	/* every non-root entry lies in its parent's range; equality means it
	 * lies in no other, so no directory lists a stranger */
	if (members != h->n_entries - 1)
		return bad(why, whylen, "overlapping directories");
	/* off_xattrs is checked only when there are xattrs: no pointer from it otherwise */
	return validate_xattrs(
		h, v.e, h->n_xattrs ? (const void *)((const uint8_t *)p + h->off_xattrs) : NULL,
		v.s, why, whylen);
}

int catalog_validate(const void *p, size_t n, char *why, size_t whylen)
{
	uint16_t *depth = NULL;
	int rc = validate(p, n, why, whylen, &depth);

	free(depth);
	return rc;
}

static void fill(struct catalog *c)
{
	read_header(c->base, c->size, &c->h_, NULL, 0);
	c->h = &c->h_;
	c->e = (const void *)(c->base + c->h->off_entries);
	c->r = (const void *)(c->base + c->h->off_refs);
	c->c = (const void *)(c->base + c->h->off_chunks);
	c->p = (const void *)(c->base + c->h->off_packs);
	c->rd = (const void *)(c->base + c->h->off_reads);
	c->x = c->h->n_xattrs ? (const void *)(c->base + c->h->off_xattrs) : NULL;
	c->s = (const char *)c->base + c->h->off_strings;
}

int catalog_open_mem(const void *p, size_t n, struct catalog **out, char *why, size_t whylen)
{
	struct catalog *c;
	int rc;

	rc = catalog_validate(p, n, why, whylen);
	if (rc)
		return rc;
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->base = p;
	c->size = n;
	fill(c);
	*out = c;
	return 0;
}

int catalog_open(const char *path, struct catalog **out, char *why, size_t whylen)
{
	struct catalog *c = NULL;
	struct stat st;
	void *m = MAP_FAILED;
	int fd, rc;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0) {
		rc = -errno;
		goto out;
	}
	if ((uint64_t)st.st_size > CATALOG_MAX_BYTES) {
		rc = bad(why, whylen, "catalog of %lld bytes is over the cap",
			 (long long)st.st_size);
		goto out;
	}
	if (st.st_size < (off_t)sizeof(struct cat_header)) {
		rc = bad(why, whylen, "truncated: %lld bytes", (long long)st.st_size);
		goto out;
	}
	m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
	if (m == MAP_FAILED) {
		rc = -errno;
		goto out;
	}
	rc = catalog_validate(m, (size_t)st.st_size, why, whylen);
	if (rc)
		goto out;
	c = calloc(1, sizeof(*c));
	if (!c) {
		rc = -ENOMEM;
		goto out;
	}
	c->base = m;
	c->size = (size_t)st.st_size;
	c->mapped = 1;
	fill(c);
	*out = c;
	m = MAP_FAILED;
out:
	if (m != MAP_FAILED)
		munmap(m, (size_t)st.st_size);
	close(fd);
	return rc;
}

void catalog_release_pages(const struct catalog *c)
{
	if (c && c->mapped)
		madvise((void *)c->base, c->size, MADV_DONTNEED);
}

void catalog_close(struct catalog *c)
{
	if (!c)
		return;
	if (c->mapped)
		munmap((void *)c->base, c->size);
	free(c);
}

const struct cat_header *catalog_header(const struct catalog *c)
{
	return c->h;
}

uint32_t catalog_count(const struct catalog *c)
{
	return (uint32_t)c->h->n_entries;
}

/*
 * The accessors below take indices the caller got from this catalog (it
 * was validated when opened: every index in it is in range); an index out
 * of range is a bug here, not bad input, and a debug build stops on it.
 */
const struct cat_entry *catalog_entry(const struct catalog *c, uint32_t idx)
{
	assert(idx < c->h->n_entries);
	return &c->e[idx];
}

const char *catalog_name(const struct catalog *c, const struct cat_entry *e)
{
	return c->s + e->name_off;
}

const char *catalog_target(const struct catalog *c, const struct cat_entry *e)
{
	return c->s + e->first;
}

const struct cat_ref *catalog_refs(const struct catalog *c, const struct cat_entry *e)
{
	assert(e->first <= c->h->n_refs && e->count <= c->h->n_refs - e->first);
	return &c->r[e->first];
}

const struct cat_chunk *catalog_chunk(const struct catalog *c, uint32_t idx)
{
	assert(idx < c->h->n_chunks);
	return &c->c[idx];
}

const struct cas_id *catalog_pack(const struct catalog *c, uint32_t idx)
{
	assert(idx < c->h->n_packs);
	return &c->p[idx];
}

const struct cat_xattr *catalog_xattrs(const struct catalog *c, uint32_t idx, uint32_t *n)
{
	uint64_t lo = 0, hi = c->h->n_xattrs, end;

	*n = 0;
	if (!c->x)
		return NULL;
	while (lo < hi) { /* first with entry >= idx */
		uint64_t mid = lo + (hi - lo) / 2;

		if (c->x[mid].entry < idx)
			lo = mid + 1;
		else
			hi = mid;
	}
	for (end = lo; end < c->h->n_xattrs && c->x[end].entry == idx; end++)
		;
	*n = (uint32_t)(end - lo);
	return &c->x[lo];
}

const char *catalog_str(const struct catalog *c, uint64_t off)
{
	return c->s + off;
}

const uint32_t *catalog_reads(const struct catalog *c, uint64_t *n)
{
	*n = c->h->n_reads;
	return c->rd;
}

int catalog_lookup(const struct catalog *c, uint32_t dir, const char *name, size_t len,
		   uint32_t *out)
{
	const struct cat_entry *d = &c->e[dir];
	uint64_t lo, hi;

	if (!S_ISDIR(d->mode))
		return -ENOTDIR;
	lo = d->first;
	hi = d->first + d->count;
	while (lo < hi) {
		uint64_t mid = lo + (hi - lo) / 2;
		const struct cat_entry *m = &c->e[mid];
		int cmp = catalog_name_cmp(c->s + m->name_off, m->name_len, name, len);

		if (cmp == 0) {
			*out = (uint32_t)mid;
			return 0;
		}
		if (cmp < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -ENOENT;
}

uint32_t catalog_ref_at(const struct catalog *c, const struct cat_entry *e, uint64_t off)
{
	const struct cat_ref *r = &c->r[e->first];
	uint32_t lo = 0, hi = e->count;

	/* last ref with r.off <= off */
	while (hi - lo > 1) {
		uint32_t mid = lo + (hi - lo) / 2;

		if (r[mid].off <= off)
			lo = mid;
		else
			hi = mid;
	}
	return (uint32_t)e->first + lo;
}

int catalog_path(const struct catalog *c, uint32_t idx, struct buf *out)
{
	uint32_t stack[CATALOG_MAX_DEPTH];
	int depth = 0, rc;

	buf_reset(out);
	while (idx != 0) {
		if (depth == (int)ARRAY_SIZE(stack))
			return -ENAMETOOLONG;
		stack[depth++] = idx;
		idx = c->e[idx].parent;
	}
	while (depth > 0) {
		const struct cat_entry *e = &c->e[stack[--depth]];

		if (out->len) {
			rc = buf_append(out, "/", 1);
			if (rc)
				return rc;
		}
		rc = buf_append(out, c->s + e->name_off, e->name_len);
		if (rc)
			return rc;
	}
	rc = buf_append(out, "", 1);
	if (rc)
		return rc;
	out->len--;
	return 0;
}
