/* The connections of the HTTP handlers, (re)connected on demand. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../../ngx_insite_ws/insite_channel.h"
#include "log.h"
#include "pg.h"
#include "stocks.h"

/* A pair from the free list, or a new one while fewer than
 * STOCKS_CONNS_MAX exist (the HTTP threads bound how many are in use at
 * once, so the wait below only happens past that bound). */
static stocks_conn *pool_take(stocks_ctx *ctx)
{
    stocks_conn *c;
    pthread_mutex_lock(&ctx->lock);
    while (ctx->free_conns == NULL && ctx->nconns == STOCKS_CONNS_MAX)
        pthread_cond_wait(&ctx->freed, &ctx->lock);
    if ((c = ctx->free_conns) != NULL) {
        ctx->free_conns = c->next;
    } else if ((c = calloc(1, sizeof(*c))) != NULL) {
        ctx->all_conns[ctx->nconns++] = c;
    }
    pthread_mutex_unlock(&ctx->lock);
    return c;
}

void stocks_release(stocks_ctx *ctx, stocks_conn *c)
{
    pthread_mutex_lock(&ctx->lock);
    c->next = ctx->free_conns;
    ctx->free_conns = c;
    pthread_cond_signal(&ctx->freed);
    pthread_mutex_unlock(&ctx->lock);
}

stocks_conn *stocks_acquire(stocks_ctx *ctx, json_t **reply)
{
    char err[256];
    stocks_conn *c = pool_take(ctx);
    if (c == NULL) {
        insite_log_error("stocks: out of memory for a connection pair");
        *reply = insite_http_error("internal", "out of memory");
        return NULL;
    }
    if (c->pg != NULL && PQstatus(c->pg) != CONNECTION_OK) {
        PQfinish(c->pg);
        c->pg = NULL;
    }
    if (c->pg == NULL) {
        c->nprepared = 0;          /* statements die with their session */
        if ((c->pg = insite_pg_connect(ctx->pg_dsn, err, sizeof(err))) == NULL) {
            insite_log_warn("postgresql: %s", err);
            stocks_release(ctx, c);
            *reply = insite_http_error("unavailable", "PostgreSQL is unreachable");
            return NULL;
        }
        /* short queries with large row estimates (a year of days x index
         * scans) cross jit_above_cost; compiling them costs seconds */
        PGresult *r = PQexec(c->pg, "SET jit = off");
        if (PQresultStatus(r) != PGRES_COMMAND_OK)
            insite_log_warn("postgresql: SET jit = off: %s", PQerrorMessage(c->pg));
        PQclear(r);
    }
    return c;
}

void stocks_pool_free(stocks_ctx *ctx)
{
    for (int i = 0; i < ctx->nconns; i++) {
        if (ctx->all_conns[i]->pg != NULL)
            PQfinish(ctx->all_conns[i]->pg);
        redisFree(ctx->all_conns[i]->redis);
        free(ctx->all_conns[i]);
    }
    ctx->nconns = 0;
    ctx->free_conns = NULL;
}

/* The statement's name on this connection ("s<index>"), preparing it on
 * first use; -1 on error (logged). */
static int prepared_name(stocks_conn *c, const char *what, const char *sql, int n,
                         char name[16])
{
    int i;
    for (i = 0; i < c->nprepared; i++)
        if (c->prepared[i] == sql)
            break;
    snprintf(name, 16, "s%d", i);
    if (i < c->nprepared)
        return 0;
    if (i == STOCKS_STMTS_MAX) {
        insite_log_error("postgresql: %s: more than %d statements to prepare", what,
                         STOCKS_STMTS_MAX);
        return -1;
    }
    PGresult *r = PQprepare(c->pg, name, sql, n, NULL);
    int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    PQclear(r);
    if (!ok) {
        insite_log_error("postgresql: prepare %s: %s", what, PQerrorMessage(c->pg));
        return -1;
    }
    c->prepared[c->nprepared++] = sql;
    return 0;
}

PGresult *stocks_query(stocks_ctx *ctx, stocks_conn *c, const char *what, const char *sql,
                       int n, const char *const *params, json_t **reply)
{
    char name[16];
    (void)ctx;
    if (prepared_name(c, what, sql, n, name) != 0) {
        *reply = insite_http_error("internal", "database query failed");
        return NULL;
    }
    PGresult *r = PQexecPrepared(c->pg, name, n, params, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(r);
    if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK)
        return r;
    insite_log_error("postgresql: %s: %s", what, PQerrorMessage(c->pg));
    PQclear(r);
    *reply = insite_http_error("internal", "database query failed");
    return NULL;
}

static redisContext *redis_conn(stocks_ctx *ctx, stocks_conn *pc)
{
    if (pc->redis != NULL)
        return pc->redis;
    struct timeval tv = { ctx->redis_timeout_ms / 1000, (ctx->redis_timeout_ms % 1000) * 1000 };
    redisContext *c = redisConnectWithTimeout(ctx->redis_host, ctx->redis_port, tv);
    if (c == NULL || c->err) {
        insite_log_warn("redis %s:%d: %s", ctx->redis_host, ctx->redis_port,
                        c ? c->errstr : "out of memory");
        redisFree(c);
        return NULL;
    }
    redisSetTimeout(c, tv);
    if (ctx->redis_password[0] != '\0') {
        redisReply *r = redisCommand(c, "AUTH %s", ctx->redis_password);
        int ok = r != NULL && r->type != REDIS_REPLY_ERROR;
        freeReplyObject(r);
        if (!ok) {
            insite_log_warn("redis: AUTH failed");
            redisFree(c);
            return NULL;
        }
    }
    return pc->redis = c;
}

json_t *stocks_redis_last_update(stocks_ctx *ctx, stocks_conn *pc, const char *symbol)
{
    redisContext *c = redis_conn(ctx, pc);
    if (c == NULL)
        return NULL;
    /* the channel's history key: the layout has one home (insite_channel.h) */
    char ch[160], key[256];
    int chlen = snprintf(ch, sizeof(ch), "stock_updates:%s", symbol);
    if (chlen < 0 || (size_t)chlen >= sizeof(ch)
        || insite_channel_key(key, sizeof(key), ctx->redis_prefix, strlen(ctx->redis_prefix),
                              INSITE_CHANNEL_KEY_HIST, ch, (size_t)chlen, NULL, 0) == 0) {
        insite_log_warn("redis: no history key for stock_updates:%s", symbol);
        return NULL;
    }
    redisReply *r = redisCommand(c, "ZRANGE %s -1 -1", key);
    if (r == NULL) {
        insite_log_warn("redis: ZRANGE history of stock_updates:%s: %s", symbol, c->errstr);
        redisFree(c);
        pc->redis = NULL;
        return NULL;
    }
    json_t *msg = NULL;
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 1
        && r->element[0]->type == REDIS_REPLY_STRING) {
        msg = json_loadb(r->element[0]->str, r->element[0]->len, 0, NULL);
        if (msg == NULL)
            insite_log_warn("redis: unparsable history message of stock_updates:%s", symbol);
    } else if (r->type == REDIS_REPLY_ERROR) {
        insite_log_warn("redis: ZRANGE stock_updates:%s: %s", symbol, r->str);
    }
    freeReplyObject(r);
    return msg;
}

void stocks_cache_headers(const insite_http_request *req, long max_age, int64_t last_modified)
{
    char v[64];
    if (max_age < 0) {
        insite_http_set_header(req, "Cache-Control", "private, no-store");
    } else {
        snprintf(v, sizeof(v), "public, max-age=%ld", max_age);
        insite_http_set_header(req, "Cache-Control", v);
    }
    if (last_modified > 0) {
        time_t t = (time_t)last_modified;
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(v, sizeof(v), "%a, %d %b %Y %H:%M:%S GMT", &tm);
        insite_http_set_header(req, "Last-Modified", v);
    }
    insite_http_etag(req);
}
