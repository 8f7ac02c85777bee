/*
 * Circuit breaker per service, in one shared memory zone so that every
 * worker sees and drives the same state:
 *
 *   CLOSED    -> OPEN       `failures` failures, or a failure ratio >= `ratio`
 *                           over >= `min_requests` requests, within `window`
 *   OPEN      -> HALF_OPEN  `recovery` after opening (on the next request)
 *   HALF_OPEN -> CLOSED     `half_open` consecutive probes succeed
 *   HALF_OPEN -> OPEN       any probe fails
 *
 * Half-open probes go one at a time across all workers.  The window slides
 * in NGX_INSITE_GW_BUCKETS buckets of window/NGX_INSITE_GW_BUCKETS each.
 * Outcomes are recorded in the log phase; an outcome of a request admitted
 * before the last transition (generation) is ignored, so a slow request
 * from before an opening cannot close the breaker again.
 *
 * The zone's mutex is taken for transitions only, and for what may make
 * one: a closed breaker admits a request by reading the state word, and
 * counts a success with a compare-and-swap on its bucket (both lock-free);
 * a failure, a half-open probe and a bucket's reset (once per bucket
 * period) take the mutex.  Buckets carry the generation they were reset
 * in, so a success of generation g lands in a bucket of generation g or is
 * dropped, exactly as when it was counted under the mutex.
 */

#include "ngx_insite_gateway.h"


static ngx_int_t ngx_insite_gw_breaker_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);
static void ngx_insite_gw_breaker_transition(ngx_insite_gw_breaker_node_t *bn,
    ngx_uint_t to);
static ngx_int_t ngx_insite_gw_breaker_success(
    ngx_insite_gw_breaker_node_t *bn, ngx_insite_gw_breaker_conf_t *bc,
    ngx_uint_t generation, ngx_msec_t now);
static ngx_insite_gw_bucket_t *ngx_insite_gw_breaker_bucket(
    ngx_insite_gw_breaker_node_t *bn, ngx_insite_gw_breaker_conf_t *bc,
    ngx_msec_t now, ngx_msec_t *epoch);
static void ngx_insite_gw_breaker_log(ngx_http_request_t *r,
    ngx_insite_gw_ctx_t *ctx, ngx_insite_gw_service_t *svc, ngx_uint_t from,
    ngx_uint_t to, const char *why);


static const char  *ngx_insite_gw_state_names[] = {
    "CLOSED", "OPEN", "HALF_OPEN"
};


/*
 * insite_gateway_breaker failures=5 [ratio=0.5 min_requests=20] window=30s
 *                        recovery=60s half_open=3 [fail_on=error,timeout,5xx];
 */

char *
ngx_insite_gw_breaker_parse(ngx_conf_t *cf, ngx_insite_gw_breaker_conf_t *bc)
{
    char        *rv;
    u_char      *p, *last, *comma;
    ngx_int_t    n;
    ngx_str_t   *value, s, v;
    ngx_uint_t   i;

    bc->failures = 5;
    bc->ratio = 0;
    bc->min_requests = 20;
    bc->window = 30000;
    bc->recovery = 60000;
    bc->half_open = 3;
    bc->fail_on = NGX_INSITE_GW_FAIL_ERROR|NGX_INSITE_GW_FAIL_TIMEOUT
                  |NGX_INSITE_GW_FAIL_5XX;

    value = cf->args->elts;

    for (i = 1; i < cf->args->nelts; i++) {
        s = value[i];
        rv = NGX_CONF_OK;

        p = ngx_strlchr(s.data, s.data + s.len, '=');
        if (p == NULL) {
            goto invalid;
        }

        v.data = p + 1;
        v.len = s.data + s.len - v.data;
        s.len = p - s.data;

        /*
         * Ranges: the window is cut in NGX_INSITE_GW_BUCKETS buckets, so
         * under a second they would be too short to count anything; a
         * recovery of 0 would probe a dead service with every request.
         */

        if (s.len == 8 && ngx_strncmp(s.data, "failures", 8) == 0) {
            rv = ngx_insite_conf_uint(cf, "insite_gateway_breaker", &value[i],
                                      &v, 1, 100000, &bc->failures);

        } else if (s.len == 5 && ngx_strncmp(s.data, "ratio", 5) == 0) {
            /* 0.5 -> 500 per mille */
            n = ngx_atofp(v.data, v.len, 3);
            if (n <= 0 || n > 1000) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "insite_gateway_breaker: invalid parameter "
                                   "\"%V\": must be 0.001 to 1", &value[i]);
                return NGX_CONF_ERROR;
            }
            bc->ratio = n;

        } else if (s.len == 12
                   && ngx_strncmp(s.data, "min_requests", 12) == 0)
        {
            rv = ngx_insite_conf_uint(cf, "insite_gateway_breaker", &value[i],
                                      &v, 1, 1000000, &bc->min_requests);

        } else if (s.len == 6 && ngx_strncmp(s.data, "window", 6) == 0) {
            rv = ngx_insite_conf_msec(cf, "insite_gateway_breaker", &value[i],
                                      &v, 1000, 3600000, &bc->window);

        } else if (s.len == 8 && ngx_strncmp(s.data, "recovery", 8) == 0) {
            rv = ngx_insite_conf_msec(cf, "insite_gateway_breaker", &value[i],
                                      &v, 100, 3600000, &bc->recovery);

        } else if (s.len == 9 && ngx_strncmp(s.data, "half_open", 9) == 0) {
            rv = ngx_insite_conf_uint(cf, "insite_gateway_breaker", &value[i],
                                      &v, 1, 1000, &bc->half_open);

        } else if (s.len == 7 && ngx_strncmp(s.data, "fail_on", 7) == 0) {
            bc->fail_on = 0;
            bc->ncodes = 0;
            p = v.data;
            last = v.data + v.len;

            while (p < last) {
                comma = ngx_strlchr(p, last, ',');
                if (comma == NULL) {
                    comma = last;
                }

                n = comma - p;

                if (n == 5 && ngx_strncmp(p, "error", 5) == 0) {
                    bc->fail_on |= NGX_INSITE_GW_FAIL_ERROR;

                } else if (n == 7 && ngx_strncmp(p, "timeout", 7) == 0) {
                    bc->fail_on |= NGX_INSITE_GW_FAIL_TIMEOUT;

                } else if (n == 3 && ngx_strncmp(p, "5xx", 3) == 0) {
                    bc->fail_on |= NGX_INSITE_GW_FAIL_5XX;

                } else {
                    n = ngx_atoi(p, n);
                    if (n < 400 || n > 599
                        || bc->ncodes == NGX_INSITE_GW_MAX_CODES)
                    {
                        goto invalid;
                    }
                    bc->codes[bc->ncodes++] = n;
                }

                p = comma + 1;
            }

        } else {
            goto invalid;
        }

        if (rv != NGX_CONF_OK) {
            return rv;
        }
    }

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "insite_gateway_breaker: invalid parameter \"%V\"",
                       &value[i]);
    return NGX_CONF_ERROR;
}


/*
 * One zone for every service.  Sized for at least 64 services so that a
 * reload adding a few keeps the same zone, and with it the breakers' state.
 */

ngx_shm_zone_t *
ngx_insite_gw_breaker_zone(ngx_conf_t *cf, ngx_insite_gw_main_conf_t *gmcf)
{
    size_t           size;
    ngx_str_t        name = ngx_string("insite_gateway_breaker");
    ngx_shm_zone_t  *zone;

    size = ngx_max(gmcf->services.nelts, 64)
           * (sizeof(ngx_insite_gw_breaker_node_t) + 128) + 16 * ngx_pagesize;
    size = ngx_align(size, ngx_pagesize);

    zone = ngx_shared_memory_add(cf, &name, size,
                                 &ngx_http_insite_gateway_module);
    if (zone == NULL) {
        return NULL;
    }

    zone->init = ngx_insite_gw_breaker_init_zone;
    zone->data = gmcf;

    return zone;
}


static ngx_int_t
ngx_insite_gw_breaker_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_insite_gw_main_conf_t *gmcf = shm_zone->data;

    ngx_uint_t                      i;
    ngx_queue_t                    *q;
    ngx_slab_pool_t                *shpool;
    ngx_insite_gw_service_t       **svcs, *svc;
    ngx_insite_gw_breaker_node_t   *bn;
    ngx_insite_gw_breaker_shctx_t  *sh;

    shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (data && shpool->data) {
        /* reload: the zone, and the state of the services in it, carry on */
        sh = shpool->data;

    } else {
        sh = ngx_slab_alloc(shpool, sizeof(ngx_insite_gw_breaker_shctx_t));
        if (sh == NULL) {
            return NGX_ERROR;
        }

        ngx_queue_init(&sh->services);
        shpool->data = sh;
        shpool->log_nomem = 0;
    }

    svcs = gmcf->services.elts;

    for (i = 0; i < gmcf->services.nelts; i++) {
        svc = svcs[i];
        svc->node = NULL;

        for (q = ngx_queue_head(&sh->services);
             q != ngx_queue_sentinel(&sh->services);
             q = ngx_queue_next(q))
        {
            bn = ngx_queue_data(q, ngx_insite_gw_breaker_node_t, queue);

            if (bn->len == svc->name.len
                && ngx_memcmp(bn->name, svc->name.data, bn->len) == 0)
            {
                svc->node = bn;
                break;
            }
        }

        if (svc->node) {
            continue;
        }

        bn = ngx_slab_calloc(shpool, sizeof(ngx_insite_gw_breaker_node_t)
                                     + svc->name.len);
        if (bn == NULL) {
            ngx_log_error(NGX_LOG_EMERG, shm_zone->shm.log, 0,
                          "insite gateway: no room for the breaker of "
                          "service \"%V\"", &svc->name);
            return NGX_ERROR;
        }

        bn->len = svc->name.len;
        ngx_memcpy(bn->name, svc->name.data, svc->name.len);
        ngx_queue_insert_tail(&sh->services, &bn->queue);
        svc->node = bn;
    }

    return NGX_OK;
}


/*
 * NGX_OK: let the request through (as a probe when half-open);
 * NGX_DECLINED: refuse it, *retry_after says for how long.
 */

ngx_int_t
ngx_insite_gw_breaker_admit(ngx_http_request_t *r, ngx_insite_gw_ctx_t *ctx,
    ngx_insite_gw_service_t *svc, ngx_insite_gw_breaker_conf_t *bc,
    time_t *retry_after)
{
    ngx_int_t                      rc;
    ngx_msec_t                     now, left;
    ngx_uint_t                     from, to;
    ngx_atomic_uint_t              sg;
    ngx_slab_pool_t               *shpool;
    ngx_insite_gw_breaker_node_t  *bn;
    ngx_insite_gw_main_conf_t     *gmcf;

    bn = svc->node;

    /* closed: one read of the state word, no lock */

    sg = bn->state;

    if (ngx_insite_gw_breaker_state(sg) == NGX_INSITE_GW_CLOSED) {
        ctx->service = svc;
        ctx->breaker = bc;
        ctx->generation = ngx_insite_gw_breaker_generation(sg);
        return NGX_OK;
    }

    gmcf = ngx_http_get_module_main_conf(r, ngx_http_insite_gateway_module);
    shpool = (ngx_slab_pool_t *) gmcf->breaker_zone->shm.addr;
    now = ngx_current_msec;
    rc = NGX_OK;
    from = to = NGX_INSITE_GW_CLOSED;

    ngx_shmtx_lock(&shpool->mutex);

    switch (ngx_insite_gw_breaker_state(bn->state)) {

    case NGX_INSITE_GW_OPEN:

        if ((ngx_msec_int_t) (now - bn->opened) < (ngx_msec_int_t) bc->recovery)
        {
            left = bn->opened + bc->recovery - now;
            *retry_after = (left + 999) / 1000;
            rc = NGX_DECLINED;
            break;
        }

        from = NGX_INSITE_GW_OPEN;
        to = NGX_INSITE_GW_HALF_OPEN;
        ngx_insite_gw_breaker_transition(bn, to);

        /* this request is the first probe */

        /* fall through */

    case NGX_INSITE_GW_HALF_OPEN:

        /*
         * One probe at a time.  A probe whose request never reached the
         * log phase (a worker died) is given up after a recovery period.
         */

        if (bn->probing
            && (ngx_msec_int_t) (now - bn->probe_start)
               < (ngx_msec_int_t) ngx_max(bc->recovery, 10000))
        {
            *retry_after = 1;
            rc = NGX_DECLINED;
            break;
        }

        bn->probing = 1;
        bn->probe_start = now;
        ctx->probe = 1;
        break;

    default: /* NGX_INSITE_GW_CLOSED: it closed since the read above */
        break;
    }

    if (rc == NGX_OK) {
        ctx->service = svc;
        ctx->breaker = bc;
        ctx->generation = ngx_insite_gw_breaker_generation(bn->state);
    }

    ngx_shmtx_unlock(&shpool->mutex);

    if (from != to) {
        ngx_insite_gw_breaker_log(r, ctx, svc, from, to, "recovery elapsed");
    }

    if (*retry_after < 1) {
        *retry_after = 1;
    }

    return rc;
}


/* log phase: what did the upstream do with a request the breaker let in */

void
ngx_insite_gw_breaker_outcome(ngx_http_request_t *r, ngx_insite_gw_ctx_t *ctx)
{
    char                          *why;
    uint32_t                       n;
    ngx_uint_t                     i, failed, status, from, to, requests,
                                   failures, state;
    ngx_msec_t                     now, epoch;
    ngx_atomic_uint_t              sg;
    ngx_slab_pool_t               *shpool;
    ngx_insite_gw_bucket_t        *b;
    ngx_insite_gw_service_t       *svc;
    ngx_http_upstream_state_t     *st;
    ngx_insite_gw_breaker_conf_t  *bc;
    ngx_insite_gw_breaker_node_t  *bn;
    ngx_insite_gw_main_conf_t     *gmcf;
    u_char                         buf[128];

    svc = ctx->service;
    bc = ctx->breaker;
    bn = svc->node;

    /* -1: not an upstream outcome (the request never reached it) */
    failed = (ngx_uint_t) -1;

    if (r->upstream_states && r->upstream_states->nelts) {
        st = r->upstream_states->elts;
        st = &st[r->upstream_states->nelts - 1];
        status = st->status;

        if (st->header_time == (ngx_msec_t) -1) {
            if (status == NGX_HTTP_GATEWAY_TIME_OUT) {
                failed = (bc->fail_on & NGX_INSITE_GW_FAIL_TIMEOUT) ? 1 : 0;

            } else if (status == 0) {
                /* the client went away first: says nothing of the service */
                failed = (ngx_uint_t) -1;

            } else {
                failed = (bc->fail_on & NGX_INSITE_GW_FAIL_ERROR) ? 1 : 0;
            }

        } else {
            failed = 0;

            if (status >= 500 && status < 600
                && (bc->fail_on & NGX_INSITE_GW_FAIL_5XX))
            {
                failed = 1;
            }

            for (i = 0; i < bc->ncodes; i++) {
                if (bc->codes[i] == status) {
                    failed = 1;
                }
            }
        }

    } else if (r->upstream && !r->cached) {
        /* no peer was even tried: "no live upstreams"; an answer from
         * proxy_cache (r->cached) has no upstream state either, and says
         * nothing of the service */
        failed = (bc->fail_on & NGX_INSITE_GW_FAIL_ERROR) ? 1 : 0;
    }

    now = ngx_current_msec;

    /*
     * Without the lock, what cannot change the state: a non-probe admitted
     * in another generation, or in a state other than closed (only probes
     * are admitted then), is ignored as under the lock; a success in the
     * current closed generation is counted in its bucket.
     */

    if (!ctx->probe) {
        sg = bn->state;

        if (ngx_insite_gw_breaker_generation(sg) != ctx->generation
            || ngx_insite_gw_breaker_state(sg) != NGX_INSITE_GW_CLOSED
            || failed == (ngx_uint_t) -1)
        {
            return;
        }

        if (!failed
            && ngx_insite_gw_breaker_success(bn, bc, ctx->generation, now)
               == NGX_OK)
        {
            return;
        }
    }

    gmcf = ngx_http_get_module_main_conf(r, ngx_http_insite_gateway_module);
    shpool = (ngx_slab_pool_t *) gmcf->breaker_zone->shm.addr;
    from = to = NGX_INSITE_GW_CLOSED;
    why = NULL;

    ngx_shmtx_lock(&shpool->mutex);

    sg = bn->state;
    state = ngx_insite_gw_breaker_state(sg);

    if (ngx_insite_gw_breaker_generation(sg) != ctx->generation) {
        /* admitted before the last transition: not about the current state */
        goto unlock;
    }

    if (state == NGX_INSITE_GW_HALF_OPEN) {

        if (!ctx->probe) {
            goto unlock;
        }

        bn->probing = 0;

        if (failed == (ngx_uint_t) -1) {
            goto unlock;
        }

        if (failed) {
            from = NGX_INSITE_GW_HALF_OPEN;
            to = NGX_INSITE_GW_OPEN;
            bn->opened = now;
            why = "a probe failed";
            ngx_insite_gw_breaker_transition(bn, to);
            goto unlock;
        }

        if (++bn->successes >= bc->half_open) {
            from = NGX_INSITE_GW_HALF_OPEN;
            to = NGX_INSITE_GW_CLOSED;
            ngx_sprintf(buf, "%ui consecutive probes succeeded%Z",
                        bn->successes);
            why = (char *) buf;
            ngx_insite_gw_breaker_transition(bn, to);
        }

        goto unlock;
    }

    if (state != NGX_INSITE_GW_CLOSED || failed == (ngx_uint_t) -1) {
        goto unlock;
    }

    b = ngx_insite_gw_breaker_bucket(bn, bc, now, &epoch);

    /* (a worker whose clock lags a few ms counts in the newer bucket) */

    if ((ngx_msec_int_t) (b->epoch - epoch) < 0
        || b->generation != ctx->generation)
    {
        /* a bucket of an earlier period or generation: reset, new identity */
        __atomic_store_n(&b->requests, (uint64_t) ++bn->resets << 32,
                         __ATOMIC_RELEASE);
        b->epoch = epoch;
        b->generation = ctx->generation;
        b->failures = 0;
    }

    (void) __atomic_fetch_add(&b->requests, 1, __ATOMIC_ACQ_REL);
    b->failures += failed;

    if (!failed) {
        goto unlock;
    }

    requests = 0;
    failures = 0;

    for (i = 0; i < NGX_INSITE_GW_BUCKETS; i++) {
        b = &bn->buckets[i];
        n = (uint32_t) __atomic_load_n(&b->requests, __ATOMIC_ACQUIRE);

        if ((ngx_msec_int_t) (now - b->epoch) < (ngx_msec_int_t) bc->window
            && b->generation == ctx->generation && n)
        {
            requests += n;
            failures += b->failures;
        }
    }

    if (failures >= bc->failures) {
        ngx_sprintf(buf, "%ui failures in %Mms%Z", failures, bc->window);
        why = (char *) buf;

    } else if (bc->ratio && requests >= bc->min_requests
               && failures * 1000 >= bc->ratio * requests)
    {
        ngx_sprintf(buf, "%ui of %ui requests failed in %Mms%Z",
                    failures, requests, bc->window);
        why = (char *) buf;
    }

    if (why) {
        from = NGX_INSITE_GW_CLOSED;
        to = NGX_INSITE_GW_OPEN;
        bn->opened = now;
        ngx_insite_gw_breaker_transition(bn, to);
    }

unlock:

    ngx_shmtx_unlock(&shpool->mutex);

    if (from != to) {
        ngx_insite_gw_breaker_log(r, ctx, svc, from, to, why);
    }
}


/* the bucket of `now`, and the start of its period in *epoch */

static ngx_insite_gw_bucket_t *
ngx_insite_gw_breaker_bucket(ngx_insite_gw_breaker_node_t *bn,
    ngx_insite_gw_breaker_conf_t *bc, ngx_msec_t now, ngx_msec_t *epoch)
{
    ngx_msec_t  bms;

    bms = bc->window / NGX_INSITE_GW_BUCKETS;
    if (bms == 0) {
        bms = 1;
    }

    *epoch = now - now % bms;

    return &bn->buckets[(now / bms) % NGX_INSITE_GW_BUCKETS];
}


/*
 * A success of a closed breaker, without the lock: NGX_OK when counted,
 * NGX_DECLINED when the bucket needs a reset (or keeps changing under us),
 * which the caller then does under the lock.
 *
 * The identity is read before epoch and generation (acquire), and a reset
 * stores it before them (release): if epoch and generation match, the
 * identity read is theirs or an older one, and the compare-and-swap adds
 * only while it is still the bucket's.
 */

static ngx_int_t
ngx_insite_gw_breaker_success(ngx_insite_gw_breaker_node_t *bn,
    ngx_insite_gw_breaker_conf_t *bc, ngx_uint_t generation, ngx_msec_t now)
{
    uint64_t                 w;
    ngx_uint_t               tries;
    ngx_msec_t               epoch;
    ngx_insite_gw_bucket_t  *b;

    b = ngx_insite_gw_breaker_bucket(bn, bc, now, &epoch);

    for (tries = 0; tries < 8; tries++) {
        w = __atomic_load_n(&b->requests, __ATOMIC_ACQUIRE);

        if ((ngx_msec_int_t) (b->epoch - epoch) < 0
            || b->generation != generation)
        {
            return NGX_DECLINED;
        }

        if (__atomic_compare_exchange_n(&b->requests, &w, w + 1, 0,
                                        __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
        {
            return NGX_OK;
        }
    }

    return NGX_DECLINED;
}


/*
 * Under the zone's lock.  Buckets of older generations stop counting (a
 * closed breaker starts from an empty window); the state word is stored
 * last, so a lock-free reader that sees the new generation sees the rest.
 */

static void
ngx_insite_gw_breaker_transition(ngx_insite_gw_breaker_node_t *bn,
    ngx_uint_t to)
{
    ngx_atomic_uint_t  generation;

    generation = ngx_insite_gw_breaker_generation(bn->state) + 1;

    bn->probing = 0;
    bn->successes = 0;

    __atomic_store_n(&bn->state, generation << 2 | to, __ATOMIC_RELEASE);
}


/* once per transition: only the worker that made it gets here */

static void
ngx_insite_gw_breaker_log(ngx_http_request_t *r, ngx_insite_gw_ctx_t *ctx,
    ngx_insite_gw_service_t *svc, ngx_uint_t from, ngx_uint_t to,
    const char *why)
{
    ngx_uint_t  level;

    level = (to == NGX_INSITE_GW_OPEN) ? NGX_LOG_WARN : NGX_LOG_NOTICE;

    ngx_log_error(level, r->connection->log, 0,
                  "insite gateway: service \"%V\" circuit breaker %s -> %s "
                  "(%s), request_id: %V",
                  &svc->name, ngx_insite_gw_state_names[from],
                  ngx_insite_gw_state_names[to], why,
                  ngx_insite_gw_request_id(r, ctx));

    ngx_insite_metric_inc(svc->transitions[to]);
    ngx_insite_metric_set(svc->state, to);
}
