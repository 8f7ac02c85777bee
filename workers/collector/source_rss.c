/* Finance news RSS 2.0 (libxml2): channel/item with title, link,
 * description, pubDate (RFC 822), guid, dc:creator.  The post id is the
 * guid, else the link.  Whitespace runs in text are collapsed (real feeds
 * wrap titles in newlines). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libxml/parser.h>
#include <libxml/tree.h>

#include "social.h"

/* Copy with whitespace runs collapsed to one space and trimmed. */
static char *squeeze(const xmlChar *in)
{
    const char *s = (const char *)in;
    char *out = malloc(strlen(s) + 1), *o = out;
    int space = 1;

    if (out == NULL)
        return NULL;
    for (; *s; s++) {
        int ws = *s == ' ' || *s == '\t' || *s == '\n' || *s == '\r';
        if (ws && space)
            continue;
        *o++ = ws ? ' ' : *s;
        space = ws;
    }
    if (o > out && o[-1] == ' ')
        o--;
    *o = '\0';
    return out;
}

static char *child_text(xmlNode *item, const char *name)
{
    for (xmlNode *c = item->children; c; c = c->next) {
        if (c->type == XML_ELEMENT_NODE && xmlStrcmp(c->name, (const xmlChar *)name) == 0) {
            xmlChar *t = xmlNodeGetContent(c);
            char *s = t ? squeeze(t) : NULL;
            xmlFree(t);
            if (s && *s == '\0') {
                free(s);
                s = NULL;
            }
            return s;
        }
    }
    return NULL;
}

/* "Fri, 24 Jan 2025 11:00:00 -0500" (the weekday is optional); 0 if not. */
int64_t rfc822_time(const char *s)
{
    struct tm tm;
    const char *p = strchr(s, ',') ? strchr(s, ',') + 1 : s;
    memset(&tm, 0, sizeof(tm));
    const char *rest = strptime(p, " %d %b %Y %H:%M:%S", &tm);
    if (rest == NULL)
        return 0;
    int64_t t = (int64_t)timegm(&tm);
    int sign = 1, hh, mm;
    while (*rest == ' ')
        rest++;
    if ((*rest == '+' || *rest == '-') && sscanf(rest + 1, "%2d%2d", &hh, &mm) == 2) {
        sign = *rest == '-' ? -1 : 1;
        t -= sign * (hh * 3600 + mm * 60);
    }
    return t;
}

static int add_item(xmlNode *item, const char *symbol, post **posts, size_t *n)
{
    char *title = child_text(item, "title"), *desc = child_text(item, "description");
    char *link = child_text(item, "link"), *guid = child_text(item, "guid");
    char *date = child_text(item, "pubDate"), *author = child_text(item, "creator");
    int rc = 0;

    if ((guid || link) && (title || desc)) {
        post *ps = realloc(*posts, (*n + 1) * sizeof(post));
        if (ps == NULL) {
            rc = -1;
        } else {
            post *p = &ps[(*n)++];
            memset(p, 0, sizeof(*p));
            *posts = ps;
            snprintf(p->source, sizeof(p->source), "rss");
            snprintf(p->symbol, sizeof(p->symbol), "%s", symbol ? symbol : "");
            p->id = guid ? guid : strdup(link);
            guid = NULL;
            if (asprintf(&p->text, "%s%s%s", title ? title : "", title && desc ? "\n" : "",
                         desc ? desc : "") < 0)
                p->text = NULL;
            p->url = link;
            link = NULL;
            p->author = author;
            author = NULL;
            p->created = date ? rfc822_time(date) : 0;
        }
    }
    free(title);
    free(desc);
    free(link);
    free(guid);
    free(date);
    free(author);
    return rc;
}

int rss_parse(const char *body, size_t len, const char *symbol, post **posts, size_t *n,
              char *err, size_t errlen)
{
    xmlDoc *doc = xmlReadMemory(body, (int)len, NULL, NULL,
                                XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
    xmlNode *root, *chan = NULL;
    int rc = 0;

    if (doc == NULL) {
        const xmlError *e = xmlGetLastError();
        snprintf(err, errlen, "malformed XML%s%.*s", e && e->message ? ": " : "",
                 e && e->message ? (int)strcspn(e->message, "\n") : 0, e && e->message ? e->message : "");
        return -1;
    }
    root = xmlDocGetRootElement(doc);
    for (xmlNode *c = root ? root->children : NULL; c && !chan; c = c->next)
        if (c->type == XML_ELEMENT_NODE && xmlStrcmp(c->name, (const xmlChar *)"channel") == 0)
            chan = c;
    if (root == NULL || xmlStrcmp(root->name, (const xmlChar *)"rss") != 0 || chan == NULL) {
        snprintf(err, errlen, "not an RSS 2.0 document (no rss/channel)");
        rc = -1;
    }
    for (xmlNode *c = chan ? chan->children : NULL; c && rc == 0; c = c->next)
        if (c->type == XML_ELEMENT_NODE && xmlStrcmp(c->name, (const xmlChar *)"item") == 0)
            if (add_item(c, symbol, posts, n) != 0) {
                snprintf(err, errlen, "out of memory");
                rc = -1;
            }
    xmlFreeDoc(doc);
    return rc;
}
