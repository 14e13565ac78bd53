/* Key records and prefix indexes as a hostile remote would serve them. */
#include "fuzz.h"
#include "repo.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct buf b = BUF_INIT;
	struct key_rec rec, *v = NULL;
	size_t n = 0;

	if (size > INDEX_RECORD_CAP)
		return 0;
	log_fd = -1;
	buf_append(&b, data, size);
	if (keys_parse_index(&b, "fuzz", "", &v, &n) == 0)
		free(v);
	if (size <= KEY_RECORD_CAP)
		(void)keys_parse_record(&b, "k", "fuzz", &rec); /* any answer: no crash, no leak */
	buf_free(&b);
	return 0;
}
