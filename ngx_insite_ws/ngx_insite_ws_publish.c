/*
 * insite_ws_publish: POST ?channel=NAME with a JSON object body publishes
 * it through lua/publish.lua, the same script the workers run, so that
 * sequence numbers are assigned in one place whoever publishes.
 *
 *   201 {"channel":...,"seq":N,"epoch":"...","duplicate":false}
 *   200 ... "duplicate":true    an Idempotency-Key seen before: not re-sent
 *   202 {"channel":...,"accepted":true}   with "Prefer: respond-async"
 *   400 bad channel, body or key; 413 over insite_ws_max_message_size;
 *   503 Redis not reachable (Retry-After: 1)
 *
 * The body's "type" (default "message") and "data" (default: the whole
 * body) fill the envelope, verbatim: jansson validates the body, and
 * insite_json_member_span() finds the bytes of "data", so numbers reach
 * subscribers exactly as they were written.
 *
 * "Prefer: respond-async" (RFC 7240): the answer is 202 as soon as the
 * script call is queued on the Redis connection, not after its reply.
 * HTTP/1.1 answers the requests of one connection one at a time, so with a
 * 201 a publisher connection has one publish in flight (one Redis round
 * trip each); with 202 every request pipelined on it is read in the same
 * loop turn and their script calls leave Redis-bound in one write.  What
 * the client gives up is the seq in the answer and hearing of a failure:
 * a call that fails after the 202 is logged and counted
 * (insite_ws_publish_async_failures_total).  Order is kept: the calls of
 * one connection leave in the order the requests came.  Ignored where
 * insite_ws_publish_replicas is set: a durable publish is answered when
 * replicated.
 */

#include "ngx_insite_ws.h"
#include "insite_json_span.h"
#include <jansson.h>


typedef struct {
    ngx_http_request_t  *request;
    ngx_str_t            channel;
    ngx_str_t            idempotency_key;
    unsigned             async:1;           /* Prefer: respond-async */
} ngx_insite_ws_publish_ctx_t;


/* an accepted (202) publish whose reply is still to come: it outlives the
 * request, so it is its own allocation, freed by the reply handler */
typedef struct {
    ngx_str_t            channel;           /* the bytes follow the struct */
} ngx_insite_ws_publish_async_t;


static void ngx_insite_ws_publish_body(ngx_http_request_t *r);
static ngx_int_t ngx_insite_ws_publish_send(ngx_http_request_t *r,
    ngx_insite_ws_publish_ctx_t *ctx, u_char *body, size_t len);
static void ngx_insite_ws_publish_reply(ngx_insite_redis_status_e status,
    redisReply *reply, void *data);
static ngx_int_t ngx_insite_ws_publish_body_bytes(ngx_http_request_t *r,
    u_char **body, size_t *len);
static ngx_int_t ngx_insite_ws_publish_queue_async(ngx_http_request_t *r,
    ngx_insite_ws_publish_ctx_t *ctx, ngx_insite_redis_t *rd,
    insite_channel_publish_args_t *a);
static void ngx_insite_ws_publish_async_reply(ngx_insite_redis_status_e status,
    redisReply *reply, void *data);
static ngx_int_t ngx_insite_ws_publish_reply_check(ngx_log_t *log,
    const char *what, ngx_str_t *channel, redisReply *reply);
static ngx_int_t ngx_insite_ws_bad(ngx_http_request_t *r, const char *msg);


ngx_int_t
ngx_insite_ws_publish_handler(ngx_http_request_t *r)
{
    u_char                         *dst, *src;
    ngx_int_t                       rc;
    ngx_str_t                       arg;
    ngx_table_elt_t                *h;
    ngx_insite_ws_publish_ctx_t    *ctx;
    ngx_http_insite_ws_loc_conf_t  *wlcf;

    wlcf = ngx_http_get_module_loc_conf(r, ngx_http_insite_ws_module);

    if (r->method != NGX_HTTP_POST) {
        return ngx_insite_ws_refuse(r, NGX_HTTP_NOT_ALLOWED, "bad_request",
                                    "publish with POST", "Allow", "POST");
    }

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_insite_ws_publish_ctx_t));
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->request = r;

    if (ngx_http_arg(r, (u_char *) "channel", 7, &arg) != NGX_OK) {
        return ngx_insite_ws_refuse(r, NGX_HTTP_BAD_REQUEST, "bad_request",
                                    "missing ?channel=NAME", NULL, NULL);
    }

    ctx->channel.data = ngx_pnalloc(r->pool, arg.len);
    if (ctx->channel.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    dst = ctx->channel.data;
    src = arg.data;
    ngx_unescape_uri(&dst, &src, arg.len, 0);
    ctx->channel.len = dst - ctx->channel.data;

    if (ngx_insite_ws_channel_name_valid(&ctx->channel) != NGX_OK) {
        return ngx_insite_ws_refuse(r, NGX_HTTP_BAD_REQUEST, "bad_request",
                                    "channel names are 1-128 characters of "
                                    "A-Z a-z 0-9 _ . : -", NULL, NULL);
    }

    if (ngx_insite_ws_channel_known(wlcf, &ctx->channel) != NGX_OK) {
        return ngx_insite_ws_refuse(r, NGX_HTTP_BAD_REQUEST,
                                    "unknown_channel",
                                    "no such channel here "
                                    "(insite_ws_channels)", NULL, NULL);
    }

    h = ngx_insite_http_header(r, "Idempotency-Key", 15);

    if (h) {
        ctx->idempotency_key = h->value;

        if (!insite_channel_idem_valid((char *) ctx->idempotency_key.data,
                                       ctx->idempotency_key.len))
        {
            return ngx_insite_ws_refuse(r, NGX_HTTP_BAD_REQUEST,
                                        "bad_request",
                                        "Idempotency-Key is 1-128 visible "
                                        "ASCII characters", NULL, NULL);
        }
    }

    ctx->async = wlcf->publish_replicas == 0
                 && ngx_insite_http_prefers(r, "respond-async");

    if (r->headers_in.content_length_n > (off_t) wlcf->max_message_size) {
        return ngx_insite_ws_refuse(r, NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                                    "too_large",
                                    "body over insite_ws_max_message_size",
                                    NULL, NULL);
    }

    ngx_http_set_ctx(r, ctx, ngx_http_insite_ws_module);

    r->request_body_in_single_buf = 1;

    rc = ngx_http_read_client_request_body(r, ngx_insite_ws_publish_body);

    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        return rc;
    }

    return NGX_DONE;
}


static void
ngx_insite_ws_publish_body(ngx_http_request_t *r)
{
    u_char                       *body;
    size_t                        len;
    ngx_int_t                     rc;
    ngx_insite_ws_publish_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_insite_ws_module);
    body = NULL;
    len = 0;

    rc = ngx_insite_ws_publish_body_bytes(r, &body, &len);

    switch (rc) {

    case NGX_OK:
        rc = ngx_insite_ws_publish_send(r, ctx, body, len);
        break;

    case NGX_HTTP_REQUEST_ENTITY_TOO_LARGE:
        rc = ngx_insite_ws_refuse(r, NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                                  "too_large",
                                  "body over insite_ws_max_message_size",
                                  NULL, NULL);
        break;

    case NGX_HTTP_BAD_REQUEST:
        rc = ngx_insite_ws_bad(r, "the body must be a JSON object");
        break;

    default:
        break;
    }

    if (rc != NGX_DONE) {
        ngx_http_finalize_request(r, rc);
    }
}


static ngx_int_t
ngx_insite_ws_publish_body_bytes(ngx_http_request_t *r, u_char **body,
    size_t *len)
{
    u_char                         *p;
    size_t                          size;
    ngx_buf_t                      *b;
    ngx_chain_t                    *cl;
    ngx_http_insite_ws_loc_conf_t  *wlcf;

    wlcf = ngx_http_get_module_loc_conf(r, ngx_http_insite_ws_module);

    /* returns NGX_OK or the HTTP status to answer with: nothing is sent */

    if (r->request_body == NULL || r->request_body->bufs == NULL) {
        return NGX_HTTP_BAD_REQUEST;
    }

    size = 0;

    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        b = cl->buf;
        size += b->in_file ? (size_t) (b->file_last - b->file_pos)
                           : (size_t) (b->last - b->pos);
    }

    if (size > wlcf->max_message_size) {
        return NGX_HTTP_REQUEST_ENTITY_TOO_LARGE;
    }

    p = ngx_pnalloc(r->pool, size + 1);
    if (p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    *body = p;
    *len = size;

    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        b = cl->buf;

        if (b->in_file) {
            /* the location's client_body_buffer_size holds any body within
               the limit (set when the configuration is read): not reached */
            ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                          "insite ws: publish body in a temporary file");
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        p = ngx_cpymem(p, b->pos, b->last - b->pos);
    }

    return NGX_OK;
}


static ngx_int_t
ngx_insite_ws_publish_send(ngx_http_request_t *r,
    ngx_insite_ws_publish_ctx_t *ctx, u_char *body, size_t len)
{
    u_char                           *p, rnd[8], epoch[16], ts[32];
    char                              why[256];
    ngx_tm_t                          tm;
    ngx_time_t                       *tp;
    ngx_insite_redis_t               *rd;
    ngx_insite_redis_cmd_t           *cmd;
    insite_channel_payload_t          pl;
    insite_channel_publish_t          m;
    insite_channel_publish_args_t    *a;
    ngx_http_insite_ws_loc_conf_t    *wlcf;
    ngx_http_insite_ws_main_conf_t   *wmcf;

    wlcf = ngx_http_get_module_loc_conf(r, ngx_http_insite_ws_module);
    wmcf = ngx_insite_ws_main_conf();

    ngx_insite_ws_trace("publish %V body", &ctx->channel);

    /* the body's rules (JSON object, "type" not reserved, "data" verbatim)
       are the channel contract's, shared with the workers */
    if (insite_channel_payload_parse((char *) body, len, &pl, why,
                                     sizeof(why))
        != 0)
    {
        return ngx_insite_ws_bad(r, why);
    }

    rd = ngx_insite_redis_shared();

    if (rd == NULL || rd->state != NGX_INSITE_REDIS_READY) {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "insite ws: publish to \"%V\" refused: Redis is %s",
                      &ctx->channel,
                      rd ? ngx_insite_redis_state_name(rd->state) : "off");
        return ngx_insite_ws_refuse(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                    "service_unavailable",
                                    "Redis is not reachable",
                                    "Retry-After", "1");
    }

    tp = ngx_timeofday();
    ngx_gmtime(tp->sec, &tm);
    p = ngx_sprintf(ts, "%4d-%02d-%02dT%02d:%02d:%02d.%03MZ",
                    tm.ngx_tm_year, tm.ngx_tm_mon, tm.ngx_tm_mday,
                    tm.ngx_tm_hour, tm.ngx_tm_min, tm.ngx_tm_sec, tp->msec);

    ngx_insite_random(rnd, sizeof(rnd));
    ngx_hex_dump(epoch, rnd, sizeof(rnd));

    ngx_memzero(&m, sizeof(m));
    m.channel = (char *) ctx->channel.data;
    m.channel_len = ctx->channel.len;
    m.type = pl.type;
    m.type_len = pl.type_len;
    m.data = pl.data;
    m.data_len = pl.data_len;
    m.idem = ctx->idempotency_key.len ? (char *) ctx->idempotency_key.data
                                      : NULL;
    m.idem_len = ctx->idempotency_key.len;
    m.ts = (char *) ts;
    m.ts_len = p - ts;
    m.epoch = (char *) epoch;
    m.epoch_len = sizeof(epoch);
    m.history = wlcf->history;
    m.idem_ttl = (unsigned long) wmcf->idempotency_ttl;
    m.sharded = (rd->cluster != NULL);

    a = ngx_palloc(r->pool, sizeof(insite_channel_publish_args_t));
    if (a == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (insite_channel_publish_args(a, (char *) wmcf->prefix.data,
                                    wmcf->prefix.len, &m, why, sizeof(why))
        != 0)
    {
        return ngx_insite_ws_bad(r, why);
    }

    if (ctx->async) {
        return ngx_insite_ws_publish_queue_async(r, ctx, rd, a);
    }

    cmd = ngx_insite_redis_eval(rd, wmcf->publish_script,
                                ngx_insite_ws_publish_reply, ctx, a->nkeys,
                                a->nargs, a->argv, a->lens);

    if (cmd == NULL) {
        return ngx_insite_ws_refuse(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                    "service_unavailable",
                                    "Redis is not reachable",
                                    "Retry-After", "1");
    }

    if (ngx_insite_redis_cancel_with_pool(cmd, r->pool) != NGX_OK) {
        ngx_insite_redis_cancel(cmd);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return NGX_DONE;
}


static void
ngx_insite_ws_publish_reply(ngx_insite_redis_status_e status,
    redisReply *reply, void *data)
{
    ngx_insite_ws_publish_ctx_t *ctx = data;

    size_t               len;
    ngx_buf_t           *b;
    ngx_int_t            rc;
    ngx_str_t            epoch, msg;
    ngx_uint_t           duplicate;
    ngx_connection_t    *c;
    ngx_http_request_t  *r;

    r = ctx->request;
    c = r->connection;

    if (status != NGX_INSITE_REDIS_OK) {
        ngx_log_error(NGX_LOG_ERR, c->log, 0,
                      "insite ws: publish to \"%V\" failed: %s",
                      &ctx->channel, ngx_insite_redis_status_name(status));
        rc = ngx_insite_ws_refuse(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                  "service_unavailable",
                                  "Redis did not answer; the message may or "
                                  "may not be published: retry with the "
                                  "same Idempotency-Key",
                                  "Retry-After", "1");
        goto done;
    }

    if (ngx_insite_ws_publish_reply_check(c->log, "publish", &ctx->channel,
                                          reply)
        != NGX_OK)
    {
        ngx_str_set(&msg, "publishing failed");
        rc = ngx_insite_json_error(r, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                   "internal", &msg);
        goto done;
    }

    ngx_insite_ws_trace("publish %V seq %L reply", &ctx->channel,
                        reply->element[0]->integer);

    duplicate = reply->element[2]->integer != 0;
    epoch.data = (u_char *) reply->element[1]->str;
    epoch.len = reply->element[1]->len;

    if (!duplicate) {
        ngx_insite_metric_inc(ngx_insite_ws_main_conf()->metrics.published);
    }

    len = sizeof("{\"channel\":\"\",\"seq\":,\"epoch\":,"
                 "\"duplicate\":false}\n")
          + ctx->channel.len + NGX_INT64_LEN + ngx_insite_json_str_len(&epoch);

    b = ngx_create_temp_buf(r->pool, len);
    if (b == NULL) {
        rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
        goto done;
    }

    b->last = ngx_sprintf(b->last, "{\"channel\":\"%V\",\"seq\":%L,\"epoch\":",
                          &ctx->channel, reply->element[0]->integer);
    b->last = ngx_insite_json_str(b->last, &epoch);
    b->last = ngx_sprintf(b->last, ",\"duplicate\":%s}\n",
                          duplicate ? "true" : "false");

    /* the answer, once insite_ws_publish_replicas are satisfied */
    rc = ngx_insite_ws_publish_replicas_wait(r, &ctx->channel,
                                             duplicate ? NGX_HTTP_OK
                                                       : NGX_HTTP_CREATED,
                                             b);
    if (rc == NGX_DONE) {
        return;
    }

done:

    ngx_http_finalize_request(r, rc);
    ngx_http_run_posted_requests(c);
}


/* The script's answer is { seq, epoch, duplicate }, or it failed: logged. */

static ngx_int_t
ngx_insite_ws_publish_reply_check(ngx_log_t *log, const char *what,
    ngx_str_t *channel, redisReply *reply)
{
    if (reply->type == REDIS_REPLY_ARRAY && reply->elements == 3
        && reply->element[0]->type == REDIS_REPLY_INTEGER
        && reply->element[1]->type == REDIS_REPLY_STRING
        && reply->element[2]->type == REDIS_REPLY_INTEGER)
    {
        return NGX_OK;
    }

    ngx_log_error(NGX_LOG_ERR, log, 0,
                  "insite ws: %s to \"%V\" failed: %s", what, channel,
                  reply->type == REDIS_REPLY_ERROR ? reply->str
                                                   : "unexpected reply");
    return NGX_ERROR;
}


/*
 * Queues the script call with a reply handler of its own and answers 202
 * at once.  The call's arguments are copied into hiredis' output buffer
 * when it is queued, so nothing of the request is needed afterwards.
 */

static ngx_int_t
ngx_insite_ws_publish_queue_async(ngx_http_request_t *r,
    ngx_insite_ws_publish_ctx_t *ctx, ngx_insite_redis_t *rd,
    insite_channel_publish_args_t *a)
{
    size_t                           len;
    ngx_buf_t                       *b;
    ngx_table_elt_t                 *h;
    ngx_insite_redis_cmd_t          *cmd;
    ngx_insite_ws_publish_async_t   *pa;
    ngx_http_insite_ws_main_conf_t  *wmcf;

    wmcf = ngx_insite_ws_main_conf();

    len = sizeof("{\"channel\":\"\",\"accepted\":true}\n") + ctx->channel.len;

    b = ngx_create_temp_buf(r->pool, len);
    h = ngx_list_push(&r->headers_out.headers);

    if (b == NULL || h == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    pa = ngx_alloc(sizeof(ngx_insite_ws_publish_async_t) + ctx->channel.len,
                   r->connection->log);
    if (pa == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    pa->channel.data = (u_char *) (pa + 1);
    pa->channel.len = ctx->channel.len;
    ngx_memcpy(pa->channel.data, ctx->channel.data, ctx->channel.len);

    cmd = ngx_insite_redis_eval(rd, wmcf->publish_script,
                                ngx_insite_ws_publish_async_reply, pa,
                                a->nkeys, a->nargs, a->argv, a->lens);

    if (cmd == NULL) {
        ngx_free(pa);
        return ngx_insite_ws_refuse(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                    "service_unavailable",
                                    "Redis is not reachable",
                                    "Retry-After", "1");
    }

    h->hash = 1;
    ngx_str_set(&h->key, "Preference-Applied");
    ngx_str_set(&h->value, "respond-async");

    /* the channel name is [A-Za-z0-9_.:-]: nothing to escape */
    b->last = ngx_sprintf(b->last, "{\"channel\":\"%V\",\"accepted\":true}\n",
                          &ctx->channel);

    return ngx_insite_json_send(r, NGX_HTTP_ACCEPTED, b);
}


static void
ngx_insite_ws_publish_async_reply(ngx_insite_redis_status_e status,
    redisReply *reply, void *data)
{
    ngx_insite_ws_publish_async_t *pa = data;

    ngx_http_insite_ws_main_conf_t  *wmcf;

    wmcf = ngx_insite_ws_main_conf();

    if (status != NGX_INSITE_REDIS_OK) {
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "insite ws: accepted publish to \"%V\" failed: %s "
                      "(answered 202; not published, or not known to be)",
                      &pa->channel, ngx_insite_redis_status_name(status));
        ngx_insite_metric_inc(wmcf->metrics.async_failures);

    } else if (ngx_insite_ws_publish_reply_check(ngx_cycle->log,
                                                 "accepted publish (202)",
                                                 &pa->channel, reply)
               != NGX_OK)
    {
        ngx_insite_metric_inc(wmcf->metrics.async_failures);

    } else {
        ngx_insite_ws_trace("publish %V seq %L reply", &pa->channel,
                            reply->element[0]->integer);

        if (reply->element[2]->integer == 0) {
            ngx_insite_metric_inc(wmcf->metrics.published);
        }
    }

    ngx_free(pa);
}


static ngx_int_t
ngx_insite_ws_bad(ngx_http_request_t *r, const char *msg)
{
    return ngx_insite_ws_refuse(r, NGX_HTTP_BAD_REQUEST, "bad_request", msg,
                                NULL, NULL);
}
