/*
 * What the gateway says to clients and upstreams: the request id
 * (X-Request-ID, $insite_request_id), the one JSON error shape
 *
 *   {"error":"<code>","message":"...","request_id":"...","retry_after":N}
 *
 * and the rate-limit headers (IETF httpapi draft and the older/Kong ones).
 */

#include "ngx_insite_gateway.h"


#include "insite_gw_args.h"


static u_char *ngx_insite_gw_dec(u_char *p, int64_t v);
static ngx_uint_t ngx_insite_gw_request_id_valid(ngx_str_t *id);


ngx_insite_gw_ctx_t *
ngx_insite_gw_get_ctx(ngx_http_request_t *r)
{
    ngx_insite_gw_ctx_t  *ctx;

    r = r->main;

    ctx = ngx_http_get_module_ctx(r, ngx_http_insite_gateway_module);
    if (ctx) {
        return ctx;
    }

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_insite_gw_ctx_t));
    if (ctx == NULL) {
        return NULL;
    }

    ctx->request = r;
    ngx_http_set_ctx(r, ctx, ngx_http_insite_gateway_module);

    return ctx;
}


/* 1-128 characters of [A-Za-z0-9._-]: safe in headers, logs and JSON */

static ngx_uint_t
ngx_insite_gw_request_id_valid(ngx_str_t *id)
{
    u_char  *p, *last;

    if (id->len == 0 || id->len > NGX_INSITE_GW_REQUEST_ID_MAX) {
        return 0;
    }

    for (p = id->data, last = p + id->len; p < last; p++) {
        if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z')
              || (*p >= '0' && *p <= '9') || *p == '.' || *p == '_'
              || *p == '-'))
        {
            return 0;
        }
    }

    return 1;
}


/*
 * The request's id: the client's when well-formed, otherwise 128 random
 * bits in hex (as nginx's $request_id).  An internal redirect clears the
 * module context, but by then the id is in the request headers (see
 * ngx_insite_gw_request_id_upstream), so it stays the same.
 */

ngx_str_t *
ngx_insite_gw_request_id(ngx_http_request_t *r, ngx_insite_gw_ctx_t *ctx)
{
    u_char            rnd[16];
    ngx_table_elt_t  *h;

    static ngx_str_t  unknown = ngx_string("-");

    if (ctx == NULL) {
        ctx = ngx_insite_gw_get_ctx(r);
        if (ctx == NULL) {
            return &unknown;
        }
    }

    if (ctx->request_id.len) {
        return &ctx->request_id;
    }

    r = r->main;

    h = ngx_insite_http_header(r, "X-Request-ID", sizeof("X-Request-ID") - 1);

    if (h && ngx_insite_gw_request_id_valid(&h->value)) {
        ctx->request_id = h->value;
        return &ctx->request_id;
    }

    ctx->request_id.data = ngx_pnalloc(r->pool, 32);
    if (ctx->request_id.data == NULL) {
        return &unknown;
    }

    ngx_insite_random(rnd, 16);

    ngx_hex_dump(ctx->request_id.data, rnd, 16);
    ctx->request_id.len = 32;

    return &ctx->request_id;
}


/*
 * The upstream gets the id in X-Request-ID: the client's header is kept if
 * well-formed, otherwise its value (every copy) is replaced, or a header is
 * added.  proxy_pass passes the request's headers on as they are.
 */

ngx_int_t
ngx_insite_gw_request_id_upstream(ngx_http_request_t *r,
    ngx_insite_gw_ctx_t *ctx)
{
    ngx_str_t        *id;
    ngx_uint_t        i, found;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    id = ngx_insite_gw_request_id(r, ctx);

    found = 0;
    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */ ; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].key.len == sizeof("X-Request-ID") - 1
            && ngx_strncasecmp(h[i].key.data, (u_char *) "X-Request-ID",
                               sizeof("X-Request-ID") - 1) == 0)
        {
            h[i].value = *id;
            found = 1;
        }
    }

    if (found) {
        return NGX_OK;
    }

    h = ngx_list_push(&r->headers_in.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    /*
     * The hash the request parser would have given it: proxy_set_header
     * X-Request-ID replaces a request header only when it finds the
     * header's hash in its own table, otherwise both go upstream.
     */
    h->hash = ngx_hash_key((u_char *) "x-request-id",
                           sizeof("x-request-id") - 1);
    ngx_str_set(&h->key, "X-Request-ID");
    h->lowcase_key = (u_char *) "x-request-id";
    h->value = *id;
#if (nginx_version >= 1023000)
    h->next = NULL;
#endif

    return NGX_OK;
}


/*
 * A bearer token accepted from the query string (`token=`, matched without
 * regard to case, as ngx_http_arg matches it) must not travel further:
 * every `token=` argument is dropped from $args (what proxy_pass sends
 * when it builds the URI), from $request_uri (what it sends unchanged
 * otherwise) and from the request line ($request, and the error log's
 * "request:" context).  The other arguments keep their bytes and order;
 * a query left empty loses its "?".
 */

#define ngx_insite_gw_args_without_token(d, p, last)                        \
    insite_gw_args_drop(d, p, last, "token", sizeof("token") - 1)


/* *s with its query (after the first '?', up to `end`) filtered */

static ngx_int_t
ngx_insite_gw_strip_token(ngx_pool_t *pool, ngx_str_t *s, u_char *end)
{
    u_char  *q, *buf, *d, *e;

    q = ngx_strlchr(s->data, end, '?');
    if (q == NULL) {
        return NGX_OK;
    }

    buf = ngx_pnalloc(pool, s->len);
    if (buf == NULL) {
        return NGX_ERROR;
    }

    d = ngx_cpymem(buf, s->data, q - s->data);
    *d = '?';

    e = ngx_insite_gw_args_without_token(d + 1, q + 1, end);
    if (e != d + 1) {
        d = e;
    }

    d = ngx_cpymem(d, end, s->data + s->len - end);

    s->data = buf;
    s->len = d - buf;

    return NGX_OK;
}


ngx_int_t
ngx_insite_gw_strip_query_token(ngx_http_request_t *r)
{
    u_char     *buf, *end;
    ngx_str_t  *line;

    if (r->args.len) {
        buf = ngx_pnalloc(r->pool, r->args.len);
        if (buf == NULL) {
            return NGX_ERROR;
        }

        end = ngx_insite_gw_args_without_token(buf, r->args.data,
                                               r->args.data + r->args.len);
        r->args.data = buf;
        r->args.len = end - buf;
    }

    if (r->unparsed_uri.len
        && ngx_insite_gw_strip_token(r->pool, &r->unparsed_uri,
                                     r->unparsed_uri.data
                                     + r->unparsed_uri.len)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    line = &r->main->request_line;

    if (line->len) {
        /* "GET /p?q HTTP/1.1": the query ends where the protocol begins */
        end = line->data + line->len;

        if (r->main->http_protocol.len
            && r->main->http_protocol.data > line->data
            && r->main->http_protocol.data <= end)
        {
            end = r->main->http_protocol.data - 1;
        }

        if (ngx_insite_gw_strip_token(r->pool, line, end) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


ngx_int_t
ngx_insite_gw_set_header(ngx_http_request_t *r, const char *name,
    ngx_str_t *value)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    h->key.data = (u_char *) name;
    h->key.len = ngx_strlen(name);
    h->value = *value;
#if (nginx_version >= 1023000)
    h->next = NULL;
#endif

    return NGX_OK;
}


ngx_buf_t *
ngx_insite_gw_error_body(ngx_http_request_t *r, ngx_insite_gw_ctx_t *ctx,
    const char *code, const char *message, time_t retry_after)
{
    size_t      len;
    ngx_str_t   c, m, *id;
    ngx_buf_t  *b;

    c.data = (u_char *) code;
    c.len = ngx_strlen(code);
    m.data = (u_char *) message;
    m.len = ngx_strlen(message);
    id = ngx_insite_gw_request_id(r, ctx);

    len = sizeof("{\"error\":,\"message\":,\"request_id\":,\"retry_after\":}\n")
          + ngx_insite_json_str_len(&c) + ngx_insite_json_str_len(&m)
          + ngx_insite_json_str_len(id) + NGX_TIME_T_LEN;

    b = ngx_create_temp_buf(r->pool, len);
    if (b == NULL) {
        return NULL;
    }

    b->last = ngx_cpymem(b->last, "{\"error\":", sizeof("{\"error\":") - 1);
    b->last = ngx_insite_json_str(b->last, &c);
    b->last = ngx_cpymem(b->last, ",\"message\":", sizeof(",\"message\":") - 1);
    b->last = ngx_insite_json_str(b->last, &m);
    b->last = ngx_cpymem(b->last, ",\"request_id\":",
                         sizeof(",\"request_id\":") - 1);
    b->last = ngx_insite_json_str(b->last, id);

    if (retry_after > 0) {
        b->last = ngx_sprintf(b->last, ",\"retry_after\":%T", retry_after);
    }

    *b->last++ = '}';
    *b->last++ = '\n';

    return b;
}


/*
 * An error made by the gateway, sent from the access phase: the caller
 * finalizes with what this returns.
 */

ngx_int_t
ngx_insite_gw_error(ngx_http_request_t *r, ngx_insite_gw_ctx_t *ctx,
    ngx_uint_t status, const char *code, const char *message,
    time_t retry_after)
{
    u_char     *p;
    ngx_str_t   v;
    ngx_buf_t  *b;

    if (ngx_http_discard_request_body(r) != NGX_OK) {
        r->keepalive = 0;
    }

    if (retry_after > 0) {
        p = ngx_pnalloc(r->pool, NGX_TIME_T_LEN);
        if (p == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        v.data = p;
        v.len = ngx_sprintf(p, "%T", retry_after) - p;

        if (ngx_insite_gw_set_header(r, "Retry-After", &v) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    b = ngx_insite_gw_error_body(r, ctx, code, message, retry_after);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_insite_json_send(r, status, b);
}


/*
 * Rate-limit headers, on admitted and refused responses alike:
 *
 *   draft:  RateLimit-Policy: "<zone>";q=<burst+1>;w=<seconds>
 *           RateLimit: "<zone>";r=<remaining>;t=<reset>
 *   legacy: RateLimit-Limit: <burst+1>
 *           RateLimit-Remaining: <remaining>
 *           RateLimit-Reset: <reset>
 *
 * RateLimit-Policy and RateLimit-Limit are fixed by the directive and
 * formatted once (ngx_insite_gw_limit_fixed_headers()); the rest are
 * written with ngx_insite_gw_dec(): ngx_sprintf() was a quarter of the
 * instructions the gateway adds to a proxied request (bench/gateway/run.sh
 * MODE=callgrind).
 */

ngx_int_t
ngx_insite_gw_rate_headers(ngx_http_request_t *r, ngx_insite_gw_ctx_t *ctx)
{
    u_char                        *p;
    ngx_str_t                      v;
    ngx_insite_gw_limit_t         *lim;
    ngx_insite_gw_limit_result_t  *res;

    lim = ctx->limit;
    res = &ctx->limit_result;

    if (ctx->rate_headers & NGX_INSITE_GW_RH_DRAFT) {
        if (ngx_insite_gw_set_header(r, "RateLimit-Policy", &lim->policy)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        p = ngx_pnalloc(r->pool, lim->zone_name.len + 2 * NGX_INT64_LEN
                                 + sizeof("\"\";r=;t=") - 1);
        if (p == NULL) {
            return NGX_ERROR;
        }

        v.data = p;
        *p++ = '"';
        p = ngx_cpymem(p, lim->zone_name.data, lim->zone_name.len);
        p = ngx_cpymem(p, "\";r=", sizeof("\";r=") - 1);
        p = ngx_insite_gw_dec(p, (int64_t) res->remaining);
        p = ngx_cpymem(p, ";t=", sizeof(";t=") - 1);
        p = ngx_insite_gw_dec(p, (int64_t) res->reset);
        v.len = p - v.data;

        if (ngx_insite_gw_set_header(r, "RateLimit", &v) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    if (ctx->rate_headers & NGX_INSITE_GW_RH_LEGACY) {
        if (ngx_insite_gw_set_header(r, "RateLimit-Limit", &lim->quota)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        p = ngx_pnalloc(r->pool, 2 * NGX_INT64_LEN);
        if (p == NULL) {
            return NGX_ERROR;
        }

        v.data = p;
        v.len = ngx_insite_gw_dec(p, (int64_t) res->remaining) - p;
        if (ngx_insite_gw_set_header(r, "RateLimit-Remaining", &v) != NGX_OK) {
            return NGX_ERROR;
        }

        p += v.len;
        v.data = p;
        v.len = ngx_insite_gw_dec(p, (int64_t) res->reset) - p;
        if (ngx_insite_gw_set_header(r, "RateLimit-Reset", &v) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/* v in decimal at p (at most NGX_INT64_LEN bytes); returns the end */

static u_char *
ngx_insite_gw_dec(u_char *p, int64_t v)
{
    u_char    buf[NGX_INT64_LEN];
    u_char   *q;
    uint64_t  u;

    if (v < 0) {
        *p++ = '-';
        u = (uint64_t) 0 - (uint64_t) v;

    } else {
        u = (uint64_t) v;
    }

    q = buf + sizeof(buf);

    do {
        *--q = (u_char) ('0' + u % 10);
        u /= 10;
    } while (u);

    return ngx_cpymem(p, q, buf + sizeof(buf) - q);
}
