/* Finance overlay: AFINN financial-market-news words and a built-in table. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "finance.h"

#define AFINN_SCALE 0.8   /* AFINN -5..5 -> VADER -4..4 */

/* VADER scale; chosen next to VADER's own neighbours (great 3.1, good 1.9,
 * bad -2.5, crash -1.7, bankrupt -2.6). */
static const struct { const char *word; double valence; } builtin[] = {
    { "bullish", 2.0 }, { "bearish", -2.0 }, { "bull", 1.0 }, { "bear", -1.0 },
    { "beat", 1.5 }, { "beats", 1.5 }, { "miss", -1.5 }, { "missed", -1.5 },
    { "misses", -1.5 }, { "upgrade", 1.8 }, { "upgraded", 1.8 },
    { "downgrade", -1.8 }, { "downgraded", -1.8 }, { "outperform", 1.6 },
    { "underperform", -1.6 }, { "rally", 1.8 }, { "rallied", 1.8 },
    { "surge", 1.8 }, { "surged", 1.8 }, { "plunge", -2.2 }, { "plunged", -2.2 },
    { "tank", -1.8 }, { "tanked", -1.8 }, { "moon", 1.5 }, { "mooning", 2.0 },
    { "tendies", 1.5 }, { "rekt", -2.0 }, { "bagholder", -1.5 },
    { "bagholders", -1.5 }, { "selloff", -1.8 }, { "sell-off", -1.8 },
    { "layoffs", -1.8 }, { "breakout", 1.5 }, { "overvalued", -1.2 },
    { "undervalued", 1.2 }, { "dividend", 0.8 }, { "profit", 1.8 },
    { "profitable", 2.0 }, { "lawsuit", -1.5 }, { "recall", -1.2 },
};

/* AFINN words that read as sentiment only out of finance, or are negators
 * (VADER's negation rule already handles "don't"). */
static const char *const afinn_skip[] = { "don't", "hasn't", "public", "short", "shorts" };

static int skipped(const char *w)
{
    for (size_t i = 0; i < sizeof(afinn_skip) / sizeof(afinn_skip[0]); i++)
        if (strcmp(w, afinn_skip[i]) == 0)
            return 1;
    return 0;
}

/* "  word: -2," / "  'two words': 3," / "  \"don't\": -1," */
static int parse_afinn_line(const char *line, char *word, size_t cap, long *v)
{
    const char *p = line, *b, *e;
    while (*p == ' ' || *p == '\t')
        p++;
    if (*p == '\'' || *p == '"') {
        char q = *p++;
        b = p;
        while (*p && *p != q)
            p++;
        if (*p != q)
            return -1;
        e = p++;
    } else {
        b = p;
        while (isalnum((unsigned char)*p) || *p == '_' || *p == '$')
            p++;
        e = p;
    }
    if (e == b || (size_t)(e - b) >= cap || *p != ':')
        return -1;
    char *end;
    errno = 0;
    *v = strtol(p + 1, &end, 10);
    if (end == p + 1 || errno != 0)
        return -1;
    memcpy(word, b, (size_t)(e - b));
    word[e - b] = '\0';
    return 0;
}

static long load_afinn(lexicon *lx, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    char *line = NULL, word[128];
    size_t cap = 0;
    long added = 0, seen = 0, v;
    while (getline(&line, &cap, f) != -1) {
        if (parse_afinn_line(line, word, sizeof(word), &v) != 0)
            continue;
        seen++;
        const lex_entry *e = lexicon_get(lx, word, strlen(word));
        if (strchr(word, ' ') != NULL || skipped(word) || v == 0
            || (e != NULL && (e->flags & LEX_VALENCE)))
            continue;
        if (lexicon_set_valence(lx, word, strlen(word), (double)v * AFINN_SCALE) != 0) {
            snprintf(err, errlen, "out of memory");
            added = -1;
            break;
        }
        added++;
    }
    free(line);
    fclose(f);
    if (added >= 0 && seen < 1000) {
        snprintf(err, errlen, "%s: only %ld AFINN entries, not the expected list", path, seen);
        return -1;
    }
    return added;
}

long finance_overlay(lexicon *lx, const char *afinn_path, char *err, size_t errlen)
{
    long n = 0;
    if (afinn_path != NULL && *afinn_path && (n = load_afinn(lx, afinn_path, err, errlen)) < 0)
        return -1;
    for (size_t i = 0; i < sizeof(builtin) / sizeof(builtin[0]); i++) {
        if (lexicon_set_valence(lx, builtin[i].word, strlen(builtin[i].word),
                                builtin[i].valence) != 0) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        n++;
    }
    return n;
}

lexicon *finance_tickers(char *const *symbols, size_t n)
{
    lexicon *t = lexicon_new();
    for (size_t i = 0; t != NULL && i < n; i++)
        if (lexicon_put(t, symbols[i], strlen(symbols[i])) == NULL) {
            lexicon_free(t);
            return NULL;
        }
    return t;
}
