/*
 * Query-string arguments without one of them (see insite_gw_args.h).
 */

#include <string.h>
#include <strings.h>

#include "insite_gw_args.h"


static int
insite_gw_args_named(const unsigned char *p, const unsigned char *end,
    const char *name, size_t name_len)
{
    return (size_t) (end - p) > name_len
           && strncasecmp((const char *) p, name, name_len) == 0
           && p[name_len] == '=';
}


unsigned char *
insite_gw_args_drop(unsigned char *dst, const unsigned char *p,
    const unsigned char *last, const char *name, size_t name_len)
{
    int                   first;
    const unsigned char  *amp;

    first = 1;

    for ( ;; ) {
        amp = memchr(p, '&', last - p);
        if (amp == NULL) {
            amp = last;
        }

        if (!insite_gw_args_named(p, amp, name, name_len)) {
            if (!first) {
                *dst++ = '&';
            }

            memcpy(dst, p, amp - p);
            dst += amp - p;
            first = 0;
        }

        if (amp == last) {
            return dst;
        }

        p = amp + 1;
    }
}
