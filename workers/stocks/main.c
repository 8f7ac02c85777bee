/* insite-stocks: market data and watchlists over HTTP (docs/stocks.md).
 *
 *   insite-stocks [-c FILE]      HTTP API on stocks.http_port (127.0.0.1)
 *
 * Reads what insite-collector stores (PostgreSQL stock_prices, the Redis
 * history of stock_updates:{symbol}) and what insite-analytics stores
 * (sentiment_data); owns the watchlists table. */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "metrics.h"
#include "pg.h"
#include "redis_publish.h"
#include "runtime.h"
#include "worker.h"
#include "stocks.h"

static const insite_config_key stocks_keys[] = {
    { "stocks.http_port", INSITE_CFG_INT, "8081", 0, 65535,
      "HTTP API port on 127.0.0.1 (0 = any free port)" },
    { "stocks.http_threads", INSITE_CFG_INT, "8", 1, 64,
      "HTTP threads, each with its own PostgreSQL and Redis connection when busy" },
    { "stocks.default_timezone", INSITE_CFG_STRING, "America/New_York", 0, 0,
      "exchange time zone of symbols without a stock_symbols row (1d bars are its local days)" },
    { "stocks.page_default", INSITE_CFG_INT, "500", 1, 100000, "bars per page without ?limit=" },
    { "stocks.page_max", INSITE_CFG_INT, "5000", 1, 100000, "largest ?limit= for bars" },
    { "stocks.watchlists_max", INSITE_CFG_INT, "20", 1, 1000, "watchlists per user" },
    { "stocks.watchlist_symbols_max", INSITE_CFG_INT, "50", 1, 1000, "symbols per watchlist" },
    { "stocks.quote_max_age", INSITE_CFG_DURATION, "2s", 0, 3600000,
      "Cache-Control max-age of a quote" },
    { "stocks.open_max_age", INSITE_CFG_DURATION, "5s", 0, 3600000,
      "Cache-Control max-age of bars that may still change (the current bucket)" },
    { "stocks.closed_max_age", INSITE_CFG_DURATION, "1d", 0, 31536000000.0,
      "Cache-Control max-age of bars that are final" },
    { "stocks.bars_cache_mb", INSITE_CFG_INT, "64", 0, 65536,
      "MiB of final bars pages kept in the worker, invalidated by PostgreSQL NOTIFY (0 = off)" },
};

static int health(json_t *checks, void *ud)
{
    stocks_ctx *ctx = ud;
    json_t *reply = NULL;
    stocks_conn *conn = stocks_acquire(ctx, &reply);
    int ok = conn != NULL;
    if (ok) {
        PGresult *r = stocks_query(ctx, conn, "health check", "SELECT 1", 0, NULL, &reply);
        ok = r != NULL;
        PQclear(r);
        stocks_release(ctx, conn);
    }
    json_decref(reply);
    json_object_set_new(checks, "postgresql", json_string(ok ? "ok" : "unreachable"));
    return ok ? 0 : -1;
}

static int migrate(const insite_config *cfg)
{
    PGconn *c = insite_pg_open(insite_config_string(cfg, "pg.dsn"),
                               insite_config_string(cfg, "pg.migrations_dir"), "postgresql");
    if (c == NULL)
        return -1;
    PQfinish(c);
    return 0;
}

static int serve(insite_runtime *rt, insite_config *cfg, stocks_ctx *ctx)
{
    insite_metrics *metrics = insite_metrics_new("stocks");
    if (metrics == NULL)
        return 1;
    ctx->req_quote = insite_metrics_counter(metrics, "quote_requests", "Quotes answered (200).");
    ctx->req_bars = insite_metrics_counter(metrics, "bars_requests", "Bar pages answered (200).");
    ctx->req_search = insite_metrics_counter(metrics, "search_requests", "Searches answered.");
    ctx->req_sentiment = insite_metrics_counter(metrics, "sentiment_requests",
                                                "Sentiment series answered.");
    ctx->req_watchlists = insite_metrics_counter(metrics, "watchlist_requests",
                                                 "Authenticated watchlist requests.");
    ctx->bars_cache_hits = insite_metrics_counter(metrics, "bars_cache_hits",
                                                  "Bar pages answered from the worker's cache.");
    ctx->bars_cache_misses = insite_metrics_counter(metrics, "bars_cache_misses",
                                                    "Bar requests the worker's cache did not hold.");
    ctx->bars_seconds = insite_metrics_histogram(metrics, "bars_query_seconds",
                                                 "PostgreSQL time of a bars query.",
                                                 insite_metrics_latency_buckets,
                                                 insite_metrics_latency_nbuckets);
    const insite_http_route routes[] = {
        { "GET", "/api/v1/stocks", stocks_api_market, ctx },
        { "GET", "/api/v1/watchlists", stocks_api_watchlists, ctx },
        { "PUT", "/api/v1/watchlists", stocks_api_watchlists, ctx },
    };
    insite_http_options ho = {
        .service = "stocks", .port = (int)insite_config_int(cfg, "stocks.http_port"),
        .body_max = 64 * 1024, .routes = routes, .nroutes = sizeof(routes) / sizeof(routes[0]),
        .metrics = metrics, .health = health, .health_ud = ctx,
        .threads = (unsigned)insite_config_int(cfg, "stocks.http_threads"),
    };
    stocks_listener listener = {
        .dsn = ctx->pg_dsn, .cache = ctx->bars_cache,
        .applied = insite_metrics_counter(metrics, "bars_cache_invalidations",
                                          "Change notifications (NOTIFY insite_stock_bars) applied "
                                          "to the bars cache."),
    };
    int listening = ctx->bars_cache_bytes > 0;
    if (listening && stocks_listener_start(&listener) != 0) {
        insite_metrics_free(metrics);
        return 1;
    }
    insite_http *h = insite_http_start(&ho);
    if (h != NULL) {
        while (!rt->draining)
            if (insite_runtime_wait(rt, 1000, -1) < 0)
                break;
        insite_http_stop(h);       /* no handler runs past this */
    }
    if (listening)
        stocks_listener_stop(&listener);
    stocks_pool_free(ctx);
    insite_metrics_free(metrics);
    return h != NULL ? 0 : 1;
}

static int run(insite_runtime *rt, insite_config **cfgp, void *ud)
{
    insite_config *cfg = *cfgp;
    stocks_ctx ctx = { .lock = PTHREAD_MUTEX_INITIALIZER, .freed = PTHREAD_COND_INITIALIZER };
    int rc = 1;

    insite_redis_options ro;

    (void)ud;
    insite_redis_options_from_config(cfg, &ro);
    ctx.pg_dsn = insite_config_string(cfg, "pg.dsn");
    ctx.redis_host = ro.host;
    ctx.redis_port = ro.port;
    ctx.redis_password = ro.password ? ro.password : "";
    ctx.redis_prefix = ro.prefix;
    ctx.redis_timeout_ms = ro.command_timeout_ms;
    ctx.default_tz = insite_config_string(cfg, "stocks.default_timezone");
    ctx.page_default = (long)insite_config_int(cfg, "stocks.page_default");
    ctx.page_max = (long)insite_config_int(cfg, "stocks.page_max");
    ctx.watchlists_max = (long)insite_config_int(cfg, "stocks.watchlists_max");
    ctx.watchlist_symbols_max = (long)insite_config_int(cfg, "stocks.watchlist_symbols_max");
    ctx.quote_max_age = (long)(insite_config_duration_ms(cfg, "stocks.quote_max_age") / 1000);
    ctx.open_max_age = (long)(insite_config_duration_ms(cfg, "stocks.open_max_age") / 1000);
    ctx.closed_max_age = (long)(insite_config_duration_ms(cfg, "stocks.closed_max_age") / 1000);
    ctx.bars_cache_bytes = (size_t)insite_config_int(cfg, "stocks.bars_cache_mb") << 20;
    if ((ctx.bars_cache = stocks_bars_cache_new(ctx.bars_cache_bytes)) == NULL) {
        insite_log_error("stocks: out of memory for the bars cache");
        goto out;
    }
    if (ctx.page_default > ctx.page_max) {
        insite_log_error("stocks.page_default (%ld) is larger than stocks.page_max (%ld)",
                         ctx.page_default, ctx.page_max);
        goto out;
    }
    /* the tables this worker reads may belong to workers not started yet */
    if (migrate(cfg) != 0)
        goto out;
    rc = serve(rt, cfg, &ctx);
out:
    stocks_bars_cache_free(ctx.bars_cache);
    return rc;
}

int main(int argc, char **argv)
{
    const insite_worker_keys keys[] = {
        { insite_pg_config_keys, insite_pg_config_nkeys },
        { insite_redis_config_keys, insite_redis_config_nkeys },
        INSITE_WORKER_KEYS(stocks_keys),
    };
    const insite_worker_options o = {
        .name = "insite-stocks", .usage = "", .keys = keys,
        .nkeys = sizeof(keys) / sizeof(keys[0]), .run = run,
    };

    /* A bars page is tens of KB built and freed per request on each HTTP
     * thread; with glibc's defaults every free gives the pages back
     * (madvise, or munmap past the mmap threshold) and the next request
     * faults them in again, with a TLB shootdown across the threads each
     * time: keep them.  Measured: 4.5 -> 2.6 ms of worker CPU a request. */
    mallopt(M_MMAP_THRESHOLD, 4 << 20);
    mallopt(M_TRIM_THRESHOLD, 64 << 20);
    return insite_worker_main(&o, argc, argv);
}
