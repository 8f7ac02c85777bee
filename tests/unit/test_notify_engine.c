/* insite-notify's rule engine: each rule type fires once at the crossing,
 * respects its cooldown, one-shot rules disable themselves, windows, the
 * strict rule validation, and the symbol index. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../workers/notify/engine.h"

static notify_rule rule(int64_t id, const char *sym, notify_kind k, double v)
{
    notify_rule r = { .id = id, .kind = k, .value = v, .enabled = 1, .recurring = 1 };
    strcpy(r.user, "u1");
    strcpy(r.symbol, sym);
    return r;
}

typedef struct {
    notify_engine *e;
    notify_fire *f;
    size_t n, cap;
} fixture;

static int price(fixture *x, const char *sym, int64_t t, double p, double vol)
{
    notify_update u = { .symbol = sym, .ts_ms = t, .has_price = 1, .price = p,
                        .has_volume = vol >= 0, .volume = vol };
    x->n = 0;
    return notify_engine_update(x->e, &u, &x->f, &x->n, &x->cap);
}

static int sent(fixture *x, const char *sym, int64_t t, double s)
{
    notify_update u = { .symbol = sym, .ts_ms = t, .has_sentiment = 1, .sentiment = s };
    x->n = 0;
    return notify_engine_update(x->e, &u, &x->f, &x->n, &x->cap);
}

static void test_price_crossing_and_cooldown(void **state)
{
    fixture x = { .e = notify_engine_new() };
    notify_rule r = rule(1, "AAPL", NR_PRICE_ABOVE, 200);
    r.cooldown_ms = 60000;
    assert_non_null(notify_engine_add(x.e, &r));
    assert_int_equal(price(&x, "AAPL", 1000, 199, -1), 0);      /* side known: below */
    assert_int_equal(price(&x, "AAPL", 2000, 201, -1), 1);      /* the crossing */
    assert_true(x.f[0].rule->id == 1 && x.f[0].value == 201);
    assert_int_equal(price(&x, "AAPL", 3000, 202, -1), 0);      /* still above: once */
    assert_int_equal(price(&x, "AAPL", 4000, 198, -1), 0);
    assert_int_equal(price(&x, "AAPL", 5000, 203, -1), 0);      /* inside the cooldown */
    assert_int_equal(price(&x, "AAPL", 70000, 199, -1), 0);
    assert_int_equal(price(&x, "AAPL", 71000, 200.5, -1), 1);   /* after it */
    assert_int_equal(price(&x, "MSFT", 72000, 500, -1), 0);     /* other symbol */
    notify_rule *s = notify_engine_get(x.e, 1);
    assert_int_equal(s->fired_count, 2);
    assert_int_equal(s->side, 2);
    free(x.f);
    notify_engine_free(x.e);
}

static void test_first_update_and_one_shot(void **state)
{
    fixture x = { .e = notify_engine_new() };
    assert_int_equal(price(&x, "TSLA", 1000, 150, -1), 0);
    notify_rule r = rule(2, "TSLA", NR_PRICE_BELOW, 100);
    r.recurring = 0;
    notify_rule *st = notify_engine_add(x.e, &r);
    assert_int_equal(st->side, 1);               /* from the last sample: not below */
    assert_int_equal(price(&x, "TSLA", 2000, 99, -1), 1);
    assert_false(notify_engine_get(x.e, 2)->enabled);
    assert_int_equal(price(&x, "TSLA", 3000, 101, -1), 0);
    assert_int_equal(price(&x, "TSLA", 4000, 98, -1), 0);       /* one-shot: done */
    /* already above when created: no alert until a new crossing */
    notify_rule a = rule(3, "TSLA", NR_PRICE_ABOVE, 50);
    notify_engine_add(x.e, &a);
    assert_int_equal(price(&x, "TSLA", 5000, 97, -1), 0);
    free(x.f);
    notify_engine_free(x.e);
}

static void test_percent_change(void **state)
{
    fixture x = { .e = notify_engine_new() };
    notify_rule r = rule(4, "NVDA", NR_PERCENT_CHANGE, 2.0);
    r.window_ms = 60000;
    r.direction = 1;
    notify_engine_add(x.e, &r);
    assert_int_equal(price(&x, "NVDA", 0, 100, -1), 0);
    assert_int_equal(price(&x, "NVDA", 10000, 101, -1), 0);
    assert_int_equal(price(&x, "NVDA", 20000, 102.5, -1), 1);   /* +2.5% vs 100 */
    assert_true(x.f[0].change > 2.49 && x.f[0].change < 2.51);
    assert_int_equal(price(&x, "NVDA", 30000, 103, -1), 0);
    /* down moves do not count for direction up */
    assert_int_equal(price(&x, "NVDA", 100000, 95, -1), 0);
    free(x.f);
    notify_engine_free(x.e);
}

static void test_volume_spike(void **state)
{
    fixture x = { .e = notify_engine_new() };
    notify_rule r = rule(5, "AMD", NR_VOLUME_SPIKE, 3.0);
    r.window_ms = 600000;
    notify_engine_add(x.e, &r);
    double cum = 0;
    for (int i = 0; i < 6; i++)
        assert_int_equal(price(&x, "AMD", i * 1000, 100, cum += 100), 0);
    assert_int_equal(price(&x, "AMD", 7000, 100, cum += 150), 0);
    assert_int_equal(price(&x, "AMD", 8000, 100, cum += 500), 1);   /* 500 vs ~110 avg */
    assert_true(x.f[0].change > 3.0);
    assert_int_equal(price(&x, "AMD", 9000, 100, cum += 600), 0);   /* still high: once */
    free(x.f);
    notify_engine_free(x.e);
}

static void test_sentiment(void **state)
{
    fixture x = { .e = notify_engine_new() };
    notify_rule a = rule(6, "GME", NR_SENTIMENT_ABOVE, 0.5);
    notify_rule s = rule(7, "GME", NR_SENTIMENT_SHIFT, 0.3);
    s.window_ms = 3600000;
    s.direction = -1;
    notify_engine_add(x.e, &a);
    notify_engine_add(x.e, &s);
    assert_int_equal(sent(&x, "GME", 0, 0.2), 0);
    assert_int_equal(sent(&x, "GME", 1000, 0.6), 1);
    assert_true(x.f[0].rule->id == 6);
    assert_int_equal(sent(&x, "GME", 2000, 0.55), 0);
    assert_int_equal(sent(&x, "GME", 3000, -0.15), 1);          /* -0.35 vs the window start */
    assert_true(x.f[0].rule->id == 7);
    assert_true(x.f[0].change < -0.34 && x.f[0].change > -0.36);
    free(x.f);
    notify_engine_free(x.e);
}

static void test_remove_and_index(void **state)
{
    fixture x = { .e = notify_engine_new() };
    for (int i = 0; i < 5000; i++) {
        char sym[16];
        snprintf(sym, sizeof(sym), "S%d", i % 500);
        notify_rule r = rule(100 + i, sym, NR_PRICE_ABOVE, 10 + i % 7);
        assert_non_null(notify_engine_add(x.e, &r));
    }
    assert_int_equal(notify_engine_count(x.e), 5000);
    for (int i = 0; i < 5000; i += 2)
        assert_int_equal(notify_engine_remove(x.e, 100 + i), 0);
    assert_int_equal(notify_engine_remove(x.e, 100), -1);
    assert_int_equal(notify_engine_count(x.e), 2500);
    assert_int_equal(price(&x, "S1", 0, 0, -1), 0);
    int fired = price(&x, "S1", 1, 100, -1);
    assert_int_equal(fired, 10);                  /* rules 101, 601, ... (odd ids) on S1 */
    free(x.f);
    notify_engine_free(x.e);
}

static void test_parse(void **state)
{
    notify_rule r;
    json_t *why = json_array();
    json_t *ok = json_pack("{s:s, s:s, s:f, s:i, s:i, s:s}", "type", "percent_change", "symbol",
                           "AAPL", "percent", 2.5, "window_seconds", 300, "cooldown_seconds", 600,
                           "direction", "up");
    assert_int_equal(notify_rule_parse(ok, NULL, &r, why), 0);
    assert_int_equal(r.kind, NR_PERCENT_CHANGE);
    assert_true(r.window_ms == 300000 && r.cooldown_ms == 600000 && r.direction == 1);
    json_t *bad = json_pack("{s:s, s:s, s:s, s:i, s:b}", "type", "price_above", "symbol", "aapl;",
                            "price", "x", "window_seconds", 5, "colour", 1);
    /* symbol, window_seconds not used, colour unknown, price not a number */
    assert_int_equal(notify_rule_parse(bad, NULL, &r, why), 4);
    assert_int_equal(json_array_size(why), 4);
    json_t *patch = json_pack("{s:f}", "percent", 4.0);
    notify_rule p;
    assert_int_equal(notify_rule_parse(patch, &r, &p, why), 0);
    assert_true(p.value == 4.0 && p.window_ms == 300000);
    json_decref(ok);
    json_decref(bad);
    json_decref(patch);
    json_decref(why);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_price_crossing_and_cooldown),
        cmocka_unit_test(test_first_update_and_one_shot),
        cmocka_unit_test(test_percent_change),
        cmocka_unit_test(test_volume_spike),
        cmocka_unit_test(test_sentiment),
        cmocka_unit_test(test_remove_and_index),
        cmocka_unit_test(test_parse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
