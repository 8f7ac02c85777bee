/* Per-worker HTTP API on GNU libmicrohttpd, bound to 127.0.0.1 only.
 *
 * A small route table maps method + path prefix to a handler.  Request
 * bodies are JSON (capped; bad JSON -> 400), replies are JSON, and errors use
 * one shape everywhere:  {"error":"not_found","message":"..."}.
 * Built in: GET /healthz and GET /metrics (from the worker's registry).
 *
 * By default handlers run on libmicrohttpd's internal thread, one request at
 * a time; they must only touch state that is safe to share with the
 * worker's loop.  With insite_http_options.threads > 1 they run on a pool of
 * that many threads, several requests at once: then every handler (and the
 * health callback) must also be safe to run concurrently with itself. */
#ifndef INSITE_HTTP_H
#define INSITE_HTTP_H

#include <stddef.h>

#include <jansson.h>

#include "metrics.h"

struct MHD_Connection;

typedef struct {
    const char *method;          /* "GET", "POST", ... */
    const char *path;            /* "/jobs/42" */
    const char *rest;            /* path after the matched prefix: "/42" */
    json_t *body;                /* parsed JSON body, NULL when empty */
    struct MHD_Connection *conn; /* for insite_http_query() */
    struct insite_http_reply_meta *meta;  /* set by the server: response
                                             headers, see insite_http_set_header() */
} insite_http_request;

/* Sets *reply (ownership passes to the server; NULL = empty {}) and returns
 * the HTTP status.  Use insite_http_error() for error bodies. */
typedef int (*insite_http_handler)(const insite_http_request *req,
                                   json_t **reply, void *ud);

typedef struct {
    const char *method;
    const char *prefix;          /* "/jobs": matches /jobs and /jobs/... */
    insite_http_handler fn;
    void *ud;
} insite_http_route;

/* Adds the worker's own entries to the "checks" object of /healthz; returns
 * 0 when healthy, -1 to answer 503 with "status":"degraded". */
typedef int (*insite_http_health_fn)(json_t *checks, void *ud);

typedef struct {
    const char *service;         /* "collector" */
    int port;                    /* 0 = any free port (see insite_http_port) */
    size_t body_max;             /* bytes; 0 = 1 MiB */
    int body_max_status;         /* status of a body over body_max, with
                                    {"error":"payload_too_large"}: 0 = 413;
                                    400 for an API whose contract counts an
                                    oversized body as bad input (insite-gdpr) */
    const insite_http_route *routes;   /* copied */
    size_t nroutes;
    insite_metrics *metrics;     /* may be NULL: /metrics then answers 404 */
    insite_http_health_fn health;
    void *health_ud;
    unsigned threads;            /* 0 or 1: one internal thread (the default);
                                    N > 1: a pool of N threads, each polling
                                    its share of the connections (at most 64) */
} insite_http_options;

typedef struct insite_http insite_http;

/* Starts the server thread.  Returns NULL on failure (logged, with port). */
insite_http *insite_http_start(const insite_http_options *opt);
int insite_http_port(const insite_http *h);
void insite_http_stop(insite_http *h);

/* {"error": code, "message": message} */
json_t *insite_http_error(const char *code, const char *message);
/* Query-string argument, or NULL.  Never cut short: a request with a
 * decoded NUL in any argument ("?q=a%00b") is answered 400
 * {"error":"bad_request","message":"query argument \"q\" holds a NUL byte
 * (%00)"} before a handler runs. */
const char *insite_http_query(const insite_http_request *req, const char *name);
/* A query-string integer, parsed strictly: optional sign and decimal digits
 * only ("1abc", "", " 1", "0x10" are errors), within min..max; absent -> def.
 * Returns 0 with *out set, or 400 with *reply set to
 * {"error":"bad_request","message":"<name> must be an integer from min to
 * max"}: handlers `return` that status as is. */
int insite_http_query_int(const insite_http_request *req, const char *name,
                          long long min, long long max, long long def,
                          long long *out, json_t **reply);
/* Request header, or NULL. */
const char *insite_http_header(const insite_http_request *req, const char *name);

/* The caller, as nginx vouches for it.  Worker APIs listen on loopback only
 * and sit behind nginx, which sets (and so overwrites whatever a client
 * sent) two headers from the verified JWT:
 *
 *   X-User-Id      $insite_user_id            the caller's user id
 *   X-User-Scopes  $insite_jwt_claim_scope    space-separated scopes/roles
 *
 * A user reaches only their own data: handlers take the user from
 * insite_http_user(), never from a query or body parameter.  Operator
 * actions require insite_http_has_scope(req, "<service>:admin"), and the
 * example configuration additionally guards those locations with
 * insite_gateway_jwt_require.  Both return "no identity" for an empty header. */
const char *insite_http_user(const insite_http_request *req);
int insite_http_has_scope(const insite_http_request *req, const char *scope);

/* Response headers and conditional GET, for resources a cache may keep.
 *
 * insite_http_set_header() adds a header to the reply the handler is about
 * to return (any status; at most 8 per reply; name and value are copied).
 * Returns 0, or -1 when the table is full or out of memory (logged).
 *
 * insite_http_etag() marks a 200 reply as validated by a strong ETag: the
 * server serialises the reply, sets ETag: "<first 32 hex digits of the
 * SHA-256 of the body>", and when the request's If-None-Match lists that tag
 * (or is "*") answers 304 with no body but the same ETag and the headers the
 * handler set (Cache-Control, Last-Modified).  So a handler computes its
 * reply as usual and the server decides; the body bytes are the only input,
 * which keeps the tag identical across workers and restarts. */
int insite_http_set_header(const insite_http_request *req, const char *name,
                           const char *value);
void insite_http_etag(const insite_http_request *req);
/* The ETag insite_http_etag() gives a body, with its quotes; 0, or -1
 * (OpenSSL failed).  For a handler that keeps bodies and their tags. */
int insite_http_etag_of(const char *body, size_t len, char out[35]);
/* insite_http_etag() with the tag already known (insite_http_etag_of() of
 * the body the handler sets): the server does not hash the body again. */
void insite_http_etag_known(const insite_http_request *req, const char tag[35]);

/* The reply body as bytes the handler made itself; ownership of body
 * (malloc'd) passes to the server, which sends it instead of *reply with the
 * handler's headers.  "application/json": body is NUL-terminated JSON text
 * the handler serialised itself (a large answer without a json_t per value)
 * and gets the JSON reply's ETag, 304 and trailing-newline handling.  Any
 * other ctype (a PDF) goes out as is.  On failure (logged) body is freed and
 * the JSON reply goes out instead. */
void insite_http_set_body(const insite_http_request *req, const char *ctype,
                          void *body, size_t len);

#endif
