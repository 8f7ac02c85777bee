/*
 * permessage-deflate core (insite_ws_deflate.c) on any input:
 *  - the Sec-WebSocket-Extensions parser stays inside the header (ASan),
 *    and an accepted offer's answer, read back as an offer, is accepted
 *    with the same window;
 *  - inflating arbitrary bytes never writes past the room and never
 *    reports more than it has; compressing the input and inflating it
 *    gives the input back.
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "insite_ws_deflate.h"


static z_stream  d, inf;
static int       ready;


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int                          rc;
    size_t                       n, zlen, cap;
    u_char                      *copy, *out, *z;
    u_char                       answer[INSITE_WS_DEFLATE_RESPONSE_MAX];
    insite_ws_deflate_params_t   p, q;

    if (!ready) {
        if (deflateInit2(&d, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) != Z_OK
            || inflateInit2(&inf, -15) != Z_OK)
        {
            abort();
        }
        ready = 1;
    }

    /* an exact-size copy: reading past it is an ASan report */
    copy = malloc(size ? size : 1);
    if (copy == NULL) {
        return 0;
    }
    memcpy(copy, data, size);

    rc = insite_ws_deflate_negotiate(copy, size, &p);

    if (rc == INSITE_WS_DEFLATE_OK) {
        if (p.server_window_bits < 9 || p.server_window_bits > 15) {
            abort();
        }

        n = insite_ws_deflate_response(&p, answer);
        if (n >= sizeof(answer)
            || insite_ws_deflate_negotiate(answer, n, &q)
               != INSITE_WS_DEFLATE_OK
            || q.server_window_bits != p.server_window_bits)
        {
            abort();
        }

    } else if (rc != INSITE_WS_DEFLATE_NONE
               && rc != INSITE_WS_DEFLATE_BAD_HEADER)
    {
        abort();
    }

    /* inflate whatever it is, into a room the first byte sizes */
    cap = size ? (size_t) data[0] * 8 + 1 : 1;
    out = malloc(cap);
    z = malloc(deflateBound(&d, size) + 16);
    if (out == NULL || z == NULL) {
        free(out);
        free(z);
        free(copy);
        return 0;
    }

    rc = insite_ws_inflate_message(&inf, copy, size, out, cap, &n);
    if (rc == INSITE_WS_DEFLATE_OK && n > cap) {
        abort();
    }

    /* and the round trip */
    free(out);
    out = malloc(size ? size : 1);

    if (out == NULL
        || insite_ws_deflate_message(&d, copy, size, z,
                                     deflateBound(&d, size) + 16, &zlen)
           != INSITE_WS_DEFLATE_OK
        || insite_ws_inflate_message(&inf, z, zlen, out, size ? size : 1, &n)
           != INSITE_WS_DEFLATE_OK
        || n != size || memcmp(out, copy, size) != 0)
    {
        abort();
    }

    free(out);
    free(z);
    free(copy);

    return 0;
}
