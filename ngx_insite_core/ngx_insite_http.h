/*
 * Request and response headers, as the insite modules read and set them.
 */

#ifndef _NGX_INSITE_HTTP_H_INCLUDED_
#define _NGX_INSITE_HTTP_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>


/* the first request header of that name (case-insensitive), or NULL */
ngx_table_elt_t *ngx_insite_http_header(ngx_http_request_t *r,
    const char *name, size_t len);

/* the next one after `after` (NULL: the first), or NULL */
ngx_table_elt_t *ngx_insite_http_header_next(ngx_http_request_t *r,
    const char *name, size_t len, ngx_table_elt_t *after);

/* 1 when a Prefer header of the request (RFC 7240) names `token` */
ngx_uint_t ngx_insite_http_prefers(ngx_http_request_t *r, const char *token);

/* adds a response header (value copied into the request pool) */
ngx_int_t ngx_insite_http_add_header(ngx_http_request_t *r, const char *name,
    u_char *value, size_t len);


#endif /* _NGX_INSITE_HTTP_H_INCLUDED_ */
