/*
 * The members of a journal line as the module writes it, without a JSON
 * library: insite-auditd turns a million of them into COPY rows, and a
 * jansson object per line (a hash table and a dozen strings, each
 * malloc'd and freed) was most of its time.
 *
 * Only the plain shape is taken: one flat object, each key once, values
 * that are strings without escapes and of printable ASCII, integers
 * (no leading zero, no "-0", at most 18 digits), true, false or null,
 * JSON whitespace between tokens.  For every such line the members are
 * what jansson would give (tests/fuzz/fuzz_gdpr_fields.c checks it); any
 * other line (an escaped path, UTF-8, a nested value) returns
 * INSITE_GDPR_FIELDS_OTHER and is for a JSON library to read.
 */
#ifndef _INSITE_GDPR_FIELDS_H_INCLUDED_
#define _INSITE_GDPR_FIELDS_H_INCLUDED_

#include <stddef.h>

#define INSITE_GDPR_FIELDS_MAX    32

#define INSITE_GDPR_FIELDS_OK      0
#define INSITE_GDPR_FIELDS_OTHER  -1

typedef enum {
    INSITE_GDPR_STRING = 1,     /* value: the bytes between the quotes */
    INSITE_GDPR_INTEGER,        /* value: the digits, with a '-' if any */
    INSITE_GDPR_TRUE,
    INSITE_GDPR_FALSE,
    INSITE_GDPR_NULL
} insite_gdpr_type_e;

typedef struct {
    const char          *key;
    size_t               key_len;
    const char          *value;
    size_t               value_len;
    insite_gdpr_type_e   type;
} insite_gdpr_member_t;

typedef struct {
    insite_gdpr_member_t  m[INSITE_GDPR_FIELDS_MAX];
    int                   n;
} insite_gdpr_fields_t;

/* Splits a line (without its '\n') into members pointing into it. */
int insite_gdpr_fields_scan(const char *line, size_t len,
    insite_gdpr_fields_t *out);

/* The member named key (NUL-terminated), or NULL when absent. */
const insite_gdpr_member_t *insite_gdpr_fields_get(
    const insite_gdpr_fields_t *f, const char *key);

#endif /* _INSITE_GDPR_FIELDS_H_INCLUDED_ */
