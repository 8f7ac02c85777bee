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
#include "ngx_insite_random.h"


#define NGX_INSITE_VERSION  "0.1.0"


/*
 * Health checks of other insite modules, reported by insite_healthz next to
 * Redis as "<name>":"<state>" (e.g. "audit":"ok").  A check runs in the
 * worker that answers /healthz, on every request: it must be cheap and must
 * not block.  It sets *state to a short static word and returns NGX_OK when
 * healthy, NGX_DECLINED when not; any unhealthy check (or Redis, when
 * configured and not connected) makes the answer 503 "degraded".
 */
typedef ngx_int_t (*ngx_insite_health_pt)(ngx_cycle_t *cycle, void *data,
    const char **state);

typedef struct {
    const char                 *name;           /* static JSON key */
    ngx_insite_health_pt        check;
    void                       *data;
} ngx_insite_health_t;

/* Registers a check; call from postconfiguration. */
ngx_int_t ngx_insite_health_add(ngx_conf_t *cf, const char *name,
    ngx_insite_health_pt check, void *data);


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

    /* locations whose user comes from a cookie (ngx_http_core_loc_conf_t *) */
    ngx_array_t                *cookie_identity;
    /* ngx_insite_health_t: checks of other modules (ngx_insite_health_add) */
    ngx_array_t                *health;
} ngx_http_insite_main_conf_t;


extern ngx_module_t  ngx_http_insite_module;


/* This worker's command connection to Redis, or NULL without insite_redis. */
ngx_insite_redis_t *ngx_insite_redis_shared(void);

/* The redis configuration, for modules that open a connection of their own
 * (a pub/sub subscriber cannot share the command connection). */
ngx_insite_redis_conf_t *ngx_insite_redis_shared_conf(ngx_cycle_t *cycle);
ngx_insite_redis_metrics_t *ngx_insite_redis_shared_metrics(ngx_cycle_t *cycle);


/*
 * Facts one module states about a location for the others, so that no
 * module reads another's configuration structs.  The gateway, while its
 * location configuration is merged, says "the user of this location may
 * come from a cookie" (insite_gateway_jwt on|optional with
 * insite_gateway_jwt_cookie); the WebSocket module then requires an Origin
 * allow-list there.  Set during merges, read from postconfiguration on
 * (every location is merged by then).  clcf: the location's
 * ngx_http_core_loc_conf_t.
 */
ngx_int_t ngx_insite_cookie_identity_set(ngx_conf_t *cf);
ngx_uint_t ngx_insite_cookie_identity(ngx_conf_t *cf, void *clcf);


#endif /* _NGX_INSITE_CORE_H_INCLUDED_ */
