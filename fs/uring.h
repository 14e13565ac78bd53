/*
 * FUSE requests over io_uring (Linux 6.14+, `fuse.enable_uring=1`).
 *
 * The kernel queues each request on the ring queue of the CPU its caller
 * runs on; threads pinned to that CPU answer it, so neither the request
 * nor the reply needs a wakeup on another CPU.  libfuse 3.14 knows
 * nothing of this: the session gets custom I/O that asks for io_uring in
 * the INIT reply, and replies made while a ring thread handles a request
 * go into that thread's ring buffers instead of /dev/fuse.  FORGET,
 * INTERRUPT and notifications stay on /dev/fuse and libfuse's own loop.
 */
#ifndef STASH_URING_H
#define STASH_URING_H

struct fuse_session;
struct mount_stats;

/*
 * Call after fuse_session_mount.  With enable 0 (or a kernel that does not
 * offer io_uring) every request goes through /dev/fuse as before.
 * Returns 0 or -errno (the session is unusable then).
 */
int ring_attach(struct fuse_session *se, int enable, struct mount_stats *stats);

/*
 * A handler that may do more than answer from memory (a fetch, a disk
 * read, a push) calls this first: a ring thread that took its request as
 * a light one at idle priority becomes a normal task for the rest of it.
 * Does nothing on any other thread.
 */
void ring_work(void);

/* After the session loop returned and the file system was unmounted. */
void ring_detach(void);

#endif
