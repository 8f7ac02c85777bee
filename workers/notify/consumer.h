/* Kafka consumer-group member for insite-notify's input topics
 * (stock_updates, sentiment_updates), at-least-once: an offset is stored
 * only after its batch was committed to PostgreSQL (notify_consumer_done);
 * PostgreSQL's own record of processed offsets (notify_offsets) makes the
 * redelivery after a crash a no-op.  Same settings as insite-analytics'
 * consumer (workers/analytics/consumer.h), for several topics. */
#ifndef NOTIFY_CONSUMER_H
#define NOTIFY_CONSUMER_H

#include <stddef.h>

#include <librdkafka/rdkafka.h>

#include "metrics.h"

typedef struct notify_consumer notify_consumer;

/* fetch_wait_ms: fetch.wait.max.ms (notify.fetch_wait).
 * metrics (may be NULL): the shared insite_kafka_* consumer series
 * (workers/lib/kafka_metrics.h): consumed, lag, processing duration. */
notify_consumer *notify_consumer_new(const char *bootstrap, const char *group,
                                     const char *client_id, int session_timeout_ms,
                                     int fetch_wait_ms,
                                     char *const *topics, size_t ntopics,
                                     insite_metrics *metrics);
/* The next message, or NULL after timeout_ms. */
rd_kafka_message_t *notify_consumer_poll(notify_consumer *c, int timeout_ms);
/* The batch took `seconds` to evaluate: each message is observed in the
 * processing histogram at its share (event_type: the topic's update kind). */
void notify_consumer_processed(notify_consumer *c, rd_kafka_message_t **m, size_t n,
                               double seconds);
/* The batch's messages were committed to PostgreSQL: store their offsets. */
void notify_consumer_done(notify_consumer *c, rd_kafka_message_t **m, size_t n);
/* The batch failed: fetch its partitions again from their first message. */
void notify_consumer_rewind(notify_consumer *c, rd_kafka_message_t **m, size_t n);
void notify_consumer_close(notify_consumer *c);

#endif
