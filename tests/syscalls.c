/*
 * A syscall exerciser run inside a mount (after libfuse's
 * test/test_syscalls.c): every call a build makes, with its result
 * checked.  usage: syscalls DIR  (DIR must be empty and writable)
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
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
	printf("syscalls: %d passed, %d failed\n", passed, failed);
	return failed ? 1 : 0;
}
