/*
 * ngx_http_insite_ws_module: WebSocket pub/sub inside nginx workers.
 * Loaded after ngx_http_insite_module, whose Redis adapter and metrics
 * registry it uses.  See ngx_insite_ws.h for the map of files and
 * docs/ws-protocol.md for the protocol.
 */

#include "ngx_insite_ws.h"
#include "insite_lua.h"


static ngx_int_t ngx_http_insite_ws_postconfiguration(ngx_conf_t *cf);
static void *ngx_http_insite_ws_create_main_conf(ngx_conf_t *cf);
static char *ngx_http_insite_ws_init_main_conf(ngx_conf_t *cf, void *conf);
static void *ngx_http_insite_ws_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_insite_ws_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);
static char *ngx_http_insite_ws_handler_set(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_http_insite_ws_origins(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_insite_ws_channels(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_insite_ws_subscribe_rate(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_http_insite_ws_prefix(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_insite_ws_notsent_lowat(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_http_insite_ws_bounds_check(ngx_conf_t *cf, void *post,
    void *data);
static ngx_int_t ngx_http_insite_ws_origin_check(ngx_conf_t *cf,
    ngx_http_insite_ws_main_conf_t *wmcf);
static ngx_int_t ngx_http_insite_ws_register_metrics(ngx_conf_t *cf,
    ngx_http_insite_ws_main_conf_t *wmcf);
static ngx_int_t ngx_http_insite_ws_init_process(ngx_cycle_t *cycle);
static void ngx_http_insite_ws_exit_process(ngx_cycle_t *cycle);



/*
 * Every time and size directive has a range, checked when the configuration
 * is read: "insite_ws_check_interval 0" would spin the workers.  The post
 * handler of nginx's set slots gets the parsed value.
 */

#define NGX_INSITE_WS_MSEC  0
#define NGX_INSITE_WS_SEC   1
#define NGX_INSITE_WS_SIZE  2
#define NGX_INSITE_WS_NUM   3

typedef struct {
    ngx_conf_post_handler_pt  post_handler;
    ngx_uint_t                kind;
    uint64_t                  low;
    uint64_t                  high;
    const char               *range;          /* for the error */
} ngx_http_insite_ws_bounds_t;


#define ngx_insite_ws_bounds(kind, low, high, text)                          \
    { ngx_http_insite_ws_bounds_check, kind, low, high, text }

static ngx_http_insite_ws_bounds_t  ngx_insite_ws_max_connections_bounds =
    ngx_insite_ws_bounds(NGX_INSITE_WS_NUM, 1, 10000000, "1 to 10000000");
static ngx_http_insite_ws_bounds_t  ngx_insite_ws_check_interval_bounds =
    ngx_insite_ws_bounds(NGX_INSITE_WS_MSEC, 100, 60000, "100ms to 60s");
static ngx_http_insite_ws_bounds_t  ngx_insite_ws_shutdown_spread_bounds =
    ngx_insite_ws_bounds(NGX_INSITE_WS_MSEC, 0, 600000, "0 to 10m");
static ngx_http_insite_ws_bounds_t  ngx_insite_ws_idempotency_ttl_bounds =
    ngx_insite_ws_bounds(NGX_INSITE_WS_SEC, 1, INSITE_CHANNEL_IDEM_TTL_MAX,
                         "1s to 30d");
static ngx_http_insite_ws_bounds_t  ngx_insite_ws_ping_interval_bounds =
    ngx_insite_ws_bounds(NGX_INSITE_WS_MSEC, 100, 3600000, "100ms to 1h");
static ngx_http_insite_ws_bounds_t  ngx_insite_ws_idle_timeout_bounds =
    ngx_insite_ws_bounds(NGX_INSITE_WS_MSEC, 100, 86400000, "100ms to 24h");
static ngx_http_insite_ws_bounds_t  ngx_insite_ws_max_message_size_bounds =
    ngx_insite_ws_bounds(NGX_INSITE_WS_SIZE, 128, 16 * 1024 * 1024,
                         "128 to 16m");
static ngx_http_insite_ws_bounds_t  ngx_insite_ws_send_buffer_bounds =
    ngx_insite_ws_bounds(NGX_INSITE_WS_SIZE, 1024, 1024 * 1024 * 1024,
                         "1k to 1024m");
static ngx_http_insite_ws_bounds_t  ngx_insite_ws_history_bounds =
    ngx_insite_ws_bounds(NGX_INSITE_WS_NUM, 0, INSITE_CHANNEL_HISTORY_MAX,
                         "0 to 1000000");
static ngx_http_insite_ws_bounds_t  ngx_insite_ws_deflate_min_size_bounds =
    ngx_insite_ws_bounds(NGX_INSITE_WS_SIZE, 0, 16 * 1024 * 1024,
                         "0 to 16m");
static ngx_http_insite_ws_bounds_t  ngx_insite_ws_conflate_after_bounds =
    ngx_insite_ws_bounds(NGX_INSITE_WS_SIZE, 0, 1024 * 1024 * 1024,
                         "0 to 1024m");
static ngx_http_insite_ws_bounds_t  ngx_insite_ws_notsent_lowat_bounds =
    ngx_insite_ws_bounds(NGX_INSITE_WS_SIZE, 1024, 16 * 1024 * 1024,
                         "off or 1k to 16m");
static ngx_http_insite_ws_bounds_t  ngx_insite_ws_max_channels_bounds =
    ngx_insite_ws_bounds(NGX_INSITE_WS_NUM, 1, 100000, "1 to 100000");


static ngx_command_t  ngx_http_insite_ws_commands[] = {

    { ngx_string("insite_ws"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_insite_ws_handler_set,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_insite_ws_loc_conf_t, enable),
      NULL },

    { ngx_string("insite_ws_publish"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_insite_ws_handler_set,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_insite_ws_loc_conf_t, publish),
      NULL },

    { ngx_string("insite_ws_status"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_insite_ws_handler_set,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_insite_ws_loc_conf_t, status),
      NULL },

    { ngx_string("insite_ws_max_connections"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_insite_ws_main_conf_t, max_connections),
      &ngx_insite_ws_max_connections_bounds },

    { ngx_string("insite_ws_key_prefix"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_insite_ws_prefix,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_insite_ws_main_conf_t, prefix),
      NULL },

    { ngx_string("insite_ws_check_interval"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_insite_ws_main_conf_t, check_interval),
      &ngx_insite_ws_check_interval_bounds },

    { ngx_string("insite_ws_shutdown_spread"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_insite_ws_main_conf_t, shutdown_spread),
      &ngx_insite_ws_shutdown_spread_bounds },

    { ngx_string("insite_ws_idempotency_ttl"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_sec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_insite_ws_main_conf_t, idempotency_ttl),
      &ngx_insite_ws_idempotency_ttl_bounds },

    { ngx_string("insite_ws_ping_interval"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_insite_ws_loc_conf_t, ping_interval),
      &ngx_insite_ws_ping_interval_bounds },

    { ngx_string("insite_ws_idle_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_insite_ws_loc_conf_t, idle_timeout),
      &ngx_insite_ws_idle_timeout_bounds },

    { ngx_string("insite_ws_max_message_size"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_insite_ws_loc_conf_t, max_message_size),
      &ngx_insite_ws_max_message_size_bounds },

    { ngx_string("insite_ws_send_buffer"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_insite_ws_loc_conf_t, send_buffer),
      &ngx_insite_ws_send_buffer_bounds },

    { ngx_string("insite_ws_history"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_insite_ws_loc_conf_t, history),
      &ngx_insite_ws_history_bounds },

    { ngx_string("insite_ws_max_channels"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_insite_ws_loc_conf_t, max_channels),
      &ngx_insite_ws_max_channels_bounds },

    { ngx_string("insite_ws_allowed_origins"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_insite_ws_origins,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("insite_ws_user"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_set_complex_value_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_insite_ws_loc_conf_t, user),
      NULL },

    { ngx_string("insite_ws_private_prefix"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_insite_ws_loc_conf_t, private_prefix),
      NULL },

    { ngx_string("insite_ws_allow_any_origin"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_insite_ws_loc_conf_t, allow_any_origin),
      NULL },

    { ngx_string("insite_ws_channels"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_insite_ws_channels,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_insite_ws_loc_conf_t, channels),
      NULL },

    { ngx_string("insite_ws_conflate"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_insite_ws_channels,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_insite_ws_loc_conf_t, conflate),
      NULL },

    { ngx_string("insite_ws_deflate"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_insite_ws_loc_conf_t, deflate),
      NULL },

    { ngx_string("insite_ws_deflate_min_size"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_insite_ws_loc_conf_t, deflate_min_size),
      &ngx_insite_ws_deflate_min_size_bounds },

    { ngx_string("insite_ws_conflate_after"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_insite_ws_loc_conf_t, conflate_after),
      &ngx_insite_ws_conflate_after_bounds },

    { ngx_string("insite_ws_notsent_lowat"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_insite_ws_notsent_lowat,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_insite_ws_loc_conf_t, notsent_lowat),
      &ngx_insite_ws_notsent_lowat_bounds },

    { ngx_string("insite_ws_publish_replicas"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE12,
      ngx_http_insite_ws_publish_replicas,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("insite_ws_subscribe_rate"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE12,
      ngx_http_insite_ws_subscribe_rate,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_insite_ws_module_ctx = {
    NULL,                                  /* preconfiguration */
    ngx_http_insite_ws_postconfiguration,  /* postconfiguration */

    ngx_http_insite_ws_create_main_conf,   /* create main configuration */
    ngx_http_insite_ws_init_main_conf,     /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_insite_ws_create_loc_conf,    /* create location configuration */
    ngx_http_insite_ws_merge_loc_conf      /* merge location configuration */
};


ngx_module_t  ngx_http_insite_ws_module = {
    NGX_MODULE_V1,
    &ngx_http_insite_ws_module_ctx,        /* module context */
    ngx_http_insite_ws_commands,           /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    ngx_http_insite_ws_init_process,       /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_http_insite_ws_exit_process,       /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static void *
ngx_http_insite_ws_create_main_conf(ngx_conf_t *cf)
{
    ngx_http_insite_ws_main_conf_t  *wmcf;

    wmcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_insite_ws_main_conf_t));
    if (wmcf == NULL) {
        return NULL;
    }

    wmcf->max_connections = NGX_CONF_UNSET_UINT;
    wmcf->check_interval = NGX_CONF_UNSET_MSEC;
    wmcf->shutdown_spread = NGX_CONF_UNSET_MSEC;
    wmcf->idempotency_ttl = NGX_CONF_UNSET;

    if (ngx_array_init(&wmcf->ws_locations, cf->pool, 4,
                       sizeof(ngx_insite_ws_location_t))
        != NGX_OK)
    {
        return NULL;
    }

    return wmcf;
}


static char *
ngx_http_insite_ws_init_main_conf(ngx_conf_t *cf, void *conf)
{
    ngx_http_insite_ws_main_conf_t *wmcf = conf;

    ngx_conf_init_uint_value(wmcf->max_connections, 1000);
    ngx_conf_init_msec_value(wmcf->check_interval, 1000);
    ngx_conf_init_msec_value(wmcf->shutdown_spread, 5000);
    ngx_conf_init_value(wmcf->idempotency_ttl, 86400);

    if (wmcf->prefix.data == NULL) {
        ngx_str_set(&wmcf->prefix, "insite:");
    }

    return NGX_CONF_OK;
}


static void *
ngx_http_insite_ws_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_insite_ws_loc_conf_t  *conf;

    conf = ngx_pcalloc(cf->pool, sizeof(ngx_http_insite_ws_loc_conf_t));
    if (conf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *     conf->allowed_origins = NULL;
     *     conf->user = NULL;
     *     conf->private_prefix = { 0, NULL };
     */

    conf->enable = NGX_CONF_UNSET;
    conf->publish = NGX_CONF_UNSET;
    conf->status = NGX_CONF_UNSET;
    conf->ping_interval = NGX_CONF_UNSET_MSEC;
    conf->idle_timeout = NGX_CONF_UNSET_MSEC;
    conf->max_message_size = NGX_CONF_UNSET_SIZE;
    conf->send_buffer = NGX_CONF_UNSET_SIZE;
    conf->history = NGX_CONF_UNSET_UINT;
    conf->max_channels = NGX_CONF_UNSET_UINT;
    conf->allowed_origins = NGX_CONF_UNSET_PTR;
    conf->allow_any_origin = NGX_CONF_UNSET;
    conf->user = NGX_CONF_UNSET_PTR;
    conf->channels = NGX_CONF_UNSET_PTR;
    conf->deflate = NGX_CONF_UNSET;
    conf->deflate_min_size = NGX_CONF_UNSET_SIZE;
    conf->conflate = NGX_CONF_UNSET_PTR;
    conf->conflate_after = NGX_CONF_UNSET_SIZE;
    conf->notsent_lowat = NGX_CONF_UNSET_SIZE;
    conf->subscribe_rate = NGX_CONF_UNSET_UINT;
    conf->subscribe_burst = NGX_CONF_UNSET_UINT;
    conf->publish_replicas = NGX_CONF_UNSET_UINT;
    conf->publish_replicas_timeout = NGX_CONF_UNSET_MSEC;

    return conf;
}


static char *
ngx_http_insite_ws_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_http_insite_ws_loc_conf_t *prev = parent;
    ngx_http_insite_ws_loc_conf_t *conf = child;

    ngx_http_core_loc_conf_t        *clcf;
    ngx_http_insite_ws_main_conf_t  *wmcf;
    ngx_insite_ws_location_t        *wlcfp;

    wmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_insite_ws_module);

    ngx_conf_merge_value(conf->enable, prev->enable, 0);
    ngx_conf_merge_value(conf->publish, prev->publish, 0);
    ngx_conf_merge_value(conf->status, prev->status, 0);
    ngx_conf_merge_msec_value(conf->ping_interval, prev->ping_interval, 30000);
    ngx_conf_merge_msec_value(conf->idle_timeout, prev->idle_timeout, 60000);
    ngx_conf_merge_size_value(conf->max_message_size, prev->max_message_size,
                              64 * 1024);
    ngx_conf_merge_size_value(conf->send_buffer, prev->send_buffer,
                              1024 * 1024);
    ngx_conf_merge_uint_value(conf->history, prev->history, 1000);
    ngx_conf_merge_uint_value(conf->max_channels, prev->max_channels, 100);
    ngx_conf_merge_ptr_value(conf->allowed_origins, prev->allowed_origins,
                             NULL);
    ngx_conf_merge_value(conf->allow_any_origin, prev->allow_any_origin, 0);
    ngx_conf_merge_ptr_value(conf->user, prev->user, NULL);
    ngx_conf_merge_str_value(conf->private_prefix, prev->private_prefix, "");
    ngx_conf_merge_ptr_value(conf->channels, prev->channels, NULL);
    ngx_conf_merge_value(conf->deflate, prev->deflate, 0);
    ngx_conf_merge_size_value(conf->deflate_min_size, prev->deflate_min_size,
                              128);
    ngx_conf_merge_ptr_value(conf->conflate, prev->conflate, NULL);
    ngx_conf_merge_size_value(conf->conflate_after, prev->conflate_after,
                              16 * 1024);
    ngx_conf_merge_size_value(conf->notsent_lowat, prev->notsent_lowat, 0);
    ngx_conf_merge_uint_value(conf->publish_replicas, prev->publish_replicas,
                              0);
    ngx_conf_merge_msec_value(conf->publish_replicas_timeout,
                              prev->publish_replicas_timeout, 0);

    if (conf->subscribe_rate == NGX_CONF_UNSET_UINT) {
        conf->subscribe_rate = prev->subscribe_rate == NGX_CONF_UNSET_UINT
                               ? 20 : prev->subscribe_rate;
        conf->subscribe_burst = prev->subscribe_burst == NGX_CONF_UNSET_UINT
                                ? 0 : prev->subscribe_burst;
    }

    if (conf->subscribe_burst == 0) {
        /* default: the connection's whole channel allowance at once */
        conf->subscribe_burst = ngx_max(conf->max_channels,
                                        conf->subscribe_rate);
    }

    /* the ranges of the single values are checked as they are read */

    if (conf->enable == 1) {
        /* checked in postconfiguration, once the gateway has said which
           locations take their user from a cookie */
        wlcfp = ngx_array_push(&wmcf->ws_locations);
        if (wlcfp == NULL) {
            return NGX_CONF_ERROR;
        }

        wlcfp->wlcf = conf;
        wlcfp->clcf = ngx_http_conf_get_module_loc_conf(cf,
                                                        ngx_http_core_module);
    }

    /*
     * A publish body that fits the limit must stay in memory: nginx would
     * write a body past client_body_buffer_size to a temporary file, and
     * reading it back would block the worker.  The core module's settings
     * of this location are merged already.
     */
    if (conf->publish == 1) {
        clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

        if (clcf->client_body_buffer_size < conf->max_message_size) {
            clcf->client_body_buffer_size = conf->max_message_size;
        }
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_insite_ws_handler_set(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_flag_t                      *fp;
    ngx_http_core_loc_conf_t        *clcf;
    ngx_http_insite_ws_main_conf_t  *wmcf;

    fp = (ngx_flag_t *) ((char *) conf + cmd->offset);
    wmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_insite_ws_module);

    if (*fp != NGX_CONF_UNSET) {
        return "is duplicate";
    }

    *fp = 1;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    if (clcf->handler) {
        return "conflicts with another content handler in this location";
    }

    if (cmd->offset == offsetof(ngx_http_insite_ws_loc_conf_t, enable)) {
        clcf->handler = ngx_insite_ws_handshake;
        wmcf->used = 1;

    } else if (cmd->offset == offsetof(ngx_http_insite_ws_loc_conf_t, publish)) {
        clcf->handler = ngx_insite_ws_publish_handler;
        wmcf->used = 1;

    } else {
        clcf->handler = ngx_insite_ws_status_handler;
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_insite_ws_origins(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_insite_ws_loc_conf_t *wlcf = conf;

    ngx_str_t   *value, *origin;
    ngx_uint_t   i;

    if (wlcf->allowed_origins != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    wlcf->allowed_origins = ngx_array_create(cf->pool, cf->args->nelts - 1,
                                             sizeof(ngx_str_t));
    if (wlcf->allowed_origins == NULL) {
        return NGX_CONF_ERROR;
    }

    value = cf->args->elts;

    for (i = 1; i < cf->args->nelts; i++) {
        origin = ngx_array_push(wlcf->allowed_origins);
        if (origin == NULL) {
            return NGX_CONF_ERROR;
        }
        *origin = value[i];
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_insite_ws_bounds_check(ngx_conf_t *cf, void *post, void *data)
{
    ngx_http_insite_ws_bounds_t *b = post;

    u_char     *p;
    uint64_t    v;
    ngx_str_t  *value;

    switch (b->kind) {
    case NGX_INSITE_WS_MSEC:
        v = *(ngx_msec_t *) data;
        break;
    case NGX_INSITE_WS_SEC:
        v = (uint64_t) *(time_t *) data;
        break;
    case NGX_INSITE_WS_SIZE:
        v = *(size_t *) data;
        break;
    default:
        v = (uint64_t) *(ngx_int_t *) data;
        break;
    }

    if (v >= b->low && v <= b->high) {
        return NGX_CONF_OK;
    }

    value = cf->args->elts;

    /* nginx prints: "<directive>" directive <this> */
    p = ngx_pnalloc(cf->pool, value[1].len + 64);
    if (p == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_sprintf(p, "must be %s, not \"%V\"%Z", b->range, &value[1]);

    return (char *) p;
}


static char *
ngx_http_insite_ws_prefix(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_insite_ws_main_conf_t *wmcf = conf;

    ngx_str_t  *value;

    if (wmcf->prefix.data) {
        return "is duplicate";
    }

    value = cf->args->elts;

    /* a brace would break the channels' Redis Cluster hash tags */
    if (!insite_channel_prefix_valid((char *) value[1].data, value[1].len)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"insite_ws_key_prefix\" must be up to 64 "
                           "printable characters without white space or "
                           "braces, not \"%V\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    wmcf->prefix = value[1];

    return NGX_CONF_OK;
}


/*
 * insite_ws_notsent_lowat off | size: checked here, not at the first
 * connection, so a kernel without TCP_NOTSENT_LOWAT fails nginx -t.
 */

static char *
ngx_http_insite_ws_notsent_lowat(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_insite_ws_loc_conf_t *wlcf = conf;

    ngx_str_t  *value;

    value = cf->args->elts;

    if (wlcf->notsent_lowat != NGX_CONF_UNSET_SIZE) {
        return "is duplicate";
    }

    if (ngx_strcmp(value[1].data, "off") == 0) {
        wlcf->notsent_lowat = 0;
        return NGX_CONF_OK;
    }

#if !(NGX_LINUX && defined TCP_NOTSENT_LOWAT)
    return "is not supported on this platform (no TCP_NOTSENT_LOWAT)";
#else
    return ngx_conf_set_size_slot(cf, cmd, conf);
#endif
}


/* insite_ws_channels, insite_ws_conflate: channel name patterns */

static char *
ngx_http_insite_ws_channels(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_str_t     *value, *pat;
    ngx_uint_t     i;
    ngx_array_t  **patterns;

    patterns = (ngx_array_t **) ((char *) conf + cmd->offset);

    if (*patterns != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    *patterns = ngx_array_create(cf->pool, cf->args->nelts - 1,
                                 sizeof(ngx_str_t));
    if (*patterns == NULL) {
        return NGX_CONF_ERROR;
    }

    value = cf->args->elts;

    for (i = 1; i < cf->args->nelts; i++) {
        if (!insite_channel_glob_valid((char *) value[i].data, value[i].len))
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"%V\": invalid pattern "
                               "\"%V\": 1-128 characters of A-Z a-z 0-9 "
                               "_ . : - and *", &cmd->name, &value[i]);
            return NGX_CONF_ERROR;
        }

        pat = ngx_array_push(*patterns);
        if (pat == NULL) {
            return NGX_CONF_ERROR;
        }

        *pat = value[i];
    }

    return NGX_CONF_OK;
}


/* insite_ws_subscribe_rate <n>r/s [burst=<m>] */

static char *
ngx_http_insite_ws_subscribe_rate(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_insite_ws_loc_conf_t *wlcf = conf;

    ngx_int_t   rate, burst;
    ngx_str_t  *value;

    if (wlcf->subscribe_rate != NGX_CONF_UNSET_UINT) {
        return "is duplicate";
    }

    value = cf->args->elts;
    rate = NGX_ERROR;

    if (value[1].len > 3
        && ngx_strncmp(value[1].data + value[1].len - 3, "r/s", 3) == 0)
    {
        rate = ngx_atoi(value[1].data, value[1].len - 3);
    }

    if (rate < 1 || rate > 100000) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"insite_ws_subscribe_rate\" must be 1r/s to "
                           "100000r/s, not \"%V\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    burst = 0;

    if (cf->args->nelts == 3) {
        burst = NGX_ERROR;

        if (value[2].len > 6 && ngx_strncmp(value[2].data, "burst=", 6) == 0)
        {
            burst = ngx_atoi(value[2].data + 6, value[2].len - 6);
        }

        if (burst < 1 || burst > 100000) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"insite_ws_subscribe_rate\": burst must be "
                               "burst=1 to burst=100000, not \"%V\"",
                               &value[2]);
            return NGX_CONF_ERROR;
        }
    }

    wlcf->subscribe_rate = rate;
    wlcf->subscribe_burst = burst;

    return NGX_CONF_OK;
}


/*
 * Cross-site WebSocket hijacking: where a cookie names the user, any page
 * the user visits could open the socket with that cookie.  Browsers always
 * send Origin: such a location needs an allow-list, or says explicitly that
 * any origin is fine (insite_ws_allow_any_origin on).
 */

static ngx_int_t
ngx_http_insite_ws_origin_check(ngx_conf_t *cf,
    ngx_http_insite_ws_main_conf_t *wmcf)
{
    ngx_uint_t                 i;
    ngx_insite_ws_location_t  *loc;

    loc = wmcf->ws_locations.elts;

    for (i = 0; i < wmcf->ws_locations.nelts; i++) {
        if (loc[i].wlcf->allowed_origins != NULL
            || loc[i].wlcf->allow_any_origin
            || !ngx_insite_cookie_identity(cf, loc[i].clcf))
        {
            continue;
        }

        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "location \"%V\": insite_ws takes its user from a "
                      "cookie (insite_gateway_jwt_cookie): set "
                      "\"insite_ws_allowed_origins\" (or, knowingly, "
                      "\"insite_ws_allow_any_origin on\")",
                      &loc[i].clcf->name);
        return NGX_ERROR;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_insite_ws_postconfiguration(ngx_conf_t *cf)
{
    ngx_http_insite_main_conf_t     *imcf;
    ngx_http_insite_ws_main_conf_t  *wmcf;

    wmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_insite_ws_module);
    imcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_insite_module);

    if (ngx_http_insite_ws_register_metrics(cf, wmcf) != NGX_OK) {
        return NGX_ERROR;
    }

    if (!wmcf->used) {
        return NGX_OK;
    }

    if (ngx_http_insite_ws_origin_check(cf, wmcf) != NGX_OK) {
        return NGX_ERROR;
    }

    if (ngx_insite_ws_limit_init_conf(cf, wmcf) != NGX_OK) {
        return NGX_ERROR;
    }

    if (imcf->redis_conf == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "insite_ws and insite_ws_publish need "
                           "\"insite_redis\" in the http block");
        return NGX_ERROR;
    }

    if (ngx_insite_ws_publish_replicas_check(cf, wmcf, imcf->redis_conf)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    wmcf->publish_script = ngx_insite_redis_script_add(cf, imcf->redis_conf,
                                                       "publish",
                                                       INSITE_LUA_PUBLISH);
    wmcf->position_script = ngx_insite_redis_script_add(cf, imcf->redis_conf,
                                                        "position",
                                                        INSITE_LUA_POSITION);

    if (wmcf->publish_script == NULL || wmcf->position_script == NULL)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_insite_ws_register_metrics(ngx_conf_t *cf,
    ngx_http_insite_ws_main_conf_t *wmcf)
{
    ngx_uint_t                i;
    ngx_insite_metric_t     **mp;
    ngx_insite_ws_metrics_t  *m = &wmcf->metrics;

    static struct {
        size_t                    offset;
        ngx_insite_metric_type_e  type;
        const char               *name;
        const char               *help;
    } defs[] = {
        { offsetof(ngx_insite_ws_metrics_t, connections), NGX_INSITE_GAUGE,
          "insite_ws_connections", "Open WebSocket connections." },
        { offsetof(ngx_insite_ws_metrics_t, connections_peak),
          NGX_INSITE_GAUGE, "insite_ws_connections_peak",
          "Most WebSocket connections open at once." },
        { offsetof(ngx_insite_ws_metrics_t, accepted), NGX_INSITE_COUNTER,
          "insite_ws_connections_accepted_total",
          "WebSocket upgrades accepted." },
        { offsetof(ngx_insite_ws_metrics_t, refused), NGX_INSITE_COUNTER,
          "insite_ws_connections_refused_total",
          "WebSocket upgrades refused by insite_ws_max_connections." },
        { offsetof(ngx_insite_ws_metrics_t, channels), NGX_INSITE_GAUGE,
          "insite_ws_channels",
          "Channels with local subscribers, summed over workers." },
        { offsetof(ngx_insite_ws_metrics_t, subscriptions), NGX_INSITE_GAUGE,
          "insite_ws_subscriptions", "Channel subscriptions of clients." },
        { offsetof(ngx_insite_ws_metrics_t, published), NGX_INSITE_COUNTER,
          "insite_ws_messages_published_total",
          "Messages published through insite_ws_publish." },
        { offsetof(ngx_insite_ws_metrics_t, async_failures),
          NGX_INSITE_COUNTER, "insite_ws_publish_async_failures_total",
          "Publishes answered 202 (Prefer: respond-async) whose script call "
          "then failed." },
        { offsetof(ngx_insite_ws_metrics_t, received), NGX_INSITE_COUNTER,
          "insite_ws_messages_received_total",
          "Messages received from Redis pub/sub." },
        { offsetof(ngx_insite_ws_metrics_t, delivered), NGX_INSITE_COUNTER,
          "insite_ws_messages_delivered_total",
          "Live messages queued to clients." },
        { offsetof(ngx_insite_ws_metrics_t, replayed), NGX_INSITE_COUNTER,
          "insite_ws_messages_replayed_total",
          "Messages sent to clients from history (resume, catch-up)." },
        { offsetof(ngx_insite_ws_metrics_t, slow_closes), NGX_INSITE_COUNTER,
          "insite_ws_slow_consumer_closes_total",
          "Connections closed with 1013 for exceeding insite_ws_send_buffer." },
        { offsetof(ngx_insite_ws_metrics_t, idle_closes), NGX_INSITE_COUNTER,
          "insite_ws_idle_closes_total",
          "Connections closed for silence past insite_ws_idle_timeout." },
        { offsetof(ngx_insite_ws_metrics_t, protocol_closes),
          NGX_INSITE_COUNTER, "insite_ws_protocol_closes_total",
          "Connections closed for RFC 6455 violations (1002, 1003, 1007, "
          "1009)." },
        { offsetof(ngx_insite_ws_metrics_t, gap_repairs), NGX_INSITE_COUNTER,
          "insite_ws_gap_repairs_total",
          "Sequence gaps found and filled from history." },
        { offsetof(ngx_insite_ws_metrics_t, resets), NGX_INSITE_COUNTER,
          "insite_ws_resets_total",
          "reset frames sent: history exceeded or epoch changed." },
        { offsetof(ngx_insite_ws_metrics_t, client_errors),
          NGX_INSITE_COUNTER, "insite_ws_client_errors_total",
          "error frames sent for bad client requests." },
        { offsetof(ngx_insite_ws_metrics_t, conflated), NGX_INSITE_COUNTER,
          "insite_ws_messages_conflated_total",
          "Queued messages replaced by a newer one (insite_ws_conflate)." },
    };

    for (i = 0; i < sizeof(defs) / sizeof(defs[0]); i++) {
        mp = (ngx_insite_metric_t **) ((char *) m + defs[i].offset);
        *mp = ngx_insite_metric_add(cf, defs[i].type, defs[i].name, NULL,
                                    defs[i].help);
        if (*mp == NULL) {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_insite_ws_init_process(ngx_cycle_t *cycle)
{
    ngx_http_insite_ws_main_conf_t  *wmcf;

    wmcf = ngx_http_cycle_get_module_main_conf(cycle,
                                               ngx_http_insite_ws_module);
    if (wmcf == NULL) {
        return NGX_OK;
    }

    ngx_rbtree_init(&wmcf->channels, &wmcf->sentinel,
                    ngx_str_rbtree_insert_value);
    ngx_queue_init(&wmcf->conns);

    if (!wmcf->used) {
        return NGX_OK;
    }

    if (ngx_insite_ws_limit_init_process(cycle, wmcf) != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_insite_ws_redis_init(cycle);
}


static void
ngx_http_insite_ws_exit_process(ngx_cycle_t *cycle)
{
    ngx_http_insite_ws_main_conf_t  *wmcf;

    wmcf = ngx_http_cycle_get_module_main_conf(cycle,
                                               ngx_http_insite_ws_module);
    if (wmcf && wmcf->used) {
        ngx_insite_ws_redis_exit(cycle);
    }

    ngx_insite_ws_deflate_exit();
}


ngx_http_insite_ws_main_conf_t *
ngx_insite_ws_main_conf(void)
{
    return ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                               ngx_http_insite_ws_module);
}
