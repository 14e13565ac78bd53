/* stashfs prune: retention on the remote (store/prune.c does the work). */
#include "cli.h"
#include "../store/prune.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

enum {
	OPT_KEEP_WITHIN = OPT_CMD_BASE,
	OPT_KEEP_LAST,
	OPT_MAX_SIZE,
	OPT_GRACE,
	OPT_DRY_RUN,
};

static const char prune_help[] =
	"usage: stashfs prune [--keep-within AGE] [--keep-last N] [--max-size SIZE]\n"
	"                     [--grace AGE] [--dry-run] [OPTIONS]\n\n"
	"Drop keys from the remote by the policies given, then delete the packs,\n"
	"catalogs and sources no kept key uses.  An unused object is first\n"
	"condemned and deleted by a later prune at least --grace after, if nothing\n"
	"uses it by then, so jobs may publish while a prune runs.  Needs a remote\n"
	"that lists: file://, s3://, or an HTTP server answering directories with\n"
	"nginx's autoindex JSON.\n\n"
	"  --keep-within AGE    drop keys not published or used within AGE\n"
	"                       (like 7d, 36h)\n"
	"  --keep-last N        keep the N newest keys of each prefix (a key up\n"
	"                       to its last - _ / . : @ + = or ,)\n"
	"  --max-size SIZE      then drop the least recently used keys until\n"
	"                       what the rest use fits in SIZE (like 50G)\n"
	"  --grace AGE          how long a condemned object waits, and how young\n"
	"                       an unused one is left alone (default 6h; longer\n"
	"                       than your longest save or commit)\n"
	"  --dry-run            say what would go, change nothing\n" COMMON_HELP;

/* "7d", "36h", "90m", "30s", "2w".  0 or -EINVAL. */
static int parse_age(const char *s, int64_t *out)
{
	char *end;
	long long v;
	int64_t mul;

	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno || end == s || v < 0 || !end[0] || end[1])
		return -EINVAL;
	switch (*end) {
	case 's': mul = 1; break;
	case 'm': mul = 60; break;
	case 'h': mul = 3600; break;
	case 'd': mul = 86400; break;
	case 'w': mul = 7 * 86400; break;
	default: return -EINVAL;
	}
	if (v > INT64_MAX / mul)
		return -EINVAL;
	*out = v * mul;
	return 0;
}

int cmd_prune(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "keep-within", required_argument, NULL, OPT_KEEP_WITHIN },
		{ "keep-last", required_argument, NULL, OPT_KEEP_LAST },
		{ "max-size", required_argument, NULL, OPT_MAX_SIZE },
		{ "grace", required_argument, NULL, OPT_GRACE },
		{ "dry-run", no_argument, NULL, OPT_DRY_RUN },
		COMMON_LONGOPTS,
		{ NULL, 0, NULL, 0 }
	};
	struct prune_opts po = { -1, -1, UINT64_MAX, PRUNE_GRACE_DEFAULT, 0, NULL };
	struct prune_stats st;
	struct common c;
	struct repo r;
	char *end;
	int opt, rc;

	common_init(&c);
	while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		int h = common_opt(&c, opt, optarg);

		if (h < 0)
			return usage_error("prune", "%s", c.err);
		if (h)
			continue;
		switch (opt) {
		case OPT_KEEP_WITHIN:
			if (parse_age(optarg, &po.keep_within))
				return usage_error("prune",
						   "--keep-within wants an age such as 7d or 36h, "
						   "not '%.40s'",
						   optarg);
			break;
		case OPT_GRACE:
			if (parse_age(optarg, &po.grace))
				return usage_error("prune",
						   "--grace wants an age such as 6h or 1d, not "
						   "'%.40s'",
						   optarg);
			break;
		case OPT_KEEP_LAST:
			errno = 0;
			po.keep_last = strtoll(optarg, &end, 10);
			if (errno || end == optarg || *end || po.keep_last < 0)
				return usage_error(
					"prune", "--keep-last wants a count such as 5, not '%.40s'",
					optarg);
			break;
		case OPT_MAX_SIZE:
			if (parse_size(optarg, &po.max_size))
				return usage_error(
					"prune", "--max-size wants a size such as 50G, not '%.40s'",
					optarg);
			break;
		case OPT_DRY_RUN: po.dry_run = 1; break;
		case OPT_HELP: fputs(prune_help, stdout); return 0;
		default: return bad_option("prune", argv);
		}
	}
	if (optind != argc)
		return usage_error("prune", "unexpected argument '%.80s'", argv[optind]);
	if (common_open_repo(&c, &r)) {
		common_free(&c);
		return 1;
	}
	po.json = c.json ? stdout : NULL;
	rc = repo_prune(&r, &po, &st);
	if (!rc) {
		char a[32], b[32], d[32], k[32];

		fmt_size(a, sizeof(a), st.bytes);
		fmt_size(k, sizeof(k), st.kept_bytes);
		fmt_size(b, sizeof(b), st.condemned_bytes);
		fmt_size(d, sizeof(d), st.deleted_bytes);
		log_info("prune%s: %" PRIu64 " keys, %" PRIu64 " dropped; %" PRIu64
			 " objects (%s), kept keys use %s; %" PRIu64 " objects (%s) %scondemned, "
			 "%" PRIu64 " (%s) %sdeleted, %" PRIu64 " taken back",
			 po.dry_run ? " (dry run)" : "", st.keys, st.keys_dropped, st.objects, a, k,
			 st.condemned, b, po.dry_run ? "would be " : "", st.deleted, d,
			 po.dry_run ? "would be " : "", st.rescued);
	} else if (rc == -EOPNOTSUPP) {
		log_err("prune: %s cannot be listed, so nothing was pruned", r.primary->url);
	} else if (rc == -EROFS) {
		log_err("prune: %s is read-only", r.primary->url);
	}
	repo_close(&r);
	common_free(&c);
	return rc ? 1 : 0;
}
