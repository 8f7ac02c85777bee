/*
 * The client protocol: JSON text frames (docs/ws-protocol.md).
 *
 *   {"op":"subscribe","channels":[...],"since":{...},"id":...}
 *   {"op":"unsubscribe","channels":[...],"id":...}
 *   {"op":"ping","id":...}
 *
 * A bad request gets an error frame and the connection stays.  A subscribe
 * is answered once every channel named is subscribed in Redis in this
 * worker, with the channels' positions read in one script call: then the
 * "subscribed" frame, then for each channel a "reset" if needed, its replay
 * from history, and live messages (ngx_insite_ws_channel.c).
 */

#include "ngx_insite_ws.h"
#include <jansson.h>


typedef struct {
    ngx_queue_t                queue;       /* in wc->requests */
    ngx_insite_ws_conn_t      *wc;
    ngx_str_t                  id;          /* the id as JSON, or empty */
    ngx_uint_t                 n;
    ngx_insite_ws_channel_t  **chs;         /* every channel named */
    ngx_insite_ws_sub_t      **subs;        /* new subscription, or NULL */
    ngx_insite_redis_cmd_t    *cmd;
} ngx_insite_ws_subreq_t;


static void ngx_insite_ws_proto_subscribe(ngx_insite_ws_conn_t *wc,
    json_t *root, ngx_str_t *id);
static void ngx_insite_ws_proto_unsubscribe(ngx_insite_ws_conn_t *wc,
    json_t *root, ngx_str_t *id);
static ngx_int_t ngx_insite_ws_proto_since(ngx_insite_ws_conn_t *wc,
    json_t *since, ngx_str_t *name, ngx_insite_ws_sub_t *sub,
    ngx_str_t *id);
static ngx_int_t ngx_insite_ws_proto_rate(ngx_insite_ws_conn_t *wc,
    ngx_uint_t n);
static ngx_int_t ngx_insite_ws_proto_channel_ok(ngx_insite_ws_conn_t *wc,
    ngx_str_t *name, ngx_str_t *id);
static void ngx_insite_ws_proto_positions(ngx_insite_redis_status_e status,
    redisReply *reply, void *data);
static ngx_int_t ngx_insite_ws_proto_subscribed(ngx_insite_ws_subreq_t *req,
    redisReply *reply);
static void ngx_insite_ws_proto_abort(ngx_insite_ws_subreq_t *req);
static void ngx_insite_ws_proto_unbusy(ngx_insite_ws_subreq_t *req);
static void ngx_insite_ws_proto_free(ngx_insite_ws_subreq_t *req);
static ngx_int_t ngx_insite_ws_proto_reply(ngx_insite_ws_conn_t *wc,
    const char *type, ngx_str_t *id, const char *extra);
static ngx_insite_ws_sub_t *ngx_insite_ws_proto_find(ngx_insite_ws_conn_t *wc,
    ngx_str_t *name);


void
ngx_insite_ws_proto_message(ngx_insite_ws_conn_t *wc, u_char *data, size_t len)
{
    char          *dumped;
    json_t        *root, *op, *jid;
    ngx_str_t      id;
    const char    *name;
    json_error_t   err;

    ngx_str_null(&id);

    root = json_loadb((const char *) data, len, JSON_REJECT_DUPLICATES, &err);

    if (root == NULL || !json_is_object(root)) {
        (void) ngx_insite_ws_proto_error(wc, &id, "bad_json",
                                         root ? "a request is a JSON object"
                                              : err.text);
        json_decref(root);
        return;
    }

    jid = json_object_get(root, "id");
    dumped = NULL;

    if (jid) {
        if (!json_is_string(jid) && !json_is_integer(jid)) {
            (void) ngx_insite_ws_proto_error(wc, &id, "bad_request",
                                             "\"id\" must be a string or an "
                                             "integer");
            json_decref(root);
            return;
        }

        dumped = json_dumps(jid, JSON_ENCODE_ANY | JSON_COMPACT);
        if (dumped) {
            id.data = (u_char *) dumped;
            id.len = ngx_strlen(dumped);
        }
    }

    op = json_object_get(root, "op");
    name = json_is_string(op) ? json_string_value(op) : NULL;

    if (name == NULL) {
        (void) ngx_insite_ws_proto_error(wc, &id, "bad_request",
                                         "\"op\" is missing");

    } else if (ngx_strcmp(name, "subscribe") == 0) {
        ngx_insite_ws_proto_subscribe(wc, root, &id);

    } else if (ngx_strcmp(name, "unsubscribe") == 0) {
        ngx_insite_ws_proto_unsubscribe(wc, root, &id);

    } else if (ngx_strcmp(name, "ping") == 0) {
        (void) ngx_insite_ws_proto_reply(wc, "pong", &id, NULL);

    } else {
        (void) ngx_insite_ws_proto_error(wc, &id, "unknown_op",
                                         "op must be subscribe, unsubscribe "
                                         "or ping");
    }

    free(dumped);
    json_decref(root);
}


static void
ngx_insite_ws_proto_subscribe(ngx_insite_ws_conn_t *wc, json_t *root,
    ngx_str_t *id)
{
    u_char                   *p;
    size_t                    size;
    json_t                   *channels, *since, *last, *v;
    ngx_str_t                 name;
    ngx_uint_t                i, j, n, added;
    ngx_insite_ws_sub_t      *sub;
    ngx_insite_ws_subreq_t   *req;
    ngx_insite_ws_channel_t  *ch;

    channels = json_object_get(root, "channels");
    since = json_object_get(root, "since");
    last = json_object_get(root, "last");

    if (last && (!json_is_integer(last) || json_integer_value(last) < 0
                 || json_integer_value(last) > NGX_INSITE_WS_LAST_MAX))
    {
        (void) ngx_insite_ws_proto_error(wc, id, "bad_request",
                                         "\"last\" is a count of 0-1000 "
                                         "messages");
        return;
    }

    if (!json_is_array(channels) || json_array_size(channels) == 0) {
        (void) ngx_insite_ws_proto_error(wc, id, "bad_request",
                                         "\"channels\" must be a non-empty "
                                         "array of channel names");
        return;
    }

    if (since && !json_is_object(since)) {
        (void) ngx_insite_ws_proto_error(wc, id, "bad_request",
                                         "\"since\" must be an object");
        return;
    }

    n = json_array_size(channels);
    added = 0;

    if (ngx_insite_ws_proto_rate(wc, n) != NGX_OK) {
        (void) ngx_insite_ws_proto_error(wc, id, "rate_limited",
                                         "too many channels subscribed too "
                                         "fast (insite_ws_subscribe_rate); "
                                         "nothing was subscribed, retry "
                                         "later");
        return;
    }

    /* validate everything first: a bad request subscribes nothing */

    for (i = 0; i < n; i++) {
        v = json_array_get(channels, i);

        if (!json_is_string(v)) {
            (void) ngx_insite_ws_proto_error(wc, id, "bad_channel",
                                             "channel names are strings");
            return;
        }

        name.data = (u_char *) json_string_value(v);
        name.len = json_string_length(v);

        if (ngx_insite_ws_proto_channel_ok(wc, &name, id) != NGX_OK) {
            return;
        }

        for (j = 0; j < i; j++) {
            if (json_equal(v, json_array_get(channels, j))) {
                break;
            }
        }

        if (j == i && ngx_insite_ws_proto_find(wc, &name) == NULL) {
            added++;
        }
    }

    if (wc->nsubs + added > wc->conf->max_channels) {
        (void) ngx_insite_ws_proto_error(wc, id, "too_many_channels",
                                         "subscribe would pass "
                                         "insite_ws_max_channels");
        return;
    }

    if (ngx_insite_redis_shared() == NULL
        || ngx_insite_redis_shared()->state != NGX_INSITE_REDIS_READY)
    {
        (void) ngx_insite_ws_proto_error(wc, id, "unavailable",
                                         "Redis is not reachable, "
                                         "try again shortly");
        return;
    }

    size = sizeof(ngx_insite_ws_subreq_t)
           + n * (sizeof(ngx_insite_ws_channel_t *)
                  + sizeof(ngx_insite_ws_sub_t *))
           + id->len;

    req = ngx_calloc(size, wc->connection->log);
    if (req == NULL) {
        (void) ngx_insite_ws_proto_error(wc, id, "internal", "out of memory");
        return;
    }

    p = (u_char *) (req + 1);
    req->chs = (ngx_insite_ws_channel_t **) p;
    p += n * sizeof(ngx_insite_ws_channel_t *);
    req->subs = (ngx_insite_ws_sub_t **) p;
    p += n * sizeof(ngx_insite_ws_sub_t *);
    req->id.data = p;
    req->id.len = id->len;
    ngx_memcpy(p, id->data, id->len);

    req->wc = wc;
    ngx_queue_insert_tail(&wc->requests, &req->queue);

    for (i = 0; i < n; i++) {
        v = json_array_get(channels, i);
        name.data = (u_char *) json_string_value(v);
        name.len = json_string_length(v);

        for (j = 0; j < req->n; j++) {
            if (req->chs[j]->node.str.len == name.len
                && ngx_strncmp(req->chs[j]->node.str.data, name.data,
                               name.len) == 0)
            {
                break;
            }
        }

        if (j < req->n) {
            continue;               /* named twice */
        }

        sub = ngx_insite_ws_proto_find(wc, &name);

        if (sub) {
            /* already subscribed: report its position, replay nothing */
            sub->ch->busy++;
            req->chs[req->n++] = sub->ch;
            continue;
        }

        ch = ngx_insite_ws_channel_get(&name, 1);
        sub = ch ? ngx_insite_ws_channel_join(ch, wc) : NULL;

        if (sub == NULL) {
            ngx_insite_ws_proto_abort(req);
            (void) ngx_insite_ws_proto_error(wc, id, "internal",
                                             "out of memory");
            return;
        }

        sub->request = req;
        sub->last = last ? (uint64_t) json_integer_value(last) : 0;
        ch->busy++;                 /* the request holds its channels */
        req->chs[req->n] = ch;
        req->subs[req->n] = sub;
        req->n++;

        if (since
            && ngx_insite_ws_proto_since(wc, json_object_get(since,
                                         (const char *) name.data),
                                         &name, sub, id)
               != NGX_OK)
        {
            ngx_insite_ws_proto_abort(req);
            return;
        }
    }

    ngx_insite_ws_proto_continue(req);
}


static ngx_int_t
ngx_insite_ws_proto_since(ngx_insite_ws_conn_t *wc, json_t *v,
    ngx_str_t *name, ngx_insite_ws_sub_t *sub, ngx_str_t *id)
{
    json_t      *seq, *epoch;
    const char  *e;

    if (v == NULL) {
        return NGX_OK;
    }

    if (json_is_object(v)) {
        seq = json_object_get(v, "seq");
        epoch = json_object_get(v, "epoch");

    } else {
        seq = v;
        epoch = NULL;
    }

    if (!json_is_integer(seq) || json_integer_value(seq) < 0
        || (epoch && !json_is_string(epoch)))
    {
        (void) ngx_insite_ws_proto_error(wc, id, "bad_request",
                                         "\"since\" values are a seq >= 0 or "
                                         "{\"seq\":N,\"epoch\":\"...\"}");
        return NGX_ERROR;
    }

    sub->has_since = 1;
    sub->since = (uint64_t) json_integer_value(seq);

    if (epoch) {
        e = json_string_value(epoch);
        sub->since_epoch.len = ngx_min(json_string_length(epoch),
                                       NGX_INSITE_WS_EPOCH_LEN);
        ngx_memcpy(sub->epoch_buf, e, sub->since_epoch.len);
        sub->since_epoch.data = sub->epoch_buf;
    }

    return NGX_OK;
}


/*
 * insite_ws_subscribe_rate: a token bucket per connection, one token per
 * channel named in a subscribe, kept in thousandths so slow rates refill
 * smoothly.  A subscribe that does not fit is refused whole.
 */

static ngx_int_t
ngx_insite_ws_proto_rate(ngx_insite_ws_conn_t *wc, ngx_uint_t n)
{
    ngx_uint_t   cap, add;
    ngx_msec_t   elapsed;

    cap = wc->conf->subscribe_burst * 1000;
    elapsed = ngx_current_msec - wc->sub_refill;
    wc->sub_refill = ngx_current_msec;

    /* rate tokens per second = rate thousandths per ms */
    add = (elapsed > cap) ? cap : elapsed * wc->conf->subscribe_rate;
    wc->sub_tokens = ngx_min(cap, wc->sub_tokens + add);

    if (n > wc->conf->subscribe_burst || n * 1000 > wc->sub_tokens) {
        return NGX_DECLINED;
    }

    wc->sub_tokens -= n * 1000;

    return NGX_OK;
}


static ngx_int_t
ngx_insite_ws_proto_channel_ok(ngx_insite_ws_conn_t *wc, ngx_str_t *name,
    ngx_str_t *id)
{
    ngx_str_t  *prefix;

    if (ngx_insite_ws_channel_name_valid(name) != NGX_OK) {
        (void) ngx_insite_ws_proto_error(wc, id, "bad_channel",
                                         "channel names are 1-128 characters "
                                         "of A-Z a-z 0-9 _ . : -");
        return NGX_ERROR;
    }

    if (ngx_insite_ws_channel_known(wc->conf, name) != NGX_OK) {
        (void) ngx_insite_ws_proto_error(wc, id, "unknown_channel",
                                         "no such channel here "
                                         "(insite_ws_channels)");
        return NGX_ERROR;
    }

    prefix = &wc->conf->private_prefix;

    if (prefix->len && name->len >= prefix->len
        && ngx_strncmp(name->data, prefix->data, prefix->len) == 0
        && (wc->user.len == 0
            || name->len - prefix->len != wc->user.len
            || ngx_strncmp(name->data + prefix->len, wc->user.data,
                           wc->user.len) != 0))
    {
        ngx_log_error(NGX_LOG_INFO, wc->connection->log, 0,
                      "insite ws: user \"%V\" may not subscribe to \"%V\"",
                      &wc->user, name);
        (void) ngx_insite_ws_proto_error(wc, id, "forbidden",
                                         "private channel of another user");
        return NGX_ERROR;
    }

    return NGX_OK;
}


/*
 * Called after the joins and again each time one of the request's channels
 * is confirmed by Redis; proceeds once all are.
 */

void
ngx_insite_ws_proto_continue(void *data)
{
    ngx_insite_ws_subreq_t *req = data;

    ngx_uint_t  i;

    if (req->cmd) {
        return;                     /* positions already asked for */
    }

    for (i = 0; i < req->n; i++) {
        if (req->chs[i]->state < NGX_INSITE_WS_CH_POSITIONING) {
            return;
        }
    }

    if (ngx_insite_ws_redis_positions(req->chs, req->n,
                                      ngx_insite_ws_proto_positions, req,
                                      &req->cmd)
        != NGX_OK)
    {
        (void) ngx_insite_ws_proto_error(req->wc, &req->id, "unavailable",
                                         "Redis is not reachable, "
                                         "try again shortly");
        ngx_insite_ws_proto_abort(req);
    }
}


static void
ngx_insite_ws_proto_positions(ngx_insite_redis_status_e status,
    redisReply *reply, void *data)
{
    ngx_insite_ws_subreq_t *req = data;

    uint64_t                  top;
    ngx_str_t                 epoch;
    ngx_uint_t                i;
    ngx_insite_ws_conn_t     *wc;
    ngx_insite_ws_sub_t      *sub;

    wc = req->wc;
    req->cmd = NULL;

    if (status != NGX_INSITE_REDIS_OK || reply->type != REDIS_REPLY_ARRAY
        || reply->elements != 2 * req->n)
    {
        ngx_insite_ws_proto_unbusy(req);
        ngx_log_error(NGX_LOG_ERR, wc->connection->log, 0,
                      "insite ws: reading channel positions failed: %s",
                      status != NGX_INSITE_REDIS_OK
                      ? ngx_insite_redis_status_name(status)
                      : (reply->type == REDIS_REPLY_ERROR ? reply->str
                                                          : "bad reply"));
        (void) ngx_insite_ws_proto_error(wc, &req->id, "unavailable",
                                         "Redis is not reachable, "
                                         "try again shortly");
        ngx_insite_ws_proto_abort(req);
        return;
    }

    for (i = 0; i < req->n; i++) {
        top = (uint64_t) reply->element[2 * i]->integer;
        epoch.data = (u_char *) reply->element[2 * i + 1]->str;
        epoch.len = reply->element[2 * i + 1]->len;

        ngx_insite_ws_channel_position(req->chs[i], top, &epoch);
    }

    if (ngx_insite_ws_proto_subscribed(req, reply) != NGX_OK) {
        ngx_insite_ws_proto_unbusy(req);
        ngx_insite_ws_proto_abort(req);
        return;
    }

    for (i = 0; i < req->n; i++) {
        sub = req->subs[i];
        if (sub == NULL) {
            continue;
        }

        sub->request = NULL;
        epoch.data = (u_char *) reply->element[2 * i + 1]->str;
        epoch.len = reply->element[2 * i + 1]->len;

        ngx_insite_ws_channel_start(sub,
                                    (uint64_t) reply->element[2 * i]->integer,
                                    &epoch);
    }

    ngx_insite_ws_proto_unbusy(req);
    ngx_insite_ws_proto_free(req);
}


/* the end of a subscribe: its own hold on the channels goes too */

static void
ngx_insite_ws_proto_free(ngx_insite_ws_subreq_t *req)
{
    ngx_uint_t  i;

    ngx_queue_remove(&req->queue);

    for (i = 0; i < req->n; i++) {
        ngx_insite_ws_channel_unbusy(req->chs[i]);
    }

    ngx_free(req);
}


/* ngx_insite_ws_redis_positions() holds the channels until the reply */

static void
ngx_insite_ws_proto_unbusy(ngx_insite_ws_subreq_t *req)
{
    ngx_uint_t  i;

    for (i = 0; i < req->n; i++) {
        ngx_insite_ws_channel_unbusy(req->chs[i]);
    }
}


static ngx_int_t
ngx_insite_ws_proto_subscribed(ngx_insite_ws_subreq_t *req, redisReply *reply)
{
    u_char      *buf, *p;
    size_t       len;
    ngx_int_t    rc;
    ngx_str_t    epoch;
    ngx_uint_t   i;

    len = sizeof("{\"type\":\"subscribed\",\"id\":,\"channels\":{}}") + req->id.len;

    for (i = 0; i < req->n; i++) {
        epoch.data = (u_char *) reply->element[2 * i + 1]->str;
        epoch.len = reply->element[2 * i + 1]->len;
        len += req->chs[i]->node.str.len + ngx_insite_json_str_len(&epoch)
               + sizeof("\"\":{\"seq\":,\"epoch\":},") + NGX_INT64_LEN;
    }

    buf = ngx_alloc(len, req->wc->connection->log);
    if (buf == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(buf, "{\"type\":\"subscribed\"",
                   sizeof("{\"type\":\"subscribed\"") - 1);

    if (req->id.len) {
        p = ngx_sprintf(p, ",\"id\":%V", &req->id);
    }

    p = ngx_cpymem(p, ",\"channels\":{", sizeof(",\"channels\":{") - 1);

    for (i = 0; i < req->n; i++) {
        epoch.data = (u_char *) reply->element[2 * i + 1]->str;
        epoch.len = reply->element[2 * i + 1]->len;

        p = ngx_sprintf(p, "%s\"%V\":{\"seq\":%uL,\"epoch\":",
                        i ? "," : "", &req->chs[i]->node.str,
                        (uint64_t) reply->element[2 * i]->integer);
        p = ngx_insite_json_str(p, &epoch);
        *p++ = '}';
    }

    *p++ = '}';
    *p++ = '}';

    rc = ngx_insite_ws_send_text(req->wc, buf, p - buf);
    ngx_free(buf);

    return rc == NGX_ERROR ? NGX_ERROR : NGX_OK;
}


/* Undoes a subscribe that cannot complete. */

static void
ngx_insite_ws_proto_abort(ngx_insite_ws_subreq_t *req)
{
    ngx_uint_t  i;

    if (req->cmd) {
        ngx_insite_redis_cancel(req->cmd);
        req->cmd = NULL;
        ngx_insite_ws_proto_unbusy(req);
    }

    for (i = 0; i < req->n; i++) {
        if (req->subs[i]) {
            req->subs[i]->request = NULL;
            ngx_insite_ws_channel_leave(req->subs[i]);
        }
    }

    ngx_insite_ws_proto_free(req);
}


/* A subscription left while its subscribe was in flight. */

void
ngx_insite_ws_proto_forget(ngx_insite_ws_sub_t *sub)
{
    ngx_uint_t               i;
    ngx_insite_ws_subreq_t  *req = sub->request;

    sub->request = NULL;

    for (i = 0; i < req->n; i++) {
        if (req->subs[i] == sub) {
            break;
        }
    }

    if (i == req->n) {
        return;
    }

    if (req->cmd) {
        /* positions are being read in this order: keep the slot */
        req->subs[i] = NULL;
        return;
    }

    /* unsubscribed before it was subscribed: not part of the answer */
    ngx_insite_ws_channel_unbusy(req->chs[i]);
    req->n--;
    ngx_memmove(&req->chs[i], &req->chs[i + 1],
                (req->n - i) * sizeof(ngx_insite_ws_channel_t *));
    ngx_memmove(&req->subs[i], &req->subs[i + 1],
                (req->n - i) * sizeof(ngx_insite_ws_sub_t *));

    if (req->n == 0) {
        (void) ngx_insite_ws_proto_reply(req->wc, "subscribed", &req->id,
                                         ",\"channels\":{}");
        ngx_insite_ws_proto_free(req);
        return;
    }

    /* what was left waiting for may all be there now */
    ngx_insite_ws_proto_continue(req);
}


void
ngx_insite_ws_proto_cancel(ngx_insite_ws_conn_t *wc)
{
    ngx_queue_t             *q;
    ngx_insite_ws_subreq_t  *req;

    while (!ngx_queue_empty(&wc->requests)) {
        q = ngx_queue_head(&wc->requests);
        req = ngx_queue_data(q, ngx_insite_ws_subreq_t, queue);
        ngx_insite_ws_proto_abort(req);
    }
}


static void
ngx_insite_ws_proto_unsubscribe(ngx_insite_ws_conn_t *wc, json_t *root,
    ngx_str_t *id)
{
    u_char               *buf, *p;
    size_t                len;
    json_t               *channels, *v;
    ngx_str_t             name;
    ngx_uint_t            i, n, k;
    ngx_insite_ws_sub_t  *sub;

    channels = json_object_get(root, "channels");

    if (!json_is_array(channels) || json_array_size(channels) == 0) {
        (void) ngx_insite_ws_proto_error(wc, id, "bad_request",
                                         "\"channels\" must be a non-empty "
                                         "array of channel names");
        return;
    }

    n = json_array_size(channels);
    len = sizeof(",\"channels\":[]");

    for (i = 0; i < n; i++) {
        v = json_array_get(channels, i);
        if (!json_is_string(v)) {
            (void) ngx_insite_ws_proto_error(wc, id, "bad_channel",
                                             "channel names are strings");
            return;
        }
        len += json_string_length(v) + 3;
    }

    buf = ngx_alloc(len, wc->connection->log);
    if (buf == NULL) {
        return;
    }

    p = ngx_cpymem(buf, ",\"channels\":[", sizeof(",\"channels\":[") - 1);
    k = 0;

    for (i = 0; i < n; i++) {
        v = json_array_get(channels, i);
        name.data = (u_char *) json_string_value(v);
        name.len = json_string_length(v);

        sub = ngx_insite_ws_proto_find(wc, &name);
        if (sub == NULL) {
            continue;               /* not subscribed: nothing to undo */
        }

        ngx_insite_ws_channel_leave(sub);
        p = ngx_sprintf(p, "%s\"%V\"", k++ ? "," : "", &name);
    }

    *p++ = ']';
    *p = '\0';

    (void) ngx_insite_ws_proto_reply(wc, "unsubscribed", id, (char *) buf);
    ngx_free(buf);
}


static ngx_insite_ws_sub_t *
ngx_insite_ws_proto_find(ngx_insite_ws_conn_t *wc, ngx_str_t *name)
{
    ngx_queue_t          *q;
    ngx_insite_ws_sub_t  *sub;

    for (q = ngx_queue_head(&wc->subs);
         q != ngx_queue_sentinel(&wc->subs);
         q = ngx_queue_next(q))
    {
        sub = ngx_queue_data(q, ngx_insite_ws_sub_t, conn_link);

        if (sub->ch->node.str.len == name->len
            && ngx_strncmp(sub->ch->node.str.data, name->data, name->len) == 0)
        {
            return sub;
        }
    }

    return NULL;
}


/* {"type":"<type>"[,"id":<id>]<extra>} */

static ngx_int_t
ngx_insite_ws_proto_reply(ngx_insite_ws_conn_t *wc, const char *type,
    ngx_str_t *id, const char *extra)
{
    u_char     *buf, *p;
    size_t      len;
    ngx_int_t   rc;

    len = sizeof("{\"type\":\"\",\"id\":}") + ngx_strlen(type) + id->len
          + (extra ? ngx_strlen(extra) : 0);

    buf = ngx_alloc(len, wc->connection->log);
    if (buf == NULL) {
        return NGX_ERROR;
    }

    p = ngx_sprintf(buf, "{\"type\":\"%s\"", type);

    if (id->len) {
        p = ngx_sprintf(p, ",\"id\":%V", id);
    }

    if (extra) {
        p = ngx_cpymem(p, extra, ngx_strlen(extra));
    }

    *p++ = '}';

    rc = ngx_insite_ws_send_text(wc, buf, p - buf);
    ngx_free(buf);

    return rc;
}


ngx_int_t
ngx_insite_ws_proto_error(ngx_insite_ws_conn_t *wc, ngx_str_t *id,
    const char *code, const char *message)
{
    u_char     *buf, *p;
    size_t      len;
    ngx_int_t   rc;
    ngx_str_t   m;

    ngx_insite_metric_inc(ngx_insite_ws_main_conf()->metrics.client_errors);

    ngx_log_error(NGX_LOG_INFO, wc->connection->log, 0,
                  "insite ws: client error %s: %s", code, message);

    m.data = (u_char *) message;
    m.len = ngx_strlen(message);

    len = sizeof(",\"code\":\"\",\"message\":") + ngx_strlen(code)
          + ngx_insite_json_str_len(&m);

    buf = ngx_alloc(len, wc->connection->log);
    if (buf == NULL) {
        return NGX_ERROR;
    }

    p = ngx_sprintf(buf, ",\"code\":\"%s\",\"message\":", code);
    p = ngx_insite_json_str(p, &m);
    *p = '\0';

    rc = ngx_insite_ws_proto_reply(wc, "error", id, (char *) buf);
    ngx_free(buf);

    return rc;
}


/* {"type":"reset","channel":...,"epoch":...,"first_seq":N} */

ngx_int_t
ngx_insite_ws_proto_reset(ngx_insite_ws_sub_t *sub, uint64_t first_seq)
{
    u_char                   buf[NGX_INSITE_WS_CHANNEL_MAX
                                 + NGX_INSITE_WS_EPOCH_LEN * 6 + 128];
    u_char                  *p;
    ngx_str_t                epoch;
    ngx_insite_ws_channel_t *ch = sub->ch;

    ngx_insite_metric_inc(ngx_insite_ws_main_conf()->metrics.resets);

    epoch.data = ch->epoch;
    epoch.len = ch->epoch_len;

    p = ngx_sprintf(buf, "{\"type\":\"reset\",\"channel\":\"%V\",\"epoch\":",
                    &ch->node.str);
    p = ngx_insite_json_str(p, &epoch);
    p = ngx_sprintf(p, ",\"first_seq\":%uL}", first_seq);

    /* what is queued before the reset must not merge with what follows */
    ngx_insite_ws_conflate_end(sub);

    return ngx_insite_ws_send_text(sub->wc, buf, p - buf);
}
