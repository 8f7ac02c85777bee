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

#define MAX_LABELS 8

/* One child of a labelled family: its label values and its value. */
typedef struct child {
    char **values;
    int hidden;
    union {
        insite_counter c;
        insite_gauge g;
        insite_histogram h;
    } u;
    struct child *next;
} child;

typedef struct {
    char **labels;
    size_t nlabels;
    pthread_mutex_t lock;   /* guards the children list, not the values */
    child *head, *tail;
} family;

typedef struct metric {
    enum kind kind;
    char *name;
    char *help;
    union {
        insite_counter c;
        insite_gauge g;
        insite_histogram h;
    } u;            /* unlabelled; for a family, u.h holds the buckets */
    family *fam;    /* NULL: unlabelled */
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

static void free_strings(char **v, size_t n)
{
    if (v == NULL)
        return;
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

static void family_free(family *f, enum kind kind)
{
    if (f == NULL)
        return;
    for (child *c = f->head, *next; c != NULL; c = next) {
        next = c->next;
        if (kind == HISTOGRAM)
            free(c->u.h.counts);     /* bounds belong to the family */
        free_strings(c->values, f->nlabels);
        free(c);
    }
    free_strings(f->labels, f->nlabels);
    pthread_mutex_destroy(&f->lock);
    free(f);
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
        family_free(x->fam, x->kind);
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
static metric *make(insite_metrics *m, enum kind kind, const char *subsystem,
                    const char *what, const char *help)
{
    metric *x;

    if (!valid_name(what) || (subsystem != NULL && !valid_name(subsystem))) {
        insite_log_error("metrics: bad metric name \"%s\" \"%s\" (use [a-z0-9_])",
                         subsystem ? subsystem : "", what);
        return NULL;
    }
    if ((x = calloc(1, sizeof(*x))) == NULL
        || asprintf(&x->name, "insite_%s_%s%s", subsystem ? subsystem : m->worker, what,
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
    metric *x = make(m, COUNTER, NULL, what, help);
    return x ? &link_metric(m, x)->u.c : NULL;
}

insite_gauge *insite_metrics_gauge(insite_metrics *m, const char *what,
                                   const char *help)
{
    metric *x = make(m, GAUGE, NULL, what, help);
    if (x == NULL)
        return NULL;
    atomic_store(&x->u.g.bits, d2u(0.0));
    return &link_metric(m, x)->u.g;
}

static int check_buckets(const char *what, const double *buckets, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (isnan(buckets[i]) || (i > 0 && !(buckets[i] > buckets[i - 1]))) {
            insite_log_error("metrics: %s: buckets must increase", what);
            return -1;
        }
    return 0;
}

/* Sets up h with its own copy of the bounds (bounds == NULL) or sharing
 * them (a family's child). */
static int histogram_init(insite_histogram *h, const double *buckets, size_t n,
                          const double *shared)
{
    double *bounds = NULL;
    if (shared == NULL && (bounds = malloc((n ? n : 1) * sizeof(double))) == NULL)
        return -1;
    if ((h->counts = calloc(n + 1, sizeof(*h->counts))) == NULL) {
        free(bounds);
        return -1;
    }
    if (bounds != NULL)
        memcpy(bounds, buckets, n * sizeof(double));
    h->bounds = shared ? (double *)shared : bounds;
    h->n = n;
    atomic_store(&h->sum_bits, d2u(0.0));
    return 0;
}

insite_histogram *insite_metrics_histogram(insite_metrics *m, const char *what,
                                           const char *help,
                                           const double *buckets, size_t n)
{
    if (check_buckets(what, buckets, n) != 0)
        return NULL;
    metric *x = make(m, HISTOGRAM, NULL, what, help);
    if (x == NULL)
        return NULL;
    if (histogram_init(&x->u.h, buckets, n, NULL) != 0) {
        insite_log_error("metrics: out of memory registering %s", what);
        free(x->name);
        free(x->help);
        free(x);
        return NULL;
    }
    return &link_metric(m, x)->u.h;
}

/* ---- labelled families ----------------------------------------------- */

static int valid_label(const char *s, enum kind kind)
{
    if (s == NULL || !((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || *s == '_')
        || strncmp(s, "__", 2) == 0 || (kind == HISTOGRAM && strcmp(s, "le") == 0))
        return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z')
              || (*s >= '0' && *s <= '9') || *s == '_'))
            return 0;
    return 1;
}

/* Same kind, labels and buckets: the registration is a lookup. */
static int same_family(const metric *x, enum kind kind, const char *const *labels,
                       size_t nlabels, const double *buckets, size_t n)
{
    if (x->fam == NULL || x->kind != kind || x->fam->nlabels != nlabels)
        return 0;
    for (size_t i = 0; i < nlabels; i++)
        if (strcmp(x->fam->labels[i], labels[i]) != 0)
            return 0;
    if (kind == HISTOGRAM) {
        if (x->u.h.n != n)
            return 0;
        for (size_t i = 0; i < n; i++)
            if (x->u.h.bounds[i] != buckets[i])
                return 0;
    }
    return 1;
}

static metric *register_family(insite_metrics *m, enum kind kind, const char *subsystem,
                               const char *what, const char *help,
                               const char *const *labels, size_t nlabels,
                               const double *buckets, size_t n)
{
    if (nlabels == 0 || nlabels > MAX_LABELS) {
        insite_log_error("metrics: %s: 1 to %d labels", what, MAX_LABELS);
        return NULL;
    }
    for (size_t i = 0; i < nlabels; i++)
        if (!valid_label(labels[i], kind)) {
            insite_log_error("metrics: %s: bad label name \"%s\"", what,
                             labels[i] ? labels[i] : "(null)");
            return NULL;
        }
    if (kind == HISTOGRAM && check_buckets(what, buckets, n) != 0)
        return NULL;

    metric *x = make(m, kind, subsystem, what, help);
    if (x == NULL)
        return NULL;

    /* The list only grows and is walked under the lock: look for a twin
     * and link in one critical section, so two threads registering the
     * same family get the same one. */
    pthread_mutex_lock(&m->lock);
    for (metric *y = m->head; y != NULL; y = y->next) {
        if (strcmp(y->name, x->name) != 0)
            continue;
        pthread_mutex_unlock(&m->lock);
        int same = same_family(y, kind, labels, nlabels, buckets, n);
        if (!same)
            insite_log_error("metrics: %s registered twice with different labels or type",
                             x->name);
        free(x->name);
        free(x->help);
        free(x);
        return same ? y : NULL;
    }
    family *f = calloc(1, sizeof(*f));
    int ok = f != NULL && (f->labels = calloc(nlabels, sizeof(char *))) != NULL;
    if (f != NULL)
        f->nlabels = nlabels;
    for (size_t i = 0; ok && i < nlabels; i++)
        ok = (f->labels[i] = strdup(labels[i])) != NULL;
    if (ok && kind == HISTOGRAM)
        ok = histogram_init(&x->u.h, buckets, n, NULL) == 0;
    if (!ok) {
        pthread_mutex_unlock(&m->lock);
        insite_log_error("metrics: out of memory registering %s", x->name);
        if (f != NULL) {
            free_strings(f->labels, f->nlabels);
            free(f);
        }
        free(x->u.h.counts);
        free(x->u.h.bounds);
        free(x->name);
        free(x->help);
        free(x);
        return NULL;
    }
    pthread_mutex_init(&f->lock, NULL);
    x->fam = f;
    if (m->tail) m->tail->next = x; else m->head = x;
    m->tail = x;
    pthread_mutex_unlock(&m->lock);
    return x;
}

insite_counter_vec *insite_metrics_counter_vec(insite_metrics *m, const char *subsystem,
                                               const char *what, const char *help,
                                               const char *const *labels, size_t nlabels)
{
    return (insite_counter_vec *)register_family(m, COUNTER, subsystem, what, help,
                                                 labels, nlabels, NULL, 0);
}

insite_gauge_vec *insite_metrics_gauge_vec(insite_metrics *m, const char *subsystem,
                                           const char *what, const char *help,
                                           const char *const *labels, size_t nlabels)
{
    return (insite_gauge_vec *)register_family(m, GAUGE, subsystem, what, help,
                                               labels, nlabels, NULL, 0);
}

insite_histogram_vec *insite_metrics_histogram_vec(insite_metrics *m, const char *subsystem,
                                                   const char *what, const char *help,
                                                   const char *const *labels, size_t nlabels,
                                                   const double *buckets, size_t n)
{
    return (insite_histogram_vec *)register_family(m, HISTOGRAM, subsystem, what, help,
                                                   labels, nlabels, buckets, n);
}

static int values_match(const child *c, const char *const *values, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(c->values[i], values[i] ? values[i] : "") != 0)
            return 0;
    return 1;
}

static child *child_new(const metric *x, const char *const *values)
{
    const family *f = x->fam;
    child *c = calloc(1, sizeof(*c));
    int ok = c != NULL && (c->values = calloc(f->nlabels, sizeof(char *))) != NULL;
    for (size_t i = 0; ok && i < f->nlabels; i++)
        ok = (c->values[i] = strdup(values[i] ? values[i] : "")) != NULL;
    if (ok && x->kind == HISTOGRAM)
        ok = histogram_init(&c->u.h, NULL, x->u.h.n, x->u.h.bounds) == 0;
    else if (ok && x->kind == GAUGE)
        atomic_store(&c->u.g.bits, d2u(0.0));
    if (!ok) {
        insite_log_error("metrics: out of memory adding a child of %s", x->name);
        if (c != NULL)
            free_strings(c->values, f->nlabels);
        free(c);
        return NULL;
    }
    return c;
}

/* Finds or creates the child; unhides it. */
static child *with(metric *x, const char *const *values)
{
    family *f = x->fam;
    child *c;

    pthread_mutex_lock(&f->lock);
    for (c = f->head; c != NULL; c = c->next)
        if (values_match(c, values, f->nlabels))
            break;
    if (c == NULL && (c = child_new(x, values)) != NULL) {
        if (f->tail) f->tail->next = c; else f->head = c;
        f->tail = c;
    }
    if (c != NULL)
        c->hidden = 0;
    pthread_mutex_unlock(&f->lock);
    return c;
}

insite_counter *insite_counter_vec_with(insite_counter_vec *v, const char *const *values)
{
    child *c = with((metric *)v, values);
    return c ? &c->u.c : NULL;
}

insite_gauge *insite_gauge_vec_with(insite_gauge_vec *v, const char *const *values)
{
    child *c = with((metric *)v, values);
    return c ? &c->u.g : NULL;
}

insite_histogram *insite_histogram_vec_with(insite_histogram_vec *v, const char *const *values)
{
    child *c = with((metric *)v, values);
    return c ? &c->u.h : NULL;
}

void insite_gauge_vec_hide(insite_gauge_vec *v, const char *const *values)
{
    family *f = ((metric *)v)->fam;
    pthread_mutex_lock(&f->lock);
    for (child *c = f->head; c != NULL; c = c->next)
        if (values_match(c, values, f->nlabels))
            c->hidden = 1;
    pthread_mutex_unlock(&f->lock);
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

/* A label value per the exposition format: backslash, quote, newline. */
static void sb_label_value(sbuf *b, const char *v)
{
    for (const char *p = v; *p; p++) {
        if (*p == '\\') sb_printf(b, "\\\\");
        else if (*p == '"') sb_printf(b, "\\\"");
        else if (*p == '\n') sb_printf(b, "\\n");
        else sb_printf(b, "%c", *p);
    }
}

/* {a="x",b="y"  (without the closing brace: "le" may follow) */
static void sb_labels(sbuf *b, const family *f, const child *c)
{
    for (size_t i = 0; i < f->nlabels; i++) {
        sb_printf(b, "%s%s=\"", i ? "," : "{", f->labels[i]);
        sb_label_value(b, c->values[i]);
        sb_printf(b, "\"");
    }
}

/* One series: name{labels} or name; suffix is "", "_bucket", "_sum", ... */
static void sb_series(sbuf *b, const metric *x, const child *c, const char *suffix,
                      const char *le)
{
    sb_printf(b, "%s%s", x->name, suffix);
    if (c != NULL)
        sb_labels(b, x->fam, c);
    if (le != NULL)
        sb_printf(b, "%sle=\"%s\"", c ? "," : "{", le);
    if (c != NULL || le != NULL)
        sb_printf(b, "}");
}

static void render_value(sbuf *b, const metric *x, const child *c,
                         const insite_counter *cv, const insite_gauge *g,
                         const insite_histogram *h)
{
    char num[64];

    switch (x->kind) {
    case COUNTER:
        sb_series(b, x, c, "", NULL);
        sb_printf(b, " %llu\n", (unsigned long long)atomic_load(&cv->v));
        break;
    case GAUGE:
        fmt_double(u2d(atomic_load(&g->bits)), num, sizeof(num));
        sb_series(b, x, c, "", NULL);
        sb_printf(b, " %s\n", num);
        break;
    case HISTOGRAM: {
        uint64_t cum = 0;
        for (size_t i = 0; i <= h->n; i++) {
            cum += atomic_load(&h->counts[i]);
            fmt_double(i < h->n ? h->bounds[i] : INFINITY, num, sizeof(num));
            sb_series(b, x, c, "_bucket", num);
            sb_printf(b, " %llu\n", (unsigned long long)cum);
        }
        fmt_double(u2d(atomic_load(&h->sum_bits)), num, sizeof(num));
        /* _count equals the +Inf bucket; using cum keeps them consistent
         * even when observations race with rendering. */
        sb_series(b, x, c, "_sum", NULL);
        sb_printf(b, " %s\n", num);
        sb_series(b, x, c, "_count", NULL);
        sb_printf(b, " %llu\n", (unsigned long long)cum);
        break;
    }
    }
}

static const char *const kind_names[] = { "counter", "gauge", "histogram" };

char *insite_metrics_render(insite_metrics *m)
{
    sbuf b = { .buf = malloc(4096), .cap = 4096 };

    if (b.buf == NULL)
        return NULL;
    b.buf[0] = '\0';

    pthread_mutex_lock(&m->lock);
    for (metric *x = m->head; x != NULL; x = x->next) {
        sb_help(&b, x->name, x->help);
        sb_printf(&b, "# TYPE %s %s\n", x->name, kind_names[x->kind]);
        if (x->fam == NULL) {
            render_value(&b, x, NULL, &x->u.c, &x->u.g, &x->u.h);
            continue;
        }
        pthread_mutex_lock(&x->fam->lock);
        for (const child *c = x->fam->head; c != NULL; c = c->next)
            if (!c->hidden)
                render_value(&b, x, c, &c->u.c, &c->u.g, &c->u.h);
        pthread_mutex_unlock(&x->fam->lock);
    }
    pthread_mutex_unlock(&m->lock);

    if (b.oom) {
        insite_log_error("metrics: out of memory rendering");
        free(b.buf);
        return NULL;
    }
    return b.buf;
}
