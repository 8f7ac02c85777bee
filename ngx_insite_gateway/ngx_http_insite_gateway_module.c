/*
 * ngx_http_insite_gateway_module: what an API gateway adds around nginx's
 * own routing (location + proxy_pass): JWT auth, rate limiting, a circuit
 * breaker per service, request ids and one JSON error shape.
 *
 *   insite_gateway_jwt on|optional|off;
 *   insite_gateway_jwt_secret "<value>";  insite_gateway_jwt_secret_file path;
 *   insite_gateway_jwt_leeway 30s;
 *   insite_gateway_jwt_claims [iss=...] [aud=...];
 *   insite_gateway_jwt_cookie name;
 *   insite_gateway_jwt_query_token on|off;
 *   insite_gateway_service NAME;
 *   insite_gateway_breaker failures=5 [ratio=0.5 min_requests=20] window=30s
 *                          recovery=60s half_open=3 [fail_on=...] | off;
 *   insite_gateway_rate_zone NAME 10m;
 *   insite_gateway_rate_limit zone=NAME key=... rate=100r/m burst=20
 *                             [backend=local|redis] [fail=open|closed] | off;
 *   insite_gateway_rate_headers draft|legacy|both|off;
 *   insite_gateway_request_id on|off;
 *
 * One access-phase handler runs, in this order: request id, JWT (so that
 * the limit can key on $insite_user_id), rate limit, breaker (last, so a
 * refused request never takes a half-open probe slot).  A Redis-backed
 * limit suspends the phase (NGX_DONE) and the reply resumes it, as
 * ngx_http_auth_request_module does with its subrequest.  Outcomes for the
 * breaker and the metrics are taken in the log phase.
 *
 * Loaded after ngx_http_insite_module, whose Redis adapter and metrics
 * registry it uses.
 */

#include "ngx_insite_gateway.h"
#include "insite_lua.h"


static ngx_int_t ngx_http_insite_gw_preconfiguration(ngx_conf_t *cf);
static ngx_int_t ngx_http_insite_gw_postconfiguration(ngx_conf_t *cf);
static void *ngx_http_insite_gw_create_main_conf(ngx_conf_t *cf);
static void *ngx_http_insite_gw_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_insite_gw_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);

static char *ngx_http_insite_gw_secret(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_insite_gw_secret_file(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_http_insite_gw_claims(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_insite_gw_leeway(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_insite_gw_service(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_insite_gw_breaker(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_insite_gw_rate_zone(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_insite_gw_rate_limit(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);

static ngx_int_t ngx_http_insite_gw_access_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_insite_gw_refuse(ngx_http_request_t *r,
    ngx_insite_gw_ctx_t *ctx, ngx_uint_t status, const char *code,
    const char *message, time_t retry_after);
static ngx_int_t ngx_http_insite_gw_jwt(ngx_http_request_t *r,
    ngx_insite_gw_loc_conf_t *lcf, ngx_insite_gw_ctx_t *ctx);
static ngx_int_t ngx_http_insite_gw_limit(ngx_http_request_t *r,
    ngx_insite_gw_loc_conf_t *lcf, ngx_insite_gw_ctx_t *ctx);
static ngx_int_t ngx_http_insite_gw_limit_decided(ngx_http_request_t *r,
    ngx_insite_gw_loc_conf_t *lcf, ngx_insite_gw_ctx_t *ctx);
static ngx_int_t ngx_http_insite_gw_limit_failed(ngx_http_request_t *r,
    ngx_insite_gw_loc_conf_t *lcf, ngx_insite_gw_ctx_t *ctx,
    const char *why);
static void ngx_http_insite_gw_redis_reply(ngx_insite_redis_status_e status,
    redisReply *reply, void *data);
static ngx_int_t ngx_http_insite_gw_log_handler(ngx_http_request_t *r);

static ngx_int_t ngx_http_insite_gw_user_id_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_insite_gw_request_id_variable(
    ngx_http_request_t *r, ngx_http_variable_value_t *v, uintptr_t data);

static ngx_int_t ngx_http_insite_gw_header_filter(ngx_http_request_t *r);
static ngx_int_t ngx_http_insite_gw_body_filter(ngx_http_request_t *r,
    ngx_chain_t *in);


static ngx_http_output_header_filter_pt  ngx_http_next_header_filter;
static ngx_http_output_body_filter_pt    ngx_http_next_body_filter;


static ngx_conf_enum_t  ngx_http_insite_gw_jwt_modes[] = {
    { ngx_string("off"), NGX_INSITE_GW_JWT_OFF },
    { ngx_string("on"), NGX_INSITE_GW_JWT_ON },
    { ngx_string("optional"), NGX_INSITE_GW_JWT_OPTIONAL },
    { ngx_null_string, 0 }
};


static ngx_conf_enum_t  ngx_http_insite_gw_rate_headers_modes[] = {
    { ngx_string("off"), NGX_INSITE_GW_RH_OFF },
    { ngx_string("draft"), NGX_INSITE_GW_RH_DRAFT },
    { ngx_string("legacy"), NGX_INSITE_GW_RH_LEGACY },
    { ngx_string("both"), NGX_INSITE_GW_RH_BOTH },
    { ngx_null_string, 0 }
};


#define NGX_HTTP_INSITE_GW_CONF                                               \
    (NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF)


static ngx_command_t  ngx_http_insite_gw_commands[] = {

    { ngx_string("insite_gateway_jwt"),
      NGX_HTTP_INSITE_GW_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_enum_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_insite_gw_loc_conf_t, jwt),
      &ngx_http_insite_gw_jwt_modes },

    { ngx_string("insite_gateway_jwt_secret"),
      NGX_HTTP_INSITE_GW_CONF|NGX_CONF_TAKE1,
      ngx_http_insite_gw_secret,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("insite_gateway_jwt_secret_file"),
      NGX_HTTP_INSITE_GW_CONF|NGX_CONF_TAKE1,
      ngx_http_insite_gw_secret_file,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("insite_gateway_jwt_leeway"),
      NGX_HTTP_INSITE_GW_CONF|NGX_CONF_TAKE1,
      ngx_http_insite_gw_leeway,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_insite_gw_loc_conf_t, jwt_conf.leeway),
      NULL },

    { ngx_string("insite_gateway_jwt_claims"),
      NGX_HTTP_INSITE_GW_CONF|NGX_CONF_1MORE,
      ngx_http_insite_gw_claims,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("insite_gateway_jwt_cookie"),
      NGX_HTTP_INSITE_GW_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_insite_gw_loc_conf_t, jwt_cookie),
      NULL },

    /* public keys, claims: ngx_insite_gateway_jwk.c */

    { ngx_string("insite_gateway_jwt_jwks"),
      NGX_HTTP_INSITE_GW_CONF|NGX_CONF_TAKE1,
      ngx_insite_gw_jwks_file_cmd,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("insite_gateway_jwt_jwks_location"),
      NGX_HTTP_INSITE_GW_CONF|NGX_CONF_1MORE,
      ngx_insite_gw_jwks_location_cmd,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("insite_gateway_jwt_require"),
      NGX_HTTP_INSITE_GW_CONF|NGX_CONF_2MORE,
      ngx_insite_gw_jwt_require_cmd,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("insite_gateway_jwt_query_token"),
      NGX_HTTP_INSITE_GW_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_insite_gw_loc_conf_t, jwt_query_token),
      NULL },

    { ngx_string("insite_gateway_service"),
      NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_insite_gw_service,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("insite_gateway_breaker"),
      NGX_HTTP_INSITE_GW_CONF|NGX_CONF_1MORE,
      ngx_http_insite_gw_breaker,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("insite_gateway_rate_zone"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE2,
      ngx_http_insite_gw_rate_zone,
      0,
      0,
      NULL },

    { ngx_string("insite_gateway_rate_limit"),
      NGX_HTTP_INSITE_GW_CONF|NGX_CONF_1MORE,
      ngx_http_insite_gw_rate_limit,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("insite_gateway_rate_headers"),
      NGX_HTTP_INSITE_GW_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_enum_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_insite_gw_loc_conf_t, rate_headers),
      &ngx_http_insite_gw_rate_headers_modes },

    { ngx_string("insite_gateway_request_id"),
      NGX_HTTP_INSITE_GW_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_insite_gw_loc_conf_t, request_id_conf),
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_insite_gateway_module_ctx = {
    ngx_http_insite_gw_preconfiguration,   /* preconfiguration */
    ngx_http_insite_gw_postconfiguration,  /* postconfiguration */

    ngx_http_insite_gw_create_main_conf,   /* create main configuration */
    NULL,                                  /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_insite_gw_create_loc_conf,    /* create location configuration */
    ngx_http_insite_gw_merge_loc_conf      /* merge location configuration */
};


ngx_module_t  ngx_http_insite_gateway_module = {
    NGX_MODULE_V1,
    &ngx_http_insite_gateway_module_ctx,   /* module context */
    ngx_http_insite_gw_commands,           /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    NULL,                                  /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    NULL,                                  /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static ngx_http_variable_t  ngx_http_insite_gw_vars[] = {

    { ngx_string("insite_user_id"), NULL,
      ngx_http_insite_gw_user_id_variable, 0,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("insite_request_id"), NULL,
      ngx_http_insite_gw_request_id_variable, 0,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("insite_jwt_claim_"), NULL,
      ngx_insite_gw_jwt_claim_variable, 0,
      NGX_HTTP_VAR_PREFIX|NGX_HTTP_VAR_NOCACHEABLE, 0 },

      ngx_http_null_variable
};


static const char  *ngx_http_insite_gw_classes[] = {
    "1xx", "2xx", "3xx", "4xx", "5xx", "other"
};


/* configuration */


static ngx_int_t
ngx_http_insite_gw_preconfiguration(ngx_conf_t *cf)
{
    ngx_http_variable_t  *var, *v;

    for (v = ngx_http_insite_gw_vars; v->name.len; v++) {
        var = ngx_http_add_variable(cf, &v->name, v->flags);
        if (var == NULL) {
            return NGX_ERROR;
        }

        var->get_handler = v->get_handler;
        var->data = v->data;
    }

    return NGX_OK;
}


static void *
ngx_http_insite_gw_create_main_conf(ngx_conf_t *cf)
{
    ngx_insite_gw_main_conf_t  *gmcf;

    gmcf = ngx_pcalloc(cf->pool, sizeof(ngx_insite_gw_main_conf_t));
    if (gmcf == NULL) {
        return NULL;
    }

    if (ngx_array_init(&gmcf->services, cf->pool, 4,
                       sizeof(ngx_insite_gw_service_t *))
        != NGX_OK)
    {
        return NULL;
    }

    if (ngx_array_init(&gmcf->breakers, cf->pool, 4,
                       sizeof(ngx_insite_gw_breaker_conf_t *))
        != NGX_OK)
    {
        return NULL;
    }

    return gmcf;
}


static void *
ngx_http_insite_gw_create_loc_conf(ngx_conf_t *cf)
{
    ngx_insite_gw_loc_conf_t  *conf;

    conf = ngx_pcalloc(cf->pool, sizeof(ngx_insite_gw_loc_conf_t));
    if (conf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     conf->jwt_conf.secret = { 0, NULL };
     *     conf->jwt_conf.iss = { 0, NULL };
     *     conf->jwt_conf.aud = { 0, NULL };
     *     conf->jwt_cookie = { 0, NULL };
     *     conf->claims_set = 0;
     */

    conf->request_id_conf = NGX_CONF_UNSET;
    conf->jwt = NGX_CONF_UNSET_UINT;
    conf->jwt_conf.leeway = NGX_CONF_UNSET;
    conf->jwt_query_token = NGX_CONF_UNSET;
    conf->service = NGX_CONF_UNSET_PTR;
    conf->breaker = NGX_CONF_UNSET_PTR;
    conf->limit = NGX_CONF_UNSET_PTR;
    conf->rate_headers = NGX_CONF_UNSET_UINT;

    return conf;
}


static char *
ngx_http_insite_gw_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_insite_gw_loc_conf_t *prev = parent;
    ngx_insite_gw_loc_conf_t *conf = child;

    u_char      *p;
    ngx_str_t    labels, prefix;
    ngx_uint_t   i;

    ngx_conf_merge_uint_value(conf->jwt, prev->jwt, NGX_INSITE_GW_JWT_OFF);
    ngx_conf_merge_str_value(conf->jwt_conf.secret, prev->jwt_conf.secret, "");
    ngx_conf_merge_sec_value(conf->jwt_conf.leeway, prev->jwt_conf.leeway, 0);
    ngx_conf_merge_str_value(conf->jwt_cookie, prev->jwt_cookie, "");
    ngx_conf_merge_value(conf->jwt_query_token, prev->jwt_query_token, 0);

    /* tell the others (ngx_insite_core.h): the WebSocket module requires an
       Origin allow-list where a cookie names the user */
    if (conf->jwt != NGX_INSITE_GW_JWT_OFF && conf->jwt_cookie.len
        && ngx_insite_cookie_identity_set(cf) != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    if (!conf->claims_set) {
        conf->claims_set = prev->claims_set;
        conf->jwt_conf.iss = prev->jwt_conf.iss;
        conf->jwt_conf.aud = prev->jwt_conf.aud;
    }

    if (conf->jwt_secret_file.len == 0) {
        conf->jwt_secret_file = prev->jwt_secret_file;
    }

    ngx_conf_merge_ptr_value(conf->service, prev->service, NULL);
    ngx_conf_merge_ptr_value(conf->breaker, prev->breaker, NULL);
    ngx_conf_merge_ptr_value(conf->limit, prev->limit, NULL);
    ngx_conf_merge_uint_value(conf->rate_headers, prev->rate_headers,
                              NGX_INSITE_GW_RH_BOTH);

    if (conf->request_id_conf == NGX_CONF_UNSET) {
        conf->request_id_conf = prev->request_id_conf;
    }

    if (ngx_insite_gw_jwk_merge(cf, prev, conf) != NGX_CONF_OK) {
        return NGX_CONF_ERROR;
    }

    /* a breaker no location pairs with a service is an error (postconf) */
    if (conf->breaker && conf->service) {
        conf->breaker->used = 1;
    }

    if (conf->jwt != NGX_INSITE_GW_JWT_OFF && conf->jwt_conf.secret.len == 0
        && conf->jwt_conf.jwks == NULL)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "insite_gateway_jwt needs "
                           "insite_gateway_jwt_secret or "
                           "insite_gateway_jwt_secret_file (HS256), or "
                           "insite_gateway_jwt_jwks or "
                           "insite_gateway_jwt_jwks_location");
        return NGX_CONF_ERROR;
    }

    /* request ids by default wherever the gateway does anything */
    conf->active = (conf->jwt != NGX_INSITE_GW_JWT_OFF || conf->service
                    || conf->limit);

    if (conf->request_id_conf == NGX_CONF_UNSET) {
        conf->request_id = conf->active;

    } else {
        conf->request_id = conf->request_id_conf;
    }

    conf->active |= conf->request_id;

    /* this location's metrics, labelled with its service */

    prefix.len = 0;
    prefix.data = NULL;

    if (conf->service) {
        prefix.data = ngx_pnalloc(cf->pool, conf->service->name.len + 16);
        if (prefix.data == NULL) {
            return NGX_CONF_ERROR;
        }

        prefix.len = ngx_sprintf(prefix.data, "service=\"%V\",",
                                 &conf->service->name) - prefix.data;
    }

    if (conf->jwt != NGX_INSITE_GW_JWT_OFF) {
        for (i = 1; i < NGX_INSITE_GW_JWT_NREASONS; i++) {
            p = ngx_pnalloc(cf->pool, prefix.len + 32);
            if (p == NULL) {
                return NGX_CONF_ERROR;
            }

            labels.data = p;
            labels.len = ngx_sprintf(p, "%Vreason=\"%s\"", &prefix,
                                     ngx_insite_gw_jwt_reasons[i]) - p;

            conf->auth_failures[i] = ngx_insite_metric_add(cf,
                NGX_INSITE_COUNTER, "insite_gateway_auth_failures_total",
                &labels, "Requests refused by JWT authentication, by reason.");
            if (conf->auth_failures[i] == NULL) {
                return NGX_CONF_ERROR;
            }
        }
    }

    if (conf->limit) {
        p = ngx_pnalloc(cf->pool, prefix.len + conf->limit->zone_name.len
                                  + 48);
        if (p == NULL) {
            return NGX_CONF_ERROR;
        }

        labels.data = p;

        labels.len = ngx_sprintf(p, "%Vzone=\"%V\",result=\"allowed\"",
                                 &prefix, &conf->limit->zone_name) - p;
        conf->limit_allowed = ngx_insite_metric_add(cf, NGX_INSITE_COUNTER,
            "insite_gateway_rate_limit_total", &labels,
            "Rate limit decisions: allowed, refused, or backend error.");

        labels.len = ngx_sprintf(p, "%Vzone=\"%V\",result=\"refused\"",
                                 &prefix, &conf->limit->zone_name) - p;
        conf->limit_refused = ngx_insite_metric_add(cf, NGX_INSITE_COUNTER,
            "insite_gateway_rate_limit_total", &labels,
            "Rate limit decisions: allowed, refused, or backend error.");

        labels.len = ngx_sprintf(p, "%Vzone=\"%V\",result=\"error\"",
                                 &prefix, &conf->limit->zone_name) - p;
        conf->limit_errors = ngx_insite_metric_add(cf, NGX_INSITE_COUNTER,
            "insite_gateway_rate_limit_total", &labels,
            "Rate limit decisions: allowed, refused, or backend error.");

        if (conf->limit_allowed == NULL || conf->limit_refused == NULL
            || conf->limit_errors == NULL)
        {
            return NGX_CONF_ERROR;
        }
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_insite_gw_secret(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_insite_gw_loc_conf_t *lcf = conf;

    ngx_str_t  *value;

    if (lcf->jwt_conf.secret.data) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (value[1].len == 0) {
        return "is empty";
    }

    lcf->jwt_conf.secret = value[1];

    return NGX_CONF_OK;
}


static char *
ngx_http_insite_gw_secret_file(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_insite_gw_loc_conf_t *lcf = conf;

    ngx_str_t  *value, path;

    if (lcf->jwt_conf.secret.data) {
        return "is duplicate";
    }

    value = cf->args->elts;
    path = value[1];
    lcf->jwt_secret_file = value[1];

    return ngx_insite_gw_jwt_secret_file(cf, &path, &lcf->jwt_conf.secret);
}


static char *
ngx_http_insite_gw_claims(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_insite_gw_loc_conf_t *lcf = conf;

    ngx_str_t   *value;
    ngx_uint_t   i;

    if (lcf->claims_set) {
        return "is duplicate";
    }

    lcf->claims_set = 1;
    value = cf->args->elts;

    for (i = 1; i < cf->args->nelts; i++) {

        if (value[i].len > 4 && ngx_strncmp(value[i].data, "iss=", 4) == 0) {
            lcf->jwt_conf.iss.data = value[i].data + 4;
            lcf->jwt_conf.iss.len = value[i].len - 4;
            continue;
        }

        if (value[i].len > 4 && ngx_strncmp(value[i].data, "aud=", 4) == 0) {
            lcf->jwt_conf.aud.data = value[i].data + 4;
            lcf->jwt_conf.aud.len = value[i].len - 4;
            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "insite_gateway_jwt_claims: invalid parameter "
                           "\"%V\"", &value[i]);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/* clock skew: a token an hour past its exp is not "skew" */

static char *
ngx_http_insite_gw_leeway(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_insite_gw_loc_conf_t *lcf = conf;

    ngx_str_t  *value;

    if (lcf->jwt_conf.leeway != NGX_CONF_UNSET) {
        return "is duplicate";
    }

    value = cf->args->elts;

    return ngx_insite_conf_sec(cf, "insite_gateway_jwt_leeway", &value[1],
                               &value[1], 0, 3600, &lcf->jwt_conf.leeway);
}


/*
 * insite_gateway_service NAME: one service object per name for the whole
 * configuration, so that every location naming it shares its breaker and
 * metrics.
 */

static char *
ngx_http_insite_gw_service(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_insite_gw_loc_conf_t *lcf = conf;

    u_char                      *p;
    ngx_str_t                   *value, labels;
    ngx_uint_t                   i;
    ngx_insite_gw_service_t    **svcs, *svc;
    ngx_insite_gw_main_conf_t   *gmcf;

    static const char  *to[] = { "closed", "open", "half_open" };

    if (lcf->service != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (value[1].len == 0 || value[1].len > 64) {
        return "needs a name of 1 to 64 characters";
    }

    for (i = 0; i < value[1].len; i++) {
        if (value[1].data[i] == '"' || value[1].data[i] == '\\'
            || value[1].data[i] < 0x20)
        {
            return "has an invalid name";
        }
    }

    gmcf = ngx_http_conf_get_module_main_conf(cf,
                                              ngx_http_insite_gateway_module);
    svcs = gmcf->services.elts;

    for (i = 0; i < gmcf->services.nelts; i++) {
        if (svcs[i]->name.len == value[1].len
            && ngx_strncmp(svcs[i]->name.data, value[1].data, value[1].len)
               == 0)
        {
            lcf->service = svcs[i];
            return NGX_CONF_OK;
        }
    }

    svc = ngx_pcalloc(cf->pool, sizeof(ngx_insite_gw_service_t));
    if (svc == NULL) {
        return NGX_CONF_ERROR;
    }

    svc->name = value[1];

    p = ngx_pnalloc(cf->pool, value[1].len + 64);
    if (p == NULL) {
        return NGX_CONF_ERROR;
    }

    labels.data = p;

    for (i = 0; i < 6; i++) {
        labels.len = ngx_sprintf(p, "service=\"%V\",class=\"%s\"", &svc->name,
                                 ngx_http_insite_gw_classes[i]) - p;
        svc->classes[i] = ngx_insite_metric_add(cf, NGX_INSITE_COUNTER,
            "insite_gateway_requests_total", &labels,
            "Requests to a service's locations, by response status class.");
        if (svc->classes[i] == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    for (i = 0; i < 3; i++) {
        labels.len = ngx_sprintf(p, "service=\"%V\",to=\"%s\"", &svc->name,
                                 to[i]) - p;
        svc->transitions[i] = ngx_insite_metric_add(cf, NGX_INSITE_COUNTER,
            "insite_gateway_breaker_transitions_total", &labels,
            "Circuit breaker transitions, by the state entered.");
        if (svc->transitions[i] == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    labels.len = ngx_sprintf(p, "service=\"%V\"", &svc->name) - p;

    svc->latency = ngx_insite_histogram_add(cf,
        "insite_gateway_request_duration_seconds", &labels,
        "Time from the request's first byte to the log phase.", NULL, 0);
    svc->state = ngx_insite_metric_add(cf, NGX_INSITE_GAUGE,
        "insite_gateway_breaker_state", &labels,
        "Circuit breaker state: 0 closed, 1 open, 2 half-open.");
    svc->rejected = ngx_insite_metric_add(cf, NGX_INSITE_COUNTER,
        "insite_gateway_breaker_rejected_total", &labels,
        "Requests answered 503 by an open circuit breaker.");

    if (svc->latency == NULL || svc->state == NULL || svc->rejected == NULL) {
        return NGX_CONF_ERROR;
    }

    svcs = ngx_array_push(&gmcf->services);
    if (svcs == NULL) {
        return NGX_CONF_ERROR;
    }

    *svcs = svc;
    lcf->service = svc;

    return NGX_CONF_OK;
}


static char *
ngx_http_insite_gw_breaker(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_insite_gw_loc_conf_t *lcf = conf;

    ngx_str_t                      *value;
    ngx_insite_gw_main_conf_t      *gmcf;
    ngx_insite_gw_breaker_conf_t  **bcp;

    if (lcf->breaker != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (cf->args->nelts == 2 && ngx_strcmp(value[1].data, "off") == 0) {
        lcf->breaker = NULL;
        return NGX_CONF_OK;
    }

    lcf->breaker = ngx_pcalloc(cf->pool, sizeof(ngx_insite_gw_breaker_conf_t));
    if (lcf->breaker == NULL) {
        return NGX_CONF_ERROR;
    }

    lcf->breaker->file = cf->conf_file->file.name.data;
    lcf->breaker->line = cf->conf_file->line;

    gmcf = ngx_http_conf_get_module_main_conf(cf,
                                              ngx_http_insite_gateway_module);

    bcp = ngx_array_push(&gmcf->breakers);
    if (bcp == NULL) {
        return NGX_CONF_ERROR;
    }

    *bcp = lcf->breaker;

    return ngx_insite_gw_breaker_parse(cf, lcf->breaker);
}


/* a zone smaller than 8 pages holds hardly any key (docs: "Sizing") */

static char *
ngx_http_insite_gw_rate_zone(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    size_t      size;
    ngx_str_t  *value;

    value = cf->args->elts;

    if (ngx_insite_conf_size(cf, "insite_gateway_rate_zone", &value[2],
                             &value[2], ngx_max(32768, 8 * ngx_pagesize),
                             1024 * 1024 * 1024, &size)
        != NGX_CONF_OK)
    {
        return NGX_CONF_ERROR;
    }

    return ngx_insite_gw_limit_zone(cf, &value[1], size);
}


static char *
ngx_http_insite_gw_rate_limit(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_insite_gw_loc_conf_t *lcf = conf;

    char                       *rv;
    ngx_str_t                  *value;
    ngx_insite_gw_main_conf_t  *gmcf;

    if (lcf->limit != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (cf->args->nelts == 2 && ngx_strcmp(value[1].data, "off") == 0) {
        lcf->limit = NULL;
        return NGX_CONF_OK;
    }

    lcf->limit = ngx_pcalloc(cf->pool, sizeof(ngx_insite_gw_limit_t));
    if (lcf->limit == NULL) {
        return NGX_CONF_ERROR;
    }

    rv = ngx_insite_gw_limit_parse(cf, lcf->limit);
    if (rv != NGX_CONF_OK) {
        return rv;
    }

    if (lcf->limit->backend == NGX_INSITE_GW_REDIS) {
        gmcf = ngx_http_conf_get_module_main_conf(cf,
                                               ngx_http_insite_gateway_module);
        gmcf->redis_limits++;
    }

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_insite_gw_postconfiguration(ngx_conf_t *cf)
{
    ngx_uint_t                     i;
    ngx_http_handler_pt           *h;
    ngx_insite_gw_breaker_conf_t  **bcp;
    ngx_http_core_main_conf_t    *cmcf;
    ngx_http_insite_main_conf_t  *imcf;
    ngx_insite_gw_main_conf_t    *gmcf;

    gmcf = ngx_http_conf_get_module_main_conf(cf,
                                              ngx_http_insite_gateway_module);

    /* every location is merged by now */
    bcp = gmcf->breakers.elts;

    for (i = 0; i < gmcf->breakers.nelts; i++) {
        if (!bcp[i]->used) {
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "insite_gateway_breaker in %s:%ui applies to no "
                          "service: no insite_gateway_service in its scope",
                          bcp[i]->file, bcp[i]->line);
            return NGX_ERROR;
        }
    }

    if (gmcf->services.nelts) {
        gmcf->breaker_zone = ngx_insite_gw_breaker_zone(cf, gmcf);
        if (gmcf->breaker_zone == NULL) {
            return NGX_ERROR;
        }
    }

    if (gmcf->redis_limits) {
        imcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_insite_module);

        if (imcf == NULL || imcf->redis_conf == NULL) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "insite_gateway_rate_limit backend=redis "
                               "needs insite_redis");
            return NGX_ERROR;
        }

        gmcf->script = ngx_insite_redis_script_add(cf, imcf->redis_conf,
                                                   "rate_limit",
                                                   INSITE_LUA_RATE_LIMIT);
        if (gmcf->script == NULL) {
            return NGX_ERROR;
        }
    }

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_ACCESS_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_insite_gw_access_handler;

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_LOG_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_insite_gw_log_handler;

    ngx_http_next_header_filter = ngx_http_top_header_filter;
    ngx_http_top_header_filter = ngx_http_insite_gw_header_filter;

    ngx_http_next_body_filter = ngx_http_top_body_filter;
    ngx_http_top_body_filter = ngx_http_insite_gw_body_filter;

    return NGX_OK;
}


/* the access phase */


static ngx_int_t
ngx_http_insite_gw_access_handler(ngx_http_request_t *r)
{
    ngx_int_t                  rc;
    time_t                     retry_after;
    u_char                     msg[128];
    ngx_insite_gw_ctx_t       *ctx;
    ngx_insite_gw_loc_conf_t  *lcf;

    lcf = ngx_http_get_module_loc_conf(r, ngx_http_insite_gateway_module);

    if (!lcf->active) {
        return NGX_DECLINED;
    }

    ctx = ngx_insite_gw_get_ctx(r);
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ctx->waiting) {
        /* a spurious write event while Redis is deciding */
        return NGX_AGAIN;
    }

    if (lcf->request_id
        && ngx_insite_gw_request_id_upstream(r, ctx) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (lcf->jwt != NGX_INSITE_GW_JWT_OFF && !ctx->jwt_done) {
        ctx->jwt_done = 1;

        rc = ngx_http_insite_gw_jwt(r, lcf, ctx);
        if (rc != NGX_DECLINED) {
            return rc;
        }
    }

    if (lcf->limit && !ctx->limit_done) {
        rc = ngx_http_insite_gw_limit(r, lcf, ctx);
        if (rc != NGX_DECLINED) {
            return rc;
        }
    }

    if (lcf->service && lcf->breaker && ctx->service == NULL) {
        retry_after = 0;

        if (ngx_insite_gw_breaker_admit(r, ctx, lcf->service, lcf->breaker,
                                        &retry_after)
            != NGX_OK)
        {
            ngx_insite_metric_inc(lcf->service->rejected);

            ngx_sprintf(msg, "service \"%V\" is unavailable%Z",
                        &lcf->service->name);

            ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                          "insite gateway: service \"%V\" circuit breaker "
                          "open, refused, request_id: %V",
                          &lcf->service->name,
                          ngx_insite_gw_request_id(r, ctx));

            return ngx_http_insite_gw_refuse(r, ctx,
                                             NGX_HTTP_SERVICE_UNAVAILABLE,
                                             "service_unavailable",
                                             (char *) msg, retry_after);
        }
    }

    return NGX_DECLINED;
}


/*
 * Sends a gateway error from the access phase and ends the phases: the
 * response is complete, so no other access module may turn it into
 * something else (satisfy any included).
 */

static ngx_int_t
ngx_http_insite_gw_refuse(ngx_http_request_t *r, ngx_insite_gw_ctx_t *ctx,
    ngx_uint_t status, const char *code, const char *message,
    time_t retry_after)
{
    ngx_http_finalize_request(r, ngx_insite_gw_error(r, ctx, status, code,
                                                     message, retry_after));
    return NGX_DONE;
}


/* NGX_DECLINED: go on; anything else ends the access phase */

static ngx_int_t
ngx_http_insite_gw_jwt(ngx_http_request_t *r, ngx_insite_gw_loc_conf_t *lcf,
    ngx_insite_gw_ctx_t *ctx)
{
    ngx_str_t                   token, v;
    ngx_insite_gw_jwt_result_e  res;

    if (ngx_insite_gw_jwt_find(r, &lcf->jwt_cookie, lcf->jwt_query_token,
                               &token)
        != NGX_OK)
    {

        /* optional, unless a claim is required */
        if (lcf->jwt == NGX_INSITE_GW_JWT_OPTIONAL && lcf->jwt_require == NULL)
        {
            return NGX_DECLINED;
        }

        ngx_insite_metric_inc(lcf->auth_failures[NGX_INSITE_GW_JWT_MISSING]);

        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "insite gateway: no bearer token, request_id: %V",
                      ngx_insite_gw_request_id(r, ctx));

        ngx_str_set(&v, "Bearer");
        if (ngx_insite_gw_set_header(r, "WWW-Authenticate", &v) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return ngx_http_insite_gw_refuse(r, ctx, NGX_HTTP_UNAUTHORIZED,
                                         "unauthorized",
                                         "a bearer token is required", 0);
    }

    /*
     * A token from the query string is taken out of the request before
     * anything can log or proxy it; the token's bytes stay where they are
     * (the request buffer), only the strings that showed them change.
     */
    if (lcf->jwt_query_token
        && token.data >= r->args.data
        && token.data < r->args.data + r->args.len
        && ngx_insite_gw_strip_query_token(r) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    res = ngx_insite_gw_jwt_verify(r, &lcf->jwt_conf, &token, &ctx->user_id);

    if (res == NGX_INSITE_GW_JWT_OK) {
        return ngx_insite_gw_jwt_require(r, lcf, ctx);
    }

    if (res == NGX_INSITE_GW_JWT_AGAIN) {
        /* the key set is being fetched: the phase runs again after it */
        ctx->jwt_done = 0;
        return NGX_AGAIN;
    }

    ngx_insite_metric_inc(lcf->auth_failures[res]);

    if (res == NGX_INSITE_GW_JWT_UNAVAILABLE) {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "insite gateway: no JWKS key set, token refused, "
                      "request_id: %V", ngx_insite_gw_request_id(r, ctx));

        return ngx_http_insite_gw_refuse(r, ctx, NGX_HTTP_SERVICE_UNAVAILABLE,
                                         "service_unavailable",
                                         "the identity provider's keys are "
                                         "unavailable", 1);
    }

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "insite gateway: invalid token (%s), request_id: %V",
                  ngx_insite_gw_jwt_reasons[res],
                  ngx_insite_gw_request_id(r, ctx));

    ngx_str_set(&v, "Bearer error=\"invalid_token\"");
    if (ngx_insite_gw_set_header(r, "WWW-Authenticate", &v) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_insite_gw_refuse(r, ctx, NGX_HTTP_UNAUTHORIZED,
                                     "invalid_token",
                                     res == NGX_INSITE_GW_JWT_EXPIRED
                                     ? "the token has expired"
                                     : "the token is invalid", 0);
}


static ngx_int_t
ngx_http_insite_gw_limit(ngx_http_request_t *r, ngx_insite_gw_loc_conf_t *lcf,
    ngx_insite_gw_ctx_t *ctx)
{
    ngx_int_t                   rc;
    ngx_str_t                   key;
    ngx_insite_redis_cmd_t     *cmd;
    ngx_insite_gw_limit_t      *lim;
    ngx_insite_gw_main_conf_t  *gmcf;

    lim = lcf->limit;

    if (ngx_http_complex_value(r, &lim->key, &key) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* no key, no limit: as limit_req */
    if (key.len == 0) {
        ctx->limit_done = 1;
        return NGX_DECLINED;
    }

    /* local keys of any length are stored in one node size (hashed) */
    if (lim->backend == NGX_INSITE_GW_REDIS && key.len > 1024) {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "insite gateway: rate limit key of %uz bytes is too "
                      "long, not limited, request_id: %V",
                      key.len, ngx_insite_gw_request_id(r, ctx));
        ctx->limit_done = 1;
        return NGX_DECLINED;
    }

    if (lim->backend == NGX_INSITE_GW_LOCAL) {
        rc = ngx_insite_gw_limit_local(r, lim, &key, &ctx->limit_result);

        if (rc == NGX_DECLINED) {
            /* full, nothing to evict: refused whatever fail= says */
            ctx->limit_done = 1;
            ngx_insite_metric_inc(lcf->limit_errors);

            return ngx_http_insite_gw_refuse(r, ctx,
                                             NGX_HTTP_SERVICE_UNAVAILABLE,
                                             "service_unavailable",
                                             "the rate limit zone is full", 1);
        }

        if (rc != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return ngx_http_insite_gw_limit_decided(r, lcf, ctx);
    }

    gmcf = ngx_http_get_module_main_conf(r, ngx_http_insite_gateway_module);

    cmd = ngx_insite_gw_limit_redis(r, gmcf->script, lim, &key,
                                    ngx_http_insite_gw_redis_reply, ctx);
    if (cmd == NULL) {
        return ngx_http_insite_gw_limit_failed(r, lcf, ctx,
                                               "Redis not connected");
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
ngx_http_insite_gw_redis_reply(ngx_insite_redis_status_e status,
    redisReply *reply, void *data)
{
    ngx_insite_gw_ctx_t *ctx = data;

    ngx_int_t                  rc;
    ngx_connection_t          *c;
    ngx_http_request_t        *r;
    ngx_insite_gw_loc_conf_t  *lcf;

    r = ctx->request;
    c = r->connection;
    lcf = ngx_http_get_module_loc_conf(r, ngx_http_insite_gateway_module);

    ctx->waiting = 0;
    ctx->cmd = NULL;

    if (status != NGX_INSITE_REDIS_OK) {
        rc = ngx_http_insite_gw_limit_failed(r, lcf, ctx,
                                           ngx_insite_redis_status_name(status));

    } else if (ngx_insite_gw_limit_redis_result(lcf->limit, reply,
                                                &ctx->limit_result)
               != NGX_OK)
    {
        rc = ngx_http_insite_gw_limit_failed(r, lcf, ctx,
                                             reply->type == REDIS_REPLY_ERROR
                                             ? reply->str
                                             : "unexpected reply");
    } else {
        rc = ngx_http_insite_gw_limit_decided(r, lcf, ctx);
    }

    if (rc == NGX_DONE) {
        /* refused: the response is already out */
        ngx_http_run_posted_requests(c);
        return;
    }

    if (rc != NGX_DECLINED) {
        ngx_http_finalize_request(r, rc);
        ngx_http_run_posted_requests(c);
        return;
    }

    /* admitted: on with the phases, from this handler (now decided) */
    ngx_http_core_run_phases(r);
    ngx_http_run_posted_requests(c);
}


static ngx_int_t
ngx_http_insite_gw_limit_decided(ngx_http_request_t *r,
    ngx_insite_gw_loc_conf_t *lcf, ngx_insite_gw_ctx_t *ctx)
{
    u_char                 msg[128];
    ngx_insite_gw_limit_t  *lim;

    lim = lcf->limit;

    ctx->limit_done = 1;
    ctx->limit = lim;
    ctx->rate_headers = lcf->rate_headers;

    if (ctx->limit_result.allowed) {
        ngx_insite_metric_inc(lcf->limit_allowed);
        return NGX_DECLINED;
    }

    ngx_insite_metric_inc(lcf->limit_refused);

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "insite gateway: rate limit zone \"%V\" exceeded, retry "
                  "after %Ts, request_id: %V",
                  &lim->zone_name, ctx->limit_result.retry_after,
                  ngx_insite_gw_request_id(r, ctx));

    ngx_sprintf(msg, "rate limit exceeded, retry in %T s%Z",
                ctx->limit_result.retry_after);

    return ngx_http_insite_gw_refuse(r, ctx, NGX_HTTP_TOO_MANY_REQUESTS,
                                     "rate_limited", (char *) msg,
                                     ctx->limit_result.retry_after);
}


/* the limiter could not decide: fail=open admits, fail=closed answers 503 */

static ngx_int_t
ngx_http_insite_gw_limit_failed(ngx_http_request_t *r,
    ngx_insite_gw_loc_conf_t *lcf, ngx_insite_gw_ctx_t *ctx, const char *why)
{
    ngx_insite_gw_limit_t  *lim;

    lim = lcf->limit;
    ctx->limit_done = 1;

    ngx_insite_metric_inc(lcf->limit_errors);

    ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                  "insite gateway: rate limit zone \"%V\" cannot decide "
                  "(%s), failing %s, request_id: %V",
                  &lim->zone_name, why, lim->fail_closed ? "closed" : "open",
                  ngx_insite_gw_request_id(r, ctx));

    if (!lim->fail_closed) {
        return NGX_DECLINED;
    }

    return ngx_http_insite_gw_refuse(r, ctx, NGX_HTTP_SERVICE_UNAVAILABLE,
                                     "service_unavailable",
                                     "the rate limiter is unavailable", 1);
}


/* the log phase: breaker outcome and per-service metrics */

static ngx_int_t
ngx_http_insite_gw_log_handler(ngx_http_request_t *r)
{
    ngx_uint_t                 status, cls;
    ngx_time_t                *tp;
    ngx_msec_int_t             ms;
    ngx_insite_gw_ctx_t       *ctx;
    ngx_insite_gw_loc_conf_t  *lcf;

    ctx = ngx_http_get_module_ctx(r, ngx_http_insite_gateway_module);

    if (ctx && ctx->service) {
        ngx_insite_gw_breaker_outcome(r, ctx);
        ctx->service = NULL;
    }

    lcf = ngx_http_get_module_loc_conf(r, ngx_http_insite_gateway_module);

    if (lcf->service == NULL) {
        return NGX_OK;
    }

    status = r->err_status ? r->err_status : r->headers_out.status;
    cls = (status >= 100 && status < 600) ? status / 100 - 1 : 5;

    ngx_insite_metric_inc(lcf->service->classes[cls]);

    tp = ngx_timeofday();
    ms = (ngx_msec_int_t) ((tp->sec - r->start_sec) * 1000
                           + (tp->msec - r->start_msec));
    ngx_insite_metric_observe(lcf->service->latency,
                              (double) ngx_max(ms, 0) / 1000);

    return NGX_OK;
}


/* variables */


static ngx_int_t
ngx_http_insite_gw_user_id_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_insite_gw_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r->main, ngx_http_insite_gateway_module);

    if (ctx == NULL || ctx->user_id.len == 0) {
        v->not_found = 1;
        return NGX_OK;
    }

    v->data = ctx->user_id.data;
    v->len = ctx->user_id.len;
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;

    return NGX_OK;
}


static ngx_int_t
ngx_http_insite_gw_request_id_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_str_t  *id;

    id = ngx_insite_gw_request_id(r, NULL);

    v->data = id->data;
    v->len = id->len;
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;

    return NGX_OK;
}


/* filters: X-Request-ID and rate-limit headers, JSON for nginx's 502/504 */


static ngx_int_t
ngx_http_insite_gw_header_filter(ngx_http_request_t *r)
{
    ngx_buf_t                 *b;
    ngx_insite_gw_ctx_t       *ctx;
    ngx_insite_gw_loc_conf_t  *lcf;

    if (r != r->main) {
        return ngx_http_next_header_filter(r);
    }

    lcf = ngx_http_get_module_loc_conf(r, ngx_http_insite_gateway_module);
    ctx = ngx_http_get_module_ctx(r, ngx_http_insite_gateway_module);

    if (!lcf->request_id && (ctx == NULL || ctx->limit == NULL)) {
        return ngx_http_next_header_filter(r);
    }

    if (ctx == NULL) {
        ctx = ngx_insite_gw_get_ctx(r);
        if (ctx == NULL) {
            return NGX_ERROR;
        }
    }

    if (lcf->request_id
        && ngx_insite_gw_set_header(r, "X-Request-ID",
                                    ngx_insite_gw_request_id(r, ctx))
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (ctx->limit && ctx->rate_headers != NGX_INSITE_GW_RH_OFF
        && ngx_insite_gw_rate_headers(r, ctx) != NGX_OK)
    {
        return NGX_ERROR;
    }

    /*
     * nginx's own 502/504 (the upstream failed or timed out: err_status is
     * set by the special response handler, never by a proxied response)
     * become the gateway's JSON error; the body filter swaps the body.
     */

    if (lcf->service && r->upstream
        && (r->err_status == NGX_HTTP_BAD_GATEWAY
            || r->err_status == NGX_HTTP_GATEWAY_TIME_OUT)
        && !ctx->replace)
    {
        b = ngx_insite_gw_error_body(r, ctx,
                      r->err_status == NGX_HTTP_BAD_GATEWAY
                      ? "bad_gateway" : "gateway_timeout",
                      r->err_status == NGX_HTTP_BAD_GATEWAY
                      ? "the upstream service failed"
                      : "the upstream service did not answer in time", 0);
        if (b == NULL) {
            return NGX_ERROR;
        }

        b->last_buf = 1;
        b->last_in_chain = 1;

        ctx->replace = b;

        r->headers_out.content_length_n = b->last - b->pos;
        if (r->headers_out.content_length) {
            r->headers_out.content_length->hash = 0;
            r->headers_out.content_length = NULL;
        }

        ngx_str_set(&r->headers_out.content_type, "application/json");
        r->headers_out.content_type_len = r->headers_out.content_type.len;
        r->headers_out.content_type_lowcase = NULL;
        r->headers_out.charset.len = 0;
    }

    return ngx_http_next_header_filter(r);
}


static ngx_int_t
ngx_http_insite_gw_body_filter(ngx_http_request_t *r, ngx_chain_t *in)
{
    ngx_chain_t           *cl, out;
    ngx_insite_gw_ctx_t   *ctx;

    if (r != r->main) {
        return ngx_http_next_body_filter(r, in);
    }

    ctx = ngx_http_get_module_ctx(r, ngx_http_insite_gateway_module);

    if (ctx == NULL || ctx->replace == NULL) {
        return ngx_http_next_body_filter(r, in);
    }

    /* nginx's HTML error page is dropped */
    for (cl = in; cl; cl = cl->next) {
        cl->buf->pos = cl->buf->last;
        cl->buf->file_pos = cl->buf->file_last;
    }

    if (ctx->replaced) {
        return ngx_http_next_body_filter(r, NULL);
    }

    ctx->replaced = 1;

    out.buf = ctx->replace;
    out.next = NULL;

    return ngx_http_next_body_filter(r, &out);
}
