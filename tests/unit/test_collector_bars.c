/* insite-collector's chart parser, every field of several bars.
 *
 * The expected numbers are copied by hand from the recording
 * ../shared/fixtures/yahoo (read at run time from the repository root; see
 * its PROVENANCE.md), index by index from chart.result[0].timestamp and
 * indicators.quote[0].{open,high,low,close,volume}, so a parser that
 * swapped two fields, shifted a bar or skipped the wrong one fails here.
 * Yahoo sends float32 values widened to doubles (225.88999938964844); the
 * parser keeps them as sent and price_round() gives the 4-decimal price. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../workers/collector/chart.h"
#include "../../workers/collector/collector.h"

#define YAHOO "../shared/fixtures/yahoo"

typedef struct {
    size_t     index;       /* in the parsed bars */
    int64_t    ts;
    double     open, high, low, close;     /* as price_round() gives them */
    long long  volume;
} bar_want;

static void parse(const char *name, const char *sym, quote_result *r)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", YAHOO, name);
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        fail_msg("cannot open %s (run from the repository root)", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    size_t len = fread(b, 1, (size_t)n, f);
    fclose(f);
    memset(r, 0, sizeof(*r));
    assert_int_equal(chart_parse(sym, 200, b, len, r), 0);
    free(b);
    assert_true(r->ok);
}

static void check(const quote_result *r, const bar_want *w, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        assert_true(w[i].index < r->nbars);
        const bar *b = &r->bars[w[i].index];
        if (b->ts != w[i].ts || price_round(b->open) != w[i].open
            || price_round(b->high) != w[i].high || price_round(b->low) != w[i].low
            || price_round(b->close) != w[i].close || b->volume != w[i].volume)
        {
            fail_msg("bar %zu: got ts %lld o %.4f h %.4f l %.4f c %.4f v %lld, "
                     "want ts %lld o %.4f h %.4f l %.4f c %.4f v %lld", w[i].index,
                     (long long)b->ts, b->open, b->high, b->low, b->close, b->volume,
                     (long long)w[i].ts, w[i].open, w[i].high, w[i].low, w[i].close,
                     w[i].volume);
        }
    }
}

static void test_aapl_1m_bars(void **state)
{
    quote_result r;
    /* source index 105 (ts 1727882100) is all null and skipped, so parsed
     * bar 105 is source bar 106; source 390 (the next session's forming
     * bar) is left out */
    static const bar_want w[] = {
        { 0,   1727875800, 225.89, 226.11, 225.42, 225.70, 1205461 },
        { 1,   1727875860, 225.73, 226.00, 225.55, 225.94, 205420 },
        { 104, 1727882040, 226.13, 226.14, 226.08, 226.13, 11712 },
        { 105, 1727882160, 226.34, 226.388, 226.29, 226.38, 191527 },
        { 388, 1727899140, 226.86, 226.9601, 226.6901, 226.81, 546314 },
    };
    parse("chart_AAPL_1m_2024-10-02.json", "AAPL", &r);
    assert_int_equal(r.nbars, 389);
    check(&r, w, sizeof(w) / sizeof(w[0]));
    quote_result_clear(&r);
}

static void test_msft_1d_bars(void **state)
{
    quote_result r;
    static const bar_want w[] = {
        { 0, 1612189800, 235.06, 242.50, 232.43, 239.65, 33314200 },
        { 1, 1612276200, 241.30, 242.31, 238.69, 239.51, 25916300 },
    };
    parse("chart_MSFT_1d_2021-02-01_to_2022-01-31_div.json", "MSFT", &r);
    check(&r, w, sizeof(w) / sizeof(w[0]));
    quote_result_clear(&r);
}

static void test_tsla_30m_bars(void **state)
{
    quote_result r;
    /* integers in the recording (1147, 1169): parsed as numbers too */
    static const bar_want w[] = {
        { 0, 1637571600, 1148.51, 1168.8, 1147, 1168.7, 0 },
        { 1, 1637573400, 1168.7, 1173.4, 1167, 1169, 0 },
    };
    parse("chart_TSLA_30m_2021-11-22_prepost.json", "TSLA", &r);
    check(&r, w, sizeof(w) / sizeof(w[0]));
    quote_result_clear(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_aapl_1m_bars),
        cmocka_unit_test(test_msft_1d_bars),
        cmocka_unit_test(test_tsla_30m_bars),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
