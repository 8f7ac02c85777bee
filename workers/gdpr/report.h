/* The compliance report (plan 5.5, docs/gdpr-retention.md):
 *
 *   report_period.c  start_date / end_date / format parameters (fuzzed)
 *   report.c         the numbers, read from PostgreSQL in one read-only
 *                    snapshot, and GET /api/v1/gdpr/compliance-report
 *   report_json.c    the numbers as JSON, and their SHA-256
 *   report_pdf.c     the numbers as a PDF (cairo + pango)
 *
 * JSON and PDF are both rendered from one gdpr_report, so they cannot
 * disagree; the SHA-256 both show covers the JSON of the numbers. */
#ifndef GDPR_REPORT_H
#define GDPR_REPORT_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#define GDPR_REPORT_MAX_DAYS 3660

/* The period: whole UTC days, end inclusive. */
typedef struct {
    char start[11], end[11];         /* "YYYY-MM-DD" */
    int64_t start_s, end_s;          /* Unix seconds: [start 00:00, end+1 00:00) */
    int pdf;                         /* format=pdf */
} gdpr_report_period;

/* start/end/format as the query gives them (NULL = absent: end = today,
 * start = end - 29 days, format json).  0, or -1 with the reason in err. */
int gdpr_report_period_parse(const char *start, const char *end, const char *format,
                             int64_t now_s, gdpr_report_period *p, char *err, size_t errlen);

enum { GDPR_ACCESS_READ, GDPR_ACCESS_WRITE, GDPR_ACCESS_DELETE, GDPR_ACCESS_EXPORT,
       GDPR_ACCESS_OTHER, GDPR_ACCESS_N };
extern const char *const gdpr_access_names[GDPR_ACCESS_N];
enum { GDPR_SEV_LOW, GDPR_SEV_MEDIUM, GDPR_SEV_HIGH, GDPR_SEV_CRITICAL, GDPR_SEV_N };
extern const char *const gdpr_severity_names[GDPR_SEV_N];

typedef struct { char date[11]; long long operations; } gdpr_report_day;
typedef struct {
    char type[33];
    long long granted, withheld;     /* current state */
    long long grants, withdrawals;   /* changes in the period */
} gdpr_report_consent;
typedef struct { char data_type[65]; long long runs, completed, failed, rows; } gdpr_report_retention;

typedef struct {
    gdpr_report_period period;
    char generated_at[32];
    struct {
        long long users, operations, by_access[GDPR_ACCESS_N];
        gdpr_report_day *days;
        size_t ndays;
    } processing;
    struct { long long requests, completed, failed, cancelled, open, rows_deleted; } deletions;
    struct {
        gdpr_report_consent *types;
        size_t ntypes;
        long long changes;
    } consents;
    struct { long long requests, ready, failed, expired, pending, avg_completion_s; } portability;
    struct { long long total, by_severity[GDPR_SEV_N]; } incidents;
    struct {
        long long entries, users, chains, expected, shipped;
        long long checkpoints, checkpoints_verified, checkpoints_failed;
        int checkpoints_checked;     /* 0: no gdpr.audit_public_key */
    } audit;
    struct {
        long long runs, completed, failed, rows;
        gdpr_report_retention *types;
        size_t ntypes;
    } retention;
} gdpr_report;

void gdpr_report_free(gdpr_report *r);

/* Percentages with two decimals, -1 when undefined (nothing to divide). */
double gdpr_report_pct(long long part, long long whole);

/* ---- report_json.c ---- */
/* The report as JSON (without "integrity"). */
json_t *gdpr_report_json(const gdpr_report *r);
/* hex SHA-256 of the canonical text of the numbers: the report's JSON
 * without generated_at, compact, sorted keys (GDPR_REPORT_JSON_FLAGS). */
int gdpr_report_sha256(const json_t *report, char hex[65]);
#define GDPR_REPORT_JSON_FLAGS (JSON_COMPACT | JSON_SORT_KEYS | JSON_REAL_PRECISION(12))

/* ---- report_pdf.c ---- */
/* The PDF; *out malloc'ed.  0 or -1 (logged). */
int gdpr_report_pdf(const gdpr_report *r, const char *sha256, const char *key_fingerprint,
                    unsigned char **out, size_t *len);

#endif
