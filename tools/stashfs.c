/* The stashfs command: main(), the dispatch to subcommands, mount.stashfs. */
#define _GNU_SOURCE
#include "cli.h"

#include <stdlib.h>
#include <string.h>

#ifndef STASHFS_VERSION
#define STASHFS_VERSION "0.0.0"
#endif

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
