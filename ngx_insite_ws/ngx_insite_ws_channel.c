/*
 * This worker's channels and their subscribers.
 *
 * Order and completeness rest on the per-channel sequence numbers assigned
 * in Redis (lua/publish.lua).  Two cursors keep every client gap-free and
 * duplicate-free:
 *
 *   ch->last_seq    the channel's in-order stream in this worker: a live
 *                   message is fanned out only if it is last_seq + 1; a gap
 *                   (pub/sub is at-most-once) switches the channel to
 *                   REPAIRING, which reads the missing range from history;
 *   sub->cursor     the last seq sent to one client.  A LIVE subscriber gets
 *                   a fanned-out message only if it is cursor + 1; one that
 *                   is behind (resume, or joined while the channel lagged)
 *                   is CATCHUP and reads history on its own until it reaches
 *                   the channel, then turns LIVE.
 *
 * A live message is framed once and the frame is queued, by reference, to
 * every LIVE subscriber.  When history no longer holds what a client needs,
 * or Redis lost the channel (its epoch changed), the client gets a "reset"
 * saying so before the data that follows.
 */

#include "ngx_insite_ws.h"


static void ngx_insite_ws_channel_drop(ngx_insite_ws_channel_t *ch);
static void ngx_insite_ws_channel_deliver(ngx_insite_ws_channel_t *ch,
    uint64_t seq, u_char *msg, size_t len);
static void ngx_insite_ws_channel_lost(ngx_insite_ws_channel_t *ch,
    uint64_t first);
static void ngx_insite_ws_channel_epoch(ngx_insite_ws_channel_t *ch,
    ngx_str_t *epoch);
static void ngx_insite_ws_channel_regressed(ngx_insite_ws_channel_t *ch,
    uint64_t top);
static void ngx_insite_ws_channel_restart(ngx_insite_ws_channel_t *ch);
static ngx_int_t ngx_insite_ws_channel_reused(ngx_insite_ws_channel_t *ch,
    uint64_t seq, u_char *msg, size_t len);
static ngx_int_t ngx_insite_ws_channel_same_epoch(ngx_insite_ws_channel_t *ch,
    ngx_str_t *epoch);
static void ngx_insite_ws_channel_set_epoch(ngx_insite_ws_channel_t *ch,
    ngx_str_t *epoch);
static ngx_int_t ngx_insite_ws_channel_first_epoch(
    ngx_insite_ws_channel_t *ch);
static void ngx_insite_ws_sub_history(ngx_insite_ws_channel_t *ch,
    ngx_insite_ws_sub_t *sub, redisReply *reply);
static void ngx_insite_ws_channel_check_reply(
    ngx_insite_redis_status_e status, redisReply *reply, void *data);


/*
 * A check round: the channels one periodic check (or a resubscribe) must
 * compare with Redis, read NGX_INSITE_WS_CHECK_BATCH per script call with at
 * most NGX_INSITE_WS_CHECK_INFLIGHT calls outstanding; each answer sends the
 * next batch.  One round at a time: a check that finds the previous round
 * still reading starts none, and a batch that fails (timeout, lost
 * connection) ends the round, its channels keeping their marks for the next
 * one.  So after an outage with 10k channels the re-read is a steady trickle
 * the command connection can carry, not 100 scripts at once that time out
 * and are all sent again by the next check (issue 18).
 */
typedef struct {
    ngx_uint_t                 n;         /* channels */
    ngx_uint_t                 next;      /* first not yet sent */
    ngx_uint_t                 inflight;  /* batches sent, unanswered */
    unsigned                   failed:1;
    unsigned                   sending:1;
    ngx_insite_ws_channel_t  **chs;       /* busy references until sent */
} ngx_insite_ws_check_round_t;


typedef struct {
    ngx_insite_ws_check_round_t  *round;
    ngx_uint_t                    first;
    ngx_uint_t                    n;
} ngx_insite_ws_check_t;


#define NGX_INSITE_WS_CHECK_BATCH     100
#define NGX_INSITE_WS_CHECK_INFLIGHT  4


/* the round in progress in this worker, if any */
static ngx_insite_ws_check_round_t  *ngx_insite_ws_check_round;


static void ngx_insite_ws_channel_check_next(
    ngx_insite_ws_check_round_t *round);
static ngx_int_t ngx_insite_ws_channel_check_add(
    ngx_insite_ws_channel_t ***chs, ngx_uint_t n, ngx_insite_ws_channel_t *ch);
static void ngx_insite_ws_channel_check_unbusy(ngx_insite_ws_channel_t **chs,
    ngx_uint_t n);


ngx_int_t
ngx_insite_ws_channel_name_valid(ngx_str_t *name)
{
    return insite_channel_name_valid((char *) name->data, name->len)
           ? NGX_OK : NGX_DECLINED;
}


/* insite_ws_channels: NGX_OK when the name matches a pattern, or when the
   location names none (every valid name exists) */

ngx_int_t
ngx_insite_ws_channel_known(ngx_http_insite_ws_loc_conf_t *wlcf,
    ngx_str_t *name)
{
    if (wlcf->channels == NULL) {
        return NGX_OK;
    }

    return ngx_insite_ws_channel_match(wlcf->channels, name);
}


/* NGX_OK when the name matches one of the patterns (ngx_str_t) */

ngx_int_t
ngx_insite_ws_channel_match(ngx_array_t *patterns, ngx_str_t *name)
{
    ngx_str_t   *pat;
    ngx_uint_t   i;

    pat = patterns->elts;

    for (i = 0; i < patterns->nelts; i++) {
        if (insite_channel_glob_match((char *) pat[i].data, pat[i].len,
                                      (char *) name->data, name->len))
        {
            return NGX_OK;
        }
    }

    return NGX_DECLINED;
}


ngx_insite_ws_channel_t *
ngx_insite_ws_channel_get(ngx_str_t *name, ngx_uint_t create)
{
    uint32_t                         hash;
    ngx_str_node_t                  *node;
    ngx_insite_ws_channel_t         *ch;
    ngx_http_insite_ws_main_conf_t  *wmcf;

    wmcf = ngx_insite_ws_main_conf();
    hash = ngx_crc32_long(name->data, name->len);

    node = ngx_str_rbtree_lookup(&wmcf->channels, name, hash);
    if (node) {
        return (ngx_insite_ws_channel_t *) node;
    }

    if (!create) {
        return NULL;
    }

    ch = ngx_calloc(sizeof(ngx_insite_ws_channel_t) + name->len,
                    ngx_cycle->log);
    if (ch == NULL) {
        return NULL;
    }

    ch->node.str.data = (u_char *) (ch + 1);
    ch->node.str.len = name->len;
    ngx_memcpy(ch->node.str.data, name->data, name->len);
    ch->node.node.key = hash;
    ngx_queue_init(&ch->subs);

    ngx_rbtree_insert(&wmcf->channels, &ch->node.node);
    wmcf->nchannels++;
    ngx_insite_metric_add_value(wmcf->metrics.channels, 1);

    (void) ngx_insite_ws_redis_subscribe(ch);

    return ch;
}


ngx_insite_ws_sub_t *
ngx_insite_ws_channel_join(ngx_insite_ws_channel_t *ch,
    ngx_insite_ws_conn_t *wc)
{
    ngx_insite_ws_sub_t  *sub;

    sub = ngx_calloc(sizeof(ngx_insite_ws_sub_t), wc->connection->log);
    if (sub == NULL) {
        if (ch->nsubs == 0) {
            ngx_insite_ws_channel_drop(ch);
        }
        return NULL;
    }

    sub->ch = ch;
    sub->wc = wc;
    sub->state = NGX_INSITE_WS_SUB_WAIT;
    sub->conflate = wc->conf->conflate
                    && ngx_insite_ws_channel_match(wc->conf->conflate,
                                                   &ch->node.str) == NGX_OK;
    insite_ws_cq_init(&sub->run);

    ngx_queue_insert_tail(&ch->subs, &sub->chan_link);
    ngx_queue_insert_tail(&wc->subs, &sub->conn_link);
    ch->nsubs++;
    wc->nsubs++;

    ngx_insite_metric_inc(ngx_insite_ws_main_conf()->metrics.subscriptions);

    return sub;
}


void
ngx_insite_ws_channel_leave(ngx_insite_ws_sub_t *sub)
{
    ngx_insite_ws_channel_t  *ch = sub->ch;

    if (sub->request) {
        ngx_insite_ws_proto_forget(sub);
    }

    if (sub->cmd) {
        ngx_insite_redis_cancel(sub->cmd);
        sub->cmd = NULL;
    }

    /* its queued messages still go out, as nobody's run */
    ngx_insite_ws_conflate_end(sub);

    ngx_queue_remove(&sub->chan_link);
    ngx_queue_remove(&sub->conn_link);
    ch->nsubs--;
    sub->wc->nsubs--;

    ngx_insite_metric_add_value(
        ngx_insite_ws_main_conf()->metrics.subscriptions, -1);

    ngx_free(sub);

    if (ch->nsubs == 0) {
        ngx_insite_ws_channel_drop(ch);
    }
}


/* the last local subscriber left: stop listening, free once unreferenced */

static void
ngx_insite_ws_channel_drop(ngx_insite_ws_channel_t *ch)
{
    ngx_http_insite_ws_main_conf_t  *wmcf;

    wmcf = ngx_insite_ws_main_conf();

    ngx_rbtree_delete(&wmcf->channels, &ch->node.node);
    wmcf->nchannels--;
    ngx_insite_metric_add_value(wmcf->metrics.channels, -1);

    if (ch->state != NGX_INSITE_WS_CH_UNSUBSCRIBED) {
        (void) ngx_insite_ws_redis_unsubscribe(ch);
    }

    ch->dead = 1;

    if (ch->busy == 0) {
        ngx_free(ch);
    }
}


void
ngx_insite_ws_channel_unbusy(ngx_insite_ws_channel_t *ch)
{
    if (--ch->busy == 0 && ch->dead) {
        ngx_free(ch);
    }
}


/* Redis confirmed the SUBSCRIBE: live messages flow from now on. */

void
ngx_insite_ws_channel_subscribed(ngx_insite_ws_channel_t *ch)
{
    void                 **reqs, **more;
    ngx_uint_t             i, n;
    ngx_queue_t           *q, *rq;
    ngx_insite_ws_sub_t   *sub;

    if (ch->state != NGX_INSITE_WS_CH_SUBSCRIBING) {
        return;
    }

    if (ch->positioned) {
        /* back after an outage: whatever was missed is repaired at once */
        ch->state = NGX_INSITE_WS_CH_LIVE;
        ch->resubscribed = 1;
        ngx_insite_ws_redis_check_soon();

    } else {
        ch->state = NGX_INSITE_WS_CH_POSITIONING;
    }

    /*
     * Subscribes waiting for this channel: every pending subscribe of the
     * connections that follow it (one may name a channel its connection
     * already joined).  Collected first, since continuing one may abort it
     * and so change ch->subs.
     */

    n = 0;

    for (q = ngx_queue_head(&ch->subs);
         q != ngx_queue_sentinel(&ch->subs);
         q = ngx_queue_next(q))
    {
        sub = ngx_queue_data(q, ngx_insite_ws_sub_t, chan_link);
        n += ngx_queue_empty(&sub->wc->requests) ? 0 : 1;
    }

    if (n == 0) {
        return;
    }

    reqs = NULL;
    n = 0;

    for (q = ngx_queue_head(&ch->subs);
         q != ngx_queue_sentinel(&ch->subs);
         q = ngx_queue_next(q))
    {
        sub = ngx_queue_data(q, ngx_insite_ws_sub_t, chan_link);

        for (rq = ngx_queue_head(&sub->wc->requests);
             rq != ngx_queue_sentinel(&sub->wc->requests);
             rq = ngx_queue_next(rq))
        {
            for (i = 0; i < n && reqs[i] != (void *) rq; i++) { /* void */ }

            if (i < n) {
                continue;
            }

            if (n % 16 == 0) {
                more = ngx_alloc((n + 16) * sizeof(void *), ngx_cycle->log);
                if (more == NULL) {
                    ngx_free(reqs);
                    return;
                }
                if (reqs) {
                    ngx_memcpy(more, reqs, n * sizeof(void *));
                    ngx_free(reqs);
                }
                reqs = more;
            }

            reqs[n++] = rq;
        }
    }

    /* the queue link is the request's first member */
    for (i = 0; i < n; i++) {
        ngx_insite_ws_proto_continue(reqs[i]);
    }

    ngx_free(reqs);
}


/* The position read for a subscribe. */

void
ngx_insite_ws_channel_position(ngx_insite_ws_channel_t *ch, uint64_t top,
    ngx_str_t *epoch)
{
    if (ch->dead) {
        return;
    }

    if (!ch->positioned) {
        /*
         * "" at 0: Redis had no state for the channel when it ran the read.
         * Messages that came by pub/sub before this answer were published
         * after it, and the epoch they carried (kept below, in
         * ngx_insite_ws_channel_message) is the channel's: the repair brings
         * them from history, which has no epoch, so without it the next
         * message would look like an epoch change and reset everyone.
         */
        if (epoch->len || ch->max_seen == 0) {
            ngx_insite_ws_channel_set_epoch(ch, epoch);
        }

        ch->last_seq = top;
        ch->positioned = 1;

        if (ch->state == NGX_INSITE_WS_CH_POSITIONING) {
            ch->state = NGX_INSITE_WS_CH_LIVE;
        }

        if (ch->max_seen > ch->last_seq) {
            ngx_insite_ws_channel_repair(ch);
        }

        return;
    }

    if (!ngx_insite_ws_channel_same_epoch(ch, epoch)) {
        if (ngx_insite_ws_channel_first_epoch(ch)) {
            ngx_insite_ws_channel_set_epoch(ch, epoch);

        } else if (epoch->len == 0) {
            /*
             * Redis lost the channel (no state, no epoch) and nobody has
             * published since: there is nothing to deliver yet.  The old
             * epoch is kept, so the first publish (a new epoch) resets the
             * subscribers before its data; last_seq 0 waits for its seq 1.
             */
            if (ch->last_seq) {
                ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                              "insite ws: channel \"%V\": Redis lost its "
                              "state; subscribers get a reset with the next "
                              "message", &ch->node.str);
                ch->last_seq = 0;
                ch->max_seen = 0;
            }

        } else {
            ngx_insite_ws_channel_epoch(ch, epoch);
            return;
        }
    }

    if (ch->state == NGX_INSITE_WS_CH_POSITIONING) {
        ch->state = NGX_INSITE_WS_CH_LIVE;
    }
}


/* A subscriber's start, right after its "subscribed" frame was queued. */

void
ngx_insite_ws_channel_start(ngx_insite_ws_sub_t *sub, uint64_t top,
    ngx_str_t *epoch)
{
    ngx_insite_ws_channel_t  *ch = sub->ch;

    if (!sub->has_since) {
        /* live only, or the last N retained messages first (a snapshot:
           fewer retained is no loss to report) */
        sub->cursor = top > sub->last ? top - sub->last : 0;
        sub->snapshot = sub->last > 0;

    } else if ((sub->since_epoch.len
                && (sub->since_epoch.len != epoch->len
                    || ngx_strncmp(sub->since_epoch.data, epoch->data,
                                   epoch->len) != 0))
               || sub->since > top)
    {
        /* another epoch, or a position this epoch never had */
        sub->cursor = 0;
        sub->force_reset = 1;
        ngx_insite_ws_channel_catch_up(sub);
        return;

    } else {
        sub->cursor = sub->since;
    }

    if (sub->cursor < top || sub->cursor < ch->last_seq) {
        ngx_insite_ws_channel_catch_up(sub);
        return;
    }

    sub->state = NGX_INSITE_WS_SUB_LIVE;
}


void
ngx_insite_ws_channel_catch_up(ngx_insite_ws_sub_t *sub)
{
    ngx_insite_ws_conn_t  *wc = sub->wc;

    sub->state = NGX_INSITE_WS_SUB_CATCHUP;

    if (sub->cmd || wc->closing) {
        return;
    }

    /* let the socket drain first: the write handler resumes it */
    if (wc->out_bytes > wc->conf->send_buffer / 2) {
        wc->catchup_stalled = 1;
        return;
    }

    /* on failure the periodic check tries again */
    (void) ngx_insite_ws_redis_history(sub->ch, sub, sub->cursor);
}


/* The connection drained: catch-ups held back go on. */

void
ngx_insite_ws_channel_resume(ngx_insite_ws_conn_t *wc)
{
    ngx_queue_t          *q;
    ngx_insite_ws_sub_t  *sub;

    wc->catchup_stalled = 0;

    for (q = ngx_queue_head(&wc->subs);
         q != ngx_queue_sentinel(&wc->subs);
         q = ngx_queue_next(q))
    {
        sub = ngx_queue_data(q, ngx_insite_ws_sub_t, conn_link);

        if (sub->state == NGX_INSITE_WS_SUB_CATCHUP && sub->cmd == NULL) {
            ngx_insite_ws_channel_catch_up(sub);
        }
    }
}


/* A message from Redis pub/sub: "<seq> <epoch>\n<message>". */

void
ngx_insite_ws_channel_message(ngx_str_t *name, u_char *payload, size_t len)
{
    u_char                   *p, *last, *e;
    uint64_t                  seq;
    ngx_str_t                 epoch;
    ngx_insite_ws_channel_t  *ch;

    ngx_insite_metric_inc(ngx_insite_ws_main_conf()->metrics.received);

    ch = ngx_insite_ws_channel_get(name, 0);
    if (ch == NULL) {
        return;                     /* nobody here listens any more */
    }

    p = payload;
    last = payload + len;
    seq = 0;

    while (p < last && *p >= '0' && *p <= '9') {
        seq = seq * 10 + (*p++ - '0');
    }

    if (p == payload || p == last || *p++ != ' ') {
        goto invalid;
    }

    e = p;
    while (p < last && *p != '\n') {
        p++;
    }

    if (p == last || p == e) {
        goto invalid;
    }

    epoch.data = e;
    epoch.len = p - e;
    p++;

    ch->last_live = ngx_current_msec;

    if (!ch->positioned) {
        /* the position read is still out: its answer decides, but an
           answer of "" keeps this epoch (ngx_insite_ws_channel_position) */
        ch->max_seen = ngx_max(ch->max_seen, seq);
        ngx_insite_ws_channel_set_epoch(ch, &epoch);
        return;
    }

    if (!ngx_insite_ws_channel_same_epoch(ch, &epoch)) {
        if (ngx_insite_ws_channel_first_epoch(ch)) {
            ngx_insite_ws_channel_set_epoch(ch, &epoch);

        } else {
            ngx_insite_ws_channel_epoch(ch, &epoch);
            return;
        }
    }

    if (seq <= ch->last_seq
        && ngx_insite_ws_channel_reused(ch, seq, p, last - p))
    {
        ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                      "insite ws: channel \"%V\": seq %uL came again with "
                      "other content after %uL were delivered (Redis lost "
                      "writes); subscribers get a reset",
                      &ch->node.str, seq, ch->last_seq);
        ngx_insite_ws_channel_restart(ch);
        return;
    }

    ch->max_seen = ngx_max(ch->max_seen, seq);

    if (ch->state == NGX_INSITE_WS_CH_REPAIRING || seq <= ch->last_seq) {
        return;
    }

    if (seq > ch->last_seq + 1) {
        ngx_log_error(NGX_LOG_NOTICE, ngx_cycle->log, 0,
                      "insite ws: channel \"%V\": got seq %uL after %uL, "
                      "repairing from history", &ch->node.str, seq,
                      ch->last_seq);
        ngx_insite_metric_inc(ngx_insite_ws_main_conf()->metrics.gap_repairs);
        ngx_insite_ws_channel_repair(ch);
        return;
    }

    ngx_insite_ws_channel_deliver(ch, seq, p, last - p);
    return;

invalid:

    ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                  "insite ws: channel \"%V\": malformed pub/sub message "
                  "(not published by lua/publish.lua?), dropped",
                  &ch->node.str);
}


/* the message seq == last_seq + 1: frame it once, queue it to everyone */

static void
ngx_insite_ws_channel_deliver(ngx_insite_ws_channel_t *ch, uint64_t seq,
    u_char *msg, size_t len)
{
    ngx_uint_t              sent;
    ngx_queue_t            *q, *next;
    ngx_insite_ws_sub_t    *sub;
    ngx_insite_ws_frame_t  *frame;

    frame = NULL;
    sent = 0;
    ch->last_seq = seq;
    ch->recent[seq % NGX_INSITE_WS_RECENT].seq = seq;
    ch->recent[seq % NGX_INSITE_WS_RECENT].hash = ngx_murmur_hash2(msg, len);

    ngx_insite_ws_trace("deliver %V seq %uL read", &ch->node.str, seq);

    for (q = ngx_queue_head(&ch->subs);
         q != ngx_queue_sentinel(&ch->subs);
         q = next)
    {
        next = ngx_queue_next(q);
        sub = ngx_queue_data(q, ngx_insite_ws_sub_t, chan_link);

        if (sub->state != NGX_INSITE_WS_SUB_LIVE || sub->cursor >= seq) {
            continue;
        }

        if (sub->cursor + 1 < seq) {
            ngx_insite_ws_channel_catch_up(sub);
            continue;
        }

        if (frame == NULL) {
            frame = ngx_insite_ws_frame_alloc(ngx_cycle->log,
                                              INSITE_WS_OP_TEXT, msg, len);
            if (frame == NULL) {
                return;
            }
#if (INSITE_WS_TRACE)
            frame->trace_seq = seq;
#endif
        }

        sub->cursor = seq;

        if (ngx_insite_ws_send_message(sub, frame, seq) == NGX_OK) {
            sent++;
        }
    }

    ngx_insite_ws_trace("deliver %V seq %uL queued %ui", &ch->node.str, seq,
                        sent);

    if (frame) {
        ngx_insite_ws_frame_release(frame);
    }

    ngx_insite_metric_add_value(
        ngx_insite_ws_main_conf()->metrics.delivered, sent);
}


void
ngx_insite_ws_channel_repair(ngx_insite_ws_channel_t *ch)
{
    if (ch->state == NGX_INSITE_WS_CH_REPAIRING || ch->dead) {
        return;
    }

    ch->state = NGX_INSITE_WS_CH_REPAIRING;

    if (ngx_insite_ws_redis_history(ch, NULL, ch->last_seq) != NGX_OK) {
        ch->state = NGX_INSITE_WS_CH_LIVE;   /* the check tries again */
    }
}


/* History read: for the channel's repair (sub == NULL) or a catch-up. */

void
ngx_insite_ws_channel_history(ngx_insite_ws_channel_t *ch,
    ngx_insite_ws_sub_t *sub, redisReply *reply)
{
    size_t       n, i;
    uint64_t     seq;
    redisReply  *msg;

    if (sub) {
        ngx_insite_ws_sub_history(ch, sub, reply);
        return;
    }

    ch->state = NGX_INSITE_WS_CH_LIVE;
    n = reply->elements / 2;

    for (i = 0; i < n; i++) {
        msg = reply->element[2 * i];
        seq = (uint64_t) ngx_atoof((u_char *) reply->element[2 * i + 1]->str,
                                   reply->element[2 * i + 1]->len);

        if (seq <= ch->last_seq) {
            continue;
        }

        if (seq > ch->last_seq + 1) {
            ngx_insite_ws_channel_lost(ch, seq);
        }

        ngx_insite_ws_channel_deliver(ch, seq, (u_char *) msg->str, msg->len);
    }

    if (n == NGX_INSITE_WS_HISTORY_BATCH) {
        ngx_insite_ws_channel_repair(ch);
        return;
    }

    if (ch->max_seen > ch->last_seq) {
        if (n == 0) {
            /* published, but not in history: nothing can bring them back */
            ngx_insite_ws_channel_lost(ch, ch->max_seen + 1);
            ch->last_seq = ch->max_seen;
            return;
        }

        ngx_insite_ws_channel_repair(ch);
    }
}


/*
 * Messages from last_seq + 1 to first - 1 are gone from history: the
 * subscribers following the channel are told, then follow from first.
 */

static void
ngx_insite_ws_channel_lost(ngx_insite_ws_channel_t *ch, uint64_t first)
{
    ngx_queue_t          *q;
    ngx_insite_ws_sub_t  *sub;

    ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                  "insite ws: channel \"%V\": seq %uL to %uL are no longer "
                  "in history; subscribers get a reset",
                  &ch->node.str, ch->last_seq + 1, first - 1);

    for (q = ngx_queue_head(&ch->subs);
         q != ngx_queue_sentinel(&ch->subs);
         q = ngx_queue_next(q))
    {
        sub = ngx_queue_data(q, ngx_insite_ws_sub_t, chan_link);

        if (sub->state == NGX_INSITE_WS_SUB_LIVE && sub->cursor < first - 1) {
            (void) ngx_insite_ws_proto_reset(sub, first);
            sub->cursor = first - 1;
        }
    }

    ch->last_seq = first - 1;
}


static void
ngx_insite_ws_sub_history(ngx_insite_ws_channel_t *ch,
    ngx_insite_ws_sub_t *sub, redisReply *reply)
{
    size_t                 n, i;
    uint64_t               seq;
    redisReply            *msg;
    ngx_insite_ws_conn_t  *wc = sub->wc;

    n = reply->elements / 2;

    if (n == 0) {
        if (sub->force_reset) {
            (void) ngx_insite_ws_proto_reset(sub, sub->cursor + 1);
            sub->force_reset = 0;
        }

        if (sub->cursor < ch->last_seq && !sub->snapshot) {
            /* trimmed away while we were behind */
            (void) ngx_insite_ws_proto_reset(sub, ch->last_seq + 1);
        }

        sub->cursor = ngx_max(sub->cursor, ch->last_seq);
        sub->snapshot = 0;

        sub->state = NGX_INSITE_WS_SUB_LIVE;
        return;
    }

    for (i = 0; i < n && !wc->closing; i++) {
        msg = reply->element[2 * i];
        seq = (uint64_t) ngx_atoof((u_char *) reply->element[2 * i + 1]->str,
                                   reply->element[2 * i + 1]->len);

        if (seq <= sub->cursor) {
            continue;
        }

        /*
         * A replay must not trip the slow-consumer limit: past half of the
         * send buffer the rest waits (it is read again from history) until
         * the socket has drained.
         */
        if (wc->out_bytes + msg->len > wc->conf->send_buffer / 2
            && wc->out_bytes > 0)
        {
            wc->catchup_stalled = 1;
            return;
        }

        if ((seq > sub->cursor + 1 && !sub->snapshot) || sub->force_reset) {
            /* older than the retained history, or another epoch */
            (void) ngx_insite_ws_proto_reset(sub, seq);
            sub->force_reset = 0;
        }

        if (ngx_insite_ws_send_text(wc, (u_char *) msg->str, msg->len)
            != NGX_OK)
        {
            return;
        }

        sub->cursor = seq;
        sub->snapshot = 0;
        ngx_insite_metric_inc(ngx_insite_ws_main_conf()->metrics.replayed);
    }

    if (n == NGX_INSITE_WS_HISTORY_BATCH || sub->cursor < ch->last_seq) {
        ngx_insite_ws_channel_catch_up(sub);
        return;
    }

    sub->state = NGX_INSITE_WS_SUB_LIVE;
}


/* Redis lost the channel (its epoch changed): everyone starts over. */

static void
ngx_insite_ws_channel_epoch(ngx_insite_ws_channel_t *ch, ngx_str_t *epoch)
{
    ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                  "insite ws: channel \"%V\": epoch changed to \"%V\" "
                  "(Redis lost its state); subscribers get a reset",
                  &ch->node.str, epoch);

    ngx_insite_ws_channel_set_epoch(ch, epoch);
    ngx_insite_ws_channel_restart(ch);
}


/*
 * Redis is behind what this worker delivered, in the same epoch: it lost
 * the newest writes (a failover to a replica that had not received them,
 * a restart from an older snapshot) and will give those seqs to other
 * messages.  The seq alone cannot tell them from the ones delivered, so
 * everyone starts over from Redis' history with a reset rather than
 * silently skipping the reused seqs.  This is the position check's view;
 * when new publishes pass the old top before a check runs, the pub/sub
 * path sees a reused seq by its content (ngx_insite_ws_channel_reused()).
 */

static void
ngx_insite_ws_channel_regressed(ngx_insite_ws_channel_t *ch, uint64_t top)
{
    ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                  "insite ws: channel \"%V\": Redis is at seq %uL, behind "
                  "the %uL delivered (it lost writes); subscribers get a "
                  "reset", &ch->node.str, top, ch->check_seq);

    ngx_insite_ws_channel_restart(ch);
}


/*
 * A pub/sub message at a seq already delivered: a duplicate (history and
 * pub/sub both brought it) has the same bytes; other bytes mean Redis gave
 * the seq to a new message.  Seqs older than the ring are not known and
 * taken as duplicates; reused seqs count up to the old top, so one of the
 * last NGX_INSITE_WS_RECENT is always seen before the stream passes it.
 */

static ngx_int_t
ngx_insite_ws_channel_reused(ngx_insite_ws_channel_t *ch, uint64_t seq,
    u_char *msg, size_t len)
{
    ngx_uint_t  i;

    i = seq % NGX_INSITE_WS_RECENT;

    return ch->recent[i].seq == seq
           && ch->recent[i].hash != ngx_murmur_hash2(msg, len);
}


static void
ngx_insite_ws_channel_restart(ngx_insite_ws_channel_t *ch)
{
    ngx_queue_t          *q;
    ngx_insite_ws_sub_t  *sub;

    ngx_memzero(ch->recent, sizeof(ch->recent));
    ch->check_seq = 0;
    ch->last_seq = 0;
    ch->max_seen = 0;
    ch->state = NGX_INSITE_WS_CH_LIVE;

    for (q = ngx_queue_head(&ch->subs);
         q != ngx_queue_sentinel(&ch->subs);
         q = ngx_queue_next(q))
    {
        sub = ngx_queue_data(q, ngx_insite_ws_sub_t, chan_link);

        if (sub->request) {
            continue;               /* its subscribe reads the new epoch */
        }

        if (sub->cmd) {
            ngx_insite_redis_cancel(sub->cmd);
            sub->cmd = NULL;
        }

        sub->cursor = 0;
        sub->force_reset = 1;
        ngx_insite_ws_channel_catch_up(sub);
    }

    ngx_insite_ws_channel_repair(ch);
}


static ngx_int_t
ngx_insite_ws_channel_same_epoch(ngx_insite_ws_channel_t *ch,
    ngx_str_t *epoch)
{
    return ch->epoch_len == ngx_min(epoch->len, NGX_INSITE_WS_EPOCH_LEN)
           && ngx_strncmp(ch->epoch, epoch->data, ch->epoch_len) == 0;
}


/*
 * A channel never published has no state in Redis (lua/position.lua writes
 * nothing): seq 0 of the empty epoch.  Its first publish makes an epoch,
 * starting at seq 1: nothing was missed, so that epoch is adopted without a
 * reset; a gap up to its first seq seen is repaired as usual.
 */

static ngx_int_t
ngx_insite_ws_channel_first_epoch(ngx_insite_ws_channel_t *ch)
{
    return ch->epoch_len == 0 && ch->last_seq == 0;
}


static void
ngx_insite_ws_channel_set_epoch(ngx_insite_ws_channel_t *ch, ngx_str_t *epoch)
{
    ch->epoch_len = ngx_min(epoch->len, NGX_INSITE_WS_EPOCH_LEN);
    ngx_memcpy(ch->epoch, epoch->data, ch->epoch_len);
}


/* the pub/sub connection is back: subscribe to every channel again */

void
ngx_insite_ws_channels_resubscribe(void)
{
    ngx_rbtree_node_t               *node;
    ngx_insite_ws_channel_t         *ch;
    ngx_http_insite_ws_main_conf_t  *wmcf;

    wmcf = ngx_insite_ws_main_conf();

    if (wmcf->channels.root == wmcf->channels.sentinel) {
        return;
    }

    for (node = ngx_rbtree_min(wmcf->channels.root, wmcf->channels.sentinel);
         node;
         node = ngx_rbtree_next(&wmcf->channels, node))
    {
        ch = (ngx_insite_ws_channel_t *) node;
        ch->state = NGX_INSITE_WS_CH_UNSUBSCRIBED;
        (void) ngx_insite_ws_redis_subscribe(ch);
    }
}


/*
 * The periodic position check: pub/sub may lose a message without a later
 * one revealing the gap (a quiet channel), so every check_interval each
 * quiet channel's top in Redis is compared with what this worker delivered.
 * A gap seen by two checks in a row (or right after a resubscribe) is
 * repaired; one check may just race a message in flight.
 */

void
ngx_insite_ws_channels_check(void)
{
    ngx_uint_t                       n;
    ngx_queue_t                     *q;
    ngx_rbtree_node_t               *node;
    ngx_insite_ws_sub_t             *sub;
    ngx_insite_ws_channel_t         *ch, **chs;
    ngx_insite_ws_check_round_t     *round;
    ngx_http_insite_ws_main_conf_t  *wmcf;

    wmcf = ngx_insite_ws_main_conf();

    if (wmcf->channels.root == wmcf->channels.sentinel) {
        return;
    }

    chs = NULL;
    n = 0;

    for (node = ngx_rbtree_min(wmcf->channels.root, wmcf->channels.sentinel);
         node;
         node = ngx_rbtree_next(&wmcf->channels, node))
    {
        ch = (ngx_insite_ws_channel_t *) node;

        /* catch-ups that were waiting for a drained socket or for Redis */
        for (q = ngx_queue_head(&ch->subs);
             q != ngx_queue_sentinel(&ch->subs);
             q = ngx_queue_next(q))
        {
            sub = ngx_queue_data(q, ngx_insite_ws_sub_t, chan_link);

            if (sub->state == NGX_INSITE_WS_SUB_CATCHUP && sub->cmd == NULL) {
                ngx_insite_ws_channel_catch_up(sub);
            }
        }

        if (ngx_insite_ws_check_round) {
            continue;                   /* the last round is still reading */
        }

        if (ch->state != NGX_INSITE_WS_CH_LIVE
            && ch->state != NGX_INSITE_WS_CH_POSITIONING)
        {
            continue;
        }

        /*
         * A channel that had a live message within the interval reveals
         * any gap with its next message; only quiet channels (whose last
         * message may have been the lost one) need Redis asked.
         */
        if (ch->state == NGX_INSITE_WS_CH_LIVE && !ch->resubscribed
            && !ch->suspect
            && ngx_current_msec - ch->last_live < wmcf->check_interval)
        {
            continue;
        }

        if (ngx_insite_ws_channel_check_add(&chs, n, ch) != NGX_OK) {
            break;
        }

        n++;
    }

    if (n == 0) {
        ngx_free(chs);
        return;
    }

    round = ngx_calloc(sizeof(ngx_insite_ws_check_round_t), ngx_cycle->log);
    if (round == NULL) {
        ngx_insite_ws_channel_check_unbusy(chs, n);
        ngx_free(chs);
        return;
    }

    round->chs = chs;
    round->n = n;
    ngx_insite_ws_check_round = round;

    ngx_insite_ws_channel_check_next(round);
}


/* appends ch, referenced, to a growing array of n channels */
static ngx_int_t
ngx_insite_ws_channel_check_add(ngx_insite_ws_channel_t ***chs, ngx_uint_t n,
    ngx_insite_ws_channel_t *ch)
{
    ngx_insite_ws_channel_t  **more;

    if (n % 256 == 0) {
        more = ngx_alloc((n + 256) * sizeof(ngx_insite_ws_channel_t *),
                         ngx_cycle->log);
        if (more == NULL) {
            return NGX_ERROR;
        }

        if (*chs) {
            ngx_memcpy(more, *chs, n * sizeof(ngx_insite_ws_channel_t *));
            ngx_free(*chs);
        }

        *chs = more;
    }

    ch->busy++;
    (*chs)[n] = ch;

    return NGX_OK;
}


static void
ngx_insite_ws_channel_check_unbusy(ngx_insite_ws_channel_t **chs,
    ngx_uint_t n)
{
    ngx_uint_t  i;

    for (i = 0; i < n; i++) {
        ngx_insite_ws_channel_unbusy(chs[i]);
    }
}


/*
 * Sends the round's next batches up to the in-flight bound; ends the round
 * when everything is answered, or when a batch failed and the rest is
 * given up (unsent channels keep their marks for the next round).
 */

static void
ngx_insite_ws_channel_check_next(ngx_insite_ws_check_round_t *round)
{
    ngx_uint_t                i;
    ngx_insite_ws_check_t    *batch;
    ngx_insite_redis_cmd_t   *cmd;
    ngx_insite_ws_channel_t  *ch;

    if (round->sending) {
        return;                      /* an answer came while sending */
    }

    round->sending = 1;

    while (!round->failed && round->next < round->n
           && round->inflight < NGX_INSITE_WS_CHECK_INFLIGHT)
    {
        batch = ngx_alloc(sizeof(ngx_insite_ws_check_t), ngx_cycle->log);
        if (batch == NULL) {
            round->failed = 1;
            break;
        }

        batch->round = round;
        batch->first = round->next;
        batch->n = ngx_min(NGX_INSITE_WS_CHECK_BATCH, round->n - round->next);
        round->inflight++;

        for (i = 0; i < batch->n; i++) {
            ch = round->chs[batch->first + i];
            ch->check_seq = ch->last_seq;
        }

        if (ngx_insite_ws_redis_positions(&round->chs[batch->first], batch->n,
                                          ngx_insite_ws_channel_check_reply,
                                          batch, &cmd)
            != NGX_OK)
        {
            round->inflight--;
            ngx_free(batch);
            round->failed = 1;
            break;
        }

        /* the read holds its own references now */
        ngx_insite_ws_channel_check_unbusy(&round->chs[batch->first],
                                           batch->n);
        round->next += batch->n;
    }

    round->sending = 0;

    if (round->inflight) {
        return;
    }

    /* the channels never sent: their round references */
    ngx_insite_ws_channel_check_unbusy(&round->chs[round->next],
                                       round->n - round->next);

    if (round->failed && round->next < round->n) {
        ngx_log_error(NGX_LOG_INFO, ngx_cycle->log, 0,
                      "insite ws: position check of %ui channels stopped "
                      "after %ui: Redis did not answer in time; the rest "
                      "are checked next interval",
                      round->n, round->next);
    }

    ngx_free(round->chs);
    ngx_free(round);

    if (ngx_insite_ws_check_round == round) {
        ngx_insite_ws_check_round = NULL;
    }
}


static void
ngx_insite_ws_channel_check_reply(ngx_insite_redis_status_e status,
    redisReply *reply, void *data)
{
    ngx_insite_ws_check_t *batch = data;

    uint64_t                      top;
    ngx_str_t                     epoch;
    ngx_uint_t                    i, ok;
    ngx_insite_ws_channel_t      *ch;
    ngx_insite_ws_check_round_t  *round;

    round = batch->round;

    ok = status == NGX_INSITE_REDIS_OK && reply->type == REDIS_REPLY_ARRAY
         && reply->elements == 2 * batch->n;

    if (!ok) {
        round->failed = 1;
    }

    for (i = 0; i < batch->n; i++) {
        ch = round->chs[batch->first + i];

        if (ok && !ch->dead) {
            top = (uint64_t) reply->element[2 * i]->integer;
            epoch.data = (u_char *) reply->element[2 * i + 1]->str;
            epoch.len = reply->element[2 * i + 1]->len;

            if (!ch->positioned
                || !ngx_insite_ws_channel_same_epoch(ch, &epoch))
            {
                ngx_insite_ws_channel_position(ch, top, &epoch);

            } else if (top < ch->check_seq) {
                ngx_insite_ws_channel_regressed(ch, top);

            } else if (top > ch->last_seq
                       && ch->state == NGX_INSITE_WS_CH_LIVE)
            {
                if (ch->resubscribed
                    || (ch->suspect && ch->suspect > ch->last_seq))
                {
                    ngx_log_error(NGX_LOG_NOTICE, ngx_cycle->log, 0,
                                  "insite ws: channel \"%V\": at %uL, Redis "
                                  "at %uL; repairing from history",
                                  &ch->node.str, ch->last_seq, top);
                    ngx_insite_metric_inc(
                        ngx_insite_ws_main_conf()->metrics.gap_repairs);
                    ch->max_seen = ngx_max(ch->max_seen, top);
                    ch->suspect = 0;
                    ngx_insite_ws_channel_repair(ch);

                } else {
                    ch->suspect = top;
                }

            } else {
                ch->suspect = 0;
            }

            ch->resubscribed = 0;
        }

        ngx_insite_ws_channel_unbusy(ch);
    }

    ngx_free(batch);

    round->inflight--;
    ngx_insite_ws_channel_check_next(round);
}
