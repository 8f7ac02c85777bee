/* insite-stocks: the pure parts of the API (no I/O), unit-tested and fuzzed:
 * symbols, bar intervals and their range limits, time parameters, and the
 * bars cursor. */
#ifndef STOCKS_PARAMS_H
#define STOCKS_PARAMS_H

#include <stddef.h>
#include <stdint.h>

#define STOCKS_SYMBOL_MAX 16          /* 15 characters + NUL, as the collector */
#define STOCKS_CURSOR_MAX 128         /* encoded cursor incl. NUL */

/* The collector's symbol rule (workers/collector/common.c symbol_valid):
 * [A-Za-z0-9.^=-]{1,15}.  Copies the upper-cased symbol into out. */
int stocks_symbol_normalize(const char *s, char out[STOCKS_SYMBOL_MAX]);

typedef enum { STOCKS_1M, STOCKS_5M, STOCKS_15M, STOCKS_1H, STOCKS_1D } stocks_interval_id;

typedef struct {
    stocks_interval_id id;
    const char *name;            /* "1m" */
    int64_t seconds;             /* bucket width; 1d buckets are exchange-local days */
    int64_t max_range;           /* widest from..to accepted, seconds */
    int64_t default_range;       /* from = to - this when from is absent */
    const char *pg_interval;     /* date_bin stride, "5 minutes" */
} stocks_interval;

/* NULL for anything but 1m, 5m, 15m, 1h, 1d. */
const stocks_interval *stocks_interval_parse(const char *s);
const stocks_interval *stocks_interval_by_id(int id);

/* A time parameter: epoch seconds ("1727876400"), RFC 3339 in UTC or with an
 * offset ("2024-10-02T13:30:00Z", "2024-10-02T09:30:00-04:00", fraction
 * ignored), or a UTC date ("2024-10-02").  Years 1970..9999.  0 or -1. */
int stocks_time_parse(const char *s, int64_t *out);

/* Resolves from/to (either may be NULL: to = now, from = to - default range)
 * against the interval's limits.  0, or -1 with the reason in err (for a 400). */
int stocks_range_resolve(const stocks_interval *iv, const char *from, const char *to,
                         int64_t now, int64_t *f, int64_t *t, char *err, size_t errlen);

/* Page size: NULL = def; else 1..max.  0, or -1 with the reason in err. */
int stocks_limit_parse(const char *s, long def, long max, long *out, char *err, size_t errlen);

/* Where the next page of a bars query starts: the bucket start of the last
 * bar returned (`after`), bound to the query's interval, symbol and range
 * so a cursor cannot be replayed against another query.  Opaque to clients:
 * "b1" + lower-case hex of "<interval>.<after>.<from>.<to>.<symbol hash>". */
typedef struct {
    int interval;                /* stocks_interval_id */
    int64_t after, from, to;
    uint32_t symbol_hash;
} stocks_cursor;

uint32_t stocks_symbol_hash(const char *symbol);
/* 0, or -1 when out is too small. */
int stocks_cursor_encode(const stocks_cursor *c, char *out, size_t outlen);
/* 0, or -1 for anything that encode did not produce. */
int stocks_cursor_decode(const char *s, stocks_cursor *c);

/* Escapes LIKE wildcards (%, _ and the escape character \) of a search
 * term; out holds at least 2 * strlen(s) + 1 bytes. */
void stocks_like_escape(const char *s, char *out);

/* 1 when s is a JSON number by RFC 8259's grammar
 * (-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?), else 0: PostgreSQL's
 * numeric text goes into a bars page as is, and "NaN" must not. */
int stocks_json_number_ok(const char *s);

/* The payload of a NOTIFY insite_stock_bars (migration 033): "<symbol>
 * <first> <last>", the epoch seconds of the first and last minute rows of
 * the symbol a statement changed, or "*" when every row may have changed
 * (TRUNCATE).  1 with symbol, first <= last filled; 0 for "*"; -1 for
 * anything else. */
int stocks_bars_change_parse(const char *s, char symbol[STOCKS_SYMBOL_MAX], int64_t *first,
                             int64_t *last);

#endif
