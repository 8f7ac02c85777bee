/*
 * The opening handshake (RFC 6455 4.2): checks of the upgrade request, the
 * connection limit shared by all workers, and the 101 response.  Everything
 * refused here is refused before the 101, with an HTTP status and a JSON
 * body.
 */

#include "ngx_insite_ws.h"


static ngx_int_t ngx_insite_ws_has_token(ngx_table_elt_t *h,
    const char *token, size_t len);
static ngx_int_t ngx_insite_ws_origin_allowed(ngx_http_request_t *r,
    ngx_http_insite_ws_loc_conf_t *wlcf);


ngx_int_t
ngx_insite_ws_handshake(ngx_http_request_t *r)
{
    u_char                          accept[INSITE_WS_ACCEPT_LEN + 1];
    ngx_int_t                       rc;
    ngx_str_t                       user;
    ngx_uint_t                      deflate_bits;
    ngx_table_elt_t                *key, *version;
    ngx_http_insite_ws_loc_conf_t  *wlcf;

    wlcf = ngx_http_get_module_loc_conf(r, ngx_http_insite_ws_module);

    if (r->method != NGX_HTTP_GET) {
        return ngx_insite_ws_refuse(r, NGX_HTTP_NOT_ALLOWED, "bad_request",
                                    "a WebSocket handshake is a GET request",
                                    "Allow", "GET");
    }

    if (r->http_version < NGX_HTTP_VERSION_11 || r != r->main) {
        return ngx_insite_ws_refuse(r, NGX_HTTP_BAD_REQUEST, "bad_request",
                                    "a WebSocket handshake needs HTTP/1.1",
                                    NULL, NULL);
    }

    /* found by name: nginx 1.22 does not fill headers_in.upgrade */
    if (!ngx_insite_ws_has_token(ngx_insite_http_header(r, "Upgrade", 7),
                                 "websocket", 9)
        || !ngx_insite_ws_has_token(ngx_insite_http_header(r, "Connection", 10),
                                    "upgrade", 7))
    {
        return ngx_insite_ws_refuse(r, 426, "upgrade_required",
                                    "this location speaks WebSocket only: "
                                    "send Upgrade: websocket",
                                    "Upgrade", "websocket");
    }

    version = ngx_insite_http_header(r, "Sec-WebSocket-Version", 21);

    if (version == NULL || version->value.len != 2
        || ngx_strncmp(version->value.data, "13", 2) != 0)
    {
        return ngx_insite_ws_refuse(r, 426, "upgrade_required",
                                    "only WebSocket version 13 is supported",
                                    "Sec-WebSocket-Version", "13");
    }

    key = ngx_insite_http_header(r, "Sec-WebSocket-Key", 17);

    if (key == NULL || !insite_ws_key_valid(key->value.data, key->value.len)) {
        return ngx_insite_ws_refuse(r, NGX_HTTP_BAD_REQUEST, "bad_request",
                                    "Sec-WebSocket-Key must be the base64 "
                                    "of 16 bytes", NULL, NULL);
    }

    if (ngx_insite_ws_origin_allowed(r, wlcf) != NGX_OK) {
        return ngx_insite_ws_refuse(r, NGX_HTTP_FORBIDDEN, "forbidden",
                                    "origin not allowed", NULL, NULL);
    }

    ngx_str_null(&user);

    if (wlcf->user
        && ngx_http_complex_value(r, wlcf->user, &user) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (insite_ws_accept_key(key->value.data, key->value.len, accept) != 0) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "insite ws: cannot compute Sec-WebSocket-Accept");
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    /* the last check: once counted, the connection must be uncounted */
    if (ngx_insite_ws_limit_acquire(r) != NGX_OK) {
        return ngx_insite_ws_refuse(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                    "service_unavailable",
                                    "too many WebSocket connections",
                                    "Retry-After", "5");
    }

    /* RFC 7692: an offer we cannot parse fails the handshake */
    rc = ngx_insite_ws_deflate_handshake(r, &deflate_bits);

    if (rc != NGX_OK) {
        ngx_insite_ws_limit_release();

        if (rc == NGX_DECLINED) {
            return ngx_insite_ws_refuse(r, NGX_HTTP_BAD_REQUEST,
                                        "bad_request",
                                        "invalid Sec-WebSocket-Extensions",
                                        NULL, NULL);
        }

        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    r->headers_out.status = NGX_HTTP_SWITCHING_PROTOCOLS;
    ngx_str_set(&r->headers_out.status_line, "101 Switching Protocols");
    r->headers_out.content_length_n = -1;
    r->keepalive = 0;
    r->header_only = 1;

    if (ngx_insite_http_add_header(r, "Upgrade", (u_char *) "websocket", 9)
        != NGX_OK
        || ngx_insite_http_add_header(r, "Sec-WebSocket-Accept", accept,
                                    INSITE_WS_ACCEPT_LEN)
           != NGX_OK)
    {
        ngx_insite_ws_limit_release();
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_insite_ws_conn_start(r, &user, deflate_bits);
}


/* a comma-separated header value contains token, case-insensitively */

static ngx_int_t
ngx_insite_ws_has_token(ngx_table_elt_t *h, const char *token, size_t len)
{
    u_char  *p, *last, *start;

    if (h == NULL) {
        return 0;
    }

    p = h->value.data;
    last = p + h->value.len;

    while (p < last) {
        while (p < last && (*p == ' ' || *p == '\t' || *p == ',')) {
            p++;
        }

        start = p;

        while (p < last && *p != ',' && *p != ' ' && *p != '\t') {
            p++;
        }

        if ((size_t) (p - start) == len
            && ngx_strncasecmp(start, (u_char *) token, len) == 0)
        {
            return 1;
        }
    }

    return 0;
}


static ngx_int_t
ngx_insite_ws_origin_allowed(ngx_http_request_t *r,
    ngx_http_insite_ws_loc_conf_t *wlcf)
{
    ngx_str_t        *allowed;
    ngx_uint_t        i;
    ngx_table_elt_t  *origin;

    if (wlcf->allowed_origins == NULL) {
        return NGX_OK;
    }

    origin = ngx_insite_http_header(r, "Origin", 6);
    if (origin == NULL) {
        /* not a browser: Origin is what protects browsers' users */
        return NGX_OK;
    }

    allowed = wlcf->allowed_origins->elts;

    for (i = 0; i < wlcf->allowed_origins->nelts; i++) {
        if (allowed[i].len == origin->value.len
            && ngx_strncasecmp(allowed[i].data, origin->value.data,
                               origin->value.len) == 0)
        {
            return NGX_OK;
        }
    }

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "insite ws: origin \"%V\" not allowed", &origin->value);

    return NGX_DECLINED;
}


ngx_int_t
ngx_insite_ws_refuse(ngx_http_request_t *r, ngx_uint_t status,
    const char *code, const char *message, const char *hname,
    const char *hvalue)
{
    ngx_int_t  rc;
    ngx_str_t  msg;

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    if (hname
        && ngx_insite_http_add_header(r, hname, (u_char *) hvalue,
                                    ngx_strlen(hvalue))
           != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    msg.data = (u_char *) message;
    msg.len = ngx_strlen(message);

    return ngx_insite_json_error(r, status, code, &msg);
}
