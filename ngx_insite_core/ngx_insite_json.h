/*
 * JSON responses made by the insite modules: one content type, one error
 * shape, escaping through nginx's own ngx_escape_json().
 */

#ifndef _NGX_INSITE_JSON_H_INCLUDED_
#define _NGX_INSITE_JSON_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>


/* Sends status + body (which must be complete JSON) and finalizes nothing:
 * returns what ngx_http_output_filter() returns, like a content handler. */
ngx_int_t ngx_insite_json_send(ngx_http_request_t *r, ngx_uint_t status,
    ngx_buf_t *body);

/* {"error":"<code>","message":"<message>"} */
ngx_int_t ngx_insite_json_error(ngx_http_request_t *r, ngx_uint_t status,
    const char *code, ngx_str_t *message);

/* bytes needed for s as a JSON string, quotes included */
size_t ngx_insite_json_str_len(ngx_str_t *s);
/* writes s as a JSON string, quotes included */
u_char *ngx_insite_json_str(u_char *p, ngx_str_t *s);


#endif /* _NGX_INSITE_JSON_H_INCLUDED_ */
