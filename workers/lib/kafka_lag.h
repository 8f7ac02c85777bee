/* The lag view: consumer lag of groups this worker does not run, what
 * Burrow does.  Every interval it asks the cluster, with librdkafka's Admin
 * API, for the committed offsets of each configured group
 * (ListConsumerGroupOffsets: every partition the group committed) and for
 * each such partition's high watermark (a metadata-backed watermark
 * query), and sets
 *   insite_kafka_consumer_lag{topic,partition,group} = high watermark - committed
 * through kafka_metrics.h, the gauge every consumer exports, so one alert
 * (KafkaConsumerLagHigh) covers groups inside and outside the worker.
 *
 * Runs on a thread of its own (the Admin calls block); insite-auditd hosts
 * it (docs/operations.md, "Lag view").  Config keys (insite_kafka_lag_config_keys):
 *   kafka.lag_groups     groups to watch (list; empty = no lag view)
 *   kafka.lag_interval   how often (default 10s)
 * A group whose offsets cannot be read keeps its last values and the
 * reason is logged once per change of reason. */
#ifndef INSITE_KAFKA_LAG_H
#define INSITE_KAFKA_LAG_H

#include "config.h"
#include "metrics.h"

extern const insite_config_key insite_kafka_lag_config_keys[];
extern const size_t insite_kafka_lag_config_nkeys;

typedef struct insite_kafka_lag_view insite_kafka_lag_view;

/* Starts the view for kafka.lag_groups against kafka.bootstrap, exporting
 * into m.  NULL when no group is configured (nothing to do, not an error)
 * or on error (logged; *failed set to 1). */
insite_kafka_lag_view *insite_kafka_lag_view_start(const insite_config *cfg, insite_metrics *m,
                                                   int *failed);

/* One pass over the groups, now (the thread does this every interval);
 * 0, or -1 when a group or a partition could not be read (logged). */
int insite_kafka_lag_view_refresh(insite_kafka_lag_view *v);

/* Stops the thread and frees; NULL is fine.  Call before freeing m. */
void insite_kafka_lag_view_stop(insite_kafka_lag_view *v);

#endif
