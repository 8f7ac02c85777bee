/* Parallel HTTP GETs with libcurl multi: every request of a round runs at
 * once on one multi handle whose connection cache is kept between rounds
 * (keep-alive).  Transport errors, timeouts and 5xx are retried with
 * exponential backoff and full jitter; 429 waits for Retry-After (when it
 * fits into retry_after_max, else the request fails at once and the host is
 * left alone until then).  Each failed attempt is logged once, with the
 * label (symbol) and the cause. */
#ifndef COLLECTOR_FETCH_H
#define COLLECTOR_FETCH_H

#include <stddef.h>

typedef struct {
    const char *provider;        /* for log lines: "yahoo" */
    const char *user_agent;
    int timeout_ms;              /* whole transfer */
    int connect_timeout_ms;
    int retries;                 /* extra attempts after the first */
    int backoff_ms;              /* first retry delay; doubles, capped */
    int backoff_max_ms;
    int retry_after_max_ms;      /* longest Retry-After waited for in a round */
    int max_parallel;            /* concurrent transfers */
    int abort_fd;                /* readable -> stop the round; -1 = none */
} fetch_options;

typedef struct {
    const char *url;             /* in */
    const char *label;           /* in: symbol or feed name for logs */
    const char *auth;            /* in: "Authorization: Bearer ..." or NULL */
    long status;                 /* out: HTTP status, 0 = no response */
    char *body;                  /* out: malloc'd, NUL-terminated */
    size_t len;
    int attempts;                /* out */
    char err[192];               /* out: cause when status is 0 or >= 400 */
    /* private */
    long long due_ms;
    int done;
    void *easy;
    void *headers;
    size_t cap;
} fetch_req;

typedef struct fetch fetch;

fetch *fetch_new(const fetch_options *o);
void fetch_free(fetch *f);

/* Runs every request to completion (success, final HTTP status, or retries
 * exhausted).  Returns the number that got a 2xx answer, or -1 when the
 * round was aborted through abort_fd. */
int fetch_run(fetch *f, fetch_req *reqs, size_t n);

/* Frees the bodies of n requests. */
void fetch_reqs_clear(fetch_req *reqs, size_t n);

/* Epoch ms until which the last 429 asked us to wait (0 = none). */
long long fetch_hold_until(const fetch *f);

#endif
