/* insite-notify templates: every shipped template renders in all 13
 * languages with its sample values, nothing left unformatted; plural
 * categories of ru and ar; locale percent formatting; fallback; syntax
 * errors refused with template, language and position; time zones. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../workers/notify/render.h"
#include "../../workers/notify/templates.h"

static json_t *set;

static int setup(void **state)
{
    char err[512];
    int n = notify_templates_load_dir("workers/notify/templates", &set, err, sizeof(err));
    if (n < 0)
        fprintf(stderr, "load: %s\n", err);
    return n >= 8 ? 0 : -1;
}

static int teardown(void **state)
{
    json_decref(set);
    return 0;
}

static void test_all_render(void **state)
{
    const char *id;
    json_t *tpl;
    size_t checked = 0;
    json_object_foreach(set, id, tpl) {
        json_t *tr = json_object_get(tpl, "translations");
        assert_int_equal(json_object_size(tr), notify_nlanguages);
        for (size_t i = 0; i < notify_nlanguages; i++) {
            const char *l = notify_languages[i];
            notify_rendered r;
            char err[512];
            assert_non_null(json_object_get(tr, l));
            if (notify_render(set, id, &l, 1, "Europe/Paris", json_object_get(tpl, "sample"), &r,
                              err, sizeof(err)) != 0)
                fail_msg("%s/%s: %s", id, l, err);
            assert_string_equal(r.lang, l);
            /* no raw {argument} left, no empty text */
            if (strchr(r.title, '{') || strchr(r.body, '{') || strchr(r.title, '}')
                || strchr(r.body, '}') || !r.title[0] || !r.body[0])
                fail_msg("%s/%s: \"%s\" / \"%s\"", id, l, r.title, r.body);
            assert_int_equal(r.rtl, strcmp(l, "ar") == 0);
            notify_rendered_free(&r);
            checked++;
        }
    }
    assert_int_equal(checked, json_object_size(set) * notify_nlanguages);
}

static char *title(const char *id, const char *lang, json_t *args)
{
    notify_rendered r;
    char err[256];
    if (notify_render(set, id, &lang, 1, "UTC", args, &r, err, sizeof(err)) != 0)
        fail_msg("%s", err);
    free(r.body);
    json_decref(args);
    return r.title;
}

static void expect_digest(const char *lang, int n, const char *want)
{
    char *t = title("digest", lang, json_pack("{s:i, s:s}", "count", n, "symbols", "X"));
    if (strstr(t, want) == NULL)
        fail_msg("%s %d: \"%s\" lacks \"%s\"", lang, n, t, want);
    free(t);
}

static void test_plurals(void **state)
{
    expect_digest("ru", 1, "1 оповещение ");
    expect_digest("ru", 2, "2 оповещения ");
    expect_digest("ru", 5, "5 оповещений ");
    expect_digest("ru", 21, "21 оповещение ");
    expect_digest("ru", 111, "111 оповещений ");
    /* Arabic: zero, one, two, few (3..10), many (11..99), other (100) */
    expect_digest("ar", 0, "لا توجد تنبيهات");
    expect_digest("ar", 1, "تنبيه واحد");
    expect_digest("ar", 2, "تنبيهان");
    expect_digest("ar", 3, "٣ تنبيهات");
    expect_digest("ar", 11, "١١ تنبيهًا");
    expect_digest("ar", 100, "١٠٠ تنبيه ");
    expect_digest("en", 1, "1 alert ");
    expect_digest("en", 2, "2 alerts ");
}

static void test_percent(void **state)
{
    json_t *a = json_pack("{s:s, s:f, s:i, s:{s:f, s:s}, s:i, s:{s:I}}", "symbol", "TSLA",
                          "change_percent", 1.9, "window_minutes", 30, "price", "amount", 251.4,
                          "currency", "USD", "count", 1, "fired_at", "epoch_ms",
                          (json_int_t)1764680400000LL);
    char *en = title("percent_move", "en", json_incref(a));
    char *fr = title("percent_move", "fr", json_incref(a));
    char *de = title("percent_move", "de", json_incref(a));
    assert_string_equal(en, "TSLA +1.9% in 30 minutes");
    assert_string_equal(fr, "TSLA +1,9\u00a0% en 30 minutes");
    assert_string_equal(de, "TSLA +1,9\u00a0% in 30 Minuten");
    free(en);
    free(fr);
    free(de);
    json_decref(a);
}

static void test_fallback(void **state)
{
    /* a template with only English: the user's languages fall through */
    json_t *t = json_pack("{s:s, s:s, s:{s:{s:s, s:s}, s:{s:s, s:s}}}", "id", "only", "priority",
                          "LOW", "translations", "en", "title", "hi {n}", "body", "b",
                          "de", "title", "hallo {n}", "body", "b");
    char err[256];
    notify_rendered r;
    const char *langs[] = { "ja", "de", "en" };
    assert_int_equal(notify_template_check(t, err, sizeof(err)), 0);
    json_object_set(set, "only", t);
    json_t *args = json_pack("{s:i}", "n", 3);
    assert_int_equal(notify_render(set, "only", langs, 3, "UTC", args, &r, err, sizeof(err)), 0);
    assert_string_equal(r.title, "hallo 3");
    assert_string_equal(r.lang, "de");
    notify_rendered_free(&r);
    assert_int_equal(notify_render(set, "only", langs, 1, "UTC", args, &r, err, sizeof(err)), 0);
    assert_string_equal(r.title, "hi 3");
    assert_string_equal(r.lang, "en");
    notify_rendered_free(&r);
    /* a missing argument is an error, not "{n}" in the output */
    json_t *none = json_object();
    assert_int_equal(notify_render(set, "only", langs, 1, "UTC", none, &r, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "missing argument \"n\""));
    json_decref(none);
    json_decref(args);
    json_object_del(set, "only");
    json_decref(t);
}

static void test_syntax_error(void **state)
{
    json_t *t = json_pack("{s:s, s:s, s:{s:{s:s, s:s}, s:{s:s, s:s}}}", "id", "broken", "priority",
                          "HIGH", "translations", "en", "title", "ok", "body", "ok",
                          "fr", "title", "ok", "body", "{n, plural, one {# x} other {# y}");
    char err[256];
    assert_int_equal(notify_template_check(t, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "template broken, language fr, body: line"));
    assert_non_null(strstr(err, "offset"));
    json_decref(t);
}

static void test_time_zone(void **state)
{
    /* 2026-03-29 00:30 UTC: Paris switches to summer time at 01:00 UTC */
    long long t = 1774744200000LL;
    assert_int_equal(notify_tz_minute_of_day("Europe/Paris", t), 90);         /* 01:30 CET */
    long long end = notify_tz_next_local("Europe/Paris", t, 7 * 60);          /* 07:00 CEST */
    assert_true(end == 1774760400000LL);      /* 05:00 UTC */
    assert_int_equal(notify_tz_minute_of_day("Europe/Paris", end), 420);
    assert_true(notify_tz_valid("America/New_York"));
    assert_false(notify_tz_valid("Mars/Olympus"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_all_render),
        cmocka_unit_test(test_plurals),
        cmocka_unit_test(test_percent),
        cmocka_unit_test(test_fallback),
        cmocka_unit_test(test_syntax_error),
        cmocka_unit_test(test_time_zone),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
