/*
 * Where a member's value lies in the text of a JSON object.
 *
 * The publish endpoint hands a body's "data" to subscribers verbatim: a
 * parsed and re-encoded number is not always the number that was sent
 * (doubles print with 17 digits, integers past 64 bits do not parse), and
 * market data must arrive as written.  The body is first validated by a
 * real JSON parser; this only finds the byte range.  Plain C, fuzzed
 * against jansson (tests/fuzz/fuzz_json_span.c).
 */

#ifndef INSITE_JSON_SPAN_H
#define INSITE_JSON_SPAN_H

#include <stddef.h>
#include <sys/types.h>


/*
 * In the JSON object p[0..len), finds the first top-level member named key
 * (escapes in member names are decoded before comparing).  Returns 1 with
 * value and vlen set to the member's value, without surrounding white space;
 * 0 when there is no such member; -1 when p is not a JSON object the
 * scanner can walk (never reads outside p[0..len)).
 */
int insite_json_member_span(const u_char *p, size_t len, const char *key,
    const u_char **value, size_t *vlen);


#endif /* INSITE_JSON_SPAN_H */
