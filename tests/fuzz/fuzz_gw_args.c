/*
 * insite_gw_args_drop() on any bytes: it stays inside its buffers (ASan),
 * never grows the query, leaves no argument named token (in any case), is
 * idempotent, and drops nothing from a query that has no such argument.
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "insite_gw_args.h"


static int
has_token(const unsigned char *p, size_t n)
{
    size_t  i;

    for (i = 0; i + 6 <= n; i++) {
        if ((i == 0 || p[i - 1] == '&')
            && strncasecmp((const char *) p + i, "token=", 6) == 0)
        {
            return 1;
        }
    }

    return 0;
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    unsigned char  *a, *b, *ea, *eb;
    size_t          na, nb;

    a = malloc(size + 1);
    b = malloc(size + 1);
    if (a == NULL || b == NULL) {
        abort();
    }

    ea = insite_gw_args_drop(a, data, data + size, "token", 5);
    na = ea - a;

    if (na > size || has_token(a, na)) {
        abort();
    }

    if (!has_token(data, size) && (na != size || memcmp(a, data, size) != 0)) {
        abort();
    }

    eb = insite_gw_args_drop(b, a, ea, "token", 5);
    nb = eb - b;

    if (nb != na || memcmp(a, b, na) != 0) {
        abort();
    }

    free(a);
    free(b);

    return 0;
}
