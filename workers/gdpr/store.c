/* The worker's connections: one PostgreSQL and one Redis connection (the
 * erasure's keys), shared by the API thread and the main loop under one
 * lock, reconnected on demand.  Consent state goes through consent_redis
 * (workers/lib/redis_publish.h: routed by slot on a Redis Cluster). */
#include <stdio.h>
#include <string.h>
#include <sys/time.h>

#include "gdpr.h"
#include "log.h"
#include "pg.h"

static struct timeval ms_tv(int ms)
{
    struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };
    return tv;
}

PGconn *gdpr_store_pg(gdpr_store *s)
{
    static int down;        /* log an outage once, and its end */
    char err[512];

    if (s->pg && PQstatus(s->pg) != CONNECTION_OK) {
        PQfinish(s->pg);
        s->pg = NULL;
    }
    if (s->pg)
        return s->pg;
    if ((s->pg = insite_pg_connect(s->dsn, err, sizeof(err))) == NULL) {
        if (!down)
            insite_log_warn("postgresql: %s", err);
        down = 1;
        return NULL;
    }
    if (down)
        insite_log_info("postgresql: connected again");
    down = 0;
    return s->pg;
}

redisContext *gdpr_store_redis(gdpr_store *s)
{
    static int down;
    redisContext *c;

    if (s->redis)
        return s->redis;
    c = redisConnectWithTimeout(s->redis_host, s->redis_port, ms_tv(s->connect_timeout_ms));
    if (c == NULL || c->err || redisSetTimeout(c, ms_tv(s->command_timeout_ms)) != REDIS_OK) {
        if (!down)
            insite_log_warn("redis: connect %s:%d: %s", s->redis_host, s->redis_port,
                            c ? c->errstr : "out of memory");
        down = 1;
        if (c)
            redisFree(c);
        return NULL;
    }
    if (s->redis_password && s->redis_password[0]) {
        redisReply *r = redisCommand(c, "AUTH %s", s->redis_password);
        int ok = r && r->type != REDIS_REPLY_ERROR;
        if (!ok && !down)
            insite_log_warn("redis: AUTH on %s:%d refused", s->redis_host, s->redis_port);
        if (r)
            freeReplyObject(r);
        if (!ok) {
            down = 1;
            redisFree(c);
            return NULL;
        }
    }
    if (down)
        insite_log_info("redis: connected again");
    down = 0;
    return s->redis = c;
}

void gdpr_store_redis_reset(gdpr_store *s)
{
    if (s->redis)
        redisFree(s->redis);
    s->redis = NULL;
}

void gdpr_store_close(gdpr_store *s)
{
    if (s->pg)
        PQfinish(s->pg);
    s->pg = NULL;
    gdpr_store_redis_reset(s);
    insite_redis_free(s->consent_redis);
    s->consent_redis = NULL;
}
