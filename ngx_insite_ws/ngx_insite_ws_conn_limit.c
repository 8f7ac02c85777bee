/*
 * insite_ws_max_connections: open connections counted across all workers.
 *
 * Each worker process counts its own connections in a slot of a shared
 * zone, and the total is the sum over the slots of live processes.  A single
 * shared counter would be simpler but a worker killed with SIGKILL never
 * gives its connections back, and the limit would shrink for good; here the
 * slot of a process that no longer exists is reclaimed the next time anyone
 * counts.  Old workers of a reload keep their slots until they exit.  The
 * check and the increment happen under the zone's mutex, so the limit is
 * exact across workers.
 */

#include "ngx_insite_ws.h"


#define NGX_INSITE_WS_SLOTS  256


typedef struct {
    ngx_pid_t     pid;
    ngx_uint_t    count;
} ngx_insite_ws_slot_t;


typedef struct {
    ngx_insite_ws_slot_t  slots[NGX_INSITE_WS_SLOTS];
} ngx_insite_ws_limit_shm_t;


static ngx_int_t ngx_insite_ws_limit_init_zone(ngx_shm_zone_t *zone,
    void *data);
static ngx_uint_t ngx_insite_ws_limit_total(ngx_insite_ws_limit_shm_t *shm,
    ngx_log_t *log);


/* this process's slot, from init_process */
static ngx_insite_ws_slot_t  *ngx_insite_ws_my_slot;


ngx_int_t
ngx_insite_ws_limit_init_conf(ngx_conf_t *cf,
    ngx_http_insite_ws_main_conf_t *wmcf)
{
    ngx_str_t        name = ngx_string("insite_ws_connections");
    ngx_shm_zone_t  *zone;

    zone = ngx_shared_memory_add(cf, &name,
                                 8 * ngx_pagesize
                                 + ngx_align(sizeof(ngx_insite_ws_limit_shm_t),
                                             ngx_pagesize),
                                 &ngx_http_insite_ws_module);
    if (zone == NULL) {
        return NGX_ERROR;
    }

    zone->init = ngx_insite_ws_limit_init_zone;
    wmcf->limit_zone = zone;

    return NGX_OK;
}


static ngx_int_t
ngx_insite_ws_limit_init_zone(ngx_shm_zone_t *zone, void *data)
{
    ngx_slab_pool_t  *shpool;

    shpool = (ngx_slab_pool_t *) zone->shm.addr;

    /* kept across reloads: old workers still hold their connections */
    if (data || zone->shm.exists) {
        zone->data = shpool->data;
        return NGX_OK;
    }

    zone->data = ngx_slab_calloc(shpool, sizeof(ngx_insite_ws_limit_shm_t));
    if (zone->data == NULL) {
        return NGX_ERROR;
    }

    shpool->data = zone->data;

    return NGX_OK;
}


/* A worker takes a slot of its own. */

ngx_int_t
ngx_insite_ws_limit_init_process(ngx_cycle_t *cycle,
    ngx_http_insite_ws_main_conf_t *wmcf)
{
    ngx_uint_t                  i;
    ngx_slab_pool_t            *shpool;
    ngx_insite_ws_limit_shm_t  *shm;

    shpool = (ngx_slab_pool_t *) wmcf->limit_zone->shm.addr;
    shm = wmcf->limit_zone->data;

    ngx_shmtx_lock(&shpool->mutex);

    (void) ngx_insite_ws_limit_total(shm, cycle->log);   /* reclaims slots */

    for (i = 0; i < NGX_INSITE_WS_SLOTS; i++) {
        if (shm->slots[i].pid == 0) {
            shm->slots[i].pid = ngx_pid;
            shm->slots[i].count = 0;
            ngx_insite_ws_my_slot = &shm->slots[i];
            break;
        }
    }

    ngx_shmtx_unlock(&shpool->mutex);

    if (ngx_insite_ws_my_slot == NULL) {
        ngx_log_error(NGX_LOG_ALERT, cycle->log, 0,
                      "insite ws: no free connection slot among %d; this "
                      "worker refuses WebSocket upgrades",
                      NGX_INSITE_WS_SLOTS);
    }

    return NGX_OK;
}


ngx_int_t
ngx_insite_ws_limit_acquire(ngx_http_request_t *r)
{
    ngx_uint_t                       total;
    ngx_atomic_int_t                 peak;
    ngx_slab_pool_t                 *shpool;
    ngx_insite_ws_metrics_t         *m;
    ngx_insite_ws_limit_shm_t       *shm;
    ngx_http_insite_ws_main_conf_t  *wmcf;

    if (ngx_insite_ws_my_slot == NULL) {
        return NGX_DECLINED;
    }

    wmcf = ngx_insite_ws_main_conf();
    m = &wmcf->metrics;
    shpool = (ngx_slab_pool_t *) wmcf->limit_zone->shm.addr;
    shm = wmcf->limit_zone->data;

    ngx_shmtx_lock(&shpool->mutex);

    total = ngx_insite_ws_limit_total(shm, r->connection->log);

    if (wmcf->max_connections && total >= wmcf->max_connections) {
        ngx_shmtx_unlock(&shpool->mutex);

        ngx_insite_metric_inc(m->refused);
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "insite ws: connection refused: "
                      "insite_ws_max_connections %ui reached",
                      wmcf->max_connections);
        return NGX_DECLINED;
    }

    ngx_insite_ws_my_slot->count++;
    total++;

    ngx_shmtx_unlock(&shpool->mutex);

    ngx_insite_metric_set(m->connections, (ngx_atomic_int_t) total);
    ngx_insite_metric_inc(m->accepted);

    for ( ;; ) {
        peak = ngx_insite_metric_value(m->connections_peak);
        if ((ngx_atomic_int_t) total <= peak
            || ngx_atomic_cmp_set(m->connections_peak->values,
                                  (ngx_atomic_uint_t) peak,
                                  (ngx_atomic_uint_t) total))
        {
            break;
        }
    }

    return NGX_OK;
}


void
ngx_insite_ws_limit_release(void)
{
    ngx_slab_pool_t                 *shpool;
    ngx_http_insite_ws_main_conf_t  *wmcf;

    if (ngx_insite_ws_my_slot == NULL) {
        return;
    }

    wmcf = ngx_insite_ws_main_conf();
    shpool = (ngx_slab_pool_t *) wmcf->limit_zone->shm.addr;

    ngx_shmtx_lock(&shpool->mutex);
    ngx_insite_ws_my_slot->count--;
    ngx_shmtx_unlock(&shpool->mutex);

    ngx_insite_metric_add_value(wmcf->metrics.connections, -1);
}


/* the sum over live processes; slots of processes gone are freed */

static ngx_uint_t
ngx_insite_ws_limit_total(ngx_insite_ws_limit_shm_t *shm, ngx_log_t *log)
{
    ngx_uint_t             i, total;
    ngx_insite_ws_slot_t  *s;

    total = 0;

    for (i = 0; i < NGX_INSITE_WS_SLOTS; i++) {
        s = &shm->slots[i];

        if (s->pid == 0) {
            continue;
        }

        if (s->pid != ngx_pid && kill(s->pid, 0) == -1 && ngx_errno == ESRCH) {
            if (s->count) {
                ngx_log_error(NGX_LOG_NOTICE, log, 0,
                              "insite ws: worker %P is gone, its %ui "
                              "connections no longer count", s->pid,
                              s->count);
            }
            s->pid = 0;
            s->count = 0;
            continue;
        }

        total += s->count;
    }

    return total;
}
