/*
 * Chunker: sizes within bounds, deterministic, and an insertion in the
 * middle of a large buffer leaves most chunks unchanged (the property that
 * makes a 1% change upload about 1%).
 */
#include "../../store/cas.h"
#include "../../store/chunker.h"
#include "check.h"

#include <string.h>

#define N (48u << 20)

static size_t cut_all(const unsigned char *p, size_t n, struct cas_id *ids, size_t *lens)
{
	size_t off = 0, k = 0;

	while (off < n) {
		size_t c = chunker_next(&chunker_default, p + off, n - off, 1);

		lens[k] = c;
		cas_hash(p + off, c, &ids[k]);
		k++;
		off += c;
	}
	return k;
}

int main(void)
{
	static struct cas_id a[1024], b[1024];
	static size_t la[1024], lb[1024];
	unsigned char *p = malloc(N + 100), *q = malloc(N + 100);
	size_t na, nb, i, j, shared = 0, total = 0, minlen = SIZE_MAX, maxlen = 0;

	fill_random(p, N, 7);
	na = cut_all(p, N, a, la);
	for (i = 0; i < na; i++) {
		total += la[i];
		if (i + 1 < na && la[i] < minlen)
			minlen = la[i];
		if (la[i] > maxlen)
			maxlen = la[i];
	}
	CHECK_EQ(total, N);
	CHECK(minlen >= CHUNK_MIN);
	CHECK(maxlen <= CHUNK_MAX);
	/* average near 1 MiB: 48 MiB gives roughly 25-70 chunks */
	CHECK(na > 20 && na < 80);
	printf("chunks: %zu, average %zu KiB\n", na, total / na / 1024);

	/* deterministic */
	nb = cut_all(p, N, b, lb);
	CHECK_EQ(na, nb);
	CHECK(memcmp(a, b, na * sizeof(a[0])) == 0);

	/* insert 100 bytes in the middle */
	memcpy(q, p, N / 2);
	memset(q + N / 2, 'x', 100);
	memcpy(q + N / 2 + 100, p + N / 2, N / 2);
	nb = cut_all(q, N + 100, b, lb);
	for (i = 0; i < nb; i++)
		for (j = 0; j < na; j++)
			if (!memcmp(&b[i], &a[j], sizeof(a[0]))) {
				shared++;
				break;
			}
	printf("after a 100-byte insert: %zu of %zu chunks shared\n", shared, nb);
	CHECK(shared + 3 >= nb);

	/* need-more-data contract */
	CHECK_EQ(chunker_next(&chunker_default, p, CHUNK_MIN - 1, 0), 0);
	CHECK_EQ(chunker_next(&chunker_default, p, CHUNK_MIN - 1, 1), CHUNK_MIN - 1);
	CHECK_EQ(chunker_next(&chunker_default, p, 0, 1), 0);
	/* all zeros: no cut point, so max-size chunks */
	memset(q, 0, CHUNK_MAX + 10);
	CHECK_EQ(chunker_next(&chunker_default, q, CHUNK_MAX + 10, 0), CHUNK_MAX);
	free(p);
	free(q);
	return check_done("test_chunker");
}
