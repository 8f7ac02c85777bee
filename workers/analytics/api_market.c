/* POST /api/v1/analyze/correlation {"symbols":[..],"period":"1mo","interval":"1d"}
 * POST /api/v1/analyze/trends {"symbol":"AAPL","lookback_days":90}
 * Prices come from stock_prices (close, high, low, volume). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "analytics.h"
#include "clock.h"
#include "correlation.h"
#include "log.h"
#include "trends.h"

#define CORR_MIN_POINTS 20
#define CORR_SYMBOLS_MAX 100
#define STRONG_R 0.7

static const struct { const char *name; int days; } periods[] = {
    { "1d", 1 }, { "5d", 5 }, { "1w", 7 }, { "1mo", 30 }, { "3mo", 91 },
    { "6mo", 182 }, { "1y", 365 }, { "2y", 730 }, { "5y", 1826 },
};

static int period_days(const char *p)
{
    for (size_t i = 0; i < sizeof(periods) / sizeof(periods[0]); i++)
        if (strcmp(p, periods[i].name) == 0)
            return periods[i].days;
    return -1;
}

typedef struct {
    int64_t *ts;
    double *close;
    trend_bar *bars;
    size_t n;
} price_rows;

/* Rows of one symbol, ascending.  -1 on a query error (logged). */
static int load_prices(PGconn *pg, const char *symbol, const char *interval,
                       int days, price_rows *out)
{
    static const char sql[] =
        "SELECT extract(epoch FROM ts)::bigint, close::float8, coalesce(high, close)::float8,"
        " coalesce(low, close)::float8, coalesce(volume, 0)::float8 FROM stock_prices"
        " WHERE symbol = $1 AND interval = $2 AND close > 0"
        " AND ts >= (SELECT max(ts) FROM stock_prices WHERE symbol = $1 AND interval = $2)"
        "   - make_interval(days => $3::int) ORDER BY ts";
    char daybuf[16];
    snprintf(daybuf, sizeof(daybuf), "%d", days);
    const char *params[3] = { symbol, interval, daybuf };
    PGresult *r = PQexecParams(pg, sql, 3, NULL, params, NULL, NULL, 0);
    memset(out, 0, sizeof(*out));
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        insite_log_error("stock_prices for %s (%s): %s", symbol, interval, PQerrorMessage(pg));
        PQclear(r);
        return -1;
    }
    size_t n = (size_t)PQntuples(r);
    out->ts = malloc((n + 1) * sizeof(*out->ts));
    out->close = malloc((n + 1) * sizeof(*out->close));
    out->bars = malloc((n + 1) * sizeof(*out->bars));
    if (out->ts == NULL || out->close == NULL || out->bars == NULL) {
        PQclear(r);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        trend_bar *b = &out->bars[i];
        b->ts = out->ts[i] = strtoll(PQgetvalue(r, (int)i, 0), NULL, 10);
        b->close = out->close[i] = strtod(PQgetvalue(r, (int)i, 1), NULL);
        b->high = strtod(PQgetvalue(r, (int)i, 2), NULL);
        b->low = strtod(PQgetvalue(r, (int)i, 3), NULL);
        b->volume = strtod(PQgetvalue(r, (int)i, 4), NULL);
    }
    out->n = n;
    PQclear(r);
    return 0;
}

static void free_prices(price_rows *p)
{
    free(p->ts);
    free(p->close);
    free(p->bars);
}

static json_t *r_value(double r)
{
    return isnan(r) ? json_null() : json_real(round(r * 1e6) / 1e6);
}

static json_t *correlation_reply(json_t *symbols, const char *period, const char *interval,
                                 const corr_result *cr)
{
    size_t k = json_array_size(symbols);
    json_t *matrix = json_object(), *strong = json_array();
    for (size_t a = 0; a < k; a++) {
        json_t *row = json_object();
        const char *sa = json_string_value(json_array_get(symbols, a));
        for (size_t b = 0; b < k; b++) {
            const char *sb = json_string_value(json_array_get(symbols, b));
            double r = cr->matrix[a * k + b];
            json_object_set_new(row, sb, r_value(r));
            if (b > a && !isnan(r) && fabs(r) >= STRONG_R)
                json_array_append_new(strong, json_pack("{s:s, s:s, s:o}", "a", sa, "b", sb,
                                                        "correlation", r_value(r)));
        }
        json_object_set_new(matrix, sa, row);
    }
    return json_pack("{s:O, s:s, s:s, s:I, s:o, s:o, s:f}", "symbols", symbols,
                     "period", period, "interval", interval, "points", (json_int_t)cr->points,
                     "correlation_matrix", matrix, "strong_pairs", strong,
                     "strong_threshold", STRONG_R);
}

static int bad(json_t **reply, int status, const char *code, const char *msg)
{
    *reply = insite_http_error(code, msg);
    return status;
}

int api_correlation(const insite_http_request *req, json_t **reply, void *ud)
{
    analytics_ctx *ctx = ud;
    json_t *symbols = json_object_get(req->body, "symbols");
    const char *period = json_string_value(json_object_get(req->body, "period"));
    const char *interval = json_string_value(json_object_get(req->body, "interval"));
    size_t k = json_array_size(symbols), i;
    json_t *v;
    if (period == NULL)
        period = "1mo";
    if (interval == NULL)
        interval = "1d";
    if (!json_is_array(symbols) || k < 2 || k > CORR_SYMBOLS_MAX)
        return bad(reply, 422, "invalid_request", "symbols: an array of 2 to 100 symbols");
    json_array_foreach(symbols, i, v)
        if (!json_is_string(v))
            return bad(reply, 422, "invalid_request", "symbols: every item must be a string");
    int days = period_days(period);
    if (days < 0)
        return bad(reply, 422, "invalid_request", "period: one of 1d 5d 1w 1mo 3mo 6mo 1y 2y 5y");

    char err[256];
    PGconn *pg = analytics_pg_acquire(ctx, err, sizeof(err));
    if (pg == NULL)
        return bad(reply, 503, "unavailable", err);
    price_rows *rows = calloc(k, sizeof(*rows));
    corr_series *series = calloc(k, sizeof(*series));
    int status = 500;
    for (i = 0; rows != NULL && series != NULL && i < k; i++) {
        if (load_prices(pg, json_string_value(json_array_get(symbols, i)), interval, days, &rows[i]) != 0)
            break;
        series[i] = (corr_series){ rows[i].ts, rows[i].close, rows[i].n };
    }
    analytics_pg_release(ctx);
    if (rows == NULL || series == NULL || i < k) {
        *reply = insite_http_error("internal", "loading prices failed");
    } else {
        corr_result cr;
        if (correlation_compute(series, k, CORR_MIN_POINTS, &cr, err, sizeof(err)) != 0) {
            *reply = json_pack("{s:s, s:s, s:I, s:i}", "error", "insufficient_data", "message", err,
                               "points", (json_int_t)cr.points, "min_points", CORR_MIN_POINTS);
            status = 422;
        } else {
            *reply = correlation_reply(symbols, period, interval, &cr);
            status = 200;
        }
        corr_result_free(&cr);
    }
    for (i = 0; rows != NULL && i < k; i++)
        free_prices(&rows[i]);
    free(rows);
    free(series);
    return status;
}

static json_t *levels_json(const trend_level *l, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(a, json_pack("{s:f, s:i}", "price", round(l[i].price * 1e4) / 1e4,
                                           "touches", l[i].touches));
    return a;
}

static json_t *trends_reply(const char *symbol, int days, const trend_result *t)
{
    json_t *an = json_array();
    char when[INSITE_RFC3339_LEN];
    for (size_t i = 0; i < t->nanomalies; i++) {
        insite_clock_rfc3339_ms(when, sizeof(when), t->anomalies[i].ts * 1000);
        json_array_append_new(an, json_pack("{s:s, s:s, s:f, s:f}", "timestamp", when,
                                            "type", t->anomalies[i].kind,
                                            "magnitude", t->anomalies[i].value,
                                            "z_score", round(t->anomalies[i].z * 100) / 100));
    }
    return json_pack("{s:s, s:i, s:I, s:s, s:f, s:f, s:f, s:f, s:o, s:o, s:o}",
                     "symbol", symbol, "lookback_days", days, "points", (json_int_t)t->points,
                     "trend", t->trend, "strength", round(t->strength * 1e4) / 1e4,
                     "slope_per_day", t->slope_per_day,
                     "t_stat", isfinite(t->t_stat) ? t->t_stat : copysign(1e308, t->t_stat),
                     "r_squared", t->r_squared,
                     "support_levels", levels_json(t->support, t->nsupport),
                     "resistance_levels", levels_json(t->resistance, t->nresistance),
                     "anomalies", an);
}

int api_trends(const insite_http_request *req, json_t **reply, void *ud)
{
    analytics_ctx *ctx = ud;
    const char *symbol = json_string_value(json_object_get(req->body, "symbol"));
    json_t *lb = json_object_get(req->body, "lookback_days");
    int days = lb == NULL ? 90 : json_is_integer(lb) ? (int)json_integer_value(lb) : -1;
    if (symbol == NULL || !*symbol)
        return bad(reply, 422, "invalid_request", "symbol: a string is required");
    if (days < TREND_MIN_POINTS || days > 3650)
        return bad(reply, 422, "invalid_request", "lookback_days: an integer from 10 to 3650");
    char err[256];
    PGconn *pg = analytics_pg_acquire(ctx, err, sizeof(err));
    if (pg == NULL)
        return bad(reply, 503, "unavailable", err);
    price_rows rows;
    int rc = load_prices(pg, symbol, "1d", days, &rows);
    analytics_pg_release(ctx);
    if (rc != 0) {
        free_prices(&rows);
        return bad(reply, 500, "internal", "loading prices failed");
    }
    trend_result t;
    int status = 200;
    if (trends_compute(rows.bars, rows.n, &t, err, sizeof(err)) != 0) {
        *reply = json_pack("{s:s, s:s, s:I, s:i}", "error", "insufficient_data", "message", err,
                           "points", (json_int_t)rows.n, "min_points", TREND_MIN_POINTS);
        status = 422;
    } else {
        *reply = trends_reply(symbol, days, &t);
    }
    trend_result_free(&t);
    free_prices(&rows);
    return status;
}
