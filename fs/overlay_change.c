/*
 * Changes to the writable layer: creating, linking, renaming, removing,
 * setting attributes, copying a snapshot file up; and the removals that
 * work on a full disk (ovi_ballast_release).  Each runs under the write
 * lock in one transaction.
 */
#define _GNU_SOURCE
#include "overlay_int.h"
#include "../store/store.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- changes ---- */

static int dir_is_empty(struct ov *ov, uint64_t dir)
{
	struct ov_dirent *v;
	size_t n;
	int rc;

	rc = ovi_list_locked(ov, dir, &v, &n);
	if (rc)
		return rc;
	ov_dirents_free(v, n);
	return n == 0;
}

int ov_create(struct ov *ov, uint64_t parent, const char *name, mode_t mode, uid_t uid, gid_t gid,
	      const char *target, dev_t rdev, struct ov_attr *a)
{
	struct ov_attr p;
	uint64_t ino;
	char path[PATH_MAX];
	int rc, fd;

	if (strlen(name) > CATALOG_MAX_NAME)
		return -ENAMETOOLONG;
	rc = ovi_begin(ov);
	if (rc)
		return ovi_end(ov, rc);
	rc = ovi_attr_locked(ov, parent, &p);
	if (!rc && !S_ISDIR(p.mode))
		rc = -ENOTDIR;
	if (!rc && p.nlink == 0)
		rc = -ENOENT;
	if (!rc && ovi_lookup_locked(ov, parent, name, &ino) == 0)
		rc = -EEXIST;
	if (rc)
		return ovi_end(ov, rc);
	ino = ov->next_ino++;
	memset(a, 0, sizeof(*a));
	a->ino = ino;
	a->mode = mode;
	a->uid = uid;
	a->gid = gid;
	a->nlink = S_ISDIR(mode) ? 2 : 1;
	a->size = S_ISDIR(mode) ? 4096 : target ? strlen(target) : 0;
	ovi_now_ts(&a->mtime_s, &a->mtime_ns);
	a->ctime_s = a->atime_s = a->mtime_s;
	a->ctime_ns = a->atime_ns = a->mtime_ns;
	a->rdev = S_ISCHR(mode) || S_ISBLK(mode) ? rdev : 0;
	a->upper = S_ISREG(mode);
	a->cat_idx = OV_NONE;
	if (S_ISREG(mode)) {
		ov_data_path(ov, ino, path);
		fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		if (fd < 0)
			return ovi_end(ov, -errno);
		close(fd);
	}
	rc = ovi_put_row(ov, a, target, target ? strlen(target) : 0);
	if (!rc)
		rc = ovi_set_dentry(ov, parent, name, ino);
	if (!rc)
		rc = ovi_touch_dir(ov, parent, S_ISDIR(mode) ? 1 : 0);
	if (!rc)
		rc = ovi_attr_locked(ov, ino, a);
	return ovi_end(ov, rc);
}

int ov_link(struct ov *ov, uint64_t ino, uint64_t parent, const char *name, struct ov_attr *a)
{
	struct ov_attr p;
	uint64_t other;
	int rc;

	if (strlen(name) > CATALOG_MAX_NAME)
		return -ENAMETOOLONG;
	rc = ovi_begin(ov);
	if (!rc)
		rc = ovi_attr_locked(ov, parent, &p);
	if (!rc && !S_ISDIR(p.mode))
		rc = -ENOTDIR;
	if (!rc && ovi_lookup_locked(ov, parent, name, &other) == 0)
		rc = -EEXIST;
	if (!rc)
		rc = ovi_ensure_row(ov, ino, a);
	if (!rc && S_ISDIR(a->mode))
		rc = -EPERM;
	if (rc)
		return ovi_end(ov, rc);
	a->nlink++;
	ovi_now_ts(&a->ctime_s, &a->ctime_ns);
	rc = ovi_save_row(ov, a);
	if (!rc)
		rc = ovi_set_dentry(ov, parent, name, ino);
	if (!rc)
		rc = ovi_touch_dir(ov, parent, 0);
	if (!rc)
		rc = ovi_attr_locked(ov, ino, a);
	return ovi_end(ov, rc);
}

/* Drop one link of ino (dir: all). */
static int drop_link(struct ov *ov, uint64_t ino, int dir)
{
	struct ov_attr a;
	int rc = ovi_ensure_row(ov, ino, &a);

	if (rc)
		return rc;
	a.nlink = dir || a.nlink == 0 ? 0 : a.nlink - 1;
	ovi_now_ts(&a.ctime_s, &a.ctime_ns);
	return ovi_save_row(ov, &a);
}

static int unlink_once(struct ov *ov, uint64_t parent, const char *name, int dir)
{
	struct ov_attr a;
	uint64_t ino;
	int rc;

	rc = ovi_begin(ov);
	if (!rc)
		rc = ovi_lookup_locked(ov, parent, name, &ino);
	if (!rc)
		rc = ovi_attr_locked(ov, ino, &a);
	if (rc)
		return ovi_end(ov, rc);
	if (dir && !S_ISDIR(a.mode))
		return ovi_end(ov, -ENOTDIR);
	if (!dir && S_ISDIR(a.mode))
		return ovi_end(ov, -EISDIR);
	if (dir) {
		rc = dir_is_empty(ov, ino);
		if (rc < 0)
			return ovi_end(ov, rc);
		if (rc == 0)
			return ovi_end(ov, -ENOTEMPTY);
	}
	rc = ovi_remove_name(ov, parent, name);
	if (!rc)
		rc = drop_link(ov, ino, dir);
	if (!rc)
		rc = ovi_touch_dir(ov, parent, dir ? -1 : 0);
	return ovi_end(ov, rc);
}

static int rename_once(struct ov *ov, uint64_t parent, const char *name, uint64_t newparent,
		       const char *newname, unsigned int flags)
{
	struct ov_attr src, dst, np;
	uint64_t sino, dino = 0;
	int rc, have_dst;

	if (flags & ~RENAME_NOREPLACE)
		return -EINVAL;
	if (strlen(newname) > CATALOG_MAX_NAME)
		return -ENAMETOOLONG;
	rc = ovi_begin(ov);
	if (!rc)
		rc = ovi_lookup_locked(ov, parent, name, &sino);
	if (!rc)
		rc = ovi_attr_locked(ov, sino, &src);
	if (!rc)
		rc = ovi_attr_locked(ov, newparent, &np);
	if (!rc && !S_ISDIR(np.mode))
		rc = -ENOTDIR;
	if (rc)
		return ovi_end(ov, rc);
	have_dst = ovi_lookup_locked(ov, newparent, newname, &dino) == 0;
	if (have_dst) {
		if (flags & RENAME_NOREPLACE)
			return ovi_end(ov, -EEXIST);
		if (dino == sino)
			return ovi_end(ov, 0);
		rc = ovi_attr_locked(ov, dino, &dst);
		if (rc)
			return ovi_end(ov, rc);
		if (S_ISDIR(src.mode) && !S_ISDIR(dst.mode))
			return ovi_end(ov, -ENOTDIR);
		if (!S_ISDIR(src.mode) && S_ISDIR(dst.mode))
			return ovi_end(ov, -EISDIR);
		if (S_ISDIR(dst.mode)) {
			rc = dir_is_empty(ov, dino);
			if (rc < 0)
				return ovi_end(ov, rc);
			if (rc == 0)
				return ovi_end(ov, -ENOTEMPTY);
		}
		rc = drop_link(ov, dino, S_ISDIR(dst.mode));
		if (!rc && S_ISDIR(dst.mode))
			rc = ovi_touch_dir(ov, newparent, -1);
	}
	if (!rc)
		rc = ovi_remove_name(ov, parent, name);
	if (!rc)
		rc = ovi_set_dentry(ov, newparent, newname, sino);
	if (!rc)
		rc = ovi_touch_dir(ov, parent, S_ISDIR(src.mode) && parent != newparent ? -1 : 0);
	if (!rc && newparent != parent)
		rc = ovi_touch_dir(ov, newparent, S_ISDIR(src.mode) ? 1 : 0);
	if (!rc) {
		/* rename changes the moved inode's ctime */
		rc = ovi_ensure_row(ov, sino, &src);
		if (!rc) {
			ovi_now_ts(&src.ctime_s, &src.ctime_ns);
			rc = ovi_save_row(ov, &src);
		}
	}
	return ovi_end(ov, rc);
}

int ov_setattr(struct ov *ov, uint64_t ino, int what, const struct stat *st, struct ov_attr *a)
{
	char path[PATH_MAX];
	int rc;

	rc = ovi_begin(ov);
	if (!rc)
		rc = ovi_ensure_row(ov, ino, a);
	if (rc)
		goto out;
	ov_data_path(ov, ino, path);
	if (what & OV_SET_SIZE) {
		if (!S_ISREG(a->mode)) {
			rc = S_ISDIR(a->mode) ? -EISDIR : -EINVAL;
			goto out;
		}
		if (!a->upper) {
			rc = -EIO; /* caller copies up first */
			goto out;
		}
		if (truncate(path, st->st_size) < 0) {
			rc = -errno;
			goto out;
		}
	}
	if (what & OV_SET_MODE)
		a->mode = (a->mode & S_IFMT) | (st->st_mode & 07777);
	if (what & OV_SET_UID)
		a->uid = st->st_uid;
	if (what & OV_SET_GID)
		a->gid = st->st_gid;
	if (what & (OV_SET_MTIME | OV_SET_MTIME_NOW)) {
		struct timespec ts[2];

		if (what & OV_SET_MTIME_NOW)
			ovi_now_ts(&a->mtime_s, &a->mtime_ns);
		else {
			a->mtime_s = st->st_mtim.tv_sec;
			a->mtime_ns = (uint32_t)st->st_mtim.tv_nsec;
		}
		if (a->upper) {
			ts[0].tv_sec = 0;
			ts[0].tv_nsec = UTIME_OMIT;
			ts[1].tv_sec = a->mtime_s;
			ts[1].tv_nsec = a->mtime_ns;
			if (utimensat(AT_FDCWD, path, ts, 0) < 0) {
				rc = -errno;
				goto out;
			}
		}
	}
	if (what & OV_SET_ATIME_NOW) {
		ovi_now_ts(&a->atime_s, &a->atime_ns);
	} else if (what & OV_SET_ATIME) {
		a->atime_s = st->st_atim.tv_sec;
		a->atime_ns = (uint32_t)st->st_atim.tv_nsec;
	}
	ovi_now_ts(&a->ctime_s, &a->ctime_ns);
	rc = ovi_save_row(ov, a);
	if (!rc)
		rc = ovi_attr_locked(ov, ino, a);
out:
	return ovi_end(ov, rc);
}

int ov_copy_up(struct ov *ov, uint64_t ino, int truncate_it)
{
	char path[PATH_MAX], tmp[PATH_MAX + 8];
	struct ov_attr a;
	uint8_t *b = NULL;
	uint64_t off;
	int fd = -1, rc;

	pthread_mutex_lock(&ov->copy_lock);
	rc = ov_getattr(ov, ino, &a);
	if (rc || a.upper)
		goto out;
	if (!S_ISREG(a.mode) || a.cat_idx == OV_NONE) {
		rc = -EINVAL;
		goto out;
	}
	ov_data_path(ov, ino, path);
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		rc = -errno;
		goto out;
	}
	if (!truncate_it && a.size) {
		b = malloc(1 << 20);
		if (!b) {
			rc = -ENOMEM;
			goto out;
		}
		for (off = 0; off < a.size;) {
			size_t n = a.size - off < (1 << 20) ? (size_t)(a.size - off) : (1 << 20);

			rc = ov->o.read_lower(ov->o.read_arg, a.cat_idx, off, b, n);
			if (!rc)
				rc = pwrite_full(fd, b, n, (off_t)off);
			if (rc)
				goto out;
			off += n;
		}
	}
	if (!truncate_it) {
		/* copy-up keeps the file's times until it is written */
		struct timespec ts[2] = { { a.mtime_s, a.mtime_ns }, { a.mtime_s, a.mtime_ns } };

		if (futimens(fd, ts) < 0) {
			rc = -errno;
			goto out;
		}
	}
	if (close(fd) < 0) {
		fd = -1;
		rc = -errno;
		goto out;
	}
	fd = -1;
	if (rename(tmp, path) < 0) {
		rc = -errno;
		goto out;
	}
	rc = ovi_begin(ov);
	if (!rc)
		rc = ovi_ensure_row(ov, ino, &a);
	if (!rc) {
		a.upper = 1;
		rc = ovi_save_row(ov, &a);
	}
	rc = ovi_end(ov, rc);
out:
	if (fd >= 0) {
		close(fd);
		unlink(tmp);
	}
	free(b);
	pthread_mutex_unlock(&ov->copy_lock);
	return rc;
}

/* ---- removals: they work on a full disk (see ballast_make) ---- */

int ov_unlink(struct ov *ov, uint64_t parent, const char *name, int dir)
{
	int rc = unlink_once(ov, parent, name, dir);

	if (rc == -ENOSPC && ovi_ballast_release(ov))
		rc = unlink_once(ov, parent, name, dir);
	return rc;
}

int ov_rename(struct ov *ov, uint64_t parent, const char *name, uint64_t newparent,
	      const char *newname, unsigned int flags)
{
	int rc = rename_once(ov, parent, name, newparent, newname, flags);

	if (rc == -ENOSPC && ovi_ballast_release(ov))
		rc = rename_once(ov, parent, name, newparent, newname, flags);
	return rc;
}

/* Drop the record of unlinked inode ino; 1 if it was one. */
static int forget_once(struct ov *ov, uint64_t ino)
{
	static const char *const sql[] = { "DELETE FROM inodes WHERE ino=?1",
					   "DELETE FROM xattrs WHERE ino=?1",
					   "DELETE FROM xup WHERE ino=?1" };
	struct ov_attr a;
	size_t i;
	int rc = ovi_begin(ov);

	if (!rc)
		rc = ovi_get_row(ov, ino, &a, NULL);
	if (rc == -ENOENT || (!rc && a.nlink != 0))
		return ovi_end(ov, 0);
	if (rc)
		return ovi_end(ov, rc);
	for (i = 0; i < ARRAY_SIZE(sql) && !rc; i++) {
		sqlite3_stmt *st = NULL;

		rc = ovi_prep(ov, &st, sql[i]);
		if (!rc) {
			sqlite3_bind_int64(st, 1, (sqlite3_int64)ino);
			rc = ovi_sqlerr(ov, sqlite3_step(st), "drop inode");
		}
		sqlite3_finalize(st);
	}
	rc = ovi_end(ov, rc);
	return rc ? rc : 1;
}

int ov_forget(struct ov *ov, uint64_t ino)
{
	char path[PATH_MAX];
	struct ov_attr a;
	int rc, has;

	pthread_rwlock_rdlock(&ov->lock);
	has = ovi_set_has(&ov->rows, ino);
	rc = has ? ovi_get_row(ov, ino, &a, NULL) : -ENOENT;
	pthread_rwlock_unlock(&ov->lock);
	if (rc || a.nlink != 0)
		return 0;
	/* no name and no open file holds it (the kernel evicted it): its
	 * data goes first, which is what frees a full disk */
	ov_data_path(ov, ino, path);
	unlink(path);
	rc = forget_once(ov, ino);
	if (rc == -ENOSPC && ovi_ballast_release(ov))
		rc = forget_once(ov, ino);
	if (rc == 1)
		ovi_ballast_make(ov);
	return rc < 0 ? rc : 0;
}
