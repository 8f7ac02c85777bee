/* The HTTP API: the audit trail and suspicious-activity detection.
 *
 *   GET /api/v1/gdpr/audit-trail?user_id&start_date&end_date&limit
 *   GET /api/v1/gdpr/suspicious-activity?user_id
 *
 * Who asks is the caller nginx vouches for (insite_http_user): a user reads
 * only their own trail; another user's (user_id=<other>) or everyone's needs
 * the operator scope gdpr:admin.  PostgreSQL's error text stays in the log.
 * With auditd.pseudonym_key a user's records are found under their
 * pseudonym too (journals written with insite_gdpr_pseudonym_key).
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

static int pg_fail(auditd_api *a, PGresult *r, const char *what, json_t **reply)
{
    const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    const char *msg = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
    int status;

    insite_log_warn("api: %s: %s", what, msg ? msg : PQerrorMessage(a->pg));
    if (PQstatus(a->pg) != CONNECTION_OK) {
        status = 503;
        *reply = insite_http_error("unavailable", "PostgreSQL is unreachable");
    } else if (state && strncmp(state, "22", 2) == 0) {
        /* data exception: a date PostgreSQL cannot read */
        status = 400;
        *reply = insite_http_error("bad_request", "start_date and end_date must be "
                                   "dates or timestamps, e.g. 2026-11-26T10:30:00Z");
    } else {
        status = 500;
        *reply = insite_http_error("internal", "the audit trail query failed");
    }
    PQclear(r);
    pthread_mutex_unlock(&a->lock);
    return status;
}

/* The pseudonym of who as a query parameter (auditd.pseudonym_key), or NULL
 * when there is no key or no user: records of who are under either id. */
static const char *pseudonym_of(const auditd_api *a, const char *who, char out[INSITE_GDPR_PSN_LEN + 1])
{
    if (who == NULL || a->psn_key_len == 0
        || insite_gdpr_pseudonym(a->psn_key, a->psn_key_len, who, strlen(who), out) != 0)
        return NULL;
    out[INSITE_GDPR_PSN_LEN] = '\0';
    return out;
}

/*
 * Whose records the caller may read: *who becomes the user to filter on
 * (NULL: everyone, operators only).  Returns 0, or the error status with
 * *reply set.
 */
static int authorize(const insite_http_request *req, const char **who, json_t **reply)
{
    const char *me = insite_http_user(req);
    const char *asked = insite_http_query(req, "user_id");
    int admin = insite_http_has_scope(req, "gdpr:admin");

    if (me == NULL) {
        *reply = insite_http_error("unauthorized", "no authenticated user");
        return 401;
    }
    if (asked != NULL && asked[0] == '\0')
        asked = NULL;
    if (admin) {
        *who = asked;                   /* NULL: every user */
        return 0;
    }
    if (asked != NULL && strcmp(asked, me) != 0) {
        *reply = insite_http_error("insufficient_scope",
                                   "another user's audit trail needs the gdpr:admin scope");
        return 403;
    }
    *who = me;
    return 0;
}

int auditd_api_trail(const insite_http_request *req, json_t **reply, void *ud)
{
    auditd_api *a = ud;
    const char *p[5] = {
        NULL, insite_http_query(req, "start_date"), insite_http_query(req, "end_date"), NULL, NULL,
    };
    char psn[INSITE_GDPR_PSN_LEN + 1];
    long long limit;
    char lim[24];
    PGconn *pg;
    int st;

    if (strcmp(req->method, "GET") != 0) {
        *reply = insite_http_error("method_not_allowed", "GET only");
        return 405;
    }
    if ((st = authorize(req, &p[0], reply)) != 0)
        return st;
    if ((st = insite_http_query_int(req, "limit", 1, 1000, 100, &limit, reply)) != 0)
        return st;
    snprintf(lim, sizeof(lim), "%lld", limit);
    p[3] = lim;
    p[4] = pseudonym_of(a, p[0], psn);
    if ((pg = acquire(a)) == NULL) {
        *reply = insite_http_error("unavailable", "PostgreSQL is unreachable");
        return 503;
    }
    PGresult *r = PQexecParams(pg,
        "SELECT id, to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), user_id,"
        " access_type, data_type, method, path, status, result, ip, request_id, worker, seq, hash,"
        " data_subject, reason"
        " FROM gdpr_audit_trail WHERE ($1::text IS NULL OR user_id = $1 OR user_id = $5)"
        " AND ($2::timestamptz IS NULL OR ts >= $2) AND ($3::timestamptz IS NULL OR ts < $3)"
        " ORDER BY ts DESC, seq DESC LIMIT $4::int", 5, NULL, p, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        return pg_fail(a, r, "audit trail", reply);
    json_t *recs = json_array();
    static const char *names[] = { "id", "ts", "user_id", "access_type", "data_type", "method",
                                   "path", "status", "result", "ip", "request_id", "worker",
                                   "seq", "hash", "data_subject", "reason" };
    for (int i = 0; i < PQntuples(r); i++) {
        json_t *o = json_object();
        for (int c = 0; c < 16; c++) {
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
    const char *p[2] = { NULL, NULL };
    char psn[INSITE_GDPR_PSN_LEN + 1];
    PGconn *pg;
    int st;

    if (strcmp(req->method, "GET") != 0) {
        *reply = insite_http_error("method_not_allowed", "GET only");
        return 405;
    }
    if ((st = authorize(req, &p[0], reply)) != 0)
        return st;
    p[1] = pseudonym_of(a, p[0], psn);
    if ((pg = acquire(a)) == NULL) {
        *reply = insite_http_error("unavailable", "PostgreSQL is unreachable");
        return 503;
    }
    /* the platform plan: > 50 accesses in the last hour MEDIUM, > 100 HIGH */
    PGresult *r = PQexecParams(pg,
        "SELECT user_id, count(*), to_char(min(ts) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'),"
        " to_char(max(ts) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"
        " FROM gdpr_audit_trail WHERE ts > now() - interval '1 hour' AND user_id IS NOT NULL"
        " AND ($1::text IS NULL OR user_id = $1 OR user_id = $2) GROUP BY user_id"
        " HAVING ($1::text IS NOT NULL OR count(*) > 50) ORDER BY count(*) DESC LIMIT 1000",
        2, NULL, p, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        return pg_fail(a, r, "suspicious activity", reply);
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
