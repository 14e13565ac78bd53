/*
 * The FUSE session around the request handlers (fs/ops.c): its setup
 * (options, the read-use bits, becoming a daemon), the loop, and the
 * threads beside it that trim the catalog's pages and look up and push
 * the read record's files ahead of the job.
 */
#define _GNU_SOURCE
#include "ctx.h"
#include "uring.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

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

/*
 * Lookups ahead.  A mount given a read record has the kernel look up, in
 * recorded order, every file whose content the last job read (a stat of it
 * through the mount), so the job finds them in the kernel's dentry cache
 * instead of paying a LOOKUP round trip for each when it gets there.  Only
 * names: a lookup is not a read (the new record is what this job reads),
 * and nothing is fetched for it.  The thread runs as SCHED_IDLE, on the
 * CPU a job waiting on the network leaves idle, and stops when umount
 * says the mount is leaving.
 */
struct ahead {
	struct fs_ctx *c;
	const char *mnt;
	int stop;
};

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Stat catalog file idx through the mount at mnt (the kernel then holds it); 0 or -1. */
static int stat_in_mount(const char *mnt, struct catalog *cat, uint32_t idx, struct buf *rel,
			 struct stat *st)
{
	char path[PATH_MAX];

	if (catalog_path(cat, idx, rel) != 0 ||
	    snprintf(path, sizeof(path), "%s/%s", mnt, rel->p) >= (int)sizeof(path))
		return -1;
	return fstatat(AT_FDCWD, path, st, AT_SYMLINK_NOFOLLOW);
}

static void *lookup_ahead(void *arg)
{
	struct ahead *w = arg;
	struct catalog *cat = w->c->cat;
	struct mount_stats *stats = w->c->stats;
	uint32_t nchunks = (uint32_t)catalog_header(cat)->n_chunks, n = catalog_count(cat);
	uint32_t *pos = malloc((nchunks ? nchunks : 1) * sizeof(uint32_t)), j;
	uint64_t *list = malloc((n ? n : 1) * sizeof(uint64_t)), nr, i, k = 0;
	const uint32_t *rd = catalog_reads(cat, &nr);
	struct sched_param sp = { 0 };
	struct buf rel = BUF_INIT;
	struct stat st;

	pthread_setschedparam(pthread_self(), SCHED_IDLE, &sp);
	if (!pos || !list)
		goto out;
	memset(pos, 0xff, (size_t)nchunks * sizeof(uint32_t));
	for (i = nr; i-- > 0;)
		if (rd[i] < nchunks)
			pos[rd[i]] = (uint32_t)i; /* first place in the record */
	for (j = 1; j < n; j++) {
		const struct cat_entry *e = catalog_entry(cat, j);
		uint32_t at;

		if (!S_ISREG(e->mode) || e->count == 0)
			continue;
		at = pos[catalog_refs(cat, e)->chunk];
		if (at != UINT32_MAX)
			list[k++] = (uint64_t)at << 32 | j;
	}
	qsort(list, k, sizeof(uint64_t), cmp_u64);
	for (i = 0; i < k; i++) {
		if (__atomic_load_n(&w->stop, __ATOMIC_RELAXED) ||
		    __atomic_load_n(&stats->leaving, __ATOMIC_RELAXED))
			break;
		/* gone (renamed or deleted by the job) or not ours to see: skip */
		if (stat_in_mount(w->mnt, cat, (uint32_t)list[i], &rel, &st) == 0)
			__atomic_add_fetch(&stats->lookups_ahead, 1, __ATOMIC_RELAXED);
	}
out:
	buf_free(&rel);
	free(list);
	free(pos);
	ahead_end(stats); /* begun before the mount was ready */
	return NULL;
}

/*
 * Pushes ahead.  A job that reads a record's small files after its large
 * ones finds the small ones' bytes arriving last, together with the end
 * of the large ones; pushing each at its first open (push_small from the
 * IOCTL) then costs the job a cache-file read and a store per file after
 * the last byte is in.  So each recorded small file (one chunk, at most
 * PUSH_MAX) is pushed as soon as its chunk lands, by a thread of its own:
 * a push may wait on the page lock of a READ in flight, and a READ never
 * waits on this thread (the chunk is cached before it is queued here),
 * so it can block no FUSE thread and no fetcher.  The kernel takes a
 * store only for an inode it holds: one it does not hold yet (the lookups
 * ahead have not got there) is stat-ed through the mount, then pushed.
 */
struct pusher {
	struct fs_ctx *c;
	const char *mnt;
	uint32_t *file_of; /* chunk -> first recorded small file; UINT32_MAX: none, or queued */
	uint32_t *next; /* file -> next recorded small file of the same chunk (copies) */
	uint32_t *q; /* the first file of each chunk landed, in landing order */
	size_t head, tail, cap;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	pthread_rwlock_t live; /* read-held across a push; the session ends under write */
	int stop;
};

static void push_landed(void *arg, uint32_t chunk)
{
	struct pusher *p = arg;

	pthread_mutex_lock(&p->lock);
	if (p->file_of[chunk] != UINT32_MAX && p->tail < p->cap) {
		ahead_begin(p->c->stats);
		p->q[p->tail++] = p->file_of[chunk];
		p->file_of[chunk] = UINT32_MAX; /* queued once */
		pthread_cond_signal(&p->cond);
	}
	pthread_mutex_unlock(&p->lock);
}

/* The record's small files, chained by chunk; 0, or -ENOMEM. */
static int pusher_init(struct pusher *p, struct fs_ctx *c, const char *mnt)
{
	struct catalog *cat = c->cat;
	uint32_t nchunks = (uint32_t)catalog_header(cat)->n_chunks, n = catalog_count(cat), j;

	memset(p, 0, sizeof(*p));
	p->c = c;
	p->mnt = mnt;
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->cond, NULL);
	pthread_rwlock_init(&p->live, NULL);
	p->file_of = malloc((nchunks ? nchunks : 1) * sizeof(uint32_t));
	p->next = malloc((n ? n : 1) * sizeof(uint32_t));
	if (!p->file_of || !p->next)
		return -ENOMEM;
	memset(p->file_of, 0xff, (size_t)nchunks * sizeof(uint32_t));
	for (j = n; j-- > 1;) {
		const struct cat_entry *e = catalog_entry(cat, j);
		uint32_t ch;

		if (!S_ISREG(e->mode) || e->ino != j || !push_size(e))
			continue;
		ch = catalog_refs(cat, e)->chunk;
		if (!fetch_recorded(c->f, ch))
			continue;
		p->cap += p->file_of[ch] == UINT32_MAX;
		p->next[j] = p->file_of[ch]; /* a chunk's files in catalog order */
		p->file_of[ch] = j;
	}
	p->q = malloc((p->cap ? p->cap : 1) * sizeof(uint32_t));
	return p->q ? 0 : -ENOMEM;
}

static void pusher_free(struct pusher *p)
{
	free(p->file_of);
	free(p->next);
	free(p->q);
	pthread_mutex_destroy(&p->lock);
	pthread_cond_destroy(&p->cond);
	pthread_rwlock_destroy(&p->live);
}

/* push_small ahead, unless the session is ending. */
static int push_live(struct pusher *p, fuse_ino_t ino)
{
	int rc = 0;

	pthread_rwlock_rdlock(&p->live);
	if (!__atomic_load_n(&p->stop, __ATOMIC_RELAXED))
		rc = push_small(p->c, ino, 1);
	pthread_rwlock_unlock(&p->live);
	return rc;
}

/* Push recorded file idx (by its inode: its bytes whatever its name now). */
static void push_file(struct pusher *p, uint32_t idx, struct buf *rel)
{
	struct fs_ctx *c = p->c;
	fuse_ino_t ino = ov_cat_ino(c->ov, idx);
	struct stat st;

	if (__atomic_load_n(&c->stats->leaving, __ATOMIC_RELAXED) || push_live(p, ino) == 0)
		return;
	/*
	 * The kernel holds no such inode yet (ENOENT: the lookups ahead have
	 * not got there; ENOSYS: the session has not had its INIT yet): a stat
	 * through the mount waits for INIT and makes it hold the inode,
	 * unless the job renamed, deleted or replaced the file.
	 */
	if (!__atomic_load_n(&c->stats->leaving, __ATOMIC_RELAXED) &&
	    stat_in_mount(p->mnt, c->cat, idx, rel, &st) == 0 && st.st_ino == ino)
		push_live(p, ino);
}

static void *push_ahead(void *arg)
{
	struct pusher *p = arg;
	struct buf rel = BUF_INIT;

	pthread_mutex_lock(&p->lock);
	for (;;) {
		uint32_t idx;

		while (!p->stop && p->head == p->tail)
			pthread_cond_wait(&p->cond, &p->lock);
		if (p->stop)
			break;
		assert(p->head < p->tail && p->tail <= p->cap);
		idx = p->q[p->head++];
		pthread_mutex_unlock(&p->lock);
		for (; idx != UINT32_MAX; idx = p->next[idx])
			push_file(p, idx, &rel);
		ahead_end(p->c->stats);
		pthread_mutex_lock(&p->lock);
	}
	pthread_mutex_unlock(&p->lock);
	buf_free(&rel);
	return NULL;
}

/*
 * No push after the session's descriptor is closed (its number may be
 * reused).  A push that waits on a READ nobody will answer (the loop ended
 * by a signal) is given 2 s: it is then inside the write, past the number.
 */
static void pusher_stop(struct pusher *p)
{
	struct timespec ts;

	pthread_mutex_lock(&p->lock);
	__atomic_store_n(&p->stop, 1, __ATOMIC_RELAXED);
	pthread_cond_signal(&p->cond);
	pthread_mutex_unlock(&p->lock);
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += 2;
	if (pthread_rwlock_timedwrlock(&p->live, &ts) == 0)
		pthread_rwlock_unlock(&p->live);
}

/* The threads beside the loop that look up and push the record's files ahead. */
struct beside {
	struct ahead w;
	struct pusher push;
	pthread_t wth, pth;
	int walk; /* the record's files to look up ahead (its work begun before ready) */
	int have_ahead, have_pusher, push_init;
};

/* --track-use: the bit per catalog entry, kept across remounts of this state. */
static int map_used(struct fs_ctx *c, const char *path)
{
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600), rc;
	struct stat ust;

	c->n_used = catalog_header(c->cat)->n_entries;
	c->used_bytes = (c->n_used + 63) / 64 * 8 + 8;
	if (fd < 0 || fstat(fd, &ust) < 0 ||
	    ((uint64_t)ust.st_size != c->used_bytes && ftruncate(fd, (off_t)c->used_bytes) < 0)) {
		rc = -errno;
		log_err("mount: %s: %s", path, strerror(-rc));
		if (fd >= 0)
			close(fd);
		return rc;
	}
	c->used = mmap(NULL, c->used_bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	if (c->used == MAP_FAILED) {
		c->used = NULL;
		return -errno;
	}
	return 0;
}

/*
 * The source the mount table shows is the store (',' and '\\' escaped for
 * libfuse's option parser): commit, umount and status of DIR find the
 * store there.
 */
static void mount_source(char *out, size_t n, const char *store_path)
{
	char abs[PATH_MAX];
	size_t j = 0;
	const char *p = realpath(store_path, abs) ? abs : store_path;

	for (; *p && j + 2 < n; p++) {
		if (*p == ',' || *p == '\\')
			out[j++] = '\\';
		out[j++] = *p;
	}
	out[j] = '\0';
}

/* A daemon now: no terminal; errors go to the state's daemon.log. */
static void become_daemon(const char *log_path)
{
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

/* Serve until unmounted, with the threads beside the loop. */
static int serve_loop(struct fs_ctx *c, const char *mountpoint, const struct serve_opts *so,
		      struct beside *b)
{
	struct trimmer t = { c->cat, PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0 };
	struct fuse_loop_config *cfg;
	pthread_t th;
	int have_trimmer = pthread_create(&th, NULL, trim_loop, &t) == 0, rc;

	if (b->walk) {
		b->have_ahead = pthread_create(&b->wth, NULL, lookup_ahead, &b->w) == 0;
		if (!b->have_ahead)
			ahead_end(c->stats);
		b->push_init = 1;
		if (pusher_init(&b->push, c, mountpoint) == 0 && b->push.cap > 0 &&
		    pthread_create(&b->pth, NULL, push_ahead, &b->push) == 0) {
			b->have_pusher = 1;
			fetch_on_landed(c->f, push_landed, &b->push);
		}
	}
	/* with --track-use every name must come as a LOOKUP */
	if (!so->used_path)
		c->lister = lister_start(mountpoint, c->cat, c->stats);
	cfg = fuse_loop_cfg_create();
	fuse_loop_cfg_set_max_threads(cfg, FUSE_MAX_THREADS);
	fuse_loop_cfg_set_idle_threads(cfg, FUSE_IDLE_THREADS);
	rc = fuse_session_loop_mt(c->se, cfg);
	rc = rc < 0 ? rc : 0;
	fuse_loop_cfg_destroy(cfg);
	__atomic_store_n(&b->w.stop, 1, __ATOMIC_RELAXED);
	if (b->have_pusher) {
		fetch_on_landed(c->f, NULL, NULL);
		pusher_stop(&b->push);
	}
	if (have_trimmer) {
		pthread_mutex_lock(&t.lock);
		t.stop = 1;
		pthread_cond_signal(&t.cond);
		pthread_mutex_unlock(&t.lock);
		pthread_join(th, NULL);
	}
	return rc;
}

int fs_serve(const char *mountpoint, struct ov *ov, struct fetcher *f, struct catalog *cat,
	     struct mount_stats *stats, const char *store_path, const struct serve_opts *so)
{
	struct fs_ctx c;
	char opts[2 * PATH_MAX + 256], fsname[2 * PATH_MAX];
	char *argv[] = { "stashfs", "-o", opts, NULL, NULL };
	struct fuse_args args = FUSE_ARGS_INIT(3, argv);
	struct fuse_session *se = NULL;
	struct beside b;
	uint64_t nreads = 0;
	int rc, i;

	memset(&c, 0, sizeof(c));
	memset(&b, 0, sizeof(b));
	b.w.c = &c;
	b.w.mnt = mountpoint;
	pthread_mutex_init(&c.fd_lock, NULL);
	for (i = 0; i < (int)(1u << FD_SLOTS_BITS); i++)
		c.slots[i].fd = -1;
	c.ov = ov;
	c.f = f;
	c.cat = cat;
	c.stats = stats;
	c.writeback = so->o->writeback;
	c.n_pushed = catalog_header(cat)->n_entries + 1;
	c.pushed = calloc((size_t)(c.n_pushed + 63) / 64, sizeof(uint64_t));
	c.ahead = calloc((size_t)(c.n_pushed + 63) / 64, sizeof(uint64_t));
	snprintf(c.store, sizeof(c.store), "%s", store_path);
	if (so->used_path && (rc = map_used(&c, so->used_path)) != 0)
		goto out;
	mount_source(fsname, sizeof(fsname), store_path);
	snprintf(opts, sizeof(opts), "fsname=%s,subtype=stashfs,default_permissions%s", fsname,
		 so->o->allow_other ? ",allow_other" : "");
	if (so->o->fuse_debug) {
		/* libfuse's request trace on stderr (with --foreground) */
		argv[3] = "-d";
		args.argc = 4;
	}
	se = fuse_session_new(&args, &fs_ops, sizeof(fs_ops), &c);
	c.se = se;
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
	if (ring_attach(se, !so->o->no_uring, stats) != 0) {
		log_err("mount '%s': cannot set up the FUSE session's I/O", qpath(mountpoint));
		rc = -EIO;
		goto out_unmount;
	}
	catalog_reads(cat, &nreads);
	b.walk = so->lookup_ahead && nreads > 0;
	if (b.walk)
		ahead_begin(stats); /* the walk's: ahead as soon as the mount is */
	if (so->ready_fd >= 0) {
		if (write(so->ready_fd, "ok", 2) != 2) {
			/* the parent went away: keep serving */
		}
		close(so->ready_fd);
	}
	if (!so->o->foreground)
		become_daemon(so->log_path);
	rc = serve_loop(&c, mountpoint, so, &b);
out_unmount:
	fuse_session_unmount(se);
	ring_detach();
out_signals:
	fuse_remove_signal_handlers(se);
out:
	if (se)
		fuse_session_destroy(se);
	if (b.have_ahead) {
		/*
		 * After the session is gone: a walk waiting on a request (the
		 * loop ended by a signal) fails once the connection is closed.
		 */
		__atomic_store_n(&b.w.stop, 1, __ATOMIC_RELAXED);
		pthread_join(b.wth, NULL);
	}
	/* after the session too, for the same reason */
	lister_stop(c.lister);
	if (b.have_pusher)
		pthread_join(b.pth, NULL);
	if (b.push_init)
		pusher_free(&b.push);
	for (i = 0; i < (int)(1u << FD_SLOTS_BITS); i++)
		if (c.slots[i].fd >= 0)
			close(c.slots[i].fd);
	pthread_mutex_destroy(&c.fd_lock);
	free(c.pushed);
	free(c.ahead);
	if (c.used)
		munmap(c.used, c.used_bytes);
	return rc;
}
