/* correlation_compute() on generated data: K symbols x one year of minute
 * bars (252 sessions x 390 minutes = 98,280 bars each), correlated random
 * walks (a market factor plus noise), a few bars missing per symbol so the
 * inner join has work to do.  Prints one JSON line; the time covers the
 * alignment, the log returns and every pair, not the data generation.
 *
 *   corr_bench [K=50] [ROUNDS=5] */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "clock.h"
#include "../../workers/analytics/correlation.h"

static uint64_t rng = 88172645463325252ULL;

static double uniform(void)               /* xorshift64 */
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (double)(rng >> 11) / 9007199254740992.0;
}

static double gauss(void)
{
    double u = uniform(), v = uniform();
    return sqrt(-2 * log(u + 1e-300)) * cos(2 * M_PI * v);
}

int main(int argc, char **argv)
{
    size_t k = argc > 1 ? (size_t)atol(argv[1]) : 50;
    int rounds = argc > 2 ? atoi(argv[2]) : 5;
    const size_t n = 252 * 390;
    const int64_t t0 = 1704205800;         /* 2024-01-02 14:30 UTC */
    double *market = malloc(n * sizeof(double));
    corr_series *s = calloc(k, sizeof(*s));
    for (size_t t = 0; t < n; t++)
        market[t] = gauss() * 0.0008;
    for (size_t j = 0; j < k; j++) {
        int64_t *ts = malloc(n * sizeof(int64_t));
        double *close = malloc(n * sizeof(double)), p = 100, beta = 0.8 + 0.02 * (double)j;
        size_t m = 0;
        for (size_t t = 0; t < n; t++) {
            p *= exp(beta * market[t] + gauss() * 0.001);
            if (uniform() < 0.001)         /* ~0.1 % of bars missing */
                continue;
            ts[m] = t0 + (int64_t)(t / 390) * 86400 + (int64_t)(t % 390) * 60;
            close[m++] = p;
        }
        s[j] = (corr_series){ ts, close, m };
    }
    double best = 1e9, total = 0, check = 0;
    size_t points = 0;
    for (int r = 0; r < rounds; r++) {
        corr_result res;
        char err[128];
        double a = insite_clock_mono_s();
        if (correlation_compute(s, k, 20, &res, err, sizeof(err)) != 0) {
            fprintf(stderr, "correlation: %s\n", err);
            return 1;
        }
        double el = insite_clock_mono_s() - a;
        total += el;
        best = el < best ? el : best;
        points = res.points;
        check = res.matrix[1];
        corr_result_free(&res);
    }
    printf("{\"symbols\":%zu,\"bars_per_symbol\":%zu,\"aligned_returns\":%zu,\"pairs\":%zu,"
           "\"best_s\":%.3f,\"mean_s\":%.3f,\"r01\":%.4f}\n",
           k, n, points, k * (k - 1) / 2, best, total / rounds, check);
    for (size_t j = 0; j < k; j++) {
        free((void *)s[j].ts);
        free((void *)s[j].close);
    }
    free(s);
    free(market);
    return 0;
}
