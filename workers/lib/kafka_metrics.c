#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "kafka_metrics.h"
#include "log.h"

const double insite_kafka_processing_buckets[] = { 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5 };
const size_t insite_kafka_processing_nbuckets =
    sizeof(insite_kafka_processing_buckets) / sizeof(insite_kafka_processing_buckets[0]);

static const char *const topic_label[] = { "topic" };
static const char *const client_label[] = { "client_id" };
static const char *const consumed_labels[] = { "topic", "group" };
static const char *const lag_labels[] = { "topic", "partition", "group" };
static const char *const processing_labels[] = { "topic", "event_type" };

struct insite_kafka_producer_metrics {
    insite_counter_vec *produced, *failed, *retried, *spooled;
    insite_gauge *queue;
};

struct insite_kafka_consumer_metrics {
    insite_counter_vec *consumed;
    insite_gauge_vec *lag;
    insite_histogram_vec *processing;
    char *group;
};

/* ---- producer -------------------------------------------------------- */

insite_kafka_producer_metrics *insite_kafka_producer_metrics_new(insite_metrics *m,
                                                                 const char *client_id)
{
    if (m == NULL)
        return NULL;
    insite_kafka_producer_metrics *pm = calloc(1, sizeof(*pm));
    insite_gauge_vec *q;
    if (pm == NULL
        || (pm->produced = insite_metrics_counter_vec(m, "kafka", "messages_produced",
                "Messages acknowledged by the broker.", topic_label, 1)) == NULL
        || (pm->failed = insite_metrics_counter_vec(m, "kafka", "delivery_failures",
                "Messages librdkafka could not enqueue or deliver (then retried or spooled).",
                topic_label, 1)) == NULL
        || (pm->retried = insite_metrics_counter_vec(m, "kafka", "retries",
                "Messages re-enqueued from the retry queue.", topic_label, 1)) == NULL
        || (pm->spooled = insite_metrics_counter_vec(m, "kafka", "messages_spooled",
                "Messages written to the spool file (replayed at the next start).",
                topic_label, 1)) == NULL
        || (q = insite_metrics_gauge_vec(m, "kafka", "producer_queue_depth",
                "Messages waiting: in librdkafka's queue plus the retry queue.",
                client_label, 1)) == NULL
        || (pm->queue = insite_gauge_vec_with(q, (const char *[]){ client_id })) == NULL) {
        insite_log_error("kafka metrics: cannot register the producer metrics");
        free(pm);
        return NULL;
    }
    return pm;
}

void insite_kafka_producer_metrics_free(insite_kafka_producer_metrics *pm)
{
    free(pm);   /* the families belong to the registry */
}

static void inc(insite_counter_vec *v, const char *topic)
{
    insite_counter *c = insite_counter_vec_with(v, (const char *[]){ topic });
    if (c != NULL)
        insite_counter_inc(c);
}

void insite_kafka_producer_metrics_produced(insite_kafka_producer_metrics *pm, const char *topic)
{
    if (pm != NULL)
        inc(pm->produced, topic);
}

void insite_kafka_producer_metrics_failed(insite_kafka_producer_metrics *pm, const char *topic)
{
    if (pm != NULL)
        inc(pm->failed, topic);
}

void insite_kafka_producer_metrics_retried(insite_kafka_producer_metrics *pm, const char *topic)
{
    if (pm != NULL)
        inc(pm->retried, topic);
}

void insite_kafka_producer_metrics_spooled(insite_kafka_producer_metrics *pm, const char *topic)
{
    if (pm != NULL)
        inc(pm->spooled, topic);
}

void insite_kafka_producer_metrics_queue(insite_kafka_producer_metrics *pm, size_t depth)
{
    if (pm != NULL)
        insite_gauge_set(pm->queue, (double)depth);
}

/* ---- consumer -------------------------------------------------------- */

insite_kafka_consumer_metrics *insite_kafka_consumer_metrics_new(insite_metrics *m,
                                                                 const char *group)
{
    if (m == NULL)
        return NULL;
    insite_kafka_consumer_metrics *cm = calloc(1, sizeof(*cm));
    if (cm == NULL
        || (cm->group = strdup(group ? group : "")) == NULL
        || (cm->consumed = insite_metrics_counter_vec(m, "kafka", "messages_consumed",
                "Messages returned by the consumer.", consumed_labels, 2)) == NULL
        || (cm->lag = insite_metrics_gauge_vec(m, "kafka", "consumer_lag",
                "Messages between the partition's end and the group's committed offset "
                "(librdkafka statistics).", lag_labels, 3)) == NULL
        || (cm->processing = insite_metrics_histogram_vec(m, "kafka",
                "processing_duration_seconds", "Time to handle one consumed message.",
                processing_labels, 2, insite_kafka_processing_buckets,
                insite_kafka_processing_nbuckets)) == NULL) {
        insite_log_error("kafka metrics: cannot register the consumer metrics");
        if (cm != NULL)
            free(cm->group);
        free(cm);
        return NULL;
    }
    return cm;
}

void insite_kafka_consumer_metrics_free(insite_kafka_consumer_metrics *cm)
{
    if (cm == NULL)
        return;
    free(cm->group);
    free(cm);
}

static int on_stats(rd_kafka_t *rk, char *json, size_t len, void *opaque)
{
    insite_kafka_consumer_metrics_stats(opaque, json, len);
    return 0;   /* librdkafka frees json */
}

int insite_kafka_consumer_metrics_conf(insite_kafka_consumer_metrics *cm,
                                       rd_kafka_conf_t *conf, int interval_ms)
{
    char num[32], err[256];
    if (cm == NULL)
        return 0;
    if (interval_ms <= 0 || interval_ms > INSITE_KAFKA_STATS_INTERVAL_MS)
        interval_ms = INSITE_KAFKA_STATS_INTERVAL_MS;
    snprintf(num, sizeof(num), "%d", interval_ms);
    if (rd_kafka_conf_set(conf, "statistics.interval.ms", num, err, sizeof(err))
        != RD_KAFKA_CONF_OK) {
        insite_log_error("kafka metrics: statistics.interval.ms=%s: %s", num, err);
        return -1;
    }
    rd_kafka_conf_set_stats_cb(conf, on_stats);
    rd_kafka_conf_set_opaque(conf, cm);
    return 0;
}

/* One partition of the statistics: {"partition":0,"desired":true,
 * "consumer_lag":12,...}.  "-1" is librdkafka's internal UA partition. */
static void partition_lag(insite_kafka_consumer_metrics *cm, const char *topic,
                          const char *id, json_t *p)
{
    if (!json_is_object(p) || atoi(id) < 0 || *id == '-')
        return;
    const char *values[] = { topic, id, cm->group };
    json_t *desired = json_object_get(p, "desired");
    json_t *lag = json_object_get(p, "consumer_lag");
    if (!json_is_true(desired)) {
        insite_gauge_vec_hide(cm->lag, values);     /* not ours (any more) */
        return;
    }
    if (json_is_integer(lag) && json_integer_value(lag) >= 0) {
        insite_gauge *g = insite_gauge_vec_with(cm->lag, values);
        if (g != NULL)
            insite_gauge_set(g, (double)json_integer_value(lag));
    }
    /* -1: not known yet (no committed offset or watermark): keep the last */
}

int insite_kafka_consumer_metrics_stats(insite_kafka_consumer_metrics *cm,
                                        const char *json, size_t len)
{
    json_error_t jerr;
    if (cm == NULL)
        return 0;
    json_t *root = json_loadb(json, len, 0, &jerr);
    if (!json_is_object(root)) {
        insite_log_warn("kafka metrics: unreadable statistics: %s", jerr.text);
        json_decref(root);
        return -1;
    }
    const char *topic, *id;
    json_t *t, *p;
    json_object_foreach(json_object_get(root, "topics"), topic, t) {
        json_object_foreach(json_object_get(t, "partitions"), id, p)
            partition_lag(cm, topic, id, p);
    }
    json_decref(root);
    return 0;
}

void insite_kafka_consumer_metrics_set_lag(insite_kafka_consumer_metrics *cm, const char *topic,
                                           int32_t partition, int64_t lag)
{
    if (cm == NULL)
        return;
    char id[16];
    snprintf(id, sizeof(id), "%d", (int)partition);
    insite_gauge *g = insite_gauge_vec_with(cm->lag, (const char *[]){ topic, id, cm->group });
    if (g != NULL)
        insite_gauge_set(g, (double)(lag < 0 ? 0 : lag));
}

int insite_kafka_consumer_metrics_refresh(insite_kafka_consumer_metrics *cm, rd_kafka_t *rk,
                                          int timeout_ms)
{
    rd_kafka_topic_partition_list_t *parts = NULL;
    if (cm == NULL)
        return 0;
    rd_kafka_resp_err_t e = rd_kafka_assignment(rk, &parts);
    if (e == RD_KAFKA_RESP_ERR_NO_ERROR && parts->cnt > 0)
        e = rd_kafka_committed(rk, parts, timeout_ms);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        insite_log_warn("kafka metrics: group %s: committed offsets: %s", cm->group,
                        rd_kafka_err2str(e));
        if (parts != NULL)
            rd_kafka_topic_partition_list_destroy(parts);
        return -1;
    }
    int rc = 0;
    for (int i = 0; i < parts->cnt; i++) {
        const rd_kafka_topic_partition_t *p = &parts->elems[i];
        int64_t lo, hi;
        e = rd_kafka_query_watermark_offsets(rk, p->topic, p->partition, &lo, &hi, timeout_ms);
        if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
            insite_log_warn("kafka metrics: %s[%d]: watermarks: %s", p->topic,
                            (int)p->partition, rd_kafka_err2str(e));
            rc = -1;
            continue;
        }
        insite_kafka_consumer_metrics_set_lag(cm, p->topic, p->partition,
                                              hi - (p->offset >= 0 ? p->offset : lo));
    }
    rd_kafka_topic_partition_list_destroy(parts);
    return rc;
}

void insite_kafka_consumer_metrics_consumed(insite_kafka_consumer_metrics *cm,
                                            const rd_kafka_message_t *m)
{
    if (cm == NULL || m == NULL || m->err != RD_KAFKA_RESP_ERR_NO_ERROR)
        return;
    insite_counter *c = insite_counter_vec_with(cm->consumed,
        (const char *[]){ rd_kafka_topic_name(m->rkt), cm->group });
    if (c != NULL)
        insite_counter_inc(c);
}

void insite_kafka_consumer_metrics_processed(insite_kafka_consumer_metrics *cm,
                                             const char *topic, const char *event_type,
                                             double seconds)
{
    if (cm == NULL)
        return;
    insite_histogram *h = insite_histogram_vec_with(cm->processing,
                                                    (const char *[]){ topic, event_type });
    if (h != NULL)
        insite_histogram_observe(h, seconds < 0 ? 0 : seconds);
}
