/*
 * The writable layer below FUSE (fs/overlay*.c), on a real SQLite state in
 * a temporary directory over a small catalog: lookups fall through to the
 * snapshot, changes (create, rename, unlink, setattr, copy-up, xattrs)
 * hide or replace it, refusals give the right errno, and everything is
 * there again after a reopen.
 */
#define _GNU_SOURCE
#include "../../fs/overlay.h"
#include "check.h"

#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* root/{a (dir), b (file, 200 bytes), c (symlink to b)}, a/{x (empty file)} */
static void build(struct buf *img)
{
	static const char strings[] = "abcxb";
	struct cat_entry e[5];
	struct cat_ref r[1] = { { 0, 0, 0 } };
	struct cat_chunk ch[1];
	struct cas_id packs[1];

	memset(e, 0, sizeof(e));
	memset(ch, 0, sizeof(ch));
	memset(packs, 0, sizeof(packs));
	e[0] = (struct cat_entry){ 0, S_IFDIR | 0755, 0, 0, 0, 1000, 0, 3, 0, 0, 0, 1, 3, 0 };
	e[1] = (struct cat_entry){ 0, S_IFDIR | 0755, 0, 0, 0, 1000, 0, 2, 1, 1, 0, 4, 1, 0 };
	e[2] = (struct cat_entry){ 0, S_IFREG | 0644, 0, 0, 200, 1000, 0, 1, 2, 1, 1, 0, 1, 0 };
	e[3] = (struct cat_entry){ 0, S_IFLNK | 0777, 0, 0, 1, 1000, 0, 1, 3, 1, 2, 4, 1, 0 };
	e[4] = (struct cat_entry){ 1, S_IFREG | 0644, 0, 0, 0, 1000, 0, 1, 4, 1, 3, 0, 0, 0 };
	ch[0] = (struct cat_chunk){ { { 1 } }, 0, 200, 0, 200, 0 };
	CHECK_EQ(catalog_build(img, e, 5, r, 1, ch, 1, packs, 1, NULL, 0, NULL, 0, strings,
			       sizeof(strings) - 1),
		 0);
}

/* A snapshot file's bytes, as fetching would give them. */
static int read_lower(void *arg, uint32_t idx, uint64_t off, void *buf, size_t n)
{
	size_t i;

	(void)arg;
	(void)idx;
	for (i = 0; i < n; i++)
		((char *)buf)[i] = (char)('A' + (off + i) % 26);
	return 0;
}

static int has_name(struct ov *ov, uint64_t dir, const char *name)
{
	struct ov_dirent *v = NULL;
	size_t n = 0, i;
	int found = 0;

	if (ov_list(ov, dir, &v, &n) != 0)
		return -1;
	for (i = 0; i < n; i++)
		found |= v[i].len == strlen(name) && !memcmp(v[i].name, name, v[i].len);
	ov_dirents_free(v, n);
	return found;
}

int main(void)
{
	struct buf img = BUF_INIT;
	struct catalog *cat = NULL;
	struct ov *ov = NULL;
	struct ov_opts oo;
	struct ov_attr a, b, fresh;
	struct stat st;
	char dir[] = "/tmp/stash-overlay-XXXXXX", why[256], path[PATH_MAX], buf[256];
	uint64_t changes;
	int fd, i;

	CHECK(mkdtemp(dir) != NULL);
	build(&img);
	CHECK_EQ(catalog_open_mem(img.p, img.len, &cat, why, sizeof(why)), 0);
	memset(&oo, 0, sizeof(oo));
	oo.uid = getuid();
	oo.gid = getgid();
	oo.read_lower = read_lower;
	CHECK_EQ(ov_open(dir, cat, &oo, &ov), 0);

	/* the snapshot shows through: inode = catalog index + 1 */
	CHECK_EQ(ov_lookup(ov, 1, "b", &b), 0);
	CHECK_EQ(b.ino, 3);
	CHECK_EQ(b.size, 200);
	CHECK_EQ(b.upper, 0);
	CHECK_EQ(ov_lookup(ov, 1, "c", &a), 0);
	CHECK_EQ(ov_readlink(ov, a.ino, buf, sizeof(buf)), 1);
	CHECK_EQ(buf[0], 'b');
	CHECK_EQ(ov_lookup(ov, 1, "nothing", &a), -ENOENT);
	CHECK_EQ(ov_changes(ov), 0);

	/* a new file, then the snapshot's b moved into a/ */
	CHECK_EQ(ov_create(ov, 1, "new", S_IFREG | 0600, getuid(), getgid(), NULL, 0, &fresh), 0);
	CHECK(fresh.ino > 5);
	CHECK_EQ(ov_lookup(ov, 1, "new", &a), 0);
	CHECK_EQ(a.ino, fresh.ino);
	CHECK_EQ(ov_create(ov, 1, "new", S_IFREG | 0600, getuid(), getgid(), NULL, 0, &a), -EEXIST);
	CHECK_EQ(ov_rename(ov, 1, "b", 2, "moved", 0), 0);
	CHECK_EQ(ov_lookup(ov, 1, "b", &a), -ENOENT);
	CHECK_EQ(ov_lookup(ov, 2, "moved", &a), 0);
	CHECK_EQ(a.ino, b.ino);
	CHECK_EQ(ov_rename(ov, 2, "moved", 2, "x", RENAME_NOREPLACE), -EEXIST);

	/* removals: a name hidden, a non-empty directory refused */
	CHECK_EQ(ov_unlink(ov, 1, "c", 0), 0);
	CHECK_EQ(ov_lookup(ov, 1, "c", &a), -ENOENT);
	CHECK_EQ(has_name(ov, 1, "c"), 0);
	CHECK_EQ(has_name(ov, 1, "new"), 1);
	CHECK_EQ(has_name(ov, 1, "a"), 1);
	CHECK_EQ(ov_unlink(ov, 1, "a", 1), -ENOTEMPTY);
	CHECK_EQ(ov_unlink(ov, 1, "new", 1), -ENOTDIR);

	/* xattrs on a new file */
	CHECK_EQ(ov_setxattr(ov, fresh.ino, "user.k", "v", 1, 0), 0);
	CHECK_EQ(ov_getxattr(ov, fresh.ino, "user.k", buf, sizeof(buf)), 1);
	CHECK_EQ(buf[0], 'v');
	CHECK(ov_listxattr(ov, fresh.ino, buf, sizeof(buf)) >= (ssize_t)sizeof("user.k"));
	CHECK_EQ(ov_removexattr(ov, fresh.ino, "user.k"), 0);
	CHECK_EQ(ov_getxattr(ov, fresh.ino, "user.k", buf, sizeof(buf)), -ENODATA);

	/* a copy-up: the snapshot's bytes in the data file, then truncated */
	CHECK_EQ(ov_copy_up(ov, b.ino, 0), 0);
	CHECK_EQ(ov_getattr(ov, b.ino, &a), 0);
	CHECK_EQ(a.upper, 1);
	ov_data_path(ov, b.ino, path);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	CHECK(fd >= 0);
	if (fd >= 0) {
		CHECK_EQ(read(fd, buf, sizeof(buf)), 200);
		for (i = 0; i < 200; i++)
			if (buf[i] != 'A' + i % 26)
				break;
		CHECK_EQ(i, 200);
		close(fd);
	}
	memset(&st, 0, sizeof(st));
	st.st_size = 10;
	CHECK_EQ(ov_setattr(ov, b.ino, OV_SET_SIZE, &st, &a), 0);
	CHECK_EQ(a.size, 10);
	changes = ov_changes(ov);
	CHECK(changes > 0);
	ov_close(ov);

	/* all of it is the state's: the same after a reopen */
	ov = NULL;
	CHECK_EQ(ov_open(dir, cat, &oo, &ov), 0);
	if (ov) {
		/* counted from the database now; before, the in-memory sets
		 * could claim a row a refused change rolled back */
		CHECK(ov_changes(ov) > 0 && ov_changes(ov) <= changes);
		CHECK_EQ(ov_lookup(ov, 1, "c", &a), -ENOENT);
		CHECK_EQ(ov_lookup(ov, 2, "moved", &a), 0);
		CHECK_EQ(a.size, 10);
		CHECK_EQ(a.upper, 1);
		CHECK_EQ(ov_lookup(ov, 1, "new", &a), 0);
		CHECK_EQ(a.ino, fresh.ino);
		CHECK_EQ(ov_meta_set(ov, "key", "k"), 0);
		ov_close(ov);
	}
	CHECK_EQ(ov_peek_meta(dir, "key", buf, sizeof(buf)), 0);
	CHECK(!strcmp(buf, "k"));
	catalog_close(cat);
	buf_free(&img);
	snprintf(path, sizeof(path), "rm -rf '%s'", dir);
	CHECK_EQ(system(path), 0);
	return check_done("overlay");
}
