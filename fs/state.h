/*
 * What fs/mount.c uses of fs/state.c (a mount's state directory and the
 * mount table).  Private to fs/.
 */
#ifndef STASH_FS_STATE_H
#define STASH_FS_STATE_H

#include "mount.h"

/* Take STATE/daemon.lock (held while the daemon lives): the fd, or -errno
 * (-EBUSY: another daemon holds it). */
int daemon_lock(const char *statedir);
/* 1 while a daemon holds STATE/daemon.lock, else 0. */
int lock_held(const char *statedir);
/* 1 if real is a mount point (*stashfs: a stashfs one), else 0. */
int is_mounted(const char *real, int *stashfs);
/* 1 if real is a FUSE mount whose daemon is gone (ENOTCONN). */
int mount_is_dead(const char *real);
/* fusermount3 -u (lazy: -z) real, or umount2: 0 or -errno. */
int unmount_dir(const char *real, int lazy);
/* Remove path and everything below it: 0 or -errno. */
int rm_rf(const char *path);
void stats_unmap(struct mount_stats *s);

#endif
