/* POST /api/v1/analyze/sentiment
 *   {"text": "..."}                      -> VADER scores of the text
 *   {"symbol": "AAPL", "sources": [..]}  -> the stored 1h/24h aggregates */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "analytics.h"
#include "classifier.h"
#include "social_msg.h"
#include "log.h"

#define TEXT_MAX (64 * 1024)

static int classifier_on(const analytics_ctx *ctx)
{
    return ctx->classifier_url != NULL && *ctx->classifier_url;
}

static json_t *model_note(const analytics_ctx *ctx, const char *why_vader)
{
    if (!classifier_on(ctx))
        return json_pack("{s:b, s:s}", "configured", 0, "reason",
                         "no external classifier configured (analytics.classifier_url): "
                         "scores are VADER only");
    return json_pack("{s:b, s:s, s:s}", "configured", 1, "url", ctx->classifier_url,
                     "reason", why_vader);
}

/* model "ensemble": a weighted mean of VADER and the classifier; the
 * classifier's compound is P(positive) - P(negative). */
static json_t *ensemble_reply(const analytics_ctx *ctx, const vader_scores *s,
                              const classifier_probs *c, json_t *entities)
{
    double w = ctx->classifier_weight, v = 1 - w;
    double compound = v * s->compound + w * (c->positive - c->negative);
    return json_pack("{s:f, s:f, s:f, s:f, s:f, s:s, s:{s:b, s:s, s:f, s:{s:f, s:f, s:f, s:f},"
                     " s:{s:f, s:f, s:f}}, s:o, s:I}",
                     "compound", vader_round(compound, 4),
                     "positive", vader_round(v * s->pos + w * c->positive, 3),
                     "negative", vader_round(v * s->neg + w * c->negative, 3),
                     "neutral", vader_round(v * s->neu + w * c->neutral, 3),
                     "confidence", vader_round(fabs(compound), 4), "model", "ensemble",
                     "ensemble", "configured", 1, "url", ctx->classifier_url,
                     "classifier_weight", w,
                     "vader", "compound", s->compound, "positive", s->pos,
                     "negative", s->neg, "neutral", s->neu,
                     "classifier", "positive", vader_round(c->positive, 4),
                     "negative", vader_round(c->negative, 4),
                     "neutral", vader_round(c->neutral, 4),
                     "entities", entities, "tokens", (json_int_t)s->tokens);
}

static int score_text(analytics_ctx *ctx, const char *text, size_t len, json_t **reply)
{
    vader_scores s;
    if (vader_score(&ctx->model, ctx->http_work, text, len, &s) != 0) {
        *reply = insite_http_error("internal", "out of memory while scoring");
        return 500;
    }
    const vader_entity *ent;
    size_t n = vader_entities(ctx->http_work, &ent);
    json_t *entities = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(entities, json_stringn(ent[i].s, ent[i].len));
    char why[384] = "";
    if (classifier_on(ctx)) {
        classifier_probs c;
        char err[256];
        if (classifier_score(ctx->classifier_url, ctx->classifier_timeout_ms, &text, 1, &c, err,
                             sizeof(err)) == 0) {
            *reply = ensemble_reply(ctx, &s, &c, entities);
            return 200;
        }
        insite_log_warn("classifier: %s", err);
        snprintf(why, sizeof(why), "classifier failed (%s): scores are VADER only", err);
    }
    /* confidence: how far the text is from neutral, |compound| */
    *reply = json_pack("{s:f, s:f, s:f, s:f, s:f, s:s, s:o, s:o, s:I}",
                       "compound", s.compound, "positive", s.pos, "negative", s.neg,
                       "neutral", s.neu, "confidence", vader_round(fabs(s.compound), 4),
                       "model", "vader", "ensemble", model_note(ctx, why),
                       "entities", entities, "tokens", (json_int_t)s.tokens);
    return 200;
}

static json_t *window_row(PGresult *r, int i)
{
    double mean = PQgetisnull(r, i, 1) ? 0 : strtod(PQgetvalue(r, i, 1), NULL);
    return json_pack("{s:s, s:f, s:i, s:i, s:i, s:i}", "ts", PQgetvalue(r, i, 2),
                     "mean_compound", mean, "positive", atoi(PQgetvalue(r, i, 3)),
                     "negative", atoi(PQgetvalue(r, i, 4)), "neutral", atoi(PQgetvalue(r, i, 5)),
                     "mentions", atoi(PQgetvalue(r, i, 6)));
}

static int score_symbol(analytics_ctx *ctx, const char *symbol, json_t *sources, json_t **reply)
{
    static const char sql[] =
        "SELECT DISTINCT ON (\"window\") \"window\", mean_compound, ts, pos_count, neg_count,"
        " neu_count, mentions FROM sentiment_data WHERE symbol = $1"
        " ORDER BY \"window\", ts DESC";
    char err[256];
    PGconn *pg = analytics_pg_acquire(ctx, err, sizeof(err));
    if (pg == NULL) {
        *reply = insite_http_error("unavailable", err);
        return 503;
    }
    const char *params[1] = { symbol };
    PGresult *r = PQexecParams(pg, sql, 1, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        insite_log_error("sentiment_data for %s: %s", symbol, PQerrorMessage(pg));
        PQclear(r);
        analytics_pg_release(ctx);
        *reply = insite_http_error("internal", "sentiment_data query failed");
        return 500;
    }
    if (PQntuples(r) == 0) {
        PQclear(r);
        analytics_pg_release(ctx);
        char msg[160];
        snprintf(msg, sizeof(msg), "no data yet: no sentiment aggregates stored for %s (they "
                 "appear once the pipeline has consumed social posts about it)", symbol);
        *reply = insite_http_error("no_data", msg);
        return 404;
    }
    json_t *windows = json_object();
    int main_row = 0;
    for (int i = 0; i < PQntuples(r); i++) {
        json_object_set_new(windows, PQgetvalue(r, i, 0), window_row(r, i));
        if (strcmp(PQgetvalue(r, i, 0), "24h") == 0)
            main_row = i;
    }
    double mean = PQgetisnull(r, main_row, 1) ? 0 : strtod(PQgetvalue(r, main_row, 1), NULL);
    double pos = atof(PQgetvalue(r, main_row, 3)), neg = atof(PQgetvalue(r, main_row, 4));
    double neu = atof(PQgetvalue(r, main_row, 5)), total = pos + neg + neu;
    double n = atof(PQgetvalue(r, main_row, 6));
    PQclear(r);
    analytics_pg_release(ctx);
    /* confidence grows with evidence: |mean| * n / (n + 10) */
    *reply = json_pack("{s:s, s:f, s:f, s:f, s:f, s:f, s:s, s:o, s:o, s:O?, s:s}",
                       "symbol", symbol, "compound", mean,
                       "positive", total > 0 ? pos / total : 0, "negative", total > 0 ? neg / total : 0,
                       "neutral", total > 0 ? neu / total : 0,
                       "confidence", fabs(mean) * n / (n + 10), "model", "vader",
                       "ensemble", model_note(ctx, "stored aggregates are VADER scores of the consumed posts; "
                                           "the classifier scores texts only"), "windows", windows, "sources", sources,
                       "sources_note", "aggregates cover every source; per-source aggregates are not stored");
    return 200;
}

int api_sentiment(const insite_http_request *req, json_t **reply, void *ud)
{
    analytics_ctx *ctx = ud;
    json_t *text = json_object_get(req->body, "text");
    json_t *symbol = json_object_get(req->body, "symbol");
    json_t *sources = json_object_get(req->body, "sources");
    if (strcmp(req->method, "POST") != 0 || *req->rest) {
        *reply = insite_http_error("not_found", "use POST /api/v1/analyze/sentiment");
        return 404;
    }
    if (json_is_string(text)) {
        if (json_string_length(text) > TEXT_MAX) {
            *reply = insite_http_error("too_large", "text is longer than 65536 bytes");
            return 413;
        }
        return score_text(ctx, json_string_value(text), json_string_length(text), reply);
    }
    if (json_is_string(symbol) && !sent_symbol_valid(json_string_value(symbol))) {
        *reply = insite_http_error("invalid_request", "symbol must match [A-Za-z0-9._-]{1,15}");
        return 422;
    }
    if (json_is_string(symbol) && (sources == NULL || json_is_array(sources)))
        return score_symbol(ctx, json_string_value(symbol), sources, reply);
    *reply = insite_http_error("invalid_request",
                               "expected {\"text\": string} or {\"symbol\": string, \"sources\": [..]}");
    return 422;
}
