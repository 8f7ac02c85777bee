/* The caller as nginx vouches for it (workers/lib/http.h): X-User-Id and
 * X-User-Scopes over a real socket.  A scope is granted only by a whole
 * word of the list: not by a prefix, a longer word, another case or an
 * empty header. */
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

/* GET /who with the given headers (NULL: not sent); returns the body */
static char *who(int port, const char *user, const char *scopes)
{
    char url[128], h1[256], h2[256];
    body b = { calloc(1, 1), 0 };
    struct curl_slist *hs = NULL;
    CURL *c = curl_easy_init();

    snprintf(url, sizeof(url), "http://127.0.0.1:%d/who", port);
    if (user) {
        snprintf(h1, sizeof(h1), "X-User-Id: %s", user);
        if (!*user)
            snprintf(h1, sizeof(h1), "X-User-Id;");    /* curl: an empty value */
        hs = curl_slist_append(hs, h1);
    }
    if (scopes) {
        snprintf(h2, sizeof(h2), "X-User-Scopes: %s", scopes);
        if (!*scopes)
            snprintf(h2, sizeof(h2), "X-User-Scopes;");
        hs = curl_slist_append(hs, h2);
    }
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hs);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    assert_int_equal(curl_easy_perform(c), CURLE_OK);
    curl_easy_cleanup(c);
    curl_slist_free_all(hs);
    return b.buf;
}

static int whoami(const insite_http_request *req, json_t **reply, void *ud)
{
    const char *u = insite_http_user(req);
    *reply = json_pack("{s:s?, s:b}", "user", u, "admin", insite_http_has_scope(req, "gdpr:admin"));
    return 200;
}

static void expect(int port, const char *user, const char *scopes, const char *want)
{
    char *got = who(port, user, scopes);
    if (strcmp(got, want) != 0)
        fail_msg("X-User-Id %s, X-User-Scopes %s: got %s want %s", user ? user : "(none)",
                 scopes ? scopes : "(none)", got, want);
    free(got);
}

static void test_scopes(void **state)
{
    insite_http_route routes[] = { { "GET", "/who", whoami, NULL } };
    insite_http_options o = { .service = "test", .port = 0, .body_max = 64,
                              .routes = routes, .nroutes = 1 };
    insite_http *h = insite_http_start(&o);
    assert_non_null(h);
    int port = insite_http_port(h);

    const char *yes = "{\"user\":\"alice\",\"admin\":true}\n";
    const char *no = "{\"user\":\"alice\",\"admin\":false}\n";

    expect(port, "alice", "gdpr:admin", yes);
    expect(port, "alice", "read gdpr:admin", yes);
    expect(port, "alice", "gdpr:admin notify:admin", yes);
    expect(port, "alice", "read,gdpr:admin", yes);
    expect(port, "alice", "gdpr:admin2", no);
    expect(port, "alice", "gdpr:administrator", no);
    expect(port, "alice", "gdpr:admi", no);
    expect(port, "alice", "xgdpr:admin", no);
    expect(port, "alice", "GDPR:ADMIN", no);
    expect(port, "alice", "notify:admin read", no);
    expect(port, "alice", "", no);
    expect(port, "alice", NULL, no);
    expect(port, "", "gdpr:admin", "{\"user\":null,\"admin\":true}\n");
    expect(port, NULL, NULL, "{\"user\":null,\"admin\":false}\n");
    insite_http_stop(h);
}

int main(void)
{
    insite_log_set_level(INSITE_LOG_ERROR);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = { cmocka_unit_test(test_scopes) };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
