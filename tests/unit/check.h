/* Minimal assertions for the C unit tests: count, report, exit non-zero. */
#ifndef STASH_CHECK_H
#define STASH_CHECK_H

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

static int check_failed, check_passed;

#define CHECK(cond)                                                                                \
	do {                                                                                       \
		if (cond) {                                                                        \
			check_passed++;                                                            \
		} else {                                                                           \
			check_failed++;                                                            \
			fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);   \
		}                                                                                  \
	} while (0)

#define CHECK_EQ(a, b)                                                                             \
	do {                                                                                       \
		long long _a = (long long)(a), _b = (long long)(b);                                \
		if (_a == _b) {                                                                    \
			check_passed++;                                                            \
		} else {                                                                           \
			check_failed++;                                                            \
			fprintf(stderr, "%s:%d: CHECK_EQ failed: %s = %lld, %s = %lld\n",          \
				__FILE__, __LINE__, #a, _a, #b, _b);                               \
		}                                                                                  \
	} while (0)

static inline int check_done(const char *name)
{
	printf("%s: %d checks passed, %d failed\n", name, check_passed, check_failed);
	return check_failed ? 1 : 0;
}

/* deterministic pseudo-random bytes */
static inline void fill_random(unsigned char *p, size_t n, unsigned long long seed)
{
	unsigned long long x = seed * 2654435761ULL + 1;
	size_t i;

	for (i = 0; i < n; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		p[i] = (unsigned char)(x >> 24);
	}
}

#endif
