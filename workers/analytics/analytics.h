/* State shared by the analytics worker's HTTP handlers and loop. */
#ifndef ANALYTICS_H
#define ANALYTICS_H

#include <pthread.h>

#include <jansson.h>
#include <libpq-fe.h>

#include "http.h"
#include "vader.h"

typedef struct {
    vader_model model;          /* the one the API and pipeline score with */
    vader_work *http_work;      /* handlers run one at a time */
    const char *classifier_url; /* "" = none: model "vader" */
    int classifier_timeout_ms;
    double classifier_weight;   /* the classifier's share in "ensemble" */
    const char *pg_dsn;
    PGconn *pg;                 /* lazily connected, guarded by pg_lock */
    pthread_mutex_t pg_lock;
} analytics_ctx;

/* POST /api/v1/analyze/sentiment, /correlation, /trends */
int api_sentiment(const insite_http_request *req, json_t **reply, void *ud);
int api_correlation(const insite_http_request *req, json_t **reply, void *ud);
int api_trends(const insite_http_request *req, json_t **reply, void *ud);

/* The connection, (re)connected if needed, with pg_lock held; NULL (lock
 * released, reason in err) when PostgreSQL is unreachable. */
PGconn *analytics_pg_acquire(analytics_ctx *ctx, char *err, size_t errlen);
void analytics_pg_release(analytics_ctx *ctx);

#endif
