/* The compliance report's numbers (report.h) and its endpoint:
 *
 *   GET /api/v1/gdpr/compliance-report?start_date=&end_date=&format=json|pdf
 *
 * gdpr:admin only.  Every figure is an aggregate PostgreSQL computes over
 * the period, inside one REPEATABLE READ READ ONLY transaction (a snapshot:
 * the sections agree with each other).  The audit trail, the only large
 * table, is read in two single passes that run concurrently on two more
 * connections sharing that snapshot (see ACTIVITY_SQL); their aggregates
 * are read in single-row mode, so no audit row is ever held in memory,
 * however long the period.  The report has its own connections: a long
 * report does not hold the store lock the other endpoints share, and with
 * gdpr.http_threads > 1 it does not hold up their requests either. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>

#include "clock.h"
#include "gdpr.h"
#include "log.h"
#include "pg.h"
#include "report.h"
#include "sign.h"

const char *const gdpr_access_names[GDPR_ACCESS_N] = { "read", "write", "delete", "export", "other" };
const char *const gdpr_severity_names[GDPR_SEV_N] = { "LOW", "MEDIUM", "HIGH", "CRITICAL" };

struct gdpr_reporter {
    char *dsn;
    void *sign_key;                  /* gdpr.signing_key: signs the SHA-256 */
    char fingerprint[65];            /* of its public key */
    void *audit_key;                 /* gdpr.audit_public_key: checkpoints */
    insite_histogram *seconds;
};

double gdpr_report_pct(long long part, long long whole)
{
    if (whole <= 0)
        return -1;
    return round((double)part * 10000.0 / (double)whole) / 100.0;
}

void gdpr_report_free(gdpr_report *r)
{
    free(r->processing.days);
    free(r->consents.types);
    free(r->retention.types);
    memset(r, 0, sizeof(*r));
}

static long long ll(PGresult *res, int row, int col)
{
    return PQgetisnull(res, row, col) ? 0 : strtoll(PQgetvalue(res, row, col), NULL, 10);
}

/* One row of aggregates; NULL logged. */
static PGresult *one(PGconn *c, const char *sql, const char *const *p, int n)
{
    PGresult *res = PQexecParams(c, sql, n, NULL, p, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        insite_log_warn("report: %s", PQresultErrorMessage(res));
        PQclear(res);
        return NULL;
    }
    return res;
}

#define PERIOD " BETWEEN to_timestamp($1::bigint) AND to_timestamp($2::bigint) - interval '1 microsecond'"

/* ---- the audit trail, in two single passes on connections of their own ----
 *
 * Every figure over gdpr_audit_trail comes from two queries, each one scan
 * of the period, sent at once on two connections that share the report's
 * snapshot (pg_export_snapshot): the other sections run meanwhile on the
 * first connection.  Both results are aggregates (a row per day and access
 * type, a row per chain), read in single-row mode: no audit row is ever
 * held in memory, however long the period.
 *
 *   activity  GROUPING SETS ((day, access_type), (user_id)), both hashed
 *             in one scan (the planner knows there are few days from the
 *             statistics on DAY, migration 062): the series per day, the
 *             operations by access type and the distinct users
 *   chains    per (source, worker): records, first and last seq, distinct
 *             seqs, read in index order (gdpr_audit_trail_chain_seq_idx,
 *             migration 062) so nothing is sorted */
#define DAY "(ts AT TIME ZONE 'UTC')::date"
#define ACTIVITY_SQL \
    "WITH g AS (SELECT GROUPING(user_id) AS by_day, " DAY " AS day, access_type, user_id, count(*) AS n" \
    "   FROM gdpr_audit_trail WHERE ts" PERIOD \
    "   GROUP BY GROUPING SETS ((" DAY ", access_type), (user_id)))" \
    " SELECT day - $3::date, access_type, n FROM g WHERE by_day = 1" \
    " UNION ALL SELECT NULL, NULL, count(user_id) FROM g WHERE by_day = 0"

#define CHAINS_SQL \
    "SELECT coalesce(sum(n), 0), count(*), coalesce(sum(hi - lo + 1), 0), coalesce(sum(seqs), 0)" \
    " FROM (SELECT sum(n) n, min(seq) lo, max(seq) hi, count(*) seqs" \
    "   FROM (SELECT source, worker, seq, count(*) n FROM gdpr_audit_trail WHERE ts" PERIOD \
    "     GROUP BY source, worker, seq) s GROUP BY source, worker) ch"

static int access_index(const char *name)
{
    for (int i = 0; i < GDPR_ACCESS_OTHER; i++)
        if (strcmp(name, gdpr_access_names[i]) == 0)
            return i;
    return GDPR_ACCESS_OTHER;
}

/* The days of the period, every one, operations 0. */
static int days_init(gdpr_report *r)
{
    size_t n = (size_t)((r->period.end_s - r->period.start_s) / 86400);
    if ((r->processing.days = calloc(n ? n : 1, sizeof(gdpr_report_day))) == NULL)
        return -1;
    for (size_t i = 0; i < n; i++) {
        time_t t = (time_t)(r->period.start_s + (int64_t)i * 86400);
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(r->processing.days[i].date, sizeof(r->processing.days[i].date), "%Y-%m-%d", &tm);
    }
    r->processing.ndays = n;
    return 0;
}

/* Sends sql in single-row mode.  0 or -1 (logged). */
static int send_rows(PGconn *c, const char *what, const char *sql, const char *const *p, int n)
{
    if (!PQsendQueryParams(c, sql, n, NULL, p, NULL, NULL, 0) || !PQsetSingleRowMode(c)) {
        insite_log_warn("report: %s: %s", what, PQerrorMessage(c));
        return -1;
    }
    return 0;
}

/* Reads the rows of send_rows()'s query, one at a time, into fn.  0 or -1. */
static int read_rows(PGconn *c, const char *what, void (*fn)(PGresult *, gdpr_report *), gdpr_report *r)
{
    PGresult *res;
    int rc = 0;

    while ((res = PQgetResult(c)) != NULL) {
        if (PQresultStatus(res) == PGRES_SINGLE_TUPLE)
            fn(res, r);
        else if (PQresultStatus(res) != PGRES_TUPLES_OK) {
            insite_log_warn("report: %s: %s", what, PQresultErrorMessage(res));
            rc = -1;
        }
        PQclear(res);
    }
    return rc;
}

static void activity_row(PGresult *res, gdpr_report *r)
{
    if (PQgetisnull(res, 0, 0)) {               /* the distinct users */
        r->processing.users = ll(res, 0, 2);
        return;
    }
    long long day = ll(res, 0, 0), n = ll(res, 0, 2);
    if (day >= 0 && (size_t)day < r->processing.ndays)
        r->processing.days[day].operations += n;
    r->processing.by_access[access_index(PQgetvalue(res, 0, 1))] += n;
    r->processing.operations += n;
}

static void chains_row(PGresult *res, gdpr_report *r)
{
    r->audit.entries = ll(res, 0, 0);
    r->audit.chains = ll(res, 0, 1);
    r->audit.expected = ll(res, 0, 2);
    r->audit.shipped = ll(res, 0, 3);
}

static int deletions(PGconn *c, const char *const *p, gdpr_report *r)
{
    PGresult *res = one(c, "SELECT count(*), count(*) FILTER (WHERE status = 'completed'),"
        " count(*) FILTER (WHERE status = 'failed'), count(*) FILTER (WHERE status = 'cancelled'),"
        " count(*) FILTER (WHERE status IN ('pending', 'processing')),"
        " (SELECT coalesce(sum(s.rows), 0) FROM gdpr_deletion_steps s JOIN gdpr_deletion_requests q"
        "   ON q.id = s.request_id WHERE q.requested_at" PERIOD " AND q.status = 'completed'"
        "   AND s.action IN ('delete', 'anonymize'))"
        " FROM gdpr_deletion_requests WHERE requested_at" PERIOD, p, 2);
    if (res == NULL)
        return -1;
    r->deletions.requests = ll(res, 0, 0);
    r->deletions.completed = ll(res, 0, 1);
    r->deletions.failed = ll(res, 0, 2);
    r->deletions.cancelled = ll(res, 0, 3);
    r->deletions.open = ll(res, 0, 4);
    r->deletions.rows_deleted = ll(res, 0, 5);
    PQclear(res);
    return 0;
}

static int consents(PGconn *c, const char *const *p, gdpr_report *r)
{
    /* every type seen in the state or in the period's changes */
    PGresult *res = one(c, "WITH t AS (SELECT consent_type FROM user_consents UNION"
        "   SELECT consent_type FROM user_consent_events WHERE created_at" PERIOD ")"
        " SELECT t.consent_type,"
        "  (SELECT count(*) FROM user_consents u WHERE u.consent_type = t.consent_type AND granted),"
        "  (SELECT count(*) FROM user_consents u WHERE u.consent_type = t.consent_type AND NOT granted),"
        "  (SELECT count(*) FROM user_consent_events e WHERE e.consent_type = t.consent_type AND granted"
        "     AND created_at" PERIOD "),"
        "  (SELECT count(*) FROM user_consent_events e WHERE e.consent_type = t.consent_type AND NOT granted"
        "     AND created_at" PERIOD ")"
        " FROM t ORDER BY 1", p, 2);
    if (res == NULL)
        return -1;
    r->consents.types = calloc((size_t)PQntuples(res) + 1, sizeof(gdpr_report_consent));
    for (int i = 0; r->consents.types && i < PQntuples(res); i++) {
        gdpr_report_consent *t = &r->consents.types[r->consents.ntypes++];
        snprintf(t->type, sizeof(t->type), "%s", PQgetvalue(res, i, 0));
        t->granted = ll(res, i, 1);
        t->withheld = ll(res, i, 2);
        t->grants = ll(res, i, 3);
        t->withdrawals = ll(res, i, 4);
        r->consents.changes += t->grants + t->withdrawals;
    }
    PQclear(res);
    return r->consents.types ? 0 : -1;
}

static int portability(PGconn *c, const char *const *p, gdpr_report *r)
{
    PGresult *res = one(c, "SELECT count(*), count(*) FILTER (WHERE ready_at IS NOT NULL),"
        " count(*) FILTER (WHERE status = 'failed'), count(*) FILTER (WHERE status = 'expired'),"
        " count(*) FILTER (WHERE status = 'pending'),"
        " coalesce(round(avg(extract(epoch FROM ready_at - requested_at))), 0)"
        " FROM gdpr_data_exports WHERE requested_at" PERIOD, p, 2);
    if (res == NULL)
        return -1;
    r->portability.requests = ll(res, 0, 0);
    r->portability.ready = ll(res, 0, 1);
    r->portability.failed = ll(res, 0, 2);
    r->portability.expired = ll(res, 0, 3);
    r->portability.pending = ll(res, 0, 4);
    r->portability.avg_completion_s = ll(res, 0, 5);
    PQclear(res);
    return 0;
}

static int incidents(PGconn *c, const char *const *p, gdpr_report *r)
{
    PGresult *res = one(c, "SELECT count(*), count(*) FILTER (WHERE severity = 'LOW'),"
        " count(*) FILTER (WHERE severity = 'MEDIUM'), count(*) FILTER (WHERE severity = 'HIGH'),"
        " count(*) FILTER (WHERE severity = 'CRITICAL')"
        " FROM security_incidents WHERE detected_at" PERIOD, p, 2);
    if (res == NULL)
        return -1;
    r->incidents.total = ll(res, 0, 0);
    for (int i = 0; i < GDPR_SEV_N; i++)
        r->incidents.by_severity[i] = ll(res, 0, 1 + i);
    PQclear(res);
    return 0;
}

/* Completeness, measured: in each chain (source, worker) the records of the
 * period must be every seq from its first to its last; shipped = distinct
 * seqs present, expected = last - first + 1 (CHAINS_SQL).  Here: the
 * checkpoints. */
static int audit(gdpr_reporter *rp, PGconn *c, const char *const *p, gdpr_report *r)
{
    PGresult *res;

    /* checkpoints of the period: signature, and the link to the one before */
    res = one(c, "SELECT c.payload, c.signature, b.id IS NOT NULL OR c.id = 1,"
              "  (c.payload::jsonb -> 'previous' ->> 'signature') IS NOT DISTINCT FROM b.signature"
              " FROM gdpr_audit_checkpoints c LEFT JOIN gdpr_audit_checkpoints b"
              "   ON b.source = c.source AND b.id = c.id - 1"
              " WHERE c.created_at" PERIOD " ORDER BY c.source, c.id", p, 2);
    if (res == NULL)
        return -1;
    r->audit.checkpoints = PQntuples(res);
    r->audit.checkpoints_checked = rp->audit_key != NULL;
    for (int i = 0; rp->audit_key && i < PQntuples(res); i++) {
        const char *pl = PQgetvalue(res, i, 0);
        int ok = insite_sign_verify(rp->audit_key, pl, strlen(pl), PQgetvalue(res, i, 1)) == 0
                 && PQgetvalue(res, i, 2)[0] == 't' && PQgetvalue(res, i, 3)[0] == 't';
        if (ok)
            r->audit.checkpoints_verified++;
        else
            r->audit.checkpoints_failed++;
    }
    PQclear(res);
    return 0;
}

static int retention(PGconn *c, const char *const *p, gdpr_report *r)
{
    PGresult *res = one(c, "SELECT data_type, count(*), count(*) FILTER (WHERE status = 'completed'),"
        " count(*) FILTER (WHERE status = 'failed'), coalesce(sum(rows_affected), 0)"
        " FROM gdpr_audit_log WHERE action = 'automated_deletion' AND started_at" PERIOD
        " GROUP BY data_type ORDER BY data_type", p, 2);
    if (res == NULL)
        return -1;
    r->retention.types = calloc((size_t)PQntuples(res) + 1, sizeof(gdpr_report_retention));
    for (int i = 0; r->retention.types && i < PQntuples(res); i++) {
        gdpr_report_retention *t = &r->retention.types[r->retention.ntypes++];
        snprintf(t->data_type, sizeof(t->data_type), "%s", PQgetvalue(res, i, 0));
        t->runs = ll(res, i, 1);
        t->completed = ll(res, i, 2);
        t->failed = ll(res, i, 3);
        t->rows = ll(res, i, 4);
        r->retention.runs += t->runs;
        r->retention.completed += t->completed;
        r->retention.failed += t->failed;
        r->retention.rows += t->rows;
    }
    PQclear(res);
    return r->retention.types ? 0 : -1;
}

/* A connection in the report's snapshot: BEGIN REPEATABLE READ READ ONLY
 * and SET TRANSACTION SNAPSHOT.  NULL (logged) when it cannot be had: the
 * caller then runs that query on the first connection. */
static PGconn *side(const gdpr_reporter *rp, const char *snapshot)
{
    char err[512], sql[128];
    PGconn *c = insite_pg_connect(rp->dsn, err, sizeof(err));
    PGresult *res;
    int ok;

    if (c == NULL) {
        insite_log_warn("report: postgresql (second connection): %s", err);
        return NULL;
    }
    snprintf(sql, sizeof(sql), "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY;"
             " SET TRANSACTION SNAPSHOT '%s'", snapshot);       /* [0-9A-F-] from the server */
    res = PQexec(c, sql);
    ok = PQresultStatus(res) == PGRES_COMMAND_OK;
    if (!ok)
        insite_log_warn("report: snapshot %s: %s", snapshot, PQresultErrorMessage(res));
    PQclear(res);
    if (!ok) {
        PQfinish(c);
        return NULL;
    }
    return c;
}

/* The report's snapshot, exported from c's transaction; "" when it cannot
 * be (then every query runs on c). */
static void export_snapshot(PGconn *c, char *snap, size_t len)
{
    PGresult *res = PQexec(c, "SELECT pg_export_snapshot()");

    snap[0] = '\0';
    if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1
        && strspn(PQgetvalue(res, 0, 0), "0123456789ABCDEFabcdef-") == strlen(PQgetvalue(res, 0, 0)))
        snprintf(snap, len, "%s", PQgetvalue(res, 0, 0));
    else
        insite_log_warn("report: pg_export_snapshot: %s", PQresultErrorMessage(res));
    PQclear(res);
}

/* Fills r for its period.  0 or -1 (logged). */
int gdpr_report_collect(gdpr_reporter *rp, gdpr_report *r)
{
    char err[512], s[32], e[32], snap[64];
    const char *p[3] = { s, e, r->period.start };
    PGconn *c = insite_pg_connect(rp->dsn, err, sizeof(err)), *act = NULL, *ch = NULL;
    PGresult *res;
    int rc = -1;

    if (c == NULL) {
        insite_log_warn("report: postgresql: %s", err);
        return -1;
    }
    snprintf(s, sizeof(s), "%lld", (long long)r->period.start_s);
    snprintf(e, sizeof(e), "%lld", (long long)r->period.end_s);
    insite_clock_rfc3339(r->generated_at, sizeof(r->generated_at));
    res = PQexec(c, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
    if (PQresultStatus(res) != PGRES_COMMAND_OK || days_init(r) != 0) {
        insite_log_warn("report: %s", PQresultErrorMessage(res));
        goto done;
    }
    /* the two scans of the audit trail start at once, on their own
     * connections when they can be had */
    export_snapshot(c, snap, sizeof(snap));
    if (snap[0] && (act = side(rp, snap)) != NULL)
        ch = side(rp, snap);
    if ((act && send_rows(act, "activity", ACTIVITY_SQL, p, 3) != 0)
        || (ch && send_rows(ch, "chains", CHAINS_SQL, p, 2) != 0))
        goto done;
    if (deletions(c, p, r) != 0 || consents(c, p, r) != 0 || portability(c, p, r) != 0
        || incidents(c, p, r) != 0 || audit(rp, c, p, r) != 0 || retention(c, p, r) != 0)
        goto done;
    if (act == NULL && send_rows(c, "activity", ACTIVITY_SQL, p, 3) != 0)
        goto done;
    if (read_rows(act ? act : c, "activity", activity_row, r) != 0)
        goto done;
    if (ch == NULL && send_rows(c, "chains", CHAINS_SQL, p, 2) != 0)
        goto done;
    if (read_rows(ch ? ch : c, "chains", chains_row, r) != 0)
        goto done;
    r->audit.users = r->processing.users;       /* the same snapshot, counted once */
    rc = 0;
done:
    PQclear(res);
    if (ch)
        PQfinish(ch);
    if (act)
        PQfinish(act);
    PQfinish(c);
    return rc;
}

gdpr_reporter *gdpr_reporter_new(const gdpr_reporter_options *o, char *err, size_t errlen)
{
    gdpr_reporter *rp = calloc(1, sizeof(*rp));

    if (rp == NULL || (rp->dsn = strdup(o->dsn)) == NULL) {
        snprintf(err, errlen, "report: out of memory");
        goto fail;
    }
    if (o->signing_key && o->signing_key[0]) {
        unsigned char raw[32], md[32];
        size_t n = sizeof(raw);
        if ((rp->sign_key = insite_sign_load_key(o->signing_key, 1, "report")) == NULL
            || EVP_PKEY_get_raw_public_key(rp->sign_key, raw, &n) != 1
            || EVP_Digest(raw, n, md, NULL, EVP_sha256(), NULL) != 1) {
            snprintf(err, errlen, "gdpr.signing_key %s: not usable", o->signing_key);
            goto fail;
        }
        for (int i = 0; i < 32; i++)
            snprintf(rp->fingerprint + 2 * i, 3, "%02x", md[i]);
    }
    if (o->audit_public_key && o->audit_public_key[0]
        && (rp->audit_key = insite_sign_load_key(o->audit_public_key, 0, "audit checkpoints")) == NULL) {
        snprintf(err, errlen, "gdpr.audit_public_key %s: not usable", o->audit_public_key);
        goto fail;
    }
    static const double buckets[] = { 0.1, 0.5, 1, 2, 5, 10, 30, 60, 120 };
    if (o->metrics)
        rp->seconds = insite_metrics_histogram(o->metrics, "compliance_report_seconds",
                                               "Time to build a compliance report.", buckets,
                                               sizeof(buckets) / sizeof(buckets[0]));
    return rp;
fail:
    gdpr_reporter_free(rp);
    return NULL;
}

void gdpr_reporter_free(gdpr_reporter *rp)
{
    if (rp == NULL)
        return;
    if (rp->sign_key)
        insite_sign_free(rp->sign_key);
    if (rp->audit_key)
        insite_sign_free(rp->audit_key);
    free(rp->dsn);
    free(rp);
}

/* {"sha256","covers","signing_key_fingerprint","signature"} */
static json_t *integrity(gdpr_reporter *rp, const char *sha)
{
    char sig[INSITE_SIG_HEX] = "";
    json_t *o = json_pack("{s:s, s:s}", "sha256", sha,
                          "covers", "the report's JSON without generated_at and integrity: compact, sorted keys");
    if (rp->sign_key && insite_sign(rp->sign_key, sha, strlen(sha), sig) == 0) {
        json_object_set_new(o, "signing_key_fingerprint", json_string(rp->fingerprint));
        json_object_set_new(o, "signature", json_string(sig));
    }
    return o;
}

int gdpr_api_compliance_report(const insite_http_request *req, json_t **reply, void *ud)
{
    gdpr_reporter *rp = ud;
    gdpr_report r;
    char err[128], sha[65], len[32];
    double t0 = insite_clock_mono_s();
    json_t *j;

    if (insite_http_user(req) == NULL) {
        *reply = insite_http_error("unauthorized", "no authenticated user (X-User-Id)");
        return 401;
    }
    if (!insite_http_has_scope(req, "gdpr:admin")) {
        *reply = insite_http_error("insufficient_scope", "the compliance report is for operators (gdpr:admin)");
        return 403;
    }
    if (strcmp(req->method, "GET") != 0 || req->rest[0] != '\0') {
        *reply = insite_http_error("not_found", "GET /api/v1/gdpr/compliance-report");
        return 404;
    }
    memset(&r, 0, sizeof(r));
    if (gdpr_report_period_parse(insite_http_query(req, "start_date"), insite_http_query(req, "end_date"),
                                 insite_http_query(req, "format"), (int64_t)time(NULL), &r.period,
                                 err, sizeof(err)) != 0) {
        *reply = insite_http_error("bad_request", err);
        return 400;
    }
    if (gdpr_report_collect(rp, &r) != 0) {
        gdpr_report_free(&r);
        *reply = insite_http_error("unavailable", "the report's data is unavailable, try again");
        return 503;
    }
    j = gdpr_report_json(&r);
    if (j == NULL || gdpr_report_sha256(j, sha) != 0) {
        json_decref(j);
        gdpr_report_free(&r);
        *reply = insite_http_error("internal", "the report could not be built");
        return 500;
    }
    if (r.period.pdf) {
        unsigned char *pdf = NULL;
        size_t n = 0;
        int rc = gdpr_report_pdf(&r, sha, rp->fingerprint[0] ? rp->fingerprint : NULL, &pdf, &n);
        json_decref(j);
        gdpr_report_free(&r);
        if (rc != 0) {
            *reply = insite_http_error("internal", "the PDF could not be rendered");
            return 500;
        }
        snprintf(len, sizeof(len), "%zu", n);
        insite_http_set_header(req, "Content-Disposition", "attachment; filename=\"compliance-report.pdf\"");
        insite_http_set_header(req, "X-Report-SHA256", sha);
        insite_http_set_body(req, "application/pdf", pdf, n);
    } else {
        json_object_set_new(j, "integrity", integrity(rp, sha));
        *reply = j;
        gdpr_report_free(&r);
    }
    if (rp->seconds)
        insite_histogram_observe(rp->seconds, insite_clock_mono_s() - t0);
    return 200;
}
