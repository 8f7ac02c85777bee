/* insite-gdpr: the data subject's rights behind nginx.
 *
 *   insite-gdpr [-c FILE]     the API on 127.0.0.1:8085 and the background
 *                             work (consent state Redis missed)
 *   insite-gdpr --retention-now [--dry-run]
 *                             one retention run, a JSON summary on stdout
 *
 * docs/gdpr-rights.md: the API, the Redis contract with nginx's
 * insite_gdpr_consent, operations. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "gdpr.h"
#include "log.h"
#include "pg.h"
#include "kafka.h"
#include "redis_publish.h"
#include "runtime.h"
#include "worker.h"

static const insite_config_key gdpr_keys[] = {
    { "gdpr.http_port", INSITE_CFG_INT, "8085", 0, 65535,
      "HTTP API port on 127.0.0.1 (0 = any free port)" },
    { "gdpr.http_threads", INSITE_CFG_INT, "4", 1, 64,
      "HTTP threads: a compliance report being built holds one, the other requests go on in the others" },
    { "gdpr.consent_types", INSITE_CFG_STRING_LIST,
      "analytics=1,marketing=1,data_sharing=1,cookies=1,profiling=1", 0, 0,
      "consent types with their current policy version, \"type=version\"" },
    { "gdpr.sync_interval", INSITE_CFG_DURATION, "1s", 50, 60000,
      "how often consent state Redis missed is retried" },
    { "gdpr.data_map", INSITE_CFG_STRING, "", 0, 0,
      "the data map (JSON, docs/gdpr-rights.md); \"\" = erasure off" },
    { "gdpr.pseudonym_key", INSITE_CFG_STRING, "", 0, 0,
      "file with the secret (>= 16 bytes) of the keyed hash for pseudonyms" },
    { "gdpr.signing_key", INSITE_CFG_STRING, "", 0, 0,
      "Ed25519 private key (PEM) signing erasure receipts" },
    { "gdpr.grace_period", INSITE_CFG_DURATION, "0", 0, 2592000000.0,
      "delay before an erasure starts, during which it can be cancelled" },
    { "gdpr.export_ttl", INSITE_CFG_DURATION, "7d", 1000, 31536000000.0,
      "how long a finished export can be downloaded before it is deleted" },
    { "gdpr.body_max", INSITE_CFG_INT, "65536", 1024, 1048576,
      "largest request body accepted, bytes" },
    { "gdpr.audit_public_key", INSITE_CFG_STRING, "", 0, 0,
      "insite-auditd's checkpoint public key (PEM): the report verifies checkpoints; \"\" = not checked" },
    { "gdpr.incident_interval", INSITE_CFG_DURATION, "1s", 100, 60000,
      "how often new audit records are checked for incidents" },
    { "gdpr.incident_medium", INSITE_CFG_INT, "50", 1, 1000000,
      "accesses by one user in an hour above which a MEDIUM incident is recorded" },
    { "gdpr.incident_high", INSITE_CFG_INT, "100", 1, 1000000,
      "accesses by one user in an hour above which the incident is HIGH" },
    { "gdpr.incident_subjects", INSITE_CFG_INT, "20", 1, 1000000,
      "distinct data subjects one user may read in an hour before a HIGH incident" },
    { "gdpr.incident_refusals", INSITE_CFG_INT, "20", 1, 1000000,
      "401/403 answers to one user in an hour before a MEDIUM incident" },
    { "gdpr.incident_topic", INSITE_CFG_STRING, "system_events", 0, 0,
      "Kafka topic of security_incident events (needs a data map's Kafka); \"\" = none" },
    { "gdpr.retention_time", INSITE_CFG_STRING, "03:30", 0, 0,
      "daily retention run, HH:MM UTC (docs/gdpr-retention.md); \"\" = none" },
    { "gdpr.retention_batch", INSITE_CFG_INT, "5000", 1, 1000000,
      "rows deleted per transaction by a retention run" },
    { "gdpr.retention_pause", INSITE_CFG_DURATION, "100ms", 0, 60000,
      "pause between two retention batches" },
};

static const char usage[] = "[verify-receipt FILE PUBKEY | --retention-now [--dry-run]]";

static int health(json_t *checks, void *ud)
{
    gdpr_consent *c = ud;
    int ok;

    pthread_mutex_lock(&c->store->lock);
    ok = gdpr_store_pg(c->store) != NULL;
    pthread_mutex_unlock(&c->store->lock);
    json_object_set_new(checks, "postgresql", json_string(ok ? "ok" : "down"));
    return ok ? 0 : -1;
}

static gdpr_retention *retention_new(insite_config *cfg, gdpr_store *st, insite_metrics *m)
{
    char err[512];
    gdpr_retention_options o = {
        .data_map = insite_config_string(cfg, "gdpr.data_map"), .dsn = st->dsn,
        .time = insite_config_string(cfg, "gdpr.retention_time"),
        .batch = insite_config_int(cfg, "gdpr.retention_batch"),
        .pause_ms = insite_config_duration_ms(cfg, "gdpr.retention_pause"),
        .store = st, .metrics = m,
    };
    gdpr_retention *r = gdpr_retention_new(&o, err, sizeof(err));
    if (r == NULL)
        insite_log_error("%s", err);
    return r;
}

/* --retention-now runs on a thread so the main thread can read SIGTERM from
 * the signalfd (signals are blocked everywhere) and stop it between batches;
 * `done` wakes the main thread when the run returns. */
typedef struct {
    gdpr_retention *r;
    int dry;
    json_t *sum;
    int done[2];
} retention_once;

static void *retention_once_run(void *arg)
{
    retention_once *o = arg;

    o->sum = gdpr_retention_run(o->r, o->dry);
    if (write(o->done[1], "x", 1) != 1)
        insite_log_error("retention: cannot wake the main thread: %s", strerror(errno));
    return NULL;
}

/* Waits for the run, stopping it on SIGTERM/SIGINT; NULL when it failed. */
static json_t *retention_once_wait(insite_runtime *rt, gdpr_retention *r, int dry)
{
    retention_once o = { .r = r, .dry = dry };
    pthread_t t;
    int stopped = 0;

    if (pipe(o.done) != 0) {
        insite_log_error("retention: pipe: %s", strerror(errno));
        return NULL;
    }
    if (pthread_create(&t, NULL, retention_once_run, &o) != 0) {
        insite_log_error("retention: cannot start its thread");
        close(o.done[0]), close(o.done[1]);
        return NULL;
    }
    while (insite_runtime_wait(rt, -1, o.done[0]) != 1) {
        if (rt->draining && !stopped) {
            insite_log_info("retention: stopping between batches (signal)");
            gdpr_retention_stop(r);
            stopped = 1;
        }
    }
    pthread_join(t, NULL);
    close(o.done[0]), close(o.done[1]);
    return o.sum;
}

/* --retention-now [--dry-run]: exit 0 when every policy ran, 1 otherwise
 * (also when a signal cut the run short: its policies resume next run) */
static int retention_now(insite_runtime *rt, insite_config *cfg, int dry)
{
    char err[512];
    gdpr_store st = { .lock = PTHREAD_MUTEX_INITIALIZER, .dsn = insite_config_string(cfg, "pg.dsn") };
    PGconn *pg = insite_pg_connect(st.dsn, err, sizeof(err));
    gdpr_retention *r = NULL;
    json_t *sum = NULL;

    if (pg == NULL || insite_pg_migrate(pg, insite_config_string(cfg, "pg.migrations_dir"), err, sizeof(err)) < 0)
        insite_log_error("postgresql: %s", err);
    else if (!insite_config_string(cfg, "gdpr.data_map")[0])
        insite_log_error("gdpr.data_map is empty: no retention targets");
    else if ((r = retention_new(cfg, &st, NULL)) != NULL && (sum = retention_once_wait(rt, r, dry)) != NULL)
        json_dumpf(sum, stdout, JSON_INDENT(2)), putchar('\n');
    if (pg)
        PQfinish(pg);
    gdpr_retention_free(r);
    int rc = sum && json_integer_value(json_object_get(sum, "failed")) == 0 && !rt->draining ? 0 : 1;
    json_decref(sum);
    return rc;
}

static int serve(insite_runtime *rt, insite_config *cfg)
{
    char err[512];
    char *const *items;
    size_t n;
    int rc = 1;
    insite_metrics *m = insite_metrics_new("gdpr");
    gdpr_store st = { .lock = PTHREAD_MUTEX_INITIALIZER };
    gdpr_consent consent = { .store = &st };
    insite_redis_options ro;
    insite_http *h = NULL;
    insite_kafka *kafka = NULL;
    gdpr_erasure *erasure = NULL;
    gdpr_retention *retention = NULL;
    gdpr_reporter *reporter = NULL;
    gdpr_incidents *incidents = NULL;

    if (m == NULL)
        goto out;
    n = insite_config_list(cfg, "gdpr.consent_types", &items);
    if (gdpr_consent_types_parse(&consent, items, n, err, sizeof(err)) != 0) {
        insite_log_error("%s", err);
        goto out;
    }
    insite_redis_options_from_config(cfg, &ro);
    st.dsn = insite_config_string(cfg, "pg.dsn");
    st.prefix = ro.prefix;
    if ((st.redis = insite_redis_new(&ro)) == NULL)
        goto out;

    /* the schema first: the API must not answer before its tables exist */
    if ((st.pg = insite_pg_open(st.dsn, insite_config_string(cfg, "pg.migrations_dir"),
                                "postgresql")) == NULL)
        goto out;

    consent.changes = insite_metrics_counter(m, "consent_changes", "Consent grants and withdrawals recorded.");
    consent.sync_errors = insite_metrics_counter(m, "consent_sync_errors",
                                                 "Consent states that could not be written to Redis (retried).");
    consent.unsynced = insite_metrics_gauge(m, "consent_unsynced_users",
                                            "Users whose consent state Redis does not have yet.");

    if (insite_config_string(cfg, "gdpr.data_map")[0]) {
        insite_kafka_options ko;
        insite_kafka_options_from_config(cfg, &ko);
        if ((kafka = insite_kafka_new(&ko)) == NULL)
            goto out;
        gdpr_erasure_options eo = {
            .data_map = insite_config_string(cfg, "gdpr.data_map"), .dsn = st.dsn,
            .pseudonym_key = insite_config_string(cfg, "gdpr.pseudonym_key"),
            .signing_key = insite_config_string(cfg, "gdpr.signing_key"),
            .grace_ms = insite_config_duration_ms(cfg, "gdpr.grace_period"),
            .store = &st, .kafka = kafka, .metrics = m,
        };
        if ((erasure = gdpr_erasure_new(&eo, err, sizeof(err))) == NULL) {
            insite_log_error("%s", err);
            goto out;
        }
        if ((retention = retention_new(cfg, &st, m)) == NULL || gdpr_retention_start(retention) != 0)
            goto out;
    } else
        insite_log_warn("gdpr.data_map is empty: erasure requests are refused (503)");

    gdpr_reporter_options rpo = {
        .dsn = st.dsn, .signing_key = insite_config_string(cfg, "gdpr.signing_key"),
        .audit_public_key = insite_config_string(cfg, "gdpr.audit_public_key"), .metrics = m,
    };
    if ((reporter = gdpr_reporter_new(&rpo, err, sizeof(err))) == NULL) {
        insite_log_error("%s", err);
        goto out;
    }

    gdpr_incidents_options io = {
        .dsn = st.dsn, .interval_ms = insite_config_duration_ms(cfg, "gdpr.incident_interval"),
        .medium = (int)insite_config_int(cfg, "gdpr.incident_medium"),
        .high = (int)insite_config_int(cfg, "gdpr.incident_high"),
        .subjects = (int)insite_config_int(cfg, "gdpr.incident_subjects"),
        .refusals = (int)insite_config_int(cfg, "gdpr.incident_refusals"),
        .kafka = kafka, .topic = insite_config_string(cfg, "gdpr.incident_topic"), .metrics = m,
    };
    if ((incidents = gdpr_incidents_new(&io)) == NULL)
        goto out;

    const insite_http_route routes[] = {
        { "GET", "/api/v1/gdpr/deletion-status", gdpr_api_deletion_status, erasure },
        { "POST", "/api/v1/gdpr/delete", gdpr_api_delete, erasure },
        { "DELETE", "/api/v1/gdpr/delete", gdpr_api_delete, erasure },
        { "POST", "/api/v1/gdpr/export", gdpr_api_export, erasure },
        { "GET", "/api/v1/gdpr/export", gdpr_api_export, erasure },
        { "GET", "/api/v1/gdpr/consents", gdpr_api_consents, &consent },
        { "POST", "/api/v1/gdpr/consents", gdpr_api_consents, &consent },
        { "GET", "/api/v1/gdpr/retention", gdpr_api_retention, retention },
        { "PUT", "/api/v1/gdpr/retention", gdpr_api_retention, retention },
        { "GET", "/api/v1/gdpr/compliance-report", gdpr_api_compliance_report, reporter },
    };
    insite_http_options ho = {
        .service = "gdpr", .port = (int)insite_config_int(cfg, "gdpr.http_port"),
        .body_max = (size_t)insite_config_int(cfg, "gdpr.body_max"),
        .body_max_status = 400,     /* issue #14: an oversized body is bad input */
        .routes = routes, .nroutes = sizeof(routes) / sizeof(routes[0]), .metrics = m,
        .health = health, .health_ud = &consent,
        /* handlers share the store under its lock; the report has its own
         * connections, so it holds neither the lock nor the other threads */
        .threads = (unsigned)insite_config_int(cfg, "gdpr.http_threads"),
    };
    if ((h = insite_http_start(&ho)) == NULL)
        goto out;
    insite_log_info("API on 127.0.0.1:%d, %zu consent type(s)", insite_http_port(h), consent.ntypes);

    /* Redis may have lost the hashes (flushed, replaced): republish all */
    int all = 1;
    int every = (int)insite_config_duration_ms(cfg, "gdpr.sync_interval");
    while (!rt->draining) {
        pthread_mutex_lock(&st.lock);
        int left = gdpr_consent_sync(&consent, all);
        pthread_mutex_unlock(&st.lock);
        if (all && left == 0)
            all = 0;
        gdpr_incidents_run(incidents);
        if (erasure && (gdpr_erasure_run(erasure) > 0
                        || gdpr_export_run(erasure, insite_config_duration_ms(cfg, "gdpr.export_ttl")) > 0))
            continue;                   /* more to do: no sleep */
        if (kafka)
            insite_kafka_poll(kafka, 0);
        if (insite_runtime_wait(rt, every, -1) < 0)
            break;
    }
    rc = 0;
out:
    if (h)
        insite_http_stop(h);
    gdpr_retention_free(retention);
    gdpr_reporter_free(reporter);
    gdpr_incidents_free(incidents);
    gdpr_erasure_free(erasure);
    if (kafka)
        insite_kafka_close(kafka);
    gdpr_store_close(&st);
    insite_metrics_free(m);
    return rc;
}

/* 0: serve; 1: --retention-now; 2: --retention-now --dry-run */
typedef struct {
    int retention_now;
} gdpr_mode;

/* verify-receipt needs no config; --retention-now runs with it */
static int args(insite_runtime *rt, void *ud)
{
    gdpr_mode *mode = ud;

    if (rt->argc > 1 && strcmp(rt->argv[1], "verify-receipt") == 0)
        return gdpr_verify_receipt_main(rt->argc - 2, rt->argv + 2, stdout);
    if (rt->argc > 1 && strcmp(rt->argv[1], "--retention-now") == 0
        && (rt->argc == 2 || (rt->argc == 3 && strcmp(rt->argv[2], "--dry-run") == 0))) {
        mode->retention_now = rt->argc - 1;
        return -1;
    }
    if (rt->argc > 1)
        return insite_worker_usage(rt, usage);
    return -1;
}

static int run(insite_runtime *rt, insite_config **cfg, void *ud)
{
    const gdpr_mode *mode = ud;

    if (mode->retention_now)
        return retention_now(rt, *cfg, mode->retention_now == 2);
    return serve(rt, *cfg);
}

int main(int argc, char **argv)
{
    gdpr_mode mode = { 0 };
    const insite_worker_keys keys[] = {
        { insite_pg_config_keys, insite_pg_config_nkeys },
        { insite_redis_config_keys, insite_redis_config_nkeys },
        { insite_kafka_config_keys, insite_kafka_config_nkeys },
        INSITE_WORKER_KEYS(gdpr_keys),
    };
    const insite_worker_options o = {
        .name = "insite-gdpr", .usage = usage, .keys = keys,
        .nkeys = sizeof(keys) / sizeof(keys[0]), .args = args, .run = run, .ud = &mode,
    };
    return insite_worker_main(&o, argc, argv);
}
