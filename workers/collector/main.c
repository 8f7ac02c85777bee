/* insite-collector: quotes, bars and social posts into Redis, Kafka and
 * PostgreSQL.
 *
 *   insite-collector -c collector.conf [--check-config] [--help]
 *
 * Every collector.interval the watchlist is fetched from the configured
 * feed (provider.h) and pushed through the publish path (pipeline.c); every
 * social.interval the enabled social sources are polled (social.h); jobs
 * posted to the HTTP API (jobs.h) run in between.  SIGTERM/SIGINT finish
 * the current step and exit; SIGHUP reloads the config and rebuilds the
 * feed. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "app.h"
#include "clock.h"
#include "http.h"
#include "jobs.h"
#include "log.h"
#include "pg.h"
#include "runtime.h"
#include "social.h"
#include "store.h"
#include "worker.h"

static const insite_config_key collector_keys[] = {
    { "collector.symbols", INSITE_CFG_STRING_LIST, "AAPL,MSFT,GOOGL,AMZN,TSLA", 0, 0,
      "watchlist polled every collector.interval" },
    { "collector.job_symbols", INSITE_CFG_STRING_LIST, "", 0, 0,
      "symbols jobs may ask for besides the watchlist (others get 400)" },
    { "collector.interval", INSITE_CFG_DURATION, "5s", 100, 3600000, "quote polling period" },
    { "collector.http_port", INSITE_CFG_INT, "8091", 0, 65535,
      "job API / healthz / metrics port on 127.0.0.1 (0 = any free port)" },
    { "collector.source_service", INSITE_CFG_STRING, "collector", 0, 0,
      "source_service in Kafka envelopes" },
};

static int check_symbols(const insite_config *cfg)
{
    const char *lists[2] = { "collector.symbols", "collector.job_symbols" };
    for (int l = 0; l < 2; l++) {
        char *const *s;
        size_t n = insite_config_list(cfg, lists[l], &s);
        for (size_t i = 0; i < n; i++)
            if (!symbol_valid(s[i])) {
                insite_log_error("%s: \"%s\" is not a symbol ([A-Za-z0-9.^=-], up to 15)",
                                 lists[l], s[i]);
                return -1;
            }
    }
    return 0;
}

static void init_metrics(app *a)
{
    insite_metrics *m = a->metrics;
    a->m.rounds = insite_metrics_counter(m, "rounds", "Quote polling rounds.");
    a->m.published = insite_metrics_counter(m, "quotes_published", "stock_update events published.");
    a->m.unchanged = insite_metrics_counter(m, "quotes_unchanged", "Quotes not published: nothing changed.");
    a->m.rejected = insite_metrics_counter(m, "quotes_rejected", "Symbols whose fetch or response failed.");
    a->m.bars = insite_metrics_counter(m, "bars_published", "stock_bar events published.");
    a->m.redis_errors = insite_metrics_counter(m, "redis_errors", "Failed Redis publishes.");
    a->m.kafka_errors = insite_metrics_counter(m, "kafka_errors", "Kafka messages not accepted.");
    a->m.pg_errors = insite_metrics_counter(m, "pg_errors", "Failed PostgreSQL writes.");
    a->m.posts = insite_metrics_counter(m, "posts_new", "New social posts stored.");
    a->m.jobs = insite_metrics_counter(m, "jobs_run", "Collection jobs run.");
}

static int health(json_t *checks, void *ud)
{
    app *a = ud;
    char err[256];
    int rc = insite_redis_ping(a->redis, err, sizeof(err));
    json_object_set_new(checks, "redis", json_string(rc == 0 ? "ok" : err));
    json_object_set_new(checks, "feed", json_string(a->prov ? a->prov->name : "none"));
    return rc;
}

static int open_backends(app *a)
{
    insite_redis_options ro;
    insite_kafka_options ko;

    insite_redis_options_from_config(a->cfg, &ro);
    insite_kafka_options_from_config(a->cfg, &ko);
    ko.metrics = a->metrics;     /* insite_kafka_* producer metrics */
    a->redis = insite_redis_new(&ro);
    a->kafka = insite_kafka_new(&ko);
    a->pg = store_open(insite_config_string(a->cfg, "pg.dsn"),
                       insite_config_string(a->cfg, "pg.migrations_dir"));
    a->prov = provider_new(a->cfg, a->abort_fd);
    a->social = social_new(a->cfg, a->abort_fd);
    return a->redis && a->kafka && a->pg && a->prov && a->social ? 0 : -1;
}

static void close_backends(app *a)
{
    provider_free(a->prov);
    social_free(a->social);
    if (a->kafka)
        insite_kafka_close(a->kafka);
    insite_redis_free(a->redis);
    if (a->pg)
        PQfinish(a->pg);
}

static void round_quotes(app *a)
{
    char *const *syms;
    size_t n = insite_config_list(a->cfg, "collector.symbols", &syms);
    double t0 = insite_clock_mono_s();
    int ok = app_collect(a, syms, n, NULL, NULL, NULL, 0);

    insite_counter_inc(a->m.rounds);
    if (ok >= 0)
        insite_log_debug("round: %d of %zu symbols ok in %.0fms", ok, n,
                         (insite_clock_mono_s() - t0) * 1000);
}

static void round_social(app *a)
{
    char *const *syms;
    char err[512];
    size_t n = insite_config_list(a->cfg, "collector.symbols", &syms);
    if (social_enabled(a->social) != 0)
        social_collect(a, syms, n, social_enabled(a->social), err, sizeof(err));
}

static void reload(app *a, insite_runtime *rt)
{
    if (!insite_runtime_maybe_reload(rt, &a->cfg))
        return;
    if (check_symbols(a->cfg) != 0)
        insite_log_warn("reload: keeping running with the bad watchlist entries rejected per round");
    provider *p = provider_new(a->cfg, a->abort_fd);
    social *s = social_new(a->cfg, a->abort_fd);
    if (p == NULL || s == NULL) {
        insite_log_error("reload: cannot rebuild the feed; keeping the old one");
        provider_free(p);
        social_free(s);
        return;
    }
    provider_free(a->prov);
    social_free(a->social);
    a->service = insite_config_string(a->cfg, "collector.source_service");
    a->prov = p;
    a->social = s;
    insite_log_info("reload: config %s applied (feed %s)", insite_config_path(a->cfg), p->name);
}

static void drain_pipe(int fd)
{
    char buf[64];
    while (read(fd, buf, sizeof(buf)) > 0)
        ;
}

static int run(app *a, insite_runtime *rt)
{
    int wake[2];
    jobs *j = NULL;
    insite_http *h = NULL;
    insite_http_route routes[4];

    if (pipe2(wake, O_NONBLOCK | O_CLOEXEC) != 0) {
        insite_log_error("pipe: %m");
        return 1;
    }
    j = jobs_new(a, insite_config_string(a->cfg, "pg.dsn"), wake[1]);
    insite_http_options ho = {
        .service = "collector", .port = (int)insite_config_int(a->cfg, "collector.http_port"),
        .routes = routes, .nroutes = j ? jobs_routes(j, routes, 4) : 0,
        .metrics = a->metrics, .health = health, .health_ud = a,
    };
    if (j == NULL || (h = insite_http_start(&ho)) == NULL) {
        jobs_free(j);
        close(wake[0]);
        close(wake[1]);
        return 1;
    }
    insite_log_info("collector: feed %s, every %llds, API on 127.0.0.1:%d", a->prov->name,
                    insite_config_duration_ms(a->cfg, "collector.interval") / 1000,
                    insite_http_port(h));
    jobs_recover(a);

    long long next_quotes = 0, next_social = 0;
    while (!rt->draining) {
        long long now = insite_clock_mono_ms();
        if (now >= next_quotes) {
            round_quotes(a);
            next_quotes = now + insite_config_duration_ms(a->cfg, "collector.interval");
        }
        if (!rt->draining && now >= next_social) {
            round_social(a);
            next_social = now + insite_config_duration_ms(a->cfg, "social.interval");
        }
        if (!rt->draining)
            jobs_run_pending(a);
        insite_kafka_poll(a->kafka, 0);
        now = insite_clock_mono_ms();
        long long wait = (next_quotes < next_social ? next_quotes : next_social) - now;
        if (wait > 1000)
            wait = 1000;                       /* jobs posted while Redis/PG were down */
        if (wait > 0 && insite_runtime_wait(rt, (int)wait, wake[0]) == 1)
            drain_pipe(wake[0]);
        reload(a, rt);
    }
    insite_log_info("collector: draining");
    insite_http_stop(h);
    jobs_free(j);
    close(wake[0]);
    close(wake[1]);
    return 0;
}

static int args(insite_runtime *rt, void *ud)
{
    (void)ud;
    if (rt->argc > 1) {
        insite_log_error("unexpected argument \"%s\"", rt->argv[1]);
        return 2;
    }
    return -1;
}

static int start(insite_runtime *rt, insite_config **cfg, void *ud)
{
    app a = { .cfg = *cfg };
    int rc = 1;

    (void)ud;
    if (check_symbols(a.cfg) != 0)
        return 1;
    a.service = insite_config_string(a.cfg, "collector.source_service");
    a.abort_fd = rt->sigfd;
    if ((a.metrics = insite_metrics_new("collector")) == NULL)
        goto out;
    init_metrics(&a);
    if (open_backends(&a) == 0)
        rc = run(&a, rt);
out:
    close_backends(&a);
    free(a.syms);
    insite_metrics_free(a.metrics);
    *cfg = a.cfg;       /* a SIGHUP may have replaced it */
    return rc;
}

int main(int argc, char **argv)
{
    const insite_worker_keys keys[] = {
        { insite_redis_config_keys, insite_redis_config_nkeys },
        { insite_kafka_config_keys, insite_kafka_config_nkeys },
        { insite_pg_config_keys, insite_pg_config_nkeys },
        INSITE_WORKER_KEYS(collector_keys),
        { provider_config_keys, provider_config_nkeys },
        { social_config_keys, social_config_nkeys },
    };
    const insite_worker_options o = {
        .name = "insite-collector", .keys = keys, .nkeys = sizeof(keys) / sizeof(keys[0]),
        .args = args, .run = start,
    };
    return insite_worker_main(&o, argc, argv);
}
