/*
 * One metrics registry for every insite module, kept in one shared memory
 * zone so that the numbers of all workers add up.  Modules register their
 * metrics while the configuration is read (slots are laid out then, in the
 * master), and update them in workers with atomic adds; the insite_metrics
 * location renders the Prometheus text exposition format.
 */

#ifndef _NGX_INSITE_METRICS_H_INCLUDED_
#define _NGX_INSITE_METRICS_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>


typedef enum {
    NGX_INSITE_COUNTER = 0,
    NGX_INSITE_GAUGE,
    NGX_INSITE_HISTOGRAM
} ngx_insite_metric_type_e;


typedef struct ngx_insite_metric_s  ngx_insite_metric_t;

struct ngx_insite_metric_s {
    ngx_str_t                  name;      /* insite_<module>_<what>[_total] */
    ngx_str_t                  labels;    /* `a="x",b="y"`, or empty */
    ngx_str_t                  help;
    ngx_insite_metric_type_e   type;
    ngx_uint_t                 slot;      /* first value slot */
    ngx_uint_t                 nslots;
    const double              *buckets;   /* histograms: upper bounds, sorted */
    ngx_uint_t                 nbuckets;
    ngx_atomic_t              *values;    /* in shared memory, from init */
};


/* Call while the configuration is read (directive handlers, create/merge
 * conf, postconfiguration).  labels may be NULL.  Registering the same name
 * and labels twice returns the same metric, so per-location code can call it
 * freely. */
ngx_insite_metric_t *ngx_insite_metric_add(ngx_conf_t *cf,
    ngx_insite_metric_type_e type, const char *name, ngx_str_t *labels,
    const char *help);

/* buckets in seconds, NULL for the default latency buckets */
ngx_insite_metric_t *ngx_insite_histogram_add(ngx_conf_t *cf,
    const char *name, ngx_str_t *labels, const char *help,
    const double *buckets, ngx_uint_t nbuckets);

void ngx_insite_metric_inc(ngx_insite_metric_t *m);
void ngx_insite_metric_add_value(ngx_insite_metric_t *m, ngx_atomic_int_t v);
void ngx_insite_metric_set(ngx_insite_metric_t *m, ngx_atomic_int_t v);
ngx_atomic_int_t ngx_insite_metric_value(ngx_insite_metric_t *m);
void ngx_insite_metric_observe(ngx_insite_metric_t *m, double seconds);

/* Prometheus text of every registered metric, in a buffer from pool. */
ngx_chain_t *ngx_insite_metrics_render(ngx_pool_t *pool);

/* Used by the core module to set up the zone. */
ngx_int_t ngx_insite_metrics_init_conf(ngx_conf_t *cf);


#endif /* _NGX_INSITE_METRICS_H_INCLUDED_ */
