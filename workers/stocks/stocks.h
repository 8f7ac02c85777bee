/* insite-stocks: state shared by the HTTP handlers (docs/stocks.md).
 *
 * libmicrohttpd runs the handlers on a pool of stocks.http_threads threads.
 * A handler takes a connection pair (PostgreSQL + Redis) from the pool for
 * the length of its request (stocks_acquire / stocks_release): one pair per
 * thread at most, so no request waits for another's query.  Everything else
 * in the context is read-only after start, or atomic (metrics), or guarded
 * by its own lock (the known-symbol cache in api_market.c). */
#ifndef STOCKS_H
#define STOCKS_H

#include <pthread.h>

#include <hiredis/hiredis.h>
#include <jansson.h>
#include <libpq-fe.h>

#include "bars_cache.h"
#include "http.h"
#include "metrics.h"
#include "params.h"

#define STOCKS_STMTS_MAX 32
#define STOCKS_CONNS_MAX 64       /* = the HTTP layer's largest thread pool */

/* One request's connections, owned by the pool between requests. */
typedef struct stocks_conn {
    PGconn *pg;                    /* lazily (re)connected */
    redisContext *redis;           /* lazily connected, NULL after an error */
    const char *prepared[STOCKS_STMTS_MAX];   /* SQL texts prepared on pg as
                                                 "s<index>", by address */
    int nprepared;
    struct stocks_conn *next;      /* the pool's free list */
} stocks_conn;

typedef struct {
    const char *pg_dsn;
    const char *redis_host, *redis_password, *redis_prefix;
    int redis_port, redis_timeout_ms;
    pthread_mutex_t lock;          /* the pool below */
    pthread_cond_t freed;          /* a pair went back to free_conns */
    stocks_conn *free_conns;       /* idle pairs */
    stocks_conn *all_conns[STOCKS_CONNS_MAX];   /* every pair made, closed at exit */
    int nconns;

    const char *default_tz;        /* symbols without a stock_symbols row */
    long page_default, page_max;   /* bars per page */
    long watchlists_max, watchlist_symbols_max;
    long quote_max_age, open_max_age, closed_max_age;   /* Cache-Control, s */

    stocks_bars_cache *bars_cache;  /* closed pages (bars_cache.h) */
    size_t bars_cache_bytes;        /* its bound; 0 = off, no listener */

    insite_counter *req_quote, *req_bars, *req_search, *req_sentiment, *req_watchlists;
    insite_counter *bars_cache_hits, *bars_cache_misses;
    insite_histogram *bars_seconds;
} stocks_ctx;

/* bars_listen.c: the thread that keeps bars_cache online and invalidated
 * from PostgreSQL's NOTIFY insite_stock_bars. */
typedef struct {
    const char *dsn;
    stocks_bars_cache *cache;
    insite_counter *applied;       /* notifications applied */
    pthread_t thread;
    int stop;                      /* atomic */
} stocks_listener;

int stocks_listener_start(stocks_listener *l);   /* 0, or -1 (logged) */
void stocks_listener_stop(stocks_listener *l);   /* joins the thread */

/* GET /api/v1/stocks, /api/v1/stocks/{symbol}[/bars|/sentiment] */
int stocks_api_market(const insite_http_request *req, json_t **reply, void *ud);
/* GET and PUT /api/v1/watchlists */
int stocks_api_watchlists(const insite_http_request *req, json_t **reply, void *ud);

/* A connection pair for this request, PostgreSQL connected; NULL with a 503
 * reply set when PostgreSQL is unreachable.  Give it back with
 * stocks_release() on every path. */
stocks_conn *stocks_acquire(stocks_ctx *ctx, json_t **reply);
void stocks_release(stocks_ctx *ctx, stocks_conn *c);
/* Closes every pair (the HTTP server is stopped). */
void stocks_pool_free(stocks_ctx *ctx);
/* The newest message of the Redis history of channel stock_updates:<symbol>,
 * parsed; NULL when none or Redis is unreachable (logged; the caller falls
 * back to PostgreSQL). */
json_t *stocks_redis_last_update(stocks_ctx *ctx, stocks_conn *c, const char *symbol);

/* Runs sql, a string that lives as long as the process (a static array or
 * literal): prepared once per connection, keyed by its address, then
 * executed.  NULL on error (logged with what, the reply set to a 500 in the
 * error shape without PostgreSQL's text). */
PGresult *stocks_query(stocks_ctx *ctx, stocks_conn *c, const char *what, const char *sql,
                       int n, const char *const *params, json_t **reply);

/* bars_json.c: the reply of a bars page, the JSON object head (serialised
 * by jansson, "{...}") with "bars":[...] appended from rows [0, n) of r
 * (columns: bucket epoch, open, high, low, close, volume, minutes), then a
 * newline.  NULL when out of memory (logged). */
char *stocks_bars_text(PGresult *r, int n, const char *head);

/* Response helpers: Cache-Control "public, max-age=N" (or private,
 * no-store when max_age < 0), Last-Modified from epoch seconds (<= 0:
 * none), ETag on a 200. */
void stocks_cache_headers(const insite_http_request *req, long max_age, int64_t last_modified);

#endif
