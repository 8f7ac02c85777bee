/*
 * ngx_http_insite_module: the part of InsiteChart Edge every other insite
 * module stands on.
 *
 *   insite_redis ADDRESS [password=..] [db=N] [connect_timeout=1s]
 *                [command_timeout=200ms];          http
 *   insite_redis_cluster HOST:PORT [HOST:PORT ...] [password=..]
 *                [connect_timeout=1s] [command_timeout=200ms]
 *                [read_from=master|replica];       http (not with insite_redis)
 *   insite_metrics;                                location
 *   insite_healthz;                                location
 */

#include "ngx_insite_core.h"


typedef struct {
    ngx_http_request_t  *request;
    ngx_msec_t           start;
} ngx_http_insite_healthz_ctx_t;


static ngx_int_t ngx_http_insite_preconfiguration(ngx_conf_t *cf);
static void *ngx_http_insite_create_main_conf(ngx_conf_t *cf);
static char *ngx_http_insite_redis(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_insite_metrics(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_insite_healthz(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static ngx_int_t ngx_http_insite_init_process(ngx_cycle_t *cycle);
static void ngx_http_insite_exit_process(ngx_cycle_t *cycle);

static ngx_int_t ngx_http_insite_metrics_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_insite_healthz_handler(ngx_http_request_t *r);
static void ngx_http_insite_healthz_reply(ngx_insite_redis_status_e status,
    redisReply *reply, void *data);
static ngx_int_t ngx_http_insite_healthz_send(ngx_http_request_t *r,
    const char *state, const char *error, ngx_msec_int_t ping_ms);


static ngx_command_t  ngx_http_insite_commands[] = {

    { ngx_string("insite_redis"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ngx_http_insite_redis,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("insite_redis_cluster"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ngx_http_insite_redis,
      NGX_HTTP_MAIN_CONF_OFFSET,
      1,
      NULL },

    { ngx_string("insite_metrics"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_insite_metrics,
      0,
      0,
      NULL },

    { ngx_string("insite_healthz"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_insite_healthz,
      0,
      0,
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_insite_module_ctx = {
    ngx_http_insite_preconfiguration,      /* preconfiguration */
    NULL,                                  /* postconfiguration */

    ngx_http_insite_create_main_conf,      /* create main configuration */
    NULL,                                  /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    NULL,                                  /* create location configuration */
    NULL                                   /* merge location configuration */
};


ngx_module_t  ngx_http_insite_module = {
    NGX_MODULE_V1,
    &ngx_http_insite_module_ctx,           /* module context */
    ngx_http_insite_commands,              /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    ngx_http_insite_init_process,          /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_http_insite_exit_process,          /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static void *
ngx_http_insite_create_main_conf(ngx_conf_t *cf)
{
    return ngx_pcalloc(cf->pool, sizeof(ngx_http_insite_main_conf_t));
}


ngx_int_t
ngx_insite_cookie_identity_set(ngx_conf_t *cf)
{
    void                         **clcfp;
    ngx_http_insite_main_conf_t   *imcf;

    imcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_insite_module);

    if (imcf->cookie_identity == NULL) {
        imcf->cookie_identity = ngx_array_create(cf->pool, 4, sizeof(void *));
        if (imcf->cookie_identity == NULL) {
            return NGX_ERROR;
        }
    }

    clcfp = ngx_array_push(imcf->cookie_identity);
    if (clcfp == NULL) {
        return NGX_ERROR;
    }

    *clcfp = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    return NGX_OK;
}


ngx_uint_t
ngx_insite_cookie_identity(ngx_conf_t *cf, void *clcf)
{
    void                         **clcfp;
    ngx_uint_t                     i;
    ngx_http_insite_main_conf_t   *imcf;

    imcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_insite_module);

    if (imcf->cookie_identity == NULL) {
        return 0;
    }

    clcfp = imcf->cookie_identity->elts;

    for (i = 0; i < imcf->cookie_identity->nelts; i++) {
        if (clcfp[i] == clcf) {
            return 1;
        }
    }

    return 0;
}


/*
 * Runs before any directive of the http block is read, so every module can
 * register metrics from its directive handlers on.
 */

static ngx_int_t
ngx_http_insite_preconfiguration(ngx_conf_t *cf)
{
    ngx_http_insite_main_conf_t  *imcf;
    ngx_insite_redis_metrics_t   *m;

    if (ngx_insite_metrics_init_conf(cf) != NGX_OK) {
        return NGX_ERROR;
    }

    imcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_insite_module);
    m = &imcf->redis_metrics;

    m->connected = ngx_insite_metric_add(cf, NGX_INSITE_GAUGE,
        "insite_redis_connected", NULL,
        "Worker connections to Redis that are up (one per worker and role).");
    m->reconnects = ngx_insite_metric_add(cf, NGX_INSITE_COUNTER,
        "insite_redis_reconnects_total", NULL,
        "Times a Redis connection came back after a drop.");
    m->commands = ngx_insite_metric_add(cf, NGX_INSITE_COUNTER,
        "insite_redis_commands_total", NULL, "Redis commands sent.");
    m->timeouts = ngx_insite_metric_add(cf, NGX_INSITE_COUNTER,
        "insite_redis_command_timeouts_total", NULL,
        "Redis commands not answered within command_timeout.");
    m->lost = ngx_insite_metric_add(cf, NGX_INSITE_COUNTER,
        "insite_redis_commands_lost_total", NULL,
        "Redis commands failed because the connection dropped.");
    m->refused = ngx_insite_metric_add(cf, NGX_INSITE_COUNTER,
        "insite_redis_commands_refused_total", NULL,
        "Redis commands refused at once because Redis was not connected.");
    m->latency = ngx_insite_histogram_add(cf,
        "insite_redis_command_duration_seconds", NULL,
        "Time from sending a Redis command to its reply.", NULL, 0);

    if (m->connected == NULL || m->reconnects == NULL || m->commands == NULL
        || m->timeouts == NULL || m->lost == NULL || m->refused == NULL
        || m->latency == NULL)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


static char *
ngx_http_insite_redis(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_insite_main_conf_t *imcf = conf;

    ngx_str_t  *value;

    value = cf->args->elts;

    if (imcf->redis_conf) {
        if ((imcf->redis_conf->seeds != NULL) == (cmd->offset == 1)) {
            return "is duplicate";
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\": insite_redis and insite_redis_cluster "
                           "are mutually exclusive (one Redis, or one "
                           "cluster)", &value[0]);
        return NGX_CONF_ERROR;
    }

    imcf->redis_conf = ngx_pcalloc(cf->pool, sizeof(ngx_insite_redis_conf_t));
    if (imcf->redis_conf == NULL) {
        return NGX_CONF_ERROR;
    }

    /* cmd->offset: 1 for insite_redis_cluster */
    return cmd->offset == 1
           ? ngx_insite_redis_cluster_parse_conf(cf, imcf->redis_conf)
           : ngx_insite_redis_parse_conf(cf, imcf->redis_conf);
}


static char *
ngx_http_insite_metrics(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_insite_metrics_handler;

    return NGX_CONF_OK;
}


static char *
ngx_http_insite_healthz(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_insite_healthz_handler;

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_insite_init_process(ngx_cycle_t *cycle)
{
    ngx_http_insite_main_conf_t  *imcf;

    imcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_insite_module);
    if (imcf == NULL || imcf->redis_conf == NULL) {
        return NGX_OK;
    }

    imcf->redis = ngx_insite_redis_create(cycle, imcf->redis_conf, "commands",
                                          &imcf->redis_metrics);
    if (imcf->redis == NULL) {
        return NGX_ERROR;
    }

    ngx_insite_redis_start(imcf->redis);

    return NGX_OK;
}


static void
ngx_http_insite_exit_process(ngx_cycle_t *cycle)
{
    ngx_http_insite_main_conf_t  *imcf;

    imcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_insite_module);

    if (imcf && imcf->redis) {
        ngx_insite_redis_destroy(imcf->redis);
        imcf->redis = NULL;
    }
}


ngx_insite_redis_t *
ngx_insite_redis_shared(void)
{
    ngx_http_insite_main_conf_t  *imcf;

    imcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                               ngx_http_insite_module);

    return imcf ? imcf->redis : NULL;
}


ngx_insite_redis_conf_t *
ngx_insite_redis_shared_conf(ngx_cycle_t *cycle)
{
    ngx_http_insite_main_conf_t  *imcf;

    imcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_insite_module);

    return imcf ? imcf->redis_conf : NULL;
}


ngx_insite_redis_metrics_t *
ngx_insite_redis_shared_metrics(ngx_cycle_t *cycle)
{
    ngx_http_insite_main_conf_t  *imcf;

    imcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_insite_module);

    return imcf ? &imcf->redis_metrics : NULL;
}


/* insite_metrics */


static ngx_int_t
ngx_http_insite_metrics_handler(ngx_http_request_t *r)
{
    ngx_int_t     rc;
    ngx_chain_t  *out;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return NGX_HTTP_NOT_ALLOWED;
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    out = ngx_insite_metrics_render(r->pool);
    if (out == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_length_n = out->buf->last - out->buf->pos;
    ngx_str_set(&r->headers_out.content_type,
                "text/plain; version=0.0.4; charset=utf-8");
    r->headers_out.content_type_len = r->headers_out.content_type.len;

    if (r->method == NGX_HTTP_HEAD) {
        r->header_only = 1;
    }

    rc = ngx_http_send_header(r);
    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    return ngx_http_output_filter(r, out);
}


/*
 * insite_healthz: which insite modules this nginx has loaded, and whether
 * this worker reaches Redis, proven by a PING through the shared connection.
 */

static ngx_int_t
ngx_http_insite_healthz_handler(ngx_http_request_t *r)
{
    ngx_int_t                       rc;
    ngx_insite_redis_t             *rd;
    ngx_insite_redis_cmd_t         *cmd;
    ngx_http_insite_healthz_ctx_t  *ctx;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return NGX_HTTP_NOT_ALLOWED;
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    rd = ngx_insite_redis_shared();

    if (rd == NULL) {
        return ngx_http_insite_healthz_send(r, "not configured", NULL, -1);
    }

    if (rd->state != NGX_INSITE_REDIS_READY) {
        /* reachable but refused (wrong password, ...) is not "connected" */
        if (rd->refused_len) {
            ngx_str_t  why = { rd->refused_len, rd->refused };
            u_char    *e = ngx_pnalloc(r->pool, why.len + 1);

            if (e == NULL) {
                return NGX_HTTP_INTERNAL_SERVER_ERROR;
            }
            *ngx_cpymem(e, why.data, why.len) = '\0';

            return ngx_http_insite_healthz_send(r,
                             rd->auth_refused ? "auth_failed" : "refused",
                             (const char *) e, -1);
        }

        return ngx_http_insite_healthz_send(r,
                                         ngx_insite_redis_state_name(rd->state),
                                         NULL, -1);
    }

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_insite_healthz_ctx_t));
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->request = r;
    ctx->start = ngx_current_msec;

    cmd = ngx_insite_redis_command(rd, ngx_http_insite_healthz_reply, ctx,
                                   "PING");
    if (cmd == NULL) {
        return ngx_http_insite_healthz_send(r, "down", "cannot send PING", -1);
    }

    if (ngx_insite_redis_cancel_with_pool(cmd, r->pool) != NGX_OK) {
        ngx_insite_redis_cancel(cmd);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    r->main->count++;

    return NGX_DONE;
}


static void
ngx_http_insite_healthz_reply(ngx_insite_redis_status_e status,
    redisReply *reply, void *data)
{
    ngx_http_insite_healthz_ctx_t *ctx = data;

    ngx_int_t            rc;
    ngx_connection_t    *c;
    ngx_http_request_t  *r;

    r = ctx->request;
    c = r->connection;

    if (status != NGX_INSITE_REDIS_OK) {
        rc = ngx_http_insite_healthz_send(r, "down",
                                          ngx_insite_redis_status_name(status),
                                          -1);

    } else if (reply->type == REDIS_REPLY_ERROR) {
        rc = ngx_http_insite_healthz_send(r, "error", reply->str, -1);

    } else {
        rc = ngx_http_insite_healthz_send(r, "connected", NULL,
                                          ngx_current_msec - ctx->start);
    }

    ngx_http_finalize_request(r, rc);
    ngx_http_run_posted_requests(c);
}


static ngx_int_t
ngx_http_insite_healthz_send(ngx_http_request_t *r, const char *state,
    const char *error, ngx_msec_int_t ping_ms)
{
    size_t                        len;
    ngx_str_t                     s;
    ngx_buf_t                    *b;
    ngx_uint_t                    i, k, n, nchecks, healthy;
    const char                  **states;
    ngx_module_t                **modules;
    ngx_insite_health_t          *checks;
    ngx_http_insite_main_conf_t  *imcf;

    static const char  *names[] = {
        "ngx_http_insite_module", "ngx_http_insite_ws_module",
        "ngx_http_insite_gateway_module", "ngx_http_insite_gdpr_module"
    };

    modules = ngx_cycle->modules;

    len = sizeof("{\"status\":\"degraded\",\"version\":\"" NGX_INSITE_VERSION
                 "\",\"pid\":,\"modules\":[],\"redis\":{\"configured\":false,"
                 "\"state\":,\"ping_ms\":,\"error\":}}\n")
          + NGX_INT64_LEN * 2 + ngx_strlen(state) * 2 + 2;

    if (error) {
        len += ngx_strlen(error) * 6 + 2;
    }

    for (i = 0; modules[i]; i++) {
        len += ngx_strlen(modules[i]->name) + 3;
    }

    /* Redis, when configured, counts only when connected and answering */
    healthy = (ngx_insite_redis_shared() == NULL || ping_ms >= 0);

    imcf = ngx_http_get_module_main_conf(r, ngx_http_insite_module);
    checks = imcf->health ? imcf->health->elts : NULL;
    nchecks = imcf->health ? imcf->health->nelts : 0;

    states = ngx_pcalloc(r->pool, (nchecks + 1) * sizeof(const char *));
    if (states == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    for (i = 0; i < nchecks; i++) {
        states[i] = "unknown";
        if (checks[i].check((ngx_cycle_t *) ngx_cycle, checks[i].data,
                            &states[i])
            != NGX_OK)
        {
            healthy = 0;
        }
        len += ngx_strlen(checks[i].name) + ngx_strlen(states[i]) + 8;
    }

    b = ngx_create_temp_buf(r->pool, len);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->last = ngx_sprintf(b->last,
                          "{\"status\":\"%s\",\"version\":\"%s\","
                          "\"pid\":%P,\"modules\":[",
                          healthy ? "ok" : "degraded", NGX_INSITE_VERSION,
                          ngx_pid);

    /*
     * In a fixed order: the order of ngx_cycle->modules depends on how the
     * modules were built (filters are placed before the copy filter when
     * loaded, after the header filter when linked in).
     */
    for (k = 0, n = 0; k < sizeof(names) / sizeof(names[0]); k++) {
        for (i = 0; modules[i]; i++) {
            if (ngx_strcmp(modules[i]->name, names[k]) == 0) {
                b->last = ngx_sprintf(b->last, "%s\"%s\"", n++ ? "," : "",
                                      names[k]);
                break;
            }
        }
    }

    b->last = ngx_sprintf(b->last, "],\"redis\":{\"configured\":%s,",
                          ngx_insite_redis_shared() ? "true" : "false");

    s.data = (u_char *) state;
    s.len = ngx_strlen(state);
    b->last = ngx_cpymem(b->last, "\"state\":", sizeof("\"state\":") - 1);
    b->last = ngx_insite_json_str(b->last, &s);

    if (ping_ms >= 0) {
        b->last = ngx_sprintf(b->last, ",\"ping_ms\":%M", ping_ms);
    }

    if (error) {
        s.data = (u_char *) error;
        s.len = ngx_strlen(error);
        b->last = ngx_cpymem(b->last, ",\"error\":", sizeof(",\"error\":") - 1);
        b->last = ngx_insite_json_str(b->last, &s);
    }

    b->last = ngx_cpymem(b->last, "}", 1);

    for (i = 0; i < nchecks; i++) {
        b->last = ngx_sprintf(b->last, ",\"%s\":\"%s\"", checks[i].name,
                              states[i]);
    }

    b->last = ngx_cpymem(b->last, "}\n", 2);

    return ngx_insite_json_send(r, healthy ? NGX_HTTP_OK
                                           : NGX_HTTP_SERVICE_UNAVAILABLE, b);
}


ngx_int_t
ngx_insite_health_add(ngx_conf_t *cf, const char *name,
    ngx_insite_health_pt check, void *data)
{
    ngx_insite_health_t          *h;
    ngx_http_insite_main_conf_t  *imcf;

    imcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_insite_module);

    if (imcf->health == NULL) {
        imcf->health = ngx_array_create(cf->pool, 2,
                                        sizeof(ngx_insite_health_t));
        if (imcf->health == NULL) {
            return NGX_ERROR;
        }
    }

    h = ngx_array_push(imcf->health);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->name = name;
    h->check = check;
    h->data = data;

    return NGX_OK;
}
