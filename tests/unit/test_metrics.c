/* Metrics: the exposition text, byte for byte, and concurrent updates. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
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

static void test_families(void **state)
{
    insite_metrics *m = insite_metrics_new("analytics");
    static const char *const tl[] = { "topic" };
    static const char *const lag_l[] = { "topic", "partition", "group" };
    static const char *const hl[] = { "topic", "event_type" };
    static const double b[] = { 0.01, 0.1 };

    insite_counter_vec *cv = insite_metrics_counter_vec(m, "kafka", "messages_produced",
                                                        "Delivered.", tl, 1);
    insite_gauge_vec *gv = insite_metrics_gauge_vec(m, NULL, "lag", "Lag.", lag_l, 3);
    insite_histogram_vec *hv = insite_metrics_histogram_vec(m, "kafka", "processing_seconds",
                                                            "Time.", hl, 2, b, 2);
    assert_non_null(cv);
    assert_non_null(gv);
    assert_non_null(hv);
    /* registering again is a lookup; a clash is refused */
    assert_ptr_equal(insite_metrics_counter_vec(m, "kafka", "messages_produced", "x", tl, 1), cv);
    assert_null(insite_metrics_gauge_vec(m, "kafka", "processing_seconds", "x", hl, 2));
    assert_null(insite_metrics_counter_vec(m, "kafka", "messages_produced", "x", hl, 2));
    static const double b2[] = { 0.01, 0.2 };
    assert_null(insite_metrics_histogram_vec(m, "kafka", "processing_seconds", "x", hl, 2, b2, 2));

    insite_counter *a = insite_counter_vec_with(cv, (const char *[]){ "alerts" });
    insite_counter_add(a, 3);
    assert_ptr_equal(insite_counter_vec_with(cv, (const char *[]){ "alerts" }), a);
    insite_counter_inc(insite_counter_vec_with(cv, (const char *[]){ "we\"ird\\to\npic" }));
    insite_gauge_set(insite_gauge_vec_with(gv, (const char *[]){ "t", "0", "g" }), 1500);
    insite_gauge *p1 = insite_gauge_vec_with(gv, (const char *[]){ "t", "1", NULL });
    insite_gauge_set(p1, 2);
    insite_histogram_observe(insite_histogram_vec_with(hv, (const char *[]){ "t", "post" }), 0.05);
    insite_histogram_observe(insite_histogram_vec_with(hv, (const char *[]){ "t", "post" }), 3);

    char *text = insite_metrics_render(m);
    assert_string_equal(text,
        "# HELP insite_kafka_messages_produced_total Delivered.\n"
        "# TYPE insite_kafka_messages_produced_total counter\n"
        "insite_kafka_messages_produced_total{topic=\"alerts\"} 3\n"
        "insite_kafka_messages_produced_total{topic=\"we\\\"ird\\\\to\\npic\"} 1\n"
        "# HELP insite_analytics_lag Lag.\n"
        "# TYPE insite_analytics_lag gauge\n"
        "insite_analytics_lag{topic=\"t\",partition=\"0\",group=\"g\"} 1500\n"
        "insite_analytics_lag{topic=\"t\",partition=\"1\",group=\"\"} 2\n"
        "# HELP insite_kafka_processing_seconds Time.\n"
        "# TYPE insite_kafka_processing_seconds histogram\n"
        "insite_kafka_processing_seconds_bucket{topic=\"t\",event_type=\"post\",le=\"0.01\"} 0\n"
        "insite_kafka_processing_seconds_bucket{topic=\"t\",event_type=\"post\",le=\"0.1\"} 1\n"
        "insite_kafka_processing_seconds_bucket{topic=\"t\",event_type=\"post\",le=\"+Inf\"} 2\n"
        "insite_kafka_processing_seconds_sum{topic=\"t\",event_type=\"post\"} 3.05\n"
        "insite_kafka_processing_seconds_count{topic=\"t\",event_type=\"post\"} 2\n");
    free(text);

    /* hidden: not rendered, pointer still valid; _with shows it again */
    insite_gauge_vec_hide(gv, (const char *[]){ "t", "1", "" });
    insite_gauge_set(p1, 7);
    text = insite_metrics_render(m);
    assert_null(strstr(text, "partition=\"1\""));
    assert_non_null(strstr(text, "partition=\"0\""));
    free(text);
    assert_ptr_equal(insite_gauge_vec_with(gv, (const char *[]){ "t", "1", "" }), p1);
    text = insite_metrics_render(m);
    assert_non_null(strstr(text, "insite_analytics_lag{topic=\"t\",partition=\"1\",group=\"\"} 7\n"));
    free(text);
    insite_metrics_free(m);
}

static void test_family_bad_labels(void **state)
{
    insite_metrics *m = insite_metrics_new("w");
    static const double b[] = { 1 };
    assert_null(insite_metrics_counter_vec(m, NULL, "c", "x", (const char *[]){ "0x" }, 1));
    assert_null(insite_metrics_counter_vec(m, NULL, "c", "x", (const char *[]){ "__name" }, 1));
    assert_null(insite_metrics_counter_vec(m, NULL, "c", "x", (const char *[]){ "a-b" }, 1));
    assert_null(insite_metrics_counter_vec(m, NULL, "c", "x", (const char *[]){ "a" }, 0));
    assert_null(insite_metrics_counter_vec(m, "Bad", "c", "x", (const char *[]){ "a" }, 1));
    assert_null(insite_metrics_histogram_vec(m, NULL, "h", "x", (const char *[]){ "le" }, 1, b, 1));
    /* a family with no children yet: just HELP and TYPE */
    assert_non_null(insite_metrics_gauge_vec(m, NULL, "g", "x", (const char *[]){ "Le" }, 1));
    char *text = insite_metrics_render(m);
    assert_string_equal(text, "# HELP insite_w_g x\n# TYPE insite_w_g gauge\n");
    free(text);
    insite_metrics_free(m);
}

static void *hammer_family(void *arg)
{
    insite_counter_vec *v = arg;
    char topic[8];
    for (int i = 0; i < 20000; i++) {
        snprintf(topic, sizeof(topic), "t%d", i % 7);
        insite_counter_inc(insite_counter_vec_with(v, (const char *[]){ topic }));
    }
    return NULL;
}

static void test_family_concurrent(void **state)
{
    insite_metrics *m = insite_metrics_new("w");
    insite_counter_vec *v = insite_metrics_counter_vec(m, NULL, "n", "n", (const char *[]){ "topic" }, 1);
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        pthread_create(&t[i], NULL, hammer_family, v);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    uint64_t sum = 0;
    for (int i = 0; i < 7; i++) {
        char topic[8];
        snprintf(topic, sizeof(topic), "t%d", i);
        sum += insite_counter_get(insite_counter_vec_with(v, (const char *[]){ topic }));
    }
    assert_int_equal(sum, 80000);
    char *text = insite_metrics_render(m);
    size_t lines = 0;
    for (char *p = text; (p = strchr(p, '\n')) != NULL; p++)
        lines++;
    assert_int_equal(lines, 2 + 7);   /* HELP, TYPE, one line per topic */
    free(text);
    insite_metrics_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exposition),
        cmocka_unit_test(test_bad_names),
        cmocka_unit_test(test_concurrent),
        cmocka_unit_test(test_families),
        cmocka_unit_test(test_family_bad_labels),
        cmocka_unit_test(test_family_concurrent),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
