/*
 * permessage-deflate (RFC 7692) in nginx: the handshake's answer, a
 * message's compressed frame built once and shared, client messages
 * inflated.  The protocol core is insite_ws_deflate.c.
 *
 * The server compresses without context takeover, so a message compresses
 * the same for every subscriber with the same window: the compressed frame
 * hangs off the plain one (frame->deflated[bits - 8]), made by the first
 * send that wants it, released with the plain frame.  Each worker keeps one
 * deflate stream per window size in use and one inflate stream; nothing
 * per connection.
 */

#include "ngx_insite_ws.h"


#define NGX_INSITE_WS_DEFLATE_LEVEL  Z_DEFAULT_COMPRESSION


/* a worker's scratch buffer, grown to the largest size asked */
typedef struct {
    u_char                     *data;
    size_t                      size;
} ngx_insite_ws_zbuf_t;


static z_stream              *ngx_insite_ws_deflaters[8];  /* bits - 8 */
static z_stream              *ngx_insite_ws_inflater;

/*
 * Two buffers: an inflated client message is still being read by the
 * protocol code while the replies it causes are compressed.
 */
static ngx_insite_ws_zbuf_t   ngx_insite_ws_deflated_buf;
static ngx_insite_ws_zbuf_t   ngx_insite_ws_inflated_buf;


static u_char *ngx_insite_ws_zbuf(ngx_insite_ws_zbuf_t *b, size_t size,
    ngx_log_t *log);
static void ngx_insite_ws_zbuf_free(ngx_insite_ws_zbuf_t *b);


/*
 * Before the 101: *bits is the server's window for the connection, 0
 * without the extension.  NGX_DECLINED: the offer is not RFC 7692's syntax
 * (the caller answers 400).
 */

ngx_int_t
ngx_insite_ws_deflate_handshake(ngx_http_request_t *r, ngx_uint_t *bits)
{
    int                             rc;
    size_t                          n;
    u_char                         *p;
    ngx_table_elt_t                *h;
    insite_ws_deflate_params_t      params;
    ngx_http_insite_ws_loc_conf_t  *wlcf;

    *bits = 0;
    wlcf = ngx_http_get_module_loc_conf(r, ngx_http_insite_ws_module);

    if (!wlcf->deflate) {
        return NGX_OK;
    }

    h = ngx_insite_http_header(r, "Sec-WebSocket-Extensions", 24);
    if (h == NULL) {
        return NGX_OK;
    }

    rc = insite_ws_deflate_negotiate(h->value.data, h->value.len, &params);

    if (rc == INSITE_WS_DEFLATE_BAD_HEADER) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "insite ws: invalid Sec-WebSocket-Extensions \"%V\"",
                      &h->value);
        return NGX_DECLINED;
    }

    if (rc == INSITE_WS_DEFLATE_NONE) {
        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "insite ws: no acceptable extension in \"%V\"",
                       &h->value);
        return NGX_OK;
    }

    p = ngx_pnalloc(r->pool, INSITE_WS_DEFLATE_RESPONSE_MAX);
    if (p == NULL) {
        return NGX_ERROR;
    }

    n = insite_ws_deflate_response(&params, p);

    if (ngx_insite_http_add_header(r, "Sec-WebSocket-Extensions", p, n)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    *bits = params.server_window_bits;

    return NGX_OK;
}


static z_stream *
ngx_insite_ws_deflater(ngx_uint_t bits, ngx_log_t *log)
{
    z_stream  *zs;

    zs = ngx_insite_ws_deflaters[bits - 8];
    if (zs) {
        return zs;
    }

    zs = ngx_calloc(sizeof(z_stream), log);
    if (zs == NULL) {
        return NULL;
    }

    if (deflateInit2(zs, NGX_INSITE_WS_DEFLATE_LEVEL, Z_DEFLATED,
                     -(int) bits, 8, Z_DEFAULT_STRATEGY)
        != Z_OK)
    {
        ngx_log_error(NGX_LOG_ALERT, log, 0,
                      "insite ws: deflateInit2() failed: %s",
                      zs->msg ? zs->msg : "?");
        ngx_free(zs);
        return NULL;
    }

    ngx_insite_ws_deflaters[bits - 8] = zs;

    return zs;
}


/*
 * The frame to queue for a connection with the server window bits: the
 * compressed sibling of a text message, made once; the frame itself when
 * it is small, not a message, or does not shrink.
 */

ngx_insite_ws_frame_t *
ngx_insite_ws_frame_deflated(ngx_insite_ws_frame_t *frame, ngx_uint_t bits,
    size_t min_size, ngx_log_t *log)
{
    int                     rc;
    size_t                  plen, zlen, hlen;
    u_char                 *buf, header[INSITE_WS_MAX_SERVER_HEADER];
    z_stream               *zs;
    ngx_uint_t              i;
    ngx_insite_ws_frame_t  *z;

    plen = frame->len - frame->hlen;
    i = bits - 8;

    if (plen < min_size || plen == 0
        || (frame->data[0] & 0x0f) != INSITE_WS_OP_TEXT
        || (frame->plain_only & (1 << i)))
    {
        return frame;
    }

    if (frame->deflated[i]) {
        return frame->deflated[i];
    }

    zs = ngx_insite_ws_deflater(bits, log);
    if (zs == NULL) {
        return frame;
    }

    buf = ngx_insite_ws_zbuf(&ngx_insite_ws_deflated_buf,
                             deflateBound(zs, plen) + 16, log);
    if (buf == NULL) {
        return frame;
    }

    rc = insite_ws_deflate_message(zs, frame->data + frame->hlen, plen, buf,
                                   ngx_insite_ws_deflated_buf.size, &zlen);

    if (rc != INSITE_WS_DEFLATE_OK || zlen >= plen) {
        if (rc != INSITE_WS_DEFLATE_OK) {
            ngx_log_error(NGX_LOG_ERR, log, 0,
                          "insite ws: compressing a message failed (%d), "
                          "sent as is", rc);
        }
        frame->plain_only |= 1 << i;
        return frame;
    }

    hlen = insite_ws_frame_header(header, INSITE_WS_OP_TEXT, 1, zlen);
    header[0] |= 0x40;                              /* RSV1: compressed */

    z = ngx_calloc(offsetof(ngx_insite_ws_frame_t, data) + hlen + zlen, log);
    if (z == NULL) {
        return frame;
    }

    z->refs = 1;                                    /* the plain frame's */
    z->len = hlen + zlen;
    z->hlen = hlen;
    z->plain_only = 0xff;                           /* never compressed again */
    ngx_memcpy(z->data, header, hlen);
    ngx_memcpy(z->data + hlen, buf, zlen);

    frame->deflated[i] = z;

    return z;
}


/*
 * A compressed client message, inflated into a worker buffer valid until
 * the next call.  Returns a close code on failure, 0 on success.
 */

ngx_uint_t
ngx_insite_ws_inflate(ngx_insite_ws_conn_t *wc, u_char *in, size_t len,
    u_char **out, size_t *out_len)
{
    int         rc;
    u_char     *buf;
    size_t      max;
    ngx_log_t  *log = wc->connection->log;

    if (ngx_insite_ws_inflater == NULL) {
        ngx_insite_ws_inflater = ngx_calloc(sizeof(z_stream), log);
        if (ngx_insite_ws_inflater == NULL) {
            return INSITE_WS_CLOSE_INTERNAL;
        }

        if (inflateInit2(ngx_insite_ws_inflater, -MAX_WBITS) != Z_OK) {
            ngx_log_error(NGX_LOG_ALERT, log, 0,
                          "insite ws: inflateInit2() failed");
            ngx_free(ngx_insite_ws_inflater);
            ngx_insite_ws_inflater = NULL;
            return INSITE_WS_CLOSE_INTERNAL;
        }
    }

    max = wc->conf->max_message_size;

    buf = ngx_insite_ws_zbuf(&ngx_insite_ws_inflated_buf, max, log);
    if (buf == NULL) {
        return INSITE_WS_CLOSE_INTERNAL;
    }

    rc = insite_ws_inflate_message(ngx_insite_ws_inflater, in, len, buf, max,
                                   out_len);

    switch (rc) {

    case INSITE_WS_DEFLATE_OK:
        *out = buf;
        return 0;

    case INSITE_WS_DEFLATE_TOO_BIG:
        return INSITE_WS_CLOSE_TOO_BIG;

    case INSITE_WS_DEFLATE_BAD_DATA:
        return INSITE_WS_CLOSE_INVALID_DATA;

    default:
        return INSITE_WS_CLOSE_INTERNAL;
    }
}


static u_char *
ngx_insite_ws_zbuf(ngx_insite_ws_zbuf_t *b, size_t size, ngx_log_t *log)
{
    u_char  *p;

    if (size <= b->size) {
        return b->data;
    }

    p = ngx_alloc(size, log);
    if (p == NULL) {
        return NULL;
    }

    ngx_free(b->data);
    b->data = p;
    b->size = size;

    return p;
}


static void
ngx_insite_ws_zbuf_free(ngx_insite_ws_zbuf_t *b)
{
    ngx_free(b->data);
    b->data = NULL;
    b->size = 0;
}


void
ngx_insite_ws_deflate_exit(void)
{
    ngx_uint_t  i;

    for (i = 0; i < 8; i++) {
        if (ngx_insite_ws_deflaters[i]) {
            (void) deflateEnd(ngx_insite_ws_deflaters[i]);
            ngx_free(ngx_insite_ws_deflaters[i]);
            ngx_insite_ws_deflaters[i] = NULL;
        }
    }

    if (ngx_insite_ws_inflater) {
        (void) inflateEnd(ngx_insite_ws_inflater);
        ngx_free(ngx_insite_ws_inflater);
        ngx_insite_ws_inflater = NULL;
    }

    ngx_insite_ws_zbuf_free(&ngx_insite_ws_deflated_buf);
    ngx_insite_ws_zbuf_free(&ngx_insite_ws_inflated_buf);
}
