/*
 * Rate limiting: GCRA with the semantics of nginx's `limit_req nodelay`.
 *
 * State per key is one number, `excess`, and the time it was stored.  With
 * a rate of n requests per `period` ms, one request costs `period` units and
 * n units drain per millisecond (all integers: every rate is exact).  For a
 * request at `now`:
 *
 *     e = max(excess - n * (now - last) + period, 0)    (a new key: e = 0)
 *     admitted  iff  e <= burst * period;  then excess = e, last = now
 *
 * so burst + 1 requests pass at once, then one per period/n ms: the
 * theoretical arrival time of GCRA is last + (excess + period) / n.  A
 * refused request changes nothing.
 *
 * The local backend keeps the state in a shared memory zone (rbtree + LRU,
 * as limit_req does) and decides under the zone's mutex.  A full zone makes
 * room by evicting its least recently used keys, never by admitting
 * without a limit: every node has one size (keys beyond 39 bytes are kept
 * as their SHA-256), so freeing one always makes room for the next, and
 * only a zone with nothing left to free refuses (503).  The Redis backend
 * runs lua/rate_limit.lua, the same arithmetic in one atomic script, with
 * Redis' clock, so that every nginx server shares the limit.
 */

#include "ngx_insite_gateway.h"

#include <openssl/evp.h>


static ngx_int_t ngx_insite_gw_limit_fixed_headers(ngx_conf_t *cf,
    ngx_insite_gw_limit_t *lim);


/*
 * A key is stored as itself when shorter than this, as its SHA-256
 * (zero-padded to exactly this length, which no stored key has otherwise)
 * when longer: one node size, 128 bytes on 64-bit systems, one slab class.
 */
#define NGX_INSITE_GW_LIMIT_INLINE    40

/* at most one "zone is full" log line per zone per interval */
#define NGX_INSITE_GW_LIMIT_LOG_MS    60000

/* evictions tried for one new key before giving up (one always suffices
 * while the zone holds any key) */
#define NGX_INSITE_GW_LIMIT_EVICT     8


typedef struct {
    ngx_str_node_t              sn;
    ngx_queue_t                 queue;
    ngx_msec_t                  last;
    int64_t                     excess;
    u_char                      data[NGX_INSITE_GW_LIMIT_INLINE];
} ngx_insite_gw_limit_node_t;


static ngx_int_t ngx_insite_gw_limit_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);
static void ngx_insite_gw_limit_expire(ngx_insite_gw_limit_zone_t *lz,
    ngx_insite_gw_limit_t *lim);
static ngx_int_t ngx_insite_gw_limit_evict(ngx_insite_gw_limit_zone_t *lz);
static ngx_int_t ngx_insite_gw_limit_stored_key(ngx_str_t *key, u_char *buf,
    ngx_str_t *stored);
static void ngx_insite_gw_limit_full(ngx_http_request_t *r,
    ngx_insite_gw_limit_zone_t *lz, ngx_uint_t evicted, ngx_uint_t refused);


/*
 * insite_gateway_rate_limit zone=NAME key=$insite_user_id rate=100r/m
 *                           burst=20 [backend=local|redis] [fail=open|closed];
 */

char *
ngx_insite_gw_limit_parse(ngx_conf_t *cf, ngx_insite_gw_limit_t *lim)
{
    u_char                            *p;
    ngx_str_t                         *value, s, v;
    ngx_uint_t                         i, have_rate;
    ngx_http_compile_complex_value_t   ccv;

    value = cf->args->elts;
    have_rate = 0;
    lim->backend = NGX_INSITE_GW_LOCAL;

    for (i = 1; i < cf->args->nelts; i++) {
        s = value[i];

        if (ngx_strncmp(s.data, "zone=", 5) == 0 && s.len > 5) {
            lim->zone_name.data = s.data + 5;
            lim->zone_name.len = s.len - 5;
            continue;
        }

        if (ngx_strncmp(s.data, "key=", 4) == 0 && s.len > 4) {
            s.data += 4;
            s.len -= 4;

            ngx_memzero(&ccv, sizeof(ngx_http_compile_complex_value_t));
            ccv.cf = cf;
            ccv.value = &s;
            ccv.complex_value = &lim->key;

            if (ngx_http_compile_complex_value(&ccv) != NGX_OK) {
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(s.data, "rate=", 5) == 0 && s.len > 8) {
            p = s.data + s.len - 3;

            if (ngx_strncmp(p, "r/s", 3) == 0) {
                lim->period = 1000;

            } else if (ngx_strncmp(p, "r/m", 3) == 0) {
                lim->period = 60000;

            } else {
                goto invalid;
            }

            v.data = s.data + 5;
            v.len = p - v.data;

            if (ngx_insite_conf_uint(cf, "insite_gateway_rate_limit", &s, &v,
                                     1, 1000000, &lim->n)
                != NGX_CONF_OK)
            {
                return NGX_CONF_ERROR;
            }

            have_rate = 1;
            continue;
        }

        if (ngx_strncmp(s.data, "burst=", 6) == 0) {
            v.data = s.data + 6;
            v.len = s.len - 6;

            if (ngx_insite_conf_uint(cf, "insite_gateway_rate_limit", &s, &v,
                                     0, 1000000, &lim->burst)
                != NGX_CONF_OK)
            {
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (s.len == 13 && ngx_strncmp(s.data, "backend=local", 13) == 0) {
            lim->backend = NGX_INSITE_GW_LOCAL;
            continue;
        }

        if (s.len == 13 && ngx_strncmp(s.data, "backend=redis", 13) == 0) {
            lim->backend = NGX_INSITE_GW_REDIS;
            continue;
        }

        if (s.len == 9 && ngx_strncmp(s.data, "fail=open", 9) == 0) {
            lim->fail_closed = 0;
            continue;
        }

        if (s.len == 11 && ngx_strncmp(s.data, "fail=closed", 11) == 0) {
            lim->fail_closed = 1;
            continue;
        }

        goto invalid;
    }

    if (lim->zone_name.len == 0 || lim->key.value.data == NULL || !have_rate)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "insite_gateway_rate_limit needs zone=, key= "
                           "and rate=");
        return NGX_CONF_ERROR;
    }

    if (ngx_insite_gw_limit_fixed_headers(cf, lim) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    if (lim->backend == NGX_INSITE_GW_LOCAL) {
        /* sized by insite_gateway_rate_zone, which may come later */
        lim->shm_zone = ngx_shared_memory_add(cf, &lim->zone_name, 0,
                                              &ngx_http_insite_gateway_module);
        if (lim->shm_zone == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "insite_gateway_rate_limit: invalid parameter \"%V\"",
                       &value[i]);
    return NGX_CONF_ERROR;
}


/* insite_gateway_rate_zone NAME SIZE; (the size is checked by the caller) */

char *
ngx_insite_gw_limit_zone(ngx_conf_t *cf, ngx_str_t *name, size_t size)
{
    u_char                      *p;
    ngx_str_t                    labels;
    ngx_shm_zone_t              *shm_zone;
    ngx_insite_gw_limit_zone_t  *lz;

    shm_zone = ngx_shared_memory_add(cf, name, size,
                                     &ngx_http_insite_gateway_module);
    if (shm_zone == NULL) {
        return NGX_CONF_ERROR;
    }

    if (shm_zone->data) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "duplicate zone \"%V\"", name);
        return NGX_CONF_ERROR;
    }

    lz = ngx_pcalloc(cf->pool, sizeof(ngx_insite_gw_limit_zone_t));
    if (lz == NULL) {
        return NGX_CONF_ERROR;
    }

    lz->name = *name;

    p = ngx_pnalloc(cf->pool, name->len + sizeof("zone=\"\""));
    if (p == NULL) {
        return NGX_CONF_ERROR;
    }

    labels.data = p;
    labels.len = ngx_sprintf(p, "zone=\"%V\"", name) - p;

    lz->evictions = ngx_insite_metric_add(cf, NGX_INSITE_COUNTER,
        "insite_gateway_rate_limit_evictions_total", &labels,
        "Keys evicted from a full local rate limit zone to make room "
        "(least recently used first).");
    if (lz->evictions == NULL) {
        return NGX_CONF_ERROR;
    }

    shm_zone->init = ngx_insite_gw_limit_init_zone;
    shm_zone->data = lz;

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_insite_gw_limit_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_insite_gw_limit_zone_t  *olz = data;

    size_t                       len;
    ngx_insite_gw_limit_zone_t  *lz;

    lz = shm_zone->data;

    if (olz) {
        lz->sh = olz->sh;
        lz->shpool = olz->shpool;
        return NGX_OK;
    }

    lz->shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (shm_zone->shm.exists) {
        lz->sh = lz->shpool->data;
        return NGX_OK;
    }

    lz->sh = ngx_slab_alloc(lz->shpool, sizeof(ngx_insite_gw_limit_shctx_t));
    if (lz->sh == NULL) {
        return NGX_ERROR;
    }

    lz->shpool->data = lz->sh;

    ngx_rbtree_init(&lz->sh->rbtree, &lz->sh->sentinel,
                    ngx_str_rbtree_insert_value);
    ngx_queue_init(&lz->sh->queue);

    len = sizeof(" in insite_gateway_rate_zone \"\"") + shm_zone->shm.name.len;

    lz->shpool->log_ctx = ngx_slab_alloc(lz->shpool, len);
    if (lz->shpool->log_ctx == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(lz->shpool->log_ctx, " in insite_gateway_rate_zone \"%V\"%Z",
                &shm_zone->shm.name);

    lz->shpool->log_nomem = 0;

    return NGX_OK;
}


/*
 * The local decision.  NGX_OK with *res filled in; NGX_DECLINED when the
 * zone has no room for a new key and nothing left to evict (the caller
 * refuses: a full zone never admits without a limit); NGX_ERROR otherwise.
 */

ngx_int_t
ngx_insite_gw_limit_local(ngx_http_request_t *r, ngx_insite_gw_limit_t *lim,
    ngx_str_t *key, ngx_insite_gw_limit_result_t *res)
{
    u_char                       buf[NGX_INSITE_GW_LIMIT_INLINE];
    int64_t                      e;
    uint32_t                     hash;
    ngx_str_t                    stored;
    ngx_msec_t                   now;
    ngx_uint_t                   allowed, evicted;
    ngx_msec_int_t               ms;
    ngx_insite_gw_limit_node_t  *ln;
    ngx_insite_gw_limit_zone_t  *lz;

    if (ngx_insite_gw_limit_stored_key(key, buf, &stored) != NGX_OK) {
        return NGX_ERROR;
    }

    lz = lim->shm_zone->data;
    hash = ngx_crc32_short(stored.data, stored.len);
    now = ngx_current_msec;

    ngx_shmtx_lock(&lz->shpool->mutex);

    ln = (ngx_insite_gw_limit_node_t *)
             ngx_str_rbtree_lookup(&lz->sh->rbtree, &stored, hash);

    if (ln) {
        ms = (ngx_msec_int_t) (now - ln->last);

        /* workers' cached clocks differ by a few ms */
        if (ms < 0) {
            ms = 0;
        }

        if (ms > 100000000) {
            ms = 100000000;
        }

        e = ln->excess - (int64_t) lim->n * ms + (int64_t) lim->period;
        if (e < 0) {
            e = 0;
        }

        allowed = (e <= (int64_t) (lim->burst * lim->period));

        if (allowed) {
            ln->excess = e;
            ln->last = now;
        }

        ngx_queue_remove(&ln->queue);
        ngx_queue_insert_head(&lz->sh->queue, &ln->queue);

        ngx_shmtx_unlock(&lz->shpool->mutex);

        ngx_insite_gw_limit_compute(lim, allowed, e, res);
        return NGX_OK;
    }

    /* Drained keys are dropped when a new key comes, as limit_req does:
     * expiring on every request dropped a key found drained only to
     * allocate and insert it again right after (one busy key: every
     * request paid a slab free, an alloc and two tree updates). */
    ngx_insite_gw_limit_expire(lz, lim);

    ln = ngx_slab_alloc_locked(lz->shpool, sizeof(ngx_insite_gw_limit_node_t));

    /* full: the least recently used keys make room, as in limit_req */
    for (evicted = 0;
         ln == NULL && evicted < NGX_INSITE_GW_LIMIT_EVICT;
         evicted++)
    {
        if (ngx_insite_gw_limit_evict(lz) != NGX_OK) {
            break;
        }

        ln = ngx_slab_alloc_locked(lz->shpool,
                                   sizeof(ngx_insite_gw_limit_node_t));
    }

    if (ln == NULL) {
        ngx_shmtx_unlock(&lz->shpool->mutex);
        ngx_insite_gw_limit_full(r, lz, evicted, 1);
        return NGX_DECLINED;
    }

    ngx_memcpy(ln->data, stored.data, stored.len);
    ln->sn.node.key = hash;
    ln->sn.str.data = ln->data;
    ln->sn.str.len = stored.len;
    ln->excess = 0;
    ln->last = now;

    ngx_rbtree_insert(&lz->sh->rbtree, &ln->sn.node);
    ngx_queue_insert_head(&lz->sh->queue, &ln->queue);

    ngx_shmtx_unlock(&lz->shpool->mutex);

    if (evicted) {
        ngx_insite_gw_limit_full(r, lz, evicted, 0);
    }

    ngx_insite_gw_limit_compute(lim, 1, 0, res);

    return NGX_OK;
}


static ngx_int_t
ngx_insite_gw_limit_stored_key(ngx_str_t *key, u_char *buf, ngx_str_t *stored)
{
    unsigned int  len;

    if (key->len < NGX_INSITE_GW_LIMIT_INLINE) {
        *stored = *key;
        return NGX_OK;
    }

    ngx_memzero(buf, NGX_INSITE_GW_LIMIT_INLINE);

    if (EVP_Digest(key->data, key->len, buf, &len, EVP_sha256(), NULL) != 1) {
        return NGX_ERROR;
    }

    stored->data = buf;
    stored->len = NGX_INSITE_GW_LIMIT_INLINE;

    return NGX_OK;
}


/*
 * Counts evictions (insite_metrics) and refusals, and logs them at most
 * once per NGX_INSITE_GW_LIMIT_LOG_MS per zone, across workers: a flood of
 * new keys fills the zone with every request, the log must not.
 */

static void
ngx_insite_gw_limit_full(ngx_http_request_t *r, ngx_insite_gw_limit_zone_t *lz,
    ngx_uint_t evicted, ngx_uint_t refused)
{
    ngx_msec_t                    now;
    ngx_uint_t                    log, nevicted, nrefused;
    ngx_insite_gw_limit_shctx_t  *sh;

    if (evicted) {
        ngx_insite_metric_add_value(lz->evictions, evicted);
    }

    sh = lz->sh;
    now = ngx_current_msec;
    log = 0;
    nevicted = 0;
    nrefused = 0;

    ngx_shmtx_lock(&lz->shpool->mutex);

    sh->evicted += evicted;
    sh->refused += refused;

    if (sh->logged == 0
        || (ngx_msec_int_t) (now - sh->logged) >= NGX_INSITE_GW_LIMIT_LOG_MS)
    {
        log = 1;
        nevicted = sh->evicted;
        nrefused = sh->refused;
        sh->evicted = 0;
        sh->refused = 0;
        sh->logged = now ? now : 1;
    }

    ngx_shmtx_unlock(&lz->shpool->mutex);

    if (!log) {
        return;
    }

    ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                  "insite gateway: rate limit zone \"%V\" is full: %ui least "
                  "recently used keys evicted, %ui requests refused (503) "
                  "since this was last logged (at most once a minute); "
                  "evicted keys lose their state, see \"Sizing\" in "
                  "docs/gateway.md",
                  &lz->name, nevicted, nrefused);
}


/* Under the lock.  Drops up to two drained keys from the LRU tail. */

static void
ngx_insite_gw_limit_expire(ngx_insite_gw_limit_zone_t *lz,
    ngx_insite_gw_limit_t *lim)
{
    int64_t                      e;
    ngx_uint_t                   i;
    ngx_msec_t                   now;
    ngx_queue_t                 *q;
    ngx_msec_int_t               ms;
    ngx_insite_gw_limit_node_t  *ln;

    now = ngx_current_msec;

    for (i = 0; i < 2; i++) {

        if (ngx_queue_empty(&lz->sh->queue)) {
            return;
        }

        q = ngx_queue_last(&lz->sh->queue);
        ln = ngx_queue_data(q, ngx_insite_gw_limit_node_t, queue);

        ms = (ngx_msec_int_t) (now - ln->last);

        if (ms < 0) {
            return;
        }

        if (ms < 100000000) {
            /* a key is drained when a request would find e == 0 */
            e = ln->excess - (int64_t) lim->n * ms + (int64_t) lim->period;
            if (e > 0) {
                return;
            }
        }

        ngx_queue_remove(q);
        ngx_rbtree_delete(&lz->sh->rbtree, &ln->sn.node);
        ngx_slab_free_locked(lz->shpool, ln);
    }
}


/* Under the lock.  Drops the least recently used key, whatever its state. */

static ngx_int_t
ngx_insite_gw_limit_evict(ngx_insite_gw_limit_zone_t *lz)
{
    ngx_queue_t                 *q;
    ngx_insite_gw_limit_node_t  *ln;

    if (ngx_queue_empty(&lz->sh->queue)) {
        return NGX_DECLINED;
    }

    q = ngx_queue_last(&lz->sh->queue);
    ln = ngx_queue_data(q, ngx_insite_gw_limit_node_t, queue);

    ngx_queue_remove(q);
    ngx_rbtree_delete(&lz->sh->rbtree, &ln->sn.node);
    ngx_slab_free_locked(lz->shpool, ln);

    return NGX_OK;
}


/* Redis: EVALSHA rate_limit 1 insite:rl:<zone>:<key> n period burst */

ngx_insite_redis_cmd_t *
ngx_insite_gw_limit_redis(ngx_http_request_t *r,
    ngx_insite_redis_script_t *script, ngx_insite_gw_limit_t *lim,
    ngx_str_t *key, ngx_insite_redis_reply_pt handler, void *data)
{
    u_char       *p, *a;
    size_t        lens[4];
    const char   *args[4];

    p = ngx_pnalloc(r->pool, sizeof("insite:rl::") - 1 + lim->zone_name.len
                             + key->len + 3 * NGX_INT_T_LEN);
    if (p == NULL) {
        return NULL;
    }

    a = ngx_sprintf(p, "insite:rl:%V:%V", &lim->zone_name, key);
    args[0] = (const char *) p;
    lens[0] = a - p;

    p = a;
    a = ngx_sprintf(p, "%ui", lim->n);
    args[1] = (const char *) p;
    lens[1] = a - p;

    p = a;
    a = ngx_sprintf(p, "%ui", lim->period);
    args[2] = (const char *) p;
    lens[2] = a - p;

    p = a;
    a = ngx_sprintf(p, "%ui", lim->burst);
    args[3] = (const char *) p;
    lens[3] = a - p;

    return ngx_insite_redis_eval(ngx_insite_redis_shared(), script, handler,
                                 data, 1, 4, args, lens);
}


/* the script answers {admitted (0|1), e} */

ngx_int_t
ngx_insite_gw_limit_redis_result(ngx_insite_gw_limit_t *lim,
    redisReply *reply, ngx_insite_gw_limit_result_t *res)
{
    if (reply == NULL
        || reply->type != REDIS_REPLY_ARRAY
        || reply->elements != 2
        || reply->element[0]->type != REDIS_REPLY_INTEGER
        || reply->element[1]->type != REDIS_REPLY_INTEGER
        || reply->element[1]->integer < 0)
    {
        return NGX_ERROR;
    }

    ngx_insite_gw_limit_compute(lim, reply->element[0]->integer == 1,
                                reply->element[1]->integer, res);

    return NGX_OK;
}


/*
 * Headers from one decision.  e is the excess the request computed (stored
 * when admitted):
 *
 *   remaining    admitted: (burst * period - e) / period, refused: 0
 *   retry_after  refused: (e - burst * period) / n ms, in whole seconds >= 1
 *   reset        until the key is drained (burst + 1 may pass again):
 *                admitted (e + period) / n ms, refused e / n ms
 */

void
ngx_insite_gw_limit_compute(ngx_insite_gw_limit_t *lim, ngx_uint_t allowed,
    int64_t e, ngx_insite_gw_limit_result_t *res)
{
    int64_t  n, cap, ms;

    n = (int64_t) lim->n;
    cap = (int64_t) (lim->burst * lim->period);

    res->allowed = allowed;

    if (allowed) {
        res->remaining = (ngx_uint_t) ((cap - e) / (int64_t) lim->period);
        res->retry_after = 0;
        ms = (e + (int64_t) lim->period + n - 1) / n;

    } else {
        res->remaining = 0;
        ms = (e - cap + n - 1) / n;
        res->retry_after = (time_t) ((ms + 999) / 1000);

        if (res->retry_after < 1) {
            res->retry_after = 1;
        }

        ms = (e + n - 1) / n;
    }

    res->reset = (time_t) ((ms + 999) / 1000);
}


/*
 * The rate-limit header values that depend only on the directive, formatted
 * once here rather than with ngx_sprintf() on every response (see
 * ngx_insite_gw_rate_headers()):
 *
 *   policy: "<zone>";q=<burst+1>;w=<seconds>
 *   quota:  <burst+1>
 *
 * q is what passes at once from a drained key, w the time (burst + 1)
 * requests take to drain: `rate=10r/m burst=9` is q=10;w=60.
 */

static ngx_int_t
ngx_insite_gw_limit_fixed_headers(ngx_conf_t *cf, ngx_insite_gw_limit_t *lim)
{
    u_char    *p;
    uint64_t   w;

    w = ((uint64_t) (lim->burst + 1) * lim->period + lim->n - 1) / lim->n;
    w = (w + 999) / 1000;

    p = ngx_pnalloc(cf->pool, lim->zone_name.len + 3 * NGX_INT64_LEN + 16);
    if (p == NULL) {
        return NGX_ERROR;
    }

    lim->policy.data = p;
    lim->policy.len = ngx_sprintf(p, "\"%V\";q=%ui;w=%uL", &lim->zone_name,
                                  lim->burst + 1, w) - p;

    p += lim->policy.len;
    lim->quota.data = p;
    lim->quota.len = ngx_sprintf(p, "%ui", lim->burst + 1) - p;

    return NGX_OK;
}
