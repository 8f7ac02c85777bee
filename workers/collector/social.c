/* Social/news collection round: one request per (source, symbol), all in
 * parallel through fetch.c; new posts are stored (ON CONFLICT DO NOTHING on
 * source + source_id is the dedup) and produced to Kafka social_posts. */
#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <jansson.h>

#include "clock.h"
#include "envelope.h"
#include "fetch.h"
#include "log.h"
#include "social.h"
#include "store.h"

const insite_config_key social_config_keys[] = {
    { "social.interval", INSITE_CFG_DURATION, "5m", 1000, 86400000, "social/news polling period" },
    { "social.rss_enabled", INSITE_CFG_BOOL, "true", 0, 0, "poll the RSS feeds" },
    { "social.rss_feeds", INSITE_CFG_STRING_LIST,
      "https://feeds.finance.yahoo.com/rss/2.0/headline?s={symbol}&region=US&lang=en-US", 0, 0,
      "RSS 2.0 feed URLs; {symbol} is replaced per symbol, feeds without it are fetched "
      "once and their items kept for the symbols they mention" },
    { "social.reddit_enabled", INSITE_CFG_BOOL, "false", 0, 0, "search Reddit" },
    { "social.reddit_url", INSITE_CFG_STRING, "https://oauth.reddit.com", 0, 0, "Reddit API base URL" },
    { "social.reddit_token", INSITE_CFG_STRING, "", 0, 0,
      "Reddit OAuth bearer token (application-only); empty = Reddit skipped" },
    { "social.reddit_subreddits", INSITE_CFG_STRING_LIST, "stocks,investing,wallstreetbets", 0, 0,
      "subreddits searched for $SYMBOL or SYMBOL" },
    { "social.x_enabled", INSITE_CFG_BOOL, "false", 0, 0, "search X/Twitter (API v2 recent search)" },
    { "social.x_url", INSITE_CFG_STRING, "https://api.twitter.com", 0, 0, "X API base URL" },
    { "social.x_bearer", INSITE_CFG_STRING, "", 0, 0, "X API bearer token; empty = X skipped" },
};
const size_t social_config_nkeys = sizeof(social_config_keys) / sizeof(social_config_keys[0]);

struct social {
    fetch *f;
    unsigned enabled;
    char **feeds;
    size_t nfeeds;
    char *reddit_url, *reddit_auth, *subs, *x_url, *x_auth;
};

typedef struct {
    unsigned source;
    char symbol[SYMBOL_MAX];     /* "" = generic feed */
} req_meta;

unsigned social_enabled(const social *s)
{
    return s ? s->enabled : 0;
}

static char *strip_slash(const char *s)
{
    char *d = strdup(s);
    size_t n = d ? strlen(d) : 0;
    while (n > 0 && d[n - 1] == '/')
        d[--n] = '\0';
    return d;
}

social *social_new(const insite_config *cfg, int abort_fd)
{
    social *s = calloc(1, sizeof(*s));
    char *const *feeds, *const *subs;
    size_t nsubs;

    if (s == NULL || (s->f = provider_http_new(cfg, "social", abort_fd)) == NULL) {
        insite_log_error("social: cannot create the HTTP client");
        free(s);
        return NULL;
    }
    if (insite_config_bool(cfg, "social.rss_enabled")) {
        s->nfeeds = insite_config_list(cfg, "social.rss_feeds", &feeds);
        s->feeds = calloc(s->nfeeds + 1, sizeof(char *));
        for (size_t i = 0; s->feeds && i < s->nfeeds; i++)
            s->feeds[i] = strdup(feeds[i]);
        if (s->nfeeds > 0)
            s->enabled |= SOCIAL_RSS;
        else
            insite_log_warn("social: rss enabled but social.rss_feeds is empty: skipped");
    }
    if (insite_config_bool(cfg, "social.reddit_enabled")) {
        const char *tok = insite_config_string(cfg, "social.reddit_token");
        nsubs = insite_config_list(cfg, "social.reddit_subreddits", &subs);
        if (*tok == '\0' || nsubs == 0) {
            insite_log_warn("social: reddit enabled but %s is empty: skipped",
                            *tok ? "social.reddit_subreddits" : "social.reddit_token (INSITE_SOCIAL_REDDIT_TOKEN)");
        } else {
            size_t len = 1;
            for (size_t i = 0; i < nsubs; i++)
                len += strlen(subs[i]) + 1;
            if ((s->subs = calloc(1, len)) != NULL)
                for (size_t i = 0; i < nsubs; i++)
                    snprintf(s->subs + strlen(s->subs), len - strlen(s->subs), "%s%s", i ? "+" : "", subs[i]);
            s->reddit_url = strip_slash(insite_config_string(cfg, "social.reddit_url"));
            if (asprintf(&s->reddit_auth, "Authorization: Bearer %s", tok) < 0)
                s->reddit_auth = NULL;
            s->enabled |= SOCIAL_REDDIT;
        }
    }
    if (insite_config_bool(cfg, "social.x_enabled")) {
        const char *tok = insite_config_string(cfg, "social.x_bearer");
        if (*tok == '\0') {
            insite_log_warn("social: x enabled but social.x_bearer (INSITE_SOCIAL_X_BEARER) is empty: skipped");
        } else {
            s->x_url = strip_slash(insite_config_string(cfg, "social.x_url"));
            if (asprintf(&s->x_auth, "Authorization: Bearer %s", tok) < 0)
                s->x_auth = NULL;
            s->enabled |= SOCIAL_X;
        }
    }
    insite_log_info("social: sources%s%s%s%s", s->enabled & SOCIAL_RSS ? " rss" : "",
                    s->enabled & SOCIAL_REDDIT ? " reddit" : "", s->enabled & SOCIAL_X ? " x" : "",
                    s->enabled ? "" : " none");
    return s;
}

void social_free(social *s)
{
    if (s == NULL)
        return;
    fetch_free(s->f);
    for (size_t i = 0; s->feeds && i < s->nfeeds; i++)
        free(s->feeds[i]);
    free(s->feeds);
    free(s->reddit_url);
    free(s->reddit_auth);
    free(s->subs);
    free(s->x_url);
    free(s->x_auth);
    free(s);
}

/* feed with every {symbol} replaced */
static char *expand(const char *feed, const char *symbol)
{
    char *sym = curl_easy_escape(NULL, symbol, 0), *out = NULL;
    const char *at = strstr(feed, "{symbol}");
    if (sym && at && asprintf(&out, "%.*s%s%s", (int)(at - feed), feed, sym, at + 8) < 0)
        out = NULL;
    curl_free(sym);
    return out;
}

static char *search_url(const char *fmt, const char *base, const char *extra, const char *symbol)
{
    char q[64], *eq, *out = NULL;
    snprintf(q, sizeof(q), "$%s OR %s", symbol, symbol);
    eq = curl_easy_escape(NULL, q, 0);
    if (eq && asprintf(&out, fmt, base, extra, eq) < 0)
        out = NULL;
    curl_free(eq);
    return out;
}

/* Builds the requests; returns their number. */
static size_t plan(social *s, char *const *syms, size_t n, unsigned mask, fetch_req *r,
                   req_meta *m, size_t max)
{
    size_t k = 0;
    for (size_t f = 0; (mask & SOCIAL_RSS) && f < s->nfeeds && k < max; f++) {
        int per = strstr(s->feeds[f], "{symbol}") != NULL;
        for (size_t i = 0; i < (per ? n : 1) && k < max; i++) {
            r[k].url = per ? expand(s->feeds[f], syms[i]) : strdup(s->feeds[f]);
            m[k] = (req_meta){ .source = SOCIAL_RSS };
            snprintf(m[k].symbol, sizeof(m[k].symbol), "%s", per ? syms[i] : "");
            r[k].label = per ? syms[i] : s->feeds[f];
            k += r[k].url != NULL;
        }
    }
    for (size_t i = 0; i < n && k < max; i++) {
        const char *fmt = NULL, *base = NULL, *extra = NULL, *auth = NULL;
        for (unsigned src = SOCIAL_REDDIT; src <= SOCIAL_X && k < max; src <<= 1) {
            if (!(mask & src))
                continue;
            if (src == SOCIAL_REDDIT) {
                fmt = "%s/r/%s/search.json?restrict_sr=1&sort=new&limit=100&raw_json=1&q=%s";
                base = s->reddit_url, extra = s->subs, auth = s->reddit_auth;
            } else {
                fmt = "%s/2/tweets/search/recent?max_results=100%s&query=%s";
                base = s->x_url, extra = "&tweet.fields=created_at,author_id", auth = s->x_auth;
            }
            r[k].url = search_url(fmt, base, extra, syms[i]);
            r[k].auth = auth;
            r[k].label = syms[i];
            m[k] = (req_meta){ .source = src };
            snprintf(m[k].symbol, sizeof(m[k].symbol), "%s", syms[i]);
            k += r[k].url != NULL;
        }
    }
    return k;
}

/* $AAPL or AAPL as a word in text */
static int mentions(const char *text, const char *sym)
{
    size_t n = strlen(sym);
    for (const char *p = text; p && (p = strstr(p, sym)) != NULL; p += n) {
        int before = p == text || !isalnum((unsigned char)p[-1]);
        if (before && !isalnum((unsigned char)p[n]))
            return 1;
    }
    return 0;
}

static const char *source_name(unsigned src)
{
    return src == SOCIAL_RSS ? "rss" : src == SOCIAL_REDDIT ? "reddit" : "x";
}

/* Stores one post; 1 new, 0 seen before, -1 error. */
static int store_post(app *a, const post *p)
{
    char created[24], syms[SYMBOL_MAX + 4];
    snprintf(created, sizeof(created), "%" PRId64, p->created);
    snprintf(syms, sizeof(syms), "{\"%s\"}", p->symbol);
    const char *v[7] = { p->source, p->id, syms, p->author, p->text, p->url,
                         p->created > 0 ? created : NULL };
    if (store_ready(a->pg) != 0)
        return -1;
    PGresult *r = PQexecParams(a->pg,
        "INSERT INTO social_posts (source, source_id, symbols, author, text, url, created_at) "
        "VALUES ($1, $2, $3::text[], $4, $5, $6, to_timestamp($7::bigint)) "
        "ON CONFLICT (source, source_id) DO NOTHING RETURNING id", 7, NULL, v, NULL, NULL, 0);
    int rc = PQresultStatus(r) == PGRES_TUPLES_OK ? PQntuples(r) : -1;
    if (rc < 0)
        insite_log_error("postgres: store %s post %s: %s", p->source, p->id, PQerrorMessage(a->pg));
    PQclear(r);
    return rc;
}

static void produce_post(app *a, const post *p)
{
    char t[INSITE_RFC3339_LEN];
    if (p->created > 0)
        insite_clock_rfc3339_ms(t, sizeof(t), p->created * 1000);
    json_t *d = json_pack("{s:s, s:s, s:s, s:s?, s:s?, s:s?, s:s?}", "source", p->source,
                          "source_id", p->id, "symbol", p->symbol, "author", p->author,
                          "text", p->text, "url", p->url, "created_at", p->created > 0 ? t : NULL);
    json_t *env = d ? insite_envelope_new("social_post", a->service, NULL, d) : NULL;
    char *text = env ? insite_envelope_dumps(env) : NULL;
    if (text == NULL || insite_kafka_produce(a->kafka, "social_posts", p->symbol, text, strlen(text)) < 0)
        insite_counter_inc(a->m.kafka_errors);
    free(text);
    json_decref(env);
}

/* Parses one response and handles its posts; returns new posts or -1. */
static int handle(app *a, char *const *syms, size_t n, const fetch_req *r, const req_meta *m)
{
    post *ps = NULL;
    size_t np = 0;
    char err[192] = "";
    int rc, fresh = 0;
    const char *name = source_name(m->source);
    const char *sym = m->symbol[0] ? m->symbol : NULL;

    if (r->status != 200) {
        insite_log_warn("social %s %s: %s after %d attempt%s", name, r->label,
                        r->err[0] ? r->err : "no response", r->attempts, r->attempts == 1 ? "" : "s");
        return -1;
    }
    rc = m->source == SOCIAL_RSS ? rss_parse(r->body, r->len, sym, &ps, &np, err, sizeof(err))
       : m->source == SOCIAL_REDDIT ? reddit_parse(r->body, r->len, sym, &ps, &np, err, sizeof(err))
       : x_parse(r->body, r->len, sym, &ps, &np, err, sizeof(err));
    if (rc != 0)
        insite_log_warn("social %s %s: rejected: %s", name, r->label, err);
    for (size_t i = 0; rc == 0 && i < np; i++) {
        post *p = &ps[i];
        for (size_t k = 0; !p->symbol[0] && k < n; k++)   /* generic feed */
            if (p->text && mentions(p->text, syms[k]))
                snprintf(p->symbol, sizeof(p->symbol), "%s", syms[k]);
        if (p->symbol[0] && p->id && store_post(a, p) == 1) {
            produce_post(a, p);
            fresh++;
        }
    }
    for (size_t i = 0; i < np; i++)
        post_clear(&ps[i]);
    free(ps);
    if (rc == 0)
        insite_log_debug("social %s %s: %zu posts, %d new", name, r->label, np, fresh);
    return rc == 0 ? fresh : -1;
}

int social_collect(app *a, char *const *syms, size_t n, unsigned mask, char *err, size_t errlen)
{
    social *s = a->social;
    size_t max = (s->nfeeds + 2) * (n + 1), k, okreqs = 0, used = 0;
    fetch_req *r = calloc(max, sizeof(*r));
    req_meta *m = calloc(max, sizeof(*m));
    int fresh = 0;

    err[0] = '\0';
    for (unsigned src = SOCIAL_RSS; src <= SOCIAL_X; src <<= 1)
        if ((mask & src) && !(s->enabled & src) && used < errlen)
            used += (size_t)snprintf(err + used, errlen - used, "%s%s: not enabled or no credentials",
                                     used ? "; " : "", source_name(src));
    if (r == NULL || m == NULL || (k = plan(s, syms, n, mask & s->enabled, r, m, max)) == 0) {
        free(r);
        free(m);
        return r && m ? 0 : -1;
    }
    if (fetch_run(s->f, r, k) >= 0) {
        for (size_t i = 0; i < k; i++) {
            int rc = handle(a, syms, n, &r[i], &m[i]);
            if (rc >= 0) {
                okreqs++;
                fresh += rc;
            } else if (used < errlen) {
                used += (size_t)snprintf(err + used, errlen - used, "%s%s %s: %s", used ? "; " : "",
                                         source_name(m[i].source), r[i].label,
                                         r[i].err[0] ? r[i].err : "rejected");
            }
        }
    }
    insite_counter_add(a->m.posts, (uint64_t)fresh);
    fetch_reqs_clear(r, k);
    for (size_t i = 0; i < k; i++)
        free((char *)r[i].url);
    free(r);
    free(m);
    if (fresh > 0)
        insite_log_info("social: %d new post(s)", fresh);
    return okreqs > 0 ? fresh : -1;
}
