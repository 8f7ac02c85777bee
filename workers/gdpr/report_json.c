/* The compliance report as JSON, and the SHA-256 of its numbers (report.h).
 * Shape: docs/gdpr-retention.md. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "report.h"

static json_t *pct(long long part, long long whole)
{
    double v = gdpr_report_pct(part, whole);
    return v < 0 ? json_null() : json_real(v);
}

static json_t *processing(const gdpr_report *r)
{
    json_t *by = json_object(), *days = json_array();
    for (int i = 0; i < GDPR_ACCESS_N; i++)
        json_object_set_new(by, gdpr_access_names[i], json_integer(r->processing.by_access[i]));
    for (size_t i = 0; i < r->processing.ndays; i++)
        json_array_append_new(days, json_pack("{s:s, s:I}", "date", r->processing.days[i].date,
                                              "operations", (json_int_t)r->processing.days[i].operations));
    return json_pack("{s:I, s:I, s:o, s:o}", "users", (json_int_t)r->processing.users,
                     "operations", (json_int_t)r->processing.operations,
                     "operations_by_access_type", by, "operations_per_day", days);
}

static json_t *consents(const gdpr_report *r)
{
    json_t *types = json_array();
    for (size_t i = 0; i < r->consents.ntypes; i++) {
        const gdpr_report_consent *t = &r->consents.types[i];
        json_array_append_new(types, json_pack("{s:s, s:I, s:I, s:o, s:I, s:I}", "consent_type", t->type,
            "granted", (json_int_t)t->granted, "withheld", (json_int_t)t->withheld,
            "grant_rate_pct", pct(t->granted, t->granted + t->withheld),
            "grants_in_period", (json_int_t)t->grants, "withdrawals_in_period", (json_int_t)t->withdrawals));
    }
    return json_pack("{s:o, s:I}", "types", types, "changes_in_period", (json_int_t)r->consents.changes);
}

static json_t *audit(const gdpr_report *r)
{
    json_t *cp = json_pack("{s:I, s:b}", "total", (json_int_t)r->audit.checkpoints,
                           "checked", r->audit.checkpoints_checked);
    if (r->audit.checkpoints_checked) {
        json_object_set_new(cp, "verified", json_integer(r->audit.checkpoints_verified));
        json_object_set_new(cp, "failed", json_integer(r->audit.checkpoints_failed));
    }
    return json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:o, s:o}", "entries", (json_int_t)r->audit.entries,
                     "users", (json_int_t)r->audit.users, "chains", (json_int_t)r->audit.chains,
                     "expected_records", (json_int_t)r->audit.expected,
                     "shipped_records", (json_int_t)r->audit.shipped,
                     "missing_records", (json_int_t)(r->audit.expected - r->audit.shipped),
                     "completeness_pct", pct(r->audit.shipped, r->audit.expected), "checkpoints", cp);
}

static json_t *retention(const gdpr_report *r)
{
    json_t *types = json_array();
    for (size_t i = 0; i < r->retention.ntypes; i++) {
        const gdpr_report_retention *t = &r->retention.types[i];
        json_array_append_new(types, json_pack("{s:s, s:I, s:I, s:I, s:I}", "data_type", t->data_type,
            "runs", (json_int_t)t->runs, "completed", (json_int_t)t->completed,
            "failed", (json_int_t)t->failed, "rows_deleted", (json_int_t)t->rows));
    }
    return json_pack("{s:I, s:I, s:I, s:I, s:o}", "runs", (json_int_t)r->retention.runs,
                     "completed", (json_int_t)r->retention.completed, "failed", (json_int_t)r->retention.failed,
                     "rows_deleted", (json_int_t)r->retention.rows, "by_data_type", types);
}

json_t *gdpr_report_json(const gdpr_report *r)
{
    json_t *sev = json_object();
    for (int i = 0; i < GDPR_SEV_N; i++)
        json_object_set_new(sev, gdpr_severity_names[i], json_integer(r->incidents.by_severity[i]));
    return json_pack("{s:s, s:{s:s, s:s}, s:s, s:o, s:{s:I, s:I, s:I, s:I, s:I, s:I}, s:o,"
                     " s:{s:I, s:I, s:I, s:I, s:I, s:I}, s:{s:I, s:o}, s:o, s:o}",
        "report", "gdpr-compliance",
        "period", "start_date", r->period.start, "end_date", r->period.end,
        "generated_at", r->generated_at,
        "data_processing", processing(r),
        "deletions", "requests", (json_int_t)r->deletions.requests, "completed", (json_int_t)r->deletions.completed,
        "failed", (json_int_t)r->deletions.failed, "cancelled", (json_int_t)r->deletions.cancelled,
        "open", (json_int_t)r->deletions.open, "rows_deleted", (json_int_t)r->deletions.rows_deleted,
        "consents", consents(r),
        "data_portability", "exports", (json_int_t)r->portability.requests, "ready", (json_int_t)r->portability.ready,
        "failed", (json_int_t)r->portability.failed, "expired", (json_int_t)r->portability.expired,
        "pending", (json_int_t)r->portability.pending,
        "average_completion_seconds", (json_int_t)r->portability.avg_completion_s,
        "security_incidents", "total", (json_int_t)r->incidents.total, "by_severity", sev,
        "audit", audit(r),
        "retention", retention(r));
}

int gdpr_report_sha256(const json_t *report, char hex[65])
{
    json_t *c = json_deep_copy(report);
    unsigned char md[32];
    char *text;
    int rc = -1;

    if (c == NULL)
        return -1;
    json_object_del(c, "generated_at");
    json_object_del(c, "integrity");
    text = json_dumps(c, GDPR_REPORT_JSON_FLAGS);
    json_decref(c);
    if (text && EVP_Digest(text, strlen(text), md, NULL, EVP_sha256(), NULL) == 1) {
        for (int i = 0; i < 32; i++)
            snprintf(hex + 2 * i, 3, "%02x", md[i]);
        rc = 0;
    }
    free(text);
    return rc;
}
