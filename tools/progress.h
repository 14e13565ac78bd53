/*
 * A progress line on stderr while a long command runs: only when stderr is
 * a terminal, not with --quiet, and not in CI (CI=true) unless
 * STASHFS_PROGRESS=1 asks for it.  Redrawn four times a second, erased at
 * the end so the summary line stands alone.
 */
#ifndef STASH_PROGRESS_H
#define STASH_PROGRESS_H

#include "../store/snapshot.h"

struct progress_ui;

/* NULL when no progress should be shown. */
struct progress_ui *progress_start(const char *verb, struct snap_progress *p);
void progress_stop(struct progress_ui *ui);

#endif
