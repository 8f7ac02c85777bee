/* The pipeline's configuration (analytics.pipeline*, kafka.*, redis.*) and
 * the connections it owns, for main.c. */
#ifndef ANALYTICS_SERVICE_H
#define ANALYTICS_SERVICE_H

#include "config.h"
#include "ingest.h"

extern const insite_config_key analytics_pipeline_keys[];
extern const size_t analytics_pipeline_nkeys;

typedef struct {
    sent_consumer *in;
    insite_kafka *out;
    insite_redis *redis;
    sent_db *db;
    sent_pipeline *p;
    insite_kafka_consumer_metrics *km;
} analytics_pipeline;

/* 0 (p->p NULL when analytics.pipeline is false), or -1 (logged; what was
 * opened is closed).  metrics (may be NULL) gets the insite_kafka_* producer
 * and consumer metrics (kafka_metrics.h). */
int analytics_pipeline_open(analytics_pipeline *ap, const insite_config *cfg,
                            const vader_model *model, insite_metrics *metrics);
void analytics_pipeline_close(analytics_pipeline *ap);

#endif
