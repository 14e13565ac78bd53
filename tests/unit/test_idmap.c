/* idmap: insert many, find all, replace, miss. */
#include "../../store/idmap.h"
#include "check.h"

int main(void)
{
	struct idmap *m = idmap_new();
	struct cas_id id;
	uint32_t v, i;
	int bad = 0;

	for (i = 0; i < 100000; i++) {
		cas_hash(&i, sizeof(i), &id);
		if (idmap_put(m, &id, i))
			bad++;
	}
	CHECK_EQ(bad, 0);
	CHECK_EQ(idmap_count(m), 100000);
	for (i = 0; i < 100000; i++) {
		cas_hash(&i, sizeof(i), &id);
		if (idmap_get(m, &id, &v) || v != i)
			bad++;
	}
	CHECK_EQ(bad, 0);
	i = 5;
	cas_hash(&i, sizeof(i), &id);
	CHECK_EQ(idmap_put(m, &id, 77), 0);
	CHECK_EQ(idmap_get(m, &id, &v), 0);
	CHECK_EQ(v, 77);
	CHECK_EQ(idmap_count(m), 100000);
	i = 100001;
	cas_hash(&i, sizeof(i), &id);
	CHECK_EQ(idmap_get(m, &id, &v), -2);
	idmap_free(m);
	idmap_free(NULL);
	return check_done("test_idmap");
}
