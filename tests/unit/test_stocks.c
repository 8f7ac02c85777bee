/* insite-stocks pure helpers: symbols, intervals and range limits, time
 * parameters, page sizes, the bars cursor, LIKE escaping. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "../../workers/stocks/params.h"

static void test_symbols(void **state)
{
    char s[STOCKS_SYMBOL_MAX];
    assert_int_equal(stocks_symbol_normalize("aapl", s), 0);
    assert_string_equal(s, "AAPL");
    assert_int_equal(stocks_symbol_normalize("brk-b", s), 0);
    assert_string_equal(s, "BRK-B");
    assert_int_equal(stocks_symbol_normalize("^GSPC", s), 0);
    assert_int_equal(stocks_symbol_normalize("EURUSD=X", s), 0);
    assert_int_equal(stocks_symbol_normalize("ABCDEFGHIJKLMNO", s), 0);    /* 15 */
    assert_int_equal(stocks_symbol_normalize("ABCDEFGHIJKLMNOP", s), -1);  /* 16 */
    assert_int_equal(stocks_symbol_normalize("", s), -1);
    assert_int_equal(stocks_symbol_normalize("A B", s), -1);
    assert_int_equal(stocks_symbol_normalize("A%", s), -1);
    assert_int_equal(stocks_symbol_normalize("A'", s), -1);
}

static void test_intervals(void **state)
{
    assert_non_null(stocks_interval_parse("1m"));
    assert_int_equal(stocks_interval_parse("5m")->seconds, 300);
    assert_int_equal(stocks_interval_parse("15m")->seconds, 900);
    assert_int_equal(stocks_interval_parse("1h")->seconds, 3600);
    assert_int_equal(stocks_interval_parse("1d")->id, STOCKS_1D);
    assert_null(stocks_interval_parse("2m"));
    assert_null(stocks_interval_parse("1M"));
    assert_null(stocks_interval_parse(""));
    assert_null(stocks_interval_parse(NULL));
    assert_null(stocks_interval_by_id(5));
    assert_null(stocks_interval_by_id(-1));
}

static void test_times(void **state)
{
    int64_t t;
    assert_int_equal(stocks_time_parse("1727876400", &t), 0);
    assert_int_equal(t, 1727876400);
    assert_int_equal(stocks_time_parse("2024-10-02T13:30:00Z", &t), 0);
    assert_int_equal(t, 1727875800);
    assert_int_equal(stocks_time_parse("2024-10-02T09:30:00-04:00", &t), 0);
    assert_int_equal(t, 1727875800);
    assert_int_equal(stocks_time_parse("2024-10-02T13:30:00.250Z", &t), 0);
    assert_int_equal(t, 1727875800);
    assert_int_equal(stocks_time_parse("2024-10-02", &t), 0);
    assert_int_equal(t, 1727827200);
    assert_int_equal(stocks_time_parse("2024-02-30", &t), -1);
    assert_int_equal(stocks_time_parse("2024-10-02T13:30:00", &t), -1);   /* no zone */
    assert_int_equal(stocks_time_parse("2024-10-02T25:00:00Z", &t), -1);
    assert_int_equal(stocks_time_parse("1969-12-31", &t), -1);
    assert_int_equal(stocks_time_parse("-5", &t), -1);
    assert_int_equal(stocks_time_parse("999999999999", &t), -1);
    assert_int_equal(stocks_time_parse("", &t), -1);
    assert_int_equal(stocks_time_parse("2024-10-02Tx", &t), -1);
}

static void test_ranges(void **state)
{
    const stocks_interval *m1 = stocks_interval_parse("1m"), *d1 = stocks_interval_parse("1d");
    int64_t f, t;
    char err[160];
    assert_int_equal(stocks_range_resolve(m1, NULL, NULL, 1000000, &f, &t, err, sizeof(err)), 0);
    assert_int_equal(t, 1000000);
    assert_int_equal(f, 1000000 - 86400);
    assert_int_equal(stocks_range_resolve(m1, "2024-10-03", "2024-10-02", 0, &f, &t, err,
                                          sizeof(err)), -1);
    assert_string_equal(err, "from must be before to");
    assert_int_equal(stocks_range_resolve(m1, "2014-01-01", "2024-01-01", 0, &f, &t, err,
                                          sizeof(err)), -1);
    assert_string_equal(err, "range too long for interval 1m: at most 31 days");
    assert_int_equal(stocks_range_resolve(d1, "2014-01-01", "2024-01-01", 0, &f, &t, err,
                                          sizeof(err)), 0);
    assert_int_equal(stocks_range_resolve(m1, "x", NULL, 0, &f, &t, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "from:"));
}

static void test_limits(void **state)
{
    long v;
    char err[96];
    assert_int_equal(stocks_limit_parse(NULL, 500, 5000, &v, err, sizeof(err)), 0);
    assert_int_equal(v, 500);
    assert_int_equal(stocks_limit_parse("5000", 500, 5000, &v, err, sizeof(err)), 0);
    assert_int_equal(stocks_limit_parse("5001", 500, 5000, &v, err, sizeof(err)), -1);
    assert_int_equal(stocks_limit_parse("0", 500, 5000, &v, err, sizeof(err)), -1);
    assert_int_equal(stocks_limit_parse("-1", 500, 5000, &v, err, sizeof(err)), -1);
    assert_int_equal(stocks_limit_parse("10x", 500, 5000, &v, err, sizeof(err)), -1);
    assert_int_equal(stocks_limit_parse("99999999999999999999", 500, 5000, &v, err,
                                        sizeof(err)), -1);
}

static void same_cursor(const stocks_cursor *a, const stocks_cursor *b)
{
    assert_int_equal(a->interval, b->interval);
    assert_int_equal(a->after, b->after);
    assert_int_equal(a->from, b->from);
    assert_int_equal(a->to, b->to);
    assert_int_equal(a->symbol_hash, b->symbol_hash);
}

static void test_cursor(void **state)
{
    stocks_cursor c = { STOCKS_5M, 1727877000, 1727827200, 1727913600,
                        stocks_symbol_hash("AAPL") }, d;
    char enc[STOCKS_CURSOR_MAX];
    assert_int_equal(stocks_cursor_encode(&c, enc, sizeof(enc)), 0);
    assert_int_equal(strncmp(enc, "b1", 2), 0);
    assert_int_equal(stocks_cursor_decode(enc, &d), 0);
    same_cursor(&c, &d);
    /* largest values still fit */
    stocks_cursor big = { STOCKS_1D, 253402300000LL, 253402200000LL, 253402300799LL, 0xffffffffu };
    assert_int_equal(stocks_cursor_encode(&big, enc, sizeof(enc)), 0);
    assert_int_equal(stocks_cursor_decode(enc, &d), 0);
    same_cursor(&big, &d);
    assert_int_equal(stocks_cursor_encode(&c, enc, 10), -1);
    /* tampering */
    assert_int_equal(stocks_cursor_encode(&c, enc, sizeof(enc)), 0);
    enc[5] = enc[5] == '0' ? '1' : '0';
    assert_int_equal(stocks_cursor_decode(enc, &d), -1);
    assert_int_equal(stocks_cursor_decode("", &d), -1);
    assert_int_equal(stocks_cursor_decode("b1", &d), -1);
    assert_int_equal(stocks_cursor_decode("b1zz", &d), -1);
    assert_int_equal(stocks_cursor_decode("b100", &d), -1);    /* NUL inside */
    /* upper-case hex is not what encode makes */
    assert_int_equal(stocks_cursor_encode(&c, enc, sizeof(enc)), 0);
    for (char *p = enc + 2; *p; p++)
        if (*p >= 'a' && *p <= 'f')
            *p = (char)(*p - 32);
    assert_int_equal(stocks_cursor_decode(enc, &d), -1);
    /* after outside the range */
    stocks_cursor out = c;
    out.after = out.to;
    assert_int_equal(stocks_cursor_encode(&out, enc, sizeof(enc)), 0);
    assert_int_equal(stocks_cursor_decode(enc, &d), -1);
    assert_int_not_equal(stocks_symbol_hash("AAPL"), stocks_symbol_hash("MSFT"));
}

static void test_like(void **state)
{
    char out[32];
    stocks_like_escape("a%b_c\\d", out);
    assert_string_equal(out, "a\\%b\\_c\\\\d");
    stocks_like_escape("", out);
    assert_string_equal(out, "");
}

/* PostgreSQL's numeric text goes into bars pages as is: only JSON numbers */
static void test_json_number(void **state)
{
    static const char *const good[] = { "0", "-0", "101", "100.495645155806", "-3.5", "1e5",
                                        "2.5E-3", "0.0001" };
    static const char *const bad[] = { "", "NaN", "Infinity", "-Infinity", "01", "1.", ".5",
                                       "+1", "1e", "1e+", "--1", "1 ", "0x10", "-" };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        assert_true(stocks_json_number_ok(good[i]));
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_false(stocks_json_number_ok(bad[i]));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_symbols),  cmocka_unit_test(test_intervals),
        cmocka_unit_test(test_times),    cmocka_unit_test(test_ranges),
        cmocka_unit_test(test_limits),   cmocka_unit_test(test_cursor),
        cmocka_unit_test(test_like),     cmocka_unit_test(test_json_number),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
