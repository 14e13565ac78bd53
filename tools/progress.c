/* The progress line; see progress.h. */
#define _GNU_SOURCE
#include "progress.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct progress_ui {
	const char *verb;
	struct snap_progress *p;
	pthread_t th;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int stop;
	int eager; /* asked for with STASHFS_PROGRESS=1: draw from the start */
	double t0;
};

static void draw(struct progress_ui *ui)
{
	uint64_t done = __atomic_load_n(&ui->p->done_bytes, __ATOMIC_RELAXED);
	uint64_t total = ui->p->total_bytes;
	double secs = mono_sec() - ui->t0;
	char d[32], t[32], line[256];
	int pct = total ? (int)(done * 100 / total) : 0;
	int n;

	fmt_size(d, sizeof(d), done);
	fmt_size(t, sizeof(t), total);
	n = snprintf(line, sizeof(line), "\r%s: %3d%% %s of %s, %.0f MB/s\033[K", ui->verb, pct, d,
		     t, secs > 0 ? done / secs / 1e6 : 0.0);
	if (write(2, line, (size_t)n) < 0) {
		/* a progress line is best effort */
	}
}

static void *loop(void *arg)
{
	struct progress_ui *ui = arg;

	pthread_mutex_lock(&ui->lock);
	while (!ui->stop) {
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 250000000;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		pthread_cond_timedwait(&ui->cond, &ui->lock, &ts);
		if (!ui->stop && (ui->eager || mono_sec() - ui->t0 > 0.5))
			draw(ui);
	}
	pthread_mutex_unlock(&ui->lock);
	return NULL;
}

struct progress_ui *progress_start(const char *verb, struct snap_progress *p)
{
	const char *ci = getenv("CI"), *force = getenv("STASHFS_PROGRESS");
	struct progress_ui *ui;

	if (log_quiet || !p)
		return NULL;
	if (!(force && *force == '1')) {
		if (!isatty(2) || (ci && *ci && strcmp(ci, "false") != 0))
			return NULL;
	}
	ui = calloc(1, sizeof(*ui));
	if (!ui)
		return NULL;
	ui->verb = verb;
	ui->p = p;
	ui->eager = force && *force == '1';
	ui->t0 = mono_sec();
	pthread_mutex_init(&ui->lock, NULL);
	pthread_cond_init(&ui->cond, NULL);
	if (pthread_create(&ui->th, NULL, loop, ui) != 0) {
		free(ui);
		return NULL;
	}
	return ui;
}

void progress_stop(struct progress_ui *ui)
{
	if (!ui)
		return;
	pthread_mutex_lock(&ui->lock);
	ui->stop = 1;
	pthread_cond_signal(&ui->cond);
	pthread_mutex_unlock(&ui->lock);
	pthread_join(ui->th, NULL);
	if (ui->eager)
		draw(ui); /* the final state, for logs that asked for progress */
	if (write(2, "\r\033[K", 4) < 0) {
		/* best effort */
	}
	pthread_mutex_destroy(&ui->lock);
	pthread_cond_destroy(&ui->cond);
	free(ui);
}
