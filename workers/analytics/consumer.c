#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "consumer.h"
#include "log.h"

struct sent_consumer {
    rd_kafka_t *rk;
    char *topic;
    insite_kafka_consumer_metrics *metrics;
    int paused, stats_ms;
    int64_t next_refresh;   /* paused: when to ask the brokers for the lag */
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
    else
        insite_log_debug("kafka consumer: %s: %s", fac, buf);
}

static void on_commit(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                      rd_kafka_topic_partition_list_t *offsets, void *opaque)
{
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR && err != RD_KAFKA_RESP_ERR__NO_OFFSET)
        insite_log_warn("kafka consumer: offset commit failed: %s", rd_kafka_err2str(err));
}

/* Paused: partitions are assigned (so the group keeps its offsets and the
 * statistics report their lag) and paused at once, so nothing is fetched. */
static void on_rebalance_paused(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                                rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    int coop = strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE") == 0;
    rd_kafka_error_t *e = NULL;
    rd_kafka_resp_err_t r = RD_KAFKA_RESP_ERR_NO_ERROR;

    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        if (coop)
            e = rd_kafka_incremental_assign(rk, parts);
        else
            r = rd_kafka_assign(rk, parts);
        if (e == NULL && r == RD_KAFKA_RESP_ERR_NO_ERROR)
            r = rd_kafka_pause_partitions(rk, parts);
        insite_log_info("kafka consumer: paused, %d partition(s) assigned and not fetched",
                        parts->cnt);
    } else if (coop) {
        e = rd_kafka_incremental_unassign(rk, parts);
    } else {
        r = rd_kafka_assign(rk, NULL);
    }
    if (e != NULL) {
        insite_log_error("kafka consumer: rebalance: %s", rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
    } else if (r != RD_KAFKA_RESP_ERR_NO_ERROR) {
        insite_log_error("kafka consumer: rebalance: %s", rd_kafka_err2str(r));
    }
}

sent_consumer *sent_consumer_new(const sent_consumer_options *o)
{
    sent_consumer *c = calloc(1, sizeof(*c));
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char num[32], err[512];
    if (c == NULL || conf == NULL || (c->topic = strdup(o->topic)) == NULL) {
        insite_log_error("kafka consumer: out of memory");
        goto fail;
    }
    snprintf(num, sizeof(num), "%d", o->commit_interval_ms > 0 ? o->commit_interval_ms : 1000);
    if (set(conf, "bootstrap.servers", o->bootstrap) != 0
        || set(conf, "group.id", o->group) != 0
        || set(conf, "client.id", o->client_id ? o->client_id : "insite-analytics") != 0
        || set(conf, "enable.auto.commit", "true") != 0
        || set(conf, "enable.auto.offset.store", "false") != 0
        || set(conf, "auto.commit.interval.ms", num) != 0
        || set(conf, "auto.offset.reset", o->offset_reset ? o->offset_reset : "earliest") != 0
        || set(conf, "allow.auto.create.topics", "true") != 0)
        goto fail;
    if (o->session_timeout_ms > 0) {
        snprintf(num, sizeof(num), "%d", o->session_timeout_ms);
        if (set(conf, "session.timeout.ms", num) != 0)
            goto fail;
    }
    rd_kafka_conf_set_log_cb(conf, on_log);
    rd_kafka_conf_set_offset_commit_cb(conf, on_commit);
    if (o->paused)
        rd_kafka_conf_set_rebalance_cb(conf, on_rebalance_paused);
    if (insite_kafka_consumer_metrics_conf(o->metrics, conf, o->statistics_interval_ms) != 0)
        goto fail;
    c->metrics = o->metrics;
    c->paused = o->paused;
    c->stats_ms = o->statistics_interval_ms > 0
                  && o->statistics_interval_ms < INSITE_KAFKA_STATS_INTERVAL_MS
                  ? o->statistics_interval_ms : INSITE_KAFKA_STATS_INTERVAL_MS;
    if ((c->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err))) == NULL) {
        insite_log_error("kafka consumer: cannot create: %s", err);
        goto fail;
    }
    conf = NULL;
    rd_kafka_poll_set_consumer(c->rk);
    rd_kafka_topic_partition_list_t *t = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(t, o->topic, RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t e = rd_kafka_subscribe(c->rk, t);
    rd_kafka_topic_partition_list_destroy(t);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        insite_log_error("kafka consumer: subscribe %s: %s", o->topic, rd_kafka_err2str(e));
        goto fail;
    }
    insite_log_info("kafka consumer: group %s reads %s from %s", o->group, o->topic, o->bootstrap);
    return c;
fail:
    if (conf != NULL)
        rd_kafka_conf_destroy(conf);
    if (c != NULL && c->rk != NULL)
        rd_kafka_destroy(c->rk);
    if (c != NULL)
        free(c->topic);
    free(c);
    return NULL;
}

rd_kafka_message_t *sent_consumer_poll(sent_consumer *c, int timeout_ms)
{
    rd_kafka_message_t *m = rd_kafka_consumer_poll(c->rk, timeout_ms);
    if (c->paused && c->metrics != NULL && insite_clock_mono_ms() >= c->next_refresh) {
        /* nothing is fetched, so the statistics know no watermark */
        insite_kafka_consumer_metrics_refresh(c->metrics, c->rk, 2000);
        c->next_refresh = insite_clock_mono_ms() + c->stats_ms;
    }
    if (m == NULL)
        return NULL;
    if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        insite_kafka_consumer_metrics_consumed(c->metrics, m);
        return m;
    }
    if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
        insite_log_warn("kafka consumer: %s: %s", c->topic, rd_kafka_message_errstr(m));
    rd_kafka_message_destroy(m);
    return NULL;
}

static rd_kafka_topic_partition_list_t *at(const rd_kafka_message_t *m, int64_t offset)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, rd_kafka_topic_name(m->rkt), m->partition)->offset = offset;
    return l;
}

void sent_consumer_done(sent_consumer *c, const rd_kafka_message_t *m)
{
    rd_kafka_topic_partition_list_t *l = at(m, m->offset + 1);
    rd_kafka_resp_err_t e = rd_kafka_offsets_store(c->rk, l);
    /* fails only when the partition was revoked meanwhile: its new owner
     * reprocesses the message, which the post id dedupes */
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR || l->elems[0].err != RD_KAFKA_RESP_ERR_NO_ERROR)
        insite_log_warn("kafka consumer: cannot store offset %s[%d]@%lld: %s", c->topic,
                        (int)m->partition, (long long)m->offset,
                        rd_kafka_err2str(e ? e : l->elems[0].err));
    rd_kafka_topic_partition_list_destroy(l);
}

int sent_consumer_again(sent_consumer *c, const rd_kafka_message_t *m)
{
    rd_kafka_topic_partition_list_t *l = at(m, m->offset);
    rd_kafka_error_t *e = rd_kafka_seek_partitions(c->rk, l, 2000);
    int rc = 0;
    if (e != NULL || l->elems[0].err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        insite_log_error("kafka consumer: cannot seek %s[%d] back to %lld: %s", c->topic,
                         (int)m->partition, (long long)m->offset,
                         e ? rd_kafka_error_string(e) : rd_kafka_err2str(l->elems[0].err));
        rc = -1;
    }
    if (e != NULL)
        rd_kafka_error_destroy(e);
    rd_kafka_topic_partition_list_destroy(l);
    return rc;
}

int sent_consumer_commit(sent_consumer *c)
{
    rd_kafka_resp_err_t e = rd_kafka_commit(c->rk, NULL, 0);
    if (e == RD_KAFKA_RESP_ERR_NO_ERROR || e == RD_KAFKA_RESP_ERR__NO_OFFSET)
        return 0;
    insite_log_warn("kafka consumer: commit %s: %s", c->topic, rd_kafka_err2str(e));
    return -1;
}

void sent_consumer_close(sent_consumer *c)
{
    if (c == NULL)
        return;
    rd_kafka_resp_err_t e = rd_kafka_consumer_close(c->rk);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR)
        insite_log_warn("kafka consumer: close %s: %s", c->topic, rd_kafka_err2str(e));
    rd_kafka_destroy(c->rk);
    free(c->topic);
    free(c);
}
