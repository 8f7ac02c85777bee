/*
 * ngx_http_insite_gateway_module: what its files share.
 *
 *   ngx_http_insite_gateway_module.c  directives, phases, variables, filters
 *   ngx_insite_gateway_jwt.c          JWT verification (HS256 here)
 *   ngx_insite_gateway_jwk.c          JWKS key sources, claims, require
 *   insite_jwk.c                      JWKS parsing, RS/PS/ES/EdDSA (plain C)
 *   ngx_insite_gateway_breaker.c      circuit breaker state in shared memory
 *   ngx_insite_gateway_limit.c        GCRA rate limiting: shm zone and Redis
 *   ngx_insite_gateway_reply.c        request ids, JSON errors, headers
 */

#ifndef _NGX_INSITE_GATEWAY_H_INCLUDED_
#define _NGX_INSITE_GATEWAY_H_INCLUDED_


#include "ngx_insite_core.h"


#define NGX_INSITE_GW_JWT_OFF         0
#define NGX_INSITE_GW_JWT_ON          1
#define NGX_INSITE_GW_JWT_OPTIONAL    2

#define NGX_INSITE_GW_RH_OFF          0
#define NGX_INSITE_GW_RH_DRAFT        1
#define NGX_INSITE_GW_RH_LEGACY       2
#define NGX_INSITE_GW_RH_BOTH         3

#define NGX_INSITE_GW_REQUEST_ID_MAX  128


/* why a token was refused: the order of ngx_insite_gw_jwt_reasons[] */
typedef enum {
    NGX_INSITE_GW_JWT_OK = 0,
    NGX_INSITE_GW_JWT_MISSING,
    NGX_INSITE_GW_JWT_MALFORMED,
    NGX_INSITE_GW_JWT_ALGORITHM,
    NGX_INSITE_GW_JWT_SIGNATURE,
    NGX_INSITE_GW_JWT_EXPIRED,
    NGX_INSITE_GW_JWT_NOT_YET_VALID,
    NGX_INSITE_GW_JWT_ISSUER,
    NGX_INSITE_GW_JWT_AUDIENCE,
    NGX_INSITE_GW_JWT_SUBJECT,
    NGX_INSITE_GW_JWT_KEY,            /* no key in the set for the token */
    NGX_INSITE_GW_JWT_UNAVAILABLE,    /* no key set could be fetched: 503 */
    NGX_INSITE_GW_JWT_SCOPE,          /* insite_gateway_jwt_require: 403 */
    NGX_INSITE_GW_JWT_NREASONS,
    NGX_INSITE_GW_JWT_AGAIN           /* waiting for the key set's fetch */
} ngx_insite_gw_jwt_result_e;

extern const char  *ngx_insite_gw_jwt_reasons[];


/* a JWKS file or internal location, per worker (ngx_insite_gateway_jwk.c) */
typedef struct ngx_insite_gw_jwks_s  ngx_insite_gw_jwks_t;

typedef struct {
    ngx_str_t                   secret;       /* HS256; empty: refused */
    ngx_insite_gw_jwks_t       *jwks;         /* public keys; NULL: none */
    ngx_str_t                   iss;          /* empty: not checked */
    ngx_str_t                   aud;
    time_t                      leeway;
} ngx_insite_gw_jwt_conf_t;


/* circuit breaker */

#define NGX_INSITE_GW_CLOSED          0
#define NGX_INSITE_GW_OPEN            1
#define NGX_INSITE_GW_HALF_OPEN       2

#define NGX_INSITE_GW_BUCKETS         20

#define NGX_INSITE_GW_FAIL_ERROR      0x01
#define NGX_INSITE_GW_FAIL_TIMEOUT    0x02
#define NGX_INSITE_GW_FAIL_5XX        0x04

#define NGX_INSITE_GW_MAX_CODES       8

typedef struct {
    ngx_uint_t                  failures;
    ngx_uint_t                  ratio;        /* per mille, 0: off */
    ngx_uint_t                  min_requests;
    ngx_msec_t                  window;
    ngx_msec_t                  recovery;
    ngx_uint_t                  half_open;
    ngx_uint_t                  fail_on;      /* NGX_INSITE_GW_FAIL_* */
    ngx_uint_t                  codes[NGX_INSITE_GW_MAX_CODES];
    ngx_uint_t                  ncodes;

    /* where it was written; set when a location has it with a service */
    u_char                     *file;
    ngx_uint_t                  line;
    ngx_uint_t                  used;
} ngx_insite_gw_breaker_conf_t;


/*
 * One bucket of a closed breaker's window.  Successes are counted without
 * the zone's mutex: `requests` packs the bucket's identity (a number given
 * at every reset, high 32 bits) with its count (low 32 bits), so that a
 * compare-and-swap adds to the bucket it checked and never to one reset
 * meanwhile.  A reset (under the mutex) stores `requests` first, then
 * epoch and generation; failures are counted under the mutex.
 */
typedef struct {
    uint64_t                    requests;     /* __atomic: ident << 32 | n */
    volatile ngx_msec_t         epoch;        /* start of the bucket */
    volatile ngx_uint_t         generation;   /* of the breaker, at reset */
    uint32_t                    failures;     /* under the mutex */
} ngx_insite_gw_bucket_t;


/*
 * One service's breaker, in the shared zone.  The state and generation
 * share one atomic word (generation << 2 | state) so that the closed path
 * reads both at once without the mutex; every transition stores it under
 * the mutex.
 */
typedef struct {
    ngx_queue_t                 queue;
    ngx_atomic_t                state;        /* generation << 2 | state */
    ngx_msec_t                  opened;       /* when it last opened */
    ngx_uint_t                  probing;      /* a half-open probe is out */
    ngx_msec_t                  probe_start;
    ngx_uint_t                  successes;    /* consecutive, half-open */
    uint32_t                    resets;       /* bucket identities given */
    ngx_insite_gw_bucket_t      buckets[NGX_INSITE_GW_BUCKETS];
    size_t                      len;
    u_char                      name[1];
} ngx_insite_gw_breaker_node_t;

#define ngx_insite_gw_breaker_state(sg)       ((sg) & 3)
#define ngx_insite_gw_breaker_generation(sg)  ((sg) >> 2)


typedef struct {
    ngx_queue_t                 services;
} ngx_insite_gw_breaker_shctx_t;


/* a service named by insite_gateway_service */
typedef struct {
    ngx_str_t                   name;
    ngx_insite_gw_breaker_node_t  *node;      /* from the zone's init */

    ngx_insite_metric_t        *classes[6];   /* requests by status class */
    ngx_insite_metric_t        *latency;
    ngx_insite_metric_t        *state;        /* gauge: 0 closed 1 open 2 half */
    ngx_insite_metric_t        *transitions[3];
    ngx_insite_metric_t        *rejected;     /* answered 503 by the breaker */
} ngx_insite_gw_service_t;


/* rate limiting */

#define NGX_INSITE_GW_LOCAL           0
#define NGX_INSITE_GW_REDIS           1

typedef struct {
    ngx_rbtree_t                rbtree;
    ngx_rbtree_node_t           sentinel;
    ngx_queue_t                 queue;        /* LRU, most recent at head */
    ngx_msec_t                  logged;       /* "zone is full" last logged */
    ngx_uint_t                  evicted;      /* keys evicted since then */
    ngx_uint_t                  refused;      /* requests refused since then */
} ngx_insite_gw_limit_shctx_t;


typedef struct {
    ngx_insite_gw_limit_shctx_t  *sh;
    ngx_slab_pool_t            *shpool;
    ngx_str_t                   name;
    ngx_insite_metric_t        *evictions;    /* keys evicted to make room */
} ngx_insite_gw_limit_zone_t;


typedef struct {
    ngx_str_t                   zone_name;
    ngx_shm_zone_t             *shm_zone;     /* local backend */
    ngx_http_complex_value_t    key;
    /*
     * The rate is n requests per period ms; one request costs `period`
     * units and `n` units drain per millisecond, so that every rate is
     * exact in integers (nginx's limit_req rounds 10r/m to 0.166 r/s).
     */
    ngx_uint_t                  n;
    ngx_uint_t                  period;
    ngx_uint_t                  burst;
    ngx_uint_t                  backend;
    ngx_uint_t                  fail_closed;
    /* header values fixed by the directive, formatted once */
    ngx_str_t                   policy;       /* RateLimit-Policy */
    ngx_str_t                   quota;        /* RateLimit-Limit: burst + 1 */
} ngx_insite_gw_limit_t;


/* the outcome of one rate-limit decision, enough for every header */
typedef struct {
    ngx_uint_t                  allowed;
    ngx_uint_t                  remaining;
    time_t                      reset;        /* seconds until full */
    time_t                      retry_after;  /* seconds, refusals */
} ngx_insite_gw_limit_result_t;


typedef struct {
    ngx_flag_t                  request_id_conf;  /* as written, or unset */
    ngx_flag_t                  request_id;       /* resolved in merge */
    ngx_uint_t                  active;           /* anything to do here */
    ngx_uint_t                  claims_set;
    ngx_uint_t                  jwt;
    ngx_insite_gw_jwt_conf_t    jwt_conf;
    ngx_str_t                   jwt_cookie;
    ngx_flag_t                  jwt_query_token;  /* ?token= accepted */
    ngx_str_t                   jwt_secret_file;   /* for error messages */
    ngx_array_t                *jwt_require;       /* insite_gateway_jwt_require */

    ngx_insite_gw_service_t    *service;
    ngx_insite_gw_breaker_conf_t  *breaker;

    ngx_insite_gw_limit_t      *limit;
    ngx_uint_t                  rate_headers;

    /* metrics of this location, from merge */
    ngx_insite_metric_t        *auth_failures[NGX_INSITE_GW_JWT_NREASONS];
    ngx_insite_metric_t        *limit_allowed;
    ngx_insite_metric_t        *limit_refused;
    ngx_insite_metric_t        *limit_errors;
} ngx_insite_gw_loc_conf_t;


typedef struct {
    ngx_array_t                 services;     /* ngx_insite_gw_service_t * */
    ngx_array_t                 breakers;     /* ngx_insite_gw_breaker_conf_t * */
    ngx_shm_zone_t             *breaker_zone;
    ngx_insite_redis_script_t  *script;
    ngx_uint_t                  redis_limits;
    ngx_array_t                *jwks;         /* ngx_insite_gw_jwks_t * */
} ngx_insite_gw_main_conf_t;


/* per request */
typedef struct {
    ngx_http_request_t         *request;
    ngx_str_t                   request_id;
    ngx_str_t                   user_id;

    ngx_uint_t                  jwt_done;
    void                       *jwk;          /* ngx_insite_gateway_jwk.c */
    ngx_uint_t                  limit_done;

    ngx_insite_redis_cmd_t     *cmd;
    ngx_uint_t                  waiting;
    ngx_uint_t                  redis_failed;

    ngx_insite_gw_limit_result_t  limit_result;
    ngx_insite_gw_limit_t      *limit;        /* the one the result is for */
    ngx_uint_t                  rate_headers;

    ngx_insite_gw_service_t    *service;      /* admitted by the breaker */
    ngx_insite_gw_breaker_conf_t  *breaker;
    ngx_uint_t                  generation;
    ngx_uint_t                  probe;

    ngx_buf_t                  *replace;      /* JSON for nginx's 502/504 */
    ngx_uint_t                  replaced;
} ngx_insite_gw_ctx_t;


extern ngx_module_t  ngx_http_insite_gateway_module;


/* ngx_insite_gateway_jwt.c */
ngx_insite_gw_jwt_result_e ngx_insite_gw_jwt_verify(ngx_http_request_t *r,
    ngx_insite_gw_jwt_conf_t *jc, ngx_str_t *token, ngx_str_t *sub);
ngx_int_t ngx_insite_gw_jwt_find(ngx_http_request_t *r, ngx_str_t *cookie,
    ngx_uint_t query, ngx_str_t *token);
char *ngx_insite_gw_jwt_secret_file(ngx_conf_t *cf, ngx_str_t *path,
    ngx_str_t *secret);

/* ngx_insite_gateway_jwk.c */
extern ngx_uint_t  ngx_insite_gw_jwks_generation;
char *ngx_insite_gw_jwks_file_cmd(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_insite_gw_jwks_location_cmd(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_insite_gw_jwt_require_cmd(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_insite_gw_jwk_merge(ngx_conf_t *cf, ngx_insite_gw_loc_conf_t *prev,
    ngx_insite_gw_loc_conf_t *conf);
void ngx_insite_gw_jwks_refresh(ngx_http_request_t *r,
    ngx_insite_gw_jwks_t *src);
ngx_insite_gw_jwt_result_e ngx_insite_gw_jwks_verify(ngx_http_request_t *r,
    ngx_insite_gw_jwks_t *src, int alg, ngx_str_t *kid, u_char *input,
    size_t input_len, u_char *sig, size_t sig_len);
void ngx_insite_gw_jwt_verified(ngx_http_request_t *r, ngx_str_t *token);
ngx_int_t ngx_insite_gw_jwt_claim_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
ngx_int_t ngx_insite_gw_jwt_require(ngx_http_request_t *r,
    ngx_insite_gw_loc_conf_t *lcf, ngx_insite_gw_ctx_t *ctx);

/* ngx_insite_gateway_breaker.c */
char *ngx_insite_gw_breaker_parse(ngx_conf_t *cf,
    ngx_insite_gw_breaker_conf_t *bc);
ngx_shm_zone_t *ngx_insite_gw_breaker_zone(ngx_conf_t *cf,
    ngx_insite_gw_main_conf_t *gmcf);
ngx_int_t ngx_insite_gw_breaker_admit(ngx_http_request_t *r,
    ngx_insite_gw_ctx_t *ctx, ngx_insite_gw_service_t *svc,
    ngx_insite_gw_breaker_conf_t *bc, time_t *retry_after);
void ngx_insite_gw_breaker_outcome(ngx_http_request_t *r,
    ngx_insite_gw_ctx_t *ctx);

/* ngx_insite_gateway_limit.c */
char *ngx_insite_gw_limit_parse(ngx_conf_t *cf, ngx_insite_gw_limit_t *lim);
char *ngx_insite_gw_limit_zone(ngx_conf_t *cf, ngx_str_t *name, size_t size);
ngx_int_t ngx_insite_gw_limit_local(ngx_http_request_t *r,
    ngx_insite_gw_limit_t *lim, ngx_str_t *key,
    ngx_insite_gw_limit_result_t *res);
ngx_insite_redis_cmd_t *ngx_insite_gw_limit_redis(ngx_http_request_t *r,
    ngx_insite_redis_script_t *script, ngx_insite_gw_limit_t *lim,
    ngx_str_t *key, ngx_insite_redis_reply_pt handler, void *data);
ngx_int_t ngx_insite_gw_limit_redis_result(ngx_insite_gw_limit_t *lim,
    redisReply *reply, ngx_insite_gw_limit_result_t *res);
void ngx_insite_gw_limit_compute(ngx_insite_gw_limit_t *lim,
    ngx_uint_t allowed, int64_t excess, ngx_insite_gw_limit_result_t *res);

/* ngx_insite_gateway_reply.c */
ngx_str_t *ngx_insite_gw_request_id(ngx_http_request_t *r,
    ngx_insite_gw_ctx_t *ctx);
ngx_int_t ngx_insite_gw_request_id_upstream(ngx_http_request_t *r,
    ngx_insite_gw_ctx_t *ctx);
ngx_int_t ngx_insite_gw_strip_query_token(ngx_http_request_t *r);
ngx_int_t ngx_insite_gw_error(ngx_http_request_t *r, ngx_insite_gw_ctx_t *ctx,
    ngx_uint_t status, const char *code, const char *message,
    time_t retry_after);
ngx_buf_t *ngx_insite_gw_error_body(ngx_http_request_t *r,
    ngx_insite_gw_ctx_t *ctx, const char *code, const char *message,
    time_t retry_after);
ngx_int_t ngx_insite_gw_set_header(ngx_http_request_t *r, const char *name,
    ngx_str_t *value);
ngx_int_t ngx_insite_gw_rate_headers(ngx_http_request_t *r,
    ngx_insite_gw_ctx_t *ctx);
ngx_insite_gw_ctx_t *ngx_insite_gw_get_ctx(ngx_http_request_t *r);


#endif /* _NGX_INSITE_GATEWAY_H_INCLUDED_ */
