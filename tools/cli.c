/*
 * What every command shares (tools/cli.h): the environment and the config
 * file, read here and nowhere else, the common options, opening the repo.
 */
#define _GNU_SOURCE
#include "cli.h"
#include "../fs/mount.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

/*
 * The config file: $STASHFS_CONFIG, else $XDG_CONFIG_HOME/stashfs/config,
 * else ~/.config/stashfs/config.  "name = value" lines, '#' comments:
 * remote, read-remotes (space-separated), store, cache-size, timeout.
 * The environment overrides it and the command line overrides both.
 */
static void load_config(struct common *c, double *timeout)
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
				*timeout = t;
			else
				log_warn("config %s:%d: bad timeout '%s'", path, n, v);
		} else {
			log_warn("config %s:%d: unknown setting '%s'", path, n, k);
		}
	}
	fclose(f);
}

static const char *env(const char *name)
{
	const char *v = getenv(name);

	return v && *v ? v : NULL;
}

static int env_is_1(const char *name)
{
	const char *v = getenv(name);

	return v && !strcmp(v, "1");
}

/* What the remotes are opened with (remote/remote.h): the environment's. */
static void remote_env(struct common *c, double cfg_timeout)
{
	struct remote_config *rc = &c->rcfg;
	const char *v, *home = env("HOME");

	rc->timeout = cfg_timeout;
	if ((v = env("STASHFS_TIMEOUT")) && parse_seconds(v, &rc->timeout))
		log_warn("STASHFS_TIMEOUT: bad seconds '%.40s'; using %.0f", v,
			 cfg_timeout > 0 ? cfg_timeout : 60.0);
	rc->insecure = env_is_1("STASHFS_INSECURE");
	rc->offline = env_is_1("STASHFS_OFFLINE");
	rc->token = env("STASHFS_TOKEN");
	rc->read_token = getenv("STASHFS_READ_TOKEN"); /* empty: none for read remotes */
	rc->read_token_set = rc->read_token != NULL;
	rc->netrc = env("NETRC");
	rc->ca_bundle = env("STASHFS_CA_BUNDLE");
	rc->client_cert = env("STASHFS_CLIENT_CERT");
	rc->client_key = env("STASHFS_CLIENT_KEY");
	rc->key_id = env("AWS_ACCESS_KEY_ID");
	rc->secret = env("AWS_SECRET_ACCESS_KEY");
	rc->session_token = env("AWS_SESSION_TOKEN");
	rc->region = env("AWS_REGION");
	if (!rc->region)
		rc->region = env("AWS_DEFAULT_REGION");
	rc->endpoint = env("STASHFS_S3_ENDPOINT");
	if (!rc->endpoint)
		rc->endpoint = env("AWS_ENDPOINT_URL");
	if ((v = getenv("STASHFS_S3_PATH_STYLE")))
		rc->path_style = *v == '1' ? 1 : -1;
	rc->aws_profile = env("AWS_PROFILE");
	if (!rc->aws_profile)
		rc->aws_profile = env("AWS_DEFAULT_PROFILE");
	if ((v = env("AWS_SHARED_CREDENTIALS_FILE")))
		snprintf(c->aws_credentials, sizeof(c->aws_credentials), "%s", v);
	else if (home)
		snprintf(c->aws_credentials, sizeof(c->aws_credentials), "%s/.aws/credentials",
			 home);
	if ((v = env("AWS_CONFIG_FILE")))
		snprintf(c->aws_config, sizeof(c->aws_config), "%s", v);
	else if (home)
		snprintf(c->aws_config, sizeof(c->aws_config), "%s/.aws/config", home);
	rc->aws_credentials = c->aws_credentials;
	rc->aws_config = c->aws_config;
}

void common_init(struct common *c)
{
	const char *e;
	double cfg_timeout = 0;

	memset(c, 0, sizeof(*c));
	load_config(c, &cfg_timeout);
	remote_env(c, cfg_timeout);
	c->store_env = env("STASHFS_STORE");
	/* the default store: STASHFS_STORE, else the user's cache directory */
	if (c->store_env)
		snprintf(c->default_store, sizeof(c->default_store), "%s", c->store_env);
	else if ((e = env("XDG_CACHE_HOME")))
		snprintf(c->default_store, sizeof(c->default_store), "%s/stashfs", e);
	else if ((e = env("HOME")))
		snprintf(c->default_store, sizeof(c->default_store), "%s/.cache/stashfs", e);
	c->no_mem_reads = getenv("STASHFS_NO_MEM_READS") != NULL;
	c->writeback = getenv("STASHFS_WRITEBACK") != NULL;
	c->fuse_debug = getenv("STASHFS_FUSE_DEBUG") != NULL;
	c->remote = getenv("STASHFS_REMOTE");
	if (!c->remote || !*c->remote)
		c->remote = c->cfg_remote;
	if (!c->store_env && c->cfg_store)
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
	const char *want = c->store_given ? c->store : c->store_env;

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
		c->rcfg.timeout = t;
		return 1;
	}
	case OPT_INSECURE: c->rcfg.insecure = 1; return 1;
	case OPT_OFFLINE: c->rcfg.offline = 1; return 1;
	}
	return 0;
}

int common_open_repo(struct common *c, struct repo *r)
{
	if (!c->store) {
		if (!*c->default_store) {
			log_err("no store: set --store, STASHFS_STORE or HOME");
			return -ENOENT;
		}
		c->store = c->default_store;
	}
	c->spec.store_path = c->store;
	c->spec.remote = c->remote;
	c->spec.reads = c->reads;
	c->spec.n_reads = c->n_reads;
	c->spec.cfg = &c->rcfg;
	return repo_open(r, &c->spec);
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
