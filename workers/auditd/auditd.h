/* insite-auditd: ships the nginx audit journals (ngx_http_insite_gdpr_module)
 * to PostgreSQL exactly once, verifying their hash chains on the way.
 * docs/gdpr.md describes the whole path. */
#ifndef AUDITD_H
#define AUDITD_H

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>
#include <libpq-fe.h>

#include "../../ngx_insite_gdpr/insite_gdpr_chain.h"
#include "../../ngx_insite_gdpr/insite_gdpr_fields.h"
#include "../../ngx_insite_gdpr/insite_gdpr_pseudonym.h"
#include "config.h"
#include "http.h"
#include "kafka.h"
#include "metrics.h"

#define AUDITD_NAME_MAX 128

/* ---- journal.c: the files of a journal directory ---- */

typedef struct {
    char chain[AUDITD_NAME_MAX];  /* "0", "1.4711" */
    uint64_t first_seq;           /* from the name */
    char name[AUDITD_NAME_MAX * 2];
} auditd_file;

/* Lists audit-<chain>-<seq>.jsonl in dir, sorted by chain then first seq.
 * Returns the count (*out malloc'd, may be NULL when 0) or -1 (errno). */
int auditd_list(const char *dir, auditd_file **out);
/* Parses a journal file name; 0 if it is one. */
int auditd_parse_name(const char *name, auditd_file *f);

/* ---- verify.c: a chain followed line by line ---- */

typedef struct {
    uint64_t seq;                        /* last record seen, 0 = none */
    char hash[INSITE_GDPR_HASH_LEN + 1];  /* its hash (genesis before) */
} auditd_chainstate;

void auditd_chainstate_init(auditd_chainstate *st);
/* Checks one line (without '\n') against st and moves st to it, also after
 * a break (so one edit is one finding).  A state without records accepts a
 * first record with any seq unless strict (then seq must be 1).
 * Returns INSITE_GDPR_OK or an INSITE_GDPR_E* code. */
int auditd_chain_step(auditd_chainstate *st, const char *line, size_t len,
                      int strict, insite_gdpr_line_t *out);
/* insite-auditd verify PATH...: files or directories; 0 when all chains
 * verify, 1 otherwise.  Reports on out. */
int auditd_verify_main(int argc, char **argv, FILE *out);

/* ---- record checks shared by ship.c ---- */

/* The newest journal record format this shipper reads (docs/gdpr.md):
 * 1 has no "v"; 2 has "v":2 first and "reason" (string or null) after
 * "result".  A record of another format is malformed. */
#define AUDITD_RECORD_FORMAT 2

/* Parses and checks the fields a row needs (uuid id, RFC 3339 ts, ...).
 * Returns the object (caller decrefs) or NULL with a reason in err. */
json_t *auditd_record_parse(const char *line, size_t len, char *err, size_t errlen);
/* The same checks on the members of a plain line (insite_gdpr_fields.h):
 * 0 when they pass; -1 means "ask auditd_record_parse", which says why. */
int auditd_record_check_fields(const insite_gdpr_fields_t *f);

/* ---- ship.c: journal -> PostgreSQL ---- */

typedef struct auditd_chain auditd_chain;

typedef struct {
    const char *dir;
    const char *source;          /* this journal's name in PostgreSQL */
    const char *dsn;
    const char *migrations_dir;
    int batch_size;
    long long retention_ms;      /* < 0: keep shipped files */
    insite_kafka *kafka;         /* NULL: no Kafka */
    insite_metrics *metrics;

    PGconn *pg;
    auditd_chain *chains;        /* linked list */
    int64_t pg_retry_at;         /* monotonic ms */
    int pg_backoff_ms;

    insite_counter *shipped, *incidents, *batches, *pg_errors, *deleted,
        *kafka_produced;
    insite_gauge *pending, *pg_up;
} auditd_shipper;

int auditd_shipper_init(auditd_shipper *s);
/* One pass: scan, read up to batch_size records, commit them with the
 * positions, delete expired shipped files.  Returns records shipped (>= 0),
 * or -1 when PostgreSQL was unavailable (retried with backoff). */
int auditd_ship_once(auditd_shipper *s);
void auditd_shipper_close(auditd_shipper *s);

/* ---- checkpoint.c: signed chain heads ---- */

typedef struct {
    const char *key_path;        /* Ed25519 private key, PEM */
    const char *digest_dir;
    const char *source;
    void *pkey;                  /* EVP_PKEY * */
    insite_counter *made;
} auditd_checkpointer;

int auditd_checkpoint_init(auditd_checkpointer *c);
/* Records a checkpoint of the shipped heads in pg and the digest file.
 * Returns the checkpoint id (> 0) or -1 (logged). */
long long auditd_checkpoint(auditd_checkpointer *c, PGconn *pg);
void auditd_checkpoint_close(auditd_checkpointer *c);
/* insite-auditd verify-checkpoints DIGEST_FILE PUBLIC_KEY_PEM */
int auditd_verify_checkpoints_main(int argc, char **argv, FILE *out);
/* Ed25519 over msg; hex signature into sig (129 bytes).  0 or -1. */
int auditd_sign(void *pkey, const char *msg, size_t len, char *sig);
int auditd_verify_sig(void *pkey, const char *msg, size_t len, const char *sighex);

/* ---- api.c: the HTTP API ---- */

typedef struct {
    const char *dsn;
    PGconn *pg;
    pthread_mutex_t lock;
    /* auditd.pseudonym_key: the journals hold pseudonyms (nginx's
     * insite_gdpr_pseudonym_key); a caller's records are found under both
     * the clear id (older records) and its pseudonym.  0: clear ids only */
    unsigned char psn_key[INSITE_GDPR_PSN_KEY_MAX];
    size_t psn_key_len;
} auditd_api;

/* GET /api/v1/gdpr/audit-trail?user_id&start_date&end_date&limit */
int auditd_api_trail(const insite_http_request *req, json_t **reply, void *ud);
/* GET /api/v1/gdpr/suspicious-activity?user_id */
int auditd_api_suspicious(const insite_http_request *req, json_t **reply, void *ud);
/* severity for n accesses within an hour: NULL, "MEDIUM" (> 50), "HIGH" (> 100) */
const char *auditd_suspicion_level(long long n);
void auditd_api_close(auditd_api *a);

#endif
