/* Per-symbol sliding windows of scored posts and the publish throttle.
 *
 * Each symbol keeps the (time, compound) samples of the longest window
 * (24 h), sorted by time.  An aggregate over a span counts the samples with
 * ts > now - span: mean compound, positive (compound >= 0.05), negative
 * (<= -0.05), neutral (between), mentions (all).  sent_windows_due() hands a
 * symbol's changed aggregates to a callback at most once per interval. */
#ifndef ANALYTICS_WINDOWS_H
#define ANALYTICS_WINDOWS_H

#include <stddef.h>
#include <stdint.h>

#define SENT_SYMBOL_MAX 16          /* with the NUL */
#define SENT_NWINDOWS 2
#define SENT_POS_THRESHOLD 0.05     /* VADER's usual cut-offs */
#define SENT_NEG_THRESHOLD (-0.05)

typedef struct {
    const char *name;               /* "1h", "24h" */
    int64_t span_ms;
} sent_window_def;

extern const sent_window_def sent_window_defs[SENT_NWINDOWS];

typedef struct {
    double compound;                /* mean, rounded to 4 places; 0 if none */
    int positive, negative, neutral, mentions;
} sent_agg;

typedef struct sent_windows sent_windows;

sent_windows *sent_windows_new(void);
void sent_windows_free(sent_windows *w);

/* Adds one sample.  0, or -1 on out of memory / invalid symbol (logged). */
int sent_windows_add(sent_windows *w, const char *symbol, int64_t ts_ms, double compound);

/* The aggregate of symbol over the last span_ms before now_ms (zeros for an
 * unknown symbol). */
void sent_windows_aggregate(const sent_windows *w, const char *symbol, int64_t now_ms,
                            int64_t span_ms, sent_agg *out);

/* changed[i] says whether aggs[i] (window sent_window_defs[i]) differs from
 * the last one published.  Return 0 when everything was delivered: the
 * aggregates count as published; otherwise they are offered again after the
 * interval. */
typedef int (*sent_due_fn)(const char *symbol, const sent_agg aggs[SENT_NWINDOWS],
                           const int changed[SENT_NWINDOWS], void *ud);

/* Drops samples older than the longest window, then calls fn for every
 * symbol whose aggregates changed since its last publish and whose last
 * attempt is at least interval_ms old.  Returns the number of calls. */
size_t sent_windows_due(sent_windows *w, int64_t now_ms, int64_t interval_ms,
                        sent_due_fn fn, void *ud);

size_t sent_windows_symbols(const sent_windows *w);
size_t sent_windows_samples(const sent_windows *w);

#endif
