/* Dead letters: what a consumer does with a message it cannot process.
 *
 * The message goes to its dead-letter topic (by default "<topic>.dlq", the
 * catalog's, kafka_topics.h) with the same key, as an envelope
 * (envelope.h) of event_type "dead_letter" and
 *   data: { reason, topic, partition, offset, key?, payload | payload_hex }
 * (payload as a string when it is UTF-8, else its bytes in hex), and the
 * consumer goes on with the next message.  Produced through insite_kafka,
 * so a dead letter is retried and spooled like any message, never dropped. */
#ifndef INSITE_KAFKA_DLQ_H
#define INSITE_KAFKA_DLQ_H

#include <librdkafka/rdkafka.h>

#include "kafka.h"

/* Produces m's dead letter to dlq_topic (NULL: "<topic>.dlq") and logs it
 * once with the reason.  0 when the producer took it (insite_kafka_produce
 * accepted, retried or spooled it), -1 when it could not (logged): the
 * caller processes m again later. */
int insite_kafka_dead_letter(insite_kafka *out, const char *service, const char *dlq_topic,
                             const rd_kafka_message_t *m, const char *reason);

#endif
