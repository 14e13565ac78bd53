/*
 * file:///dir remote: the embedded default for one machine and the tests.
 * Writes are crash-safe and atomic (temp file, fsync, rename), so a reader
 * never sees half an object or half a key record.
 */
#define _GNU_SOURCE
#include "remote.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

struct file_remote {
	char root[PATH_MAX];
};

static int full_path(struct remote *r, const char *name, char *out, size_t n)
{
	struct file_remote *f = r->priv;

	if (strstr(name, "..") || name[0] == '/')
		return -EINVAL;
	if ((size_t)snprintf(out, n, "%s/%s", f->root, name) >= n)
		return -ENAMETOOLONG;
	return 0;
}

static int file_get(struct remote *r, const char *name, uint64_t off, uint64_t len, struct buf *out,
		    size_t cap, const struct remote_progress *pr)
{
	char path[PATH_MAX];
	struct stat st;
	uint64_t want;
	ssize_t got;
	int fd, rc;

	(void)pr; /* read at once: the caller has it all on return */
	rc = full_path(r, name, path, sizeof(path));
	if (rc)
		return rc;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0) {
		rc = -errno;
		goto out;
	}
	if (off > (uint64_t)st.st_size) {
		rc = -EINVAL;
		goto out;
	}
	want = (uint64_t)st.st_size - off;
	if (len != REMOTE_WHOLE && len < want)
		want = len;
	if (want > cap) {
		rc = -EFBIG;
		goto out;
	}
	rc = buf_reserve(out, (size_t)want);
	if (rc)
		goto out;
	got = pread_full(fd, out->p + out->len, (size_t)want, (off_t)off);
	if (got < 0) {
		rc = (int)got;
		goto out;
	}
	out->len += (size_t)got;
out:
	close(fd);
	return rc;
}

static int ensure_parent(const char *path)
{
	char dir[PATH_MAX];
	char *slash;

	snprintf(dir, sizeof(dir), "%s", path);
	slash = strrchr(dir, '/');
	if (!slash)
		return 0;
	*slash = '\0';
	return mkdir_p(dir, 0777);
}

static mode_t current_umask(void)
{
	static mode_t m = (mode_t)-1;

	if (m == (mode_t)-1) {
		m = umask(022);
		umask(m);
	}
	return m;
}

/* Where name goes, its directory made. */
static int path_to_write(struct remote *r, const char *name, char *path, size_t n)
{
	int rc = full_path(r, name, path, n);

	return rc ? rc : ensure_parent(path);
}

static int copy_to(const char *src, const char *tmp)
{
	char b[1 << 16];
	int in, outfd, rc = 0;

	in = open(src, O_RDONLY | O_CLOEXEC);
	if (in < 0)
		return -errno;
	outfd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
	if (outfd < 0) {
		rc = -errno;
		close(in);
		return rc;
	}
	for (;;) {
		ssize_t n = read(in, b, sizeof(b));

		if (n < 0) {
			if (errno == EINTR)
				continue;
			rc = -errno;
			break;
		}
		if (n == 0)
			break;
		rc = write_full(outfd, b, (size_t)n);
		if (rc)
			break;
	}
	if (!rc && fsync(outfd) < 0)
		rc = -errno;
	if (close(outfd) < 0 && !rc)
		rc = -errno;
	close(in);
	return rc;
}

static int file_put_file(struct remote *r, const char *name, const char *src, int may_move)
{
	char path[PATH_MAX], tmp[PATH_MAX + 32];
	int rc;

	rc = path_to_write(r, name, path, sizeof(path));
	if (rc)
		return rc;
	/* a file moved from the store is its user's alone (0600): on the
	 * remote it is readable as the umask says, like everything there */
	if (may_move && chmod(src, 0666 & ~current_umask()) == 0 && rename(src, path) == 0)
		return fsync_dir_of(path);
	snprintf(tmp, sizeof(tmp), "%s.tmp.%d.%lx", path, (int)getpid(), (unsigned long)gettid());
	rc = copy_to(src, tmp);
	if (!rc && rename(tmp, path) < 0)
		rc = -errno;
	if (rc)
		unlink(tmp);
	else
		fsync_dir_of(path);
	return rc;
}

static int file_put_buf(struct remote *r, const char *name, const void *p, size_t n)
{
	char path[PATH_MAX];
	int rc;

	rc = path_to_write(r, name, path, sizeof(path));
	if (rc)
		return rc;
	return write_file_atomic(path, p, n, 0666);
}

/* Under an flock of NAME.lock: writers on this machine (or a filesystem
 * that passes flock on) take turns. */
static int file_update(struct remote *r, const char *name, size_t cap, remote_update_fn fn,
		       void *arg)
{
	char path[PATH_MAX], lock[PATH_MAX + 8];
	struct buf cur = BUF_INIT, out = BUF_INIT;
	int rc, fd;

	rc = path_to_write(r, name, path, sizeof(path));
	if (rc)
		return rc;
	snprintf(lock, sizeof(lock), "%s.lock", path);
	fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
	if (fd < 0)
		return -errno;
	while (flock(fd, LOCK_EX) < 0) {
		if (errno != EINTR) {
			rc = -errno;
			close(fd);
			return rc;
		}
	}
	rc = read_file(path, &cur, cap);
	if (rc == 0 || rc == -ENOENT)
		rc = fn(&cur, rc == 0, &out, arg);
	if (rc == 0)
		rc = write_file_atomic(path, out.p, out.len, 0666);
	close(fd); /* and the lock with it */
	buf_free(&cur);
	buf_free(&out);
	return rc;
}

static int file_exists(struct remote *r, const char *name)
{
	char path[PATH_MAX];
	struct stat st;
	int rc;

	rc = full_path(r, name, path, sizeof(path));
	if (rc)
		return rc;
	if (stat(path, &st) == 0)
		return 1;
	return errno == ENOENT ? 0 : -errno;
}

/* Regular files only; a name with a dot is a writer's temp file or a lock. */
static int file_list(struct remote *r, const char *dir, remote_list_fn fn, void *arg)
{
	char path[PATH_MAX];
	struct dirent *d;
	DIR *dp;
	int rc, dfd;

	rc = full_path(r, dir, path, sizeof(path));
	if (rc)
		return rc;
	dp = opendir(path);
	if (!dp)
		return errno == ENOENT ? 0 : -errno;
	dfd = dirfd(dp);
	while (!rc && (errno = 0, d = readdir(dp))) {
		struct stat st;

		if (strchr(d->d_name, '.'))
			continue;
		if (fstatat(dfd, d->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
			if (errno != ENOENT)
				rc = -errno;
			continue;
		}
		if (S_ISREG(st.st_mode))
			rc = fn(d->d_name, (uint64_t)st.st_size, (int64_t)st.st_mtim.tv_sec, arg);
	}
	if (!rc && errno)
		rc = -errno;
	closedir(dp);
	return rc;
}

static int file_del(struct remote *r, const char *name)
{
	char path[PATH_MAX];
	int rc = full_path(r, name, path, sizeof(path));

	if (rc)
		return rc;
	return unlink(path) < 0 ? -errno : 0;
}

static void file_free(struct remote *r)
{
	free(r->priv);
}

static const struct remote_ops file_ops = {
	.scheme = "file",
	.get = file_get,
	.put_file = file_put_file,
	.put_buf = file_put_buf,
	.exists = file_exists,
	.list = file_list,
	.del = file_del,
	.update = file_update,
	.free = file_free,
};

int remote_file_open(const char *url, struct remote *r)
{
	const char *p = url + strlen("file://");
	struct file_remote *f;
	size_t len;

	if (p[0] != '/') {
		log_err("remote '%s': a file remote needs an absolute path (file:///dir)", url);
		return -EINVAL;
	}
	len = strlen(p);
	while (len > 1 && p[len - 1] == '/')
		len--;
	if (len >= PATH_MAX - 200)
		return -ENAMETOOLONG;
	f = calloc(1, sizeof(*f));
	if (!f)
		return -ENOMEM;
	memcpy(f->root, p, len);
	f->root[len] = '\0';
	r->ops = &file_ops;
	r->priv = f;
	return 0;
}
