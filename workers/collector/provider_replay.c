/* The replay feed: recorded Yahoo chart responses played back as a live
 * feed.  Each round re-parses the recording with chart_parse() (the yahoo
 * provider's own path) and moves a cursor provider.replay_step bars on:
 * the quote is that bar's close, the volume the recording's running total,
 * stamped with the current time; bars are then built from these quotes like
 * for any quote-only feed.  At the end the recording starts over. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <jansson.h>

#include "chart.h"
#include "log.h"
#include "provider.h"

typedef struct {
    char symbol[SYMBOL_MAX];
    char *body;
    size_t len;
    size_t cursor;
} recording;

typedef struct {
    recording *r;
    size_t n;
    int step;
} replay;

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    long n;

    if (f == NULL)
        return NULL;
    if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0
        && (buf = malloc((size_t)n + 1)) != NULL) {
        *len = fread(buf, 1, (size_t)n, f);
        buf[*len] = '\0';
    }
    fclose(f);
    return buf;
}

/* Loads one file and checks that it parses; 0 or -1 (logged). */
static int load(recording *rec, const char *path)
{
    json_t *root;
    const char *sym;
    quote_result qr = { 0 };

    if ((rec->body = slurp(path, &rec->len)) == NULL) {
        insite_log_error("replay: cannot read %s: %m", path);
        return -1;
    }
    root = json_loadb(rec->body, rec->len, 0, NULL);
    sym = json_string_value(json_object_get(json_object_get(json_array_get(
        json_object_get(json_object_get(root, "chart"), "result"), 0), "meta"), "symbol"));
    if (sym == NULL || !symbol_valid(sym)) {
        insite_log_error("replay: %s: no valid chart.result[0].meta.symbol", path);
        json_decref(root);
        return -1;
    }
    snprintf(rec->symbol, sizeof(rec->symbol), "%s", sym);
    json_decref(root);
    if (chart_parse(rec->symbol, 200, rec->body, rec->len, &qr) != 0 || qr.nbars == 0) {
        insite_log_error("replay: %s: %s", path, qr.ok ? "no complete bars" : qr.err);
        quote_result_clear(&qr);
        return -1;
    }
    insite_log_info("replay: %s: %s, %zu %s bars", path, rec->symbol, qr.nbars, qr.interval);
    quote_result_clear(&qr);
    return 0;
}

static int play(replay *rp, recording *rec, quote_result *r)
{
    if (chart_parse(rec->symbol, 200, rec->body, rec->len, r) != 0 || r->nbars == 0)
        return -1;
    if (rec->cursor >= r->nbars) {
        insite_log_info("replay %s: end of the recording, starting over", rec->symbol);
        rec->cursor = 0;
    }
    long long vol = 0;
    for (size_t i = 0; i <= rec->cursor; i++)
        vol += r->bars[i].volume;
    r->q.price = r->bars[rec->cursor].close;
    r->q.volume = vol;
    r->q.market_time = time(NULL);
    r->q.source = "replay";
    rec->cursor += (size_t)rp->step;
    quote_result_clear(r);                 /* bars come from the aggregator */
    r->interval[0] = '\0';
    r->skipped = 0;
    return 0;
}

static int replay_fetch(provider *p, char *const *symbols, size_t n, quote_result *out)
{
    replay *rp = p->state;
    int ok = 0;

    for (size_t i = 0; i < n; i++) {
        quote_result *r = &out[i];
        recording *rec = NULL;
        memset(r, 0, sizeof(*r));
        snprintf(r->symbol, sizeof(r->symbol), "%s", symbols[i]);
        for (size_t j = 0; j < rp->n && rec == NULL; j++)
            if (strcasecmp(rp->r[j].symbol, symbols[i]) == 0)
                rec = &rp->r[j];
        if (rec == NULL)
            snprintf(r->err, sizeof(r->err), "no recording in provider.replay_files");
        else if (play(rp, rec, r) == 0)
            ok++;
        else
            insite_log_warn("replay %s: rejected: %s", symbols[i], r->err);
    }
    return ok;
}

static void replay_free(provider *p)
{
    replay *rp = p->state;
    for (size_t i = 0; i < rp->n; i++)
        free(rp->r[i].body);
    free(rp->r);
    free(rp);
    free(p);
}

provider *provider_replay_new(const insite_config *cfg)
{
    char *const *files;
    size_t n = insite_config_list(cfg, "provider.replay_files", &files);
    provider *p = calloc(1, sizeof(*p));
    replay *rp = calloc(1, sizeof(*rp));

    if (p == NULL || rp == NULL || (rp->r = calloc(n ? n : 1, sizeof(recording))) == NULL) {
        insite_log_error("replay: out of memory");
        free(rp);
        free(p);
        return NULL;
    }
    p->name = "replay";
    p->fetch = replay_fetch;
    p->free = replay_free;
    p->state = rp;
    rp->step = (int)insite_config_int(cfg, "provider.replay_step");
    for (size_t i = 0; i < n; i++) {
        if (load(&rp->r[rp->n], files[i]) != 0) {
            free(rp->r[rp->n].body);
            replay_free(p);
            return NULL;
        }
        rp->n++;
    }
    if (rp->n == 0) {
        insite_log_error("replay: provider.replay_files is empty");
        replay_free(p);
        return NULL;
    }
    return p;
}
