/* insite-stocks: the in-worker cache of closed bars pages (docs/stocks.md,
 * "Bars cache").
 *
 * A bars page whose every bucket is final (older than the collector's lag)
 * is the same bytes on every request until a minute row it was built from
 * changes.  This cache keeps such pages (body, ETag, Last-Modified) keyed
 * by the request (symbol, interval, from, to, cursor position, limit),
 * least recently used first out when it holds more than its byte bound.
 *
 * Invalidation is precise and comes from PostgreSQL: the rollup triggers on
 * stock_prices (migration 033) NOTIFY insite_stock_bars "<symbol> <first>
 * <last>" (epoch seconds of the changed minute rows) after each statement,
 * and the listener thread (bars_listen.c) drops every page of that symbol
 * whose minute range [lo, hi) holds one of them.  Pages are served only
 * while the listener is connected (online): a notification missed while
 * disconnected cannot leave a stale page, since going online empties the
 * cache.
 *
 * The race between a page read from PostgreSQL and a revision committed
 * meanwhile is closed by tickets: stocks_bars_cache_get() returns the
 * generation of the symbol's slot, every invalidation of the slot bumps it,
 * and stocks_bars_cache_put() drops a page whose ticket is out of date (its
 * query may have read the minutes before the revision, whose notification
 * arrived before the put).  A notification always arrives after its
 * commit, so a page read before the commit is either refused by put or
 * dropped by the notification.
 *
 * Thread-safe (one mutex, never held across I/O). */
#ifndef STOCKS_BARS_CACHE_H
#define STOCKS_BARS_CACHE_H

#include <stddef.h>
#include <stdint.h>

typedef struct stocks_bars_cache stocks_bars_cache;

#define STOCKS_CACHE_NO_TICKET UINT64_MAX   /* offline: put drops the page */

typedef struct {
    char *body;                  /* malloc'd copy, owned by the caller */
    size_t len;
    char etag[35];               /* "\"<32 hex>\"" as insite_http_etag_of() */
    int64_t last_modified;       /* epoch s, 0 = none */
} stocks_cached_page;

/* max_bytes: bound on bodies + keys + bookkeeping; 0 = a cache that
 * never holds anything.  NULL when out of memory. */
stocks_bars_cache *stocks_bars_cache_new(size_t max_bytes);
void stocks_bars_cache_free(stocks_bars_cache *c);

/* 1 and *out filled (the body copied) on a hit, 0 on a miss; either way
 * *ticket is what stocks_bars_cache_put() needs after the query. */
int stocks_bars_cache_get(stocks_bars_cache *c, const char *symbol, const char *key,
                          stocks_cached_page *out, uint64_t *ticket);

/* Stores a copy of the page (body not taken), covering the minute rows of
 * symbol in [lo, hi).  Dropped when the ticket is stale, the cache is
 * offline, or the page alone is larger than the bound; the least recently
 * used pages go to make room. */
void stocks_bars_cache_put(stocks_bars_cache *c, const char *symbol, const char *key,
                           int64_t lo, int64_t hi, const stocks_cached_page *page,
                           uint64_t ticket);

/* Drops symbol's pages whose [lo, hi) holds a minute in [first, last];
 * symbol NULL drops every page.  Returns how many were dropped. */
size_t stocks_bars_cache_invalidate(stocks_bars_cache *c, const char *symbol, int64_t first,
                                    int64_t last);

/* Online = the invalidations arrive.  Either transition empties the cache
 * and outdates every ticket. */
void stocks_bars_cache_set_online(stocks_bars_cache *c, int online);

typedef struct {
    uint64_t hits, misses, stores, invalidated, evicted;
    size_t pages, bytes;
} stocks_bars_cache_stats;

void stocks_bars_cache_stats_get(stocks_bars_cache *c, stocks_bars_cache_stats *s);

#endif
