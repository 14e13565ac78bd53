/*
 * Small shared helpers: growable byte buffers, logging, hex, time, paths.
 *
 * Every function that can fail returns 0 or -errno.  Buffers that hold
 * bytes from outside are bounded by the caller-supplied cap (buf_reserve
 * fails with -EFBIG past it).
 */
#ifndef STASH_UTIL_H
#define STASH_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
/* On the 0-or-(-errno) functions whose failure a caller must not miss. */
#define MUST_CHECK __attribute__((warn_unused_result))

struct buf {
	uint8_t *p;
	size_t len;
	size_t cap;
};

/* clang-format off */
#define BUF_INIT { NULL, 0, 0 }
/* clang-format on */

MUST_CHECK int buf_reserve(struct buf *b, size_t extra);
int buf_append(struct buf *b, const void *data, size_t n);
int buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void buf_reset(struct buf *b);
void buf_free(struct buf *b);

/* Logging to stderr, prefixed "stashfs: ".  log_quiet silences info. */
extern int log_quiet;
extern int log_fd; /* where lines go; -1: nowhere (the fuzz targets) */
extern int log_verbose;
/* Set on a thread whose failures are not the user's business (a use
 * mark the remote refuses): its lines show only with --verbose. */
extern __thread int log_muted;
void log_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

void hex_encode(char *out, const uint8_t *in, size_t n);
int hex_decode(uint8_t *out, const char *in, size_t n);

int64_t now_ns(void);
/* CLOCK_MONOTONIC in nanoseconds: for intervals. */
int64_t mono_ns(void);
/* An age in seconds as ls shows it: 42s, 17m, 5h, 3d. */
void fmt_age(char *out, size_t n, double secs);
double mono_sec(void);

/* Human size like "12.3 MB" into out (at least 32 bytes). */
void fmt_size(char *out, size_t outlen, uint64_t n);

/* Parse "10G", "512M", "1000" into bytes.  0 or -EINVAL. */
int parse_size(const char *s, uint64_t *out);
/* A number of seconds over 0 and at most SECONDS_MAX, nothing else. */
#define SECONDS_MAX 86400.0
int parse_seconds(const char *s, double *out);
/* A whole number in [lo, hi], nothing else. */
int parse_int(const char *s, long lo, long hi, long *out);

/* Read/write whole files, crash-safe write (tmp, fsync, rename). */
MUST_CHECK int read_file(const char *path, struct buf *out, size_t cap);
/* mode as for open(2): the store's files are 0600 (it is private to its
 * user), a file:// remote's 0666 less the umask. */
/* 1 if dir (relative to dirfd) is empty or missing, 0 if not, -errno. */
int dir_is_empty_at(int dirfd, const char *dir);
MUST_CHECK int write_file_atomic(const char *path, const void *data, size_t n, mode_t mode);
int fsync_dir_of(const char *path);

/* Full reads/writes that retry on EINTR and short counts. */
ssize_t pread_full(int fd, void *buf, size_t n, off_t off);
int pwrite_full(int fd, const void *buf, size_t n, off_t off);
int write_full(int fd, const void *buf, size_t n);

/* mkdir -p; 0 or -errno. */
MUST_CHECK int mkdir_p(const char *path, mode_t mode);

/* Quote a path for messages: non-printable bytes as \xNN.  Thread-unsafe
 * static rotating buffers; fine for error lines. */
const char *qpath(const char *path);

/* s as a JSON string to f (non-ASCII bytes as \u00XX). */
void json_str(FILE *f, const char *s);

#endif
