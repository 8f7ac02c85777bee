/* insite-analytics: sentiment (VADER in C), correlation and trends.
 *
 *   insite-analytics [-c FILE]            HTTP API on analytics.http_port
 *   insite-analytics [-c FILE] --score    stdin: one JSON string a line;
 *                                         stdout: "compound pos neg neu"
 *   insite-analytics [-c FILE] --bench N  stdin as for --score; scores the
 *                                         corpus N times on this thread and
 *                                         prints {"sentences":..,"per_sec":..}
 *
 * Lexicon paths come from the config (scripts/lexicons.sh prints them). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <jansson.h>

#include "analytics.h"
#include "clock.h"
#include "finance.h"
#include "kafka.h"
#include "redis_publish.h"
#include "service.h"
#include "log.h"
#include "metrics.h"
#include "pg.h"
#include "runtime.h"
#include "worker.h"

static const insite_config_key analytics_keys[] = {
    { "analytics.http_port", INSITE_CFG_INT, "8093", 0, 65535,
      "HTTP API port on 127.0.0.1 (0 = any free port)" },
    { "analytics.vader_lexicon", INSITE_CFG_STRING,
      "build/npm/node_modules/vader-sentiment/vader_lexicon.txt", 0, 0,
      "VADER lexicon (vader_lexicon.txt of the npm package vader-sentiment)" },
    { "analytics.afinn_path", INSITE_CFG_STRING,
      "build/npm/node_modules/afinn-165-financialmarketnews/index.js", 0, 0,
      "AFINN-165 financial market news list (index.js); \"\" = built-in finance words only" },
    { "analytics.finance", INSITE_CFG_BOOL, "true", 0, 0,
      "merge the finance lexicon overlay over VADER's" },
    { "analytics.entities", INSITE_CFG_BOOL, "true", 0, 0,
      "cashtags ($AAPL) and known tickers are entities, not words" },
    { "analytics.tickers", INSITE_CFG_STRING_LIST,
      "AAPL,MSFT,GOOGL,AMZN,NVDA,META,TSLA,AMD,NFLX,SPY,QQQ,GME,AMC,PLTR", 0, 0,
      "ticker symbols recognised without a $ when analytics.entities is on" },
    { "analytics.classifier_url", INSITE_CFG_STRING, "", 0, 0,
      "external classifier endpoint for model \"ensemble\" (\"\" = VADER only); "
      "POST {\"texts\":[..]} -> {\"scores\":[{\"positive\",\"negative\",\"neutral\"}]}" },
    { "analytics.classifier_timeout", INSITE_CFG_DURATION, "2s", 10, 60000,
      "timeout of one classifier request (then the reply is VADER only, saying why)" },
    { "analytics.classifier_weight", INSITE_CFG_DOUBLE, "0.5", 0, 1,
      "the classifier's share in the ensemble (VADER has 1 - weight)" },
};

static const char usage[] = "[--score | --bench N]";

/* Builds the lexicon and the model the config asks for. */
static int build_model(const insite_config *cfg, vader_model *m)
{
    char err[512];
    lexicon *lx = vader_lexicon_new(insite_config_string(cfg, "analytics.vader_lexicon"),
                                    err, sizeof(err));
    if (lx == NULL) {
        insite_log_error("vader lexicon: %s (run scripts/lexicons.sh)", err);
        return -1;
    }
    memset(m, 0, sizeof(*m));
    m->lex = lx;
    if (insite_config_bool(cfg, "analytics.finance")) {
        long n = finance_overlay(lx, insite_config_string(cfg, "analytics.afinn_path"),
                                 err, sizeof(err));
        if (n < 0) {
            insite_log_error("finance overlay: %s", err);
            return -1;
        }
        insite_log_info("finance overlay: %ld words", n);
    }
    if (insite_config_bool(cfg, "analytics.entities")) {
        char *const *tickers;
        size_t nt = insite_config_list(cfg, "analytics.tickers", &tickers);
        m->entities = 1;
        if ((m->tickers = finance_tickers(tickers, nt)) == NULL) {
            insite_log_error("tickers: out of memory");
            return -1;
        }
    }
    insite_log_info("vader lexicon: %zu words", lexicon_count(lx));
    return 0;
}

static void free_model(vader_model *m)
{
    lexicon_free((lexicon *)m->lex);
    lexicon_free((lexicon *)m->tickers);
}

/* Reads stdin: one JSON string a line. */
static json_t *read_corpus(void)
{
    json_t *all = json_array();
    char *line = NULL;
    size_t cap = 0;
    while (getline(&line, &cap, stdin) != -1) {
        json_t *t = json_loads(line, JSON_DECODE_ANY, NULL);
        if (json_is_string(t))
            json_array_append_new(all, t);
        else
            json_decref(t);
    }
    free(line);
    return all;
}

static int run_score(const vader_model *m, long rounds)
{
    json_t *corpus = read_corpus(), *t;
    vader_work *w = vader_work_new();
    vader_scores s;
    size_t i, done = 0, bytes = 0;
    if (w == NULL)
        return 1;
    if (rounds == 0) {
        json_array_foreach(corpus, i, t) {
            vader_score(m, w, json_string_value(t), json_string_length(t), &s);
            printf("%.4f %.3f %.3f %.3f\n", s.compound, s.pos, s.neg, s.neu);
        }
    } else {
        double sink = 0, t0 = insite_clock_mono_s();
        for (long r = 0; r < rounds; r++)
            json_array_foreach(corpus, i, t) {
                vader_score(m, w, json_string_value(t), json_string_length(t), &s);
                sink += s.compound;
                bytes += json_string_length(t);
                done++;
            }
        double el = insite_clock_mono_s() - t0;
        printf("{\"sentences\":%zu,\"seconds\":%.3f,\"per_sec\":%.0f,\"mean_bytes\":%.1f,\"checksum\":%.4f}\n",
               done, el, (double)done / el, done ? (double)bytes / (double)done : 0, sink);
    }
    vader_work_free(w);
    json_decref(corpus);
    return 0;
}

/* The pipeline's counts at /metrics: insite_analytics_posts_<what>_total. */
typedef struct {
    insite_counter *consumed, *scored, *duplicates, *poison, *retried, *published;
    sent_pipeline_stats last;
} pipeline_metrics;

static void pipeline_metrics_init(pipeline_metrics *pm, insite_metrics *m)
{
    memset(pm, 0, sizeof(*pm));
    pm->consumed = insite_metrics_counter(m, "posts_consumed",
                                          "social_posts messages read from Kafka.");
    pm->scored = insite_metrics_counter(m, "posts_scored", "Posts scored and counted.");
    pm->duplicates = insite_metrics_counter(m, "posts_duplicate",
                                            "Posts seen before (not counted again).");
    pm->poison = insite_metrics_counter(m, "posts_dead_lettered",
                                        "Poison messages sent to social_posts.dlq.");
    pm->retried = insite_metrics_counter(m, "posts_retried",
                                         "Messages re-read after a transient failure.");
    pm->published = insite_metrics_counter(m, "sentiment_updates_published",
                                           "sentiment_update messages published.");
}

static void pipeline_metrics_update(pipeline_metrics *pm, const sent_pipeline *p)
{
    sent_pipeline_stats st;

    sent_pipeline_get_stats(p, &st);
    insite_counter_add(pm->consumed, st.consumed - pm->last.consumed);
    insite_counter_add(pm->scored, st.scored - pm->last.scored);
    insite_counter_add(pm->duplicates, st.duplicates - pm->last.duplicates);
    insite_counter_add(pm->poison, st.poison - pm->last.poison);
    insite_counter_add(pm->retried, st.retried - pm->last.retried);
    insite_counter_add(pm->published, st.published - pm->last.published);
    pm->last = st;
}

static int serve(insite_runtime *rt, insite_config *cfg, analytics_ctx *ctx)
{
    analytics_pipeline ap;
    insite_metrics *metrics = insite_metrics_new("analytics");
    if (metrics == NULL)
        return 1;
    if (analytics_pipeline_open(&ap, cfg, &ctx->model, metrics) != 0) {
        insite_metrics_free(metrics);
        return 1;
    }
    const insite_http_route routes[] = {
        { "POST", "/api/v1/analyze/sentiment", api_sentiment, ctx },
        { "POST", "/api/v1/analyze/correlation", api_correlation, ctx },
        { "POST", "/api/v1/analyze/trends", api_trends, ctx },
    };
    insite_http_options ho = {
        .service = "analytics", .port = (int)insite_config_int(cfg, "analytics.http_port"),
        .routes = routes, .nroutes = sizeof(routes) / sizeof(routes[0]), .metrics = metrics,
    };
    insite_http *h = insite_http_start(&ho);
    if (h == NULL) {
        analytics_pipeline_close(&ap);
        insite_metrics_free(metrics);
        return 1;
    }
    pipeline_metrics pm;
    pipeline_metrics_init(&pm, metrics);
    while (!rt->draining) {
        if (ap.p != NULL) {
            sent_pipeline_step(ap.p, 200);
            pipeline_metrics_update(&pm, ap.p);
        }
        if (insite_runtime_wait(rt, ap.p ? 0 : 1000, -1) < 0)
            break;
    }
    insite_http_stop(h);
    analytics_pipeline_close(&ap);
    insite_metrics_free(metrics);
    return 0;
}

/* -1: serve; 0: --score; N > 0: --bench N */
static int args(insite_runtime *rt, void *ud)
{
    long *bench = ud;

    for (int i = 1; i < rt->argc; i++) {
        if (strcmp(rt->argv[i], "--score") == 0)
            *bench = 0;
        else if (strcmp(rt->argv[i], "--bench") == 0 && i + 1 < rt->argc)
            *bench = atol(rt->argv[++i]);
        else
            return insite_worker_usage(rt, usage);
    }
    return -1;
}

static int run(insite_runtime *rt, insite_config **cfgp, void *ud)
{
    insite_config *cfg = *cfgp;
    const long *bench = ud;
    analytics_ctx ctx = { .pg_lock = PTHREAD_MUTEX_INITIALIZER };
    int rc = 1;

    if (build_model(cfg, &ctx.model) != 0)
        goto out;
    if (*bench >= 0) {
        rc = run_score(&ctx.model, *bench);
        goto out;
    }
    ctx.http_work = vader_work_new();
    ctx.pg_dsn = insite_config_string(cfg, "pg.dsn");
    ctx.classifier_url = insite_config_string(cfg, "analytics.classifier_url");
    ctx.classifier_timeout_ms = (int)insite_config_duration_ms(cfg, "analytics.classifier_timeout");
    ctx.classifier_weight = insite_config_double(cfg, "analytics.classifier_weight");
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        insite_log_error("curl_global_init failed");
        goto out;
    }
    rc = ctx.http_work ? serve(rt, cfg, &ctx) : 1;
out:
    if (ctx.pg != NULL)
        PQfinish(ctx.pg);
    vader_work_free(ctx.http_work);
    free_model(&ctx.model);
    curl_global_cleanup();
    return rc;
}

int main(int argc, char **argv)
{
    long bench = -1;
    const insite_worker_keys keys[] = {
        { insite_pg_config_keys, insite_pg_config_nkeys },
        { insite_kafka_config_keys, insite_kafka_config_nkeys },
        { insite_redis_config_keys, insite_redis_config_nkeys },
        { analytics_pipeline_keys, analytics_pipeline_nkeys },
        INSITE_WORKER_KEYS(analytics_keys),
    };
    const insite_worker_options o = {
        .name = "insite-analytics", .usage = usage, .keys = keys,
        .nkeys = sizeof(keys) / sizeof(keys[0]), .args = args, .run = run, .ud = &bench,
    };
    return insite_worker_main(&o, argc, argv);
}
