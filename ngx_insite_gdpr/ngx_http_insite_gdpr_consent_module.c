/*
 * ngx_http_insite_gdpr_consent_module: consent enforced at the edge.
 *
 *   insite_gdpr_consent TYPE... | off;          http, server, location
 *   insite_gdpr_consent_anonymous allow|deny;   default allow
 *   insite_gdpr_consent_fail open|closed;       default closed
 *   insite_gdpr_consent_cache_size N;           http, default 10000
 *   insite_gdpr_consent_prefix PREFIX;          http, default "insite:"
 *
 * A second module in ngx_http_insite_gdpr_module.so, so that it has its own
 * configuration and phase handler and shares nothing with the audit journal
 * but the file.  insite-gdpr (workers/gdpr) keeps, per user, a Redis hash
 * <prefix>consent:{<user>} (type -> policy version, present = granted for
 * the current policy) and PUBLISHes the user id on <prefix>consent:changed
 * after each change.
 *
 * Per request (precontent phase, so after the gateway's access phase has
 * verified the JWT and set $insite_user_id):
 *   - no user: insite_gdpr_consent_anonymous decides;
 *   - the user's granted types come from this worker's LRU cache, else from
 *     one HMGET on the core's command connection (bounded by the adapter's
 *     command_timeout; the request waits for it without blocking);
 *   - a missing type: 403 {"error":"consent_required","message",
 *     "consent_types":[every listed type not granted],"request_id"};
 *   - Redis unusable: fail open (served) or closed (503 consent_unavailable).
 *
 * The cache is trusted only while this worker's subscriber is subscribed:
 * a notice drops the user's entry, a (re)subscription drops them all (notices
 * may have been missed), and entries older than 60 s are not used.
 */

#include "ngx_insite_gdpr.h"


#define NGX_INSITE_CONSENT_TYPES_MAX   64      /* one bit each */
#define NGX_INSITE_CONSENT_USER_MAX    256     /* longer ids: not cached */
#define NGX_INSITE_CONSENT_TTL         60000   /* ms */


typedef struct {
    ngx_array_t                 types;      /* ngx_str_t, bit = index */
    ngx_uint_t                  cache_size;
    ngx_str_t                   prefix;
    ngx_uint_t                  used;

    ngx_insite_metric_t        *allowed;
    ngx_insite_metric_t        *denied;
    ngx_insite_metric_t        *anonymous;
    ngx_insite_metric_t        *failed;
    ngx_insite_metric_t        *hits;
    ngx_insite_metric_t        *misses;
} ngx_http_insite_consent_main_conf_t;


typedef struct {
    uint64_t                    required;   /* 0: off */
    ngx_flag_t                  set;        /* the directive was written */
    ngx_uint_t                  anonymous;
    ngx_uint_t                  fail;
} ngx_http_insite_consent_loc_conf_t;


typedef struct {
    ngx_http_request_t         *request;
    ngx_insite_redis_cmd_t     *cmd;
    ngx_str_t                   user;
    uint64_t                    granted;
    const char                 *outcome;    /* $insite_gdpr_consent */
    const char                 *refused;    /* the error code sent, or NULL */
    unsigned                    waiting:1;
    unsigned                    decided:1;
    unsigned                    failed:1;
} ngx_http_insite_consent_ctx_t;


typedef struct {
    ngx_rbtree_node_t           node;       /* key: crc32 of the user */
    ngx_queue_t                 lru;
    uint64_t                    granted;
    ngx_msec_t                  expires;
    size_t                      len;
    u_char                      user[1];
} ngx_http_insite_consent_entry_t;


/* per worker */
typedef struct {
    ngx_http_insite_consent_main_conf_t  *conf;
    ngx_insite_redis_t                   *sub;
    ngx_uint_t                            subscribed;
    ngx_rbtree_t                          tree;
    ngx_rbtree_node_t                     sentinel;
    ngx_queue_t                           lru;      /* most recent first */
    ngx_uint_t                            n;
} ngx_http_insite_consent_worker_t;


#define NGX_INSITE_CONSENT_ANON_ALLOW  0
#define NGX_INSITE_CONSENT_ANON_DENY   1
#define NGX_INSITE_CONSENT_FAIL_OPEN   0
#define NGX_INSITE_CONSENT_FAIL_CLOSED 1


static ngx_int_t ngx_http_insite_consent_handler(ngx_http_request_t *r);
static void ngx_http_insite_consent_reply(ngx_insite_redis_status_e status,
    redisReply *reply, void *data);
static ngx_int_t ngx_http_insite_consent_decide(ngx_http_request_t *r,
    ngx_http_insite_consent_ctx_t *ctx);
static ngx_int_t ngx_http_insite_consent_refuse(ngx_http_request_t *r,
    uint64_t missing);
static ngx_int_t ngx_http_insite_consent_fail(ngx_http_request_t *r,
    const char *why);

static ngx_http_insite_consent_entry_t *ngx_http_insite_consent_cache_get(
    ngx_str_t *user);
static void ngx_http_insite_consent_cache_put(ngx_str_t *user,
    uint64_t granted);
static void ngx_http_insite_consent_cache_drop(ngx_str_t *user);
static void ngx_http_insite_consent_cache_flush(void);
static void ngx_http_insite_consent_message(ngx_insite_redis_t *rd,
    ngx_uint_t event, ngx_str_t *channel, ngx_str_t *payload, void *data);
static void ngx_http_insite_consent_ready(ngx_insite_redis_t *rd,
    ngx_uint_t reconnected, void *data);

static char *ngx_http_insite_consent(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static void *ngx_http_insite_consent_create_main_conf(ngx_conf_t *cf);
static char *ngx_http_insite_consent_init_main_conf(ngx_conf_t *cf,
    void *conf);
static void *ngx_http_insite_consent_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_insite_consent_merge_loc_conf(ngx_conf_t *cf,
    void *parent, void *child);
static ngx_int_t ngx_http_insite_consent_preconfiguration(ngx_conf_t *cf);
static ngx_int_t ngx_http_insite_consent_postconfiguration(ngx_conf_t *cf);
static ngx_int_t ngx_http_insite_consent_init_process(ngx_cycle_t *cycle);
static void ngx_http_insite_consent_exit_process(ngx_cycle_t *cycle);


static ngx_http_insite_consent_worker_t  *ngx_http_insite_consent_worker;

static ngx_str_t  ngx_http_insite_consent_var_name =
    ngx_string("insite_gdpr_consent");


static ngx_conf_enum_t  ngx_http_insite_consent_anonymous_modes[] = {
    { ngx_string("allow"), NGX_INSITE_CONSENT_ANON_ALLOW },
    { ngx_string("deny"), NGX_INSITE_CONSENT_ANON_DENY },
    { ngx_null_string, 0 }
};


static ngx_conf_enum_t  ngx_http_insite_consent_fail_modes[] = {
    { ngx_string("open"), NGX_INSITE_CONSENT_FAIL_OPEN },
    { ngx_string("closed"), NGX_INSITE_CONSENT_FAIL_CLOSED },
    { ngx_null_string, 0 }
};


static ngx_conf_num_bounds_t  ngx_http_insite_consent_cache_bounds = {
    ngx_conf_check_num_bounds, 0, 1000000
};


static ngx_command_t  ngx_http_insite_consent_commands[] = {

    { ngx_string("insite_gdpr_consent"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_insite_consent,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("insite_gdpr_consent_anonymous"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_enum_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_insite_consent_loc_conf_t, anonymous),
      &ngx_http_insite_consent_anonymous_modes },

    { ngx_string("insite_gdpr_consent_fail"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_enum_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_insite_consent_loc_conf_t, fail),
      &ngx_http_insite_consent_fail_modes },

    { ngx_string("insite_gdpr_consent_cache_size"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_insite_consent_main_conf_t, cache_size),
      &ngx_http_insite_consent_cache_bounds },

    { ngx_string("insite_gdpr_consent_prefix"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_insite_consent_main_conf_t, prefix),
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_insite_consent_module_ctx = {
    ngx_http_insite_consent_preconfiguration,  /* preconfiguration */
    ngx_http_insite_consent_postconfiguration, /* postconfiguration */

    ngx_http_insite_consent_create_main_conf,  /* create main configuration */
    ngx_http_insite_consent_init_main_conf,    /* init main configuration */

    NULL,                                      /* create server configuration */
    NULL,                                      /* merge server configuration */

    ngx_http_insite_consent_create_loc_conf,   /* create location configuration */
    ngx_http_insite_consent_merge_loc_conf     /* merge location configuration */
};


ngx_module_t  ngx_http_insite_gdpr_consent_module = {
    NGX_MODULE_V1,
    &ngx_http_insite_consent_module_ctx,   /* module context */
    ngx_http_insite_consent_commands,      /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    ngx_http_insite_consent_init_process,  /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_http_insite_consent_exit_process,  /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


/* the request */


static ngx_int_t
ngx_http_insite_consent_handler(ngx_http_request_t *r)
{
    size_t                                i, klen;
    u_char                               *key;
    ngx_str_t                            *types, user;
    const char                          **argv;
    size_t                               *lens;
    ngx_insite_redis_t                   *rd;
    ngx_insite_redis_cmd_t               *cmd;
    ngx_http_insite_consent_ctx_t        *ctx;
    ngx_http_insite_consent_entry_t      *e;
    ngx_http_insite_consent_loc_conf_t   *lcf;
    ngx_http_insite_consent_main_conf_t  *mcf;

    lcf = ngx_http_get_module_loc_conf(r, ngx_http_insite_gdpr_consent_module);

    if (lcf->required == 0 || r != r->main) {
        return NGX_DECLINED;
    }

    mcf = ngx_http_get_module_main_conf(r, ngx_http_insite_gdpr_consent_module);

    ctx = ngx_http_get_module_ctx(r, ngx_http_insite_gdpr_consent_module);

    if (ctx) {
        if (ctx->waiting) {
            return NGX_AGAIN;       /* a spurious event while Redis decides */
        }

        return ngx_http_insite_consent_decide(r, ctx);
    }

    (void) ngx_insite_gdpr_default_user(r, &user);

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_insite_consent_ctx_t));
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->request = r;
    ctx->user = user;
    ctx->decided = 1;
    ngx_http_set_ctx(r, ctx, ngx_http_insite_gdpr_consent_module);

    if (user.len == 0) {
        ngx_insite_metric_inc(mcf->anonymous);

        if (lcf->anonymous == NGX_INSITE_CONSENT_ANON_ALLOW) {
            ctx->outcome = "anonymous";
            ctx->granted = lcf->required;      /* decided: let it pass */
            return NGX_DECLINED;
        }

        ctx->granted = 0;
        return ngx_http_insite_consent_decide(r, ctx);
    }

    ctx->decided = 0;

    e = ngx_http_insite_consent_cache_get(&user);
    if (e) {
        ngx_insite_metric_inc(mcf->hits);
        ctx->granted = e->granted;
        ctx->decided = 1;
        return ngx_http_insite_consent_decide(r, ctx);
    }

    ngx_insite_metric_inc(mcf->misses);

    rd = ngx_insite_redis_shared();
    if (rd == NULL) {
        ctx->failed = 1;
        return ngx_http_insite_consent_decide(r, ctx);
    }

    /* HMGET <prefix>consent:{<user>} type... */

    klen = mcf->prefix.len + sizeof("consent:{}") - 1 + user.len;
    key = ngx_pnalloc(r->pool, klen);
    argv = ngx_palloc(r->pool, (mcf->types.nelts + 2) * sizeof(char *));
    lens = ngx_palloc(r->pool, (mcf->types.nelts + 2) * sizeof(size_t));
    if (key == NULL || argv == NULL || lens == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_sprintf(key, "%Vconsent:{%V}", &mcf->prefix, &user);

    argv[0] = "HMGET";
    lens[0] = 5;
    argv[1] = (const char *) key;
    lens[1] = klen;

    types = mcf->types.elts;
    for (i = 0; i < mcf->types.nelts; i++) {
        argv[i + 2] = (const char *) types[i].data;
        lens[i + 2] = types[i].len;
    }

    cmd = ngx_insite_redis_command_argv(rd, ngx_http_insite_consent_reply,
                                        ctx, (int) mcf->types.nelts + 2,
                                        argv, lens);
    if (cmd == NULL) {
        ctx->failed = 1;
        return ngx_http_insite_consent_decide(r, ctx);
    }

    if (ngx_insite_redis_cancel_with_pool(cmd, r->pool) != NGX_OK) {
        ngx_insite_redis_cancel(cmd);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->cmd = cmd;
    ctx->waiting = 1;

    return NGX_DONE;
}


static void
ngx_http_insite_consent_reply(ngx_insite_redis_status_e status,
    redisReply *reply, void *data)
{
    ngx_http_insite_consent_ctx_t *ctx = data;

    size_t               i;
    uint64_t             granted;
    ngx_connection_t    *c;
    ngx_http_request_t  *r;

    r = ctx->request;
    c = r->connection;

    ctx->waiting = 0;
    ctx->cmd = NULL;
    ctx->decided = 1;

    if (status != NGX_INSITE_REDIS_OK || reply->type != REDIS_REPLY_ARRAY
        || reply->elements > NGX_INSITE_CONSENT_TYPES_MAX)
    {
        ngx_log_error(NGX_LOG_WARN, c->log, 0,
                      "insite gdpr consent: Redis lookup failed: %s",
                      status != NGX_INSITE_REDIS_OK
                      ? ngx_insite_redis_status_name(status)
                      : reply->type == REDIS_REPLY_ERROR ? reply->str
                      : "unexpected reply");
        ctx->failed = 1;

    } else {
        granted = 0;
        for (i = 0; i < reply->elements; i++) {
            if (reply->element[i]->type == REDIS_REPLY_STRING) {
                granted |= (uint64_t) 1 << i;
            }
        }

        ctx->granted = granted;
        ngx_http_insite_consent_cache_put(&ctx->user, granted);
    }

    /* on with the phases, from this handler (now decided) */
    ngx_http_core_run_phases(r);
    ngx_http_run_posted_requests(c);
}


static ngx_int_t
ngx_http_insite_consent_decide(ngx_http_request_t *r,
    ngx_http_insite_consent_ctx_t *ctx)
{
    uint64_t                              missing;
    ngx_http_insite_consent_loc_conf_t   *lcf;
    ngx_http_insite_consent_main_conf_t  *mcf;

    lcf = ngx_http_get_module_loc_conf(r, ngx_http_insite_gdpr_consent_module);
    mcf = ngx_http_get_module_main_conf(r, ngx_http_insite_gdpr_consent_module);

    if (ctx->failed) {
        ngx_insite_metric_inc(mcf->failed);

        ctx->outcome = "unavailable";

        if (lcf->fail == NGX_INSITE_CONSENT_FAIL_OPEN) {
            return NGX_DECLINED;
        }

        ctx->refused = "consent_unavailable";
        return ngx_http_insite_consent_fail(r, "consent state unavailable");
    }

    missing = lcf->required & ~ctx->granted;

    if (missing == 0) {
        if (ctx->outcome == NULL) {
            ngx_insite_metric_inc(mcf->allowed);
            ctx->outcome = "granted";
        }
        return NGX_DECLINED;
    }

    ctx->outcome = "consent_required";
    ctx->refused = "consent_required";

    return ngx_http_insite_consent_refuse(r, missing);
}


/* 403 {"error":"consent_required","message":..,"consent_types":[..],
 *      "request_id":..} */

static ngx_int_t
ngx_http_insite_consent_refuse(ngx_http_request_t *r, uint64_t missing)
{
    size_t                                len;
    ngx_str_t                             rid, *types;
    ngx_buf_t                            *b;
    ngx_uint_t                            i, first;
    ngx_http_insite_consent_main_conf_t  *mcf;

    mcf = ngx_http_get_module_main_conf(r, ngx_http_insite_gdpr_consent_module);
    types = mcf->types.elts;

    ngx_insite_metric_inc(mcf->denied);

    ngx_insite_gdpr_request_id(r, &rid);

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "insite gdpr consent: consent_required, request_id: %V",
                  &rid);

    len = sizeof("{\"error\":\"consent_required\",\"message\":"
                 "\"this resource needs your consent\","
                 "\"consent_types\":[],\"request_id\":null}\n") - 1
          + ngx_insite_json_str_len(&rid);

    for (i = 0; i < mcf->types.nelts; i++) {
        if (missing & ((uint64_t) 1 << i)) {
            len += ngx_insite_json_str_len(&types[i]) + 1;
        }
    }

    b = ngx_create_temp_buf(r->pool, len);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->last = ngx_cpymem(b->last,
                         "{\"error\":\"consent_required\",\"message\":"
                         "\"this resource needs your consent\","
                         "\"consent_types\":[",
                         sizeof("{\"error\":\"consent_required\",\"message\":"
                                "\"this resource needs your consent\","
                                "\"consent_types\":[") - 1);

    first = 1;
    for (i = 0; i < mcf->types.nelts; i++) {
        if (missing & ((uint64_t) 1 << i)) {
            if (!first) {
                *b->last++ = ',';
            }
            first = 0;
            b->last = ngx_insite_json_str(b->last, &types[i]);
        }
    }

    b->last = ngx_cpymem(b->last, "],\"request_id\":",
                         sizeof("],\"request_id\":") - 1);

    if (rid.len) {
        b->last = ngx_insite_json_str(b->last, &rid);
    } else {
        b->last = ngx_cpymem(b->last, "null", 4);
    }

    *b->last++ = '}';
    *b->last++ = '\n';

    if (ngx_http_discard_request_body(r) != NGX_OK) {
        r->keepalive = 0;
    }

    ngx_http_finalize_request(r, ngx_insite_json_send(r, NGX_HTTP_FORBIDDEN,
                                                      b));
    return NGX_DONE;
}


static ngx_int_t
ngx_http_insite_consent_fail(ngx_http_request_t *r, const char *why)
{
    ngx_str_t  msg = ngx_string("consent cannot be checked right now; "
                                "try again");

    ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                  "insite gdpr consent: %s, refused "
                  "(insite_gdpr_consent_fail closed)", why);

    if (ngx_http_discard_request_body(r) != NGX_OK) {
        r->keepalive = 0;
    }

    (void) ngx_insite_http_add_header(r, "Retry-After", (u_char *) "5", 1);

    ngx_http_finalize_request(r, ngx_insite_json_error(r,
                              NGX_HTTP_SERVICE_UNAVAILABLE,
                              "consent_unavailable", &msg));
    return NGX_DONE;
}


/* the per-worker cache */


static ngx_http_insite_consent_entry_t *
ngx_http_insite_consent_cache_find(ngx_str_t *user, uint32_t hash)
{
    ngx_int_t                          rc;
    ngx_rbtree_node_t                 *node, *sentinel;
    ngx_http_insite_consent_entry_t   *e;
    ngx_http_insite_consent_worker_t  *w = ngx_http_insite_consent_worker;

    node = w->tree.root;
    sentinel = w->tree.sentinel;

    while (node != sentinel) {
        if (hash != node->key) {
            node = (hash < node->key) ? node->left : node->right;
            continue;
        }

        e = (ngx_http_insite_consent_entry_t *) node;
        rc = ngx_memn2cmp(user->data, e->user, user->len, e->len);

        if (rc == 0) {
            return e;
        }

        node = (rc < 0) ? node->left : node->right;
    }

    return NULL;
}


static void
ngx_http_insite_consent_cache_remove(ngx_http_insite_consent_entry_t *e)
{
    ngx_http_insite_consent_worker_t  *w = ngx_http_insite_consent_worker;

    ngx_rbtree_delete(&w->tree, &e->node);
    ngx_queue_remove(&e->lru);
    w->n--;
    ngx_free(e);
}


static ngx_http_insite_consent_entry_t *
ngx_http_insite_consent_cache_get(ngx_str_t *user)
{
    ngx_http_insite_consent_entry_t   *e;
    ngx_http_insite_consent_worker_t  *w = ngx_http_insite_consent_worker;

    /* only while notices can reach us */
    if (w == NULL || !w->subscribed || w->sub->state != NGX_INSITE_REDIS_READY
        || user->len > NGX_INSITE_CONSENT_USER_MAX)
    {
        return NULL;
    }

    e = ngx_http_insite_consent_cache_find(user,
                                          ngx_crc32_short(user->data,
                                                          user->len));
    if (e == NULL) {
        return NULL;
    }

    if ((ngx_msec_int_t) (e->expires - ngx_current_msec) <= 0) {
        ngx_http_insite_consent_cache_remove(e);
        return NULL;
    }

    ngx_queue_remove(&e->lru);
    ngx_queue_insert_head(&w->lru, &e->lru);

    return e;
}


static void
ngx_http_insite_consent_cache_put(ngx_str_t *user, uint64_t granted)
{
    uint32_t                           hash;
    ngx_queue_t                       *q;
    ngx_http_insite_consent_entry_t   *e;
    ngx_http_insite_consent_worker_t  *w = ngx_http_insite_consent_worker;

    if (w == NULL || !w->subscribed || w->sub->state != NGX_INSITE_REDIS_READY
        || w->conf->cache_size == 0 || user->len > NGX_INSITE_CONSENT_USER_MAX)
    {
        return;
    }

    hash = ngx_crc32_short(user->data, user->len);

    e = ngx_http_insite_consent_cache_find(user, hash);
    if (e) {
        ngx_http_insite_consent_cache_remove(e);
    }

    if (w->n >= w->conf->cache_size) {
        q = ngx_queue_last(&w->lru);
        ngx_http_insite_consent_cache_remove(
            ngx_queue_data(q, ngx_http_insite_consent_entry_t, lru));
    }

    e = ngx_alloc(offsetof(ngx_http_insite_consent_entry_t, user) + user->len,
                  ngx_cycle->log);
    if (e == NULL) {
        return;                          /* not cached: asked again */
    }

    e->node.key = hash;
    e->granted = granted;
    e->expires = ngx_current_msec + NGX_INSITE_CONSENT_TTL;
    e->len = user->len;
    ngx_memcpy(e->user, user->data, user->len);

    ngx_rbtree_insert(&w->tree, &e->node);
    ngx_queue_insert_head(&w->lru, &e->lru);
    w->n++;
}


static void
ngx_http_insite_consent_cache_drop(ngx_str_t *user)
{
    ngx_http_insite_consent_entry_t  *e;

    if (user->len > NGX_INSITE_CONSENT_USER_MAX) {
        return;
    }

    e = ngx_http_insite_consent_cache_find(user,
                                          ngx_crc32_short(user->data,
                                                          user->len));
    if (e) {
        ngx_http_insite_consent_cache_remove(e);
    }
}


static void
ngx_http_insite_consent_cache_flush(void)
{
    ngx_queue_t                       *q;
    ngx_http_insite_consent_worker_t  *w = ngx_http_insite_consent_worker;

    while (!ngx_queue_empty(&w->lru)) {
        q = ngx_queue_head(&w->lru);
        ngx_http_insite_consent_cache_remove(
            ngx_queue_data(q, ngx_http_insite_consent_entry_t, lru));
    }
}


/* the change notices */


static void
ngx_http_insite_consent_message(ngx_insite_redis_t *rd, ngx_uint_t event,
    ngx_str_t *channel, ngx_str_t *payload, void *data)
{
    ngx_http_insite_consent_worker_t *w = data;

    switch (event) {

    case NGX_INSITE_REDIS_SUBSCRIBED:
        /* whatever was cached before this may have missed a notice */
        ngx_http_insite_consent_cache_flush();
        w->subscribed = 1;
        break;

    case NGX_INSITE_REDIS_UNSUBSCRIBED:
        w->subscribed = 0;
        ngx_http_insite_consent_cache_flush();
        break;

    case NGX_INSITE_REDIS_MESSAGE:
        if (payload) {
            ngx_http_insite_consent_cache_drop(payload);
        }
        break;

    default:
        break;
    }
}


static void
ngx_http_insite_consent_ready(ngx_insite_redis_t *rd, ngx_uint_t reconnected,
    void *data)
{
    ngx_http_insite_consent_worker_t *w = data;

    u_char     buf[256];
    ngx_int_t  rc;
    ngx_str_t  ch;

    w->subscribed = 0;
    ngx_http_insite_consent_cache_flush();

    ch.data = buf;
    ch.len = ngx_snprintf(buf, sizeof(buf), "%Vconsent:changed",
                          &w->conf->prefix) - buf;

    rc = ngx_insite_redis_subscribe(rd, &ch);

    if (rc == NGX_DECLINED) {
        /* a cluster whose shard of the channel is not connected yet: the
         * hook runs again when it is; until then nothing is cached */
        ngx_log_error(NGX_LOG_INFO, rd->log, 0,
                      "insite gdpr consent: \"%V\": its shard is not "
                      "connected yet", &ch);

    } else if (rc != NGX_OK) {
        ngx_log_error(NGX_LOG_WARN, rd->log, 0,
                      "insite gdpr consent: cannot subscribe to \"%V\"", &ch);
    }
}


/* the audit record's "reason" (ngx_insite_gdpr.h) */

void
ngx_insite_gdpr_consent_reason(ngx_http_request_t *r, ngx_str_t *reason)
{
    ngx_http_insite_consent_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r->main,
                                  ngx_http_insite_gdpr_consent_module);

    if (ctx == NULL || ctx->refused == NULL) {
        ngx_str_null(reason);
        return;
    }

    reason->data = (u_char *) ctx->refused;
    reason->len = ngx_strlen(ctx->refused);
}


/*
 * $insite_gdpr_consent: what the check decided for this request, for
 * access logs and insite_gdpr_data_type: "granted", "consent_required",
 * "anonymous" (let through), "unavailable" (Redis; fail mode applied), or
 * empty where no check ran.
 */

static ngx_int_t
ngx_http_insite_consent_outcome_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_http_insite_consent_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r->main,
                                  ngx_http_insite_gdpr_consent_module);

    if (ctx == NULL || ctx->outcome == NULL) {
        v->not_found = 1;
        return NGX_OK;
    }

    v->data = (u_char *) ctx->outcome;
    v->len = ngx_strlen(ctx->outcome);
    v->valid = 1;
    v->no_cacheable = 0;
    v->not_found = 0;

    return NGX_OK;
}


/* configuration */


static ngx_int_t
ngx_http_insite_consent_preconfiguration(ngx_conf_t *cf)
{
    ngx_http_variable_t  *var;

    var = ngx_http_add_variable(cf, &ngx_http_insite_consent_var_name,
                                NGX_HTTP_VAR_NOCACHEABLE);
    if (var == NULL) {
        return NGX_ERROR;
    }

    var->get_handler = ngx_http_insite_consent_outcome_variable;

    return NGX_OK;
}


static char *
ngx_http_insite_consent(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_insite_consent_loc_conf_t *lcf = conf;

    u_char                               *p;
    ngx_str_t                            *value, *t;
    ngx_uint_t                            i, k;
    ngx_http_insite_consent_main_conf_t  *mcf;

    if (lcf->set) {
        return "is duplicate";
    }

    lcf->set = 1;
    lcf->required = 0;
    value = cf->args->elts;

    if (cf->args->nelts == 2 && ngx_strcmp(value[1].data, "off") == 0) {
        return NGX_CONF_OK;
    }

    mcf = ngx_http_conf_get_module_main_conf(cf,
                                        ngx_http_insite_gdpr_consent_module);

    for (i = 1; i < cf->args->nelts; i++) {

        if (value[i].len == 0 || value[i].len > 32) {
            goto invalid;
        }

        for (p = value[i].data; p < value[i].data + value[i].len; p++) {
            if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9')
                  || *p == '_'))
            {
                goto invalid;
            }
        }

        t = mcf->types.elts;
        for (k = 0; k < mcf->types.nelts; k++) {
            if (t[k].len == value[i].len
                && ngx_strncmp(t[k].data, value[i].data, t[k].len) == 0)
            {
                break;
            }
        }

        if (k == mcf->types.nelts) {
            if (k == NGX_INSITE_CONSENT_TYPES_MAX) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "more than %d consent types",
                                   NGX_INSITE_CONSENT_TYPES_MAX);
                return NGX_CONF_ERROR;
            }

            t = ngx_array_push(&mcf->types);
            if (t == NULL) {
                return NGX_CONF_ERROR;
            }

            *t = value[i];
        }

        lcf->required |= (uint64_t) 1 << k;
    }

    mcf->used = 1;

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid consent type \"%V\": [a-z0-9_]{1,32}",
                       &value[i]);
    return NGX_CONF_ERROR;
}


static void *
ngx_http_insite_consent_create_main_conf(ngx_conf_t *cf)
{
    ngx_http_insite_consent_main_conf_t  *mcf;

    mcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_insite_consent_main_conf_t));
    if (mcf == NULL) {
        return NULL;
    }

    if (ngx_array_init(&mcf->types, cf->pool, 8, sizeof(ngx_str_t))
        != NGX_OK)
    {
        return NULL;
    }

    mcf->cache_size = NGX_CONF_UNSET_UINT;

    return mcf;
}


static char *
ngx_http_insite_consent_init_main_conf(ngx_conf_t *cf, void *conf)
{
    ngx_http_insite_consent_main_conf_t  *mcf = conf;

    ngx_conf_init_uint_value(mcf->cache_size, 10000);

    if (mcf->prefix.data == NULL) {
        ngx_str_set(&mcf->prefix, "insite:");
    }

    if (mcf->prefix.len > 64) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "insite_gdpr_consent_prefix \"%V\" is longer "
                           "than 64 bytes", &mcf->prefix);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static void *
ngx_http_insite_consent_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_insite_consent_loc_conf_t  *conf;

    conf = ngx_pcalloc(cf->pool, sizeof(ngx_http_insite_consent_loc_conf_t));
    if (conf == NULL) {
        return NULL;
    }

    /* set by ngx_pcalloc(): required = 0, set = 0 */

    conf->anonymous = NGX_CONF_UNSET_UINT;
    conf->fail = NGX_CONF_UNSET_UINT;

    return conf;
}


static char *
ngx_http_insite_consent_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child)
{
    ngx_http_insite_consent_loc_conf_t *prev = parent;
    ngx_http_insite_consent_loc_conf_t *conf = child;

    if (!conf->set) {
        conf->required = prev->required;
        conf->set = prev->set;
    }

    ngx_conf_merge_uint_value(conf->anonymous, prev->anonymous,
                              NGX_INSITE_CONSENT_ANON_ALLOW);
    ngx_conf_merge_uint_value(conf->fail, prev->fail,
                              NGX_INSITE_CONSENT_FAIL_CLOSED);

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_insite_consent_postconfiguration(ngx_conf_t *cf)
{
    ngx_http_handler_pt                  *h;
    ngx_http_core_main_conf_t            *cmcf;
    ngx_http_insite_main_conf_t          *imcf;
    ngx_http_insite_consent_main_conf_t  *mcf;

    mcf = ngx_http_conf_get_module_main_conf(cf,
                                        ngx_http_insite_gdpr_consent_module);

    if (!mcf->used) {
        return NGX_OK;
    }

    imcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_insite_module);

    if (imcf->redis_conf == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "insite_gdpr_consent needs insite_redis or "
                           "insite_redis_cluster");
        return NGX_ERROR;
    }

    mcf->allowed = ngx_insite_metric_add(cf, NGX_INSITE_COUNTER,
                       "insite_gdpr_consent_allowed_total", NULL,
                       "Consent-gated requests with every consent granted.");
    mcf->denied = ngx_insite_metric_add(cf, NGX_INSITE_COUNTER,
                       "insite_gdpr_consent_denied_total", NULL,
                       "Requests refused with 403 consent_required.");
    mcf->anonymous = ngx_insite_metric_add(cf, NGX_INSITE_COUNTER,
                       "insite_gdpr_consent_anonymous_total", NULL,
                       "Consent-gated requests without a user.");
    mcf->failed = ngx_insite_metric_add(cf, NGX_INSITE_COUNTER,
                       "insite_gdpr_consent_unavailable_total", NULL,
                       "Consent lookups that failed (Redis down or slow); "
                       "served or 503 by insite_gdpr_consent_fail.");
    mcf->hits = ngx_insite_metric_add(cf, NGX_INSITE_COUNTER,
                       "insite_gdpr_consent_cache_hits_total", NULL,
                       "Consent decisions from the worker's cache.");
    mcf->misses = ngx_insite_metric_add(cf, NGX_INSITE_COUNTER,
                       "insite_gdpr_consent_cache_misses_total", NULL,
                       "Consent decisions that asked Redis.");

    if (mcf->allowed == NULL || mcf->denied == NULL
        || mcf->anonymous == NULL || mcf->failed == NULL
        || mcf->hits == NULL || mcf->misses == NULL)
    {
        return NGX_ERROR;
    }

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    /* precontent: after every access check, so $insite_user_id is set */
    h = ngx_array_push(&cmcf->phases[NGX_HTTP_PRECONTENT_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_insite_consent_handler;

    return NGX_OK;
}


static ngx_int_t
ngx_http_insite_consent_init_process(ngx_cycle_t *cycle)
{
    ngx_http_insite_consent_worker_t     *w;
    ngx_http_insite_consent_main_conf_t  *mcf;

    if (ngx_process != NGX_PROCESS_WORKER
        && ngx_process != NGX_PROCESS_SINGLE)
    {
        return NGX_OK;
    }

    mcf = ngx_http_cycle_get_module_main_conf(cycle,
                                        ngx_http_insite_gdpr_consent_module);
    if (mcf == NULL || !mcf->used) {
        return NGX_OK;
    }

    w = ngx_pcalloc(cycle->pool, sizeof(ngx_http_insite_consent_worker_t));
    if (w == NULL) {
        return NGX_ERROR;
    }

    w->conf = mcf;
    ngx_rbtree_init(&w->tree, &w->sentinel, ngx_rbtree_insert_value);
    ngx_queue_init(&w->lru);

    w->sub = ngx_insite_redis_create(cycle, ngx_insite_redis_shared_conf(cycle),
                                     "consent",
                                     ngx_insite_redis_shared_metrics(cycle));
    if (w->sub == NULL) {
        return NGX_ERROR;
    }

    ngx_insite_redis_on_message(w->sub, ngx_http_insite_consent_message, w);

    if (ngx_insite_redis_on_ready(w->sub, ngx_http_insite_consent_ready, w)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    ngx_http_insite_consent_worker = w;

    ngx_insite_redis_start(w->sub);

    return NGX_OK;
}


static void
ngx_http_insite_consent_exit_process(ngx_cycle_t *cycle)
{
    ngx_http_insite_consent_worker_t  *w = ngx_http_insite_consent_worker;

    if (w == NULL) {
        return;
    }

    if (w->sub) {
        ngx_insite_redis_destroy(w->sub);
        w->sub = NULL;
    }

    w->subscribed = 0;
    ngx_http_insite_consent_cache_flush();
    ngx_http_insite_consent_worker = NULL;
}
