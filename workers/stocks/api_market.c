/* GET /api/v1/stocks[?query=], /api/v1/stocks/{symbol},
 *     /api/v1/stocks/{symbol}/bars, /api/v1/stocks/{symbol}/sentiment
 * (docs/stocks.md). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "log.h"
#include "stocks.h"

#define SYMBOL_RULE "symbol must match [A-Za-z0-9.^=-]{1,15}"
#define SETTLE 120   /* s: a bar older than this is final (collector lag) */

typedef struct {
    char symbol[STOCKS_SYMBOL_MAX];
    char name[256], exchange[64], timezone[64], currency[16], calendar[32];
    char session_open[16];         /* local "09:30:00": 1h buckets start here */
    int has_name, has_exchange, has_currency;
} symbol_info;

static json_t *str_or_null(int has, const char *s)
{
    return has ? json_string(s) : json_null();
}

static json_t *num_or_null(PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? json_null() : json_real(strtod(PQgetvalue(r, row, col), NULL));
}

static json_t *int_or_null(PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? json_null()
                                    : json_integer(strtoll(PQgetvalue(r, row, col), NULL, 10));
}

static json_t *time_json(int64_t epoch)
{
    char t[INSITE_RFC3339_LEN];
    return json_string(insite_clock_rfc3339_ms(t, sizeof(t), epoch * 1000));
}

static void copy_col(PGresult *r, int col, char *out, size_t n, int *has)
{
    int null = PQgetisnull(r, 0, col);
    snprintf(out, n, "%s", null ? "" : PQgetvalue(r, 0, col));
    if (has)
        *has = !null;
}

/* Known symbols, remembered for a minute: a symbol with prices stays known
 * (rows are not deleted), so only positive answers are kept; a new symbol
 * is found at once.  Direct-mapped by the symbol hash, shared by the HTTP
 * threads under known_lock (held for a copy, never across a query). */
#define KNOWN_SLOTS 256
#define KNOWN_TTL 60
static struct {
    symbol_info info;
    time_t at;
} known_cache[KNOWN_SLOTS];
static pthread_mutex_t known_lock = PTHREAD_MUTEX_INITIALIZER;

static int known_get(const char *symbol, time_t now, symbol_info *info)
{
    unsigned slot = stocks_symbol_hash(symbol) % KNOWN_SLOTS;
    int hit;
    pthread_mutex_lock(&known_lock);
    hit = known_cache[slot].at > now - KNOWN_TTL
          && strcmp(known_cache[slot].info.symbol, symbol) == 0;
    if (hit)
        *info = known_cache[slot].info;
    pthread_mutex_unlock(&known_lock);
    return hit;
}

static void known_put(const symbol_info *info, time_t now)
{
    unsigned slot = stocks_symbol_hash(info->symbol) % KNOWN_SLOTS;
    pthread_mutex_lock(&known_lock);
    known_cache[slot].info = *info;
    known_cache[slot].at = now;
    pthread_mutex_unlock(&known_lock);
}

/* 1 known (info filled), 0 unknown (404 reply set), -1 error (reply set).
 * Known = PostgreSQL holds prices (or, with sentiment, aggregates) for it. */
static int lookup(stocks_ctx *ctx, stocks_conn *conn, const char *symbol, int with_sentiment,
                  symbol_info *info, json_t **reply)
{
    time_t now = time(NULL);
    if (known_get(symbol, now, info))
        return 1;
    static const char sql[] =
        "SELECT s.name, s.exchange, coalesce(s.timezone, $2), s.currency,"
        " EXISTS (SELECT 1 FROM stock_prices p WHERE p.symbol = $1)"
        "  OR ($3 = '1' AND EXISTS (SELECT 1 FROM sentiment_data d WHERE d.symbol = $1)),"
        " coalesce(s.calendar, 'US'), coalesce(s.session_open, '09:30')::text"
        " FROM (VALUES ($1::text)) q(sym) LEFT JOIN stock_symbols s ON s.symbol = q.sym";
    const char *p[3] = { symbol, ctx->default_tz, with_sentiment ? "1" : "0" };
    PGresult *r = stocks_query(ctx, conn, "symbol lookup", sql, 3, p, reply);
    if (r == NULL)
        return -1;
    int known = PQntuples(r) == 1 && strcmp(PQgetvalue(r, 0, 4), "t") == 0;
    if (known) {
        snprintf(info->symbol, sizeof(info->symbol), "%s", symbol);
        copy_col(r, 0, info->name, sizeof(info->name), &info->has_name);
        copy_col(r, 1, info->exchange, sizeof(info->exchange), &info->has_exchange);
        copy_col(r, 2, info->timezone, sizeof(info->timezone), NULL);
        copy_col(r, 3, info->currency, sizeof(info->currency), &info->has_currency);
        copy_col(r, 5, info->calendar, sizeof(info->calendar), NULL);
        copy_col(r, 6, info->session_open, sizeof(info->session_open), NULL);
        if (!with_sentiment)           /* known by its prices */
            known_put(info, now);
    } else {
        char msg[96];
        snprintf(msg, sizeof(msg), "unknown symbol %s: no data collected for it", symbol);
        *reply = insite_http_error("not_found", msg);
    }
    PQclear(r);
    return known;
}

/* ---- quote ---------------------------------------------------------- */

typedef struct {
    double price, change;
    int has_change;
    long long volume;            /* -1 = unknown */
    int64_t as_of;
    char source[32], currency[16];
    const char *served_from;
} quote_data;

static int quote_from_redis(stocks_ctx *ctx, stocks_conn *conn, const char *symbol, quote_data *q)
{
    json_t *msg = stocks_redis_last_update(ctx, conn, symbol);
    json_t *d = json_object_get(msg, "data");
    json_t *price = json_object_get(d, "price"), *mt = json_object_get(d, "market_time");
    int64_t t;
    int ok = json_is_number(price) && json_is_string(mt)
             && stocks_time_parse(json_string_value(mt), &t) == 0;
    if (ok) {
        json_t *ch = json_object_get(d, "change"), *v = json_object_get(d, "volume");
        q->price = json_number_value(price);
        q->has_change = json_is_number(ch);
        q->change = json_number_value(ch);
        q->volume = json_is_integer(v) ? (long long)json_integer_value(v) : -1;
        q->as_of = t;
        snprintf(q->source, sizeof(q->source), "%s",
                 json_string_value(json_object_get(d, "source")) ?: "unknown");
        snprintf(q->currency, sizeof(q->currency), "%s",
                 json_string_value(json_object_get(d, "currency")) ?: "");
        q->served_from = "redis";
    }
    json_decref(msg);
    return ok ? 0 : -1;
}

/* The newest 'quote' row or 1m bar. 0, 1 none, -1 error. */
static int quote_from_pg(stocks_ctx *ctx, stocks_conn *conn, const char *symbol, quote_data *q,
                         json_t **reply)
{
    static const char sql[] =
        "SELECT extract(epoch FROM ts)::bigint, close, volume, source FROM ("
        " (SELECT ts, close, volume, source FROM stock_prices WHERE symbol = $1"
        "  AND interval = 'quote' ORDER BY ts DESC LIMIT 1) UNION ALL"
        " (SELECT ts + interval '1 minute', close, NULL, source FROM stock_prices"
        "  WHERE symbol = $1 AND interval = '1m' ORDER BY ts DESC LIMIT 1)) x"
        " ORDER BY ts DESC LIMIT 1";
    const char *p[1] = { symbol };
    PGresult *r = stocks_query(ctx, conn, "latest quote", sql, 1, p, reply);
    if (r == NULL)
        return -1;
    int none = PQntuples(r) == 0;
    if (!none) {
        q->as_of = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
        q->price = strtod(PQgetvalue(r, 0, 1), NULL);
        q->volume = PQgetisnull(r, 0, 2) ? -1 : strtoll(PQgetvalue(r, 0, 2), NULL, 10);
        snprintf(q->source, sizeof(q->source), "%s", PQgetvalue(r, 0, 3));
        q->served_from = "postgresql";
    }
    PQclear(r);
    return none;
}

static int quote(stocks_ctx *ctx, const insite_http_request *req, const char *symbol,
                 json_t **reply)
{
    /* the session: the exchange-local day of the newest minute bar at as_of */
    static const char day_sql[] =
        "WITH d AS (SELECT date_trunc('day', coalesce((SELECT max(ts) FROM stock_prices"
        "  WHERE symbol = $1 AND interval = '1m' AND ts <= to_timestamp($2)), to_timestamp($2))"
        "  AT TIME ZONE $3) AS l),"
        " b AS (SELECT (d.l AT TIME ZONE $3) AS s, ((d.l + interval '1 day') AT TIME ZONE $3) AS e FROM d),"
        " now_l AS (SELECT now() AT TIME ZONE $3 AS n),"
        " cal AS (SELECT c.kind, c.open_time, c.close_time FROM market_calendar c, now_l"
        "  WHERE c.calendar = $4 AND c.day = now_l.n::date)"
        " SELECT (SELECT min(low) FROM stock_prices, b WHERE symbol = $1 AND interval = '1m'"
        "         AND ts >= b.s AND ts < b.e),"
        "  (SELECT max(high) FROM stock_prices, b WHERE symbol = $1 AND interval = '1m'"
        "         AND ts >= b.s AND ts < b.e),"
        "  (SELECT open FROM stock_prices, b WHERE symbol = $1 AND interval = '1m'"
        "         AND ts >= b.s AND ts < b.e ORDER BY ts LIMIT 1),"
        "  (SELECT sum(volume) FROM stock_prices, b WHERE symbol = $1 AND interval = '1m'"
        "         AND ts >= b.s AND ts < b.e),"
        "  (SELECT close FROM stock_prices, b WHERE symbol = $1 AND interval = '1m'"
        "         AND ts < b.s ORDER BY ts DESC LIMIT 1),"
        /* market state: the weekday default unless market_calendar has
         * the local day (migration 032) */
        "  (SELECT CASE WHEN cal.kind = 'closed' THEN 'CLOSED'"
        "    WHEN cal.kind IS NULL AND extract(isodow FROM n) > 5 THEN 'CLOSED'"
        "    WHEN n::time >= coalesce(cal.open_time, '09:30')"
        "     AND n::time < coalesce(cal.close_time, '16:00') THEN 'REGULAR'"
        "    WHEN n::time >= '04:00' AND n::time < coalesce(cal.open_time, '09:30') THEN 'PRE'"
        "    WHEN n::time >= coalesce(cal.close_time, '16:00') AND n::time <"
        "     CASE WHEN cal.close_time < '16:00' THEN time '17:00' ELSE time '20:00' END THEN 'POST'"
        "    ELSE 'CLOSED' END FROM now_l LEFT JOIN cal ON true)";
    symbol_info info;
    quote_data q = { .volume = -1 };
    stocks_conn *conn = stocks_acquire(ctx, reply);
    if (conn == NULL)
        return 503;
    int k = lookup(ctx, conn, symbol, 0, &info, reply);
    if (k <= 0) {
        stocks_release(ctx, conn);
        return k == 0 ? 404 : 500;
    }
    if (quote_from_redis(ctx, conn, symbol, &q) != 0) {
        int rc = quote_from_pg(ctx, conn, symbol, &q, reply);
        if (rc != 0) {
            stocks_release(ctx, conn);
            if (rc < 0)
                return 500;
            *reply = insite_http_error("not_found", "no quote stored for this symbol yet");
            return 404;
        }
    }
    char asof[24];
    snprintf(asof, sizeof(asof), "%" PRId64, q.as_of);
    const char *p[4] = { symbol, asof, info.timezone, info.calendar };
    PGresult *r = stocks_query(ctx, conn, "day range", day_sql, 4, p, reply);
    stocks_release(ctx, conn);
    if (r == NULL)
        return 500;
    double prev = q.has_change ? q.price - q.change
                : PQgetisnull(r, 0, 4) ? 0 : strtod(PQgetvalue(r, 0, 4), NULL);
    int has_prev = q.has_change || !PQgetisnull(r, 0, 4);
    json_t *volume = q.volume >= 0 ? json_integer(q.volume) : int_or_null(r, 0, 3);
    json_t *o = json_object();
    json_object_set_new(o, "symbol", json_string(symbol));
    json_object_set_new(o, "name", str_or_null(info.has_name, info.name));
    json_object_set_new(o, "exchange", str_or_null(info.has_exchange, info.exchange));
    json_object_set_new(o, "timezone", json_string(info.timezone));
    json_object_set_new(o, "currency", q.currency[0] ? json_string(q.currency)
                                                     : str_or_null(info.has_currency, info.currency));
    json_object_set_new(o, "price", json_real(q.price));
    json_object_set_new(o, "previous_close", has_prev ? json_real(prev) : json_null());
    json_object_set_new(o, "change", has_prev ? json_real(q.price - prev) : json_null());
    json_object_set_new(o, "change_percent", has_prev && prev != 0
                        ? json_real((q.price - prev) / prev * 100.0) : json_null());
    json_object_set_new(o, "day_open", num_or_null(r, 0, 2));
    json_object_set_new(o, "day_high", num_or_null(r, 0, 1));
    json_object_set_new(o, "day_low", num_or_null(r, 0, 0));
    json_object_set_new(o, "volume", volume);
    json_object_set_new(o, "market_state", json_string(PQgetvalue(r, 0, 5)));
    json_object_set_new(o, "as_of", time_json(q.as_of));
    json_object_set_new(o, "source", json_string(q.source));
    json_object_set_new(o, "simulated", json_boolean(strcmp(q.source, "simulated") == 0));
    json_object_set_new(o, "served_from", json_string(q.served_from));
    PQclear(r);
    insite_counter_inc(ctx->req_quote);
    stocks_cache_headers(req, ctx->quote_max_age, q.as_of);
    *reply = o;
    return 200;
}

/* ---- bars ----------------------------------------------------------- */

/* Columns: bucket start, open, high, low, close, volume, minute bars, newest
 * minute.  $1 symbol, $2 scan from, $3 to, $4 bucket after, $5 limit + 1,
 * $6 date_bin stride or time zone.  Buckets hold the minute bars inside
 * [from, to) only; 1m reads the rows as stored. */
static const char bars_1m_sql[] =
    "SELECT extract(epoch FROM ts)::bigint, open, high, low, close, volume, 1,"
    " extract(epoch FROM ts)::bigint FROM stock_prices"
    " WHERE symbol = $1 AND interval = '1m' AND ts >= to_timestamp($2) AND ts < to_timestamp($3)"
    " AND ts > to_timestamp($4) ORDER BY ts LIMIT $5::int";
#define AGG_SQL(BUCKET) \
    "SELECT extract(epoch FROM b)::bigint, (array_agg(open ORDER BY ts))[1], max(high)," \
    " min(low), (array_agg(close ORDER BY ts DESC))[1], sum(volume), count(*)," \
    " extract(epoch FROM max(ts))::bigint FROM (SELECT " BUCKET " AS b, ts, open, high, low," \
    " close, volume FROM stock_prices WHERE symbol = $1 AND interval = '1m'" \
    " AND ts >= to_timestamp($2) AND ts < to_timestamp($3)) s" \
    " GROUP BY b HAVING b > to_timestamp($4) ORDER BY b LIMIT $5::int"
static const char bars_fixed_sql[] =
    AGG_SQL("date_bin($6::interval, ts, timestamptz '1970-01-01 00:00:00+00')");
/* 1h: hours from the session open (09:30 New York: 09:30, 10:30, ..., the
 * last one cut at 16:00 by the data), as Yahoo's 1h bars.  The origin is
 * the open on the exchange-local day of $2 ($7 zone, $8 local open time);
 * DST moves clocks by whole hours, so the opens of every day are the same
 * modulo an hour and one origin aligns the whole range, DST days included. */
static const char bars_session_sql[] =
    AGG_SQL("date_bin($6::interval, ts, (date_trunc('day', to_timestamp($2) AT TIME ZONE $7)"
            " + $8::time) AT TIME ZONE $7)");
/* The exchange's local days (DST days have 23 or 25 hours): the day bounds
 * are computed once per day, then each day reads its minutes from the
 * 15-minute rollup (migration 031) where whole buckets lie inside the range
 * ($7 = $2 rounded up, $8 = $3 rounded down to 15 minutes) and from the
 * 1-minute rows at the cut edges.  A local day is a whole number of these
 * UTC-aligned buckets in every zone, so a year is ~26 rollup rows a day
 * (index range scans) instead of 390 minute rows, with the same result. */
static const char bars_day_sql[] =
    "SELECT extract(epoch FROM d.s)::bigint, a.o, a.h, a.l, a.c, a.v, a.n,"
    " extract(epoch FROM a.m)::bigint"
    " FROM (SELECT g AT TIME ZONE $6 AS s, greatest(g AT TIME ZONE $6, to_timestamp($2)) AS lo,"
    "  least((g + interval '1 day') AT TIME ZONE $6, to_timestamp($3)) AS hi"
    "  FROM generate_series(date_trunc('day', to_timestamp($2) AT TIME ZONE $6),"
    "                       to_timestamp($3) AT TIME ZONE $6, interval '1 day') g) d"
    " CROSS JOIN LATERAL (SELECT (array_agg(x.open ORDER BY x.t))[1] o, max(x.high) h,"
    "  min(x.low) l, (array_agg(x.close ORDER BY x.t DESC))[1] c, sum(x.volume) v,"
    "  sum(x.minutes) n, max(x.last_ts) m FROM ("
    "   SELECT bucket t, open, high, low, close, volume, minutes, last_ts FROM stock_bars_15m"
    "    WHERE symbol = $1 AND bucket >= greatest(d.lo, to_timestamp($7))"
    "    AND bucket < least(d.hi, to_timestamp($8))"
    "   UNION ALL SELECT ts, open, high, low, close, volume, 1, ts FROM stock_prices"
    "    WHERE d.lo < to_timestamp($7) AND symbol = $1 AND interval = '1m' AND ts >= d.lo"
    "    AND ts < least(d.hi, to_timestamp($7))"
    "   UNION ALL SELECT ts, open, high, low, close, volume, 1, ts FROM stock_prices"
    "    WHERE d.hi > to_timestamp($8) AND symbol = $1 AND interval = '1m'"
    "    AND ts >= greatest(d.lo, to_timestamp($8))"
    "    AND ts < d.hi) x) a"
    " WHERE a.n > 0 AND d.s > to_timestamp($4) ORDER BY d.s LIMIT $5::int";
#define ROLLUP_STEP 900   /* s: stock_bars_15m's bucket */

static int64_t floor_div(int64_t a, int64_t b)
{
    return a / b - (a % b != 0 && (a < 0) != (b < 0));
}

static int bad(json_t **reply, const char *msg)
{
    *reply = insite_http_error("bad_request", msg);
    return 400;
}

static int bars(stocks_ctx *ctx, const insite_http_request *req, const char *symbol,
                json_t **reply)
{
    const char *qi = insite_http_query(req, "interval"), *qc = insite_http_query(req, "cursor");
    const stocks_interval *iv = stocks_interval_parse(qi ? qi : "1m");
    stocks_cursor cur = { 0 };
    int64_t from, to, scan, after, now = (int64_t)time(NULL);
    long limit;
    char err[160];

    if (iv == NULL)
        return bad(reply, "interval must be one of 1m, 5m, 15m, 1h, 1d");
    if (stocks_limit_parse(insite_http_query(req, "limit"), ctx->page_default, ctx->page_max,
                           &limit, err, sizeof(err)) != 0)
        return bad(reply, err);
    if (qc != NULL) {
        if (stocks_cursor_decode(qc, &cur) != 0 || cur.symbol_hash != stocks_symbol_hash(symbol))
            return bad(reply, "cursor: not a cursor of this query (use next_cursor as given)");
        if (qi != NULL && cur.interval != (int)iv->id)
            return bad(reply, "cursor: it belongs to another interval");
        iv = stocks_interval_by_id(cur.interval);
        from = cur.from;
        to = cur.to;
        after = cur.after;
        scan = after > from ? after : from;   /* the last bucket's minutes are >= its start */
    } else {
        if (stocks_range_resolve(iv, insite_http_query(req, "from"), insite_http_query(req, "to"),
                                 now, &from, &to, err, sizeof(err)) != 0)
            return bad(reply, err);
        scan = from;
        after = from - 3 * 86400;             /* below any bucket of the range */
    }

    /* a closed page asked before: the bytes as they were (bars_cache.h) */
    char ckey[160];
    stocks_cached_page page;
    uint64_t ticket;
    snprintf(ckey, sizeof(ckey), "%s|%d|%" PRId64 "|%" PRId64 "|%" PRId64 "|%ld", symbol,
             (int)iv->id, from, to, after, limit);
    if (stocks_bars_cache_get(ctx->bars_cache, symbol, ckey, &page, &ticket)) {
        insite_counter_inc(ctx->bars_cache_hits);
        insite_counter_inc(ctx->req_bars);
        insite_http_set_body(req, "application/json", page.body, page.len);
        stocks_cache_headers(req, ctx->closed_max_age, page.last_modified);
        insite_http_etag_known(req, page.etag);
        return 200;
    }
    insite_counter_inc(ctx->bars_cache_misses);

    symbol_info info;
    stocks_conn *conn = stocks_acquire(ctx, reply);
    if (conn == NULL)
        return 503;
    int k = lookup(ctx, conn, symbol, 0, &info, reply);
    if (k <= 0) {
        stocks_release(ctx, conn);
        return k == 0 ? 404 : 500;
    }
    /* the whole rollup buckets inside [scan, to): [up, down), empty when
     * the range is shorter than a bucket (then both edges are minute rows
     * and must not overlap: down >= up) */
    int64_t up = floor_div(scan + ROLLUP_STEP - 1, ROLLUP_STEP) * ROLLUP_STEP;
    int64_t down = floor_div(to, ROLLUP_STEP) * ROLLUP_STEP;
    if (down < up)
        down = up;
    char s_scan[24], s_to[24], s_after[24], s_lim[24], s_up[24], s_down[24];
    snprintf(s_scan, sizeof(s_scan), "%" PRId64, scan);
    snprintf(s_to, sizeof(s_to), "%" PRId64, to);
    snprintf(s_after, sizeof(s_after), "%" PRId64, after);
    snprintf(s_lim, sizeof(s_lim), "%ld", limit + 1);
    snprintf(s_up, sizeof(s_up), "%" PRId64, up);
    snprintf(s_down, sizeof(s_down), "%" PRId64, down);
    const char *p[8] = { symbol, s_scan, s_to, s_after, s_lim,
                         iv->id == STOCKS_1D ? info.timezone : iv->pg_interval, s_up, s_down };
    const char *sql = iv->id == STOCKS_1M ? bars_1m_sql
                    : iv->id == STOCKS_1D ? bars_day_sql
                    : iv->id == STOCKS_1H ? bars_session_sql : bars_fixed_sql;
    int np = iv->id == STOCKS_1M ? 5 : iv->id == STOCKS_5M || iv->id == STOCKS_15M ? 6 : 8;
    if (iv->id == STOCKS_1H) {
        p[6] = info.timezone;
        p[7] = info.session_open;
    }
    double t0 = insite_clock_mono_s();
    PGresult *r = stocks_query(ctx, conn, "bars", sql, np, p, reply);
    stocks_release(ctx, conn);
    insite_histogram_observe(ctx->bars_seconds, insite_clock_mono_s() - t0);
    if (r == NULL)
        return 500;

    int n = PQntuples(r), more = n > limit;
    if (more)
        n = (int)limit;
    int64_t newest = 0, last_bucket = 0;
    for (int i = 0; i < n; i++) {
        int64_t m = strtoll(PQgetvalue(r, i, 7), NULL, 10);
        newest = m > newest ? m : newest;
        last_bucket = strtoll(PQgetvalue(r, i, 0), NULL, 10);
    }

    json_t *next = json_null();
    if (more) {
        stocks_cursor nc = { .interval = (int)iv->id, .after = last_bucket, .from = from, .to = to,
                             .symbol_hash = stocks_symbol_hash(symbol) };
        char enc[STOCKS_CURSOR_MAX];
        if (stocks_cursor_encode(&nc, enc, sizeof(enc)) == 0)
            next = json_string(enc);
    }
    /* closed: everything this page can hold has settled (collector lag) */
    int64_t end = more ? last_bucket + iv->seconds + 3600 : to;
    int closed = end <= now - SETTLE;
    int64_t lm = newest > 0 ? newest + 60 : 0;
    json_t *head = json_pack("{s:s, s:s, s:s, s:o, s:o, s:o}", "symbol", symbol,
                             "interval", iv->name, "timezone", info.timezone,
                             "from", time_json(from), "to", time_json(to), "next_cursor", next);
    char *htext = head ? json_dumps(head, JSON_COMPACT) : NULL;
    char *body = htext ? stocks_bars_text(r, n, htext) : NULL;
    json_decref(head);
    free(htext);
    PQclear(r);
    if (body == NULL) {
        *reply = insite_http_error("internal", "out of memory");
        return 500;
    }
    page = (stocks_cached_page){ .body = body, .len = strlen(body),
                                 .last_modified = lm > now ? now : lm };
    int tagged = insite_http_etag_of(page.body, page.len, page.etag) == 0;
    if (closed && tagged)   /* the minute rows this page read: [scan, to) */
        stocks_bars_cache_put(ctx->bars_cache, symbol, ckey, scan, to, &page, ticket);
    insite_http_set_body(req, "application/json", body, page.len);
    insite_counter_inc(ctx->req_bars);
    stocks_cache_headers(req, closed ? ctx->closed_max_age : ctx->open_max_age,
                         page.last_modified);
    if (tagged)
        insite_http_etag_known(req, page.etag);
    return 200;
}

/* ---- search --------------------------------------------------------- */

static int search(stocks_ctx *ctx, const insite_http_request *req, json_t **reply)
{
    static const char sql[] =
        "WITH RECURSIVE t(s) AS (SELECT min(symbol) FROM stock_prices"
        "  UNION ALL SELECT (SELECT min(symbol) FROM stock_prices WHERE symbol > t.s)"
        "  FROM t WHERE t.s IS NOT NULL)"
        " SELECT t.s, k.name, k.exchange, coalesce(k.timezone, $4), k.currency FROM t"
        " LEFT JOIN stock_symbols k ON k.symbol = t.s WHERE t.s IS NOT NULL"
        " AND (t.s LIKE $1 || '%' ESCAPE '\\' OR k.name ILIKE '%' || $2 || '%' ESCAPE '\\')"
        " ORDER BY (t.s = $3) DESC, (t.s LIKE $1 || '%' ESCAPE '\\') DESC, t.s LIMIT $5::int";
    const char *q = insite_http_query(req, "query");
    char upper[65], esc_upper[131], esc[131], lim[16], err[96];
    long limit;
    size_t n = q ? strlen(q) : 0;

    if (n > 64)
        return bad(reply, "query: at most 64 characters");
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)q[i] < 0x20 || q[i] == 0x7f)
            return bad(reply, "query: control characters are not allowed");
        upper[i] = (char)((q[i] >= 'a' && q[i] <= 'z') ? q[i] - 32 : q[i]);
    }
    upper[n] = '\0';
    if (stocks_limit_parse(insite_http_query(req, "limit"), 20, 100, &limit, err, sizeof(err)) != 0)
        return bad(reply, err);
    stocks_like_escape(upper, esc_upper);
    stocks_like_escape(q ? q : "", esc);
    snprintf(lim, sizeof(lim), "%ld", limit);
    stocks_conn *conn = stocks_acquire(ctx, reply);
    if (conn == NULL)
        return 503;
    const char *p[5] = { esc_upper, esc, upper, ctx->default_tz, lim };
    PGresult *r = stocks_query(ctx, conn, "symbol search", sql, 5, p, reply);
    stocks_release(ctx, conn);
    if (r == NULL)
        return 500;
    json_t *list = json_array();
    for (int i = 0; i < PQntuples(r); i++)
        json_array_append_new(list, json_pack("{s:s, s:o, s:o, s:s, s:o}",
            "symbol", PQgetvalue(r, i, 0),
            "name", PQgetisnull(r, i, 1) ? json_null() : json_string(PQgetvalue(r, i, 1)),
            "exchange", PQgetisnull(r, i, 2) ? json_null() : json_string(PQgetvalue(r, i, 2)),
            "timezone", PQgetvalue(r, i, 3),
            "currency", PQgetisnull(r, i, 4) ? json_null() : json_string(PQgetvalue(r, i, 4))));
    PQclear(r);
    *reply = json_pack("{s:s, s:o}", "query", q ? q : "", "results", list);
    insite_counter_inc(ctx->req_search);
    stocks_cache_headers(req, 60, 0);
    return 200;
}

/* ---- sentiment ------------------------------------------------------ */

static int sentiment(stocks_ctx *ctx, const insite_http_request *req, const char *symbol,
                     json_t **reply)
{
    static const char sql[] =
        "SELECT extract(epoch FROM ts)::bigint, mean_compound, pos_count, neg_count, neu_count,"
        " mentions FROM sentiment_data WHERE symbol = $1 AND \"window\" = $2"
        " AND ts >= to_timestamp($3) AND ts < to_timestamp($4) ORDER BY ts LIMIT 5000";
    /* the windows the analytics worker stores (workers/analytics/windows.c) */
    static const stocks_interval win = { 0, "sentiment", 60, 90 * 86400, 7 * 86400, "" };
    const char *w = insite_http_query(req, "interval");
    int64_t from, to;
    char err[160];

    if (w == NULL)
        w = "1h";
    if (strcmp(w, "1h") != 0 && strcmp(w, "24h") != 0)
        return bad(reply, "interval must be 1h or 24h (the analytics worker's windows)");
    if (stocks_range_resolve(&win, insite_http_query(req, "from"), insite_http_query(req, "to"),
                             (int64_t)time(NULL), &from, &to, err, sizeof(err)) != 0)
        return bad(reply, err);
    symbol_info info;
    stocks_conn *conn = stocks_acquire(ctx, reply);
    if (conn == NULL)
        return 503;
    int k = lookup(ctx, conn, symbol, 1, &info, reply);
    if (k <= 0) {
        stocks_release(ctx, conn);
        return k == 0 ? 404 : 500;
    }
    char sf[24], st[24];
    snprintf(sf, sizeof(sf), "%" PRId64, from);
    snprintf(st, sizeof(st), "%" PRId64, to);
    const char *p[4] = { symbol, w, sf, st };
    PGresult *r = stocks_query(ctx, conn, "sentiment series", sql, 4, p, reply);
    stocks_release(ctx, conn);
    if (r == NULL)
        return 500;
    json_t *pts = json_array();
    int64_t newest = 0;
    for (int i = 0; i < PQntuples(r); i++) {
        int64_t t = strtoll(PQgetvalue(r, i, 0), NULL, 10);
        newest = t;
        json_array_append_new(pts, json_pack("{s:o, s:o, s:o, s:o, s:o, s:o}",
            "time", time_json(t), "mean_compound", num_or_null(r, i, 1),
            "positive", int_or_null(r, i, 2), "negative", int_or_null(r, i, 3),
            "neutral", int_or_null(r, i, 4), "mentions", int_or_null(r, i, 5)));
    }
    PQclear(r);
    *reply = json_pack("{s:s, s:s, s:o, s:o, s:o}", "symbol", symbol, "interval", w,
                       "from", time_json(from), "to", time_json(to), "points", pts);
    insite_counter_inc(ctx->req_sentiment);
    stocks_cache_headers(req, 30, newest);
    return 200;
}

int stocks_api_market(const insite_http_request *req, json_t **reply, void *ud)
{
    stocks_ctx *ctx = ud;
    const char *rest = req->rest;
    char seg[1100], symbol[STOCKS_SYMBOL_MAX];

    if (rest[0] == '\0' || strcmp(rest, "/") == 0)
        return search(ctx, req, reply);
    rest++;
    size_t n = strcspn(rest, "/");
    if (n >= sizeof(seg))
        return bad(reply, SYMBOL_RULE);
    memcpy(seg, rest, n);
    seg[n] = '\0';
    if (stocks_symbol_normalize(seg, symbol) != 0)
        return bad(reply, SYMBOL_RULE);
    rest += n;
    if (rest[0] == '\0')
        return quote(ctx, req, symbol, reply);
    if (strcmp(rest, "/bars") == 0)
        return bars(ctx, req, symbol, reply);
    if (strcmp(rest, "/sentiment") == 0)
        return sentiment(ctx, req, symbol, reply);
    *reply = insite_http_error("not_found", "no such path (see /api/v1/stocks/{symbol}[/bars|/sentiment])");
    return 404;
}
