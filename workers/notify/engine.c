#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"

/* Samples kept per symbol and metric: enough for a window of the longest
 * allowed length at one update every ~40 s, or a short window at any rate.
 * When a window holds more updates than this, its oldest kept sample is
 * its reference (documented in docs/notify.md). */
#define RING_CAP 2048
#define MEMO_MAX 8

typedef struct {
    int64_t ts[RING_CAP];
    double v[RING_CAP], vol[RING_CAP];
    double csum[RING_CAP];            /* running sum of volume increments, so a
                                         window's average costs O(1) */
    size_t head, n;                   /* oldest at head */
} ring;

typedef struct rule_node {
    notify_rule r;
    struct rule_node *id_next;
    struct sym *sym;
} rule_node;

typedef struct sym {
    char name[NOTIFY_SYMBOL_MAX + 1];
    struct sym *next;
    rule_node **rules;
    size_t nrules, cap;
    size_t nwindowed;
    ring *series[2];                  /* price, sentiment; lazily allocated */
} sym;

struct notify_engine {
    sym **sbuckets;
    size_t nsb, nsyms;
    rule_node **ibuckets;
    size_t nib, nrules;
    int64_t *dirty;                   /* ids whose state changed, for clean() */
    size_t ndirty, dirty_cap;
};

static void mark_dirty(notify_engine *e, notify_rule *r)
{
    if (r->dirty)
        return;
    if (e->ndirty == e->dirty_cap) {
        size_t nc = e->dirty_cap ? e->dirty_cap * 2 : 64;
        int64_t *d = realloc(e->dirty, nc * sizeof(*d));
        if (d == NULL)
            return;                   /* state is written at the next change */
        e->dirty = d;
        e->dirty_cap = nc;
    }
    e->dirty[e->ndirty++] = r->id;
    r->dirty = 1;
}

static const char *const kind_names[NR_NKINDS] = {
    "price_above", "price_below", "percent_change", "volume_spike",
    "sentiment_above", "sentiment_below", "sentiment_shift",
};
static const char *const prio_names[] = { "CRITICAL", "HIGH", "MEDIUM", "LOW" };

const char *notify_kind_name(notify_kind k) { return k < NR_NKINDS ? kind_names[k] : "?"; }
const char *notify_priority_name(notify_priority p) { return p <= NP_LOW ? prio_names[p] : "?"; }

int notify_kind_parse(const char *s)
{
    for (int i = 0; i < NR_NKINDS; i++)
        if (strcmp(s, kind_names[i]) == 0)
            return i;
    return -1;
}

int notify_priority_parse(const char *s)
{
    for (int i = 0; i <= NP_LOW; i++)
        if (strcmp(s, prio_names[i]) == 0)
            return i;
    return -1;
}

int notify_kind_windowed(notify_kind k)
{
    return k == NR_PERCENT_CHANGE || k == NR_VOLUME_SPIKE || k == NR_SENTIMENT_SHIFT;
}

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    while (*s)
        h = (h ^ (unsigned char)*s++) * 1099511628211ULL;
    return h;
}

static size_t hash_id(int64_t id, size_t n)
{
    uint64_t x = (uint64_t)id * 0x9E3779B97F4A7C15ULL;
    return (size_t)(x >> 32) & (n - 1);
}

notify_engine *notify_engine_new(void)
{
    notify_engine *e = calloc(1, sizeof(*e));
    if (e == NULL)
        return NULL;
    e->nsb = 256;
    e->nib = 1024;
    e->sbuckets = calloc(e->nsb, sizeof(*e->sbuckets));
    e->ibuckets = calloc(e->nib, sizeof(*e->ibuckets));
    if (e->sbuckets == NULL || e->ibuckets == NULL) {
        notify_engine_free(e);
        return NULL;
    }
    return e;
}

void notify_engine_free(notify_engine *e)
{
    if (e == NULL)
        return;
    for (size_t i = 0; e->sbuckets && i < e->nsb; i++)
        for (sym *s = e->sbuckets[i], *nx; s; s = nx) {
            nx = s->next;
            for (size_t j = 0; j < s->nrules; j++)
                free(s->rules[j]);
            free(s->rules);
            free(s->series[0]);
            free(s->series[1]);
            free(s);
        }
    free(e->sbuckets);
    free(e->ibuckets);
    free(e->dirty);
    free(e);
}

static sym *sym_find(notify_engine *e, const char *name)
{
    for (sym *s = e->sbuckets[hash_str(name) & (e->nsb - 1)]; s; s = s->next)
        if (strcmp(s->name, name) == 0)
            return s;
    return NULL;
}

static int sym_grow(notify_engine *e)
{
    size_t n = e->nsb * 2;
    sym **b = calloc(n, sizeof(*b));
    if (b == NULL)
        return -1;
    for (size_t i = 0; i < e->nsb; i++)
        for (sym *s = e->sbuckets[i], *nx; s; s = nx) {
            nx = s->next;
            size_t k = hash_str(s->name) & (n - 1);
            s->next = b[k];
            b[k] = s;
        }
    free(e->sbuckets);
    e->sbuckets = b;
    e->nsb = n;
    return 0;
}

static sym *sym_get(notify_engine *e, const char *name)
{
    sym *s = sym_find(e, name);
    if (s != NULL)
        return s;
    if (strlen(name) > NOTIFY_SYMBOL_MAX)
        return NULL;
    if (e->nsyms >= e->nsb && sym_grow(e) != 0)
        return NULL;
    if ((s = calloc(1, sizeof(*s))) == NULL)
        return NULL;
    strcpy(s->name, name);
    size_t k = hash_str(name) & (e->nsb - 1);
    s->next = e->sbuckets[k];
    e->sbuckets[k] = s;
    e->nsyms++;
    return s;
}

static int id_grow(notify_engine *e)
{
    size_t n = e->nib * 2;
    rule_node **b = calloc(n, sizeof(*b));
    if (b == NULL)
        return -1;
    for (size_t i = 0; i < e->nib; i++)
        for (rule_node *r = e->ibuckets[i], *nx; r; r = nx) {
            nx = r->id_next;
            size_t k = hash_id(r->r.id, n);
            r->id_next = b[k];
            b[k] = r;
        }
    free(e->ibuckets);
    e->ibuckets = b;
    e->nib = n;
    return 0;
}

static rule_node *node_find(notify_engine *e, int64_t id)
{
    for (rule_node *r = e->ibuckets[hash_id(id, e->nib)]; r; r = r->id_next)
        if (r->r.id == id)
            return r;
    return NULL;
}

notify_rule *notify_engine_get(notify_engine *e, int64_t id)
{
    rule_node *n = node_find(e, id);
    return n ? &n->r : NULL;
}

size_t notify_engine_count(const notify_engine *e) { return e->nrules; }

/* ---- samples */

static ring *series(sym *s, int metric, int create)
{
    if (s->series[metric] == NULL && create)
        s->series[metric] = calloc(1, sizeof(ring));
    return s->series[metric];
}

static size_t ridx(const ring *g, size_t i) { return (g->head + i) % RING_CAP; }

static void ring_push(ring *g, int64_t ts, double v, double vol)
{
    if (g->n > 0 && ts < g->ts[ridx(g, g->n - 1)])
        ts = g->ts[ridx(g, g->n - 1)];       /* out of order: keep the series monotonic */
    size_t k;
    double prev_sum = 0, inc = 0;
    if (g->n > 0) {
        size_t last = ridx(g, g->n - 1);
        prev_sum = g->csum[last];
        inc = vol >= g->vol[last] ? vol - g->vol[last] : vol;   /* a new session restarts */
    }
    if (g->n < RING_CAP)
        k = ridx(g, g->n++);
    else {
        k = g->head;
        g->head = (g->head + 1) % RING_CAP;
    }
    g->ts[k] = ts;
    g->v[k] = v;
    g->vol[k] = vol;
    g->csum[k] = prev_sum + inc;
}

/* Logical index of the first sample with ts >= t (n when none). */
static size_t ring_first_at(const ring *g, int64_t t)
{
    size_t lo = 0, hi = g->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (g->ts[ridx(g, mid)] < t)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

void notify_engine_sample(notify_engine *e, const char *symbol, int metric, int64_t ts_ms,
                          double value, double volume)
{
    sym *s = sym_get(e, symbol);
    ring *g = s ? series(s, metric & 1, 1) : NULL;
    if (g != NULL)
        ring_push(g, ts_ms, value, volume);
}

int notify_engine_symbol_windowed(notify_engine *e, const char *symbol)
{
    sym *s = sym_find(e, symbol);
    return s != NULL && s->nwindowed > 0;
}

/* ---- evaluation */

typedef struct {
    const notify_update *u;
    const ring *price, *sent;
    int64_t memo_w[2][MEMO_MAX];
    double memo_a[2][MEMO_MAX], memo_b[2][MEMO_MAX];
    int memo_ok[2][MEMO_MAX];
    int nmemo[2];
    double vol_inc;                   /* this update's volume increment, NAN unknown */
} eval_ctx;

/* Window statistics: metric 0 -> (a = reference price, b = average volume
 * increment); metric 1 -> (a = reference sentiment).  Memoised per update
 * since many rules share a window. */
static int window_stats(eval_ctx *c, int metric, int64_t w, double *a, double *b)
{
    for (int i = 0; i < c->nmemo[metric]; i++)
        if (c->memo_w[metric][i] == w) {
            *a = c->memo_a[metric][i];
            *b = c->memo_b[metric][i];
            return c->memo_ok[metric][i];
        }
    const ring *g = metric ? c->sent : c->price;
    int ok = 0;
    *a = *b = NAN;
    if (g != NULL && g->n > 0) {
        size_t first = ring_first_at(g, c->u->ts_ms - w);
        if (first < g->n) {
            *a = g->v[ridx(g, first)];
            ok = 1;
            if (metric == 0) {
                /* increments of samples first..n-1 (each vs its predecessor) */
                size_t from = first ? first : 1;
                size_t cnt = g->n > from ? g->n - from : 0;
                double sum = cnt ? g->csum[ridx(g, g->n - 1)] - g->csum[ridx(g, from - 1)] : 0;
                *b = cnt >= 3 ? sum / (double)cnt : NAN;
            }
        }
    }
    if (c->nmemo[metric] < MEMO_MAX) {
        int i = c->nmemo[metric]++;
        c->memo_w[metric][i] = w;
        c->memo_a[metric][i] = *a;
        c->memo_b[metric][i] = *b;
        c->memo_ok[metric][i] = ok;
    }
    return ok;
}

static int directed(double change, double th, int dir)
{
    return dir > 0 ? change >= th : dir < 0 ? change <= -th : fabs(change) >= th;
}

/* -1 unknown (not evaluated: no data of that kind or no window yet),
 * 0 false, 1 true; fills f's value/reference/change. */
static int condition(eval_ctx *c, const notify_rule *r, notify_fire *f)
{
    const notify_update *u = c->u;
    double a, b;
    switch (r->kind) {
    case NR_PRICE_ABOVE:
    case NR_PRICE_BELOW:
        if (!u->has_price)
            return -1;
        f->value = u->price;
        f->reference = r->value;
        f->change = 0;
        return r->kind == NR_PRICE_ABOVE ? u->price > r->value : u->price < r->value;
    case NR_PERCENT_CHANGE:
        if (!u->has_price || !window_stats(c, 0, r->window_ms, &a, &b) || a <= 0)
            return -1;
        f->value = u->price;
        f->reference = a;
        f->change = (u->price - a) / a * 100.0;
        return directed(f->change, r->value, r->direction);
    case NR_VOLUME_SPIKE:
        if (!u->has_volume || isnan(c->vol_inc) || !window_stats(c, 0, r->window_ms, &a, &b)
            || isnan(b) || b <= 0)
            return -1;
        f->value = c->vol_inc;
        f->reference = b;
        f->change = c->vol_inc / b;
        return f->change >= r->value;
    case NR_SENTIMENT_ABOVE:
    case NR_SENTIMENT_BELOW:
        if (!u->has_sentiment)
            return -1;
        f->value = u->sentiment;
        f->reference = r->value;
        f->change = 0;
        return r->kind == NR_SENTIMENT_ABOVE ? u->sentiment > r->value
                                             : u->sentiment < r->value;
    case NR_SENTIMENT_SHIFT:
        if (!u->has_sentiment || !window_stats(c, 1, r->window_ms, &a, &b))
            return -1;
        f->value = u->sentiment;
        f->reference = a;
        f->change = u->sentiment - a;
        return directed(f->change, r->value, r->direction);
    default:
        return -1;
    }
}

static void ctx_init(eval_ctx *c, const notify_update *u, sym *s)
{
    memset(c, 0, sizeof(*c));
    c->u = u;
    c->price = s->series[0];
    c->sent = s->series[1];
    c->vol_inc = NAN;
    if (u->has_volume && c->price != NULL && c->price->n > 0) {
        double prev = c->price->vol[ridx(c->price, c->price->n - 1)];
        c->vol_inc = u->volume >= prev ? u->volume - prev : u->volume;
    }
}

static void record(sym *s, const notify_update *u)
{
    if (u->has_price) {
        ring *g = series(s, 0, 1);
        if (g != NULL)
            ring_push(g, u->ts_ms, u->price, u->has_volume ? u->volume : 0);
    }
    if (u->has_sentiment) {
        ring *g = series(s, 1, 1);
        if (g != NULL)
            ring_push(g, u->ts_ms, u->sentiment, 0);
    }
}

int notify_engine_update(notify_engine *e, const notify_update *u, notify_fire **fires,
                         size_t *nfires, size_t *cap)
{
    sym *s = sym_find(e, u->symbol);
    int fired = 0;
    if (s == NULL) {
        /* no rule yet: keep the last sample so a new rule knows its side */
        if ((s = sym_get(e, u->symbol)) == NULL)
            return -1;
    }
    eval_ctx c;
    ctx_init(&c, u, s);
    for (size_t i = 0; i < s->nrules; i++) {
        notify_rule *r = &s->rules[i]->r;
        if (!r->enabled)
            continue;
        notify_fire f = { r, 0, 0, 0 };
        int v = condition(&c, r, &f);
        if (v < 0)
            continue;
        int prev = r->side, now = v + 1;
        if (prev != now) {
            r->side = now;
            mark_dirty(e, r);
        }
        if (!(prev == 1 && now == 2))
            continue;
        if (r->last_fired_ms > 0 && u->ts_ms - r->last_fired_ms < r->cooldown_ms)
            continue;                 /* crossed inside the cooldown: swallowed */
        mark_dirty(e, r);
        r->last_fired_ms = u->ts_ms;
        r->fired_count++;
        if (!r->recurring)
            r->enabled = 0;
        if (*nfires == *cap) {
            size_t nc = *cap ? *cap * 2 : 16;
            notify_fire *nf = realloc(*fires, nc * sizeof(*nf));
            if (nf == NULL)
                return -1;
            *fires = nf;
            *cap = nc;
        }
        (*fires)[(*nfires)++] = f;
        fired++;
    }
    record(s, u);
    return fired;
}

/* The side a new rule starts on, from the symbol's last samples. */
static void initial_side(notify_engine *e, sym *s, notify_rule *r)
{
    const ring *g = s->series[r->kind >= NR_SENTIMENT_ABOVE ? 1 : 0];
    if (g == NULL || g->n == 0 || r->side != 0)
        return;
    size_t last = ridx(g, g->n - 1);
    notify_update u = { .symbol = s->name, .ts_ms = g->ts[last] };
    if (r->kind >= NR_SENTIMENT_ABOVE) {
        u.has_sentiment = 1;
        u.sentiment = g->v[last];
    } else {
        u.has_price = 1;
        u.price = g->v[last];
    }
    if (r->kind != NR_PRICE_ABOVE && r->kind != NR_PRICE_BELOW
        && r->kind != NR_SENTIMENT_ABOVE && r->kind != NR_SENTIMENT_BELOW)
        return;                       /* windowed: the next update decides */
    eval_ctx c;
    notify_fire f;
    ctx_init(&c, &u, s);
    int v = condition(&c, r, &f);
    if (v >= 0 && r->side != v + 1) {
        r->side = v + 1;
        r->dirty = 0;
        mark_dirty(e, r);
    }
}

notify_rule *notify_engine_add(notify_engine *e, const notify_rule *r)
{
    notify_engine_remove(e, r->id);
    sym *s = sym_get(e, r->symbol);
    rule_node *n = s ? malloc(sizeof(*n)) : NULL;
    if (n == NULL)
        return NULL;
    if (s->nrules == s->cap) {
        size_t nc = s->cap ? s->cap * 2 : 8;
        rule_node **nr = realloc(s->rules, nc * sizeof(*nr));
        if (nr == NULL) {
            free(n);
            return NULL;
        }
        s->rules = nr;
        s->cap = nc;
    }
    if (e->nrules >= e->nib && id_grow(e) != 0) {
        free(n);
        return NULL;
    }
    n->r = *r;
    n->r.dirty = 0;
    n->sym = s;
    initial_side(e, s, &n->r);
    s->rules[s->nrules++] = n;
    if (notify_kind_windowed(r->kind))
        s->nwindowed++;
    size_t k = hash_id(r->id, e->nib);
    n->id_next = e->ibuckets[k];
    e->ibuckets[k] = n;
    e->nrules++;
    return &n->r;
}

int notify_engine_remove(notify_engine *e, int64_t id)
{
    rule_node **pp = &e->ibuckets[hash_id(id, e->nib)];
    while (*pp && (*pp)->r.id != id)
        pp = &(*pp)->id_next;
    rule_node *n = *pp;
    if (n == NULL)
        return -1;
    *pp = n->id_next;
    sym *s = n->sym;
    for (size_t i = 0; i < s->nrules; i++)
        if (s->rules[i] == n) {
            s->rules[i] = s->rules[--s->nrules];
            break;
        }
    if (notify_kind_windowed(n->r.kind))
        s->nwindowed--;
    free(n);
    e->nrules--;
    return 0;
}

void notify_engine_clean(notify_engine *e, void (*fn)(const notify_rule *, void *), void *ud)
{
    for (size_t i = 0; i < e->ndirty; i++) {
        rule_node *n = node_find(e, e->dirty[i]);
        if (n != NULL && n->r.dirty) {
            n->r.dirty = 0;
            if (fn != NULL)
                fn(&n->r, ud);
        }
    }
    e->ndirty = 0;
}
