/* Kafka producer for the durable event bus (librdkafka).
 *
 * Idempotent (enable.idempotence, acks=all), compressed, batched by
 * linger.ms.  Keys are partitioned with murmur2 like the Java client, so the
 * same symbol lands on the same partition whichever language produced it.
 *
 * Nothing is dropped silently: a message librdkafka cannot enqueue (queue
 * full) or reports as failed in its delivery report goes to a bounded retry
 * queue retried by insite_kafka_poll(); when that queue is full, after too
 * many attempts, or at shutdown, it is appended to
 * <spool_dir>/kafka-spool.jsonl, which insite_kafka_new() replays.  Replay is
 * at-least-once: consumers dedupe by the envelope's event_id.
 *
 * Thread-safety: produce from any thread; poll/close from one thread (the
 * delivery reports run there). */
#ifndef INSITE_KAFKA_H
#define INSITE_KAFKA_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "kafka_topics.h"
#include "metrics.h"

typedef struct {
    const char *bootstrap;       /* "host:9092,host2:9092" */
    const char *client_id;
    const char *compression;     /* preferred codec; falls back zstd > lz4 >
                                    snappy > gzip > none if not built in */
    int linger_ms;
    int message_timeout_ms;      /* librdkafka's own retries end here */
    const char *spool_dir;       /* created if missing */
    size_t retry_max;            /* retry queue bound */
    int retry_backoff_ms;
    int flush_timeout_ms;        /* at shutdown */
    int replication_factor;      /* for insite_kafka_create_topics */
    int statistics_interval_ms;  /* consumers' statistics.interval.ms (lag) */
    insite_metrics *metrics;     /* NULL = none; else the insite_kafka_*
                                    producer metrics (kafka_metrics.h) */
} insite_kafka_options;

typedef struct {
    uint64_t delivered, failed, retried, spooled;
    size_t retry_queue;
} insite_kafka_stats;

extern const insite_config_key insite_kafka_config_keys[];
extern const size_t insite_kafka_config_nkeys;
void insite_kafka_options_from_config(const insite_config *cfg,
                                      insite_kafka_options *opt);

typedef struct insite_kafka insite_kafka;

/* Creates the producer and replays the spool file.  NULL on error (logged). */
insite_kafka *insite_kafka_new(const insite_kafka_options *opt);

/* Queues one message (payload copied).  Returns 0 when librdkafka accepted
 * it, 1 when it was kept in the retry queue or spool (logged), -1 when it
 * could not even be spooled (logged with the payload). */
int insite_kafka_produce(insite_kafka *k, const char *topic, const char *key,
                         const char *payload, size_t len);

/* Serves delivery reports for up to timeout_ms and retries due messages.
 * Call regularly from the worker loop. */
void insite_kafka_poll(insite_kafka *k, int timeout_ms);

/* Waits until everything queued is delivered or timeout_ms passes;
 * returns the number of messages still outstanding. */
int insite_kafka_flush(insite_kafka *k, int timeout_ms);

/* Shutdown: flush with the configured timeout, spool what is left, free. */
void insite_kafka_close(insite_kafka *k);

void insite_kafka_get_stats(insite_kafka *k, insite_kafka_stats *st);
/* The codec actually configured ("zstd", ...). */
const char *insite_kafka_compression(const insite_kafka *k);

/* Applies the topic catalog (kafka_topics.h) to the cluster: CreateTopics
 * with partitions, retention.ms and compression.type; the topics that
 * existed already get the catalog's retention.ms and compression.type with
 * AlterConfigs (their partition count is left alone).  Idempotent.  0, or
 * -1 with the reason in err.  Needs a real cluster: librdkafka 2.0.2's mock
 * has no controller for the Admin API (insite-kafka-mock --catalog makes
 * the same topics through the mock's own API). */
int insite_kafka_create_topics(insite_kafka *k, int timeout_ms,
                               char *err, size_t errlen);

#endif
