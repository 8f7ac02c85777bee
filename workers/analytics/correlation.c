/* Inner join by k-way merge, then z-scores per series and one dot product
 * per pair: O(k * n + k^2 * n) with no allocation per pair. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "correlation.h"

/* Fills idx[j * cap + m] with the position in series j of the m-th common
 * timestamp.  Returns the number of common timestamps. */
static size_t align(const corr_series *s, size_t k, size_t *idx, size_t cap)
{
    size_t *pos = calloc(k, sizeof(*pos)), m = 0;
    if (pos == NULL)
        return 0;
    for (;;) {
        int64_t hi = INT64_MIN;
        size_t j;
        for (j = 0; j < k; j++) {
            if (pos[j] >= s[j].n)
                goto done;
            if (s[j].ts[pos[j]] > hi)
                hi = s[j].ts[pos[j]];
        }
        int all = 1;
        for (j = 0; j < k; j++) {
            while (pos[j] < s[j].n && s[j].ts[pos[j]] < hi)
                pos[j]++;
            if (pos[j] >= s[j].n)
                goto done;
            all &= s[j].ts[pos[j]] == hi;
        }
        if (!all)
            continue;
        for (j = 0; j < k && m < cap; j++)
            idx[j * cap + m] = pos[j]++;
        m++;
    }
done:
    free(pos);
    return m;
}

/* Log returns of series j over the aligned bars, standardised in place to
 * mean 0 and unit sum of squares; returns 0 if the series is flat. */
static int standardise(const corr_series *sj, const size_t *idx, size_t m, double *r)
{
    double mean = 0, ss = 0;
    for (size_t t = 1; t < m; t++) {
        r[t - 1] = log(sj->close[idx[t]] / sj->close[idx[t - 1]]);
        mean += r[t - 1];
    }
    mean /= (double)(m - 1);
    for (size_t t = 0; t + 1 < m; t++) {
        r[t] -= mean;
        ss += r[t] * r[t];
    }
    if (!(ss > 0) || !isfinite(ss))
        return 0;
    double inv = 1.0 / sqrt(ss);
    for (size_t t = 0; t + 1 < m; t++)
        r[t] *= inv;
    return 1;
}

int correlation_compute(const corr_series *s, size_t k, size_t min_points,
                        corr_result *out, char *err, size_t errlen)
{
    size_t cap = 0;
    out->points = 0;
    out->matrix = NULL;
    for (size_t j = 0; j < k; j++)
        if (j == 0 || s[j].n < cap)
            cap = s[j].n;
    size_t *idx = malloc((k * cap + 1) * sizeof(*idx));
    double *z = malloc((k * cap + 1) * sizeof(*z));
    int *ok = calloc(k + 1, sizeof(*ok));
    int rc = -1;
    if (idx == NULL || z == NULL || ok == NULL) {
        snprintf(err, errlen, "out of memory for %zu series of %zu points", k, cap);
        goto out;
    }
    size_t m = k ? align(s, k, idx, cap) : 0;
    out->points = m > 0 ? m - 1 : 0;
    if (out->points < min_points || out->points < 2) {
        snprintf(err, errlen, "only %zu aligned returns, at least %zu needed",
                 out->points, min_points < 2 ? 2 : min_points);
        goto out;
    }
    for (size_t j = 0; j < k; j++)
        ok[j] = standardise(&s[j], idx + j * cap, m, z + j * cap);
    if ((out->matrix = malloc(k * k * sizeof(double))) == NULL) {
        snprintf(err, errlen, "out of memory for a %zux%zu matrix", k, k);
        goto out;
    }
    for (size_t a = 0; a < k; a++)
        for (size_t b = a; b < k; b++) {
            double r = NAN;
            if (ok[a] && ok[b]) {
                r = 0;
                for (size_t t = 0; t < out->points; t++)
                    r += z[a * cap + t] * z[b * cap + t];
                r = a == b ? 1.0 : fmax(-1.0, fmin(1.0, r));
            }
            out->matrix[a * k + b] = out->matrix[b * k + a] = r;
        }
    rc = 0;
out:
    free(idx);
    free(z);
    free(ok);
    return rc;
}

void corr_result_free(corr_result *r)
{
    free(r->matrix);
    r->matrix = NULL;
}
