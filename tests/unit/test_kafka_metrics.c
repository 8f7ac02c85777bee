/* The shared Kafka metrics: names, labels and the consumer lag read from a
 * librdkafka statistics document (the shape librdkafka 2.x emits). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kafka_metrics.h"

static const char stats1[] =
    "{\"name\":\"c#consumer-1\",\"type\":\"consumer\",\"topics\":{"
    "\"social_posts\":{\"topic\":\"social_posts\",\"partitions\":{"
    "\"0\":{\"partition\":0,\"desired\":true,\"committed_offset\":10,\"hi_offset\":1510,"
    "\"consumer_lag\":1500},"
    "\"1\":{\"partition\":1,\"desired\":true,\"committed_offset\":-1001,\"consumer_lag\":-1},"
    "\"2\":{\"partition\":2,\"desired\":false,\"consumer_lag\":-1},"
    "\"-1\":{\"partition\":-1,\"desired\":false,\"consumer_lag\":-1}}}}}";

static const char stats2[] =
    "{\"topics\":{\"social_posts\":{\"partitions\":{"
    "\"0\":{\"partition\":0,\"desired\":false,\"consumer_lag\":1500},"
    "\"1\":{\"partition\":1,\"desired\":true,\"consumer_lag\":0}}}}}";

static void test_lag(void **state)
{
    insite_metrics *m = insite_metrics_new("analytics");
    insite_kafka_consumer_metrics *cm = insite_kafka_consumer_metrics_new(m, "insite-analytics");
    assert_non_null(cm);
    assert_int_equal(insite_kafka_consumer_metrics_stats(cm, stats1, strlen(stats1)), 0);
    char *t = insite_metrics_render(m);
    assert_non_null(strstr(t, "# TYPE insite_kafka_consumer_lag gauge\n"
        "insite_kafka_consumer_lag{topic=\"social_posts\",partition=\"0\",group=\"insite-analytics\"} 1500\n"
        "# HELP insite_kafka_processing_duration_seconds"));   /* only partition 0 is known */
    free(t);

    /* partition 0 moved to another member: gone; partition 1 caught up */
    assert_int_equal(insite_kafka_consumer_metrics_stats(cm, stats2, strlen(stats2)), 0);
    t = insite_metrics_render(m);
    assert_null(strstr(t, "partition=\"0\""));
    assert_non_null(strstr(t, "insite_kafka_consumer_lag{topic=\"social_posts\",partition=\"1\","
                              "group=\"insite-analytics\"} 0\n"));
    free(t);
    assert_int_equal(insite_kafka_consumer_metrics_stats(cm, "{nope", 5), -1);

    insite_kafka_consumer_metrics_processed(cm, "social_posts", "social_post", 0.003);
    insite_kafka_consumer_metrics_processed(cm, "social_posts", "social_post", 7);
    t = insite_metrics_render(m);
    assert_non_null(strstr(t,
        "insite_kafka_processing_duration_seconds_bucket{topic=\"social_posts\",event_type=\"social_post\",le=\"0.001\"} 0\n"
        "insite_kafka_processing_duration_seconds_bucket{topic=\"social_posts\",event_type=\"social_post\",le=\"0.005\"} 1\n"
        "insite_kafka_processing_duration_seconds_bucket{topic=\"social_posts\",event_type=\"social_post\",le=\"0.01\"} 1\n"
        "insite_kafka_processing_duration_seconds_bucket{topic=\"social_posts\",event_type=\"social_post\",le=\"0.05\"} 1\n"
        "insite_kafka_processing_duration_seconds_bucket{topic=\"social_posts\",event_type=\"social_post\",le=\"0.1\"} 1\n"
        "insite_kafka_processing_duration_seconds_bucket{topic=\"social_posts\",event_type=\"social_post\",le=\"0.5\"} 1\n"
        "insite_kafka_processing_duration_seconds_bucket{topic=\"social_posts\",event_type=\"social_post\",le=\"1\"} 1\n"
        "insite_kafka_processing_duration_seconds_bucket{topic=\"social_posts\",event_type=\"social_post\",le=\"5\"} 1\n"
        "insite_kafka_processing_duration_seconds_bucket{topic=\"social_posts\",event_type=\"social_post\",le=\"+Inf\"} 2\n"));
    free(t);
    insite_kafka_consumer_metrics_free(cm);
    insite_metrics_free(m);
}

static void test_producer_and_sharing(void **state)
{
    insite_metrics *m = insite_metrics_new("collector");
    insite_kafka_producer_metrics *a = insite_kafka_producer_metrics_new(m, "insite-collector");
    insite_kafka_producer_metrics *b = insite_kafka_producer_metrics_new(m, "insite-social");
    assert_non_null(a);
    assert_non_null(b);
    insite_kafka_producer_metrics_produced(a, "stock_updates");
    insite_kafka_producer_metrics_produced(b, "stock_updates");   /* same family */
    insite_kafka_producer_metrics_failed(a, "alerts");
    insite_kafka_producer_metrics_retried(a, "alerts");
    insite_kafka_producer_metrics_spooled(a, "alerts");
    insite_kafka_producer_metrics_queue(a, 12);
    insite_kafka_producer_metrics_queue(NULL, 12);                /* no-op */
    char *t = insite_metrics_render(m);
    assert_non_null(strstr(t, "insite_kafka_messages_produced_total{topic=\"stock_updates\"} 2\n"));
    assert_non_null(strstr(t, "insite_kafka_delivery_failures_total{topic=\"alerts\"} 1\n"));
    assert_non_null(strstr(t, "insite_kafka_retries_total{topic=\"alerts\"} 1\n"));
    assert_non_null(strstr(t, "insite_kafka_messages_spooled_total{topic=\"alerts\"} 1\n"));
    assert_non_null(strstr(t, "insite_kafka_producer_queue_depth{client_id=\"insite-collector\"} 12\n"));
    assert_non_null(strstr(t, "insite_kafka_producer_queue_depth{client_id=\"insite-social\"} 0\n"));
    free(t);
    assert_null(insite_kafka_producer_metrics_new(NULL, "x"));
    insite_kafka_producer_metrics_free(a);
    insite_kafka_producer_metrics_free(b);
    insite_metrics_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lag),
        cmocka_unit_test(test_producer_and_sharing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
