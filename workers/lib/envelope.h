/* The Kafka event envelope shared by every producer and consumer:
 *
 *   {"event_type":"stock_update","event_id":"<uuid v4>",
 *    "source_service":"collector","timestamp":"2026-11-26T10:30:45.123Z",
 *    "version":"1.0","correlation_id":"...","data":{...}}
 *
 * correlation_id is omitted when absent.  event_id lets consumers drop the
 * duplicates that at-least-once delivery (retries, spool replay) can cause. */
#ifndef INSITE_ENVELOPE_H
#define INSITE_ENVELOPE_H

#include <jansson.h>

#define INSITE_ENVELOPE_VERSION "1.0"

/* Builds an envelope.  Steals the reference to data (like
 * json_object_set_new), also on failure; data may be NULL for {}.
 * Returns NULL on bad arguments or failure (logged). */
json_t *insite_envelope_new(const char *event_type, const char *source_service,
                            const char *correlation_id, json_t *data);

/* Compact text of an envelope (caller frees).  Reals are written with 15
 * significant digits, so 189.12 stays "189.12" rather than jansson's
 * default 17-digit "189.12000000000001". */
char *insite_envelope_dumps(const json_t *env);

#endif
