/*
 * Journal line -> members, for the plain shape only (insite_gdpr_fields.h).
 */

#include <string.h>

#include "insite_gdpr_fields.h"


static const char *
ws(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) {
        p++;
    }

    return p;
}


/* a string without escapes, of printable ASCII; p is at the opening quote */
static const char *
string(const char *p, const char *end, const char **s, size_t *n)
{
    const char  *q;

    if (p >= end || *p != '"') {
        return NULL;
    }

    for (q = ++p; q < end && *q != '"'; q++) {
        if ((unsigned char) *q < 0x20 || (unsigned char) *q >= 0x7f
            || *q == '\\')
        {
            return NULL;
        }
    }

    if (q == end) {
        return NULL;
    }

    *s = p;
    *n = (size_t) (q - p);

    return q + 1;
}


static const char *
literal(const char *p, const char *end, const char *word, size_t n)
{
    if ((size_t) (end - p) < n || memcmp(p, word, n) != 0) {
        return NULL;
    }

    return p + n;
}


static const char *
value(const char *p, const char *end, insite_gdpr_member_t *m)
{
    const char  *q, *d;

    if (p >= end) {
        return NULL;
    }

    switch (*p) {

    case '"':
        m->type = INSITE_GDPR_STRING;
        return string(p, end, &m->value, &m->value_len);

    case 't':
        m->type = INSITE_GDPR_TRUE;
        m->value = p;
        m->value_len = 4;
        return literal(p, end, "true", 4);

    case 'f':
        m->type = INSITE_GDPR_FALSE;
        m->value = p;
        m->value_len = 5;
        return literal(p, end, "false", 5);

    case 'n':
        m->type = INSITE_GDPR_NULL;
        m->value = p;
        m->value_len = 4;
        return literal(p, end, "null", 4);
    }

    /* -?(0|[1-9][0-9]*), no fraction or exponent, no "-0", 18 digits */
    q = p;
    if (*q == '-') {
        q++;
    }

    d = q;
    while (q < end && *q >= '0' && *q <= '9') {
        q++;
    }

    if (q == d || q - d > 18 || (*d == '0' && (q - d > 1 || d != p))) {
        return NULL;
    }

    if (q < end && (*q == '.' || *q == 'e' || *q == 'E')) {
        return NULL;
    }

    m->type = INSITE_GDPR_INTEGER;
    m->value = p;
    m->value_len = (size_t) (q - p);

    return q;
}


int
insite_gdpr_fields_scan(const char *line, size_t len,
    insite_gdpr_fields_t *out)
{
    int                    i;
    const char            *p, *end;
    insite_gdpr_member_t  *m;

    p = line;
    end = line + len;
    out->n = 0;

    p = ws(p, end);
    if (p == end || *p++ != '{') {
        return INSITE_GDPR_FIELDS_OTHER;
    }

    p = ws(p, end);
    if (p < end && *p == '}') {
        p++;
        goto last;
    }

    for ( ;; ) {
        if (out->n == INSITE_GDPR_FIELDS_MAX) {
            return INSITE_GDPR_FIELDS_OTHER;
        }

        m = &out->m[out->n];

        p = string(p, end, &m->key, &m->key_len);
        if (p == NULL) {
            return INSITE_GDPR_FIELDS_OTHER;
        }

        /* each key once: jansson would keep the last, we do not guess */
        for (i = 0; i < out->n; i++) {
            if (out->m[i].key_len == m->key_len
                && memcmp(out->m[i].key, m->key, m->key_len) == 0)
            {
                return INSITE_GDPR_FIELDS_OTHER;
            }
        }

        p = ws(p, end);
        if (p == end || *p++ != ':') {
            return INSITE_GDPR_FIELDS_OTHER;
        }

        p = value(ws(p, end), end, m);
        if (p == NULL) {
            return INSITE_GDPR_FIELDS_OTHER;
        }

        out->n++;

        p = ws(p, end);
        if (p == end) {
            return INSITE_GDPR_FIELDS_OTHER;
        }

        if (*p == '}') {
            p++;
            break;
        }

        if (*p++ != ',') {
            return INSITE_GDPR_FIELDS_OTHER;
        }

        p = ws(p, end);
    }

last:

    return ws(p, end) == end ? INSITE_GDPR_FIELDS_OK : INSITE_GDPR_FIELDS_OTHER;
}


const insite_gdpr_member_t *
insite_gdpr_fields_get(const insite_gdpr_fields_t *f, const char *key)
{
    int     i;
    size_t  n;

    n = strlen(key);

    for (i = 0; i < f->n; i++) {
        if (f->m[i].key_len == n && memcmp(f->m[i].key, key, n) == 0) {
            return &f->m[i];
        }
    }

    return NULL;
}
