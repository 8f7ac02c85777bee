/* The job API (on the runtime's HTTP server) and the job runner.
 *
 *   POST /api/v1/collect/stocks     {"symbols":[...],"priority":"HIGH"}
 *   POST /api/v1/collect/sentiment  {"symbols":[...],"sources":["rss",...]}
 *        -> 202 {"job_id","status":"started","symbols"}
 *   GET  /api/v1/collect/status/{job_id}
 *        -> {"job_id","kind","status":"running|completed|failed","progress":0..100,"error"?}
 *
 * Jobs live in PostgreSQL (collection_jobs), so they survive a restart: the
 * handlers insert and read rows on their own connection; the main loop
 * claims pending rows (highest priority first) and runs them.  Jobs a killed
 * collector left running are run again at start (they are idempotent). */
#ifndef COLLECTOR_JOBS_H
#define COLLECTOR_JOBS_H

#include "app.h"
#include "http.h"

typedef struct jobs jobs;

/* wake_fd: written (one byte) when a job was queued. */
jobs *jobs_new(app *a, const char *dsn, int wake_fd);
void jobs_free(jobs *j);
/* The three routes, for insite_http_options. */
size_t jobs_routes(jobs *j, insite_http_route *routes, size_t max);
/* At start: running -> pending. */
void jobs_recover(app *a);
/* Main thread: claims and runs every pending job. */
void jobs_run_pending(app *a);

#endif
