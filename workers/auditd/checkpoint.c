/* Signed checkpoints, like CloudTrail's digest files: the heads (seq, hash)
 * of every shipped chain, signed with Ed25519, each naming the previous
 * checkpoint's id and signature.  Kept in gdpr_audit_checkpoints and in
 * <digest_dir>/checkpoints-<source>.jsonl, one {"payload","signature"} a
 * line, where payload is the exact signed text. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>

#include "auditd.h"
#include "clock.h"
#include "log.h"
#include "sign.h"

/* the signing mechanism lives in workers/lib/sign.c (shared with the
 * insite-gdpr erasure receipts) */
int auditd_sign(void *pkey, const char *msg, size_t len, char *sig)
{
    return insite_sign(pkey, msg, len, sig);
}

int auditd_verify_sig(void *pkey, const char *msg, size_t len, const char *sighex)
{
    return insite_sign_verify(pkey, msg, len, sighex);
}

static EVP_PKEY *load_key(const char *path, int private)
{
    return insite_sign_load_key(path, private, "checkpoint");
}

int auditd_checkpoint_init(auditd_checkpointer *c)
{
    if ((c->pkey = load_key(c->key_path, 1)) == NULL)
        return -1;
    if (mkdir(c->digest_dir, 0750) != 0 && errno != EEXIST) {
        insite_log_error("digest dir %s: %s", c->digest_dir, strerror(errno));
        return -1;
    }
    return 0;
}

void auditd_checkpoint_close(auditd_checkpointer *c)
{
    EVP_PKEY_free(c->pkey);
    c->pkey = NULL;
}

static PGresult *q(PGconn *pg, const char *sql, int n, const char **p, ExecStatusType want)
{
    PGresult *r = PQexecParams(pg, sql, n, NULL, p, NULL, NULL, 0);
    if (PQresultStatus(r) != want) {
        insite_log_warn("checkpoint: %s", PQerrorMessage(pg));
        PQclear(r);
        return NULL;
    }
    return r;
}

long long auditd_checkpoint(auditd_checkpointer *c, PGconn *pg)
{
    const char *p[5] = { c->source };
    char ts[INSITE_RFC3339_LEN], sig[129], idbuf[32], path[4096];
    PGresult *r;
    long long id = -1;
    json_t *payload = NULL, *heads;
    char *text = NULL;

    if (pg == NULL || (r = q(pg, "BEGIN", 0, NULL, PGRES_COMMAND_OK)) == NULL)
        return -1;
    PQclear(r);
    if ((r = q(pg, "SELECT pg_advisory_xact_lock(hashtext('insite.gdpr_checkpoint'))", 0, NULL, PGRES_TUPLES_OK)) == NULL)
        goto fail;
    PQclear(r);
    if ((r = q(pg, "SELECT id, signature FROM gdpr_audit_checkpoints WHERE source = $1 ORDER BY id DESC LIMIT 1",
               1, p, PGRES_TUPLES_OK)) == NULL)
        goto fail;
    json_t *prev = json_null();
    id = 1;
    if (PQntuples(r) == 1) {
        long long pid = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
        prev = json_pack("{s:I, s:s}", "id", (json_int_t)pid, "signature", PQgetvalue(r, 0, 1));
        id = pid + 1;
    }
    PQclear(r);
    if ((r = q(pg, "SELECT chain, seq, hash FROM gdpr_audit_positions WHERE source = $1 ORDER BY chain",
               1, p, PGRES_TUPLES_OK)) == NULL) {
        json_decref(prev);
        goto fail;
    }
    heads = json_array();
    for (int i = 0; i < PQntuples(r); i++)
        json_array_append_new(heads, json_pack("{s:s, s:I, s:s}", "chain", PQgetvalue(r, i, 0),
            "seq", (json_int_t)strtoll(PQgetvalue(r, i, 1), NULL, 10), "hash", PQgetvalue(r, i, 2)));
    PQclear(r);
    payload = json_pack("{s:s, s:I, s:s, s:o, s:o}", "source", c->source, "id", (json_int_t)id,
                        "created_at", insite_clock_rfc3339(ts, sizeof(ts)), "previous", prev, "heads", heads);
    text = payload ? json_dumps(payload, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    if (text == NULL || auditd_sign(c->pkey, text, strlen(text), sig) != 0) {
        insite_log_error("checkpoint: signing failed");
        goto fail;
    }
    snprintf(idbuf, sizeof(idbuf), "%lld", id);
    p[1] = idbuf;
    p[2] = text;
    p[3] = sig;
    if ((r = q(pg, "INSERT INTO gdpr_audit_checkpoints (source, id, payload, signature) VALUES ($1, $2, $3, $4)",
               4, p, PGRES_COMMAND_OK)) == NULL)
        goto fail;
    PQclear(r);
    if ((r = q(pg, "COMMIT", 0, NULL, PGRES_COMMAND_OK)) == NULL)
        goto fail;
    PQclear(r);

    snprintf(path, sizeof(path), "%s/checkpoints-%s.jsonl", c->digest_dir, c->source);
    json_t *line = json_pack("{s:s, s:s}", "payload", text, "signature", sig);
    char *l = json_dumps(line, JSON_COMPACT);
    FILE *f = fopen(path, "a");
    if (f == NULL || l == NULL || fprintf(f, "%s\n", l) < 0 || fflush(f) != 0 || fsync(fileno(f)) != 0)
        insite_log_error("checkpoint %lld: digest file %s: %s", id, path, strerror(errno));
    if (f)
        fclose(f);
    free(l);
    json_decref(line);
    insite_counter_inc(c->made);
    insite_log_info("checkpoint %lld signed: %zu chain head(s)", id, json_array_size(heads));
    json_decref(payload);
    free(text);
    return id;
fail:
    r = PQexec(pg, "ROLLBACK");
    PQclear(r);
    json_decref(payload);
    free(text);
    return -1;
}

/* insite-auditd verify-checkpoints DIGEST_FILE PUBLIC_KEY_PEM */
int auditd_verify_checkpoints_main(int argc, char **argv, FILE *out)
{
    EVP_PKEY *k;
    FILE *f;
    char *line = NULL, prev_sig[129] = "";
    size_t cap = 0;
    long long prev_id = 0, n = 0, bad = 0, lineno = 0;
    json_t *prev_heads = NULL;

    if (argc != 2) {
        fprintf(out, "usage: insite-auditd verify-checkpoints DIGEST_FILE PUBLIC_KEY_PEM\n");
        return 2;
    }
    if ((k = load_key(argv[1], 0)) == NULL)
        return 2;
    if ((f = fopen(argv[0], "r")) == NULL) {
        fprintf(out, "%s: %s\n", argv[0], strerror(errno));
        EVP_PKEY_free(k);
        return 2;
    }
    while (getline(&line, &cap, f) > 0) {
        lineno++;
        json_t *l = json_loads(line, 0, NULL), *pl = NULL;
        const char *text = json_string_value(json_object_get(l, "payload"));
        const char *sig = json_string_value(json_object_get(l, "signature"));
        const char *why = NULL;
        if (text == NULL || sig == NULL || (pl = json_loads(text, 0, NULL)) == NULL)
            why = "not a checkpoint";
        else if (auditd_verify_sig(k, text, strlen(text), sig) != 0)
            why = "signature does not verify";
        else {
            json_t *pv = json_object_get(pl, "previous");
            long long id = json_integer_value(json_object_get(pl, "id"));
            if (prev_id && (!json_is_object(pv) || json_integer_value(json_object_get(pv, "id")) != prev_id
                            || strcmp(json_string_value(json_object_get(pv, "signature")) ?: "", prev_sig) != 0))
                why = "does not name the previous checkpoint (one was removed or replaced)";
            else if (prev_id && id != prev_id + 1)
                why = "checkpoint ids are not consecutive";
            /* heads only move forward */
            size_t i, j;
            json_t *h, *ph;
            json_array_foreach(json_object_get(pl, "heads"), i, h)
                json_array_foreach(prev_heads, j, ph)
                    if (json_equal(json_object_get(h, "chain"), json_object_get(ph, "chain"))
                        && json_integer_value(json_object_get(h, "seq")) < json_integer_value(json_object_get(ph, "seq")))
                        why = "a chain head moved backwards";
            prev_id = id;
            snprintf(prev_sig, sizeof(prev_sig), "%s", sig);
            json_decref(prev_heads);
            prev_heads = json_incref(json_object_get(pl, "heads"));
        }
        if (why) {
            fprintf(out, "%s:%lld: %s\n", argv[0], lineno, why);
            bad++;
        }
        n++;
        json_decref(pl);
        json_decref(l);
    }
    free(line);
    fclose(f);
    json_decref(prev_heads);
    EVP_PKEY_free(k);
    fprintf(out, "%s: %lld checkpoint(s), last id %lld: %s\n", argv[0], n, prev_id, bad ? "BROKEN" : "ok");
    return bad ? 1 : 0;
}
