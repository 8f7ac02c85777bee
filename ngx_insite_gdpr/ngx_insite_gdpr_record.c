/*
 * One audited request -> the fields of its journal record (format 2):
 *
 *   {"v":2,"id":"<uuid v4>","ts":"2026-11-26T10:30:45.123Z","user_id":"u1",
 *    "data_subject":"u1","access_type":"read","data_type":"portfolio","method":"GET",
 *    "path":"/api/v1/portfolio","status":200,"result":true,"reason":null,
 *    "ip":"10.0.0.7","request_id":"...","worker":"0"
 *
 * "reason" names why the edge refused the request ("consent_required",
 * "consent_unavailable", "audit_unavailable"), null otherwise.  With
 * insite_gdpr_pseudonym_key, user_id and data_subject are pseudonyms
 * ("psn:<32 hex>", insite_gdpr_pseudonym.h), never the clear id.
 * Format 1 (no "v", no "reason") is what earlier versions wrote.
 * The journal appends seq, prev_hash and hash.  Strings are JSON-escaped
 * and always valid UTF-8 (invalid bytes and NUL become U+FFFD), and capped
 * so that one record stays one small write().
 */


#include "ngx_insite_gdpr.h"


#define NGX_INSITE_GDPR_MAX_USER     256
#define NGX_INSITE_GDPR_MAX_TYPE     256
#define NGX_INSITE_GDPR_MAX_PATH     4096
#define NGX_INSITE_GDPR_MAX_SHORT    128


static u_char *ngx_insite_gdpr_json(u_char *p, ngx_str_t *s, size_t max);
static u_char *ngx_insite_gdpr_digits(u_char *p, ngx_uint_t v,
    ngx_uint_t width);
static u_char *ngx_insite_gdpr_ts(u_char *p, time_t sec, ngx_uint_t msec);
static void ngx_insite_gdpr_uuid(u_char *out);
static ngx_int_t ngx_insite_gdpr_data_type(ngx_http_request_t *r,
    ngx_http_insite_gdpr_loc_conf_t *lcf, ngx_str_t *data_type);
static ngx_int_t ngx_insite_gdpr_data_subject(ngx_http_request_t *r,
    ngx_http_insite_gdpr_loc_conf_t *lcf, ngx_str_t *user,
    ngx_str_t *subject);
static ngx_int_t ngx_insite_gdpr_variable(ngx_http_request_t *r,
    ngx_int_t index, ngx_str_t *value);
static ngx_int_t ngx_insite_gdpr_pseudonymize(ngx_http_request_t *r,
    ngx_http_insite_gdpr_main_conf_t *mcf, ngx_str_t *id);


static ngx_str_t  ngx_insite_gdpr_access_names[] = {
    ngx_string("auto"),
    ngx_string("read"),
    ngx_string("write"),
    ngx_string("delete"),
    ngx_string("export"),
    ngx_string("other")
};


u_char *
ngx_insite_gdpr_record(ngx_http_request_t *r,
    ngx_http_insite_gdpr_loc_conf_t *lcf, ngx_str_t *user,
    ngx_str_t *reason, ngx_insite_gdpr_journal_t *j, size_t *len)
{
    u_char      *buf, *p, *q;
    size_t       size;
    ngx_str_t    data_type, subject, path, request_id, who, *access;
    ngx_uint_t   status, at;

    if (ngx_insite_gdpr_data_type(r, lcf, &data_type) != NGX_OK
        || ngx_insite_gdpr_data_subject(r, lcf, user, &subject) != NGX_OK)
    {
        return NULL;
    }

    who = *user;

    if (j->conf->pseudonym) {
        if (ngx_insite_gdpr_pseudonymize(r, j->conf, &who) != NGX_OK) {
            return NULL;
        }

        /* the default, or the same id from another variable: one HMAC */
        if (subject.len == user->len
            && (subject.data == user->data
                || user->len == 0
                || ngx_memcmp(subject.data, user->data, user->len) == 0))
        {
            subject = who;

        } else if (ngx_insite_gdpr_pseudonymize(r, j->conf, &subject)
                   != NGX_OK)
        {
            return NULL;
        }
    }

    user = &who;

    /* path: as the client sent it, the query string dropped unless asked */
    path = r->unparsed_uri;
    if (!lcf->query) {
        q = ngx_strlchr(path.data, path.data + path.len, '?');
        if (q) {
            path.len = q - path.data;
        }
    }

    ngx_insite_gdpr_request_id(r, &request_id);

    at = lcf->access_type;
    if (at == NGX_INSITE_GDPR_ACCESS_AUTO) {
        switch (r->method) {
        case NGX_HTTP_POST:
        case NGX_HTTP_PUT:
        case NGX_HTTP_PATCH:
            at = NGX_INSITE_GDPR_ACCESS_WRITE;
            break;
        case NGX_HTTP_DELETE:
            at = NGX_INSITE_GDPR_ACCESS_DELETE;
            break;
        case NGX_HTTP_GET:
        case NGX_HTTP_HEAD:
            at = NGX_INSITE_GDPR_ACCESS_READ;
            break;
        default:
            /* OPTIONS, PROPFIND, ...: not guessed to be a read */
            at = NGX_INSITE_GDPR_ACCESS_OTHER;
        }
    }
    access = &ngx_insite_gdpr_access_names[at];

    status = r->err_status ? r->err_status : r->headers_out.status;

    size = sizeof("{\"v\":2,\"id\":\"\",\"ts\":\"1970-01-01T00:00:00.000Z\","
                  "\"user_id\":,\"data_subject\":,"
                  "\"access_type\":\"\",\"data_type\":,"
                  "\"method\":,\"path\":,\"status\":,\"result\":false,\"reason\":,"
                  "\"ip\":,\"request_id\":,\"worker\":\"\"") - 1
           + 36 + 6 + NGX_INT_T_LEN + j->chain_len + access->len
           + 6 * (ngx_min(user->len, NGX_INSITE_GDPR_MAX_USER)
                  + ngx_min(subject.len, NGX_INSITE_GDPR_MAX_USER)
                  + ngx_min(data_type.len, NGX_INSITE_GDPR_MAX_TYPE)
                  + ngx_min(path.len, NGX_INSITE_GDPR_MAX_PATH)
                  + ngx_min(r->method_name.len, NGX_INSITE_GDPR_MAX_SHORT)
                  + ngx_min(r->connection->addr_text.len,
                            NGX_INSITE_GDPR_MAX_SHORT)
                  + ngx_min(request_id.len, NGX_INSITE_GDPR_MAX_SHORT)
                  + ngx_min(reason->len, NGX_INSITE_GDPR_MAX_SHORT))
           + 7 * 2 + 4 * 6
           + NGX_INSITE_GDPR_TAIL_ROOM;

    buf = ngx_pnalloc(r->pool, size);
    if (buf == NULL) {
        return NULL;
    }

    p = ngx_cpymem(buf, "{\"v\":2,\"id\":\"", sizeof("{\"v\":2,\"id\":\"") - 1);
    ngx_insite_gdpr_uuid(p);
    p += 36;

    p = ngx_cpymem(p, "\",\"ts\":\"", sizeof("\",\"ts\":\"") - 1);
    p = ngx_insite_gdpr_ts(p, r->start_sec, r->start_msec);
    *p++ = '"';

    p = ngx_cpymem(p, ",\"user_id\":", sizeof(",\"user_id\":") - 1);
    if (user->len) {
        p = ngx_insite_gdpr_json(p, user, NGX_INSITE_GDPR_MAX_USER);
    } else {
        p = ngx_cpymem(p, "null", 4);
    }

    p = ngx_cpymem(p, ",\"data_subject\":", sizeof(",\"data_subject\":") - 1);
    if (subject.len) {
        p = ngx_insite_gdpr_json(p, &subject, NGX_INSITE_GDPR_MAX_USER);
    } else {
        p = ngx_cpymem(p, "null", 4);
    }

    p = ngx_cpymem(p, ",\"access_type\":\"", sizeof(",\"access_type\":\"") - 1);
    p = ngx_cpymem(p, access->data, access->len);
    p = ngx_cpymem(p, "\",\"data_type\":", sizeof("\",\"data_type\":") - 1);
    p = ngx_insite_gdpr_json(p, &data_type, NGX_INSITE_GDPR_MAX_TYPE);

    p = ngx_cpymem(p, ",\"method\":", sizeof(",\"method\":") - 1);
    p = ngx_insite_gdpr_json(p, &r->method_name, NGX_INSITE_GDPR_MAX_SHORT);

    p = ngx_cpymem(p, ",\"path\":", sizeof(",\"path\":") - 1);
    p = ngx_insite_gdpr_json(p, &path, NGX_INSITE_GDPR_MAX_PATH);

    p = ngx_cpymem(p, ",\"status\":", sizeof(",\"status\":") - 1);
    p = (u_char *) insite_gdpr_json_uint((char *) p, status);
    p = ngx_cpymem(p, ",\"result\":", sizeof(",\"result\":") - 1);
    p = (status > 0 && status < 400) ? ngx_cpymem(p, "true", 4)
                                     : ngx_cpymem(p, "false", 5);
    p = ngx_cpymem(p, ",\"reason\":", sizeof(",\"reason\":") - 1);
    if (reason->len) {
        p = ngx_insite_gdpr_json(p, reason, NGX_INSITE_GDPR_MAX_SHORT);
    } else {
        p = ngx_cpymem(p, "null", 4);
    }

    p = ngx_cpymem(p, ",\"ip\":", sizeof(",\"ip\":") - 1);
    p = ngx_insite_gdpr_json(p, &r->connection->addr_text,
                             NGX_INSITE_GDPR_MAX_SHORT);

    p = ngx_cpymem(p, ",\"request_id\":", sizeof(",\"request_id\":") - 1);
    if (request_id.len) {
        p = ngx_insite_gdpr_json(p, &request_id, NGX_INSITE_GDPR_MAX_SHORT);
    } else {
        p = ngx_cpymem(p, "null", 4);
    }

    p = ngx_cpymem(p, ",\"worker\":\"", sizeof(",\"worker\":\"") - 1);
    p = ngx_cpymem(p, j->chain, j->chain_len);
    *p++ = '"';

    *len = p - buf;

    return buf;
}


/* v as exactly width decimal digits (zero-padded; v < 10^width) */
static u_char *
ngx_insite_gdpr_digits(u_char *p, ngx_uint_t v, ngx_uint_t width)
{
    u_char  *q;

    for (q = p + width; q > p; v /= 10) {
        *--q = (u_char) ('0' + v % 10);
    }

    return p + width;
}


/*
 * "2026-11-26T10:30:45.123Z", by hand: ngx_sprintf's format parsing was a
 * tenth of an audited request's own instructions.  All but the milliseconds
 * is the same for every record of a second, so it is kept (one per worker
 * process, which is single-threaded).
 */
static u_char *
ngx_insite_gdpr_ts(u_char *p, time_t sec, ngx_uint_t msec)
{
    u_char         *q;
    ngx_tm_t        tm;
    static time_t   cached_sec = (time_t) -1;
    static u_char   cached[sizeof("1970-01-01T00:00:00.") - 1];

    if (sec != cached_sec) {
        ngx_gmtime(sec, &tm);

        q = ngx_insite_gdpr_digits(cached, tm.ngx_tm_year, 4);
        *q++ = '-';
        q = ngx_insite_gdpr_digits(q, tm.ngx_tm_mon, 2);
        *q++ = '-';
        q = ngx_insite_gdpr_digits(q, tm.ngx_tm_mday, 2);
        *q++ = 'T';
        q = ngx_insite_gdpr_digits(q, tm.ngx_tm_hour, 2);
        *q++ = ':';
        q = ngx_insite_gdpr_digits(q, tm.ngx_tm_min, 2);
        *q++ = ':';
        q = ngx_insite_gdpr_digits(q, tm.ngx_tm_sec, 2);
        *q = '.';

        cached_sec = sec;
    }

    p = ngx_cpymem(p, cached, sizeof(cached));
    p = ngx_insite_gdpr_digits(p, msec, 3);
    *p++ = 'Z';

    return p;
}


/* JSON string of at most max input bytes, valid UTF-8 out */
static u_char *
ngx_insite_gdpr_json(u_char *p, ngx_str_t *s, size_t max)
{
    return (u_char *) insite_gdpr_json_string((char *) p, (char *) s->data,
                                              ngx_min(s->len, max));
}


static void
ngx_insite_gdpr_uuid(u_char *out)
{
    char    *p;
    u_char   b[16];

    ngx_insite_random(b, sizeof(b));

    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;

    p = (char *) out;
    p = insite_gdpr_json_hex(p, b, 4);
    *p++ = '-';
    p = insite_gdpr_json_hex(p, b + 4, 2);
    *p++ = '-';
    p = insite_gdpr_json_hex(p, b + 6, 2);
    *p++ = '-';
    p = insite_gdpr_json_hex(p, b + 8, 2);
    *p++ = '-';
    (void) insite_gdpr_json_hex(p, b + 10, 6);
}


/*
 * insite_gdpr_data_type, else the name of the location as configured
 * ("/api/v1/portfolio", "~ ^/x" regexes as written): chosen by the operator,
 * never by the client (a path segment would let the client pick it).
 */
static ngx_int_t
ngx_insite_gdpr_data_type(ngx_http_request_t *r,
    ngx_http_insite_gdpr_loc_conf_t *lcf, ngx_str_t *data_type)
{
    ngx_http_core_loc_conf_t  *clcf;

    if (lcf->data_type) {
        return ngx_http_complex_value(r, lcf->data_type, data_type);
    }

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

    if (clcf->name.len) {
        *data_type = clcf->name;

    } else {
        ngx_str_set(data_type, "unspecified");
    }

    return NGX_OK;
}


/* insite_gdpr_data_subject: whose data was read; by default the user */
static ngx_int_t
ngx_insite_gdpr_data_subject(ngx_http_request_t *r,
    ngx_http_insite_gdpr_loc_conf_t *lcf, ngx_str_t *user, ngx_str_t *subject)
{
    if (lcf->data_subject == NULL) {
        *subject = *user;
        return NGX_OK;
    }

    return ngx_http_complex_value(r, lcf->data_subject, subject);
}


/*
 * insite_gdpr_pseudonym_key: an id becomes its pseudonym in r's pool.
 * Empty stays empty (null), and "*" (an operator's all-users query) names
 * nobody, so it stays as it is.
 */
static ngx_int_t
ngx_insite_gdpr_pseudonymize(ngx_http_request_t *r,
    ngx_http_insite_gdpr_main_conf_t *mcf, ngx_str_t *id)
{
    u_char  *p;

    if (id->len == 0 || (id->len == 1 && id->data[0] == '*')) {
        return NGX_OK;
    }

    p = ngx_pnalloc(r->pool, INSITE_GDPR_PSN_LEN);
    if (p == NULL) {
        return NGX_ERROR;
    }

    if (insite_gdpr_psn_key_pseudonym(mcf->pseudonym, (char *) id->data,
                                      id->len, (char *) p)
        != 0)
    {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "insite gdpr: HMAC failed, the record is not written");
        return NGX_ERROR;
    }

    id->data = p;
    id->len = INSITE_GDPR_PSN_LEN;

    return NGX_OK;
}


/* a variable by name, when some module defines it */
static ngx_int_t
ngx_insite_gdpr_variable(ngx_http_request_t *r, ngx_int_t index,
    ngx_str_t *value)
{
    ngx_http_variable_value_t  *vv;

    if (index == NGX_ERROR) {
        return NGX_DECLINED;
    }

    vv = ngx_http_get_flushed_variable(r, index);

    if (vv == NULL || vv->not_found || vv->len == 0) {
        return NGX_DECLINED;
    }

    value->data = vv->data;
    value->len = vv->len;

    return NGX_OK;
}


void
ngx_insite_gdpr_request_id(ngx_http_request_t *r, ngx_str_t *id)
{
    ngx_http_insite_gdpr_main_conf_t  *mcf;

    mcf = ngx_http_get_module_main_conf(r, ngx_http_insite_gdpr_module);

    if (ngx_insite_gdpr_variable(r, mcf->var_request_id, id) != NGX_OK
        && ngx_insite_gdpr_variable(r, mcf->var_request_id2, id) != NGX_OK)
    {
        ngx_str_null(id);
    }
}


ngx_int_t
ngx_insite_gdpr_default_user(ngx_http_request_t *r, ngx_str_t *user)
{
    ngx_http_insite_gdpr_main_conf_t  *mcf;

    mcf = ngx_http_get_module_main_conf(r, ngx_http_insite_gdpr_module);

    if (ngx_insite_gdpr_variable(r, mcf->var_user, user) != NGX_OK) {
        ngx_str_null(user);
    }

    return NGX_OK;
}
