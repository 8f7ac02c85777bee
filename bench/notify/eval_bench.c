/* insite-notify's rule engine alone: RULES rules over SYMBOLS symbols
 * (a mix of every rule type, windows of 1..60 minutes), UPDATES random-walk
 * updates evaluated on this thread.  Prints one JSON line. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    long nrules = argc > 1 ? atol(argv[1]) : 100000;
    int nsym = argc > 2 ? atoi(argv[2]) : 500;
    long nupd = argc > 3 ? atol(argv[3]) : 2000000;
    notify_engine *e = notify_engine_new();
    char (*syms)[16] = calloc((size_t)nsym, sizeof(*syms));
    double *price = calloc((size_t)nsym, sizeof(double)), *vol = calloc((size_t)nsym, sizeof(double));
    srand(42);
    for (int s = 0; s < nsym; s++) {
        snprintf(syms[s], sizeof(syms[s]), "S%03d", s);
        price[s] = 50 + rand() % 400;
    }
    for (long i = 0; i < nrules; i++) {
        int s = (int)(i % nsym);
        notify_rule r = { .id = i + 1, .enabled = 1, .recurring = 1, .cooldown_ms = 60000 };
        snprintf(r.user, sizeof(r.user), "u%ld", i % 20000);
        strcpy(r.symbol, syms[s]);
        r.kind = (notify_kind)(i % NR_NKINDS);
        r.window_ms = (1 + i % 4 * 15) * 60000;
        switch (r.kind) {
        case NR_PRICE_ABOVE: r.value = price[s] * (1.0 + (rand() % 50) / 1000.0); break;
        case NR_PRICE_BELOW: r.value = price[s] * (1.0 - (rand() % 50) / 1000.0); break;
        case NR_PERCENT_CHANGE: r.value = 0.5 + rand() % 5; break;
        case NR_VOLUME_SPIKE: r.value = 2 + rand() % 4; break;
        case NR_SENTIMENT_ABOVE: r.value = 0.3; break;
        case NR_SENTIMENT_BELOW: r.value = -0.3; break;
        default: r.value = 0.2; break;
        }
        notify_engine_add(e, &r);
    }
    notify_fire *fires = NULL;
    size_t nf = 0, cap = 0, fired = 0;
    int64_t t = 1796176800000LL;
    double t0 = now_s();
    for (long i = 0; i < nupd; i++) {
        int s = rand() % nsym;
        notify_update u = { .symbol = syms[s], .ts_ms = t += 2 };
        if (i % 10 == 9) {
            u.has_sentiment = 1;
            u.sentiment = (rand() % 2001 - 1000) / 1000.0;
        } else {
            price[s] *= 1.0 + ((rand() % 2001) - 1000) / 200000.0;
            vol[s] += rand() % 1000;
            u.has_price = u.has_volume = 1;
            u.price = price[s];
            u.volume = vol[s];
        }
        nf = 0;
        notify_engine_update(e, &u, &fires, &nf, &cap);
        fired += nf;
        if ((i & 1023) == 0)
            notify_engine_clean(e, NULL, NULL);
    }
    double el = now_s() - t0;
    printf("{\"rules\":%ld,\"symbols\":%d,\"updates\":%ld,\"seconds\":%.3f,"
           "\"updates_per_sec\":%.0f,\"us_per_update\":%.2f,\"fired\":%zu}\n",
           nrules, nsym, nupd, el, (double)nupd / el, el * 1e6 / (double)nupd, fired);
    free(fires);
    free(syms);
    free(price);
    free(vol);
    notify_engine_free(e);
    return 0;
}
