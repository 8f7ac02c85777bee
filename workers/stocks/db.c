/* The connections of the HTTP handlers, (re)connected on demand. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "../../ngx_insite_ws/insite_channel.h"
#include "log.h"
#include "pg.h"
#include "stocks.h"

PGconn *stocks_pg_acquire(stocks_ctx *ctx, json_t **reply)
{
    char err[256];
    pthread_mutex_lock(&ctx->lock);
    if (ctx->pg != NULL && PQstatus(ctx->pg) != CONNECTION_OK) {
        PQfinish(ctx->pg);
        ctx->pg = NULL;
    }
    if (ctx->pg == NULL && (ctx->pg = insite_pg_connect(ctx->pg_dsn, err, sizeof(err))) == NULL) {
        insite_log_warn("postgresql: %s", err);
        pthread_mutex_unlock(&ctx->lock);
        *reply = insite_http_error("unavailable", "PostgreSQL is unreachable");
        return NULL;
    }
    return ctx->pg;
}

void stocks_release(stocks_ctx *ctx)
{
    pthread_mutex_unlock(&ctx->lock);
}

PGresult *stocks_query(stocks_ctx *ctx, PGconn *pg, const char *what, const char *sql,
                       int n, const char *const *params, json_t **reply)
{
    PGresult *r = PQexecParams(pg, sql, n, NULL, params, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(r);
    if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK)
        return r;
    insite_log_error("postgresql: %s: %s", what, PQerrorMessage(pg));
    PQclear(r);
    *reply = insite_http_error("internal", "database query failed");
    return NULL;
}

static redisContext *redis_conn(stocks_ctx *ctx)
{
    if (ctx->redis != NULL)
        return ctx->redis;
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
    return ctx->redis = c;
}

json_t *stocks_redis_last_update(stocks_ctx *ctx, const char *symbol)
{
    redisContext *c = redis_conn(ctx);
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
        ctx->redis = NULL;
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
