/* Regression, pivots and robust z-scores over one bar series. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "trends.h"

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double trends_median(double *x, size_t n)
{
    qsort(x, n, sizeof(*x), cmp_double);
    return n % 2 ? x[n / 2] : (x[n / 2 - 1] + x[n / 2]) / 2;
}

static void regression(const trend_bar *b, size_t n, trend_result *r)
{
    double mx = 0, my = 0, sxx = 0, sxy = 0, syy = 0;
    for (size_t i = 0; i < n; i++) {
        mx += (double)(b[i].ts - b[0].ts) / 86400.0;
        my += log(b[i].close);
    }
    mx /= (double)n;
    my /= (double)n;
    for (size_t i = 0; i < n; i++) {
        double dx = (double)(b[i].ts - b[0].ts) / 86400.0 - mx, dy = log(b[i].close) - my;
        sxx += dx * dx;
        sxy += dx * dy;
        syy += dy * dy;
    }
    r->slope_per_day = sxx > 0 ? sxy / sxx : 0;
    double sse = syy - r->slope_per_day * sxy;
    if (sse < 0)
        sse = 0;
    r->r_squared = syy > 0 ? 1 - sse / syy : 0;
    double se = sxx > 0 ? sqrt(sse / (double)(n - 2) / sxx) : 0;
    r->t_stat = se > 0 ? r->slope_per_day / se : (r->slope_per_day != 0 ? copysign(INFINITY, r->slope_per_day) : 0);
    int trending = fabs(r->t_stat) >= TREND_T_MIN && r->r_squared >= TREND_R2_MIN;
    r->trend = !trending ? "sideways" : r->slope_per_day > 0 ? "uptrend" : "downtrend";
    r->strength = trending ? r->r_squared : 0;
}

/* Pivot low (sign -1) / high (+1) at i: the extreme of its span. */
static int is_pivot(const trend_bar *b, size_t n, size_t i, int sign)
{
    if (i < TREND_PIVOT_SPAN || i + TREND_PIVOT_SPAN >= n)
        return 0;
    double v = sign > 0 ? b[i].high : b[i].low;
    for (size_t j = i - TREND_PIVOT_SPAN; j <= i + TREND_PIVOT_SPAN; j++) {
        double o = sign > 0 ? b[j].high : b[j].low;
        if (j != i && (sign > 0 ? o > v : o < v))
            return 0;
    }
    return 1;
}


/* Clusters pivot prices (sorted ascending): a price joins the current
 * cluster when within TREND_CLUSTER_PCT of its running mean.  Keeps the
 * levels below (support) or above (resistance) the last close, nearest
 * first, at most TREND_LEVELS_MAX. */
static size_t levels(const trend_bar *b, size_t n, int sign, trend_level *out)
{
    double *p = malloc(n * sizeof(*p));
    trend_level *cl = malloc(n * sizeof(*cl));
    size_t np = 0, nc = 0, kept = 0;
    if (p == NULL || cl == NULL)
        goto out;
    for (size_t i = 0; i < n; i++)
        if (is_pivot(b, n, i, sign))
            p[np++] = sign > 0 ? b[i].high : b[i].low;
    qsort(p, np, sizeof(*p), cmp_double);
    double sum = 0;
    for (size_t i = 0; i < np; i++) {
        if (nc > 0 && p[i] <= cl[nc - 1].price * (1 + TREND_CLUSTER_PCT)) {
            sum += p[i];
            cl[nc - 1].touches++;
            cl[nc - 1].price = sum / cl[nc - 1].touches;
            continue;
        }
        sum = p[i];
        cl[nc].price = p[i];
        cl[nc++].touches = 1;
    }
    double last = b[n - 1].close;
    if (sign < 0) {   /* support: below the close, highest first */
        for (size_t i = nc; i-- > 0 && kept < TREND_LEVELS_MAX;)
            if (cl[i].price < last)
                out[kept++] = cl[i];
    } else {          /* resistance: above the close, lowest first */
        for (size_t i = 0; i < nc && kept < TREND_LEVELS_MAX; i++)
            if (cl[i].price > last)
                out[kept++] = cl[i];
    }
out:
    free(p);
    free(cl);
    return kept;
}

/* Adds the points of x (at bars ts[i]) whose robust z exceeds the limit. */
static int robust_outliers(const double *x, const int64_t *ts, size_t n,
                           const char *kind, trend_result *r)
{
    double *tmp = malloc(n * sizeof(*tmp));
    if (tmp == NULL)
        return -1;
    memcpy(tmp, x, n * sizeof(*tmp));
    double med = trends_median(tmp, n);
    for (size_t i = 0; i < n; i++)
        tmp[i] = fabs(x[i] - med);
    double mad = trends_median(tmp, n);
    free(tmp);
    if (!(mad > 0))
        return 0;   /* over half the points equal: no scale to measure by */
    for (size_t i = 0; i < n; i++) {
        double z = 0.6745 * (x[i] - med) / mad;
        if (fabs(z) <= TREND_Z_MAX)
            continue;
        trend_anomaly *a = realloc(r->anomalies, (r->nanomalies + 1) * sizeof(*a));
        if (a == NULL)
            return -1;
        r->anomalies = a;
        a[r->nanomalies++] = (trend_anomaly){ ts[i], kind, x[i], z };
    }
    return 0;
}

static int anomalies(const trend_bar *b, size_t n, trend_result *r)
{
    double *x = malloc(n * sizeof(*x));
    int64_t *ts = malloc(n * sizeof(*ts));
    int rc = -1;
    if (x == NULL || ts == NULL)
        goto out;
    for (size_t i = 1; i < n; i++) {
        x[i - 1] = log(b[i].close / b[i - 1].close);
        ts[i - 1] = b[i].ts;
    }
    if (robust_outliers(x, ts, n - 1, "return", r) != 0)
        goto out;
    size_t nv = 0;
    for (size_t i = 0; i < n; i++)
        if (b[i].volume > 0) {
            x[nv] = b[i].volume;
            ts[nv++] = b[i].ts;
        }
    rc = nv >= TREND_MIN_POINTS ? robust_outliers(x, ts, nv, "volume", r) : 0;
out:
    free(x);
    free(ts);
    return rc;
}

int trends_compute(const trend_bar *bars, size_t n, trend_result *out,
                   char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    out->points = n;
    if (n < TREND_MIN_POINTS) {
        snprintf(err, errlen, "only %zu bars, at least %d needed", n, TREND_MIN_POINTS);
        return -1;
    }
    for (size_t i = 0; i < n; i++)
        if (!(bars[i].close > 0) || !(bars[i].high > 0) || !(bars[i].low > 0)) {
            snprintf(err, errlen, "bar %zu has a non-positive price", i);
            return -1;
        }
    regression(bars, n, out);
    out->nsupport = levels(bars, n, -1, out->support);
    out->nresistance = levels(bars, n, +1, out->resistance);
    if (anomalies(bars, n, out) != 0) {
        snprintf(err, errlen, "out of memory for %zu bars", n);
        trend_result_free(out);
        return -1;
    }
    return 0;
}

void trend_result_free(trend_result *r)
{
    free(r->anomalies);
    r->anomalies = NULL;
    r->nanomalies = 0;
}
