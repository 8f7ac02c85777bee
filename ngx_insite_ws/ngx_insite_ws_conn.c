/*
 * One WebSocket client connection after the 101: reading and assembling
 * frames, the send queue, heartbeats, closing.
 *
 * Reading uses one buffer per worker: a frame's payload is copied out as it
 * arrives (into the control buffer or the message being assembled), so
 * between reads a connection keeps at most a partial frame header.  An idle
 * connection therefore holds no read buffer at all.
 *
 * Writing: a frame is shared by every connection it is queued on (refcount);
 * writes are batched by posting the write event, so all frames queued in one
 * event loop iteration leave in one writev().  A subscriber of a conflated
 * channel (insite_ws_conflate) has its queued, unstarted messages of that
 * channel in a run (insite_ws_conflate.h); a run grown too long is replaced
 * by its newest message, marked with what it stands for.
 *
 * Memory: once the 101 is on the wire the HTTP request is freed (logged
 * then, with status 101) together with the header buffers, as nginx does
 * for an idle keepalive connection; the connection keeps only the
 * nginx connection's small pool and this structure.  Until then (a 101 the
 * socket could not take at once) the request stays, and so does the path
 * that finalizes it.
 *
 * Closing never tears a connection down synchronously: it queues the close
 * frame and lets the write/read/timer handlers finalize, so callers that are
 * iterating a channel's subscribers (fan-out) may call it safely.
 */

#include "ngx_insite_ws.h"


#define NGX_INSITE_WS_RBUF       65536
#define NGX_INSITE_WS_IOV        64
#define NGX_INSITE_WS_LINGER     1000


static void ngx_insite_ws_read_handler(ngx_event_t *rev);
static void ngx_insite_ws_write_handler(ngx_event_t *wev);
static void ngx_insite_ws_read_attached(ngx_http_request_t *r);
static void ngx_insite_ws_write_attached(ngx_http_request_t *r);
static void ngx_insite_ws_read(ngx_insite_ws_conn_t *wc);
static void ngx_insite_ws_write(ngx_insite_ws_conn_t *wc);
static void ngx_insite_ws_process(ngx_insite_ws_conn_t *wc, u_char *p,
    u_char *last);
static ngx_int_t ngx_insite_ws_payload(ngx_insite_ws_conn_t *wc, u_char *p,
    size_t n);
static void ngx_insite_ws_frame_done(ngx_insite_ws_conn_t *wc);
static void ngx_insite_ws_control(ngx_insite_ws_conn_t *wc, int opcode);
static void ngx_insite_ws_inflated(ngx_insite_ws_conn_t *wc);
static void ngx_insite_ws_protocol_error(ngx_insite_ws_conn_t *wc, int rc);
static ngx_int_t ngx_insite_ws_flush(ngx_insite_ws_conn_t *wc);
static void ngx_insite_ws_post_write(ngx_insite_ws_conn_t *wc);
static void ngx_insite_ws_drop_queue(ngx_insite_ws_conn_t *wc,
    ngx_uint_t keep_partial);
static void ngx_insite_ws_out_free(ngx_insite_ws_conn_t *wc,
    ngx_insite_ws_out_t *out);
static void ngx_insite_ws_out_started(ngx_insite_ws_out_t *out);
static ngx_insite_ws_frame_t *ngx_insite_ws_conflate(ngx_insite_ws_sub_t *sub,
    ngx_insite_ws_frame_t *frame, uint64_t seq);
static void ngx_insite_ws_notsent_lowat(ngx_insite_ws_conn_t *wc);
static void ngx_insite_ws_heartbeat_handler(ngx_event_t *ev);
static void ngx_insite_ws_going_away_handler(ngx_event_t *ev);
static ngx_int_t ngx_insite_ws_flush_handshake(ngx_insite_ws_conn_t *wc);
static void ngx_insite_ws_detach(ngx_event_t *ev);
static ngx_insite_ws_out_t *ngx_insite_ws_out_get(ngx_insite_ws_conn_t *wc);
static void ngx_insite_ws_finalize(ngx_insite_ws_conn_t *wc);
static void ngx_insite_ws_release(void *data);


static u_char       ngx_insite_ws_rbuf[NGX_INSITE_WS_RBUF];
static ngx_buf_t    ngx_insite_ws_bufs[NGX_INSITE_WS_IOV];
static ngx_chain_t  ngx_insite_ws_chain[NGX_INSITE_WS_IOV];


ngx_int_t
ngx_insite_ws_conn_start(ngx_http_request_t *r, ngx_str_t *user,
    ngx_uint_t deflate_bits)
{
    size_t                           pipelined;
    ngx_int_t                        rc;
    ngx_connection_t                *c;
    ngx_pool_cleanup_t              *cln;
    ngx_insite_ws_conn_t            *wc;
    ngx_http_insite_ws_main_conf_t  *wmcf;

    c = r->connection;
    wmcf = ngx_insite_ws_main_conf();

    /* outlives the request: not from its pool */
    wc = ngx_calloc(sizeof(ngx_insite_ws_conn_t) + user->len, c->log);
    cln = wc ? ngx_pool_cleanup_add(r->pool, 0) : NULL;

    if (cln == NULL) {
        ngx_free(wc);
        ngx_insite_ws_limit_release();
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    wc->request = r;
    wc->connection = c;
    wc->conf = ngx_http_get_module_loc_conf(r, ngx_http_insite_ws_module);
    wc->user.data = (u_char *) (wc + 1);
    wc->user.len = user->len;
    ngx_memcpy(wc->user.data, user->data, user->len);
    wc->last_rx = ngx_current_msec;
    wc->deflate_bits = deflate_bits;

    ngx_queue_init(&wc->out);
    ngx_queue_init(&wc->out_free);
    ngx_queue_init(&wc->subs);
    ngx_queue_init(&wc->requests);
    ngx_queue_insert_tail(&wmcf->conns, &wc->queue);

    /* insite_ws_subscribe_rate: a full bucket, in thousandths */
    wc->sub_tokens = wc->conf->subscribe_burst * 1000;
    wc->sub_refill = ngx_current_msec;

    insite_ws_msg_init(&wc->assembler, wc->conf->max_message_size);

    /* until the request is freed, its end undoes all this */
    cln->handler = ngx_insite_ws_release;
    cln->data = wc;
    wc->cleanup = cln;

    rc = ngx_http_send_header(r);
    if (rc == NGX_ERROR || rc > NGX_OK) {
        return rc;
    }

    /*
     * The connection is ours now: nginx must not read it as HTTP.  Until
     * the request is freed, events still go through the request (c->data
     * is the request, nginx's code relies on it); then straight to us.
     */
    r->main->count++;
    ngx_http_set_ctx(r, wc, ngx_http_insite_ws_module);
    r->read_event_handler = ngx_insite_ws_read_attached;
    r->write_event_handler = ngx_insite_ws_write_attached;
    c->log->action = "serving WebSocket";

    /* graceful shutdown reaches idle connections: we answer with 1001 */
    c->idle = 1;

    ngx_insite_ws_notsent_lowat(wc);

    wc->heartbeat.handler = ngx_insite_ws_heartbeat_handler;
    wc->heartbeat.data = wc;
    wc->heartbeat.log = c->log;
    ngx_add_timer(&wc->heartbeat, wc->conf->ping_interval);

    wc->going_away.handler = ngx_insite_ws_going_away_handler;
    wc->going_away.data = wc;
    wc->going_away.log = c->log;

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, c->log, 0,
                   "insite ws: connection open, user \"%V\"", &wc->user);

    /* upgraded after the worker was told to stop: idle connections were
       told already, this one must be too */
    if (ngx_exiting) {
        ngx_insite_ws_go_away(wc);
    }

    /* bytes the client sent right behind the handshake */
    pipelined = r->header_in ? (size_t) (r->header_in->last
                                         - r->header_in->pos) : 0;

    if (pipelined) {
        if (pipelined > NGX_INSITE_WS_RBUF) {
            ngx_insite_ws_close(wc, INSITE_WS_CLOSE_TOO_BIG,
                                "too much data behind the handshake");
        } else {
            ngx_memcpy(ngx_insite_ws_rbuf, r->header_in->pos, pipelined);
            r->header_in->pos = r->header_in->last;
            ngx_insite_ws_process(wc, ngx_insite_ws_rbuf,
                                  ngx_insite_ws_rbuf + pipelined);
        }
    }

    /*
     * The write handler flushes the 101 and frees the request: not here,
     * where nginx still finalizes it once this handler returns.
     */
    if (!c->write->posted) {
        ngx_post_event(c->write, &ngx_posted_events);
    }

    if (ngx_handle_read_event(c->read, 0) != NGX_OK) {
        ngx_insite_ws_finalize(wc);
        return NGX_DONE;
    }

    if (c->read->ready) {
        ngx_post_event(c->read, &ngx_posted_events);
    }

    return NGX_DONE;
}


/*
 * insite_ws_notsent_lowat: the socket takes more only while fewer than that
 * many bytes wait unsent in the kernel.  Without it the kernel's send
 * buffer (on loopback and fast links autotuned to megabytes) holds what a
 * slow reader has not taken, oldest first, where no conflation reaches it;
 * with it the backlog stays in our queue, where a conflated channel keeps
 * only the newest.  A failure leaves the connection as it was.
 */

static void
ngx_insite_ws_notsent_lowat(ngx_insite_ws_conn_t *wc)
{
#if (NGX_LINUX && defined TCP_NOTSENT_LOWAT)
    int                lowat;
    ngx_connection_t  *c = wc->connection;

    if (wc->conf->notsent_lowat == 0 || c->type != SOCK_STREAM
        || (c->sockaddr->sa_family != AF_INET
#if (NGX_HAVE_INET6)
            && c->sockaddr->sa_family != AF_INET6
#endif
           ))
    {
        return;
    }

    lowat = (int) wc->conf->notsent_lowat;

    if (setsockopt(c->fd, IPPROTO_TCP, TCP_NOTSENT_LOWAT,
                   (const void *) &lowat, sizeof(int))
        == -1)
    {
        ngx_log_error(NGX_LOG_WARN, c->log, ngx_socket_errno,
                      "insite ws: setsockopt(TCP_NOTSENT_LOWAT, %d) failed",
                      lowat);
    }
#endif
}


/* The 101 may still sit in nginx's write filter. */

static ngx_int_t
ngx_insite_ws_flush_handshake(ngx_insite_ws_conn_t *wc)
{
    ngx_connection_t    *c = wc->connection;
    ngx_http_request_t  *r = wc->request;

    if (ngx_http_output_filter(r, NULL) == NGX_ERROR) {
        return NGX_ERROR;
    }

    if (c->buffered || r->out) {
        return NGX_AGAIN;
    }

    /* freed from an event of our own: not under ngx_http_request_handler */
    if (!wc->detach.posted) {
        wc->detach.handler = ngx_insite_ws_detach;
        wc->detach.data = wc;
        wc->detach.log = c->log;
        ngx_post_event(&wc->detach, &ngx_posted_events);
    }

    return NGX_OK;
}


/*
 * The 101 is out: free the request and the header buffers, keep the
 * connection.  The request is logged now, with status 101.
 */

static void
ngx_insite_ws_detach(ngx_event_t *ev)
{
    ngx_buf_t              *b;
    ngx_chain_t            *cl, *ln;
    ngx_connection_t       *c;
    ngx_http_request_t     *r;
    ngx_insite_ws_conn_t   *wc;
    ngx_http_connection_t  *hc;

    wc = ev->data;
    c = wc->connection;
    r = wc->request;

    if (wc->finished || r == NULL) {
        return;
    }

    hc = r->http_connection;

    wc->cleanup->handler = NULL;
    wc->request = NULL;

    ngx_http_free_request(r, 0);

    /* ngx_http_free_request() marks the connection destroyed: it is not */
    c->destroyed = 0;
    c->data = wc;
    c->read->handler = ngx_insite_ws_read_handler;
    c->write->handler = ngx_insite_ws_write_handler;

    b = c->buffer;

    if (b && ngx_pfree(c->pool, b->start) == NGX_OK) {
        c->buffer = NULL;

    } else if (b) {
        b->pos = b->start;
        b->last = b->start;
    }

    /* large header buffers: their bytes were copied out already */
    for (cl = hc->free; cl; /* void */) {
        ln = cl;
        cl = cl->next;
        ngx_pfree(c->pool, ln->buf->start);
        ngx_free_chain(c->pool, ln);
    }

    for (cl = hc->busy; cl; /* void */) {
        ln = cl;
        cl = cl->next;
        ngx_pfree(c->pool, ln->buf->start);
        ngx_free_chain(c->pool, ln);
    }

    hc->free = NULL;
    hc->busy = NULL;
    hc->nbusy = 0;
}


/* reading */


static void
ngx_insite_ws_read_handler(ngx_event_t *rev)
{
    ngx_connection_t  *c = rev->data;

    ngx_insite_ws_read(c->data);
}


static void
ngx_insite_ws_read_attached(ngx_http_request_t *r)
{
    ngx_insite_ws_read(ngx_http_get_module_ctx(r, ngx_http_insite_ws_module));
}


static void
ngx_insite_ws_read(ngx_insite_ws_conn_t *wc)
{
    u_char            *start;
    ssize_t            n;
    ngx_event_t       *rev;
    ngx_connection_t  *c;

    c = wc->connection;
    rev = c->read;

    if (wc->finished) {
        return;
    }

    if (c->close) {
        /* ngx_close_idle_connections(): graceful shutdown, or its timeout */
        c->close = 0;

        if (c->error || wc->closing) {
            ngx_insite_ws_finalize(wc);
            return;
        }

        ngx_insite_ws_go_away(wc);
        return;
    }

    for ( ;; ) {
        ngx_memcpy(ngx_insite_ws_rbuf, wc->hdr, wc->hdr_len);
        start = ngx_insite_ws_rbuf + wc->hdr_len;

        n = c->recv(c, start, NGX_INSITE_WS_RBUF - wc->hdr_len);

        if (n == NGX_AGAIN) {
            break;
        }

        if (n == 0 || n == NGX_ERROR) {
            if (!wc->closing) {
                ngx_log_error(NGX_LOG_INFO, c->log, 0,
                              "insite ws: peer went away without a close "
                              "frame (1006)");
            }
            ngx_insite_ws_finalize(wc);
            return;
        }

        wc->last_rx = ngx_current_msec;

        ngx_insite_ws_process(wc, ngx_insite_ws_rbuf, start + n);

        if (wc->finished || !rev->ready) {
            break;
        }
    }

    if (!wc->finished && ngx_handle_read_event(rev, 0) != NGX_OK) {
        ngx_insite_ws_finalize(wc);
    }
}


static void
ngx_insite_ws_process(ngx_insite_ws_conn_t *wc, u_char *p, u_char *last)
{
    int     rc;
    size_t  n;

    wc->hdr_len = 0;

    /* after a protocol error the stream cannot be parsed: read and drop */
    if (wc->broken) {
        return;
    }

    while (p < last || (wc->in_payload && wc->assembler.frame_left == 0)) {

        if (wc->closing && wc->close_received) {
            return;
        }

        if (!wc->in_payload) {
            rc = insite_ws_parse_header_rsv(p, last - p,
                                            wc->conf->max_message_size,
                                            wc->deflate_bits ? INSITE_WS_RSV1
                                                             : 0,
                                            &wc->frame);

            if (rc == INSITE_WS_NEED_MORE) {
                wc->hdr_len = last - p;
                ngx_memcpy(wc->hdr, p, wc->hdr_len);
                return;
            }

            if (rc < 0) {
                ngx_insite_ws_protocol_error(wc, rc);
                return;
            }

            p += wc->frame.header_len;

            if (wc->frame.opcode == INSITE_WS_OP_BINARY) {
                ngx_insite_ws_protocol_error(wc, 0);
                return;
            }

            rc = insite_ws_msg_begin(&wc->assembler, &wc->frame);
            if (rc < 0) {
                ngx_insite_ws_protocol_error(wc, rc);
                return;
            }

            wc->in_payload = 1;
            wc->ctrl_len = 0;
        }

        n = ngx_min((uint64_t) (last - p), wc->assembler.frame_left);

        if (n && ngx_insite_ws_payload(wc, p, n) != NGX_OK) {
            return;
        }

        p += n;

        if (wc->assembler.frame_left == 0) {
            wc->in_payload = 0;
            ngx_insite_ws_frame_done(wc);

            if (wc->finished) {
                return;
            }
        }
    }
}


static ngx_int_t
ngx_insite_ws_payload(ngx_insite_ws_conn_t *wc, u_char *p, size_t n)
{
    int      rc;
    size_t   need, cap;
    u_char  *msg;

    rc = insite_ws_msg_payload(&wc->assembler, p, n);
    if (rc < 0) {
        ngx_insite_ws_protocol_error(wc, rc);
        return NGX_ERROR;
    }

    if (insite_ws_op_is_control(wc->frame.opcode)) {
        ngx_memcpy(wc->ctrl + wc->ctrl_len, p, n);
        wc->ctrl_len += n;
        return NGX_OK;
    }

    if (wc->closing) {
        return NGX_OK;              /* data after our close frame: dropped */
    }

    need = wc->msg_len + n;

    if (need > wc->msg_cap) {
        /* the assembler has checked the total against max_message_size */
        cap = ngx_max(need, ngx_min(2 * wc->msg_cap + 256,
                                    wc->conf->max_message_size));

        msg = ngx_alloc(cap, wc->connection->log);
        if (msg == NULL) {
            ngx_insite_ws_close(wc, INSITE_WS_CLOSE_INTERNAL, "out of memory");
            return NGX_ERROR;
        }

        if (wc->msg) {
            ngx_memcpy(msg, wc->msg, wc->msg_len);
            ngx_free(wc->msg);
        }

        wc->msg = msg;
        wc->msg_cap = cap;
    }

    ngx_memcpy(wc->msg + wc->msg_len, p, n);
    wc->msg_len += n;

    return NGX_OK;
}


static void
ngx_insite_ws_frame_done(ngx_insite_ws_conn_t *wc)
{
    int  rc, opcode;

    rc = insite_ws_msg_end(&wc->assembler, &opcode);
    if (rc < 0) {
        ngx_insite_ws_protocol_error(wc, rc);
        return;
    }

    if (insite_ws_op_is_control(opcode)) {
        ngx_insite_ws_control(wc, opcode);
        return;
    }

    if (opcode == INSITE_WS_OP_CONT) {
        return;                     /* more fragments to come */
    }

    if (!wc->closing) {
        if (wc->assembler.compressed) {
            ngx_insite_ws_inflated(wc);

        } else {
            ngx_insite_ws_proto_message(wc, wc->msg, wc->msg_len);
        }
    }

    /* messages are small and rare next to deliveries: do not keep buffers */
    if (wc->msg) {
        ngx_free(wc->msg);
        wc->msg = NULL;
    }

    wc->msg_len = 0;
    wc->msg_cap = 0;
}


/* a permessage-deflate message: inflated, checked as a text message is */

static void
ngx_insite_ws_inflated(ngx_insite_ws_conn_t *wc)
{
    u_char      *data;
    size_t       len;
    ngx_uint_t   code;

    code = ngx_insite_ws_inflate(wc, wc->msg, wc->msg_len, &data, &len);

    if (code == 0 && !insite_ws_utf8_valid(data, len)) {
        code = INSITE_WS_CLOSE_INVALID_DATA;
    }

    if (code) {
        ngx_log_error(NGX_LOG_INFO, wc->connection->log, 0,
                      "insite ws: closing with %ui: compressed message %s",
                      code, code == INSITE_WS_CLOSE_TOO_BIG
                            ? "inflates past insite_ws_max_message_size"
                            : code == INSITE_WS_CLOSE_INVALID_DATA
                              ? "is not valid deflate data or UTF-8"
                              : "could not be inflated");
        ngx_insite_metric_inc(
            ngx_insite_ws_main_conf()->metrics.protocol_closes);
        wc->broken = 1;
        ngx_insite_ws_close(wc, code, code == INSITE_WS_CLOSE_TOO_BIG
                                      ? "message too big"
                                      : "invalid compressed message");
        return;
    }

    ngx_insite_ws_proto_message(wc, data, len);
}


static void
ngx_insite_ws_control(ngx_insite_ws_conn_t *wc, int opcode)
{
    int                     rc;
    size_t                  rlen;
    uint16_t                code;
    const u_char           *reason;
    ngx_insite_ws_frame_t  *frame;

    switch (opcode) {

    case INSITE_WS_OP_PING:
        if (wc->closing) {
            return;
        }

        frame = ngx_insite_ws_frame_alloc(wc->connection->log,
                                          INSITE_WS_OP_PONG, wc->ctrl,
                                          wc->ctrl_len);
        if (frame == NULL) {
            ngx_insite_ws_close(wc, INSITE_WS_CLOSE_INTERNAL, "out of memory");
            return;
        }

        (void) ngx_insite_ws_send(wc, frame);
        ngx_insite_ws_frame_release(frame);
        return;

    case INSITE_WS_OP_PONG:
        return;

    default: /* INSITE_WS_OP_CLOSE */

        rc = insite_ws_close_parse(wc->ctrl, wc->ctrl_len, &code, &reason,
                                   &rlen);
        if (rc < 0) {
            ngx_insite_ws_protocol_error(wc, rc);
            return;
        }

        wc->close_received = 1;

        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, wc->connection->log, 0,
                       "insite ws: close frame from peer, code %ui, "
                       "%uz bytes of reason", (ngx_uint_t) code, rlen);

        if (wc->closing) {
            /* the answer to our close: done */
            ngx_insite_ws_post_write(wc);
            return;
        }

        /* echo the peer's code (RFC 6455 5.5.1); an empty close, empty */
        ngx_insite_ws_close(wc, wc->ctrl_len ? code : 0, NULL);
        return;
    }
}


static void
ngx_insite_ws_protocol_error(ngx_insite_ws_conn_t *wc, int rc)
{
    ngx_uint_t   code;
    const char  *reason;

    if (rc == 0) {
        code = INSITE_WS_CLOSE_UNSUPPORTED;
        reason = "binary messages are not supported";

    } else {
        code = insite_ws_close_code(rc);
        reason = insite_ws_strerror(rc);
    }

    ngx_log_error(NGX_LOG_INFO, wc->connection->log, 0,
                  "insite ws: closing with %ui: %s", code, reason);

    ngx_insite_metric_inc(ngx_insite_ws_main_conf()->metrics.protocol_closes);

    wc->broken = 1;
    wc->in_payload = 0;

    ngx_insite_ws_close(wc, code, reason);
}


/* writing */


ngx_insite_ws_frame_t *
ngx_insite_ws_frame_alloc(ngx_log_t *log, int opcode, u_char *payload,
    size_t len)
{
    size_t                  hlen;
    u_char                  header[INSITE_WS_MAX_SERVER_HEADER];
    ngx_insite_ws_frame_t  *frame;

    hlen = insite_ws_frame_header(header, opcode, 1, len);

    frame = ngx_alloc(offsetof(ngx_insite_ws_frame_t, data) + hlen + len, log);
    if (frame == NULL) {
        return NULL;
    }

    ngx_memzero(frame->deflated, sizeof(frame->deflated));
    frame->plain_only = 0;
#if (INSITE_WS_TRACE)
    frame->trace_seq = 0;
#endif

    frame->refs = 1;
    frame->len = hlen + len;
    frame->hlen = hlen;
    ngx_memcpy(frame->data, header, hlen);
    if (len) {
        ngx_memcpy(frame->data + hlen, payload, len);
    }

    return frame;
}


void
ngx_insite_ws_frame_release(ngx_insite_ws_frame_t *frame)
{
    ngx_uint_t  i;

    if (--frame->refs) {
        return;
    }

#if (INSITE_WS_TRACE)
    if (frame->trace_seq) {
        ngx_insite_ws_trace("frame seq %uL written", frame->trace_seq);
    }
#endif

    for (i = 0; i < 8; i++) {
        if (frame->deflated[i]) {
            ngx_insite_ws_frame_release(frame->deflated[i]);
        }
    }

    ngx_free(frame);
}


ngx_int_t
ngx_insite_ws_send(ngx_insite_ws_conn_t *wc, ngx_insite_ws_frame_t *frame)
{
    ngx_insite_ws_out_t  *out;

    if (wc->closing || wc->finished) {
        return NGX_DECLINED;
    }

    if (wc->deflate_bits) {
        frame = ngx_insite_ws_frame_deflated(frame, wc->deflate_bits,
                                             wc->conf->deflate_min_size,
                                             wc->connection->log);
    }

    if (wc->out_bytes + frame->len > wc->conf->send_buffer) {
        ngx_log_error(NGX_LOG_WARN, wc->connection->log, 0,
                      "insite ws: slow consumer: %uz bytes queued, over "
                      "insite_ws_send_buffer %uz; closing with 1013",
                      wc->out_bytes + frame->len, wc->conf->send_buffer);
        ngx_insite_metric_inc(ngx_insite_ws_main_conf()->metrics.slow_closes);
        ngx_insite_ws_close(wc, 1013, "slow consumer");
        return NGX_DECLINED;
    }

    out = ngx_insite_ws_out_get(wc);
    if (out == NULL) {
        return NGX_ERROR;
    }

    out->frame = frame;
    out->sent = 0;
    out->sub = NULL;
    frame->refs++;

    ngx_queue_insert_tail(&wc->out, &out->queue);
    wc->out_bytes += frame->len;

    ngx_insite_ws_post_write(wc);

    return NGX_OK;
}


ngx_int_t
ngx_insite_ws_send_text(ngx_insite_ws_conn_t *wc, u_char *data, size_t len)
{
    ngx_int_t               rc;
    ngx_insite_ws_frame_t  *frame;

    frame = ngx_insite_ws_frame_alloc(wc->connection->log, INSITE_WS_OP_TEXT,
                                      data, len);
    if (frame == NULL) {
        return NGX_ERROR;
    }

    rc = ngx_insite_ws_send(wc, frame);
    ngx_insite_ws_frame_release(frame);

    return rc;
}


/*
 * A channel message to one subscriber.  For a conflated channel the message
 * joins the subscriber's run; a run grown past insite_ws_conflate_after (or
 * a queue that would pass insite_ws_send_buffer) is replaced first by one
 * conflated message.
 */

ngx_int_t
ngx_insite_ws_send_message(ngx_insite_ws_sub_t *sub,
    ngx_insite_ws_frame_t *frame, uint64_t seq)
{
    size_t                  len;
    ngx_int_t               rc;
    uint64_t                first;
    ngx_insite_ws_out_t    *out;
    ngx_insite_ws_conn_t   *wc = sub->wc;
    ngx_insite_ws_frame_t  *merged;

    if (!sub->conflate) {
        return ngx_insite_ws_send(wc, frame);
    }

    if (wc->closing || wc->finished) {
        return NGX_DECLINED;
    }

    first = seq;
    merged = NULL;

    if (insite_ws_cq_due(&sub->run, seq, frame->len, wc->conf->conflate_after,
                         wc->out_bytes + frame->len > wc->conf->send_buffer))
    {
        first = insite_ws_cq_first(&sub->run);
        merged = ngx_insite_ws_conflate(sub, frame, seq);

        if (merged) {
            frame = merged;

        } else {
            first = seq;
        }
    }

    rc = ngx_insite_ws_send(wc, frame);

    if (merged) {
        ngx_insite_ws_frame_release(merged);
    }

    if (rc != NGX_OK) {
        return rc;
    }

    out = ngx_queue_data(ngx_queue_last(&wc->out), ngx_insite_ws_out_t, queue);

    /* the bytes queued: the compressed frame where deflate is on */
    len = out->frame->len;

    if (insite_ws_cq_push(&sub->run, &out->run, first, seq, len) != 0) {
        /* not the run's next seq (a replay after a reset): a new run */
        ngx_insite_ws_conflate_end(sub);
        (void) insite_ws_cq_push(&sub->run, &out->run, first, seq, len);
    }

    out->sub = sub;

    return NGX_OK;
}


/*
 * The run and the new message (seq, the run's last + 1) become one: the
 * new message marked "conflated".  The run's entries leave the queue.
 */

static ngx_insite_ws_frame_t *
ngx_insite_ws_conflate(ngx_insite_ws_sub_t *sub, ngx_insite_ws_frame_t *frame,
    uint64_t seq)
{
    size_t                  plen, n, cap;
    u_char                 *buf;
    uint64_t                first, merged;
    insite_ws_cq_link_t    *l;
    ngx_insite_ws_out_t    *out;
    ngx_insite_ws_conn_t   *wc = sub->wc;
    ngx_insite_ws_frame_t  *conflated;

    first = insite_ws_cq_first(&sub->run);
    plen = frame->len - frame->hlen;
    cap = plen + INSITE_WS_CONFLATE_EXTRA;

    buf = ngx_alloc(cap, wc->connection->log);
    if (buf == NULL) {
        return NULL;
    }

    n = insite_ws_conflate_message(buf, cap, frame->data + frame->hlen, plen,
                                   seq - first + 1, first);
    if (n == 0) {
        ngx_log_error(NGX_LOG_ERR, wc->connection->log, 0,
                      "insite ws: channel \"%V\": seq %uL is not a JSON "
                      "object, not conflated", &sub->ch->node.str, seq);
        ngx_free(buf);
        return NULL;
    }

    conflated = ngx_insite_ws_frame_alloc(wc->connection->log,
                                          INSITE_WS_OP_TEXT, buf, n);
    ngx_free(buf);

    if (conflated == NULL) {
        return NULL;
    }

    merged = 0;

    while ((l = insite_ws_cq_pop(&sub->run)) != NULL) {
        out = (ngx_insite_ws_out_t *) ((u_char *) l
                                       - offsetof(ngx_insite_ws_out_t, run));
        merged++;
        out->sub = NULL;
        ngx_queue_remove(&out->queue);
        wc->out_bytes -= out->frame->len;
        ngx_insite_ws_out_free(wc, out);
    }

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, wc->connection->log, 0,
                   "insite ws: conflated seq %uL-%uL of \"%V\"",
                   first, seq, &sub->ch->node.str);

    ngx_insite_metric_add_value(ngx_insite_ws_main_conf()->metrics.conflated,
                                merged);

    return conflated;
}


/* The subscriber's queued messages can no longer merge with later ones. */

void
ngx_insite_ws_conflate_end(ngx_insite_ws_sub_t *sub)
{
    insite_ws_cq_link_t  *l;
    ngx_insite_ws_out_t  *out;

    while ((l = insite_ws_cq_pop(&sub->run)) != NULL) {
        out = (ngx_insite_ws_out_t *) ((u_char *) l
                                       - offsetof(ngx_insite_ws_out_t, run));
        out->sub = NULL;
    }
}


/* The entry's frame starts on the wire (or leaves): out of any run. */

static void
ngx_insite_ws_out_started(ngx_insite_ws_out_t *out)
{
    if (out->sub) {
        insite_ws_cq_remove(&out->sub->run, &out->run);
        out->sub = NULL;
    }
}


static void
ngx_insite_ws_out_free(ngx_insite_ws_conn_t *wc, ngx_insite_ws_out_t *out)
{
    ngx_insite_ws_out_started(out);
    ngx_insite_ws_frame_release(out->frame);
    ngx_queue_insert_head(&wc->out_free, &out->queue);
}


static ngx_insite_ws_out_t *
ngx_insite_ws_out_get(ngx_insite_ws_conn_t *wc)
{
    ngx_queue_t  *q;

    if (!ngx_queue_empty(&wc->out_free)) {
        q = ngx_queue_head(&wc->out_free);
        ngx_queue_remove(q);
        return ngx_queue_data(q, ngx_insite_ws_out_t, queue);
    }

    return ngx_alloc(sizeof(ngx_insite_ws_out_t), wc->connection->log);
}


static void
ngx_insite_ws_post_write(ngx_insite_ws_conn_t *wc)
{
    ngx_event_t  *wev = wc->connection->write;

    if (wev->ready && !wev->posted) {
        ngx_post_event(wev, &ngx_posted_events);
    }
}


static void
ngx_insite_ws_write_handler(ngx_event_t *wev)
{
    ngx_connection_t  *c = wev->data;

    ngx_insite_ws_write(c->data);
}


static void
ngx_insite_ws_write_attached(ngx_http_request_t *r)
{
    ngx_insite_ws_write(ngx_http_get_module_ctx(r, ngx_http_insite_ws_module));
}


static void
ngx_insite_ws_write(ngx_insite_ws_conn_t *wc)
{
    ngx_connection_t  *c = wc->connection;

    if (wc->finished) {
        return;
    }

    if (ngx_insite_ws_flush(wc) == NGX_ERROR) {
        ngx_insite_ws_finalize(wc);
        return;
    }

    if (wc->catchup_stalled && !wc->closing
        && wc->out_bytes <= wc->conf->send_buffer / 4)
    {
        ngx_insite_ws_channel_resume(wc);
    }

    /* our close frame is out: the peer's answer (or the linger) ends it */
    if (wc->closing && ngx_queue_empty(&wc->out)) {
        if (wc->close_received) {
            ngx_insite_ws_finalize(wc);
            return;
        }

        if (!wc->close_sent) {
            wc->close_sent = 1;
            ngx_add_timer(&wc->going_away, NGX_INSITE_WS_LINGER);

            /*
             * Nothing more will be sent: a FIN now lets the peer see the end
             * right after our close frame.  The socket is not closed yet, so
             * data still arriving cannot turn into an RST that would destroy
             * the close frame in the peer's buffer.
             */
#if (NGX_SSL)
            if (c->ssl == NULL)
#endif
            {
                (void) ngx_shutdown_socket(c->fd, NGX_WRITE_SHUTDOWN);
            }
        }
    }
}


static ngx_int_t
ngx_insite_ws_flush(ngx_insite_ws_conn_t *wc)
{
    off_t                 sent;
    size_t                n, left;
    ngx_uint_t            i;
    ngx_queue_t          *q;
    ngx_chain_t          *cl;
    ngx_connection_t     *c;
    ngx_insite_ws_out_t  *out;

    c = wc->connection;

    if (wc->request && !wc->detach.posted) {
        switch (ngx_insite_ws_flush_handshake(wc)) {
        case NGX_ERROR:
            return NGX_ERROR;
        case NGX_AGAIN:
            return ngx_handle_write_event(c->write, 0);
        default:
            break;
        }
    }

    while (!ngx_queue_empty(&wc->out)) {

        if (!c->write->ready) {
            break;
        }

        i = 0;

        for (q = ngx_queue_head(&wc->out);
             q != ngx_queue_sentinel(&wc->out) && i < NGX_INSITE_WS_IOV;
             q = ngx_queue_next(q))
        {
            out = ngx_queue_data(q, ngx_insite_ws_out_t, queue);

            ngx_memzero(&ngx_insite_ws_bufs[i], sizeof(ngx_buf_t));
            ngx_insite_ws_bufs[i].pos = out->frame->data + out->sent;
            ngx_insite_ws_bufs[i].last = out->frame->data + out->frame->len;
            ngx_insite_ws_bufs[i].memory = 1;

            ngx_insite_ws_chain[i].buf = &ngx_insite_ws_bufs[i];
            ngx_insite_ws_chain[i].next = &ngx_insite_ws_chain[i + 1];
            i++;
        }

        ngx_insite_ws_chain[i - 1].next = NULL;

        sent = c->sent;

        cl = c->send_chain(c, ngx_insite_ws_chain, 0);

        if (cl == NGX_CHAIN_ERROR) {
            c->error = 1;
            return NGX_ERROR;
        }

        n = (size_t) (c->sent - sent);

        /* retire what left the socket */
        while (n && !ngx_queue_empty(&wc->out)) {
            q = ngx_queue_head(&wc->out);
            out = ngx_queue_data(q, ngx_insite_ws_out_t, queue);

            left = out->frame->len - out->sent;

            if (n < left) {
                out->sent += n;
                wc->out_bytes -= n;
                ngx_insite_ws_out_started(out);
                break;
            }

            n -= left;
            wc->out_bytes -= left;
            ngx_queue_remove(q);
            ngx_insite_ws_out_free(wc, out);
        }

        if (cl) {
            break;                  /* the socket is full */
        }
    }

    if (!ngx_queue_empty(&wc->out)) {
        return ngx_handle_write_event(c->write, 0);
    }

    return NGX_OK;
}


/* Drops queued frames; a frame partly on the wire must be finished. */

static void
ngx_insite_ws_drop_queue(ngx_insite_ws_conn_t *wc, ngx_uint_t keep_partial)
{
    ngx_queue_t          *q, *next;
    ngx_insite_ws_out_t  *out;

    for (q = ngx_queue_head(&wc->out);
         q != ngx_queue_sentinel(&wc->out);
         q = next)
    {
        next = ngx_queue_next(q);
        out = ngx_queue_data(q, ngx_insite_ws_out_t, queue);

        if (keep_partial && out->sent && q == ngx_queue_head(&wc->out)) {
            continue;
        }

        wc->out_bytes -= out->frame->len - out->sent;
        ngx_queue_remove(q);
        ngx_insite_ws_out_free(wc, out);
    }
}


/* closing */


void
ngx_insite_ws_close(ngx_insite_ws_conn_t *wc, ngx_uint_t code,
    const char *reason)
{
    size_t                  len;
    u_char                  buf[INSITE_WS_CLOSE_FRAME_MAX
                                + INSITE_WS_MAX_SERVER_HEADER];
    ngx_insite_ws_out_t    *out;
    ngx_insite_ws_frame_t  *frame;

    if (wc->closing || wc->finished) {
        return;
    }

    wc->closing = 1;

    ngx_insite_ws_drop_queue(wc, 1);

    if (code == 0) {
        len = insite_ws_frame_header(buf, INSITE_WS_OP_CLOSE, 1, 0);

    } else {
        len = insite_ws_close_frame(buf, (uint16_t) code,
                                    (const u_char *) reason,
                                    reason ? ngx_strlen(reason) : 0);
    }

    frame = ngx_alloc(offsetof(ngx_insite_ws_frame_t, data) + len,
                      wc->connection->log);
    if (frame == NULL) {
        ngx_insite_ws_post_write(wc);
        return;
    }

    frame->refs = 1;
    frame->len = len;
    frame->hlen = len;              /* not a message: no payload to reuse */
    ngx_memzero(frame->deflated, sizeof(frame->deflated));
    frame->plain_only = 0;
    ngx_memcpy(frame->data, buf, len);

    out = ngx_insite_ws_out_get(wc);
    if (out == NULL) {
        ngx_free(frame);
        ngx_insite_ws_post_write(wc);
        return;
    }

    out->frame = frame;
    out->sent = 0;
    out->sub = NULL;
    ngx_queue_insert_tail(&wc->out, &out->queue);
    wc->out_bytes += len;

    if (wc->heartbeat.timer_set) {
        ngx_del_timer(&wc->heartbeat);
    }

    if (wc->going_away.timer_set) {
        ngx_del_timer(&wc->going_away);
    }

    /* if the peer never reads, do not wait for the socket forever */
    ngx_add_timer(&wc->going_away, NGX_INSITE_WS_LINGER * 5);

    ngx_insite_ws_post_write(wc);

    if (!wc->connection->write->ready) {
        (void) ngx_handle_write_event(wc->connection->write, 0);
    }
}


/*
 * Graceful shutdown (reload, binary upgrade, quit): tell the client to go
 * with 1001 after a random delay within insite_ws_shutdown_spread, so that
 * thousands of clients do not reconnect to the new workers in one burst.
 */

void
ngx_insite_ws_go_away(ngx_insite_ws_conn_t *wc)
{
    ngx_msec_t                       delay;
    ngx_http_insite_ws_main_conf_t  *wmcf;

    if (wc->closing || wc->finished || wc->going_away.timer_set) {
        return;
    }

    wmcf = ngx_insite_ws_main_conf();
    wc->connection->idle = 0;

    delay = wmcf->shutdown_spread ? (ngx_msec_t) ngx_random()
                                    % wmcf->shutdown_spread + 1
                                  : 1;

    ngx_add_timer(&wc->going_away, delay);
}


static void
ngx_insite_ws_going_away_handler(ngx_event_t *ev)
{
    ngx_insite_ws_conn_t  *wc = ev->data;

    if (wc->closing) {
        ngx_log_error(NGX_LOG_INFO, wc->connection->log, 0,
                      "insite ws: no close answer from peer, closing");
        ngx_insite_ws_finalize(wc);
        return;
    }

    ngx_insite_ws_close(wc, INSITE_WS_CLOSE_GOING_AWAY,
                        "server restarting, reconnect");
}


static void
ngx_insite_ws_heartbeat_handler(ngx_event_t *ev)
{
    ngx_msec_t              silent, next;
    ngx_insite_ws_conn_t   *wc = ev->data;
    ngx_insite_ws_frame_t  *frame;

    silent = ngx_current_msec - wc->last_rx;

    if (silent >= wc->conf->idle_timeout) {
        ngx_log_error(NGX_LOG_INFO, wc->connection->log, 0,
                      "insite ws: peer silent for %Mms, closing with 1001",
                      silent);
        ngx_insite_metric_inc(ngx_insite_ws_main_conf()->metrics.idle_closes);
        ngx_insite_ws_close(wc, INSITE_WS_CLOSE_GOING_AWAY, "idle timeout");
        return;
    }

    frame = ngx_insite_ws_frame_alloc(ev->log, INSITE_WS_OP_PING, NULL, 0);
    if (frame) {
        (void) ngx_insite_ws_send(wc, frame);
        ngx_insite_ws_frame_release(frame);
    }

    next = ngx_min(wc->conf->ping_interval, wc->conf->idle_timeout - silent);

    if (!wc->closing) {
        ngx_add_timer(&wc->heartbeat, next);
    }
}


static void
ngx_insite_ws_finalize(ngx_insite_ws_conn_t *wc)
{
    ngx_connection_t  *c;

    if (wc->finished) {
        return;
    }

    wc->finished = 1;
    c = wc->connection;

    if (wc->request) {
        /*
         * Still attached: the request is terminated through a posted
         * request, which ngx_http_request_handler would run; ours must.
         * Its pool cleanup releases wc.
         */
        ngx_http_finalize_request(wc->request, NGX_HTTP_CLOSE);
        ngx_http_run_posted_requests(c);
        return;
    }

    ngx_insite_ws_release(wc);
    ngx_http_close_connection(c);
    ngx_free(wc);
}


/* Undoes everything the connection holds; also runs as pool cleanup. */

static void
ngx_insite_ws_release(void *data)
{
    ngx_insite_ws_conn_t  *wc = data;

    ngx_queue_t          *q;
    ngx_insite_ws_sub_t  *sub;

    if (wc->released) {
        return;
    }

    wc->released = 1;
    wc->finished = 1;

    ngx_insite_ws_proto_cancel(wc);

    while (!ngx_queue_empty(&wc->subs)) {
        q = ngx_queue_head(&wc->subs);
        sub = ngx_queue_data(q, ngx_insite_ws_sub_t, conn_link);
        ngx_insite_ws_channel_leave(sub);
    }

    ngx_insite_ws_drop_queue(wc, 0);

    while (!ngx_queue_empty(&wc->out_free)) {
        q = ngx_queue_head(&wc->out_free);
        ngx_queue_remove(q);
        ngx_free(ngx_queue_data(q, ngx_insite_ws_out_t, queue));
    }

    if (wc->msg) {
        ngx_free(wc->msg);
        wc->msg = NULL;
    }

    if (wc->heartbeat.timer_set) {
        ngx_del_timer(&wc->heartbeat);
    }

    if (wc->going_away.timer_set) {
        ngx_del_timer(&wc->going_away);
    }

    if (wc->detach.posted) {
        ngx_delete_posted_event(&wc->detach);
    }

    ngx_queue_remove(&wc->queue);

    ngx_insite_ws_limit_release();

    if (wc->request) {
        /* run as the request's pool cleanup: nobody else frees wc */
        wc->request = NULL;
        ngx_free(wc);
    }
}
