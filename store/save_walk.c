/*
 * save's walk (one thread): every directory's children are read, sorted
 * and given a contiguous block of entry indices, which is the catalog's
 * layout; then hard links are grouped and extended attributes read.
 * Also the snap_tree calls commit's walk of a mounted view uses.
 */
#define _GNU_SOURCE
#include "save_int.h"
#include "idmap.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

struct child {
	char *name;
	size_t len;
	struct stat st;
};

static int child_cmp(const void *a, const void *b)
{
	const struct child *x = a, *y = b;

	return catalog_name_cmp(x->name, x->len, y->name, y->len);
}

int snap_tree_add(struct snap_tree *t, uint32_t parent, const char *name, size_t len,
		  const struct stat *st, char *path, uint32_t *idx)
{
	struct cat_entry *e;
	int rc;

	if (t->n == t->cap) {
		uint64_t nc = t->cap ? t->cap * 2 : 1024;
		struct cat_entry *ne = realloc(t->e, nc * sizeof(*ne));
		char **np;
		uint32_t *nb;

		if (!ne)
			return -ENOMEM;
		t->e = ne;
		np = realloc(t->paths, nc * sizeof(*np));
		if (!np)
			return -ENOMEM;
		t->paths = np;
		nb = realloc(t->base, nc * sizeof(*nb));
		if (!nb)
			return -ENOMEM;
		t->base = nb;
		t->cap = nc;
	}
	if (t->n >= UINT32_MAX - 1 || len > CATALOG_MAX_NAME)
		return len > CATALOG_MAX_NAME ? -ENAMETOOLONG : -EFBIG;
	e = &t->e[t->n];
	memset(e, 0, sizeof(*e));
	e->parent = parent;
	e->mode = st->st_mode;
	e->uid = st->st_uid;
	e->gid = st->st_gid;
	e->size = S_ISREG(st->st_mode) ? (uint64_t)st->st_size : 0;
	if (S_ISCHR(st->st_mode) || S_ISBLK(st->st_mode))
		e->first = st->st_rdev;
	e->mtime_sec = st->st_mtim.tv_sec;
	e->mtime_nsec = (uint32_t)st->st_mtim.tv_nsec;
	e->nlink = 1;
	e->ino = (uint32_t)t->n;
	e->name_len = (uint32_t)len;
	e->name_off = t->strings.len;
	rc = buf_append(&t->strings, name, len);
	if (rc)
		return rc;
	t->paths[t->n] = path;
	t->base[t->n] = SNAP_NONE;
	*idx = (uint32_t)t->n++;
	return 0;
}

int snap_tree_set_target(struct snap_tree *t, uint32_t idx, const char *target, size_t len)
{
	struct cat_entry *e = &t->e[idx];

	if (len == 0 || len > CATALOG_MAX_TARGET)
		return -ENAMETOOLONG;
	e->first = t->strings.len;
	e->count = (uint32_t)len;
	e->size = len;
	return buf_append(&t->strings, target, len);
}

int snap_xattr_kept(const char *name)
{
	if (!strncmp(name, "user.", 5) || !strncmp(name, "trusted.", 8))
		return 1;
	return !strncmp(name, "security.", 9) && strcmp(name, "security.selinux") != 0;
}

int snap_tree_add_xattr(struct snap_tree *t, uint32_t idx, const char *name, const void *value,
			size_t len)
{
	struct cat_xattr x;
	size_t nl = strlen(name);
	int rc;

	if (nl == 0 || nl > CATALOG_MAX_XATTR_NAME || len > CATALOG_MAX_XATTR_VALUE)
		return -E2BIG;
	memset(&x, 0, sizeof(x));
	x.entry = idx;
	x.name_len = (uint32_t)nl;
	x.name_off = t->strings.len;
	rc = buf_append(&t->strings, name, nl);
	x.value_off = t->strings.len;
	x.value_len = (uint32_t)len;
	if (!rc)
		rc = buf_append(&t->strings, value, len);
	if (!rc)
		rc = buf_append(&t->xattrs, &x, sizeof(x));
	return rc;
}

void snap_tree_release(struct snap_tree *t)
{
	uint64_t k;

	for (k = 0; k < t->n; k++)
		free(t->paths[k]);
	free(t->paths);
	free(t->base);
	free(t->e);
	buf_free(&t->strings);
	buf_free(&t->xattrs);
	memset(t, 0, sizeof(*t));
}

static int add_entry(struct saver *s, uint32_t parent, const char *name, size_t len,
		     const struct stat *st, char *path)
{
	uint32_t idx;
	int rc = snap_tree_add(s->t, parent, name, len, st, path, &idx);

	if (rc)
		return rc;
	if (!S_ISDIR(st->st_mode) && st->st_nlink > 1) {
		if (s->nlnks == s->caplnks) {
			uint64_t nc = s->caplnks ? s->caplnks * 2 : 64;
			struct lnk *nl = realloc(s->lnks, nc * sizeof(*nl));

			if (!nl)
				return -ENOMEM;
			s->lnks = nl;
			s->caplnks = nc;
		}
		s->lnks[s->nlnks++] = (struct lnk){ idx, st->st_dev, st->st_ino };
	}
	return 0;
}

static char *join(const char *dir, const char *name)
{
	char *p;

	if (!*dir)
		return strdup(name);
	if (asprintf(&p, "%s/%s", dir, name) < 0)
		return NULL;
	return p;
}

/* Read one directory, append its sorted children as a block. */
/* The kinds a snapshot keeps; another is warned of and skipped. */
static int kept_kind(struct saver *s, const char *path, const char *name, mode_t mode)
{
	switch (mode & S_IFMT) {
	case S_IFREG:
	case S_IFDIR:
	case S_IFLNK:
	case S_IFIFO:
	case S_IFSOCK:
	case S_IFCHR:
	case S_IFBLK: return 1;
	}
	log_warn("'%s/%s%s%s' is of unknown type %o; skipped", qpath(s->o->dir), qpath(path),
		 *path ? "/" : "", qpath(name), (unsigned)(mode & S_IFMT));
	s->st->skipped++;
	return 0;
}

/* The entries of directory d (at path), with their stat, in *kids. */
static int list_dir(struct saver *s, DIR *d, const char *path, struct child **kids, size_t *nk)
{
	struct dirent *de;
	size_t ck = 0;

	while ((errno = 0, de = readdir(d))) {
		struct child c;

		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (fstatat(dirfd(d), de->d_name, &c.st, AT_SYMLINK_NOFOLLOW) < 0) {
			int rc = -errno;

			if (rc == -ENOENT) {
				log_warn("'%s/%s/%s' vanished while saving; left out",
					 qpath(s->o->dir), qpath(path), qpath(de->d_name));
				continue;
			}
			log_err("save: cannot stat '%s/%s/%s': %s", qpath(s->o->dir), qpath(path),
				qpath(de->d_name), strerror(-rc));
			return rc;
		}
		if (!kept_kind(s, path, de->d_name, c.st.st_mode))
			continue;
		if (*nk == ck) {
			size_t nc = ck ? ck * 2 : 64;
			struct child *nkids = realloc(*kids, nc * sizeof(*nkids));

			if (!nkids)
				return -ENOMEM;
			*kids = nkids;
			ck = nc;
		}
		c.len = strlen(de->d_name);
		c.name = strdup(de->d_name);
		if (!c.name)
			return -ENOMEM;
		(*kids)[(*nk)++] = c;
	}
	if (errno) {
		int rc = -errno;

		log_err("save: cannot list '%s/%s': %s", qpath(s->o->dir), qpath(path),
			strerror(-rc));
		return rc;
	}
	return 0;
}

/* Add child k of directory idx (open as d) to the tree, a symlink with its target. */
static int add_child(struct saver *s, uint32_t idx, DIR *d, const char *path, const struct child *k)
{
	char target[CATALOG_MAX_TARGET + 1];
	char *cp = join(path, k->name);
	ssize_t tl;
	int rc;

	if (!cp)
		return -ENOMEM;
	rc = add_entry(s, idx, k->name, k->len, &k->st, cp);
	if (rc) {
		free(cp);
		return rc;
	}
	if (!S_ISLNK(k->st.st_mode))
		return 0;
	tl = readlinkat(dirfd(d), k->name, target, sizeof(target));
	if (tl < 0 || tl > CATALOG_MAX_TARGET) {
		rc = tl < 0 ? -errno : -ENAMETOOLONG;
		log_err("save: cannot read symlink '%s/%s': %s", qpath(s->o->dir), qpath(cp),
			strerror(-rc));
		return rc;
	}
	return snap_tree_set_target(s->t, (uint32_t)(s->t->n - 1), target, (size_t)tl);
}

static int walk_dir(struct saver *s, uint32_t idx, uint32_t **stack, uint64_t *sp, uint64_t *scap)
{
	const char *path = s->t->paths[idx];
	struct child *kids = NULL;
	size_t nk = 0, i;
	DIR *d = NULL;
	int fd, rc = 0;
	uint64_t first = s->t->n, subdirs = 0;

	fd = *path ? openat(s->rootfd, path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
		   : dup(s->rootfd);
	if (fd < 0 || !(d = fdopendir(fd))) {
		rc = -errno;
		if (fd >= 0)
			close(fd);
		log_err("save: cannot read directory '%s/%s': %s", qpath(s->o->dir), qpath(path),
			strerror(-rc));
		return rc;
	}
	rc = list_dir(s, d, path, &kids, &nk);
	if (rc)
		goto out;
	if (nk)
		qsort(kids, nk, sizeof(*kids), child_cmp);
	for (i = 0; i < nk && !rc; i++)
		rc = add_child(s, idx, d, path, &kids[i]);
	if (rc)
		goto out;
	s->t->e[idx].first = first;
	s->t->e[idx].count = (uint32_t)nk;
	/* push subdirectories so that they are visited in name order */
	for (i = nk; i-- > 0;) {
		if (!S_ISDIR(kids[i].st.st_mode))
			continue;
		subdirs++;
		if (*sp == *scap) {
			uint64_t nc = *scap ? *scap * 2 : 256;
			uint32_t *ns = realloc(*stack, nc * sizeof(*ns));

			if (!ns) {
				rc = -ENOMEM;
				goto out;
			}
			*stack = ns;
			*scap = nc;
		}
		(*stack)[(*sp)++] = (uint32_t)(first + i);
	}
	s->t->e[idx].nlink = (uint32_t)(2 + subdirs);
out:
	for (i = 0; i < nk; i++)
		free(kids[i].name);
	free(kids);
	closedir(d);
	return rc;
}

int walk(struct saver *s)
{
	uint32_t *stack = NULL;
	uint64_t sp = 0, scap = 0;
	struct stat st;
	char *rootpath = strdup("");
	int rc;

	if (!rootpath)
		return -ENOMEM;
	if (fstat(s->rootfd, &st) < 0) {
		free(rootpath);
		return -errno;
	}
	rc = add_entry(s, 0, "", 0, &st, rootpath);
	if (rc) {
		free(rootpath);
		return rc;
	}
	rc = walk_dir(s, 0, &stack, &sp, &scap);
	while (!rc && sp > 0)
		rc = walk_dir(s, stack[--sp], &stack, &sp, &scap);
	free(stack);
	return rc;
}

/* Hard links: members of a (dev, ino) group share the first one's index. */
int link_groups(struct saver *s)
{
	struct idmap *m = idmap_new();
	uint64_t i;
	int rc = 0;

	if (!m)
		return -ENOMEM;
	for (i = 0; i < s->nlnks; i++) {
		struct cat_entry *e = &s->t->e[s->lnks[i].idx];
		struct cas_id k;
		uint32_t leader;

		memset(&k, 0, sizeof(k));
		memcpy(k.b, &s->lnks[i].ino, sizeof(ino_t));
		memcpy(k.b + 8, &s->lnks[i].dev, sizeof(dev_t));
		if (idmap_get(m, &k, &leader) == 0) {
			e->ino = leader;
			e->size = s->t->e[leader].size;
		} else {
			rc = idmap_put(m, &k, s->lnks[i].idx);
			if (rc)
				break;
		}
	}
	idmap_free(m);
	return rc;
}

/* The extended attributes of every leader; what is not kept is counted. */
int save_xattrs(struct saver *s)
{
	char *names = NULL, *val = NULL;
	size_t cap = 4096;
	uint64_t i;
	int rc = 0;

	names = malloc(cap);
	val = malloc(CATALOG_MAX_XATTR_VALUE);
	if (!names || !val) {
		rc = -ENOMEM;
		goto out;
	}
	for (i = 0; i < s->t->n && !rc; i++) {
		char *path = NULL;
		ssize_t n;
		char *nm;

		if (s->t->e[i].ino != i)
			continue;
		if (asprintf(&path, "%s%s%s", s->o->dir, *s->t->paths[i] ? "/" : "",
			     s->t->paths[i]) < 0) {
			rc = -ENOMEM;
			break;
		}
		while ((n = llistxattr(path, names, cap)) < 0 && errno == ERANGE) {
			char *nn;

			n = llistxattr(path, NULL, 0);
			if (n < 0)
				break;
			nn = realloc(names, (size_t)n + 1);
			if (!nn) {
				errno = ENOMEM;
				n = -1;
				break;
			}
			names = nn;
			cap = (size_t)n + 1;
		}
		if (n < 0) {
			if (errno != ENOTSUP && errno != ENOENT) {
				rc = -errno;
				log_err("save: cannot list the xattrs of '%s': %s", qpath(path),
					strerror(errno));
			}
			free(path);
			continue;
		}
		for (nm = names; nm < names + n && !rc; nm += strlen(nm) + 1) {
			ssize_t vl;

			if (!snap_xattr_kept(nm)) {
				s->st->xattrs_dropped++;
				continue;
			}
			vl = lgetxattr(path, nm, val, CATALOG_MAX_XATTR_VALUE);
			if (vl < 0 && errno == ENODATA)
				continue;
			if (vl < 0 || strlen(nm) > CATALOG_MAX_XATTR_NAME) {
				log_warn("'%s': xattr %s not kept: %s", qpath(path), nm,
					 vl < 0 ? strerror(errno) : "name too long");
				s->st->xattrs_dropped++;
				continue;
			}
			rc = snap_tree_add_xattr(s->t, (uint32_t)i, nm, val, (size_t)vl);
		}
		free(path);
	}
out:
	free(names);
	free(val);
	return rc;
}

/* A non-directory's nlink is its link group's size within the snapshot. */
int count_links(struct snap_tree *t)
{
	uint32_t *members = calloc(t->n ? t->n : 1, sizeof(*members));
	uint64_t i;

	if (!members)
		return -ENOMEM;
	for (i = 0; i < t->n; i++)
		if (!S_ISDIR(t->e[i].mode))
			members[t->e[i].ino]++;
	for (i = 0; i < t->n; i++)
		if (!S_ISDIR(t->e[i].mode))
			t->e[i].nlink = members[t->e[i].ino];
	free(members);
	return 0;
}
