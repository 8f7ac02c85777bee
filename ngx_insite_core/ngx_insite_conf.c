/*
 * Range-checked directive values: one home for the rule that every time,
 * size and count a directive takes has bounds, checked by `nginx -t`.
 */

#include "ngx_insite_conf.h"


/* 90000 -> "90s", 60000 -> "1m", 1500 -> "1500ms": as a user would write */

static u_char *
ngx_insite_conf_print_msec(u_char *p, u_char *last, ngx_msec_t ms)
{
    if (ms == 0) {
        return ngx_slprintf(p, last, "0");
    }

    if (ms % 3600000 == 0) {
        return ngx_slprintf(p, last, "%Mh", ms / 3600000);
    }

    if (ms % 60000 == 0) {
        return ngx_slprintf(p, last, "%Mm", ms / 60000);
    }

    if (ms % 1000 == 0) {
        return ngx_slprintf(p, last, "%Ms", ms / 1000);
    }

    return ngx_slprintf(p, last, "%Mms", ms);
}


static u_char *
ngx_insite_conf_print_size(u_char *p, u_char *last, size_t size)
{
    if (size && size % (1024 * 1024) == 0) {
        return ngx_slprintf(p, last, "%uzm", size / (1024 * 1024));
    }

    if (size && size % 1024 == 0) {
        return ngx_slprintf(p, last, "%uzk", size / 1024);
    }

    return ngx_slprintf(p, last, "%uz", size);
}


static char *
ngx_insite_conf_invalid(ngx_conf_t *cf, const char *name, ngx_str_t *param,
    u_char *range, u_char *end)
{
    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "%s: invalid parameter \"%V\": %*s",
                       name, param, end - range, range);
    return NGX_CONF_ERROR;
}


char *
ngx_insite_conf_msec(ngx_conf_t *cf, const char *name, ngx_str_t *param,
    ngx_str_t *v, ngx_msec_t min, ngx_msec_t max, ngx_msec_t *out)
{
    u_char      buf[64], *p, *last;
    ngx_msec_t  ms;

    p = buf;
    last = buf + sizeof(buf);

    ms = ngx_parse_time(v, 0);

    if (ms == (ngx_msec_t) NGX_ERROR) {
        p = ngx_slprintf(p, last, "not a time (e.g. 500ms, 30s, 5m)");
        return ngx_insite_conf_invalid(cf, name, param, buf, p);
    }

    if (ms < min || ms > max) {
        p = ngx_slprintf(p, last, "must be ");
        p = ngx_insite_conf_print_msec(p, last, min);
        p = ngx_slprintf(p, last, " to ");
        p = ngx_insite_conf_print_msec(p, last, max);
        return ngx_insite_conf_invalid(cf, name, param, buf, p);
    }

    *out = ms;

    return NGX_CONF_OK;
}


char *
ngx_insite_conf_sec(ngx_conf_t *cf, const char *name, ngx_str_t *param,
    ngx_str_t *v, time_t min, time_t max, time_t *out)
{
    u_char  buf[64], *p, *last;
    time_t  s;

    p = buf;
    last = buf + sizeof(buf);

    s = ngx_parse_time(v, 1);

    if (s == (time_t) NGX_ERROR) {
        p = ngx_slprintf(p, last, "not a time in seconds (e.g. 30s, 5m)");
        return ngx_insite_conf_invalid(cf, name, param, buf, p);
    }

    if (s < min || s > max) {
        p = ngx_slprintf(p, last, "must be ");
        p = ngx_insite_conf_print_msec(p, last, (ngx_msec_t) min * 1000);
        p = ngx_slprintf(p, last, " to ");
        p = ngx_insite_conf_print_msec(p, last, (ngx_msec_t) max * 1000);
        return ngx_insite_conf_invalid(cf, name, param, buf, p);
    }

    *out = s;

    return NGX_CONF_OK;
}


char *
ngx_insite_conf_size(ngx_conf_t *cf, const char *name, ngx_str_t *param,
    ngx_str_t *v, size_t min, size_t max, size_t *out)
{
    u_char   buf[64], *p, *last;
    ssize_t  size;

    p = buf;
    last = buf + sizeof(buf);

    size = ngx_parse_size(v);

    if (size == NGX_ERROR) {
        p = ngx_slprintf(p, last, "not a size (e.g. 512k, 10m)");
        return ngx_insite_conf_invalid(cf, name, param, buf, p);
    }

    if ((size_t) size < min || (size_t) size > max) {
        p = ngx_slprintf(p, last, "must be ");
        p = ngx_insite_conf_print_size(p, last, min);
        p = ngx_slprintf(p, last, " to ");
        p = ngx_insite_conf_print_size(p, last, max);
        return ngx_insite_conf_invalid(cf, name, param, buf, p);
    }

    *out = (size_t) size;

    return NGX_CONF_OK;
}


char *
ngx_insite_conf_uint(ngx_conf_t *cf, const char *name, ngx_str_t *param,
    ngx_str_t *v, ngx_uint_t min, ngx_uint_t max, ngx_uint_t *out)
{
    u_char     buf[64], *p, *last;
    ngx_int_t  n;

    p = buf;
    last = buf + sizeof(buf);

    n = ngx_atoi(v->data, v->len);

    if (n == NGX_ERROR) {
        p = ngx_slprintf(p, last, "not a number");
        return ngx_insite_conf_invalid(cf, name, param, buf, p);
    }

    if ((ngx_uint_t) n < min || (ngx_uint_t) n > max) {
        p = ngx_slprintf(p, last, "must be %ui to %ui", min, max);
        return ngx_insite_conf_invalid(cf, name, param, buf, p);
    }

    *out = (ngx_uint_t) n;

    return NGX_CONF_OK;
}
