/* insite-collector's HTTP client (workers/collector/fetch.c, compiled in)
 * against a scripted local server: parallel requests, keep-alive, retries
 * with backoff on 5xx and timeouts, 429 + Retry-After, no retry on 4xx. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "log.h"
#include "clock.h"
#include "../../workers/collector/fetch.h"

typedef struct {
    const char *path;
    int status[4];               /* answers in order; the last one repeats */
    const char *headers[4];
    int delay_ms;
    int hits;
} script;

static script scripts[16];
static int nscripts, listen_fd, port, connections;
static char last_ua[256];
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;

static script *find(const char *path)
{
    for (int i = 0; i < nscripts; i++)
        if (strcmp(scripts[i].path, path) == 0)
            return &scripts[i];
    return NULL;
}

static void *serve_conn(void *arg)
{
    int fd = (int)(intptr_t)arg;
    char buf[4096] = "";
    size_t len = 0;

    for (;;) {
        char *end;
        while ((end = strstr(buf, "\r\n\r\n")) == NULL || len == 0) {
            ssize_t n = read(fd, buf + len, sizeof(buf) - 1 - len);
            if (n <= 0) {
                close(fd);
                return NULL;
            }
            len += (size_t)n;
            buf[len] = '\0';
        }
        char path[256] = "";
        sscanf(buf, "GET %255[^? ]", path);
        pthread_mutex_lock(&mu);
        const char *ua = strstr(buf, "User-Agent: ");
        if (ua)
            snprintf(last_ua, sizeof(last_ua), "%.*s", (int)strcspn(ua + 12, "\r"), ua + 12);
        script *s = find(path);
        int k = s ? (s->hits < 3 ? s->hits : 3) : 0;
        int status = s ? s->status[k] : 404;
        const char *hdr = s && s->headers[k] ? s->headers[k] : "";
        int delay = s ? s->delay_ms : 0;
        if (s)
            s->hits++;
        if (s && k < 3 && s->status[k + 1] == 0)   /* last answer repeats */
            s->status[k + 1] = status, s->headers[k + 1] = s->headers[k];
        pthread_mutex_unlock(&mu);
        usleep((useconds_t)delay * 1000);
        char resp[512];
        int n = snprintf(resp, sizeof(resp), "HTTP/1.1 %d X\r\nContent-Type: application/json\r\n"
                         "%sContent-Length: 8\r\n\r\n{\"ok\":%d}", status, hdr, status == 200);
        if (write(fd, resp, (size_t)n) != n) {
            close(fd);
            return NULL;
        }
        size_t used = (size_t)(end + 4 - buf);
        memmove(buf, end + 4, len - used);
        len -= used;
        buf[len] = '\0';
    }
}

static void *acceptor(void *arg)
{
    for (;;) {
        int fd = accept(listen_fd, NULL, NULL);
        if (fd < 0)
            return NULL;
        pthread_mutex_lock(&mu);
        connections++;
        pthread_mutex_unlock(&mu);
        pthread_t t;
        pthread_create(&t, NULL, serve_conn, (void *)(intptr_t)fd);
        pthread_detach(t);
    }
}

static int setup(void **state)
{
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof(a);
    pthread_t t;

    insite_log_set_level(getenv("TEST_DEBUG") ? INSITE_LOG_DEBUG : INSITE_LOG_ERROR);
    listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    if (bind(listen_fd, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(listen_fd, 64) != 0
        || getsockname(listen_fd, (struct sockaddr *)&a, &len) != 0)
        return -1;
    port = ntohs(a.sin_port);
    pthread_create(&t, NULL, acceptor, NULL);
    pthread_detach(t);
    return 0;
}

static void add(const char *path, int s0, const char *h0, int s1, const char *h1, int delay)
{
    scripts[nscripts++] = (script){ .path = path, .status = { s0, s1 }, .headers = { h0, h1 },
                                    .delay_ms = delay };
}

static fetch *client(int timeout_ms, int retries)
{
    fetch_options o = {
        .provider = "test", .user_agent = "Mozilla/5.0 insite-collector-test",
        .timeout_ms = timeout_ms, .connect_timeout_ms = 1000, .retries = retries,
        .backoff_ms = 100, .backoff_max_ms = 400, .retry_after_max_ms = 2000,
        .max_parallel = 8, .abort_fd = -1,
    };
    fetch *f = fetch_new(&o);
    assert_non_null(f);
    return f;
}

static char urls[8][128];

static fetch_req req(int i, const char *path)
{
    snprintf(urls[i], sizeof(urls[i]), "http://127.0.0.1:%d%s?interval=1m", port, path);
    return (fetch_req){ .url = urls[i], .label = path + 1 };
}

static void test_ok_keepalive_parallel(void **state)
{
    fetch *f = client(2000, 0);
    fetch_req r[4] = { req(0, "/p1"), req(1, "/p2"), req(2, "/p3"), req(3, "/p4") };
    add("/p1", 200, NULL, 0, NULL, 300);
    add("/p2", 200, NULL, 0, NULL, 300);
    add("/p3", 200, NULL, 0, NULL, 300);
    add("/p4", 200, NULL, 0, NULL, 300);

    long long t0 = insite_clock_mono_ms();
    assert_int_equal(fetch_run(f, r, 4), 4);
    assert_true(insite_clock_mono_ms() - t0 < 900);          /* in parallel */
    assert_string_equal(r[0].body, "{\"ok\":1}");
    assert_string_equal(last_ua, "Mozilla/5.0 insite-collector-test");
    fetch_reqs_clear(r, 4);
    int before = connections;
    assert_int_equal(fetch_run(f, r, 4), 4);                 /* same connections */
    assert_int_equal(connections, before);
    fetch_reqs_clear(r, 4);
    fetch_free(f);
}

static void test_retry_5xx_then_ok(void **state)
{
    fetch *f = client(2000, 2);
    fetch_req r[1] = { req(0, "/flaky") };
    add("/flaky", 503, NULL, 200, NULL, 0);
    scripts[nscripts - 1].status[1] = 502;
    scripts[nscripts - 1].status[2] = 200;

    long long t0 = insite_clock_mono_ms();
    assert_int_equal(fetch_run(f, r, 1), 1);
    long long took = insite_clock_mono_ms() - t0;
    assert_int_equal(r[0].attempts, 3);
    assert_int_equal(r[0].status, 200);
    assert_true(took >= 50 + 100);       /* jittered 100ms then 200ms, halves at least */
    fetch_reqs_clear(r, 1);

    /* retries exhausted: the last cause is reported */
    fetch_req d[1] = { req(0, "/down") };
    add("/down", 500, NULL, 0, NULL, 0);
    assert_int_equal(fetch_run(f, d, 1), 0);
    assert_int_equal(d[0].attempts, 3);
    assert_int_equal(d[0].status, 500);
    assert_string_equal(d[0].err, "HTTP 500");
    fetch_reqs_clear(d, 1);
    fetch_free(f);
}

static void test_no_retry_on_404(void **state)
{
    fetch *f = client(2000, 2);
    fetch_req r[1] = { req(0, "/missing") };
    assert_int_equal(fetch_run(f, r, 1), 0);
    assert_int_equal(r[0].attempts, 1);
    assert_int_equal(r[0].status, 404);
    fetch_reqs_clear(r, 1);
    fetch_free(f);
}

static void test_timeout(void **state)
{
    fetch *f = client(200, 1);
    fetch_req r[1] = { req(0, "/slow") };
    add("/slow", 200, NULL, 0, NULL, 1500);
    assert_int_equal(fetch_run(f, r, 1), 0);
    assert_int_equal(r[0].attempts, 2);
    assert_int_equal(r[0].status, 0);
    assert_non_null(strstr(r[0].err, "Timeout"));
    fetch_reqs_clear(r, 1);
    fetch_free(f);
}

static void test_429_retry_after(void **state)
{
    fetch *f = client(2000, 2);
    fetch_req r[1] = { req(0, "/limited") };
    add("/limited", 429, "Retry-After: 1\r\n", 200, NULL, 0);

    long long t0 = insite_clock_mono_ms();
    assert_int_equal(fetch_run(f, r, 1), 1);
    assert_true(insite_clock_mono_ms() - t0 >= 990);      /* waited as told */
    assert_int_equal(r[0].attempts, 2);
    fetch_reqs_clear(r, 1);

    /* longer than retry_after_max: fail now, leave the host alone */
    fetch_req l[1] = { req(0, "/banned") };
    add("/banned", 429, "Retry-After: 120\r\n", 0, NULL, 0);
    assert_int_equal(fetch_run(f, l, 1), 0);
    assert_int_equal(l[0].attempts, 1);
    assert_string_equal(l[0].err, "HTTP 429 Too Many Requests (Retry-After: 120s)");
    assert_true(fetch_hold_until(f) > insite_clock_mono_ms() + 100000);
    fetch_reqs_clear(l, 1);
    int hits = find("/p1")->hits;
    fetch_req n[1] = { req(0, "/p1") };
    assert_int_equal(fetch_run(f, n, 1), 0);
    assert_int_equal(n[0].attempts, 0);                   /* not even tried */
    assert_non_null(strstr(n[0].err, "rate limited (429)"));
    assert_int_equal(find("/p1")->hits, hits);
    fetch_reqs_clear(n, 1);
    fetch_free(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ok_keepalive_parallel),
        cmocka_unit_test(test_retry_5xx_then_ok),
        cmocka_unit_test(test_no_retry_on_404),
        cmocka_unit_test(test_timeout),
        cmocka_unit_test(test_429_retry_after),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
