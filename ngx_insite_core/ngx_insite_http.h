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

/* adds a response header (value copied into the request pool) */
ngx_int_t ngx_insite_http_add_header(ngx_http_request_t *r, const char *name,
    u_char *value, size_t len);


#endif /* _NGX_INSITE_HTTP_H_INCLUDED_ */
