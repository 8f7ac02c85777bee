/* Word table: open addressing, linear probing, power-of-two capacity. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lexicon.h"

struct lexicon {
    lex_entry *slots;
    size_t cap, count;
};

static uint64_t hash(const char *s, size_t len)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)s[i]) * 1099511628211ULL;
    return h;
}

lexicon *lexicon_new(void)
{
    lexicon *lx = calloc(1, sizeof(*lx));
    if (lx == NULL)
        return NULL;
    lx->cap = 1024;
    lx->slots = calloc(lx->cap, sizeof(*lx->slots));
    if (lx->slots == NULL) {
        free(lx);
        return NULL;
    }
    return lx;
}

void lexicon_free(lexicon *lx)
{
    if (lx == NULL)
        return;
    for (size_t i = 0; i < lx->cap; i++)
        free((char *)lx->slots[i].word);
    free(lx->slots);
    free(lx);
}

size_t lexicon_count(const lexicon *lx)
{
    return lx->count;
}

static lex_entry *find(lex_entry *slots, size_t cap, const char *w, size_t len)
{
    size_t i = hash(w, len) & (cap - 1);
    while (slots[i].word != NULL) {
        if (slots[i].len == len && memcmp(slots[i].word, w, len) == 0)
            return &slots[i];
        i = (i + 1) & (cap - 1);
    }
    return &slots[i];
}

static int grow(lexicon *lx)
{
    size_t cap = lx->cap * 2;
    lex_entry *slots = calloc(cap, sizeof(*slots));
    if (slots == NULL)
        return -1;
    for (size_t i = 0; i < lx->cap; i++)
        if (lx->slots[i].word != NULL)
            *find(slots, cap, lx->slots[i].word, lx->slots[i].len) = lx->slots[i];
    free(lx->slots);
    lx->slots = slots;
    lx->cap = cap;
    return 0;
}

const lex_entry *lexicon_get(const lexicon *lx, const char *word, size_t len)
{
    const lex_entry *e = find(lx->slots, lx->cap, word, len);
    return e->word != NULL ? e : NULL;
}

lex_entry *lexicon_put(lexicon *lx, const char *word, size_t len)
{
    if ((lx->count + 1) * 2 > lx->cap && grow(lx) != 0)
        return NULL;
    lex_entry *e = find(lx->slots, lx->cap, word, len);
    if (e->word != NULL)
        return e;
    char *copy = malloc(len + 1);
    if (copy == NULL)
        return NULL;
    memcpy(copy, word, len);
    copy[len] = '\0';
    memset(e, 0, sizeof(*e));
    e->word = copy;
    e->len = (unsigned)len;
    lx->count++;
    return e;
}

int lexicon_set_valence(lexicon *lx, const char *word, size_t len, double v)
{
    lex_entry *e = lexicon_put(lx, word, len);
    if (e == NULL)
        return -1;
    e->flags |= LEX_VALENCE;
    e->valence = v;
    return 0;
}

/* One row "TOKEN\tMEAN...".  NLTK strips the line first (so a token never
 * starts or ends with blanks) and takes the first two tab fields. */
static int parse_row(lexicon *lx, char *line, const char **why)
{
    size_t n = strlen(line);
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r' || line[n - 1] == ' '))
        line[--n] = '\0';
    char *word = line;
    while (*word == ' ')
        word++;
    char *tab = strchr(word, '\t');
    if (tab == NULL) {
        *why = "no tab after the token";
        return -1;
    }
    char *end;
    errno = 0;
    double v = strtod(tab + 1, &end);
    if (end == tab + 1 || errno != 0 || (*end != '\t' && *end != '\0')) {
        *why = "the mean valence is not a number";
        return -1;
    }
    if (lexicon_set_valence(lx, word, (size_t)(tab - word), v) != 0) {
        *why = "out of memory";
        return -1;
    }
    return 0;
}

long lexicon_load_vader(lexicon *lx, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    char *line = NULL;
    size_t cap = 0;
    long rows = 0, lineno = 0;
    const char *why = NULL;
    while (getline(&line, &cap, f) != -1) {
        lineno++;
        if (line[0] == '\n' || line[0] == '\0')
            continue;   /* the trailing newline of the npm file */
        if (parse_row(lx, line, &why) != 0)
            break;
        rows++;
    }
    free(line);
    fclose(f);
    if (why != NULL) {
        snprintf(err, errlen, "%s:%ld: %s", path, lineno, why);
        return -1;
    }
    if (rows == 0) {
        snprintf(err, errlen, "%s: no lexicon rows", path);
        return -1;
    }
    return rows;
}
