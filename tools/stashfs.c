/* The stashfs command: dispatch to subcommands, shared option handling. */
#define _GNU_SOURCE
#include "cli.h"
#include "../fs/mount.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#ifndef STASHFS_VERSION
#define STASHFS_VERSION "0.0.0"
#endif

/*
 * The config file: $STASHFS_CONFIG, else $XDG_CONFIG_HOME/stashfs/config,
 * else ~/.config/stashfs/config.  "name = value" lines, '#' comments:
 * remote, read-remotes (space-separated), store, cache-size, timeout.
 * The environment overrides it and the command line overrides both.
 */
static void load_config(struct common *c)
{
	char path[4096], line[8192];
	const char *e = getenv("STASHFS_CONFIG"), *x = getenv("XDG_CONFIG_HOME");
	const char *home = getenv("HOME");
	FILE *f;
	int n = 0;

	if (e && *e)
		snprintf(path, sizeof(path), "%s", e);
	else if (x && *x)
		snprintf(path, sizeof(path), "%s/stashfs/config", x);
	else if (home && *home)
		snprintf(path, sizeof(path), "%s/.config/stashfs/config", home);
	else
		return;
	f = fopen(path, "re");
	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		char *k = line, *v, *end;

		n++;
		while (*k == ' ' || *k == '\t')
			k++;
		if (*k == '#' || *k == '\n' || !*k)
			continue;
		v = strchr(k, '=');
		if (!v) {
			log_warn("config %s:%d: expected 'name = value'; line ignored", path, n);
			continue;
		}
		*v++ = '\0';
		for (end = v - 2; end >= k && (*end == ' ' || *end == '\t'); end--)
			*end = '\0';
		while (*v == ' ' || *v == '\t')
			v++;
		end = v + strlen(v);
		while (end > v && (end[-1] == '\n' || end[-1] == ' ' || end[-1] == '\t'))
			*--end = '\0';
		if (!strcmp(k, "remote")) {
			free(c->cfg_remote);
			c->cfg_remote = strdup(v);
		} else if (!strcmp(k, "read-remotes")) {
			free(c->cfg_reads);
			c->cfg_reads = strdup(v);
		} else if (!strcmp(k, "store")) {
			free(c->cfg_store);
			c->cfg_store = strdup(v);
		} else if (!strcmp(k, "cache-size")) {
			if (parse_size(v, &c->cache_size))
				log_warn("config %s:%d: bad cache-size '%s'", path, n, v);
		} else if (!strcmp(k, "timeout")) {
			double t;

			if (!parse_seconds(v, &t))
				setenv("STASHFS_TIMEOUT", v, 0); /* the environment wins */
			else
				log_warn("config %s:%d: bad timeout '%s'", path, n, v);
		} else {
			log_warn("config %s:%d: unknown setting '%s'", path, n, k);
		}
	}
	fclose(f);
}

void common_init(struct common *c)
{
	const char *e;

	memset(c, 0, sizeof(*c));
	load_config(c);
	c->remote = getenv("STASHFS_REMOTE");
	if (!c->remote || !*c->remote)
		c->remote = c->cfg_remote;
	if (!getenv("STASHFS_STORE") && c->cfg_store)
		c->store = c->cfg_store;
	e = getenv("STASHFS_CACHE_SIZE");
	if (e && *e && parse_size(e, &c->cache_size))
		log_warn("STASHFS_CACHE_SIZE: bad size '%s'", e);
	e = getenv("STASHFS_READ_REMOTES");
	if (!e || !*e)
		e = c->cfg_reads;
	if (e && *e) {
		char *save = NULL, *tok;

		c->reads_env = strdup(e);
		for (tok = c->reads_env ? strtok_r(c->reads_env, " \t\n", &save) : NULL;
		     tok && c->n_reads < REPO_MAX_READS; tok = strtok_r(NULL, " \t\n", &save))
			c->reads[c->n_reads++] = tok;
	}
}

int use_mount_origin(struct common *c, const char *dir, const char *cmd)
{
	char store[PATH_MAX], given[PATH_MAX], remote[8192], reads[8192];
	const char *want = c->store_given ? c->store : getenv("STASHFS_STORE");

	if (fs_mount_store(dir, store, sizeof(store)) != 0)
		return 0; /* not a live mount that names its store: as given */
	if (want && *want) {
		if (!realpath(want, given) || strcmp(given, store)) {
			log_err("%s: '%s' is a mount of store %s, not of %s", cmd, qpath(dir),
				qpath(store), qpath(want));
			return -1;
		}
	}
	c->origin_store = strdup(store);
	if (!c->origin_store)
		return -1;
	c->store = c->origin_store;
	if (fs_mount_remotes(store, dir, remote, sizeof(remote), reads, sizeof(reads)) != 0)
		return 0;
	if (!c->remote_given && *remote) {
		c->origin_remote = strdup(remote);
		c->remote = c->origin_remote;
	}
	if (!c->reads_given) {
		char *save = NULL, *tok;

		c->n_reads = 0;
		c->origin_reads = strdup(reads);
		for (tok = c->origin_reads ? strtok_r(c->origin_reads, "\n", &save) : NULL;
		     tok && c->n_reads < REPO_MAX_READS; tok = strtok_r(NULL, "\n", &save))
			c->reads[c->n_reads++] = tok;
	}
	return 0;
}

void common_free(struct common *c)
{
	free(c->origin_store);
	free(c->origin_remote);
	free(c->origin_reads);
	free(c->reads_env);
	free(c->cfg_remote);
	free(c->cfg_store);
	free(c->cfg_reads);
}

void common_auto_gc(struct common *c, struct repo *r)
{
	uint64_t files = 0, bytes = 0;
	char b[32];

	if (!c->cache_size || !r->store)
		return;
	if (store_gc(r->store, c->cache_size, &files, &bytes) == 0 && files) {
		fmt_size(b, sizeof(b), bytes);
		log_info("gc: cache over its limit; removed %" PRIu64 " objects (%s)", files, b);
	}
}

int common_opt(struct common *c, int opt, const char *arg)
{
	switch (opt) {
	case OPT_STORE:
		c->store = arg;
		c->store_given = 1;
		return 1;
	case OPT_REMOTE:
		c->remote = arg;
		c->remote_given = 1;
		return 1;
	case OPT_READ_REMOTE:
		c->reads_given = 1;
		if (c->reads_env) {
			/* the command line replaces the environment's list */
			free(c->reads_env);
			c->reads_env = NULL;
			c->n_reads = 0;
		}
		if (c->n_reads == REPO_MAX_READS) {
			snprintf(c->err, sizeof(c->err), "more than %d --read-remote",
				 REPO_MAX_READS);
			return -1;
		}
		c->reads[c->n_reads++] = (char *)arg;
		return 1;
	case OPT_JSON: c->json = 1; return 1;
	case OPT_QUIET:
		c->quiet = 1;
		log_quiet = 1;
		return 1;
	case OPT_VERBOSE: log_verbose = 1; return 1;
	case OPT_TIMEOUT: {
		double t;

		if (parse_seconds(arg, &t)) {
			snprintf(c->err, sizeof(c->err),
				 "--timeout wants seconds over 0 and at most %.0f, not '%.40s'",
				 SECONDS_MAX, arg);
			return -1;
		}
	}
		/* the remotes read it when they open (the daemon inherits it) */
		setenv("STASHFS_TIMEOUT", arg, 1);
		return 1;
	case OPT_INSECURE: setenv("STASHFS_INSECURE", "1", 1); return 1;
	case OPT_OFFLINE: setenv("STASHFS_OFFLINE", "1", 1); return 1; /* the daemon inherits it */
	}
	return 0;
}

int common_open_repo(struct common *c, struct repo *r)
{
	if (!c->store) {
		if (store_default_path(c->store_buf, sizeof(c->store_buf)) < 0) {
			log_err("no store: set --store, STASHFS_STORE or HOME");
			return -ENOENT;
		}
		c->store = c->store_buf;
	}
	return repo_open(r, c->store, c->remote, c->reads, c->n_reads);
}

/* getopt's '?': one line naming the option (getopt itself is quiet). */
int bad_option(const char *cmd, char **argv)
{
	const char *o = argv[optind - 1];

	return usage_error(cmd, "unknown option, or one without its value: '%.80s'", o);
}

int usage_error(const char *cmd, const char *fmt, ...)
{
	va_list ap;
	char line[1024];

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	fprintf(stderr, "stashfs %s: %s (see 'stashfs %s --help')\n", cmd, line, cmd);
	return EXIT_USAGE;
}

static const struct {
	const char *name;
	int (*fn)(int, char **);
	const char *what;
} commands[] = {
	{ "save", cmd_save, "snapshot a real directory, publish KEY" },
	{ "restore", cmd_restore, "materialize a snapshot into a real directory" },
	{ "mount", cmd_mount, "mount a snapshot lazily, copy-on-write" },
	{ "commit", cmd_commit, "publish a mounted view as a snapshot" },
	{ "umount", cmd_umount, "(commit, then) unmount" },
	{ "status", cmd_status, "what a mount fetched, wrote, uploaded" },
	{ "ls", cmd_ls, "keys with size, files, age" },
	{ "key", cmd_key, "a key from file contents (like hashFiles)" },
	{ "touch-sources", cmd_touch_sources, "give unchanged sources their recorded mtimes" },
	{ "gc", cmd_gc, "trim the local object cache, least recently used first" },
	{ "prune", cmd_prune, "drop old keys from the remote, delete what none uses" },
};

static void usage(FILE *f)
{
	size_t i;

	fprintf(f, "usage: stashfs COMMAND [OPTIONS]\n\n"
		   "Build-cache directories as lazily fetched, copy-on-write snapshots.\n\n"
		   "commands:\n");
	for (i = 0; i < ARRAY_SIZE(commands); i++)
		fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].what);
	fprintf(f, "\n'stashfs COMMAND --help' for a command's options; 'stashfs --version'.\n");
}

/*
 * Called as mount.stashfs (by mount(8), /etc/fstab and systemd mount units):
 *   mount.stashfs KEY DIR [-sfnv] [-o opt[,opt]...]
 * with options store=PATH, remote=URL, read-remote=URL, restore-key=PREFIX,
 * timeout=SECONDS, allow_other, preserve_owner, no_prefetch, fresh; the
 * generic ones (rw, defaults, noauto, nofail, _netdev, x-systemd.*, ...)
 * are ignored.
 */
static int mount_helper(int argc, char **argv)
{
	char *args[128], *opts = NULL, *save = NULL, *o;
	int n = 0, i;

	if (argc < 3) {
		fprintf(stderr, "usage: mount.stashfs KEY DIR [-o options]\n");
		return EXIT_USAGE;
	}
	args[n++] = "mount";
	args[n++] = argv[2];
	args[n++] = "--key";
	args[n++] = strncmp(argv[1], "stashfs#", 8) ? argv[1] : argv[1] + 8;
	for (i = 3; i < argc; i++) {
		if (!strcmp(argv[i], "-o") && i + 1 < argc)
			opts = argv[++i];
		else if (!strncmp(argv[i], "-o", 2) && argv[i][2])
			opts = argv[i] + 2;
		/* -s, -f, -n, -v from mount(8): nothing to do */
	}
	for (o = opts ? strtok_r(opts, ",", &save) : NULL; o && n < 120;
	     o = strtok_r(NULL, ",", &save)) {
		static const char *const kv[][2] = {
			{ "store=", "--store" },
			{ "remote=", "--remote" },
			{ "read-remote=", "--read-remote" },
			{ "restore-key=", "--restore-key" },
			{ "timeout=", "--timeout" },
			{ "owner=", "--owner" },
		};
		size_t k;
		int done = 0;

		for (k = 0; k < ARRAY_SIZE(kv); k++)
			if (!strncmp(o, kv[k][0], strlen(kv[k][0]))) {
				args[n++] = (char *)kv[k][1];
				args[n++] = o + strlen(kv[k][0]);
				done = 1;
			}
		if (done)
			continue;
		if (!strcmp(o, "allow_other") || !strcmp(o, "allow-other"))
			args[n++] = "--allow-other";
		else if (!strcmp(o, "preserve_owner") || !strcmp(o, "preserve-owner"))
			args[n++] = "--preserve-owner";
		else if (!strcmp(o, "no_prefetch") || !strcmp(o, "no-prefetch"))
			args[n++] = "--no-prefetch";
		else if (!strcmp(o, "fresh"))
			args[n++] = "--fresh";
		else if (!strcmp(o, "offline"))
			args[n++] = "--offline";
		else if (!strcmp(o, "quiet"))
			args[n++] = "--quiet";
		/* rw, defaults, auto, noauto, nofail, _netdev, x-systemd.*, user... */
	}
	args[n] = NULL;
	optind = 1;
	return cmd_mount(n, args);
}

/*
 * A password in a URL argument (--remote http://user:pw@host/...) would show
 * in ps for as long as the process lives, and a mount daemon lives long:
 * commands get a copy, and the argument ps reads is overwritten.
 */
static void scrub_argv(int argc, char **argv)
{
	int i;

	for (i = 1; i < argc; i++) {
		char *p = strstr(argv[i], "://"), *at, *copy;

		if (!p || !(at = strrchr(p + 3, '@')))
			continue;
		copy = strdup(argv[i]);
		if (!copy)
			continue;
		memset(p + 3, '*', (size_t)(at - (p + 3)));
		argv[i] = copy;
	}
}

int main(int argc, char **argv)
{
	size_t i;
	const char *self = strrchr(argv[0], '/');

	self = self ? self + 1 : argv[0];
	opterr = 0; /* bad options are told in one line, by bad_option */
	scrub_argv(argc, argv);
	if (!strcmp(self, "mount.stashfs"))
		return mount_helper(argc, argv);

	if (argc < 2) {
		usage(stderr);
		return EXIT_USAGE;
	}
	if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "version")) {
		printf("stashfs %s\n", STASHFS_VERSION);
		return 0;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
		usage(stdout);
		return 0;
	}
	for (i = 0; i < ARRAY_SIZE(commands); i++)
		if (!strcmp(argv[1], commands[i].name))
			return commands[i].fn(argc - 1, argv + 1);
	fprintf(stderr, "stashfs: unknown command '%s' (see 'stashfs --help')\n", argv[1]);
	return EXIT_USAGE;
}
