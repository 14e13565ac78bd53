/* The stashfs command: dispatch to subcommands, shared option handling. */
#define _GNU_SOURCE
#include "cli.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#ifndef STASHFS_VERSION
#define STASHFS_VERSION "0.0.0"
#endif

void common_init(struct common *c)
{
	const char *e;

	memset(c, 0, sizeof(*c));
	c->remote = getenv("STASHFS_REMOTE");
	e = getenv("STASHFS_READ_REMOTES");
	if (e && *e) {
		char *save = NULL, *tok;

		c->reads_env = strdup(e);
		for (tok = c->reads_env ? strtok_r(c->reads_env, " \t\n", &save) : NULL;
		     tok && c->n_reads < REPO_MAX_READS; tok = strtok_r(NULL, " \t\n", &save))
			c->reads[c->n_reads++] = tok;
	}
}

void common_free(struct common *c)
{
	free(c->reads_env);
}

int common_opt(struct common *c, int opt, const char *arg)
{
	switch (opt) {
	case OPT_STORE:
		c->store = arg;
		return 1;
	case OPT_REMOTE:
		c->remote = arg;
		return 1;
	case OPT_READ_REMOTE:
		if (c->reads_env) {
			/* the command line replaces the environment's list */
			free(c->reads_env);
			c->reads_env = NULL;
			c->n_reads = 0;
		}
		if (c->n_reads == REPO_MAX_READS)
			return -1;
		c->reads[c->n_reads++] = (char *)arg;
		return 1;
	case OPT_JSON:
		c->json = 1;
		return 1;
	case OPT_QUIET:
		c->quiet = 1;
		log_quiet = 1;
		return 1;
	case OPT_VERBOSE:
		log_verbose = 1;
		return 1;
	case OPT_TIMEOUT:
		if (strtod(arg, NULL) <= 0)
			return -1;
		/* the remotes read it when they open (the daemon inherits it) */
		setenv("STASHFS_TIMEOUT", arg, 1);
		return 1;
	case OPT_INSECURE:
		setenv("STASHFS_INSECURE", "1", 1);
		return 1;
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

int main(int argc, char **argv)
{
	size_t i;

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
