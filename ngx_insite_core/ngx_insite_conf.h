/*
 * Directive values, range-checked at configuration time.  A value out of
 * its range stops `nginx -t` with an error naming the directive, the
 * parameter, the value and the range:
 *
 *   insite_redis: invalid parameter "command_timeout=0": must be 1ms to 1m
 *
 * `name` is the directive; `param` what to quote (the whole "key=value"
 * argument, or the value of a one-argument directive); `v` the value.
 */

#ifndef _NGX_INSITE_CONF_H_INCLUDED_
#define _NGX_INSITE_CONF_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>


char *ngx_insite_conf_msec(ngx_conf_t *cf, const char *name, ngx_str_t *param,
    ngx_str_t *v, ngx_msec_t min, ngx_msec_t max, ngx_msec_t *out);
char *ngx_insite_conf_sec(ngx_conf_t *cf, const char *name, ngx_str_t *param,
    ngx_str_t *v, time_t min, time_t max, time_t *out);
char *ngx_insite_conf_size(ngx_conf_t *cf, const char *name, ngx_str_t *param,
    ngx_str_t *v, size_t min, size_t max, size_t *out);
char *ngx_insite_conf_uint(ngx_conf_t *cf, const char *name, ngx_str_t *param,
    ngx_str_t *v, ngx_uint_t min, ngx_uint_t max, ngx_uint_t *out);


#endif /* _NGX_INSITE_CONF_H_INCLUDED_ */
