/* VADER rules.  Names follow nltk/sentiment/vader.py so the two can be read
 * side by side; indices are those of words_and_emoticons. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "text.h"
#include "vader.h"

#define B_INCR 0.293
#define B_DECR -0.293
#define C_INCR 0.733
#define N_SCALAR -0.74

typedef struct {
    const char *raw;          /* the token NLTK scores (outer punctuation cut) */
    size_t len;
    const char *low;          /* raw.lower(), in the work arena */
    size_t lowlen;
    const lex_entry *e;       /* lookup of low, NULL if unknown */
    uint64_t hash;            /* of raw, to find the first occurrence */
    int first;                /* words_and_emoticons.index(raw) */
    unsigned upper : 1;
    unsigned negated : 1;
} token;

struct vader_work {
    token *tok;
    size_t ntok, tokcap;
    char *arena;
    size_t arenacap, arenalen;
    double *sent;
    size_t sentcap;
    vader_entity *ent;
    size_t nent, entcap;
};

static const char *const negate_words[] = {
    "aint", "arent", "cannot", "cant", "couldnt", "darent", "didnt", "doesnt",
    "ain't", "aren't", "can't", "couldn't", "daren't", "didn't", "doesn't",
    "dont", "hadnt", "hasnt", "havent", "isnt", "mightnt", "mustnt", "neither",
    "don't", "hadn't", "hasn't", "haven't", "isn't", "mightn't", "mustn't",
    "neednt", "needn't", "never", "none", "nope", "nor", "not", "nothing",
    "nowhere", "oughtnt", "shant", "shouldnt", "uhuh", "wasnt", "werent",
    "oughtn't", "shan't", "shouldn't", "uh-uh", "wasn't", "weren't", "without",
    "wont", "wouldnt", "won't", "wouldn't", "rarely", "seldom", "despite",
};

static const char *const boost_up[] = {
    "absolutely", "amazingly", "awfully", "completely", "considerably",
    "decidedly", "deeply", "effing", "enormously", "entirely", "especially",
    "exceptionally", "extremely", "fabulously", "flipping", "flippin",
    "fricking", "frickin", "frigging", "friggin", "fully", "fucking",
    "greatly", "hella", "highly", "hugely", "incredibly", "intensely",
    "majorly", "more", "most", "particularly", "purely", "quite", "really",
    "remarkably", "so", "substantially", "thoroughly", "totally",
    "tremendously", "uber", "unbelievably", "unusually", "utterly", "very",
};

/* "just enough", "kind of", "sort of" contain a space: never a token, they
 * only matter to the bigram test in idioms_check(). */
static const char *const boost_down[] = {
    "almost", "barely", "hardly", "kinda", "kindof", "kind-of", "less",
    "little", "marginally", "occasionally", "partly", "scarcely", "slightly",
    "somewhat", "sorta", "sortof", "sort-of",
};

static const char *const booster_bigrams[][2] = {
    { "just", "enough" }, { "kind", "of" }, { "sort", "of" },
};

typedef struct {
    const char *w[3];
    int n;
    double valence;
} idiom;

static const idiom idioms[] = {
    { { "the", "shit" }, 2, 3 },
    { { "the", "bomb" }, 2, 3 },
    { { "bad", "ass" }, 2, 1.5 },
    { { "yeah", "right" }, 2, -2 },
    { { "cut", "the", "mustard" }, 3, 2 },
    { { "kiss", "of", "death" }, 3, -1.5 },
    { { "hand", "to", "mouth" }, 3, -2 },
};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static int add_words(lexicon *lx, const char *const *words, size_t n,
                     unsigned flag, double booster)
{
    for (size_t i = 0; i < n; i++) {
        lex_entry *e = lexicon_put(lx, words[i], strlen(words[i]));
        if (e == NULL)
            return -1;
        e->flags |= flag;
        if (flag == LEX_BOOSTER)
            e->booster = booster;
    }
    return 0;
}

lexicon *vader_lexicon_new(const char *path, char *err, size_t errlen)
{
    lexicon *lx = lexicon_new();
    if (lx == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (lexicon_load_vader(lx, path, err, errlen) < 0)
        goto fail;
    if (add_words(lx, negate_words, COUNT(negate_words), LEX_NEGATE, 0) != 0
        || add_words(lx, boost_up, COUNT(boost_up), LEX_BOOSTER, B_INCR) != 0
        || add_words(lx, boost_down, COUNT(boost_down), LEX_BOOSTER, B_DECR) != 0) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    return lx;
fail:
    lexicon_free(lx);
    return NULL;
}

vader_work *vader_work_new(void)
{
    return calloc(1, sizeof(vader_work));
}

void vader_work_free(vader_work *w)
{
    if (w == NULL)
        return;
    free(w->tok);
    free(w->arena);
    free(w->sent);
    free(w->ent);
    free(w);
}

size_t vader_entities(const vader_work *w, const vader_entity **list)
{
    *list = w->ent;
    return w->nent;
}

static int reserve(void **p, size_t *cap, size_t need, size_t size)
{
    if (need <= *cap)
        return 0;
    size_t n = *cap ? *cap : 64;
    while (n < need)
        n *= 2;
    void *q = realloc(*p, n * size);
    if (q == NULL)
        return -1;
    *p = q;
    *cap = n;
    return 0;
}

/* ---- tokens ------------------------------------------------------------ */

static int is_punc_list(const char *s, size_t n)
{
    static const char *const list[] = {
        ".", "!", "?", ",", ";", ":", "-", "'", "\"", "!!", "!!!", "??",
        "???", "?!?", "!?!", "?!?!", "!?!?",
    };
    if (n == 0 || n > 4)
        return 0;
    for (size_t i = 0; i < COUNT(list); i++)
        if (strlen(list[i]) == n && memcmp(list[i], s, n) == 0)
            return 1;
    return 0;
}

static int has_punct(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (text_is_punct((unsigned char)s[i]))
            return 1;
    return 0;
}

/* SentiText._words_and_emoticons(): "cat," -> "cat" when the token is one
 * PUNC_LIST item before or after a punctuation-free word of 2+ code points
 * (that word is then always in _words_plus_punc()'s table). */
static void cut_punctuation(const char **s, size_t *n)
{
    size_t lead = 0, trail = 0;
    while (lead < *n && text_is_punct((unsigned char)(*s)[lead]))
        lead++;
    if (lead == *n)
        return;
    while (trail < *n && text_is_punct((unsigned char)(*s)[*n - 1 - trail]))
        trail++;
    if ((lead > 0) == (trail > 0))
        return;
    const char *w = *s + lead;
    size_t wn = *n - lead - trail;
    if (!is_punc_list(lead ? *s : w + wn, lead ? lead : trail)
        || has_punct(w, wn) || text_codepoints(w, wn) < 2)
        return;
    *s = w;
    *n = wn;
}

static uint64_t hash_bytes(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 1099511628211ULL;
    return h;
}

static int is_alpha_run(const char *s, size_t n, size_t max)
{
    if (n == 0 || n > max)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= 'a' && s[i] <= 'z')))
            return 0;
    return 1;
}

/* Cashtag "$AAPL" / "$brk.b", or a known ticker in capitals ("AAPL"),
 * ignoring surrounding punctuation. */
static int is_entity(const vader_model *m, const char *s, size_t n,
                     const char **sym, size_t *symlen)
{
    while (n > 0 && text_is_punct((unsigned char)s[n - 1]))
        n--;
    while (n > 0 && (*s == '(' || *s == '"' || *s == '\'')) {
        s++;
        n--;
    }
    if (n >= 2 && s[0] == '$') {
        const char *dot = memchr(s + 1, '.', n - 1);
        size_t base = dot ? (size_t)(dot - s - 1) : n - 1;
        if (is_alpha_run(s + 1, base, 6)
            && (dot == NULL || is_alpha_run(dot + 1, n - 2 - base, 2))) {
            *sym = s + 1;
            *symlen = n - 1;
            return 1;
        }
        return 0;
    }
    if (m->tickers != NULL && is_alpha_run(s, n, 6) && text_is_upper(s, n)
        && lexicon_get(m->tickers, s, n) != NULL) {
        *sym = s;
        *symlen = n;
        return 1;
    }
    return 0;
}

static int add_token(vader_work *w, const lexicon *lx, const char *s, size_t n)
{
    if (reserve((void **)&w->tok, &w->tokcap, w->ntok + 1, sizeof(token)) != 0)
        return -1;
    token *t = &w->tok[w->ntok];
    t->raw = s;
    t->len = n;
    char *low = w->arena + w->arenalen;
    t->lowlen = text_lower(s, n, low);
    t->low = low;
    w->arenalen += t->lowlen;
    t->e = lexicon_get(lx, low, t->lowlen);
    t->upper = (unsigned)text_is_upper(s, n);
    t->negated = (t->e != NULL && (t->e->flags & LEX_NEGATE))
                 || memmem(low, t->lowlen, "n't", 3) != NULL;
    t->hash = hash_bytes(s, n);
    t->first = (int)w->ntok;
    for (size_t k = 0; k < w->ntok; k++)
        if (w->tok[k].hash == t->hash && w->tok[k].len == n
            && memcmp(w->tok[k].raw, s, n) == 0) {
            t->first = (int)k;
            break;
        }
    w->ntok++;
    return 0;
}

static int add_entity(vader_work *w, const char *s, size_t n)
{
    if (reserve((void **)&w->ent, &w->entcap, w->nent + 1, sizeof(vader_entity)) != 0)
        return -1;
    w->ent[w->nent].s = s;
    w->ent[w->nent].len = n;
    w->nent++;
    return 0;
}

static int tokenize(const vader_model *m, vader_work *w, const char *text, size_t len)
{
    w->ntok = w->nent = w->arenalen = 0;
    if (reserve((void **)&w->arena, &w->arenacap, 2 * len + 1, 1) != 0)
        return -1;
    size_t pos = 0, n;
    const char *s, *sym;
    while (text_next_token(text, len, &pos, &s, &n)) {
        if (m->entities && is_entity(m, s, n, &sym, &n)) {
            if (add_entity(w, sym, n) != 0)
                return -1;
            continue;
        }
        if (n < 5 && text_codepoints(s, n) < 2)
            continue;   /* singletons are dropped */
        cut_punctuation(&s, &n);
        if (add_token(w, m->lex, s, n) != 0)
            return -1;
    }
    return 0;
}

/* ---- rules ------------------------------------------------------------- */

static int low_is(const token *t, const char *word)
{
    size_t n = strlen(word);
    return t->lowlen == n && memcmp(t->low, word, n) == 0;
}

static int raw_is(const token *t, const char *word)
{
    size_t n = strlen(word);
    return t->len == n && memcmp(t->raw, word, n) == 0;
}

static int in_lexicon(const token *t)
{
    return t->e != NULL && (t->e->flags & LEX_VALENCE);
}

static int is_booster(const token *t)
{
    return t->e != NULL && (t->e->flags & LEX_BOOSTER);
}

/* SentiText.allcap_differential() */
static int cap_differential(const vader_work *w)
{
    size_t caps = 0;
    for (size_t i = 0; i < w->ntok; i++)
        caps += w->tok[i].upper;
    return caps > 0 && caps < w->ntok;
}

/* VaderConstants.scalar_inc_dec() */
static double scalar_inc_dec(const token *t, double valence, int cap_diff)
{
    if (!is_booster(t))
        return 0.0;
    double scalar = t->e->booster;
    if (valence < 0)
        scalar *= -1;
    if (t->upper && cap_diff)
        scalar += valence > 0 ? C_INCR : -C_INCR;
    return scalar;
}

static int so_or_this(const token *t)
{
    return raw_is(t, "so") || raw_is(t, "this");
}

static double never_check(double valence, const token *tk, int start_i, int i)
{
    if (start_i == 0) {
        if (tk[i - 1].negated)
            valence *= N_SCALAR;
    } else if (start_i == 1) {
        if (raw_is(&tk[i - 2], "never") && so_or_this(&tk[i - 1]))
            valence *= 1.5;
        else if (tk[i - 2].negated)
            valence *= N_SCALAR;
    } else {
        /* (never and (so or this)) or (so or this), as written upstream */
        if ((raw_is(&tk[i - 3], "never") && so_or_this(&tk[i - 2]))
            || so_or_this(&tk[i - 1]))
            valence *= 1.25;
        else if (tk[i - 3].negated)
            valence *= N_SCALAR;
    }
    return valence;
}

/* Is tk[from .. from+n) the idiom's words (case-sensitive)? */
static int seq_is(const token *tk, int from, const char *const *words, int n)
{
    for (int k = 0; k < n; k++)
        if (!raw_is(&tk[from + k], words[k]))
            return 0;
    return 1;
}

static const idiom *idiom_at(const token *tk, int from, int n)
{
    for (size_t k = 0; k < COUNT(idioms); k++)
        if (idioms[k].n == n && seq_is(tk, from, idioms[k].w, n))
            return &idioms[k];
    return NULL;
}

static int booster_bigram_at(const token *tk, int from)
{
    for (size_t k = 0; k < COUNT(booster_bigrams); k++)
        if (seq_is(tk, from, booster_bigrams[k], 2))
            return 1;
    return 0;
}

static double idioms_check(double valence, const token *tk, int n, int i)
{
    /* onezero, twoonezero, twoone, threetwoone, threetwo: first match wins */
    static const int seqs[5][2] = { { -1, 2 }, { -2, 3 }, { -2, 2 }, { -3, 3 }, { -3, 2 } };
    for (int k = 0; k < 5; k++) {
        const idiom *id = idiom_at(tk, i + seqs[k][0], seqs[k][1]);
        if (id != NULL) {
            valence = id->valence;
            break;
        }
    }
    const idiom *id;
    if (n - 1 > i && (id = idiom_at(tk, i, 2)) != NULL)
        valence = id->valence;
    if (n - 1 > i + 1 && (id = idiom_at(tk, i, 3)) != NULL)
        valence = id->valence;
    if (booster_bigram_at(tk, i - 3) || booster_bigram_at(tk, i - 2))
        valence += B_DECR;
    return valence;
}

static double least_check(double valence, const token *tk, int i)
{
    if (i > 1 && !in_lexicon(&tk[i - 1]) && low_is(&tk[i - 1], "least")) {
        if (!low_is(&tk[i - 2], "at") && !low_is(&tk[i - 2], "very"))
            valence *= N_SCALAR;
    } else if (i > 0 && !in_lexicon(&tk[i - 1]) && low_is(&tk[i - 1], "least")) {
        valence *= N_SCALAR;
    }
    return valence;
}

static double sentiment_valence(const vader_work *w, int i, int cap_diff)
{
    const token *tk = w->tok;
    if (!in_lexicon(&tk[i]))
        return 0;
    double valence = tk[i].e->valence;
    if (tk[i].upper && cap_diff)
        valence += valence > 0 ? C_INCR : -C_INCR;
    for (int start_i = 0; start_i < 3; start_i++) {
        if (i <= start_i || in_lexicon(&tk[i - (start_i + 1)]))
            continue;
        double s = scalar_inc_dec(&tk[i - (start_i + 1)], valence, cap_diff);
        if (start_i == 1 && s != 0)
            s = s * 0.95;
        if (start_i == 2 && s != 0)
            s = s * 0.9;
        valence = valence + s;
        valence = never_check(valence, tk, start_i, i);
        if (start_i == 2)
            valence = idioms_check(valence, tk, (int)w->ntok, i);
    }
    return least_check(valence, tk, i);
}

static void but_check(const vader_work *w, double *sent)
{
    size_t bi;
    for (bi = 0; bi < w->ntok; bi++)
        if (low_is(&w->tok[bi], "but"))
            break;
    if (bi == w->ntok)
        return;
    for (size_t k = 0; k < w->ntok; k++) {
        if (k < bi)
            sent[k] *= 0.5;
        else if (k > bi)
            sent[k] *= 1.5;
    }
}

/* ---- scores ------------------------------------------------------------ */

double vader_round(double x, int places)
{
    static const double scale[] = { 1, 10, 100, 1e3, 1e4, 1e5, 1e6 };
    double y = x * scale[places];
    double f = floor(y);
    if (fabs(y - f - 0.5) > 1e-6)   /* not near a tie: the product is exact enough */
        return nearbyint(y) / scale[places];
    char buf[64];
    snprintf(buf, sizeof(buf), "%.*f", places, x);   /* exact, ties to even */
    return strtod(buf, NULL);
}

static double punctuation_emphasis(const char *text, size_t len)
{
    size_t ep = 0, qm = 0;
    for (size_t k = 0; k < len; k++) {
        ep += text[k] == '!';
        qm += text[k] == '?';
    }
    if (ep > 4)
        ep = 4;
    double amp = (double)ep * 0.292;
    if (qm > 1)
        amp += qm <= 3 ? (double)qm * 0.18 : 0.96;
    return amp;
}

static void score_valence(const double *sent, size_t n, const char *text,
                          size_t len, vader_scores *out)
{
    memset(out, 0, sizeof(*out));
    out->tokens = n;
    if (n == 0)
        return;
    double sum_s = 0.0;
    for (size_t k = 0; k < n; k++)
        sum_s += sent[k];
    double amp = punctuation_emphasis(text, len);
    if (sum_s > 0)
        sum_s += amp;
    else if (sum_s < 0)
        sum_s -= amp;
    double compound = sum_s / sqrt(sum_s * sum_s + 15);

    double pos_sum = 0.0, neg_sum = 0.0;
    size_t neu_count = 0;
    for (size_t k = 0; k < n; k++) {
        if (sent[k] > 0)
            pos_sum += sent[k] + 1;
        if (sent[k] < 0)
            neg_sum += sent[k] - 1;
        if (sent[k] == 0)
            neu_count++;
    }
    if (pos_sum > fabs(neg_sum))
        pos_sum += amp;
    else if (pos_sum < fabs(neg_sum))
        neg_sum -= amp;
    double total = pos_sum + fabs(neg_sum) + (double)neu_count;
    out->raw_compound = compound;
    out->compound = vader_round(compound, 4);
    out->pos = vader_round(fabs(pos_sum / total), 3);
    out->neg = vader_round(fabs(neg_sum / total), 3);
    out->neu = vader_round(fabs((double)neu_count / total), 3);
}

int vader_score(const vader_model *m, vader_work *w, const char *text,
                size_t len, vader_scores *out)
{
    if (tokenize(m, w, text, len) != 0
        || reserve((void **)&w->sent, &w->sentcap, w->ntok + 1, sizeof(double)) != 0) {
        insite_log_error("vader: out of memory scoring %zu bytes", len);
        return -1;
    }
    int cap_diff = cap_differential(w);
    const token *tk = w->tok;
    int n = (int)w->ntok;
    for (int j = 0; j < n; j++) {
        int i = tk[j].first;
        if ((i < n - 1 && low_is(&tk[i], "kind") && low_is(&tk[i + 1], "of"))
            || is_booster(&tk[i]))
            w->sent[j] = 0;
        else
            w->sent[j] = sentiment_valence(w, i, cap_diff);
    }
    but_check(w, w->sent);
    score_valence(w->sent, w->ntok, text, len, out);
    return 0;
}
