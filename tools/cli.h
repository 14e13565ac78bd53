/*
 * Shared pieces of the stashfs command (tools/cli.c): the environment and the
 * config file, read once by common_init into struct common and passed down
 * from there; the common options; output helpers.
 */
#ifndef STASH_CLI_H
#define STASH_CLI_H

#include "../store/repo.h"
#include "../store/snapshot.h"

#include <getopt.h>
#include <stdio.h>

#define EXIT_USAGE 2

struct common {
	const char *store;
	const char *remote;
	char *reads[REPO_MAX_READS];
	int n_reads;
	int json;
	int quiet;
	char *reads_env; /* owned copy of STASHFS_READ_REMOTES */
	const char *store_env; /* STASHFS_STORE */
	char default_store[4096]; /* STASHFS_STORE, else the user's cache dir; "" none */
	uint64_t cache_size; /* 0: no automatic limit */
	char err[160]; /* why common_opt refused an option */
	int store_given, remote_given, reads_given; /* on the command line */
	/* owned: what a mount of DIR was made with (use_mount_origin) */
	char *origin_store, *origin_remote, *origin_reads;
	/* from the config file, owned */
	char *cfg_remote, *cfg_store, *cfg_reads;
	/* what the remotes are opened with, and the repo (common_open_repo) */
	struct remote_config rcfg;
	char aws_credentials[4096], aws_config[4096];
	struct repo_spec spec;
	/* the mount's debugging knobs (STASHFS_NO_MEM_READS, _WRITEBACK, _FUSE_DEBUG) */
	int no_mem_reads, writeback, fuse_debug;
};

/* Options every command takes; ids >= 1000 so commands can add theirs. */
enum {
	OPT_STORE = 1000,
	OPT_REMOTE,
	OPT_READ_REMOTE,
	OPT_JSON,
	OPT_QUIET,
	OPT_VERBOSE,
	OPT_HELP,
	OPT_TIMEOUT,
	OPT_INSECURE,
	OPT_OFFLINE,
	OPT_CMD_BASE = 1100
};

/* clang-format off */
#define COMMON_LONGOPTS                                                        \
	{ "store", required_argument, NULL, OPT_STORE },                       \
	{ "remote", required_argument, NULL, OPT_REMOTE },                     \
	{ "read-remote", required_argument, NULL, OPT_READ_REMOTE },           \
	{ "json", no_argument, NULL, OPT_JSON },                               \
	{ "quiet", no_argument, NULL, OPT_QUIET },                             \
	{ "verbose", no_argument, NULL, OPT_VERBOSE },                         \
	{ "help", no_argument, NULL, OPT_HELP },                               \
	{ "timeout", required_argument, NULL, OPT_TIMEOUT },                   \
	{ "insecure", no_argument, NULL, OPT_INSECURE },                       \
	{ "offline", no_argument, NULL, OPT_OFFLINE }

#define COMMON_HELP                                                            \
	"  --store PATH         local store (env STASHFS_STORE; default\n"         \
	"                       $XDG_CACHE_HOME/stashfs or ~/.cache/stashfs)\n"   \
	"  --remote URL         remote to share through (env STASHFS_REMOTE):\n"  \
	"                       file:///dir, http(s)://host/path or\n"           \
	"                       s3://bucket/prefix; default: the store alone\n"  \
	"  --read-remote URL    read-only fallback remote, repeatable\n"          \
	"                       (env STASHFS_READ_REMOTES, space-separated)\n"    \
	"  --timeout SECONDS    bound on one remote operation, retries included\n" \
	"                       (env STASHFS_TIMEOUT, default 60)\n"            \
	"  --insecure           do not verify TLS certificates (loudly)\n"       \
	"  --offline            use no network remote: keys and content this\n"  \
	"                       machine has (env STASHFS_OFFLINE=1)\n"            \
	"  --json               machine-readable output on stdout\n"              \
	"  --quiet              no summary line\n"                                \
	"  --help               this help\n"
/* clang-format on */

void common_init(struct common *c);
/* Handle a common option; 1 if handled, 0 if not, -1 on a usage error. */
int common_opt(struct common *c, int opt, const char *arg);
void common_free(struct common *c);
int common_open_repo(struct common *c, struct repo *r);
/* Trim the object cache to the configured cache size, if one is set. */
void common_auto_gc(struct common *c, struct repo *r);

#define THREADS_MAX 64
/*
 * commit, umount and status of a mounted DIR: use the store and remotes the
 * mount was made with, unless given.  -1 (told) when a given store is not
 * the mount's.
 */
int use_mount_origin(struct common *c, const char *dir, const char *cmd);
int bad_option(const char *cmd, char **argv);
/* Say what a snapshot did not keep, or a restore did not make (warnings). */
void snap_warn_dropped(const char *cmd, const struct snap_stats *st);
int usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

int cmd_save(int argc, char **argv);
int cmd_restore(int argc, char **argv);
int cmd_ls(int argc, char **argv);
int cmd_key(int argc, char **argv);
int cmd_gc(int argc, char **argv);
int cmd_prune(int argc, char **argv);
int cmd_mount(int argc, char **argv);
int cmd_commit(int argc, char **argv);
int cmd_umount(int argc, char **argv);
int cmd_status(int argc, char **argv);
int cmd_touch_sources(int argc, char **argv);
/* Record the sources manifest of src (skipping dir) and upload it. */
int cli_sources(struct repo *r, const char *src, const char *dir, struct cas_id *id,
		uint64_t *uploaded);

#endif
