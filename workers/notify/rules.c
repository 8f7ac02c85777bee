/* Rule bodies of the API: strict validation, every problem reported. */
#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "engine.h"

#define WINDOW_MIN_S 60
#define WINDOW_MAX_S 86400
#define COOLDOWN_MAX_S 604800

static void reason(json_t *reasons, const char *fmt, ...)
{
    char buf[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    json_array_append_new(reasons, json_string(buf));
}

/* The value field of each kind and its bounds. */
static const struct {
    const char *field;
    double min, max;
    int min_open;                     /* min itself is not allowed */
} kind_value[NR_NKINDS] = {
    [NR_PRICE_ABOVE] = { "price", 0, 1e9, 1 },
    [NR_PRICE_BELOW] = { "price", 0, 1e9, 1 },
    [NR_PERCENT_CHANGE] = { "percent", 0, 1000, 1 },
    [NR_VOLUME_SPIKE] = { "factor", 1, 1000, 1 },
    [NR_SENTIMENT_ABOVE] = { "level", -1, 1, 0 },
    [NR_SENTIMENT_BELOW] = { "level", -1, 1, 0 },
    [NR_SENTIMENT_SHIFT] = { "delta", 0, 2, 1 },
};

static int symbol_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > NOTIFY_SYMBOL_MAX)
        return 0;
    for (; *s; s++)
        if (!(isupper((unsigned char)*s) || isdigit((unsigned char)*s) || strchr(".-^=_", *s)))
            return 0;
    return 1;
}

static int has_direction(notify_kind k) { return k == NR_PERCENT_CHANGE || k == NR_SENTIMENT_SHIFT; }

int notify_rule_parse(const json_t *in, const notify_rule *base, notify_rule *out,
                      json_t *reasons)
{
    size_t before = json_array_size(reasons);
    json_t *body = NULL;
    const char *key;
    json_t *v;

    if (!json_is_object(in)) {
        reason(reasons, "the body must be a JSON object");
        return 1;
    }
    /* PATCH: the stored rule's body with the given fields over it; a new
     * type drops the old type's fields */
    if (base != NULL) {
        body = notify_rule_json(base);
        json_object_del(body, "id");
        json_object_del(body, "state");
        if (json_object_get(in, "type") != NULL)
            for (int k = 0; k < NR_NKINDS; k++)
                json_object_del(body, kind_value[k].field);
        if (json_object_get(in, "type") != NULL) {
            json_object_del(body, "window_seconds");
            json_object_del(body, "direction");
        }
        json_object_update(body, (json_t *)in);
    } else
        body = json_incref((json_t *)in);

    notify_rule r = { 0 };
    r.enabled = 1;
    r.recurring = 1;
    r.priority = NP_HIGH;
    int kind = -1;

    v = json_object_get(body, "type");
    if (v == NULL)
        reason(reasons, "type: required (one of price_above, price_below, percent_change, "
                        "volume_spike, sentiment_above, sentiment_below, sentiment_shift)");
    else if (!json_is_string(v) || (kind = notify_kind_parse(json_string_value(v))) < 0)
        reason(reasons, "type: must be one of price_above, price_below, percent_change, "
                        "volume_spike, sentiment_above, sentiment_below, sentiment_shift");
    v = json_object_get(body, "symbol");
    if (v == NULL)
        reason(reasons, "symbol: required");
    else if (!json_is_string(v) || !symbol_ok(json_string_value(v)))
        reason(reasons, "symbol: must be 1..%d characters A-Z 0-9 . - ^ = _", NOTIFY_SYMBOL_MAX);
    else
        strcpy(r.symbol, json_string_value(v));

    json_object_foreach(body, key, v) {
        if (strcmp(key, "type") == 0 || strcmp(key, "symbol") == 0)
            continue;
        if (strcmp(key, "cooldown_seconds") == 0) {
            if (!json_is_integer(v) || json_integer_value(v) < 0
                || json_integer_value(v) > COOLDOWN_MAX_S)
                reason(reasons, "cooldown_seconds: must be an integer 0..%d", COOLDOWN_MAX_S);
            else
                r.cooldown_ms = json_integer_value(v) * 1000;
        } else if (strcmp(key, "recurring") == 0 || strcmp(key, "enabled") == 0) {
            if (!json_is_boolean(v))
                reason(reasons, "%s: must be true or false", key);
            else if (key[0] == 'r')
                r.recurring = json_is_true(v);
            else
                r.enabled = json_is_true(v);
        } else if (strcmp(key, "priority") == 0) {
            int p = json_is_string(v) ? notify_priority_parse(json_string_value(v)) : -1;
            if (p < 0)
                reason(reasons, "priority: must be CRITICAL, HIGH, MEDIUM or LOW");
            else
                r.priority = p;
        } else if (strcmp(key, "window_seconds") == 0) {
            if (kind >= 0 && !notify_kind_windowed(kind))
                reason(reasons, "window_seconds: not used by type %s", notify_kind_name(kind));
            else if (!json_is_integer(v) || json_integer_value(v) < WINDOW_MIN_S
                     || json_integer_value(v) > WINDOW_MAX_S)
                reason(reasons, "window_seconds: must be an integer %d..%d", WINDOW_MIN_S,
                       WINDOW_MAX_S);
            else
                r.window_ms = json_integer_value(v) * 1000;
        } else if (strcmp(key, "direction") == 0) {
            const char *d = json_string_value(v);
            if (kind >= 0 && !has_direction(kind))
                reason(reasons, "direction: not used by type %s", notify_kind_name(kind));
            else if (d == NULL || (strcmp(d, "up") && strcmp(d, "down") && strcmp(d, "any")))
                reason(reasons, "direction: must be up, down or any");
            else
                r.direction = d[0] == 'u' ? 1 : d[0] == 'd' ? -1 : 0;
        } else {
            int known = -1;
            for (int k = 0; k < NR_NKINDS; k++)
                if (strcmp(key, kind_value[k].field) == 0)
                    known = k;
            if (known < 0)
                reason(reasons, "%s: unknown field", key);
            else if (kind >= 0 && strcmp(kind_value[kind].field, key) != 0)
                reason(reasons, "%s: not used by type %s (it takes %s)", key,
                       notify_kind_name(kind), kind_value[kind].field);
        }
    }
    if (kind >= 0) {
        const char *f = kind_value[kind].field;
        v = json_object_get(body, f);
        double x = json_is_number(v) ? json_number_value(v) : NAN;
        if (v == NULL)
            reason(reasons, "%s: required for type %s", f, notify_kind_name(kind));
        else if (isnan(x) || x > kind_value[kind].max || x < kind_value[kind].min
                 || (kind_value[kind].min_open && x == kind_value[kind].min))
            reason(reasons, "%s: must be a number %s %g and <= %g", f,
                   kind_value[kind].min_open ? ">" : ">=", kind_value[kind].min,
                   kind_value[kind].max);
        else
            r.value = x;
        if (notify_kind_windowed(kind) && json_object_get(body, "window_seconds") == NULL)
            reason(reasons, "window_seconds: required for type %s", notify_kind_name(kind));
        r.kind = kind;
    }
    json_decref(body);
    size_t n = json_array_size(reasons) - before;
    if (n == 0) {
        if (base != NULL) {
            r.id = base->id;
            strcpy(r.user, base->user);
            r.side = base->symbol[0] && strcmp(base->symbol, r.symbol) == 0
                     && base->kind == r.kind && base->value == r.value ? base->side : 0;
            r.last_fired_ms = base->last_fired_ms;
            r.fired_count = base->fired_count;
        }
        *out = r;
    }
    return (int)n;
}

json_t *notify_rule_params(const notify_rule *r)
{
    json_t *p = json_object();
    json_object_set_new(p, kind_value[r->kind].field, json_real(r->value));
    if (notify_kind_windowed(r->kind))
        json_object_set_new(p, "window_seconds", json_integer(r->window_ms / 1000));
    if (has_direction(r->kind))
        json_object_set_new(p, "direction", json_string(r->direction > 0 ? "up"
                                                        : r->direction < 0 ? "down" : "any"));
    return p;
}

json_t *notify_rule_json(const notify_rule *r)
{
    json_t *j = json_pack("{s:I, s:s, s:s, s:I, s:b, s:s, s:b}", "id", (json_int_t)r->id,
                          "type", notify_kind_name(r->kind), "symbol", r->symbol,
                          "cooldown_seconds", (json_int_t)(r->cooldown_ms / 1000),
                          "recurring", r->recurring, "priority",
                          notify_priority_name(r->priority), "enabled", r->enabled);
    json_t *p = notify_rule_params(r);
    json_object_update(j, p);
    json_decref(p);
    json_object_set_new(j, "state",
                        json_pack("{s:s, s:I, s:i}", "side",
                                  r->side == 2 ? "true" : r->side == 1 ? "false" : "unknown",
                                  "last_fired_ms", (json_int_t)r->last_fired_ms,
                                  "fired_count", r->fired_count));
    return j;
}
