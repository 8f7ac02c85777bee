/*
 * RFC 7240 "Prefer" header values: is a preference asked for?  Plain C,
 * no nginx types, so that it is unit-tested and fuzzed on its own.
 */

#ifndef _INSITE_HTTP_PREFER_H_INCLUDED_
#define _INSITE_HTTP_PREFER_H_INCLUDED_


#include <stddef.h>


/*
 * 1 when the header value v[0..len) names the preference `token` (matched
 * without regard to case), else 0.  Preferences are separated by commas;
 * a preference may carry "=value" and ";parameters" after its name
 * (RFC 7240, section 2), which are skipped, quoted strings included, so
 * that a token inside a value or a parameter ("wait=10;x=\"a,respond-async\"")
 * is not taken for a preference.  Never reads outside v[0..len).
 */
int insite_http_prefer_has(const char *v, size_t len, const char *token);


#endif /* _INSITE_HTTP_PREFER_H_INCLUDED_ */
