#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "metrics.h"

enum kind { COUNTER, GAUGE, HISTOGRAM };

/* Doubles are kept as their bit patterns in 64-bit atomics because C11 has
 * no atomic floating-point add; updates are compare-and-swap loops. */
struct insite_counter { atomic_uint_fast64_t v; };
struct insite_gauge { atomic_uint_fast64_t bits; };
struct insite_histogram {
    double *bounds;
    size_t n;
    atomic_uint_fast64_t *counts;   /* n + 1 (last is +Inf), not cumulative */
    atomic_uint_fast64_t sum_bits;
};

typedef struct metric {
    enum kind kind;
    char *name;
    char *help;
    union {
        insite_counter c;
        insite_gauge g;
        insite_histogram h;
    } u;
    struct metric *next;
} metric;

struct insite_metrics {
    char *worker;
    pthread_mutex_t lock;   /* guards the list, not the values */
    metric *head, *tail;
};

const double insite_metrics_latency_buckets[] = {
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10
};
const size_t insite_metrics_latency_nbuckets =
    sizeof(insite_metrics_latency_buckets) / sizeof(insite_metrics_latency_buckets[0]);

static uint64_t d2u(double d) { uint64_t u; memcpy(&u, &d, sizeof(u)); return u; }
static double u2d(uint64_t u) { double d; memcpy(&d, &u, sizeof(d)); return d; }

static void atomic_add_double(atomic_uint_fast64_t *bits, double delta)
{
    uint_fast64_t old = atomic_load(bits);
    while (!atomic_compare_exchange_weak(bits, &old, d2u(u2d(old) + delta)))
        ;
}

insite_metrics *insite_metrics_new(const char *worker)
{
    insite_metrics *m = calloc(1, sizeof(*m));
    if (m == NULL || (m->worker = strdup(worker)) == NULL) {
        insite_log_error("metrics: out of memory");
        free(m);
        return NULL;
    }
    pthread_mutex_init(&m->lock, NULL);
    return m;
}

void insite_metrics_free(insite_metrics *m)
{
    if (m == NULL)
        return;
    for (metric *x = m->head, *next; x != NULL; x = next) {
        next = x->next;
        if (x->kind == HISTOGRAM) {
            free(x->u.h.bounds);
            free(x->u.h.counts);
        }
        free(x->name);
        free(x->help);
        free(x);
    }
    pthread_mutex_destroy(&m->lock);
    free(m->worker);
    free(m);
}

static int valid_name(const char *s)
{
    if (*s == '\0')
        return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_'))
            return 0;
    return 1;
}

/* Makes an unlinked metric; link() publishes it to render(). */
static metric *make(insite_metrics *m, enum kind kind, const char *what,
                    const char *help)
{
    metric *x;

    if (!valid_name(what)) {
        insite_log_error("metrics: bad metric name \"%s\" (use [a-z0-9_])", what);
        return NULL;
    }
    if ((x = calloc(1, sizeof(*x))) == NULL
        || asprintf(&x->name, "insite_%s_%s%s", m->worker, what,
                    kind == COUNTER ? "_total" : "") < 0
        || (x->help = strdup(help ? help : "")) == NULL) {
        insite_log_error("metrics: out of memory registering %s", what);
        if (x != NULL && x->name != NULL) free(x->name);
        free(x);
        return NULL;
    }
    x->kind = kind;
    return x;
}

static metric *link_metric(insite_metrics *m, metric *x)
{
    pthread_mutex_lock(&m->lock);
    if (m->tail) m->tail->next = x; else m->head = x;
    m->tail = x;
    pthread_mutex_unlock(&m->lock);
    return x;
}

insite_counter *insite_metrics_counter(insite_metrics *m, const char *what,
                                       const char *help)
{
    metric *x = make(m, COUNTER, what, help);
    return x ? &link_metric(m, x)->u.c : NULL;
}

insite_gauge *insite_metrics_gauge(insite_metrics *m, const char *what,
                                   const char *help)
{
    metric *x = make(m, GAUGE, what, help);
    if (x == NULL)
        return NULL;
    atomic_store(&x->u.g.bits, d2u(0.0));
    return &link_metric(m, x)->u.g;
}

insite_histogram *insite_metrics_histogram(insite_metrics *m, const char *what,
                                           const char *help,
                                           const double *buckets, size_t n)
{
    for (size_t i = 1; i < n; i++)
        if (!(buckets[i] > buckets[i - 1])) {
            insite_log_error("metrics: %s: buckets must increase", what);
            return NULL;
        }
    double *bounds = malloc((n ? n : 1) * sizeof(double));
    atomic_uint_fast64_t *counts = calloc(n + 1, sizeof(*counts));
    if (bounds == NULL || counts == NULL) {
        insite_log_error("metrics: out of memory registering %s", what);
        free(bounds);
        free(counts);
        return NULL;
    }
    memcpy(bounds, buckets, n * sizeof(double));

    metric *x = make(m, HISTOGRAM, what, help);
    if (x == NULL) {
        free(bounds);
        free(counts);
        return NULL;
    }
    x->u.h.bounds = bounds;
    x->u.h.n = n;
    x->u.h.counts = counts;
    atomic_store(&x->u.h.sum_bits, d2u(0.0));
    return &link_metric(m, x)->u.h;
}

void insite_counter_inc(insite_counter *c) { atomic_fetch_add(&c->v, 1); }
void insite_counter_add(insite_counter *c, uint64_t n) { atomic_fetch_add(&c->v, n); }
uint64_t insite_counter_get(const insite_counter *c) { return atomic_load(&c->v); }
void insite_gauge_set(insite_gauge *g, double v) { atomic_store(&g->bits, d2u(v)); }
void insite_gauge_add(insite_gauge *g, double delta) { atomic_add_double(&g->bits, delta); }
double insite_gauge_get(const insite_gauge *g) { return u2d(atomic_load(&g->bits)); }

void insite_histogram_observe(insite_histogram *h, double v)
{
    size_t i = 0;
    while (i < h->n && v > h->bounds[i])
        i++;
    atomic_fetch_add(&h->counts[i], 1);
    atomic_add_double(&h->sum_bits, v);
}

/* ---- rendering ------------------------------------------------------- */

typedef struct {
    char *buf;
    size_t len, cap;
    int oom;
} sbuf;

static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void sb_printf(sbuf *b, const char *fmt, ...)
{
    va_list ap;
    for (;;) {
        if (b->oom)
            return;
        va_start(ap, fmt);
        int n = vsnprintf(b->buf + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (n < 0) { b->oom = 1; return; }
        if ((size_t)n < b->cap - b->len) { b->len += (size_t)n; return; }
        size_t cap = (b->cap + (size_t)n) * 2;
        char *nb = realloc(b->buf, cap);
        if (nb == NULL) { b->oom = 1; return; }
        b->buf = nb;
        b->cap = cap;
    }
}

/* Shortest text that reads back as the same double, as Prometheus clients
 * print it (0.005, not 0.0050000000000000001). */
static void fmt_double(double d, char *out, size_t size)
{
    if (isinf(d)) { snprintf(out, size, d > 0 ? "+Inf" : "-Inf"); return; }
    if (isnan(d)) { snprintf(out, size, "NaN"); return; }
    if (d == floor(d) && fabs(d) < 1e15) {   /* 200000, not 2e+05 */
        snprintf(out, size, "%.0f", d);
        return;
    }
    for (int p = 1; p <= 17; p++) {
        snprintf(out, size, "%.*g", p, d);
        if (strtod(out, NULL) == d)
            return;
    }
}

/* HELP text escaping per the exposition format: backslash and newline. */
static void sb_help(sbuf *b, const char *name, const char *help)
{
    sb_printf(b, "# HELP %s ", name);
    for (const char *p = help; *p; p++) {
        if (*p == '\\') sb_printf(b, "\\\\");
        else if (*p == '\n') sb_printf(b, "\\n");
        else sb_printf(b, "%c", *p);
    }
    sb_printf(b, "\n");
}

char *insite_metrics_render(insite_metrics *m)
{
    sbuf b = { .buf = malloc(4096), .cap = 4096 };
    char num[64];

    if (b.buf == NULL)
        return NULL;
    b.buf[0] = '\0';

    pthread_mutex_lock(&m->lock);
    for (metric *x = m->head; x != NULL; x = x->next) {
        sb_help(&b, x->name, x->help);
        switch (x->kind) {
        case COUNTER:
            sb_printf(&b, "# TYPE %s counter\n%s %llu\n", x->name, x->name,
                      (unsigned long long)atomic_load(&x->u.c.v));
            break;
        case GAUGE:
            fmt_double(u2d(atomic_load(&x->u.g.bits)), num, sizeof(num));
            sb_printf(&b, "# TYPE %s gauge\n%s %s\n", x->name, x->name, num);
            break;
        case HISTOGRAM: {
            const insite_histogram *h = &x->u.h;
            uint64_t cum = 0;
            sb_printf(&b, "# TYPE %s histogram\n", x->name);
            for (size_t i = 0; i <= h->n; i++) {
                cum += atomic_load(&h->counts[i]);
                fmt_double(i < h->n ? h->bounds[i] : INFINITY, num, sizeof(num));
                sb_printf(&b, "%s_bucket{le=\"%s\"} %llu\n", x->name, num,
                          (unsigned long long)cum);
            }
            fmt_double(u2d(atomic_load(&h->sum_bits)), num, sizeof(num));
            /* _count equals the +Inf bucket; using cum keeps them consistent
             * even when observations race with rendering. */
            sb_printf(&b, "%s_sum %s\n%s_count %llu\n", x->name, num, x->name,
                      (unsigned long long)cum);
            break;
        }
        }
    }
    pthread_mutex_unlock(&m->lock);

    if (b.oom) {
        insite_log_error("metrics: out of memory rendering");
        free(b.buf);
        return NULL;
    }
    return b.buf;
}
