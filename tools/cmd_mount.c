/* stashfs mount, commit, umount, status. */
#define _GNU_SOURCE
#include "cli.h"
#include "../fs/mount.h"
#include "progress.h"

#include <errno.h>
#include <inttypes.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum {
	OPT_KEY = OPT_CMD_BASE,
	OPT_RESTORE_KEY,
	OPT_ALLOW_OTHER,
	OPT_FOREGROUND,
	OPT_PRESERVE_OWNER,
	OPT_FRESH,
	OPT_FAIL_ON_MISS,
	OPT_COMMIT,
	OPT_NO_PREFETCH,
	OPT_NO_URING,
	OPT_OWNER,
	OPT_SOURCES,
	OPT_DISCARD,
	OPT_LAZY,
	OPT_TRACK_USE,
	OPT_PRUNE_UNREAD
};

static const char mount_help[] =
	"usage: stashfs mount DIR --key KEY [--restore-key PREFIX]... [OPTIONS]\n\n"
	"Mount the snapshot lazily at DIR: metadata now, content on first read,\n"
	"writes kept copy-on-write in the store.  On a miss, an empty writable\n"
	"tree.  Changes survive a crash of the daemon: mounting the same DIR again\n"
	"resumes them.\n\n"
	"  --key KEY            the key to mount\n"
	"  --restore-key PREFIX fallback prefix, repeatable, tried in order\n"
	"  --allow-other        let other users (and containers) use the mount\n"
	"  --preserve-owner     show recorded owners instead of the mounting user\n"
	"  --owner UID[:GID]    show files (and a miss's root) as this user's, not\n"
	"                       the mounting user's: root mounting for a container\n"
	"                       that builds as UID (with --allow-other)\n"
	"  --foreground         stay in the foreground (serve until unmounted)\n"
	"  --fresh              discard changes left by an earlier mount of DIR\n"
	"  --fail-on-miss       exit 1 when no key matched\n"
	"  --no-prefetch        do not fetch what the last job read ahead of time\n"
	"  --no-uring           answer requests through /dev/fuse even when the\n"
	"                       kernel offers io_uring (fuse.enable_uring=1)\n"
	"  --track-use          note which snapshot files the job looks up, for\n"
	"                       'commit --prune-unread' (names are then not looked\n"
	"                       up ahead of the job, nor listed with attributes)\n" COMMON_HELP;

int cmd_mount(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "key", required_argument, NULL, OPT_KEY },
		{ "restore-key", required_argument, NULL, OPT_RESTORE_KEY },
		{ "allow-other", no_argument, NULL, OPT_ALLOW_OTHER },
		{ "foreground", no_argument, NULL, OPT_FOREGROUND },
		{ "preserve-owner", no_argument, NULL, OPT_PRESERVE_OWNER },
		{ "fresh", no_argument, NULL, OPT_FRESH },
		{ "fail-on-miss", no_argument, NULL, OPT_FAIL_ON_MISS },
		{ "no-prefetch", no_argument, NULL, OPT_NO_PREFETCH },
		{ "no-uring", no_argument, NULL, OPT_NO_URING },
		{ "track-use", no_argument, NULL, OPT_TRACK_USE },
		{ "owner", required_argument, NULL, OPT_OWNER },
		COMMON_LONGOPTS,
		{ NULL, 0, NULL, 0 }
	};
	struct mount_opts mo;
	char *restore[64];
	struct common c;
	struct repo r;
	int opt, rc;

	memset(&mo, 0, sizeof(mo));
	mo.owner_uid = mo.owner_gid = -1;
	common_init(&c);
	while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		int h = common_opt(&c, opt, optarg);

		if (h < 0)
			return usage_error("mount", "%s", c.err);
		if (h)
			continue;
		switch (opt) {
		case OPT_KEY: mo.key = optarg; break;
		case OPT_RESTORE_KEY:
			if (mo.n_restore == (int)ARRAY_SIZE(restore) || key_valid(optarg))
				return usage_error("mount", "bad or too many --restore-key");
			restore[mo.n_restore++] = optarg;
			break;
		case OPT_ALLOW_OTHER: mo.allow_other = 1; break;
		case OPT_FOREGROUND: mo.foreground = 1; break;
		case OPT_PRESERVE_OWNER: mo.preserve_owner = 1; break;
		case OPT_FRESH: mo.fresh = 1; break;
		case OPT_FAIL_ON_MISS: mo.fail_on_miss = 1; break;
		case OPT_NO_PREFETCH: mo.no_prefetch = 1; break;
		case OPT_NO_URING: mo.no_uring = 1; break;
		case OPT_TRACK_USE: mo.track_use = 1; break;
		case OPT_OWNER: {
			char *colon = strchr(optarg, ':');
			long u, g = -1;

			if (colon)
				*colon = '\0';
			if (parse_int(optarg, 0, 0x7fffffff, &u) ||
			    (colon && parse_int(colon + 1, 0, 0x7fffffff, &g)))
				return usage_error("mount",
						   "--owner wants UID or UID:GID (numbers)");
			if (g < 0) { /* the login group, as chown UID: gives */
				struct passwd *pw = getpwuid((uid_t)u);

				g = pw ? (long)pw->pw_gid : u;
			}
			mo.owner_uid = u;
			mo.owner_gid = g;
			break;
		}
		case OPT_HELP: fputs(mount_help, stdout); return 0;
		default: return bad_option("mount", argv);
		}
	}
	if (optind + 1 != argc)
		return usage_error("mount", "expected one DIR");
	if (mo.owner_uid >= 0 && mo.preserve_owner)
		return usage_error("mount", "--owner and --preserve-owner exclude each other");
	if (!mo.key)
		return usage_error("mount", "--key is required");
	if (key_valid(mo.key))
		return usage_error("mount", "key must be 1-512 printable ASCII characters");
	mo.dir = argv[optind];
	if (!*mo.dir)
		return usage_error("mount", "DIR is empty");
	mo.restore = restore;
	mo.json = c.json;
	mo.no_mem_reads = c.no_mem_reads;
	mo.writeback = c.writeback;
	mo.fuse_debug = c.fuse_debug;
	if (common_open_repo(&c, &r)) {
		common_free(&c);
		return 1;
	}
	common_auto_gc(&c, &r);
	rc = fs_mount(&r, &mo);
	repo_close(&r);
	common_free(&c);
	return rc ? 1 : 0;
}

static void commit_summary(const char *cmd, const char *key, const struct snap_stats *st,
			   double secs, int json)
{
	char total[32], up[32], hex[CAS_HEX_LEN + 1];

	fmt_size(total, sizeof(total), st->bytes);
	fmt_size(up, sizeof(up), st->bytes_uploaded);
	if (st->unchanged)
		log_info("%s: key '%s': unchanged (%" PRIu64 " files, %" PRIu64
			 " dirs, %s); nothing uploaded; %.2f s",
			 cmd, key, st->files, st->dirs, total, secs);
	else
		log_info("%s: key '%s': %" PRIu64 " files, %" PRIu64 " dirs, %s; %" PRIu64
			 " new chunks, uploaded %s in %" PRIu64 " packs; %.2f s",
			 cmd, key, st->files, st->dirs, total, st->chunks_new, up,
			 st->packs_uploaded, secs);
	snap_warn_dropped(cmd, st);
	if (st->pruned) {
		char pb[32];

		fmt_size(pb, sizeof(pb), st->pruned_bytes);
		log_info("%s: left out %" PRIu64 " files (%s) the job did not use (--prune-unread)",
			 cmd, st->pruned, pb);
	}
	if (json) {
		cas_id_hex(&st->catalog, hex);
		printf("{\"command\":\"%s\",\"key\":", cmd);
		json_str(stdout, key);
		printf(",\"snapshot\":\"%s\",\"files\":%" PRIu64 ",\"dirs\":%" PRIu64
		       ",\"bytes\":%" PRIu64 ",\"chunks_new\":%" PRIu64
		       ",\"bytes_uploaded\":%" PRIu64 ",\"packs_uploaded\":%" PRIu64
		       ",\"unchanged\":%s,\"pruned_files\":%" PRIu64 ",\"pruned_bytes\":%" PRIu64
		       ",\"seconds\":%.3f}\n",
		       hex, st->files, st->dirs, st->bytes, st->chunks_new, st->bytes_uploaded,
		       st->packs_uploaded, st->unchanged ? "true" : "false", st->pruned,
		       st->pruned_bytes, secs);
	}
}

/* Record sources (if any), then commit with a progress line. */
static int run_commit(struct repo *r, struct commit_opts *co, const char *sources,
		      struct snap_stats *st, char *key, size_t keylen)
{
	struct snap_progress prog;
	struct progress_ui *ui;
	struct cas_id sid;
	uint64_t up = 0;
	int rc = sources ? cli_sources(r, sources, co->dir, &sid, &up) : 0;

	if (rc)
		return rc;
	memset(&prog, 0, sizeof(prog));
	co->progress = &prog;
	co->sources = sources ? &sid : NULL;
	ui = progress_start("commit", &prog);
	rc = fs_commit(r, co, st, key, keylen);
	progress_stop(ui);
	co->sources = NULL;
	co->progress = NULL;
	st->bytes_uploaded += up;
	return rc;
}

static const char commit_help[] =
	"usage: stashfs commit DIR [--key KEY] [OPTIONS]\n\n"
	"Publish the mounted view at DIR as a snapshot under KEY (default: the key\n"
	"it was mounted with).  Unchanged files are not read again; only content\n"
	"the remote lacks is uploaded.  The mount stays up.\n\n"
	"  --key KEY            key to publish\n"
	"  --sources SRC        also record the source tree SRC for touch-sources\n"
	"  --prune-unread       leave out every snapshot file the job neither looked\n"
	"                       up nor wrote (DIR mounted with --track-use)\n" COMMON_HELP;

int cmd_commit(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "key", required_argument, NULL, OPT_KEY },
		{ "sources", required_argument, NULL, OPT_SOURCES },
		{ "prune-unread", no_argument, NULL, OPT_PRUNE_UNREAD },
		COMMON_LONGOPTS,
		{ NULL, 0, NULL, 0 }
	};
	struct commit_opts co;
	struct snap_stats st;
	char key[KEY_MAX + 1];
	struct common c;
	struct repo r;
	double t0 = mono_sec();
	const char *sources = NULL;
	int opt, rc;

	memset(&co, 0, sizeof(co));
	common_init(&c);
	while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		int h = common_opt(&c, opt, optarg);

		if (h < 0)
			return usage_error("commit", "%s", c.err);
		if (h)
			continue;
		switch (opt) {
		case OPT_KEY: co.key = optarg; break;
		case OPT_SOURCES: sources = optarg; break;
		case OPT_PRUNE_UNREAD: co.prune_unread = 1; break;
		case OPT_HELP: fputs(commit_help, stdout); return 0;
		default: return bad_option("commit", argv);
		}
	}
	if (optind + 1 != argc)
		return usage_error("commit", "expected one DIR");
	if (co.key && key_valid(co.key))
		return usage_error("commit", "key must be 1-512 printable ASCII characters");
	co.dir = argv[optind];
	if (!*co.dir)
		return usage_error("commit", "DIR is empty");
	if (use_mount_origin(&c, co.dir, "commit") || common_open_repo(&c, &r)) {
		common_free(&c);
		return 1;
	}
	rc = run_commit(&r, &co, sources, &st, key, sizeof(key));
	if (!rc)
		commit_summary("commit", key, &st, mono_sec() - t0, c.json);
	common_auto_gc(&c, &r);
	repo_close(&r);
	common_free(&c);
	return rc ? 1 : 0;
}

static const char umount_help[] =
	"usage: stashfs umount DIR [--commit KEY] [OPTIONS]\n\n"
	"Unmount DIR, after publishing it as KEY with --commit.  Without --commit\n"
	"the changes stay in the store and the next mount of DIR resumes them;\n"
	"after a commit they are published and the local state is dropped.\n\n"
	"  --commit KEY         commit as KEY first\n"
	"  --sources SRC        with --commit: record the source tree SRC too\n"
	"  --prune-unread       with --commit: leave out the snapshot files the job\n"
	"                       did not use (DIR mounted with --track-use)\n"
	"  --discard            drop the uncommitted changes instead of keeping them\n"
	"  --lazy               detach DIR now even if it is busy; its daemon finishes\n"
	"                       when the last user leaves (with --commit: what they\n"
	"                       write after the commit is kept for the next mount)\n\n"
	"Without --lazy a busy DIR is an error and, with --commit, nothing is\n"
	"published: DIR is unmounted first and committed once its daemon is done.\n" COMMON_HELP;

int cmd_umount(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "commit", required_argument, NULL, OPT_COMMIT },
		{ "sources", required_argument, NULL, OPT_SOURCES },
		{ "discard", no_argument, NULL, OPT_DISCARD },
		{ "prune-unread", no_argument, NULL, OPT_PRUNE_UNREAD },
		{ "lazy", no_argument, NULL, OPT_LAZY },
		COMMON_LONGOPTS,
		{ NULL, 0, NULL, 0 }
	};
	struct commit_opts co;
	struct snap_stats st;
	char key[KEY_MAX + 1];
	struct common c;
	struct repo r;
	double t0 = mono_sec();
	const char *sources = NULL;
	int opt, rc = 0, committed = 0, discard = 0, lazy = 0;

	memset(&co, 0, sizeof(co));
	common_init(&c);
	while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		int h = common_opt(&c, opt, optarg);

		if (h < 0)
			return usage_error("umount", "%s", c.err);
		if (h)
			continue;
		switch (opt) {
		case OPT_COMMIT: co.key = optarg; break;
		case OPT_SOURCES: sources = optarg; break;
		case OPT_DISCARD: discard = 1; break;
		case OPT_PRUNE_UNREAD: co.prune_unread = 1; break;
		case OPT_LAZY: lazy = 1; break;
		case OPT_HELP: fputs(umount_help, stdout); return 0;
		default: return bad_option("umount", argv);
		}
	}
	if (optind + 1 != argc)
		return usage_error("umount", "expected one DIR");
	if (co.key && key_valid(co.key))
		return usage_error("umount", "key must be 1-512 printable ASCII characters");
	co.dir = argv[optind];
	if (!*co.dir)
		return usage_error("umount", "DIR is empty");
	if (use_mount_origin(&c, co.dir, "umount") || common_open_repo(&c, &r)) {
		common_free(&c);
		return 1;
	}
	if ((sources || co.prune_unread) && !co.key) {
		rc = usage_error("umount", "--sources and --prune-unread go with --commit");
		goto out2;
	}
	if (discard && (lazy || co.key)) {
		rc = usage_error("umount", "--discard goes with neither --commit nor --lazy");
		goto out2;
	}
	if (co.key && lazy) {
		/* commit the view as it is, then detach: the state stays, and a
		 * mount of the key resumes it with what was written since */
		rc = run_commit(&r, &co, sources, &st, key, sizeof(key));
		if (rc)
			goto out;
		commit_summary("commit", key, &st, mono_sec() - t0, c.json);
		rc = fs_umount(&r, co.dir, 1);
		if (!rc)
			log_info("umount: %s detached; its changes are published as '%s'", co.dir,
				 key);
		goto out;
	}
	/* unmount first: a busy DIR publishes nothing, and the commit reads
	 * the state its daemon has finished writing */
	rc = fs_umount(&r, co.dir, lazy);
	if (rc) {
		if (co.key)
			log_err("umount: nothing was published; '%s' stays mounted", co.dir);
		goto out;
	}
	if (co.key) {
		rc = run_commit(&r, &co, sources, &st, key, sizeof(key));
		if (rc) {
			log_err("umount: %s is unmounted and its changes are kept: 'stashfs commit "
				"%s --key %s' publishes them, a mount of it resumes them",
				co.dir, co.dir, co.key);
			goto out;
		}
		commit_summary("commit", key, &st, mono_sec() - t0, c.json);
		committed = 1;
	}
	if (committed || discard)
		fs_discard_state(&r, co.dir);
	{
		uint64_t changes = 0;

		if (!committed && !discard)
			fs_changes(&r, co.dir, &changes);
		log_info("umount: %s %s%s", co.dir, lazy ? "detached" : "unmounted",
			 committed && st.unchanged ? "; it was unchanged"
			 : committed		   ? "; its changes are published"
			 : discard		   ? "; changes discarded"
			 : changes ? "; its changes are kept for the next mount of it"
				   : "");
	}
out:
	common_auto_gc(&c, &r);
	repo_close(&r);
	common_free(&c);
	return rc ? 1 : 0;
out2:
	repo_close(&r);
	common_free(&c);
	return rc;
}

struct status_out {
	int json;
	int first; /* no JSON comma yet */
};

static void status_json(const struct mount_info *mi)
{
	const struct mount_stats *s = &mi->stats;

	printf("{\"dir\":");
	json_str(stdout, mi->dir);
	printf(",\"mounted\":%s,\"key\":", mi->alive ? "true" : "false");
	json_str(stdout, mi->key);
	printf(",\"hit\":\"%s\",\"matched_key\":", mi->hit);
	json_str(stdout, mi->matched);
	printf(",\"files\":%" PRIu64 ",\"bytes_total\":%" PRIu64 ",\"bytes_fetched\":%" PRIu64
	       ",\"objects_fetched\":%" PRIu64 ",\"bytes_read\":%" PRIu64
	       ",\"bytes_written\":%" PRIu64 ",\"copy_ups\":%" PRIu64 ",\"fetch_errors\":%" PRIu64
	       ",\"bytes_uploaded\":%" PRIu64 ",\"commits\":%" PRIu64
	       ",\"bytes_prefetched\":%" PRIu64 ",\"prefetch_queued\":%" PRIu64
	       ",\"prefetch_done\":%" PRIu64 ",\"bytes_pushed\":%" PRIu64
	       ",\"ring_threads\":%" PRIu64 ",\"ring_requests\":%" PRIu64 ",\"lookups\":%" PRIu64
	       ",\"lookups_ahead\":%" PRIu64 ",\"pushed_ahead\":%" PRIu64
	       ",\"written_behind\":%" PRIu64 ",\"ring_light\":%" PRIu64
	       ",\"connections_ahead\":%" PRIu64 ",\"dirs_ahead\":%" PRIu64
	       ",\"ahead_pending\":%" PRIu64 ",\"pid\":%" PRId64 "}",
	       s->files_total, s->bytes_total, s->bytes_fetched, s->objects_fetched, s->bytes_read,
	       s->bytes_written, s->copy_ups, s->fetch_errors, s->bytes_uploaded, s->commits,
	       s->bytes_prefetched, s->prefetch_queued, s->prefetch_done, s->bytes_pushed,
	       s->ring_threads, s->ring_requests, s->lookups, s->lookups_ahead, s->pushed_ahead,
	       s->written_behind, s->ring_light, s->conns_ahead, s->dirs_ahead,
	       mi->alive ? s->ahead_pending : 0, mi->alive ? s->pid : (int64_t)0);
}

static void status_line(const struct mount_info *mi)
{
	const struct mount_stats *s = &mi->stats;
	char fetched[32], total[32], written[32], up[32], pre[32];

	fmt_size(fetched, sizeof(fetched), s->bytes_fetched);
	fmt_size(total, sizeof(total), s->bytes_total);
	fmt_size(written, sizeof(written), s->bytes_written);
	fmt_size(up, sizeof(up), s->bytes_uploaded);
	fmt_size(pre, sizeof(pre), s->bytes_prefetched);
	printf("%s: %s, key '%s' (%s%s%s%s), %" PRIu64 " files; fetched %s of %s in %" PRIu64
	       " objects (%s ahead; prefetch %" PRIu64 "/%" PRIu64
	       "); wrote %s; uploaded %s in %" PRIu64 " commits%s%s%s\n",
	       mi->dir, mi->alive ? "mounted" : "not mounted", mi->key, mi->hit,
	       *mi->matched ? " hit '" : "", mi->matched, *mi->matched ? "'" : "", s->files_total,
	       fetched, total, s->objects_fetched, pre, s->prefetch_done, s->prefetch_queued,
	       written, up, s->commits, s->fetch_errors ? "; FETCH ERRORS (see " : "",
	       s->fetch_errors ? mi->statedir : "", s->fetch_errors ? "/daemon.log)" : "");
}

static void status_print(const struct mount_info *mi, void *arg)
{
	struct status_out *so = arg;

	if (so->json) {
		if (!so->first)
			printf(",");
		status_json(mi);
	} else {
		status_line(mi);
	}
	so->first = 0;
}

static const char status_help[] =
	"usage: stashfs status [DIR] [--json]\n\n"
	"What a mount (every mount of the store without DIR) fetched, wrote and\n"
	"uploaded.\n\n" COMMON_HELP;

int cmd_status(int argc, char **argv)
{
	static const struct option longopts[] = { COMMON_LONGOPTS, { NULL, 0, NULL, 0 } };
	struct common c;
	struct repo r;
	struct status_out so = { 0, 1 };
	int opt, rc;

	common_init(&c);
	while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		int h = common_opt(&c, opt, optarg);

		if (h < 0)
			return usage_error("status", "%s", c.err);
		if (h)
			continue;
		if (opt == OPT_HELP) {
			fputs(status_help, stdout);
			return 0;
		}
		return bad_option("status", argv);
	}
	if (optind + 1 < argc)
		return usage_error("status", "at most one DIR");
	so.json = c.json;
	if (optind < argc && use_mount_origin(&c, argv[optind], "status")) {
		common_free(&c);
		return 1;
	}
	if (!c.store && !c.store_env && *c.default_store && access(c.default_store, F_OK) != 0) {
		/* no store here yet: status does not make one */
		c.store = c.default_store;
		rc = 0;
		if (c.json)
			printf("[");
		if (optind < argc) {
			log_err("status: '%s' is not a stashfs mount", qpath(argv[optind]));
			rc = -ENOENT;
		}
	} else {
		if (common_open_repo(&c, &r)) {
			common_free(&c);
			return 1;
		}
		if (c.json)
			printf("[");
		rc = fs_status(&r, optind < argc ? argv[optind] : NULL, status_print, &so);
		repo_close(&r);
	}
	if (optind == argc && !c.store_given && !c.store_env) {
		/* and every live mount of the other stores the user mounted from */
		static char stores[16][PATH_MAX];
		char mine[PATH_MAX];
		int n = fs_live_stores(stores, 16), i;

		if (!realpath(c.store, mine))
			snprintf(mine, sizeof(mine), "%s", c.store);
		for (i = 0; i < n; i++) {
			struct common o;

			if (!strcmp(stores[i], mine) || access(stores[i], R_OK | X_OK))
				continue;
			common_init(&o);
			o.store = stores[i];
			o.remote = NULL;
			o.n_reads = 0;
			if (common_open_repo(&o, &r) == 0) {
				fs_status(&r, NULL, status_print, &so);
				repo_close(&r);
			}
			common_free(&o);
		}
	}
	if (c.json)
		printf("]\n");
	common_free(&c);
	return rc ? 1 : 0;
}
