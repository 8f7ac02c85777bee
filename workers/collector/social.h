/* Social and news sources: finance RSS (libxml2), Reddit listings, X/Twitter
 * v2 recent search.  Each is enabled by config; one without credentials is
 * skipped with a log line at start.  Posts are stored in social_posts
 * (unique on source + source id: refetches are no-ops) and only new ones are
 * produced to Kafka topic social_posts. */
#ifndef COLLECTOR_SOCIAL_H
#define COLLECTOR_SOCIAL_H

#include <stddef.h>
#include <stdint.h>

#include "app.h"
#include "config.h"

#define SOCIAL_RSS    1u
#define SOCIAL_REDDIT 2u
#define SOCIAL_X      4u

extern const insite_config_key social_config_keys[];
extern const size_t social_config_nkeys;

typedef struct {
    char source[12];             /* "rss", "reddit", "x" */
    char *id;                    /* source's own id (guid, t3_ name, tweet id) */
    char *author, *text, *url;
    int64_t created;             /* epoch s, 0 = unknown */
    char symbol[SYMBOL_MAX];     /* the symbol searched for */
} post;

void post_clear(post *p);

/* Parsers (exposed for tests): append to *posts / *n (grown with realloc).
 * 0, or -1 with the reason in err. */
int rss_parse(const char *body, size_t len, const char *symbol, post **posts, size_t *n,
              char *err, size_t errlen);
int reddit_parse(const char *body, size_t len, const char *symbol, post **posts, size_t *n,
                 char *err, size_t errlen);
int x_parse(const char *body, size_t len, const char *symbol, post **posts, size_t *n,
            char *err, size_t errlen);

social *social_new(const insite_config *cfg, int abort_fd);
void social_free(social *s);
/* The enabled sources (SOCIAL_* bits). */
unsigned social_enabled(const social *s);
/* Fetches posts about symbols from the sources in mask (& enabled),
 * stores and produces the new ones.  Returns the number of new posts, or -1
 * when every request failed (reasons in err). */
int social_collect(app *a, char *const *symbols, size_t n, unsigned mask, char *err,
                   size_t errlen);

#endif
