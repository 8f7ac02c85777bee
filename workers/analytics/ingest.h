/* The sentiment pipeline: Kafka social_posts -> VADER -> sliding windows ->
 * sentiment_update (Redis, Kafka, PostgreSQL).
 *
 * Per message: parse (a poison message goes to <topic>.dlq with the reason),
 * score, record the score under the post id (source, source_id) in
 * sentiment_post_scores (a redelivered post is a no-op there and is not
 * counted again), add it to the windows, then mark the offset processed.
 * When PostgreSQL or the DLQ producer fails the message is fetched again
 * after a back-off; nothing is committed past it.  Scores of the last 24 h
 * are reloaded from the table before the first message, so a restart keeps
 * the windows. */
#ifndef ANALYTICS_INGEST_H
#define ANALYTICS_INGEST_H

#include <stdint.h>

#include "consumer.h"
#include "emit.h"
#include "vader.h"

typedef struct {
    const vader_model *model;
    sent_consumer *in;               /* owned by the caller */
    insite_kafka *out;               /* DLQ and sentiment_updates; caller's */
    insite_redis *redis;             /* caller's; NULL = no Redis */
    sent_db *db;                     /* caller's */
    const char *service;             /* "analytics" */
    const char *dlq_topic;           /* "social_posts.dlq" */
    const char *updates_topic;       /* "sentiment_updates" */
    int64_t publish_interval_ms;     /* 10000 */
    int use_received_time;           /* 1: window time = when consumed */
    int retry_backoff_ms;            /* after a transient failure; 1000 */
    insite_kafka_consumer_metrics *metrics;  /* NULL = none: processing
                                        time of every processed message */
    int64_t (*now_ms)(void *);       /* wall clock in epoch ms; NULL = real */
    void *now_ud;
} sent_pipeline_options;

typedef struct {
    uint64_t consumed, scored, duplicates, poison, retried, published;
} sent_pipeline_stats;

typedef struct sent_pipeline sent_pipeline;

sent_pipeline *sent_pipeline_new(const sent_pipeline_options *o);
void sent_pipeline_free(sent_pipeline *p);

/* One round: up to 500 messages (waiting up to timeout_ms for the first),
 * then the publish check.  0, or -1 when backing off (logged). */
int sent_pipeline_step(sent_pipeline *p, int timeout_ms);

/* Publishes what is due now (also done by every step). */
void sent_pipeline_tick(sent_pipeline *p);

void sent_pipeline_get_stats(const sent_pipeline *p, sent_pipeline_stats *st);

#endif
