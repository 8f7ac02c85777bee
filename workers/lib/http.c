#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <microhttpd.h>
#include <openssl/evp.h>

#include "clock.h"
#include "http.h"
#include "log.h"

#define INSITE_HTTP_IDLE_TIMEOUT     5      /* seconds */
#define INSITE_HTTP_MAX_CONNECTIONS  1024
#define INSITE_HTTP_MAX_PER_IP       256
#define INSITE_HTTP_THREADS_MAX      64

struct insite_http {
    struct MHD_Daemon *d;
    char *service;
    size_t body_max;
    int body_max_status;
    insite_http_route *routes;
    size_t nroutes;
    insite_metrics *metrics;
    insite_http_health_fn health;
    void *health_ud;
    double started;
    int port;
};

#define REPLY_HEADERS_MAX 8

/* What a handler asked for besides the body (insite_http_set_header,
 * insite_http_etag). */
struct insite_http_reply_meta {
    char *names[REPLY_HEADERS_MAX], *values[REPLY_HEADERS_MAX];
    size_t n;
    int etag;
    char etag_known[35];             /* insite_http_etag_known(), or "" */
    char *body_ctype;                /* insite_http_set_body() */
    void *body;
    size_t body_len;
};

static void reply_meta_clear(struct insite_http_reply_meta *m)
{
    for (size_t i = 0; i < m->n; i++) {
        free(m->names[i]);
        free(m->values[i]);
    }
    m->n = 0;
    m->etag = 0;
    m->etag_known[0] = '\0';
    free(m->body_ctype);
    free(m->body);
    m->body_ctype = NULL;
    m->body = NULL;
}

void insite_http_set_body(const insite_http_request *req, const char *ctype, void *body, size_t len)
{
    struct insite_http_reply_meta *m = req->meta;
    char *ct = strdup(ctype);
    if (m == NULL || ct == NULL) {
        insite_log_error("http: cannot set a %s body on %s", ctype, req->path);
        free(ct);
        free(body);
        return;
    }
    free(m->body_ctype);
    free(m->body);
    m->body_ctype = ct;
    m->body = body;
    m->body_len = len;
}

/* A body set with insite_http_set_body(): bytes as they are. */
static enum MHD_Result send_body_meta(struct MHD_Connection *conn, int status,
                                      struct insite_http_reply_meta *meta)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(meta->body_len, meta->body,
                                                             MHD_RESPMEM_MUST_FREE);
    if (r == NULL) {
        insite_log_error("http: cannot create response");
        return MHD_NO;
    }
    meta->body = NULL;                 /* the response owns it now */
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, meta->body_ctype);
    for (size_t i = 0; i < meta->n; i++)
        MHD_add_response_header(r, meta->names[i], meta->values[i]);
    enum MHD_Result ret = MHD_queue_response(conn, (unsigned)status, r);
    MHD_destroy_response(r);
    return ret;
}

int insite_http_set_header(const insite_http_request *req, const char *name,
                           const char *value)
{
    struct insite_http_reply_meta *m = req->meta;
    if (m == NULL || m->n == REPLY_HEADERS_MAX) {
        insite_log_error("http: no room for response header %s on %s", name, req->path);
        return -1;
    }
    if ((m->names[m->n] = strdup(name)) == NULL
        || (m->values[m->n] = strdup(value)) == NULL) {
        free(m->names[m->n]);
        insite_log_error("http: out of memory for response header %s", name);
        return -1;
    }
    m->n++;
    return 0;
}

void insite_http_etag(const insite_http_request *req)
{
    if (req->meta != NULL)
        req->meta->etag = 1;
}

void insite_http_etag_known(const insite_http_request *req, const char tag[35])
{
    if (req->meta != NULL) {
        req->meta->etag = 1;
        memcpy(req->meta->etag_known, tag, sizeof(req->meta->etag_known));
        req->meta->etag_known[34] = '\0';
    }
}

/* "<32 hex digits>" with the quotes, from the body's SHA-256. */
int insite_http_etag_of(const char *body, size_t len, char out[35])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (EVP_Digest(body, len, md, &mdlen, EVP_sha256(), NULL) != 1 || mdlen < 16)
        return -1;
    out[0] = '"';
    for (int i = 0; i < 16; i++)
        snprintf(out + 1 + 2 * i, 3, "%02x", md[i]);
    out[33] = '"';
    out[34] = '\0';
    return 0;
}

/* RFC 9110 13.1.2: If-None-Match is "*" or a list of entity tags; weak
 * comparison, so W/"x" matches "x" too. */
static int etag_listed(const char *inm, const char *tag)
{
    size_t tl = strlen(tag);
    const char *p = inm;
    while (*p) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        if (*p == '*')
            return 1;
        if (p[0] == 'W' && p[1] == '/')
            p += 2;
        size_t n = strcspn(p, ",");
        while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t'))
            n--;
        if (n == tl && memcmp(p, tag, tl) == 0)
            return 1;
        p += strcspn(p, ",");
    }
    return 0;
}

/* Per-request state: the body as it arrives. */
typedef struct {
    char *buf;
    size_t len;
    int too_big;
} request_state;

json_t *insite_http_error(const char *code, const char *message)
{
    return json_pack("{s:s, s:s}", "error", code, "message", message);
}

const char *insite_http_query(const insite_http_request *req, const char *name)
{
    return MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, name);
}

int insite_http_query_int(const insite_http_request *req, const char *name,
                          long long min, long long max, long long def,
                          long long *out, json_t **reply)
{
    const char *v = NULL;
    size_t vlen = 0;
    char *end = NULL, msg[160];
    long long n = 0;

    if (MHD_lookup_connection_value_n(req->conn, MHD_GET_ARGUMENT_KIND, name, strlen(name),
                                      &v, &vlen) != MHD_YES || v == NULL) {
        *out = def;
        return 0;
    }
    errno = 0;
    /* strtoll() alone would take " 1", "+1" with spaces, "1abc" (as 1) */
    if ((v[0] >= '0' && v[0] <= '9') || (v[0] == '-' && v[1] >= '0' && v[1] <= '9'))
        n = strtoll(v, &end, 10);
    /* end != v + vlen: a decoded NUL ("1%00") cut the string short */
    if (end == NULL || end != v + vlen || errno == ERANGE || n < min || n > max) {
        snprintf(msg, sizeof(msg), "%s must be an integer from %lld to %lld", name, min, max);
        *reply = insite_http_error("bad_request", msg);
        return 400;
    }
    *out = n;
    return 0;
}

const char *insite_http_header(const insite_http_request *req, const char *name)
{
    return MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, name);
}

const char *insite_http_user(const insite_http_request *req)
{
    const char *u = insite_http_header(req, "X-User-Id");
    return (u && u[0]) ? u : NULL;
}

int insite_http_has_scope(const insite_http_request *req, const char *scope)
{
    const char *s = insite_http_header(req, "X-User-Scopes");
    size_t n = strlen(scope);

    if (s == NULL || n == 0)
        return 0;
    while (*s) {
        size_t len;
        while (*s == ' ' || *s == ',')
            s++;
        len = strcspn(s, " ,");
        if (len == n && memcmp(s, scope, n) == 0)
            return 1;
        s += len;
    }
    return 0;
}

/* meta (may be NULL): the handler's headers, and the ETag / 304 decision. */
static enum MHD_Result send_text_meta(struct MHD_Connection *conn, int status,
                                      char *text, const char *ctype,
                                      const char *allow,
                                      const struct insite_http_reply_meta *meta)
{
    char etag[35] = "";
    size_t len = strlen(text);

    if (meta != NULL && meta->etag && status == 200 && meta->etag_known[0] != '\0')
        memcpy(etag, meta->etag_known, sizeof(etag));
    else if (meta != NULL && meta->etag && status == 200 && insite_http_etag_of(text, len, etag) != 0)
        etag[0] = '\0';
    if (etag[0] != '\0') {
        const char *inm = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
                                                      MHD_HTTP_HEADER_IF_NONE_MATCH);
        if (inm != NULL && etag_listed(inm, etag))
            status = 304;      /* RFC 9110 15.4.5: no content */
    }
    struct MHD_Response *r;
    if (status == 304) {
        free(text);
        r = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
    } else {
        r = MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE);
    }
    if (r == NULL) {
        if (status != 304)
            free(text);
        insite_log_error("http: cannot create response");
        return MHD_NO;
    }
    if (status != 304)
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    if (allow != NULL)
        MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, allow);
    if (etag[0] != '\0')
        MHD_add_response_header(r, MHD_HTTP_HEADER_ETAG, etag);
    for (size_t i = 0; meta != NULL && i < meta->n; i++)
        MHD_add_response_header(r, meta->names[i], meta->values[i]);
    enum MHD_Result ret = MHD_queue_response(conn, (unsigned)status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result send_text(struct MHD_Connection *conn, int status,
                                 char *text, const char *ctype,
                                 const char *allow)
{
    return send_text_meta(conn, status, text, ctype, allow, NULL);
}

static enum MHD_Result send_json_meta(struct MHD_Connection *conn, int status,
                                      json_t *reply, const char *allow,
                                      struct insite_http_reply_meta *meta);

/* Takes ownership of reply. */
static enum MHD_Result send_json(struct MHD_Connection *conn, int status,
                                 json_t *reply, const char *allow)
{
    return send_json_meta(conn, status, reply, allow, NULL);
}

static enum MHD_Result send_json_meta(struct MHD_Connection *conn, int status,
                                      json_t *reply, const char *allow,
                                      struct insite_http_reply_meta *meta)
{
    char *text;
    if (meta != NULL && meta->body != NULL) {
        text = meta->body;             /* the handler's own serialisation */
        meta->body = NULL;
    } else {
        text = json_dumps(reply ? reply : json_object(), JSON_COMPACT);
    }
    json_decref(reply);
    if (text == NULL) {
        insite_log_error("http: cannot serialise reply (status %d)", status);
        text = strdup("{\"error\":\"internal\",\"message\":\"cannot serialise reply\"}");
        status = 500;
        if (text == NULL)
            return MHD_NO;
    }
    size_t n = strlen(text);
    char *line = n > 0 && text[n - 1] == '\n' ? NULL
               : realloc(text, n + 2);   /* trailing newline for curl users */
    if (line != NULL) {
        line[n] = '\n';
        line[n + 1] = '\0';
        text = line;
    }
    return send_text_meta(conn, status, text, "application/json", allow, meta);
}

static enum MHD_Result serve_health(insite_http *h, struct MHD_Connection *conn)
{
    json_t *checks = json_object();
    int bad = h->health ? h->health(checks, h->health_ud) : 0;
    json_t *reply = json_pack("{s:s, s:s, s:I, s:o}",
                              "status", bad ? "degraded" : "ok",
                              "service", h->service,
                              "uptime_s", (json_int_t)(insite_clock_mono_s() - h->started),
                              "checks", checks);
    return send_json(conn, bad ? 503 : 200, reply, NULL);
}

static enum MHD_Result serve_metrics(insite_http *h, struct MHD_Connection *conn)
{
    char *text = insite_metrics_render(h->metrics);
    if (text == NULL)
        return send_json(conn, 500, insite_http_error("internal", "cannot render metrics"), NULL);
    return send_text(conn, 200, text, "text/plain; version=0.0.4; charset=utf-8", NULL);
}

static int prefix_match(const char *prefix, const char *path)
{
    size_t n = strlen(prefix);
    if (strncmp(prefix, path, n) != 0)
        return 0;
    return path[n] == '\0' || path[n] == '/' || (n > 0 && prefix[n - 1] == '/');
}

/* MHD_KeyValueIteratorN: stops at the first argument whose decoded value
 * holds a NUL ("a%00b"), which C strings would silently cut short */
static enum MHD_Result find_nul_arg(void *cls, enum MHD_ValueKind kind,
                                    const char *key, size_t key_size,
                                    const char *value, size_t value_size)
{
    const char **bad = cls;
    (void)kind;
    if ((value != NULL && memchr(value, '\0', value_size) != NULL)
        || memchr(key, '\0', key_size) != NULL) {
        *bad = key;
        return MHD_NO;
    }
    return MHD_YES;
}

static enum MHD_Result dispatch(insite_http *h, struct MHD_Connection *conn,
                                const char *method, const char *url,
                                request_state *st)
{
    const insite_http_route *best = NULL;
    size_t best_len = 0;
    char allow[128] = "";

    if (strcmp(url, "/healthz") == 0 || (strcmp(url, "/metrics") == 0 && h->metrics)) {
        if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
            return send_json(conn, 405, insite_http_error("method_not_allowed",
                             "use GET"), "GET");
        return url[1] == 'h' ? serve_health(h, conn) : serve_metrics(h, conn);
    }

    for (size_t i = 0; i < h->nroutes; i++) {
        const insite_http_route *r = &h->routes[i];
        size_t n = strlen(r->prefix);
        if (!prefix_match(r->prefix, url) || n < best_len)
            continue;
        if (strcmp(r->method, method) != 0) {
            size_t a = strlen(allow);
            snprintf(allow + a, sizeof(allow) - a, "%s%s", a ? ", " : "", r->method);
            continue;
        }
        best = r;
        best_len = n;
    }
    if (best == NULL) {
        if (allow[0] != '\0')
            return send_json(conn, 405, insite_http_error("method_not_allowed",
                             "method not allowed on this path"), allow);
        return send_json(conn, 404, insite_http_error("not_found", "no such path"), NULL);
    }

    if (st->too_big) {
        char msg[96];
        snprintf(msg, sizeof(msg), "body larger than %zu bytes", h->body_max);
        return send_json(conn, h->body_max_status, insite_http_error("payload_too_large", msg), NULL);
    }

    const char *nul_arg = NULL;
    MHD_get_connection_values_n(conn, MHD_GET_ARGUMENT_KIND, find_nul_arg, &nul_arg);
    if (nul_arg != NULL) {
        char msg[160];
        snprintf(msg, sizeof(msg), "query argument \"%.64s\" holds a NUL byte (%%00)", nul_arg);
        return send_json(conn, 400, insite_http_error("bad_request", msg), NULL);
    }

    struct insite_http_reply_meta meta = { .n = 0 };
    insite_http_request req = {
        .method = method, .path = url, .rest = url + best_len, .conn = conn,
        .meta = &meta,
    };
    if (st->len > 0) {
        json_error_t jerr;
        req.body = json_loadb(st->buf, st->len, JSON_DECODE_ANY, &jerr);
        if (req.body == NULL) {
            char msg[256];
            snprintf(msg, sizeof(msg), "invalid JSON at line %d column %d: %s",
                     jerr.line, jerr.column, jerr.text);
            return send_json(conn, 400, insite_http_error("bad_request", msg), NULL);
        }
    }

    json_t *reply = NULL;
    int status = best->fn(&req, &reply, best->ud);
    json_decref(req.body);
    enum MHD_Result ret;
    if (meta.body != NULL && strcmp(meta.body_ctype, "application/json") != 0) {
        json_decref(reply);
        ret = send_body_meta(conn, status, &meta);
    } else
        ret = send_json_meta(conn, status, reply, NULL, &meta);
    reply_meta_clear(&meta);
    return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn,
                                  const char *url, const char *method,
                                  const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    insite_http *h = cls;
    request_state *st = *con_cls;

    if (st == NULL) {
        if ((st = calloc(1, sizeof(*st))) == NULL) {
            insite_log_error("http: out of memory for %s %s", method, url);
            return MHD_NO;
        }
        *con_cls = st;
        return MHD_YES;
    }
    if (*upload_data_size > 0) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        if (st->too_big || st->len + n > h->body_max) {
            st->too_big = 1;   /* keep reading, answer body_max_status at the end */
            return MHD_YES;
        }
        char *b = realloc(st->buf, st->len + n);
        if (b == NULL) {
            insite_log_error("http: out of memory for a %zu-byte body", st->len + n);
            return MHD_NO;
        }
        memcpy(b + st->len, upload_data, n);
        st->buf = b;
        st->len += n;
        return MHD_YES;
    }
    return dispatch(h, conn, method, url, st);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    request_state *st = *con_cls;
    if (st != NULL) {
        free(st->buf);
        free(st);
        *con_cls = NULL;
    }
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    char msg[512];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    insite_log_warn("http: %s", msg);
}

insite_http *insite_http_start(const insite_http_options *opt)
{
    insite_http *h = calloc(1, sizeof(*h));
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)opt->port) };

    if (h == NULL
        || (h->service = strdup(opt->service)) == NULL
        || (h->routes = calloc(opt->nroutes ? opt->nroutes : 1, sizeof(*h->routes))) == NULL) {
        insite_log_error("http: out of memory");
        goto fail;
    }
    if (opt->nroutes)
        memcpy(h->routes, opt->routes, opt->nroutes * sizeof(*h->routes));
    h->nroutes = opt->nroutes;
    h->body_max = opt->body_max ? opt->body_max : 1 << 20;
    h->body_max_status = opt->body_max_status ? opt->body_max_status : 413;
    h->metrics = opt->metrics;
    h->health = opt->health;
    h->health_ud = opt->health_ud;
    h->started = insite_clock_mono_s();
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);

    if (opt->threads > INSITE_HTTP_THREADS_MAX) {
        insite_log_error("http: %u threads asked, at most %d", opt->threads,
                         INSITE_HTTP_THREADS_MAX);
        goto fail;
    }
    /* a pool of 1 is the single internal thread: the option is only given
     * for N > 1, so a worker that asks for nothing runs as before */
    unsigned pool = opt->threads > 1 ? opt->threads : 0;
    h->d = MHD_start_daemon(MHD_USE_AUTO_INTERNAL_THREAD | MHD_USE_ERROR_LOG,
                            0, NULL, NULL, on_request, h,
                            MHD_OPTION_THREAD_POOL_SIZE, pool,
                            MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, h,
                            MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
                            MHD_OPTION_NOTIFY_COMPLETED, on_completed, h,
                            /* idle sockets must not hold the API: a
                             * silent connection is closed after a few
                             * seconds, one address holds at most a
                             * quarter of the slots (nginx connects from
                             * 127.0.0.1, local tools from elsewhere in
                             * 127/8 or ::1 do not starve it) */
                            MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)INSITE_HTTP_IDLE_TIMEOUT,
                            MHD_OPTION_CONNECTION_LIMIT, (unsigned)INSITE_HTTP_MAX_CONNECTIONS,
                            MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)INSITE_HTTP_MAX_PER_IP,
                            MHD_OPTION_END);
    if (h->d == NULL) {
        insite_log_error("http: cannot listen on 127.0.0.1:%d (in use?)", opt->port);
        goto fail;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_BIND_PORT);
    h->port = di ? di->port : opt->port;
    if (pool > 0)
        insite_log_info("http: listening on 127.0.0.1:%d (%u threads)", h->port, pool);
    else
        insite_log_info("http: listening on 127.0.0.1:%d", h->port);
    return h;

fail:
    insite_http_stop(h);
    return NULL;
}

int insite_http_port(const insite_http *h)
{
    return h->port;
}

void insite_http_stop(insite_http *h)
{
    if (h == NULL)
        return;
    if (h->d != NULL)
        MHD_stop_daemon(h->d);
    free(h->routes);
    free(h->service);
    free(h);
}
