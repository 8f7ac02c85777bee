/* Consent (plan 5.3): the ledger in PostgreSQL and the edge's view in Redis.
 *
 *   GET  /api/v1/gdpr/consents              the caller's state per type
 *   POST /api/v1/gdpr/consents              {"consent_type","granted"}
 *   POST /api/v1/gdpr/consents/revoke-all   withdraws every grant
 *
 * PostgreSQL is the source of truth: a change is one statement that appends
 * to user_consent_events, updates user_consents and marks the user in
 * user_consent_sync.  Then the user's grants go to Redis (a hash
 * <prefix>consent:{<user>} type -> policy version, written in one MULTI),
 * then the user id is announced on <prefix>consent:changed (PUBLISH, or
 * SPUBLISH to the channel's shard on a Redis Cluster), which nginx workers
 * use to drop cached decisions.  Only when Redis has both (and, with
 * redis.publish_replicas, its replicas the hash) is the sync mark removed;
 * the main loop retries marked users, so a withdrawal made while Redis is
 * down reaches the edge when Redis is back. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gdpr.h"
#include "log.h"

#define TS(col) "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"
#define UA_MAX 512
#define IP_MAX 64

static int valid_chars(const char *s, size_t max, const char *extra)
{
    size_t n = 0;
    for (; s[n]; n++)
        if (!(islower((unsigned char)s[n]) || isdigit((unsigned char)s[n])
              || (extra && strchr(extra, s[n]))))
            return 0;
    return n >= 1 && n <= max;
}

int gdpr_consent_types_parse(gdpr_consent *c, char *const *items, size_t n,
                             char *err, size_t errlen)
{
    c->ntypes = 0;
    if (n == 0 || n > GDPR_TYPES_MAX) {
        snprintf(err, errlen, "gdpr.consent_types: 1..%d types", GDPR_TYPES_MAX);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        const char *eq = strchr(items[i], '=');
        gdpr_consent_type *t = &c->types[c->ntypes];
        size_t nl = eq ? (size_t)(eq - items[i]) : 0;
        if (eq == NULL || nl == 0 || nl > GDPR_TYPE_MAX) {
            snprintf(err, errlen, "gdpr.consent_types: \"%s\" is not type=version", items[i]);
            return -1;
        }
        memcpy(t->name, items[i], nl);
        t->name[nl] = '\0';
        snprintf(t->version, sizeof(t->version), "%s", eq + 1);
        if (!valid_chars(t->name, GDPR_TYPE_MAX, "_")
            || strlen(eq + 1) > GDPR_VERSION_MAX
            || !valid_chars(t->version, GDPR_VERSION_MAX, "._-ABCDEFGHIJKLMNOPQRSTUVWXYZ")) {
            snprintf(err, errlen, "gdpr.consent_types: \"%s\": type [a-z0-9_]{1,32}, "
                     "version [A-Za-z0-9._-]{1,32}", items[i]);
            return -1;
        }
        if (gdpr_consent_type_find(c, t->name)) {
            snprintf(err, errlen, "gdpr.consent_types: \"%s\" listed twice", t->name);
            return -1;
        }
        c->ntypes++;
    }
    return 0;
}

const gdpr_consent_type *gdpr_consent_type_find(const gdpr_consent *c, const char *name)
{
    for (size_t i = 0; i < c->ntypes; i++)
        if (strcmp(c->types[i].name, name) == 0)
            return &c->types[i];
    return NULL;
}

int gdpr_consent_key(const gdpr_store *s, const char *user, char *out, size_t len)
{
    int n = snprintf(out, len, "%sconsent:{%s}", s->prefix, user);
    return n > 0 && (size_t)n < len ? 0 : -1;
}

/* ---- Redis ---- */

/* The user's state first, one MULTI on the key's slot (DEL, HSET of the
 * granted types), then the notice: PUBLISH, or SPUBLISH on the channel's
 * shard on a cluster (key and channel are in different slots).  A reader
 * that misses the notice (its subscription was down) drops its cache and
 * reads the new state; a notice that fails leaves the user marked for the
 * main loop, which writes and announces it again.
 *
 * With redis.publish_replicas N the state counts as written only once N
 * replicas hold it (WAIT, insite_redis_run_replicated()), so a failover
 * right after cannot lose it.  Fewer in time: the master has it, so the
 * notice still goes out (a withdrawal is enforced now), but this is a
 * failure (-1): the user stays marked and the main loop writes and waits
 * again. */
int gdpr_consent_publish(gdpr_consent *c, const char *user)
{
    gdpr_store *s = c->store;
    const char *p[1] = { user };
    const char *argv[2 + 2 * GDPR_TYPES_MAX];
    char key[1024], chan[256], err[512];
    const char *del[2], *pub[3];
    insite_redis_cmd cmds[2];
    redisReply *rep;
    PGconn *pg;
    PGresult *r;
    int argc = 2, unreplicated = 0;

    if ((pg = gdpr_store_pg(s)) == NULL || s->redis == NULL)
        return -1;
    if (gdpr_consent_key(s, user, key, sizeof(key)) != 0)
        return -1;
    snprintf(chan, sizeof(chan), "%s" GDPR_CONSENT_CHANNEL, s->prefix);
    r = PQexecParams(pg, "SELECT consent_type, policy_version FROM user_consents"
                     " WHERE user_id = $1 AND granted", 1, NULL, p, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        insite_log_warn("consent publish: %s", PQerrorMessage(pg));
        PQclear(r);
        return -1;
    }
    argv[0] = "HSET";
    argv[1] = key;
    for (int i = 0; i < PQntuples(r); i++) {
        const gdpr_consent_type *t = gdpr_consent_type_find(c, PQgetvalue(r, i, 0));
        /* a grant of an older policy version does not count at the edge */
        if (t && strcmp(t->version, PQgetvalue(r, i, 1)) == 0) {
            argv[argc++] = t->name;
            argv[argc++] = t->version;
        }
    }
    del[0] = "DEL";
    del[1] = key;
    cmds[0] = (insite_redis_cmd) { 2, del, NULL };
    cmds[1] = (insite_redis_cmd) { argc, argv, NULL };
    rep = insite_redis_run_replicated(s->redis, key, strlen(key), cmds, argc > 2 ? 2 : 1,
                                      &unreplicated, err, sizeof(err));
    PQclear(r);          /* argv pointed into it */
    if (rep == NULL && !unreplicated) {
        insite_log_warn("consent publish: redis: %s", err);
        return -1;
    }
    if (rep == NULL)     /* the master has it: announced, but kept marked */
        insite_log_warn("consent publish: redis: %s: announcing it, and retrying", err);
    else
        freeReplyObject(rep);

    pub[0] = insite_redis_publish_command(s->redis);
    pub[1] = chan;
    pub[2] = user;
    cmds[0] = (insite_redis_cmd) { 3, pub, NULL };
    if ((rep = insite_redis_run(s->redis, chan, strlen(chan), cmds, 1,
                                err, sizeof(err))) == NULL) {
        insite_log_warn("consent publish: redis: %s %s: %s", pub[0], chan, err);
        return -1;
    }
    freeReplyObject(rep);
    return unreplicated ? -1 : 0;
}

static void sync_done(gdpr_store *s, const char *user)
{
    const char *p[1] = { user };
    PGresult *r = PQexecParams(s->pg, "DELETE FROM user_consent_sync WHERE user_id = $1",
                               1, NULL, p, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_COMMAND_OK)
        insite_log_warn("consent sync: %s", PQerrorMessage(s->pg));
    PQclear(r);
}

/* Redis keeps the consent hashes only as long as it keeps its data: a
 * restarted or flushed Redis has lost them, and its users would be refused.
 * On a cluster that happens per master (one that restarts empty loses the
 * hashes of its slots only), so every master holds a marker,
 * <prefix>consent:synced:{<tag>} with the hash tag of one of its slots
 * (insite_redis_each_master; a single Redis is the one master), written
 * after a full republish: one missing = republish every user.  A reshard
 * that moves the slot of a master's marker costs one more full republish. */
typedef struct {
    gdpr_store *s;
    int set;                /* write the markers; else count missing ones */
    int missing;
} marker_walk;

static int marker_on_master(const insite_redis_master *m, void *arg, char *err, size_t errlen)
{
    marker_walk *w = arg;
    char key[128];
    const char *argv[3] = { w->set ? "SET" : "EXISTS", key, "1" };
    insite_redis_cmd one = { w->set ? 3 : 2, argv, NULL };
    redisReply *rep;

    snprintf(key, sizeof(key), "%sconsent:synced:{%s}", w->s->prefix, m->tag);
    if ((rep = insite_redis_master_run(w->s->redis, m, key, strlen(key), &one,
                                       err, errlen)) == NULL)
        return -1;
    if (!w->set && rep->type == REDIS_REPLY_INTEGER && rep->integer == 0) {
        insite_log_info("consent: Redis %s has no consent state (%s missing): "
                        "republishing every user", m->name, key);
        w->missing++;
    }
    freeReplyObject(rep);
    return 0;
}

/* set: writes every master's marker (0); else 1 when one is missing, 0
 * when none is; -1 when Redis failed (logged) */
static int sync_markers(gdpr_store *s, int set)
{
    marker_walk w = { s, set, 0 };
    char err[512];

    if (insite_redis_each_master(s->redis, marker_on_master, &w, err, sizeof(err)) != 0) {
        insite_log_warn("consent: redis: %s the sync markers: %s",
                        set ? "writing" : "reading", err);
        return -1;
    }
    return w.missing > 0;
}

int gdpr_consent_sync(gdpr_consent *c, int all)
{
    gdpr_store *s = c->store;
    PGresult *r;
    int left = 0;

    if (gdpr_store_pg(s) == NULL)
        return -1;
    if (!all && (all = sync_markers(s, 0)) < 0)
        return -1;
    r = PQexec(s->pg, all ? "SELECT DISTINCT user_id FROM user_consents"
                          : "SELECT user_id FROM user_consent_sync ORDER BY since LIMIT 500");
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        insite_log_warn("consent sync: %s", PQerrorMessage(s->pg));
        PQclear(r);
        return -1;
    }
    for (int i = 0; i < PQntuples(r); i++) {
        if (gdpr_consent_publish(c, PQgetvalue(r, i, 0)) != 0) {
            insite_counter_inc(c->sync_errors);
            left = PQntuples(r) - i;
            break;
        }
        if (!all)
            sync_done(s, PQgetvalue(r, i, 0));
    }
    PQclear(r);
    if (left == 0 && all && sync_markers(s, 1) != 0)
        left = 1;
    if (left == 0 && !all) {
        r = PQexec(s->pg, "SELECT count(*) FROM user_consent_sync");
        if (PQresultStatus(r) == PGRES_TUPLES_OK)
            left = atoi(PQgetvalue(r, 0, 0));
        PQclear(r);
    }
    insite_gauge_set(c->unsynced, left);
    return left;
}

/* ---- the API ---- */

/* The client's address as nginx saw it: X-Real-IP, else the first hop of
 * X-Forwarded-For; only address characters, so a header cannot smuggle
 * text into the ledger. */
static void client_ip(const insite_http_request *req, char *out, size_t len)
{
    const char *v = insite_http_header(req, "X-Real-IP");
    size_t n;

    if (v == NULL || !*v)
        v = insite_http_header(req, "X-Forwarded-For");
    out[0] = '\0';
    if (v == NULL)
        return;
    while (*v == ' ')
        v++;
    n = strspn(v, "0123456789abcdefABCDEF.:");
    if (n == 0 || n >= len || n > IP_MAX)
        return;
    memcpy(out, v, n);
    out[n] = '\0';
}

static void user_agent(const insite_http_request *req, char *out, size_t len)
{
    const char *v = insite_http_header(req, "User-Agent");
    size_t i = 0;
    for (; v && v[i] && i + 1 < len; i++)
        out[i] = (v[i] >= 0x20 && v[i] < 0x7f) ? v[i] : '?';
    out[i] = '\0';
}

static int unavailable(json_t **reply)
{
    *reply = insite_http_error("unavailable", "the consent store is unavailable, try again");
    return 503;
}

static int db_error(gdpr_store *s, PGresult *r, const char *what, json_t **reply)
{
    insite_log_warn("consent %s: %s", what, PQresultErrorMessage(r));
    PQclear(r);
    return unavailable(reply);
}

static int get_consents(gdpr_consent *c, const char *user, json_t **reply)
{
    gdpr_store *s = c->store;
    const char *p[1] = { user };
    PGresult *r;
    json_t *arr;

    if (gdpr_store_pg(s) == NULL)
        return unavailable(reply);
    r = PQexecParams(s->pg, "SELECT consent_type, granted, policy_version, " TS("updated_at")
                     " FROM user_consents WHERE user_id = $1", 1, NULL, p, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        return db_error(s, r, "read", reply);
    arr = json_array();
    for (size_t i = 0; i < c->ntypes; i++) {
        const gdpr_consent_type *t = &c->types[i];
        json_t *o = json_pack("{s:s, s:b, s:n, s:s, s:n, s:b}", "consent_type", t->name,
                              "granted", 0, "policy_version", "current_policy_version", t->version,
                              "updated_at", "current", 0);
        for (int k = 0; k < PQntuples(r); k++) {
            if (strcmp(PQgetvalue(r, k, 0), t->name) != 0)
                continue;
            int g = PQgetvalue(r, k, 1)[0] == 't';
            json_object_set_new(o, "granted", json_boolean(g));
            json_object_set_new(o, "policy_version", json_string(PQgetvalue(r, k, 2)));
            json_object_set_new(o, "updated_at", json_string(PQgetvalue(r, k, 3)));
            /* what the edge enforces: granted for the current policy */
            json_object_set_new(o, "current",
                                json_boolean(g && strcmp(PQgetvalue(r, k, 2), t->version) == 0));
        }
        json_array_append_new(arr, o);
    }
    PQclear(r);
    *reply = json_pack("{s:o}", "consents", arr);
    return 200;
}

/* after a committed change: Redis now, or the main loop later */
static int edge_sync(gdpr_consent *c, const char *user)
{
    insite_counter_inc(c->changes);
    if (gdpr_consent_publish(c, user) != 0) {
        insite_counter_inc(c->sync_errors);
        insite_log_warn("consent of a user recorded, not in Redis (or not on its replicas) yet: retried");
        return 0;
    }
    sync_done(c->store, user);
    return 1;
}

static int post_consent(gdpr_consent *c, const insite_http_request *req, const char *user,
                        json_t **reply)
{
    gdpr_store *s = c->store;
    json_t *jt = json_object_get(req->body, "consent_type");
    json_t *jg = json_object_get(req->body, "granted");
    const gdpr_consent_type *t;
    char ip[IP_MAX + 1], ua[UA_MAX + 1];
    const char *p[6];
    PGresult *r;

    if (!json_is_object(req->body) || !json_is_string(jt) || !json_is_boolean(jg)) {
        *reply = insite_http_error("bad_request",
                                   "expected {\"consent_type\": string, \"granted\": boolean}");
        return 400;
    }
    if ((t = gdpr_consent_type_find(c, json_string_value(jt))) == NULL) {
        *reply = insite_http_error("unknown_consent_type", "consent_type is not one of the "
                                   "configured types (GET /api/v1/gdpr/consents lists them)");
        return 400;
    }
    client_ip(req, ip, sizeof(ip));
    user_agent(req, ua, sizeof(ua));
    p[0] = user;
    p[1] = t->name;
    p[2] = json_is_true(jg) ? "t" : "f";
    p[3] = t->version;
    p[4] = ip[0] ? ip : NULL;
    p[5] = ua[0] ? ua : NULL;
    if (gdpr_store_pg(s) == NULL)
        return unavailable(reply);
    r = PQexecParams(s->pg,
        "WITH e AS (INSERT INTO user_consent_events"
        "   (user_id, consent_type, granted, policy_version, ip, user_agent)"
        "   VALUES ($1, $2, $3, $4, $5, $6) RETURNING created_at),"
        " c AS (INSERT INTO user_consents"
        "   (user_id, consent_type, granted, policy_version, ip, user_agent, updated_at)"
        "   SELECT $1, $2, $3, $4, $5, $6, created_at FROM e"
        "   ON CONFLICT (user_id, consent_type) DO UPDATE SET granted = EXCLUDED.granted,"
        "   policy_version = EXCLUDED.policy_version, ip = EXCLUDED.ip,"
        "   user_agent = EXCLUDED.user_agent, updated_at = EXCLUDED.updated_at),"
        " s AS (INSERT INTO user_consent_sync (user_id) VALUES ($1) ON CONFLICT DO NOTHING)"
        " SELECT " TS("created_at") " FROM e", 6, NULL, p, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1)
        return db_error(s, r, "write", reply);
    *reply = json_pack("{s:s, s:b, s:s, s:s}", "consent_type", t->name,
                       "granted", json_is_true(jg), "policy_version", t->version,
                       "updated_at", PQgetvalue(r, 0, 0));
    PQclear(r);
    json_object_set_new(*reply, "enforced_at_edge", json_boolean(edge_sync(c, user)));
    return 200;
}

static int revoke_all(gdpr_consent *c, const insite_http_request *req, const char *user,
                      json_t **reply)
{
    gdpr_store *s = c->store;
    char ip[IP_MAX + 1], ua[UA_MAX + 1];
    const char *p[3];
    PGresult *r;
    json_t *arr;

    client_ip(req, ip, sizeof(ip));
    user_agent(req, ua, sizeof(ua));
    p[0] = user;
    p[1] = ip[0] ? ip : NULL;
    p[2] = ua[0] ? ua : NULL;
    if (gdpr_store_pg(s) == NULL)
        return unavailable(reply);
    r = PQexecParams(s->pg,
        "WITH g AS (SELECT consent_type, policy_version FROM user_consents"
        "   WHERE user_id = $1 AND granted FOR UPDATE),"
        " e AS (INSERT INTO user_consent_events"
        "   (user_id, consent_type, granted, policy_version, ip, user_agent, source)"
        "   SELECT $1, consent_type, false, policy_version, $2, $3, 'revoke-all' FROM g"
        "   RETURNING consent_type, created_at),"
        " u AS (UPDATE user_consents c SET granted = false, ip = $2, user_agent = $3,"
        "   updated_at = now() FROM g WHERE c.user_id = $1 AND c.consent_type = g.consent_type),"
        " s AS (INSERT INTO user_consent_sync (user_id) VALUES ($1) ON CONFLICT DO NOTHING)"
        " SELECT consent_type FROM e ORDER BY 1", 3, NULL, p, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        return db_error(s, r, "revoke-all", reply);
    arr = json_array();
    for (int i = 0; i < PQntuples(r); i++)
        json_array_append_new(arr, json_string(PQgetvalue(r, i, 0)));
    PQclear(r);
    *reply = json_pack("{s:o}", "revoked", arr);
    json_object_set_new(*reply, "enforced_at_edge", json_boolean(edge_sync(c, user)));
    return 200;
}

int gdpr_api_consents(const insite_http_request *req, json_t **reply, void *ud)
{
    gdpr_consent *c = ud;
    const char *user = insite_http_user(req);
    int status;

    if (user == NULL) {
        *reply = insite_http_error("unauthorized", "no authenticated user (X-User-Id)");
        return 401;
    }
    if (strlen(user) > 256) {
        *reply = insite_http_error("bad_request", "user id longer than 256 bytes");
        return 400;
    }
    pthread_mutex_lock(&c->store->lock);
    if (req->rest[0] == '\0' && strcmp(req->method, "GET") == 0)
        status = get_consents(c, user, reply);
    else if (req->rest[0] == '\0' && strcmp(req->method, "POST") == 0)
        status = post_consent(c, req, user, reply);
    else if (strcmp(req->rest, "/revoke-all") == 0 && strcmp(req->method, "POST") == 0)
        status = revoke_all(c, req, user, reply);
    else if (req->rest[0] == '\0' || strcmp(req->rest, "/revoke-all") == 0) {
        *reply = insite_http_error("method_not_allowed", "method not allowed here");
        status = 405;
    } else {
        *reply = insite_http_error("not_found", "no such resource");
        status = 404;
    }
    pthread_mutex_unlock(&c->store->lock);
    return status;
}
