/* Quote providers: one small interface, one file each.
 *
 *   yahoo      Yahoo Finance chart API, all symbols in parallel (fetch.c)
 *   finnhub    Finnhub /api/v1/quote, keyed (provider.finnhub.api_key)
 *   replay     recorded chart responses, through the yahoo parser
 *   simulated  random walk, labelled "source":"simulated"
 *   auto       yahoo; after provider.auto.fail_rounds rounds in which every
 *              symbol failed, the fallback feed with a warning, and yahoo
 *              again every provider.auto.retry_primary
 *
 * fetch() fills out[i] for symbols[i]; it never publishes anything. */
#ifndef COLLECTOR_PROVIDER_H
#define COLLECTOR_PROVIDER_H

#include <stddef.h>

#include "collector.h"
#include "config.h"

typedef struct provider provider;

struct provider {
    const char *name;
    /* Returns the number of valid results, or -1 if the round was aborted
     * (shutdown). */
    int (*fetch)(provider *p, char *const *symbols, size_t n, quote_result *out);
    void (*free)(provider *p);
    void *state;
};

extern const insite_config_key provider_config_keys[];
extern const size_t provider_config_nkeys;

/* Builds the provider named by provider.feed.  abort_fd (the signalfd)
 * interrupts long rounds.  NULL on error (logged: unknown feed, missing
 * key, unreadable replay files). */
provider *provider_new(const insite_config *cfg, int abort_fd);
void provider_free(provider *p);

provider *provider_yahoo_new(const insite_config *cfg, int abort_fd);
provider *provider_finnhub_new(const insite_config *cfg, int abort_fd);
provider *provider_replay_new(const insite_config *cfg);
provider *provider_simulated_new(const insite_config *cfg);

/* Finnhub /api/v1/quote body -> r (exposed for tests).  0, or -1 with r->err. */
int finnhub_parse(const char *symbol, long status, const char *body, size_t len,
                  quote_result *r, const char *currency);

/* fetch.c options from the provider.http.* keys. */
struct fetch;
struct fetch *provider_http_new(const insite_config *cfg, const char *name, int abort_fd);



/* One round of per-symbol GETs (urls[i] for symbols[i]) parsed by parse;
 * logs one line per symbol that failed, with the cause.  For yahoo and
 * finnhub. */
typedef int (*provider_parse_fn)(const char *symbol, long status, const char *body,
                                 size_t len, quote_result *r, void *ud);
int provider_http_round(struct fetch *f, const char *name, char *const *symbols, size_t n,
                        char **urls, provider_parse_fn parse, void *ud, quote_result *out);
#endif
