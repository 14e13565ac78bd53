/*
 * Gear rolling hash: fp = (fp << 1) + gear[byte].  Bit k of fp depends on
 * the last k+1 bytes, so the masks test high bits (a 64-byte window).
 * Before the average size a stricter mask (2 more bits) makes cuts rarer,
 * after it a looser one (2 fewer bits) makes them likelier: chunk sizes
 * cluster around avg (FastCDC's normalized chunking, level 2).
 */
#include "chunker.h"

#include <pthread.h>

const struct chunker_params chunker_default = { CHUNK_MIN, CHUNK_AVG, CHUNK_MAX };

static uint64_t gear[256];
static pthread_once_t gear_once = PTHREAD_ONCE_INIT;

static void gear_init(void)
{
	/* splitmix64 from a fixed seed: the table is part of the format,
	 * since it decides where chunks are cut. */
	uint64_t x = 0x5354415348465321ULL; /* "STASHFS!" */
	int i;

	for (i = 0; i < 256; i++) {
		uint64_t z = (x += 0x9e3779b97f4a7c15ULL);

		z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
		z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
		gear[i] = z ^ (z >> 31);
	}
}

static unsigned log2u(size_t v)
{
	unsigned b = 0;

	while (v > 1) {
		v >>= 1;
		b++;
	}
	return b;
}

size_t chunker_next(const struct chunker_params *p, const uint8_t *data, size_t n, int eof)
{
	unsigned bits = log2u(p->avg);
	uint64_t mask_s = ~0ULL << (64 - (bits + 2));
	uint64_t mask_l = ~0ULL << (64 - (bits - 2));
	size_t i, lim, mid;
	uint64_t fp = 0;

	pthread_once(&gear_once, gear_init);
	if (n <= p->min)
		return eof ? n : 0;
	lim = n < p->max ? n : p->max;
	mid = p->avg < lim ? p->avg : lim;
	/* hash is primed over the 64 bytes before min so cuts do not depend
	 * on where the window started */
	i = p->min > 64 ? p->min - 64 : 0;
	for (; i < p->min; i++)
		fp = (fp << 1) + gear[data[i]];
	for (; i < mid; i++) {
		fp = (fp << 1) + gear[data[i]];
		if (!(fp & mask_s))
			return i + 1;
	}
	for (; i < lim; i++) {
		fp = (fp << 1) + gear[data[i]];
		if (!(fp & mask_l))
			return i + 1;
	}
	if (lim == p->max)
		return lim;
	return eof ? n : 0;
}
