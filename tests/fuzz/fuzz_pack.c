/*
 * A pack's chunk as a hostile remote would send it: the first 8 bytes pick
 * the catalog's flags and raw length, the rest is the stored bytes.
 */
#include "fuzz.h"
#include "pack.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct pack_codec *pc;
	struct cas_id id;
	uint32_t flags, raw_len;
	uint8_t *raw;

	if (size < 8)
		return 0;
	if (!pc)
		pc = pack_codec_new(1);
	memcpy(&flags, data, 4);
	memcpy(&raw_len, data + 4, 4);
	flags &= 1;
	raw_len %= 1u << 20; /* a catalog allows 64 MiB; keep runs fast */
	raw = malloc(raw_len ? raw_len : 1);
	if (!raw)
		return 0;
	cas_hash(data + 8, size - 8, &id);
	pack_decode(pc, data + 8, size - 8, flags, raw, raw_len, &id);
	free(raw);
	return 0;
}
