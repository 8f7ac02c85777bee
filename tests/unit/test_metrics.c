/* Metrics: the exposition text, byte for byte, and concurrent updates. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "metrics.h"

static void test_exposition(void **state)
{
    insite_metrics *m = insite_metrics_new("collector");
    insite_counter *c = insite_metrics_counter(m, "published", "Messages published.");
    insite_gauge *g = insite_metrics_gauge(m, "queue_depth", "Messages waiting.\nSecond line \\ slash");
    static const double buckets[] = { 0.005, 0.1, 1 };
    insite_histogram *h = insite_metrics_histogram(m, "publish_seconds", "Publish latency.", buckets, 3);

    assert_non_null(c);
    assert_non_null(g);
    assert_non_null(h);
    insite_counter_inc(c);
    insite_counter_add(c, 41);
    insite_gauge_set(g, 3);
    insite_gauge_add(g, 0.5);
    insite_histogram_observe(h, 0.001);
    insite_histogram_observe(h, 0.005);   /* le is inclusive */
    insite_histogram_observe(h, 0.05);
    insite_histogram_observe(h, 2);

    char *text = insite_metrics_render(m);
    assert_string_equal(text,
        "# HELP insite_collector_published_total Messages published.\n"
        "# TYPE insite_collector_published_total counter\n"
        "insite_collector_published_total 42\n"
        "# HELP insite_collector_queue_depth Messages waiting.\\nSecond line \\\\ slash\n"
        "# TYPE insite_collector_queue_depth gauge\n"
        "insite_collector_queue_depth 3.5\n"
        "# HELP insite_collector_publish_seconds Publish latency.\n"
        "# TYPE insite_collector_publish_seconds histogram\n"
        "insite_collector_publish_seconds_bucket{le=\"0.005\"} 2\n"
        "insite_collector_publish_seconds_bucket{le=\"0.1\"} 3\n"
        "insite_collector_publish_seconds_bucket{le=\"1\"} 3\n"
        "insite_collector_publish_seconds_bucket{le=\"+Inf\"} 4\n"
        "insite_collector_publish_seconds_sum 2.056\n"
        "insite_collector_publish_seconds_count 4\n");
    free(text);
    insite_metrics_free(m);
}

static void test_bad_names(void **state)
{
    insite_metrics *m = insite_metrics_new("w");
    static const double down[] = { 1, 0.5 };
    assert_null(insite_metrics_counter(m, "Bad-Name", "x"));
    assert_null(insite_metrics_counter(m, "", "x"));
    assert_null(insite_metrics_histogram(m, "h", "x", down, 2));
    char *text = insite_metrics_render(m);
    assert_string_equal(text, "");
    free(text);
    insite_metrics_free(m);
}

static void *hammer(void *arg)
{
    void **a = arg;
    for (int i = 0; i < 100000; i++) {
        insite_counter_inc(a[0]);
        insite_gauge_add(a[1], 1);
        insite_histogram_observe(a[2], 0.5);
    }
    return NULL;
}

static void test_concurrent(void **state)
{
    insite_metrics *m = insite_metrics_new("w");
    void *a[3] = {
        insite_metrics_counter(m, "n", "n"),
        insite_metrics_gauge(m, "g", "g"),
        insite_metrics_histogram(m, "h", "h", insite_metrics_latency_buckets,
                                 insite_metrics_latency_nbuckets),
    };
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        pthread_create(&t[i], NULL, hammer, a);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    assert_int_equal(insite_counter_get(a[0]), 400000);
    assert_true(insite_gauge_get(a[1]) == 400000.0);
    char *text = insite_metrics_render(m);
    assert_non_null(strstr(text, "insite_w_h_count 400000\n"));
    assert_non_null(strstr(text, "insite_w_h_sum 200000\n"));
    assert_non_null(strstr(text, "insite_w_h_bucket{le=\"0.25\"} 0\n"));
    assert_non_null(strstr(text, "insite_w_h_bucket{le=\"0.5\"} 400000\n"));
    free(text);
    insite_metrics_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exposition),
        cmocka_unit_test(test_bad_names),
        cmocka_unit_test(test_concurrent),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
