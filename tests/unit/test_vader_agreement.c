/* Agreement of our VADER with the reference, NLTK's nltk.sentiment.vader,
 * on the corpus of tests/vader/corpus.py (templates + real posts from
 * ../shared/fixtures): compound, pos, neg and neu within 1e-3 for >= 99% of
 * the sentences.  Needs python3-nltk (scripts/deps.sh) and the npm lexicon
 * (scripts/lexicons.sh, run here when INSITE_ANALYTICS_VADER_LEXICON is not
 * set).  Every disagreement is printed; docs/analytics.md explains them. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "log.h"
#include "../../workers/analytics/lexicon.h"
#include "../../workers/analytics/text.h"
#include "../../workers/analytics/vader.h"

#define TOLERANCE 1e-3
#define PYTHON "/usr/bin/python3"

static char lexicon_path[4200];

/* INSITE_ANALYTICS_VADER_LEXICON, else the path scripts/lexicons.sh prints. */
static int find_lexicon(void)
{
    const char *env = getenv("INSITE_ANALYTICS_VADER_LEXICON");
    if (env != NULL && *env) {
        snprintf(lexicon_path, sizeof(lexicon_path), "%s", env);
        return 0;
    }
    FILE *p = popen("scripts/lexicons.sh", "r");
    char line[4096];
    const char *key = "INSITE_ANALYTICS_VADER_LEXICON=";
    while (p != NULL && fgets(line, sizeof(line), p) != NULL)
        if (strncmp(line, key, strlen(key)) == 0) {
            line[strcspn(line, "\n")] = '\0';
            snprintf(lexicon_path, sizeof(lexicon_path), "%s", line + strlen(key));
        }
    if (p == NULL || pclose(p) != 0 || lexicon_path[0] == '\0') {
        fprintf(stderr, "scripts/lexicons.sh failed: no lexicon\n");
        return -1;
    }
    return 0;
}

static int close_to(json_t *ref, const char *key, double ours)
{
    return fabs(json_real_value(json_object_get(ref, key)) - ours) <= TOLERANCE;
}

static void test_agreement(void **state)
{
    char err[512], cmd[8400];
    assert_int_equal(find_lexicon(), 0);
    lexicon *lx = vader_lexicon_new(lexicon_path, err, sizeof(err));
    if (lx == NULL)
        fail_msg("%s", err);
    vader_model m = { .lex = lx };
    vader_work *w = vader_work_new();
    snprintf(cmd, sizeof(cmd), PYTHON " tests/vader/reference.py '%s'", lexicon_path);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);

    char *line = NULL;
    size_t cap = 0, total = 0, agree = 0;
    while (getline(&line, &cap, p) != -1) {
        json_t *ref = json_loads(line, 0, NULL);
        assert_non_null(ref);
        const char *text = json_string_value(json_object_get(ref, "text"));
        size_t len = json_string_length(json_object_get(ref, "text"));
        vader_scores s;
        assert_int_equal(vader_score(&m, w, text, len, &s), 0);
        total++;
        if (close_to(ref, "compound", s.compound) && close_to(ref, "pos", s.pos)
            && close_to(ref, "neg", s.neg) && close_to(ref, "neu", s.neu))
            agree++;
        else
            fprintf(stderr, "differs: %s\n  nltk %.4f %.3f %.3f %.3f  ours %.4f %.3f %.3f %.3f\n",
                    text, json_real_value(json_object_get(ref, "compound")),
                    json_real_value(json_object_get(ref, "pos")),
                    json_real_value(json_object_get(ref, "neg")),
                    json_real_value(json_object_get(ref, "neu")),
                    s.compound, s.pos, s.neg, s.neu);
        json_decref(ref);
    }
    free(line);
    int rc = pclose(p);
    if (rc != 0)
        fail_msg("tests/vader/reference.py failed (status %d): is python3-nltk installed?", rc);
    printf("vader agreement with NLTK: %zu sentences, %zu within %g (%.2f%%)\n",
           total, agree, TOLERANCE, total ? 100.0 * (double)agree / (double)total : 0.0);
    assert_true(total >= 3000);
    assert_true((double)agree >= 0.99 * (double)total);
    vader_work_free(w);
    lexicon_free(lx);
}

int main(void)
{
    insite_log_set_level(INSITE_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_agreement),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
