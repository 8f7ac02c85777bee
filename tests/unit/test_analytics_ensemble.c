/* POST /api/v1/analyze/sentiment beyond plain text: model "ensemble" with an
 * external classifier (a libmicrohttpd server started here speaks the
 * documented API), its failure modes, and the {"symbol","sources"} form read
 * from sentiment_data (INSITE_PG_DSN, in a schema of its own). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <microhttpd.h>

#include "log.h"
#include "pg.h"
#include "../../workers/analytics/analytics.h"
#include "../../workers/analytics/classifier.h"
#include "../../workers/analytics/lexicon.h"

static lexicon *lx;
static struct MHD_Daemon *mhd;
static int mhd_port;
static char last_request[8192];
static const char *canned;           /* reply body of the fake classifier */
static int canned_status = 200;

typedef struct {
    char body[4096];
    size_t n;
} upload;

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *data,
                                  size_t *size, void **con_cls)
{
    upload *u = *con_cls;
    if (u == NULL) {
        *con_cls = calloc(1, sizeof(upload));
        return MHD_YES;
    }
    if (*size > 0) {
        size_t k = *size < sizeof(u->body) - 1 - u->n ? *size : sizeof(u->body) - 1 - u->n;
        memcpy(u->body + u->n, data, k);
        u->n += k;
        *size = 0;
        return MHD_YES;
    }
    snprintf(last_request, sizeof(last_request), "%s %s %s", method, url, u->body);
    struct MHD_Response *r = MHD_create_response_from_buffer(strlen(canned), (void *)canned,
                                                             MHD_RESPMEM_PERSISTENT);
    MHD_add_response_header(r, "Content-Type", "application/json");
    enum MHD_Result ok = MHD_queue_response(c, (unsigned)canned_status, r);
    MHD_destroy_response(r);
    return ok;
}

static void on_done(void *cls, struct MHD_Connection *c, void **con_cls,
                    enum MHD_RequestTerminationCode toe)
{
    free(*con_cls);
    *con_cls = NULL;
}

static int setup(void **state)
{
    char err[512], path[4200] = "", line[4096];
    insite_log_set_level(INSITE_LOG_ERROR);
    FILE *p = popen("scripts/lexicons.sh", "r");
    while (p != NULL && fgets(line, sizeof(line), p) != NULL) {
        line[strcspn(line, "\n")] = '\0';
        if (strncmp(line, "INSITE_ANALYTICS_VADER_LEXICON=", 31) == 0)
            snprintf(path, sizeof(path), "%s", line + 31);
    }
    if (p != NULL)
        pclose(p);
    if ((lx = vader_lexicon_new(path, err, sizeof(err))) == NULL) {
        fprintf(stderr, "lexicon: %s\n", err);
        return -1;
    }
    mhd = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD, 0, NULL, NULL, on_request, NULL,
                           MHD_OPTION_NOTIFY_COMPLETED, on_done, NULL,
                           MHD_OPTION_SOCK_ADDR, NULL, MHD_OPTION_END);
    if (mhd == NULL)
        return -1;
    mhd_port = MHD_get_daemon_info(mhd, MHD_DAEMON_INFO_BIND_PORT)->port;
    return 0;
}

static int teardown(void **state)
{
    MHD_stop_daemon(mhd);
    lexicon_free(lx);
    return 0;
}

static int post(analytics_ctx *ctx, json_t *body, json_t **reply)
{
    insite_http_request req = { .method = "POST", .path = "/api/v1/analyze/sentiment",
                                .rest = "", .body = body };
    int status = api_sentiment(&req, reply, ctx);
    json_decref(body);
    return status;
}

static double num(json_t *o, const char *k)
{
    return json_number_value(json_object_get(o, k));
}

static void test_ensemble(void **state)
{
    char url[128];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/classify", mhd_port);
    analytics_ctx ctx = { .model = { .lex = lx }, .pg_lock = PTHREAD_MUTEX_INITIALIZER,
                          .classifier_url = url, .classifier_timeout_ms = 2000,
                          .classifier_weight = 0.5, .pg_dsn = "host=/nonexistent" };
    ctx.http_work = vader_work_new();
    json_t *r;

    /* VADER: compound 0.8316, pos 0.746, neg 0, neu 0.254 (the README's example) */
    canned = "{\"scores\":[{\"positive\":0.6,\"negative\":0.3,\"neutral\":0.1}]}";
    assert_int_equal(post(&ctx, json_pack("{s:s}", "text", "VADER is smart, handsome, and funny."), &r), 200);
    assert_string_equal(last_request, "POST /classify {\"texts\":[\"VADER is smart, handsome, and funny.\"]}");
    assert_string_equal(json_string_value(json_object_get(r, "model")), "ensemble");
    /* 0.5 * 0.8316 + 0.5 * (0.6 - 0.3) = 0.5658 */
    assert_true(fabs(num(r, "compound") - 0.5658) < 1e-12);
    assert_true(fabs(num(r, "positive") - 0.673) < 1e-12);   /* (0.746 + 0.6) / 2 */
    assert_true(fabs(num(r, "negative") - 0.15) < 1e-12);
    assert_true(fabs(num(r, "neutral") - 0.177) < 1e-12);    /* (0.254 + 0.1) / 2 */
    assert_true(fabs(num(r, "confidence") - 0.5658) < 1e-12);
    json_t *e = json_object_get(r, "ensemble");
    assert_true(json_is_true(json_object_get(e, "configured")));
    assert_true(num(json_object_get(e, "vader"), "compound") == 0.8316);
    assert_true(num(json_object_get(e, "classifier"), "negative") == 0.3);
    json_decref(r);

    /* probabilities not summing to 1 are normalised: 2/4, 1/4, 1/4 */
    canned = "{\"scores\":[{\"positive\":1,\"negative\":0.5,\"neutral\":0.5}]}";
    ctx.classifier_weight = 1;
    assert_int_equal(post(&ctx, json_pack("{s:s}", "text", "meh"), &r), 200);
    assert_true(fabs(num(r, "compound") - 0.25) < 1e-12);
    json_decref(r);
    ctx.classifier_weight = 0.5;

    /* failures: VADER only, and the reply says why */
    static const struct { const char *body; int status; const char *why; } bad[] = {
        { "{\"scores\":[]}", 200, "an array of 1 item" },
        { "not json", 200, "not JSON" },
        { "{\"scores\":[{\"positive\":2,\"negative\":0,\"neutral\":0}]}", 200, "[0, 1]" },
        { "{\"scores\":[{\"positive\":\"high\"}]}", 200, "needs numbers" },
        { "{}", 503, "HTTP 503" },
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        canned = bad[i].body;
        canned_status = bad[i].status;
        assert_int_equal(post(&ctx, json_pack("{s:s}", "text", "VADER is smart, handsome, and funny."), &r), 200);
        assert_string_equal(json_string_value(json_object_get(r, "model")), "vader");
        assert_true(num(r, "compound") == 0.8316);
        const char *why = json_string_value(json_object_get(json_object_get(r, "ensemble"), "reason"));
        if (why == NULL || strstr(why, bad[i].why) == NULL || strstr(why, "VADER only") == NULL)
            fail_msg("case %zu: reason %s lacks %s", i, why ? why : "(none)", bad[i].why);
        json_decref(r);
    }
    canned_status = 200;

    /* nobody listening */
    ctx.classifier_url = "http://127.0.0.1:1/classify";
    assert_int_equal(post(&ctx, json_pack("{s:s}", "text", "good"), &r), 200);
    assert_string_equal(json_string_value(json_object_get(r, "model")), "vader");
    assert_non_null(strstr(json_string_value(json_object_get(json_object_get(r, "ensemble"), "reason")),
                           "classifier failed"));
    json_decref(r);

    /* not configured */
    ctx.classifier_url = "";
    assert_int_equal(post(&ctx, json_pack("{s:s}", "text", "good"), &r), 200);
    assert_string_equal(json_string_value(json_object_get(r, "model")), "vader");
    assert_false(json_is_true(json_object_get(json_object_get(r, "ensemble"), "configured")));
    json_decref(r);

    /* the client on its own: several texts, in order */
    canned = "{\"scores\":[{\"positive\":0.1,\"negative\":0.8,\"neutral\":0.1},"
             "{\"positive\":0.7,\"negative\":0.1,\"neutral\":0.2}]}";
    const char *texts[] = { "bad", "ok \"quoted\"" };
    classifier_probs out[2];
    char err[256];
    assert_int_equal(classifier_score(url, 2000, texts, 2, out, err, sizeof(err)), 0);
    assert_true(out[0].negative == 0.8 && out[1].positive == 0.7);
    assert_string_equal(last_request, "POST /classify {\"texts\":[\"bad\",\"ok \\\"quoted\\\"\"]}");
    vader_work_free(ctx.http_work);
}

static void test_symbol_form(void **state)
{
    const char *base = getenv("INSITE_PG_DSN");
    if (base == NULL) {
        fprintf(stderr, "SKIP test_symbol_form: needs INSITE_PG_DSN (scripts/services.sh start)\n");
        skip();
    }
    char err[512], schema[64], dsn[512], sql[1024];
    snprintf(schema, sizeof(schema), "analytics_ens_%ld", (long)getpid());
    snprintf(dsn, sizeof(dsn), "%s%soptions=-csearch_path%%3D%s", base,
             strchr(base, '?') ? "&" : "?", schema);
    PGconn *c = insite_pg_connect(base, err, sizeof(err));
    assert_non_null(c);
    snprintf(sql, sizeof(sql), "CREATE SCHEMA %s; SET search_path TO %s", schema, schema);
    PQclear(PQexec(c, sql));
    if (insite_pg_migrate(c, "workers/migrations", err, sizeof(err)) < 0)
        fail_msg("migrate: %s", err);

    analytics_ctx ctx = { .model = { .lex = lx }, .pg_lock = PTHREAD_MUTEX_INITIALIZER,
                          .classifier_url = "", .pg_dsn = dsn };
    ctx.http_work = vader_work_new();
    json_t *r;
    assert_int_equal(post(&ctx, json_pack("{s:s, s:[s]}", "symbol", "AAPL", "sources", "reddit"), &r), 404);
    assert_string_equal(json_string_value(json_object_get(r, "error")), "no_data");
    assert_non_null(strstr(json_string_value(json_object_get(r, "message")), "no data yet"));
    json_decref(r);
    assert_int_equal(post(&ctx, json_pack("{s:s}", "symbol", "A B"), &r), 422);
    json_decref(r);

    /* an older and a newer 24h row, one 1h row: the newest wins */
    snprintf(sql, sizeof(sql),
             "INSERT INTO sentiment_data VALUES"
             " ('AAPL', '24h', '2026-01-01T10:00:00Z', 0.9, 9, 0, 0, 9),"
             " ('AAPL', '24h', '2026-01-01T11:00:00Z', 0.3, 6, 2, 2, 10),"
             " ('AAPL', '1h', '2026-01-01T11:00:00Z', -0.2, 1, 2, 0, 3)");
    PGresult *res = PQexec(c, sql);
    assert_int_equal(PQresultStatus(res), PGRES_COMMAND_OK);
    PQclear(res);
    assert_int_equal(post(&ctx, json_pack("{s:s, s:[s]}", "symbol", "AAPL", "sources", "reddit"), &r), 200);
    assert_true(num(r, "compound") == 0.3);
    assert_true(fabs(num(r, "positive") - 0.6) < 1e-12);
    assert_true(fabs(num(r, "negative") - 0.2) < 1e-12);
    assert_true(fabs(num(r, "confidence") - 0.15) < 1e-12);    /* 0.3 * 10 / 20 */
    assert_string_equal(json_string_value(json_object_get(r, "model")), "vader");
    json_t *w = json_object_get(r, "windows");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(w, "1h"), "mentions")), 3);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(w, "24h"), "mentions")), 10);
    json_decref(r);

    if (ctx.pg != NULL)
        PQfinish(ctx.pg);
    snprintf(sql, sizeof(sql), "DROP SCHEMA %s CASCADE", schema);
    PQclear(PQexec(c, sql));
    PQfinish(c);
    vader_work_free(ctx.http_work);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ensemble),
        cmocka_unit_test(test_symbol_form),
    };
    return cmocka_run_group_tests_name("analytics_ensemble", tests, setup, teardown);
}
