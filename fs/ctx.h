/*
 * What the request handlers (fs/ops.c) and the session around them
 * (fs/serve.c: setup, the threads that look up and push ahead, teardown)
 * share.  Private to fs/.
 */
#ifndef STASH_FS_CTX_H
#define STASH_FS_CTX_H

#define FUSE_USE_VERSION 312
#include "fetch.h"
#include "lister.h"
#include "mount.h"
#include "overlay.h"
#include "../store/tuning.h"

#include <fuse_lowlevel.h>
#include <limits.h>
#include <pthread.h>
#include <stdint.h>

/*
 * Files have no handles.  The kernel is told FUSE_NO_OPEN_SUPPORT, so it
 * sends no OPEN or RELEASE for files (two round trips fewer for every
 * file a job reads), and reads and writes find the content by inode.
 * Descriptors live in a small table keyed by inode: a lower file's
 * current chunk (its cache file, so a sequential reader keeps one
 * descriptor and its readahead state) or an upper file's data file.  A
 * read always asks the overlay where the content is, so a reader sees a
 * copy-up made by another opener at once.
 */
#define FD_SLOTS_BITS 8
#define UPPER UINT32_MAX /* the chunk of a data file's slot */
#define NO_CHUNK (UINT32_MAX - 1)

struct fd_slot {
	uint64_t ino;
	uint32_t chunk;
	int fd; /* -1: empty */
	int refs; /* requests using fd: it is replaced only at 0 */
};

struct fd_ref {
	int fd;
	struct fd_slot *slot; /* NULL: a private descriptor, closed by fd_put */
};

struct fs_ctx {
	struct fuse_session *se;
	struct ov *ov;
	struct fetcher *f;
	struct catalog *cat;
	struct mount_stats *stats;
	char store[PATH_MAX];
	int no_open;
	uint64_t *pushed; /* bit per snapshot inode: its bytes are in the kernel's cache */
	uint64_t *ahead; /* bit per snapshot inode: pushed ahead, no open seen since */
	uint64_t n_pushed; /* bits, in each */
	struct lister *lister; /* NULL: no directories listed ahead */
	int writeback; /* serve_opts.writeback */
	uint64_t *used; /* --track-use: bit per catalog entry the job looked up
			 * (STATE/used.bits, mapped shared); NULL: not kept */
	uint64_t n_used, used_bytes;
	pthread_mutex_t fd_lock;
	struct fd_slot slots[1u << FD_SLOTS_BITS];
};

/* The request handlers (fs/ops.c). */
extern const struct fuse_lowlevel_ops fs_ops;

/* A snapshot file small enough to push: one chunk, at most PUSH_MAX. */
int push_size(const struct cat_entry *e);
/* Put small lower file ino's bytes in the kernel's page cache (fs/ops.c). */
int push_small(struct fs_ctx *c, fuse_ino_t ino, int ahead);

#endif
