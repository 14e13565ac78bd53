/*
 * The list of condemned objects (prune/condemned) as a remote may hand it
 * to a publish or a prune: whatever it holds, reading it does not crash or
 * leak, keeps only lines naming packs/, catalogs/ or sources/ objects by
 * 64 hex digits, and what it writes back reads back the same.
 */
#include "fuzz.h"
#include "prune.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct buf in = BUF_INIT, once = BUF_INIT, twice = BUF_INIT;
	size_t n1 = 0, n2 = 0;

	log_fd = -1;
	buf_append(&in, data, size);
	if (prune_list_normalize(&in, &once, &n1) == 0) {
		/* each kept line: "c|d TIME NAME\n", NAME at most 73 bytes */
		if (once.len > strlen("stashfs-condemned 1\n") + n1 * (2 + 21 + 9 + 65 + 1))
			abort();
		if (prune_list_normalize(&once, &twice, &n2) || n2 != n1 || twice.len != once.len ||
		    memcmp(twice.p, once.p, once.len))
			abort();
	}
	buf_free(&in);
	buf_free(&once);
	buf_free(&twice);
	return 0;
}
