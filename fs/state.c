/*
 * A mount's state directory and the mount table: the daemon's lock, the
 * shared counters, finding, unmounting and removing mounts, and what
 * `stashfs status` is told of each.
 */
#define _GNU_SOURCE
#include "mount.h"
#include "overlay.h"
#include "state.h"
#include "../store/tuning.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/*
 * STATE/daemon.lock: the daemon holds an exclusive flock on it from before
 * the mount exists until its state is written, and umount waits for it.
 * The kernel drops the lock when the daemon's files close, at exit or
 * kill -9: unlike kill(pid, 0), it is not fooled by a zombie that nobody
 * reaps (a container's PID 1 that never waits) or by a reused pid.
 */
int daemon_lock(const char *statedir)
{
	char path[PATH_MAX];
	int fd;

	snprintf(path, sizeof(path), "%s/daemon.lock", statedir);
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		int rc = errno == EWOULDBLOCK ? -EBUSY : -errno;

		close(fd);
		return rc;
	}
	return fd;
}

/* Is statedir's lock held?  1 or 0; -errno without a lock file (an older daemon). */
int lock_held(const char *statedir)
{
	char path[PATH_MAX];
	int fd, held;

	snprintf(path, sizeof(path), "%s/daemon.lock", statedir);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	held = flock(fd, LOCK_SH | LOCK_NB) < 0 && errno == EWOULDBLOCK;
	close(fd);
	return held;
}

/* Does a daemon serve statedir?  Its lock says (the pid, for older ones). */
static int daemon_alive(const char *statedir, int64_t pid)
{
	int held = lock_held(statedir);

	return held < 0 ? pid > 0 && kill((pid_t)pid, 0) == 0 : held;
}

/* Wait until no daemon serves statedir: 0, or -ETIMEDOUT. */
static int daemon_wait(const char *statedir, int64_t pid)
{
	double end = mono_sec() + DAEMON_WAIT_S;
	useconds_t nap = 500;

	while (daemon_alive(statedir, pid)) {
		if (mono_sec() >= end)
			return -ETIMEDOUT;
		usleep(nap);
		if (nap < 20000)
			nap *= 2;
	}
	return 0;
}

static int real_mountpoint(const char *dir, char *real, size_t rn)
{
	char tmp[PATH_MAX], *copy, *base;
	char parent[PATH_MAX];

	if (realpath(dir, tmp)) {
		snprintf(real, rn, "%s", tmp);
		return 0;
	}
	if (errno != ENOTCONN && errno != ENOENT)
		return -errno;
	/* a dead FUSE mount (or not there yet): resolve the parent */
	copy = strdup(dir);
	if (!copy)
		return -ENOMEM;
	snprintf(tmp, sizeof(tmp), "%s", dir);
	base = basename(tmp);
	if (!realpath(dirname(copy), parent)) {
		int rc = -errno;

		free(copy);
		return rc;
	}
	free(copy);
	snprintf(real, rn, "%s/%s", strcmp(parent, "/") ? parent : "", base);
	return 0;
}

static int state_dir_of(const char *store, const char *dir, char *out, size_t n, char *real,
			size_t rn)
{
	struct cas_id h;
	char hex[CAS_HEX_LEN + 1];
	int rc = real_mountpoint(dir, real, rn);

	if (rc)
		return rc;
	cas_hash(real, strlen(real), &h);
	cas_id_hex(&h, hex);
	snprintf(out, n, "%s/mounts/%.32s", store, hex);
	return 0;
}

int fs_state_dir(struct repo *r, const char *dir, char *out, size_t n, char *real, size_t rn)
{
	return state_dir_of(store_path(r->store), dir, out, n, real, rn);
}

/* Undo the octal escapes of /proc/self/mountinfo (\040 and the like). */
static void unescape_octal(char *s)
{
	char *o = s;

	for (; *s; s++) {
		if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' && s[2] >= '0' && s[2] <= '7' &&
		    s[3] >= '0' && s[3] <= '7') {
			*o++ = (char)((s[1] - '0') * 64 + (s[2] - '0') * 8 + (s[3] - '0'));
			s += 3;
		} else {
			*o++ = *s;
		}
	}
	*o = '\0';
}

int fs_mount_store(const char *dir, char *store, size_t n)
{
	char real[PATH_MAX], line[3 * PATH_MAX];
	FILE *f;
	int rc = -ENOENT;

	if (real_mountpoint(dir, real, sizeof(real)))
		return -ENOENT;
	f = fopen("/proc/self/mountinfo", "re");
	if (!f)
		return -ENOENT;
	while (fgets(line, sizeof(line), f)) {
		char *save = NULL, *tok, *mp = NULL, *type = NULL, *src = NULL;
		int field = 0, after = 0;

		for (tok = strtok_r(line, " \n", &save); tok; tok = strtok_r(NULL, " \n", &save)) {
			field++;
			if (field == 5)
				mp = tok;
			else if (!after && field > 6 && !strcmp(tok, "-"))
				after = field;
			else if (after && field == after + 1)
				type = tok;
			else if (after && field == after + 2)
				src = tok;
		}
		if (!mp || !type || !src || strcmp(type, "fuse.stashfs"))
			continue;
		unescape_octal(mp);
		if (strcmp(mp, real))
			continue;
		unescape_octal(src);
		/* mounts made before the store was named there say "stashfs" */
		if (src[0] == '/' && snprintf(store, n, "%s", src) < (int)n)
			rc = 0;
	}
	fclose(f);
	return rc;
}

int fs_mount_remotes(const char *store, const char *dir, char *remote, size_t rn, char *reads,
		     size_t readn)
{
	char statedir[PATH_MAX], real[PATH_MAX];
	int rc = state_dir_of(store, dir, statedir, sizeof(statedir), real, sizeof(real));

	if (rc)
		return rc;
	if (ov_peek_meta(statedir, "remote", remote, rn) != 0)
		return -ENOENT;
	if (ov_peek_meta(statedir, "read_remotes", reads, readn) != 0)
		reads[0] = '\0';
	return 0;
}

/* Is path a mount point in our mount namespace?  1, 0. */
int is_mounted(const char *real, int *stashfs)
{
	FILE *f = fopen("/proc/self/mounts", "re");
	char line[8192];
	int found = 0;

	*stashfs = 0;
	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f)) {
		char src[4096], mp[4096], type[256];

		if (sscanf(line, "%4095s %4095s %255s", src, mp, type) != 3)
			continue;
		/* /proc/mounts escapes spaces as \040; compare the plain case */
		if (strcmp(mp, real) == 0) {
			found = 1;
			*stashfs = strstr(type, "stashfs") != NULL;
		}
	}
	fclose(f);
	return found;
}

/* Is the FUSE mount on real one whose daemon is gone?  A plain stat
 * can succeed from the kernel's attribute cache long after the daemon
 * died; a forced getattr goes to the connection, which answers ENOTCONN
 * once it is aborted. */
int mount_is_dead(const char *real)
{
	struct statx stx;

	if (statx(AT_FDCWD, real, AT_STATX_FORCE_SYNC | AT_SYMLINK_NOFOLLOW, STATX_TYPE, &stx) < 0)
		return errno == ENOTCONN;
	return 0;
}

static int run_fusermount(const char *real, int lazy)
{
	pid_t pid = fork();
	int st;

	if (pid < 0)
		return -errno;
	if (pid == 0) {
		int fd = open("/dev/null", O_WRONLY);

		if (fd >= 0)
			dup2(fd, 1);
		execlp("fusermount3", "fusermount3", "-u", lazy ? "-z" : "-q", real, (char *)NULL);
		_exit(127);
	}
	if (waitpid(pid, &st, 0) < 0)
		return -errno;
	return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -EBUSY;
}

int unmount_dir(const char *real, int lazy)
{
	if (geteuid() == 0) {
		if (umount2(real, lazy ? MNT_DETACH : 0) == 0)
			return 0;
		if (errno == EBUSY && !lazy)
			return -EBUSY;
	}
	return run_fusermount(real, lazy);
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	if (remove(path) < 0 && errno != ENOENT)
		return -1;
	return 0;
}

int rm_rf(const char *path)
{
	if (nftw(path, rm_entry, 32, FTW_DEPTH | FTW_PHYS) < 0 && errno != ENOENT)
		return -errno;
	return 0;
}

int fs_stats_map(const char *statedir, int create, struct mount_stats **out)
{
	char path[PATH_MAX];
	char tmp[PATH_MAX + 32];
	void *m;
	int fd;

	snprintf(path, sizeof(path), "%s/stats", statedir);
	/*
	 * A new daemon makes a new file and renames it in place: the daemon
	 * before it may still count into the old one's mapping while it fills
	 * the cache after umount, and truncating a file mapped elsewhere
	 * would fault that daemon (SIGBUS).
	 */
	snprintf(tmp, sizeof(tmp), "%s.%ld", path, (long)getpid());
	fd = create ? open(tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)
		    : open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (create && (ftruncate(fd, sizeof(struct mount_stats)) < 0 || rename(tmp, path) < 0)) {
		int rc = -errno;

		close(fd);
		unlink(tmp);
		return rc;
	}
	m = mmap(NULL, sizeof(struct mount_stats), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	if (m == MAP_FAILED)
		return -errno;
	*out = m;
	if (!create && (*out)->magic != MOUNT_STATS_MAGIC) {
		munmap(m, sizeof(struct mount_stats));
		return -EBADMSG;
	}
	return 0;
}

void stats_unmap(struct mount_stats *s)
{
	if (s)
		munmap(s, sizeof(*s));
}

int fs_umount(struct repo *r, const char *dir, int lazy)
{
	char statedir[PATH_MAX], real[PATH_MAX];
	struct mount_stats *stats = NULL;
	int64_t pid = 0;
	int rc, stashfs, i;

	rc = fs_state_dir(r, dir, statedir, sizeof(statedir), real, sizeof(real));
	if (rc) {
		log_err("umount: '%s': %s", qpath(dir), strerror(-rc));
		return rc;
	}
	if (fs_stats_map(statedir, 0, &stats) == 0) {
		pid = stats->pid;
		/* the daemon's lookups ahead stop: a path walk in flight
		 * would make the unmount busy for that instant */
		__atomic_store_n(&stats->leaving, 1, __ATOMIC_RELAXED);
		stats_unmap(stats);
	}
	if (!is_mounted(real, &stashfs)) {
		log_err("umount: '%s' is not mounted", qpath(real));
		return -EINVAL;
	}
	if (!stashfs) {
		log_err("umount: '%s' is not a stashfs mount", qpath(real));
		return -EINVAL;
	}
	if (mount_is_dead(real)) {
		rc = unmount_dir(real, 1); /* the daemon is gone */
	} else if (lazy) {
		/* detached now; the daemon serves who is still inside and
		 * writes its state when the last of them leaves */
		rc = unmount_dir(real, 1);
		if (!rc)
			return 0;
	} else {
		rc = unmount_dir(real, 0);
		for (i = 0; rc == -EBUSY && i < 100; i++) {
			usleep(5000); /* a lookup ahead finishing its path walk */
			rc = unmount_dir(real, 0);
		}
		if (rc == -EBUSY) {
			log_err("umount: '%s' is busy (files open or a shell inside it); "
				"--lazy detaches it now",
				qpath(real));
			return rc;
		}
	}
	if (rc) {
		log_err("umount: '%s': %s", qpath(real), strerror(-rc));
		return rc;
	}
	/* wait for the daemon to finish writing its state */
	if (daemon_wait(statedir, pid) != 0)
		log_err("umount: the daemon of '%s' (pid %" PRId64 ") has not finished writing "
			"its state after %d s; see %s/daemon.log",
			qpath(real), pid, DAEMON_WAIT_S, statedir);
	return 0;
}

int fs_discard_state(struct repo *r, const char *dir)
{
	char statedir[PATH_MAX], real[PATH_MAX];
	int rc = fs_state_dir(r, dir, statedir, sizeof(statedir), real, sizeof(real));

	return rc ? rc : rm_rf(statedir);
}

/* What status tells of the mount whose state is statedir: 0, or -ENOENT. */
static int mount_info(const char *statedir, struct mount_info *mi)
{
	struct mount_stats *s = NULL;

	memset(mi, 0, sizeof(*mi));
	if (ov_peek_meta(statedir, "dir", mi->dir, sizeof(mi->dir)) != 0)
		return -ENOENT;
	snprintf(mi->statedir, sizeof(mi->statedir), "%s", statedir);
	ov_peek_meta(statedir, "key", mi->key, sizeof(mi->key));
	ov_peek_meta(statedir, "hit", mi->hit, sizeof(mi->hit));
	ov_peek_meta(statedir, "matched_key", mi->matched, sizeof(mi->matched));
	if (fs_stats_map(statedir, 0, &s) == 0) {
		memcpy(&mi->stats, s, sizeof(mi->stats));
		stats_unmap(s);
	}
	mi->alive = mi->stats.pid > 0 && daemon_alive(statedir, mi->stats.pid);
	return 0;
}

int fs_status(struct repo *r, const char *dir, fs_status_fn fn, void *arg)
{
	char statedir[PATH_MAX], real[PATH_MAX], path[PATH_MAX];
	struct mount_info *mi = malloc(sizeof(*mi));
	int rc = 0;

	if (!mi)
		return -ENOMEM;
	if (dir) {
		rc = fs_state_dir(r, dir, statedir, sizeof(statedir), real, sizeof(real));
		if (!rc)
			rc = mount_info(statedir, mi);
		if (rc)
			log_err("status: '%s' is not a stashfs mount of store %s", qpath(dir),
				store_path(r->store));
		else
			fn(mi, arg);
	} else {
		DIR *d;
		struct dirent *de;

		snprintf(path, sizeof(path), "%s/mounts", store_path(r->store));
		d = opendir(path);
		while (d && (de = readdir(d))) {
			if (de->d_name[0] == '.')
				continue;
			snprintf(statedir, sizeof(statedir), "%s/%s", path, de->d_name);
			if (mount_info(statedir, mi) == 0)
				fn(mi, arg);
		}
		if (d)
			closedir(d);
	}
	free(mi);
	return rc;
}

int fs_changes(struct repo *r, const char *dir, uint64_t *n)
{
	char statedir[PATH_MAX], real[PATH_MAX], v[256];
	struct catalog *cat = NULL;
	struct ov *ov = NULL;
	struct ov_opts oo;
	struct cas_id id;
	int rc = fs_state_dir(r, dir, statedir, sizeof(statedir), real, sizeof(real));

	*n = 0;
	if (!rc)
		rc = ov_peek_meta(statedir, "catalog", v, sizeof(v));
	if (!rc)
		rc = cas_id_parse(&id, v);
	if (!rc)
		rc = repo_catalog(r, &id, &cat);
	memset(&oo, 0, sizeof(oo));
	oo.readonly = 1;
	if (!rc)
		rc = ov_open(statedir, cat, &oo, &ov);
	if (!rc)
		*n = ov_changes(ov);
	ov_close(ov);
	catalog_close(cat);
	return rc;
}

int fs_live_stores(char (*stores)[PATH_MAX], int max)
{
	char line[3 * PATH_MAX];
	FILE *f = fopen("/proc/self/mountinfo", "re");
	int n = 0, i;

	if (!f)
		return 0;
	while (n < max && fgets(line, sizeof(line), f)) {
		char *sep = strstr(line, " - fuse.stashfs "), *src, *end;

		if (!sep)
			continue;
		src = sep + strlen(" - fuse.stashfs ");
		end = strchr(src, ' ');
		if (!end || src[0] != '/')
			continue;
		*end = '\0';
		unescape_octal(src);
		for (i = 0; i < n && strcmp(stores[i], src); i++)
			;
		if (i == n && snprintf(stores[n], PATH_MAX, "%s", src) < PATH_MAX)
			n++;
	}
	fclose(f);
	return n;
}
