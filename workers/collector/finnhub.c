/* Finnhub /api/v1/quote responses:
 *   {"c":261.74,"d":0.52,"dp":0.199,"h":263.31,"l":260.68,"o":261.07,
 *    "pc":261.22,"t":1582641000}
 * Shape written from Finnhub's public API documentation; no recorded
 * response is available here.  Unknown symbols answer all zeros (rejected). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "provider.h"

static int num(json_t *o, const char *k, double *v)
{
    json_t *x = json_object_get(o, k);
    if (!json_is_number(x))
        return 0;
    *v = json_number_value(x);
    return isfinite(*v) && *v > 0;
}

int finnhub_parse(const char *symbol, long status, const char *body, size_t len,
                  quote_result *r, const char *currency)
{
    json_error_t jerr;
    json_t *root = json_loadb(body, len, 0, &jerr);
    double t = 0;

    r->ok = 0;
    snprintf(r->symbol, sizeof(r->symbol), "%s", symbol);
    if (status != 200) {
        const char *e = json_string_value(json_object_get(root, "error"));
        snprintf(r->err, sizeof(r->err), "HTTP %ld%s%s", status, e ? ": " : "", e ? e : "");
    } else if (!json_is_object(root)) {
        snprintf(r->err, sizeof(r->err), "malformed JSON (%s)", root ? "not an object" : jerr.text);
    } else if (!num(root, "c", &r->q.price)) {
        snprintf(r->err, sizeof(r->err), "\"c\" (current price) is missing, null or 0: unknown symbol?");
    } else if (!num(root, "pc", &r->q.prev_close)) {
        snprintf(r->err, sizeof(r->err), "\"pc\" (previous close) is missing, null or 0");
    } else if (!num(root, "t", &t)) {
        snprintf(r->err, sizeof(r->err), "\"t\" (quote time) is missing, null or 0");
    } else {
        snprintf(r->q.symbol, sizeof(r->q.symbol), "%s", symbol);
        snprintf(r->q.currency, sizeof(r->q.currency), "%s", currency);
        r->q.market_time = (int64_t)t;
        r->q.volume = -1;
        r->q.source = "finnhub";
        r->ok = 1;
    }
    json_decref(root);
    return r->ok ? 0 : -1;
}

