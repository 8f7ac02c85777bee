#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <librdkafka/rdkafka.h>

#include "clock.h"
#include "kafka.h"
#include "kafka_metrics.h"
#include "log.h"

#define MAX_ATTEMPTS 5        /* app-level retries before spooling */
#define SPOOL_NAME "kafka-spool.jsonl"


const insite_config_key insite_kafka_config_keys[] = {
    { "kafka.bootstrap", INSITE_CFG_STRING, "127.0.0.1:9092", 0, 0,
      "bootstrap.servers, comma-separated host:port" },
    { "kafka.client_id", INSITE_CFG_STRING, "insite-worker", 0, 0, "client.id" },
    { "kafka.compression", INSITE_CFG_STRING, "zstd", 0, 0,
      "preferred codec (zstd, lz4, snappy, gzip, none); falls back if not built in" },
    { "kafka.linger", INSITE_CFG_DURATION, "20ms", 0, 10000, "linger.ms batching delay" },
    { "kafka.message_timeout", INSITE_CFG_DURATION, "30s", 1000, 3600000,
      "message.timeout.ms: librdkafka's retry window per message" },
    { "kafka.spool_dir", INSITE_CFG_STRING, "/var/spool/insite", 0, 0,
      "directory of kafka-spool.jsonl (undeliverable messages, replayed at start)" },
    { "kafka.retry_queue_max", INSITE_CFG_INT, "10000", 1, 10000000,
      "messages held for retry in memory before spilling to the spool" },
    { "kafka.retry_backoff", INSITE_CFG_DURATION, "1s", 10, 600000, "delay between app-level retries" },
    { "kafka.flush_timeout", INSITE_CFG_DURATION, "10s", 0, 600000, "flush at shutdown" },
    { "kafka.replication_factor", INSITE_CFG_INT, "1", 1, 16,
      "for topic creation: 1 for a single broker, 3 in production" },
    { "kafka.statistics_interval", INSITE_CFG_DURATION, "5s", 100, 5000,
      "consumers: statistics.interval.ms, how often insite_kafka_consumer_lag is refreshed" },
};
const size_t insite_kafka_config_nkeys =
    sizeof(insite_kafka_config_keys) / sizeof(insite_kafka_config_keys[0]);

void insite_kafka_options_from_config(const insite_config *cfg, insite_kafka_options *o)
{
    o->bootstrap = insite_config_string(cfg, "kafka.bootstrap");
    o->client_id = insite_config_string(cfg, "kafka.client_id");
    o->compression = insite_config_string(cfg, "kafka.compression");
    o->linger_ms = (int)insite_config_duration_ms(cfg, "kafka.linger");
    o->message_timeout_ms = (int)insite_config_duration_ms(cfg, "kafka.message_timeout");
    o->spool_dir = insite_config_string(cfg, "kafka.spool_dir");
    o->retry_max = (size_t)insite_config_int(cfg, "kafka.retry_queue_max");
    o->retry_backoff_ms = (int)insite_config_duration_ms(cfg, "kafka.retry_backoff");
    o->flush_timeout_ms = (int)insite_config_duration_ms(cfg, "kafka.flush_timeout");
    o->replication_factor = (int)insite_config_int(cfg, "kafka.replication_factor");
    o->statistics_interval_ms = (int)insite_config_duration_ms(cfg, "kafka.statistics_interval");
    o->metrics = NULL;   /* the worker sets its registry */
}

typedef struct item {
    char *topic, *key, *payload;
    size_t len;
    int attempts;
    int64_t due_ms;
    struct item *next;
} item;

struct insite_kafka {
    rd_kafka_t *rk;
    pthread_mutex_t lock;       /* retry queue and spool file */
    item *head, *tail;
    size_t nretry, retry_max;
    int backoff_ms, flush_timeout_ms, rf;
    int closing;                /* spool directly, no more retries */
    char *spool_path;
    char codec[16];
    atomic_uint_fast64_t delivered, failed, retried, spooled;
    insite_kafka_producer_metrics *pm;   /* NULL = no metrics */
};

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    if (err == NULL || errlen == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static void item_free(item *it)
{
    if (it == NULL)
        return;
    free(it->topic);
    free(it->key);
    free(it->payload);
    free(it);
}

static item *item_new(const char *topic, const char *key, size_t keylen,
                      const char *payload, size_t len)
{
    item *it = calloc(1, sizeof(*it));
    if (it == NULL
        || (it->topic = strdup(topic)) == NULL
        || (key && (it->key = strndup(key, keylen)) == NULL)
        || (it->payload = malloc(len + 1)) == NULL) {
        item_free(it);
        return NULL;
    }
    memcpy(it->payload, payload, len);
    it->payload[len] = '\0';
    it->len = len;
    return it;
}

/* ---- spool ----------------------------------------------------------- */

/* Appends one JSON line; caller holds k->lock.  The last resort: if even
 * this fails the message is logged in full so an operator can recover it. */
static int spool_write(insite_kafka *k, const item *it, const char *why)
{
    json_t *line = json_pack("{s:s, s:s?, s:s%, s:s, s:i}",
                             "topic", it->topic, "key", it->key,
                             "payload", it->payload, it->len,
                             "error", why, "attempts", it->attempts);
    char *text = line ? json_dumps(line, JSON_COMPACT) : NULL;
    FILE *f = text ? fopen(k->spool_path, "a") : NULL;
    int ok = f != NULL && fprintf(f, "%s\n", text) > 0;

    if (f != NULL && fclose(f) != 0)
        ok = 0;
    json_decref(line);
    free(text);
    if (!ok) {
        insite_log_error("kafka: LOST message topic=%s key=%s (cannot spool to %s: %s): %.*s",
                         it->topic, it->key ? it->key : "", k->spool_path,
                         strerror(errno), (int)it->len, it->payload);
        return -1;
    }
    atomic_fetch_add(&k->spooled, 1);
    insite_kafka_producer_metrics_spooled(k->pm, it->topic);
    insite_log_warn("kafka: spooled message topic=%s key=%s to %s (%s)",
                    it->topic, it->key ? it->key : "", k->spool_path, why);
    return 0;
}

/* Takes ownership of it: into the retry queue, or the spool when the queue
 * is full, the message failed too often, or we are shutting down. */
static int hold(insite_kafka *k, item *it, const char *why)
{
    int rc = 1;

    pthread_mutex_lock(&k->lock);
    if (k->closing || k->nretry >= k->retry_max || it->attempts >= MAX_ATTEMPTS) {
        if (spool_write(k, it, why) != 0)
            rc = -1;
        item_free(it);
    } else {
        it->due_ms = insite_clock_mono_ms() + k->backoff_ms;
        it->next = NULL;
        if (k->tail) k->tail->next = it; else k->head = it;
        k->tail = it;
        k->nretry++;
    }
    pthread_mutex_unlock(&k->lock);
    return rc;
}

/* ---- producing ------------------------------------------------------- */

static rd_kafka_resp_err_t enqueue(insite_kafka *k, const item *it)
{
    return rd_kafka_producev(k->rk,
                             RD_KAFKA_V_TOPIC(it->topic),
                             RD_KAFKA_V_KEY(it->key, it->key ? strlen(it->key) : 0),
                             RD_KAFKA_V_VALUE(it->payload, it->len),
                             RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                             RD_KAFKA_V_END);
}

int insite_kafka_produce(insite_kafka *k, const char *topic, const char *key,
                         const char *payload, size_t len)
{
    rd_kafka_resp_err_t e = rd_kafka_producev(
        k->rk, RD_KAFKA_V_TOPIC(topic),
        RD_KAFKA_V_KEY(key, key ? strlen(key) : 0),
        RD_KAFKA_V_VALUE((void *)payload, len),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
    if (e == RD_KAFKA_RESP_ERR_NO_ERROR)
        return 0;

    insite_log_warn("kafka: cannot enqueue topic=%s key=%s: %s; holding for retry",
                    topic, key ? key : "", rd_kafka_err2str(e));
    atomic_fetch_add(&k->failed, 1);
    insite_kafka_producer_metrics_failed(k->pm, topic);
    item *it = item_new(topic, key, key ? strlen(key) : 0, payload, len);
    if (it == NULL) {
        insite_log_error("kafka: LOST message topic=%s key=%s (out of memory): %.*s",
                         topic, key ? key : "", (int)len, payload);
        return -1;
    }
    it->attempts = 1;
    return hold(k, it, rd_kafka_err2str(e));
}

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    insite_kafka *k = opaque;

    if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        atomic_fetch_add(&k->delivered, 1);
        insite_kafka_producer_metrics_produced(k->pm, rd_kafka_topic_name(m->rkt));
        return;
    }
    const char *topic = rd_kafka_topic_name(m->rkt);
    atomic_fetch_add(&k->failed, 1);
    insite_kafka_producer_metrics_failed(k->pm, topic);
    insite_log_warn("kafka: delivery failed topic=%s key=%.*s: %s; holding for retry",
                    topic, (int)m->key_len, m->key ? (const char *)m->key : "",
                    rd_kafka_err2str(m->err));
    item *it = item_new(topic, m->key, m->key_len, m->payload, m->len);
    if (it == NULL) {
        insite_log_error("kafka: LOST message topic=%s (out of memory): %.*s",
                         topic, (int)m->len, (const char *)m->payload);
        return;
    }
    /* attempts travels with the message only in our queue; a delivery
     * failure after a retry counts from 1 again, bounded by the queue size */
    it->attempts = 1;
    hold(k, it, rd_kafka_err2str(m->err));
}

static void on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    if (err == RD_KAFKA_RESP_ERR__FATAL) {
        char buf[256];
        rd_kafka_resp_err_t orig = rd_kafka_fatal_error(rk, buf, sizeof(buf));
        /* The idempotent producer is unusable now; everything goes to the
         * spool until the worker is restarted. */
        insite_log_error("kafka: FATAL %s: %s", rd_kafka_err2name(orig), buf);
        return;
    }
    insite_log_warn("kafka: %s: %s", rd_kafka_err2name((rd_kafka_resp_err_t)err), reason);
}

static void on_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    /* Failures that matter also reach on_error or on_delivery, which log
     * them; librdkafka's own lines are context, so at most warnings. */
    if (level <= 4)
        insite_log_warn("kafka: %s: %s", fac, buf);
    else if (level <= 6)
        insite_log_info("kafka: %s: %s", fac, buf);
    else
        insite_log_debug("kafka: %s: %s", fac, buf);
}

static void retry_due(insite_kafka *k, int all)
{
    int64_t now = insite_clock_mono_ms();
    item *due = NULL, **tail = &due;

    pthread_mutex_lock(&k->lock);
    for (item **p = &k->head; *p != NULL;) {
        item *it = *p;
        if (!all && it->due_ms > now) {
            p = &it->next;
            continue;
        }
        *p = it->next;
        k->nretry--;
        it->next = NULL;
        *tail = it;
        tail = &it->next;
    }
    k->tail = NULL;
    for (item *it = k->head; it != NULL; it = it->next)
        k->tail = it;
    pthread_mutex_unlock(&k->lock);

    while (due != NULL) {
        item *it = due;
        due = it->next;
        rd_kafka_resp_err_t e = enqueue(k, it);
        if (e == RD_KAFKA_RESP_ERR_NO_ERROR) {
            atomic_fetch_add(&k->retried, 1);
            insite_kafka_producer_metrics_retried(k->pm, it->topic);
            item_free(it);
            continue;
        }
        it->attempts++;
        hold(k, it, rd_kafka_err2str(e));
    }
}

void insite_kafka_poll(insite_kafka *k, int timeout_ms)
{
    rd_kafka_poll(k->rk, timeout_ms);
    retry_due(k, 0);
    if (k->pm != NULL) {
        pthread_mutex_lock(&k->lock);
        size_t held = k->nretry;
        pthread_mutex_unlock(&k->lock);
        insite_kafka_producer_metrics_queue(k->pm, (size_t)rd_kafka_outq_len(k->rk) + held);
    }
}

int insite_kafka_flush(insite_kafka *k, int timeout_ms)
{
    retry_due(k, 1);
    rd_kafka_resp_err_t e = rd_kafka_flush(k->rk, timeout_ms);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR)
        insite_log_warn("kafka: flush: %s, %d message(s) outstanding",
                        rd_kafka_err2str(e), rd_kafka_outq_len(k->rk));
    pthread_mutex_lock(&k->lock);
    int held = (int)k->nretry;
    pthread_mutex_unlock(&k->lock);
    return rd_kafka_outq_len(k->rk) + held;
}

/* ---- setup ----------------------------------------------------------- */

static int conf_set(rd_kafka_conf_t *conf, const char *name, const char *value)
{
    char err[512];
    if (rd_kafka_conf_set(conf, name, value, err, sizeof(err)) != RD_KAFKA_CONF_OK) {
        insite_log_error("kafka: %s=%s: %s", name, value, err);
        return -1;
    }
    return 0;
}

/* The preferred codec first, then the rest in order of ratio/speed: the
 * Debian build has them all, but a minimal librdkafka may lack zstd/lz4. */
static int set_compression(insite_kafka *k, rd_kafka_conf_t *conf, const char *want)
{
    const char *order[] = { want, "zstd", "lz4", "snappy", "gzip", "none" };
    char err[512];

    for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++) {
        if (order[i] == NULL || *order[i] == '\0')
            continue;
        if (rd_kafka_conf_set(conf, "compression.codec", order[i], err, sizeof(err))
            == RD_KAFKA_CONF_OK) {
            snprintf(k->codec, sizeof(k->codec), "%s", order[i]);
            if (i > 0 && want && *want && strcmp(want, order[i]) != 0)
                insite_log_warn("kafka: compression %s unavailable, using %s", want, order[i]);
            return 0;
        }
        insite_log_debug("kafka: compression %s: %s", order[i], err);
    }
    insite_log_error("kafka: no usable compression.codec");
    return -1;
}

static void replay_file(insite_kafka *k, const char *path)
{
    FILE *f = fopen(path, "r");
    char *line = NULL;
    size_t cap = 0, n = 0, bad = 0;

    if (f == NULL) {
        insite_log_error("kafka: cannot open spool %s: %s", path, strerror(errno));
        return;
    }
    while (getline(&line, &cap, f) > 0) {
        json_error_t jerr;
        json_t *j = json_loads(line, 0, &jerr);
        const char *topic = NULL, *key = NULL, *payload = NULL;
        size_t len = 0;
        if (j == NULL || json_unpack(j, "{s:s, s?s, s:s%}", "topic", &topic, "key", &key,
                                     "payload", &payload, &len) != 0) {
            bad++;
            insite_log_error("kafka: spool %s: unreadable line kept out of replay: %s",
                             path, line);
        } else {
            insite_kafka_produce(k, topic, key, payload, len);
            n++;
        }
        json_decref(j);
    }
    free(line);
    fclose(f);
    insite_log_info("kafka: replayed %zu message(s) from %s%s", n, path,
                    bad ? " (some lines unreadable, see above)" : "");
    /* Deliver before deleting: a crash now means replaying again (duplicates,
     * deduped by event_id), never losing. */
    insite_kafka_flush(k, k->flush_timeout_ms);
    if (bad == 0 && unlink(path) != 0)
        insite_log_error("kafka: cannot remove replayed spool %s: %s", path, strerror(errno));
}

static void replay_spool(insite_kafka *k)
{
    char *replay = NULL;
    if (asprintf(&replay, "%s.replay", k->spool_path) < 0) {
        insite_log_error("kafka: out of memory replaying the spool");
        return;
    }
    /* A .replay left by a crash is replayed first. */
    if (access(replay, F_OK) == 0)
        replay_file(k, replay);
    if (access(k->spool_path, F_OK) == 0 && access(replay, F_OK) != 0) {
        if (rename(k->spool_path, replay) != 0)
            insite_log_error("kafka: cannot rename %s: %s", k->spool_path, strerror(errno));
        else
            replay_file(k, replay);
    }
    free(replay);
}

insite_kafka *insite_kafka_new(const insite_kafka_options *o)
{
    insite_kafka *k = calloc(1, sizeof(*k));
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char num[32], err[512];

    if (k == NULL || conf == NULL) {
        insite_log_error("kafka: out of memory");
        goto fail;
    }
    pthread_mutex_init(&k->lock, NULL);
    k->retry_max = o->retry_max ? o->retry_max : 10000;
    k->backoff_ms = o->retry_backoff_ms > 0 ? o->retry_backoff_ms : 1000;
    k->flush_timeout_ms = o->flush_timeout_ms;
    k->rf = o->replication_factor > 0 ? o->replication_factor : 1;
    if (o->metrics != NULL
        && (k->pm = insite_kafka_producer_metrics_new(o->metrics, o->client_id
                                                      ? o->client_id : "insite-worker")) == NULL)
        goto fail;

    const char *dir = o->spool_dir && *o->spool_dir ? o->spool_dir : ".";
    if (mkdir(dir, 0750) != 0 && errno != EEXIST) {
        insite_log_error("kafka: cannot create spool dir %s: %s", dir, strerror(errno));
        goto fail;
    }
    if (asprintf(&k->spool_path, "%s/%s", dir, SPOOL_NAME) < 0) {
        k->spool_path = NULL;
        insite_log_error("kafka: out of memory");
        goto fail;
    }
    if (access(dir, W_OK) != 0) {
        insite_log_error("kafka: spool dir %s is not writable: %s", dir, strerror(errno));
        goto fail;
    }

    if (conf_set(conf, "bootstrap.servers", o->bootstrap) != 0
        || conf_set(conf, "client.id", o->client_id ? o->client_id : "insite-worker") != 0
        || conf_set(conf, "enable.idempotence", "true") != 0
        || conf_set(conf, "acks", "all") != 0
        || conf_set(conf, "partitioner", "murmur2_random") != 0
        || set_compression(k, conf, o->compression) != 0)
        goto fail;
    snprintf(num, sizeof(num), "%d", o->linger_ms);
    if (conf_set(conf, "linger.ms", num) != 0)
        goto fail;
    if (o->message_timeout_ms > 0) {
        snprintf(num, sizeof(num), "%d", o->message_timeout_ms);
        if (conf_set(conf, "message.timeout.ms", num) != 0)
            goto fail;
    }
    rd_kafka_conf_set_opaque(conf, k);
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rd_kafka_conf_set_error_cb(conf, on_error);
    rd_kafka_conf_set_log_cb(conf, on_log);

    k->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    if (k->rk == NULL) {
        insite_log_error("kafka: cannot create producer: %s", err);
        goto fail;
    }
    conf = NULL;   /* owned by rk now */
    insite_log_info("kafka: producer for %s (compression %s, linger %dms)",
                    o->bootstrap, k->codec, o->linger_ms);
    replay_spool(k);
    return k;

fail:
    if (conf != NULL)
        rd_kafka_conf_destroy(conf);
    if (k != NULL) {
        free(k->spool_path);
        insite_kafka_producer_metrics_free(k->pm);
        pthread_mutex_destroy(&k->lock);
        free(k);
    }
    return NULL;
}

void insite_kafka_close(insite_kafka *k)
{
    if (k == NULL)
        return;
    int left = insite_kafka_flush(k, k->flush_timeout_ms);
    if (left > 0) {
        /* Purged messages come back through on_delivery with a purge error;
         * with closing set they are spooled instead of queued. */
        pthread_mutex_lock(&k->lock);
        k->closing = 1;
        pthread_mutex_unlock(&k->lock);
        rd_kafka_purge(k->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        int64_t until = insite_clock_mono_ms() + 5000;
        while (rd_kafka_outq_len(k->rk) > 0 && insite_clock_mono_ms() < until)
            rd_kafka_poll(k->rk, 100);
    }
    pthread_mutex_lock(&k->lock);
    k->closing = 1;
    for (item *it = k->head, *next; it != NULL; it = next) {
        next = it->next;
        spool_write(k, it, "shutdown before delivery");
        item_free(it);
    }
    k->head = k->tail = NULL;
    k->nretry = 0;
    pthread_mutex_unlock(&k->lock);

    if (rd_kafka_outq_len(k->rk) > 0)
        insite_log_error("kafka: %d message(s) still in librdkafka at exit",
                         rd_kafka_outq_len(k->rk));
    rd_kafka_destroy(k->rk);
    pthread_mutex_destroy(&k->lock);
    free(k->spool_path);
    insite_kafka_producer_metrics_free(k->pm);
    free(k);
}

void insite_kafka_get_stats(insite_kafka *k, insite_kafka_stats *st)
{
    st->delivered = atomic_load(&k->delivered);
    st->failed = atomic_load(&k->failed);
    st->retried = atomic_load(&k->retried);
    st->spooled = atomic_load(&k->spooled);
    pthread_mutex_lock(&k->lock);
    st->retry_queue = k->nretry;
    pthread_mutex_unlock(&k->lock);
}

const char *insite_kafka_compression(const insite_kafka *k)
{
    return k->codec;
}

/* ---- topic admin ----------------------------------------------------- */

static int admin_options(rd_kafka_AdminOptions_t *ao, int timeout_ms, char *err, size_t errlen)
{
    char buf[512];
    if (rd_kafka_AdminOptions_set_request_timeout(ao, timeout_ms, buf, sizeof(buf))
        != RD_KAFKA_RESP_ERR_NO_ERROR) {
        set_err(err, errlen, "admin options: %s", buf);
        return -1;
    }
    return 0;
}

/* The catalog's retention.ms and compression.type on topics that existed
 * before CreateTopics (AlterConfigs replaces the topic's explicit configs
 * with these two: the catalog owns them). */
static int alter_existing(insite_kafka *k, const char **names, size_t n, int timeout_ms,
                          char *err, size_t errlen)
{
    rd_kafka_ConfigResource_t **cr = calloc(n, sizeof(*cr));
    rd_kafka_queue_t *q = rd_kafka_queue_new(k->rk);
    rd_kafka_AdminOptions_t *ao = rd_kafka_AdminOptions_new(k->rk, RD_KAFKA_ADMIN_OP_ALTERCONFIGS);
    rd_kafka_event_t *ev = NULL;
    char ms[32];
    int rc = -1;

    if (cr == NULL || q == NULL || ao == NULL) {
        set_err(err, errlen, "out of memory");
        goto out;
    }
    if (admin_options(ao, timeout_ms, err, errlen) != 0)
        goto out;
    for (size_t i = 0; i < n; i++) {
        const insite_kafka_topic *t = insite_kafka_topic_find(names[i]);
        snprintf(ms, sizeof(ms), "%lld", t->retention_ms);
        if ((cr[i] = rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_TOPIC, t->name)) == NULL
            || rd_kafka_ConfigResource_set_config(cr[i], "retention.ms", ms)
               != RD_KAFKA_RESP_ERR_NO_ERROR
            || rd_kafka_ConfigResource_set_config(cr[i], "compression.type", t->compression)
               != RD_KAFKA_RESP_ERR_NO_ERROR) {
            set_err(err, errlen, "topic %s: cannot build its configs", t->name);
            goto out;
        }
    }
    rd_kafka_AlterConfigs(k->rk, cr, n, ao, q);
    if ((ev = rd_kafka_queue_poll(q, timeout_ms + 1000)) == NULL) {
        set_err(err, errlen, "AlterConfigs: no answer within %d ms", timeout_ms);
        goto out;
    }
    if (rd_kafka_event_error(ev) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        set_err(err, errlen, "AlterConfigs: %s", rd_kafka_event_error_string(ev));
        goto out;
    }
    size_t nres = 0;
    const rd_kafka_ConfigResource_t **res =
        rd_kafka_AlterConfigs_result_resources(rd_kafka_event_AlterConfigs_result(ev), &nres);
    rc = 0;
    for (size_t i = 0; i < nres && rc == 0; i++) {
        if (rd_kafka_ConfigResource_error(res[i]) != RD_KAFKA_RESP_ERR_NO_ERROR) {
            set_err(err, errlen, "topic %s: %s", rd_kafka_ConfigResource_name(res[i]),
                    rd_kafka_ConfigResource_error_string(res[i]));
            rc = -1;
        } else {
            insite_log_info("kafka: topic %s: retention.ms and compression.type from the catalog",
                            rd_kafka_ConfigResource_name(res[i]));
        }
    }
out:
    if (ev)
        rd_kafka_event_destroy(ev);
    for (size_t i = 0; cr != NULL && i < n; i++)
        if (cr[i])
            rd_kafka_ConfigResource_destroy(cr[i]);
    free(cr);
    if (ao)
        rd_kafka_AdminOptions_destroy(ao);
    if (q)
        rd_kafka_queue_destroy(q);
    return rc;
}

int insite_kafka_create_topics(insite_kafka *k, int timeout_ms, char *err, size_t errlen)
{
    rd_kafka_NewTopic_t *nt[32];
    const char *existing[32];
    size_t nexisting = 0;
    size_t n = insite_kafka_ntopics;
    rd_kafka_queue_t *q = rd_kafka_queue_new(k->rk);
    rd_kafka_AdminOptions_t *ao = rd_kafka_AdminOptions_new(k->rk, RD_KAFKA_ADMIN_OP_CREATETOPICS);
    rd_kafka_event_t *ev = NULL;
    char buf[512], ms[32];
    int rc = -1;

    memset(nt, 0, sizeof(nt));
    if (n > sizeof(nt) / sizeof(nt[0])) {
        set_err(err, errlen, "%zu topics in the catalog, at most %zu", n,
                sizeof(nt) / sizeof(nt[0]));
        n = 0;
        goto out;
    }
    if (q == NULL || ao == NULL) {
        set_err(err, errlen, "out of memory");
        goto out;
    }
    if (rd_kafka_AdminOptions_set_operation_timeout(ao, timeout_ms, buf, sizeof(buf))
        != RD_KAFKA_RESP_ERR_NO_ERROR
        || rd_kafka_AdminOptions_set_request_timeout(ao, timeout_ms, buf, sizeof(buf))
        != RD_KAFKA_RESP_ERR_NO_ERROR) {
        set_err(err, errlen, "admin options: %s", buf);
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        const insite_kafka_topic *t = &insite_kafka_topics[i];
        nt[i] = rd_kafka_NewTopic_new(t->name, t->partitions, k->rf, buf, sizeof(buf));
        if (nt[i] == NULL) {
            set_err(err, errlen, "topic %s: %s", t->name, buf);
            goto out;
        }
        snprintf(ms, sizeof(ms), "%lld", t->retention_ms);
        if (rd_kafka_NewTopic_set_config(nt[i], "retention.ms", ms) != RD_KAFKA_RESP_ERR_NO_ERROR
            || rd_kafka_NewTopic_set_config(nt[i], "compression.type", t->compression)
               != RD_KAFKA_RESP_ERR_NO_ERROR) {
            set_err(err, errlen, "topic %s: cannot set retention.ms/compression.type", t->name);
            goto out;
        }
    }

    rd_kafka_CreateTopics(k->rk, nt, n, ao, q);
    ev = rd_kafka_queue_poll(q, timeout_ms + 1000);
    if (ev == NULL) {
        set_err(err, errlen, "CreateTopics: no answer within %d ms", timeout_ms);
        goto out;
    }
    if (rd_kafka_event_error(ev) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        set_err(err, errlen, "CreateTopics: %s", rd_kafka_event_error_string(ev));
        goto out;
    }
    const rd_kafka_CreateTopics_result_t *res = rd_kafka_event_CreateTopics_result(ev);
    size_t nres = 0;
    const rd_kafka_topic_result_t **tr = rd_kafka_CreateTopics_result_topics(res, &nres);
    rc = 0;
    for (size_t i = 0; i < nres; i++) {
        rd_kafka_resp_err_t e = rd_kafka_topic_result_error(tr[i]);
        const char *name = rd_kafka_topic_result_name(tr[i]);
        if (e == RD_KAFKA_RESP_ERR_NO_ERROR) {
            insite_log_info("kafka: created topic %s", name);
        } else if (e == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
            insite_log_debug("kafka: topic %s already exists", name);
            existing[nexisting++] = name;
        } else if (rc == 0) {
            const char *msg = rd_kafka_topic_result_error_string(tr[i]);
            set_err(err, errlen, "topic %s: %s", name, msg ? msg : rd_kafka_err2str(e));
            rc = -1;
        }
    }
    /* names point into ev: before it is destroyed */
    if (rc == 0 && nexisting > 0)
        rc = alter_existing(k, existing, nexisting, timeout_ms, err, errlen);
out:
    if (ev)
        rd_kafka_event_destroy(ev);
    for (size_t i = 0; i < n; i++)
        if (nt[i])
            rd_kafka_NewTopic_destroy(nt[i]);
    if (ao)
        rd_kafka_AdminOptions_destroy(ao);
    if (q)
        rd_kafka_queue_destroy(q);
    return rc;
}
