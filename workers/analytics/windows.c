/* Sliding windows: one sorted sample array per symbol, in an
 * open-addressing table (symbols are few and never removed). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "vader.h"
#include "windows.h"

const sent_window_def sent_window_defs[SENT_NWINDOWS] = {
    { "1h", 3600LL * 1000 },
    { "24h", 86400LL * 1000 },
};

typedef struct {
    int64_t ts;
    double compound;
} sample;

typedef struct {
    char symbol[SENT_SYMBOL_MAX];   /* "" = free slot */
    sample *s;
    size_t n, cap;
    sent_agg last[SENT_NWINDOWS];   /* last published */
    int published;                  /* last[] is meaningful */
    int attempted;
    int64_t attempt_ms;             /* last call of the due callback */
} entry;

struct sent_windows {
    entry *slots;
    size_t cap, used, samples;
};

static uint64_t fnv1a(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

sent_windows *sent_windows_new(void)
{
    sent_windows *w = calloc(1, sizeof(*w));
    if (w == NULL || (w->slots = calloc(64, sizeof(entry))) == NULL) {
        free(w);
        insite_log_error("sentiment windows: out of memory");
        return NULL;
    }
    w->cap = 64;
    return w;
}

void sent_windows_free(sent_windows *w)
{
    if (w == NULL)
        return;
    for (size_t i = 0; i < w->cap; i++)
        free(w->slots[i].s);
    free(w->slots);
    free(w);
}

static entry *find(const sent_windows *w, const char *symbol)
{
    for (size_t i = fnv1a(symbol) & (w->cap - 1);; i = (i + 1) & (w->cap - 1)) {
        entry *e = &w->slots[i];
        if (e->symbol[0] == '\0' || strcmp(e->symbol, symbol) == 0)
            return e;
    }
}

static int grow(sent_windows *w)
{
    entry *old = w->slots;
    size_t ocap = w->cap;
    if ((w->slots = calloc(ocap * 2, sizeof(entry))) == NULL) {
        w->slots = old;
        return -1;
    }
    w->cap = ocap * 2;
    for (size_t i = 0; i < ocap; i++)
        if (old[i].symbol[0])
            *find(w, old[i].symbol) = old[i];
    free(old);
    return 0;
}

int sent_windows_add(sent_windows *w, const char *symbol, int64_t ts_ms, double compound)
{
    size_t len = strlen(symbol);
    if (len == 0 || len >= SENT_SYMBOL_MAX) {
        insite_log_error("sentiment windows: invalid symbol \"%s\"", symbol);
        return -1;
    }
    if ((w->used + 1) * 2 > w->cap && grow(w) != 0)
        goto oom;
    entry *e = find(w, symbol);
    if (e->symbol[0] == '\0') {
        memcpy(e->symbol, symbol, len + 1);
        w->used++;
    }
    if (e->n == e->cap) {
        size_t ncap = e->cap ? e->cap * 2 : 16;
        sample *s = realloc(e->s, ncap * sizeof(*s));
        if (s == NULL)
            goto oom;
        e->s = s;
        e->cap = ncap;
    }
    /* posts mostly arrive in time order: search from the back */
    size_t at = e->n;
    while (at > 0 && e->s[at - 1].ts > ts_ms)
        at--;
    memmove(&e->s[at + 1], &e->s[at], (e->n - at) * sizeof(sample));
    e->s[at] = (sample){ ts_ms, compound };
    e->n++;
    w->samples++;
    return 0;
oom:
    insite_log_error("sentiment windows: out of memory adding a sample for %s", symbol);
    return -1;
}

static void aggregate(const entry *e, int64_t now_ms, int64_t span_ms, sent_agg *out)
{
    double sum = 0;
    memset(out, 0, sizeof(*out));
    for (size_t i = e->n; i > 0 && e->s[i - 1].ts > now_ms - span_ms; i--) {
        double c = e->s[i - 1].compound;
        if (e->s[i - 1].ts > now_ms)
            continue;               /* not yet in the window at now_ms */
        sum += c;
        out->mentions++;
        if (c >= SENT_POS_THRESHOLD)
            out->positive++;
        else if (c <= SENT_NEG_THRESHOLD)
            out->negative++;
        else
            out->neutral++;
    }
    if (out->mentions > 0)
        out->compound = vader_round(sum / out->mentions, 4) + 0.0;   /* no -0 */
}

void sent_windows_aggregate(const sent_windows *w, const char *symbol, int64_t now_ms,
                            int64_t span_ms, sent_agg *out)
{
    const entry *e = find(w, symbol);
    if (e->symbol[0] == '\0') {
        memset(out, 0, sizeof(*out));
        return;
    }
    aggregate(e, now_ms, span_ms, out);
}

static void expire(sent_windows *w, entry *e, int64_t now_ms)
{
    int64_t horizon = 0;
    for (int i = 0; i < SENT_NWINDOWS; i++)
        if (sent_window_defs[i].span_ms > horizon)
            horizon = sent_window_defs[i].span_ms;
    size_t k = 0;
    while (k < e->n && e->s[k].ts <= now_ms - horizon)
        k++;
    if (k > 0) {
        memmove(e->s, &e->s[k], (e->n - k) * sizeof(sample));
        e->n -= k;
        w->samples -= k;
    }
}

static int agg_equal(const sent_agg *a, const sent_agg *b)
{
    return a->compound == b->compound && a->positive == b->positive
        && a->negative == b->negative && a->neutral == b->neutral
        && a->mentions == b->mentions;
}

size_t sent_windows_due(sent_windows *w, int64_t now_ms, int64_t interval_ms,
                        sent_due_fn fn, void *ud)
{
    size_t calls = 0;
    for (size_t i = 0; i < w->cap; i++) {
        entry *e = &w->slots[i];
        if (e->symbol[0] == '\0')
            continue;
        expire(w, e, now_ms);
        if (e->n == 0 && e->published && e->last[SENT_NWINDOWS - 1].mentions == 0
            && e->last[0].mentions == 0)
            continue;               /* idle and already reported empty */
        if (e->attempted && now_ms - e->attempt_ms < interval_ms)
            continue;
        sent_agg aggs[SENT_NWINDOWS];
        int changed[SENT_NWINDOWS], any = 0;
        for (int k = 0; k < SENT_NWINDOWS; k++) {
            aggregate(e, now_ms, sent_window_defs[k].span_ms, &aggs[k]);
            changed[k] = !e->published || !agg_equal(&aggs[k], &e->last[k]);
            any |= changed[k];
        }
        if (!any)
            continue;
        e->attempted = 1;
        e->attempt_ms = now_ms;
        calls++;
        if (fn(e->symbol, aggs, changed, ud) == 0) {
            memcpy(e->last, aggs, sizeof(aggs));
            e->published = 1;
        }
    }
    return calls;
}

size_t sent_windows_symbols(const sent_windows *w)
{
    return w->used;
}

size_t sent_windows_samples(const sent_windows *w)
{
    return w->samples;
}
