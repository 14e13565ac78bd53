/*
 * A syscall exerciser run inside a mount (after libfuse's
 * test/test_syscalls.c): every call a build makes, with its result
 * checked.  usage: syscalls DIR  (DIR must be empty and writable)
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <limits.h>
#include <time.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <sys/statvfs.h>
#include <sys/xattr.h>
#include <unistd.h>

static int passed, failed;
static const char *current;

#define T(cond)                                                                                    \
	do {                                                                                       \
		if (cond)                                                                          \
			passed++;                                                                  \
		else {                                                                             \
			failed++;                                                                  \
			fprintf(stderr, "%s: line %d: %s failed (errno %d: %s)\n", current,        \
				__LINE__, #cond, errno, strerror(errno));                          \
		}                                                                                  \
	} while (0)

static void test_create_write_read(void)
{
	char buf[64];
	struct stat st;
	int fd;

	current = "create/write/read";
	fd = open("f1", O_RDWR | O_CREAT | O_EXCL, 0640);
	T(fd >= 0);
	T(write(fd, "hello world", 11) == 11);
	T(pread(fd, buf, 5, 6) == 5 && memcmp(buf, "world", 5) == 0);
	T(pwrite(fd, "HELLO", 5, 0) == 5);
	T(lseek(fd, 0, SEEK_END) == 11);
	T(fstat(fd, &st) == 0 && st.st_size == 11 && (st.st_mode & 07777) == 0640);
	T(fsync(fd) == 0);
	T(fdatasync(fd) == 0);
	T(close(fd) == 0);
	T(open("f1", O_RDWR | O_CREAT | O_EXCL, 0600) < 0 && errno == EEXIST);
	fd = open("f1", O_RDONLY);
	T(fd >= 0 && read(fd, buf, sizeof(buf)) == 11 && memcmp(buf, "HELLO world", 11) == 0);
	close(fd);
}

static void test_truncate_append(void)
{
	char buf[64];
	struct stat st;
	int fd;

	current = "truncate/append";
	T(truncate("f1", 5) == 0);
	T(stat("f1", &st) == 0 && st.st_size == 5);
	T(truncate("f1", 100) == 0);
	T(stat("f1", &st) == 0 && st.st_size == 100);
	fd = open("f1", O_RDONLY);
	T(pread(fd, buf, 10, 50) == 10 && memcmp(buf, "\0\0\0\0\0\0\0\0\0\0", 10) == 0);
	close(fd);
	T(truncate("f1", 5) == 0);
	fd = open("f1", O_WRONLY | O_APPEND);
	T(fd >= 0 && write(fd, "+app", 4) == 4);
	T(ftruncate(fd, 7) == 0);
	close(fd);
	fd = open("f1", O_RDONLY);
	T(read(fd, buf, sizeof(buf)) == 7 && memcmp(buf, "HELLO+a", 7) == 0);
	close(fd);
	fd = open("f1", O_WRONLY | O_TRUNC);
	T(fd >= 0);
	close(fd);
	T(stat("f1", &st) == 0 && st.st_size == 0);
}

static void test_times_modes(void)
{
	struct timespec ts[2] = { { 1000, 123456789 }, { 1500000000, 987654321 } };
	struct stat st;
	int fd;

	current = "times/modes";
	T(utimensat(AT_FDCWD, "f1", ts, 0) == 0);
	T(stat("f1", &st) == 0 && st.st_mtim.tv_sec == 1500000000 &&
	  st.st_mtim.tv_nsec == 987654321);
	T(chmod("f1", 0604) == 0);
	T(stat("f1", &st) == 0 && (st.st_mode & 07777) == 0604);
	fd = open("f1", O_RDWR);
	T(fchmod(fd, 0600) == 0);
	T(futimens(fd, ts) == 0);
	T(write(fd, "x", 1) == 1);
	close(fd);
	T(stat("f1", &st) == 0 && st.st_mtim.tv_sec > 1500000000); /* write moved mtime */
	T(access("f1", R_OK | W_OK) == 0);
}

static void test_links(void)
{
	char buf[256];
	struct stat st, st2;
	ssize_t n;

	current = "links";
	T(link("f1", "f1-link") == 0);
	T(stat("f1", &st) == 0 && st.st_nlink == 2);
	T(stat("f1-link", &st2) == 0 && st2.st_ino == st.st_ino);
	T(link("f1", "f1-link") < 0 && errno == EEXIST);
	T(unlink("f1-link") == 0);
	T(stat("f1", &st) == 0 && st.st_nlink == 1);
	T(symlink("f1", "sym") == 0);
	n = readlink("sym", buf, sizeof(buf));
	T(n == 2 && memcmp(buf, "f1", 2) == 0);
	T(lstat("sym", &st) == 0 && S_ISLNK(st.st_mode) && st.st_size == 2);
	T(symlink("/no/such/target", "dangling") == 0);
	T(stat("dangling", &st) < 0 && errno == ENOENT);
	T(unlink("dangling") == 0);
}

static void test_dirs(void)
{
	struct dirent *de;
	DIR *d;
	int seen = 0;
	struct stat st;

	current = "dirs";
	T(mkdir("d1", 0755) == 0);
	T(mkdir("d1", 0755) < 0 && errno == EEXIST);
	T(mkdir("d1/sub", 0700) == 0);
	T(stat("d1", &st) == 0 && st.st_nlink == 3);
	T(rmdir("d1") < 0 && errno == ENOTEMPTY);
	T(rename("d1", "d2") == 0);
	T(stat("d2/sub", &st) == 0 && S_ISDIR(st.st_mode));
	T(rmdir("d2/sub") == 0);
	d = opendir(".");
	T(d != NULL);
	while (d && (de = readdir(d)))
		seen += !strcmp(de->d_name, "d2") || !strcmp(de->d_name, "f1") ||
			!strcmp(de->d_name, "sym");
	if (d)
		closedir(d);
	T(seen == 3);
	T(rmdir("d2") == 0);
	T(rmdir("f1") < 0 && errno == ENOTDIR);
	T(unlink(".") < 0);
}

static void test_rename(void)
{
	char buf[16];
	int fd, fd2;

	current = "rename";
	fd = open("a", O_RDWR | O_CREAT, 0644);
	T(fd >= 0 && write(fd, "AAA", 3) == 3);
	fd2 = open("b", O_RDWR | O_CREAT, 0644);
	T(fd2 >= 0 && write(fd2, "BBB", 3) == 3);
	close(fd2);
	T(rename("b", "a") == 0); /* over an open file */
	T(pread(fd, buf, 3, 0) == 3 && memcmp(buf, "AAA", 3) == 0);
	close(fd);
	fd = open("a", O_RDONLY);
	T(read(fd, buf, 3) == 3 && memcmp(buf, "BBB", 3) == 0);
	close(fd);
	T(access("b", F_OK) < 0 && errno == ENOENT);
	fd = open("c", O_RDWR | O_CREAT, 0644);
	close(fd);
	T(renameat2(AT_FDCWD, "a", AT_FDCWD, "c", RENAME_NOREPLACE) < 0 && errno == EEXIST);
	T(mkdir("dd", 0755) == 0);
	T(rename("a", "dd") < 0 && errno == EISDIR);
	T(rename("a", "dd/a") == 0);
	T(unlink("dd/a") == 0 && rmdir("dd") == 0 && unlink("c") == 0);
}

static void test_unlink_open(void)
{
	char buf[16];
	struct stat st;
	int fd;

	current = "unlink-open";
	fd = open("u", O_RDWR | O_CREAT, 0644);
	T(fd >= 0 && write(fd, "keep", 4) == 4);
	T(unlink("u") == 0);
	T(access("u", F_OK) < 0);
	T(pread(fd, buf, 4, 0) == 4 && memcmp(buf, "keep", 4) == 0);
	T(pwrite(fd, "more", 4, 4) == 4);
	T(fstat(fd, &st) == 0 && st.st_size == 8);
	close(fd);
}

static void test_xattr(void)
{
	char buf[64];
	ssize_t n;

	current = "xattr";
	T(setxattr("sym", "user.x", "1", 1, 0) == 0 || errno == EPERM); /* symlink: may refuse */
	T(setxattr("f1", "user.test", "value", 5, 0) == 0);
	T(getxattr("f1", "user.test", buf, sizeof(buf)) == 5 && memcmp(buf, "value", 5) == 0);
	T(getxattr("f1", "user.test", NULL, 0) == 5);
	T(setxattr("f1", "user.test", "v", 1, XATTR_CREATE) < 0 && errno == EEXIST);
	T(setxattr("f1", "user.none", "v", 1, XATTR_REPLACE) < 0 && errno == ENODATA);
	n = listxattr("f1", buf, sizeof(buf));
	T(n >= 10 && memmem(buf, (size_t)n, "user.test", 10) != NULL);
	T(removexattr("f1", "user.test") == 0);
	T(getxattr("f1", "user.test", buf, sizeof(buf)) < 0 && errno == ENODATA);
}

static void test_mmap(void)
{
	char buf[8192];
	char *p;
	int fd;

	current = "mmap";
	fd = open("m", O_RDWR | O_CREAT, 0644);
	T(fd >= 0 && ftruncate(fd, 8192) == 0);
	p = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	T(p != MAP_FAILED);
	if (p != MAP_FAILED) {
		memcpy(p + 4096, "mapped", 6);
		T(msync(p, 8192, MS_SYNC) == 0);
		T(munmap(p, 8192) == 0);
	}
	close(fd);
	fd = open("m", O_RDONLY);
	T(pread(fd, buf, 6, 4096) == 6 && memcmp(buf, "mapped", 6) == 0);
	p = mmap(NULL, 8192, PROT_READ, MAP_PRIVATE, fd, 0);
	T(p != MAP_FAILED && memcmp(p + 4096, "mapped", 6) == 0);
	if (p != MAP_FAILED)
		munmap(p, 8192);
	close(fd);
	T(unlink("m") == 0);
}

static void test_statfs(void)
{
	struct statvfs sv;

	current = "statfs";
	T(statvfs(".", &sv) == 0 && sv.f_bsize > 0 && sv.f_namemax >= 255);
}

/* Is b later than a (ctime moved)? */
static int later(const struct timespec *a, const struct timespec *b)
{
	return b->tv_sec > a->tv_sec || (b->tv_sec == a->tv_sec && b->tv_nsec > a->tv_nsec);
}

static void nap(void)
{
	struct timespec t = { 0, 20 * 1000 * 1000 };

	nanosleep(&t, NULL);
}

static void test_special_nodes(void)
{
	struct sockaddr_un sa;
	struct stat st;
	int s, c;

	current = "special nodes";
	T(mkfifo("fifo", 0640) == 0);
	T(lstat("fifo", &st) == 0 && S_ISFIFO(st.st_mode) && (st.st_mode & 07777) == 0640);
	T(mkfifo("fifo", 0640) < 0 && errno == EEXIST);
	T(mknod("sock-node", S_IFSOCK | 0600, 0) == 0);
	T(lstat("sock-node", &st) == 0 && S_ISSOCK(st.st_mode));
	/* a FIFO works: a writer and a reader through the mount */
	{
		int r = open("fifo", O_RDONLY | O_NONBLOCK), w;
		char b[4];

		w = open("fifo", O_WRONLY | O_NONBLOCK);
		T(r >= 0 && w >= 0 && write(w, "pipe", 4) == 4 && read(r, b, 4) == 4 &&
		  !memcmp(b, "pipe", 4));
		close(r);
		close(w);
	}
	/* a socket bound in the mount takes connections */
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	snprintf(sa.sun_path, sizeof(sa.sun_path), "bound");
	s = socket(AF_UNIX, SOCK_STREAM, 0);
	T(s >= 0 && bind(s, (struct sockaddr *)&sa, sizeof(sa)) == 0 && listen(s, 1) == 0);
	c = socket(AF_UNIX, SOCK_STREAM, 0);
	T(c >= 0 && connect(c, (struct sockaddr *)&sa, sizeof(sa)) == 0);
	T(lstat("bound", &st) == 0 && S_ISSOCK(st.st_mode));
	close(c);
	close(s);
	if (geteuid() == 0) {
		T(mknod("chr", S_IFCHR | 0600, makedev(1, 3)) == 0);
		T(lstat("chr", &st) == 0 && S_ISCHR(st.st_mode) && major(st.st_rdev) == 1 &&
		  minor(st.st_rdev) == 3);
		T(mknod("blk", S_IFBLK | 0600, makedev(7, 300)) == 0);
		T(lstat("blk", &st) == 0 && S_ISBLK(st.st_mode) && st.st_rdev == makedev(7, 300));
		T(unlink("chr") == 0 && unlink("blk") == 0);
	} else {
		T(mknod("chr", S_IFCHR | 0600, makedev(1, 3)) < 0 && errno == EPERM);
	}
	T(link("fifo", "fifo2") == 0);
	T(lstat("fifo", &st) == 0 && st.st_nlink == 2);
	T(rename("sock-node", "fifo2") == 0); /* a socket over a FIFO */
	T(lstat("fifo2", &st) == 0 && S_ISSOCK(st.st_mode));
	T(lstat("fifo", &st) == 0 && st.st_nlink == 1);
	T(unlink("fifo") == 0 && unlink("fifo2") == 0 && unlink("bound") == 0);
}

static void test_name_too_long(void)
{
	char longname[300], path[600], target[600];
	struct stat st;
	int fd;

	current = "ENAMETOOLONG";
	memset(longname, 'n', 256);
	longname[256] = '\0';
	fd = open("short", O_RDWR | O_CREAT, 0644);
	T(fd >= 0);
	close(fd);
	T(mkdir("dir", 0755) == 0);
#define TOOLONG(call) T((call) < 0 && errno == ENAMETOOLONG)
	TOOLONG(open(longname, O_RDWR | O_CREAT, 0644));
	TOOLONG(open(longname, O_RDONLY));
	TOOLONG(stat(longname, &st));
	TOOLONG(lstat(longname, &st));
	TOOLONG(mkdir(longname, 0755));
	TOOLONG(rmdir(longname));
	TOOLONG(unlink(longname));
	TOOLONG(chmod(longname, 0644));
	TOOLONG(chown(longname, 0, 0));
	TOOLONG(truncate(longname, 0));
	TOOLONG(mkfifo(longname, 0644));
	TOOLONG(symlink("short", longname));
	TOOLONG(link("short", longname));
	TOOLONG(rename("short", longname));
	TOOLONG(rename(longname, "short"));
	TOOLONG(access(longname, F_OK));
	TOOLONG(utimensat(AT_FDCWD, longname, NULL, 0));
	TOOLONG(setxattr(longname, "user.x", "1", 1, 0));
	snprintf(path, sizeof(path), "dir/%s/x", longname);
	TOOLONG(stat(path, &st));
	TOOLONG(mkdir(path, 0755));
	/* through a symlink whose target has such a component */
	snprintf(target, sizeof(target), "dir/%s", longname);
	T(symlink(target, "to-long") == 0);
	TOOLONG(stat("to-long", &st));
	TOOLONG(open("to-long", O_RDWR | O_CREAT, 0644));
#undef TOOLONG
	/* 255 bytes is fine */
	longname[255] = '\0';
	fd = open(longname, O_RDWR | O_CREAT, 0644);
	T(fd >= 0);
	close(fd);
	T(unlink(longname) == 0);
	T(unlink("to-long") == 0 && rmdir("dir") == 0 && unlink("short") == 0);
}

static void test_atime_ctime(void)
{
	struct timespec ts[2];
	struct stat st, st2;
	int fd;

	current = "atime/ctime";
	fd = open("t", O_RDWR | O_CREAT, 0644);
	T(fd >= 0);
	close(fd);
	/* touch -m then touch -a: both stay */
	ts[0].tv_nsec = UTIME_OMIT;
	ts[1].tv_sec = 1950000000;
	ts[1].tv_nsec = 5;
	T(utimensat(AT_FDCWD, "t", ts, 0) == 0);
	ts[0].tv_sec = 1900000000;
	ts[0].tv_nsec = 7;
	ts[1].tv_nsec = UTIME_OMIT;
	T(utimensat(AT_FDCWD, "t", ts, 0) == 0);
	T(stat("t", &st) == 0 && st.st_atim.tv_sec == 1900000000 && st.st_atim.tv_nsec == 7 &&
	  st.st_mtim.tv_sec == 1950000000 && st.st_mtim.tv_nsec == 5);
	/* ctime moves on every metadata change */
#define CTIME_MOVES(call)                                                                          \
	do {                                                                                       \
		T(stat("t", &st) == 0);                                                            \
		nap();                                                                             \
		T((call) == 0);                                                                    \
		T(stat("t", &st2) == 0 && later(&st.st_ctim, &st2.st_ctim));                       \
	} while (0)
	CTIME_MOVES(chmod("t", 0600));
	CTIME_MOVES(chown("t", geteuid(), getegid()));
	CTIME_MOVES(utimensat(AT_FDCWD, "t", NULL, 0));
	CTIME_MOVES(link("t", "t2"));
	CTIME_MOVES(unlink("t2"));
	CTIME_MOVES(truncate("t", 10));
	CTIME_MOVES(setxattr("t", "user.c", "1", 1, 0));
	CTIME_MOVES(removexattr("t", "user.c"));
	CTIME_MOVES(rename("t", "t3") == 0 && rename("t3", "t") ? -1 : 0);
#undef CTIME_MOVES
	T(unlink("t") == 0);
}

static void test_rename_kinds(void)
{
	struct stat st;
	int fd;

	current = "rename over every kind";
	fd = open("file", O_RDWR | O_CREAT, 0644);
	close(fd);
	fd = open("file2", O_RDWR | O_CREAT, 0644);
	close(fd);
	T(mkdir("edir", 0755) == 0 && mkdir("edir2", 0755) == 0);
	T(mkdir("full", 0755) == 0 && mkdir("full/x", 0755) == 0);
	T(symlink("file", "sl") == 0 && mkfifo("ff", 0644) == 0);
	T(rename("file", "edir") < 0 && errno == EISDIR);
	T(rename("edir", "file") < 0 && errno == ENOTDIR);
	T(rename("edir", "full") < 0 && (errno == ENOTEMPTY || errno == EEXIST));
	T(rename("edir", "edir2") == 0); /* over an empty directory */
	T(stat("edir", &st) < 0 && errno == ENOENT && stat("edir2", &st) == 0);
	T(rename("edir2", "nodir/in") < 0 && errno == ENOENT);
	T(rename("full", "full/x/sub") < 0 && errno == EINVAL); /* into itself */
	T(rename("sl", "file2") == 0 && lstat("file2", &st) == 0 && S_ISLNK(st.st_mode));
	T(rename("ff", "file") == 0 && lstat("file", &st) == 0 && S_ISFIFO(st.st_mode));
	T(rename("file", "file") == 0);
	T(renameat2(AT_FDCWD, "file", AT_FDCWD, "file2", RENAME_EXCHANGE) == 0 ||
	  errno == EINVAL); /* an exchange, where the filesystem has it */
	T(unlink("file") == 0 && unlink("file2") == 0);
	T(rmdir("edir2") == 0 && rmdir("full/x") == 0 && rmdir("full") == 0);
}

static void test_sticky_setid(void)
{
	struct stat st;
	int fd;

	current = "sticky/set-id";
	T(mkdir("sticky", 01777) == 0);
	T(chmod("sticky", 01777) == 0);
	T(stat("sticky", &st) == 0 && (st.st_mode & 07777) == 01777);
	fd = open("sticky/mine", O_RDWR | O_CREAT, 04755);
	T(fd >= 0);
	T(fchmod(fd, 06755) == 0);
	T(fstat(fd, &st) == 0 && (st.st_mode & 06000) == 06000);
	/* a write by the owner drops set-uid, as the kernel does */
	T(write(fd, "x", 1) == 1);
	close(fd);
	T(stat("sticky/mine", &st) == 0 && (geteuid() == 0 || !(st.st_mode & S_ISUID)));
	T(unlink("sticky/mine") == 0 && rmdir("sticky") == 0);
}

int main(int argc, char **argv)
{
	if (argc != 2 || chdir(argv[1]) < 0) {
		fprintf(stderr, "usage: syscalls DIR\n");
		return 2;
	}
	umask(022);
	test_create_write_read();
	test_truncate_append();
	test_times_modes();
	test_links();
	test_dirs();
	test_rename();
	test_unlink_open();
	test_xattr();
	test_mmap();
	test_statfs();
	test_special_nodes();
	test_name_too_long();
	test_atime_ctime();
	test_rename_kinds();
	test_sticky_setid();
	printf("syscalls: %d passed, %d failed\n", passed, failed);
	return failed ? 1 : 0;
}
