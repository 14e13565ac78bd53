/*
 * Catalog: build a small tree, look names up, walk refs, and check that
 * damaged images are refused (truncation, bad parent, unsorted names,
 * overlapping directories) and that random corruption never crashes the
 * validator or lets an out-of-range catalog open.
 */
#include "../../store/catalog.h"
#include "check.h"

#include <string.h>
#include <sys/stat.h>

/* root/{a (dir), b (file, 2 chunks), c (symlink)}, a/{x (file), y (link to b)};
 * xattrs: root user.a=1, b user.b=22 and user.c="" */
static void build(struct buf *img)
{
	static const char strings[] = "abcxytargetuser.auser.buser.c122";
	static const struct cat_xattr x[3] = { { 0, 6, 11, 29, 1, 0 },
					       { 2, 6, 17, 30, 2, 0 },
					       { 2, 6, 23, 32, 0, 0 } };
	struct cat_entry e[6];
	struct cat_ref r[3];
	struct cat_chunk ch[2];
	struct cas_id packs[1];

	memset(e, 0, sizeof(e));
	memset(ch, 0, sizeof(ch));
	memset(packs, 0, sizeof(packs));
	e[0] = (struct cat_entry){ 0, S_IFDIR | 0755, 0, 0, 0, 1, 0, 3, 0, 0, 0, 1, 3, 0 };
	e[1] = (struct cat_entry){ 0, S_IFDIR | 0700, 0, 0, 0, 2, 5, 2, 1, 1, 0, 4, 2, 0 };
	e[2] = (struct cat_entry){
		0, S_IFREG | 0644, 0, 0, 300, 3, 999999999, 2, 2, 1, 1, 0, 2, 0
	};
	e[3] = (struct cat_entry){ 0, S_IFLNK | 0777, 0, 0, 6, 4, 0, 1, 3, 1, 2, 5, 6, 0 };
	e[4] = (struct cat_entry){ 1, S_IFREG | 0600, 0, 0, 100, 5, 0, 1, 4, 1, 3, 2, 1, 0 };
	e[5] = (struct cat_entry){ 1, S_IFREG | 0644, 0, 0, 300, 3, 0, 2, 2, 1, 4, 0, 0, 0 };
	ch[0] = (struct cat_chunk){ { { 1 } }, 0, 200, 0, 200, 0 };
	ch[1] = (struct cat_chunk){ { { 2 } }, 0, 100, 200, 100, 0 };
	r[0] = (struct cat_ref){ 0, 0, 0 };
	r[1] = (struct cat_ref){ 200, 1, 0 };
	r[2] = (struct cat_ref){ 0, 1, 0 };
	static const uint32_t reads[3] = { 1, 0, 1 };

	CHECK_EQ(catalog_build(img, e, 6, r, 3, ch, 2, packs, 1, reads, 3, x, 3, strings,
			       sizeof(strings) - 1),
		 0);
}

int main(void)
{
	struct buf img = BUF_INIT, path = BUF_INIT, copy = BUF_INIT;
	struct catalog *c = NULL;
	char why[256];
	uint32_t idx;
	unsigned long i, opened = 0;

	build(&img);
	CHECK_EQ(catalog_open_mem(img.p, img.len, &c, why, sizeof(why)), 0);
	CHECK_EQ(catalog_count(c), 6);
	CHECK_EQ(catalog_header(c)->n_files, 2); /* y is a link to b */
	CHECK_EQ(catalog_header(c)->total_bytes, 400);
	CHECK_EQ(catalog_lookup(c, 0, "b", 1, &idx), 0);
	CHECK_EQ(idx, 2);
	CHECK_EQ(catalog_lookup(c, 0, "c", 1, &idx), 0);
	CHECK_EQ(idx, 3);
	CHECK(memcmp(catalog_target(c, catalog_entry(c, 3)), "target", 6) == 0);
	CHECK_EQ(catalog_lookup(c, 0, "zz", 2, &idx), -ENOENT);
	CHECK_EQ(catalog_lookup(c, 0, "", 0, &idx), -ENOENT);
	CHECK_EQ(catalog_lookup(c, 2, "x", 1, &idx), -ENOTDIR);
	CHECK_EQ(catalog_lookup(c, 1, "y", 1, &idx), 0);
	CHECK_EQ(catalog_entry(c, idx)->ino, 2);
	CHECK_EQ(catalog_path(c, 5, &path), 0);
	CHECK(path.len == 3 && memcmp(path.p, "a/y", 3) == 0);
	CHECK_EQ(catalog_path(c, 0, &path), 0);
	CHECK_EQ(path.len, 0);
	CHECK_EQ(catalog_ref_at(c, catalog_entry(c, 2), 0), 0);
	CHECK_EQ(catalog_ref_at(c, catalog_entry(c, 2), 199), 0);
	CHECK_EQ(catalog_ref_at(c, catalog_entry(c, 2), 200), 1);
	CHECK_EQ(catalog_ref_at(c, catalog_entry(c, 2), 299), 1);
	{
		uint64_t nr;
		const uint32_t *rd = catalog_reads(c, &nr);

		CHECK_EQ(nr, 3);
		CHECK(rd[0] == 1 && rd[1] == 0 && rd[2] == 1);
	}
	{
		uint32_t nx;
		const struct cat_xattr *x = catalog_xattrs(c, 2, &nx);

		CHECK_EQ(nx, 2);
		CHECK(memcmp(catalog_str(c, x[0].name_off), "user.b", 6) == 0);
		CHECK(x[0].value_len == 2 && memcmp(catalog_str(c, x[0].value_off), "22", 2) == 0);
		CHECK_EQ(x[1].value_len, 0);
		x = catalog_xattrs(c, 0, &nx);
		CHECK(nx == 1 && memcmp(catalog_str(c, x[0].value_off), "1", 1) == 0);
		catalog_xattrs(c, 1, &nx);
		CHECK_EQ(nx, 0);
		catalog_xattrs(c, 5, &nx);
		CHECK_EQ(nx, 0);
	}
	catalog_close(c);

	/* a version 1 image (a 144-byte header, no xattrs) still opens */
	{
		struct cat_header h;
		size_t body = img.len - sizeof(h);

		memcpy(&h, img.p, sizeof(h));
		h.version = 1;
		h.header_size = CATALOG_V1_HEADER;
		h.off_entries -= 16;
		h.off_refs -= 16;
		h.off_chunks -= 16;
		h.off_packs -= 16;
		h.off_reads -= 16;
		h.off_strings -= 16;
		h.total_size -= 16;
		buf_reset(&copy);
		buf_append(&copy, &h, CATALOG_V1_HEADER);
		buf_append(&copy, img.p + sizeof(h), body);
		CHECK_EQ(catalog_open_mem(copy.p, copy.len, &c, why, sizeof(why)), 0);
		if (c) {
			uint32_t nx;

			CHECK_EQ(catalog_count(c), 6);
			CHECK_EQ(catalog_header(c)->n_xattrs, 0);
			catalog_xattrs(c, 2, &nx);
			CHECK_EQ(nx, 0);
			catalog_close(c);
			c = NULL;
		}
		/* a FIFO is a version 2 thing */
		{
			struct cat_entry *E = (void *)(copy.p + h.off_entries);

			E[3].mode = S_IFIFO | 0644;
			E[3].first = E[3].count = 0;
			E[3].size = 0;
			CHECK_EQ(catalog_validate(copy.p, copy.len, why, sizeof(why)), -EBADMSG);
		}
	}
	/* ... which version 2 keeps, and devices with their numbers */
	{
		struct cat_header *H;
		struct cat_entry *E;

		buf_reset(&copy);
		buf_append(&copy, img.p, img.len);
		H = (void *)copy.p;
		E = (void *)(copy.p + H->off_entries);
		E[3].mode = S_IFIFO | 0644;
		E[3].first = E[3].count = 0;
		E[3].size = 0;
		CHECK_EQ(catalog_validate(copy.p, copy.len, why, sizeof(why)), 0);
		E[3].mode = S_IFCHR | 0644;
		E[3].first = 0x103;
		CHECK_EQ(catalog_validate(copy.p, copy.len, why, sizeof(why)), 0);
	}

	/* truncation */
	CHECK_EQ(catalog_validate(img.p, img.len - 8, why, sizeof(why)), -EBADMSG);
	CHECK(strstr(why, "truncated") != NULL);
	CHECK_EQ(catalog_validate(img.p, 10, why, sizeof(why)), -EBADMSG);

	/* structural damage, one field at a time */
#define DAMAGE(field_expr)                                                                         \
	do {                                                                                       \
		buf_reset(&copy);                                                                  \
		buf_append(&copy, img.p, img.len);                                                 \
		{                                                                                  \
			struct cat_header *H = (void *)copy.p;                                     \
			struct cat_entry *E = (void *)(copy.p + H->off_entries);                   \
			struct cat_ref *R = (void *)(copy.p + H->off_refs);                        \
			struct cat_xattr *X = (void *)(copy.p + H->off_xattrs);                    \
			(void)E;                                                                   \
			(void)R;                                                                   \
			(void)X;                                                                   \
			field_expr;                                                                \
		}                                                                                  \
		CHECK_EQ(catalog_validate(copy.p, copy.len, why, sizeof(why)), -EBADMSG);          \
	} while (0)

	DAMAGE(E[4].parent = 0); /* not in root's range */
	DAMAGE(E[1].name_off = 2); /* "c" before "b": unsorted */
	DAMAGE(E[2].name_off = 0); /* duplicate "a": not strictly sorted */
	DAMAGE(E[1].count = 3); /* overlaps into root's range */
	DAMAGE(E[2].size = 301); /* refs do not cover the size */
	DAMAGE(R[1].off = 199); /* gap in chunk list */
	DAMAGE(E[5].ino = 3); /* hard link to a symlink */
	DAMAGE(E[3].count = 5000); /* symlink target out of bounds */
	DAMAGE(E[0].mode = S_IFREG | 0644); /* root not a dir */
	DAMAGE(E[2].mtime_nsec = 1000000000); /* bad nanoseconds */
	DAMAGE(E[2].mode = S_IFIFO | 0644); /* a FIFO with content */
	DAMAGE(E[3].first = 0; E[3].mode = S_IFSOCK | 0755); /* a socket with a "target" */
	DAMAGE(X[1].entry = 5); /* an xattr of a link member */
	DAMAGE(X[2].name_off = 17); /* user.b twice: not sorted */
	DAMAGE(X[2].entry = 0); /* entries out of order */
	DAMAGE(X[0].name_len = 0); /* empty name */
	DAMAGE(X[1].value_len = 100); /* value out of bounds */
	DAMAGE(X[0].value_len = CATALOG_MAX_XATTR_VALUE + 1);
	DAMAGE(H->n_xattrs = 1000); /* section out of bounds */

	/* random corruption: never crashes, and what opens is in range */
	for (i = 0; i < 20000; i++) {
		unsigned char rnd[8];
		size_t pos;

		buf_reset(&copy);
		buf_append(&copy, img.p, img.len);
		fill_random(rnd, sizeof(rnd), i + 1);
		pos = (rnd[0] | rnd[1] << 8) % copy.len;
		copy.p[pos] ^= (unsigned char)(rnd[2] | 1);
		if (rnd[3] & 1)
			copy.p[(pos + rnd[4]) % copy.len] ^= rnd[5];
		if (catalog_open_mem(copy.p, copy.len, &c, why, sizeof(why)) == 0) {
			uint32_t k;

			opened++;
			for (k = 0; k < catalog_count(c); k++) {
				const struct cat_entry *e = catalog_entry(c, k);

				catalog_path(c, k, &path);
				if (S_ISDIR(e->mode))
					catalog_lookup(c, k, "x", 1, &idx);
				if (S_ISREG(e->mode) && e->ino == k && e->count)
					catalog_ref_at(c, e, e->size ? e->size - 1 : 0);
			}
			catalog_close(c);
		}
	}
	printf("random corruption: %lu of 20000 still valid (harmless fields)\n", opened);
	CHECK(opened < 20000);
	buf_free(&img);
	buf_free(&copy);
	buf_free(&path);
	return check_done("test_catalog");
}
