/* The simulated feed: a geometric random walk per symbol, for demos with no
 * network and no recordings.  Every quote carries "source":"simulated". */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "clock.h"
#include "log.h"
#include "provider.h"

#define SIM_MAX 256

typedef struct {
    char symbol[SYMBOL_MAX];
    double price, open;
    long long volume;
} walk;

typedef struct {
    walk w[SIM_MAX];
    size_t n;
    double start, sigma;
    unsigned seed;
} sim;

static double gauss(unsigned *seed)
{
    double u1 = (rand_r(seed) + 1.0) / ((double)RAND_MAX + 2.0);
    double u2 = (rand_r(seed) + 1.0) / ((double)RAND_MAX + 2.0);
    return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

static walk *find(sim *s, const char *symbol)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcasecmp(s->w[i].symbol, symbol) == 0)
            return &s->w[i];
    if (s->n == SIM_MAX)
        return NULL;
    walk *w = &s->w[s->n++];
    snprintf(w->symbol, sizeof(w->symbol), "%s", symbol);
    w->price = w->open = s->start;
    return w;
}

static int sim_fetch(provider *p, char *const *symbols, size_t n, quote_result *out)
{
    sim *s = p->state;
    int ok = 0;

    for (size_t i = 0; i < n; i++) {
        quote_result *r = &out[i];
        walk *w = find(s, symbols[i]);
        memset(r, 0, sizeof(*r));
        snprintf(r->symbol, sizeof(r->symbol), "%s", symbols[i]);
        if (w == NULL) {
            snprintf(r->err, sizeof(r->err), "more than %d simulated symbols", SIM_MAX);
            continue;
        }
        w->price = price_round(w->price * exp(s->sigma * gauss(&s->seed)));
        if (w->price < 0.01)
            w->price = 0.01;
        w->volume += 100 + rand_r(&s->seed) % 10000;
        r->q = (quote){ .price = w->price, .prev_close = w->open, .volume = w->volume,
                        .currency = "USD", .market_time = time(NULL), .source = "simulated" };
        snprintf(r->q.symbol, sizeof(r->q.symbol), "%s", symbols[i]);
        r->ok = 1;
        ok++;
    }
    return ok;
}

static void sim_free(provider *p)
{
    free(p->state);
    free(p);
}

provider *provider_simulated_new(const insite_config *cfg)
{
    provider *p = calloc(1, sizeof(*p));
    sim *s = calloc(1, sizeof(*s));

    if (p == NULL || s == NULL) {
        insite_log_error("simulated: out of memory");
        free(s);
        free(p);
        return NULL;
    }
    s->start = insite_config_double(cfg, "provider.sim_start");
    s->sigma = insite_config_double(cfg, "provider.sim_volatility");
    s->seed = (unsigned)insite_config_int(cfg, "provider.sim_seed");
    if (s->seed == 0)
        s->seed = (unsigned)insite_clock_mono_ms() ^ (unsigned)time(NULL);
    p->name = "simulated";
    p->fetch = sim_fetch;
    p->free = sim_free;
    p->state = s;
    insite_log_warn("provider simulated: prices are a random walk, labelled \"source\":\"simulated\"");
    return p;
}
