/* Reddit listings (search in subreddits, requested with raw_json=1):
 *   {"kind":"Listing","data":{"children":[{"kind":"t3","data":{"name":"t3_x",
 *    "title","selftext","author","created_utc":1456821458.0,"permalink"}}]}}
 * The post id is the fullname ("t3_3gpbiu"). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "social.h"

static char *dup_or_null(const char *s)
{
    return s && *s ? strdup(s) : NULL;
}

int reddit_parse(const char *body, size_t len, const char *symbol, post **posts, size_t *n,
                 char *err, size_t errlen)
{
    json_error_t jerr;
    json_t *root = json_loadb(body, len, 0, &jerr), *kids, *c;
    size_t i;

    if (root == NULL) {
        snprintf(err, errlen, "malformed JSON (%s)", jerr.text);
        return -1;
    }
    kids = json_object_get(json_object_get(root, "data"), "children");
    if (!json_is_array(kids)) {
        snprintf(err, errlen, "not a Listing (no data.children[])");
        json_decref(root);
        return -1;
    }
    json_array_foreach(kids, i, c) {
        json_t *d = json_object_get(c, "data");
        const char *name = json_string_value(json_object_get(d, "name"));
        const char *title = json_string_value(json_object_get(d, "title"));
        const char *self = json_string_value(json_object_get(d, "selftext"));
        const char *link = json_string_value(json_object_get(d, "permalink"));
        json_t *created = json_object_get(d, "created_utc");
        if (name == NULL || title == NULL)
            continue;                      /* not a post (t1 comment, more) */
        post *ps = realloc(*posts, (*n + 1) * sizeof(post));
        if (ps == NULL)
            break;
        *posts = ps;
        post *p = &ps[(*n)++];
        memset(p, 0, sizeof(*p));
        snprintf(p->source, sizeof(p->source), "reddit");
        snprintf(p->symbol, sizeof(p->symbol), "%s", symbol ? symbol : "");
        p->id = strdup(name);
        p->author = dup_or_null(json_string_value(json_object_get(d, "author")));
        if (asprintf(&p->text, "%s%s%s", title, self && *self ? "\n" : "", self ? self : "") < 0)
            p->text = NULL;
        if (link && asprintf(&p->url, "https://www.reddit.com%s", link) < 0)
            p->url = NULL;
        p->created = json_is_number(created) ? (int64_t)json_number_value(created) : 0;
    }
    json_decref(root);
    return 0;
}
