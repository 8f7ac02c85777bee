/* A symbol's sentiment_update, one per window:
 *
 *   {"symbol":"AAPL","window":"1h","compound":0.4215,"positive":3,
 *    "negative":1,"neutral":2,"mentions":6,"ts":"2026-11-26T10:30:45.123Z"}
 *
 * published to Redis channel sentiment_updates:{symbol} (lua/publish.lua via
 * insite_redis_publish, type "sentiment_update"), produced to Kafka topic
 * sentiment_updates (key = symbol, in the event envelope) and stored in
 * sentiment_data. */
#ifndef ANALYTICS_EMIT_H
#define ANALYTICS_EMIT_H

#include <stdint.h>

#include <jansson.h>

#include "kafka.h"
#include "redis_publish.h"
#include "scores_db.h"
#include "windows.h"

typedef struct {
    insite_redis *redis;             /* NULL = skip */
    insite_kafka *kafka;             /* NULL = skip */
    sent_db *db;                     /* NULL = skip */
    const char *service;             /* envelope source_service */
    const char *topic;               /* "sentiment_updates" */
} sent_emitter;

json_t *sent_update_json(const char *symbol, const char *window, const sent_agg *a,
                         int64_t ts_ms);

/* Sends the changed windows everywhere.  0 when every sink took them;
 * -1 when one failed (logged), so the caller retries later. */
int sent_emit(const sent_emitter *e, const char *symbol, const sent_agg aggs[SENT_NWINDOWS],
              const int changed[SENT_NWINDOWS], int64_t ts_ms);

#endif
