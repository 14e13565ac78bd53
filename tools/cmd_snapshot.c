/* stashfs save, restore, ls, key and gc. */
#define _GNU_SOURCE
#include "cli.h"
#include "../store/sources.h"
#include "progress.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum {
	OPT_KEY = OPT_CMD_BASE,
	OPT_RESTORE_KEY,
	OPT_FORCE,
	OPT_THREADS,
	OPT_LEVEL,
	OPT_FAIL_ON_MISS,
	OPT_PRESERVE_OWNER,
	OPT_PREFIX,
	OPT_MAX_SIZE,
	OPT_SOURCES
};

int cli_sources(struct repo *r, const char *src, const char *dir, struct cas_id *id,
		uint64_t *uploaded)
{
	char skip[4096];
	struct buf raw = BUF_INIT;
	uint64_t n = 0;
	int rc;

	if (!realpath(dir, skip))
		skip[0] = '\0';
	rc = sources_build(src, *skip ? skip : NULL, &raw, &n);
	if (!rc)
		rc = sources_put(r, &raw, id, uploaded);
	if (!rc)
		log_info("sources: recorded %" PRIu64 " files of '%s'", n, qpath(src));
	buf_free(&raw);
	return rc;
}

static void print_summary_json(const char *cmd, const char *key, enum hit_kind hit,
			       const char *hit_key, const struct snap_stats *st, double secs)
{
	char hex[CAS_HEX_LEN + 1];

	cas_id_hex(&st->catalog, hex);
	printf("{\"command\":\"%s\",\"key\":", cmd);
	json_str(stdout, key);
	if (!strcmp(cmd, "restore")) {
		printf(",\"hit\":\"%s\",\"matched_key\":", hit_kind_name(hit));
		if (hit_key)
			json_str(stdout, hit_key);
		else
			printf("null");
	}
	printf(",\"snapshot\":\"%s\",\"files\":%" PRIu64 ",\"dirs\":%" PRIu64
	       ",\"symlinks\":%" PRIu64 ",\"hardlinks\":%" PRIu64 ",\"bytes\":%" PRIu64
	       ",\"chunks\":%" PRIu64 ",\"chunks_new\":%" PRIu64 ",\"bytes_new\":%" PRIu64
	       ",\"bytes_uploaded\":%" PRIu64 ",\"packs_uploaded\":%" PRIu64
	       ",\"bytes_fetched\":%" PRIu64 ",\"skipped\":%" PRIu64 ",\"specials\":%" PRIu64
	       ",\"xattrs\":%" PRIu64 ",\"xattrs_dropped\":%" PRIu64 ",\"seconds\":%.3f}\n",
	       hit == HIT_MISS && !strcmp(cmd, "restore") ? "" : hex, st->files, st->dirs,
	       st->symlinks, st->hardlinks, st->bytes, st->chunks, st->chunks_new, st->bytes_new,
	       st->bytes_uploaded, st->packs_uploaded, st->bytes_fetched, st->skipped, st->specials,
	       st->xattrs, st->xattrs_dropped, secs);
}

void snap_warn_dropped(const char *cmd, const struct snap_stats *st)
{
	int restore = !strcmp(cmd, "restore");

	if (st->xattrs_dropped && restore)
		log_warn("restore: %" PRIu64 " xattrs not set (trusted.* and security.* need "
			 "privilege; symlinks and special files get none)",
			 st->xattrs_dropped);
	else if (st->xattrs_dropped)
		log_warn("%s: %" PRIu64 " xattrs not kept (a snapshot keeps user.*, trusted.* and "
			 "security.* but SELinux labels; not ACLs)",
			 cmd, st->xattrs_dropped);
	if (st->skipped && restore)
		log_warn("restore: %" PRIu64 " device nodes not made (that takes root and "
			 "--preserve-owner: a device's owner and mode are its access)",
			 st->skipped);
	else if (st->skipped)
		log_warn("%s: %" PRIu64 " entries of an unknown type not kept", cmd, st->skipped);
}

static const char save_help[] =
	"usage: stashfs save DIR --key KEY [OPTIONS]\n\n"
	"Snapshot the real directory DIR and publish it as KEY.  Only content the\n"
	"remote does not hold yet is uploaded.\n\n"
	"  --key KEY            name to publish (printable ASCII, up to 512 bytes)\n"
	"  --threads N          hashing/compression threads (default: one per core)\n"
	"  --level N            zstd level for uploads (default 1)\n"
	"  --sources SRC        also record the contents and mtimes of the source\n"
	"                       tree SRC, for 'stashfs touch-sources'\n" COMMON_HELP;

int cmd_save(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "key", required_argument, NULL, OPT_KEY },
		{ "threads", required_argument, NULL, OPT_THREADS },
		{ "level", required_argument, NULL, OPT_LEVEL },
		{ "sources", required_argument, NULL, OPT_SOURCES },
		COMMON_LONGOPTS,
		{ NULL, 0, NULL, 0 }
	};
	struct save_opts so = { NULL, NULL, 0, 1, 0, NULL, NULL };
	const char *sources = NULL;
	struct cas_id sid;
	uint64_t src_up = 0;
	struct snap_stats st;
	struct common c;
	struct repo r;
	struct stat sb;
	double t0 = mono_sec(), secs;
	long v;
	int opt, rc;

	common_init(&c);
	while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		int h = common_opt(&c, opt, optarg);

		if (h < 0)
			return usage_error("save", "%s", c.err);
		if (h)
			continue;
		switch (opt) {
		case OPT_KEY: so.key = optarg; break;
		case OPT_THREADS:
			if (parse_int(optarg, 1, THREADS_MAX, &v))
				return usage_error("save", "--threads wants 1 to %d, not '%.40s'",
						   THREADS_MAX, optarg);
			so.threads = (int)v;
			break;
		case OPT_LEVEL:
			if (parse_int(optarg, 1, 19, &v))
				return usage_error("save", "--level wants 1 to 19, not '%.40s'",
						   optarg);
			so.level = (int)v;
			break;
		case OPT_SOURCES: sources = optarg; break;
		case OPT_HELP: fputs(save_help, stdout); return 0;
		default: return bad_option("save", argv);
		}
	}
	if (optind + 1 != argc)
		return usage_error("save", "expected one DIR");
	if (!so.key)
		return usage_error("save", "--key is required");
	if (key_valid(so.key))
		return usage_error("save", "key must be 1-512 printable ASCII characters");
	so.dir = argv[optind];
	if (!*so.dir)
		return usage_error("save", "DIR is empty");
	if (stat(so.dir, &sb) < 0) {
		log_err("save: '%s': %s", qpath(so.dir), strerror(errno));
		return 1;
	}
	if (!S_ISDIR(sb.st_mode)) {
		log_err("save: '%s' is not a directory", qpath(so.dir));
		return 1;
	}
	rc = common_open_repo(&c, &r);
	if (rc) {
		common_free(&c);
		return 1;
	}
	if (sources) {
		rc = cli_sources(&r, sources, so.dir, &sid, &src_up);
		if (rc) {
			repo_close(&r);
			common_free(&c);
			return 1;
		}
		so.sources = &sid;
	}
	{
		struct snap_progress prog;
		struct progress_ui *ui;

		memset(&prog, 0, sizeof(prog));
		so.progress = &prog;
		ui = progress_start("save", &prog);
		rc = snapshot_save(&r, &so, &st);
		progress_stop(ui);
	}
	st.bytes_uploaded += src_up;
	secs = mono_sec() - t0;
	if (!rc) {
		char total[32], up[32];

		fmt_size(total, sizeof(total), st.bytes);
		fmt_size(up, sizeof(up), st.bytes_uploaded);
		log_info("save: key '%s': %" PRIu64 " files, %" PRIu64 " dirs, %s; %" PRIu64
			 " new of %" PRIu64 " chunks, uploaded %s in %" PRIu64
			 " packs; %.2f s (%.0f MB/s)",
			 so.key, st.files, st.dirs, total, st.chunks_new, st.chunks, up,
			 st.packs_uploaded, secs, secs > 0 ? st.bytes / secs / 1e6 : 0.0);
		snap_warn_dropped("save", &st);
		if (c.json)
			print_summary_json("save", so.key, HIT_EXACT, NULL, &st, secs);
	}
	common_auto_gc(&c, &r);
	repo_close(&r);
	common_free(&c);
	return rc ? 1 : 0;
}

static const char restore_help[] =
	"usage: stashfs restore DIR --key KEY [--restore-key PREFIX]... [OPTIONS]\n\n"
	"Materialize a snapshot into the real directory DIR (created if missing).\n"
	"Tries KEY exactly, then each PREFIX in order (the newest key starting\n"
	"with it).  A miss is not an error unless --fail-on-miss.\n\n"
	"  --key KEY            the key to restore\n"
	"  --restore-key PREFIX fallback prefix, repeatable, tried in order\n"
	"  --force              restore into a non-empty DIR (replacing entries)\n"
	"  --fail-on-miss       exit 1 when no key matched\n"
	"  --preserve-owner     restore recorded owners (needs root)\n"
	"  --threads N          parallel fetches (default 4)\n" COMMON_HELP;

struct restore_args {
	const char *key;
	char *restore_keys[64];
	int n_restore, force, fail_on_miss;
	struct restore_opts ro;
};

/* restore's command line into a: -1 to go on, or the exit code (help, usage). */
static int restore_parse(int argc, char **argv, struct common *c, struct restore_args *a)
{
	static const struct option longopts[] = {
		{ "key", required_argument, NULL, OPT_KEY },
		{ "restore-key", required_argument, NULL, OPT_RESTORE_KEY },
		{ "force", no_argument, NULL, OPT_FORCE },
		{ "fail-on-miss", no_argument, NULL, OPT_FAIL_ON_MISS },
		{ "preserve-owner", no_argument, NULL, OPT_PRESERVE_OWNER },
		{ "threads", required_argument, NULL, OPT_THREADS },
		COMMON_LONGOPTS,
		{ NULL, 0, NULL, 0 }
	};
	int opt;
	long v;

	while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		int h = common_opt(c, opt, optarg);

		if (h < 0)
			return usage_error("restore", "%s", c->err);
		if (h)
			continue;
		switch (opt) {
		case OPT_KEY: a->key = optarg; break;
		case OPT_RESTORE_KEY:
			if (a->n_restore == (int)ARRAY_SIZE(a->restore_keys))
				return usage_error("restore", "too many --restore-key");
			if (key_valid(optarg))
				return usage_error(
					"restore",
					"restore key must be printable ASCII, 1-512 bytes");
			a->restore_keys[a->n_restore++] = optarg;
			break;
		case OPT_FORCE: a->force = 1; break;
		case OPT_FAIL_ON_MISS: a->fail_on_miss = 1; break;
		case OPT_PRESERVE_OWNER: a->ro.preserve_owner = 1; break;
		case OPT_THREADS:
			if (parse_int(optarg, 1, THREADS_MAX, &v))
				return usage_error("restore",
						   "--threads wants 1 to %d, not '%.40s'",
						   THREADS_MAX, optarg);
			a->ro.threads = (int)v;
			break;
		case OPT_HELP: fputs(restore_help, stdout); return 0;
		default: return bad_option("restore", argv);
		}
	}
	if (optind + 1 != argc)
		return usage_error("restore", "expected one DIR");
	if (!a->key)
		return usage_error("restore", "--key is required");
	if (key_valid(a->key))
		return usage_error("restore", "key must be 1-512 printable ASCII characters");
	a->ro.dir = argv[optind];
	if (!*a->ro.dir)
		return usage_error("restore", "DIR is empty");
	return -1;
}

/* The snapshot into a->ro.dir, with its progress shown; 0 or -errno (said). */
static int restore_into(struct repo *r, struct catalog *cat, struct restore_args *a,
			struct snap_stats *st)
{
	struct snap_progress prog;
	struct progress_ui *ui;
	int rc = mkdir_p(a->ro.dir, 0755);

	if (rc) {
		log_err("restore: cannot create '%s': %s", qpath(a->ro.dir), strerror(-rc));
		return rc;
	}
	memset(&prog, 0, sizeof(prog));
	a->ro.progress = &prog;
	ui = progress_start("restore", &prog);
	rc = snapshot_restore(r, cat, &a->ro, st);
	progress_stop(ui);
	a->ro.progress = NULL;
	return rc;
}

static void restore_said(enum hit_kind hit, const struct key_rec *rec, const struct snap_stats *st,
			 double secs)
{
	char total[32], got[32];

	fmt_size(total, sizeof(total), st->bytes);
	fmt_size(got, sizeof(got), st->bytes_fetched);
	log_info("restore: %s hit '%s': %" PRIu64 " files, %" PRIu64
		 " dirs, %s; fetched %s; %.2f s",
		 hit_kind_name(hit), rec->key, st->files, st->dirs, total, got, secs);
	if (st->setid_dropped)
		log_info("restore: set-id bits dropped from %" PRIu64
			 " files whose recorded owner is not theirs now "
			 "(--preserve-owner keeps both)",
			 st->setid_dropped);
	snap_warn_dropped("restore", st);
}

int cmd_restore(int argc, char **argv)
{
	struct restore_args a;
	int rc, ret = 1;
	struct key_rec rec;
	struct used_mark mark = { 0 };
	struct snap_stats st;
	struct catalog *cat = NULL;
	enum hit_kind hit = HIT_MISS;
	struct common c;
	struct repo r;
	double t0 = mono_sec(), secs;

	common_init(&c);
	memset(&st, 0, sizeof(st));
	memset(&a, 0, sizeof(a));
	rc = restore_parse(argc, argv, &c, &a);
	if (rc >= 0)
		return rc;
	rc = dir_is_empty_at(AT_FDCWD, a.ro.dir);
	if (rc < 0) {
		log_err("restore: cannot read '%s': %s", qpath(a.ro.dir), strerror(-rc));
		return 1;
	}
	if (rc == 0 && !a.force) {
		log_err("restore: '%s' is not empty; use --force to restore into it",
			qpath(a.ro.dir));
		return 1;
	}
	if (common_open_repo(&c, &r)) {
		common_free(&c);
		return 1;
	}
	rc = keys_resolve(&r, a.key, a.restore_keys, a.n_restore, &rec, &hit);
	if (rc) {
		log_err("restore: looking up key '%s': %s", a.key, strerror(-rc));
		goto out;
	}
	if (hit == HIT_MISS) {
		secs = mono_sec() - t0;
		log_info("restore: miss for key '%s'%s; nothing restored (%.2f s)", a.key,
			 a.n_restore ? " and its restore keys" : "", secs);
		if (c.json)
			print_summary_json("restore", a.key, hit, NULL, &st, secs);
		ret = a.fail_on_miss ? 1 : 0;
		goto out;
	}
	keys_mark_used_begin(&r, &rec, &mark); /* on its way while the snapshot comes */
	rc = repo_catalog(&r, &rec.catalog, &cat);
	if (rc || restore_into(&r, cat, &a, &st))
		goto out;
	st.catalog = rec.catalog;
	secs = mono_sec() - t0;
	restore_said(hit, &rec, &st, secs);
	if (c.json)
		print_summary_json("restore", a.key, hit, rec.key, &st, secs);
	ret = 0;
out:
	keys_mark_used_end(&mark);
	catalog_close(cat);
	common_auto_gc(&c, &r);
	repo_close(&r);
	common_free(&c);
	return ret;
}

static const char ls_help[] =
	"usage: stashfs ls [PREFIX] [OPTIONS]\n\n"
	"Keys starting with PREFIX (all keys without one), newest first, with\n"
	"their size, file count, age and last use (a restore or mount; shown\n"
	"where the remote can be listed).\n\n" COMMON_HELP;

/* A key's last use: its mark, or its publish when that is later; -1:
 * unknown (no marks could be listed). */
static int64_t last_use(const struct key_rec *k, const struct key_used *used, size_t nused)
{
	int64_t at = keys_used_at(used, nused, k->key), pub = k->time_ns / 1000000000LL;

	if (!used)
		return -1;
	return at > pub ? at : pub;
}

int cmd_ls(int argc, char **argv)
{
	struct key_used *used = NULL;
	size_t nused = 0;
	static const struct option longopts[] = { COMMON_LONGOPTS, { NULL, 0, NULL, 0 } };
	const char *prefix = "";
	struct key_rec *v = NULL;
	struct common c;
	struct repo r;
	size_t n = 0, i;
	int opt, rc;
	int64_t now = now_ns();

	common_init(&c);
	while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		int h = common_opt(&c, opt, optarg);

		if (h < 0)
			return usage_error("ls", "%s", c.err);
		if (h)
			continue;
		if (opt == OPT_HELP) {
			fputs(ls_help, stdout);
			return 0;
		}
		return bad_option("ls", argv);
	}
	if (optind + 1 < argc)
		return usage_error("ls", "at most one PREFIX");
	if (optind < argc)
		prefix = argv[optind];
	if (common_open_repo(&c, &r)) {
		common_free(&c);
		return 1;
	}
	rc = keys_list(&r, prefix, &v, &n);
	if (rc) {
		log_err("ls: cannot list keys: %s", strerror(-rc));
		goto out;
	}
	if (n) {
		/* last uses, where the primary can list them (a plain HTTP
		 * server without autoindex cannot: ls shows none then) */
		log_muted = 1;
		if (keys_used_list(r.primary, &used, &nused))
			nused = 0;
		else if (!used) /* listed: no marks at all */
			used = calloc(1, sizeof(*used));
		log_muted = 0;
	}
	if (c.json) {
		printf("[");
		for (i = 0; i < n; i++) {
			char hex[CAS_HEX_LEN + 1];

			cas_id_hex(&v[i].catalog, hex);
			printf("%s{\"key\":", i ? "," : "");
			json_str(stdout, v[i].key);
			printf(",\"snapshot\":\"%s\",\"bytes\":%" PRIu64 ",\"files\":%" PRIu64
			       ",\"published_ns\":%" PRId64 ",\"age_seconds\":%.0f",
			       hex, v[i].bytes, v[i].files, v[i].time_ns,
			       (double)(now - v[i].time_ns) / 1e9);
			if (last_use(&v[i], used, nused) >= 0)
				printf(",\"used_age_seconds\":%.0f",
				       (double)now / 1e9 - (double)last_use(&v[i], used, nused));
			printf("}");
		}
		printf("]\n");
	} else {
		/* the key last: keys run to 512 characters */
		if (n)
			printf("%10s %8s %6s %6s  %s\n", "SIZE", "FILES", "AGE", "USED", "KEY");
		for (i = 0; i < n; i++) {
			char sz[32], age[32], use[32] = "-";
			int64_t u = last_use(&v[i], used, nused);

			fmt_size(sz, sizeof(sz), v[i].bytes);
			fmt_age(age, sizeof(age), (double)(now - v[i].time_ns) / 1e9);
			if (u >= 0)
				fmt_age(use, sizeof(use), (double)now / 1e9 - (double)u);
			printf("%10s %8" PRIu64 " %6s %6s  %s\n", sz, v[i].files, age, use,
			       v[i].key);
		}
	}
	log_info("ls: %zu keys%s%s%s", n, *prefix ? " starting with '" : "", prefix,
		 *prefix ? "'" : "");
out:
	free(v);
	free(used);
	repo_close(&r);
	common_free(&c);
	return rc ? 1 : 0;
}

/* ---- key ---- */

struct pathvec {
	char **v;
	size_t n, cap;
};

static int pv_add(struct pathvec *pv, const char *p)
{
	if (pv->n == pv->cap) {
		size_t nc = pv->cap ? pv->cap * 2 : 64;
		char **nv = realloc(pv->v, nc * sizeof(*nv));

		if (!nv)
			return -ENOMEM;
		pv->v = nv;
		pv->cap = nc;
	}
	pv->v[pv->n] = strdup(p);
	if (!pv->v[pv->n])
		return -ENOMEM;
	pv->n++;
	return 0;
}

static int strp_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int hash_file(const char *path, struct cas_id *out)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC), rc;

	if (fd < 0)
		return -errno;
	rc = cas_hash_fd(fd, out);
	close(fd);
	return rc;
}

/* ---- globs with ** (hashFiles-like) ---- */

static int has_glob(const char *s)
{
	return strpbrk(s, "*?[") != NULL;
}

/* Match path segments against pattern segments; "**" spans any number. */
static int match_segs(char **pat, int np, char **seg, int ns)
{
	int i;

	if (np == 0)
		return ns == 0;
	if (!strcmp(pat[0], "**")) {
		for (i = 0; i <= ns; i++)
			if (match_segs(pat + 1, np - 1, seg + i, ns - i))
				return 1;
		return 0;
	}
	if (ns == 0 || fnmatch(pat[0], seg[0], 0) != 0)
		return 0;
	return match_segs(pat + 1, np - 1, seg + 1, ns - 1);
}

static int split(char *s, char **out, int max)
{
	int n = 0;
	char *save = NULL, *t;

	for (t = strtok_r(s, "/", &save); t && n < max; t = strtok_r(NULL, "/", &save))
		if (strcmp(t, "."))
			out[n++] = t;
	return n;
}

/* Does path match pattern, or lie below a directory that matches it? */
static int glob_match(const char *pattern, const char *path)
{
	char pb[4096], sb[4096], *pat[256], *seg[256];
	int np, ns, k;

	snprintf(pb, sizeof(pb), "%s", pattern);
	snprintf(sb, sizeof(sb), "%s", path);
	np = split(pb, pat, 256);
	ns = split(sb, seg, 256);
	for (k = ns; k >= 1; k--)
		if (match_segs(pat, np, seg, k))
			return 1;
	return 0;
}

/* Every regular file below path (or path itself) matching pattern (NULL: all). */
static int glob_walk(const char *pattern, const char *path, struct pathvec *pv)
{
	struct stat st;
	DIR *d;
	struct dirent *de;
	int rc = 0;

	if (lstat(path, &st) < 0)
		return pattern ? 0 : -errno;
	if (S_ISREG(st.st_mode))
		return !pattern || glob_match(pattern, path) ? pv_add(pv, path) : 0;
	if (!S_ISDIR(st.st_mode))
		return 0;
	d = opendir(path);
	if (!d)
		return -errno;
	while (!rc && (de = readdir(d))) {
		char *sub;

		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (asprintf(&sub, "%s/%s", path, de->d_name) < 0) {
			rc = -ENOMEM;
			break;
		}
		rc = glob_walk(pattern, sub, pv);
		free(sub);
	}
	closedir(d);
	return rc;
}

/* Files for one include pattern. */
static int expand(const char *pattern, struct pathvec *pv)
{
	char base[4096];
	const char *g;
	char *slash;
	struct stat st;

	if (!has_glob(pattern)) {
		if (lstat(pattern, &st) < 0)
			return 0;
		return glob_walk(NULL, pattern, pv);
	}
	/* walk from the longest leading directory without glob characters */
	g = strpbrk(pattern, "*?[");
	snprintf(base, sizeof(base), "%.*s", (int)(g - pattern), pattern);
	slash = strrchr(base, '/');
	if (slash)
		*slash = '\0';
	else
		snprintf(base, sizeof(base), ".");
	if (!*base)
		snprintf(base, sizeof(base), "/");
	return glob_walk(pattern, base, pv);
}

static const char key_help[] =
	"usage: stashfs key [--prefix P] PATTERN...\n\n"
	"Print P followed by a SHA-256 over the contents of the matching files,\n"
	"like GitHub Actions' hashFiles(): the SHA-256 of each file, in byte order\n"
	"of their paths, fed into one SHA-256, so the key does not depend on the\n"
	"order of the patterns.  A pattern is a path or a glob: * and ? within a\n"
	"path segment (dotfiles included), [...] classes, ** for any number of\n"
	"directories; a directory (or a pattern matching one) counts every regular\n"
	"file below it; a pattern starting with ! excludes what it matches.\n"
	"Symlinks are not followed.  Exit 1 if nothing matches.\n\n"
	"  --prefix P           text to put before the hash\n"
	"  --help               this help\n";

int cmd_key(int argc, char **argv)
{
	static const struct option longopts[] = { { "prefix", required_argument, NULL, OPT_PREFIX },
						  { "help", no_argument, NULL, OPT_HELP },
						  { NULL, 0, NULL, 0 } };
	const char *prefix = "";
	struct pathvec pv = { NULL, 0, 0 };
	struct cas_hasher *h = NULL;
	char hex[CAS_HEX_LEN + 1];
	struct cas_id id;
	int opt, i, rc = 0, ret = 1;
	size_t k, out;

	while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (opt) {
		case OPT_PREFIX: prefix = optarg; break;
		case OPT_HELP: fputs(key_help, stdout); return 0;
		default: return bad_option("key", argv);
		}
	}
	if (optind >= argc)
		return usage_error("key", "expected at least one PATTERN");
	for (i = optind; i < argc && !rc; i++)
		if (argv[i][0] != '!')
			rc = expand(argv[i], &pv);
	if (rc) {
		log_err("key: %s", strerror(-rc));
		goto out;
	}
	/* normalize "./x" to "x" so patterns and walks agree */
	for (k = 0; k < pv.n; k++)
		if (!strncmp(pv.v[k], "./", 2))
			memmove(pv.v[k], pv.v[k] + 2, strlen(pv.v[k] + 2) + 1);
	for (i = optind; i < argc; i++) {
		if (argv[i][0] != '!')
			continue;
		for (k = 0, out = 0; k < pv.n; k++) {
			if (glob_match(argv[i] + 1, pv.v[k])) {
				free(pv.v[k]);
				continue;
			}
			pv.v[out++] = pv.v[k];
		}
		pv.n = out;
	}
	if (pv.n == 0) {
		log_err("key: no file matches");
		goto out;
	}
	qsort(pv.v, pv.n, sizeof(*pv.v), strp_cmp);
	for (k = 0, out = 0; k < pv.n; k++) {
		if (out && !strcmp(pv.v[out - 1], pv.v[k])) {
			free(pv.v[k]);
			continue;
		}
		pv.v[out++] = pv.v[k];
	}
	pv.n = out;
	h = cas_hasher_new();
	if (!h)
		goto out;
	for (k = 0; k < pv.n; k++) {
		rc = hash_file(pv.v[k], &id);
		if (rc) {
			log_err("key: cannot read '%s': %s", qpath(pv.v[k]), strerror(-rc));
			goto out;
		}
		cas_hasher_update(h, id.b, sizeof(id.b));
	}
	cas_hasher_final(h, &id);
	cas_id_hex(&id, hex);
	if (strlen(prefix) + CAS_HEX_LEN > KEY_MAX) {
		log_err("key: prefix too long (the key must fit in %d bytes)", KEY_MAX);
		goto out;
	}
	printf("%s%s\n", prefix, hex);
	ret = 0;
out:
	cas_hasher_free(h);
	for (k = 0; k < pv.n; k++)
		free(pv.v[k]);
	free(pv.v);
	return ret;
}

static const char gc_help[] =
	"usage: stashfs gc [--max-size SIZE] [OPTIONS]\n\n"
	"Trim the local object cache to SIZE (like 10G, 512M), least recently\n"
	"used first.  Without --max-size, print the cache size.\n\n"
	"  --max-size SIZE      the size to trim to\n" COMMON_HELP;

int cmd_gc(int argc, char **argv)
{
	static const struct option longopts[] = { { "max-size", required_argument, NULL,
						    OPT_MAX_SIZE },
						  COMMON_LONGOPTS,
						  { NULL, 0, NULL, 0 } };
	uint64_t max = UINT64_MAX, files = 0, bytes = 0, total = 0, nobj = 0;
	struct common c;
	struct repo r;
	char a[32], b[32];
	int opt, rc;

	common_init(&c);
	while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		int h = common_opt(&c, opt, optarg);

		if (h < 0)
			return usage_error("gc", "%s", c.err);
		if (h)
			continue;
		switch (opt) {
		case OPT_MAX_SIZE:
			if (parse_size(optarg, &max))
				return usage_error(
					"gc",
					"--max-size wants a size such as 500M or 2G, not '%.40s'",
					optarg);
			break;
		case OPT_HELP: fputs(gc_help, stdout); return 0;
		default: return bad_option("gc", argv);
		}
	}
	if (optind != argc)
		return usage_error("gc", "unexpected argument");
	if (common_open_repo(&c, &r)) {
		common_free(&c);
		return 1;
	}
	rc = store_gc(r.store, max, &files, &bytes);
	if (!rc)
		rc = store_object_bytes(r.store, &total, &nobj);
	if (!rc) {
		fmt_size(a, sizeof(a), bytes);
		fmt_size(b, sizeof(b), total);
		log_info("gc: removed %" PRIu64 " objects (%s); cache now %" PRIu64 " objects, %s",
			 files, a, nobj, b);
		if (c.json)
			printf("{\"removed_objects\":%" PRIu64 ",\"removed_bytes\":%" PRIu64
			       ",\"objects\":%" PRIu64 ",\"bytes\":%" PRIu64 "}\n",
			       files, bytes, nobj, total);
	}
	repo_close(&r);
	common_free(&c);
	return rc ? 1 : 0;
}

static const char touch_help[] =
	"usage: stashfs touch-sources SRC --key KEY [--restore-key PREFIX]... [OPTIONS]\n\n"
	"Give every file below SRC whose content matches what was recorded with\n"
	"'save/commit --sources' its recorded mtime; changed files keep theirs.\n"
	"After a fresh checkout, cargo then rebuilds exactly what changed.\n\n"
	"  --key KEY            the snapshot whose sources to use\n"
	"  --restore-key PREFIX fallback prefix, repeatable\n" COMMON_HELP;

int cmd_touch_sources(int argc, char **argv)
{
	static const struct option longopts[] = { { "key", required_argument, NULL, OPT_KEY },
						  { "restore-key", required_argument, NULL,
						    OPT_RESTORE_KEY },
						  COMMON_LONGOPTS,
						  { NULL, 0, NULL, 0 } };
	char *restore_keys[64];
	int n_restore = 0, opt, rc, ret = 1, i;
	const char *key = NULL;
	enum hit_kind hit;
	struct key_rec rec;
	struct touch_stats ts;
	struct buf raw = BUF_INIT;
	struct common c;
	struct repo r;
	double t0 = mono_sec();

	common_init(&c);
	while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		int h = common_opt(&c, opt, optarg);

		if (h < 0)
			return usage_error("touch-sources", "%s", c.err);
		if (h)
			continue;
		switch (opt) {
		case OPT_KEY: key = optarg; break;
		case OPT_RESTORE_KEY:
			if (n_restore == (int)ARRAY_SIZE(restore_keys) || key_valid(optarg))
				return usage_error("touch-sources",
						   "bad or too many --restore-key");
			restore_keys[n_restore++] = optarg;
			break;
		case OPT_HELP: fputs(touch_help, stdout); return 0;
		default: return bad_option("touch-sources", argv);
		}
	}
	if (optind + 1 != argc)
		return usage_error("touch-sources", "expected one SRC");
	if (!key || key_valid(key))
		return usage_error("touch-sources",
				   "--key KEY is required (printable ASCII, 1-512 bytes)");
	if (common_open_repo(&c, &r)) {
		common_free(&c);
		return 1;
	}
	rc = keys_resolve(&r, key, restore_keys, n_restore, &rec, &hit);
	if (rc)
		goto out;
	if (hit == HIT_MISS) {
		log_info("touch-sources: miss for key '%s'; nothing touched", key);
		ret = 0;
		goto out;
	}
	for (i = 0; !rec.has_sources && i <= r.n_reads; i++) {
		struct key_rec full;

		if (keys_get(i == 0 ? r.primary : r.reads[i - 1], rec.key, &full) == 0 &&
		    full.has_sources)
			rec = full;
	}
	if (!rec.has_sources) {
		log_err("touch-sources: key '%s' was saved without --sources", rec.key);
		goto out;
	}
	rc = sources_get(&r, &rec.sources, &raw);
	if (rc)
		goto out;
	rc = sources_touch(argv[optind], &raw, &ts);
	if (rc) {
		if (rc == -EBADMSG)
			log_err("touch-sources: the sources manifest of '%s' is malformed",
				rec.key);
		goto out;
	}
	log_info("touch-sources: %s hit '%s': %" PRIu64
		 " files given their recorded mtime, %" PRIu64 " already had it, %" PRIu64
		 " changed (left alone), %" PRIu64 " missing; %.2f s",
		 hit_kind_name(hit), rec.key, ts.touched, ts.same, ts.changed, ts.missing,
		 mono_sec() - t0);
	if (c.json)
		printf("{\"command\":\"touch-sources\",\"hit\":\"%s\",\"matched_key\":",
		       hit_kind_name(hit)),
			json_str(stdout, rec.key),
			printf(",\"touched\":%" PRIu64 ",\"same\":%" PRIu64 ",\"changed\":%" PRIu64
			       ",\"missing\":%" PRIu64 "}\n",
			       ts.touched, ts.same, ts.changed, ts.missing);
	ret = 0;
out:
	buf_free(&raw);
	repo_close(&r);
	common_free(&c);
	return ret;
}
