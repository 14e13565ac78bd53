/*
 * Directories listed ahead (fs/lister.h).
 *
 * One byte per catalog entry counts the lookups found in each directory
 * (up to 3) and marks it queued; the lookup that makes it 2 queues the
 * directory.  Once most directories the job has looked into got a second
 * lookup (BROAD_DIRS of them, three in four), the job is reading broadly
 * and the first lookup in a directory queues it (a job that then turns to
 * reading a file here and there pays a listing per directory instead of a
 * LOOKUP: the lookups that would tell do not come).  The queue
 * is a fixed ring: when it is full a directory is not listed, and its
 * lookups come as they would without this.  The thread opens the
 * directory beneath the mount's root with symlinks refused (the writable
 * layer may have put one where the snapshot had the directory) and reads
 * it to the end; the kernel sends READDIRPLUS for a listing from offset
 * 0, and each entry of its reply becomes a dentry.  It holds no
 * descriptor between listings: umount must find the mount idle.
 */
#define _GNU_SOURCE
#include "lister.h"

#include "../store/util.h"
#include "../store/tuning.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define SEEN_COUNT 3u /* the lookups counted in a seen byte */
#define SEEN_QUEUED 0x80u

struct lister {
	const char *mnt;
	struct catalog *cat;
	struct mount_stats *stats;
	uint32_t n; /* catalog entries */
	uint8_t *seen; /* per directory: lookups found in it (up to 3), SEEN_QUEUED */
	uint32_t touched, walked; /* directories with a first, a second lookup */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	uint32_t q[LIST_QUEUE];
	unsigned head, tail; /* q[tail % LIST_QUEUE] .. q[head % LIST_QUEUE] waiting */
	int stop;
	pthread_t th;
};

/* Directory dir, read to its end through the mount.  0 or -errno. */
static int list_one(struct lister *l, uint32_t dir, struct buf *rel)
{
	struct open_how how = { .flags = O_RDONLY | O_DIRECTORY | O_CLOEXEC,
				.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
					   RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV };
	char dents[16384];
	int root, fd, rc = 0;
	long got;

	if (catalog_path(l->cat, dir, rel) != 0)
		return -ENOENT;
	/* O_PATH: no OPENDIR for the root, nothing the kernel must keep */
	root = open(l->mnt, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (root < 0)
		return -errno;
	fd = (int)syscall(SYS_openat2, root, rel->len ? (const char *)rel->p : ".", &how,
			  sizeof(how));
	if (fd < 0)
		rc = -errno;
	close(root);
	if (fd < 0)
		return rc;
	while ((got = syscall(SYS_getdents64, fd, dents, sizeof(dents))) > 0)
		if (__atomic_load_n(&l->stats->leaving, __ATOMIC_RELAXED))
			break;
	if (got < 0)
		rc = -errno;
	close(fd);
	return rc;
}

static void *list_loop(void *arg)
{
	struct lister *l = arg;
	struct buf rel = BUF_INIT;
	int off = 0, rc;

	for (;;) {
		uint32_t dir;

		pthread_mutex_lock(&l->lock);
		while (l->head == l->tail && !l->stop)
			pthread_cond_wait(&l->cond, &l->lock);
		if (l->stop) {
			pthread_mutex_unlock(&l->lock);
			break;
		}
		assert(l->head - l->tail <= LIST_QUEUE);
		dir = l->q[l->tail++ % LIST_QUEUE];
		pthread_mutex_unlock(&l->lock);
		/* else drain: umount is waiting for an idle mount */
		if (!off && !__atomic_load_n(&l->stats->leaving, __ATOMIC_RELAXED)) {
			rc = list_one(l, dir, &rel);
			if (rc == 0)
				__atomic_add_fetch(&l->stats->dirs_ahead, 1, __ATOMIC_RELAXED);
			else if (rc == -ENOSYS)
				off = 1; /* no openat2: the lookups come as they would */
		}
		ahead_end(l->stats);
	}
	buf_free(&rel);
	return NULL;
}

struct lister *lister_start(const char *mnt, struct catalog *cat, struct mount_stats *stats)
{
	struct lister *l = calloc(1, sizeof(*l));

	if (!l)
		return NULL;
	l->mnt = mnt;
	l->cat = cat;
	l->stats = stats;
	l->n = catalog_count(cat);
	l->seen = calloc(l->n ? l->n : 1, 1);
	pthread_mutex_init(&l->lock, NULL);
	pthread_cond_init(&l->cond, NULL);
	if (!l->seen || pthread_create(&l->th, NULL, list_loop, l) != 0) {
		pthread_cond_destroy(&l->cond);
		pthread_mutex_destroy(&l->lock);
		free(l->seen);
		free(l);
		return NULL;
	}
	return l;
}

void lister_note(struct lister *l, uint32_t idx)
{
	const struct cat_entry *d;
	uint32_t dir, walked;
	uint8_t v, n;
	int want, broad;

	if (!l || idx == 0 || idx >= l->n)
		return;
	dir = catalog_entry(l->cat, idx)->parent;
	if (dir >= l->n)
		return;
	v = __atomic_load_n(&l->seen[dir], __ATOMIC_RELAXED);
	do {
		if (v & SEEN_QUEUED)
			return;
		walked = __atomic_load_n(&l->walked, __ATOMIC_RELAXED);
		broad = walked >= BROAD_DIRS &&
			walked * 4 >= __atomic_load_n(&l->touched, __ATOMIC_RELAXED) * 3;
		want = broad ? 1 : 2;
		n = (uint8_t)((v & SEEN_COUNT) < SEEN_COUNT ? v + 1 : v);
		if ((int)(n & SEEN_COUNT) >= want)
			n |= SEEN_QUEUED;
	} while (!__atomic_compare_exchange_n(&l->seen[dir], &v, n, 0, __ATOMIC_RELAXED,
					      __ATOMIC_RELAXED));
	if ((v & SEEN_COUNT) == 0)
		__atomic_add_fetch(&l->touched, 1, __ATOMIC_RELAXED);
	/* listed at its first lookup: counted walked, or broad would
	 * turn itself off (the lookups that would say so do not come) */
	if ((v & SEEN_COUNT) < 2 && ((n & SEEN_COUNT) >= 2 || (n & SEEN_QUEUED)))
		__atomic_add_fetch(&l->walked, 1, __ATOMIC_RELAXED);
	if (!(n & SEEN_QUEUED))
		return;
	d = catalog_entry(l->cat, dir);
	if (d->count < LIST_MIN || d->count > LIST_MAX)
		return;
	pthread_mutex_lock(&l->lock);
	if (l->head - l->tail < LIST_QUEUE) {
		ahead_begin(l->stats);
		l->q[l->head++ % LIST_QUEUE] = dir;
		pthread_cond_signal(&l->cond);
	}
	pthread_mutex_unlock(&l->lock);
}

void lister_stop(struct lister *l)
{
	if (!l)
		return;
	pthread_mutex_lock(&l->lock);
	l->stop = 1;
	pthread_cond_signal(&l->cond);
	pthread_mutex_unlock(&l->lock);
	pthread_join(l->th, NULL);
	pthread_cond_destroy(&l->cond);
	pthread_mutex_destroy(&l->lock);
	free(l->seen);
	free(l);
}
