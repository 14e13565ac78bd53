/*
 * stashfs restore: materialize a catalog into a real directory.
 *
 * 1. Create the tree in entry order (parents before children): directories
 *    (0700 for now, so read-only ones can be filled), empty regular files
 *    sized to their final length, symlinks, then hard links to the group's
 *    first member.
 * 2. Content: every (chunk, file, offset) target is sorted by the chunk's
 *    place in its pack and cut into batches, each one ranged read of a
 *    pack.  Worker threads fetch batches, decode and verify every chunk
 *    (bytes whose hash does not match are never written), and write each
 *    chunk to every place it appears.
 * 3. Metadata in reverse entry order (children before parents, so writing
 *    a child cannot bump a restored directory mtime): owner when asked,
 *    mode (set-id bits only where the recorded owner is the file's), then
 *    mtime to the nanosecond.
 *
 * Every step works through fds of what restore itself made, reached
 * without following a symlink (see open_beneath): the target may be
 * writable by other users.
 */
#define _GNU_SOURCE
#include "snapshot.h"
#include "pack.h"
#include "tuning.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>

struct target {
	uint32_t chunk;
	uint32_t entry;
	uint64_t off;
};

struct batch {
	uint64_t first, count; /* range in targets */
	uint32_t pack;
	uint64_t off, len; /* byte range of the pack */
};

struct file_id {
	dev_t dev;
	ino_t ino;
	int fresh; /* a directory restore made (or found) empty: nothing to replace */
	int absent; /* a device node this user may not make: left out */
};

struct restorer {
	struct repo *r;
	struct catalog *c;
	const struct restore_opts *o;
	int rootfd;
	struct file_id *ids; /* what restore made (or found) at each entry */
	struct target *t;
	uint64_t nt;
	struct batch *b;
	uint64_t nb;
	atomic_uint_fast64_t next;
	atomic_int err;
	atomic_uint_fast64_t fetched;
};

static int target_cmp(const void *a, const void *b, void *cat)
{
	const struct target *x = a, *y = b;
	const struct cat_chunk *cx = catalog_chunk(cat, x->chunk);
	const struct cat_chunk *cy = catalog_chunk(cat, y->chunk);

	if (cx->pack != cy->pack)
		return cx->pack < cy->pack ? -1 : 1;
	if (cx->pack_off != cy->pack_off)
		return cx->pack_off < cy->pack_off ? -1 : 1;
	if (x->entry != y->entry)
		return x->entry < y->entry ? -1 : 1;
	return x->off < y->off ? -1 : x->off > y->off;
}

/*
 * Every path is opened beneath the root without following a symlink in any
 * component (openat2 RESOLVE_NO_SYMLINKS, or a walk of O_NOFOLLOW opens
 * where a path is longer than PATH_MAX), and what it opens must be the inode
 * restore made or found there (s->ids).  A local user who can write the
 * target and swaps a directory for a symlink, or a file for a hard link,
 * makes restore fail; it never makes it write, chmod or chown outside the
 * target.
 */
static int walk_beneath(struct restorer *s, uint32_t i, int flags)
{
	uint32_t stack[CATALOG_MAX_DEPTH];
	int depth = 0, fd = -1, rc = 0;

	while (i != 0) {
		if (depth == (int)ARRAY_SIZE(stack))
			return -ENAMETOOLONG;
		stack[depth++] = i;
		i = catalog_entry(s->c, i)->parent;
	}
	while (depth > 0) {
		const struct cat_entry *e = catalog_entry(s->c, stack[--depth]);
		char name[CATALOG_MAX_NAME + 1];
		int nfd;

		memcpy(name, catalog_name(s->c, e), e->name_len);
		name[e->name_len] = '\0';
		nfd = openat(fd < 0 ? s->rootfd : fd, name,
			     (depth ? O_RDONLY | O_DIRECTORY : flags) | O_NOFOLLOW | O_CLOEXEC);
		rc = nfd < 0 ? -errno : 0;
		if (fd >= 0)
			close(fd);
		if (rc)
			return rc;
		fd = nfd;
	}
	return fd;
}

static int open_beneath(struct restorer *s, uint32_t i, int flags, struct buf *path)
{
	struct open_how how;
	int fd, rc;

	if (i == 0) {
		fd = openat(s->rootfd, ".", flags | O_CLOEXEC);
		return fd < 0 ? -errno : fd;
	}
	rc = catalog_path(s->c, i, path);
	if (!rc && path->len <= PATH_MAX) {
		memset(&how, 0, sizeof(how));
		how.flags = (uint64_t)(flags | O_NOFOLLOW | O_CLOEXEC);
		how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS |
			      RESOLVE_NO_XDEV;
		fd = (int)syscall(SYS_openat2, s->rootfd, path->p, &how, sizeof(how));
		if (fd >= 0 || (errno != ENOSYS && errno != ENAMETOOLONG && errno != EXDEV))
			return fd < 0 ? -errno : fd;
	} else if (rc && rc != -ENAMETOOLONG) {
		return rc;
	}
	return walk_beneath(s, i, flags);
}

static void note_id(struct restorer *s, uint32_t i, const struct stat *sb)
{
	s->ids[i].dev = sb->st_dev;
	s->ids[i].ino = sb->st_ino;
}

static int same_id(struct restorer *s, uint32_t i, int fd)
{
	struct stat sb;

	if (fstat(fd, &sb) < 0)
		return -errno;
	if (sb.st_dev != s->ids[i].dev || sb.st_ino != s->ids[i].ino)
		return -ESTALE;
	return 0;
}

/* Entry i opened beneath the root, checked to be the inode restore made. */
static int open_entry(struct restorer *s, uint32_t i, int flags, struct buf *path)
{
	int fd = open_beneath(s, i, flags, path), rc;

	if (fd < 0)
		return fd;
	rc = same_id(s, i, fd);
	if (rc) {
		close(fd);
		return rc;
	}
	return fd;
}

static int fail_at(struct restorer *s, const char *what, uint32_t i, int rc)
{
	struct buf path = BUF_INIT;
	const char *why = rc == -ESTALE	 ? "replaced by something else during restore"
			  : rc == -ELOOP ? "a symlink on the way (changed during restore?)"
					 : strerror(-rc);

	if (i == 0 || catalog_path(s->c, i, &path))
		log_err("restore: %s '%s': %s", what, qpath(s->o->dir), why);
	else
		log_err("restore: %s '%s/%s': %s", what, qpath(s->o->dir),
			qpath((const char *)path.p), why);
	buf_free(&path);
	return rc;
}

/* The parent directory of entry i, opened once for a run of siblings. */
static int parent_fd(struct restorer *s, uint32_t i, uint32_t *cur, int *fd, struct buf *path)
{
	uint32_t p = catalog_entry(s->c, i)->parent;

	if (*fd >= 0 && *cur == p)
		return *fd;
	if (*fd >= 0)
		close(*fd);
	*cur = p;
	*fd = open_entry(s, p, O_RDONLY | O_DIRECTORY, path);
	if (*fd < 0)
		return fail_at(s, "opening directory", p, *fd);
	return *fd;
}

/* Entry i, a hard link of any kind but a directory: link it to its leader. */
static int make_link(struct restorer *s, uint32_t i, int pfd, const char *name, struct buf *path,
		     struct snap_stats *st)
{
	const struct cat_entry *e = catalog_entry(s->c, i);
	const struct cat_entry *l = catalog_entry(s->c, e->ino);
	char lname[CATALOG_MAX_NAME + 1];
	struct stat sb;
	int lfd, rc = 0;

	if (s->ids[e->ino].absent) {
		s->ids[i].absent = 1;
		st->skipped++;
		return 0;
	}
	st->hardlinks++;
	if (!s->ids[e->parent].fresh)
		unlinkat(pfd, name, 0);
	lfd = open_entry(s, l->parent, O_RDONLY | O_DIRECTORY, path);
	if (lfd < 0)
		return fail_at(s, "opening directory", l->parent, lfd);
	memcpy(lname, catalog_name(s->c, l), l->name_len);
	lname[l->name_len] = '\0';
	/* no AT_SYMLINK_FOLLOW: a symlink is linked, not what it names */
	if (linkat(lfd, lname, pfd, name, 0) < 0 ||
	    fstatat(pfd, name, &sb, AT_SYMLINK_NOFOLLOW) < 0)
		rc = fail_at(s, "creating hard link", i, -errno);
	else if (sb.st_dev != s->ids[e->ino].dev || sb.st_ino != s->ids[e->ino].ino)
		rc = fail_at(s, "creating hard link", i, -ESTALE);
	else
		note_id(s, i, &sb);
	close(lfd);
	return rc;
}

/* Directory entry i as name in pfd: made, or one there that is safe to fill. */
static int make_dir(struct restorer *s, uint32_t i, int pfd, const char *name)
{
	const struct cat_entry *e = catalog_entry(s->c, i);
	uid_t me = geteuid();
	struct stat sb;
	int fd, rc = 0;

	if (mkdirat(pfd, name, 0700) == 0)
		s->ids[i].fresh = 1;
	else if (errno != EEXIST)
		return fail_at(s, "creating directory", i, -errno);
	fd = openat(pfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return fail_at(s, "creating directory", i,
			       errno == ENOTDIR || errno == ELOOP ? -EEXIST : -errno);
	/* a directory that was there is filled only if it is the restoring
	 * user's, or the owner being restored (then it is the restoring
	 * user's until its metadata is set): every directory stays the
	 * restoring user's and 0700 while restore works in it, so nobody
	 * else can swap what is in it, or move it and what restore writes */
	if (fstat(fd, &sb) < 0 ||
	    (sb.st_uid != me && !(s->o->preserve_owner && sb.st_uid == e->uid))) {
		close(fd);
		return fail_at(s, "using existing directory", i, -EPERM);
	}
	if ((sb.st_uid != me && fchown(fd, me, (gid_t)-1) < 0) || fchmod(fd, 0700) < 0)
		rc = fail_at(s, "creating directory", i, -errno);
	note_id(s, i, &sb);
	close(fd);
	return rc;
}

static int make_symlink(struct restorer *s, uint32_t i, int pfd, const char *name)
{
	const struct cat_entry *e = catalog_entry(s->c, i);
	char *t = strndup(catalog_target(s->c, e), e->count);
	struct stat sb;
	int rc = 0;

	if (!t)
		return -ENOMEM;
	if (!s->ids[e->parent].fresh)
		unlinkat(pfd, name, 0);
	if (symlinkat(t, pfd, name) < 0 || fstatat(pfd, name, &sb, AT_SYMLINK_NOFOLLOW) < 0)
		rc = fail_at(s, "creating symlink", i, -errno);
	else
		note_id(s, i, &sb);
	free(t);
	return rc;
}

static int make_special(struct restorer *s, uint32_t i, int pfd, const char *name,
			struct snap_stats *st)
{
	const struct cat_entry *e = catalog_entry(s->c, i);
	int dev = S_ISCHR(e->mode) || S_ISBLK(e->mode);
	struct stat sb;

	/* a device's access is its owner and mode: a catalog's device made
	 * root's without its recorded owner would open a disk to whoever the
	 * mode lets in */
	if (dev && !s->o->preserve_owner) {
		s->ids[i].absent = 1;
		st->skipped++;
		return 0;
	}
	if (!s->ids[e->parent].fresh)
		unlinkat(pfd, name, 0);
	if (mknodat(pfd, name, (e->mode & S_IFMT) | 0600, (dev_t)e->first) < 0) {
		if (dev && errno == EPERM) {
			s->ids[i].absent = 1;
			st->skipped++;
			return 0;
		}
		return fail_at(s, "creating special file", i, -errno);
	}
	if (fstatat(pfd, name, &sb, AT_SYMLINK_NOFOLLOW) < 0)
		return fail_at(s, "creating special file", i, -errno);
	note_id(s, i, &sb);
	return 0;
}

/* A regular file, empty and of its size (its content comes later). */
static int make_file(struct restorer *s, uint32_t i, int pfd, const char *name)
{
	const struct cat_entry *e = catalog_entry(s->c, i);
	struct stat sb;
	int fd, rc = 0;

	if (!s->ids[e->parent].fresh)
		unlinkat(pfd, name, 0);
	fd = openat(pfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return fail_at(s, "creating", i, -errno);
	if (e->size && ftruncate(fd, (off_t)e->size) < 0)
		rc = fail_at(s, "sizing", i, -errno);
	else if (fstat(fd, &sb) < 0)
		rc = fail_at(s, "creating", i, -errno);
	else
		note_id(s, i, &sb);
	close(fd);
	return rc;
}

static int create_tree(struct restorer *s, struct snap_stats *st)
{
	uint32_t n = catalog_count(s->c), i, cur = 0;
	struct buf path = BUF_INIT;
	int dfd = -1, rc = 0;

	for (i = 1; i < n && !rc; i++) {
		const struct cat_entry *e = catalog_entry(s->c, i);
		char name[CATALOG_MAX_NAME + 1];
		int pfd = parent_fd(s, i, &cur, &dfd, &path);

		if (pfd < 0) {
			rc = pfd;
			break;
		}
		memcpy(name, catalog_name(s->c, e), e->name_len);
		name[e->name_len] = '\0';
		if (!S_ISDIR(e->mode) && e->ino != i) {
			rc = make_link(s, i, pfd, name, &path, st);
			continue;
		}
		switch (e->mode & S_IFMT) {
		case S_IFDIR:
			st->dirs++;
			rc = make_dir(s, i, pfd, name);
			break;
		case S_IFLNK:
			st->symlinks++;
			rc = make_symlink(s, i, pfd, name);
			break;
		case S_IFIFO:
		case S_IFSOCK:
		case S_IFCHR:
		case S_IFBLK:
			st->specials++;
			rc = make_special(s, i, pfd, name, st);
			break;
		case S_IFREG:
			st->files++;
			st->bytes += e->size;
			rc = make_file(s, i, pfd, name);
			break;
		}
	}
	if (dfd >= 0)
		close(dfd);
	buf_free(&path);
	return rc;
}

static int plan(struct restorer *s)
{
	uint32_t n = catalog_count(s->c), i, j;
	uint64_t nt = 0, k;

	for (i = 0; i < n; i++) {
		const struct cat_entry *e = catalog_entry(s->c, i);

		if (S_ISREG(e->mode) && e->ino == i)
			nt += e->count;
	}
	s->t = malloc((nt ? nt : 1) * sizeof(*s->t));
	s->b = malloc((nt ? nt : 1) * sizeof(*s->b));
	if (!s->t || !s->b)
		return -ENOMEM;
	for (i = 0; i < n; i++) {
		const struct cat_entry *e = catalog_entry(s->c, i);
		const struct cat_ref *r;

		if (!S_ISREG(e->mode) || e->ino != i)
			continue;
		r = catalog_refs(s->c, e);
		for (j = 0; j < e->count; j++)
			s->t[s->nt++] = (struct target){ r[j].chunk, i, r[j].off };
	}
	qsort_r(s->t, s->nt, sizeof(*s->t), target_cmp, s->c);
	for (k = 0; k < s->nt; k++) {
		const struct cat_chunk *ch = catalog_chunk(s->c, s->t[k].chunk);
		struct batch *b = s->nb ? &s->b[s->nb - 1] : NULL;
		uint64_t end = ch->pack_off + ch->stored_len;

		if (b && b->pack == ch->pack && ch->pack_off >= b->off &&
		    ch->pack_off <= b->off + b->len + RESTORE_BATCH_GAP &&
		    (end <= b->off + b->len || end - b->off <= RESTORE_BATCH_MAX)) {
			if (end > b->off + b->len)
				b->len = end - b->off;
			b->count++;
			continue;
		}
		s->b[s->nb++] = (struct batch){ k, 1, ch->pack, ch->pack_off, ch->stored_len };
	}
	return 0;
}

static int all_zero(const uint8_t *p, size_t n)
{
	static const uint8_t z[4096];

	while (n) {
		size_t k = n < sizeof(z) ? n : sizeof(z);

		if (memcmp(p, z, k))
			return 0;
		p += k;
		n -= k;
	}
	return 1;
}

static int write_target(struct restorer *s, const struct target *t, const void *p, size_t n,
			int zero, struct buf *path)
{
	int fd, rc;

	/* the file was sized with ftruncate: zeros are already there, and
	 * leaving them as a hole keeps sparse files sparse */
	if (!zero) {
		/* below the root every directory is restore's own and 0700;
		 * only the root's entries can be swapped by someone else */
		fd = catalog_entry(s->c, t->entry)->parent
			     ? open_beneath(s, t->entry, O_WRONLY, path)
			     : open_entry(s, t->entry, O_WRONLY, path);
		if (fd < 0)
			return fail_at(s, "opening", t->entry, fd);
		rc = pwrite_full(fd, p, n, (off_t)t->off);
		if (close(fd) < 0 && !rc)
			rc = -errno;
		if (rc)
			return fail_at(s, "writing", t->entry, rc);
	}
	if (s->o->progress)
		__atomic_add_fetch(&s->o->progress->done_bytes, n, __ATOMIC_RELAXED);
	return 0;
}

static int do_batch(struct restorer *s, const struct batch *b, struct pack_codec *pc,
		    struct buf *in, struct buf *raw, struct buf *path)
{
	int zero = 0;
	char name[128], hex[CAS_HEX_LEN + 1];
	const struct cas_id *pid = catalog_pack(s->c, b->pack);
	uint64_t k;
	int rc;

	repo_object_name(name, "packs", pid);
	buf_reset(in);
	rc = repo_get(s->r, name, b->off, b->len, in, b->len);
	if (rc) {
		log_err("restore: pack %s: %s", hex,
			rc == -ENOENT ? "missing on every remote" : strerror(-rc));
		return rc;
	}
	atomic_fetch_add(&s->fetched, in->len);
	if (in->len != b->len) {
		log_err("restore: pack %s: truncated (%zu of %llu bytes at offset %llu)", hex,
			in->len, (unsigned long long)b->len, (unsigned long long)b->off);
		return -EBADMSG;
	}
	for (k = b->first; k < b->first + b->count; k++) {
		const struct target *t = &s->t[k];
		const struct cat_chunk *ch = catalog_chunk(s->c, t->chunk);

		if (k == b->first || s->t[k - 1].chunk != t->chunk) {
			rc = buf_reserve(raw, ch->raw_len);
			if (rc)
				return rc;
			rc = pack_decode(pc, in->p + (ch->pack_off - b->off), ch->stored_len,
					 ch->flags, raw->p, ch->raw_len, &ch->id);
			if (rc) {
				char chex[CAS_HEX_LEN + 1];

				cas_id_hex(&ch->id, chex);
				log_err("restore: object %s in pack %s: hash mismatch (corrupt "
					"object); "
					"not written",
					chex, hex);
				return rc;
			}
			/* once per distinct chunk: a file of a million
			 * references to one zero chunk costs one check */
			zero = all_zero(raw->p, ch->raw_len);
		}
		rc = write_target(s, t, raw->p, ch->raw_len, zero, path);
		if (rc)
			return rc;
	}
	return 0;
}

static void *worker(void *arg)
{
	struct restorer *s = arg;
	struct pack_codec *pc = pack_codec_new(1);
	struct buf in = BUF_INIT, raw = BUF_INIT, path = BUF_INIT;
	int zero = 0;

	if (!pc) {
		atomic_compare_exchange_strong(&s->err, &zero, -ENOMEM);
		return NULL;
	}
	while (!atomic_load(&s->err)) {
		uint64_t i = atomic_fetch_add(&s->next, 1);
		int rc;

		if (i >= s->nb)
			break;
		rc = do_batch(s, &s->b[i], pc, &in, &raw, &path);
		if (rc) {
			zero = 0;
			atomic_compare_exchange_strong(&s->err, &zero, rc);
		}
	}
	buf_free(&in);
	buf_free(&raw);
	buf_free(&path);
	pack_codec_free(pc);
	return NULL;
}

/*
 * The mode to give entry e.  Set-id bits stay only where the recorded owner
 * is the one the file gets: a user's setuid-to-self file restored by root
 * without --preserve-owner must not come back setuid-root (tar and chown(2)
 * drop them the same way).
 */
static mode_t restored_mode(struct restorer *s, const struct cat_entry *e, uint64_t *dropped)
{
	mode_t m = e->mode & 07777;

	if (S_ISDIR(e->mode) || s->o->preserve_owner)
		return m;
	if ((m & S_ISUID) && e->uid != geteuid())
		m &= ~(mode_t)S_ISUID;
	if ((m & S_ISGID) && e->gid != getegid())
		m &= ~(mode_t)S_ISGID;
	if (m != (e->mode & 07777))
		(*dropped)++;
	return m;
}

/* Set the recorded xattrs of entry i on fd (what restore made there). */
static int set_xattrs(struct restorer *s, uint32_t i, int fd, struct snap_stats *st)
{
	uint32_t n, k;
	const struct cat_xattr *x = catalog_xattrs(s->c, i, &n);

	for (k = 0; k < n; k++) {
		char nm[CATALOG_MAX_XATTR_NAME + 1];

		memcpy(nm, catalog_str(s->c, x[k].name_off), x[k].name_len);
		nm[x[k].name_len] = '\0';
		if (fsetxattr(fd, nm, catalog_str(s->c, x[k].value_off), x[k].value_len, 0) == 0) {
			st->xattrs++;
			continue;
		}
		/* trusted.*, security.* need privilege; a filesystem may have none */
		if (errno == EPERM || errno == ENOTSUP || errno == EACCES) {
			st->xattrs_dropped++;
			continue;
		}
		return fail_at(s, "setting xattrs of", i, -errno);
	}
	return 0;
}

/* The xattrs of entry i (name in pfd): regular files and directories
 * through an fd of what restore made; other kinds are counted, not set. */
static int entry_xattrs(struct restorer *s, uint32_t i, int pfd, const char *name,
			struct snap_stats *st)
{
	const struct cat_entry *e = catalog_entry(s->c, i);
	struct stat sb;
	uint32_t n;
	int fd, rc;

	catalog_xattrs(s->c, i, &n);
	if (n == 0)
		return 0;
	if (!S_ISREG(e->mode) && !S_ISDIR(e->mode)) {
		st->xattrs_dropped += n;
		return 0;
	}
	fd = openat(pfd, name,
		    O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC |
			    (S_ISDIR(e->mode) ? O_DIRECTORY : 0));
	if (fd < 0)
		return fail_at(s, "setting xattrs of", i, -errno);
	if (fstat(fd, &sb) < 0 || sb.st_dev != s->ids[i].dev || sb.st_ino != s->ids[i].ino)
		rc = fail_at(s, "setting xattrs of", i, -ESTALE);
	else
		rc = set_xattrs(s, i, fd, st);
	close(fd);
	return rc;
}

static int apply_meta(struct restorer *s, struct snap_stats *st)
{
	uint32_t n = catalog_count(s->c), i, cur = 0;
	struct buf path = BUF_INIT;
	int dfd = -1, rc = 0;

	for (i = n; i-- > 0 && !rc;) {
		const struct cat_entry *e = catalog_entry(s->c, i);
		char name[CATALOG_MAX_NAME + 1];
		struct timespec ts[2];
		int pfd = -1;

		if ((!S_ISDIR(e->mode) && e->ino != i) || s->ids[i].absent)
			continue;
		ts[0].tv_sec = e->mtime_sec;
		ts[0].tv_nsec = e->mtime_nsec;
		ts[1] = ts[0];
		if (i > 0) {
			pfd = parent_fd(s, i, &cur, &dfd, &path);
			if (pfd < 0) {
				rc = pfd;
				break;
			}
			memcpy(name, catalog_name(s->c, e), e->name_len);
			name[e->name_len] = '\0';
		}
		if (i == 0) {
			if (s->o->preserve_owner && fchown(s->rootfd, e->uid, e->gid) < 0)
				rc = fail_at(s, "setting owner of", i, -errno);
			else if ((rc = set_xattrs(s, i, s->rootfd, st)) != 0)
				;
			else if (fchmod(s->rootfd, restored_mode(s, e, &st->setid_dropped)) < 0)
				rc = fail_at(s, "setting mode of", i, -errno);
			else if (futimens(s->rootfd, ts) < 0)
				rc = fail_at(s, "setting mtime of", i, -errno);
			continue;
		}
		/* the parent is restore's own 0700 directory (create_tree):
		 * nobody else can swap the entry between these calls */
		{
			struct stat sb;

			if (fstatat(pfd, name, &sb, AT_SYMLINK_NOFOLLOW) < 0)
				rc = -errno;
			else if (sb.st_dev != s->ids[i].dev || sb.st_ino != s->ids[i].ino)
				rc = -ESTALE;
			if (rc) {
				rc = fail_at(s, "setting metadata of", i, rc);
				break;
			}
		}
		/* owner, then xattrs (a chown clears file capabilities), then
		 * the mode (user.* needs the write permission restore has) */
		if (s->o->preserve_owner &&
		    fchownat(pfd, name, e->uid, e->gid, AT_SYMLINK_NOFOLLOW) < 0)
			rc = fail_at(s, "setting owner of", i, -errno);
		else if ((rc = entry_xattrs(s, i, pfd, name, st)) != 0)
			;
		else if (!S_ISLNK(e->mode) &&
			 fchmodat(pfd, name, restored_mode(s, e, &st->setid_dropped), 0) < 0)
			rc = fail_at(s, "setting mode of", i, -errno);
		else if (utimensat(pfd, name, ts, AT_SYMLINK_NOFOLLOW) < 0)
			rc = fail_at(s, "setting mtime of", i, -errno);
	}
	if (dfd >= 0)
		close(dfd);
	buf_free(&path);
	return rc;
}

int snapshot_restore(struct repo *r, struct catalog *c, const struct restore_opts *o,
		     struct snap_stats *st)
{
	struct restorer s;
	pthread_t th[64];
	int nth, i, rc;

	memset(&s, 0, sizeof(s));
	memset(st, 0, sizeof(*st));
	s.r = r;
	s.c = c;
	s.o = o;
	st->dirs = 1; /* the root */
	s.rootfd = open(o->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (s.rootfd < 0) {
		rc = -errno;
		log_err("restore: cannot open directory '%s': %s", qpath(o->dir), strerror(errno));
		goto out;
	}
	s.ids = calloc(catalog_count(c), sizeof(*s.ids));
	if (!s.ids) {
		rc = -ENOMEM;
		goto out;
	}
	{
		struct stat sb;

		if (fstat(s.rootfd, &sb) < 0) {
			rc = -errno;
			goto out;
		}
		note_id(&s, 0, &sb);
		s.ids[0].fresh = dir_is_empty_at(s.rootfd, ".") == 1;
	}
	rc = create_tree(&s, st);
	if (!rc)
		rc = plan(&s);
	if (rc)
		goto out;
	if (o->progress) {
		uint64_t k2;

		for (k2 = 0; k2 < s.nt; k2++)
			o->progress->total_bytes += catalog_chunk(c, s.t[k2].chunk)->raw_len;
		o->progress->total_files = st->files;
	}
	nth = o->threads > 0 ? o->threads : 4;
	if (nth > (int)ARRAY_SIZE(th))
		nth = (int)ARRAY_SIZE(th);
	for (i = 0; i < nth; i++)
		if (pthread_create(&th[i], NULL, worker, &s) != 0)
			break;
	nth = i;
	if (nth == 0)
		worker(&s);
	for (i = 0; i < nth; i++)
		pthread_join(th[i], NULL);
	rc = atomic_load(&s.err);
	st->bytes_fetched = atomic_load(&s.fetched);
	st->chunks = s.nt;
	if (!rc)
		rc = apply_meta(&s, st);
out:
	free(s.ids);
	free(s.t);
	free(s.b);
	if (s.rootfd >= 0)
		close(s.rootfd);
	return rc;
}
