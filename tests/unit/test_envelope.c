/* Envelope: fields, order, uuid v4 format, timestamp format. */
#include <regex.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "clock.h"
#include "envelope.h"
#include "random.h"

static int matches(const char *re, const char *s)
{
    regex_t r;
    assert_int_equal(regcomp(&r, re, REG_EXTENDED | REG_NOSUB), 0);
    int ok = regexec(&r, s, 0, NULL, 0) == 0;
    regfree(&r);
    return ok;
}

#define UUID_V4_RE "^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$"
#define TS_RE "^[0-9]{4}-[01][0-9]-[0-3][0-9]T[0-2][0-9]:[0-5][0-9]:[0-6][0-9]\\.[0-9]{3}Z$"

static void test_fields(void **state)
{
    json_t *data = json_pack("{s:s, s:f}", "symbol", "AAPL", "price", 189.12);
    json_t *env = insite_envelope_new("stock_update", "collector", "req-42", data);

    assert_non_null(env);
    assert_int_equal(json_object_size(env), 7);
    assert_string_equal(json_string_value(json_object_get(env, "event_type")), "stock_update");
    assert_string_equal(json_string_value(json_object_get(env, "source_service")), "collector");
    assert_string_equal(json_string_value(json_object_get(env, "version")), "1.0");
    assert_string_equal(json_string_value(json_object_get(env, "correlation_id")), "req-42");
    assert_ptr_equal(json_object_get(env, "data"), data);
    assert_true(matches(UUID_V4_RE, json_string_value(json_object_get(env, "event_id"))));
    assert_true(matches(TS_RE, json_string_value(json_object_get(env, "timestamp"))));

    /* documented field order, compact, prices keep their digits */
    char *text = insite_envelope_dumps(env);
    assert_non_null(text);
    assert_true(matches("^\\{\"event_type\":\"stock_update\",\"event_id\":\"[0-9a-f-]{36}\","
                        "\"source_service\":\"collector\",\"timestamp\":\"[^\"]+\","
                        "\"version\":\"1.0\",\"correlation_id\":\"req-42\","
                        "\"data\":\\{\"symbol\":\"AAPL\",\"price\":189.12\\}\\}$", text));
    free(text);
    json_decref(env);
}

static void test_correlation_omitted(void **state)
{
    json_t *env = insite_envelope_new("alert", "analytics", NULL, NULL);
    assert_non_null(env);
    assert_null(json_object_get(env, "correlation_id"));
    assert_true(json_is_object(json_object_get(env, "data")));
    json_decref(env);

    env = insite_envelope_new("alert", "analytics", "", json_object());
    assert_null(json_object_get(env, "correlation_id"));
    json_decref(env);
}

static void test_required(void **state)
{
    /* data is consumed even on failure: ASan/LSan would flag a leak */
    assert_null(insite_envelope_new(NULL, "svc", NULL, json_object()));
    assert_null(insite_envelope_new("t", "", NULL, json_object()));
    /* invalid UTF-8 in a string field */
    assert_null(insite_envelope_new("t", "svc", "\xff\xfe", json_object()));
}

static void test_unique_ids(void **state)
{
    char a[INSITE_UUID_LEN], b[INSITE_UUID_LEN];
    for (int i = 0; i < 1000; i++) {
        assert_int_equal(insite_uuid_v4(a), 0);
        assert_int_equal(insite_uuid_v4(b), 0);
        assert_true(matches(UUID_V4_RE, a));
        assert_string_not_equal(a, b);
    }
}

static void test_timestamp(void **state)
{
    char ts[INSITE_RFC3339_LEN];
    assert_string_equal(insite_clock_rfc3339_ms(ts, sizeof(ts), 1795689045123LL),
                        "2026-11-26T10:30:45.123Z");
    assert_string_equal(insite_clock_rfc3339_ms(ts, sizeof(ts), 0), "1970-01-01T00:00:00.000Z");
    assert_true(matches(TS_RE, insite_clock_rfc3339(ts, sizeof(ts))));
    assert_int_equal(strlen(ts), INSITE_RFC3339_LEN - 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fields),
        cmocka_unit_test(test_correlation_omitted),
        cmocka_unit_test(test_required),
        cmocka_unit_test(test_unique_ids),
        cmocka_unit_test(test_timestamp),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
