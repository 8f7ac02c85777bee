/* The collector's state, shared by the main loop, the quote pipeline and the
 * job runner (all on the main thread; the HTTP thread only touches jobs.c's
 * own connection and the wake pipe). */
#ifndef COLLECTOR_APP_H
#define COLLECTOR_APP_H

#include <stdint.h>

#include <libpq-fe.h>

#include "collector.h"
#include "config.h"
#include "kafka.h"
#include "metrics.h"
#include "provider.h"
#include "redis_publish.h"

typedef struct {
    char symbol[SYMBOL_MAX];
    char last_quote[96];         /* price|volume|time last published */
    int64_t last_bar;            /* newest bar published and stored */
    bar cur;                     /* bar being aggregated (cur.ts 0: none) */
    long long last_cum;          /* last cumulative volume seen, -1 unknown */
} sym_state;

typedef struct {
    insite_counter *rounds, *published, *unchanged, *rejected, *bars,
                   *redis_errors, *kafka_errors, *pg_errors, *posts, *jobs;
} app_metrics;

typedef struct social social;

typedef struct {
    insite_config *cfg;
    insite_redis *redis;
    insite_kafka *kafka;
    PGconn *pg;
    provider *prov;
    social *social;
    insite_metrics *metrics;
    app_metrics m;
    sym_state *syms;
    size_t nsyms, cap;
    const char *service;         /* source_service in envelopes */
    int abort_fd;
} app;

/* Finds or adds the state of symbol; NULL on out of memory (logged). */
sym_state *app_symbol(app *a, const char *symbol);

/* Runs one provider round for symbols and pushes every valid result
 * through the pipeline.  progress (may be NULL) is called after each
 * symbol.  Returns the number of valid results, -1 if aborted; err gets
 * "SYM: cause; ..." for the failed ones. */
typedef void (*app_progress_fn)(void *ud, size_t done, size_t total);
int app_collect(app *a, char *const *symbols, size_t n, app_progress_fn progress,
                void *ud, char *err, size_t errlen);

/* pipeline.c: one provider result -> bars and quote, Redis, Kafka, PG. */
void pipeline_process(app *a, const quote_result *r);

#endif
