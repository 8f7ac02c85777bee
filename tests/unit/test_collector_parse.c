/* insite-collector parsers against recorded API responses
 * (../shared/fixtures, read at run time from the repository root) and the
 * hand-written bad cases in tests/fixtures/collector/.  The collector's
 * parser sources are compiled into this test (the Makefile links unit tests
 * with libinsite.a only). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "../../workers/collector/chart.h"
#include "../../workers/collector/collector.h"


#include "../../workers/collector/social.h"


#include "log.h"

static char *load(const char *dir, const char *name, size_t *len)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        fail_msg("cannot open %s (run from the repository root)", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    *len = fread(b, 1, (size_t)n, f);
    b[*len] = '\0';
    fclose(f);
    return b;
}

#define SHARED "../shared/fixtures"
#define OWN "tests/fixtures/collector"

static int parse_file(const char *dir, const char *name, const char *sym, long status,
                      quote_result *r)
{
    size_t len;
    char *b = load(dir, name, &len);
    memset(r, 0, sizeof(*r));
    int rc = chart_parse(sym, status, b, len, r);
    free(b);
    return rc;
}

static void test_aapl_1m(void **state)
{
    quote_result r;
    assert_int_equal(parse_file(SHARED "/yahoo", "chart_AAPL_1m_2024-10-02.json", "AAPL", 200, &r), 0);
    assert_true(r.ok);
    assert_true(r.q.price == 225.67);
    assert_true(r.q.prev_close == 226.78);
    assert_int_equal(r.q.volume, 33638504);
    assert_string_equal(r.q.currency, "USD");
    assert_int_equal(r.q.market_time, 1727985601);
    assert_string_equal(r.interval, "1m");
    /* 391 timestamps: one all-null bar (index 105) skipped, the last one
     * (next session, still forming at regularMarketTime) left out */
    assert_int_equal(r.nbars, 389);
    assert_int_equal(r.skipped, 1);
    assert_int_equal(r.first_skipped, 1727882100);
    assert_int_equal(r.bars[0].ts, 1727875800);
    assert_true(price_round(r.bars[0].open) == 225.89);   /* 225.88999938964844 */
    assert_int_equal(r.bars[0].volume, 1205461);
    assert_int_equal(r.bars[388].ts, 1727899140);
    for (size_t i = 1; i < r.nbars; i++)
        assert_true(r.bars[i].ts > r.bars[i - 1].ts);
    quote_result_clear(&r);
}

static void test_weekend_and_old_shapes(void **state)
{
    quote_result r;
    assert_int_equal(parse_file(SHARED "/yahoo", "chart_AAPL_1m_2025-02-01_weekend_no_data.json", "AAPL", 200, &r), 0);
    assert_int_equal(r.nbars, 0);
    assert_true(r.q.price == 244.87);
    quote_result_clear(&r);

    /* 2021 response: no regularMarketVolume -> unknown (null), not 0 */
    assert_int_equal(parse_file(SHARED "/yahoo", "chart_TSLA_30m_2021-11-22_prepost.json", "TSLA", 200, &r), 0);
    assert_int_equal(r.q.volume, -1);
    assert_string_equal(r.interval, "30m");
    assert_true(r.nbars > 0);
    quote_result_clear(&r);

    assert_int_equal(parse_file(SHARED "/yahoo", "chart_MSFT_1d_2021-02-01_to_2022-01-31_div.json", "MSFT", 200, &r), 0);
    assert_string_equal(r.interval, "1d");
    assert_true(r.nbars > 200);
    quote_result_clear(&r);
}

static void expect_reject(const char *dir, const char *name, const char *sym, long status,
                          const char *why)
{
    quote_result r;
    assert_int_equal(parse_file(dir, name, sym, status, &r), -1);
    assert_false(r.ok);
    assert_null(r.bars);
    if (strstr(r.err, why) == NULL)
        fail_msg("%s: error \"%s\" does not mention \"%s\"", name, r.err, why);
}

static void test_rejects(void **state)
{
    expect_reject(SHARED "/yahoo", "chart_SIX_404_not_found.json", "SIX", 404,
                  "HTTP 404, chart.error: Not Found: No data found, symbol may be delisted");
    expect_reject(SHARED "/yahoo", "chart_AAPL_1m_2024-10-02.json", "MSFT", 200, "meta.symbol is \"AAPL\"");
    expect_reject(SHARED "/yahoo", "quote_AAPL.json", "AAPL", 200, "no \"chart\" object");
    expect_reject(OWN, "chart_null_price.json", "NULLPX", 200, "meta.regularMarketPrice is null");
    expect_reject(OWN, "chart_length_mismatch.json", "LENS", 200, "close has 1 values for 2 timestamps");
    expect_reject(OWN, "chart_missing_currency.json", "PARTIAL", 200, "meta.currency is missing");
    expect_reject(OWN, "chart_truncated.json", "TRUNC", 200, "malformed JSON");
    expect_reject(OWN, "chart_error_200.json", "X", 200, "chart.error: Bad Request");
    expect_reject(OWN, "chart_bad_type.json", "BADTYPE", 200, "not a number");

    quote_result r = { 0 };
    assert_int_equal(chart_parse("AAPL", 503, "<html>busy</html>", 17, &r), -1);
    assert_string_equal(r.err, "HTTP 503");
    assert_int_equal(chart_parse("AAPL", 200, "", 0, &r), -1);
}

static void test_finnhub(void **state)
{
    quote_result r;
    size_t len;
    char *b = load(OWN, "finnhub_quote_AAPL.json", &len);
    memset(&r, 0, sizeof(r));
    assert_int_equal(finnhub_parse("AAPL", 200, b, len, &r, "USD"), 0);
    assert_true(r.q.price == 261.74 && r.q.prev_close == 261.22);
    assert_int_equal(r.q.market_time, 1582641000);
    assert_int_equal(r.q.volume, -1);
    assert_string_equal(r.q.source, "finnhub");
    free(b);
    b = load(OWN, "finnhub_quote_unknown.json", &len);
    assert_int_equal(finnhub_parse("ZZZZ", 200, b, len, &r, "USD"), -1);
    assert_non_null(strstr(r.err, "unknown symbol"));
    free(b);
    b = load(OWN, "finnhub_error_401.json", &len);
    assert_int_equal(finnhub_parse("AAPL", 401, b, len, &r, "USD"), -1);
    assert_string_equal(r.err, "HTTP 401: Invalid API key.");
    free(b);
}

static void free_posts(post *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        post_clear(&p[i]);
    free(p);
}

static void test_rss(void **state)
{
    post *p = NULL;
    size_t n = 0, len;
    char err[192];
    char *b = load(SHARED "/rss", "sec_press_releases_2025-01.rss", &len);
    assert_int_equal(rss_parse(b, len, "AAPL", &p, &n, err, sizeof(err)), 0);
    assert_int_equal(n, 25);
    assert_string_equal(p[0].id, "ec1b9af9-5a0f-44b3-83c6-adc75a33096d");
    assert_string_equal(p[0].url, "https://www.sec.gov/newsroom/press-releases/2025-31");
    assert_int_equal(strncmp(p[0].text, "Acting Chairman Mark T. Uyeda Names Acting Senior Staff\nThe ", 60), 0);
    assert_int_equal(p[0].created, 1737734400);   /* Fri, 24 Jan 2025 11:00:00 -0500 */
    assert_null(p[0].author);                      /* <dc:creator> </dc:creator> */
    assert_string_equal(p[0].symbol, "AAPL");
    free_posts(p, n);
    free(b);

    p = NULL;
    n = 0;
    b = load(OWN, "rss_truncated.rss", &len);
    assert_int_equal(rss_parse(b, len, NULL, &p, &n, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "malformed XML"));
    free_posts(p, n);
    free(b);
}

static void test_reddit_and_x(void **state)
{
    post *p = NULL;
    size_t n = 0, len;
    char err[192];
    char *b = load(SHARED "/reddit", "search_all_praw_oauth.json", &len);
    assert_int_equal(reddit_parse(b, len, "AAPL", &p, &n, err, sizeof(err)), 0);
    assert_int_equal(n, 6);
    assert_string_equal(p[0].id, "t3_3gpbiu");
    assert_string_equal(p[0].author, "dClauzel");
    assert_int_equal(p[0].created, 1439370514);
    assert_non_null(strstr(p[0].url, "https://www.reddit.com/r/redditdev/comments/3gpbiu/"));
    free_posts(p, n);
    free(b);
    p = NULL;
    n = 0;
    b = load(SHARED "/reddit", "error_403_forbidden_quarantined.json", &len);
    assert_int_equal(reddit_parse(b, len, "AAPL", &p, &n, err, sizeof(err)), -1);
    free(b);

    b = load(SHARED "/twitter", "search_recent_tweepy_2022-10-07.json", &len);
    assert_int_equal(x_parse(b, len, "AAPL", &p, &n, err, sizeof(err)), 0);
    assert_int_equal(n, 10);
    assert_int_equal(p[0].created, 0);              /* no tweet.fields requested */
    free(b);
    b = load(SHARED "/twitter", "search_recent_nyc_with_fields.json", &len);
    assert_int_equal(x_parse(b, len, "AAPL", &p, &n, err, sizeof(err)), 0);
    assert_int_equal(n, 20);
    assert_string_equal(p[10].id, "1275840892285399041");
    assert_int_equal(p[10].created, 1593019147);
    assert_string_equal(p[10].author, "1176828691365736451");
    free(b);
    b = load(OWN, "x_no_results.json", &len);
    assert_int_equal(x_parse(b, len, "AAPL", &p, &n, err, sizeof(err)), 0);
    assert_int_equal(n, 20);
    free(b);
    b = load(SHARED "/twitter", "error_429_too_many_requests.json", &len);
    assert_int_equal(x_parse(b, len, "AAPL", &p, &n, err, sizeof(err)), -1);
    free(b);
    free_posts(p, n);
}

static void test_symbols(void **state)
{
    assert_true(symbol_valid("AAPL"));
    assert_true(symbol_valid("BRK-B"));
    assert_true(symbol_valid("^GSPC"));
    assert_true(symbol_valid("EURUSD=X"));
    assert_false(symbol_valid(""));
    assert_false(symbol_valid("AAPL/../x"));
    assert_false(symbol_valid("A B"));
    assert_false(symbol_valid("ABCDEFGHIJKLMNOP"));
    assert_true(price_round(225.88999938964844) == 225.89);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_aapl_1m),
        cmocka_unit_test(test_weekend_and_old_shapes),
        cmocka_unit_test(test_rejects),
        cmocka_unit_test(test_finnhub),
        cmocka_unit_test(test_rss),
        cmocka_unit_test(test_reddit_and_x),
        cmocka_unit_test(test_symbols),
    };
    insite_log_set_level(INSITE_LOG_ERROR);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
