/* insite-auditd: the GDPR audit shipper.
 *
 *   insite-auditd [-c FILE]                   tail, verify and ship the
 *                                             journals; HTTP API
 *   insite-auditd verify PATH...              check journal files or
 *                                             directories offline
 *   insite-auditd verify-checkpoints DIGEST PUBKEY
 *                                             check a digest file's
 *                                             signatures and links
 *
 * docs/gdpr.md: the journal format, guarantees and operations. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "auditd.h"
#include "clock.h"
#include "kafka_lag.h"
#include "log.h"
#include "pg.h"
#include "runtime.h"
#include "worker.h"

static const insite_config_key auditd_keys[] = {
    { "auditd.journal_dir", INSITE_CFG_STRING, "/var/lib/insite/audit", 0, 0,
      "the nginx journal directory (insite_gdpr_journal)" },
    { "auditd.source", INSITE_CFG_STRING, "", 0, 0,
      "this journal's name in PostgreSQL (\"\" = the host name)" },
    { "auditd.http_port", INSITE_CFG_INT, "8084", 0, 65535,
      "HTTP API port on 127.0.0.1 (0 = any free port)" },
    { "auditd.poll_interval", INSITE_CFG_DURATION, "200ms", 10, 60000,
      "how often the journals are read when idle" },
    { "auditd.batch_size", INSITE_CFG_INT, "5000", 1, 1000000,
      "records per PostgreSQL transaction at most" },
    { "auditd.retention", INSITE_CFG_DURATION, "7d", 0, 0,
      "shipped journal files older than this are deleted (\"0\" = at once)" },
    { "auditd.keep_shipped", INSITE_CFG_BOOL, "false", 0, 0,
      "never delete shipped journal files" },
    { "auditd.checkpoint_interval", INSITE_CFG_DURATION, "1h", 1000, 2592000000.0,
      "how often a signed checkpoint of the chain heads is made" },
    { "auditd.signing_key", INSITE_CFG_STRING, "", 0, 0,
      "Ed25519 private key (PEM) for checkpoints; \"\" = no checkpoints" },
    { "auditd.digest_dir", INSITE_CFG_STRING, "/var/lib/insite/audit-digests", 0, 0,
      "where checkpoints-<source>.jsonl is written" },
    { "auditd.kafka", INSITE_CFG_BOOL, "false", 0, 0,
      "also produce each record to Kafka user_events (kafka.* settings)" },
    { "auditd.pseudonym_key", INSITE_CFG_STRING, "", 0, 0,
      "the key file of nginx's insite_gdpr_pseudonym_key: the API finds a user's"
      " pseudonymous records too (\"\" = clear ids only)" },
};

static const char usage[] = "[verify PATH... | verify-checkpoints DIGEST PUBKEY]";

static int serve(insite_runtime *rt, insite_config *cfg)
{
    char host[256] = "localhost";
    int rc = 1;
    insite_metrics *m = insite_metrics_new("auditd");
    auditd_shipper s = { 0 };
    auditd_checkpointer cp = { 0 };
    auditd_api api = { .lock = PTHREAD_MUTEX_INITIALIZER };
    insite_http *h = NULL;
    insite_kafka_lag_view *lag = NULL;
    int lag_failed = 0;

    gethostname(host, sizeof(host) - 1);
    s.dir = insite_config_string(cfg, "auditd.journal_dir");
    s.source = insite_config_string(cfg, "auditd.source");
    if (s.source[0] == '\0')
        s.source = host;
    s.dsn = api.dsn = insite_config_string(cfg, "pg.dsn");
    s.migrations_dir = insite_config_string(cfg, "pg.migrations_dir");
    s.batch_size = (int)insite_config_int(cfg, "auditd.batch_size");
    s.retention_ms = insite_config_bool(cfg, "auditd.keep_shipped") ? -1
                     : insite_config_duration_ms(cfg, "auditd.retention");
    s.metrics = m;
    if (m == NULL || auditd_shipper_init(&s) != 0)
        goto out;
    const char *psn_key = insite_config_string(cfg, "auditd.pseudonym_key");
    if (psn_key[0]) {
        int n = insite_gdpr_pseudonym_key_read(psn_key, api.psn_key, sizeof(api.psn_key));
        if (n < 0) {
            insite_log_error("auditd.pseudonym_key %s: %s", psn_key,
                             errno == EINVAL ? "at least 16 bytes of secret" : strerror(errno));
            goto out;
        }
        api.psn_key_len = (size_t)n;
    }

    if (insite_config_bool(cfg, "auditd.kafka")) {
        insite_kafka_options ko;
        insite_kafka_options_from_config(cfg, &ko);
        ko.metrics = m;     /* insite_kafka_* producer metrics */
        if ((s.kafka = insite_kafka_new(&ko)) == NULL)
            goto out;
    }
    /* the lag view of groups it does not run (kafka_lag.h) lives here */
    if ((lag = insite_kafka_lag_view_start(cfg, m, &lag_failed)) == NULL && lag_failed)
        goto out;
    cp.key_path = insite_config_string(cfg, "auditd.signing_key");
    cp.digest_dir = insite_config_string(cfg, "auditd.digest_dir");
    cp.source = s.source;
    cp.made = insite_metrics_counter(m, "checkpoints", "Signed checkpoints made.");
    if (cp.key_path[0] && auditd_checkpoint_init(&cp) != 0)
        goto out;
    if (!cp.key_path[0])
        insite_log_warn("auditd.signing_key is empty: no signed checkpoints");

    const insite_http_route routes[] = {
        { "GET", "/api/v1/gdpr/audit-trail", auditd_api_trail, &api },
        { "GET", "/api/v1/gdpr/suspicious-activity", auditd_api_suspicious, &api },
    };
    insite_http_options ho = {
        .service = "auditd", .port = (int)insite_config_int(cfg, "auditd.http_port"),
        .routes = routes, .nroutes = 2, .metrics = m,
    };
    if ((h = insite_http_start(&ho)) == NULL)
        goto out;
    insite_log_info("shipping %s as source \"%s\"; API on 127.0.0.1:%d", s.dir, s.source,
                    insite_http_port(h));

    int poll = (int)insite_config_duration_ms(cfg, "auditd.poll_interval");
    long long every = insite_config_duration_ms(cfg, "auditd.checkpoint_interval");
    int64_t next_cp = insite_clock_mono_ms() + every;
    while (!rt->draining) {
        int n = auditd_ship_once(&s);
        if (s.kafka)
            insite_kafka_poll(s.kafka, 0);
        if (cp.pkey && s.pg && insite_clock_mono_ms() >= next_cp) {
            if (auditd_checkpoint(&cp, s.pg) > 0)
                next_cp = insite_clock_mono_ms() + every;
            else
                next_cp = insite_clock_mono_ms() + 1000;
        }
        if (n < s.batch_size && insite_runtime_wait(rt, poll, -1) < 0)
            break;
    }
    rc = 0;
out:
    if (h)
        insite_http_stop(h);
    insite_kafka_lag_view_stop(lag);
    if (s.kafka)
        insite_kafka_close(s.kafka);
    auditd_checkpoint_close(&cp);
    auditd_shipper_close(&s);
    auditd_api_close(&api);
    insite_metrics_free(m);
    return rc;
}

/* verify and verify-checkpoints need no config */
static int args(insite_runtime *rt, void *ud)
{
    (void)ud;
    if (rt->argc > 1 && strcmp(rt->argv[1], "verify") == 0)
        return auditd_verify_main(rt->argc - 2, rt->argv + 2, stdout);
    if (rt->argc > 1 && strcmp(rt->argv[1], "verify-checkpoints") == 0)
        return auditd_verify_checkpoints_main(rt->argc - 2, rt->argv + 2, stdout);
    if (rt->argc > 1)
        return insite_worker_usage(rt, usage);
    return -1;
}

static int run(insite_runtime *rt, insite_config **cfg, void *ud)
{
    (void)ud;
    return serve(rt, *cfg);
}

int main(int argc, char **argv)
{
    const insite_worker_keys keys[] = {
        { insite_pg_config_keys, insite_pg_config_nkeys },
        { insite_kafka_config_keys, insite_kafka_config_nkeys },
        { insite_kafka_lag_config_keys, insite_kafka_lag_config_nkeys },
        INSITE_WORKER_KEYS(auditd_keys),
    };
    const insite_worker_options o = {
        .name = "insite-auditd", .usage = usage, .keys = keys,
        .nkeys = sizeof(keys) / sizeof(keys[0]), .args = args, .run = run,
    };
    return insite_worker_main(&o, argc, argv);
}
