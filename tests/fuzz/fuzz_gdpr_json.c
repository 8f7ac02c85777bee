/*
 * insite_gdpr_json_string() (the journal's string encoder) against the
 * byte-at-a-time encoder it replaced, kept here as the reference: the same
 * bytes out for every input; the output must fit INSITE_GDPR_JSON_MAX,
 * parse as one JSON string for jansson (which refuses invalid UTF-8), and
 * decode to the input wherever the input was valid UTF-8 without NUL; and
 * insite_gdpr_json_uint() writes what printf does.
 */

#ifndef _GNU_SOURCE
#define _GNU_SOURCE    /* memmem */
#endif

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "insite_gdpr_json.h"


static size_t
reference(unsigned char *p0, const unsigned char *src, size_t len)
{
    unsigned char        c, *p = p0;
    size_t               n, k;
    uint32_t             cp;
    const unsigned char *end = src + len;
    static const char    hex[] = "0123456789abcdef";

    *p++ = '"';
    while (src < end) {
        c = *src;
        if (c >= 0x80) {
            n = (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3
                : (c & 0xf8) == 0xf0 ? 4 : 0;
            if (n && (size_t) (end - src) >= n) {
                cp = c & (0x7f >> n);
                for (k = 1; k < n; k++) {
                    if ((src[k] & 0xc0) != 0x80) {
                        break;
                    }
                    cp = (cp << 6) | (src[k] & 0x3f);
                }
                if (k == n && !(n == 2 && cp < 0x80)
                    && !(n == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff)))
                    && !(n == 4 && (cp < 0x10000 || cp > 0x10ffff)))
                {
                    memcpy(p, src, n);
                    p += n;
                    src += n;
                    continue;
                }
            }
            memcpy(p, "\\ufffd", 6);
            p += 6;
            src++;
            continue;
        }
        src++;
        switch (c) {
        case '"': case '\\': *p++ = '\\'; *p++ = c; break;
        case '\n': *p++ = '\\'; *p++ = 'n'; break;
        case '\r': *p++ = '\\'; *p++ = 'r'; break;
        case '\t': *p++ = '\\'; *p++ = 't'; break;
        case 0: memcpy(p, "\\ufffd", 6); p += 6; break;
        default:
            if (c < 0x20 || c == 0x7f) {
                memcpy(p, "\\u00", 4);
                p[4] = hex[c >> 4];
                p[5] = hex[c & 0xf];
                p += 6;
            } else {
                *p++ = c;
            }
        }
    }
    *p++ = '"';
    return p - p0;
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char          *out, *end, *ref, *doc;
    size_t         n, m;
    json_t        *v;
    json_error_t   err;

    out = malloc(INSITE_GDPR_JSON_MAX(size));
    ref = malloc(INSITE_GDPR_JSON_MAX(size));
    doc = malloc(INSITE_GDPR_JSON_MAX(size) + 2);
    if (out == NULL || ref == NULL || doc == NULL) {
        free(out); free(ref); free(doc);
        return 0;
    }

    end = insite_gdpr_json_string(out, (const char *) data, size);
    n = end - out;
    m = reference((unsigned char *) ref, data, size);

    if (n > INSITE_GDPR_JSON_MAX(size) || n != m || memcmp(out, ref, n) != 0) {
        abort();
    }

    /* a JSON document of one array holding the string */
    doc[0] = '[';
    memcpy(doc + 1, out, n);
    doc[n + 1] = ']';
    v = json_loadb(doc, n + 2, 0, &err);
    if (v == NULL || !json_is_string(json_array_get(v, 0))) {
        abort();
    }

    /* valid UTF-8 without NUL comes back as it went in */
    if (memchr(data, 0, size) == NULL
        && memmem(out, n, "\\ufffd", 6) == NULL
        && (json_string_length(json_array_get(v, 0)) != size
            || memcmp(json_string_value(json_array_get(v, 0)), data, size)
               != 0))
    {
        abort();
    }

    json_decref(v);

    /* the numbers: as printf writes them */
    if (size >= sizeof(uint64_t)) {
        uint64_t  u;
        char      a[INSITE_GDPR_JSON_UINT_MAX + 1], b[32];

        memcpy(&u, data, sizeof(u));
        *insite_gdpr_json_uint(a, u) = '\0';
        snprintf(b, sizeof(b), "%llu", (unsigned long long) u);
        if (strcmp(a, b) != 0) {
            abort();
        }
    }

    free(out); free(ref); free(doc);
    return 0;
}
