/* Kafka consumer-group member for one topic (librdkafka high-level
 * consumer), at-least-once:
 *
 *   enable.auto.offset.store=false: an offset is stored only after the
 *   message was processed (sent_consumer_done), and the stored offsets are
 *   committed every commit_interval_ms and when the consumer closes or
 *   loses a partition.  A message that could not be processed yet
 *   (sent_consumer_again) is fetched again: its partition is sought back. */
#ifndef ANALYTICS_CONSUMER_H
#define ANALYTICS_CONSUMER_H

#include <librdkafka/rdkafka.h>

#include "kafka_metrics.h"

typedef struct {
    const char *bootstrap;
    const char *group;               /* group.id */
    const char *topic;
    const char *client_id;
    int commit_interval_ms;          /* auto.commit.interval.ms; 0 = 1000 */
    const char *offset_reset;        /* auto.offset.reset: "earliest" */
    int session_timeout_ms;          /* session.timeout.ms; 0 = librdkafka's */
    insite_kafka_consumer_metrics *metrics;   /* NULL = none; the caller's,
                                       freed after sent_consumer_close() */
    int statistics_interval_ms;      /* lag refresh; 0 = 5000 */
    int paused;                      /* join the group and report lag, but
                                        fetch nothing (analytics.paused) */
} sent_consumer_options;

typedef struct sent_consumer sent_consumer;

/* Creates and subscribes.  NULL on error (logged). */
sent_consumer *sent_consumer_new(const sent_consumer_options *o);

/* The next message, or NULL after timeout_ms (consumer errors are logged
 * here; the statistics callback runs here too).  Counted in
 * insite_kafka_messages_consumed_total.  Destroy it with rd_kafka_message_destroy(). */
rd_kafka_message_t *sent_consumer_poll(sent_consumer *c, int timeout_ms);

/* Processed: its offset may be committed. */
void sent_consumer_done(sent_consumer *c, const rd_kafka_message_t *m);

/* Not processed (transient failure): deliver it again.  0, or -1 (logged). */
int sent_consumer_again(sent_consumer *c, const rd_kafka_message_t *m);

/* Commits the stored offsets now; 0, or -1 (logged; "nothing to commit" is
 * success). */
int sent_consumer_commit(sent_consumer *c);

/* Commits what is stored, leaves the group, frees. */
void sent_consumer_close(sent_consumer *c);

#endif
