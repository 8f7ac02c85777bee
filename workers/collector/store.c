#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "pg.h"
#include "store.h"

#define UPSERT_BAR \
    "INSERT INTO stock_prices (symbol, ts, open, high, low, close, volume, interval, source) " \
    "VALUES ($1, to_timestamp($2), $3, $4, $5, $6, $7, $8, $9) " \
    "ON CONFLICT (symbol, ts, interval) DO UPDATE SET open = EXCLUDED.open, " \
    "high = EXCLUDED.high, low = EXCLUDED.low, close = EXCLUDED.close, " \
    "volume = EXCLUDED.volume, source = EXCLUDED.source"

PGconn *store_open(const char *dsn, const char *dir)
{
    return insite_pg_open(dsn, dir, "postgres");
}

int store_ready(PGconn *c)
{
    if (c == NULL)
        return -1;
    if (PQstatus(c) == CONNECTION_OK)
        return 0;
    PQreset(c);
    if (PQstatus(c) == CONNECTION_OK) {
        insite_log_info("postgres: reconnected");
        return 0;
    }
    return -1;
}

static int exec_ok(PGconn *c, PGresult *r, const char *what)
{
    ExecStatusType st = PQresultStatus(r);
    int ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
    if (!ok)
        insite_log_error("postgres: %s: %s", what, PQerrorMessage(c));
    PQclear(r);
    return ok ? 0 : -1;
}

static int upsert(PGconn *c, const char *symbol, int64_t ts, const double px[4], long long vol,
                  const char *interval, const char *source)
{
    char t[24], o[32], h[32], l[32], cl[32], v[24];
    const char *p[9] = { symbol, t, o, h, l, cl, vol >= 0 ? v : NULL, interval, source };

    snprintf(t, sizeof(t), "%" PRId64, ts);
    snprintf(o, sizeof(o), "%.6f", px[0]);
    snprintf(h, sizeof(h), "%.6f", px[1]);
    snprintf(l, sizeof(l), "%.6f", px[2]);
    snprintf(cl, sizeof(cl), "%.6f", px[3]);
    snprintf(v, sizeof(v), "%lld", vol);
    for (int i = 0; i < 3; i++)            /* a quote has only a close */
        if (px[i] < 0)
            p[2 + i] = NULL;
    return exec_ok(c, PQexecParams(c, UPSERT_BAR, 9, NULL, p, NULL, NULL, 0), "upsert stock_prices");
}

int store_bars(PGconn *c, const char *symbol, const char *interval, const char *source,
               const bar *b, size_t n)
{
    if (n == 0)
        return 0;
    if (store_ready(c) != 0 || exec_ok(c, PQexec(c, "BEGIN"), "BEGIN") != 0)
        return -1;
    for (size_t i = 0; i < n; i++) {
        double px[4] = { b[i].open, b[i].high, b[i].low, b[i].close };
        if (upsert(c, symbol, b[i].ts, px, b[i].volume, interval, source) != 0) {
            PQclear(PQexec(c, "ROLLBACK"));
            return -1;
        }
    }
    return exec_ok(c, PQexec(c, "COMMIT"), "COMMIT");
}

int store_quote(PGconn *c, const quote *q)
{
    double px[4] = { -1, -1, -1, q->price };
    if (store_ready(c) != 0)
        return -1;
    return upsert(c, q->symbol, q->market_time, px, q->volume, "quote", q->source);
}

int64_t store_last_bar(PGconn *c, const char *symbol)
{
    const char *p[1] = { symbol };
    int64_t ts = -1;

    if (store_ready(c) != 0)
        return -1;
    PGresult *r = PQexecParams(c,
        "SELECT coalesce(extract(epoch FROM max(ts))::bigint, 0) FROM stock_prices "
        "WHERE symbol = $1 AND interval = '1m'", 1, NULL, p, NULL, NULL, 0);
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1)
        ts = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    else
        insite_log_error("postgres: last bar of %s: %s", symbol, PQerrorMessage(c));
    PQclear(r);
    return ts;
}
