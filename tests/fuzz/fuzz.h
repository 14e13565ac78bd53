/* The entry point every libFuzzer target defines (tools/fuzz runs them). */
#ifndef STASH_FUZZ_H
#define STASH_FUZZ_H

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#endif
