/* insite-gdpr: the data subject's rights (docs/gdpr-rights.md).
 *
 *   consent.c   consent ledger in PostgreSQL + the edge's view in Redis
 *   store.c     the worker's PostgreSQL and Redis connections
 *
 * Threads: libmicrohttpd runs the handlers on its own thread, the main loop
 * republishes consent state Redis missed.  Both go through gdpr_store,
 * whose lock serialises every PostgreSQL and Redis round trip. */
#ifndef GDPR_H
#define GDPR_H

#include <pthread.h>
#include <stddef.h>

#include <hiredis/hiredis.h>
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
    const char *redis_host;
    const char *redis_password;
    const char *prefix;              /* "insite:" */
    int redis_port;
    int connect_timeout_ms, command_timeout_ms;

    pthread_mutex_t lock;
    PGconn *pg;
    redisContext *redis;
} gdpr_store;

/* Both return the connection (reconnecting when needed) or NULL (logged
 * once per outage).  Call with the lock held. */
PGconn *gdpr_store_pg(gdpr_store *s);
redisContext *gdpr_store_redis(gdpr_store *s);
/* Drops the Redis connection after an I/O error. */
void gdpr_store_redis_reset(gdpr_store *s);
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
