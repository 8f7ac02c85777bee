/* Yahoo chart responses: one quote from meta, bars from the parallel arrays
 * timestamp[] and indicators.quote[0].{open,high,low,close,volume}[]. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "chart.h"

static int reject(quote_result *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int reject(quote_result *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->err, sizeof(r->err), fmt, ap);
    va_end(ap);
    r->ok = 0;
    quote_result_clear(r);
    return -1;
}

int chart_interval_seconds(const char *g)
{
    static const struct { const char *name; int secs; } t[] = {
        { "1m", 60 }, { "2m", 120 }, { "5m", 300 }, { "15m", 900 },
        { "30m", 1800 }, { "60m", 3600 }, { "90m", 5400 }, { "1h", 3600 },
        { "1d", 86400 },
    };
    for (size_t i = 0; g != NULL && i < sizeof(t) / sizeof(t[0]); i++)
        if (strcmp(g, t[i].name) == 0)
            return t[i].secs;
    return 0;
}

/* A positive finite number (jansson keeps integers and reals apart). */
static int positive(json_t *v, double *out)
{
    if (!json_is_number(v))
        return 0;
    *out = json_number_value(v);
    return isfinite(*out) && *out > 0;
}

static const char *what(json_t *v)
{
    return v == NULL ? "missing" : json_is_null(v) ? "null" : "not a positive number";
}

static int parse_meta(json_t *meta, const char *symbol, quote_result *r)
{
    quote *q = &r->q;
    json_t *v;
    const char *s;

    if (!json_is_object(meta))
        return reject(r, "chart.result[0].meta is %s", meta ? "not an object" : "missing");
    s = json_string_value(json_object_get(meta, "symbol"));
    if (s == NULL || strcasecmp(s, symbol) != 0)
        return reject(r, "meta.symbol is \"%s\", expected \"%s\"", s ? s : "(missing)", symbol);
    v = json_object_get(meta, "regularMarketPrice");
    if (!positive(v, &q->price))
        return reject(r, "meta.regularMarketPrice is %s", what(v));
    v = json_object_get(meta, "previousClose");
    if (v == NULL || json_is_null(v))
        v = json_object_get(meta, "chartPreviousClose");
    if (!positive(v, &q->prev_close))
        return reject(r, "meta.previousClose/chartPreviousClose is %s", what(v));
    /* older responses have no regularMarketVolume: unknown, sent as null */
    v = json_object_get(meta, "regularMarketVolume");
    if (v != NULL && !json_is_null(v) && (!json_is_integer(v) || json_integer_value(v) < 0))
        return reject(r, "meta.regularMarketVolume is not an integer >= 0");
    q->volume = json_is_integer(v) ? json_integer_value(v) : -1;
    v = json_object_get(meta, "regularMarketTime");
    if (!json_is_integer(v) || json_integer_value(v) <= 0)
        return reject(r, "meta.regularMarketTime is %s", v ? "not an epoch time" : "missing");
    q->market_time = json_integer_value(v);
    s = json_string_value(json_object_get(meta, "currency"));
    if (s == NULL || *s == '\0' || strlen(s) >= sizeof(q->currency))
        return reject(r, "meta.currency is %s", s ? "not a currency code" : "missing");
    snprintf(q->currency, sizeof(q->currency), "%s", s);
    snprintf(q->symbol, sizeof(q->symbol), "%s", symbol);
    s = json_string_value(json_object_get(meta, "dataGranularity"));
    snprintf(r->interval, sizeof(r->interval), "%s", s && chart_interval_seconds(s) ? s : "1m");
    return 0;
}

/* One bar from index i; 0 ok, 1 skipped (nulls), -1 bad type. */
static int parse_bar(json_t *const a[5], size_t i, int64_t ts, bar *b)
{
    double *px[4] = { &b->open, &b->high, &b->low, &b->close };
    json_t *vol = json_array_get(a[4], i);

    b->ts = ts;
    for (int k = 0; k < 4; k++) {
        json_t *v = json_array_get(a[k], i);
        if (json_is_null(v))
            return 1;
        if (!positive(v, px[k]))
            return json_is_number(v) ? 1 : -1;
    }
    if (json_is_null(vol))
        return 1;
    if (!json_is_integer(vol) && !json_is_real(vol))
        return -1;
    b->volume = (long long)json_number_value(vol);
    if (b->volume < 0 || b->high < b->low)
        return 1;
    return 0;
}

static int parse_bars(json_t *res, quote_result *r)
{
    static const char *names[5] = { "open", "high", "low", "close", "volume" };
    json_t *ts = json_object_get(res, "timestamp");
    json_t *q0 = json_array_get(json_object_get(json_object_get(res, "indicators"), "quote"), 0);
    json_t *a[5];
    int secs = chart_interval_seconds(r->interval);

    if (ts == NULL) {
        /* no trading in the range (weekend): meta only, quote[0] == {} */
        if (q0 != NULL && json_is_object(q0) && json_object_size(q0) == 0)
            return 0;
        return reject(r, "timestamp[] is missing but indicators.quote[0] has data");
    }
    if (!json_is_array(ts))
        return reject(r, "timestamp is not an array");
    if (!json_is_object(q0))
        return reject(r, "indicators.quote[0] is missing");
    size_t n = json_array_size(ts);
    for (int k = 0; k < 5; k++) {
        a[k] = json_object_get(q0, names[k]);
        if (!json_is_array(a[k]))
            return reject(r, "indicators.quote[0].%s is %s", names[k], a[k] ? "not an array" : "missing");
        if (json_array_size(a[k]) != n)
            return reject(r, "indicators.quote[0].%s has %zu values for %zu timestamps",
                        names[k], json_array_size(a[k]), n);
    }
    if (n > 0 && (r->bars = calloc(n, sizeof(bar))) == NULL)
        return reject(r, "out of memory for %zu bars", n);
    for (size_t i = 0; i < n; i++) {
        json_t *t = json_array_get(ts, i);
        if (!json_is_integer(t) || json_integer_value(t) <= 0)
            return reject(r, "timestamp[%zu] is not an epoch time", i);
        int64_t when = json_integer_value(t);
        if (when + secs > r->q.market_time)
            continue;                      /* still forming */
        bar *b = &r->bars[r->nbars];
        int rc = parse_bar(a, i, when, b);
        if (rc < 0)
            return reject(r, "bar %zu has a value that is not a number", i);
        if (rc > 0) {
            if (r->skipped++ == 0)
                r->first_skipped = when;
            continue;
        }
        if (r->nbars > 0 && b->ts <= r->bars[r->nbars - 1].ts)
            return reject(r, "timestamp[%zu] is not increasing", i);
        r->nbars++;
    }
    return 0;
}

int chart_parse(const char *symbol, long status, const char *body, size_t len,
                quote_result *r)
{
    json_error_t jerr;
    json_t *root, *chart, *err, *res;
    int rc = -1;

    r->ok = 0;
    r->err[0] = '\0';
    r->skipped = 0;
    r->first_skipped = 0;
    snprintf(r->symbol, sizeof(r->symbol), "%s", symbol);
    root = json_loadb(body, len, 0, &jerr);
    if (root == NULL) {
        if (status < 200 || status > 299)
            return reject(r, "HTTP %ld", status);
        return reject(r, "malformed JSON (line %d column %d: %s)", jerr.line, jerr.column, jerr.text);
    }
    chart = json_object_get(root, "chart");
    err = json_object_get(chart, "error");
    res = json_array_get(json_object_get(chart, "result"), 0);
    if (!json_is_object(chart))
        reject(r, "HTTP %ld, no \"chart\" object in the body", status);
    else if (err != NULL && !json_is_null(err))
        reject(r, "HTTP %ld, chart.error: %s: %s", status,
             json_string_value(json_object_get(err, "code")) ?: "?",
             json_string_value(json_object_get(err, "description")) ?: "?");
    else if (status < 200 || status > 299)
        reject(r, "HTTP %ld", status);
    else if (!json_is_object(res))
        reject(r, "chart.result is empty");
    else if (parse_meta(json_object_get(res, "meta"), symbol, r) == 0 && parse_bars(res, r) == 0) {
        r->ok = 1;
        rc = 0;
    }
    json_decref(root);
    return rc;
}
