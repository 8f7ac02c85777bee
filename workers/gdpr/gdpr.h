/* insite-gdpr: the data subject's rights (docs/gdpr-rights.md).
 *
 *   consent.c   consent ledger in PostgreSQL + the edge's view in Redis
 *   store.c     the worker's PostgreSQL and Redis connections
 *
 * Threads: libmicrohttpd runs the handlers on its own thread, the main loop
 * republishes consent state Redis missed.  Both go through gdpr_store,
 * whose lock serialises every round trip on its PostgreSQL connection (its
 * Redis handle has a lock of its own). */
#ifndef GDPR_H
#define GDPR_H

#include <pthread.h>
#include <stddef.h>
#include <stdio.h>

#include <hiredis/hiredis.h>

#include "redis_publish.h"
#include <jansson.h>
#include <libpq-fe.h>

#include "config.h"
#include "http.h"
#include "metrics.h"

#define GDPR_TYPE_MAX     32    /* consent type: [a-z0-9_]{1,32} */
#define GDPR_VERSION_MAX  32    /* policy version: [A-Za-z0-9._-]{1,32} */
#define GDPR_TYPES_MAX    64    /* the edge keeps a 64-bit mask per user */

typedef struct {
    char name[GDPR_TYPE_MAX + 1];
    char version[GDPR_VERSION_MAX + 1];
} gdpr_consent_type;

/* ---- store.c ---- */

typedef struct {
    const char *dsn;
    const char *prefix;              /* "insite:" */

    pthread_mutex_t lock;
    PGconn *pg;
    insite_redis *redis;             /* consent state and notices, erasure's
                                        keys: routed by slot on a cluster
                                        (redis.cluster), its own lock */
} gdpr_store;

/* The PostgreSQL connection (reconnecting when needed) or NULL (logged
 * once per outage).  Call with the lock held. */
PGconn *gdpr_store_pg(gdpr_store *s);
void gdpr_store_close(gdpr_store *s);

/* ---- consent.c ---- */

typedef struct {
    gdpr_store *store;
    gdpr_consent_type types[GDPR_TYPES_MAX];
    size_t ntypes;
    insite_counter *changes, *sync_errors;
    insite_gauge *unsynced;
} gdpr_consent;

/* Parses "type=version" items (gdpr.consent_types).  0, or -1 with the
 * reason in err. */
int gdpr_consent_types_parse(gdpr_consent *c, char *const *items, size_t n,
                             char *err, size_t errlen);
const gdpr_consent_type *gdpr_consent_type_find(const gdpr_consent *c,
                                                const char *name);

/* GET /api/v1/gdpr/consents, POST /api/v1/gdpr/consents,
 * POST /api/v1/gdpr/consents/revoke-all */
int gdpr_api_consents(const insite_http_request *req, json_t **reply, void *ud);

/* The Redis key of a user's granted types: <prefix>consent:{<user>}, and the
 * channel every change is announced on: <prefix>consent:changed. */
int gdpr_consent_key(const gdpr_store *s, const char *user, char *out, size_t len);
#define GDPR_CONSENT_CHANNEL "consent:changed"

/* Writes the user's current grants (for the current policy versions) to
 * Redis and announces it.  Call with the store lock held.  0 or -1. */
int gdpr_consent_publish(gdpr_consent *c, const char *user);
/* Republishes users left in user_consent_sync (all users when `all`).
 * Returns the number still pending, or -1 when a store is down. */
int gdpr_consent_sync(gdpr_consent *c, int all);

#endif

/* ---- erasure.c: the data map and the erasure job ---- */

typedef struct gdpr_erasure gdpr_erasure;

typedef struct {
    const char *data_map;            /* path; "" = erasure off */
    const char *dsn;                 /* our database ("" in the map) */
    const char *pseudonym_key;       /* file with the HMAC key */
    const char *signing_key;         /* Ed25519 PEM for receipts */
    long long grace_ms;
    gdpr_store *store;               /* Redis settings, our PostgreSQL */
    const char *kafka_bootstrap;     /* NULL: no Kafka target */
    void *kafka;                     /* insite_kafka * */
    insite_metrics *metrics;
} gdpr_erasure_options;

/* Loads and checks the data map and keys.  NULL with the reason in err. */
gdpr_erasure *gdpr_erasure_new(const gdpr_erasure_options *o, char *err, size_t errlen);
void gdpr_erasure_free(gdpr_erasure *e);
/* One step of the oldest due request (main thread).  1 when it did work,
 * 0 when idle, -1 on a store outage (retried later). */
int gdpr_erasure_run(gdpr_erasure *e);
/* POST /api/v1/gdpr/delete, DELETE /api/v1/gdpr/delete/{id} */
int gdpr_api_delete(const insite_http_request *req, json_t **reply, void *ud);
/* GET /api/v1/gdpr/deletion-status/{id} */
int gdpr_api_deletion_status(const insite_http_request *req, json_t **reply, void *ud);
/* POST /api/v1/gdpr/export, GET /api/v1/gdpr/export/{id} */
int gdpr_api_export(const insite_http_request *req, json_t **reply, void *ud);
/* Builds the oldest pending export, deletes expired archives.  1 when it
 * built one, 0 when idle, -1 on an outage. */
int gdpr_export_run(gdpr_erasure *e, long long ttl_ms);
/* insite-gdpr verify-receipt FILE PUBLIC_KEY_PEM */
int gdpr_verify_receipt_main(int argc, char **argv, FILE *out);
/* HMAC-SHA256(key, user) as "psn:<32 hex>" */
int gdpr_pseudonym(const gdpr_erasure *e, const char *user, char out[40]);

/* ---- retention.c: retention policies (docs/gdpr-retention.md) ---- */

typedef struct gdpr_retention gdpr_retention;

typedef struct {
    const char *data_map;            /* the "retention" targets */
    const char *dsn;                 /* our database */
    const char *time;                /* "HH:MM" UTC, "" = no schedule */
    long long batch, pause_ms;
    gdpr_store *store;               /* the API's connection */
    insite_metrics *metrics;         /* NULL: none */
} gdpr_retention_options;

/* "HH:MM" -> minute of the day, "" -> -1.  0 or -1. */
int gdpr_retention_time_parse(const char *s, int *minute);
gdpr_retention *gdpr_retention_new(const gdpr_retention_options *o, char *err, size_t errlen);
/* The daily schedule on a thread of its own (none when no time is set). */
int gdpr_retention_start(gdpr_retention *r);
/* Asks a run (scheduled or gdpr_retention_run() on another thread) to stop
 * between batches; a policy cut short stays 'running' and is resumed by the
 * next run.  Safe from any thread. */
void gdpr_retention_stop(gdpr_retention *r);
/* Stops the schedule (as above), joins its thread and frees. */
void gdpr_retention_free(gdpr_retention *r);
/* One run over every active policy (dry: count only, write nothing):
 * {"policies":[{data_type,target,retention_days,cutoff,rows,status,resumed[,error]}],
 *  "failed":N,"dry_run":bool}, or NULL when our database or the map is unusable. */
json_t *gdpr_retention_run(gdpr_retention *r, int dry);
/* GET /api/v1/gdpr/retention/policies, PUT .../policies/{data_type},
 * GET /api/v1/gdpr/retention/runs (gdpr:admin) */
int gdpr_api_retention(const insite_http_request *req, json_t **reply, void *ud);

/* ---- report.c: the compliance report (report.h) ---- */

typedef struct gdpr_reporter gdpr_reporter;

typedef struct {
    const char *dsn;
    const char *signing_key;         /* gdpr.signing_key ("" = unsigned) */
    const char *audit_public_key;    /* auditd's checkpoint key ("" = not checked) */
    insite_metrics *metrics;
} gdpr_reporter_options;

gdpr_reporter *gdpr_reporter_new(const gdpr_reporter_options *o, char *err, size_t errlen);
void gdpr_reporter_free(gdpr_reporter *rp);
/* GET /api/v1/gdpr/compliance-report (gdpr:admin) */
int gdpr_api_compliance_report(const insite_http_request *req, json_t **reply, void *ud);

/* ---- incidents.c: incidents detected as audit records arrive ---- */

typedef struct gdpr_incidents gdpr_incidents;

typedef struct {
    const char *dsn;
    long long interval_ms;           /* gdpr.incident_interval */
    int medium, high;                /* accesses per user and hour */
    int subjects, refusals;          /* distinct data subjects, 401/403 answers */
    void *kafka;                     /* insite_kafka *, NULL: no message */
    const char *topic;               /* gdpr.incident_topic */
    insite_metrics *metrics;
} gdpr_incidents_options;

gdpr_incidents *gdpr_incidents_new(const gdpr_incidents_options *o);
void gdpr_incidents_free(gdpr_incidents *d);
/* One look when gdpr.incident_interval has passed (main thread): 1 when it
 * looked, 0 when not yet due, -1 when PostgreSQL is down (logged). */
int gdpr_incidents_run(gdpr_incidents *d);
