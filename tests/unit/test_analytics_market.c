/* Correlation and trend analyses against values computed independently:
 * tests/vader/market_reference.py (Python's statistics module, run here) and
 * hand-worked series. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "log.h"
#include "../../workers/analytics/correlation.h"
#include "../../workers/analytics/trends.h"

static json_t *ref;

static int load_reference(void **state)
{
    FILE *p = popen("/usr/bin/python3 tests/vader/market_reference.py", "r");
    json_error_t e;
    ref = p ? json_loadf(p, 0, &e) : NULL;
    if (p == NULL || pclose(p) != 0 || ref == NULL) {
        fprintf(stderr, "tests/vader/market_reference.py failed\n");
        return -1;
    }
    return 0;
}

static int free_reference(void **state)
{
    json_decref(ref);
    return 0;
}

static void assert_close(double got, double want, double tol)
{
    if (!(fabs(got - want) <= tol))
        fail_msg("got %.12g, want %.12g (tolerance %g)", got, want, tol);
}

typedef struct { int64_t *ts; double *px; size_t n; } owned_series;

static void from_json(json_t *rows, owned_series *o, corr_series *s)
{
    o->n = json_array_size(rows);
    o->ts = malloc(o->n * sizeof(*o->ts));
    o->px = malloc(o->n * sizeof(*o->px));
    for (size_t i = 0; i < o->n; i++) {
        o->ts[i] = json_integer_value(json_array_get(json_array_get(rows, i), 0));
        o->px[i] = json_number_value(json_array_get(json_array_get(rows, i), 1));
    }
    *s = (corr_series){ o->ts, o->px, o->n };
}

static void test_correlation_reference(void **state)
{
    json_t *c = json_object_get(ref, "correlation");
    json_t *syms = json_object_get(c, "symbols");
    size_t k = json_array_size(syms);
    owned_series o[8] = { { 0 } };
    corr_series s[8] = { { 0 } };
    char err[256];
    for (size_t j = 0; j < k; j++)
        from_json(json_object_get(json_object_get(c, "series"),
                                  json_string_value(json_array_get(syms, j))), &o[j], &s[j]);
    corr_result r;
    assert_int_equal(correlation_compute(s, k, 20, &r, err, sizeof(err)), 0);
    assert_int_equal(r.points, json_integer_value(json_object_get(c, "points")));
    for (size_t a = 0; a < k; a++)
        for (size_t b = 0; b < k; b++)
            assert_close(r.matrix[a * k + b],
                         json_real_value(json_array_get(json_array_get(json_object_get(c, "matrix"), a), b)),
                         1e-9);
    corr_result_free(&r);
    for (size_t j = 0; j < k; j++) {
        free(o[j].ts);
        free(o[j].px);
    }
}

/* Hand-worked: q = p^2 doubles every log return (r = 1), u = 1/p negates
 * them (r = -1); a constant series has no correlation (NaN). */
static void test_correlation_hand(void **state)
{
    int64_t ts[6] = { 1, 2, 3, 4, 5, 6 };
    double p[6] = { 10, 11, 10.5, 12, 11, 13 }, q[6], u[6], flat[6];
    for (int i = 0; i < 6; i++) {
        q[i] = p[i] * p[i];
        u[i] = 1 / p[i];
        flat[i] = 7;
    }
    corr_series s[4] = { { ts, p, 6 }, { ts, q, 6 }, { ts, u, 6 }, { ts, flat, 6 } };
    corr_result r;
    char err[256];
    assert_int_equal(correlation_compute(s, 4, 5, &r, err, sizeof(err)), 0);
    assert_int_equal(r.points, 5);
    assert_close(r.matrix[0 * 4 + 1], 1, 1e-12);
    assert_close(r.matrix[0 * 4 + 2], -1, 1e-12);
    assert_close(r.matrix[1 * 4 + 2], -1, 1e-12);
    assert_true(isnan(r.matrix[0 * 4 + 3]));
    corr_result_free(&r);
    /* too few aligned points: disjoint timestamps */
    int64_t ts2[6] = { 11, 12, 13, 14, 15, 16 };
    corr_series d[2] = { { ts, p, 6 }, { ts2, p, 6 } };
    assert_int_equal(correlation_compute(d, 2, 5, &r, err, sizeof(err)), -1);
    assert_int_equal(r.points, 0);
    assert_non_null(strstr(err, "only 0 aligned returns"));
}

static trend_bar *bars_from_json(json_t *rows, size_t *n)
{
    *n = json_array_size(rows);
    trend_bar *b = calloc(*n, sizeof(*b));
    for (size_t i = 0; i < *n; i++) {
        json_t *r = json_array_get(rows, i);
        b[i] = (trend_bar){ json_integer_value(json_array_get(r, 0)),
                            json_number_value(json_array_get(r, 1)),
                            json_number_value(json_array_get(r, 2)),
                            json_number_value(json_array_get(r, 3)),
                            json_number_value(json_array_get(r, 4)) };
    }
    return b;
}

static void test_trends_reference(void **state)
{
    json_t *cases = json_object_get(ref, "trends"), *c;
    size_t i;
    char err[256];
    json_array_foreach(cases, i, c) {
        size_t n;
        trend_bar *b = bars_from_json(json_object_get(c, "bars"), &n);
        trend_result r;
        assert_int_equal(trends_compute(b, n, &r, err, sizeof(err)), 0);
        assert_string_equal(r.trend, json_string_value(json_object_get(c, "trend")));
        assert_close(r.slope_per_day, json_real_value(json_object_get(c, "slope_per_day")), 1e-12);
        assert_close(r.r_squared, json_real_value(json_object_get(c, "r_squared")), 1e-9);
        assert_close(r.t_stat, json_real_value(json_object_get(c, "t_stat")), 1e-6);
        json_t *want = json_object_get(c, "anomalies");
        assert_int_equal(r.nanomalies, json_array_size(want));
        for (size_t k = 0; k < r.nanomalies; k++) {
            assert_string_equal(r.anomalies[k].kind, json_string_value(json_array_get(json_array_get(want, k), 0)));
            assert_int_equal(r.anomalies[k].ts, json_integer_value(json_array_get(json_array_get(want, k), 1)));
        }
        trend_result_free(&r);
        free(b);
    }
}

static void test_levels_hand(void **state)
{
    json_t *c = json_object_get(ref, "levels");
    size_t n;
    char err[256];
    trend_bar *b = bars_from_json(json_object_get(c, "bars"), &n);
    trend_result r;
    assert_int_equal(trends_compute(b, n, &r, err, sizeof(err)), 0);
    json_t *sup = json_object_get(c, "support"), *res = json_object_get(c, "resistance");
    assert_int_equal(r.nsupport, json_array_size(sup));
    assert_int_equal(r.nresistance, json_array_size(res));
    for (size_t k = 0; k < r.nsupport; k++) {
        assert_close(r.support[k].price, json_number_value(json_array_get(json_array_get(sup, k), 0)), 1e-9);
        assert_int_equal(r.support[k].touches, json_integer_value(json_array_get(json_array_get(sup, k), 1)));
    }
    for (size_t k = 0; k < r.nresistance; k++) {
        assert_close(r.resistance[k].price, json_number_value(json_array_get(json_array_get(res, k), 0)), 1e-9);
        assert_int_equal(r.resistance[k].touches, json_integer_value(json_array_get(json_array_get(res, k), 1)));
    }
    trend_result_free(&r);
    assert_int_equal(trends_compute(b, 5, &r, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "only 5 bars"));
    free(b);
}

static void test_median(void **state)
{
    double a[] = { 5, 1, 3 }, b[] = { 4, 1, 3, 2 };
    assert_close(trends_median(a, 3), 3, 0);
    assert_close(trends_median(b, 4), 2.5, 0);
}

int main(void)
{
    insite_log_set_level(INSITE_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_correlation_reference),
        cmocka_unit_test(test_correlation_hand),
        cmocka_unit_test(test_trends_reference),
        cmocka_unit_test(test_levels_hand),
        cmocka_unit_test(test_median),
    };
    return cmocka_run_group_tests(tests, load_reference, free_reference);
}
