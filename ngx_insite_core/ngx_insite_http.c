#include "ngx_insite_core.h"
#include "insite_http_prefer.h"


ngx_table_elt_t *
ngx_insite_http_header(ngx_http_request_t *r, const char *name, size_t len)
{
    return ngx_insite_http_header_next(r, name, len, NULL);
}


ngx_table_elt_t *
ngx_insite_http_header_next(ngx_http_request_t *r, const char *name,
    size_t len, ngx_table_elt_t *after)
{
    ngx_uint_t        i, past;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    part = &r->headers_in.headers.part;
    h = part->elts;
    past = (after == NULL);

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                return NULL;
            }
            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (!past) {
            past = (&h[i] == after);
            continue;
        }

        if (h[i].key.len == len
            && ngx_strncasecmp(h[i].key.data, (u_char *) name, len) == 0)
        {
            return &h[i];
        }
    }
}


ngx_uint_t
ngx_insite_http_prefers(ngx_http_request_t *r, const char *token)
{
    ngx_table_elt_t  *h = NULL;

    while ((h = ngx_insite_http_header_next(r, "Prefer", 6, h)) != NULL) {
        if (insite_http_prefer_has((char *) h->value.data, h->value.len,
                                   token))
        {
            return 1;
        }
    }

    return 0;
}


ngx_int_t
ngx_insite_http_add_header(ngx_http_request_t *r, const char *name,
    u_char *value, size_t len)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->value.data = ngx_pnalloc(r->pool, len);
    if (h->value.data == NULL) {
        h->hash = 0;
        return NGX_ERROR;
    }

    ngx_memcpy(h->value.data, value, len);
    h->value.len = len;
    h->hash = 1;
    h->key.data = (u_char *) name;
    h->key.len = ngx_strlen(name);

    return NGX_OK;
}
