/* Yahoo Finance chart API: GET <base>/v8/finance/chart/<symbol>?interval=1m&range=1d
 * for every symbol at once; the quote comes from meta, the bars from the
 * 1-minute arrays (chart.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "chart.h"
#include "fetch.h"
#include "log.h"
#include "provider.h"

typedef struct {
    fetch *f;
    char *base;
} yahoo;

static int parse(const char *symbol, long status, const char *body, size_t len,
                 quote_result *r, void *ud)
{
    int rc = chart_parse(symbol, status, body, len, r);
    r->q.source = "yahoo";
    return rc;
}

static int yahoo_fetch(provider *p, char *const *symbols, size_t n, quote_result *out)
{
    yahoo *y = p->state;
    char **urls = calloc(n ? n : 1, sizeof(char *));
    int rc = 0;

    for (size_t i = 0; urls && i < n; i++) {
        char *sym = curl_easy_escape(NULL, symbols[i], 0);
        if (sym == NULL || asprintf(&urls[i], "%s/v8/finance/chart/%s?interval=1m&range=1d",
                                    y->base, sym) < 0)
            urls[i] = NULL;
        curl_free(sym);
        if (urls[i] == NULL) {
            insite_log_error("yahoo: out of memory building URLs");
            rc = -2;
        }
    }
    if (urls == NULL)
        rc = -2;
    if (rc == 0)
        rc = provider_http_round(y->f, "yahoo", symbols, n, urls, parse, NULL, out);
    else
        rc = 0;
    for (size_t i = 0; urls && i < n; i++)
        free(urls[i]);
    free(urls);
    return rc;
}

static void yahoo_free(provider *p)
{
    yahoo *y = p->state;
    fetch_free(y->f);
    free(y->base);
    free(y);
    free(p);
}

provider *provider_yahoo_new(const insite_config *cfg, int abort_fd)
{
    provider *p = calloc(1, sizeof(*p));
    yahoo *y = calloc(1, sizeof(*y));
    const char *base = insite_config_string(cfg, "provider.yahoo_url");
    size_t len = strlen(base);

    if (p == NULL || y == NULL || (y->base = strdup(base)) == NULL
        || (y->f = provider_http_new(cfg, "yahoo", abort_fd)) == NULL) {
        insite_log_error("yahoo: cannot create the provider");
        if (y)
            free(y->base);
        free(y);
        free(p);
        return NULL;
    }
    while (len > 0 && y->base[len - 1] == '/')
        y->base[--len] = '\0';
    p->name = "yahoo";
    p->fetch = yahoo_fetch;
    p->free = yahoo_free;
    p->state = y;
    insite_log_info("provider yahoo: %s/v8/finance/chart/<symbol>?interval=1m&range=1d", y->base);
    return p;
}
