/* One provider result through the publish path:
 *
 *   bars  (native, or aggregated per minute from quotes) newer than the last
 *         one handled: Redis stock_bars:{symbol} (idempotency key per bar),
 *         then PostgreSQL; the cursor only moves when both succeeded, so a
 *         crash or an outage replays them and the keys/upserts absorb the
 *         repeats: no duplicates, no gaps.
 *   quote when price, volume or market time changed: Redis
 *         stock_updates:{symbol} (idempotency key = the values, so a restart
 *         does not republish), Kafka stock_updates (key symbol), PostgreSQL. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "app.h"
#include "clock.h"
#include "envelope.h"
#include "log.h"
#include "store.h"

#define DUMP_FLAGS (JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(15))

static json_t *volume_json(long long v)
{
    return v >= 0 ? json_integer(v) : json_null();
}

json_t *pipeline_quote_json(const quote *q)
{
    char t[INSITE_RFC3339_LEN];
    double change = q->price - q->prev_close;

    insite_clock_rfc3339_ms(t, sizeof(t), q->market_time * 1000);
    return json_pack("{s:s, s:f, s:f, s:f, s:o, s:s, s:s, s:s}",
                     "symbol", q->symbol, "price", price_round(q->price),
                     "change", price_round(change),
                     "change_percent", price_round(change / q->prev_close * 100.0),
                     "volume", volume_json(q->volume), "currency", q->currency,
                     "market_time", t, "source", q->source);
}

json_t *pipeline_bar_json(const char *symbol, const char *interval, const char *source,
                          const bar *b)
{
    char t[INSITE_RFC3339_LEN];
    insite_clock_rfc3339_ms(t, sizeof(t), b->ts * 1000);
    return json_pack("{s:s, s:s, s:s, s:f, s:f, s:f, s:f, s:o, s:s}",
                     "symbol", symbol, "interval", interval, "time", t,
                     "open", price_round(b->open), "high", price_round(b->high),
                     "low", price_round(b->low), "close", price_round(b->close),
                     "volume", volume_json(b->volume), "source", source);
}

/* Redis publish of one JSON value; 1 published, 0 duplicate, -1 error. */
static int publish(app *a, const char *channel, const char *type, json_t *data,
                   const char *idem)
{
    char err[256], *text = data ? json_dumps(data, DUMP_FLAGS) : NULL;
    insite_publish_result res;
    int rc;

    if (text == NULL) {
        insite_log_error("%s: cannot serialise %s", channel, type);
        return -1;
    }
    rc = insite_redis_publish(a->redis, channel, type, text, idem, &res, err, sizeof(err));
    free(text);
    if (rc != 0) {
        insite_counter_inc(a->m.redis_errors);
        insite_log_error("redis: publish %s to %s: %s", type, channel, err);
        return -1;
    }
    return res.duplicate ? 0 : 1;
}

static void produce(app *a, const char *topic, const char *type, const char *key, json_t *data)
{
    json_t *env = insite_envelope_new(type, a->service, NULL, json_incref(data));
    char *text = env ? insite_envelope_dumps(env) : NULL;

    if (text == NULL || insite_kafka_produce(a->kafka, topic, key, text, strlen(text)) < 0)
        insite_counter_inc(a->m.kafka_errors);
    free(text);
    json_decref(env);
}

static void handle_bars(app *a, sym_state *s, const char *interval, const char *source,
                        const bar *b, size_t n)
{
    char channel[INSITE_CHANNEL_MAX + 1], idem[64];
    size_t first = 0;

    while (first < n && b[first].ts <= s->last_bar)
        first++;
    if (first == n)
        return;
    snprintf(channel, sizeof(channel), "stock_bars:%s", s->symbol);
    for (size_t i = first; i < n; i++) {
        json_t *d = pipeline_bar_json(s->symbol, interval, source, &b[i]);
        snprintf(idem, sizeof(idem), "bar:%s:%" PRId64, interval, b[i].ts);
        int rc = publish(a, channel, "stock_bar", d, idem);
        json_decref(d);
        if (rc < 0)
            return;                            /* retried next round */
        insite_counter_inc(a->m.bars);
    }
    if (store_bars(a->pg, s->symbol, interval, source, b + first, n - first) != 0) {
        insite_counter_inc(a->m.pg_errors);
        return;
    }
    s->last_bar = b[n - 1].ts;
}

/* Quote-only feeds: a bar per minute of market time from the quotes seen.
 * Returns 1 and fills *done when a minute closed. */
static int aggregate(sym_state *s, const quote *q, bar *done)
{
    int64_t minute = q->market_time / 60 * 60;
    long long vol = -1;
    int closed = 0;

    if (q->volume >= 0 && s->last_cum >= 0 && q->volume >= s->last_cum)
        vol = q->volume - s->last_cum;
    s->last_cum = q->volume;
    if (s->cur.ts != 0 && minute > s->cur.ts) {
        *done = s->cur;
        closed = 1;
        s->cur.ts = 0;
    }
    if (s->cur.ts == 0) {
        s->cur = (bar){ .ts = minute, .open = q->price, .high = q->price, .low = q->price,
                        .close = q->price, .volume = q->volume >= 0 ? 0 : -1 };
    } else if (minute == s->cur.ts) {
        if (q->price > s->cur.high)
            s->cur.high = q->price;
        if (q->price < s->cur.low)
            s->cur.low = q->price;
        s->cur.close = q->price;
    }
    if (minute == s->cur.ts && vol >= 0 && s->cur.volume >= 0)
        s->cur.volume += vol;
    return closed;
}

static void handle_quote(app *a, sym_state *s, const quote *q)
{
    char key[96], channel[INSITE_CHANNEL_MAX + 1], idem[112];

    snprintf(key, sizeof(key), "%.4f|%lld|%" PRId64, q->price, q->volume, q->market_time);
    if (strcmp(key, s->last_quote) == 0) {
        insite_counter_inc(a->m.unchanged);
        return;
    }
    json_t *d = pipeline_quote_json(q);
    snprintf(channel, sizeof(channel), "stock_updates:%s", s->symbol);
    snprintf(idem, sizeof(idem), "q:%s", key);
    int rc = publish(a, channel, "stock_update", d, idem);
    if (rc > 0) {
        produce(a, "stock_updates", "stock_update", s->symbol, d);
        if (store_quote(a->pg, q) != 0)
            insite_counter_inc(a->m.pg_errors);
        insite_counter_inc(a->m.published);
    } else if (rc == 0) {
        insite_log_debug("%s: quote %s already published (before a restart)", s->symbol, key);
    }
    if (rc >= 0)
        snprintf(s->last_quote, sizeof(s->last_quote), "%s", key);
    json_decref(d);
}

void pipeline_process(app *a, const quote_result *r)
{
    sym_state *s = app_symbol(a, r->symbol);
    bar done;

    if (s == NULL)
        return;
    if (!r->ok) {
        insite_counter_inc(a->m.rejected);
        return;
    }
    if (r->skipped > 0 && r->first_skipped > s->last_bar)
        insite_log_warn("%s %s: %zu bar(s) with null or invalid values not published "
                        "(first at epoch %" PRId64 ")", r->q.source, r->symbol, r->skipped,
                        r->first_skipped);
    if (r->interval[0] != '\0')
        handle_bars(a, s, r->interval, r->q.source, r->bars, r->nbars);
    else if (aggregate(s, &r->q, &done))
        handle_bars(a, s, "1m", r->q.source, &done, 1);
    handle_quote(a, s, &r->q);
}
