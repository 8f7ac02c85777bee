#include <string.h>

#include "log.h"
#include "pg.h"
#include "service.h"

const insite_config_key analytics_pipeline_keys[] = {
    { "analytics.pipeline", INSITE_CFG_BOOL, "true", 0, 0,
      "consume social_posts and publish sentiment_update (false = HTTP API only)" },
    { "analytics.consumer_group", INSITE_CFG_STRING, "insite-analytics", 0, 0,
      "Kafka consumer group (group.id) of the pipeline" },
    { "analytics.posts_topic", INSITE_CFG_STRING, "social_posts", 0, 0, "topic consumed" },
    { "analytics.dlq_topic", INSITE_CFG_STRING, "social_posts.dlq", 0, 0,
      "poison messages go here with the reason" },
    { "analytics.updates_topic", INSITE_CFG_STRING, "sentiment_updates", 0, 0,
      "topic of sentiment_update events (key = symbol)" },
    { "analytics.publish_interval", INSITE_CFG_DURATION, "10s", 0, 3600000,
      "at most one sentiment_update per symbol per interval, only when changed" },
    { "analytics.window_time", INSITE_CFG_STRING, "created", 0, 0,
      "a post's time in the windows: \"created\" (its created_at, else when it was "
      "produced) or \"received\" (when consumed)" },
    { "analytics.source_service", INSITE_CFG_STRING, "analytics", 0, 0,
      "source_service of the Kafka envelopes" },
    { "analytics.session_timeout", INSITE_CFG_DURATION, "45s", 6000, 300000,
      "session.timeout.ms of the consumer: how long a vanished member holds its partitions" },
    { "analytics.paused", INSITE_CFG_BOOL, "false", 0, 0,
      "join the consumer group but fetch nothing: offsets stay, insite_kafka_consumer_lag "
      "shows the backlog (maintenance, and the lag test)" },
};
const size_t analytics_pipeline_nkeys =
    sizeof(analytics_pipeline_keys) / sizeof(analytics_pipeline_keys[0]);

int analytics_pipeline_open(analytics_pipeline *ap, const insite_config *cfg,
                            const vader_model *model, insite_metrics *metrics)
{
    memset(ap, 0, sizeof(*ap));
    if (!insite_config_bool(cfg, "analytics.pipeline")) {
        insite_log_info("sentiment pipeline: off (analytics.pipeline = false)");
        return 0;
    }
    const char *wt = insite_config_string(cfg, "analytics.window_time");
    if (strcmp(wt, "created") != 0 && strcmp(wt, "received") != 0) {
        insite_log_error("analytics.window_time: \"%s\", expected \"created\" or \"received\"", wt);
        return -1;
    }
    insite_kafka_options ko;
    insite_redis_options ro;
    insite_kafka_options_from_config(cfg, &ko);
    insite_redis_options_from_config(cfg, &ro);
    ko.metrics = metrics;
    const char *group = insite_config_string(cfg, "analytics.consumer_group");
    if (metrics != NULL && (ap->km = insite_kafka_consumer_metrics_new(metrics, group)) == NULL)
        goto fail;
    sent_consumer_options co = {
        .bootstrap = ko.bootstrap, .group = group,
        .topic = insite_config_string(cfg, "analytics.posts_topic"), .client_id = ko.client_id,
        .metrics = ap->km, .statistics_interval_ms = ko.statistics_interval_ms,
        .paused = insite_config_bool(cfg, "analytics.paused"),
        .session_timeout_ms = (int)insite_config_duration_ms(cfg, "analytics.session_timeout"),
    };
    if ((ap->out = insite_kafka_new(&ko)) == NULL
        || (ap->redis = insite_redis_new(&ro)) == NULL
        || (ap->db = sent_db_new(insite_config_string(cfg, "pg.dsn"),
                                 insite_config_string(cfg, "pg.migrations_dir"))) == NULL
        || (ap->in = sent_consumer_new(&co)) == NULL)
        goto fail;
    sent_pipeline_options po = {
        .model = model, .in = ap->in, .out = ap->out, .redis = ap->redis, .db = ap->db,
        .service = insite_config_string(cfg, "analytics.source_service"),
        .dlq_topic = insite_config_string(cfg, "analytics.dlq_topic"),
        .updates_topic = insite_config_string(cfg, "analytics.updates_topic"),
        .publish_interval_ms = insite_config_duration_ms(cfg, "analytics.publish_interval"),
        .use_received_time = strcmp(wt, "received") == 0,
        .metrics = ap->km,
    };
    if ((ap->p = sent_pipeline_new(&po)) == NULL)
        goto fail;
    return 0;
fail:
    analytics_pipeline_close(ap);
    return -1;
}

void analytics_pipeline_close(analytics_pipeline *ap)
{
    sent_pipeline_free(ap->p);
    sent_consumer_close(ap->in);      /* commits the processed offsets */
    if (ap->out != NULL)
        insite_kafka_close(ap->out);
    insite_redis_free(ap->redis);
    sent_db_free(ap->db);
    insite_kafka_consumer_metrics_free(ap->km);   /* after the consumer */
    memset(ap, 0, sizeof(*ap));
}
