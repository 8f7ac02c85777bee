/* Trend analysis of one symbol's bars (docs/analytics.md has every method
 * and threshold):
 *   - OLS of ln(close) on time in days: slope, t statistic, R^2;
 *     uptrend/downtrend when |t| >= TREND_T_MIN and R^2 >= TREND_R2_MIN,
 *     else sideways; strength = R^2 for a trend, 0 when sideways;
 *   - support/resistance: pivot lows/highs (extreme of the 2 bars either
 *     side), clustered when within TREND_CLUSTER_PCT of the cluster mean;
 *   - anomalies: log returns and volumes whose robust z-score
 *     0.6745 * (x - median) / MAD exceeds TREND_Z_MAX. */
#ifndef ANALYTICS_TRENDS_H
#define ANALYTICS_TRENDS_H

#include <stddef.h>
#include <stdint.h>

#define TREND_T_MIN 2.0
#define TREND_R2_MIN 0.3
#define TREND_PIVOT_SPAN 2
#define TREND_CLUSTER_PCT 0.015
#define TREND_Z_MAX 3.5
#define TREND_LEVELS_MAX 5
#define TREND_MIN_POINTS 10

typedef struct {
    int64_t ts;          /* unix seconds */
    double close, high, low, volume;   /* high/low may equal close */
} trend_bar;

typedef struct {
    double price;
    int touches;
} trend_level;

typedef struct {
    int64_t ts;
    const char *kind;    /* "return" or "volume" */
    double value;        /* the log return or the volume */
    double z;            /* robust z-score (signed) */
} trend_anomaly;

typedef struct {
    const char *trend;   /* "uptrend", "downtrend", "sideways" */
    double strength;
    double slope_per_day, t_stat, r_squared;
    size_t points;
    trend_level support[TREND_LEVELS_MAX], resistance[TREND_LEVELS_MAX];
    size_t nsupport, nresistance;
    trend_anomaly *anomalies;   /* malloc'd */
    size_t nanomalies;
} trend_result;

/* bars ascending by ts.  0, or -1 with the reason in err (too few bars,
 * a non-positive price, out of memory). */
int trends_compute(const trend_bar *bars, size_t n, trend_result *out,
                   char *err, size_t errlen);
void trend_result_free(trend_result *r);

/* Median of x[0..n) (x is reordered); n > 0. */
double trends_median(double *x, size_t n);

#endif
