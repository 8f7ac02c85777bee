/* Hash-chain verification: per line (shared with the shipper) and the
 * offline `insite-auditd verify PATH...`. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "auditd.h"

void auditd_chainstate_init(auditd_chainstate *st)
{
    st->seq = 0;
    memcpy(st->hash, INSITE_GDPR_GENESIS, INSITE_GDPR_HASH_LEN + 1);
}

int auditd_chain_step(auditd_chainstate *st, const char *line, size_t len,
                      int strict, insite_gdpr_line_t *out)
{
    int rc;
    const char *prev = st->hash;

    if (st->seq == 0 && !strict)
        prev = NULL;                     /* joining a chain midway */
    rc = insite_gdpr_line_check(line, len, prev, st->seq, out);
    if (rc == INSITE_GDPR_OK && prev == NULL && out->seq == 1
        && memcmp(out->prev_hash, INSITE_GDPR_GENESIS, INSITE_GDPR_HASH_LEN) != 0)
        rc = INSITE_GDPR_EPREV;          /* seq 1 must start from genesis */
    if (rc != INSITE_GDPR_EFORMAT) {
        st->seq = out->seq;
        memcpy(st->hash, out->hash, INSITE_GDPR_HASH_LEN);
    }
    return rc;
}

typedef struct {
    long records, errors;
    uint64_t first, last;
} tally;

/* Verifies one file continuing st; returns the number of findings. */
static long verify_file(const char *path, auditd_chainstate *st, int strict, tally *t, FILE *out)
{
    FILE *f = fopen(path, "r");
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    long lineno = 0, bad = 0;
    insite_gdpr_line_t l;

    if (f == NULL) {
        fprintf(out, "%s: %s\n", path, strerror(errno));
        return 1;
    }
    while ((n = getline(&line, &cap, f)) > 0) {
        lineno++;
        if (line[n - 1] != '\n') {
            fprintf(out, "%s:%ld: partial last record (%zd bytes, no newline)\n", path, lineno, n);
            bad++;
            break;
        }
        int rc = auditd_chain_step(st, line, (size_t)n - 1, strict || st->seq != 0, &l);
        if (rc != INSITE_GDPR_OK) {
            if (rc == INSITE_GDPR_EFORMAT)
                fprintf(out, "%s:%ld: %s\n", path, lineno, insite_gdpr_strerror(rc));
            else
                fprintf(out, "%s:%ld: seq %llu: %s\n", path, lineno,
                        (unsigned long long)l.seq, insite_gdpr_strerror(rc));
            bad++;
        }
        if (rc != INSITE_GDPR_EFORMAT) {
            if (t->records == 0)
                t->first = l.seq;
            t->last = l.seq;
            t->records++;
        }
    }
    free(line);
    fclose(f);
    return bad;
}

static void report(FILE *out, const char *what, const tally *t, const auditd_chainstate *st)
{
    fprintf(out, "%s: %ld records", what, t->records);
    if (t->records)
        fprintf(out, ", seq %llu..%llu, head %s", (unsigned long long)t->first,
                (unsigned long long)t->last, st->hash);
    fprintf(out, ": %s\n", t->errors ? "BROKEN" : "ok");
}

static long verify_dir(const char *dir, FILE *out)
{
    auditd_file *v;
    int n = auditd_list(dir, &v);
    long bad = 0;
    char path[4096];

    if (n < 0) {
        fprintf(out, "%s: %s\n", dir, strerror(errno));
        return 1;
    }
    for (int i = 0; i < n;) {
        auditd_chainstate st;
        tally t = { 0 };
        int j;
        auditd_chainstate_init(&st);
        /* a chain is whole from seq 1 unless its early files were deleted */
        int strict = v[i].first_seq == 1;
        for (j = i; j < n && strcmp(v[j].chain, v[i].chain) == 0; j++) {
            snprintf(path, sizeof(path), "%s/%s", dir, v[j].name);
            t.errors += verify_file(path, &st, strict, &t, out);
        }
        char what[256];
        snprintf(what, sizeof(what), "%s chain %s (%d file%s)", dir, v[i].chain, j - i, j - i == 1 ? "" : "s");
        report(out, what, &t, &st);
        bad += t.errors;
        i = j;
    }
    if (n == 0)
        fprintf(out, "%s: no journal files\n", dir);
    free(v);
    return bad;
}

int auditd_verify_main(int argc, char **argv, FILE *out)
{
    long bad = 0;
    struct stat sb;

    if (argc < 1) {
        fprintf(out, "usage: insite-auditd verify JOURNAL_FILE_OR_DIR...\n");
        return 2;
    }
    for (int i = 0; i < argc; i++) {
        if (stat(argv[i], &sb) == 0 && S_ISDIR(sb.st_mode)) {
            bad += verify_dir(argv[i], out);
        } else {
            auditd_chainstate st;
            tally t = { 0 };
            auditd_file f;
            const char *base = strrchr(argv[i], '/');
            base = base ? base + 1 : argv[i];
            auditd_chainstate_init(&st);
            int strict = auditd_parse_name(base, &f) == 0 && f.first_seq == 1;
            t.errors = verify_file(argv[i], &st, strict, &t, out);
            report(out, argv[i], &t, &st);
            bad += t.errors;
        }
    }
    return bad ? 1 : 0;
}
