/* Prometheus metrics: counters, gauges and fixed-bucket histograms.
 *
 * Register metrics at startup (registration takes a lock); update them from
 * any thread (lock-free atomics).  Names are insite_<worker>_<what>, with
 * "_total" appended to counters:
 *
 *     insite_metrics *m = insite_metrics_new("collector");
 *     insite_counter *c = insite_metrics_counter(m, "published", "Messages published.");
 *     insite_counter_inc(c);   // -> insite_collector_published_total 1
 *
 * insite_metrics_render() produces the text exposition format 0.0.4. */
#ifndef INSITE_METRICS_H
#define INSITE_METRICS_H

#include <stddef.h>
#include <stdint.h>

typedef struct insite_metrics insite_metrics;
typedef struct insite_counter insite_counter;
typedef struct insite_gauge insite_gauge;
typedef struct insite_histogram insite_histogram;

insite_metrics *insite_metrics_new(const char *worker);
void insite_metrics_free(insite_metrics *m);

/* Return NULL on bad names or out of memory (logged).  Metrics are owned by
 * the registry and live until insite_metrics_free(). */
insite_counter *insite_metrics_counter(insite_metrics *m, const char *what,
                                       const char *help);
insite_gauge *insite_metrics_gauge(insite_metrics *m, const char *what,
                                   const char *help);
/* buckets: strictly increasing upper bounds, without +Inf (added). */
insite_histogram *insite_metrics_histogram(insite_metrics *m, const char *what,
                                           const char *help,
                                           const double *buckets, size_t n);

void insite_counter_inc(insite_counter *c);
void insite_counter_add(insite_counter *c, uint64_t n);
uint64_t insite_counter_get(const insite_counter *c);
void insite_gauge_set(insite_gauge *g, double v);
void insite_gauge_add(insite_gauge *g, double delta);
double insite_gauge_get(const insite_gauge *g);
void insite_histogram_observe(insite_histogram *h, double v);

/* Returns a malloc'd NUL-terminated exposition text (caller frees), or NULL
 * on out of memory. */
char *insite_metrics_render(insite_metrics *m);

/* Default latency buckets in seconds (0.001 .. 10). */
extern const double insite_metrics_latency_buckets[];
extern const size_t insite_metrics_latency_nbuckets;

#endif
