/* A sources manifest as a hostile remote would serve it: the parser only. */
#include "fuzz.h"
#include "sources.h"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct buf b = { (uint8_t *)data, size, size };
	struct sources_iter it;
	struct source_rec *r = malloc(sizeof(*r));

	if (r && sources_iter_init(&it, &b) == 0)
		while (sources_next(&it, r) == 1)
			;
	free(r);
	return 0;
}
