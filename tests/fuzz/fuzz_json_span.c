/*
 * Differential fuzzing of insite_json_member_span() against jansson: for
 * every input jansson accepts as an object (as the publish endpoint
 * validates it), the span found for "data" must parse to the value jansson
 * gives for "data", and the scanner must say "absent" exactly when jansson
 * does.  On any input the scanner must stay inside the buffer (ASan).
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "insite_json_span.h"


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int            rc;
    size_t         vlen;
    json_t        *root, *want, *got;
    json_error_t   err;
    const u_char  *value;
    u_char        *copy;

    /* an exact-size copy: reading past it is an ASan report */
    copy = malloc(size ? size : 1);
    if (copy == NULL) {
        return 0;
    }
    memcpy(copy, data, size);

    rc = insite_json_member_span(copy, size, "data", &value, &vlen);

    if (rc == 1 && (value < copy || value + vlen > copy + size)) {
        abort();
    }

    root = json_loadb((const char *) copy, size,
                      JSON_REJECT_DUPLICATES | JSON_DECODE_INT_AS_REAL, &err);

    if (root && json_is_object(root)) {
        want = json_object_get(root, "data");

        if (want == NULL) {
            if (rc != 0) {
                abort();            /* found a "data" jansson does not have */
            }

        } else {
            if (rc != 1) {
                abort();            /* missed the member */
            }

            got = json_loadb((const char *) value, vlen,
                             JSON_DECODE_ANY | JSON_DECODE_INT_AS_REAL, &err);
            if (got == NULL || !json_equal(got, want)) {
                abort();            /* the span is not that value */
            }
            json_decref(got);
        }
    }

    json_decref(root);
    free(copy);

    return 0;
}
