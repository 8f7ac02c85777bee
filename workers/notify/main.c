/* insite-notify: alert rules on the live stream, templates in 13
 * languages, quiet hours, and delivery over WebSocket, e-mail and webhooks
 * (docs/notify.md).
 *
 *   insite-notify [-c FILE]     consumer + delivery + HTTP API on notify.http_port */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <curl/curl.h>
#include <librdkafka/rdkafka.h>

#include "consumer.h"
#include "http.h"
#include "clock.h"
#include "log.h"
#include "notify.h"
#include "pg.h"
#include "runtime.h"
#include "worker.h"

static const insite_config_key notify_keys[] = {
    { "notify.http_port", INSITE_CFG_INT, "8086", 0, 65535,
      "HTTP API port on 127.0.0.1 (0 = any free port)" },
    { "notify.consumer_group", INSITE_CFG_STRING, "insite-notify", 0, 0, "Kafka group.id" },
    { "notify.topics", INSITE_CFG_STRING_LIST, "stock_updates,sentiment_updates", 0, 0,
      "topics evaluated (stock_update and sentiment_update envelopes)" },
    { "notify.session_timeout", INSITE_CFG_DURATION, "45s", 6000, 300000,
      "Kafka session.timeout.ms: how long a crashed member keeps its partitions" },
    { "notify.fetch_wait", INSITE_CFG_DURATION, "10ms", 0, 500,
      "Kafka fetch.wait.max.ms: how long a fetch that found nothing waits at the broker" },
    { "notify.alerts_topic", INSITE_CFG_STRING, "alerts", 0, 0,
      "fired alerts are produced here (key = user)" },
    { "notify.sentiment_window", INSITE_CFG_STRING, "1h", 0, 0,
      "the sentiment_update window the sentiment rules read (\"1h\" or \"24h\")" },
    { "notify.templates_dir", INSITE_CFG_STRING, "workers/notify/templates", 0, 0,
      "the shipped templates, loaded into PostgreSQL at start" },
    { "notify.max_rules_per_user", INSITE_CFG_INT, "1000", 1, 1000000, "rules a user may have" },
    { "notify.batch_max", INSITE_CFG_INT, "500", 1, 100000,
      "Kafka messages evaluated per PostgreSQL transaction" },
    { "notify.deliver", INSITE_CFG_BOOL, "true", 0, 0,
      "run the delivery thread (false: fired alerts wait in the outbox)" },
    { "notify.retry_backoff", INSITE_CFG_DURATION, "2s", 10, 3600000,
      "first retry delay of a failed delivery; doubles per attempt, at most 10 min" },
    { "notify.max_attempts", INSITE_CFG_INT, "8", 1, 100, "attempts per delivery before failed" },
    { "notify.channel_timeout", INSITE_CFG_DURATION, "10s", 100, 120000,
      "timeout of one e-mail or webhook attempt" },
    { "notify.smtp_url", INSITE_CFG_STRING, "", 0, 0,
      "SMTP server (smtp://host:587 or smtps://host:465); \"\" = no e-mail" },
    { "notify.smtp_from", INSITE_CFG_STRING, "InsiteChart <alerts@localhost>", 0, 0,
      "From: of alert e-mails" },
    { "notify.smtp_user", INSITE_CFG_STRING, "", 0, 0, "SMTP AUTH user (\"\" = none)" },
    { "notify.smtp_password", INSITE_CFG_STRING, "", 0, 0, "SMTP AUTH password" },
    { "notify.smtp_require_tls", INSITE_CFG_BOOL, "false", 0, 0,
      "true: refuse to send without TLS; false: STARTTLS when the server offers it" },
    { "notify.unsubscribe_url", INSITE_CFG_STRING, "", 0, 0,
      "List-Unsubscribe target (user=<id> is appended); \"\" = no header" },
    { "notify.webhook_allow_private", INSITE_CFG_BOOL, "false", 0, 0,
      "allow webhooks to loopback and private addresses (tests, trusted setups)" },
    { "notify.clock_file", INSITE_CFG_STRING, "", 0, 0,
      "tests: a file holding the current time in epoch ms (quiet hours, due times)" },
    { "notify.test_crash_after", INSITE_CFG_STRING, "", 0, 0,
      "tests only: websocket, email or webhook kills the worker right after such a send, before its record" },
    { "notify.source_service", INSITE_CFG_STRING, "notify", 0, 0,
      "source_service of the alerts envelopes" },
};

static PGconn *connect_db(insite_runtime *rt, const char *dsn, const char *migrations)
{
    char err[512];
    for (int tries = 0; !rt->draining; tries++) {
        PGconn *c = insite_pg_connect(dsn, err, sizeof(err));
        if (c != NULL) {
            if (insite_pg_migrate(c, migrations, err, sizeof(err)) >= 0)
                return c;
            insite_log_error("migrations: %s", err);
            PQfinish(c);
            return NULL;
        }
        if (tries % 10 == 0)
            insite_log_warn("postgresql: %s (retrying)", err);
        insite_runtime_wait(rt, 1000, -1);
    }
    return NULL;
}

static void prune(PGconn *c)
{
    PGresult *r = PQexec(c, "DELETE FROM notify_samples WHERE ts_ms < "
                            "(SELECT max(ts_ms) FROM notify_samples) - 86400000");
    if (notify_pg_ok(r, "prune samples"))
        PQclear(r);
}

static void run(insite_runtime *rt, notify_app *a, PGconn **db, notify_consumer *in, size_t batch_max)
{
    rd_kafka_message_t **msgs = calloc(batch_max, sizeof(*msgs));
    double last_prune = insite_runtime_uptime(rt);
    char err[512];
    while (msgs != NULL && !rt->draining) {
        if (PQstatus(*db) != CONNECTION_OK) {
            PQreset(*db);
            if (PQstatus(*db) != CONNECTION_OK) {
                insite_runtime_wait(rt, 1000, -1);
                continue;
            }
            a->reload = 1;
        }
        if (a->reload) {
            if (notify_load(a, *db) != 0) {
                insite_runtime_wait(rt, 1000, -1);
                continue;
            }
            a->reload = 0;
        }
        size_t n = 0;
        rd_kafka_message_t *m = notify_consumer_poll(in, 100);
        int64_t polled_us = notify_wall_us();
        while (m != NULL) {
            msgs[n++] = m;
            m = n < batch_max ? notify_consumer_poll(in, 0) : NULL;
        }
        if (n > 0) {
            double t0 = insite_clock_mono_s();
            if (notify_eval_batch(a, *db, msgs, n, polled_us) == 0) {
                notify_consumer_processed(in, msgs, n, insite_clock_mono_s() - t0);
                notify_consumer_done(in, msgs, n);
            } else {
                insite_log_warn("batch of %zu not committed: reading it again", n);
                notify_consumer_rewind(in, msgs, n);
            }
            for (size_t i = 0; i < n; i++)
                rd_kafka_message_destroy(msgs[i]);
        }
        if (insite_runtime_uptime(rt) - last_prune > 60) {
            prune(*db);
            last_prune = insite_runtime_uptime(rt);
        }
        if (insite_runtime_wait(rt, 0, -1) < 0)
            break;
    }
    (void)err;
    free(msgs);
}

static int serve(insite_runtime *rt, insite_config *cfg)
{
    notify_app a;
    memset(&a, 0, sizeof(a));
    pthread_mutex_init(&a.lock, NULL);
    pthread_mutex_init(&a.tpl_lock, NULL);
    pthread_mutex_init(&a.api_lock, NULL);
    pthread_mutex_init(&a.wake_lock, NULL);
    pthread_cond_init(&a.wake_cond, NULL);
    a.cfg = cfg;
    a.dsn = insite_config_string(cfg, "pg.dsn");
    a.clock_file = insite_config_string(cfg, "notify.clock_file");
    a.sentiment_window = insite_config_string(cfg, "notify.sentiment_window");
    a.group = insite_config_string(cfg, "notify.consumer_group");
    a.max_rules = insite_config_int(cfg, "notify.max_rules_per_user");
    a.alerts_topic = insite_config_string(cfg, "notify.alerts_topic");
    a.service = insite_config_string(cfg, "notify.source_service");
    a.deliver = insite_config_bool(cfg, "notify.deliver");
    a.backoff_ms = insite_config_duration_ms(cfg, "notify.retry_backoff");
    a.max_attempts = (int)insite_config_int(cfg, "notify.max_attempts");
    a.channel_timeout_ms = insite_config_duration_ms(cfg, "notify.channel_timeout");
    a.smtp_url = insite_config_string(cfg, "notify.smtp_url");
    a.smtp_from = insite_config_string(cfg, "notify.smtp_from");
    a.smtp_user = insite_config_string(cfg, "notify.smtp_user");
    a.smtp_password = insite_config_string(cfg, "notify.smtp_password");
    a.smtp_starttls = insite_config_bool(cfg, "notify.smtp_require_tls");
    a.unsubscribe_url = insite_config_string(cfg, "notify.unsubscribe_url");
    a.webhook_allow_private = insite_config_bool(cfg, "notify.webhook_allow_private");
    a.crash_after = insite_config_string(cfg, "notify.test_crash_after");
    a.engine = notify_engine_new();

    a.metrics = insite_metrics_new("notify");
    a.m_updates = insite_metrics_counter(a.metrics, "updates_evaluated", "Stream updates evaluated.");
    a.m_fired = insite_metrics_counter(a.metrics, "alerts_fired", "Alerts fired by rules.");
    a.m_skipped = insite_metrics_counter(a.metrics, "updates_replayed",
                                         "Redelivered updates skipped (already evaluated).");
    a.m_bad = insite_metrics_counter(a.metrics, "updates_ignored",
                                     "Messages that are not an update the rules read.");
    a.m_delivered = insite_metrics_counter(a.metrics, "deliveries", "Channel deliveries that succeeded.");
    a.m_failed = insite_metrics_counter(a.metrics, "delivery_failures", "Channel attempts that failed.");
    a.m_held = insite_metrics_counter(a.metrics, "alerts_held", "Alerts held for quiet hours.");

    insite_kafka_options ko;
    insite_redis_options ro;
    insite_kafka_options_from_config(cfg, &ko);
    insite_redis_options_from_config(cfg, &ro);
    PGconn *db = NULL;
    notify_consumer *in = NULL;
    insite_http *h = NULL;
    int rc = 1, delivering = 0;
    char *const *topics;
    size_t ntopics = insite_config_list(cfg, "notify.topics", &topics);

    if (a.engine == NULL || a.metrics == NULL
        || (db = connect_db(rt, a.dsn, insite_config_string(cfg, "pg.migrations_dir"))) == NULL
        || notify_templates_sync(&a, db, insite_config_string(cfg, "notify.templates_dir")) != 0
        || notify_load(&a, db) != 0
        || (a.kafka = insite_kafka_new(&ko)) == NULL
        || (a.redis = insite_redis_new(&ro)) == NULL)
        goto out;
    insite_http_route routes[16];
    notify_api_routes(&a, routes);
    insite_http_options ho = {
        .service = "notify", .port = (int)insite_config_int(cfg, "notify.http_port"),
        .routes = routes, .nroutes = notify_api_nroutes, .metrics = a.metrics,
    };
    if ((h = insite_http_start(&ho)) == NULL)
        goto out;
    if (a.deliver) {
        if (notify_deliver_start(&a) != 0)
            goto out;
        delivering = 1;
    } else
        insite_log_warn("delivery is off (notify.deliver = false): alerts stay in the outbox");
    if ((in = notify_consumer_new(ko.bootstrap, a.group,
                                  ko.client_id,
                                  (int)insite_config_duration_ms(cfg, "notify.session_timeout"),
                                  (int)insite_config_duration_ms(cfg, "notify.fetch_wait"),
                                  topics, ntopics, a.metrics)) == NULL)
        goto out;
    run(rt, &a, &db, in, (size_t)insite_config_int(cfg, "notify.batch_max"));
    rc = 0;
out:
    notify_consumer_close(in);
    if (delivering)
        notify_deliver_stop(&a);
    if (h != NULL)
        insite_http_stop(h);
    if (a.kafka != NULL)
        insite_kafka_close(a.kafka);
    insite_redis_free(a.redis);
    if (db != NULL)
        PQfinish(db);
    if (a.api_pg != NULL)
        PQfinish(a.api_pg);
    notify_engine_free(a.engine);
    free(a.offsets);
    json_decref(a.templates);
    insite_metrics_free(a.metrics);
    return rc;
}

static int start(insite_runtime *rt, insite_config **cfg, void *ud)
{
    (void)ud;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        insite_log_error("curl_global_init failed");
        return 1;
    }
    int rc = serve(rt, *cfg);
    curl_global_cleanup();
    return rc;
}

int main(int argc, char **argv)
{
    const insite_worker_keys keys[] = {
        { insite_pg_config_keys, insite_pg_config_nkeys },
        { insite_kafka_config_keys, insite_kafka_config_nkeys },
        { insite_redis_config_keys, insite_redis_config_nkeys },
        INSITE_WORKER_KEYS(notify_keys),
    };
    const insite_worker_options o = {
        .name = "insite-notify", .usage = "", .keys = keys,
        .nkeys = sizeof(keys) / sizeof(keys[0]), .run = start,
    };
    return insite_worker_main(&o, argc, argv);
}
