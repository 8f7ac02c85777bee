/* Word table for sentiment scoring: lowercase token -> what VADER knows about
 * it (lexicon valence, booster/dampener scalar, negation word).  Open
 * addressing with FNV-1a; built once at start, read-only afterwards, so
 * lookups need no lock. */
#ifndef ANALYTICS_LEXICON_H
#define ANALYTICS_LEXICON_H

#include <stddef.h>

#define LEX_VALENCE 1   /* valence is set: the word is in the lexicon */
#define LEX_BOOSTER 2   /* booster is set */
#define LEX_NEGATE  4   /* in VADER's NEGATE list */

typedef struct {
    const char *word;   /* NUL-terminated, owned by the table */
    unsigned len;
    unsigned flags;
    double valence;
    double booster;
} lex_entry;

typedef struct lexicon lexicon;

lexicon *lexicon_new(void);
void lexicon_free(lexicon *lx);

/* Finds or adds word; NULL on out of memory. */
lex_entry *lexicon_put(lexicon *lx, const char *word, size_t len);
const lex_entry *lexicon_get(const lexicon *lx, const char *word, size_t len);
size_t lexicon_count(const lexicon *lx);

/* Sets the valence (later calls overwrite: the reference keeps the last row
 * of a duplicated token).  0, or -1 on out of memory. */
int lexicon_set_valence(lexicon *lx, const char *word, size_t len, double v);

/* VADER's lexicon file: TOKEN \t MEAN [\t ...] per line.  Returns the rows
 * read, or -1 with "path:line: reason" in err. */
long lexicon_load_vader(lexicon *lx, const char *path, char *err, size_t errlen);

#endif
