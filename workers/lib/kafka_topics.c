#include <stdio.h>
#include <string.h>

#include "kafka_topics.h"

#define HOURS(h) ((long long)(h) * 3600 * 1000)
#define DAYS(d)  HOURS((d) * 24)

/* Partitions and retention from the platform plan.  Codecs: lz4 where
 * latency matters (prices, scores and alerts: small messages, cheapest to
 * compress), zstd where volume and text dominate.  A dead-letter topic
 * keeps its messages for 14 days, long enough to be looked at after a
 * holiday, on one partition (order of arrival is what an operator reads). */
const insite_kafka_topic insite_kafka_topics[] = {
    { "stock_updates",         5, HOURS(24), "lz4"  },
    { "sentiment_updates",     5, HOURS(24), "lz4"  },
    { "alerts",                3, DAYS(7),   "lz4"  },
    { "user_events",           5, DAYS(7),   "zstd" },
    { "system_events",         1, DAYS(30),  "zstd" },
    { "social_posts",          5, DAYS(7),   "zstd" },
    /* consumed: insite-notify (stock_updates, sentiment_updates),
     * insite-analytics (social_posts) */
    { "stock_updates.dlq",     1, DAYS(14),  "zstd" },
    { "sentiment_updates.dlq", 1, DAYS(14),  "zstd" },
    { "social_posts.dlq",      1, DAYS(14),  "zstd" },
};
const size_t insite_kafka_ntopics =
    sizeof(insite_kafka_topics) / sizeof(insite_kafka_topics[0]);

const insite_kafka_topic *insite_kafka_topic_find(const char *name)
{
    for (size_t i = 0; i < insite_kafka_ntopics; i++)
        if (strcmp(insite_kafka_topics[i].name, name) == 0)
            return &insite_kafka_topics[i];
    return NULL;
}

int insite_kafka_dlq_topic(const char *topic, char *buf, size_t len)
{
    int n = snprintf(buf, len, "%s" INSITE_KAFKA_DLQ_SUFFIX, topic);
    return n < 0 || (size_t)n >= len ? -1 : 0;
}
