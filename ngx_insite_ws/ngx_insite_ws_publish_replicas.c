/*
 * insite_ws_publish_replicas N [timeout]: a publish is acknowledged only
 * once N replicas of the channel's master hold it.
 *
 * After publish.lua has run, WAIT N timeout goes to the connection that ran
 * it (the channel's shard on a cluster, ngx_insite_redis_wait()).  Enough
 * replicas: the publish's own answer (201, or 200 for a duplicate).  Fewer:
 *
 *   504 {"error":"replication_timeout",...}  the message was published and
 *       may already be delivered, but a failover of its master may lose it;
 *   503 {"error":"service_unavailable",...}  the connection dropped before
 *       WAIT answered: published or not, unknown.
 *
 * Either way the client retries with the same Idempotency-Key: the retry is
 * a duplicate (not published twice) and waits for the replicas again.
 *
 * WAIT holds its connection: commands behind it wait up to `timeout`, so
 * the timeout must stay below the Redis command_timeout (checked by
 * nginx -t); by default it is half of command_timeout.
 */

#include "ngx_insite_ws.h"


#define NGX_INSITE_WS_REPLICAS_MAX  100


typedef struct {
    ngx_http_request_t  *request;
    ngx_str_t            channel;
    ngx_uint_t           status;       /* the publish's answer, when acked */
    ngx_buf_t           *body;
    ngx_uint_t           replicas;
    ngx_msec_t           timeout;
} ngx_insite_ws_replicas_ctx_t;


static void ngx_insite_ws_publish_replicas_reply(
    ngx_insite_redis_status_e status, redisReply *reply, void *data);
static ngx_int_t ngx_insite_ws_replication_unknown(ngx_http_request_t *r);


char *
ngx_http_insite_ws_publish_replicas(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_insite_ws_loc_conf_t *wlcf = conf;

    ngx_int_t                        n;
    ngx_msec_t                       t;
    ngx_str_t                       *value;
    ngx_http_insite_ws_main_conf_t  *wmcf;

    if (wlcf->publish_replicas != NGX_CONF_UNSET_UINT) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_strcmp(value[1].data, "off") == 0) {
        if (cf->args->nelts > 2) {
            return "takes no timeout with \"off\"";
        }

        wlcf->publish_replicas = 0;
        wlcf->publish_replicas_timeout = 0;
        return NGX_CONF_OK;
    }

    n = ngx_atoi(value[1].data, value[1].len);

    if (n < 1 || n > NGX_INSITE_WS_REPLICAS_MAX) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"insite_ws_publish_replicas\" must be \"off\" "
                           "or 1 to %d replicas, not \"%V\"",
                           NGX_INSITE_WS_REPLICAS_MAX, &value[1]);
        return NGX_CONF_ERROR;
    }

    t = 0;      /* half of the Redis command_timeout */

    if (cf->args->nelts > 2) {
        t = ngx_parse_time(&value[2], 0);

        if (t == (ngx_msec_t) NGX_ERROR || t < 1 || t > 60000) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"insite_ws_publish_replicas\" timeout must "
                               "be 1ms to 60s, not \"%V\"", &value[2]);
            return NGX_CONF_ERROR;
        }
    }

    wlcf->publish_replicas = (ngx_uint_t) n;
    wlcf->publish_replicas_timeout = t;

    /* checked against command_timeout once insite_redis* is known */
    wmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_insite_ws_module);

    if (t > wmcf->publish_replicas_timeout) {
        wmcf->publish_replicas_timeout = t;
    }

    return NGX_CONF_OK;
}


ngx_int_t
ngx_insite_ws_publish_replicas_check(ngx_conf_t *cf,
    ngx_http_insite_ws_main_conf_t *wmcf, ngx_insite_redis_conf_t *rc)
{
    /* resolved here, from the Redis configuration's public struct, so a
     * request never reads the adapter's state */
    wmcf->publish_replicas_default = ngx_max(rc->command_timeout / 2, 1);

    if (wmcf->publish_replicas_timeout >= rc->command_timeout) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"insite_ws_publish_replicas\" timeout %Mms must "
                           "be below the Redis command_timeout (%Mms): "
                           "commands queue behind WAIT",
                           wmcf->publish_replicas_timeout,
                           rc->command_timeout);
        return NGX_ERROR;
    }

    return NGX_OK;
}


ngx_int_t
ngx_insite_ws_publish_replicas_wait(ngx_http_request_t *r, ngx_str_t *channel,
    ngx_uint_t status, ngx_buf_t *body)
{
    ngx_insite_redis_cmd_t          *cmd;
    ngx_insite_ws_replicas_ctx_t    *ctx;
    ngx_http_insite_ws_loc_conf_t   *wlcf;
    ngx_http_insite_ws_main_conf_t  *wmcf;

    wlcf = ngx_http_get_module_loc_conf(r, ngx_http_insite_ws_module);

    if (wlcf->publish_replicas == 0) {
        return ngx_insite_json_send(r, status, body);
    }

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_insite_ws_replicas_ctx_t));
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    wmcf = ngx_http_get_module_main_conf(r, ngx_http_insite_ws_module);

    ctx->request = r;
    ctx->channel = *channel;
    ctx->status = status;
    ctx->body = body;
    ctx->replicas = wlcf->publish_replicas;
    ctx->timeout = wlcf->publish_replicas_timeout
                   ? wlcf->publish_replicas_timeout
                   : wmcf->publish_replicas_default;

    cmd = ngx_insite_redis_wait(ngx_insite_ws_publish_replicas_reply, ctx,
                                ctx->replicas, ctx->timeout);

    if (cmd == NULL) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "insite ws: publish to \"%V\" not acknowledged: "
                      "its Redis connection went away before WAIT",
                      channel);
        return ngx_insite_ws_replication_unknown(r);
    }

    if (ngx_insite_redis_cancel_with_pool(cmd, r->pool) != NGX_OK) {
        ngx_insite_redis_cancel(cmd);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return NGX_DONE;
}


static void
ngx_insite_ws_publish_replicas_reply(ngx_insite_redis_status_e status,
    redisReply *reply, void *data)
{
    ngx_insite_ws_replicas_ctx_t *ctx = data;

    u_char              *p;
    ngx_int_t            rc;
    ngx_str_t            msg;
    ngx_connection_t    *c;
    ngx_http_request_t  *r;

    r = ctx->request;
    c = r->connection;

    if (status != NGX_INSITE_REDIS_OK
        || reply->type != REDIS_REPLY_INTEGER)
    {
        ngx_log_error(NGX_LOG_ERR, c->log, 0,
                      "insite ws: publish to \"%V\" not acknowledged: "
                      "WAIT failed: %s", &ctx->channel,
                      status != NGX_INSITE_REDIS_OK
                      ? ngx_insite_redis_status_name(status)
                      : (reply->type == REDIS_REPLY_ERROR ? reply->str
                                                          : "bad reply"));
        rc = ngx_insite_ws_replication_unknown(r);
        goto done;
    }

    if (reply->integer >= (long long) ctx->replicas) {
        rc = ngx_insite_json_send(r, ctx->status, ctx->body);
        goto done;
    }

    ngx_log_error(NGX_LOG_WARN, c->log, 0,
                  "insite ws: publish to \"%V\" reached %L of %ui replicas "
                  "within %Mms", &ctx->channel, (int64_t) reply->integer,
                  ctx->replicas, ctx->timeout);

    msg.data = ngx_pnalloc(r->pool, 256);
    if (msg.data == NULL) {
        rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
        goto done;
    }

    p = ngx_snprintf(msg.data, 256,
                     "published, but %L of %ui replicas acknowledged it "
                     "within %Mms: it may be delivered, and may be lost if "
                     "its master fails; retry with the same Idempotency-Key",
                     (int64_t) reply->integer, ctx->replicas, ctx->timeout);
    msg.len = p - msg.data;

    rc = ngx_insite_json_error(r, NGX_HTTP_GATEWAY_TIME_OUT,
                               "replication_timeout", &msg);

done:

    ngx_http_finalize_request(r, rc);
    ngx_http_run_posted_requests(c);
}


/* the connection went away before WAIT answered: published, maybe not kept */

static ngx_int_t
ngx_insite_ws_replication_unknown(ngx_http_request_t *r)
{
    return ngx_insite_ws_refuse(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                "service_unavailable",
                                "published, but its replication is unknown: "
                                "retry with the same Idempotency-Key",
                                "Retry-After", "1");
}
