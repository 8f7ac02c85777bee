/* insite-notify's rule validation (a user-controlled JSON body) and the
 * engine evaluating what it accepts.  The worker's plain-C files are
 * included directly: scripts/fuzz.sh links only the nginx modules' cores. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "../../workers/notify/engine.c"
#include "../../workers/notify/rules.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t *body = json_loadb((const char *)data, size, JSON_DECODE_ANY, NULL);
    json_t *why = json_array();
    notify_rule r, p;
    if (body != NULL && notify_rule_parse(body, NULL, &r, why) == 0) {
        /* an accepted rule is within its bounds and its JSON parses back */
        json_t *j = notify_rule_json(&r), *again = json_array();
        json_object_del(j, "id");
        json_object_del(j, "state");
        if (notify_rule_parse(j, NULL, &p, again) != 0 || p.kind != r.kind || p.value != r.value)
            __builtin_trap();
        /* the same body as a PATCH over it */
        if (notify_rule_parse(body, &r, &p, again) != 0)
            __builtin_trap();
        json_decref(again);
        json_decref(j);
        notify_engine *e = notify_engine_new();
        r.id = 1;
        notify_engine_add(e, &r);
        notify_fire *f = NULL;
        size_t nf = 0, cap = 0;
        for (int i = 0; i < 8; i++) {
            notify_update u = { .symbol = r.symbol, .ts_ms = i * 1000, .has_price = i % 2,
                                .price = r.value * (0.9 + 0.05 * i), .has_volume = 1,
                                .volume = 100.0 * i * i, .has_sentiment = !(i % 2),
                                .sentiment = -1 + 0.25 * i };
            notify_engine_update(e, &u, &f, &nf, &cap);
        }
        notify_engine_remove(e, 1);
        free(f);
        notify_engine_free(e);
    }
    json_decref(why);
    json_decref(body);
    return 0;
}
