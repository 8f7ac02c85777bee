/*
 * insite_ws_status: the module's figures as JSON.  Counters are the sum over
 * all workers (they live in the metrics zone, the same numbers
 * insite_metrics exposes); the Redis states are this worker's.
 */

#include "ngx_insite_ws.h"


ngx_int_t
ngx_insite_ws_status_handler(ngx_http_request_t *r)
{
    ngx_buf_t                       *b;
    ngx_int_t                        rc;
    ngx_insite_redis_t              *cmd;
    ngx_insite_ws_metrics_t         *m;
    ngx_http_insite_ws_main_conf_t  *wmcf;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return NGX_HTTP_NOT_ALLOWED;
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    wmcf = ngx_insite_ws_main_conf();
    m = &wmcf->metrics;
    cmd = ngx_insite_redis_shared();

    b = ngx_create_temp_buf(r->pool, 1024);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->last = ngx_sprintf(b->last,
        "{\"connections\":{\"now\":%A,\"peak\":%A,\"accepted\":%A,"
        "\"refused\":%A,\"max\":%ui},"
        "\"channels\":%A,\"subscriptions\":%A,"
        "\"messages\":{\"published\":%A,\"received\":%A,\"delivered\":%A,"
        "\"replayed\":%A},"
        "\"closes\":{\"slow_consumer\":%A,\"idle\":%A,\"protocol\":%A},"
        "\"gap_repairs\":%A,\"resets\":%A,\"client_errors\":%A,"
        "\"redis\":{\"commands\":\"%s\",\"pubsub\":\"%s\"}}\n",
        ngx_insite_metric_value(m->connections),
        ngx_insite_metric_value(m->connections_peak),
        ngx_insite_metric_value(m->accepted),
        ngx_insite_metric_value(m->refused),
        wmcf->max_connections,
        ngx_insite_metric_value(m->channels),
        ngx_insite_metric_value(m->subscriptions),
        ngx_insite_metric_value(m->published),
        ngx_insite_metric_value(m->received),
        ngx_insite_metric_value(m->delivered),
        ngx_insite_metric_value(m->replayed),
        ngx_insite_metric_value(m->slow_closes),
        ngx_insite_metric_value(m->idle_closes),
        ngx_insite_metric_value(m->protocol_closes),
        ngx_insite_metric_value(m->gap_repairs),
        ngx_insite_metric_value(m->resets),
        ngx_insite_metric_value(m->client_errors),
        cmd ? ngx_insite_redis_state_name(cmd->state) : "not configured",
        wmcf->pubsub ? ngx_insite_redis_state_name(wmcf->pubsub->state)
                     : "not used");

    return ngx_insite_json_send(r, NGX_HTTP_OK, b);
}
