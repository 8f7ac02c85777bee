/*
 * RFC 7240 "Prefer" header values: see insite_http_prefer.h.
 */

#include <string.h>
#include <strings.h>

#include "insite_http_prefer.h"


static int
insite_http_prefer_ows(char c)
{
    return c == ' ' || c == '\t';
}


/* the end of the preference starting at p: its comma or the value's end,
   stepping over quoted strings (a comma in one separates nothing) */
static const char *
insite_http_prefer_next(const char *p, const char *end)
{
    int  quoted = 0;

    for ( /* void */ ; p < end; p++) {
        if (quoted) {
            if (*p == '\\' && p + 1 < end) {
                p++;

            } else if (*p == '"') {
                quoted = 0;
            }

        } else if (*p == '"') {
            quoted = 1;

        } else if (*p == ',') {
            return p;
        }
    }

    return end;
}


int
insite_http_prefer_has(const char *v, size_t len, const char *token)
{
    size_t       tlen = strlen(token);
    const char  *p = v, *end = v + len, *name;

    while (p < end) {
        while (p < end && (insite_http_prefer_ows(*p) || *p == ',')) {
            p++;
        }

        name = p;

        while (p < end && *p != '=' && *p != ';' && *p != ','
               && !insite_http_prefer_ows(*p))
        {
            p++;
        }

        if ((size_t) (p - name) == tlen && tlen > 0
            && strncasecmp(name, token, tlen) == 0)
        {
            return 1;
        }

        p = insite_http_prefer_next(p, end);
    }

    return 0;
}
