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
#define FUSE_USE_VERSION 312
#include "fetch.h"
#include "mount.h"
#include "overlay.h"

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

#define TIMEOUT 86400.0
#define SMALL_READ (32u << 10)

struct fs_ctx {
	struct ov *ov;
	struct fetcher *f;
	struct catalog *cat;
	struct mount_stats *stats;
	char store[PATH_MAX];
};

struct fh {
	int fd; /* data file when upper, else -1 */
	uint32_t cat_idx;
	/* lower files: the last chunk's cache file stays open, so sequential
	 * reads keep one descriptor and its readahead state */
	pthread_mutex_t lock;
	int chunk_fd;
	uint32_t chunk;
};

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

static void to_stat(const struct ov_attr *a, struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = a->ino;
	st->st_mode = a->mode;
	st->st_nlink = a->nlink;
	st->st_uid = a->uid;
	st->st_gid = a->gid;
	st->st_size = (off_t)a->size;
	st->st_blksize = 4096;
	st->st_blocks = (blkcnt_t)((a->size + 511) / 512);
	st->st_mtim.tv_sec = a->mtime_s;
	st->st_mtim.tv_nsec = a->mtime_ns;
	st->st_atim = st->st_mtim;
	st->st_ctim.tv_sec = a->ctime_s;
	st->st_ctim.tv_nsec = a->ctime_ns;
}

static void reply_entry(fuse_req_t req, const struct ov_attr *a)
{
	struct fuse_entry_param e;

	memset(&e, 0, sizeof(e));
	e.ino = a->ino;
	e.generation = 1;
	e.attr_timeout = TIMEOUT;
	e.entry_timeout = TIMEOUT;
	to_stat(a, &e.attr);
	fuse_reply_entry(req, &e);
}

static void op_init(void *userdata, struct fuse_conn_info *conn)
{
	(void)userdata;
	if (conn->capable & FUSE_CAP_SPLICE_WRITE)
		conn->want |= FUSE_CAP_SPLICE_WRITE | FUSE_CAP_SPLICE_MOVE;
	if (conn->capable & FUSE_CAP_PARALLEL_DIROPS)
		conn->want |= FUSE_CAP_PARALLEL_DIROPS;
	if (conn->capable & FUSE_CAP_CACHE_SYMLINKS)
		conn->want |= FUSE_CAP_CACHE_SYMLINKS;
	if (conn->capable & FUSE_CAP_ATOMIC_O_TRUNC)
		conn->want |= FUSE_CAP_ATOMIC_O_TRUNC;
	/* attributes and data change only through this mount */
	conn->want &= ~FUSE_CAP_AUTO_INVAL_DATA;
	if (getenv("STASHFS_WRITEBACK") && (conn->capable & FUSE_CAP_WRITEBACK_CACHE))
		conn->want |= FUSE_CAP_WRITEBACK_CACHE;
	conn->max_background = 64;
	conn->congestion_threshold = 48;
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct ov_attr a;
	int rc = ov_lookup(ctx_of(req)->ov, parent, name, &a);

	if (rc == -ENOENT) {
		/* a negative entry the kernel may keep: names appear only through us */
		struct fuse_entry_param e;

		memset(&e, 0, sizeof(e));
		e.entry_timeout = TIMEOUT;
		fuse_reply_entry(req, &e);
		return;
	}
	if (rc)
		reply_err(req, rc);
	else
		reply_entry(req, &a);
}

static void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	(void)ino;
	(void)nlookup;
	fuse_reply_none(req);
}

static void op_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets)
{
	(void)count;
	(void)forgets;
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
	to_stat(&a, &st);
	fuse_reply_attr(req, &st, TIMEOUT);
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
	rc = ov_setattr(c->ov, ino, what, attr, &a);
	if (rc) {
		reply_err(req, rc);
		return;
	}
	to_stat(&a, &st);
	fuse_reply_attr(req, &st, TIMEOUT);
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
		      const char *target)
{
	const struct fuse_ctx *fc = fuse_req_ctx(req);
	struct ov_attr a;
	int rc = ov_create(ctx_of(req)->ov, parent, name, mode, fc->uid, fc->gid, target, &a);

	if (rc)
		reply_err(req, rc);
	else
		reply_entry(req, &a);
}

static void op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev)
{
	(void)rdev;
	if (!S_ISREG(mode)) {
		/* sockets, FIFOs and devices are not kept in snapshots */
		reply_err(req, -EOPNOTSUPP);
		return;
	}
	make_node(req, parent, name, mode, NULL);
}

static void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	make_node(req, parent, name, S_IFDIR | (mode & 07777), NULL);
}

static void op_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name)
{
	if (strlen(link) > CATALOG_MAX_TARGET) {
		reply_err(req, -ENAMETOOLONG);
		return;
	}
	make_node(req, parent, name, S_IFLNK | 0777, link);
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

static struct fh *fh_new(uint32_t cat_idx)
{
	struct fh *h = calloc(1, sizeof(*h));

	if (!h)
		return NULL;
	h->fd = -1;
	h->chunk_fd = -1;
	h->cat_idx = cat_idx;
	pthread_mutex_init(&h->lock, NULL);
	return h;
}

static void fh_free(struct fh *h)
{
	if (h->fd >= 0)
		close(h->fd);
	if (h->chunk_fd >= 0)
		close(h->chunk_fd);
	pthread_mutex_destroy(&h->lock);
	free(h);
}

static int open_upper(struct fs_ctx *c, fuse_ino_t ino, int acc, struct fh *h)
{
	char path[PATH_MAX];

	ov_data_path(c->ov, ino, path);
	h->fd = open(path, (acc == O_RDONLY ? O_RDONLY : O_RDWR) | O_CLOEXEC);
	return h->fd < 0 ? -errno : 0;
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs_ctx *c = ctx_of(req);
	int acc = fi->flags & O_ACCMODE, trunc = !!(fi->flags & O_TRUNC);
	struct ov_attr a;
	struct fh *h;
	int rc;

	rc = ov_getattr(c->ov, ino, &a);
	if (!rc && S_ISDIR(a.mode))
		rc = -EISDIR;
	if (rc) {
		reply_err(req, rc);
		return;
	}
	h = fh_new(a.cat_idx);
	if (!h) {
		reply_err(req, -ENOMEM);
		return;
	}
	if ((acc != O_RDONLY || trunc) && !a.upper) {
		rc = ov_copy_up(c->ov, ino, trunc);
		if (!rc) {
			__atomic_add_fetch(&c->stats->copy_ups, 1, __ATOMIC_RELAXED);
			a.upper = 1;
		}
	} else if (trunc && a.upper) {
		struct stat st;

		memset(&st, 0, sizeof(st));
		rc = ov_setattr(c->ov, ino, OV_SET_SIZE, &st, &a);
	}
	if (!rc && a.upper)
		rc = open_upper(c, ino, acc, h);
	if (rc) {
		fh_free(h);
		reply_err(req, rc);
		return;
	}
	fi->fh = (uintptr_t)h;
	fi->keep_cache = !trunc;
	fuse_reply_open(req, fi);
}

static void op_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		      struct fuse_file_info *fi)
{
	const struct fuse_ctx *fc = fuse_req_ctx(req);
	struct fs_ctx *c = ctx_of(req);
	struct fuse_entry_param e;
	struct ov_attr a;
	struct fh *h;
	int rc;

	rc = ov_create(c->ov, parent, name, S_IFREG | (mode & 07777), fc->uid, fc->gid, NULL, &a);
	if (rc) {
		reply_err(req, rc);
		return;
	}
	h = fh_new(OV_NONE);
	if (!h) {
		reply_err(req, -ENOMEM);
		return;
	}
	rc = open_upper(c, a.ino, O_RDWR, h);
	if (rc) {
		fh_free(h);
		reply_err(req, rc);
		return;
	}
	memset(&e, 0, sizeof(e));
	e.ino = a.ino;
	e.generation = 1;
	e.attr_timeout = TIMEOUT;
	e.entry_timeout = TIMEOUT;
	to_stat(&a, &e.attr);
	fi->fh = (uintptr_t)h;
	fuse_reply_create(req, &e, fi);
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	struct fs_ctx *c = ctx_of(req);
	struct fh *h = (struct fh *)(uintptr_t)fi->fh;
	struct fuse_bufvec bv = FUSE_BUFVEC_INIT(size);
	const struct cat_entry *e;
	char *buf;
	ssize_t n;

	(void)ino;
	if (h->fd >= 0) {
		/* upper: splice straight from the data file */
		bv.buf[0].flags = FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK;
		bv.buf[0].fd = h->fd;
		bv.buf[0].pos = off;
		fuse_reply_data(req, &bv, FUSE_BUF_SPLICE_MOVE);
		return;
	}
	e = catalog_entry(c->cat, h->cat_idx);
	if ((uint64_t)off >= e->size) {
		fuse_reply_buf(req, NULL, 0);
		return;
	}
	if (size > e->size - (uint64_t)off)
		size = (size_t)(e->size - (uint64_t)off);
	{
		/* within one cached chunk: splice from the cache file */
		uint32_t r = catalog_ref_at(c->cat, e, (uint64_t)off);
		const struct cat_ref *ref = catalog_refs(c->cat, e) + (r - e->first);
		const struct cat_chunk *ch = catalog_chunk(c->cat, ref->chunk);
		uint64_t within = (uint64_t)off - ref->off;

		if (within + size <= ch->raw_len) {
			int fd;

			pthread_mutex_lock(&h->lock);
			if (h->chunk_fd < 0 || h->chunk != ref->chunk) {
				/* crossing from the previous chunk of this file into
				 * the next: a reader streaming it */
				int streaming = h->chunk_fd >= 0 && r > e->first &&
						h->chunk == (ref - 1)->chunk;

				fd = fetch_chunk_fd(c->f, ref->chunk);
				if (fd < 0) {
					pthread_mutex_unlock(&h->lock);
					reply_err(req, fd);
					return;
				}
				if (h->chunk_fd >= 0)
					close(h->chunk_fd);
				h->chunk_fd = fd;
				h->chunk = ref->chunk;
				/* chunks are at most 4 MiB: ask for all of it now, so
				 * the disk works ahead of the 128 kB requests */
				posix_fadvise(fd, 0, 0, POSIX_FADV_WILLNEED);
				fetch_note_read(c->f, ref->chunk);
				if (streaming) {
					fetch_read_ahead(c->f, h->cat_idx, r);
					/* and have the disk read the next cached chunk */
					if (r + 1 < e->first + e->count)
						fetch_advise_cached(c->f, (ref + 1)->chunk);
				}
			}
			if (size <= SMALL_READ) {
				/* small reads: one copy beats setting up a splice */
				char small[SMALL_READ];
				ssize_t got = pread_full(h->chunk_fd, small, size, (off_t)within);

				pthread_mutex_unlock(&h->lock);
				if (got < 0) {
					reply_err(req, (int)got);
					return;
				}
				__atomic_add_fetch(&c->stats->bytes_read, (uint64_t)got,
						   __ATOMIC_RELAXED);
				fuse_reply_buf(req, small, (size_t)got);
				return;
			}
			/* once the reply is out the kernel may release h: reply
			 * through a duplicate (same file description, same
			 * readahead state) without holding anything of h */
			fd = dup(h->chunk_fd);
			pthread_mutex_unlock(&h->lock);
			if (fd < 0) {
				reply_err(req, -errno);
				return;
			}
			bv.buf[0].size = size;
			bv.buf[0].flags = FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK;
			bv.buf[0].fd = fd;
			bv.buf[0].pos = (off_t)within;
			__atomic_add_fetch(&c->stats->bytes_read, size, __ATOMIC_RELAXED);
			fuse_reply_data(req, &bv, FUSE_BUF_SPLICE_MOVE);
			close(fd);
			return;
		}
	}
	buf = malloc(size);
	if (!buf) {
		reply_err(req, -ENOMEM);
		return;
	}
	n = fetch_read(c->f, h->cat_idx, (uint64_t)off, buf, size);
	if (n < 0)
		reply_err(req, (int)n);
	else
		fuse_reply_buf(req, buf, (size_t)n);
	free(buf);
}

static void op_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
		     struct fuse_file_info *fi)
{
	struct fh *h = (struct fh *)(uintptr_t)fi->fh;
	int rc;

	(void)ino;
	if (h->fd < 0) {
		reply_err(req, -EBADF);
		return;
	}
	rc = pwrite_full(h->fd, buf, size, off);
	if (rc) {
		reply_err(req, rc);
		return;
	}
	__atomic_add_fetch(&ctx_of(req)->stats->bytes_written, size, __ATOMIC_RELAXED);
	fuse_reply_write(req, size);
}

static void op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fh *h = (struct fh *)(uintptr_t)fi->fh;

	(void)ino;
	fh_free(h);
	fuse_reply_err(req, 0);
}

static void op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	struct fh *h = (struct fh *)(uintptr_t)fi->fh;
	int rc = 0;

	(void)ino;
	if (h->fd >= 0 && (datasync ? fdatasync(h->fd) : fsync(h->fd)) < 0)
		rc = -errno;
	reply_rc(req, rc);
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
			to_stat(&a, &e.attr);
			e.ino = a.ino;
			e.generation = 1;
			e.attr_timeout = TIMEOUT;
			e.entry_timeout = TIMEOUT;
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
	fuse_reply_err(req, 0);
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

static void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
	char *buf = size ? malloc(size) : NULL;
	ssize_t n;

	if (size && !buf) {
		reply_err(req, -ENOMEM);
		return;
	}
	n = ov_getxattr(ctx_of(req)->ov, ino, name, buf, size);
	if (n < 0)
		reply_err(req, (int)n);
	else if (size == 0)
		fuse_reply_xattr(req, (size_t)n);
	else
		fuse_reply_buf(req, buf, (size_t)n);
	free(buf);
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
	if (n < 0)
		reply_err(req, (int)n);
	else if (size == 0)
		fuse_reply_xattr(req, (size_t)n);
	else
		fuse_reply_buf(req, buf, (size_t)n);
	free(buf);
}

static void op_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	int rc = ov_removexattr(ctx_of(req)->ov, ino, name);

	reply_rc(req, rc);
}

static const struct fuse_lowlevel_ops ops = {
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

/* Every few seconds: hand the catalog's pages back (bounded RSS). */
struct trimmer {
	struct catalog *cat;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int stop;
};

static void *trim_loop(void *arg)
{
	struct trimmer *t = arg;

	pthread_mutex_lock(&t->lock);
	while (!t->stop) {
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += 5;
		pthread_cond_timedwait(&t->cond, &t->lock, &ts);
		if (!t->stop)
			catalog_release_pages(t->cat);
	}
	pthread_mutex_unlock(&t->lock);
	return NULL;
}

int fs_serve(const char *mountpoint, struct ov *ov, struct fetcher *f, struct catalog *cat,
	     struct mount_stats *stats, const char *store_path, int allow_other, int ready_fd,
	     int foreground, const char *log_path)
{
	struct fs_ctx c;
	char opts[256];
	char *argv[] = { "stashfs", "-o", opts, NULL, NULL };
	struct fuse_args args = FUSE_ARGS_INIT(3, argv);
	struct fuse_session *se = NULL;
	struct fuse_loop_config *cfg = NULL;
	int rc;

	memset(&c, 0, sizeof(c));
	c.ov = ov;
	c.f = f;
	c.cat = cat;
	c.stats = stats;
	snprintf(c.store, sizeof(c.store), "%s", store_path);
	snprintf(opts, sizeof(opts), "fsname=stashfs,subtype=stashfs,default_permissions%s",
		 allow_other ? ",allow_other" : "");
	if (getenv("STASHFS_FUSE_DEBUG")) {
		/* libfuse's request trace on stderr (with --foreground) */
		argv[3] = "-d";
		args.argc = 4;
	}
	se = fuse_session_new(&args, &ops, sizeof(ops), &c);
	if (!se) {
		log_err("mount '%s': cannot start a FUSE session", qpath(mountpoint));
		rc = -EIO;
		goto out;
	}
	if (fuse_set_signal_handlers(se) != 0) {
		rc = -EIO;
		goto out;
	}
	if (fuse_session_mount(se, mountpoint) != 0) {
		log_err("mount '%s': FUSE mount failed (is /dev/fuse usable? for another user's "
			"access, --allow-other needs user_allow_other in /etc/fuse.conf)",
			qpath(mountpoint));
		rc = -EIO;
		goto out_signals;
	}
	if (ready_fd >= 0) {
		if (write(ready_fd, "ok", 2) != 2) {
			/* the parent went away: keep serving */
		}
		close(ready_fd);
	}
	if (!foreground) {
		/* a daemon now: no terminal; errors go to the state's daemon.log */
		int fd = open("/dev/null", O_RDWR);

		if (fd >= 0) {
			dup2(fd, 0);
			dup2(fd, 1);
			close(fd);
		}
		fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND, 0600);
		if (fd >= 0) {
			dup2(fd, 2);
			close(fd);
		}
	}
	{
		struct trimmer t = { cat, PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0 };
		pthread_t th;
		int have_trimmer = pthread_create(&th, NULL, trim_loop, &t) == 0;

		cfg = fuse_loop_cfg_create();
		fuse_loop_cfg_set_max_threads(cfg, 32);
		fuse_loop_cfg_set_idle_threads(cfg, 8);
		rc = fuse_session_loop_mt(se, cfg);
		rc = rc < 0 ? rc : 0;
		fuse_loop_cfg_destroy(cfg);
		if (have_trimmer) {
			pthread_mutex_lock(&t.lock);
			t.stop = 1;
			pthread_cond_signal(&t.cond);
			pthread_mutex_unlock(&t.lock);
			pthread_join(th, NULL);
		}
	}
	fuse_session_unmount(se);
out_signals:
	fuse_remove_signal_handlers(se);
out:
	if (se)
		fuse_session_destroy(se);
	return rc;
}
