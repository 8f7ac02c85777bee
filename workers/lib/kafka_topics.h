/* The Kafka topic catalog: the one home of every event-bus topic's name,
 * partition count, retention and compression, and of the dead-letter topic
 * of every consumed topic.
 *
 * Read by
 *   - insite_kafka_create_topics() (kafka.h; `insite-publish
 *     --create-topics`): CreateTopics with partitions, retention.ms and
 *     compression.type on a real cluster, AlterConfigs on the topics that
 *     exist already, so a second run changes nothing;
 *   - insite-kafka-mock --catalog (scripts/services.sh): the same topics
 *     with the same partition counts on the mock cluster (which keeps no
 *     topic configs);
 *   - the consumers' dead-letter path (insite_kafka_dead_letter, kafka.h).
 * Documented in docs/operations.md, "Topic catalog". */
#ifndef INSITE_KAFKA_TOPICS_H
#define INSITE_KAFKA_TOPICS_H

#include <stddef.h>

#define INSITE_KAFKA_DLQ_SUFFIX ".dlq"

typedef struct {
    const char *name;
    int partitions;
    long long retention_ms;
    const char *compression;   /* the topic's compression.type (the broker
                                  stores batches in it; producers send with
                                  kafka.compression) */
} insite_kafka_topic;

extern const insite_kafka_topic insite_kafka_topics[];
extern const size_t insite_kafka_ntopics;

/* The catalog entry of a topic, or NULL. */
const insite_kafka_topic *insite_kafka_topic_find(const char *name);

/* "<topic>.dlq" into buf; 0, or -1 when it does not fit. */
int insite_kafka_dlq_topic(const char *topic, char *buf, size_t len);

#endif
