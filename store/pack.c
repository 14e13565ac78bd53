/* Chunk encoding and pack writing; see pack.h. */
#define _GNU_SOURCE
#include "pack.h"
#include "catalog.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>
#include <zstd.h>

struct pack_codec {
	ZSTD_CCtx *cctx;
	ZSTD_DCtx *dctx;
	int level;
};

struct pack_codec *pack_codec_new(int level)
{
	struct pack_codec *pc = calloc(1, sizeof(*pc));

	if (!pc)
		return NULL;
	pc->cctx = ZSTD_createCCtx();
	pc->dctx = ZSTD_createDCtx();
	pc->level = level;
	if (!pc->cctx || !pc->dctx) {
		pack_codec_free(pc);
		return NULL;
	}
	return pc;
}

void pack_codec_free(struct pack_codec *pc)
{
	if (!pc)
		return;
	ZSTD_freeCCtx(pc->cctx);
	ZSTD_freeDCtx(pc->dctx);
	free(pc);
}

int pack_encode(struct pack_codec *pc, const void *raw, size_t n, struct buf *out, uint32_t *flags)
{
	size_t bound = ZSTD_compressBound(n), z;
	int rc;

	buf_reset(out);
	/* tiny chunks rarely shrink and cost a frame header: keep them raw */
	if (n >= 64) {
		rc = buf_reserve(out, bound);
		if (rc)
			return rc;
		z = ZSTD_compressCCtx(pc->cctx, out->p, bound, raw, n, pc->level);
		if (ZSTD_isError(z)) {
			log_debug("zstd: %s", ZSTD_getErrorName(z));
			return -EIO;
		}
		if (z < n - n / PACK_MIN_SAVING) {
			out->len = z;
			*flags = CHUNK_ZSTD;
			return 0;
		}
	}
	rc = buf_append(out, raw, n);
	*flags = 0;
	return rc;
}

int pack_decode(struct pack_codec *pc, const void *stored, size_t stored_len, uint32_t flags,
		void *raw, size_t raw_len, const struct cas_id *expect)
{
	struct cas_id got;

	if (flags & CHUNK_ZSTD) {
		unsigned long long fsz = ZSTD_getFrameContentSize(stored, stored_len);
		size_t z;

		/* the frame must say its size and it must be what the catalog says */
		if (fsz != raw_len)
			return -EBADMSG;
		z = ZSTD_decompressDCtx(pc->dctx, raw, raw_len, stored, stored_len);
		if (ZSTD_isError(z) || z != raw_len)
			return -EBADMSG;
	} else {
		if (stored_len != raw_len)
			return -EBADMSG;
		memcpy(raw, stored, raw_len);
	}
	cas_hash(raw, raw_len, &got);
	if (cas_id_cmp(&got, expect) != 0)
		return -EBADMSG;
	return 0;
}

struct pack_writer {
	int fd;
	uint64_t size;
	struct cas_hasher *h;
	char path[4096];
};

int pack_writer_new(const char *tmpdir, struct pack_writer **out)
{
	struct pack_writer *w = calloc(1, sizeof(*w));
	int rc;

	if (!w)
		return -ENOMEM;
	w->fd = -1;
	w->h = cas_hasher_new();
	if (!w->h) {
		rc = -ENOMEM;
		goto fail;
	}
	/* named by its writer and locked while written: see store_sweep_tmp */
	snprintf(w->path, sizeof(w->path), "%s/pack-%d-XXXXXX", tmpdir, (int)getpid());
	w->fd = mkostemp(w->path, O_CLOEXEC);
	if (w->fd < 0) {
		rc = -errno;
		goto fail;
	}
	(void)flock(w->fd, LOCK_EX | LOCK_NB);
	*out = w;
	return 0;
fail:
	cas_hasher_free(w->h);
	free(w);
	return rc;
}

int pack_writer_append(struct pack_writer *w, const void *data, size_t n, uint64_t *off)
{
	int rc = write_full(w->fd, data, n);

	if (rc)
		return rc;
	cas_hasher_update(w->h, data, n);
	*off = w->size;
	w->size += n;
	return 0;
}

uint64_t pack_writer_size(const struct pack_writer *w)
{
	return w->size;
}

int pack_writer_finish(struct pack_writer *w, struct cas_id *id, char *path)
{
	int rc = 0;

	cas_hasher_final(w->h, id);
	if (fdatasync(w->fd) < 0)
		rc = -errno;
	if (close(w->fd) < 0 && !rc)
		rc = -errno;
	w->fd = -1;
	snprintf(path, 4096, "%s", w->path);
	if (rc)
		unlink(w->path);
	cas_hasher_free(w->h);
	free(w);
	return rc;
}

void pack_writer_abort(struct pack_writer *w)
{
	if (!w)
		return;
	if (w->fd >= 0)
		close(w->fd);
	unlink(w->path);
	cas_hasher_free(w->h);
	free(w);
}
