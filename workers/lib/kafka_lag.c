#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <librdkafka/rdkafka.h>

#include "kafka_lag.h"
#include "kafka_metrics.h"
#include "log.h"

const insite_config_key insite_kafka_lag_config_keys[] = {
    { "kafka.lag_groups", INSITE_CFG_STRING_LIST, "", 0, 0,
      "lag view: consumer groups whose lag this worker exports (not its own)" },
    { "kafka.lag_topics", INSITE_CFG_STRING_LIST, "", 0, 0,
      "lag view: topics to read the groups' offsets of; empty = every topic the group "
      "committed (a real cluster; the mock cluster needs the topics named)" },
    { "kafka.lag_interval", INSITE_CFG_DURATION, "10s", 1000, 3600000,
      "lag view: how often committed offsets and high watermarks are read" },
};
const size_t insite_kafka_lag_config_nkeys =
    sizeof(insite_kafka_lag_config_keys) / sizeof(insite_kafka_lag_config_keys[0]);

typedef struct {
    char *name;
    insite_kafka_consumer_metrics *cm;   /* the lag gauge, labelled with name */
    char last_err[256];                  /* logged once per change */
} lag_group;

struct insite_kafka_lag_view {
    rd_kafka_t *rk;              /* producer-type client: Admin API and watermarks */
    char **topics;               /* kafka.lag_topics, NULL-terminated; NULL = all */
    lag_group *groups;
    size_t ngroups;
    int interval_ms;
    pthread_t thread;
    int running;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int stop;
};

static void group_error(lag_group *g, const char *fmt, const char *what)
{
    char msg[256];
    snprintf(msg, sizeof(msg), fmt, what);
    if (strcmp(msg, g->last_err) != 0)
        insite_log_warn("kafka lag view: group %s: %s", g->name, msg);
    snprintf(g->last_err, sizeof(g->last_err), "%s", msg);
}

/* high watermark - committed, for each partition the group committed */
static int group_partitions(insite_kafka_lag_view *v, lag_group *g,
                            const rd_kafka_topic_partition_list_t *parts, int timeout_ms)
{
    int rc = 0;
    for (int i = 0; parts != NULL && i < parts->cnt; i++) {
        const rd_kafka_topic_partition_t *p = &parts->elems[i];
        int64_t lo, hi;
        if (p->err != RD_KAFKA_RESP_ERR_NO_ERROR || p->offset < 0)
            continue;           /* nothing committed there */
        rd_kafka_resp_err_t e = rd_kafka_query_watermark_offsets(v->rk, p->topic, p->partition,
                                                                 &lo, &hi, timeout_ms);
        if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
            group_error(g, "high watermark: %s", rd_kafka_err2str(e));
            rc = -1;
            continue;
        }
        insite_kafka_consumer_metrics_set_lag(g->cm, p->topic, p->partition, hi - p->offset);
    }
    return rc;
}

/* Every partition of kafka.lag_topics (from the cluster's metadata), or
 * NULL for "all the group committed".  *rc -1 when the metadata failed. */
static rd_kafka_topic_partition_list_t *wanted_partitions(insite_kafka_lag_view *v,
                                                          lag_group *g, int timeout_ms, int *rc)
{
    *rc = 0;
    if (v->topics == NULL)
        return NULL;
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(8);
    for (char **t = v->topics; *t != NULL; t++) {
        const struct rd_kafka_metadata *md = NULL;
        rd_kafka_topic_t *rkt = rd_kafka_topic_new(v->rk, *t, NULL);
        rd_kafka_resp_err_t e = rkt ? rd_kafka_metadata(v->rk, 0, rkt, &md, timeout_ms)
                                    : rd_kafka_last_error();
        if (e == RD_KAFKA_RESP_ERR_NO_ERROR && md->topic_cnt == 1 && md->topics[0].err)
            e = md->topics[0].err;
        if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
            group_error(g, "metadata: %s", rd_kafka_err2str(e));
            *rc = -1;
        } else {
            for (int i = 0; i < md->topics[0].partition_cnt; i++)
                rd_kafka_topic_partition_list_add(l, *t, md->topics[0].partitions[i].id);
        }
        if (md)
            rd_kafka_metadata_destroy(md);
        if (rkt)
            rd_kafka_topic_destroy(rkt);
    }
    return l;
}

static int refresh_group(insite_kafka_lag_view *v, lag_group *g, int timeout_ms)
{
    char err[512];
    int rc = -1, mrc;
    rd_kafka_queue_t *q = rd_kafka_queue_new(v->rk);
    rd_kafka_AdminOptions_t *ao =
        rd_kafka_AdminOptions_new(v->rk, RD_KAFKA_ADMIN_OP_LISTCONSUMERGROUPOFFSETS);
    rd_kafka_topic_partition_list_t *parts = wanted_partitions(v, g, timeout_ms, &mrc);
    rd_kafka_ListConsumerGroupOffsets_t *req = NULL;
    rd_kafka_event_t *ev = NULL;

    if (mrc != 0 || (parts != NULL && parts->cnt == 0))
        goto out;
    req = rd_kafka_ListConsumerGroupOffsets_new(g->name, parts);
    if (q == NULL || ao == NULL || req == NULL) {
        group_error(g, "%s", "out of memory");
        goto out;
    }
    if (rd_kafka_AdminOptions_set_request_timeout(ao, timeout_ms, err, sizeof(err))
        != RD_KAFKA_RESP_ERR_NO_ERROR) {
        group_error(g, "admin options: %s", err);
        goto out;
    }
    rd_kafka_ListConsumerGroupOffsets(v->rk, &req, 1, ao, q);
    if ((ev = rd_kafka_queue_poll(q, timeout_ms + 1000)) == NULL) {
        group_error(g, "%s", "ListConsumerGroupOffsets: no answer");
        goto out;
    }
    if (rd_kafka_event_error(ev) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        group_error(g, "ListConsumerGroupOffsets: %s", rd_kafka_event_error_string(ev));
        goto out;
    }
    size_t n = 0;
    const rd_kafka_group_result_t **res = rd_kafka_ListConsumerGroupOffsets_result_groups(
        rd_kafka_event_ListConsumerGroupOffsets_result(ev), &n);
    for (size_t i = 0; i < n; i++) {
        const rd_kafka_error_t *e = rd_kafka_group_result_error(res[i]);
        if (e != NULL) {
            group_error(g, "ListConsumerGroupOffsets: %s", rd_kafka_error_string(e));
            goto out;
        }
        rc = group_partitions(v, g, rd_kafka_group_result_partitions(res[i]), timeout_ms);
    }
    if (rc == 0 && g->last_err[0] != '\0') {
        insite_log_info("kafka lag view: group %s: readable again", g->name);
        g->last_err[0] = '\0';
    }
out:
    if (ev)
        rd_kafka_event_destroy(ev);
    if (req)
        rd_kafka_ListConsumerGroupOffsets_destroy(req);
    if (parts)
        rd_kafka_topic_partition_list_destroy(parts);
    if (ao)
        rd_kafka_AdminOptions_destroy(ao);
    if (q)
        rd_kafka_queue_destroy(q);
    return rc;
}

int insite_kafka_lag_view_refresh(insite_kafka_lag_view *v)
{
    int rc = 0;
    /* a pass must end well inside the interval */
    int timeout_ms = v->interval_ms / 2 < 5000 ? v->interval_ms / 2 : 5000;
    for (size_t i = 0; i < v->ngroups; i++)
        if (refresh_group(v, &v->groups[i], timeout_ms) != 0)
            rc = -1;
    return rc;
}

static void *run(void *arg)
{
    insite_kafka_lag_view *v = arg;
    pthread_mutex_lock(&v->lock);
    while (!v->stop) {
        pthread_mutex_unlock(&v->lock);
        insite_kafka_lag_view_refresh(v);
        pthread_mutex_lock(&v->lock);
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_sec += v->interval_ms / 1000;
        until.tv_nsec += (long)(v->interval_ms % 1000) * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        while (!v->stop && pthread_cond_timedwait(&v->cond, &v->lock, &until) != ETIMEDOUT)
            ;
    }
    pthread_mutex_unlock(&v->lock);
    return NULL;
}

static void view_free(insite_kafka_lag_view *v)
{
    if (v->rk)
        rd_kafka_destroy(v->rk);
    for (size_t i = 0; v->groups != NULL && i < v->ngroups; i++) {
        free(v->groups[i].name);
        insite_kafka_consumer_metrics_free(v->groups[i].cm);
    }
    free(v->groups);
    for (char **t = v->topics; t != NULL && *t != NULL; t++)
        free(*t);
    free(v->topics);
    pthread_cond_destroy(&v->cond);
    pthread_mutex_destroy(&v->lock);
    free(v);
}

static rd_kafka_t *admin_client(const char *bootstrap)
{
    char err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (conf == NULL
        || rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap, err, sizeof(err))
           != RD_KAFKA_CONF_OK
        || rd_kafka_conf_set(conf, "client.id", "insite-lag-view", err, sizeof(err))
           != RD_KAFKA_CONF_OK) {
        insite_log_error("kafka lag view: %s", conf ? err : "out of memory");
        if (conf)
            rd_kafka_conf_destroy(conf);
        return NULL;
    }
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    if (rk == NULL) {
        insite_log_error("kafka lag view: cannot create the client: %s", err);
        rd_kafka_conf_destroy(conf);
    }
    return rk;
}

insite_kafka_lag_view *insite_kafka_lag_view_start(const insite_config *cfg, insite_metrics *m,
                                                   int *failed)
{
    char *const *names;
    size_t n = insite_config_list(cfg, "kafka.lag_groups", &names);
    *failed = 0;
    if (n == 0)
        return NULL;
    insite_kafka_lag_view *v = calloc(1, sizeof(*v));
    if (v == NULL) {
        insite_log_error("kafka lag view: out of memory");
        *failed = 1;
        return NULL;
    }
    pthread_mutex_init(&v->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&v->cond, &ca);
    pthread_condattr_destroy(&ca);
    v->interval_ms = (int)insite_config_duration_ms(cfg, "kafka.lag_interval");
    if ((v->groups = calloc(n, sizeof(*v->groups))) == NULL)
        goto fail;
    for (; v->ngroups < n; v->ngroups++) {
        lag_group *g = &v->groups[v->ngroups];
        if ((g->name = strdup(names[v->ngroups])) == NULL
            || (g->cm = insite_kafka_consumer_metrics_new(m, g->name)) == NULL) {
            v->ngroups++;
            goto fail;
        }
    }
    char *const *topics;
    size_t nt = insite_config_list(cfg, "kafka.lag_topics", &topics);
    if (nt > 0) {
        if ((v->topics = calloc(nt + 1, sizeof(*v->topics))) == NULL)
            goto fail;
        for (size_t i = 0; i < nt; i++)
            if ((v->topics[i] = strdup(topics[i])) == NULL)
                goto fail;
    }
    if ((v->rk = admin_client(insite_config_string(cfg, "kafka.bootstrap"))) == NULL)
        goto fail;
    if (pthread_create(&v->thread, NULL, run, v) != 0) {
        insite_log_error("kafka lag view: cannot start its thread");
        goto fail;
    }
    v->running = 1;
    insite_log_info("kafka lag view: %zu group(s) every %d ms", v->ngroups, v->interval_ms);
    return v;
fail:
    insite_log_error("kafka lag view: not started");
    view_free(v);
    *failed = 1;
    return NULL;
}

void insite_kafka_lag_view_stop(insite_kafka_lag_view *v)
{
    if (v == NULL)
        return;
    if (v->running) {
        pthread_mutex_lock(&v->lock);
        v->stop = 1;
        pthread_cond_signal(&v->cond);
        pthread_mutex_unlock(&v->lock);
        pthread_join(v->thread, NULL);
    }
    view_free(v);
}
