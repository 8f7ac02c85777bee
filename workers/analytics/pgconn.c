/* One PostgreSQL connection for the HTTP handlers, reconnected on demand. */
#include <stdio.h>

#include "analytics.h"
#include "log.h"
#include "pg.h"

PGconn *analytics_pg_acquire(analytics_ctx *ctx, char *err, size_t errlen)
{
    pthread_mutex_lock(&ctx->pg_lock);
    if (ctx->pg != NULL && PQstatus(ctx->pg) != CONNECTION_OK) {
        PQfinish(ctx->pg);
        ctx->pg = NULL;
    }
    if (ctx->pg == NULL && (ctx->pg = insite_pg_connect(ctx->pg_dsn, err, errlen)) == NULL) {
        insite_log_warn("postgresql: %s", err);
        pthread_mutex_unlock(&ctx->pg_lock);
        snprintf(err, errlen, "PostgreSQL is unreachable");
        return NULL;
    }
    return ctx->pg;
}

void analytics_pg_release(analytics_ctx *ctx)
{
    pthread_mutex_unlock(&ctx->pg_lock);
}
