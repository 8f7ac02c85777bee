/* insite-collector: shared types.
 *
 * A provider turns a watchlist into one quote_result per symbol: a quote
 * (latest price) and, for providers that have them (Yahoo's chart API),
 * the completed 1-minute bars.  Everything downstream (publish, store) only
 * sees these structs, so every feed takes the same path. */
#ifndef COLLECTOR_H
#define COLLECTOR_H

#include <stddef.h>
#include <stdint.h>

#define SYMBOL_MAX 16            /* "BRK-B", "^GSPC", "EURUSD=X" + NUL */
#define ERR_MAX 256

typedef struct {
    int64_t ts;                  /* bar start, epoch seconds */
    double open, high, low, close;
    long long volume;            /* -1 = unknown */
} bar;

typedef struct {
    char symbol[SYMBOL_MAX];
    double price, prev_close;
    long long volume;            /* -1 = unknown (sent as null) */
    char currency[8];
    int64_t market_time;         /* epoch seconds */
    const char *source;          /* "yahoo", "finnhub", "replay", "simulated" */
} quote;

typedef struct {
    char symbol[SYMBOL_MAX];
    int ok;                      /* 1: quote is valid */
    char err[ERR_MAX];           /* why not, when !ok */
    quote q;
    bar *bars;                   /* completed bars, oldest first (malloc) */
    size_t nbars;
    char interval[8];            /* bar interval as the provider names it, "1m" */
    size_t skipped;              /* bars dropped for null/invalid values */
    int64_t first_skipped;       /* ts of the first of those */
} quote_result;

void quote_result_clear(quote_result *r);

/* [A-Za-z0-9.^=-]{1,15} */
int symbol_valid(const char *s);

/* Rounds to 4 decimals: Yahoo sends float32-widened doubles
 * (225.88999938964844) that must be published as 225.89. */
double price_round(double v);

#endif
