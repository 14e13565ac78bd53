/*
 * Mount lifecycle: mount (resolve the key, prepare the state, start the
 * FUSE daemon), commit, unmount, status.  A mount's state lives in
 * STORE/mounts/<sha256(realpath DIR)>/: state.db and data/ (the writable
 * layer, fs/overlay.h), reads.log (the read record), stats (counters
 * shared with `stashfs status`), daemon.log.
 */
#ifndef STASH_MOUNT_H
#define STASH_MOUNT_H

#include "../store/repo.h"
#include "../store/snapshot.h"

#include <assert.h>
#include <limits.h>
#include <stdint.h>

#define MOUNT_STATS_MAGIC 0x5354415354415431ULL /* "STASTAT1" */

/* Counters in a shared file; updated with atomics by the daemon and commit. */
struct mount_stats {
	uint64_t magic;
	int64_t pid;
	int64_t mounted_ns;
	uint64_t files_total;
	uint64_t bytes_total;
	uint64_t bytes_fetched; /* stored bytes read from remotes */
	uint64_t objects_fetched;
	uint64_t bytes_read; /* served to readers */
	uint64_t bytes_written;
	uint64_t copy_ups;
	uint64_t fetch_errors;
	uint64_t bytes_uploaded; /* by commits */
	uint64_t commits;
	uint64_t bytes_prefetched; /* part of bytes_fetched, fetched ahead */
	uint64_t prefetch_queued;
	uint64_t prefetch_done;
	uint64_t bytes_pushed; /* part of bytes_read, put in the page cache ahead */
	uint64_t ring_requests; /* answered through io_uring (fs/uring.c) */
	uint64_t ring_threads; /* io_uring entries the kernel took */
	uint64_t lookups; /* LOOKUP requests answered */
	uint64_t lookups_ahead; /* recorded files looked up ahead (fs/ops.c) */
	uint64_t leaving; /* set by umount: stop looking up ahead */
	uint64_t pushed_ahead; /* recorded small files put in the page cache as they came */
	uint64_t written_behind; /* small fetched objects cached after they were served */
	uint64_t ring_light; /* answered at idle priority, no policy switch (fs/uring.c) */
	uint64_t conns_ahead; /* connections the command opened for us, taken (fs/mount.c) */
	uint64_t dirs_ahead; /* directories listed ahead of the job (fs/lister.c) */
	uint64_t ahead_pending; /* work ahead queued or under way (ahead_begin); 0: idle */
	uint64_t reserved[1];
};

/*
 * The daemon's work ahead of the job: a prefetch batch, the walk of the
 * lookups ahead, a listing ahead, a push ahead.  Each is counted begun
 * when it is queued (before the request that caused it is answered) and
 * ended after everything it did is counted, including the work it queued
 * in turn: ahead_pending 0 in `status --json` means every counter of
 * work ahead is final until the job asks for more.
 */
static inline void ahead_begin(struct mount_stats *s)
{
	__atomic_add_fetch(&s->ahead_pending, 1, __ATOMIC_RELAXED);
}

static inline void ahead_end(struct mount_stats *s)
{
	uint64_t was = __atomic_fetch_sub(&s->ahead_pending, 1, __ATOMIC_RELEASE);

	assert(was > 0); /* ended more than begun: a count gone wrong */
	(void)was;
}

struct mount_opts {
	const char *dir;
	const char *key;
	char *const *restore;
	int n_restore;
	int allow_other;
	int foreground;
	int preserve_owner;
	long owner_uid, owner_gid; /* --owner: shown owner, -1 for the mounting user's */
	int fresh;
	int fail_on_miss;
	int no_prefetch;
	int no_uring;
	int track_use; /* note which snapshot files the job uses (commit --prune-unread) */
	int json;
	/* debugging knobs (tools/cli.c reads them from STASHFS_* variables) */
	int no_mem_reads; /* every fetched object cached on disk when first needed */
	int writeback; /* ask the kernel for its writeback cache */
	int fuse_debug; /* libfuse's request trace on stderr (with --foreground) */
};

/* Mount o->key at o->dir: the daemon (a fork) opens its own repo on r->spec. */
int fs_mount(struct repo *r, const struct mount_opts *o);

/*
 * The store a live mount of DIR serves from (its FUSE source in the mount
 * table): 0, or -ENOENT when DIR is no stashfs mount that names its store.
 */
int fs_mount_store(const char *dir, char *store, size_t n);
/* The remote and read remotes (newline-separated) DIR was mounted with. */
int fs_mount_remotes(const char *store, const char *dir, char *remote, size_t rn, char *reads,
		     size_t readn);

struct commit_opts {
	const char *dir;
	const char *key; /* NULL: the mount's key */
	const struct cas_id *sources; /* a sources manifest for the key record */
	struct snap_progress *progress; /* may be NULL */
	int json;
	int prune_unread; /* leave out snapshot files the job did not use (--track-use) */
};
int fs_commit(struct repo *r, const struct commit_opts *o, struct snap_stats *st, char *key_out,
	      size_t key_len);

/* Unmount DIR and wait until its daemon has written its state; lazy:
 * detach it now and let the daemon finish when its last user leaves. */
int fs_umount(struct repo *r, const char *dir, int lazy);
/* Remove the state of DIR's mount (after a commit that published it). */
int fs_discard_state(struct repo *r, const char *dir);
int fs_stats_map(const char *statedir, int create, struct mount_stats **out);
/* What `stashfs status` tells of one mount. */
struct mount_info {
	char dir[PATH_MAX], statedir[PATH_MAX];
	char key[KEY_MAX + 1], hit[16], matched[KEY_MAX + 1];
	struct mount_stats stats; /* a copy; zero if it has none */
	int alive; /* its daemon runs */
};
typedef void (*fs_status_fn)(const struct mount_info *mi, void *arg);
/* fn on DIR's mount (every mount of the store without DIR): 0, or -ENOENT
 * (told) when DIR is no mount of this store. */
int fs_status(struct repo *r, const char *dir, fs_status_fn fn, void *arg);
/* How many entries DIR's writable layer holds (its uncommitted changes). */
int fs_changes(struct repo *r, const char *dir, uint64_t *n);
/* The stores of the live stashfs mounts in this mount namespace: their count. */
int fs_live_stores(char (*stores)[PATH_MAX], int max);

/* STORE/mounts/<id> for a mount point (which must exist). */
MUST_CHECK int fs_state_dir(struct repo *r, const char *dir, char *out, size_t n, char *real,
			    size_t rn);

/* The FUSE session over an open state; returns when unmounted. */
struct ov;
struct fetcher;
struct serve_opts {
	const struct mount_opts *o; /* the command's options, as given */
	int ready_fd; /* told "ok" once the mount answers; -1: none */
	int lookup_ahead; /* look up the read record's files ahead of the job */
	const char *used_path; /* --track-use: the names the job looks up, kept here */
	const char *log_path; /* stderr once a daemon */
};
int fs_serve(const char *mountpoint, struct ov *ov, struct fetcher *f, struct catalog *cat,
	     struct mount_stats *stats, const char *store_path, const struct serve_opts *so);

#endif
