/*
 * A journal record's strings as JSON: bytes a client chose (path, user id,
 * request id) become a quoted string that is always valid UTF-8, so every
 * record parses and its hash covers exactly what a reader decodes.
 *
 * A complete, shortest-form UTF-8 sequence passes as is; any other byte
 * >= 0x80 (a stray continuation, an overlong form, a surrogate, above
 * U+10FFFF, a sequence cut short) and NUL become \ufffd; '"' and '\' are
 * escaped, \n \r \t short, other control bytes and DEL as \u00XX.
 *
 * Plain C, no nginx headers: unit-tested (tests/unit/test_gdpr_json.c) and
 * fuzzed against a byte-at-a-time reference (tests/fuzz/fuzz_gdpr_json.c).
 * Runs of printable ASCII, nearly all of a record, are copied whole: the
 * encoder is on every audited request's path.  The record's numbers and
 * hex (id, hash, pseudonym) are written here too, without printf.
 */

#ifndef _INSITE_GDPR_JSON_H_INCLUDED_
#define _INSITE_GDPR_JSON_H_INCLUDED_

#include <stddef.h>
#include <stdint.h>

/* the most insite_gdpr_json_string() writes for len input bytes */
#define INSITE_GDPR_JSON_MAX(len)  ((len) * 6 + 2)

/* Writes src[0..len) as a JSON string, quotes included, at dst (room for
 * INSITE_GDPR_JSON_MAX(len) bytes); returns the end of what it wrote. */
char *insite_gdpr_json_string(char *dst, const char *src, size_t len);

/* the longest insite_gdpr_json_uint() writes */
#define INSITE_GDPR_JSON_UINT_MAX  20

/* Writes v in decimal at dst; returns the end of what it wrote.  The
 * record's numbers (status, seq) without a printf format parsed each time:
 * on every audited request's path. */
char *insite_gdpr_json_uint(char *dst, uint64_t v);

/* Writes the n bytes at src as 2n lowercase hex digits at dst; returns the
 * end of what it wrote.  The record's id, the chain's hash and the
 * pseudonym, with a table of digit pairs: on every audited request's path. */
char *insite_gdpr_json_hex(char *dst, const unsigned char *src, size_t n);

#endif /* _INSITE_GDPR_JSON_H_INCLUDED_ */
