/* Finnhub quotes: GET <base>/api/v1/quote?symbol=<symbol>&token=<key>
 *   -> {"c":261.74,"d":0.52,"dp":0.199,"h":263.31,"l":260.68,"o":261.07,
 *       "pc":261.22,"t":1582641000}
 * Written from Finnhub's public API documentation (no recorded response is
 * available here).  Unknown symbols answer all zeros: rejected, never
 * published.  /quote has no volume and no currency: volume is sent as null,
 * the currency comes from provider.finnhub_currency. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <jansson.h>

#include "fetch.h"
#include "log.h"
#include "provider.h"

typedef struct {
    fetch *f;
    char *base, *key, *currency;
} finnhub;

static int parse(const char *symbol, long status, const char *body, size_t len,
                 quote_result *r, void *ud)
{
    return finnhub_parse(symbol, status, body, len, r, ud);
}

static int finnhub_fetch(provider *p, char *const *symbols, size_t n, quote_result *out)
{
    finnhub *h = p->state;
    char **urls = calloc(n ? n : 1, sizeof(char *));
    int rc = 0, bad = urls == NULL;

    for (size_t i = 0; !bad && i < n; i++) {
        char *sym = curl_easy_escape(NULL, symbols[i], 0);
        char *key = curl_easy_escape(NULL, h->key, 0);
        bad = sym == NULL || key == NULL
            || asprintf(&urls[i], "%s/api/v1/quote?symbol=%s&token=%s", h->base, sym, key) < 0;
        if (bad)
            urls[i] = NULL;
        curl_free(sym);
        curl_free(key);
    }
    if (bad)
        insite_log_error("finnhub: out of memory building URLs");
    else
        rc = provider_http_round(h->f, "finnhub", symbols, n, urls, parse, h->currency, out);
    for (size_t i = 0; urls && i < n; i++)
        free(urls[i]);
    free(urls);
    return rc;
}

static void finnhub_free(provider *p)
{
    finnhub *h = p->state;
    fetch_free(h->f);
    free(h->base);
    free(h->key);
    free(h->currency);
    free(h);
    free(p);
}

provider *provider_finnhub_new(const insite_config *cfg, int abort_fd)
{
    const char *key = insite_config_string(cfg, "provider.finnhub_key");
    provider *p;
    finnhub *h;

    if (*key == '\0') {
        insite_log_error("provider finnhub: provider.finnhub_key (INSITE_PROVIDER_FINNHUB_KEY) is empty");
        return NULL;
    }
    p = calloc(1, sizeof(*p));
    h = calloc(1, sizeof(*h));
    if (p == NULL || h == NULL
        || (h->base = strdup(insite_config_string(cfg, "provider.finnhub_url"))) == NULL
        || (h->key = strdup(key)) == NULL
        || (h->currency = strdup(insite_config_string(cfg, "provider.finnhub_currency"))) == NULL
        || (h->f = provider_http_new(cfg, "finnhub", abort_fd)) == NULL) {
        insite_log_error("finnhub: cannot create the provider");
        if (h) {
            free(h->base);
            free(h->key);
            free(h->currency);
        }
        free(h);
        free(p);
        return NULL;
    }
    size_t len = strlen(h->base);
    while (len > 0 && h->base[len - 1] == '/')
        h->base[--len] = '\0';
    p->name = "finnhub";
    p->fetch = finnhub_fetch;
    p->free = finnhub_free;
    p->state = h;
    insite_log_info("provider finnhub: %s/api/v1/quote", h->base);
    return p;
}
