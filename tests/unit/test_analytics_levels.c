/* insite-analytics support and resistance from bars whose high and low
 * differ from the close (the reference case in market_reference.py has
 * high = low = close, so it cannot tell them apart).
 *
 * Worked by hand (TREND_PIVOT_SPAN 2, TREND_CLUSTER_PCT 1.5 %), every close
 * 100:
 *   pivot highs: 110 (bar 3), 111 (bar 8), 120 (bar 13)
 *     -> clusters {110, 111} = 110.5 x2 (111 <= 110 * 1.015), {120} x1
 *   pivot lows:  90 (bar 3), 89.5 (bar 8), 80 (bar 13)
 *     -> clusters {80} x1, {89.5, 90} = 89.75 x2 (90 <= 89.5 * 1.015)
 *   last close 100: resistance 110.5 (2), 120 (1), lowest first;
 *                   support 89.75 (2), 80 (1), highest first.
 * The closes alone (all 100) have no pivot at all. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cmocka.h>

#include "../../workers/analytics/trends.h"

static void test_levels_from_highs_and_lows(void **state)
{
    static const double hi[] = { 101, 102, 103, 110, 103, 102, 101, 102, 111, 102, 101, 102, 103, 120, 103, 102, 101 };
    static const double lo[] = { 99, 98, 97, 90, 97, 98, 99, 98, 89.5, 98, 99, 98, 97, 80, 97, 98, 99 };
    enum { N = sizeof(hi) / sizeof(hi[0]) };
    trend_bar b[N];
    trend_result r;
    char err[256];

    for (size_t i = 0; i < N; i++)
        b[i] = (trend_bar){ 1700000000 + (int64_t)i * 86400, 100, hi[i], lo[i], 1000 };
    assert_int_equal(trends_compute(b, N, &r, err, sizeof(err)), 0);

    assert_int_equal(r.nresistance, 2);
    assert_true(r.resistance[0].price == 110.5);
    assert_int_equal(r.resistance[0].touches, 2);
    assert_true(r.resistance[1].price == 120);
    assert_int_equal(r.resistance[1].touches, 1);

    assert_int_equal(r.nsupport, 2);
    assert_true(r.support[0].price == 89.75);
    assert_int_equal(r.support[0].touches, 2);
    assert_true(r.support[1].price == 80);
    assert_int_equal(r.support[1].touches, 1);
    trend_result_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_levels_from_highs_and_lows),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
