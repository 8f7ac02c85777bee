#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "consumer.h"
#include "kafka_metrics.h"
#include "log.h"

struct notify_consumer {
    rd_kafka_t *rk;
    insite_kafka_consumer_metrics *km;
};

static int set(rd_kafka_conf_t *conf, const char *k, const char *v)
{
    char err[256];
    if (rd_kafka_conf_set(conf, k, v, err, sizeof(err)) == RD_KAFKA_CONF_OK)
        return 0;
    insite_log_error("kafka consumer: %s=%s: %s", k, v, err);
    return -1;
}

static void on_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    if (level <= 4)
        insite_log_warn("kafka consumer: %s: %s", fac, buf);
}

notify_consumer *notify_consumer_new(const char *bootstrap, const char *group,
                                     const char *client_id, int session_timeout_ms,
                                     int fetch_wait_ms,
                                     char *const *topics, size_t ntopics,
                                     insite_metrics *metrics)
{
    char num[32];
    notify_consumer *c = calloc(1, sizeof(*c));
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char err[512];
    if (c == NULL || conf == NULL)
        goto fail;
    if (set(conf, "bootstrap.servers", bootstrap) || set(conf, "group.id", group)
        || set(conf, "client.id", client_id) || set(conf, "enable.auto.commit", "true")
        || set(conf, "enable.auto.offset.store", "false")
        || set(conf, "auto.commit.interval.ms", "1000")
        || set(conf, "auto.offset.reset", "earliest")
        || set(conf, "allow.auto.create.topics", "true"))
        goto fail;
    snprintf(num, sizeof(num), "%d", session_timeout_ms);
    if (session_timeout_ms > 0 && set(conf, "session.timeout.ms", num))
        goto fail;
    /* A fetch that finds nothing waits at the broker up to this long;
     * Kafka answers early when data arrives, librdkafka's mock cluster does
     * not, and either way an alert waits no longer than this for it. */
    snprintf(num, sizeof(num), "%d", fetch_wait_ms);
    if (set(conf, "fetch.wait.max.ms", num))
        goto fail;
    rd_kafka_conf_set_log_cb(conf, on_log);
    if (metrics != NULL
        && ((c->km = insite_kafka_consumer_metrics_new(metrics, group)) == NULL
            || insite_kafka_consumer_metrics_conf(c->km, conf, 0) != 0))
        goto fail;
    if ((c->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err))) == NULL) {
        insite_log_error("kafka consumer: cannot create: %s", err);
        goto fail;
    }
    conf = NULL;
    rd_kafka_poll_set_consumer(c->rk);
    rd_kafka_topic_partition_list_t *t = rd_kafka_topic_partition_list_new((int)ntopics);
    for (size_t i = 0; i < ntopics; i++)
        rd_kafka_topic_partition_list_add(t, topics[i], RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t e = rd_kafka_subscribe(c->rk, t);
    rd_kafka_topic_partition_list_destroy(t);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        insite_log_error("kafka consumer: subscribe: %s", rd_kafka_err2str(e));
        goto fail;
    }
    insite_log_info("kafka consumer: group %s reads %zu topics from %s", group, ntopics, bootstrap);
    return c;
fail:
    if (conf != NULL)
        rd_kafka_conf_destroy(conf);
    if (c != NULL && c->rk != NULL)
        rd_kafka_destroy(c->rk);
    if (c != NULL)
        insite_kafka_consumer_metrics_free(c->km);
    free(c);
    return NULL;
}

rd_kafka_message_t *notify_consumer_poll(notify_consumer *c, int timeout_ms)
{
    rd_kafka_message_t *m = rd_kafka_consumer_poll(c->rk, timeout_ms);
    if (m == NULL)
        return NULL;
    if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        insite_kafka_consumer_metrics_consumed(c->km, m);
        return m;
    }
    if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
        insite_log_warn("kafka consumer: %s", rd_kafka_message_errstr(m));
    rd_kafka_message_destroy(m);
    return NULL;
}

/* One entry per partition: the highest (done) or lowest (rewind) offset. */
static rd_kafka_topic_partition_list_t *positions(rd_kafka_message_t **m, size_t n, int lowest)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new((int)n);
    for (size_t i = 0; i < n; i++) {
        const char *t = rd_kafka_topic_name(m[i]->rkt);
        int64_t off = lowest ? m[i]->offset : m[i]->offset + 1;
        rd_kafka_topic_partition_t *p = rd_kafka_topic_partition_list_find(l, t, m[i]->partition);
        if (p == NULL)
            rd_kafka_topic_partition_list_add(l, t, m[i]->partition)->offset = off;
        else if (lowest ? off < p->offset : off > p->offset)
            p->offset = off;
    }
    return l;
}

void notify_consumer_processed(notify_consumer *c, rd_kafka_message_t **m, size_t n,
                               double seconds)
{
    for (size_t i = 0; i < n; i++) {
        const char *t = rd_kafka_topic_name(m[i]->rkt);
        insite_kafka_consumer_metrics_processed(c->km, t,
                                                strcmp(t, "sentiment_updates") == 0
                                                ? "sentiment_update" : "stock_update",
                                                seconds / (double)n);
    }
}

void notify_consumer_done(notify_consumer *c, rd_kafka_message_t **m, size_t n)
{
    rd_kafka_topic_partition_list_t *l = positions(m, n, 0);
    rd_kafka_resp_err_t e = rd_kafka_offsets_store(c->rk, l);
    /* fails when a partition was revoked meanwhile: PostgreSQL's offsets
     * make its new owner skip what was committed */
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR)
        insite_log_warn("kafka consumer: cannot store offsets: %s", rd_kafka_err2str(e));
    rd_kafka_topic_partition_list_destroy(l);
}

void notify_consumer_rewind(notify_consumer *c, rd_kafka_message_t **m, size_t n)
{
    rd_kafka_topic_partition_list_t *l = positions(m, n, 1);
    rd_kafka_error_t *e = rd_kafka_seek_partitions(c->rk, l, 2000);
    if (e != NULL) {
        insite_log_error("kafka consumer: cannot seek back: %s", rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
    }
    rd_kafka_topic_partition_list_destroy(l);
}

void notify_consumer_close(notify_consumer *c)
{
    if (c == NULL)
        return;
    rd_kafka_consumer_close(c->rk);
    rd_kafka_destroy(c->rk);
    insite_kafka_consumer_metrics_free(c->km);
    free(c);
}
