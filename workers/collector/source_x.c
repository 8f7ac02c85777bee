/* X/Twitter API v2 recent search:
 *   {"data":[{"id":"1275840892285399041","text":"...","author_id":"...",
 *    "created_at":"2020-06-24T17:19:07.000Z"}],"meta":{"result_count":10}}
 * Ids are strings; "data" is absent when nothing matched; text keeps the
 * API's HTML entities (&amp;) as sent. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "social.h"

static int64_t rfc3339_time(const char *s)
{
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    if (s == NULL || strptime(s, "%Y-%m-%dT%H:%M:%S", &tm) == NULL)
        return 0;
    return (int64_t)timegm(&tm);
}

int x_parse(const char *body, size_t len, const char *symbol, post **posts, size_t *n,
            char *err, size_t errlen)
{
    json_error_t jerr;
    json_t *root = json_loadb(body, len, 0, &jerr), *data, *t;
    size_t i;

    if (root == NULL) {
        snprintf(err, errlen, "malformed JSON (%s)", jerr.text);
        return -1;
    }
    data = json_object_get(root, "data");
    if (data == NULL && json_is_object(json_object_get(root, "meta"))) {
        json_decref(root);                 /* no results */
        return 0;
    }
    if (!json_is_array(data)) {
        snprintf(err, errlen, "no data[] or meta in the response");
        json_decref(root);
        return -1;
    }
    json_array_foreach(data, i, t) {
        const char *id = json_string_value(json_object_get(t, "id"));
        const char *text = json_string_value(json_object_get(t, "text"));
        const char *author = json_string_value(json_object_get(t, "author_id"));
        if (id == NULL || text == NULL)
            continue;
        post *ps = realloc(*posts, (*n + 1) * sizeof(post));
        if (ps == NULL)
            break;
        *posts = ps;
        post *p = &ps[(*n)++];
        memset(p, 0, sizeof(*p));
        snprintf(p->source, sizeof(p->source), "x");
        snprintf(p->symbol, sizeof(p->symbol), "%s", symbol ? symbol : "");
        p->id = strdup(id);
        p->text = strdup(text);
        p->author = author ? strdup(author) : NULL;
        if (asprintf(&p->url, "https://x.com/i/web/status/%s", id) < 0)
            p->url = NULL;
        p->created = rfc3339_time(json_string_value(json_object_get(t, "created_at")));
    }
    json_decref(root);
    return 0;
}
