/*
 * Mount lifecycle: fs_mount, fs_commit, fs_umount, fs_status.
 *
 * fs_mount resolves the key and prepares the state in the calling process,
 * closes every SQLite handle, then forks the daemon, which reopens them,
 * mounts, and says "ok" through a pipe once the mount is usable; the
 * parent returns then.  Errors before that point reach the terminal.
 *
 * While it fetches the catalog, the command opens the daemon's first
 * connections to the remote (remote_preconnect, PRECONNECT of them, as
 * many as the daemon's prefetchers): the daemon inherits and adopts them,
 * so its first GETs cost no handshake.
 */
#define _GNU_SOURCE
#include "fetch.h"
#include "mount.h"
#include "overlay.h"
#include "../store/idmap.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <libgen.h>
#include <limits.h>
#include <malloc.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PRECONNECT FETCH_THREADS /* a connection per background fetcher */
#define DAEMON_WAIT_S 30 /* the longest umount waits for a daemon to write its state */

/*
 * STATE/daemon.lock: the daemon holds an exclusive flock on it from before
 * the mount exists until its state is written, and umount waits for it.
 * The kernel drops the lock when the daemon's files close, at exit or
 * kill -9: unlike kill(pid, 0), it is not fooled by a zombie that nobody
 * reaps (a container's PID 1 that never waits) or by a reused pid.
 */
static int daemon_lock(const char *statedir)
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
static int lock_held(const char *statedir)
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
static int is_mounted(const char *real, int *stashfs)
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
static int mount_is_dead(const char *real)
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

static int unmount_dir(const char *real, int lazy)
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

static int rm_rf(const char *path)
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

static void stats_unmap(struct mount_stats *s)
{
	if (s)
		munmap(s, sizeof(*s));
}

/* A root-only catalog for a miss: an empty writable tree. */
static int empty_catalog(struct repo *r, struct cas_id *id)
{
	struct cat_entry root;
	struct buf img = BUF_INIT;
	char path[PATH_MAX];
	struct timespec ts;
	int rc;

	clock_gettime(CLOCK_REALTIME, &ts);
	memset(&root, 0, sizeof(root));
	root.mode = S_IFDIR | 0755;
	root.mtime_sec = ts.tv_sec;
	root.mtime_nsec = (uint32_t)ts.tv_nsec;
	root.nlink = 2;
	root.uid = getuid();
	root.gid = getgid();
	rc = catalog_build(&img, &root, 1, NULL, 0, NULL, 0, NULL, 0, NULL, 0, NULL, 0, "", 0);
	if (rc)
		return rc;
	cas_hash(img.p, img.len, id);
	store_catalog_path(r->store, id, path, sizeof(path));
	rc = write_file_atomic(path, img.p, img.len, 0600);
	buf_free(&img);
	return rc;
}

static int read_lower(void *arg, uint32_t idx, uint64_t off, void *buf, size_t n)
{
	ssize_t got = fetch_read(arg, idx, off, buf, n);

	if (got < 0)
		return (int)got;
	return (size_t)got == n ? 0 : -EIO;
}

struct daemon_args {
	const char *real;
	const char *statedir;
	const char *store_path;
	const char *remote;
	char *const *reads;
	int n_reads;
	struct cas_id catalog;
	int allow_other;
	int preserve_owner;
	long owner_uid, owner_gid;
	int foreground;
	int no_prefetch;
	int no_uring;
	int track_use;
	const struct key_rec *used; /* the key to mark used (NULL: none), by the daemon */
	int ready_fd;
	int pre[PRECONNECT]; /* connections to the remote opened ahead */
	int npre;
};

static void close_pre(struct daemon_args *d)
{
	while (d->npre > 0)
		close(d->pre[--d->npre]);
}

/* Open everything and serve until unmounted.  Runs in the daemon. */
static int run_daemon(struct daemon_args *d)
{
	struct repo r;
	struct catalog *cat = NULL;
	struct fetcher *f = NULL;
	struct ov *ov = NULL;
	struct mount_stats *stats = NULL;
	struct ov_opts oo;
	struct serve_opts so;
	char path[PATH_MAX], used[PATH_MAX + 16];
	struct used_mark mark;
	struct repo mr; /* r, with a remote of its own for the use mark */
	struct remote *mrem = NULL;
	int rc, lock;

	memset(&so, 0, sizeof(so));
	memset(&mark, 0, sizeof(mark));
	lock = daemon_lock(d->statedir);
	if (lock < 0) {
		log_err("mount: %s: %s", d->statedir,
			lock == -EBUSY ? "another daemon serves this state" : strerror(-lock));
		close_pre(d);
		return lock;
	}
	/*
	 * Fetches allocate and free buffers of up to a few MiB per batch:
	 * keep them in the heap rather than mapping fresh zeroed pages each
	 * time (a third of the daemon's system time while prefetching).
	 */
	mallopt(M_MMAP_THRESHOLD, 16 << 20);
	mallopt(M_TRIM_THRESHOLD, 16 << 20);
	rc = repo_open(&r, d->store_path, d->remote, d->reads, d->n_reads);
	if (rc) {
		close_pre(d);
		close(lock);
		return rc;
	}
	rc = repo_catalog(&r, &d->catalog, &cat);
	if (rc)
		goto out;
	rc = fs_stats_map(d->statedir, 1, &stats);
	if (rc) {
		log_err("mount: cannot create %s/stats: %s", d->statedir, strerror(-rc));
		goto out;
	}
	stats->magic = MOUNT_STATS_MAGIC;
	stats->pid = getpid();
	stats->mounted_ns = now_ns();
	stats->files_total = catalog_header(cat)->n_files;
	stats->bytes_total = catalog_header(cat)->total_bytes;
	remote_adopt(r.primary, d->pre, d->npre, &stats->conns_ahead);
	d->npre = 0; /* the remote owns them now */
	rc = fetcher_new(&r, cat, d->statedir, stats, &f);
	if (rc)
		goto out;
	memset(&oo, 0, sizeof(oo));
	oo.preserve_owner = d->preserve_owner;
	oo.uid = d->owner_uid >= 0 ? (uid_t)d->owner_uid : getuid();
	oo.gid = d->owner_gid >= 0 ? (gid_t)d->owner_gid : getgid();
	oo.read_lower = read_lower;
	oo.read_arg = f;
	rc = ov_open(d->statedir, cat, &oo, &ov);
	if (rc)
		goto out;
	if (!d->no_prefetch)
		fetch_prefetch_record(f); /* background, in recorded order */
	snprintf(path, sizeof(path), "%s/daemon.log", d->statedir);
	so.allow_other = d->allow_other;
	so.ready_fd = d->ready_fd;
	so.foreground = d->foreground;
	so.uring = !d->no_uring;
	/* looking names up ahead would hide from --track-use which ones the job uses */
	so.lookup_ahead = !d->no_prefetch && !d->track_use;
	so.log_path = path;
	if (d->track_use) {
		snprintf(used, sizeof(used), "%s/used.bits", d->statedir);
		so.used_path = used;
	}
	/*
	 * The key's use mark goes out while the daemon serves, so no job waits
	 * for it, over a connection of its own: the ones opened ahead are for
	 * the job's first reads.
	 */
	if (d->used) {
		mr = r;
		if (d->remote && *d->remote && remote_open(d->remote, 0, &mrem) == 0)
			mr.primary = mrem;
		keys_mark_used_begin(&mr, d->used, &mark);
	}
	rc = fs_serve(d->real, ov, f, cat, stats, d->store_path, &so);
	keys_mark_used_end(&mark);
	remote_free(mrem);
out:
	close_pre(d);
	/*
	 * The mount's state is written once the writable layer and the read
	 * record are closed: umount returns then.  What follows only fills
	 * the object cache (GETs in flight, cache files written behind, LRU
	 * marks); a daemon killed during it loses cache, never state.
	 */
	ov_close(ov);
	fetcher_close_logs(f);
	if (stats)
		stats->pid = 0;
	close(lock);
	fetcher_free(f);
	stats_unmap(stats);
	catalog_close(cat);
	repo_close(&r);
	return rc;
}

/*
 * Does path (a store, or a file:// remote) lie in dir or is it dir?  The
 * daemon would then read its own mount, and hang on it.
 */
static int lies_under(const char *path, const char *dir)
{
	char p[PATH_MAX], rp[PATH_MAX];
	size_t n = strlen(dir);

	if (!strncmp(path, "file://", 7))
		path += 7;
	else if (strstr(path, "://"))
		return 0;
	if (snprintf(p, sizeof(p), "%s", path) >= (int)sizeof(p))
		return 0;
	/* a store not made yet: where its nearest existing parent is (the
	 * mount point exists, so one inside it is found) */
	while (!realpath(p, rp)) {
		char *slash = strrchr(p, '/');

		if (errno != ENOENT || !slash || slash == p)
			return 0;
		*slash = '\0';
	}
	return !strncmp(rp, dir, n) && (rp[n] == '\0' || rp[n] == '/' || !strcmp(dir, "/"));
}

static int inside_mount(const char *real, const char *store_path, const char *remote,
			char *const *reads, int n_reads)
{
	const char *what = NULL, *where = NULL;
	int i;

	if (lies_under(store_path, real))
		what = "the store", where = store_path;
	else if (remote && lies_under(remote, real))
		what = "the remote", where = remote;
	for (i = 0; !what && i < n_reads; i++)
		if (lies_under(reads[i], real))
			what = "a read remote", where = reads[i];
	if (!what)
		return 0;
	log_err("mount: %s '%s' lies inside '%s': the mount would hide it from itself; "
		"put it elsewhere (--store, --remote)",
		what, qpath(where), qpath(real));
	return -EINVAL;
}

int fs_mount(struct repo *r, const struct mount_opts *o, const char *store_path, const char *remote,
	     char *const *reads, int n_reads)
{
	char statedir[PATH_MAX], real[PATH_MAX], hex[CAS_HEX_LEN + 1], v[1024],
		dbpath[PATH_MAX + 16];
	struct daemon_args d;
	struct key_rec rec;
	enum hit_kind hit = HIT_MISS;
	struct catalog *cat = NULL;
	struct stat st;
	int rc, stashfs, resumed = 0, pipefd[2] = { -1, -1 };
	uint64_t changes = 0, files = 0, bytes = 0;
	double t0 = mono_sec();
	pid_t pid;

	if (stat(o->dir, &st) < 0 && errno == ENOENT) {
		rc = mkdir_p(o->dir, 0755);
		if (rc) {
			log_err("mount: cannot create '%s': %s", qpath(o->dir), strerror(-rc));
			return rc;
		}
	}
	rc = fs_state_dir(r, o->dir, statedir, sizeof(statedir), real, sizeof(real));
	if (rc) {
		log_err("mount: '%s': %s", qpath(o->dir), strerror(-rc));
		return rc;
	}
	if (stat(real, &st) < 0) {
		if (errno == ENOTCONN) {
			/* the daemon of an earlier mount was killed: clear its mount */
			unmount_dir(real, 1);
		} else if (errno == ENOENT) {
			rc = mkdir_p(real, 0755);
			if (rc) {
				log_err("mount: cannot create '%s': %s", qpath(real),
					strerror(-rc));
				return rc;
			}
		} else {
			rc = -errno;
			log_err("mount: '%s': %s", qpath(real), strerror(errno));
			return rc;
		}
	} else if (!S_ISDIR(st.st_mode)) {
		log_err("mount: '%s' is not a directory", qpath(real));
		return -ENOTDIR;
	}
	rc = inside_mount(real, store_path, remote, reads, n_reads);
	if (rc)
		return rc;
	if (is_mounted(real, &stashfs)) {
		if (mount_is_dead(real)) {
			unmount_dir(real, 1);
		} else {
			log_err("mount: '%s' is already a mount point%s", qpath(real),
				stashfs ? " (stashfs: 'stashfs umount' it first)" : "");
			return -EBUSY;
		}
	}
	if (lock_held(statedir) == 1) {
		log_err("mount: the daemon of an earlier mount of '%s' still serves it (detached "
			"with --lazy, or mounted in another namespace); mount it when its users "
			"have left",
			qpath(real));
		return -EBUSY;
	}
	if (o->fresh) {
		rc = rm_rf(statedir);
		if (rc) {
			log_err("mount: cannot discard %s: %s", statedir, strerror(-rc));
			return rc;
		}
	}
	rc = keys_resolve(r, o->key, o->restore, o->n_restore, &rec, &hit);
	if (rc) {
		log_err("mount: looking up key '%s': %s", o->key, strerror(-rc));
		return rc;
	}
	if (hit == HIT_MISS && o->fail_on_miss) {
		log_err("mount: miss for key '%s' (--fail-on-miss)", o->key);
		return -ENOENT;
	}
	memset(&d, 0, sizeof(d));
	if (hit != HIT_MISS)
		d.catalog = rec.catalog;

	/* an earlier state for this DIR: resume it, or refuse to drop changes */
	snprintf(dbpath, sizeof(dbpath), "%s/state.db", statedir);
	if (access(dbpath, F_OK) == 0) {
		struct catalog *old = NULL;
		struct ov *ov = NULL;
		struct ov_opts oo;
		struct cas_id oldcat, donecat;
		char oldkey[KEY_MAX + 1] = "", oldhit[16] = "";

		memset(&oo, 0, sizeof(oo));
		oo.readonly = 1;
		rc = ov_peek_meta(statedir, "catalog", v, sizeof(v));
		if (!rc)
			rc = cas_id_parse(&oldcat, v);
		ov_peek_meta(statedir, "key", oldkey, sizeof(oldkey));
		ov_peek_meta(statedir, "hit", oldhit, sizeof(oldhit));
		if (ov_peek_meta(statedir, "committed_catalog", v, sizeof(v)) != 0 ||
		    cas_id_parse(&donecat, v) != 0)
			memset(&donecat, 0, sizeof(donecat));
		if (rc == 0 && repo_catalog(r, &oldcat, &old) == 0 &&
		    ov_open(statedir, old, &oo, &ov) == 0)
			changes = ov_changes(ov);
		ov_close(ov);
		catalog_close(old);
		if (rc == 0 &&
		    /* the key names this state's base, or what it committed:
		     * the base plus the changes is that view either way */
		    ((hit != HIT_MISS && (cas_id_cmp(&oldcat, &rec.catalog) == 0 ||
					  cas_id_cmp(&donecat, &rec.catalog) == 0)) ||
		     (hit == HIT_MISS && !strcmp(oldhit, "miss") && !strcmp(oldkey, o->key)))) {
			d.catalog = oldcat;
			resumed = 1;
		} else if (changes) {
			log_err("mount: '%s' has uncommitted changes on key '%s'; mount that key "
				"to "
				"resume them, or add --fresh to discard them",
				qpath(real), oldkey);
			return -EEXIST;
		} else {
			rm_rf(statedir);
		}
	}
	if (hit == HIT_MISS && !resumed) {
		rc = empty_catalog(r, &d.catalog);
		if (rc) {
			log_err("mount: cannot write an empty catalog in %s: %s", store_path,
				strerror(-rc));
			return rc;
		}
	}
	/* the daemon's first connections, opened while the catalog comes */
	if (hit != HIT_MISS && !o->no_prefetch)
		d.npre = remote_preconnect(r->primary, PRECONNECT, d.pre);
	rc = repo_catalog(r, &d.catalog, &cat);
	if (rc) {
		close_pre(&d);
		return rc;
	}
	files = catalog_header(cat)->n_files;
	bytes = catalog_header(cat)->total_bytes;
	rc = mkdir_p(statedir, 0700);
	if (!rc) {
		struct ov *ov = NULL;
		struct ov_opts oo;

		memset(&oo, 0, sizeof(oo));
		oo.readonly = 1;
		rc = ov_open(statedir, cat, &oo, &ov);
		cas_id_hex(&d.catalog, hex);
		if (!rc && !resumed) {
			ov_meta_set(ov, "catalog", hex);
			ov_meta_set(ov, "key", o->key);
			ov_meta_set(ov, "hit", hit_kind_name(hit));
			ov_meta_set(ov, "matched_key", hit == HIT_MISS ? "" : rec.key);
		}
		if (!rc)
			rc = ov_meta_set(ov, "dir", real);
		/* where commit, umount and status of DIR find its remotes */
		if (!rc) {
			struct buf rb = BUF_INIT;
			int i;

			for (i = 0; i < n_reads; i++)
				buf_printf(&rb, "%s%s", i ? "\n" : "", reads[i]);
			buf_append(&rb, "", 1);
			ov_meta_set(ov, "remote", remote ? remote : "");
			rc = ov_meta_set(ov, "read_remotes", (const char *)rb.p);
			buf_free(&rb);
		}
		ov_close(ov);
	}
	catalog_close(cat);
	if (rc) {
		log_err("mount: cannot prepare state in %s: %s", statedir, strerror(-rc));
		close_pre(&d);
		return rc;
	}

	if (!o->track_use) {
		/* a mount without --track-use sees uses it does not note: what an
		 * earlier one noted would tell commit --prune-unread too little */
		char ub[PATH_MAX + 16];

		snprintf(ub, sizeof(ub), "%s/used.bits", statedir);
		unlink(ub);
	}
	d.real = real;
	d.statedir = statedir;
	d.store_path = store_path;
	d.remote = remote;
	d.reads = reads;
	d.n_reads = n_reads;
	d.allow_other = o->allow_other;
	d.preserve_owner = o->preserve_owner;
	d.owner_uid = o->owner_uid;
	d.owner_gid = o->owner_gid;
	d.foreground = o->foreground;
	d.no_prefetch = o->no_prefetch;
	d.no_uring = o->no_uring;
	d.track_use = o->track_use;
	d.used = hit != HIT_MISS ? &rec : NULL;
	d.ready_fd = -1;

	{
		char total[32];

		fmt_size(total, sizeof(total), bytes);
		if (hit == HIT_MISS)
			snprintf(v, sizeof(v), "miss for key '%s': %s writable tree", o->key,
				 resumed && changes ? "resumed the" : "an empty");
		else
			snprintf(v, sizeof(v), "%s hit '%s': %" PRIu64 " files, %s%s",
				 hit_kind_name(hit), rec.key, files, total,
				 resumed && changes ? ", changes resumed" : "");
	}
	/* no SQLite handle may cross fork() */
	repo_close(r);
	if (o->foreground) {
		log_info("mount: %s at %s (foreground)", v, qpath(real));
		return run_daemon(&d);
	}
	if (pipe2(pipefd, O_CLOEXEC) < 0) {
		rc = -errno;
		close_pre(&d);
		return rc;
	}
	pid = fork();
	if (pid < 0) {
		rc = -errno;
		close(pipefd[0]);
		close(pipefd[1]);
		close_pre(&d);
		return rc;
	}
	if (pid == 0) {
		close(pipefd[0]);
		setsid();
		if (fork() > 0)
			_exit(0); /* the daemon is reparented; the caller reaps us now */
		d.ready_fd = pipefd[1];
		rc = run_daemon(&d);
		_exit(rc ? 1 : 0);
	}
	close(pipefd[1]);
	close_pre(&d); /* the daemon has its own copies */
	waitpid(pid, NULL, 0);
	{
		char ok[4] = "";
		struct pollfd pfd = { pipefd[0], POLLIN, 0 };
		ssize_t n = 0;

		if (poll(&pfd, 1, 60000) > 0)
			n = read(pipefd[0], ok, 2);
		close(pipefd[0]);
		if (n != 2 || memcmp(ok, "ok", 2) != 0) {
			log_err("mount: the daemon for '%s' did not start (see above, and "
				"%s/daemon.log)",
				qpath(real), statedir);
			return -EIO;
		}
	}
	if (o->json) {
		printf("{\"command\":\"mount\",\"dir\":");
		json_str(stdout, real);
		printf(",\"key\":");
		json_str(stdout, o->key);
		printf(",\"hit\":\"%s\",\"matched_key\":", hit_kind_name(hit));
		if (hit == HIT_MISS)
			printf("null");
		else
			json_str(stdout, rec.key);
		printf(",\"files\":%" PRIu64 ",\"bytes\":%" PRIu64
		       ",\"resumed\":%s,\"seconds\":%.3f}\n",
		       files, bytes, resumed ? "true" : "false", mono_sec() - t0);
	}
	log_info("mount: %s at %s; %.2f s", v, qpath(real), mono_sec() - t0);
	return 0;
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

static void status_one(const char *statedir, int json, int *first)
{
	char dir[PATH_MAX] = "", key[KEY_MAX + 1] = "", hit[16] = "", matched[KEY_MAX + 1] = "";
	struct mount_stats *s = NULL, zero;
	int alive = 0;

	if (ov_peek_meta(statedir, "dir", dir, sizeof(dir)) != 0)
		return;
	ov_peek_meta(statedir, "key", key, sizeof(key));
	ov_peek_meta(statedir, "hit", hit, sizeof(hit));
	ov_peek_meta(statedir, "matched_key", matched, sizeof(matched));
	memset(&zero, 0, sizeof(zero));
	if (fs_stats_map(statedir, 0, &s) != 0)
		s = &zero;
	alive = s->pid > 0 && daemon_alive(statedir, s->pid);
	if (json) {
		printf("%s{\"dir\":", *first ? "" : ",");
		json_str(stdout, dir);
		printf(",\"mounted\":%s,\"key\":", alive ? "true" : "false");
		json_str(stdout, key);
		printf(",\"hit\":\"%s\",\"matched_key\":", hit);
		json_str(stdout, matched);
		printf(",\"files\":%" PRIu64 ",\"bytes_total\":%" PRIu64
		       ",\"bytes_fetched\":%" PRIu64 ",\"objects_fetched\":%" PRIu64
		       ",\"bytes_read\":%" PRIu64 ",\"bytes_written\":%" PRIu64
		       ",\"copy_ups\":%" PRIu64 ",\"fetch_errors\":%" PRIu64
		       ",\"bytes_uploaded\":%" PRIu64 ",\"commits\":%" PRIu64
		       ",\"bytes_prefetched\":%" PRIu64 ",\"prefetch_queued\":%" PRIu64
		       ",\"prefetch_done\":%" PRIu64 ",\"bytes_pushed\":%" PRIu64
		       ",\"ring_threads\":%" PRIu64 ",\"ring_requests\":%" PRIu64
		       ",\"lookups\":%" PRIu64 ",\"lookups_ahead\":%" PRIu64
		       ",\"pushed_ahead\":%" PRIu64 ",\"written_behind\":%" PRIu64
		       ",\"ring_light\":%" PRIu64 ",\"connections_ahead\":%" PRIu64
		       ",\"dirs_ahead\":%" PRIu64 ",\"pid\":%" PRId64 "}",
		       s->files_total, s->bytes_total, s->bytes_fetched, s->objects_fetched,
		       s->bytes_read, s->bytes_written, s->copy_ups, s->fetch_errors,
		       s->bytes_uploaded, s->commits, s->bytes_prefetched, s->prefetch_queued,
		       s->prefetch_done, s->bytes_pushed, s->ring_threads, s->ring_requests,
		       s->lookups, s->lookups_ahead, s->pushed_ahead, s->written_behind,
		       s->ring_light, s->conns_ahead, s->dirs_ahead, alive ? s->pid : (int64_t)0);
	} else {
		char fetched[32], total[32], written[32], up[32];

		fmt_size(fetched, sizeof(fetched), s->bytes_fetched);
		fmt_size(total, sizeof(total), s->bytes_total);
		fmt_size(written, sizeof(written), s->bytes_written);
		fmt_size(up, sizeof(up), s->bytes_uploaded);
		char pre[32];

		fmt_size(pre, sizeof(pre), s->bytes_prefetched);
		printf("%s: %s, key '%s' (%s%s%s%s), %" PRIu64
		       " files; fetched %s of %s in %" PRIu64
		       " objects (%s ahead; prefetch %" PRIu64 "/%" PRIu64
		       "); wrote %s; uploaded %s in %" PRIu64 " commits%s%s%s\n",
		       dir, alive ? "mounted" : "not mounted", key, hit, *matched ? " hit '" : "",
		       matched, *matched ? "'" : "", s->files_total, fetched, total,
		       s->objects_fetched, pre, s->prefetch_done, s->prefetch_queued, written, up,
		       s->commits, s->fetch_errors ? "; FETCH ERRORS (see " : "",
		       s->fetch_errors ? statedir : "", s->fetch_errors ? "/daemon.log)" : "");
	}
	*first = 0;
	if (s != &zero)
		stats_unmap(s);
}

int fs_status(struct repo *r, const char *dir, int json, int *first)
{
	char statedir[PATH_MAX], real[PATH_MAX], path[PATH_MAX];
	int rc;

	if (dir) {
		rc = fs_state_dir(r, dir, statedir, sizeof(statedir), real, sizeof(real));
		if (!rc && ov_peek_meta(statedir, "dir", path, sizeof(path)) != 0)
			rc = -ENOENT;
		if (rc) {
			log_err("status: '%s' is not a stashfs mount of store %s", qpath(dir),
				store_path(r->store));
			return rc;
		}
		status_one(statedir, json, first);
	} else {
		DIR *d;
		struct dirent *de;

		snprintf(path, sizeof(path), "%s/mounts", store_path(r->store));
		d = opendir(path);
		while (d && (de = readdir(d))) {
			if (de->d_name[0] == '.')
				continue;
			snprintf(statedir, sizeof(statedir), "%s/%s", path, de->d_name);
			status_one(statedir, json, first);
		}
		if (d)
			closedir(d);
	}
	return 0;
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
