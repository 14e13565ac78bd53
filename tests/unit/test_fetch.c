/*
 * Fetch planning below FUSE (fs/fetch.c): a tree saved with one thread
 * (packs in entry order) to a real file:// remote, read through a fetcher
 * on an empty store.  The remote's get is wrapped to note every range
 * asked for and to inject faults (a failed GET, bytes changed on the
 * way): a miss of a small file brings its directory's files after it in
 * the pack in one GET and nothing of the next directory; what a batch
 * brought is served without a GET; a large file's chunk comes alone; a
 * failed fetch answers its repeats without a GET for a while and costs
 * nothing else; bytes that do not match their hash are never served.
 */
#define _GNU_SOURCE
#include "../../fs/fetch.h"
#include "../../fs/mount.h"
#include "../../store/snapshot.h"
#include "check.h"

#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SMALL 20000
#define BIG (3u << 20)

/* What the wrapped remote saw and what it is told to do to the next GET. */
static struct {
	const struct remote_ops *real;
	int gets;
	uint64_t off, len; /* the last GET's range */
	enum { PASS, FAIL, FLIP } next;
} wire;

static int noted_get(struct remote *r, const char *name, uint64_t off, uint64_t len,
		     struct buf *out, size_t cap, const struct remote_progress *pr)
{
	size_t had = out->len;
	int rc;

	wire.gets++;
	wire.off = off;
	wire.len = len;
	if (wire.next == FAIL) {
		wire.next = PASS;
		return -EIO;
	}
	if (wire.next == FLIP) {
		/* the first chunk's bytes arrive changed (all at the end, as file:// gives them) */
		wire.next = PASS;
		rc = wire.real->get(r, name, off, len, out, cap, NULL);
		if (rc == 0 && out->len > had + 10)
			out->p[had + 10] ^= 0x40;
		return rc;
	}
	return wire.real->get(r, name, off, len, out, cap, pr);
}

static void write_file(const char *path, size_t n, unsigned long long seed)
{
	unsigned char *p = malloc(n);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);

	CHECK(p != NULL && fd >= 0);
	if (p && fd >= 0) {
		fill_random(p, n, seed);
		CHECK_EQ(write(fd, p, n), (long long)n);
	}
	if (fd >= 0)
		close(fd);
	free(p);
}

/* src/{big, d0/f0..f9, d1/f0..f9, d2/f0..f9}: seeds 1, then 100*(d+1) + i. */
static void make_tree(const char *src)
{
	char path[PATH_MAX];
	int d, i;

	CHECK_EQ(mkdir(src, 0755), 0);
	snprintf(path, sizeof(path), "%s/big", src);
	write_file(path, BIG, 1);
	for (d = 0; d < 3; d++) {
		snprintf(path, sizeof(path), "%s/d%d", src, d);
		CHECK_EQ(mkdir(path, 0755), 0);
		for (i = 0; i < 10; i++) {
			snprintf(path, sizeof(path), "%s/d%d/f%d", src, d, i);
			write_file(path, SMALL, 100ull * (d + 1) + i);
		}
	}
}

static uint32_t lookup(struct catalog *cat, const char *dir, const char *name)
{
	uint32_t d = 0, idx = UINT32_MAX;

	if (dir)
		CHECK_EQ(catalog_lookup(cat, 0, dir, strlen(dir), &d), 0);
	CHECK_EQ(catalog_lookup(cat, d, name, strlen(name), &idx), 0);
	return idx;
}

static const struct cat_chunk *first_chunk(struct catalog *cat, uint32_t idx)
{
	return catalog_chunk(cat, catalog_refs(cat, catalog_entry(cat, idx))->chunk);
}

/* Read d<d>/f<i> whole through the fetcher: its bytes are the file's, or -errno. */
static int read_small(struct fetcher *f, struct catalog *cat, int d, int i)
{
	char dir[8], name[8];
	unsigned char want[SMALL], got[SMALL];
	ssize_t n;

	snprintf(dir, sizeof(dir), "d%d", d);
	snprintf(name, sizeof(name), "f%d", i);
	n = fetch_read(f, lookup(cat, dir, name), 0, got, SMALL);
	if (n < 0)
		return (int)n;
	fill_random(want, SMALL, 100ull * (d + 1) + i);
	CHECK_EQ(n, SMALL);
	CHECK(memcmp(got, want, SMALL) == 0);
	return 0;
}

/* The range of a GET from chunk a's start to chunk b's end. */
static void check_range(struct catalog *cat, uint32_t a, uint32_t b)
{
	const struct cat_chunk *x = first_chunk(cat, a), *y = first_chunk(cat, b);

	CHECK_EQ(wire.off, x->pack_off);
	CHECK_EQ(wire.len, y->pack_off + y->stored_len - x->pack_off);
}

int main(void)
{
	char dir[] = "/tmp/stashfs-test-fetch-XXXXXX";
	char src[PATH_MAX], url[PATH_MAX + 16], wstore[PATH_MAX], rstore[PATH_MAX], cmd[PATH_MAX];
	struct repo w, r;
	struct repo_spec ws = { 0 }, rs = { 0 };
	struct save_opts so = { 0 };
	struct snap_stats st;
	struct key_rec rec;
	struct catalog *cat = NULL;
	struct fetcher *f = NULL;
	struct mount_stats stats;
	struct remote_ops ops;
	unsigned char *big = malloc(BIG), *got = malloc(1 << 16);
	int gets;

	CHECK(mkdtemp(dir) != NULL && big && got);
	snprintf(src, sizeof(src), "%s/src", dir);
	snprintf(url, sizeof(url), "file://%s/remote", dir);
	snprintf(wstore, sizeof(wstore), "%s/writer", dir);
	snprintf(rstore, sizeof(rstore), "%s/reader", dir);
	make_tree(src);

	/* the writer saves with one thread: big, then d0, d1, d2 in order */
	ws.store_path = wstore;
	ws.remote = url;
	CHECK_EQ(repo_open(&w, &ws), 0);
	so.dir = src;
	so.key = "k";
	so.threads = 1;
	so.level = 3;
	memset(&st, 0, sizeof(st));
	CHECK_EQ(snapshot_save(&w, &so, &st), 0);
	CHECK_EQ(keys_get(w.primary, "k", &rec), 0);
	repo_close(&w);

	/* the reader: an empty store, the remote's gets noted */
	rs.store_path = rstore;
	rs.remote = url;
	CHECK_EQ(repo_open(&r, &rs), 0);
	CHECK_EQ(repo_catalog(&r, &rec.catalog, &cat), 0);
	if (!cat)
		return check_done("fetch");
	wire.real = r.primary->ops;
	ops = *wire.real;
	ops.get = noted_get;
	r.primary->ops = &ops;
	memset(&stats, 0, sizeof(stats));
	CHECK_EQ(fetcher_new(&r, cat, NULL, &stats, &f), 0);
	if (!f)
		return check_done("fetch");

	/* a miss brings d0's files from f3 on, in one GET, and nothing of d1 */
	CHECK_EQ(read_small(f, cat, 0, 3), 0);
	CHECK_EQ(wire.gets, 1);
	check_range(cat, lookup(cat, "d0", "f3"), lookup(cat, "d0", "f9"));
	/* what it brought costs no GET */
	CHECK_EQ(read_small(f, cat, 0, 5), 0);
	CHECK_EQ(read_small(f, cat, 0, 9), 0);
	CHECK_EQ(wire.gets, 1);
	/* f1 before it: f1 and f2, the cached ones after them not asked again */
	CHECK_EQ(read_small(f, cat, 0, 1), 0);
	CHECK_EQ(wire.gets, 2);
	check_range(cat, lookup(cat, "d0", "f1"), lookup(cat, "d0", "f2"));

	/* a large file's chunk comes alone, exactly its bytes */
	{
		uint32_t b = lookup(cat, NULL, "big");
		const struct cat_chunk *c0 = first_chunk(cat, b);

		CHECK(catalog_entry(cat, b)->count >= 2);
		CHECK_EQ(fetch_read(f, b, 0, got, 1 << 16), 1 << 16);
		fill_random(big, BIG, 1);
		CHECK(memcmp(got, big, 1 << 16) == 0);
		CHECK_EQ(wire.gets, 3);
		CHECK_EQ(wire.off, c0->pack_off);
		CHECK_EQ(wire.len, c0->stored_len);
	}

	/* a failed GET: EIO for that read; its repeat answered without a GET */
	wire.next = FAIL;
	CHECK_EQ(read_small(f, cat, 1, 4), -EIO);
	gets = wire.gets;
	CHECK_EQ(read_small(f, cat, 1, 4), -EIO);
	CHECK_EQ(wire.gets, gets);
	/* and nothing else is spoiled: another file of d1 comes as usual */
	CHECK_EQ(read_small(f, cat, 1, 6), 0);
	CHECK_EQ(wire.gets, gets + 1);
	CHECK_EQ(read_small(f, cat, 0, 7), 0); /* cached before the fault */
	CHECK_EQ(wire.gets, gets + 1);

	/* bytes changed on the way are refused, never served nor cached */
	wire.next = FLIP;
	CHECK_EQ(read_small(f, cat, 2, 0), -EIO);
	CHECK_EQ(stats.fetch_errors, 2);
	{
		char path[PATH_MAX];

		store_object_path(r.store, &first_chunk(cat, lookup(cat, "d2", "f0"))->id, path,
				  sizeof(path));
		CHECK(access(path, F_OK) != 0);
	}
	/* the rest of its directory is right, fetched again or not */
	CHECK_EQ(read_small(f, cat, 2, 8), 0);

	fetcher_close_logs(f);
	fetcher_free(f);
	catalog_close(cat);
	repo_close(&r);
	free(big);
	free(got);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	CHECK_EQ(system(cmd), 0);
	return check_done("fetch");
}
