/* insite-notify: the worker's shared state (docs/notify.md).
 *
 * Three threads:
 *   main     Kafka consumer -> rule engine -> one PostgreSQL transaction
 *            per batch (rule state, fired alerts, samples, offsets)
 *   deliver  the outbox: plans due alerts (settings, quiet hours, rate
 *            cap, rendering) and runs each channel's attempts
 *   http     the API (libmicrohttpd's thread)
 * The engine is shared by main and http under `lock`; the templates by
 * deliver and http under `tpl_lock`.  Each thread has its own connection
 * to PostgreSQL. */
#ifndef NOTIFY_H
#define NOTIFY_H

#include <pthread.h>
#include <stdint.h>

#include <jansson.h>
#include <libpq-fe.h>

#include "config.h"
#include "engine.h"
#include "kafka.h"
#include "metrics.h"
#include "redis_publish.h"

typedef struct {
    char topic[64];
    int32_t partition;
    int64_t next;
} notify_offset;

typedef struct {
    const insite_config *cfg;
    const char *dsn;
    const char *clock_file;          /* fake clock for tests ("" = real) */

    pthread_mutex_t lock;            /* engine */
    notify_engine *engine;
    notify_offset *offsets;          /* processed positions (from PostgreSQL) */
    size_t noffsets;
    const char *sentiment_window;    /* the sentiment_update window read: "1h" */
    const char *group;               /* Kafka consumer group (offsets are per group) */
    int reload;                      /* main: rebuild the engine from PostgreSQL */

    pthread_mutex_t tpl_lock;        /* templates */
    json_t *templates;

    pthread_mutex_t api_lock;        /* the API's connection */
    PGconn *api_pg;
    long max_rules;                  /* per user */

    insite_kafka *kafka;             /* alerts producer */
    insite_redis *redis;
    const char *alerts_topic;
    const char *service;

    /* delivery */
    int deliver;                     /* 0: fired alerts stay in the outbox */
    volatile int stop;
    pthread_t deliver_thread;
    pthread_mutex_t wake_lock;       /* wake_pending, sendq */
    pthread_cond_t wake_cond;
    int wake_pending;                /* alerts were committed */
    json_t *sendq;                   /* planned alerts to send (notify_deliver_enqueue) */
    int64_t backoff_ms;
    int max_attempts;
    const char *smtp_url, *smtp_from, *smtp_user, *smtp_password, *unsubscribe_url;
    int smtp_starttls;               /* 1 = require, 0 = when offered */
    int64_t channel_timeout_ms;
    int webhook_allow_private;       /* allow loopback/private webhook targets */
    const char *crash_after;         /* test hook: "" or "websocket" */

    insite_metrics *metrics;
    insite_counter *m_updates, *m_fired, *m_skipped, *m_bad, *m_delivered, *m_failed, *m_held;
} notify_app;

/* Milliseconds since the epoch: the clock file's number when configured
 * (tests move time by rewriting it), else the real clock. */
int64_t notify_now_ms(const notify_app *a);

/* "2026-11-26T10:30:45.123Z" (or with +hh:mm) -> epoch ms; -1 if invalid. */
int64_t notify_parse_time(const char *s);

/* eval.c: loads rules, state, samples and offsets from PostgreSQL into a
 * new engine (replacing a->engine).  0 or -1 (logged). */
int notify_load(notify_app *a, PGconn *c);
/* Evaluates a batch of Kafka messages and commits its effects in one
 * transaction.  Returns 0, or -1 when the transaction failed (nothing was
 * committed; the caller re-reads the batch after notify_load). */
struct rd_kafka_message_s;
int notify_eval_batch(notify_app *a, PGconn *c, struct rd_kafka_message_s **msgs, size_t n,
                      int64_t polled_us);

/* Wall-clock microseconds (the real clock, also under notify.clock_file):
 * the stage times of log.level = debug ("stage eval", "stage deliver"),
 * comparable with the Kafka messages' CreateTime and a client's clock. */
int64_t notify_wall_us(void);

/* A rule from its alert_rules row (fields as text). */
int notify_rule_from_row(notify_rule *r, const char *id, const char *user, const char *symbol,
                         const char *kind, const char *params, const char *cooldown_s,
                         const char *recurring, const char *priority, const char *enabled);

/* templates: the shipped files into PostgreSQL (rows an operator edited
 * are kept), then the table into a->templates.  0 or -1 (logged). */
int notify_templates_sync(notify_app *a, PGconn *c, const char *dir);
int notify_templates_reload(notify_app *a, PGconn *c);
/* Stores one checked template; edited = 1 for the operator API. */
int notify_template_store(PGconn *c, const json_t *tpl, int edited);

/* deliver.c */
int notify_deliver_start(notify_app *a);
void notify_deliver_stop(notify_app *a);
/* Called after a transaction that fired alerts commits: the delivery
 * thread starts a pass now instead of at its next poll. */
void notify_deliver_wake(notify_app *a);
/* Plans a batch's fired alerts before they are committed, in the
 * evaluation thread: one statement reads the settings and hourly counts of
 * their users, then each fire (the commit's JSON object: user_id, rule_id,
 * template_id, priority, args, fired_ms) gets event_id and state
 * (suppressed, held + due_ms, capped, or planned + planned_ms, lang,
 * title, body, websocket_status/kafka_status 'sending'); `slow` gets
 * {event_id, channel} per e-mail/webhook delivery to create.  0, or -1
 * when the settings could not be read (the fires stay unplanned: state
 * 'new', planned by the delivery thread). */
int notify_plan_fires(notify_app *a, PGconn *c, json_t *fires, json_t *slow, int64_t now);
/* After the commit: the planned fires whose rows `ids` (id, event_id)
 * returned go to the delivery thread's queue, which is woken. */
void notify_deliver_enqueue(notify_app *a, json_t *fires, PGresult *ids);

/* api.c */
struct insite_http_route_s;
extern const size_t notify_api_nroutes;
void notify_api_routes(notify_app *a, void *routes /* insite_http_route[notify_api_nroutes] */);

/* The PostgreSQL result as text or NULL; helpers for every file. */
PGresult *notify_pg(PGconn *c, const char *sql, int n, const char *const *params);
int notify_pg_ok(PGresult *r, const char *what);   /* clears r on error; 1 ok */

#endif
