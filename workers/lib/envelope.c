#include <string.h>

#include "clock.h"
#include "envelope.h"
#include "log.h"
#include "random.h"

json_t *insite_envelope_new(const char *event_type, const char *source_service,
                            const char *correlation_id, json_t *data)
{
    char id[INSITE_UUID_LEN], ts[INSITE_RFC3339_LEN];

    if (data == NULL)
        data = json_object();
    if (event_type == NULL || *event_type == '\0'
        || source_service == NULL || *source_service == '\0') {
        insite_log_error("envelope: event_type and source_service are required");
        json_decref(data);
        return NULL;
    }
    if (insite_uuid_v4(id) != 0) {
        json_decref(data);
        return NULL;
    }
    insite_clock_rfc3339(ts, sizeof(ts));

    /* Built field by field so the text follows the documented order. */
    json_t *env = json_object();
    int bad = env == NULL
        || json_object_set_new(env, "event_type", json_string(event_type))
        || json_object_set_new(env, "event_id", json_string(id))
        || json_object_set_new(env, "source_service", json_string(source_service))
        || json_object_set_new(env, "timestamp", json_string(ts))
        || json_object_set_new(env, "version", json_string(INSITE_ENVELOPE_VERSION))
        || (correlation_id != NULL && *correlation_id != '\0'
            && json_object_set_new(env, "correlation_id", json_string(correlation_id)));
    if (bad || json_object_set_new(env, "data", data) != 0) {
        /* set_new steals data even when it fails */
        if (bad)
            json_decref(data);
        insite_log_error("envelope: cannot build %s event (invalid UTF-8?)", event_type);
        json_decref(env);
        return NULL;
    }
    return env;
}

char *insite_envelope_dumps(const json_t *env)
{
    char *s = json_dumps(env, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(15));
    if (s == NULL)
        insite_log_error("envelope: cannot serialise");
    return s;
}
