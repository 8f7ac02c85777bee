/*
 * The core module (ngx_http_insite_module): what the ws, gateway and gdpr
 * modules share.  It must be loaded before them.
 */

#ifndef _NGX_INSITE_CORE_H_INCLUDED_
#define _NGX_INSITE_CORE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_insite_metrics.h"
#include "ngx_insite_redis.h"
#include "ngx_insite_json.h"
#include "ngx_insite_http.h"
#include "ngx_insite_conf.h"


#define NGX_INSITE_VERSION  "0.1.0"


typedef struct {
    /* metrics registry: laid out at configuration time */
    ngx_array_t                 metrics;        /* ngx_insite_metric_t * */
    ngx_uint_t                  nslots;
    ngx_shm_zone_t             *metrics_zone;

    /* insite_redis; NULL when not configured */
    ngx_insite_redis_conf_t    *redis_conf;
    ngx_insite_redis_metrics_t  redis_metrics;

    /* per worker, from init_process */
    ngx_insite_redis_t         *redis;
} ngx_http_insite_main_conf_t;


extern ngx_module_t  ngx_http_insite_module;


/* This worker's command connection to Redis, or NULL without insite_redis. */
ngx_insite_redis_t *ngx_insite_redis_shared(void);

/* The redis configuration, for modules that open a connection of their own
 * (a pub/sub subscriber cannot share the command connection). */
ngx_insite_redis_conf_t *ngx_insite_redis_shared_conf(ngx_cycle_t *cycle);
ngx_insite_redis_metrics_t *ngx_insite_redis_shared_metrics(ngx_cycle_t *cycle);


#endif /* _NGX_INSITE_CORE_H_INCLUDED_ */
