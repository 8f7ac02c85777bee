#include "ngx_insite_core.h"


size_t
ngx_insite_json_str_len(ngx_str_t *s)
{
    return 2 + s->len + ngx_escape_json(NULL, s->data, s->len);
}


u_char *
ngx_insite_json_str(u_char *p, ngx_str_t *s)
{
    *p++ = '"';
    p = (u_char *) ngx_escape_json(p, s->data, s->len);
    *p++ = '"';

    return p;
}


ngx_int_t
ngx_insite_json_send(ngx_http_request_t *r, ngx_uint_t status, ngx_buf_t *body)
{
    ngx_int_t    rc;
    ngx_chain_t  out;

    r->headers_out.status = status;
    r->headers_out.content_length_n = body->last - body->pos;
    ngx_str_set(&r->headers_out.content_type, "application/json");
    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.content_type_lowcase = NULL;

    body->last_buf = (r == r->main) ? 1 : 0;
    body->last_in_chain = 1;

    if (r->method == NGX_HTTP_HEAD) {
        r->header_only = 1;
    }

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    out.buf = body;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


ngx_int_t
ngx_insite_json_error(ngx_http_request_t *r, ngx_uint_t status,
    const char *code, ngx_str_t *message)
{
    size_t      len;
    ngx_str_t   c;
    ngx_buf_t  *b;

    c.data = (u_char *) code;
    c.len = ngx_strlen(code);

    len = sizeof("{\"error\":,\"message\":}\n") - 1
          + ngx_insite_json_str_len(&c) + ngx_insite_json_str_len(message);

    b = ngx_create_temp_buf(r->pool, len);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->last = ngx_cpymem(b->last, "{\"error\":", sizeof("{\"error\":") - 1);
    b->last = ngx_insite_json_str(b->last, &c);
    b->last = ngx_cpymem(b->last, ",\"message\":", sizeof(",\"message\":") - 1);
    b->last = ngx_insite_json_str(b->last, message);
    *b->last++ = '}';
    *b->last++ = '\n';

    return ngx_insite_json_send(r, status, b);
}

