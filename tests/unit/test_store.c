/*
 * Store: objects land whole (linked in from O_TMPFILE, or renamed from
 * tmp/), twice is harmless, and they are indexed; locations round-trip;
 * gc trims least recently used first; a second handle (another process's
 * view) sees the first one's writes through the WAL index.
 */
#include "../../store/store.h"
#include "check.h"

#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* entries in dir other than . and .. */
static int count_entries(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	int n = 0;

	if (!d)
		return -1;
	while ((de = readdir(d)))
		n += strcmp(de->d_name, ".") && strcmp(de->d_name, "..");
	closedir(d);
	return n;
}

int main(void)
{
	char dir[] = "/tmp/stashfs-test-store-XXXXXX";
	struct store *s = NULL, *s2 = NULL;
	struct cas_id id[5];
	struct store_loc loc, got;
	uint64_t files, bytes, total, n;
	char path[4096], cmd[4200];
	struct buf b = BUF_INIT;
	int i;

	CHECK(mkdtemp(dir) != NULL);
	CHECK_EQ(store_open(dir, &s), 0);
	CHECK_EQ(store_open(dir, &s2), 0);
	for (i = 0; i < 5; i++) {
		char data[1000];

		memset(data, 'a' + i, sizeof(data));
		cas_hash(data, sizeof(data), &id[i]);
		CHECK_EQ(store_object_has(s, &id[i]), 0);
		CHECK_EQ(store_object_put(s, &id[i], data, sizeof(data)), 0);
		CHECK_EQ(store_object_has(s2, &id[i]), 1);
	}
	store_object_path(s, &id[2], path, sizeof(path));
	CHECK_EQ(read_file(path, &b, 4096), 0);
	CHECK_EQ(b.len, 1000);
	CHECK_EQ(b.p[0], 'c');
	{
		/* the same object again (another fetcher got it first): fine, unchanged */
		char data[1000];
		struct stat st;

		memset(data, 'c', sizeof(data));
		CHECK_EQ(store_object_put(s, &id[2], data, sizeof(data)), 0);
		CHECK_EQ(stat(path, &st), 0);
		CHECK_EQ(st.st_size, 1000);
		CHECK_EQ(st.st_mode & 0777, 0600);
		CHECK_EQ(st.st_nlink, 1);
		/* no temporary file left behind */
		CHECK_EQ(count_entries(store_tmpdir(s)), 0);
	}
	CHECK_EQ(store_object_bytes(s2, &total, &n), 0);
	CHECK_EQ(total, 5000);
	CHECK_EQ(n, 5);

	memset(&loc, 0, sizeof(loc));
	loc.pack = id[4];
	loc.off = 123456789012ULL;
	loc.stored_len = 77;
	loc.raw_len = 99;
	loc.flags = 1;
	CHECK_EQ(store_loc_begin(s), 0);
	CHECK_EQ(store_loc_put(s, "file:///r", &id[0], &loc), 0);
	CHECK_EQ(store_loc_commit(s), 0);
	CHECK_EQ(store_loc_get(s2, "file:///r", &id[0], &got), 0);
	CHECK(memcmp(&got.pack, &loc.pack, sizeof(loc.pack)) == 0);
	CHECK_EQ(got.off, loc.off);
	CHECK_EQ(got.stored_len, 77);
	CHECK_EQ(got.raw_len, 99);
	CHECK_EQ(got.flags, 1);
	CHECK_EQ(store_loc_get(s2, "file:///other", &id[0], &got), -ENOENT);
	CHECK_EQ(store_loc_forget_pack(s, "file:///r", &id[4]), 0);
	CHECK_EQ(store_loc_get(s2, "file:///r", &id[0], &got), -ENOENT);

	/* gc to 2500 bytes removes 3 objects, the least recently used */
	CHECK_EQ(store_gc(s, 2500, &files, &bytes), 0);
	CHECK_EQ(files, 3);
	CHECK_EQ(bytes, 3000);
	CHECK_EQ(store_object_bytes(s, &total, &n), 0);
	CHECK_EQ(total, 2000);
	n = 0;
	for (i = 0; i < 5; i++)
		n += (uint64_t)store_object_has(s, &id[i]);
	CHECK_EQ(n, 2);

	store_close(s);
	store_close(s2);
	store_close(NULL);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	CHECK_EQ(system(cmd), 0);
	buf_free(&b);
	return check_done("test_store");
}
