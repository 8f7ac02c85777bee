/* The worker's connections: one PostgreSQL connection, shared by the API
 * thread and the main loop under one lock, reconnected on demand; and the
 * Redis handle (consent state, erasure's keys: workers/lib/redis_publish.h,
 * routed by slot on a Redis Cluster, with a lock of its own). */
#include <stdio.h>
#include <string.h>

#include "gdpr.h"
#include "log.h"
#include "pg.h"

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

void gdpr_store_close(gdpr_store *s)
{
    if (s->pg)
        PQfinish(s->pg);
    s->pg = NULL;
    insite_redis_free(s->redis);
    s->redis = NULL;
}
