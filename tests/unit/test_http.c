/* The worker HTTP API over a real socket, driven with libcurl. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <curl/curl.h>

#include "http.h"
#include "log.h"

typedef struct { char *buf; size_t len; } body;

static size_t on_data(char *p, size_t size, size_t n, void *ud)
{
    body *b = ud;
    b->buf = realloc(b->buf, b->len + size * n + 1);
    memcpy(b->buf + b->len, p, size * n);
    b->len += size * n;
    b->buf[b->len] = '\0';
    return size * n;
}

/* Returns the status; *out is the body (caller frees). */
static long request(int port, const char *method, const char *path, const char *data, char **out)
{
    char url[256];
    body b = { calloc(1, 1), 0 };
    long status = 0;
    CURL *c = curl_easy_init();
    snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", port, path);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    if (data)
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, data);
    assert_int_equal(curl_easy_perform(c), CURLE_OK);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(c);
    *out = b.buf;
    return status;
}

static int echo(const insite_http_request *req, json_t **reply, void *ud)
{
    *reply = json_pack("{s:s, s:O?}", "rest", req->rest, "body", req->body);
    return 201;
}

static int health(json_t *checks, void *ud)
{
    json_object_set_new(checks, "redis", json_string(*(int *)ud ? "down" : "ok"));
    return *(int *)ud ? -1 : 0;
}

static void test_routes(void **state)
{
    insite_metrics *m = insite_metrics_new("test");
    insite_counter_add(insite_metrics_counter(m, "jobs", "Jobs."), 3);
    int down = 0;
    insite_http_route routes[] = { { "POST", "/jobs", echo, NULL } };
    insite_http_options o = { .service = "test", .port = 0, .body_max = 64,
                              .routes = routes, .nroutes = 1, .metrics = m,
                              .health = health, .health_ud = &down };
    insite_http *h = insite_http_start(&o);
    assert_non_null(h);
    int port = insite_http_port(h);
    assert_true(port > 0);
    char *out;

    assert_int_equal(request(port, "POST", "/jobs/42", "{\"a\":1}", &out), 201);
    assert_string_equal(out, "{\"rest\":\"/42\",\"body\":{\"a\":1}}\n");
    free(out);
    assert_int_equal(request(port, "POST", "/jobs", "{bad", &out), 400);
    assert_non_null(strstr(out, "{\"error\":\"bad_request\",\"message\":\"invalid JSON"));
    free(out);
    assert_int_equal(request(port, "POST", "/jobs", "[\"0123456789012345678901234567890123456789012345678901234567890123\"]", &out), 413);
    assert_non_null(strstr(out, "\"error\":\"payload_too_large\""));
    free(out);
    assert_int_equal(request(port, "GET", "/jobs", NULL, &out), 405);
    assert_string_equal(out, "{\"error\":\"method_not_allowed\",\"message\":\"method not allowed on this path\"}\n");
    free(out);
    assert_int_equal(request(port, "GET", "/jobsx", NULL, &out), 404);
    assert_string_equal(out, "{\"error\":\"not_found\",\"message\":\"no such path\"}\n");
    free(out);

    assert_int_equal(request(port, "GET", "/healthz", NULL, &out), 200);
    assert_non_null(strstr(out, "{\"status\":\"ok\",\"service\":\"test\",\"uptime_s\":0,\"checks\":{\"redis\":\"ok\"}}"));
    free(out);
    down = 1;
    assert_int_equal(request(port, "GET", "/healthz", NULL, &out), 503);
    assert_non_null(strstr(out, "\"status\":\"degraded\""));
    free(out);

    assert_int_equal(request(port, "GET", "/metrics", NULL, &out), 200);
    assert_string_equal(out, "# HELP insite_test_jobs_total Jobs.\n"
                             "# TYPE insite_test_jobs_total counter\n"
                             "insite_test_jobs_total 3\n");
    free(out);
    insite_http_stop(h);
    insite_metrics_free(m);
}

/* GET with extra headers ("Name: value", NULL-terminated) */
static long get_h(int port, const char *path, const char *const *headers, char **out)
{
    char url[256];
    body b = { calloc(1, 1), 0 };
    long status = 0;
    struct curl_slist *hl = NULL;
    CURL *c = curl_easy_init();
    for (; headers && *headers; headers++)
        hl = curl_slist_append(hl, *headers);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", port, path);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    assert_int_equal(curl_easy_perform(c), CURLE_OK);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(c);
    curl_slist_free_all(hl);
    *out = b.buf;
    return status;
}

/* who is asking, as the handlers see it */
static int who(const insite_http_request *req, json_t **reply, void *ud)
{
    long long limit;
    int st = insite_http_query_int(req, "limit", 1, 1000, 100, &limit, reply);
    if (st != 0)
        return st;
    *reply = json_pack("{s:s?, s:b, s:I}", "user", insite_http_user(req),
                       "admin", insite_http_has_scope(req, "gdpr:admin"), "limit", (json_int_t)limit);
    return 200;
}

static void test_identity(void **state)
{
    insite_http_route routes[] = { { "GET", "/who", who, NULL } };
    insite_http_options o = { .service = "test", .routes = routes, .nroutes = 1 };
    insite_http *h = insite_http_start(&o);
    assert_non_null(h);
    int port = insite_http_port(h);
    char *out;
    static const struct { const char *h[3]; const char *want; } cases[] = {
        { { NULL }, "{\"user\":null,\"admin\":false,\"limit\":100}\n" },
        { { "X-User-Id:", NULL }, "{\"user\":null,\"admin\":false,\"limit\":100}\n" },
        { { "X-User-Id: u42", NULL }, "{\"user\":\"u42\",\"admin\":false,\"limit\":100}\n" },
        { { "X-User-Id: u42", "X-User-Scopes: openid gdpr:admin profile", NULL },
          "{\"user\":\"u42\",\"admin\":true,\"limit\":100}\n" },
        { { "X-User-Id: u42", "X-User-Scopes: gdpr:admin", NULL },
          "{\"user\":\"u42\",\"admin\":true,\"limit\":100}\n" },
        { { "X-User-Id: u42", "X-User-Scopes: a,gdpr:admin", NULL },
          "{\"user\":\"u42\",\"admin\":true,\"limit\":100}\n" },
        /* look-alikes are not the scope */
        { { "X-User-Id: u42", "X-User-Scopes: gdpr:admins gdpr:admi xgdpr:admin gdpr", NULL },
          "{\"user\":\"u42\",\"admin\":false,\"limit\":100}\n" },
        { { "X-User-Id: u42", "X-User-Scopes: gdpr:admin2 gdpr:administrator", NULL },
          "{\"user\":\"u42\",\"admin\":false,\"limit\":100}\n" },
        { { "X-User-Id: u42", "X-User-Scopes: GDPR:ADMIN notify:admin read", NULL },
          "{\"user\":\"u42\",\"admin\":false,\"limit\":100}\n" },
        { { "X-User-Id: u42", "X-User-Scopes:", NULL },
          "{\"user\":\"u42\",\"admin\":false,\"limit\":100}\n" },
        /* a scope without a user: the scope is read, the user stays none */
        { { "X-User-Id:", "X-User-Scopes: gdpr:admin", NULL },
          "{\"user\":null,\"admin\":true,\"limit\":100}\n" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        assert_int_equal(get_h(port, "/who", cases[i].h, &out), 200);
        assert_string_equal(out, cases[i].want);
        free(out);
    }

    /* strict integers */
    static const char *bad[] = { "1abc", "", "+5", "%205", "0x10", "5.0", "-1", "0", "1001",
                                 "99999999999999999999" };
    char path[64];
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(path, sizeof(path), "/who?limit=%s", bad[i]);
        long st = get_h(port, path, NULL, &out);
        if (st != 400)
            fprintf(stderr, "limit=%s: %ld %s", bad[i], st, out);
        assert_int_equal(st, 400);
        assert_string_equal(out, "{\"error\":\"bad_request\",\"message\":"
                                 "\"limit must be an integer from 1 to 1000\"}\n");
        free(out);
    }
    /* a decoded NUL in any argument, read by the handler or not: refused
     * before the handler, never a value cut short */
    static const struct { const char *path, *want; } nul[] = {
        { "/who?limit=1%00", "limit" },
        { "/who?limit=5&user_id=alice%00bob", "user_id" },
        { "/who?x%00y=1", "x" },
    };
    for (size_t i = 0; i < sizeof(nul) / sizeof(nul[0]); i++) {
        char want[160];
        snprintf(want, sizeof(want), "{\"error\":\"bad_request\",\"message\":"
                 "\"query argument \\\"%s\\\" holds a NUL byte (%%00)\"}\n", nul[i].want);
        assert_int_equal(get_h(port, nul[i].path, NULL, &out), 400);
        assert_string_equal(out, want);
        free(out);
    }

    assert_int_equal(get_h(port, "/who?limit=1000", NULL, &out), 200);
    assert_non_null(strstr(out, "\"limit\":1000"));
    free(out);
    assert_int_equal(get_h(port, "/who?limit=007", NULL, &out), 200);
    assert_non_null(strstr(out, "\"limit\":7"));
    free(out);
    insite_http_stop(h);
}

int main(void)
{
    insite_log_set_level(INSITE_LOG_ERROR);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = { cmocka_unit_test(test_routes),
                                        cmocka_unit_test(test_identity) };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
