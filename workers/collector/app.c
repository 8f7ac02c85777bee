#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "app.h"
#include "log.h"
#include "store.h"

sym_state *app_symbol(app *a, const char *symbol)
{
    for (size_t i = 0; i < a->nsyms; i++)
        if (strcasecmp(a->syms[i].symbol, symbol) == 0)
            return &a->syms[i];
    if (a->nsyms == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 16;
        sym_state *s = realloc(a->syms, cap * sizeof(*s));
        if (s == NULL) {
            insite_log_error("out of memory for symbol %s", symbol);
            return NULL;
        }
        a->syms = s;
        a->cap = cap;
    }
    int64_t last = store_last_bar(a->pg, symbol);
    sym_state *s = &a->syms[a->nsyms++];
    memset(s, 0, sizeof(*s));
    snprintf(s->symbol, sizeof(s->symbol), "%s", symbol);
    s->last_bar = last > 0 ? last : 0;
    s->last_cum = -1;
    return s;
}

int app_collect(app *a, char *const *symbols, size_t n, app_progress_fn progress,
                void *ud, char *err, size_t errlen)
{
    quote_result *out = calloc(n ? n : 1, sizeof(*out));
    size_t used = 0;
    int ok;

    if (err && errlen)
        err[0] = '\0';
    if (out == NULL) {
        insite_log_error("out of memory for %zu results", n);
        return 0;
    }
    ok = a->prov->fetch(a->prov, symbols, n, out);
    for (size_t i = 0; ok >= 0 && i < n; i++) {
        pipeline_process(a, &out[i]);
        if (!out[i].ok && err && used + 1 < errlen)
            used += (size_t)snprintf(err + used, errlen - used, "%s%s: %s",
                                     used ? "; " : "", symbols[i], out[i].err);
        if (used >= errlen)
            used = errlen - 1;
        if (progress)
            progress(ud, i + 1, n);
    }
    for (size_t i = 0; ok >= 0 && i < n; i++)
        quote_result_clear(&out[i]);
    free(out);
    return ok;
}
