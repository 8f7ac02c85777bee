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
 * insite_metrics_render() produces the text exposition format 0.0.4.
 *
 * Labelled families ("vecs"): one metric name with fixed label names and a
 * child per tuple of label values, created on first use:
 *
 *     static const char *const lbl[] = { "topic" };
 *     insite_counter_vec *v = insite_metrics_counter_vec(m, "kafka",
 *         "messages_produced", "Messages delivered.", lbl, 1);
 *     insite_counter_inc(insite_counter_vec_with(v, (const char *[]){ "alerts" }));
 *     // -> insite_kafka_messages_produced_total{topic="alerts"} 1
 *
 * subsystem replaces the worker in the name (NULL = the worker's own
 * insite_<worker>_ prefix); it exists for families that mean the same in
 * every worker, such as the shared Kafka metrics (kafka_metrics.h), which a
 * scrape tells apart by its job/instance labels.  Registering a family
 * again with the same name, kind, labels (and buckets) returns the existing
 * one, so independent pieces of one worker can share it; a clash is an
 * error (NULL, logged).  Label values are escaped on output (\ " \n);
 * children live until insite_metrics_free(), so the pointers *_with()
 * returns may be cached. */
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

typedef struct insite_counter_vec insite_counter_vec;
typedef struct insite_gauge_vec insite_gauge_vec;
typedef struct insite_histogram_vec insite_histogram_vec;

/* labels: nlabels (1..8) names, [a-zA-Z_][a-zA-Z0-9_]*, not "__*", and not
 * "le" for histograms.  NULL on bad names, a clash, or out of memory
 * (logged). */
insite_counter_vec *insite_metrics_counter_vec(insite_metrics *m, const char *subsystem,
                                               const char *what, const char *help,
                                               const char *const *labels, size_t nlabels);
insite_gauge_vec *insite_metrics_gauge_vec(insite_metrics *m, const char *subsystem,
                                           const char *what, const char *help,
                                           const char *const *labels, size_t nlabels);
insite_histogram_vec *insite_metrics_histogram_vec(insite_metrics *m, const char *subsystem,
                                                   const char *what, const char *help,
                                                   const char *const *labels, size_t nlabels,
                                                   const double *buckets, size_t n);

/* The child for values[0..nlabels-1] (NULL entries read as ""), created on
 * first use; NULL only when out of memory (logged).  Takes the family's
 * lock: cache the pointer on hot paths. */
insite_counter *insite_counter_vec_with(insite_counter_vec *v, const char *const *values);
insite_gauge *insite_gauge_vec_with(insite_gauge_vec *v, const char *const *values);
insite_histogram *insite_histogram_vec_with(insite_histogram_vec *v, const char *const *values);

/* Stops rendering a gauge child (a partition this consumer no longer owns)
 * without freeing it: a cached pointer stays valid, and *_with() shows the
 * child again. */
void insite_gauge_vec_hide(insite_gauge_vec *v, const char *const *values);

/* Returns a malloc'd NUL-terminated exposition text (caller frees), or NULL
 * on out of memory. */
char *insite_metrics_render(insite_metrics *m);

/* Default latency buckets in seconds (0.001 .. 10). */
extern const double insite_metrics_latency_buckets[];
extern const size_t insite_metrics_latency_nbuckets;

#endif
