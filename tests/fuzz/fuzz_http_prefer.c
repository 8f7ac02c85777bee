/*
 * insite_http_prefer_has() (ngx_insite_core/insite_http_prefer.c) on any
 * Prefer value: nothing read outside the input (an exact-size copy, ASan),
 * and a yes only when the token appears as a whole word of the value.
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "insite_http_prefer.h"


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char  *v;
    int    rc;

    v = malloc(size ? size : 1);
    if (v == NULL) {
        return 0;
    }

    memcpy(v, data, size);
    rc = insite_http_prefer_has(v, size, "respond-async");

    /* a yes needs the token's bytes somewhere in the value */
    if (rc) {
        size_t  i, found = 0;

        for (i = 0; i + 13 <= size && !found; i++) {
            found = strncasecmp(v + i, "respond-async", 13) == 0;
        }

        if (!found) {
            abort();
        }
    }

    free(v);

    return 0;
}
