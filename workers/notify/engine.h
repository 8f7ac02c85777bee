/* insite-notify's rule engine: rules indexed by symbol, evaluated on each
 * stock or sentiment update.  Plain C, no I/O: the worker persists what the
 * engine marks dirty and what it fires (docs/notify.md).
 *
 * A rule fires once, at the crossing: its condition was false on the
 * previous update and is true on this one.  The first update a rule sees
 * only records the side.  A crossing inside the cooldown is swallowed (the
 * side still moves, so it needs a new crossing later).  A one-shot rule is
 * disabled when it fires.
 *
 * Not thread-safe: the caller serialises access (one lock). */
#ifndef NOTIFY_ENGINE_H
#define NOTIFY_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

typedef enum {
    NR_PRICE_ABOVE,
    NR_PRICE_BELOW,
    NR_PERCENT_CHANGE,
    NR_VOLUME_SPIKE,
    NR_SENTIMENT_ABOVE,
    NR_SENTIMENT_BELOW,
    NR_SENTIMENT_SHIFT,
    NR_NKINDS
} notify_kind;

typedef enum { NP_CRITICAL, NP_HIGH, NP_MEDIUM, NP_LOW } notify_priority;

#define NOTIFY_USER_MAX 128
#define NOTIFY_SYMBOL_MAX 32

typedef struct {
    int64_t id;
    char user[NOTIFY_USER_MAX + 1];
    char symbol[NOTIFY_SYMBOL_MAX + 1];
    notify_kind kind;
    double value;            /* price level, percent, factor, level or delta */
    int direction;           /* percent_change / sentiment_shift: 1 up, -1 down, 0 any */
    int64_t window_ms;       /* windowed kinds */
    int64_t cooldown_ms;
    int recurring;
    notify_priority priority;
    int enabled;
    /* state (persisted in alert_rule_state) */
    int side;                /* 0 unknown, 1 condition false, 2 true */
    int64_t last_fired_ms;
    int fired_count;
    int dirty;               /* state changed since the last notify_engine_clean() */
} notify_rule;

const char *notify_kind_name(notify_kind k);
int notify_kind_parse(const char *s);                 /* -1 if unknown */
const char *notify_priority_name(notify_priority p);
int notify_priority_parse(const char *s);             /* -1 if unknown */
/* 1 for the kinds that read a window of samples */
int notify_kind_windowed(notify_kind k);

/* Validates a rule body (POST; with `base` for PATCH: the fields given
 * replace base's).  Unknown fields and wrong types are errors.  Returns 0
 * and fills *out (id/user/state untouched), or the number of reasons
 * appended to `reasons` (a JSON array of strings). */
int notify_rule_parse(const json_t *body, const notify_rule *base, notify_rule *out,
                      json_t *reasons);
/* The API's JSON view of a rule (its body fields plus id and state). */
json_t *notify_rule_json(const notify_rule *r);
/* The rule-specific parameters stored in alert_rules.params. */
json_t *notify_rule_params(const notify_rule *r);

typedef struct {
    const char *symbol;
    int64_t ts_ms;
    int has_price;
    double price;
    int has_volume;
    double volume;           /* cumulative session volume, as quotes carry it */
    int has_sentiment;
    double sentiment;        /* compound, -1..1 */
} notify_update;

/* What a fired rule reports: the template arguments. */
typedef struct {
    notify_rule *rule;
    double value;            /* price, sentiment now */
    double reference;        /* window start value, average volume */
    double change;           /* percent change, volume ratio, sentiment delta */
} notify_fire;

typedef struct notify_engine notify_engine;

notify_engine *notify_engine_new(void);
void notify_engine_free(notify_engine *e);

/* Adds a copy of r (its state included; side 0 is initialised from the
 * symbol's last sample when there is one).  Returns the stored rule or NULL
 * on out of memory.  Adding an id that exists replaces it. */
notify_rule *notify_engine_add(notify_engine *e, const notify_rule *r);
/* Removes a rule; 0, or -1 when unknown. */
int notify_engine_remove(notify_engine *e, int64_t id);
notify_rule *notify_engine_get(notify_engine *e, int64_t id);
size_t notify_engine_count(const notify_engine *e);

/* Records a sample without evaluating (state loaded at start). */
void notify_engine_sample(notify_engine *e, const char *symbol, int metric, int64_t ts_ms,
                          double value, double volume);
/* 1 when some rule on the symbol reads windows (its samples are persisted). */
int notify_engine_symbol_windowed(notify_engine *e, const char *symbol);

/* Evaluates every rule of u->symbol, then records the sample.  Fired
 * rules are appended to *fires (grown with realloc; counts in *nfires and *cap).
 * Returns the number fired, or -1 on out of memory. */
int notify_engine_update(notify_engine *e, const notify_update *u, notify_fire **fires,
                         size_t *nfires, size_t *cap);

/* Calls fn for each rule whose state is dirty and clears the flag. */
void notify_engine_clean(notify_engine *e, void (*fn)(const notify_rule *, void *), void *ud);

#endif
