/* Client of an external sentiment classifier (e.g. a FinBERT or DistilBERT
 * server) for model "ensemble".  The API, JSON over HTTP:
 *
 *   POST <analytics.classifier_url>   Content-Type: application/json
 *   {"texts": ["...", ...]}
 *   200 {"scores": [{"positive": 0.91, "negative": 0.02, "neutral": 0.07}, ...]}
 *
 * one score per text, in order; probabilities in [0, 1] (normalised here to
 * sum to 1).  Anything else is an error with the reason. */
#ifndef ANALYTICS_CLASSIFIER_H
#define ANALYTICS_CLASSIFIER_H

#include <stddef.h>

typedef struct {
    double positive, negative, neutral;
} classifier_probs;

/* 0 and out[0..n-1], or -1 with the reason in err. */
int classifier_score(const char *url, int timeout_ms, const char *const *texts, size_t n,
                     classifier_probs *out, char *err, size_t errlen);

#endif
