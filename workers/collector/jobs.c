#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "jobs.h"
#include "log.h"
#include "pg.h"
#include "random.h"
#include "social.h"
#include "store.h"

#define JOB_SYMBOLS_MAX 100

struct jobs {
    char *dsn;
    PGconn *pg;                  /* the HTTP thread's own connection */
    int wake_fd;
    char **known;                /* watchlist + job_symbols, copied */
    size_t nknown;
    unsigned sources;            /* enabled social sources */
};

static const struct { const char *name; unsigned bit; } source_names[] = {
    { "rss", SOCIAL_RSS }, { "reddit", SOCIAL_REDDIT }, { "twitter", SOCIAL_X }, { "x", SOCIAL_X },
};

static int reply_error(json_t **reply, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int reply_error(json_t **reply, int status, const char *code, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    *reply = insite_http_error(code, msg);
    return status;
}

static PGconn *conn(jobs *j)
{
    char err[512];
    if (j->pg != NULL && PQstatus(j->pg) == CONNECTION_OK)
        return j->pg;
    if (j->pg != NULL) {
        PQreset(j->pg);
        if (PQstatus(j->pg) == CONNECTION_OK)
            return j->pg;
        PQfinish(j->pg);
    }
    j->pg = insite_pg_connect(j->dsn, err, sizeof(err));
    if (j->pg == NULL)
        insite_log_error("jobs: postgres: %s", err);
    return j->pg;
}

static int known(const jobs *j, const char *s)
{
    for (size_t i = 0; i < j->nknown; i++)
        if (strcasecmp(j->known[i], s) == 0)
            return 1;
    return 0;
}

/* symbols -> PostgreSQL array literal {"AAPL","MSFT"} (validated chars
 * only) and a JSON array; 0 or an HTTP status with *reply set. */
static int read_symbols(jobs *j, json_t *body, char *lit, size_t litlen, json_t **syms,
                        json_t **reply)
{
    json_t *a = json_object_get(body, "symbols"), *v;
    size_t i, used = 1;

    if (!json_is_array(a) || json_array_size(a) == 0)
        return reply_error(reply, 400, "bad_request", "\"symbols\" must be a non-empty array of symbols");
    if (json_array_size(a) > JOB_SYMBOLS_MAX)
        return reply_error(reply, 400, "bad_request", "at most %d symbols per job", JOB_SYMBOLS_MAX);
    *syms = json_array();
    snprintf(lit, litlen, "{");
    json_array_foreach(a, i, v) {
        char up[SYMBOL_MAX];
        const char *s = json_string_value(v);
        if (s == NULL || !symbol_valid(s)) {
            json_decref(*syms);
            return reply_error(reply, 400, "bad_request", "symbols[%zu] is not a symbol", i);
        }
        if (!known(j, s)) {
            json_decref(*syms);
            return reply_error(reply, 400, "unknown_symbol", "unknown symbol \"%s\" (not in "
                               "collector.symbols or collector.job_symbols)", s);
        }
        for (size_t k = 0; k < sizeof(up); k++)
            if ((up[k] = (char)toupper((unsigned char)s[k])) == '\0')
                break;
        json_array_append_new(*syms, json_string(up));
        used += (size_t)snprintf(lit + used, litlen - used, "%s\"%s\"", i ? "," : "", up);
    }
    snprintf(lit + used, litlen - used, "}");
    return 0;
}

static int insert(jobs *j, const char *kind, const char *syms, int prio, const char *srcs,
                  char id[INSITE_UUID_LEN], json_t **reply)
{
    char p[8];
    PGconn *c = conn(j);

    if (c == NULL || insite_uuid_v4(id) != 0)
        return reply_error(reply, 503, "unavailable", "job store (PostgreSQL) unavailable");
    snprintf(p, sizeof(p), "%d", prio);
    const char *params[5] = { id, kind, syms, p, srcs };
    PGresult *r = PQexecParams(c,
        "INSERT INTO collection_jobs (job_id, kind, symbols, status, priority, sources) "
        "VALUES ($1, $2, $3::text[], 'pending', $4, $5::text[])", 5, NULL, params, NULL, NULL, 0);
    int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    if (!ok)
        insite_log_error("jobs: insert %s job: %s", kind, PQerrorMessage(c));
    PQclear(r);
    if (!ok)
        return reply_error(reply, 503, "unavailable", "cannot store the job");
    if (write(j->wake_fd, "j", 1) < 0)
        insite_log_debug("jobs: wake pipe full");
    return 0;
}

static int accepted(json_t **reply, const char *id, json_t *syms)
{
    *reply = json_pack("{s:s, s:s, s:o}", "job_id", id, "status", "started", "symbols", syms);
    return 202;
}

static int post_stocks(const insite_http_request *req, json_t **reply, void *ud)
{
    jobs *j = ud;
    char lit[JOB_SYMBOLS_MAX * (SYMBOL_MAX + 3) + 4], id[INSITE_UUID_LEN];
    json_t *syms = NULL, *pr;
    int prio = 1, st;

    if (!json_is_object(req->body))
        return reply_error(reply, 400, "bad_request", "body must be a JSON object");
    pr = json_object_get(req->body, "priority");
    if (pr != NULL) {
        const char *p = json_string_value(pr);
        if (p && strcasecmp(p, "HIGH") == 0)
            prio = 2;
        else if (p && strcasecmp(p, "LOW") == 0)
            prio = 0;
        else if (!p || strcasecmp(p, "NORMAL") != 0)
            return reply_error(reply, 400, "bad_request", "\"priority\" must be HIGH, NORMAL or LOW");
    }
    if ((st = read_symbols(j, req->body, lit, sizeof(lit), &syms, reply)) != 0)
        return st;
    if ((st = insert(j, "stocks", lit, prio, "{}", id, reply)) != 0) {
        json_decref(syms);
        return st;
    }
    insite_log_info("jobs: %s stocks %s priority %d queued", id, lit, prio);
    return accepted(reply, id, syms);
}

static int post_sentiment(const insite_http_request *req, json_t **reply, void *ud)
{
    jobs *j = ud;
    char lit[JOB_SYMBOLS_MAX * (SYMBOL_MAX + 3) + 4], id[INSITE_UUID_LEN], srcs[64] = "{";
    json_t *syms = NULL, *a, *v;
    size_t i;
    int st;

    if (!json_is_object(req->body))
        return reply_error(reply, 400, "bad_request", "body must be a JSON object");
    a = json_object_get(req->body, "sources");
    if (a != NULL && (!json_is_array(a) || json_array_size(a) == 0))
        return reply_error(reply, 400, "bad_request", "\"sources\" must be a non-empty array");
    json_array_foreach(a, i, v) {
        const char *s = json_string_value(v);
        size_t k = 0;
        while (k < sizeof(source_names) / sizeof(source_names[0])
               && (s == NULL || strcasecmp(s, source_names[k].name) != 0))
            k++;
        if (k == sizeof(source_names) / sizeof(source_names[0]))
            return reply_error(reply, 400, "bad_request", "sources[%zu]: unknown source "
                               "(rss, reddit or twitter)", i);
        if (strlen(srcs) + 12 < sizeof(srcs))
            snprintf(srcs + strlen(srcs), sizeof(srcs) - strlen(srcs), "%s%s", i ? "," : "",
                     source_names[k].bit == SOCIAL_X ? "twitter" : source_names[k].name);
    }
    strcat(srcs, "}");
    if ((st = read_symbols(j, req->body, lit, sizeof(lit), &syms, reply)) != 0)
        return st;
    if ((st = insert(j, "sentiment", lit, 1, srcs, id, reply)) != 0) {
        json_decref(syms);
        return st;
    }
    insite_log_info("jobs: %s sentiment %s sources %s queued", id, lit, srcs);
    return accepted(reply, id, syms);
}

static const char *public_status(const char *s)
{
    if (strcmp(s, "done") == 0)
        return "completed";
    if (strcmp(s, "pending") == 0)
        return "running";
    return s;
}

static int uuid_shape(const char *s)
{
    size_t n = 0;
    for (; s[n]; n++) {
        int dash = n == 8 || n == 13 || n == 18 || n == 23;
        if (dash ? s[n] != '-' : !isxdigit((unsigned char)s[n]))
            return 0;
    }
    return n == 36;
}

static int get_status(const insite_http_request *req, json_t **reply, void *ud)
{
    jobs *j = ud;
    const char *id = req->rest[0] == '/' ? req->rest + 1 : req->rest;
    PGconn *c;

    if (!uuid_shape(id))
        return reply_error(reply, 400, "bad_request", "job id must be a UUID");
    if ((c = conn(j)) == NULL)
        return reply_error(reply, 503, "unavailable", "job store (PostgreSQL) unavailable");
    const char *p[1] = { id };
    PGresult *r = PQexecParams(c,
        "SELECT job_id, kind, status, round(progress * 100)::int, error, "
        "array_to_json(symbols)::text FROM collection_jobs WHERE job_id = $1",
        1, NULL, p, NULL, NULL, 0);
    int st;
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        insite_log_error("jobs: status of %s: %s", id, PQerrorMessage(c));
        st = reply_error(reply, 503, "unavailable", "cannot read the job");
    } else if (PQntuples(r) == 0) {
        st = reply_error(reply, 404, "not_found", "no job %s", id);
    } else {
        *reply = json_pack("{s:s, s:s, s:s, s:i, s:o}", "job_id", PQgetvalue(r, 0, 0),
                           "kind", PQgetvalue(r, 0, 1), "status", public_status(PQgetvalue(r, 0, 2)),
                           "progress", atoi(PQgetvalue(r, 0, 3)),
                           "symbols", json_loads(PQgetvalue(r, 0, 5), 0, NULL));
        if (!PQgetisnull(r, 0, 4))
            json_object_set_new(*reply, "error", json_string(PQgetvalue(r, 0, 4)));
        st = 200;
    }
    PQclear(r);
    return st;
}

size_t jobs_routes(jobs *j, insite_http_route *routes, size_t max)
{
    const insite_http_route r[3] = {
        { "POST", "/api/v1/collect/stocks", post_stocks, j },
        { "POST", "/api/v1/collect/sentiment", post_sentiment, j },
        { "GET", "/api/v1/collect/status", get_status, j },
    };
    size_t n = max < 3 ? max : 3;
    memcpy(routes, r, n * sizeof(r[0]));
    return n;
}

jobs *jobs_new(app *a, const char *dsn, int wake_fd)
{
    const char *lists[2] = { "collector.symbols", "collector.job_symbols" };
    jobs *j = calloc(1, sizeof(*j));

    if (j == NULL || (j->dsn = strdup(dsn)) == NULL) {
        insite_log_error("jobs: out of memory");
        free(j);
        return NULL;
    }
    j->wake_fd = wake_fd;
    for (int l = 0; l < 2; l++) {
        char *const *s;
        size_t n = insite_config_list(a->cfg, lists[l], &s);
        char **k = realloc(j->known, (j->nknown + n + 1) * sizeof(char *));
        if (k == NULL) {
            jobs_free(j);
            return NULL;
        }
        j->known = k;
        for (size_t i = 0; i < n; i++)
            if ((j->known[j->nknown] = strdup(s[i])) != NULL)
                j->nknown++;
    }
    return j;
}

void jobs_free(jobs *j)
{
    if (j == NULL)
        return;
    for (size_t i = 0; i < j->nknown; i++)
        free(j->known[i]);
    free(j->known);
    if (j->pg)
        PQfinish(j->pg);
    free(j->dsn);
    free(j);
}

/* ---- runner (main thread, app's connection) ---- */

static void exec_log(PGconn *c, PGresult *r, const char *what)
{
    if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK)
        insite_log_error("jobs: %s: %s", what, PQerrorMessage(c));
    PQclear(r);
}

void jobs_recover(app *a)
{
    if (store_ready(a->pg) != 0)
        return;
    PGresult *r = PQexec(a->pg, "UPDATE collection_jobs SET status = 'pending', updated_at = now() "
                                "WHERE status = 'running' AND kind IN ('stocks', 'sentiment')");
    if (PQresultStatus(r) == PGRES_COMMAND_OK && atoi(PQcmdTuples(r)) > 0)
        insite_log_info("jobs: %s job(s) left running by the previous run will run again",
                        PQcmdTuples(r));
    exec_log(a->pg, r, "recover");
}

typedef struct {
    app *a;
    const char *id;
} progress_ud;

static void progress(void *ud, size_t done, size_t total)
{
    progress_ud *p = ud;
    char v[16];
    snprintf(v, sizeof(v), "%.4f", total ? (double)done / (double)total : 1.0);
    const char *params[2] = { p->id, v };
    exec_log(p->a->pg, PQexecParams(p->a->pg, "UPDATE collection_jobs SET progress = $2, "
                                    "updated_at = now() WHERE job_id = $1",
                                    2, NULL, params, NULL, NULL, 0), "progress");
}

static void finish(app *a, const char *id, const char *status, const char *err)
{
    const char *p[3] = { id, status, err && *err ? err : NULL };
    exec_log(a->pg, PQexecParams(a->pg, "UPDATE collection_jobs SET status = $2, error = $3, "
                                 "progress = CASE WHEN $2 = 'pending' THEN progress ELSE 1 END, "
                                 "updated_at = now() WHERE job_id = $1",
                                 3, NULL, p, NULL, NULL, 0), "finish");
}

/* Splits "a,b,c" in place into argv-style pointers. */
static size_t split(char *s, char **out, size_t max)
{
    size_t n = 0;
    for (char *tok = strtok(s, ","); tok && n < max; tok = strtok(NULL, ","))
        out[n++] = tok;
    return n;
}

static unsigned source_mask(char *srcs)
{
    char *v[8];
    unsigned m = 0;
    size_t n = split(srcs, v, 8);
    for (size_t i = 0; i < n; i++)
        for (size_t k = 0; k < sizeof(source_names) / sizeof(source_names[0]); k++)
            if (strcmp(v[i], source_names[k].name) == 0)
                m |= source_names[k].bit;
    return m ? m : SOCIAL_RSS | SOCIAL_REDDIT | SOCIAL_X;
}

static void run_job(app *a, const char *id, const char *kind, char *syms, char *srcs)
{
    char *v[JOB_SYMBOLS_MAX], err[1024];
    size_t n = split(syms, v, JOB_SYMBOLS_MAX);
    progress_ud pu = { a, id };
    int ok;

    insite_log_info("jobs: %s %s running (%zu symbols)", id, kind, n);
    if (strcmp(kind, "stocks") == 0)
        ok = app_collect(a, v, n, progress, &pu, err, sizeof(err));
    else
        ok = social_collect(a, v, n, source_mask(srcs), err, sizeof(err));
    insite_counter_inc(a->m.jobs);
    if (ok < 0 && strcmp(kind, "stocks") == 0) {
        finish(a, id, "pending", NULL);      /* aborted by shutdown: next start */
        return;
    }
    const char *status = ok > 0 || (ok == 0 && strcmp(kind, "sentiment") == 0 && !*err)
                       ? "done" : "failed";
    finish(a, id, status, err);
    insite_log_info("jobs: %s %s %s%s%s", id, kind, status, *err ? ": " : "", err);
}

void jobs_run_pending(app *a)
{
    for (int i = 0; i < 16; i++) {
        if (store_ready(a->pg) != 0)
            return;
        PGresult *r = PQexec(a->pg,
            "UPDATE collection_jobs SET status = 'running', updated_at = now() WHERE job_id = "
            "(SELECT job_id FROM collection_jobs WHERE status = 'pending' "
            "AND kind IN ('stocks', 'sentiment') ORDER BY priority DESC, created_at "
            "LIMIT 1 FOR UPDATE SKIP LOCKED) RETURNING job_id, kind, "
            "array_to_string(symbols, ','), array_to_string(sources, ',')");
        if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) == 0) {
            exec_log(a->pg, r, "claim");
            return;
        }
        char *id = strdup(PQgetvalue(r, 0, 0)), *kind = strdup(PQgetvalue(r, 0, 1));
        char *syms = strdup(PQgetvalue(r, 0, 2)), *srcs = strdup(PQgetvalue(r, 0, 3));
        PQclear(r);
        if (id && kind && syms && srcs)
            run_job(a, id, kind, syms, srcs);
        free(id);
        free(kind);
        free(syms);
        free(srcs);
    }
}
