/*
 * insite-gdpr compliance report parameters: start_date, end_date and format
 * come from the client.  Input: three fields separated by '\n' (a missing
 * field is an absent parameter).  An accepted period must be well formed
 * (dates that parse again to the same period, start <= end, bounded).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../workers/gdpr/report_period.c"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char                *s, *f[3] = { NULL, NULL, NULL }, err[128];
    gdpr_report_period   p, q;
    size_t               n = 0;

    s = malloc(size + 1);
    if (s == NULL) {
        return 0;
    }
    memcpy(s, data, size);
    s[size] = '\0';
    f[n++] = s;
    for (char *c = s; *c && n < 3; c++) {
        if (*c == '\n') {
            *c = '\0';
            f[n++] = c + 1;
        }
    }
    if (gdpr_report_period_parse(f[0], f[1], f[2], 1796198400, &p, err, sizeof(err)) == 0) {
        if (p.start_s >= p.end_s || (p.end_s - p.start_s) / 86400 > GDPR_REPORT_MAX_DAYS
            || p.start_s % 86400 != 0) {
            abort();
        }
        if (gdpr_report_period_parse(p.start, p.end, p.pdf ? "pdf" : "json", 0, &q, err,
                                     sizeof(err)) != 0
            || q.start_s != p.start_s || q.end_s != p.end_s) {
            abort();
        }
    } else if (err[0] == '\0') {
        abort();
    }
    free(s);
    return 0;
}
