/*
 * JSON Web Tokens (RFC 7519).  HS256 with the configured secret is checked
 * here (HMAC-SHA256 by OpenSSL, compared in constant time); every public-key
 * algorithm goes to the location's key set (ngx_insite_gateway_jwk.c), which
 * takes the algorithm from the key.  A header "alg" of "none", one we do not
 * know, or HS256 where no secret is configured (an RS256 public key used as
 * an HMAC secret) is refused before any crypto.  The header and claims are
 * parsed by jansson.
 */

#include "ngx_insite_gateway.h"
#include "insite_jwk.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <jansson.h>


#define NGX_INSITE_GW_JWT_MAX       8192
#define NGX_INSITE_GW_SUB_MAX       256


const char  *ngx_insite_gw_jwt_reasons[] = {
    "ok",
    "missing",
    "malformed",
    "algorithm",
    "signature",
    "expired",
    "not_yet_valid",
    "issuer",
    "audience",
    "subject",
    "key",
    "unavailable",
    "scope",
    NULL
};


static ngx_int_t ngx_insite_gw_b64url_decode(ngx_pool_t *pool, u_char *p,
    size_t len, ngx_str_t *out);
static json_t *ngx_insite_gw_json_part(ngx_pool_t *pool, u_char *p,
    size_t len);
static ngx_int_t ngx_insite_gw_json_time(json_t *obj, const char *name,
    double *value);


/*
 * The token, in the order the issue asks for: Authorization: Bearer, then
 * ?token= (browsers cannot set headers on a WebSocket), then the cookie.
 * An Authorization header of another scheme is not a bearer token.
 */

ngx_int_t
ngx_insite_gw_jwt_find(ngx_http_request_t *r, ngx_str_t *cookie,
    ngx_uint_t query, ngx_str_t *token)
{
    u_char           *p, *last;
    ngx_table_elt_t  *h;

    h = r->headers_in.authorization;

    if (h && h->value.len > sizeof("Bearer ") - 1
        && ngx_strncasecmp(h->value.data, (u_char *) "Bearer ",
                           sizeof("Bearer ") - 1) == 0)
    {
        p = h->value.data + sizeof("Bearer ") - 1;
        last = h->value.data + h->value.len;

        while (p < last && *p == ' ') {
            p++;
        }

        while (last > p && last[-1] == ' ') {
            last--;
        }

        token->data = p;
        token->len = last - p;

        return NGX_OK;
    }

    /* opt-in (insite_gateway_jwt_query_token): URLs end up in logs */
    if (query
        && ngx_http_arg(r, (u_char *) "token", 5, token) == NGX_OK
        && token->len)
    {
        return NGX_OK;
    }

    if (cookie->len == 0) {
        return NGX_DECLINED;
    }

#if (nginx_version >= 1023000)
    if (ngx_http_parse_multi_header_lines(r, r->headers_in.cookie, cookie,
                                          token)
        != NULL
        && token->len)
    {
        return NGX_OK;
    }
#else
    if (ngx_http_parse_multi_header_lines(&r->headers_in.cookies, cookie,
                                          token)
        != NGX_DECLINED
        && token->len)
    {
        return NGX_OK;
    }
#endif

    return NGX_DECLINED;
}


/*
 * Verified tokens, per worker: a client sends the same token with every
 * request, and a full verification (two JSON parses, base64url, HMAC) is
 * most of the gateway's cost per request.  A hit needs the same bytes of
 * token under the same location configuration (secret, claims), so only
 * the time claims are checked again; anything else takes the full path.
 */

#define NGX_INSITE_GW_JWT_CACHE        512
#define NGX_INSITE_GW_JWT_CACHE_TOKEN  1536

typedef struct {
    ngx_insite_gw_jwt_conf_t   *jc;
    ngx_uint_t                  generation;   /* of the key sets */
    uint32_t                    hash;
    uint16_t                    token_len;
    uint16_t                    sub_len;
    double                      exp;
    double                      nbf;
    unsigned                    has_exp:1;
    unsigned                    has_nbf:1;
    u_char                      token[NGX_INSITE_GW_JWT_CACHE_TOKEN];
    u_char                      sub[NGX_INSITE_GW_SUB_MAX];
} ngx_insite_gw_jwt_cached_t;

static ngx_insite_gw_jwt_cached_t  *ngx_insite_gw_jwt_cache;


static ngx_insite_gw_jwt_result_e ngx_insite_gw_jwt_verify_full(
    ngx_http_request_t *r, ngx_insite_gw_jwt_conf_t *jc, ngx_str_t *token,
    ngx_str_t *sub, ngx_insite_gw_jwt_cached_t *times);


ngx_insite_gw_jwt_result_e
ngx_insite_gw_jwt_verify(ngx_http_request_t *r, ngx_insite_gw_jwt_conf_t *jc,
    ngx_str_t *token, ngx_str_t *sub)
{
    time_t                       now;
    uint32_t                     hash;
    ngx_insite_gw_jwt_cached_t  *e, times;
    ngx_insite_gw_jwt_result_e   rc;

    /* a changed key set changes the generation: no stale cache hit */
    if (jc->jwks) {
        ngx_insite_gw_jwks_refresh(r, jc->jwks);
    }

    if (token->len > NGX_INSITE_GW_JWT_CACHE_TOKEN) {
        rc = ngx_insite_gw_jwt_verify_full(r, jc, token, sub, &times);
        goto verified;
    }

    if (ngx_insite_gw_jwt_cache == NULL) {
        ngx_insite_gw_jwt_cache = ngx_calloc(NGX_INSITE_GW_JWT_CACHE
                                             * sizeof(ngx_insite_gw_jwt_cached_t),
                                             r->connection->log);
        if (ngx_insite_gw_jwt_cache == NULL) {
            rc = ngx_insite_gw_jwt_verify_full(r, jc, token, sub, &times);
            goto verified;
        }
    }

    /* murmur2 reads 4 bytes a step: a cache hit is a hash and a memcmp */
    hash = ngx_murmur_hash2(token->data, token->len);
    e = &ngx_insite_gw_jwt_cache[hash % NGX_INSITE_GW_JWT_CACHE];
    now = ngx_time();

    if (e->jc == jc && e->hash == hash && e->token_len == token->len
        && e->generation == ngx_insite_gw_jwks_generation
        && ngx_memcmp(e->token, token->data, token->len) == 0
        && !(e->has_exp && (double) now >= e->exp + (double) jc->leeway)
        && !(e->has_nbf && (double) now + (double) jc->leeway < e->nbf))
    {
        sub->data = ngx_pnalloc(r->pool, e->sub_len);
        if (sub->data == NULL) {
            return NGX_INSITE_GW_JWT_MALFORMED;
        }
        ngx_memcpy(sub->data, e->sub, e->sub_len);
        sub->len = e->sub_len;
        ngx_insite_gw_jwt_verified(r, token);
        return NGX_INSITE_GW_JWT_OK;
    }

    rc = ngx_insite_gw_jwt_verify_full(r, jc, token, sub, &times);

    if (rc == NGX_INSITE_GW_JWT_OK) {
        e->jc = jc;
        e->generation = ngx_insite_gw_jwks_generation;
        e->hash = hash;
        e->token_len = (uint16_t) token->len;
        ngx_memcpy(e->token, token->data, token->len);
        e->sub_len = (uint16_t) sub->len;
        ngx_memcpy(e->sub, sub->data, sub->len);
        e->has_exp = times.has_exp;
        e->exp = times.exp;
        e->has_nbf = times.has_nbf;
        e->nbf = times.nbf;
    }

verified:

    if (rc == NGX_INSITE_GW_JWT_OK) {
        ngx_insite_gw_jwt_verified(r, token);
    }

    return rc;
}


static ngx_insite_gw_jwt_result_e
ngx_insite_gw_jwt_verify_full(ngx_http_request_t *r,
    ngx_insite_gw_jwt_conf_t *jc, ngx_str_t *token, ngx_str_t *sub,
    ngx_insite_gw_jwt_cached_t *times)
{
    u_char                      *p, *dot1, *dot2, *last;
    size_t                       i, n;
    double                       t;
    time_t                       now;
    json_t                      *hdr, *claims, *v, *a;
    ngx_str_t                    sig, enc, s, kid;
    unsigned int                 maclen;
    insite_jwa_e                 alg;
    u_char                       mac[EVP_MAX_MD_SIZE];
    ngx_insite_gw_jwt_result_e   rc;

    if (token->len == 0 || token->len > NGX_INSITE_GW_JWT_MAX) {
        return NGX_INSITE_GW_JWT_MALFORMED;
    }

    p = token->data;
    last = p + token->len;

    dot1 = ngx_strlchr(p, last, '.');
    if (dot1 == NULL) {
        return NGX_INSITE_GW_JWT_MALFORMED;
    }

    dot2 = ngx_strlchr(dot1 + 1, last, '.');
    if (dot2 == NULL || ngx_strlchr(dot2 + 1, last, '.') != NULL) {
        return NGX_INSITE_GW_JWT_MALFORMED;
    }

    hdr = ngx_insite_gw_json_part(r->pool, p, dot1 - p);
    if (hdr == NULL) {
        return NGX_INSITE_GW_JWT_MALFORMED;
    }

    /*
     * "alg" only says which of the configured verifiers to ask: HS256 the
     * secret, anything else the key set, whose key decides what it allows.
     */

    v = json_object_get(hdr, "alg");
    alg = json_is_string(v)
          ? insite_jwa_parse(json_string_value(v), json_string_length(v))
          : INSITE_JWA_UNKNOWN;

    /*
     * RFC 7515 4.1.11: extensions named in "crit" must be understood; we
     * understand none.  "jku", "x5u", "jwk" are ignored: keys never come
     * from the token.
     */
    if (json_object_get(hdr, "crit") != NULL) {
        json_decref(hdr);
        return NGX_INSITE_GW_JWT_MALFORMED;
    }

    v = json_object_get(hdr, "kid");
    kid.len = 0;
    kid.data = (u_char *) "";

    if (v != NULL) {
        if (!json_is_string(v) || json_string_length(v) == 0
            || json_string_length(v) > INSITE_JWK_KID_MAX)
        {
            json_decref(hdr);
            return NGX_INSITE_GW_JWT_MALFORMED;
        }

        kid.len = json_string_length(v);
        kid.data = ngx_pnalloc(r->pool, kid.len);
        if (kid.data == NULL) {
            json_decref(hdr);
            return NGX_INSITE_GW_JWT_MALFORMED;
        }
        ngx_memcpy(kid.data, json_string_value(v), kid.len);
    }

    json_decref(hdr);

    if (alg == INSITE_JWA_UNKNOWN
        || (alg == INSITE_JWA_HS256 && jc->secret.len == 0)
        || (alg != INSITE_JWA_HS256 && jc->jwks == NULL))
    {
        return NGX_INSITE_GW_JWT_ALGORITHM;
    }

    if (ngx_insite_gw_b64url_decode(r->pool, dot2 + 1, last - dot2 - 1, &sig)
        != NGX_OK
        || sig.len > 1024
        || (alg == INSITE_JWA_HS256 && sig.len != 32))
    {
        return NGX_INSITE_GW_JWT_MALFORMED;
    }

    /* one encoding per signature: no malleable trailing bits */

    enc.data = ngx_pnalloc(r->pool, ngx_base64_encoded_length(sig.len));
    if (enc.data == NULL) {
        return NGX_INSITE_GW_JWT_MALFORMED;
    }

    ngx_encode_base64url(&enc, &sig);

    if (enc.len != (size_t) (last - dot2 - 1)
        || ngx_memcmp(enc.data, dot2 + 1, enc.len) != 0)
    {
        return NGX_INSITE_GW_JWT_MALFORMED;
    }

    if (alg != INSITE_JWA_HS256) {
        rc = ngx_insite_gw_jwks_verify(r, jc->jwks, alg, &kid, p, dot2 - p,
                                       sig.data, sig.len);
        if (rc != NGX_INSITE_GW_JWT_OK) {
            return rc;
        }

    } else {
        if (HMAC(EVP_sha256(), jc->secret.data, (int) jc->secret.len,
                 p, dot2 - p, mac, &maclen)
            == NULL
            || maclen != 32)
        {
            return NGX_INSITE_GW_JWT_SIGNATURE;
        }

        if (CRYPTO_memcmp(mac, sig.data, 32) != 0) {
            return NGX_INSITE_GW_JWT_SIGNATURE;
        }
    }

    /* the signature holds: now the claims */

    claims = ngx_insite_gw_json_part(r->pool, dot1 + 1, dot2 - dot1 - 1);
    if (claims == NULL) {
        return NGX_INSITE_GW_JWT_MALFORMED;
    }

    rc = NGX_INSITE_GW_JWT_OK;
    now = ngx_time();
    times->has_exp = 0;
    times->has_nbf = 0;

    switch (ngx_insite_gw_json_time(claims, "exp", &t)) {
    case NGX_ERROR:
        rc = NGX_INSITE_GW_JWT_MALFORMED;
        goto done;
    case NGX_OK:
        times->has_exp = 1;
        times->exp = t;
        if ((double) now >= t + (double) jc->leeway) {
            rc = NGX_INSITE_GW_JWT_EXPIRED;
            goto done;
        }
    }

    switch (ngx_insite_gw_json_time(claims, "nbf", &t)) {
    case NGX_ERROR:
        rc = NGX_INSITE_GW_JWT_MALFORMED;
        goto done;
    case NGX_OK:
        times->has_nbf = 1;
        times->nbf = t;
        if ((double) now + (double) jc->leeway < t) {
            rc = NGX_INSITE_GW_JWT_NOT_YET_VALID;
            goto done;
        }
    }

    if (jc->iss.len) {
        v = json_object_get(claims, "iss");

        if (!json_is_string(v)
            || json_string_length(v) != jc->iss.len
            || ngx_memcmp(json_string_value(v), jc->iss.data, jc->iss.len)
               != 0)
        {
            rc = NGX_INSITE_GW_JWT_ISSUER;
            goto done;
        }
    }

    if (jc->aud.len) {
        v = json_object_get(claims, "aud");
        rc = NGX_INSITE_GW_JWT_AUDIENCE;

        if (json_is_string(v)) {
            if (json_string_length(v) == jc->aud.len
                && ngx_memcmp(json_string_value(v), jc->aud.data,
                              jc->aud.len) == 0)
            {
                rc = NGX_INSITE_GW_JWT_OK;
            }

        } else if (json_is_array(v)) {
            json_array_foreach(v, i, a) {
                if (json_is_string(a)
                    && json_string_length(a) == jc->aud.len
                    && ngx_memcmp(json_string_value(a), jc->aud.data,
                                  jc->aud.len) == 0)
                {
                    rc = NGX_INSITE_GW_JWT_OK;
                    break;
                }
            }
        }

        if (rc != NGX_INSITE_GW_JWT_OK) {
            goto done;
        }
    }

    /*
     * $insite_user_id ends up in upstream request headers and log lines:
     * a subject with control characters (CR LF) would inject headers.
     */

    v = json_object_get(claims, "sub");
    n = json_is_string(v) ? json_string_length(v) : 0;

    if (n == 0 || n > NGX_INSITE_GW_SUB_MAX) {
        rc = NGX_INSITE_GW_JWT_SUBJECT;
        goto done;
    }

    s.len = n;
    s.data = (u_char *) json_string_value(v);

    for (i = 0; i < n; i++) {
        if (s.data[i] < 0x20 || s.data[i] == 0x7f) {
            rc = NGX_INSITE_GW_JWT_SUBJECT;
            goto done;
        }
    }

    sub->data = ngx_pstrdup(r->pool, &s);
    if (sub->data == NULL) {
        rc = NGX_INSITE_GW_JWT_MALFORMED;
        goto done;
    }

    sub->len = n;

done:

    json_decref(claims);

    return rc;
}


/* base64url without padding, strictly: any other byte is an error */

static ngx_int_t
ngx_insite_gw_b64url_decode(ngx_pool_t *pool, u_char *p, size_t len,
    ngx_str_t *out)
{
    size_t     i;
    ngx_str_t  src;

    if (len == 0) {
        return NGX_ERROR;
    }

    for (i = 0; i < len; i++) {
        if (!((p[i] >= 'A' && p[i] <= 'Z') || (p[i] >= 'a' && p[i] <= 'z')
              || (p[i] >= '0' && p[i] <= '9') || p[i] == '-' || p[i] == '_'))
        {
            return NGX_ERROR;
        }
    }

    out->data = ngx_pnalloc(pool, ngx_base64_decoded_length(len) + 1);
    if (out->data == NULL) {
        return NGX_ERROR;
    }

    src.data = p;
    src.len = len;

    if (ngx_decode_base64url(out, &src) != NGX_OK) {
        return NGX_ERROR;
    }

    return NGX_OK;
}


static json_t *
ngx_insite_gw_json_part(ngx_pool_t *pool, u_char *p, size_t len)
{
    json_t        *j;
    ngx_str_t      raw;
    json_error_t   err;

    if (ngx_insite_gw_b64url_decode(pool, p, len, &raw) != NGX_OK) {
        return NULL;
    }

    j = json_loadb((const char *) raw.data, raw.len, JSON_REJECT_DUPLICATES,
                   &err);
    if (j == NULL) {
        return NULL;
    }

    if (!json_is_object(j)) {
        json_decref(j);
        return NULL;
    }

    return j;
}


/* NGX_OK with the value, NGX_DECLINED when absent, NGX_ERROR if no number */

static ngx_int_t
ngx_insite_gw_json_time(json_t *obj, const char *name, double *value)
{
    json_t  *v;

    v = json_object_get(obj, name);

    if (v == NULL) {
        return NGX_DECLINED;
    }

    if (!json_is_number(v)) {
        return NGX_ERROR;
    }

    *value = json_number_value(v);

    return NGX_OK;
}


/* insite_gateway_jwt_secret_file: read once, at configuration time */

char *
ngx_insite_gw_jwt_secret_file(ngx_conf_t *cf, ngx_str_t *path,
    ngx_str_t *secret)
{
    ssize_t          n;
    ngx_fd_t         fd;
    ngx_file_info_t  fi;
    u_char          *buf;

    if (ngx_conf_full_name(cf->cycle, path, 1) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    fd = ngx_open_file(path->data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);
    if (fd == NGX_INVALID_FILE) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           ngx_open_file_n " \"%V\" failed", path);
        return NGX_CONF_ERROR;
    }

    if (ngx_fd_info(fd, &fi) == NGX_FILE_ERROR
        || ngx_file_size(&fi) > 65536)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "secret file \"%V\" is unreadable or too large",
                           path);
        ngx_close_file(fd);
        return NGX_CONF_ERROR;
    }

    buf = ngx_pnalloc(cf->pool, (size_t) ngx_file_size(&fi) + 1);
    if (buf == NULL) {
        ngx_close_file(fd);
        return NGX_CONF_ERROR;
    }

    n = ngx_read_fd(fd, buf, (size_t) ngx_file_size(&fi));
    ngx_close_file(fd);

    if (n < 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           ngx_read_fd_n " \"%V\" failed", path);
        return NGX_CONF_ERROR;
    }

    /* editors add a final newline: it is not part of the secret */
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r')) {
        n--;
    }

    if (n == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "secret file \"%V\" is empty", path);
        return NGX_CONF_ERROR;
    }

    secret->data = buf;
    secret->len = n;

    return NGX_CONF_OK;
}
