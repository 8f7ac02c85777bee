/* VADER sentiment (Hutto & Gilbert, ICWSM 2014), rule for rule as NLTK's
 * nltk.sentiment.vader (3.8) computes it, including its quirks (a repeated
 * token is scored in the context of its first occurrence, case-sensitive
 * idioms and "never so", ...): see docs/analytics.md.
 *
 *     vader_model m = { .lex = lx };          // lexicon from vader_lexicon_new()
 *     vader_work *w = vader_work_new();        // one per thread
 *     vader_scores s;
 *     vader_score(&m, w, text, strlen(text), &s);
 *
 * A model is read-only while scoring: share it between threads; give each
 * thread its own vader_work. */
#ifndef ANALYTICS_VADER_H
#define ANALYTICS_VADER_H

#include <stddef.h>

#include "lexicon.h"

typedef struct {
    double compound;     /* rounded to 4 places, like the reference */
    double pos, neg, neu;  /* rounded to 3 places */
    double raw_compound;   /* unrounded */
    size_t tokens;         /* words and emoticons scored */
} vader_scores;

typedef struct {
    const lexicon *lex;       /* built by vader_lexicon_new() */
    int entities;             /* cashtags and tickers are entities, not words */
    const lexicon *tickers;   /* known symbols (uppercase), may be NULL */
} vader_model;

typedef struct {
    const char *s;
    size_t len;
} vader_entity;

typedef struct vader_work vader_work;

vader_work *vader_work_new(void);
void vader_work_free(vader_work *w);

/* Loads VADER's lexicon file and adds the booster and negation tables.
 * NULL with the reason in err. */
lexicon *vader_lexicon_new(const char *path, char *err, size_t errlen);

/* Scores text (UTF-8, len bytes).  0, or -1 on out of memory (logged). */
int vader_score(const vader_model *m, vader_work *w, const char *text,
                size_t len, vader_scores *out);

/* Entities (cashtags, tickers) seen by the last vader_score() on w, when
 * the model has entities on; they point into that text. */
size_t vader_entities(const vader_work *w, const vader_entity **list);

/* Python's round(x, places) for places <= 6: exact decimal rounding of the
 * binary value, ties to even. */
double vader_round(double x, int places);

#endif
