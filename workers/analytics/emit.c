#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "emit.h"
#include "envelope.h"
#include "log.h"

json_t *sent_update_json(const char *symbol, const char *window, const sent_agg *a,
                         int64_t ts_ms)
{
    char ts[INSITE_RFC3339_LEN];
    insite_clock_rfc3339_ms(ts, sizeof(ts), ts_ms);
    json_t *j = json_object();
    /* field by field: the documented order */
    if (j == NULL
        || json_object_set_new(j, "symbol", json_string(symbol))
        || json_object_set_new(j, "window", json_string(window))
        || json_object_set_new(j, "compound", json_real(a->compound))
        || json_object_set_new(j, "positive", json_integer(a->positive))
        || json_object_set_new(j, "negative", json_integer(a->negative))
        || json_object_set_new(j, "neutral", json_integer(a->neutral))
        || json_object_set_new(j, "mentions", json_integer(a->mentions))
        || json_object_set_new(j, "ts", json_string(ts))) {
        json_decref(j);
        return NULL;
    }
    return j;
}

static int to_redis(const sent_emitter *e, const char *symbol, const char *window,
                    const char *data, int64_t ts_ms)
{
    char channel[INSITE_CHANNEL_MAX + 1], idem[96], err[256];
    insite_publish_result res;
    snprintf(channel, sizeof(channel), "sentiment_updates:%s", symbol);
    /* a retry after an unknown outcome cannot publish twice */
    snprintf(idem, sizeof(idem), "%s:%" PRId64, window, ts_ms);
    if (insite_redis_publish(e->redis, channel, "sentiment_update", data, idem, &res, err,
                             sizeof(err)) == 0)
        return 0;
    insite_log_error("sentiment: publish %s %s to Redis: %s", symbol, window, err);
    return -1;
}

static int to_kafka(const sent_emitter *e, const char *symbol, json_t *data)
{
    json_t *env = insite_envelope_new("sentiment_update", e->service, NULL, json_incref(data));
    char *text = env ? insite_envelope_dumps(env) : NULL;
    /* 1 = held for retry or spooled by the producer: not lost */
    int rc = text != NULL && insite_kafka_produce(e->kafka, e->topic, symbol, text,
                                                  strlen(text)) >= 0 ? 0 : -1;
    free(text);
    json_decref(env);
    return rc;
}

int sent_emit(const sent_emitter *e, const char *symbol, const sent_agg aggs[SENT_NWINDOWS],
              const int changed[SENT_NWINDOWS], int64_t ts_ms)
{
    int rc = 0;
    for (int i = 0; i < SENT_NWINDOWS; i++) {
        if (!changed[i])
            continue;
        const char *window = sent_window_defs[i].name;
        json_t *data = sent_update_json(symbol, window, &aggs[i], ts_ms);
        char *text = data ? json_dumps(data, JSON_COMPACT | JSON_PRESERVE_ORDER
                                                 | JSON_REAL_PRECISION(15)) : NULL;
        if (text == NULL) {
            insite_log_error("sentiment: cannot build the %s %s update", symbol, window);
            json_decref(data);
            return -1;
        }
        if (e->redis != NULL && to_redis(e, symbol, window, text, ts_ms) != 0)
            rc = -1;
        if (e->kafka != NULL && to_kafka(e, symbol, data) != 0)
            rc = -1;      /* insite_kafka_produce logged it */
        if (e->db != NULL && sent_db_store_aggregate(e->db, symbol, window, &aggs[i], ts_ms) != 0)
            rc = -1;
        free(text);
        json_decref(data);
    }
    return rc;
}
