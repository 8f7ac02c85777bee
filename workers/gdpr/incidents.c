/* Incidents, continuously (plan 5.4; docs/gdpr-retention.md).
 *
 * Every gdpr.incident_interval the main loop asks PostgreSQL which users
 * have records shipped since the last look (gdpr_audit_trail.shipped_at,
 * with 5 s of overlap for transactions that committed late), and recounts
 * those users' records per clock hour (the current and the previous one)
 * from the (user_id, ts) index:
 *
 *   excessive_access     more than incident_medium accesses   MEDIUM
 *                        more than incident_high              HIGH
 *   many_data_subjects   more than incident_subjects distinct
 *                        data subjects other than the user     HIGH
 *   access_denied_burst  more than incident_refusals 401/403
 *                        answers (consent_required included)   MEDIUM
 *
 * Recounting from the table (rather than counting what passes by) makes a
 * look idempotent: a restart, an overlap or two instances find the same
 * numbers.  One security_incidents row per kind, user and hour (a unique
 * index); a MEDIUM excessive_access becomes HIGH in place.  A new or raised
 * row produces a "security_incident" envelope on gdpr.incident_topic
 * (system_events) after the row is committed (at most once: the row is the
 * record) and counts in insite_gdpr_security_incidents_total{kind,severity}. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "envelope.h"
#include "gdpr.h"
#include "kafka.h"
#include "log.h"
#include "pg.h"

struct gdpr_incidents {
    gdpr_incidents_options o;
    PGconn *pg;
    char since[64];                  /* shipped_at of the last look */
    int64_t next_ms;
    insite_counter_vec *found;
    insite_counter *looks;
};

gdpr_incidents *gdpr_incidents_new(const gdpr_incidents_options *o)
{
    static const char *const labels[] = { "kind", "severity" };
    gdpr_incidents *d = calloc(1, sizeof(*d));

    if (d == NULL)
        return NULL;
    d->o = *o;
    if (o->metrics)
        d->found = insite_metrics_counter_vec(o->metrics, NULL, "security_incidents",
                                              "Security incidents found (new or raised) by insite-gdpr.",
                                              labels, 2);
    if (o->metrics)
        d->looks = insite_metrics_counter(o->metrics, "incident_checks",
                                          "Looks at newly shipped audit records for incidents.");
    return d;
}

void gdpr_incidents_free(gdpr_incidents *d)
{
    if (d == NULL)
        return;
    if (d->pg)
        PQfinish(d->pg);
    free(d);
}

static void announce(gdpr_incidents *d, const char *id, const char *kind, const char *sev,
                     const char *user, const char *window, const char *details)
{
    const char *const lv[2] = { kind, sev };
    json_t *det = json_loads(details, 0, NULL);

    if (d->found)
        insite_counter_inc(insite_counter_vec_with(d->found, lv));
    insite_log_warn("incident %s: %s %s for user %s in the hour from %s", id, sev, kind, user, window);
    if (d->o.kafka == NULL || d->o.topic == NULL || d->o.topic[0] == '\0') {
        json_decref(det);
        return;
    }
    json_t *env = insite_envelope_new("security_incident", "gdpr", id,
        json_pack("{s:s, s:s, s:s, s:s, s:s, s:o}", "incident_id", id, "kind", kind, "severity", sev,
                  "user_id", user, "window_start", window, "details", det ? det : json_object()));
    char *text = env ? insite_envelope_dumps(env) : NULL;
    json_decref(env);
    if (text == NULL || insite_kafka_produce(d->o.kafka, d->o.topic, user, text, strlen(text)) != 0)
        insite_log_warn("incident %s: not produced to %s", id, d->o.topic);
    free(text);
}

/* kind, severity, user, window, details JSON: insert, or raise MEDIUM to
 * HIGH; announce when a row was written. */
static void record(gdpr_incidents *d, const char *kind, const char *sev, const char *user,
                   const char *window, const char *details)
{
    const char *p[5] = { kind, sev, user, window, details };
    PGresult *r = PQexecParams(d->pg,
        "INSERT INTO security_incidents (source, kind, severity, user_id, window_start, details)"
        " VALUES ('insite-gdpr', $1, $2, $3, $4::timestamptz, $5::jsonb)"
        " ON CONFLICT (kind, user_id, window_start) WHERE user_id IS NOT NULL DO UPDATE"
        "   SET severity = EXCLUDED.severity, details = EXCLUDED.details, detected_at = now()"
        "   WHERE security_incidents.severity = 'MEDIUM' AND EXCLUDED.severity IN ('HIGH', 'CRITICAL')"
        " RETURNING id", 5, NULL, p, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        insite_log_warn("incidents: %s", PQresultErrorMessage(r));
    else if (PQntuples(r) == 1)
        announce(d, PQgetvalue(r, 0, 0), kind, sev, user, window, details);
    PQclear(r);
}

int gdpr_incidents_run(gdpr_incidents *d)
{
    char err[512], a[32], s[32], f[32];
    const char *p[4] = { d->since, a, s, f };
    PGresult *r;

    if (insite_clock_mono_ms() < d->next_ms)
        return 0;
    d->next_ms = insite_clock_mono_ms() + d->o.interval_ms;
    if (d->pg && PQstatus(d->pg) != CONNECTION_OK) {
        PQfinish(d->pg);
        d->pg = NULL;
    }
    if (d->pg == NULL && (d->pg = insite_pg_connect(d->o.dsn, err, sizeof(err))) == NULL)
        return -1;
    if (d->since[0] == '\0') {
        /* at start: the last hour again (rows are deduplicated) */
        r = PQexec(d->pg, "SELECT (now() - interval '1 hour')::text");
        if (PQresultStatus(r) != PGRES_TUPLES_OK) {
            PQclear(r);
            return -1;
        }
        snprintf(d->since, sizeof(d->since), "%s", PQgetvalue(r, 0, 0));
        PQclear(r);
    }
    snprintf(a, sizeof(a), "%d", d->o.medium);
    snprintf(s, sizeof(s), "%d", d->o.subjects);
    snprintf(f, sizeof(f), "%d", d->o.refusals);
    r = PQexecParams(d->pg,
        "WITH u AS (SELECT DISTINCT user_id FROM gdpr_audit_trail"
        "   WHERE shipped_at > $1::timestamptz - interval '5 seconds' AND user_id IS NOT NULL)"
        " SELECT t.user_id, to_char(date_trunc('hour', t.ts) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:00:00\"Z\"'),"
        "   count(*), count(DISTINCT t.data_subject) FILTER (WHERE t.data_subject <> t.user_id),"
        "   count(*) FILTER (WHERE t.status IN (401, 403)), (SELECT now()::text)"
        " FROM gdpr_audit_trail t JOIN u ON u.user_id = t.user_id"
        " WHERE t.ts >= date_trunc('hour', now()) - interval '1 hour'"
        " GROUP BY 1, 2"
        " HAVING count(*) > $2::int"
        "   OR count(DISTINCT t.data_subject) FILTER (WHERE t.data_subject <> t.user_id) > $3::int"
        "   OR count(*) FILTER (WHERE t.status IN (401, 403)) > $4::int", 4, NULL, p, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        insite_log_warn("incidents: %s", PQresultErrorMessage(r));
        PQclear(r);
        return -1;
    }
    for (int i = 0; i < PQntuples(r); i++) {
        const char *user = PQgetvalue(r, i, 0), *window = PQgetvalue(r, i, 1);
        long long n = strtoll(PQgetvalue(r, i, 2), NULL, 10);
        long long subjects = strtoll(PQgetvalue(r, i, 3), NULL, 10);
        long long refused = strtoll(PQgetvalue(r, i, 4), NULL, 10);
        char det[160];
        if (n > d->o.medium) {
            snprintf(det, sizeof(det), "{\"accesses\":%lld,\"threshold_medium\":%d,\"threshold_high\":%d}",
                     n, d->o.medium, d->o.high);
            record(d, "excessive_access", n > d->o.high ? "HIGH" : "MEDIUM", user, window, det);
        }
        if (subjects > d->o.subjects) {
            snprintf(det, sizeof(det), "{\"data_subjects\":%lld,\"threshold\":%d}", subjects, d->o.subjects);
            record(d, "many_data_subjects", "HIGH", user, window, det);
        }
        if (refused > d->o.refusals) {
            snprintf(det, sizeof(det), "{\"refused\":%lld,\"threshold\":%d}", refused, d->o.refusals);
            record(d, "access_denied_burst", "MEDIUM", user, window, det);
        }
    }
    /* the next look starts where this one's snapshot did */
    if (PQntuples(r) > 0)
        snprintf(d->since, sizeof(d->since), "%s", PQgetvalue(r, 0, 5));
    else {
        PQclear(r);
        r = PQexec(d->pg, "SELECT now()::text");
        if (PQresultStatus(r) == PGRES_TUPLES_OK)
            snprintf(d->since, sizeof(d->since), "%s", PQgetvalue(r, 0, 0));
    }
    PQclear(r);
    if (d->o.kafka)
        insite_kafka_poll(d->o.kafka, 0);
    if (d->looks)
        insite_counter_inc(d->looks);
    return 1;
}
