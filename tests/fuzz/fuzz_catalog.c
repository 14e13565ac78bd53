/*
 * A catalog from a hostile publisher: catalog_validate, then every accessor
 * the mount and restore use, on whatever validation lets through.
 */
#include "fuzz.h"
#include "catalog.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct catalog *c = NULL;
	struct buf path = BUF_INIT;
	uint8_t *copy;
	uint32_t i, n, found;
	uint64_t nr, k;

	/* catalogs are mapped at page alignment: give the image an aligned copy */
	copy = aligned_alloc(64, (size + 64) & ~(size_t)63);
	if (!copy)
		return 0;
	memcpy(copy, data, size);
	if (catalog_open_mem(copy, size, &c, NULL, 0) == 0) {
		n = catalog_count(c);
		for (i = 0; i < n && i < 4096; i++) {
			const struct cat_entry *e = catalog_entry(c, i);
			const char *nm = catalog_name(c, e);

			catalog_path(c, i, &path);
			if (i > 0)
				catalog_lookup(c, e->parent, nm, e->name_len, &found);
			catalog_lookup(c, i, "x", 1, &found);
			if (S_ISLNK(e->mode))
				(void)catalog_target(c, e)[e->count - 1];
			if (e->ino == i) {
				uint32_t nx, x;
				const struct cat_xattr *xa = catalog_xattrs(c, i, &nx);

				for (x = 0; x < nx; x++) {
					(void)catalog_str(c, xa[x].name_off)[xa[x].name_len - 1];
					if (xa[x].value_len)
						(void)catalog_str(
							c, xa[x].value_off)[xa[x].value_len - 1];
				}
			}
			if (S_ISREG(e->mode) && e->ino == i && e->count) {
				const struct cat_ref *r = catalog_refs(c, e);
				uint32_t j = catalog_ref_at(c, e, e->size ? e->size - 1 : 0);

				(void)catalog_chunk(c, r[j - e->first].chunk)->pack_off;
				(void)catalog_pack(c, catalog_chunk(c, r[0].chunk)->pack);
			}
		}
		const uint32_t *rd = catalog_reads(c, &nr);

		for (k = 0; k < nr && k < 4096; k++)
			(void)catalog_chunk(c, rd[k])->raw_len;
		catalog_close(c);
	}
	buf_free(&path);
	free(copy);
	return 0;
}
