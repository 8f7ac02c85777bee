/* The compliance report's query parameters (report.h).  Plain C, no
 * allocation: tests/fuzz/fuzz_gdpr_report_period.c feeds it bytes. */
#include <stdio.h>
#include <string.h>

#include "report.h"

/* days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant) */
static int64_t days_from_civil(int y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static void civil_from_days(int64_t z, char out[11])
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t y = yoe + era * 400;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    int d = (int)(doy - (153 * mp + 2) / 5 + 1);
    int m = (int)(mp < 10 ? mp + 3 : mp - 9);
    y += m <= 2;
    unsigned yy = (unsigned)(y % 10000), mm = (unsigned)m % 100, dd = (unsigned)d % 100;
    snprintf(out, 11, "%04u-%02u-%02u", yy, mm, dd);
}

static int leap(int y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

/* "YYYY-MM-DD", a real date from 1970 to 9999 -> days since the epoch */
static int parse_date(const char *s, int64_t *days)
{
    static const int mdays[] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
    int v[8];

    if (strlen(s) != 10 || s[4] != '-' || s[7] != '-')
        return -1;
    for (int i = 0, k = 0; i < 10; i++) {
        if (i == 4 || i == 7)
            continue;
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v[k++] = s[i] - '0';
    }
    int y = v[0] * 1000 + v[1] * 100 + v[2] * 10 + v[3], m = v[4] * 10 + v[5], d = v[6] * 10 + v[7];
    if (y < 1970 || m < 1 || m > 12 || d < 1 || d > mdays[m - 1] + (m == 2 && leap(y)))
        return -1;
    *days = days_from_civil(y, m, d);
    return 0;
}

int gdpr_report_period_parse(const char *start, const char *end, const char *format,
                             int64_t now_s, gdpr_report_period *p, char *err, size_t errlen)
{
    int64_t s, e;

    memset(p, 0, sizeof(*p));
    if (format && strcmp(format, "json") != 0 && strcmp(format, "pdf") != 0) {
        snprintf(err, errlen, "format must be json or pdf");
        return -1;
    }
    p->pdf = format && strcmp(format, "pdf") == 0;
    if (end == NULL)
        e = now_s / 86400;
    else if (parse_date(end, &e) != 0) {
        snprintf(err, errlen, "end_date must be a date YYYY-MM-DD");
        return -1;
    }
    if (start == NULL)
        s = e - 29;
    else if (parse_date(start, &s) != 0) {
        snprintf(err, errlen, "start_date must be a date YYYY-MM-DD");
        return -1;
    }
    if (s > e) {
        snprintf(err, errlen, "start_date must not be after end_date");
        return -1;
    }
    if (e - s + 1 > GDPR_REPORT_MAX_DAYS) {
        snprintf(err, errlen, "the period is at most %d days", GDPR_REPORT_MAX_DAYS);
        return -1;
    }
    if (s < 0)
        s = 0;
    civil_from_days(s, p->start);
    civil_from_days(e, p->end);
    p->start_s = s * 86400;
    p->end_s = (e + 1) * 86400;
    return 0;
}
