/* The channel contract (ngx_insite_ws/insite_channel.c): names (against the
 * table the JS client is tested with), keys, reserved types, patterns,
 * publish bodies and the publish script's arguments. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <jansson.h>

#include "../../ngx_insite_ws/insite_channel.h"

#define NAMES_TABLE "tests/fixtures/channel_names.json"

static void test_names_table(void **state)
{
    json_error_t err;
    json_t *t = json_load_file(NAMES_TABLE, JSON_ALLOW_NUL, &err);
    size_t i;
    json_t *v;

    if (t == NULL)
        fail_msg("%s: %s (run from the repository root)", NAMES_TABLE, err.text);
    assert_true(json_array_size(json_object_get(t, "valid")) > 5);
    assert_true(json_array_size(json_object_get(t, "invalid")) > 5);
    json_array_foreach(json_object_get(t, "valid"), i, v) {
        if (!insite_channel_name_valid(json_string_value(v), json_string_length(v)))
            fail_msg("valid name refused: \"%s\"", json_string_value(v));
    }
    json_array_foreach(json_object_get(t, "invalid"), i, v) {
        /* length-counted: an embedded NUL is part of the name */
        if (insite_channel_name_valid(json_string_value(v), json_string_length(v)))
            fail_msg("invalid name accepted: \"%s\"", json_string_value(v));
    }
    json_decref(t);
}

static void test_tokens_and_prefix(void **state)
{
    assert_true(insite_channel_token_valid("order-1", 7, 128));
    assert_false(insite_channel_token_valid("order 1", 7, 128));
    assert_false(insite_channel_token_valid("abc", 3, 2));
    assert_false(insite_channel_token_valid(NULL, 0, 2));
    assert_true(insite_channel_prefix_valid("insite:", 7));
    assert_true(insite_channel_prefix_valid("", 0));
    assert_false(insite_channel_prefix_valid("a{b", 3));
    assert_false(insite_channel_prefix_valid("a}", 2));
    assert_false(insite_channel_prefix_valid("a b", 3));
    char longp[80];
    memset(longp, 'p', sizeof(longp));
    assert_true(insite_channel_prefix_valid(longp, 64));
    assert_false(insite_channel_prefix_valid(longp, 65));
}

static void test_reserved_types(void **state)
{
    const char *r[] = { "reset", "error", "subscribed", "unsubscribed", "pong" };
    char why[256];
    for (size_t i = 0; i < sizeof(r) / sizeof(r[0]); i++) {
        assert_true(insite_channel_type_reserved(r[i], strlen(r[i])));
        assert_int_equal(insite_channel_type_check(r[i], strlen(r[i]), why, sizeof(why)), -1);
        assert_non_null(strstr(why, "reserved"));
    }
    assert_false(insite_channel_type_reserved("stock_update", 12));
    assert_false(insite_channel_type_reserved("rese", 4));
    assert_false(insite_channel_type_reserved("resets", 6));
    assert_int_equal(insite_channel_type_check("stock_update", 12, why, sizeof(why)), 0);
    assert_int_equal(insite_channel_type_check("", 0, why, sizeof(why)), -1);
}

static int match(const char *p, const char *s)
{
    return insite_channel_glob_match(p, strlen(p), s, strlen(s));
}

static void test_patterns(void **state)
{
    assert_true(insite_channel_glob_valid("stock_updates:*", 15));
    assert_true(insite_channel_glob_valid("*", 1));
    assert_false(insite_channel_glob_valid("a?", 2));
    assert_false(insite_channel_glob_valid("a[b]", 4));
    assert_false(insite_channel_glob_valid("", 0));

    assert_true(match("stock_updates:*", "stock_updates:AAPL"));
    assert_true(match("stock_updates:*", "stock_updates:"));
    assert_false(match("stock_updates:*", "stock_updatesX"));
    assert_false(match("stock_updates:*", "xstock_updates:AAPL"));
    assert_true(match("alert:*", "alert:u1"));
    assert_true(match("*:AAPL", "sentiment_updates:AAPL"));
    assert_false(match("*:AAPL", "sentiment_updates:AAPLX"));
    assert_true(match("a*b*c", "aXbYc"));
    assert_true(match("a*b*c", "abc"));
    assert_false(match("a*b*c", "acb"));
    assert_true(match("system:notifications", "system:notifications"));
    assert_false(match("system:notifications", "system:notifications2"));
    assert_true(match("**", ""));
}

static void test_keys(void **state)
{
    char a[INSITE_CHANNEL_KEY_MAX], b[INSITE_CHANNEL_KEY_MAX];
    size_t n;

    n = insite_channel_key(a, sizeof(a), "insite:", 7, INSITE_CHANNEL_KEY_STATE, "X", 1, NULL, 0);
    assert_int_equal(n, strlen("insite:{X}:seq"));
    assert_string_equal(a, "insite:{X}:seq");
    insite_channel_key(a, sizeof(a), "insite:", 7, INSITE_CHANNEL_KEY_HIST, "X", 1, NULL, 0);
    assert_string_equal(a, "insite:{X}:hist");
    insite_channel_key(a, sizeof(a), "insite:", 7, INSITE_CHANNEL_KEY_PUB, "X", 1, NULL, 0);
    assert_string_equal(a, "insite:pub:X");

    /* issue 11, finding 7: X + key b:c is not X:b + key c */
    insite_channel_key(a, sizeof(a), "insite:", 7, INSITE_CHANNEL_KEY_IDEM, "X", 1, "b:c", 3);
    insite_channel_key(b, sizeof(b), "insite:", 7, INSITE_CHANNEL_KEY_IDEM, "X:b", 3, "c", 1);
    assert_string_equal(a, "insite:{X}:idem:b:c");
    assert_string_equal(b, "insite:{X:b}:idem:c");
    assert_string_not_equal(a, b);

    /* refused: bad names, keys, prefixes, small buffers */
    assert_int_equal(insite_channel_key(a, sizeof(a), "in{", 3, INSITE_CHANNEL_KEY_STATE, "X", 1, NULL, 0), 0);
    assert_int_equal(insite_channel_key(a, sizeof(a), "", 0, INSITE_CHANNEL_KEY_STATE, "X}", 2, NULL, 0), 0);
    assert_int_equal(insite_channel_key(a, sizeof(a), "", 0, INSITE_CHANNEL_KEY_IDEM, "X", 1, "", 0), 0);
    assert_int_equal(insite_channel_key(a, sizeof(a), "", 0, INSITE_CHANNEL_KEY_IDEM, "X", 1, "a b", 3), 0);
    /* any visible ASCII in a key (the collector's "q:1.2|3|4"): still in X's tag */
    insite_channel_key(a, sizeof(a), "", 0, INSITE_CHANNEL_KEY_IDEM, "X", 1, "q:}{|", 5);
    assert_string_equal(a, "{X}:idem:q:}{|");
    assert_true(insite_channel_idem_valid("q:1.5|2|3", 9));
    assert_false(insite_channel_idem_valid("caf\xc3\xa9", 5));
    assert_int_equal(insite_channel_key(a, 5, "insite:", 7, INSITE_CHANNEL_KEY_STATE, "X", 1, NULL, 0), 0);

    /* the longest everything fits the documented maximum */
    char pfx[INSITE_CHANNEL_PREFIX_MAX], ch[INSITE_CHANNEL_NAME_MAX], idem[INSITE_CHANNEL_IDEM_MAX];
    memset(pfx, 'p', sizeof(pfx));
    memset(ch, 'c', sizeof(ch));
    memset(idem, 'i', sizeof(idem));
    assert_true(insite_channel_key(a, sizeof(a), pfx, sizeof(pfx), INSITE_CHANNEL_KEY_IDEM,
                                   ch, sizeof(ch), idem, sizeof(idem)) > 0);
}

static void parse_ok(const char *body, const char *type, const char *data)
{
    insite_channel_payload_t p;
    char why[256] = "";
    if (insite_channel_payload_parse(body, strlen(body), &p, why, sizeof(why)) != 0)
        fail_msg("refused %s: %s", body, why);
    if (strlen(type) != p.type_len || memcmp(type, p.type, p.type_len) != 0)
        fail_msg("%s: type \"%.*s\", want \"%s\"", body, (int) p.type_len, p.type, type);
    if (strlen(data) != p.data_len || memcmp(data, p.data, p.data_len) != 0)
        fail_msg("%s: data \"%.*s\", want \"%s\"", body, (int) p.data_len, p.data, data);
}

static void parse_bad(const char *body, const char *reason)
{
    insite_channel_payload_t p;
    char why[256] = "";
    if (insite_channel_payload_parse(body, strlen(body), &p, why, sizeof(why)) == 0)
        fail_msg("accepted %s", body);
    if (strstr(why, reason) == NULL)
        fail_msg("%s: reason \"%s\" does not mention \"%s\"", body, why, reason);
}

static void test_payload(void **state)
{
    parse_ok("{\"type\":\"quote\",\"data\":{\"p\":1.10}}", "quote", "{\"p\":1.10}");
    parse_ok(" {\"p\":123456789012345678901234567890} \n", "message",
             "{\"p\":123456789012345678901234567890}");
    parse_ok("{\"data\":  [1, 2] , \"type\" : \"t.1\"}", "t.1", "[1, 2]");
    parse_bad("{\"type\":\"reset\",\"data\":1}", "reserved");
    parse_bad("{\"type\":\"pong\"}", "reserved");
    parse_bad("{\"type\":\"unsubscribed\",\"data\":1}", "reserved");
    parse_bad("{\"type\":\"r\\u0065set\",\"data\":1}", "reserved");
    parse_bad("{\"type\":\"a\\u0062c\",\"data\":1}", "\"type\" is 1-64");
    parse_bad("{\"type\":7}", "\"type\" is 1-64");
    parse_bad("{\"type\":\"has space\"}", "\"type\" is 1-64");
    parse_bad("[1]", "JSON object");
    parse_bad("{\"a\":1,\"a\":2}", "not valid JSON");
    parse_bad("{\"a\":", "not valid JSON");
    parse_bad("", "not valid JSON");
}

static void test_data_check(void **state)
{
    char why[128];
    assert_int_equal(insite_channel_data_check("1", 1, why, sizeof(why)), 0);
    assert_int_equal(insite_channel_data_check("\"s\"", 3, why, sizeof(why)), 0);
    assert_int_equal(insite_channel_data_check("1 2", 3, why, sizeof(why)), -1);
    assert_int_equal(insite_channel_data_check("{\"a\":1}\"],\"x\":{", 16, why, sizeof(why)), -1);
    assert_int_equal(insite_channel_data_check(NULL, 0, why, sizeof(why)), -1);
}

static insite_channel_publish_t msg(void)
{
    insite_channel_publish_t m = {
        .channel = "stock_updates:AAPL", .channel_len = 18,
        .type = "stock_update", .type_len = 12,
        .data = "{\"p\":1}", .data_len = 7,
        .ts = "2026-11-26T10:30:45.123Z", .ts_len = 24,
        .epoch = "0123456789abcdef", .epoch_len = 16,
        .history = 1000, .idem_ttl = 86400,
    };
    return m;
}

static void arg_is(const insite_channel_publish_args_t *a, int i, const char *want)
{
    if (a->lens[i] != strlen(want) || memcmp(a->argv[i], want, a->lens[i]) != 0)
        fail_msg("argument %d is \"%.*s\", want \"%s\"", i, (int) a->lens[i], a->argv[i], want);
}

static void test_publish_args(void **state)
{
    insite_channel_publish_args_t a;
    insite_channel_publish_t m = msg();
    char why[256];

    assert_int_equal(insite_channel_publish_args(&a, "insite:", 7, &m, why, sizeof(why)), 0);
    assert_int_equal(a.nkeys, 2);
    assert_int_equal(a.nargs, 10);
    arg_is(&a, 0, "insite:{stock_updates:AAPL}:seq");
    arg_is(&a, 1, "insite:{stock_updates:AAPL}:hist");
    arg_is(&a, 2, "stock_updates:AAPL");
    arg_is(&a, 3, "stock_update");
    arg_is(&a, 4, "{\"p\":1}");
    arg_is(&a, 5, "2026-11-26T10:30:45.123Z");
    arg_is(&a, 6, "1000");
    arg_is(&a, 7, "0123456789abcdef");
    arg_is(&a, 8, "insite:pub:stock_updates:AAPL");

    m.idem = "order-1";
    m.idem_len = 7;
    assert_int_equal(insite_channel_publish_args(&a, "insite:", 7, &m, why, sizeof(why)), 0);
    assert_int_equal(a.nkeys, 3);
    assert_int_equal(a.nargs, 11);
    arg_is(&a, 2, "insite:{stock_updates:AAPL}:idem:order-1");
    arg_is(&a, 10, "86400");

    /* issue 11, finding 6: an idempotency key that cannot be remembered */
    m.idem_ttl = 0;
    assert_int_equal(insite_channel_publish_args(&a, "insite:", 7, &m, why, sizeof(why)), -1);
    m = msg();
    m.type = "error";
    m.type_len = 5;
    assert_int_equal(insite_channel_publish_args(&a, "insite:", 7, &m, why, sizeof(why)), -1);
    m = msg();
    m.channel = "a b";
    m.channel_len = 3;
    assert_int_equal(insite_channel_publish_args(&a, "insite:", 7, &m, why, sizeof(why)), -1);
    m = msg();
    assert_int_equal(insite_channel_publish_args(&a, "in}", 3, &m, why, sizeof(why)), -1);
    m.history = INSITE_CHANNEL_HISTORY_MAX + 1;
    assert_int_equal(insite_channel_publish_args(&a, "insite:", 7, &m, why, sizeof(why)), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names_table),
        cmocka_unit_test(test_tokens_and_prefix),
        cmocka_unit_test(test_reserved_types),
        cmocka_unit_test(test_patterns),
        cmocka_unit_test(test_keys),
        cmocka_unit_test(test_payload),
        cmocka_unit_test(test_data_check),
        cmocka_unit_test(test_publish_args),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
