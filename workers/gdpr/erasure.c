/* Erasure (plan 5.2): the data map and the durable erasure job.
 *
 *   POST   /api/v1/gdpr/delete {"confirmation":"DELETE_MY_DATA"}  -> 202
 *   GET    /api/v1/gdpr/deletion-status/{id}     requester or gdpr:admin
 *   DELETE /api/v1/gdpr/delete/{id}              cancel within the grace period
 *
 * The job (main thread) takes the oldest due request and runs every target
 * of the data map in order; each target is an idempotent action (DELETE,
 * UPDATE ... WHERE user = $1, DEL, a Kafka event with a fixed event_id)
 * recorded as done in gdpr_deletion_steps afterwards.  A crash between an
 * action and its record repeats the action, which then finds nothing.  When
 * every step is done the verification scan looks for the user in every
 * target; only a clean scan completes the request, in one UPDATE that also
 * stores the signed receipt and forgets the user id.  docs/gdpr-rights.md. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "envelope.h"
#include "datamap.h"
#include "gdpr.h"
#include "kafka.h"
#include "log.h"
#include "pg.h"
#include "random.h"
#include "sign.h"
#include "../../ngx_insite_gdpr/insite_gdpr_pseudonym.h"

#define CONFIRMATION "DELETE_MY_DATA"
#define TS(col) "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"
#define MAX_ATTEMPTS 5

static const char *action_names[] = { "delete", "anonymize", "retain" };

typedef gdpr_target target;
typedef gdpr_database database;

struct gdpr_erasure {
    gdpr_store *store;
    gdpr_datamap map;
    unsigned char hkey[64];
    size_t hkeylen;
    void *sign_key;
    long long grace_ms;
    insite_kafka *kafka;
    int64_t retry_at;
    insite_counter *completed, *failed;
    insite_gauge *g_pending, *g_processing, *g_completed, *g_failed, *g_oldest;
};

/* ---- test hook: INSITE_GDPR_TEST_CRASH_FILE names a file holding a step
 * name; the worker deletes the file and kills itself (-9) there, or, for
 * "pause:<step>", sleeps 4 s there (to stop a store under a running job).
 * Steps: a target's name (after its action), "walked:<target>" (a match
 * target's action, after each master's SCAN), "before-verify",
 * "before-complete". */
static void crash_point(const char *step)
{
    const char *f = getenv("INSITE_GDPR_TEST_CRASH_FILE");
    char buf[256] = "";
    FILE *fp;

    if (f == NULL || (fp = fopen(f, "r")) == NULL)
        return;
    if (fgets(buf, sizeof(buf), fp) == NULL)
        buf[0] = '\0';
    fclose(fp);
    buf[strcspn(buf, "\r\n")] = '\0';
    if (strncmp(buf, "pause:", 6) == 0 && strcmp(buf + 6, step) == 0) {
        unlink(f);
        insite_log_warn("test hook: pausing 4s at %s", step);
        sleep(4);
        return;
    }
    if (strcmp(buf, step) != 0)
        return;
    unlink(f);
    insite_log_warn("test hook: killing myself at %s", step);
    raise(SIGKILL);
}

int gdpr_pseudonym(const gdpr_erasure *e, const char *user, char out[40])
{
    if (insite_gdpr_pseudonym(e->hkey, e->hkeylen, user, strlen(user), out) != 0)
        return -1;
    out[INSITE_GDPR_PSN_LEN] = '\0';
    return 0;
}

gdpr_erasure *gdpr_erasure_new(const gdpr_erasure_options *o, char *err, size_t errlen)
{
    gdpr_erasure *e = calloc(1, sizeof(*e));
    int n;

    e->store = o->store;
    e->grace_ms = o->grace_ms;
    e->kafka = o->kafka;
    if (gdpr_datamap_load(&e->map, o->data_map, o->dsn, err, errlen) != 0)
        goto fail;
    size_t k;
    for (k = 0; k < e->map.ndbs && strcmp(e->map.dbs[k].dsn, o->dsn) != 0; k++)
        ;
    if (k == e->map.ndbs && e->map.ndbs < GDPR_MAP_DBS) {
        /* our own tables are reached by the job even if the map names none */
        e->map.dbs[e->map.ndbs].name = strdup("_insite");
        e->map.dbs[e->map.ndbs].dsn = strdup(o->dsn);
        e->map.ndbs++;
    }
    if (e->map.kafka_topic && e->kafka == NULL) {
        snprintf(err, errlen, "%s: a kafka target needs kafka.bootstrap", o->data_map);
        goto fail;
    }
    if ((n = insite_gdpr_pseudonym_key_read(o->pseudonym_key, e->hkey, sizeof(e->hkey))) < 0) {
        snprintf(err, errlen, "gdpr.pseudonym_key %s: %s", o->pseudonym_key,
                 errno == EINVAL ? "at least 16 bytes of secret" : strerror(errno));
        goto fail;
    }
    e->hkeylen = (size_t)n;
    if ((e->sign_key = insite_sign_load_key(o->signing_key, 1, "receipt")) == NULL) {
        snprintf(err, errlen, "gdpr.signing_key %s: not usable", o->signing_key);
        goto fail;
    }
    if (o->metrics == NULL)
        return e;                    /* tests: no job will run */
    e->completed = insite_metrics_counter(o->metrics, "erasures_completed", "Erasure requests completed.");
    e->failed = insite_metrics_counter(o->metrics, "erasures_failed", "Erasure requests failed.");
    e->g_pending = insite_metrics_gauge(o->metrics, "erasure_requests_pending", "Erasure requests pending.");
    e->g_processing = insite_metrics_gauge(o->metrics, "erasure_requests_processing", "Erasure requests processing.");
    e->g_completed = insite_metrics_gauge(o->metrics, "erasure_requests_completed", "Erasure requests completed.");
    e->g_failed = insite_metrics_gauge(o->metrics, "erasure_requests_failed", "Erasure requests failed.");
    e->g_oldest = insite_metrics_gauge(o->metrics, "erasure_oldest_open_seconds",
                                       "Age of the oldest pending or processing erasure request.");
    return e;
fail:
    gdpr_erasure_free(e);
    return NULL;
}

void gdpr_erasure_free(gdpr_erasure *e)
{
    if (e == NULL)
        return;
    gdpr_datamap_free(&e->map);
    if (e->sign_key)
        insite_sign_free(e->sign_key);
    free(e);
}

/* ---- the job ---- */

static PGconn *db(gdpr_erasure *e, int i)
{
    char err[512];
    database *d = &e->map.dbs[i];
    if (d->pg && PQstatus(d->pg) != CONNECTION_OK) {
        PQfinish(d->pg);
        d->pg = NULL;
    }
    if (d->pg == NULL && (d->pg = insite_pg_connect(d->dsn, err, sizeof(err))) == NULL)
        insite_log_warn("erasure: database %s: %s", d->name, err);
    return d->pg;
}

/* our database is dbs[] entry with our DSN; use a connection of the job's own */
static PGconn *ours(gdpr_erasure *e)
{
    for (size_t i = 0; i < e->map.ndbs; i++)
        if (strcmp(e->map.dbs[i].dsn, e->store->dsn) == 0)
            return db(e, (int)i);
    return NULL;
}

static PGresult *q(PGconn *c, const char *sql, int n, const char *const *p, ExecStatusType want)
{
    PGresult *r = PQexecParams(c, sql, n, NULL, p, NULL, NULL, 0);
    if (PQresultStatus(r) != want) {
        insite_log_warn("erasure: %s", PQresultErrorMessage(r));
        PQclear(r);
        return NULL;
    }
    return r;
}

static int table_absent(PGresult *r)
{
    const char *st = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    return st && strcmp(st, "42P01") == 0;      /* undefined_table */
}

/* the JSON string form of the user, as the audit record writes it */
static char *json_quoted(const char *user)
{
    json_t *s = json_string(user);
    char *t = s ? json_dumps(s, JSON_ENCODE_ANY) : NULL;
    json_decref(s);
    return t;
}

/* Runs one PostgreSQL target; rows affected into *rows.  0 or -1. */
static int run_pg(gdpr_erasure *e, target *x, const char *user, const char *psn, long long *rows)
{
    PGconn *c = db(e, x->db);
    char sql[4096];
    const char *p[3] = { user, psn, NULL };
    char *qu = NULL, *qp = NULL;
    size_t i;
    int n = 0, np = 1;
    PGresult *r;

    *rows = 0;
    if (c == NULL)
        return -1;
    if (x->action == GDPR_A_RETAIN && !x->pseudonymize)
        return 0;
    if (x->action == GDPR_A_DELETE) {
        n = snprintf(sql, sizeof(sql), "DELETE FROM %s WHERE %s = $1", x->table, x->column);
    } else {
        const char *k;
        json_t *v;
        n = snprintf(sql, sizeof(sql), "UPDATE %s SET %s = $2", x->table, x->column);
        np = 2;
        json_object_foreach(x->columns, k, v) {
            char *qc = gdpr_quote_ident(k), *lit = NULL;
            if (json_is_string(v))
                lit = PQescapeLiteral(c, json_string_value(v), strlen(json_string_value(v)));
            n += snprintf(sql + n, sizeof(sql) - n, ", %s = %s", qc, lit ? lit : "NULL");
            free(qc);
            PQfreemem(lit);
        }
        if (json_array_size(x->replace_in)) {
            qu = json_quoted(user);
            qp = json_quoted(psn);
            p[0] = user;
            p[2] = qu;
            json_t *v2;
            json_array_foreach(x->replace_in, i, v2) {
                char *qc = gdpr_quote_ident(json_string_value(v2));
                char *lit = PQescapeLiteral(c, qp, strlen(qp));
                n += snprintf(sql + n, sizeof(sql) - n, ", %s = replace(%s, $3, %s)", qc, qc, lit);
                free(qc);
                PQfreemem(lit);
            }
            np = 3;
        }
        n += snprintf(sql + n, sizeof(sql) - n, " WHERE %s = $1", x->column);
    }
    if (n <= 0 || (size_t)n >= sizeof(sql)) {
        free(qu);
        free(qp);
        return -1;
    }
    /* the consent ledger refuses deletes outside an erasure */
    PQclear(PQexec(c, "BEGIN"));
    PQclear(PQexec(c, "SET LOCAL insite.erasure = 'on'"));
    r = PQexecParams(c, sql, np, NULL, p, NULL, NULL, 0);
    free(qu);
    free(qp);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        int absent = table_absent(r);
        if (!absent)
            insite_log_warn("erasure: %s: %s", x->name, PQresultErrorMessage(r));
        PQclear(r);
        PQclear(PQexec(c, "ROLLBACK"));
        return absent ? 0 : -1;         /* no table, no data */
    }
    *rows = strtoll(PQcmdTuples(r), NULL, 10);
    PQclear(r);
    r = PQexec(c, "COMMIT");
    n = PQresultStatus(r) == PGRES_COMMAND_OK ? 0 : -1;
    PQclear(r);
    return n;
}

/* the key of x for user; for a match target the SCAN pattern, with the
 * user's glob characters escaped (a user "*" matches only "*") */
static void redis_key(const target *x, const char *user, char *out, size_t len)
{
    const char *u = strstr(x->key, "%u");
    size_t n = (size_t)snprintf(out, len, "%.*s", (int)(u - x->key), x->key);
    for (; *user && n + 2 < len; user++) {
        if (x->match && strchr("*?[]\\", *user))
            out[n++] = '\\';
        out[n++] = *user;
    }
    snprintf(out + n, len - n, "%s", u + 2);
}

/* a match target on one master: SCAN counts the keys, and DEL (on the
 * same master, routed when the key's slot moved meanwhile) erases them
 * unless w->scan */
typedef struct {
    gdpr_erasure *e;
    const char *name;            /* the target's */
    const char *pattern;
    int scan;
    long long rows;
} match_walk;

static int match_on_master(const insite_redis_master *m, void *arg, char *err, size_t errlen)
{
    match_walk *w = arg;
    char cursor[32] = "0";
    redisReply *rep, *del;

    do {
        rep = redisCommand(m->c, "SCAN %s MATCH %s COUNT 1000", cursor, w->pattern);
        if (rep == NULL || rep->type != REDIS_REPLY_ARRAY || rep->elements != 2
            || rep->element[0]->type != REDIS_REPLY_STRING) {
            snprintf(err, errlen, "%s: SCAN: %s", m->name,
                     rep == NULL ? m->c->errstr
                     : rep->type == REDIS_REPLY_ERROR ? rep->str : "unexpected reply");
            if (rep)
                freeReplyObject(rep);
            return -1;
        }
        snprintf(cursor, sizeof(cursor), "%s", rep->element[0]->str);
        redisReply *keys = rep->element[1];
        for (size_t i = 0; i < keys->elements; i++) {
            const char *k = keys->element[i]->str;
            size_t klen = keys->element[i]->len;
            if (!w->scan) {
                const char *argv[2] = { "DEL", k };
                size_t lens[2] = { 3, klen };
                insite_redis_cmd one = { 2, argv, lens };
                if ((del = insite_redis_master_run(w->e->store->redis, m, k, klen, &one,
                                                   err, errlen)) == NULL) {
                    freeReplyObject(rep);
                    return -1;
                }
                freeReplyObject(del);
            }
            w->rows++;
        }
        freeReplyObject(rep);
    } while (strcmp(cursor, "0") != 0);
    /* the DELs count only once the replicas have them: a failover must not
     * bring an erased key back (redis.publish_replicas; 0: no WAIT) */
    if (!w->scan && w->rows > 0 && insite_redis_master_wait(w->e->store->redis, m, err, errlen) != 0)
        return -1;
    if (!w->scan) {
        char step[256];
        snprintf(step, sizeof(step), "walked:%s", w->name);
        crash_point(step);
    }
    return 0;
}

/* Runs a Redis target (scan: counts the keys instead): an exact key on its
 * slot's owner, a match target on every master (a single Redis is the one
 * master).  Keys found into *rows.  0, or -1 (logged). */
static int run_redis(gdpr_erasure *e, target *x, const char *user, long long *rows, int scan)
{
    char key[1024], err[512];
    insite_redis *r = e->store->redis;
    redisReply *rep;

    *rows = 0;
    redis_key(x, user, key, sizeof(key));
    if (x->match) {
        match_walk w = { e, x->name, key, scan, 0 };
        if (insite_redis_each_master(r, match_on_master, &w, err, sizeof(err)) != 0) {
            insite_log_warn("erasure: %s: %s", x->name, err);
            return -1;
        }
        *rows = w.rows;
        return 0;
    }
    const char *argv[2] = { scan ? "EXISTS" : "DEL", key };
    insite_redis_cmd one = { 2, argv, NULL };
    /* a DEL counts only once redis.publish_replicas replicas have it */
    rep = scan ? insite_redis_run(r, key, strlen(key), &one, 1, err, sizeof(err))
               : insite_redis_run_replicated(r, key, strlen(key), &one, 1, NULL, err, sizeof(err));
    if (rep == NULL) {
        insite_log_warn("erasure: %s: %s: %s", x->name, argv[0], err);
        return -1;
    }
    int rc = rep->type == REDIS_REPLY_INTEGER ? 0 : -1;
    if (rc == 0)
        *rows = rep->integer;
    else
        insite_log_warn("erasure: %s: %s: not an integer reply", x->name, argv[0]);
    freeReplyObject(rep);
    return rc;
}

static int run_kafka(gdpr_erasure *e, const char *id, const char *user, long long *rows)
{
    json_t *env = insite_envelope_new(e->map.kafka_event, "gdpr", id,
                                      json_pack("{s:s, s:s}", "user_id", user, "request_id", id));
    char *text;
    int rc;

    if (env == NULL)
        return -1;
    /* a fixed event id: a repeated step is a duplicate consumers drop */
    json_object_set_new(env, "event_id", json_string(id));
    text = insite_envelope_dumps(env);
    json_decref(env);
    if (text == NULL)
        return -1;
    rc = insite_kafka_produce(e->kafka, e->map.kafka_topic, user, text, strlen(text));
    free(text);
    if (rc != 0 || insite_kafka_flush(e->kafka, 10000) != 0)
        return -1;
    *rows = 1;
    return 0;
}

/* Counts what is left of the user in a target (0 = clean). */
static long long scan(gdpr_erasure *e, target *x, const char *user)
{
    long long n = 0;
    if (x->kind == GDPR_T_KAFKA || (x->kind == GDPR_T_PG && x->action == GDPR_A_RETAIN && !x->pseudonymize))
        return 0;
    if (x->kind == GDPR_T_REDIS)
        return run_redis(e, x, user, &n, 1) == 0 ? n : -1;
    PGconn *c = db(e, x->db);
    char sql[1024];
    const char *p[2] = { user, NULL };
    char *qu = json_quoted(user);
    int len = snprintf(sql, sizeof(sql), "SELECT count(*) FROM %s WHERE %s = $1", x->table, x->column);
    size_t i;
    json_t *v;
    json_array_foreach(x->replace_in, i, v) {
        char *qc = gdpr_quote_ident(json_string_value(v));
        len += snprintf(sql + len, sizeof(sql) - len, " OR strpos(%s, $2) > 0", qc);
        free(qc);
        p[1] = qu;
    }
    if (c == NULL) {
        free(qu);
        return -1;
    }
    PGresult *r = PQexecParams(c, sql, p[1] ? 2 : 1, NULL, p, NULL, NULL, 0);
    free(qu);
    if (PQresultStatus(r) == PGRES_TUPLES_OK)
        n = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    else
        n = table_absent(r) ? 0 : -1;
    PQclear(r);
    return n;
}

static void metrics(gdpr_erasure *e, PGconn *c)
{
    PGresult *r = PQexec(c, "SELECT count(*) FILTER (WHERE status = 'pending'),"
        " count(*) FILTER (WHERE status = 'processing'), count(*) FILTER (WHERE status = 'completed'),"
        " count(*) FILTER (WHERE status = 'failed'),"
        " coalesce(extract(epoch FROM now() - min(requested_at) FILTER"
        "   (WHERE status IN ('pending', 'processing'))), 0)"
        " FROM gdpr_deletion_requests");
    if (PQresultStatus(r) == PGRES_TUPLES_OK) {
        insite_gauge_set(e->g_pending, atof(PQgetvalue(r, 0, 0)));
        insite_gauge_set(e->g_processing, atof(PQgetvalue(r, 0, 1)));
        insite_gauge_set(e->g_completed, atof(PQgetvalue(r, 0, 2)));
        insite_gauge_set(e->g_failed, atof(PQgetvalue(r, 0, 3)));
        insite_gauge_set(e->g_oldest, atof(PQgetvalue(r, 0, 4)));
    }
    PQclear(r);
}

static int complete(gdpr_erasure *e, PGconn *c, const char *id, const char *user, const char *psn)
{
    const char *p[4] = { id, NULL, NULL, NULL };
    char ts[40], sig[INSITE_SIG_HEX];
    PGresult *r = q(c, "SELECT target, action, rows, " TS("done_at") ", " TS("r.requested_at")
                    " FROM gdpr_deletion_steps s JOIN gdpr_deletion_requests r ON r.id = s.request_id"
                    " WHERE request_id = $1 ORDER BY done_at, target", 1, p, PGRES_TUPLES_OK);
    json_t *targets = json_array(), *payload;
    char *text;
    int rc = -1;

    if (r == NULL)
        return -1;
    for (int i = 0; i < PQntuples(r); i++)
        json_array_append_new(targets, json_pack("{s:s, s:s, s:I, s:s}", "target", PQgetvalue(r, i, 0),
            "action", PQgetvalue(r, i, 1), "rows", (json_int_t)strtoll(PQgetvalue(r, i, 2), NULL, 10),
            "done_at", PQgetvalue(r, i, 3)));
    payload = json_pack("{s:s, s:s, s:s, s:s, s:o, s:s}", "request_id", id, "user_pseudonym", psn,
                        "requested_at", PQntuples(r) ? PQgetvalue(r, 0, 4) : "",
                        "completed_at", insite_clock_rfc3339(ts, sizeof(ts)), "targets", targets,
                        "verification", "no trace of the user outside retained, pseudonymized targets");
    PQclear(r);
    text = payload ? json_dumps(payload, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(payload);
    if (text == NULL || insite_sign(e->sign_key, text, strlen(text), sig) != 0) {
        insite_log_error("erasure %s: signing the receipt failed", id);
        free(text);
        return -1;
    }
    crash_point("before-complete");
    p[1] = text;
    p[2] = sig;
    /* exactly once: only a processing request completes */
    r = q(c, "UPDATE gdpr_deletion_requests SET status = 'completed', completed_at = now(),"
          " receipt = $2, signature = $3, user_id = NULL, error = NULL"
          " WHERE id = $1 AND status = 'processing'", 3, p, PGRES_COMMAND_OK);
    if (r) {
        if (strcmp(PQcmdTuples(r), "1") == 0) {
            insite_counter_inc(e->completed);
            insite_log_info("erasure %s completed, receipt signed", id);
        }
        rc = 0;
        PQclear(r);
    }
    (void)user;
    free(text);
    return rc;
}

int gdpr_erasure_run(gdpr_erasure *e)
{
    PGconn *c;
    PGresult *r;
    char id[64], user[512], psn[40];
    const char *p[5];
    int attempts;

    if (insite_clock_mono_ms() < e->retry_at)
        return 0;
    if ((c = ours(e)) == NULL)
        goto later;
    metrics(e, c);
    r = q(c, "UPDATE gdpr_deletion_requests SET status = 'processing', started_at = coalesce(started_at, now())"
          " WHERE id = (SELECT id FROM gdpr_deletion_requests WHERE status IN ('pending', 'processing')"
          "   AND not_before <= now() ORDER BY requested_at LIMIT 1)"
          " RETURNING id, user_id, user_pseudonym, attempts", 0, NULL, PGRES_TUPLES_OK);
    if (r == NULL)
        goto later;
    if (PQntuples(r) == 0) {
        PQclear(r);
        return 0;
    }
    snprintf(id, sizeof(id), "%s", PQgetvalue(r, 0, 0));
    snprintf(user, sizeof(user), "%s", PQgetvalue(r, 0, 1));
    snprintf(psn, sizeof(psn), "%s", PQgetvalue(r, 0, 2));
    attempts = atoi(PQgetvalue(r, 0, 3));
    PQclear(r);

    p[0] = id;
    for (size_t i = 0; i < e->map.ntargets; i++) {
        target *x = &e->map.targets[i];
        long long rows = 0;
        int rc;
        p[1] = x->name;
        r = q(c, "SELECT 1 FROM gdpr_deletion_steps WHERE request_id = $1 AND target = $2"
              " AND done_at IS NOT NULL", 2, p, PGRES_TUPLES_OK);
        if (r == NULL)
            goto later;
        int done = PQntuples(r) > 0;
        PQclear(r);
        if (done)
            continue;
        /* the count is taken once, before the first attempt: a repeated
         * action finds nothing, the receipt still says what there was */
        long long found = scan(e, x, user);
        char foundbuf[32];
        snprintf(foundbuf, sizeof(foundbuf), "%lld", found < 0 ? 0 : found);
        p[2] = x->kind == GDPR_T_PG ? action_names[x->action] : x->kind == GDPR_T_REDIS ? "delete" : "notify";
        p[3] = x->kind == GDPR_T_KAFKA ? "1" : foundbuf;
        if (found < 0)
            goto later;
        r = q(c, "INSERT INTO gdpr_deletion_steps (request_id, target, action, rows)"
              " VALUES ($1, $2, $3, $4) ON CONFLICT (request_id, target) DO NOTHING", 4, p, PGRES_COMMAND_OK);
        if (r == NULL)
            goto later;
        PQclear(r);
        rc = x->kind == GDPR_T_PG ? run_pg(e, x, user, psn, &rows)
             : x->kind == GDPR_T_REDIS ? run_redis(e, x, user, &rows, 0)
             : run_kafka(e, id, user, &rows);
        (void)rows;
        p[2] = rc == 0 ? NULL : "target unreachable, retried";
        crash_point(x->name);
        r = q(c, rc == 0
              ? "UPDATE gdpr_deletion_steps SET done_at = now(), error = NULL"
                " WHERE request_id = $1 AND target = $2"
              : "UPDATE gdpr_deletion_steps SET error = $3 WHERE request_id = $1 AND target = $2",
              rc == 0 ? 2 : 3, p, PGRES_COMMAND_OK);
        if (r)
            PQclear(r);
        if (rc != 0 || r == NULL)
            goto later;
    }

    /* verification: every target, after every action */
    crash_point("before-verify");
    for (size_t i = 0; i < e->map.ntargets; i++) {
        long long left = scan(e, &e->map.targets[i], user);
        if (left == 0)
            continue;
        if (left < 0)
            goto later;
        /* something came back (or was written meanwhile): run it again */
        insite_log_warn("erasure %s: verification found %lld row(s) in %s: repeating it",
                        id, left, e->map.targets[i].name);
        p[1] = e->map.targets[i].name;
        p[2] = attempts + 1 >= MAX_ATTEMPTS ? "failed" : "processing";
        r = q(c, "WITH s AS (UPDATE gdpr_deletion_steps SET done_at = NULL,"
              "   error = 'verification found data' WHERE request_id = $1 AND target = $2)"
              " UPDATE gdpr_deletion_requests SET attempts = attempts + 1, status = $3,"
              "   error = CASE WHEN $3 = 'failed' THEN 'verification kept finding data in ' || $2 END"
              " WHERE id = $1", 3, p, PGRES_COMMAND_OK);
        if (r)
            PQclear(r);
        if (strcmp(p[2], "failed") == 0)
            insite_counter_inc(e->failed);
        return 1;
    }
    if (complete(e, c, id, user, psn) != 0)
        goto later;
    return 1;
later:
    e->retry_at = insite_clock_mono_ms() + 1000;
    return -1;
}

/* ---- the API ---- */

static int is_uuid(const char *s)
{
    if (strlen(s) != 36)
        return 0;
    for (int i = 0; i < 36; i++)
        if (i == 8 || i == 13 || i == 18 || i == 23 ? s[i] != '-'
            : !strchr("0123456789abcdef", s[i]))
            return 0;
    return 1;
}

static int unavailable(json_t **reply)
{
    *reply = insite_http_error("unavailable", "the request store is unavailable, try again");
    return 503;
}

static int not_found(json_t **reply)
{
    *reply = insite_http_error("not_found", "no such request");
    return 404;
}

static int create(gdpr_erasure *e, const insite_http_request *req, const char *user, json_t **reply)
{
    json_t *cf = json_object_get(req->body, "confirmation");
    char id[INSITE_UUID_LEN], psn[40], grace[32];
    const char *p[4];
    PGresult *r;

    if (!json_is_object(req->body) || !json_is_string(cf)
        || strcmp(json_string_value(cf), CONFIRMATION) != 0) {
        *reply = insite_http_error("confirmation_required",
                                   "send {\"confirmation\":\"" CONFIRMATION "\"} to erase your data");
        return 400;
    }
    if (insite_uuid_v4(id) != 0 || gdpr_pseudonym(e, user, psn) != 0)
        return unavailable(reply);
    snprintf(grace, sizeof(grace), "%lld", e->grace_ms);
    p[0] = id;
    p[1] = user;
    p[2] = psn;
    p[3] = grace;
    if (gdpr_store_pg(e->store) == NULL)
        return unavailable(reply);
    /* one open request per user: asking again returns it */
    r = PQexecParams(e->store->pg,
        "WITH n AS (INSERT INTO gdpr_deletion_requests (id, user_id, user_pseudonym, not_before)"
        "   VALUES ($1, $2, $3, now() + $4::bigint * interval '1 millisecond')"
        "   ON CONFLICT (user_id) WHERE status IN ('pending', 'processing') DO NOTHING"
        "   RETURNING id, status, not_before)"
        " SELECT id, status, " TS("not_before") " FROM n UNION ALL"
        " SELECT id, status, " TS("not_before") " FROM gdpr_deletion_requests"
        "   WHERE user_id = $2 AND status IN ('pending', 'processing')", 4, NULL, p, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) < 1) {
        insite_log_warn("delete request: %s", PQresultErrorMessage(r));
        PQclear(r);
        return unavailable(reply);
    }
    *reply = json_pack("{s:s, s:s, s:s}", "request_id", PQgetvalue(r, 0, 0),
                       "status", PQgetvalue(r, 0, 1), "not_before", PQgetvalue(r, 0, 2));
    PQclear(r);
    return 202;
}

static int cancel(gdpr_erasure *e, const char *id, const char *user, json_t **reply)
{
    char psn[40];
    const char *p[2] = { id, psn };
    PGresult *r;

    if (!is_uuid(id))
        return not_found(reply);
    if (gdpr_pseudonym(e, user, psn) != 0 || gdpr_store_pg(e->store) == NULL)
        return unavailable(reply);
    r = PQexecParams(e->store->pg,
        "WITH c AS (UPDATE gdpr_deletion_requests SET status = 'cancelled'"
        "   WHERE id = $1 AND user_pseudonym = $2 AND status = 'pending' AND not_before > now()"
        "   RETURNING id)"
        " SELECT (SELECT count(*) FROM c), status FROM gdpr_deletion_requests"
        "   WHERE id = $1 AND user_pseudonym = $2", 2, NULL, p, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        PQclear(r);
        return unavailable(reply);
    }
    if (PQntuples(r) == 0) {
        PQclear(r);
        return not_found(reply);
    }
    if (strcmp(PQgetvalue(r, 0, 0), "1") != 0) {
        *reply = insite_http_error("conflict", "the request can no longer be cancelled");
        PQclear(r);
        return 409;
    }
    PQclear(r);
    *reply = json_pack("{s:s, s:s}", "request_id", id, "status", "cancelled");
    return 200;
}

int gdpr_api_delete(const insite_http_request *req, json_t **reply, void *ud)
{
    gdpr_erasure *e = ud;
    const char *user = insite_http_user(req);
    int status;

    if (user == NULL) {
        *reply = insite_http_error("unauthorized", "no authenticated user (X-User-Id)");
        return 401;
    }
    if (e == NULL) {
        *reply = insite_http_error("unavailable", "erasure is not configured (gdpr.data_map)");
        return 503;
    }
    if (strlen(user) > 256) {          /* the job's buffers hold 511 bytes */
        *reply = insite_http_error("bad_request", "user id longer than 256 bytes");
        return 400;
    }
    pthread_mutex_lock(&e->store->lock);
    if (req->rest[0] == '\0' && strcmp(req->method, "POST") == 0)
        status = create(e, req, user, reply);
    else if (req->rest[0] == '/' && strcmp(req->method, "DELETE") == 0)
        status = cancel(e, req->rest + 1, user, reply);
    else {
        *reply = insite_http_error("method_not_allowed", "POST to request, DELETE /{id} to cancel");
        status = 405;
    }
    pthread_mutex_unlock(&e->store->lock);
    return status;
}

int gdpr_api_deletion_status(const insite_http_request *req, json_t **reply, void *ud)
{
    gdpr_erasure *e = ud;
    const char *user = insite_http_user(req);
    char psn[40];
    const char *p[3];
    PGresult *r;
    json_t *steps;

    if (user == NULL) {
        *reply = insite_http_error("unauthorized", "no authenticated user (X-User-Id)");
        return 401;
    }
    if (e == NULL) {
        *reply = insite_http_error("unavailable", "erasure is not configured (gdpr.data_map)");
        return 503;
    }
    if (strcmp(req->method, "GET") != 0) {
        *reply = insite_http_error("method_not_allowed", "GET only");
        return 405;
    }
    if (req->rest[0] != '/' || !is_uuid(req->rest + 1))
        return not_found(reply);
    if (gdpr_pseudonym(e, user, psn) != 0)
        return unavailable(reply);
    p[0] = req->rest + 1;
    p[1] = psn;
    p[2] = insite_http_has_scope(req, "gdpr:admin") ? "t" : "f";
    pthread_mutex_lock(&e->store->lock);
    if (gdpr_store_pg(e->store) == NULL) {
        pthread_mutex_unlock(&e->store->lock);
        return unavailable(reply);
    }
    /* another user's request is "not found": its existence is not revealed */
    r = PQexecParams(e->store->pg,
        "SELECT id, status, " TS("requested_at") ", " TS("not_before") ", " TS("completed_at")
        ", error, receipt, signature, attempts FROM gdpr_deletion_requests"
        " WHERE id = $1 AND (user_pseudonym = $2 OR $3::boolean)", 3, NULL, p, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) == 0) {
        int st = PQresultStatus(r) == PGRES_TUPLES_OK ? not_found(reply) : unavailable(reply);
        PQclear(r);
        pthread_mutex_unlock(&e->store->lock);
        return st;
    }
    *reply = json_pack("{s:s, s:s, s:s, s:s, s:i}", "request_id", PQgetvalue(r, 0, 0),
                       "status", PQgetvalue(r, 0, 1), "requested_at", PQgetvalue(r, 0, 2),
                       "not_before", PQgetvalue(r, 0, 3), "attempts", atoi(PQgetvalue(r, 0, 8)));
    if (!PQgetisnull(r, 0, 4))
        json_object_set_new(*reply, "completed_at", json_string(PQgetvalue(r, 0, 4)));
    if (!PQgetisnull(r, 0, 5))
        json_object_set_new(*reply, "error", json_string(PQgetvalue(r, 0, 5)));
    if (!PQgetisnull(r, 0, 6))
        json_object_set_new(*reply, "receipt", json_pack("{s:s, s:s}", "payload", PQgetvalue(r, 0, 6),
                                                         "signature", PQgetvalue(r, 0, 7)));
    PQclear(r);
    r = PQexecParams(e->store->pg, "SELECT target, action, rows, done_at IS NOT NULL, error"
                     " FROM gdpr_deletion_steps WHERE request_id = $1 ORDER BY target",
                     1, NULL, p, NULL, NULL, 0);
    steps = json_array();
    for (int i = 0; PQresultStatus(r) == PGRES_TUPLES_OK && i < PQntuples(r); i++) {
        json_t *s = json_pack("{s:s, s:s, s:I, s:b}", "target", PQgetvalue(r, i, 0),
                              "action", PQgetvalue(r, i, 1),
                              "rows", (json_int_t)strtoll(PQgetvalue(r, i, 2), NULL, 10),
                              "done", PQgetvalue(r, i, 3)[0] == 't');
        if (!PQgetisnull(r, i, 4))
            json_object_set_new(s, "error", json_string(PQgetvalue(r, i, 4)));
        json_array_append_new(steps, s);
    }
    PQclear(r);
    pthread_mutex_unlock(&e->store->lock);
    json_object_set_new(*reply, "targets", steps);
    return 200;
}

/* insite-gdpr verify-receipt FILE PUBLIC_KEY_PEM: FILE holds
 * {"payload":"<signed text>","signature":"<hex>"} (the status reply's
 * "receipt" object). */
int gdpr_verify_receipt_main(int argc, char **argv, FILE *out)
{
    json_error_t je;
    json_t *rc, *pl = NULL;
    void *k;
    const char *text, *sig;
    int bad = 1;

    if (argc != 2) {
        fprintf(out, "usage: insite-gdpr verify-receipt FILE PUBLIC_KEY_PEM\n");
        return 2;
    }
    if ((k = insite_sign_load_key(argv[1], 0, "receipt")) == NULL)
        return 2;
    if ((rc = json_load_file(argv[0], 0, &je)) == NULL) {
        fprintf(out, "%s: %s\n", argv[0], je.text);
        insite_sign_free(k);
        return 2;
    }
    text = json_string_value(json_object_get(rc, "payload"));
    sig = json_string_value(json_object_get(rc, "signature"));
    if (text == NULL || sig == NULL || (pl = json_loads(text, 0, NULL)) == NULL)
        fprintf(out, "%s: not a receipt\n", argv[0]);
    else if (insite_sign_verify(k, text, strlen(text), sig) != 0)
        fprintf(out, "%s: signature does not verify\n", argv[0]);
    else {
        fprintf(out, "%s: request %s completed %s, %zu target(s): ok\n", argv[0],
                json_string_value(json_object_get(pl, "request_id")),
                json_string_value(json_object_get(pl, "completed_at")),
                json_array_size(json_object_get(pl, "targets")));
        bad = 0;
    }
    json_decref(pl);
    json_decref(rc);
    insite_sign_free(k);
    return bad;
}

/* ---- export (Art. 15/20): every record the data map finds ---- */

/* The archive: {"schema":"insite-gdpr-export/1","request_id","user_id",
 * "generated_at","postgresql":{"<target>":[row objects]},
 * "redis":{"<target>":{"key","exists"}}} */
static json_t *build_archive(gdpr_erasure *e, const char *id, const char *user)
{
    char ts[40], sql[512], key[1024], psn[40];
    const char *p[2] = { user, psn };
    json_t *pg = json_object(), *rd = json_object();

    /* a pseudonymized target (the audit trail) may hold the user's rows
     * under the pseudonym: since an erasure, or from the edge (nginx's
     * insite_gdpr_pseudonym_key, docs/gdpr-rights.md) */
    if (gdpr_pseudonym(e, user, psn) != 0)
        goto fail;

    for (size_t i = 0; i < e->map.ntargets; i++) {
        target *x = &e->map.targets[i];
        if (x->kind == GDPR_T_PG) {
            PGconn *c = db(e, x->db);
            if (c == NULL)
                goto fail;
            snprintf(sql, sizeof(sql), x->pseudonymize
                     ? "SELECT coalesce(json_agg(t), '[]') FROM %1$s t WHERE %2$s = $1 OR %2$s = $2"
                     : "SELECT coalesce(json_agg(t), '[]') FROM %s t WHERE %s = $1",
                     x->table, x->column);
            PGresult *r = PQexecParams(c, sql, x->pseudonymize ? 2 : 1, NULL, p, NULL, NULL, 0);
            if (PQresultStatus(r) != PGRES_TUPLES_OK) {
                int absent = table_absent(r);
                if (!absent)
                    insite_log_warn("export: %s: %s", x->name, PQresultErrorMessage(r));
                PQclear(r);
                if (absent)
                    continue;
                goto fail;
            }
            json_t *rows = json_loads(PQgetvalue(r, 0, 0), 0, NULL);
            PQclear(r);
            json_object_set_new(pg, x->name + 3, rows ? rows : json_array());
        } else if (x->kind == GDPR_T_REDIS) {
            long long n = 0;
            if (run_redis(e, x, user, &n, 1) != 0)
                goto fail;
            redis_key(x, user, key, sizeof(key));
            json_object_set_new(rd, x->name + 6, json_pack("{s:s, s:b}", "key", key, "exists", n > 0));
        }
    }
    return json_pack("{s:s, s:s, s:s, s:s, s:o, s:o}", "schema", "insite-gdpr-export/1",
                     "request_id", id, "user_id", user,
                     "generated_at", insite_clock_rfc3339(ts, sizeof(ts)), "postgresql", pg, "redis", rd);
fail:
    json_decref(pg);
    json_decref(rd);
    return NULL;
}

int gdpr_export_run(gdpr_erasure *e, long long ttl_ms)
{
    PGconn *c;
    PGresult *r;
    char id[64], user[512], ttl[32];
    const char *p[3];
    json_t *a;
    char *text;

    if (insite_clock_mono_ms() < e->retry_at || (c = ours(e)) == NULL)
        return -1;
    /* expired archives are deleted, the request stays as a record */
    r = PQexec(c, "UPDATE gdpr_data_exports SET archive = NULL, status = 'expired'"
               " WHERE status = 'ready' AND expires_at <= now()");
    PQclear(r);
    r = q(c, "SELECT id, user_id FROM gdpr_data_exports WHERE status = 'pending'"
          " ORDER BY requested_at LIMIT 1", 0, NULL, PGRES_TUPLES_OK);
    if (r == NULL || PQntuples(r) == 0) {
        PQclear(r);
        return r ? 0 : -1;
    }
    snprintf(id, sizeof(id), "%s", PQgetvalue(r, 0, 0));
    snprintf(user, sizeof(user), "%s", PQgetvalue(r, 0, 1));
    PQclear(r);
    if ((a = build_archive(e, id, user)) == NULL) {
        e->retry_at = insite_clock_mono_ms() + 1000;
        return -1;
    }
    text = json_dumps(a, JSON_COMPACT);
    json_decref(a);
    snprintf(ttl, sizeof(ttl), "%lld", ttl_ms);
    p[0] = id;
    p[1] = text;
    p[2] = ttl;
    r = q(c, "UPDATE gdpr_data_exports SET status = 'ready', archive = $2, ready_at = now(),"
          " expires_at = now() + $3::bigint * interval '1 millisecond' WHERE id = $1 AND status = 'pending'",
          3, p, PGRES_COMMAND_OK);
    free(text);
    if (r == NULL)
        return -1;
    PQclear(r);
    insite_log_info("export %s ready", id);
    return 1;
}

int gdpr_api_export(const insite_http_request *req, json_t **reply, void *ud)
{
    gdpr_erasure *e = ud;
    const char *user = insite_http_user(req);
    char id[INSITE_UUID_LEN];
    const char *p[2];
    PGresult *r;
    int status;

    if (user == NULL) {
        *reply = insite_http_error("unauthorized", "no authenticated user (X-User-Id)");
        return 401;
    }
    if (e == NULL) {
        *reply = insite_http_error("unavailable", "export is not configured (gdpr.data_map)");
        return 503;
    }
    if (strlen(user) > 256) {
        *reply = insite_http_error("bad_request", "user id longer than 256 bytes");
        return 400;
    }
    pthread_mutex_lock(&e->store->lock);
    if (gdpr_store_pg(e->store) == NULL) {
        pthread_mutex_unlock(&e->store->lock);
        return unavailable(reply);
    }
    if (req->rest[0] == '\0' && strcmp(req->method, "POST") == 0) {
        p[0] = id;
        p[1] = user;
        r = NULL;
        if (insite_uuid_v4(id) == 0)
            r = PQexecParams(e->store->pg, "INSERT INTO gdpr_data_exports (id, user_id) VALUES ($1, $2)",
                             2, NULL, p, NULL, NULL, 0);
        if (r == NULL || PQresultStatus(r) != PGRES_COMMAND_OK)
            status = unavailable(reply);
        else {
            *reply = json_pack("{s:s, s:s}", "request_id", id, "status", "pending");
            status = 202;
        }
        PQclear(r);
    } else if (req->rest[0] == '/' && strcmp(req->method, "GET") == 0) {
        p[0] = req->rest + 1;
        p[1] = user;
        if (!is_uuid(p[0])) {
            status = not_found(reply);
            goto done;
        }
        /* the requester only: another user's export does not exist */
        r = PQexecParams(e->store->pg, "SELECT status, archive, " TS("expires_at")
                         " FROM gdpr_data_exports WHERE id = $1 AND user_id = $2",
                         2, NULL, p, NULL, NULL, 0);
        if (PQresultStatus(r) != PGRES_TUPLES_OK)
            status = unavailable(reply);
        else if (PQntuples(r) == 0)
            status = not_found(reply);
        else if (strcmp(PQgetvalue(r, 0, 0), "ready") == 0
                 && (*reply = json_loads(PQgetvalue(r, 0, 1), 0, NULL)) != NULL) {
            json_object_set_new(*reply, "expires_at", json_string(PQgetvalue(r, 0, 2)));
            status = 200;
        } else {
            *reply = json_pack("{s:s, s:s}", "request_id", p[0], "status", PQgetvalue(r, 0, 0));
            status = strcmp(PQgetvalue(r, 0, 0), "expired") == 0 ? 410 : 200;
        }
        PQclear(r);
    } else {
        *reply = insite_http_error("method_not_allowed", "POST to request, GET /{id} to download");
        status = 405;
    }
done:
    pthread_mutex_unlock(&e->store->lock);
    return status;
}
