/*
 * Mounting: fs_mount and the daemon it starts (fs/state.c keeps the
 * state directory and the mount table, fs/commit.c commits).
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
#include "state.h"
#include "../store/idmap.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <malloc.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PRECONNECT FETCH_THREADS /* a connection per background fetcher */

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
	const struct repo_spec *spec; /* the command's, for the daemon's own repo */
	const struct mount_opts *o;
	struct cas_id catalog;
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
	int rc, lock, split = 0;
	const struct mount_opts *o = d->o;

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
	rc = repo_open(&r, d->spec);
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
	repo_adopt(&r, d->pre, d->npre, &stats->conns_ahead);
	d->npre = 0; /* the remote owns them now */
	rc = fetcher_new(&r, cat, d->statedir, stats, &f);
	if (rc)
		goto out;
	if (o->no_mem_reads)
		fetcher_no_mem_reads(f);
	memset(&oo, 0, sizeof(oo));
	oo.preserve_owner = o->preserve_owner;
	oo.uid = o->owner_uid >= 0 ? (uid_t)o->owner_uid : getuid();
	oo.gid = o->owner_gid >= 0 ? (gid_t)o->owner_gid : getgid();
	oo.read_lower = read_lower;
	oo.read_arg = f;
	rc = ov_open(d->statedir, cat, &oo, &ov);
	if (rc)
		goto out;
	if (!o->no_prefetch)
		fetch_prefetch_record(f); /* background, in recorded order */
	snprintf(path, sizeof(path), "%s/daemon.log", d->statedir);
	so.o = o;
	so.ready_fd = d->ready_fd;
	/* looking names up ahead would hide from --track-use which ones the job uses */
	so.lookup_ahead = !o->no_prefetch && !o->track_use;
	so.log_path = path;
	if (o->track_use) {
		snprintf(used, sizeof(used), "%s/used.bits", d->statedir);
		so.used_path = used;
	}
	/*
	 * The key's use mark goes out while the daemon serves, so no job waits
	 * for it, over a connection of its own: the ones opened ahead are for
	 * the job's first reads.
	 */
	if (d->used) {
		split = repo_split(&r, &mr) == 0;
		keys_mark_used_begin(split ? &mr : &r, d->used, &mark);
	}
	rc = fs_serve(d->real, ov, f, cat, stats, d->spec->store_path, &so);
	keys_mark_used_end(&mark);
	if (split)
		repo_close(&mr);
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

/* One mount command's state, through its steps (fs_mount). */
struct mounting {
	struct repo *r;
	const struct mount_opts *o;
	char statedir[PATH_MAX], real[PATH_MAX];
	struct daemon_args d;
	struct key_rec rec;
	enum hit_kind hit;
	int resumed;
	uint64_t changes, files, bytes;
};

/* DIR made, free to mount on, and its state dir known (dropped with --fresh). */
static int prepare_dir(struct mounting *m)
{
	const struct mount_opts *o = m->o;
	const struct repo_spec *sp = m->r->spec;
	struct stat st;
	int rc, stashfs;

	if (stat(o->dir, &st) < 0 && errno == ENOENT) {
		rc = mkdir_p(o->dir, 0755);
		if (rc) {
			log_err("mount: cannot create '%s': %s", qpath(o->dir), strerror(-rc));
			return rc;
		}
	}
	rc = fs_state_dir(m->r, o->dir, m->statedir, sizeof(m->statedir), m->real, sizeof(m->real));
	if (rc) {
		log_err("mount: '%s': %s", qpath(o->dir), strerror(-rc));
		return rc;
	}
	if (stat(m->real, &st) < 0) {
		if (errno == ENOTCONN) {
			/* the daemon of an earlier mount was killed: clear its mount */
			unmount_dir(m->real, 1);
		} else if (errno == ENOENT) {
			rc = mkdir_p(m->real, 0755);
			if (rc) {
				log_err("mount: cannot create '%s': %s", qpath(m->real),
					strerror(-rc));
				return rc;
			}
		} else {
			rc = -errno;
			log_err("mount: '%s': %s", qpath(m->real), strerror(errno));
			return rc;
		}
	} else if (!S_ISDIR(st.st_mode)) {
		log_err("mount: '%s' is not a directory", qpath(m->real));
		return -ENOTDIR;
	}
	rc = inside_mount(m->real, sp->store_path, sp->remote, sp->reads, sp->n_reads);
	if (rc)
		return rc;
	if (is_mounted(m->real, &stashfs)) {
		if (mount_is_dead(m->real)) {
			unmount_dir(m->real, 1);
		} else {
			log_err("mount: '%s' is already a mount point%s", qpath(m->real),
				stashfs ? " (stashfs: 'stashfs umount' it first)" : "");
			return -EBUSY;
		}
	}
	if (lock_held(m->statedir) == 1) {
		log_err("mount: the daemon of an earlier mount of '%s' still serves it (detached "
			"with --lazy, or mounted in another namespace); mount it when its users "
			"have left",
			qpath(m->real));
		return -EBUSY;
	}
	if (o->fresh) {
		rc = rm_rf(m->statedir);
		if (rc) {
			log_err("mount: cannot discard %s: %s", m->statedir, strerror(-rc));
			return rc;
		}
	}
	return 0;
}

/* An earlier state for this DIR: resume it, or refuse to drop its changes. */
static int resume_state(struct mounting *m)
{
	char v[1024], dbpath[PATH_MAX + 16];
	struct catalog *old = NULL;
	struct ov *ov = NULL;
	struct ov_opts oo;
	struct cas_id oldcat, donecat;
	char oldkey[KEY_MAX + 1] = "", oldhit[16] = "";
	int rc;

	snprintf(dbpath, sizeof(dbpath), "%s/state.db", m->statedir);
	if (access(dbpath, F_OK) != 0)
		return 0;
	memset(&oo, 0, sizeof(oo));
	oo.readonly = 1;
	rc = ov_peek_meta(m->statedir, "catalog", v, sizeof(v));
	if (!rc)
		rc = cas_id_parse(&oldcat, v);
	ov_peek_meta(m->statedir, "key", oldkey, sizeof(oldkey));
	ov_peek_meta(m->statedir, "hit", oldhit, sizeof(oldhit));
	if (ov_peek_meta(m->statedir, "committed_catalog", v, sizeof(v)) != 0 ||
	    cas_id_parse(&donecat, v) != 0)
		memset(&donecat, 0, sizeof(donecat));
	if (rc == 0 && repo_catalog(m->r, &oldcat, &old) == 0 &&
	    ov_open(m->statedir, old, &oo, &ov) == 0)
		m->changes = ov_changes(ov);
	ov_close(ov);
	catalog_close(old);
	if (rc == 0 &&
	    /* the key names this state's base, or what it committed: the base
	     * plus the changes is that view either way */
	    ((m->hit != HIT_MISS && (cas_id_cmp(&oldcat, &m->rec.catalog) == 0 ||
				     cas_id_cmp(&donecat, &m->rec.catalog) == 0)) ||
	     (m->hit == HIT_MISS && !strcmp(oldhit, "miss") && !strcmp(oldkey, m->o->key)))) {
		m->d.catalog = oldcat;
		m->resumed = 1;
	} else if (m->changes) {
		log_err("mount: '%s' has uncommitted changes on key '%s'; mount that key to "
			"resume them, or add --fresh to discard them",
			qpath(m->real), oldkey);
		return -EEXIST;
	} else {
		rm_rf(m->statedir);
	}
	return 0;
}

/* The state's record of what is mounted, and where commit, umount and
 * status of DIR find its remotes. */
static int write_state(struct mounting *m, struct catalog *cat)
{
	const struct repo_spec *sp = m->r->spec;
	char hex[CAS_HEX_LEN + 1];
	struct ov *ov = NULL;
	struct ov_opts oo;
	struct buf rb = BUF_INIT;
	int rc, i;

	rc = mkdir_p(m->statedir, 0700);
	if (rc)
		return rc;
	memset(&oo, 0, sizeof(oo));
	oo.readonly = 1;
	rc = ov_open(m->statedir, cat, &oo, &ov);
	if (rc)
		return rc;
	cas_id_hex(&m->d.catalog, hex);
	if (!m->resumed) {
		ov_meta_set(ov, "catalog", hex);
		ov_meta_set(ov, "key", m->o->key);
		ov_meta_set(ov, "hit", hit_kind_name(m->hit));
		ov_meta_set(ov, "matched_key", m->hit == HIT_MISS ? "" : m->rec.key);
	}
	rc = ov_meta_set(ov, "dir", m->real);
	if (!rc) {
		for (i = 0; i < sp->n_reads; i++)
			buf_printf(&rb, "%s%s", i ? "\n" : "", sp->reads[i]);
		buf_append(&rb, "", 1);
		ov_meta_set(ov, "remote", sp->remote ? sp->remote : "");
		rc = ov_meta_set(ov, "read_remotes", (const char *)rb.p);
		buf_free(&rb);
	}
	ov_close(ov);
	return rc;
}

/* Fork the daemon and wait until it answers (its "ok" on the pipe). */
static int start_daemon(struct mounting *m)
{
	int rc, pipefd[2];
	pid_t pid;
	char ok[4] = "";
	struct pollfd pfd;
	ssize_t n = 0;

	if (pipe2(pipefd, O_CLOEXEC) < 0) {
		rc = -errno;
		close_pre(&m->d);
		return rc;
	}
	pid = fork();
	if (pid < 0) {
		rc = -errno;
		close(pipefd[0]);
		close(pipefd[1]);
		close_pre(&m->d);
		return rc;
	}
	if (pid == 0) {
		close(pipefd[0]);
		setsid();
		if (fork() > 0)
			_exit(0); /* the daemon is reparented; the caller reaps us now */
		m->d.ready_fd = pipefd[1];
		rc = run_daemon(&m->d);
		_exit(rc ? 1 : 0);
	}
	close(pipefd[1]);
	close_pre(&m->d); /* the daemon has its own copies */
	waitpid(pid, NULL, 0);
	pfd.fd = pipefd[0];
	pfd.events = POLLIN;
	if (poll(&pfd, 1, 60000) > 0)
		n = read(pipefd[0], ok, 2);
	close(pipefd[0]);
	if (n != 2 || memcmp(ok, "ok", 2) != 0) {
		log_err("mount: the daemon for '%s' did not start (see above, and %s/daemon.log)",
			qpath(m->real), m->statedir);
		return -EIO;
	}
	return 0;
}

static void print_mounted(const struct mounting *m, double seconds)
{
	printf("{\"command\":\"mount\",\"dir\":");
	json_str(stdout, m->real);
	printf(",\"key\":");
	json_str(stdout, m->o->key);
	printf(",\"hit\":\"%s\",\"matched_key\":", hit_kind_name(m->hit));
	if (m->hit == HIT_MISS)
		printf("null");
	else
		json_str(stdout, m->rec.key);
	printf(",\"files\":%" PRIu64 ",\"bytes\":%" PRIu64 ",\"resumed\":%s,\"seconds\":%.3f}\n",
	       m->files, m->bytes, m->resumed ? "true" : "false", seconds);
}

int fs_mount(struct repo *r, const struct mount_opts *o)
{
	struct mounting *m = calloc(1, sizeof(*m));
	struct catalog *cat = NULL;
	char v[1024], total[32];
	double t0 = mono_sec();
	int rc;

	if (!m)
		return -ENOMEM;
	m->r = r;
	m->o = o;
	rc = prepare_dir(m);
	if (rc)
		goto out;
	rc = keys_resolve(r, o->key, o->restore, o->n_restore, &m->rec, &m->hit);
	if (rc) {
		log_err("mount: looking up key '%s': %s", o->key, strerror(-rc));
		goto out;
	}
	if (m->hit == HIT_MISS && o->fail_on_miss) {
		log_err("mount: miss for key '%s' (--fail-on-miss)", o->key);
		rc = -ENOENT;
		goto out;
	}
	if (m->hit != HIT_MISS)
		m->d.catalog = m->rec.catalog;
	rc = resume_state(m);
	if (rc)
		goto out;
	if (m->hit == HIT_MISS && !m->resumed) {
		rc = empty_catalog(r, &m->d.catalog);
		if (rc) {
			log_err("mount: cannot write an empty catalog in %s: %s",
				r->spec->store_path, strerror(-rc));
			goto out;
		}
	}
	/* the daemon's first connections, opened while the catalog comes */
	if (m->hit != HIT_MISS && !o->no_prefetch)
		m->d.npre = repo_preconnect(r, PRECONNECT, m->d.pre);
	rc = repo_catalog(r, &m->d.catalog, &cat);
	if (rc) {
		close_pre(&m->d);
		goto out;
	}
	m->files = catalog_header(cat)->n_files;
	m->bytes = catalog_header(cat)->total_bytes;
	rc = write_state(m, cat);
	catalog_close(cat);
	if (rc) {
		log_err("mount: cannot prepare state in %s: %s", m->statedir, strerror(-rc));
		close_pre(&m->d);
		goto out;
	}
	if (!o->track_use) {
		/* a mount without --track-use sees uses it does not note: what an
		 * earlier one noted would tell commit --prune-unread too little */
		char ub[PATH_MAX + 16];

		snprintf(ub, sizeof(ub), "%s/used.bits", m->statedir);
		unlink(ub);
	}
	m->d.real = m->real;
	m->d.statedir = m->statedir;
	m->d.spec = r->spec;
	m->d.o = o;
	m->d.used = m->hit != HIT_MISS ? &m->rec : NULL;
	m->d.ready_fd = -1;
	fmt_size(total, sizeof(total), m->bytes);
	if (m->hit == HIT_MISS)
		snprintf(v, sizeof(v), "miss for key '%s': %s writable tree", o->key,
			 m->resumed && m->changes ? "resumed the" : "an empty");
	else
		snprintf(v, sizeof(v), "%s hit '%s': %" PRIu64 " files, %s%s",
			 hit_kind_name(m->hit), m->rec.key, m->files, total,
			 m->resumed && m->changes ? ", changes resumed" : "");
	/* no SQLite handle may cross fork() */
	repo_close(r);
	if (o->foreground) {
		log_info("mount: %s at %s (foreground)", v, qpath(m->real));
		rc = run_daemon(&m->d);
		goto out;
	}
	rc = start_daemon(m);
	if (rc)
		goto out;
	if (o->json)
		print_mounted(m, mono_sec() - t0);
	log_info("mount: %s at %s; %.2f s", v, qpath(m->real), mono_sec() - t0);
out:
	free(m);
	return rc;
}
