/* The HTTP API: the audit trail and suspicious-activity detection.
 *
 *   GET /api/v1/gdpr/audit-trail?user_id&start_date&end_date&limit
 *   GET /api/v1/gdpr/suspicious-activity?user_id
 *
 * One PostgreSQL connection of its own, reconnected on demand. */
#include <stdlib.h>
#include <string.h>

#include "auditd.h"
#include "log.h"
#include "pg.h"

const char *auditd_suspicion_level(long long n)
{
    return n > 100 ? "HIGH" : n > 50 ? "MEDIUM" : NULL;
}

static PGconn *acquire(auditd_api *a)
{
    char err[512];
    pthread_mutex_lock(&a->lock);
    if (a->pg && PQstatus(a->pg) != CONNECTION_OK) {
        PQfinish(a->pg);
        a->pg = NULL;
    }
    if (a->pg == NULL && (a->pg = insite_pg_connect(a->dsn, err, sizeof(err))) == NULL) {
        insite_log_warn("api: %s", err);
        pthread_mutex_unlock(&a->lock);
    }
    return a->pg;
}

static int pg_fail(auditd_api *a, PGresult *r, json_t **reply)
{
    int status = PQstatus(a->pg) == CONNECTION_OK ? 400 : 503;
    const char *msg = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
    *reply = insite_http_error(status == 400 ? "bad_request" : "unavailable",
                               status == 400 && msg ? msg : "PostgreSQL is unreachable");
    PQclear(r);
    pthread_mutex_unlock(&a->lock);
    return status;
}

int auditd_api_trail(const insite_http_request *req, json_t **reply, void *ud)
{
    auditd_api *a = ud;
    const char *p[4] = {
        insite_http_query(req, "user_id"), insite_http_query(req, "start_date"),
        insite_http_query(req, "end_date"), insite_http_query(req, "limit"),
    };
    long limit = p[3] ? strtol(p[3], NULL, 10) : 100;
    char lim[16];
    PGconn *pg;

    if (strcmp(req->method, "GET") != 0) {
        *reply = insite_http_error("method_not_allowed", "GET only");
        return 405;
    }
    if (limit < 1 || limit > 1000) {
        *reply = insite_http_error("bad_request", "limit must be 1..1000");
        return 400;
    }
    snprintf(lim, sizeof(lim), "%ld", limit);
    p[3] = lim;
    if ((pg = acquire(a)) == NULL) {
        *reply = insite_http_error("unavailable", "PostgreSQL is unreachable");
        return 503;
    }
    PGresult *r = PQexecParams(pg,
        "SELECT id, to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), user_id,"
        " access_type, data_type, method, path, status, result, ip, request_id, worker, seq, hash"
        " FROM gdpr_audit_trail WHERE ($1::text IS NULL OR user_id = $1)"
        " AND ($2::timestamptz IS NULL OR ts >= $2) AND ($3::timestamptz IS NULL OR ts < $3)"
        " ORDER BY ts DESC, seq DESC LIMIT $4::int", 4, NULL, p, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        return pg_fail(a, r, reply);
    json_t *recs = json_array();
    static const char *names[] = { "id", "ts", "user_id", "access_type", "data_type", "method",
                                   "path", "status", "result", "ip", "request_id", "worker",
                                   "seq", "hash" };
    for (int i = 0; i < PQntuples(r); i++) {
        json_t *o = json_object();
        for (int c = 0; c < 14; c++) {
            const char *v = PQgetvalue(r, i, c);
            json_t *jv = PQgetisnull(r, i, c) ? json_null()
                         : c == 7 || c == 12 ? json_integer(strtoll(v, NULL, 10))
                         : c == 8 ? json_boolean(v[0] == 't') : json_string(v);
            json_object_set_new(o, names[c], jv);
        }
        json_array_append_new(recs, o);
    }
    PQclear(r);
    pthread_mutex_unlock(&a->lock);
    *reply = json_pack("{s:o?, s:I, s:o}", "user_id", p[0] ? json_string(p[0]) : NULL,
                       "count", (json_int_t)json_array_size(recs), "records", recs);
    return 200;
}

int auditd_api_suspicious(const insite_http_request *req, json_t **reply, void *ud)
{
    auditd_api *a = ud;
    const char *p[1] = { insite_http_query(req, "user_id") };
    PGconn *pg;

    if (strcmp(req->method, "GET") != 0) {
        *reply = insite_http_error("method_not_allowed", "GET only");
        return 405;
    }
    if ((pg = acquire(a)) == NULL) {
        *reply = insite_http_error("unavailable", "PostgreSQL is unreachable");
        return 503;
    }
    /* the platform plan: > 50 accesses in the last hour MEDIUM, > 100 HIGH */
    PGresult *r = PQexecParams(pg,
        "SELECT user_id, count(*), to_char(min(ts) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'),"
        " to_char(max(ts) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"
        " FROM gdpr_audit_trail WHERE ts > now() - interval '1 hour' AND user_id IS NOT NULL"
        " AND ($1::text IS NULL OR user_id = $1) GROUP BY user_id"
        " HAVING ($1::text IS NOT NULL OR count(*) > 50) ORDER BY count(*) DESC LIMIT 1000",
        1, NULL, p, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        return pg_fail(a, r, reply);
    json_t *users = json_array();
    for (int i = 0; i < PQntuples(r); i++) {
        long long n = strtoll(PQgetvalue(r, i, 1), NULL, 10);
        const char *lvl = auditd_suspicion_level(n);
        json_array_append_new(users, json_pack("{s:s, s:I, s:s?, s:b, s:s, s:s}",
            "user_id", PQgetvalue(r, i, 0), "accesses", (json_int_t)n, "level", lvl,
            "suspicious", lvl != NULL, "first", PQgetvalue(r, i, 2), "last", PQgetvalue(r, i, 3)));
    }
    PQclear(r);
    pthread_mutex_unlock(&a->lock);
    if (p[0] && json_array_size(users) == 0)
        json_array_append_new(users, json_pack("{s:s, s:i, s:n, s:b}", "user_id", p[0],
                                               "accesses", 0, "level", "suspicious", 0));
    *reply = json_pack("{s:s, s:{s:i, s:i}, s:o}", "window", "1h", "thresholds", "MEDIUM", 50,
                       "HIGH", 100, "users", users);
    return 200;
}

void auditd_api_close(auditd_api *a)
{
    if (a->pg)
        PQfinish(a->pg);
    a->pg = NULL;
}
