/*
 * FUSE requests over io_uring; see uring.h.
 *
 * Each ring thread owns one io_uring and one ring entry (a header buffer
 * and a payload buffer registered with the kernel), and is pinned to the
 * CPU whose queue the entry serves.  One entry per thread means an entry
 * is free only while its thread waits in the kernel, so a request never
 * waits behind a handler that blocks (a fetch from the remote).
 *
 * A request arrives as struct fuse_in_header in the header's in_out, the
 * opcode's fixed argument in op_in and the rest (names, write data) in
 * the payload.  The thread lays header and fixed argument out just before
 * the payload, hands the contiguous request to libfuse, and catches the
 * reply in the session's custom writev/splice: struct fuse_out_header
 * back into in_out, the reply's arguments into the payload.  Committing
 * the reply and fetching the next request is one io_uring_enter.
 */
#define _GNU_SOURCE
#define FUSE_USE_VERSION 312
#include "uring.h"
#include "mount.h"
#include "../store/util.h"

#include <errno.h>
#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <linux/fuse.h>
#include <linux/io_uring.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

/* The kernel's ABI (include/uapi/linux/fuse.h, 7.42); Debian 12's headers predate it. */
#define OVER_IO_URING (1ULL << 41)
#define RING_HDR_IN_OUT 128
#define RING_OP_IN 128
#define RING_REGISTER 1
#define RING_COMMIT_AND_FETCH 2

struct ring_ent_in_out {
	uint64_t flags;
	uint64_t commit_id;
	uint32_t payload_sz;
	uint32_t padding;
	uint64_t reserved;
};

struct ring_req_header {
	char in_out[RING_HDR_IN_OUT];
	char op_in[RING_OP_IN];
	struct ring_ent_in_out ent;
};

struct ring_cmd_req {
	uint64_t flags;
	uint64_t commit_id;
	uint16_t qid;
	uint8_t padding[6];
};

#define SQE_SIZE 128 /* IORING_SETUP_SQE128: the command lives in the second half */
#define STAGE 4096 /* room before the payload for the header and fixed argument */
#define MAX_THREADS 64

struct uring {
	int fd;
	unsigned *sq_tail, *sq_mask, *sq_array;
	unsigned *cq_head, *cq_tail, *cq_mask;
	struct io_uring_cqe *cqes;
	char *sqes;
	void *ring_map, *cq_map, *sqe_map;
	size_t ring_len, cq_len, sqe_len;
};

struct ring_thread {
	pthread_t th;
	int qid;
	struct uring u;
	char *mem; /* header page, staging page, payload */
	size_t mem_len;
	struct ring_req_header *hdr;
	char *payload;
	size_t cap;
	uint64_t unique; /* the request being handled; 0 between requests */
	uint64_t commit_id;
	int replied;
	uint64_t served; /* requests this thread answered */
};

static struct {
	struct fuse_session *se;
	struct mount_stats *stats;
	int fd;
	uint64_t init_unique;
	int offered;
	size_t payload;
	int n;
	struct ring_thread *t;
	int idle_waits; /* may switch SCHED_IDLE -> SCHED_OTHER and back */
	int logged;
	volatile int stop;
} R;

static __thread struct ring_thread *cur;
static __thread int idle_now; /* this ring thread runs as SCHED_IDLE now */

void ring_work(void)
{
	struct sched_param sp = { 0 };

	if (!idle_now)
		return;
	idle_now = 0;
	if (sched_setscheduler(0, SCHED_OTHER, &sp) != 0)
		/* not allowed back (RLIMIT_NICE changed?): stop doing it */
		__atomic_store_n(&R.idle_waits, 0, __ATOMIC_RELAXED);
}

/*
 * A request whose handler usually answers at once from memory: Python's
 * isatty at every open (an IOCTL) is the only one a job sends per file.
 * Its handler calls ring_work() before anything more (a push).
 */
static int light(const struct ring_thread *t)
{
	const struct fuse_in_header *in = (const void *)t->hdr->in_out;

	return in->opcode == FUSE_IOCTL;
}

static void uring_close(struct uring *u)
{
	if (u->sqe_map)
		munmap(u->sqe_map, u->sqe_len);
	if (u->cq_map && u->cq_map != u->ring_map)
		munmap(u->cq_map, u->cq_len);
	if (u->ring_map)
		munmap(u->ring_map, u->ring_len);
	if (u->fd >= 0)
		close(u->fd);
}

static int uring_init(struct uring *u, unsigned flags)
{
	struct io_uring_params p;
	char *sq, *cq;

	memset(u, 0, sizeof(*u));
	memset(&p, 0, sizeof(p));
	p.flags = IORING_SETUP_SQE128 | flags;
	u->fd = (int)syscall(__NR_io_uring_setup, 2, &p);
	if (u->fd < 0)
		return -errno;
	u->ring_len = p.sq_off.array + p.sq_entries * sizeof(unsigned);
	u->cq_len = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
	if (p.features & IORING_FEAT_SINGLE_MMAP) {
		if (u->cq_len > u->ring_len)
			u->ring_len = u->cq_len;
		u->cq_len = u->ring_len;
	}
	u->ring_map = mmap(NULL, u->ring_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE,
			   u->fd, IORING_OFF_SQ_RING);
	if (u->ring_map == MAP_FAILED)
		goto fail;
	if (p.features & IORING_FEAT_SINGLE_MMAP) {
		u->cq_map = u->ring_map;
	} else {
		u->cq_map = mmap(NULL, u->cq_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE,
				 u->fd, IORING_OFF_CQ_RING);
		if (u->cq_map == MAP_FAILED)
			goto fail;
	}
	u->sqe_len = (size_t)p.sq_entries * SQE_SIZE;
	u->sqe_map = mmap(NULL, u->sqe_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE,
			  u->fd, IORING_OFF_SQES);
	if (u->sqe_map == MAP_FAILED)
		goto fail;
	sq = u->ring_map;
	cq = u->cq_map;
	u->sq_tail = (unsigned *)(sq + p.sq_off.tail);
	u->sq_mask = (unsigned *)(sq + p.sq_off.ring_mask);
	u->sq_array = (unsigned *)(sq + p.sq_off.array);
	u->cq_head = (unsigned *)(cq + p.cq_off.head);
	u->cq_tail = (unsigned *)(cq + p.cq_off.tail);
	u->cq_mask = (unsigned *)(cq + p.cq_off.ring_mask);
	u->cqes = (struct io_uring_cqe *)(cq + p.cq_off.cqes);
	u->sqes = u->sqe_map;
	return 0;
fail:
	if (u->ring_map == MAP_FAILED)
		u->ring_map = NULL;
	if (u->cq_map == MAP_FAILED)
		u->cq_map = NULL;
	if (u->sqe_map == MAP_FAILED)
		u->sqe_map = NULL;
	uring_close(u);
	return -ENOMEM;
}

/* Queue one FUSE command for the ring entry. */
static void uring_cmd(struct ring_thread *t, uint32_t op, uint64_t commit_id, struct iovec *iov)
{
	struct uring *u = &t->u;
	unsigned tail = *u->sq_tail, idx = tail & *u->sq_mask;
	struct io_uring_sqe *sqe = (struct io_uring_sqe *)(u->sqes + (size_t)idx * SQE_SIZE);
	struct ring_cmd_req *req = (struct ring_cmd_req *)sqe->cmd;

	memset(sqe, 0, SQE_SIZE);
	sqe->opcode = IORING_OP_URING_CMD;
	sqe->fd = R.fd;
	sqe->cmd_op = op;
	if (iov) {
		sqe->addr = (uint64_t)(uintptr_t)iov;
		sqe->len = 2;
	}
	req->commit_id = commit_id;
	req->qid = (uint16_t)t->qid;
	u->sq_array[idx] = idx;
	__atomic_store_n(u->sq_tail, tail + 1, __ATOMIC_RELEASE);
}

/* Submit the queued command and wait for a completion; its result. */
static int uring_submit_wait(struct uring *u)
{
	unsigned submit = 1;

	for (;;) {
		unsigned head = *u->cq_head;

		if (!submit && head != __atomic_load_n(u->cq_tail, __ATOMIC_ACQUIRE)) {
			int res = u->cqes[head & *u->cq_mask].res;

			__atomic_store_n(u->cq_head, head + 1, __ATOMIC_RELEASE);
			return res;
		}
		if (R.stop)
			return -ECANCELED;
		long r = syscall(__NR_io_uring_enter, u->fd, submit, 1, IORING_ENTER_GETEVENTS,
				 NULL, 0);
		if (r < 0 && errno != EINTR && errno != EAGAIN && errno != EBUSY)
			return -errno;
		if (r > 0)
			submit = 0;
	}
}

static void ring_error(struct ring_thread *t, int err)
{
	struct fuse_out_header o = { sizeof(o), -err, t->unique };

	memcpy(t->hdr->in_out, &o, sizeof(o));
	t->hdr->ent.payload_sz = 0;
	t->replied = 1;
}

/* A reply libfuse made for the thread's request: into the ring buffers. */
static ssize_t ring_reply(struct ring_thread *t, const struct iovec *iov, int count)
{
	size_t n = 0;
	int i;

	for (i = 1; i < count; i++) {
		if (iov[i].iov_len > t->cap - n) {
			ring_error(t, EIO);
			errno = EIO;
			return -1;
		}
		memcpy(t->payload + n, iov[i].iov_base, iov[i].iov_len);
		n += iov[i].iov_len;
	}
	memcpy(t->hdr->in_out, iov[0].iov_base, sizeof(struct fuse_out_header));
	t->hdr->ent.payload_sz = (uint32_t)n;
	t->replied = 1;
	return (ssize_t)(sizeof(struct fuse_out_header) + n);
}

static void serve_one(struct ring_thread *t)
{
	struct fuse_in_header in;
	struct ring_ent_in_out e;
	struct fuse_buf fb;
	size_t head = sizeof(in), oplen;
	char *m;

	memcpy(&in, t->hdr->in_out, sizeof(in));
	memcpy(&e, &t->hdr->ent, sizeof(e));
	t->unique = in.unique;
	t->commit_id = e.commit_id;
	t->replied = 0;
	if (in.len < head + e.payload_sz || in.len - head - e.payload_sz > RING_OP_IN ||
	    e.payload_sz > t->cap) {
		ring_error(t, EIO);
		t->unique = 0;
		return;
	}
	oplen = in.len - head - e.payload_sz;
	m = t->payload - oplen - head;
	memcpy(m, &in, head);
	memcpy(m + head, t->hdr->op_in, oplen);
	memset(&fb, 0, sizeof(fb));
	fb.mem = m;
	fb.size = in.len;
	fuse_session_process_buf(R.se, &fb);
	if (!t->replied)
		ring_error(t, EIO);
	t->unique = 0;
	__atomic_add_fetch(&R.stats->ring_requests, 1, __ATOMIC_RELAXED);
}

/* Once per daemon: what stopped io_uring (later threads say the same). */
static void log_once(const char *fmt, int qid, int rc)
{
	if (__atomic_exchange_n(&R.logged, 1, __ATOMIC_RELAXED) == 0)
		log_err(fmt, qid, strerror(-rc));
}

static void *ring_main(void *arg)
{
	struct ring_thread *t = arg;
	struct iovec iov[2];
	cpu_set_t set;
	sigset_t sigs;
	int rc;

	cur = t;
	/* libfuse's threads (ours are started from one) block every signal */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGUSR1);
	pthread_sigmask(SIG_UNBLOCK, &sigs, NULL);
	CPU_ZERO(&set);
	CPU_SET(t->qid, &set);
	/* not fatal: a CPU outside our cpuset only slows its callers down */
	pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
	rc = uring_init(&t->u, IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN);
	if (rc == -EINVAL)
		rc = uring_init(&t->u, 0);
	if (rc) {
		log_once("mount: queue %d: no io_uring (%s); FUSE requests go through /dev/fuse",
			 t->qid, rc);
		t->u.fd = -1;
		return NULL;
	}
	iov[0].iov_base = t->hdr;
	iov[0].iov_len = sizeof(*t->hdr);
	iov[1].iov_base = t->payload;
	iov[1].iov_len = t->cap;
	uring_cmd(t, RING_REGISTER, 0, iov);
	for (;;) {
		struct sched_param sp = { 0 };

		/*
		 * The commit wakes the caller from this CPU.  The scheduler
		 * moves a wakee off a busy CPU to an idle one (a cross-CPU
		 * wakeup, then the next request lands on that CPU's queue and
		 * the same again), unless the CPU runs only SCHED_IDLE tasks:
		 * be one while committing and waiting, so the caller stays
		 * here.  Handlers run as normal tasks, except those answered
		 * without work (light()), which skip the two switches.
		 */
		if (__atomic_load_n(&R.idle_waits, __ATOMIC_RELAXED) && !idle_now &&
		    sched_setscheduler(0, SCHED_IDLE, &sp) == 0)
			idle_now = 1;
		rc = uring_submit_wait(&t->u);
		if (rc)
			break;
		if (!t->served++)
			__atomic_add_fetch(&R.stats->ring_threads, 1, __ATOMIC_RELAXED);
		if (!(idle_now && light(t)))
			ring_work();
		serve_one(t);
		if (idle_now)
			__atomic_add_fetch(&R.stats->ring_light, 1, __ATOMIC_RELAXED);
		uring_cmd(t, RING_COMMIT_AND_FETCH, t->commit_id, NULL);
	}
	ring_work();
	if (rc != -ENOTCONN && rc != -ECANCELED && !R.stop)
		log_once("mount: io_uring queue %d stopped: %s; FUSE requests go through /dev/fuse",
			 t->qid, rc);
	return NULL;
}

/*
 * Leaving SCHED_IDLE needs CAP_SYS_NICE or an RLIMIT_NICE that allows
 * nice 0; find out on a thread of its own, which stays idle if not.
 */
static void *probe_idle(void *arg)
{
	struct sched_param sp = { 0 };
	int *ok = arg;

	*ok = sched_setscheduler(0, SCHED_IDLE, &sp) == 0 &&
	      sched_setscheduler(0, SCHED_OTHER, &sp) == 0;
	return NULL;
}

static int possible_cpus(void)
{
	char buf[256];
	int fd = open("/sys/devices/system/cpu/possible", O_RDONLY | O_CLOEXEC);
	ssize_t n;
	char *p, *end;
	int hi = -1;

	if (fd < 0)
		return -1;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = 0;
	/* "0-3" or "0,2-5": the kernel has one queue per possible CPU id */
	for (p = buf; *p && *p != '\n';) {
		long v = strtol(p, &end, 10);

		if (end == p)
			return -1;
		if (v > hi)
			hi = (int)v;
		p = end;
		if (*p == '-' || *p == ',')
			p++;
	}
	return hi + 1;
}

static void on_wake(int sig)
{
	(void)sig; /* interrupts io_uring_enter so a thread sees R.stop */
}

static void ring_start(void)
{
	int ncpu = possible_cpus(), per, i;
	struct sigaction sa;

	if (ncpu <= 0 || ncpu > MAX_THREADS)
		return;
	per = MAX_THREADS / ncpu < 4 ? MAX_THREADS / ncpu : 4;
	R.t = calloc((size_t)(ncpu * per), sizeof(*R.t));
	if (!R.t)
		return;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_wake;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGUSR1, &sa, NULL);
	{
		pthread_t th;
		int ok = 0;

		if (pthread_create(&th, NULL, probe_idle, &ok) == 0 && pthread_join(th, NULL) == 0)
			R.idle_waits = ok;
	}
	for (i = 0; i < ncpu * per; i++) {
		struct ring_thread *t = &R.t[R.n];

		t->qid = i % ncpu;
		t->u.fd = -1;
		t->cap = R.payload;
		t->mem_len = 2 * STAGE + t->cap;
		t->mem = mmap(NULL, t->mem_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
			      -1, 0);
		if (t->mem == MAP_FAILED)
			break;
		t->hdr = (struct ring_req_header *)t->mem;
		t->payload = t->mem + 2 * STAGE;
		if (pthread_create(&t->th, NULL, ring_main, t) != 0) {
			munmap(t->mem, t->mem_len);
			break;
		}
		R.n++;
	}
}

static ssize_t io_read(int fd, void *buf, size_t len, void *userdata)
{
	ssize_t n = read(fd, buf, len);
	const struct fuse_in_header *in = buf;

	(void)userdata;
	if (n >= (ssize_t)(sizeof(*in) + offsetof(struct fuse_init_in, flags2) + 4) &&
	    in->opcode == FUSE_INIT) {
		const struct fuse_init_in *ii = (const void *)(in + 1);
		uint64_t fl = ii->flags;

		if (fl & FUSE_INIT_EXT)
			fl |= (uint64_t)ii->flags2 << 32;
		R.init_unique = in->unique;
		R.offered = (fl & OVER_IO_URING) != 0;
	}
	return n;
}

/* The INIT reply: ask for io_uring and learn the payload size. */
static void patch_init(struct iovec *iov, int count)
{
	struct fuse_init_out *o;
	size_t pages;
	int ncpu;

	if (count < 2 || iov[1].iov_len < offsetof(struct fuse_init_out, flags2) + 4)
		return;
	o = iov[1].iov_base;
	if (!(o->flags & FUSE_INIT_EXT))
		return;
	/* rings are per possible CPU: without /sys to say how many (a chroot
	 * or a container without it), do not ask for them, or the kernel
	 * would send every request to rings nobody serves */
	ncpu = possible_cpus();
	if (ncpu <= 0 || ncpu > MAX_THREADS) {
		log_err("mount: no io_uring (how many CPUs there may be is unknown: is /sys "
			"mounted?); FUSE requests go through /dev/fuse");
		return;
	}
	o->flags2 |= (uint32_t)(OVER_IO_URING >> 32);
	pages = (o->flags & FUSE_MAX_PAGES) ? o->max_pages : 256;
	R.payload = o->max_write;
	if (pages * 4096 > R.payload)
		R.payload = pages * 4096;
	if (R.payload < 8192)
		R.payload = 8192;
	R.payload = (R.payload + 4095) & ~(size_t)4095;
}

static ssize_t io_writev(int fd, struct iovec *iov, int count, void *userdata)
{
	const struct fuse_out_header *out = iov[0].iov_base;
	ssize_t n;
	int init;

	(void)userdata;
	if (cur && cur->unique && out->unique == cur->unique)
		return ring_reply(cur, iov, count);
	init = R.init_unique && out->unique == R.init_unique && !out->error && R.offered;
	if (init)
		patch_init(iov, count);
	n = writev(fd, iov, count);
	if (init && n > 0 && R.payload) {
		R.init_unique = 0;
		ring_start();
	}
	return n;
}

static int read_full(int fd, char *p, size_t n)
{
	while (n) {
		ssize_t r = read(fd, p, n);

		if (r <= 0)
			return -1;
		p += r;
		n -= (size_t)r;
	}
	return 0;
}

/* libfuse spliced a reply into a pipe (header first) for /dev/fuse. */
static ssize_t io_splice_send(int fdin, off_t *offin, int fdout, off_t *offout, size_t len,
			      unsigned int flags, void *userdata)
{
	struct fuse_out_header o;
	struct iovec iov[2];
	char *rest;
	ssize_t n;

	(void)userdata;
	if (!cur || !cur->unique)
		return splice(fdin, offin, fdout, offout, len, flags);
	if (len < sizeof(o) || read_full(fdin, (char *)&o, sizeof(o)) != 0)
		return -1;
	if (o.unique == cur->unique) {
		if (len - sizeof(o) > cur->cap || read_full(fdin, cur->payload, len - sizeof(o))) {
			ring_error(cur, EIO);
			return -1;
		}
		memcpy(cur->hdr->in_out, &o, sizeof(o));
		cur->hdr->ent.payload_sz = (uint32_t)(len - sizeof(o));
		cur->replied = 1;
		return (ssize_t)len;
	}
	/* a notification made while handling a ring request */
	rest = malloc(len - sizeof(o) + 1);
	if (!rest || read_full(fdin, rest, len - sizeof(o))) {
		free(rest);
		return -1;
	}
	iov[0].iov_base = &o;
	iov[0].iov_len = sizeof(o);
	iov[1].iov_base = rest;
	iov[1].iov_len = len - sizeof(o);
	n = writev(fdout, iov, 2);
	free(rest);
	return n;
}

int ring_attach(struct fuse_session *se, int enable, struct mount_stats *stats)
{
	static const struct fuse_custom_io io = {
		.writev = io_writev,
		.read = io_read,
		.splice_send = io_splice_send,
	};

	if (!enable)
		return 0;
	R.se = se;
	R.stats = stats;
	R.fd = fuse_session_fd(se);
	return fuse_session_custom_io(se, &io, R.fd);
}

void ring_detach(void)
{
	struct timespec ts;
	int i, stuck = 0;

	R.stop = 1;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += 5;
	for (i = 0; i < R.n; i++) {
		pthread_kill(R.t[i].th, SIGUSR1);
		if (pthread_timedjoin_np(R.t[i].th, NULL, &ts) != 0) {
			stuck = 1; /* in a handler still: process exit ends it */
			continue;
		}
		uring_close(&R.t[i].u);
		munmap(R.t[i].mem, R.t[i].mem_len);
	}
	if (stuck)
		return;
	free(R.t);
	R.t = NULL;
	R.n = 0;
}
