/* Kafka metrics shared by every producer and consumer of every worker, on
 * the worker's /metrics (one registry, insite_metrics):
 *
 *   producer (workers/lib/kafka.c does this when insite_kafka_options.metrics
 *   is set; nothing to do in a worker):
 *     insite_kafka_messages_produced_total{topic}     acknowledged by the broker
 *     insite_kafka_delivery_failures_total{topic}     enqueue or delivery failed
 *                                                     (then retried or spooled)
 *     insite_kafka_retries_total{topic}               re-enqueued by the retry queue
 *     insite_kafka_messages_spooled_total{topic}      written to the spool file
 *     insite_kafka_producer_queue_depth{client_id}    in librdkafka + retry queue
 *   consumer (each consumer wires itself, see below):
 *     insite_kafka_messages_consumed_total{topic,group}
 *     insite_kafka_consumer_lag{topic,partition,group}   from librdkafka's
 *         statistics (consumer_lag: high watermark or last stable offset minus
 *         the group's committed offset), refreshed every statistics interval
 *         (<= 5 s); a partition the member no longer owns is not rendered
 *     insite_kafka_processing_duration_seconds{topic,event_type}   histogram,
 *         buckets 0.001 0.005 0.01 0.05 0.1 0.5 1 5
 *
 * Naming: these are insite_kafka_*, not insite_<worker>_*, on purpose: the
 * same series from every worker, so one alert or panel covers all of them;
 * Prometheus' job/instance labels say which worker it is.
 *
 * A consumer adopts them in four calls:
 *
 *     insite_kafka_consumer_metrics *km =
 *         insite_kafka_consumer_metrics_new(metrics, "insite-notify");
 *     insite_kafka_consumer_metrics_conf(km, conf, stats_ms);  // before rd_kafka_new
 *     ... m = rd_kafka_consumer_poll(rk, ...);                  // serves the stats too
 *     insite_kafka_consumer_metrics_consumed(km, m);
 *     double t0 = insite_clock_mono_s(); handle(m);
 *     insite_kafka_consumer_metrics_processed(km, topic, "alert",
 *                                             insite_clock_mono_s() - t0);
 *     ... after rd_kafka_destroy(rk): insite_kafka_consumer_metrics_free(km);
 *
 * Every function accepts a NULL object and then does nothing, so metrics
 * stay optional (unit tests, CLI modes).  Thread-safety: counters from any
 * thread; the statistics callback runs on the thread that polls. */
#ifndef INSITE_KAFKA_METRICS_H
#define INSITE_KAFKA_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include <librdkafka/rdkafka.h>

#include "metrics.h"

/* Default and upper bound of statistics.interval.ms. */
#define INSITE_KAFKA_STATS_INTERVAL_MS 5000

extern const double insite_kafka_processing_buckets[];
extern const size_t insite_kafka_processing_nbuckets;

/* ---- producer ---- */

typedef struct insite_kafka_producer_metrics insite_kafka_producer_metrics;

/* Registers (or finds) the producer families in m.  NULL when m is NULL or
 * on error (logged). */
insite_kafka_producer_metrics *insite_kafka_producer_metrics_new(insite_metrics *m,
                                                                 const char *client_id);
void insite_kafka_producer_metrics_free(insite_kafka_producer_metrics *pm);

void insite_kafka_producer_metrics_produced(insite_kafka_producer_metrics *pm, const char *topic);
void insite_kafka_producer_metrics_failed(insite_kafka_producer_metrics *pm, const char *topic);
void insite_kafka_producer_metrics_retried(insite_kafka_producer_metrics *pm, const char *topic);
void insite_kafka_producer_metrics_spooled(insite_kafka_producer_metrics *pm, const char *topic);
void insite_kafka_producer_metrics_queue(insite_kafka_producer_metrics *pm, size_t depth);

/* ---- consumer ---- */

typedef struct insite_kafka_consumer_metrics insite_kafka_consumer_metrics;

/* group: the consumer's group.id (copied).  NULL when m is NULL or on error
 * (logged). */
insite_kafka_consumer_metrics *insite_kafka_consumer_metrics_new(insite_metrics *m,
                                                                 const char *group);
/* Frees; call after rd_kafka_destroy() of the consumer it was attached to. */
void insite_kafka_consumer_metrics_free(insite_kafka_consumer_metrics *cm);

/* Sets statistics.interval.ms (interval_ms; 0 or more than 5000 = 5000),
 * the statistics callback and the conf's opaque (cm).  A consumer that
 * needs its own opaque sets its own callback instead and calls
 * insite_kafka_consumer_metrics_stats() from it.  0, or -1 (logged). */
int insite_kafka_consumer_metrics_conf(insite_kafka_consumer_metrics *cm,
                                       rd_kafka_conf_t *conf, int interval_ms);

/* Reads one statistics JSON document of librdkafka and updates the lag
 * gauges.  0, or -1 when it is not valid JSON (logged). */
int insite_kafka_consumer_metrics_stats(insite_kafka_consumer_metrics *cm,
                                        const char *json, size_t len);

/* Lag without librdkafka's statistics, for a member that does not fetch
 * (paused partitions: the statistics then know no high watermark and say
 * -1): for rk's current assignment, high watermark minus the group's
 * committed offset (minus the low watermark when nothing is committed),
 * asked from the brokers with blocking calls of up to timeout_ms each: call
 * it from the worker's loop, at most every statistics interval.  0, or -1
 * (logged). */
int insite_kafka_consumer_metrics_refresh(insite_kafka_consumer_metrics *cm, rd_kafka_t *rk,
                                          int timeout_ms);

/* Sets the lag gauge of one partition for cm's group (lag < 0 counts as
 * 0): for a lag computed elsewhere (the lag view, kafka_lag.h). */
void insite_kafka_consumer_metrics_set_lag(insite_kafka_consumer_metrics *cm, const char *topic,
                                           int32_t partition, int64_t lag);

/* A message returned by the consumer (errors and partition EOF ignored). */
void insite_kafka_consumer_metrics_consumed(insite_kafka_consumer_metrics *cm,
                                            const rd_kafka_message_t *m);

/* One message handled in seconds; event_type is the envelope's (or a
 * fixed word such as "invalid" for a message that has none). */
void insite_kafka_consumer_metrics_processed(insite_kafka_consumer_metrics *cm,
                                             const char *topic, const char *event_type,
                                             double seconds);

#endif
