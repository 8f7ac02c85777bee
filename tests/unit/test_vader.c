/* VADER engine details: published examples, Python-compatible rounding,
 * lexicon loading, the finance overlay, entities and the sentiment API.
 * Expected compounds are the ones NLTK / the VADER README print. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "log.h"
#include "../../workers/analytics/lexicon.h"
#include "../../workers/analytics/text.h"
#include "../../workers/analytics/vader.h"
#include "../../workers/analytics/finance.h"
#include "../../workers/analytics/analytics.h"

static char vader_path[4200], afinn_path[4200];
static lexicon *plain_lx;

static void read_paths(void)
{
    FILE *p = popen("scripts/lexicons.sh", "r");
    char line[4096];
    while (p != NULL && fgets(line, sizeof(line), p) != NULL) {
        line[strcspn(line, "\n")] = '\0';
        if (strncmp(line, "INSITE_ANALYTICS_VADER_LEXICON=", 31) == 0)
            snprintf(vader_path, sizeof(vader_path), "%s", line + 31);
        if (strncmp(line, "INSITE_ANALYTICS_AFINN_PATH=", 28) == 0)
            snprintf(afinn_path, sizeof(afinn_path), "%s", line + 28);
    }
    if (p != NULL)
        pclose(p);
}

static int setup(void **state)
{
    char err[512];
    insite_log_set_level(INSITE_LOG_ERROR);
    read_paths();
    plain_lx = vader_lexicon_new(vader_path, err, sizeof(err));
    if (plain_lx == NULL)
        fprintf(stderr, "lexicon: %s\n", err);
    return plain_lx ? 0 : -1;
}

static int teardown(void **state)
{
    lexicon_free(plain_lx);
    return 0;
}

static vader_scores score(const vader_model *m, const char *text)
{
    vader_work *w = vader_work_new();
    vader_scores s;
    assert_int_equal(vader_score(m, w, text, strlen(text), &s), 0);
    vader_work_free(w);
    return s;
}

static void test_published_examples(void **state)
{
    static const struct { const char *text; double compound; } cases[] = {
        { "VADER is smart, handsome, and funny.", 0.8316 },
        { "VADER is VERY SMART, handsome, and FUNNY!!!", 0.9342 },
        { "The plot was good, but the characters are uncompelling and the dialog is not great.", -0.7042 },
        { "At least it isn't a horrible book.", 0.431 },
        { "Make sure you :) or :D today!", 0.8633 },
        { "Today only kinda sux! But I'll get by, lol", 0.5249 },
        { "Not bad at all", 0.431 },
        { "", 0 },
    };
    vader_model m = { .lex = plain_lx };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        vader_scores s = score(&m, cases[i].text);
        if (s.compound != cases[i].compound)
            fail_msg("\"%s\": %.4f, want %.4f", cases[i].text, s.compound, cases[i].compound);
    }
    vader_scores s = score(&m, "VADER is smart, handsome, and funny.");
    assert_true(s.pos == 0.746 && s.neg == 0.0 && s.neu == 0.254);
}

/* Python: round(0.0625, 3) == 0.062 (tie, to even); round(0.1235, 3) ==
 * 0.123 (the double is below the tie); round(2.675, 2) == 2.67. */
static void test_round(void **state)
{
    assert_true(vader_round(0.0625, 3) == 0.062);
    assert_true(vader_round(0.0635, 3) == 0.064);
    assert_true(vader_round(0.1235, 3) == 0.123);
    assert_true(vader_round(2.675, 2) == 2.67);
    assert_true(vader_round(-0.84315, 4) == -0.8431 || vader_round(-0.84315, 4) == -0.8432);
    assert_true(vader_round(0.431, 4) == 0.431);
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void test_lexicon_file(void **state)
{
    char path[] = "/tmp/insite-lex-XXXXXX", err[256];
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    write_file(path, "lol\t2.9\t0.1\t[1]\nok\t1.6\nlol\t1.8\t0.2\t[2]\n");
    lexicon *lx = lexicon_new();
    assert_int_equal(lexicon_load_vader(lx, path, err, sizeof(err)), 3);
    assert_true(lexicon_get(lx, "lol", 3)->valence == 1.8);   /* last row wins */
    lexicon_free(lx);
    write_file(path, "good\t1.9\nbad row\n");
    lx = lexicon_new();
    assert_int_equal(lexicon_load_vader(lx, path, err, sizeof(err)), -1);
    assert_non_null(strstr(err, ":2: no tab"));
    lexicon_free(lx);
    unlink(path);
    assert_null(vader_lexicon_new("/nonexistent/lexicon.txt", err, sizeof(err)));
    assert_non_null(strstr(err, "No such file"));
}

static void test_finance_and_entities(void **state)
{
    char err[512];
    lexicon *lx = vader_lexicon_new(vader_path, err, sizeof(err));
    assert_non_null(lx);
    assert_true(finance_overlay(lx, afinn_path, err, sizeof(err)) > 100);
    char *syms[] = { "AAPL", "FUN" };
    lexicon *tickers = finance_tickers(syms, 2);
    vader_model plain = { .lex = plain_lx }, fin = { .lex = lx, .entities = 1, .tickers = tickers };

    assert_true(score(&plain, "bullish on the stock").compound == 0);
    assert_true(score(&fin, "bullish on the stock").compound > 0.3);
    assert_true(score(&fin, "earnings miss and a downgrade").compound < -0.3);
    assert_true(score(&fin, "stock plunge").compound < 0);   /* AFINN word, VADER has none */

    /* FUN the ticker is not fun the word; $TSLA is not counted as a word */
    assert_true(score(&plain, "FUN is up").compound > 0);
    assert_true(score(&fin, "FUN is up").compound > 0);   /* "up" from AFINN */
    vader_work *w = vader_work_new();
    vader_scores s;
    const char *t = "($TSLA) and FUN, $brk.b $100";
    assert_int_equal(vader_score(&fin, w, t, strlen(t), &s), 0);
    const vader_entity *e;
    assert_int_equal(vader_entities(w, &e), 3);
    assert_memory_equal(e[0].s, "TSLA", 4);
    assert_memory_equal(e[1].s, "FUN", 3);
    assert_memory_equal(e[2].s, "brk.b", 5);
    assert_int_equal(s.tokens, 2);   /* "and", "$100" */
    vader_work_free(w);
    lexicon_free(lx);
    lexicon_free(tickers);
}

static void test_api_sentiment(void **state)
{
    analytics_ctx ctx = { .model = { .lex = plain_lx }, .pg_lock = PTHREAD_MUTEX_INITIALIZER,
                          .classifier_url = "", .pg_dsn = "host=/nonexistent" };
    ctx.http_work = vader_work_new();
    insite_http_request req = { .method = "POST", .path = "/api/v1/analyze/sentiment", .rest = "" };
    json_t *reply = NULL;

    req.body = json_pack("{s:s}", "text", "VADER is smart, handsome, and funny.");
    assert_int_equal(api_sentiment(&req, &reply, &ctx), 200);
    assert_true(json_real_value(json_object_get(reply, "compound")) == 0.8316);
    assert_true(json_real_value(json_object_get(reply, "positive")) == 0.746);
    assert_true(json_real_value(json_object_get(reply, "neutral")) == 0.254);
    assert_true(json_real_value(json_object_get(reply, "confidence")) == 0.8316);
    assert_string_equal(json_string_value(json_object_get(reply, "model")), "vader");
    assert_false(json_is_true(json_object_get(json_object_get(reply, "ensemble"), "configured")));
    json_decref(reply);
    json_decref(req.body);

    req.body = json_pack("{s:i}", "text", 3);
    assert_int_equal(api_sentiment(&req, &reply, &ctx), 422);
    assert_string_equal(json_string_value(json_object_get(reply, "error")), "invalid_request");
    json_decref(reply);
    json_decref(req.body);

    req.body = json_pack("{s:s, s:[s]}", "symbol", "AAPL", "sources", "reddit");
    assert_int_equal(api_sentiment(&req, &reply, &ctx), 503);   /* no PostgreSQL there */
    json_decref(reply);
    json_decref(req.body);
    vader_work_free(ctx.http_work);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_published_examples),
        cmocka_unit_test(test_round),
        cmocka_unit_test(test_lexicon_file),
        cmocka_unit_test(test_finance_and_entities),
        cmocka_unit_test(test_api_sentiment),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
