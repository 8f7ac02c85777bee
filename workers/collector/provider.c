/* Provider factory, the shared HTTP settings, and the `auto` feed. */
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "fetch.h"
#include "log.h"
#include "provider.h"

#define UA "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) " \
           "Chrome/124.0.0.0 Safari/537.36 insite-collector/0.1"

const insite_config_key provider_config_keys[] = {
    { "provider.feed", INSITE_CFG_STRING, "auto", 0, 0,
      "yahoo, finnhub, replay, simulated, or auto (yahoo, falling back)" },
    { "provider.fallback", INSITE_CFG_STRING, "replay", 0, 0,
      "auto: feed used while yahoo fails (replay or simulated)" },
    { "provider.fail_rounds", INSITE_CFG_INT, "3", 1, 1000,
      "auto: rounds in which every symbol failed before falling back" },
    { "provider.retry_primary", INSITE_CFG_DURATION, "5m", 1000, 86400000,
      "auto: how long to stay on the fallback before trying yahoo again" },
    { "provider.yahoo_url", INSITE_CFG_STRING, "https://query1.finance.yahoo.com", 0, 0,
      "Yahoo base URL; requests go to <url>/v8/finance/chart/<symbol>?interval=1m&range=1d" },
    { "provider.finnhub_url", INSITE_CFG_STRING, "https://finnhub.io", 0, 0,
      "Finnhub base URL; requests go to <url>/api/v1/quote?symbol=<symbol>&token=<key>" },
    { "provider.finnhub_key", INSITE_CFG_STRING, "", 0, 0, "Finnhub API key (required for finnhub)" },
    { "provider.finnhub_currency", INSITE_CFG_STRING, "USD", 0, 0,
      "currency reported for Finnhub quotes (its /quote has none)" },
    { "provider.replay_files", INSITE_CFG_STRING_LIST, "", 0, 0,
      "replay: recorded Yahoo chart responses; the symbol is read from meta.symbol" },
    { "provider.replay_step", INSITE_CFG_INT, "1", 1, 1000, "replay: recorded bars advanced per round" },
    { "provider.sim_seed", INSITE_CFG_INT, "0", 0, 0, "simulated: PRNG seed, 0 = from the clock" },
    { "provider.sim_start", INSITE_CFG_DOUBLE, "100", 0.01, 1e9, "simulated: first price of every symbol" },
    { "provider.sim_volatility", INSITE_CFG_DOUBLE, "0.002", 0, 0.5,
      "simulated: standard deviation of one step's relative change" },
    { "provider.timeout", INSITE_CFG_DURATION, "10s", 100, 600000, "HTTP: whole-transfer timeout" },
    { "provider.connect_timeout", INSITE_CFG_DURATION, "3s", 100, 600000, "HTTP: connect timeout" },
    { "provider.retries", INSITE_CFG_INT, "2", 0, 10, "HTTP: retries after 5xx, timeouts, 429" },
    { "provider.backoff", INSITE_CFG_DURATION, "500ms", 1, 600000, "HTTP: first retry delay (doubles, jittered)" },
    { "provider.backoff_max", INSITE_CFG_DURATION, "8s", 1, 600000, "HTTP: retry delay cap" },
    { "provider.retry_after_max", INSITE_CFG_DURATION, "10s", 0, 3600000,
      "HTTP: longest Retry-After waited for inside a round; longer ones skip the host until then" },
    { "provider.max_parallel", INSITE_CFG_INT, "16", 1, 256, "HTTP: concurrent transfers" },
    { "provider.user_agent", INSITE_CFG_STRING, UA, 0, 0, "HTTP: User-Agent header" },
};
const size_t provider_config_nkeys = sizeof(provider_config_keys) / sizeof(provider_config_keys[0]);

struct fetch *provider_http_new(const insite_config *cfg, const char *name, int abort_fd)
{
    fetch_options o = {
        .provider = name,
        .user_agent = insite_config_string(cfg, "provider.user_agent"),
        .timeout_ms = (int)insite_config_duration_ms(cfg, "provider.timeout"),
        .connect_timeout_ms = (int)insite_config_duration_ms(cfg, "provider.connect_timeout"),
        .retries = (int)insite_config_int(cfg, "provider.retries"),
        .backoff_ms = (int)insite_config_duration_ms(cfg, "provider.backoff"),
        .backoff_max_ms = (int)insite_config_duration_ms(cfg, "provider.backoff_max"),
        .retry_after_max_ms = (int)insite_config_duration_ms(cfg, "provider.retry_after_max"),
        .max_parallel = (int)insite_config_int(cfg, "provider.max_parallel"),
        .abort_fd = abort_fd,
    };
    return fetch_new(&o);
}

typedef struct {
    provider *primary, *fallback;
    const insite_config *cfg;
    int fail_rounds, failed;
    long long retry_ms, fell_at;  /* monotonic ms; 0 = on primary */
} auto_state;

static int auto_fetch(provider *p, char *const *symbols, size_t n, quote_result *out)
{
    auto_state *a = p->state;
    long long now = insite_clock_mono_ms();

    if (a->fell_at && now - a->fell_at >= a->retry_ms) {
        insite_log_info("provider auto: trying yahoo again");
        a->fell_at = 0;
        a->failed = 0;
    }
    if (a->fell_at)
        return a->fallback->fetch(a->fallback, symbols, n, out);

    int ok = a->primary->fetch(a->primary, symbols, n, out);
    if (ok != 0 || n == 0) {
        a->failed = 0;
        return ok;
    }
    if (++a->failed < a->fail_rounds)
        return 0;
    if (a->fallback == NULL) {
        const char *fb = insite_config_string(a->cfg, "provider.fallback");
        a->fallback = strcmp(fb, "simulated") == 0 ? provider_simulated_new(a->cfg)
                                                   : provider_replay_new(a->cfg);
        if (a->fallback == NULL)
            return 0;
    }
    insite_log_warn("provider auto: yahoo failed for every symbol in %d rounds in a row; "
                    "falling back to the %s feed (yahoo again in %llds)",
                    a->failed, a->fallback->name, a->retry_ms / 1000);
    a->fell_at = now;
    return a->fallback->fetch(a->fallback, symbols, n, out);
}

static void auto_free(provider *p)
{
    auto_state *a = p->state;
    provider_free(a->primary);
    provider_free(a->fallback);
    free(a);
    free(p);
}

static provider *auto_new(const insite_config *cfg, int abort_fd)
{
    provider *p = calloc(1, sizeof(*p));
    auto_state *a = calloc(1, sizeof(*a));

    if (p == NULL || a == NULL || (a->primary = provider_yahoo_new(cfg, abort_fd)) == NULL) {
        free(p);
        free(a);
        return NULL;
    }
    a->cfg = cfg;
    a->fail_rounds = (int)insite_config_int(cfg, "provider.fail_rounds");
    a->retry_ms = insite_config_duration_ms(cfg, "provider.retry_primary");
    p->name = "auto";
    p->fetch = auto_fetch;
    p->free = auto_free;
    p->state = a;
    return p;
}

provider *provider_new(const insite_config *cfg, int abort_fd)
{
    const char *feed = insite_config_string(cfg, "provider.feed");

    if (strcmp(feed, "yahoo") == 0)
        return provider_yahoo_new(cfg, abort_fd);
    if (strcmp(feed, "finnhub") == 0)
        return provider_finnhub_new(cfg, abort_fd);
    if (strcmp(feed, "replay") == 0)
        return provider_replay_new(cfg);
    if (strcmp(feed, "simulated") == 0)
        return provider_simulated_new(cfg);
    if (strcmp(feed, "auto") == 0)
        return auto_new(cfg, abort_fd);
    insite_log_error("provider.feed \"%s\" is not yahoo, finnhub, replay, simulated or auto", feed);
    return NULL;
}

void provider_free(provider *p)
{
    if (p != NULL)
        p->free(p);
}

int provider_http_round(struct fetch *f, const char *name, char *const *symbols, size_t n,
                        char **urls, provider_parse_fn parse, void *ud, quote_result *out)
{
    fetch_req *reqs = calloc(n ? n : 1, sizeof(*reqs));
    int ok = 0;

    if (reqs == NULL) {
        insite_log_error("%s: out of memory for %zu requests", name, n);
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        reqs[i].url = urls[i];
        reqs[i].label = symbols[i];
    }
    int rc = fetch_run(f, reqs, n);
    for (size_t i = 0; i < n && rc >= 0; i++) {
        quote_result *r = &out[i];
        fetch_req *q = &reqs[i];
        memset(r, 0, sizeof(*r));
        snprintf(r->symbol, sizeof(r->symbol), "%s", symbols[i]);
        if (q->status == 0 || q->status == 429 || q->status >= 500) {
            snprintf(r->err, sizeof(r->err), "%s after %d attempt%s", q->err, q->attempts,
                     q->attempts == 1 ? "" : "s");
        } else if (parse(symbols[i], q->status, q->body ? q->body : "", q->len, r, ud) == 0) {
            ok++;
            continue;
        }
        insite_log_warn("%s %s: rejected: %s", name, symbols[i], r->err);
    }
    fetch_reqs_clear(reqs, n);
    free(reqs);
    return rc < 0 ? -1 : ok;
}
