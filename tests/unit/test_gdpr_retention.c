/* insite-gdpr retention and report: the data map's "retention" section,
 * the schedule time, the report period. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "../../workers/gdpr/datamap.h"
#include "../../workers/gdpr/gdpr.h"
#include "../../workers/gdpr/report.h"

static int load(const char *retention, char *err, size_t errlen, gdpr_datamap *m)
{
    char path[] = "/tmp/insite-test-map-XXXXXX";
    int fd = mkstemp(path);
    FILE *f = fdopen(fd, "w");
    fprintf(f, "{\"version\":1,\"databases\":{\"insite\":\"\"},\"retention\":%s}", retention);
    fclose(f);
    memset(m, 0, sizeof(*m));
    int rc = gdpr_datamap_load(m, path, "dbname=x", err, errlen);
    unlink(path);
    return rc;
}

static void test_datamap_retention(void **state)
{
    gdpr_datamap m;
    char err[256];

    assert_int_equal(load("[{\"name\":\"p\",\"database\":\"insite\",\"table\":\"stock_prices\",\"time_column\":\"ts\"},"
                          "{\"name\":\"s\",\"database\":\"insite\",\"table\":\"t\",\"time_column\":\"ts\","
                          "\"where\":{\"source\":[\"reddit\",\"x.y:z-1\"]}}]", err, sizeof(err), &m), 0);
    assert_int_equal(m.nretention, 2);
    const gdpr_retention_target *t = gdpr_datamap_retention_find(&m, "s");
    assert_non_null(t);
    assert_string_equal(t->table, "\"t\"");
    assert_string_equal(t->filter_column, "\"source\"");
    assert_int_equal(json_array_size(t->filter_values), 2);
    assert_null(gdpr_datamap_retention_find(&m, "nope"));
    gdpr_datamap_free(&m);

    static const struct { const char *json, *want; } bad[] = {
        { "[{\"name\":\"p\",\"database\":\"nowhere\",\"table\":\"t\",\"time_column\":\"ts\"}]", "unknown database" },
        { "[{\"name\":\"p\",\"database\":\"insite\",\"table\":\"t; drop\",\"time_column\":\"ts\"}]", "identifiers" },
        { "[{\"name\":\"p\",\"database\":\"insite\",\"table\":\"t\"}]", "time_column" },
        { "[{\"name\":\"p\",\"database\":\"insite\",\"table\":\"t\",\"time_column\":\"ts\"},"
          "{\"name\":\"p\",\"database\":\"insite\",\"table\":\"u\",\"time_column\":\"ts\"}]", "named twice" },
        { "[{\"name\":\"p\",\"database\":\"insite\",\"table\":\"t\",\"time_column\":\"ts\",\"where\":{\"a\":[\"x'y\"]}}]", "values" },
        { "[{\"name\":\"p\",\"database\":\"insite\",\"table\":\"t\",\"time_column\":\"ts\",\"where\":{\"a\":[]}}]", "where" },
        { "[{\"name\":\"p\",\"database\":\"insite\",\"table\":\"t\",\"time_column\":\"ts\",\"where\":{\"a\":[\"x\"],\"b\":[\"y\"]}}]", "where" },
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        assert_int_equal(load(bad[i].json, err, sizeof(err), &m), -1);
        if (strstr(err, bad[i].want) == NULL)
            fail_msg("case %zu: \"%s\" does not say %s", i, err, bad[i].want);
        assert_int_equal(m.nretention, 0);        /* freed on failure */
    }
}

static void test_retention_time(void **state)
{
    int m;
    assert_int_equal(gdpr_retention_time_parse("03:30", &m), 0);
    assert_int_equal(m, 210);
    assert_int_equal(gdpr_retention_time_parse("", &m), 0);
    assert_int_equal(m, -1);
    assert_int_equal(gdpr_retention_time_parse("23:59", &m), 0);
    assert_int_equal(m, 1439);
    const char *bad[] = { "24:00", "3:30", "03:60", "03-30", "03:30:00", "ab:cd", " 3:30" };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(gdpr_retention_time_parse(bad[i], &m), -1);
}

static void test_report_period(void **state)
{
    gdpr_report_period p;
    char err[128];
    const int64_t now = 1764633600;          /* 2025-12-02T00:00:00Z */

    assert_int_equal(gdpr_report_period_parse("2024-02-29", "2024-03-01", "pdf", now, &p, err, sizeof(err)), 0);
    assert_string_equal(p.start, "2024-02-29");
    assert_int_equal(p.start_s, 1709164800);
    assert_int_equal(p.end_s, 1709164800 + 2 * 86400);
    assert_true(p.pdf);
    assert_int_equal(gdpr_report_period_parse(NULL, NULL, NULL, now, &p, err, sizeof(err)), 0);
    assert_string_equal(p.end, "2025-12-02");
    assert_string_equal(p.start, "2025-11-03");
    assert_false(p.pdf);
    static const struct { const char *s, *e, *f, *want; } bad[] = {
        { "2023-02-29", NULL, NULL, "start_date" }, { "2025-13-01", NULL, NULL, "start_date" },
        { "2025-04-31", NULL, NULL, "start_date" }, { "1969-12-31", NULL, NULL, "start_date" },
        { NULL, "20250101", NULL, "end_date" }, { "2025-01-02", "2025-01-01", NULL, "after" },
        { "1990-01-01", "2025-01-01", NULL, "at most" }, { NULL, NULL, "PDF", "format" },
        { "", NULL, NULL, "start_date" }, { "2025-01-0a", NULL, NULL, "start_date" },
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        assert_int_equal(gdpr_report_period_parse(bad[i].s, bad[i].e, bad[i].f, now, &p, err, sizeof(err)), -1);
        if (strstr(err, bad[i].want) == NULL)
            fail_msg("case %zu: \"%s\" does not say %s", i, err, bad[i].want);
    }
    assert_true(gdpr_report_pct(1, 3) == 33.33);
    assert_true(gdpr_report_pct(2, 3) == 66.67);
    assert_true(gdpr_report_pct(0, 0) < 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_datamap_retention),
        cmocka_unit_test(test_retention_time),
        cmocka_unit_test(test_report_period),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
