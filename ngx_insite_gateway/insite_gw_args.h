/*
 * Query-string arguments without one of them: what the gateway uses to take
 * a bearer token accepted from `?token=` out of a request.  Plain C (no
 * nginx types) so that it is unit-tested and fuzzed on its own.
 */

#ifndef _INSITE_GW_ARGS_H_INCLUDED_
#define _INSITE_GW_ARGS_H_INCLUDED_


#include <stddef.h>


/*
 * Copies the query [p, last) to dst, leaving out every argument named
 * `name` followed by '=' (name compared without regard to ASCII case, as
 * nginx's ngx_http_arg() finds it).  The other arguments keep their bytes
 * and order, empty ones included; the '&' between two kept arguments stays.
 * dst has room for last - p bytes (the result is never longer) and may not
 * overlap the input.  Returns the end of what was written.
 */
unsigned char *insite_gw_args_drop(unsigned char *dst, const unsigned char *p,
    const unsigned char *last, const char *name, size_t name_len);


#endif /* _INSITE_GW_ARGS_H_INCLUDED_ */
