/*
 * insite_ws_conflate_message() on any input: it must stay inside both
 * buffers (ASan), and for every input jansson accepts as an object the
 * output must be that object plus "conflated" and "first_seq".
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "insite_ws_conflate.h"


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t         n, cap;
    u_char        *copy, *out;
    json_t        *in, *got;
    json_error_t   err;
    uint64_t       first;

    if (size < 1) {
        return 0;
    }

    /* the first byte picks the output room: often too small */
    cap = size - 1 + (data[0] % (INSITE_WS_CONFLATE_EXTRA + 8));
    first = data[0] * 1000003ULL;

    copy = malloc(size - 1 ? size - 1 : 1);
    out = malloc(cap ? cap : 1);
    if (copy == NULL || out == NULL) {
        free(copy);
        free(out);
        return 0;
    }
    memcpy(copy, data + 1, size - 1);

    n = insite_ws_conflate_message(out, cap, copy, size - 1, 3, first);

    if (n > cap) {
        abort();
    }

    in = json_loadb((const char *) copy, size - 1, JSON_REJECT_DUPLICATES,
                    &err);

    if (in && json_is_object(in) && json_object_get(in, "conflated") == NULL
        && json_object_get(in, "first_seq") == NULL
        && cap >= size - 1 + INSITE_WS_CONFLATE_EXTRA)
    {
        if (n == 0) {
            abort();                /* an object with room must conflate */
        }

        got = json_loadb((const char *) out, n, JSON_REJECT_DUPLICATES, &err);
        if (got == NULL
            || json_integer_value(json_object_get(got, "conflated")) != 3
            || (uint64_t) json_integer_value(json_object_get(got, "first_seq"))
               != first
            || json_object_size(got) != json_object_size(in) + 2)
        {
            abort();
        }

        json_object_del(got, "conflated");
        json_object_del(got, "first_seq");
        if (!json_equal(got, in)) {
            abort();
        }
        json_decref(got);
    }

    json_decref(in);
    free(copy);
    free(out);

    return 0;
}
