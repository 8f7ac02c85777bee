/* Pearson correlation of aligned log returns.
 *
 * Series are aligned on the timestamps every one of them has (an inner
 * join); returns are ln(p[t] / p[t-1]) between consecutive aligned
 * timestamps, so a gap in one symbol removes that bar for all. */
#ifndef ANALYTICS_CORRELATION_H
#define ANALYTICS_CORRELATION_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    const int64_t *ts;      /* ascending */
    const double *close;    /* > 0 */
    size_t n;
} corr_series;

typedef struct {
    size_t points;          /* aligned returns used */
    double *matrix;         /* k * k, row-major; NAN where a series is flat */
} corr_result;

/* 0, or -1 with the reason in err: fewer than min_points aligned returns
 * (out->points still says how many), or out of memory. */
int correlation_compute(const corr_series *s, size_t k, size_t min_points,
                        corr_result *out, char *err, size_t errlen);
void corr_result_free(corr_result *r);

#endif
