/* insite-stocks: state shared by the HTTP handlers (docs/stocks.md).
 *
 * libmicrohttpd runs the handlers on one thread, one request at a time;
 * the PostgreSQL and Redis connections are still guarded by a mutex so a
 * thread pool can be switched on later without touching the handlers. */
#ifndef STOCKS_H
#define STOCKS_H

#include <pthread.h>

#include <hiredis/hiredis.h>
#include <jansson.h>
#include <libpq-fe.h>

#include "http.h"
#include "metrics.h"
#include "params.h"

typedef struct {
    const char *pg_dsn;
    PGconn *pg;                    /* lazily connected */
    redisContext *redis;           /* lazily connected, NULL after an error */
    const char *redis_host, *redis_password, *redis_prefix;
    int redis_port, redis_timeout_ms;
    pthread_mutex_t lock;          /* pg and redis */

    const char *default_tz;        /* symbols without a stock_symbols row */
    long page_default, page_max;   /* bars per page */
    long watchlists_max, watchlist_symbols_max;
    long quote_max_age, open_max_age, closed_max_age;   /* Cache-Control, s */

    insite_counter *req_quote, *req_bars, *req_search, *req_sentiment, *req_watchlists;
    insite_histogram *bars_seconds;
} stocks_ctx;

/* GET /api/v1/stocks, /api/v1/stocks/{symbol}[/bars|/sentiment] */
int stocks_api_market(const insite_http_request *req, json_t **reply, void *ud);
/* GET and PUT /api/v1/watchlists */
int stocks_api_watchlists(const insite_http_request *req, json_t **reply, void *ud);

/* The connection with the lock held, or NULL (lock released, 503 reply set). */
PGconn *stocks_pg_acquire(stocks_ctx *ctx, json_t **reply);
/* Releases the lock taken by stocks_pg_acquire. */
void stocks_release(stocks_ctx *ctx);
/* With the lock held: the newest message of the Redis history of channel
 * stock_updates:<symbol>, parsed; NULL when none or Redis is unreachable
 * (logged; the caller falls back to PostgreSQL). */
json_t *stocks_redis_last_update(stocks_ctx *ctx, const char *symbol);

/* Runs a query with the lock held; NULL on error (logged with what, the
 * reply set to a 500 in the error shape without PostgreSQL's text). */
PGresult *stocks_query(stocks_ctx *ctx, PGconn *pg, const char *what, const char *sql,
                       int n, const char *const *params, json_t **reply);

/* Response helpers: Cache-Control "public, max-age=N" (or private,
 * no-store when max_age < 0), Last-Modified from epoch seconds (<= 0:
 * none), ETag on a 200. */
void stocks_cache_headers(const insite_http_request *req, long max_age, int64_t last_modified);

#endif
