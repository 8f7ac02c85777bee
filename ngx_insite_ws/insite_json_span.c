/*
 * A walker over JSON text that only needs to find boundaries: strings
 * (with escapes), nested arrays and objects, and scalars.  It does not
 * validate; callers validate with a JSON parser first.
 */

#include <string.h>

#include "insite_json_span.h"


#define INSITE_JSON_KEY_MAX  256


static const u_char *insite_json_ws(const u_char *p, const u_char *last);
static const u_char *insite_json_string_end(const u_char *p,
    const u_char *last, int *escaped);
static const u_char *insite_json_value_end(const u_char *p,
    const u_char *last);
static int insite_json_key_equal(const u_char *s, const u_char *e,
    int escaped, const char *key);
static int insite_json_hex4(const u_char *p, const u_char *last,
    unsigned *cp);
static size_t insite_json_utf8(u_char *out, unsigned cp);


int
insite_json_member_span(const u_char *p, size_t len, const char *key,
    const u_char **value, size_t *vlen)
{
    int            escaped;
    const u_char  *last, *ks, *ke, *vs, *ve;

    last = p + len;

    p = insite_json_ws(p, last);
    if (p == last || *p != '{') {
        return -1;
    }

    p++;

    for ( ;; ) {
        p = insite_json_ws(p, last);

        if (p == last) {
            return -1;
        }

        if (*p == '}') {
            return 0;
        }

        if (*p != '"') {
            return -1;
        }

        ks = p + 1;
        ke = insite_json_string_end(p, last, &escaped);
        if (ke == NULL) {
            return -1;
        }

        p = insite_json_ws(ke + 1, last);
        if (p == last || *p != ':') {
            return -1;
        }

        vs = insite_json_ws(p + 1, last);
        ve = insite_json_value_end(vs, last);
        if (ve == NULL || ve == vs) {
            return -1;
        }

        if (insite_json_key_equal(ks, ke, escaped, key)) {
            *value = vs;
            *vlen = (size_t) (ve - vs);
            return 1;
        }

        p = insite_json_ws(ve, last);

        if (p == last) {
            return -1;
        }

        if (*p == ',') {
            p++;
            continue;
        }

        return *p == '}' ? 0 : -1;
    }
}


static const u_char *
insite_json_ws(const u_char *p, const u_char *last)
{
    while (p < last && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) {
        p++;
    }

    return p;
}


/* p at the opening quote: the closing quote, or NULL */

static const u_char *
insite_json_string_end(const u_char *p, const u_char *last, int *escaped)
{
    *escaped = 0;

    for (p++; p < last; p++) {
        if (*p == '\\') {
            *escaped = 1;
            p++;
            continue;
        }

        if (*p == '"') {
            return p;
        }
    }

    return NULL;
}


/* the byte after the value starting at p, or NULL */

static const u_char *
insite_json_value_end(const u_char *p, const u_char *last)
{
    int         escaped;
    size_t      depth;
    const u_char  *e;

    if (p == last) {
        return NULL;
    }

    if (*p == '"') {
        e = insite_json_string_end(p, last, &escaped);
        return e ? e + 1 : NULL;
    }

    if (*p == '{' || *p == '[') {
        depth = 0;

        for ( ; p < last; p++) {
            switch (*p) {

            case '"':
                p = insite_json_string_end(p, last, &escaped);
                if (p == NULL) {
                    return NULL;
                }
                break;

            case '{':
            case '[':
                depth++;
                break;

            case '}':
            case ']':
                if (--depth == 0) {
                    return p + 1;
                }
                break;
            }
        }

        return NULL;
    }

    /* a number, true, false or null */
    while (p < last && *p != ',' && *p != '}' && *p != ']' && *p != ' '
           && *p != '\t' && *p != '\n' && *p != '\r')
    {
        p++;
    }

    return p;
}


static int
insite_json_key_equal(const u_char *s, const u_char *e, int escaped,
    const char *key)
{
    u_char    buf[INSITE_JSON_KEY_MAX + 4], *b;
    size_t    klen;
    unsigned  cp, lo;

    klen = strlen(key);

    if (!escaped) {
        return (size_t) (e - s) == klen && memcmp(s, key, klen) == 0;
    }

    b = buf;

    while (s < e) {
        if ((size_t) (b - buf) > INSITE_JSON_KEY_MAX) {
            return 0;                       /* longer than any key we ask */
        }

        if (*s != '\\') {
            *b++ = *s++;
            continue;
        }

        if (++s == e) {
            return 0;
        }

        switch (*s++) {
        case '"':  *b++ = '"';  break;
        case '\\': *b++ = '\\'; break;
        case '/':  *b++ = '/';  break;
        case 'b':  *b++ = '\b'; break;
        case 'f':  *b++ = '\f'; break;
        case 'n':  *b++ = '\n'; break;
        case 'r':  *b++ = '\r'; break;
        case 't':  *b++ = '\t'; break;

        case 'u':
            if (!insite_json_hex4(s, e, &cp)) {
                return 0;
            }
            s += 4;

            if (cp >= 0xd800 && cp <= 0xdbff) {
                if (e - s < 6 || s[0] != '\\' || s[1] != 'u'
                    || !insite_json_hex4(s + 2, e, &lo)
                    || lo < 0xdc00 || lo > 0xdfff)
                {
                    return 0;
                }
                s += 6;
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
            }

            b += insite_json_utf8(b, cp);
            break;

        default:
            return 0;
        }
    }

    return (size_t) (b - buf) == klen && memcmp(buf, key, klen) == 0;
}


static int
insite_json_hex4(const u_char *p, const u_char *last, unsigned *cp)
{
    int       i;
    unsigned  v;
    u_char    c;

    if (last - p < 4) {
        return 0;
    }

    v = 0;

    for (i = 0; i < 4; i++) {
        c = p[i];
        v <<= 4;

        if (c >= '0' && c <= '9') {
            v |= c - '0';
        } else if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f') {
            v |= (c | 0x20) - 'a' + 10;
        } else {
            return 0;
        }
    }

    *cp = v;
    return 1;
}


static size_t
insite_json_utf8(u_char *out, unsigned cp)
{
    if (cp < 0x80) {
        out[0] = (u_char) cp;
        return 1;
    }

    if (cp < 0x800) {
        out[0] = (u_char) (0xc0 | (cp >> 6));
        out[1] = (u_char) (0x80 | (cp & 0x3f));
        return 2;
    }

    if (cp < 0x10000) {
        out[0] = (u_char) (0xe0 | (cp >> 12));
        out[1] = (u_char) (0x80 | ((cp >> 6) & 0x3f));
        out[2] = (u_char) (0x80 | (cp & 0x3f));
        return 3;
    }

    out[0] = (u_char) (0xf0 | (cp >> 18));
    out[1] = (u_char) (0x80 | ((cp >> 12) & 0x3f));
    out[2] = (u_char) (0x80 | ((cp >> 6) & 0x3f));
    out[3] = (u_char) (0x80 | (cp & 0x3f));
    return 4;
}
