/* insite-stocks' cache of closed bars pages (workers/stocks/bars_cache.h):
 * hits give the stored bytes, the byte bound evicts the least recently
 * used, an invalidation drops exactly the pages of that symbol whose minute
 * range holds a changed minute, a ticket taken before an invalidation
 * refuses the store, and offline serves nothing.  Also the NOTIFY payload
 * parser (params.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../workers/stocks/bars_cache.h"
#include "../../workers/stocks/params.h"

static stocks_cached_page page_of(const char *text)
{
    stocks_cached_page p = { .body = (char *)text, .len = strlen(text), .last_modified = 42 };
    snprintf(p.etag, sizeof(p.etag), "\"%032zx\"", strlen(text));
    return p;
}

/* the page held under key, or NULL (the copy is freed by the next call) */
static const char *get(stocks_bars_cache *c, const char *sym, const char *key, uint64_t *ticket)
{
    static char *last;
    stocks_cached_page p;
    uint64_t t;
    free(last);
    last = NULL;
    if (stocks_bars_cache_get(c, sym, key, &p, ticket ? ticket : &t)) {
        assert_int_equal(p.last_modified, 42);
        assert_int_equal(p.len, strlen(p.body));
        last = p.body;
    }
    return last;
}

static void put(stocks_bars_cache *c, const char *sym, const char *key, int64_t lo, int64_t hi,
                const char *text)
{
    uint64_t t;
    stocks_cached_page p;
    if (stocks_bars_cache_get(c, sym, key, &p, &t))
        free(p.body);
    stocks_cached_page pg = page_of(text);
    stocks_bars_cache_put(c, sym, key, lo, hi, &pg, t);
}

static void test_hit_and_offline(void **state)
{
    stocks_bars_cache *c = stocks_bars_cache_new(1 << 20);
    put(c, "AAPL", "k1", 0, 100, "page one");
    assert_null(get(c, "AAPL", "k1", NULL));          /* offline: not stored */
    stocks_bars_cache_set_online(c, 1);
    put(c, "AAPL", "k1", 0, 100, "page one");
    assert_string_equal(get(c, "AAPL", "k1", NULL), "page one");
    assert_null(get(c, "AAPL", "k2", NULL));
    stocks_bars_cache_set_online(c, 0);               /* lost listener: emptied */
    assert_null(get(c, "AAPL", "k1", NULL));
    stocks_bars_cache_set_online(c, 1);
    assert_null(get(c, "AAPL", "k1", NULL));          /* and still empty when back */
    stocks_bars_cache_stats s;
    stocks_bars_cache_stats_get(c, &s);
    assert_int_equal(s.pages, 0);
    assert_int_equal(s.bytes, 0);
    get(c, "x", "x", NULL);
    stocks_bars_cache_free(c);
}

static void test_lru_bound(void **state)
{
    char body[1000], key[16];
    memset(body, 'x', sizeof(body) - 1);
    body[sizeof(body) - 1] = '\0';
    /* room for about 5 pages of ~1,160 counted bytes */
    stocks_bars_cache *c = stocks_bars_cache_new(6000);
    stocks_bars_cache_set_online(c, 1);
    for (int i = 0; i < 5; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        put(c, "S", key, 0, 60, body);
    }
    assert_non_null(get(c, "S", "k0", NULL));         /* k0 is now the newest */
    put(c, "S", "k5", 0, 60, body);                   /* evicts k1, the oldest */
    assert_non_null(get(c, "S", "k0", NULL));
    assert_null(get(c, "S", "k1", NULL));
    assert_non_null(get(c, "S", "k5", NULL));
    stocks_bars_cache_stats s;
    stocks_bars_cache_stats_get(c, &s);
    assert_true(s.bytes <= 6000);
    assert_int_equal(s.evicted, 1);
    char big[7000];
    memset(big, 'y', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    put(c, "S", "big", 0, 60, big);                   /* larger than the bound */
    assert_null(get(c, "S", "big", NULL));
    assert_non_null(get(c, "S", "k5", NULL));         /* and it evicted nothing */
    /* many small pages: the table grows, every page is found */
    stocks_bars_cache *m = stocks_bars_cache_new(64 << 20);
    stocks_bars_cache_set_online(m, 1);
    for (int i = 0; i < 5000; i++) {
        snprintf(key, sizeof(key), "m%d", i);
        put(m, "S", key, 0, 60, key);
    }
    for (int i = 0; i < 5000; i++) {
        snprintf(key, sizeof(key), "m%d", i);
        assert_string_equal(get(m, "S", key, NULL), key);
    }
    get(c, "x", "x", NULL);
    stocks_bars_cache_free(m);
    stocks_bars_cache_free(c);
}

static void test_invalidate(void **state)
{
    stocks_bars_cache *c = stocks_bars_cache_new(1 << 20);
    stocks_bars_cache_set_online(c, 1);
    put(c, "AAPL", "day1", 1000, 2000, "a1");         /* minutes [1000, 2000) */
    put(c, "AAPL", "day2", 2000, 3000, "a2");
    put(c, "MSFT", "m-day1", 1000, 2000, "m1");   /* keys hold the symbol */
    /* a minute at 2000 is day2's, not day1's (hi is exclusive) */
    assert_int_equal(stocks_bars_cache_invalidate(c, "AAPL", 2000, 2000), 1);
    assert_non_null(get(c, "AAPL", "day1", NULL));
    assert_null(get(c, "AAPL", "day2", NULL));
    /* before the range: nothing */
    assert_int_equal(stocks_bars_cache_invalidate(c, "AAPL", 0, 999), 0);
    /* a range covering the page's end only */
    assert_int_equal(stocks_bars_cache_invalidate(c, "AAPL", 1999, 5000), 1);
    assert_null(get(c, "AAPL", "day1", NULL));
    assert_non_null(get(c, "MSFT", "m-day1", NULL));    /* other symbols untouched */
    assert_int_equal(stocks_bars_cache_invalidate(c, NULL, 0, 0), 1);
    assert_null(get(c, "MSFT", "m-day1", NULL));
    get(c, "x", "x", NULL);
    stocks_bars_cache_free(c);
}

/* a page read before a revision committed must not be stored after the
 * revision's notification */
static void test_ticket(void **state)
{
    stocks_bars_cache *c = stocks_bars_cache_new(1 << 20);
    stocks_bars_cache_set_online(c, 1);
    uint64_t t, other;
    assert_null(get(c, "AAPL", "k", &t));
    assert_null(get(c, "MSFT", "mk", &other));
    stocks_bars_cache_invalidate(c, "AAPL", 5000, 5000);   /* nothing held, still counts */
    stocks_cached_page pg = page_of("stale");
    stocks_bars_cache_put(c, "AAPL", "k", 0, 100, &pg, t);
    assert_null(get(c, "AAPL", "k", NULL));
    stocks_bars_cache_put(c, "MSFT", "mk", 0, 100, &pg, other);   /* another slot */
    assert_non_null(get(c, "MSFT", "mk", NULL));
    assert_null(get(c, "AAPL", "k", &t));
    stocks_bars_cache_set_online(c, 0);
    stocks_bars_cache_set_online(c, 1);                    /* every ticket outdated */
    stocks_bars_cache_put(c, "AAPL", "k", 0, 100, &pg, t);
    assert_null(get(c, "AAPL", "k", NULL));
    get(c, "x", "x", NULL);
    stocks_bars_cache_free(c);
}

static void test_change_payload(void **state)
{
    char sym[STOCKS_SYMBOL_MAX];
    int64_t f, l;
    assert_int_equal(stocks_bars_change_parse("AAPL 1727875800 1727899140", sym, &f, &l), 1);
    assert_string_equal(sym, "AAPL");
    assert_int_equal(f, 1727875800);
    assert_int_equal(l, 1727899140);
    assert_int_equal(stocks_bars_change_parse("BRK-B 0 0", sym, &f, &l), 1);
    assert_int_equal(stocks_bars_change_parse("^GSPC -60 0", sym, &f, &l), 1);
    assert_int_equal(f, -60);
    assert_int_equal(stocks_bars_change_parse("*", sym, &f, &l), 0);
    static const char *const bad[] = { "", " ", "AAPL", "AAPL 1", "AAPL 1 2 ", "AAPL 2 1",
                                       "aapl 1 2", "AAPL 01 2", "AAPL -0 2", "AAPL 1 x",
                                       "A B 1 2", "ABCDEFGHIJKLMNOP 1 2", "AAPL  1 2", "**",
                                       "AAPL 1234567890123 1234567890124" };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(stocks_bars_change_parse(bad[i], sym, &f, &l), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hit_and_offline), cmocka_unit_test(test_lru_bound),
        cmocka_unit_test(test_invalidate),      cmocka_unit_test(test_ticket),
        cmocka_unit_test(test_change_payload),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
