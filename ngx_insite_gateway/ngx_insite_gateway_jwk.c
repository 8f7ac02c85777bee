/*
 * Public keys for JWT verification, and what a verified token says:
 *
 *   insite_gateway_jwt_jwks <file>;            a JWKS document on disk,
 *       re-read when it changes (stat at most once a second per worker);
 *   insite_gateway_jwt_jwks_location <uri> [min_age=] [max_age=] [interval=];
 *       an internal location (proxy_pass to the IdP's jwks_uri) fetched by
 *       subrequest, kept per worker for the response's Cache-Control max-age;
 *   insite_gateway_jwt_require <claim> <value>...;
 *   $insite_jwt_claim_<name>.
 *
 * Key sets live per worker process: a set is replaced only between events,
 * so a verification never sees one half-replaced.  Every replacement bumps
 * ngx_insite_gw_jwks_generation, which the verified-token cache compares,
 * so a token verified under a key that a rotation removed is verified
 * again (and refused).
 *
 * The parsing and the cryptography are insite_jwk.c (plain C, fuzzed).
 */

#include "ngx_insite_gateway.h"
#include "insite_jwk.h"


#define NGX_INSITE_GW_JWKS_FILE       0
#define NGX_INSITE_GW_JWKS_LOCATION   1


struct ngx_insite_gw_jwks_s {
    ngx_uint_t                  type;
    ngx_str_t                   name;        /* path or uri */
    insite_jwks_t              *set;         /* the last good set */

    /* file */
    time_t                      checked;
    ngx_file_uniq_t             uniq;
    time_t                      mtime;
    off_t                       size;
    ngx_file_uniq_t             bad_uniq;    /* the version refused last */
    time_t                      bad_mtime;
    off_t                       bad_size;

    /* location */
    time_t                      min_age;
    time_t                      max_age;
    time_t                      interval;
    time_t                      expires;     /* fetch again from then on */
    time_t                      attempted;   /* the last fetch started */
    ngx_http_request_t         *fetcher;     /* its parent, NULL: none */
    ngx_queue_t                 waiters;     /* ngx_insite_gw_jwk_req_t */
};


/* per request: the queue entry of a waiting request, the verified token */
typedef struct {
    ngx_queue_t                 queue;
    ngx_http_request_t         *request;
    ngx_insite_gw_jwks_t       *src;         /* queued for it, or NULL */
    ngx_insite_gw_jwks_t       *fetching;    /* its subrequest's source */
    ngx_uint_t                  waited;
    ngx_str_t                   token;       /* verified */
    json_t                     *claims;
    ngx_uint_t                  claims_failed;
} ngx_insite_gw_jwk_req_t;


typedef struct {
    ngx_str_t                   claim;
    ngx_array_t                 values;      /* ngx_str_t */
} ngx_insite_gw_require_t;


ngx_uint_t  ngx_insite_gw_jwks_generation;


static ngx_insite_gw_jwk_req_t *ngx_insite_gw_jwk_req(ngx_http_request_t *r);
static void ngx_insite_gw_jwk_req_cleanup(void *data);
static void ngx_insite_gw_jwks_cleanup(void *data);
static insite_jwks_t *ngx_insite_gw_jwks_read(ngx_log_t *log, ngx_str_t *path,
    ngx_file_info_t *fi, char *err, size_t errlen);
static void ngx_insite_gw_jwks_file_check(ngx_http_request_t *r,
    ngx_insite_gw_jwks_t *src);
static ngx_int_t ngx_insite_gw_jwks_fetch(ngx_http_request_t *r,
    ngx_insite_gw_jwks_t *src, ngx_uint_t wait);
static ngx_int_t ngx_insite_gw_jwks_fetched(ngx_http_request_t *sr,
    void *data, ngx_int_t rc);
static time_t ngx_insite_gw_jwks_max_age(ngx_http_request_t *sr);
static void ngx_insite_gw_jwks_wake(ngx_insite_gw_jwks_t *src);
static ngx_insite_gw_jwt_result_e ngx_insite_gw_jwks_wait(
    ngx_http_request_t *r, ngx_insite_gw_jwks_t *src);
static ngx_insite_gw_jwks_t *ngx_insite_gw_jwks_source(ngx_conf_t *cf,
    ngx_uint_t type, ngx_str_t *name);


/* configuration */


char *
ngx_insite_gw_jwks_file_cmd(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_insite_gw_loc_conf_t *lcf = conf;

    char                   err[256];
    ngx_str_t             *value, path;
    ngx_file_info_t        fi;
    ngx_insite_gw_jwks_t  *src;

    if (lcf->jwt_conf.jwks) {
        return "is duplicate (or insite_gateway_jwt_jwks_location is set)";
    }

    value = cf->args->elts;
    path = value[1];

    if (ngx_conf_full_name(cf->cycle, &path, 1) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    src = ngx_insite_gw_jwks_source(cf, NGX_INSITE_GW_JWKS_FILE, &path);
    if (src == NULL) {
        return NGX_CONF_ERROR;
    }

    if (src->set == NULL) {
        src->set = ngx_insite_gw_jwks_read(cf->log, &path, &fi, err,
                                           sizeof(err));
        if (src->set == NULL) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "insite_gateway_jwt_jwks \"%V\": %s",
                               &path, err);
            return NGX_CONF_ERROR;
        }

        src->uniq = ngx_file_uniq(&fi);
        src->mtime = ngx_file_mtime(&fi);
        src->size = ngx_file_size(&fi);
    }

    lcf->jwt_conf.jwks = src;

    return NGX_CONF_OK;
}


char *
ngx_insite_gw_jwks_location_cmd(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_insite_gw_loc_conf_t *lcf = conf;

    time_t                 min_age, max_age, interval, *t;
    ngx_str_t             *value, s;
    ngx_uint_t             i;
    ngx_insite_gw_jwks_t  *src;

    if (lcf->jwt_conf.jwks) {
        return "is duplicate (or insite_gateway_jwt_jwks is set)";
    }

    value = cf->args->elts;

    if (value[1].len < 2 || value[1].data[0] != '/') {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "insite_gateway_jwt_jwks_location: \"%V\" is not "
                           "a location's URI", &value[1]);
        return NGX_CONF_ERROR;
    }

    min_age = 60;
    max_age = 86400;
    interval = 10;

    for (i = 2; i < cf->args->nelts; i++) {
        if (ngx_strncmp(value[i].data, "min_age=", 8) == 0) {
            t = &min_age;
            s.data = value[i].data + 8;
            s.len = value[i].len - 8;

        } else if (ngx_strncmp(value[i].data, "max_age=", 8) == 0) {
            t = &max_age;
            s.data = value[i].data + 8;
            s.len = value[i].len - 8;

        } else if (ngx_strncmp(value[i].data, "interval=", 9) == 0) {
            t = &interval;
            s.data = value[i].data + 9;
            s.len = value[i].len - 9;

        } else {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "insite_gateway_jwt_jwks_location: invalid "
                               "parameter \"%V\"", &value[i]);
            return NGX_CONF_ERROR;
        }

        *t = ngx_parse_time(&s, 1);

        if (*t == (time_t) NGX_ERROR || *t < 1 || *t > 7 * 86400) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "insite_gateway_jwt_jwks_location: \"%V\" must "
                               "be a time from 1s to 7d", &value[i]);
            return NGX_CONF_ERROR;
        }
    }

    if (min_age > max_age) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "insite_gateway_jwt_jwks_location: min_age is "
                           "longer than max_age");
        return NGX_CONF_ERROR;
    }

    src = ngx_insite_gw_jwks_source(cf, NGX_INSITE_GW_JWKS_LOCATION,
                                    &value[1]);
    if (src == NULL) {
        return NGX_CONF_ERROR;
    }

    src->min_age = min_age;
    src->max_age = max_age;
    src->interval = interval;

    lcf->jwt_conf.jwks = src;

    return NGX_CONF_OK;
}


/* one source per file or uri, shared by every location naming it */

static ngx_insite_gw_jwks_t *
ngx_insite_gw_jwks_source(ngx_conf_t *cf, ngx_uint_t type, ngx_str_t *name)
{
    ngx_uint_t                  i;
    ngx_pool_cleanup_t         *cln;
    ngx_insite_gw_jwks_t      **srcp, *src;
    ngx_insite_gw_main_conf_t  *gmcf;

    gmcf = ngx_http_conf_get_module_main_conf(cf,
                                              ngx_http_insite_gateway_module);

    if (gmcf->jwks == NULL) {
        gmcf->jwks = ngx_array_create(cf->pool, 2,
                                      sizeof(ngx_insite_gw_jwks_t *));
        if (gmcf->jwks == NULL) {
            return NULL;
        }
    }

    srcp = gmcf->jwks->elts;

    for (i = 0; i < gmcf->jwks->nelts; i++) {
        if (srcp[i]->type == type && srcp[i]->name.len == name->len
            && ngx_strncmp(srcp[i]->name.data, name->data, name->len) == 0)
        {
            return srcp[i];
        }
    }

    src = ngx_pcalloc(cf->pool, sizeof(ngx_insite_gw_jwks_t));
    if (src == NULL) {
        return NULL;
    }

    src->type = type;
    src->name = *name;
    ngx_queue_init(&src->waiters);

    cln = ngx_pool_cleanup_add(cf->pool, 0);
    if (cln == NULL) {
        return NULL;
    }

    cln->handler = ngx_insite_gw_jwks_cleanup;
    cln->data = src;

    srcp = ngx_array_push(gmcf->jwks);
    if (srcp == NULL) {
        return NULL;
    }

    *srcp = src;

    return src;
}


static void
ngx_insite_gw_jwks_cleanup(void *data)
{
    ngx_insite_gw_jwks_t  *src = data;

    insite_jwks_free(src->set);
    src->set = NULL;
}


char *
ngx_insite_gw_jwt_require_cmd(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_insite_gw_loc_conf_t *lcf = conf;

    ngx_str_t                *value, *v;
    ngx_uint_t                i;
    ngx_insite_gw_require_t  *req;

    value = cf->args->elts;

    if (lcf->jwt_require == NULL) {
        lcf->jwt_require = ngx_array_create(cf->pool, 2,
                                            sizeof(ngx_insite_gw_require_t));
        if (lcf->jwt_require == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    req = ngx_array_push(lcf->jwt_require);
    if (req == NULL) {
        return NGX_CONF_ERROR;
    }

    req->claim = value[1];

    if (ngx_array_init(&req->values, cf->pool, cf->args->nelts - 2,
                       sizeof(ngx_str_t))
        != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    for (i = 2; i < cf->args->nelts; i++) {
        if (value[i].len == 0) {
            return "has an empty value";
        }

        v = ngx_array_push(&req->values);
        if (v == NULL) {
            return NGX_CONF_ERROR;
        }

        *v = value[i];
    }

    return NGX_CONF_OK;
}


/* called by the location merge: inheritance and the checks it needs */

char *
ngx_insite_gw_jwk_merge(ngx_conf_t *cf, ngx_insite_gw_loc_conf_t *prev,
    ngx_insite_gw_loc_conf_t *conf)
{
    if (conf->jwt_conf.jwks == NULL) {
        conf->jwt_conf.jwks = prev->jwt_conf.jwks;
    }

    if (conf->jwt_require == NULL) {
        conf->jwt_require = prev->jwt_require;
    }

    if (conf->jwt_require && conf->jwt == NGX_INSITE_GW_JWT_OFF) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "insite_gateway_jwt_require needs "
                           "insite_gateway_jwt on or optional");
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/* verification */


static ngx_insite_gw_jwk_req_t *
ngx_insite_gw_jwk_req(ngx_http_request_t *r)
{
    ngx_insite_gw_ctx_t      *ctx;
    ngx_pool_cleanup_t       *cln;
    ngx_insite_gw_jwk_req_t  *jr;

    ctx = ngx_insite_gw_get_ctx(r);
    if (ctx == NULL) {
        return NULL;
    }

    if (ctx->jwk) {
        return ctx->jwk;
    }

    jr = ngx_pcalloc(r->pool, sizeof(ngx_insite_gw_jwk_req_t));
    if (jr == NULL) {
        return NULL;
    }

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NULL;
    }

    jr->request = r;
    cln->handler = ngx_insite_gw_jwk_req_cleanup;
    cln->data = jr;

    ctx->jwk = jr;

    return jr;
}


/* a request that ends while queued, or while its fetch is out */

static void
ngx_insite_gw_jwk_req_cleanup(void *data)
{
    ngx_insite_gw_jwk_req_t  *jr = data;

    ngx_insite_gw_jwks_t  *src;

    if (jr->claims) {
        json_decref(jr->claims);
        jr->claims = NULL;
    }

    if (jr->src) {
        ngx_queue_remove(&jr->queue);
        jr->src = NULL;
    }

    src = jr->fetching;

    if (src && src->fetcher == jr->request) {
        /* the subrequest dies with it: let the others try on their own */
        src->fetcher = NULL;
        ngx_insite_gw_jwks_wake(src);
    }
}


/*
 * Before the token cache is consulted: pick up a changed file, start a
 * background refresh of an expired fetched set.
 */

void
ngx_insite_gw_jwks_refresh(ngx_http_request_t *r, ngx_insite_gw_jwks_t *src)
{
    if (src->type == NGX_INSITE_GW_JWKS_FILE) {
        ngx_insite_gw_jwks_file_check(r, src);
        return;
    }

    if (src->set && src->fetcher == NULL && ngx_time() >= src->expires) {
        (void) ngx_insite_gw_jwks_fetch(r, src, 0);
    }
}


ngx_insite_gw_jwt_result_e
ngx_insite_gw_jwks_verify(ngx_http_request_t *r, ngx_insite_gw_jwks_t *src,
    int alg, ngx_str_t *kid, u_char *input, size_t input_len,
    u_char *sig, size_t sig_len)
{
    time_t                    now;
    insite_jwk_select_e       why;
    const insite_jwk_t       *key;
    ngx_insite_gw_jwk_req_t  *jr;

    now = ngx_time();

    if (src->set == NULL) {
        /* only a fetched set can be missing: a file is read at startup */

        if (src->fetcher) {
            return ngx_insite_gw_jwks_wait(r, src);
        }

        jr = ngx_insite_gw_jwk_req(r);
        if (jr == NULL) {
            return NGX_INSITE_GW_JWT_UNAVAILABLE;
        }

        if (jr->waited || (src->attempted && now - src->attempted
                                             < src->interval))
        {
            return NGX_INSITE_GW_JWT_UNAVAILABLE;
        }

        if (ngx_insite_gw_jwks_fetch(r, src, 1) != NGX_OK) {
            return NGX_INSITE_GW_JWT_UNAVAILABLE;
        }

        return NGX_INSITE_GW_JWT_AGAIN;
    }

    key = insite_jwks_select(src->set, (char *) kid->data, kid->len, alg,
                             &why);

    if (key == NULL) {
        ngx_log_debug3(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "insite gateway: no key for kid \"%V\" alg %s: %d",
                       kid, insite_jwa_name(alg), (int) why);

        if (why == INSITE_JWK_WRONG_ALG) {
            return NGX_INSITE_GW_JWT_ALGORITHM;
        }

        /* an unknown kid: the IdP may have rotated; ask, but not often */

        if (src->type == NGX_INSITE_GW_JWKS_LOCATION && kid->len) {
            if (src->fetcher) {
                return ngx_insite_gw_jwks_wait(r, src);
            }

            jr = ngx_insite_gw_jwk_req(r);

            if (jr && !jr->waited && now - src->attempted >= src->interval
                && ngx_insite_gw_jwks_fetch(r, src, 1) == NGX_OK)
            {
                return NGX_INSITE_GW_JWT_AGAIN;
            }
        }

        return NGX_INSITE_GW_JWT_KEY;
    }

    if (!insite_jwk_verify(key, alg, input, input_len, sig, sig_len)) {
        return NGX_INSITE_GW_JWT_SIGNATURE;
    }

    return NGX_INSITE_GW_JWT_OK;
}


/* waits, once per request, for the fetch another request started */

static ngx_insite_gw_jwt_result_e
ngx_insite_gw_jwks_wait(ngx_http_request_t *r, ngx_insite_gw_jwks_t *src)
{
    ngx_insite_gw_jwk_req_t  *jr;

    jr = ngx_insite_gw_jwk_req(r);
    if (jr == NULL) {
        return NGX_INSITE_GW_JWT_UNAVAILABLE;
    }

    if (jr->src) {
        /* a spurious event while queued */
        return NGX_INSITE_GW_JWT_AGAIN;
    }

    if (jr->waited) {
        return src->set ? NGX_INSITE_GW_JWT_KEY
                        : NGX_INSITE_GW_JWT_UNAVAILABLE;
    }

    jr->waited = 1;
    jr->src = src;
    ngx_queue_insert_tail(&src->waiters, &jr->queue);

    return NGX_INSITE_GW_JWT_AGAIN;
}


static void
ngx_insite_gw_jwks_wake(ngx_insite_gw_jwks_t *src)
{
    ngx_queue_t              *q;
    ngx_connection_t         *c;
    ngx_insite_gw_jwk_req_t  *jr;

    while (!ngx_queue_empty(&src->waiters)) {
        q = ngx_queue_head(&src->waiters);
        ngx_queue_remove(q);

        jr = ngx_queue_data(q, ngx_insite_gw_jwk_req_t, queue);
        jr->src = NULL;

        /* its phases run again from the access handler */
        c = jr->request->connection;
        ngx_post_event(c->write, &ngx_posted_events);
    }
}


/* the fetch: an in-memory subrequest to the configured location */

static ngx_int_t
ngx_insite_gw_jwks_fetch(ngx_http_request_t *r, ngx_insite_gw_jwks_t *src,
    ngx_uint_t wait)
{
    ngx_uint_t                   flags;
    ngx_http_request_t          *sr;
    ngx_insite_gw_jwk_req_t     *jr;
    ngx_http_post_subrequest_t  *ps;

    jr = ngx_insite_gw_jwk_req(r);
    if (jr == NULL) {
        return NGX_ERROR;
    }

    ps = ngx_palloc(r->pool, sizeof(ngx_http_post_subrequest_t));
    if (ps == NULL) {
        return NGX_ERROR;
    }

    ps->handler = ngx_insite_gw_jwks_fetched;
    ps->data = src;

    flags = NGX_HTTP_SUBREQUEST_IN_MEMORY
            | (wait ? NGX_HTTP_SUBREQUEST_WAITED
                    : NGX_HTTP_SUBREQUEST_BACKGROUND);

    src->attempted = ngx_time();

    if (ngx_http_subrequest(r, &src->name, NULL, &sr, ps, flags) != NGX_OK) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "insite gateway: cannot start the JWKS subrequest "
                      "to \"%V\"", &src->name);
        src->expires = ngx_time() + src->interval;
        return NGX_ERROR;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "insite gateway: fetching JWKS from \"%V\", wait: %ui",
                   &src->name, wait);

    /*
     * A waited subrequest wakes its parent when it ends; the cleanup wakes
     * the others should the parent end first.
     */
    src->fetcher = r;
    jr->fetching = src;
    jr->waited |= wait;

    return NGX_OK;
}


static ngx_int_t
ngx_insite_gw_jwks_fetched(ngx_http_request_t *sr, void *data, ngx_int_t rc)
{
    ngx_insite_gw_jwks_t *src = data;

    char                 err[256];
    time_t               age;
    ngx_uint_t           status;
    insite_jwks_t       *set;

    /* once per fetch, however often nginx finalizes the subrequest */
    if (rc == NGX_AGAIN || src->fetcher != sr->parent) {
        return rc;
    }

    src->fetcher = NULL;

    status = (rc == NGX_ERROR || rc >= NGX_HTTP_SPECIAL_RESPONSE)
             ? (rc == NGX_ERROR ? 500 : (ngx_uint_t) rc)
             : sr->headers_out.status;

    set = NULL;

    if (status != NGX_HTTP_OK) {
        ngx_snprintf((u_char *) err, sizeof(err), "status %ui%Z", status);

    } else if (sr->out == NULL || sr->out->buf == NULL) {
        ngx_snprintf((u_char *) err, sizeof(err),
                     "an empty response (or one larger than "
                     "subrequest_output_buffer_size)%Z");

    } else {
        set = insite_jwks_parse((char *) sr->out->buf->pos,
                                sr->out->buf->last - sr->out->buf->pos,
                                err, sizeof(err));
    }

    if (set == NULL) {
        src->expires = ngx_time() + src->interval;

        ngx_log_error(NGX_LOG_ERR, sr->connection->log, 0,
                      "insite gateway: JWKS from \"%V\" refused: %s; %s",
                      &src->name, err,
                      src->set ? "keeping the last good key set"
                               : "no key set: tokens are refused with 503");

    } else {
        age = ngx_insite_gw_jwks_max_age(sr);
        age = ngx_max(age, src->min_age);
        age = ngx_min(age, src->max_age);

        insite_jwks_free(src->set);
        src->set = set;
        src->expires = ngx_time() + age;
        ngx_insite_gw_jwks_generation++;

        ngx_log_error(NGX_LOG_INFO, sr->connection->log, 0,
                      "insite gateway: JWKS from \"%V\": %uz key(s), kept "
                      "for %T s", &src->name, set->n, age);
    }

    ngx_insite_gw_jwks_wake(src);

    return rc;
}


/* Cache-Control max-age of the response; 0 when absent or no-store */

static time_t
ngx_insite_gw_jwks_max_age(ngx_http_request_t *sr)
{
    u_char           *p, *last;
    time_t            age;
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    age = 0;
    part = &sr->headers_out.headers.part;
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

        if (h[i].hash == 0
            || h[i].key.len != sizeof("Cache-Control") - 1
            || ngx_strncasecmp(h[i].key.data, (u_char *) "Cache-Control",
                               sizeof("Cache-Control") - 1) != 0)
        {
            continue;
        }

        last = h[i].value.data + h[i].value.len;

        if (ngx_strlcasestrn(h[i].value.data, last, (u_char *) "no-store",
                             sizeof("no-store") - 2)
            || ngx_strlcasestrn(h[i].value.data, last, (u_char *) "no-cache",
                                sizeof("no-cache") - 2))
        {
            return 0;
        }

        p = ngx_strlcasestrn(h[i].value.data, last, (u_char *) "max-age=",
                             sizeof("max-age=") - 2);
        if (p == NULL) {
            continue;
        }

        p += sizeof("max-age=") - 1;
        age = 0;

        while (p < last && *p >= '0' && *p <= '9' && age < 100000000) {
            age = age * 10 + (*p++ - '0');
        }
    }

    return age;
}


/* a file: stat at most once a second, read when it changed */

static void
ngx_insite_gw_jwks_file_check(ngx_http_request_t *r,
    ngx_insite_gw_jwks_t *src)
{
    char              err[256];
    ngx_file_info_t   fi;
    insite_jwks_t    *set;

    if (src->checked == ngx_time()) {
        return;
    }

    src->checked = ngx_time();

    if (ngx_file_info(src->name.data, &fi) == NGX_FILE_ERROR) {
        if (src->bad_mtime != -1) {
            ngx_log_error(NGX_LOG_ERR, r->connection->log, ngx_errno,
                          "insite gateway: JWKS file \"%V\" is gone; "
                          "keeping the last good key set", &src->name);
            src->bad_mtime = -1;
        }
        return;
    }

    if (ngx_file_uniq(&fi) == src->uniq && ngx_file_mtime(&fi) == src->mtime
        && ngx_file_size(&fi) == src->size)
    {
        return;
    }

    if (ngx_file_uniq(&fi) == src->bad_uniq
        && ngx_file_mtime(&fi) == src->bad_mtime
        && ngx_file_size(&fi) == src->bad_size)
    {
        return;
    }

    set = ngx_insite_gw_jwks_read(r->connection->log, &src->name, &fi, err,
                                  sizeof(err));
    if (set == NULL) {
        /* logged once per version of the file */
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "insite gateway: JWKS file \"%V\" refused: %s; "
                      "keeping the last good key set", &src->name, err);
        src->bad_uniq = ngx_file_uniq(&fi);
        src->bad_mtime = ngx_file_mtime(&fi);
        src->bad_size = ngx_file_size(&fi);
        return;
    }

    insite_jwks_free(src->set);
    src->set = set;
    src->uniq = ngx_file_uniq(&fi);
    src->mtime = ngx_file_mtime(&fi);
    src->size = ngx_file_size(&fi);
    src->bad_mtime = 0;
    ngx_insite_gw_jwks_generation++;

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "insite gateway: JWKS file \"%V\" reloaded: %uz key(s)",
                  &src->name, set->n);
}


/*
 * Reads and parses the file; fi gets the information of what was read.
 * A local file of at most 256 KiB, read when it changes: the one blocking
 * read nginx does as well for its certificates and maps at (re)load.
 */

static insite_jwks_t *
ngx_insite_gw_jwks_read(ngx_log_t *log, ngx_str_t *path, ngx_file_info_t *fi,
    char *err, size_t errlen)
{
    ssize_t         n;
    ngx_fd_t        fd;
    u_char         *buf;
    insite_jwks_t  *set;

    fd = ngx_open_file(path->data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);
    if (fd == NGX_INVALID_FILE) {
        ngx_snprintf((u_char *) err, errlen, "cannot open: %s%Z",
                     strerror(ngx_errno));
        return NULL;
    }

    if (ngx_fd_info(fd, fi) == NGX_FILE_ERROR
        || ngx_file_size(fi) > INSITE_JWKS_MAX_SIZE)
    {
        ngx_snprintf((u_char *) err, errlen,
                     "unreadable or larger than %d bytes%Z",
                     INSITE_JWKS_MAX_SIZE);
        ngx_close_file(fd);
        return NULL;
    }

    buf = ngx_alloc((size_t) ngx_file_size(fi) + 1, log);
    if (buf == NULL) {
        ngx_close_file(fd);
        ngx_snprintf((u_char *) err, errlen, "out of memory%Z");
        return NULL;
    }

    n = ngx_read_fd(fd, buf, (size_t) ngx_file_size(fi));
    ngx_close_file(fd);

    if (n != (ssize_t) ngx_file_size(fi)) {
        ngx_free(buf);
        ngx_snprintf((u_char *) err, errlen, "short read%Z");
        return NULL;
    }

    set = insite_jwks_parse((char *) buf, (size_t) n, err, errlen);
    ngx_free(buf);

    return set;
}


/* the verified token, for the claim variables */

void
ngx_insite_gw_jwt_verified(ngx_http_request_t *r, ngx_str_t *token)
{
    ngx_insite_gw_jwk_req_t  *jr;

    jr = ngx_insite_gw_jwk_req(r);
    if (jr) {
        jr->token = *token;
    }
}


static json_t *
ngx_insite_gw_jwt_claims(ngx_http_request_t *r)
{
    long                      n;
    u_char                   *dot1, *dot2, *buf;
    json_t                   *j;
    json_error_t              jerr;
    ngx_insite_gw_ctx_t      *ctx;
    ngx_insite_gw_jwk_req_t  *jr;

    ctx = ngx_http_get_module_ctx(r, ngx_http_insite_gateway_module);
    if (ctx == NULL || ctx->jwk == NULL) {
        return NULL;
    }

    jr = ctx->jwk;

    if (jr->claims || jr->claims_failed || jr->token.len == 0) {
        return jr->claims;
    }

    jr->claims_failed = 1;

    dot1 = ngx_strlchr(jr->token.data, jr->token.data + jr->token.len, '.');
    if (dot1 == NULL) {
        return NULL;
    }

    dot2 = ngx_strlchr(dot1 + 1, jr->token.data + jr->token.len, '.');
    if (dot2 == NULL) {
        return NULL;
    }

    buf = ngx_pnalloc(r->pool, dot2 - dot1);
    if (buf == NULL) {
        return NULL;
    }

    n = insite_b64url_decode((char *) dot1 + 1, dot2 - dot1 - 1, buf,
                             dot2 - dot1);
    if (n < 0) {
        return NULL;
    }

    j = json_loadb((char *) buf, (size_t) n, JSON_REJECT_DUPLICATES, &jerr);
    if (j == NULL) {
        return NULL;
    }

    jr->claims = j;            /* freed by the request's cleanup */
    jr->claims_failed = 0;

    return j;
}


/* $insite_jwt_claim_<name> */

ngx_int_t
ngx_insite_gw_jwt_claim_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_str_t *name = (ngx_str_t *) data;

    long     n;
    u_char  *p;
    json_t  *claims;
    size_t   prefix;

    prefix = sizeof("insite_jwt_claim_") - 1;
    claims = ngx_insite_gw_jwt_claims(r);

    if (claims == NULL || name->len <= prefix) {
        v->not_found = 1;
        return NGX_OK;
    }

    n = insite_jwt_claim_text(claims, (char *) name->data + prefix,
                              name->len - prefix, NULL, 0);
    if (n < 0) {
        v->not_found = 1;
        return NGX_OK;
    }

    p = ngx_pnalloc(r->pool, n ? (size_t) n : 1);
    if (p == NULL) {
        return NGX_ERROR;
    }

    (void) insite_jwt_claim_text(claims, (char *) name->data + prefix,
                                 name->len - prefix, (char *) p, (size_t) n);

    v->data = p;
    v->len = n;
    v->valid = 1;
    v->no_cacheable = 0;
    v->not_found = 0;

    return NGX_OK;
}


/*
 * insite_gateway_jwt_require: every line must hold, one of its values is
 * enough.  NGX_DECLINED: go on; NGX_DONE: refused with 403.
 */

ngx_int_t
ngx_insite_gw_jwt_require(ngx_http_request_t *r,
    ngx_insite_gw_loc_conf_t *lcf, ngx_insite_gw_ctx_t *ctx)
{
    u_char                   *p;
    json_t                   *claims;
    ngx_str_t                 hv, *values;
    ngx_uint_t                i, j;
    ngx_insite_gw_require_t  *req;

    if (lcf->jwt_require == NULL) {
        return NGX_DECLINED;
    }

    claims = ngx_insite_gw_jwt_claims(r);
    req = lcf->jwt_require->elts;

    for (i = 0; i < lcf->jwt_require->nelts; i++) {
        values = req[i].values.elts;

        for (j = 0; claims && j < req[i].values.nelts; j++) {
            if (insite_jwt_claim_has(claims, (char *) req[i].claim.data,
                                     req[i].claim.len,
                                     (char *) values[j].data, values[j].len))
            {
                break;
            }
        }

        if (claims && j < req[i].values.nelts) {
            continue;
        }

        ngx_insite_metric_inc(lcf->auth_failures[NGX_INSITE_GW_JWT_SCOPE]);

        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "insite gateway: token of \"%V\" lacks claim \"%V\" "
                      "with a required value, request_id: %V",
                      &ctx->user_id, &req[i].claim,
                      ngx_insite_gw_request_id(r, ctx));

        ngx_str_set(&hv, "Bearer error=\"insufficient_scope\"");
        if (ngx_insite_gw_set_header(r, "WWW-Authenticate", &hv) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        /* the claim's name comes from the configuration, not the client */
        p = ngx_pnalloc(r->pool, req[i].claim.len + 64);
        if (p == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        ngx_sprintf(p, "the token's \"%V\" claim lacks a required value%Z",
                    &req[i].claim);

        ngx_http_finalize_request(r, ngx_insite_gw_error(r, ctx,
                                      NGX_HTTP_FORBIDDEN,
                                      "insufficient_scope", (char *) p, 0));
        return NGX_DONE;
    }

    return NGX_DECLINED;
}
