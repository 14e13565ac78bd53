/* Pack encoding: round trip, raw for incompressible data, corruption caught. */
#include "../../store/catalog.h"
#include "../../store/pack.h"
#include "check.h"

#include <string.h>
#include <unistd.h>

int main(void)
{
	struct pack_codec *pc = pack_codec_new(1);
	struct buf enc = BUF_INIT;
	unsigned char raw[100000], out[100000];
	struct cas_id id, pid;
	struct pack_writer *w;
	uint32_t flags;
	uint64_t off;
	char path[4096];
	struct buf file = BUF_INIT;

	memset(raw, 'a', sizeof(raw));
	cas_hash(raw, sizeof(raw), &id);
	CHECK_EQ(pack_encode(pc, raw, sizeof(raw), &enc, &flags), 0);
	CHECK_EQ(flags, CHUNK_ZSTD);
	CHECK(enc.len < 1000);
	CHECK_EQ(pack_decode(pc, enc.p, enc.len, flags, out, sizeof(out), &id), 0);
	CHECK(memcmp(raw, out, sizeof(raw)) == 0);
	/* wrong expected size or flipped byte: refused */
	CHECK_EQ(pack_decode(pc, enc.p, enc.len, flags, out, sizeof(out) - 1, &id), -EBADMSG);
	enc.p[enc.len / 2] ^= 0x55;
	CHECK(pack_decode(pc, enc.p, enc.len, flags, out, sizeof(out), &id) == -EBADMSG);

	fill_random(raw, sizeof(raw), 3);
	cas_hash(raw, sizeof(raw), &id);
	CHECK_EQ(pack_encode(pc, raw, sizeof(raw), &enc, &flags), 0);
	CHECK_EQ(flags, 0);
	CHECK_EQ(enc.len, sizeof(raw));
	CHECK_EQ(pack_decode(pc, enc.p, enc.len, flags, out, sizeof(out), &id), 0);
	out[0] ^= 1;
	enc.p[0] ^= 1;
	CHECK_EQ(pack_decode(pc, enc.p, enc.len, flags, out, sizeof(out), &id), -EBADMSG);

	/* writer: offsets and the pack id is the hash of the bytes */
	CHECK_EQ(pack_writer_new("/tmp", &w), 0);
	CHECK_EQ(pack_writer_append(w, "hello", 5, &off), 0);
	CHECK_EQ(off, 0);
	CHECK_EQ(pack_writer_append(w, "world", 5, &off), 0);
	CHECK_EQ(off, 5);
	CHECK_EQ(pack_writer_size(w), 10);
	CHECK_EQ(pack_writer_finish(w, &pid, path), 0);
	CHECK_EQ(read_file(path, &file, 100), 0);
	CHECK_EQ(file.len, 10);
	CHECK(memcmp(file.p, "helloworld", 10) == 0);
	cas_hash("helloworld", 10, &id);
	CHECK(cas_id_cmp(&id, &pid) == 0);
	unlink(path);
	buf_free(&file);
	buf_free(&enc);
	pack_codec_free(pc);
	return check_done("test_pack");
}
