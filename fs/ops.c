/*
 * The FUSE driver (libfuse3 low-level API, multithreaded).
 *
 * Names and attributes come from fs/overlay.c (catalog + writable layer),
 * content from fs/fetch.c (lower files) or the inode's data file (upper).
 * Every reply error goes through reply_err(), which takes -errno: the
 * only place a negative code turns into fuse_reply_err's positive one.
 *
 * Kernel caching: the snapshot never changes under the kernel and every
 * change to the writable layer is made through this mount, so entries,
 * attributes and negative lookups are cached for a day and file pages are
 * kept across opens.
 */
#define _GNU_SOURCE
#include "ctx.h"
#include "uring.h"

#include <errno.h>
#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

struct dh {
	pthread_mutex_t lock;
	int listed;
	struct ov_dirent *v;
	size_t n;
};

static struct fs_ctx *ctx_of(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

static void reply_err(fuse_req_t req, int rc)
{
	/* rc is -errno; 0 would mean success and must not get here */
	fuse_reply_err(req, rc < 0 ? -rc : EIO);
}

/* 0: success with no data; else the -errno */
static void reply_rc(fuse_req_t req, int rc)
{
	if (rc)
		reply_err(req, rc);
	else
		fuse_reply_err(req, 0);
}

static void reply_entry(fuse_req_t req, const struct ov_attr *a)
{
	struct fuse_entry_param e;

	memset(&e, 0, sizeof(e));
	e.ino = a->ino;
	e.generation = 1;
	e.attr_timeout = ATTR_TIMEOUT;
	e.entry_timeout = ATTR_TIMEOUT;
	ov_attr_stat(a, &e.attr);
	fuse_reply_entry(req, &e);
}

static void op_init(void *userdata, struct fuse_conn_info *conn)
{
	struct fs_ctx *c = userdata;

	if (conn->capable & FUSE_CAP_NO_OPEN_SUPPORT)
		c->no_open = 1; /* ENOSYS from open means "no handles" */
	/* no handle to truncate at open: O_TRUNC comes as a setattr */
	conn->want &= ~FUSE_CAP_ATOMIC_O_TRUNC;
	if (conn->capable & FUSE_CAP_SPLICE_WRITE)
		conn->want |= FUSE_CAP_SPLICE_WRITE | FUSE_CAP_SPLICE_MOVE;
	if (conn->capable & FUSE_CAP_PARALLEL_DIROPS)
		conn->want |= FUSE_CAP_PARALLEL_DIROPS;
	if (conn->capable & FUSE_CAP_CACHE_SYMLINKS)
		conn->want |= FUSE_CAP_CACHE_SYMLINKS;
	/* attributes and data change only through this mount */
	conn->want &= ~FUSE_CAP_AUTO_INVAL_DATA;
	if (c->writeback && (conn->capable & FUSE_CAP_WRITEBACK_CACHE))
		conn->want |= FUSE_CAP_WRITEBACK_CACHE;
	conn->max_background = 64;
	conn->congestion_threshold = 48;
	/* --track-use: every name the job resolves comes as a LOOKUP, none
	 * as a READDIRPLUS entry the kernel then answers stat() from */
	if (c->used)
		conn->want &= ~(FUSE_CAP_READDIRPLUS | FUSE_CAP_READDIRPLUS_AUTO);
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct ov_attr a;
	int rc;

	/* the kernel passes names up to 1024 bytes; a component this
	 * filesystem cannot hold is ENAMETOOLONG on every call through it */
	if (strlen(name) > CATALOG_MAX_NAME) {
		reply_err(req, -ENAMETOOLONG);
		return;
	}
	rc = ov_lookup(ctx_of(req)->ov, parent, name, &a);
	__atomic_add_fetch(&ctx_of(req)->stats->lookups, 1, __ATOMIC_RELAXED);
	if (rc == -ENOENT) {
		/* a negative entry the kernel may keep: names appear only through us */
		struct fuse_entry_param e;

		memset(&e, 0, sizeof(e));
		e.entry_timeout = ATTR_TIMEOUT;
		fuse_reply_entry(req, &e);
		return;
	}
	if (rc) {
		reply_err(req, rc);
		return;
	}
	if (a.cat_idx != OV_NONE)
		lister_note(ctx_of(req)->lister, a.cat_idx);
	if (ctx_of(req)->used && a.cat_idx != OV_NONE && a.cat_idx < ctx_of(req)->n_used)
		__atomic_fetch_or(&ctx_of(req)->used[a.cat_idx / 64], 1ull << (a.cat_idx % 64),
				  __ATOMIC_RELAXED);
	reply_entry(req, &a);
}

/* Inode ino's bit in bits (pushed or ahead): set it, or clear it (set 0); 1 if it was set. */
static int ino_bit(struct fs_ctx *c, uint64_t *bits, fuse_ino_t ino, int set)
{
	uint64_t m = 1ull << (ino & 63);

	if (!bits || ino >= c->n_pushed)
		return 0;
	if (set)
		return (__atomic_fetch_or(&bits[ino >> 6], m, __ATOMIC_RELAXED) & m) != 0;
	return (__atomic_fetch_and(&bits[ino >> 6], ~m, __ATOMIC_RELAXED) & m) != 0;
}

static int pushed_bit(struct fs_ctx *c, fuse_ino_t ino, int set)
{
	return ino_bit(c, c->pushed, ino, set);
}

static void fd_forget(struct fs_ctx *c, uint64_t ino);

/* The kernel evicted the inode, and its pages with it: nothing has it
 * open, and an unlinked one can go with its data. */
static void forget_one(struct fs_ctx *c, fuse_ino_t ino)
{
	pushed_bit(c, ino, 0);
	ino_bit(c, c->ahead, ino, 0);
	fd_forget(c, ino);
	ov_forget(c->ov, ino);
}

static void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	(void)nlookup;
	forget_one(ctx_of(req), ino);
	fuse_reply_none(req);
}

static void op_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets)
{
	size_t i;

	for (i = 0; i < count; i++)
		forget_one(ctx_of(req), forgets[i].ino);
	fuse_reply_none(req);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct ov_attr a;
	struct stat st;
	int rc = ov_getattr(ctx_of(req)->ov, ino, &a);

	(void)fi;
	if (rc) {
		reply_err(req, rc);
		return;
	}
	ov_attr_stat(&a, &st);
	fuse_reply_attr(req, &st, ATTR_TIMEOUT);
}

static void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
		       struct fuse_file_info *fi)
{
	struct fs_ctx *c = ctx_of(req);
	struct ov_attr a;
	struct stat st;
	int what = 0, rc;

	(void)fi;
	if (to_set & FUSE_SET_ATTR_SIZE) {
		rc = ov_copy_up(c->ov, ino, attr->st_size == 0);
		if (rc) {
			reply_err(req, rc);
			return;
		}
		what |= OV_SET_SIZE;
	}
	if (to_set & FUSE_SET_ATTR_MODE)
		what |= OV_SET_MODE;
	if (to_set & FUSE_SET_ATTR_UID)
		what |= OV_SET_UID;
	if (to_set & FUSE_SET_ATTR_GID)
		what |= OV_SET_GID;
	if (to_set & FUSE_SET_ATTR_MTIME_NOW)
		what |= OV_SET_MTIME_NOW;
	else if (to_set & FUSE_SET_ATTR_MTIME)
		what |= OV_SET_MTIME;
	if (to_set & FUSE_SET_ATTR_ATIME_NOW)
		what |= OV_SET_ATIME_NOW;
	else if (to_set & FUSE_SET_ATTR_ATIME)
		what |= OV_SET_ATIME;
	rc = ov_setattr(c->ov, ino, what, attr, &a);
	if (rc) {
		reply_err(req, rc);
		return;
	}
	ov_attr_stat(&a, &st);
	fuse_reply_attr(req, &st, ATTR_TIMEOUT);
}

static void op_readlink(fuse_req_t req, fuse_ino_t ino)
{
	char buf[PATH_MAX + 1];
	ssize_t n = ov_readlink(ctx_of(req)->ov, ino, buf, sizeof(buf));

	if (n < 0)
		reply_err(req, (int)n);
	else
		fuse_reply_readlink(req, buf);
}

static void make_node(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		      const char *target, dev_t rdev)
{
	const struct fuse_ctx *fc = fuse_req_ctx(req);
	struct ov_attr a;
	int rc = ov_create(ctx_of(req)->ov, parent, name, mode, fc->uid, fc->gid, target, rdev, &a);

	if (rc)
		reply_err(req, rc);
	else
		reply_entry(req, &a);
}

/* Regular files, FIFOs, sockets and devices (the kernel has checked that
 * the caller may make a device; its files are the kernel's to open). */
static void op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev)
{
	switch (mode & S_IFMT) {
	case S_IFREG:
	case S_IFIFO:
	case S_IFSOCK:
	case S_IFCHR:
	case S_IFBLK: make_node(req, parent, name, mode, NULL, rdev); break;
	default: reply_err(req, -EINVAL);
	}
}

static void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	make_node(req, parent, name, S_IFDIR | (mode & 07777), NULL, 0);
}

static void op_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name)
{
	if (strlen(link) > CATALOG_MAX_TARGET) {
		reply_err(req, -ENAMETOOLONG);
		return;
	}
	make_node(req, parent, name, S_IFLNK | 0777, link, 0);
}

static void op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	int rc = ov_unlink(ctx_of(req)->ov, parent, name, 0);

	reply_rc(req, rc);
}

static void op_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	int rc = ov_unlink(ctx_of(req)->ov, parent, name, 1);

	reply_rc(req, rc);
}

static void op_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
		      const char *newname, unsigned int flags)
{
	int rc = ov_rename(ctx_of(req)->ov, parent, name, newparent, newname, flags);

	reply_rc(req, rc);
}

static void op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname)
{
	struct ov_attr a;
	int rc = ov_link(ctx_of(req)->ov, ino, newparent, newname, &a);

	if (rc)
		reply_err(req, rc);
	else
		reply_entry(req, &a);
}

/*
 * A descriptor for ino's content: chunk's cache file (a lower file) or,
 * with chunk UPPER, the data file.  From the table when it holds it;
 * else opened, and left in the table if its slot is free.  *fresh: opened
 * now.  *prev: the chunk the table held for ino before (NO_CHUNK if none),
 * which tells a reader streaming a file chunk after chunk.  Both may be
 * NULL.
 */
static int fd_get(struct fs_ctx *c, uint64_t ino, uint32_t chunk, struct fd_ref *r, int *fresh,
		  uint32_t *prev)
{
	struct fd_slot *s = &c->slots[(ino * 0x9e3779b97f4a7c15ULL) >> (64 - FD_SLOTS_BITS)];
	int fd;

	pthread_mutex_lock(&c->fd_lock);
	if (prev)
		*prev = s->fd >= 0 && s->ino == ino ? s->chunk : NO_CHUNK;
	if (s->fd >= 0 && s->ino == ino && s->chunk == chunk) {
		s->refs++;
		r->fd = s->fd;
		r->slot = s;
		pthread_mutex_unlock(&c->fd_lock);
		if (fresh)
			*fresh = 0;
		return 0;
	}
	pthread_mutex_unlock(&c->fd_lock);
	if (chunk == UPPER) {
		char path[PATH_MAX];

		ov_data_path(c->ov, ino, path);
		fd = open(path, O_RDWR | O_CLOEXEC);
		if (fd < 0)
			return -errno;
	} else {
		fd = fetch_chunk_fd(c->f, chunk);
		if (fd < 0)
			return fd;
	}
	if (fresh)
		*fresh = 1;
	r->fd = fd;
	r->slot = NULL;
	pthread_mutex_lock(&c->fd_lock);
	if (s->refs == 0) {
		if (s->fd >= 0)
			close(s->fd);
		s->ino = ino;
		s->chunk = chunk;
		s->fd = fd;
		s->refs = 1;
		r->slot = s;
	}
	pthread_mutex_unlock(&c->fd_lock);
	return 0;
}

/* Close ino's data file in the table (unless a request uses it). */
static void fd_forget(struct fs_ctx *c, uint64_t ino)
{
	struct fd_slot *s = &c->slots[(ino * 0x9e3779b97f4a7c15ULL) >> (64 - FD_SLOTS_BITS)];

	pthread_mutex_lock(&c->fd_lock);
	if (s->fd >= 0 && s->ino == ino && s->chunk == UPPER && s->refs == 0) {
		close(s->fd);
		s->fd = -1;
	}
	pthread_mutex_unlock(&c->fd_lock);
}

static void fd_put(struct fs_ctx *c, struct fd_ref *r)
{
	if (!r->slot) {
		close(r->fd);
		return;
	}
	pthread_mutex_lock(&c->fd_lock);
	r->slot->refs--;
	pthread_mutex_unlock(&c->fd_lock);
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	if (ctx_of(req)->no_open) {
		/* the kernel stops sending OPEN and RELEASE for files */
		reply_err(req, -ENOSYS);
		return;
	}
	/* an older kernel: a handle that carries nothing (O_TRUNC comes as
	 * a setattr, writes copy up) */
	fi->fh = 0;
	fi->keep_cache = 1;
	fuse_reply_open(req, fi);
}

static void op_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		      struct fuse_file_info *fi)
{
	const struct fuse_ctx *fc = fuse_req_ctx(req);
	struct fuse_entry_param e;
	struct ov_attr a;
	int rc;

	rc = ov_create(ctx_of(req)->ov, parent, name, S_IFREG | (mode & 07777), fc->uid, fc->gid,
		       NULL, 0, &a);
	if (rc) {
		reply_err(req, rc);
		return;
	}
	memset(&e, 0, sizeof(e));
	e.ino = a.ino;
	e.generation = 1;
	e.attr_timeout = ATTR_TIMEOUT;
	e.entry_timeout = ATTR_TIMEOUT;
	ov_attr_stat(&a, &e.attr);
	fi->fh = 0;
	fi->keep_cache = 1;
	fuse_reply_create(req, &e, fi);
}

/* Reply n bytes at pos of fd: small ones copied, the rest spliced. */
static void reply_from_fd(struct fs_ctx *c, fuse_req_t req, int fd, size_t n, off_t pos)
{
	struct fuse_bufvec bv = FUSE_BUFVEC_INIT(n);

	if (n <= SMALL_READ) {
		/* one copy beats setting up a splice */
		char small[SMALL_READ];
		ssize_t got = pread_full(fd, small, n, pos);

		if (got < 0) {
			reply_err(req, (int)got);
			return;
		}
		__atomic_add_fetch(&c->stats->bytes_read, (uint64_t)got, __ATOMIC_RELAXED);
		fuse_reply_buf(req, small, (size_t)got);
		return;
	}
	bv.buf[0].flags = FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK;
	bv.buf[0].fd = fd;
	bv.buf[0].pos = pos;
	__atomic_add_fetch(&c->stats->bytes_read, n, __ATOMIC_RELAXED);
	fuse_reply_data(req, &bv, FUSE_BUF_SPLICE_MOVE);
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	struct fs_ctx *c = ctx_of(req);
	const struct cat_entry *e;
	struct fd_ref fr;
	uint32_t idx, prev;
	int rc, fresh;
	char *buf;
	ssize_t n;

	(void)fi;
	rc = ov_content(c->ov, ino, &idx);
	if (rc == 1) {
		/* upper: from the data file */
		rc = fd_get(c, ino, UPPER, &fr, NULL, NULL);
		if (rc) {
			reply_err(req, rc);
			return;
		}
		reply_from_fd(c, req, fr.fd, size, off);
		fd_put(c, &fr);
		return;
	}
	if (rc) {
		reply_err(req, rc);
		return;
	}
	e = catalog_entry(c->cat, idx);
	if ((uint64_t)off >= e->size) {
		fuse_reply_buf(req, NULL, 0);
		return;
	}
	if (size > e->size - (uint64_t)off)
		size = (size_t)(e->size - (uint64_t)off);
	{
		/* within one cached chunk: from the chunk's cache file */
		uint32_t r = catalog_ref_at(c->cat, e, (uint64_t)off);
		const struct cat_ref *ref = catalog_refs(c->cat, e) + (r - e->first);
		const struct cat_chunk *ch = catalog_chunk(c->cat, ref->chunk);
		uint64_t within = (uint64_t)off - ref->off;

		if (within + size <= ch->raw_len && ch->raw_len <= FETCH_MEM_MAX) {
			/* a small chunk fetched lately: from memory (its cache
			 * file may not be written yet) */
			char mb[FETCH_MEM_MAX];

			if (fetch_mem_read(c->f, ref->chunk, within, mb, size)) {
				fetch_note_read(c->f, ref->chunk);
				__atomic_add_fetch(&c->stats->bytes_read, size, __ATOMIC_RELAXED);
				fuse_reply_buf(req, mb, size);
				return;
			}
		}
		if (within + size <= ch->raw_len) {
			rc = fd_get(c, ino, ref->chunk, &fr, &fresh, &prev);
			if (rc) {
				reply_err(req, rc);
				return;
			}
			if (fresh) {
				/* chunks are at most 4 MiB: ask for all of a large one
				 * now, so the disk works ahead of the 128 kB requests */
				if (ch->raw_len > SMALL_READ)
					posix_fadvise(fr.fd, 0, 0, POSIX_FADV_WILLNEED);
				fetch_note_read(c->f, ref->chunk);
				if (r > e->first && prev == (ref - 1)->chunk) {
					/* from the previous chunk of this file into the
					 * next: a reader streaming it */
					fetch_read_ahead(c->f, idx, r);
					/* and have the disk read the next cached chunk */
					if (r + 1 < e->first + e->count)
						fetch_advise_cached(c->f, (ref + 1)->chunk);
				}
			}
			reply_from_fd(c, req, fr.fd, size, (off_t)within);
			fetch_served(c->f, ref->chunk, fr.fd, (uint32_t)size);
			fd_put(c, &fr);
			return;
		}
	}
	buf = malloc(size);
	if (!buf) {
		reply_err(req, -ENOMEM);
		return;
	}
	n = fetch_read(c->f, idx, (uint64_t)off, buf, size);
	if (n < 0)
		reply_err(req, (int)n);
	else
		fuse_reply_buf(req, buf, (size_t)n);
	free(buf);
}

/* The data file of ino, copying a lower file up first. */
static int upper_fd(struct fs_ctx *c, fuse_ino_t ino, struct fd_ref *fr)
{
	uint32_t idx;
	int rc = ov_content(c->ov, ino, &idx);

	if (rc == 0) {
		rc = ov_copy_up(c->ov, ino, 0);
		if (rc)
			return rc;
		__atomic_add_fetch(&c->stats->copy_ups, 1, __ATOMIC_RELAXED);
	} else if (rc < 0) {
		return rc;
	}
	return fd_get(c, ino, UPPER, fr, NULL, NULL);
}

static void op_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
		     struct fuse_file_info *fi)
{
	struct fs_ctx *c = ctx_of(req);
	struct fd_ref fr;
	int rc;

	(void)fi;
	rc = upper_fd(c, ino, &fr);
	if (rc) {
		reply_err(req, rc);
		return;
	}
	rc = pwrite_full(fr.fd, buf, size, off);
	fd_put(c, &fr);
	if (rc) {
		reply_err(req, rc);
		return;
	}
	__atomic_add_fetch(&c->stats->bytes_written, size, __ATOMIC_RELAXED);
	fuse_reply_write(req, size);
}

static void op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	(void)fi;
	fuse_reply_err(req, 0);
}

static void op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	struct fs_ctx *c = ctx_of(req);
	uint32_t idx;
	struct fd_ref fr;
	int rc = ov_content(c->ov, ino, &idx);

	(void)fi;
	if (rc == 1) {
		rc = fd_get(c, ino, UPPER, &fr, NULL, NULL);
		if (!rc) {
			if ((datasync ? fdatasync(fr.fd) : fsync(fr.fd)) < 0)
				rc = -errno;
			fd_put(c, &fr);
		}
	}
	/* the file's name, size and mode are in the state: as on ext4, an
	 * fsync'ed new file survives a power loss with its name */
	if (rc >= 0)
		rc = ov_sync(c->ov);
	reply_rc(req, rc < 0 ? rc : 0);
}

static void op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct dh *d = calloc(1, sizeof(*d));

	(void)ino;
	if (!d) {
		reply_err(req, -ENOMEM);
		return;
	}
	/* the listing is made on the first readdir: with the kernel's
	 * directory cache warm, opendir is all there is */
	pthread_mutex_init(&d->lock, NULL);
	fi->fh = (uintptr_t)d;
	fi->cache_readdir = 1;
	fi->keep_cache = 1;
	fuse_reply_open(req, fi);
}

static void do_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi, int plus)
{
	struct fs_ctx *c = ctx_of(req);
	struct dh *d = (struct dh *)(uintptr_t)fi->fh;
	char *buf = malloc(size), *p = buf;
	size_t left = size, i;

	if (!buf) {
		reply_err(req, -ENOMEM);
		return;
	}
	pthread_mutex_lock(&d->lock);
	if (!d->listed) {
		int rc = ov_list(c->ov, ino, &d->v, &d->n);

		if (rc) {
			pthread_mutex_unlock(&d->lock);
			free(buf);
			reply_err(req, rc);
			return;
		}
		d->listed = 1;
	}
	pthread_mutex_unlock(&d->lock);
	for (i = (size_t)off; i < d->n + 2; i++) {
		const char *name = i == 0 ? "." : i == 1 ? ".." : d->v[i - 2].name;
		struct fuse_entry_param e;
		size_t used;

		memset(&e, 0, sizeof(e));
		if (i < 2) {
			e.attr.st_ino = i == 0 ? ino : 1;
			e.attr.st_mode = S_IFDIR;
		} else if (plus) {
			struct ov_attr a;

			if (ov_getattr(c->ov, d->v[i - 2].ino, &a))
				continue;
			ov_attr_stat(&a, &e.attr);
			e.ino = a.ino;
			e.generation = 1;
			e.attr_timeout = ATTR_TIMEOUT;
			e.entry_timeout = ATTR_TIMEOUT;
		} else {
			e.attr.st_ino = d->v[i - 2].ino;
			e.attr.st_mode = d->v[i - 2].mode;
		}
		if (plus)
			used = fuse_add_direntry_plus(req, p, left, name, &e, (off_t)(i + 1));
		else
			used = fuse_add_direntry(req, p, left, name, &e.attr, (off_t)(i + 1));
		if (used > left)
			break;
		p += used;
		left -= used;
	}
	fuse_reply_buf(req, buf, size - left);
	free(buf);
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi)
{
	do_readdir(req, ino, size, off, fi, 0);
}

static void op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
			   struct fuse_file_info *fi)
{
	do_readdir(req, ino, size, off, fi, 1);
}

static void op_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct dh *d = (struct dh *)(uintptr_t)fi->fh;

	(void)ino;
	ov_dirents_free(d->v, d->n);
	pthread_mutex_destroy(&d->lock);
	free(d);
	fuse_reply_err(req, 0);
}

static void op_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	(void)ino;
	(void)datasync;
	(void)fi;
	reply_rc(req, ov_sync(ctx_of(req)->ov));
}

static void op_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct statvfs sv;

	(void)ino;
	if (statvfs(ctx_of(req)->store, &sv) < 0) {
		reply_err(req, -errno);
		return;
	}
	sv.f_namemax = CATALOG_MAX_NAME;
	fuse_reply_statfs(req, &sv);
}

static void op_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
			size_t size, int flags)
{
	int rc;

	/* no POSIX ACLs: saying so makes cp -a and tar fall back to chmod */
	if (strncmp(name, "system.", 7) == 0) {
		reply_err(req, -EOPNOTSUPP);
		return;
	}
	rc = ov_setxattr(ctx_of(req)->ov, ino, name, value, size, flags);

	reply_rc(req, rc);
}

/* An xattr value or list of n bytes (or its size when the caller asked with 0); frees buf. */
static void reply_xattr(fuse_req_t req, ssize_t n, char *buf, size_t size)
{
	if (n < 0)
		reply_err(req, (int)n);
	else if (size == 0)
		fuse_reply_xattr(req, (size_t)n);
	else
		fuse_reply_buf(req, buf, (size_t)n);
	free(buf);
}

static void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
	char *buf = size ? malloc(size) : NULL;
	ssize_t n;

	if (size && !buf) {
		reply_err(req, -ENOMEM);
		return;
	}
	n = ov_getxattr(ctx_of(req)->ov, ino, name, buf, size);
	reply_xattr(req, n, buf, size);
}

static void op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	char *buf = size ? malloc(size) : NULL;
	ssize_t n;

	if (size && !buf) {
		reply_err(req, -ENOMEM);
		return;
	}
	n = ov_listxattr(ctx_of(req)->ov, ino, buf, size);
	reply_xattr(req, n, buf, size);
}

static void op_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	int rc = ov_removexattr(ctx_of(req)->ov, ino, name);

	reply_rc(req, rc);
}

/* A snapshot file small enough to push: one chunk, at most PUSH_MAX. */
int push_size(const struct cat_entry *e)
{
	return e->size > 0 && e->size <= PUSH_MAX && e->count == 1;
}

/* Lower file ino's catalog entry if it is small enough to push. */
static const struct cat_entry *pushable(struct fs_ctx *c, fuse_ino_t ino)
{
	const struct cat_entry *e;
	uint32_t idx;

	if (ov_content(c->ov, ino, &idx) != 0)
		return NULL;
	e = catalog_entry(c->cat, idx);
	return push_size(e) ? e : NULL;
}

/*
 * A small snapshot file's bytes, straight into the kernel's page cache
 * (if they are here already), so the read that follows costs no request:
 * at its open (ahead 0: the open is taken as the read), or as its chunk
 * lands (ahead 1, the pusher below: nobody asked yet).  Only lower
 * files: their bytes never change.  A write that copied the file up
 * meanwhile may have been overwritten by this push (the kernel writes the
 * page, then asks us): if it is upper now, the pages go.  0, or the
 * error of the store (nothing pushed): -ENOENT if the kernel holds no
 * inode ino, -ENOSYS before the session's INIT.
 */
int push_small(struct fs_ctx *c, fuse_ino_t ino, int ahead)
{
	const struct cat_entry *e;
	char small[SMALL_READ], *buf = small;
	struct fuse_bufvec bv = FUSE_BUFVEC_INIT(0);
	uint32_t idx, chunk;
	int rc = 0;

	/*
	 * Once per inode the kernel holds (Python asks isatty at every
	 * open).  The bit stays set for a file never to be pushed (upper,
	 * empty, large): lower files never change and uppers stay upper.
	 */
	if (ahead)
		ino_bit(c, c->ahead, ino, 1); /* before the push: an open may follow at once */
	if (pushed_bit(c, ino, 1)) {
		if (ahead) /* pushed at an open already, which was the read */
			ino_bit(c, c->ahead, ino, 0);
		/* the first open after a push ahead is the read the record wants */
		else if (ino_bit(c, c->ahead, ino, 0) && (e = pushable(c, ino)))
			fetch_note_read(c->f, catalog_refs(c->cat, e)->chunk);
		return 0;
	}
	e = pushable(c, ino);
	if (!e)
		goto none;
	ring_work(); /* an IOCTL taken as a light request has work after all */
	chunk = catalog_refs(c->cat, e)->chunk;
	if (e->size > sizeof(small) && !(buf = malloc((size_t)e->size))) {
		pushed_bit(c, ino, 0);
		rc = -ENOMEM;
		goto none;
	}
	if (!fetch_peek(c->f, chunk, buf, (size_t)e->size)) {
		pushed_bit(c, ino, 0); /* not here yet: maybe at the next open */
		rc = 0;
		goto none;
	}
	bv.buf[0].mem = buf;
	bv.buf[0].size = (size_t)e->size;
	/* from memory: splicing it would copy twice */
	rc = fuse_lowlevel_notify_store(c->se, ino, 0, &bv, FUSE_BUF_NO_SPLICE);
	if (rc) {
		pushed_bit(c, ino, 0);
		goto none;
	}
	if (ahead) {
		fetch_note_pushed(c->f, chunk);
		__atomic_add_fetch(&c->stats->pushed_ahead, 1, __ATOMIC_RELAXED);
	} else {
		fetch_note_read(c->f, chunk);
		__atomic_add_fetch(&c->stats->bytes_read, e->size, __ATOMIC_RELAXED);
	}
	__atomic_add_fetch(&c->stats->bytes_pushed, e->size, __ATOMIC_RELAXED);
	if (ov_content(c->ov, ino, &idx) == 1)
		fuse_lowlevel_notify_inval_inode(c->se, ino, 0, 0);
	if (buf != small)
		free(buf);
	return 0;
none:
	if (buf != small)
		free(buf);
	if (ahead)
		ino_bit(c, c->ahead, ino, 0);
	return rc;
}

/*
 * No ioctls.  Python asks every file it opens whether it is a terminal:
 * that question is the sign a read follows.
 */
static void op_ioctl(fuse_req_t req, fuse_ino_t ino, unsigned int cmd, void *arg,
		     struct fuse_file_info *fi, unsigned flags, const void *in_buf, size_t in_bufsz,
		     size_t out_bufsz)
{
	(void)cmd;
	(void)arg;
	(void)fi;
	(void)in_buf;
	(void)in_bufsz;
	(void)out_bufsz;
	if (!(flags & FUSE_IOCTL_DIR))
		push_small(ctx_of(req), ino, 0);
	fuse_reply_err(req, ENOTTY);
}

const struct fuse_lowlevel_ops fs_ops = {
	.init = op_init,
	.lookup = op_lookup,
	.forget = op_forget,
	.forget_multi = op_forget_multi,
	.getattr = op_getattr,
	.setattr = op_setattr,
	.readlink = op_readlink,
	.mknod = op_mknod,
	.mkdir = op_mkdir,
	.symlink = op_symlink,
	.unlink = op_unlink,
	.rmdir = op_rmdir,
	.rename = op_rename,
	.link = op_link,
	.open = op_open,
	.create = op_create,
	.read = op_read,
	.ioctl = op_ioctl,
	.write = op_write,
	.release = op_release,
	.fsync = op_fsync,
	.opendir = op_opendir,
	.readdir = op_readdir,
	.readdirplus = op_readdirplus,
	.releasedir = op_releasedir,
	.fsyncdir = op_fsyncdir,
	.statfs = op_statfs,
	.setxattr = op_setxattr,
	.getxattr = op_getxattr,
	.listxattr = op_listxattr,
	.removexattr = op_removexattr,
};
