/* Retention (plan 5.1): expired rows go, in bounded batches, one policy at a
 * time, each under a PostgreSQL advisory lock.  docs/gdpr-retention.md.
 *
 *   gdpr_retention_policies   what expires after how many days (operators
 *                             edit it through the API; read at every run)
 *   data map "retention"      where: database, table, time column, filter
 *   gdpr_audit_log            one row per policy run (automated_deletion)
 *
 * A run takes the policy's lock (pg_try_advisory_lock: another instance
 * running it makes this one skip it), resumes a row still 'running' (a run
 * killed mid-way: same cutoff) or starts one, then deletes batches of
 * gdpr.retention_batch rows, each in its own transaction with the log row's
 * rows_affected when the target is in our database, pausing
 * gdpr.retention_pause between batches so the collector and the shipper are
 * never behind a long lock.  A failing policy is marked failed with its
 * error and the run goes on with the next one.
 *
 * Threads: the run happens on the retention thread (the schedule) or on the
 * main thread (--retention-now), with connections of its own; the API runs
 * on the HTTP thread through the shared store. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "datamap.h"
#include "gdpr.h"
#include "log.h"
#include "pg.h"

#define LOCK_CLASS "insite-gdpr-retention"

struct gdpr_retention {
    char *map_path, *dsn;
    int minute;                  /* of the UTC day; -1 = no schedule */
    long long batch, pause_ms;
    gdpr_store *store;           /* the API's connection */

    pthread_t thread;
    int started;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int stop;
    int64_t last_slot;           /* the scheduled instant last handled */

    insite_counter *rows, *runs, *failures;
    insite_gauge *last_run;
};

int gdpr_retention_time_parse(const char *s, int *minute)
{
    if (s[0] == '\0') {
        *minute = -1;
        return 0;
    }
    if (strlen(s) != 5 || s[2] != ':')
        return -1;
    for (int i = 0; i < 5; i++)
        if (i != 2 && (s[i] < '0' || s[i] > '9'))
            return -1;
    int h = (s[0] - '0') * 10 + (s[1] - '0'), m = (s[3] - '0') * 10 + (s[4] - '0');
    if (h > 23 || m > 59)
        return -1;
    *minute = h * 60 + m;
    return 0;
}

gdpr_retention *gdpr_retention_new(const gdpr_retention_options *o, char *err, size_t errlen)
{
    gdpr_datamap map = { .ndbs = 0 };
    gdpr_retention *r;

    /* the map is read at every run; a broken one is refused at start too */
    if (gdpr_datamap_load(&map, o->data_map, o->dsn, err, errlen) != 0)
        return NULL;
    gdpr_datamap_free(&map);
    if ((r = calloc(1, sizeof(*r))) == NULL) {
        snprintf(err, errlen, "retention: out of memory");
        return NULL;
    }
    if (gdpr_retention_time_parse(o->time, &r->minute) != 0) {
        snprintf(err, errlen, "gdpr.retention_time \"%s\": HH:MM (UTC) or \"\"", o->time);
        free(r);
        return NULL;
    }
    r->map_path = strdup(o->data_map);
    r->dsn = strdup(o->dsn);
    r->batch = o->batch;
    r->pause_ms = o->pause_ms;
    r->store = o->store;
    pthread_mutex_init(&r->lock, NULL);
    pthread_cond_init(&r->cond, NULL);
    if (o->metrics) {
        r->rows = insite_metrics_counter(o->metrics, "retention_rows_deleted",
                                         "Rows deleted by retention policies.");
        r->runs = insite_metrics_counter(o->metrics, "retention_policy_runs",
                                         "Retention policy runs finished (completed or failed).");
        r->failures = insite_metrics_counter(o->metrics, "retention_policy_failures",
                                             "Retention policy runs that failed.");
        r->last_run = insite_metrics_gauge(o->metrics, "retention_last_run_timestamp_seconds",
                                           "When the last retention run finished (Unix time).");
    }
    return r;
}

/* metrics are off for --retention-now */
static void count(insite_counter *c, long long n)
{
    if (c)
        insite_counter_add(c, (uint64_t)n);
}

static int stopping(gdpr_retention *r)
{
    pthread_mutex_lock(&r->lock);
    int s = r->stop;
    pthread_mutex_unlock(&r->lock);
    return s;
}

/* Sleeps ms unless stopped meanwhile; 1 when stopped. */
static int nap(gdpr_retention *r, long long ms)
{
    struct timespec t;
    int s;

    clock_gettime(CLOCK_REALTIME, &t);
    t.tv_sec += ms / 1000;
    t.tv_nsec += (ms % 1000) * 1000000L;
    if (t.tv_nsec >= 1000000000L) {
        t.tv_sec++;
        t.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&r->lock);
    while (!r->stop && pthread_cond_timedwait(&r->cond, &r->lock, &t) != ETIMEDOUT)
        ;
    s = r->stop;
    pthread_mutex_unlock(&r->lock);
    return s;
}

/* ---- one policy ---- */

typedef struct {
    const char *data_type, *target;
    int days;
    long long rows;
    char cutoff[64];
    char error[512];
    int resumed, skipped;
} policy_run;

static PGresult *exec(PGconn *c, const char *sql, int n, const char *const *p, ExecStatusType want,
                      policy_run *pr)
{
    PGresult *res = PQexecParams(c, sql, n, NULL, p, NULL, NULL, 0);
    if (PQresultStatus(res) == want)
        return res;
    if (pr && pr->error[0] == '\0') {
        snprintf(pr->error, sizeof(pr->error), "%s", PQresultErrorMessage(res));
        pr->error[strcspn(pr->error, "\n")] = '\0';
    }
    PQclear(res);
    return NULL;
}

/* "<table> WHERE <time> < $1 [AND <col> = ANY($2::text[])]" */
static int where_sql(const gdpr_retention_target *t, char *out, size_t len)
{
    int n = snprintf(out, len, "%s WHERE %s < $1::timestamptz", t->table, t->time_column);
    if (t->filter_column)
        n += snprintf(out + n, len - (size_t)n, " AND %s = ANY($2::text[])", t->filter_column);
    return n > 0 && (size_t)n < len ? 0 : -1;
}

/* The filter's values as a PostgreSQL array literal, malloc'ed. */
static char *filter_array(const gdpr_retention_target *t)
{
    json_t *a = json_array(), *v;
    size_t i;
    json_array_foreach(t->filter_values, i, v)
        json_array_append(a, v);
    /* the values are [A-Za-z0-9_.:-] (datamap.c): a JSON array of them is a
     * text[] literal once [] become {} */
    char *s = json_dumps(a, JSON_COMPACT);
    json_decref(a);
    if (s) {
        s[0] = '{';
        s[strlen(s) - 1] = '}';
    }
    return s;
}

static PGconn *target_conn(gdpr_retention *r, const gdpr_datamap *m, const gdpr_retention_target *t,
                           PGconn *ours, policy_run *pr)
{
    const char *dsn = m->dbs[t->db].dsn;
    char err[400];
    PGconn *c;

    if (strcmp(dsn, r->dsn) == 0)
        return ours;
    if ((c = insite_pg_connect(dsn, err, sizeof(err))) == NULL) {
        snprintf(pr->error, sizeof(pr->error), "database %.64s: %s", m->dbs[t->db].name, err);
        for (char *e = pr->error; *e; e++)
            if ((unsigned char)*e < 0x20)
                *e = ' ';
    }
    return c;
}

static int dry_count(PGconn *tc, const gdpr_retention_target *t, const char *const *p, policy_run *pr)
{
    char where[512], sql[640];
    PGresult *res;

    if (where_sql(t, where, sizeof(where)) != 0)
        return -1;
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM %s", where);
    if ((res = exec(tc, sql, t->filter_column ? 2 : 1, p, PGRES_TUPLES_OK, pr)) == NULL)
        return -1;
    pr->rows = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    PQclear(res);
    return 0;
}

/* Starts the log row, or takes over one a killed run left 'running' (we
 * hold the policy's lock: nobody else is running it).  Sets pr->cutoff. */
static int log_begin(PGconn *c, policy_run *pr, char *id, size_t idlen)
{
    char days[16];
    const char *p[3] = { pr->data_type, pr->target, days };
    PGresult *res;

    snprintf(days, sizeof(days), "%d", pr->days);
    res = exec(c, "SELECT id, cutoff::text, rows_affected FROM gdpr_audit_log"
               " WHERE action = 'automated_deletion' AND data_type = $1 AND status = 'running'"
               " ORDER BY id DESC LIMIT 1", 1, p, PGRES_TUPLES_OK, pr);
    if (res == NULL)
        return -1;
    if (PQntuples(res) == 1) {
        pr->resumed = 1;
        pr->rows = strtoll(PQgetvalue(res, 0, 2), NULL, 10);
    } else {
        PQclear(res);
        res = exec(c, "INSERT INTO gdpr_audit_log (action, data_type, target, cutoff, status)"
                   " VALUES ('automated_deletion', $1, $2, now() - $3::int * interval '1 day', 'running')"
                   " RETURNING id, cutoff::text", 3, p, PGRES_TUPLES_OK, pr);
        if (res == NULL)
            return -1;
    }
    snprintf(id, idlen, "%s", PQgetvalue(res, 0, 0));
    snprintf(pr->cutoff, sizeof(pr->cutoff), "%s", PQgetvalue(res, 0, 1));
    PQclear(res);
    if (pr->resumed)
        insite_log_info("retention %s: resuming run %s (cutoff %s, %lld rows so far)",
                        pr->data_type, id, pr->cutoff, pr->rows);
    return 0;
}

/* ---- a target in another database ----
 *
 * Its batch commits there, not in our transaction, so it is first written
 * to gdpr_retention_pending (migration 063) with the other transaction's
 * id, then that database commits, then settle() moves the rows into the
 * log row and drops the pending one in a single statement of ours.  A run
 * killed in between leaves the pending row; resolve() asks the other
 * database whether that transaction committed (txid_status) and settles or
 * drops it.  Only when the other database no longer knows (the id is past
 * its commit-log horizon) or cannot say within 10 s is the log row marked
 * "count_may_be_low" with the uncertain rows, instead of guessing. */

static int pending_add(PGconn *c, const char *log_id, const char *db, const char *txid, long long rows,
                       policy_run *pr)
{
    char n[32];
    const char *p[4] = { log_id, db, txid, n };
    PGresult *res;

    snprintf(n, sizeof(n), "%lld", rows);
    res = exec(c, "INSERT INTO gdpr_retention_pending (log_id, database, txid, rows)"
               " VALUES ($1, $2, $3, $4)", 4, p, PGRES_COMMAND_OK, pr);
    PQclear(res);
    return res ? 0 : -1;
}

/* The pending batch of log_id: counted (committed), dropped (aborted) or
 * counted as uncertain.  0 or -1. */
static int settle(PGconn *c, const char *log_id, const char *how, policy_run *pr)
{
    const char *p[1] = { log_id };
    const char *sql = strcmp(how, "committed") == 0
        ? "WITH d AS (DELETE FROM gdpr_retention_pending WHERE log_id = $1 RETURNING rows)"
          " UPDATE gdpr_audit_log l SET rows_affected = rows_affected + d.rows FROM d WHERE l.id = $1"
        : strcmp(how, "aborted") == 0
        ? "DELETE FROM gdpr_retention_pending WHERE log_id = $1"
        : "WITH d AS (DELETE FROM gdpr_retention_pending WHERE log_id = $1 RETURNING rows)"
          " UPDATE gdpr_audit_log l SET details = l.details || jsonb_build_object('count_may_be_low', true,"
          "   'uncertain_rows', coalesce((l.details ->> 'uncertain_rows')::bigint, 0) + d.rows)"
          " FROM d WHERE l.id = $1";
    PGresult *res = exec(c, sql, 1, p, PGRES_COMMAND_OK, pr);

    PQclear(res);
    return res ? 0 : -1;
}

/* Settles the batches a killed run of this policy left pending in db.
 * 0, or -1 (pr->error set: the rows stay pending for the next run). */
static int resolve(gdpr_retention *r, PGconn *c, PGconn *tc, const char *db, policy_run *pr)
{
    const char *p[2] = { pr->data_type, db };
    PGresult *res = exec(c, "SELECT p.log_id, p.txid, p.rows FROM gdpr_retention_pending p"
                         " JOIN gdpr_audit_log l ON l.id = p.log_id WHERE l.data_type = $1 AND p.database = $2",
                         2, p, PGRES_TUPLES_OK, pr);
    int rc = 0;

    for (int i = 0; res && rc == 0 && i < PQntuples(res); i++) {
        const char *log_id = PQgetvalue(res, i, 0), *tp[1] = { PQgetvalue(res, i, 1) };
        char how[32] = "";
        for (int tries = 0; tries < 100; tries++) {          /* 'in progress': its backend is
                                                               still noticing the kill */
            PGresult *st = exec(tc, "SELECT coalesce(txid_status($1::bigint), 'unknown')", 1, tp,
                                PGRES_TUPLES_OK, pr);
            if (st == NULL) {
                rc = -1;
                break;
            }
            snprintf(how, sizeof(how), "%s", PQgetvalue(st, 0, 0));
            PQclear(st);
            if (strcmp(how, "in progress") != 0 || nap(r, 100))
                break;
        }
        if (rc == 0 && settle(c, log_id, how, pr) != 0)
            rc = -1;
        if (rc == 0)
            insite_log_info("retention %s: a batch of %s rows left pending by an interrupted run in %s: %s%s",
                            pr->data_type, PQgetvalue(res, i, 2), db, how,
                            strcmp(how, "committed") && strcmp(how, "aborted")
                                ? " (the run's count is marked count_may_be_low)" : "");
    }
    if (res == NULL)
        rc = -1;
    PQclear(res);
    return rc;
}

/* One batch: its rows, or -1.  With the target in our database the log row
 * moves in the same transaction, so it is exact after any crash; in another
 * database (tc != c) the batch goes through gdpr_retention_pending. */
static long long delete_batch(gdpr_retention *r, PGconn *c, PGconn *tc, const char *db,
                              const gdpr_retention_target *t, const char *const *p, const char *log_id,
                              policy_run *pr)
{
    char where[512], sql[1200], n[32], txid[32];
    PGresult *res;
    long long rows;
    int same = tc == c;

    if (where_sql(t, where, sizeof(where)) != 0)
        return -1;
    /* SKIP LOCKED: a row a writer holds waits for the next run, the writer
     * never waits for us; lock_timeout bounds the table lock wait */
    snprintf(sql, sizeof(sql), "DELETE FROM %s WHERE ctid = ANY (ARRAY (SELECT ctid FROM %s"
             " LIMIT %lld FOR UPDATE SKIP LOCKED))", t->table, where, r->batch);
    if ((res = exec(tc, "BEGIN", 0, NULL, PGRES_COMMAND_OK, pr)) == NULL)
        return -1;
    PQclear(res);
    if ((res = exec(tc, "SET LOCAL lock_timeout = '5s'", 0, NULL, PGRES_COMMAND_OK, pr)) == NULL)
        goto rollback;
    PQclear(res);
    if ((res = exec(tc, sql, t->filter_column ? 2 : 1, p, PGRES_COMMAND_OK, pr)) == NULL)
        goto rollback;
    rows = strtoll(PQcmdTuples(res), NULL, 10);
    PQclear(res);
    snprintf(n, sizeof(n), "%lld", rows);
    const char *lp[2] = { log_id, n };
    if (same && (res = exec(tc, "UPDATE gdpr_audit_log SET rows_affected = rows_affected + $2::bigint"
                            " WHERE id = $1", 2, lp, PGRES_COMMAND_OK, pr)) == NULL)
        goto rollback;
    if (same)
        PQclear(res);
    if (!same && rows > 0) {
        if ((res = exec(tc, "SELECT txid_current()", 0, NULL, PGRES_TUPLES_OK, pr)) == NULL)
            goto rollback;
        snprintf(txid, sizeof(txid), "%s", PQgetvalue(res, 0, 0));
        PQclear(res);
        if (pending_add(c, log_id, db, txid, rows, pr) != 0)
            goto rollback;
    }
    if ((res = exec(tc, "COMMIT", 0, NULL, PGRES_COMMAND_OK, pr)) == NULL)
        return -1;                      /* pending, if any: the next run asks */
    PQclear(res);
    if (!same && rows > 0 && settle(c, log_id, "committed", pr) != 0)
        return -1;                      /* deleted and pending: the next run counts it */
    return rows;
rollback:
    PQclear(PQexec(tc, "ROLLBACK"));
    return -1;
}

static void log_end(PGconn *c, const char *id, policy_run *pr)
{
    const char *p[3] = { id, pr->error[0] ? "failed" : "completed", pr->error[0] ? pr->error : NULL };

    PGresult *res = exec(c, "UPDATE gdpr_audit_log SET status = $2, error = $3, finished_at = now()"
                         " WHERE id = $1", 3, p, PGRES_COMMAND_OK, NULL);
    if (res == NULL)
        insite_log_warn("retention %s: cannot close log row %s (it is resumed next run)",
                        pr->data_type, id);
    PQclear(res);
}

/* pr->rows from the log row (after resolve() settled a pending batch). */
static void log_rows(PGconn *c, const char *log_id, policy_run *pr)
{
    const char *p[1] = { log_id };
    PGresult *res = exec(c, "SELECT rows_affected FROM gdpr_audit_log WHERE id = $1", 1, p,
                         PGRES_TUPLES_OK, NULL);

    if (res && PQntuples(res) == 1)
        pr->rows = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    PQclear(res);
}

/* Deletes (or counts, dry) the policy's expired rows. */
static void run_policy(gdpr_retention *r, PGconn *c, const gdpr_datamap *m, policy_run *pr, int dry)
{
    const gdpr_retention_target *t = gdpr_datamap_retention_find(m, pr->target);
    char log_id[32] = "", *filter = NULL;
    const char *p[2];
    PGconn *tc = NULL;

    if (dry) {
        PGresult *res;
        char days[16];
        const char *dp[1] = { days };
        snprintf(days, sizeof(days), "%d", pr->days);
        if ((res = exec(c, "SELECT (now() - $1::int * interval '1 day')::text", 1, dp,
                        PGRES_TUPLES_OK, pr)) == NULL)
            return;
        snprintf(pr->cutoff, sizeof(pr->cutoff), "%s", PQgetvalue(res, 0, 0));
        PQclear(res);
    } else if (log_begin(c, pr, log_id, sizeof(log_id)) != 0)
        return;
    if (t == NULL) {
        snprintf(pr->error, sizeof(pr->error), "no retention target \"%s\" in the data map", pr->target);
        goto out;
    }
    if ((tc = target_conn(r, m, t, c, pr)) == NULL)
        goto out;
    p[0] = pr->cutoff;
    p[1] = t->filter_column ? (filter = filter_array(t)) : NULL;
    if (dry) {
        dry_count(tc, t, p, pr);
        goto out;
    }
    if (tc != c && resolve(r, c, tc, m->dbs[t->db].name, pr) != 0)
        goto out;
    if (pr->resumed && tc != c)         /* the count may have grown in resolve() */
        log_rows(c, log_id, pr);
    for (;;) {
        long long n = delete_batch(r, c, tc, m->dbs[t->db].name, t, p, log_id, pr);
        if (n < 0)
            break;
        pr->rows += n;
        count(r->rows, n);
        if (n < r->batch)
            break;
        if (nap(r, r->pause_ms)) {
            /* the row stays 'running': the next run resumes it */
            insite_log_info("retention %s: stopping after %lld rows, resumed next run",
                            pr->data_type, pr->rows);
            if (tc != c && tc)
                PQfinish(tc);
            free(filter);
            return;
        }
    }
out:
    if (!dry) {
        log_end(c, log_id, pr);
        count(r->runs, 1);
        if (pr->error[0])
            count(r->failures, 1);
    }
    if (pr->error[0])
        insite_log_warn("retention %s (%s): %s; going on with the next policy", pr->data_type,
                        pr->target, pr->error);
    else
        insite_log_info("retention %s: %lld row(s) %s older than %s", pr->data_type, pr->rows,
                        dry ? "would go," : "deleted,", pr->cutoff);
    if (tc != c && tc)
        PQfinish(tc);
    free(filter);
}

/* ---- a run over every active policy ---- */

json_t *gdpr_retention_run(gdpr_retention *r, int dry)
{
    gdpr_datamap m = { .ndbs = 0 };
    char err[512];
    PGconn *c;
    PGresult *res;
    json_t *out = json_array();
    int failed = 0;

    if ((c = insite_pg_connect(r->dsn, err, sizeof(err))) == NULL) {
        insite_log_warn("retention: postgresql: %s", err);
        json_decref(out);
        return NULL;
    }
    if (gdpr_datamap_load(&m, r->map_path, r->dsn, err, sizeof(err)) != 0) {
        insite_log_error("retention: %s", err);
        PQfinish(c);
        json_decref(out);
        return NULL;
    }
    res = exec(c, "SELECT data_type, target, retention_days FROM gdpr_retention_policies"
               " WHERE is_active ORDER BY data_type", 0, NULL, PGRES_TUPLES_OK, NULL);
    for (int i = 0; res && i < PQntuples(res) && !stopping(r); i++) {
        policy_run pr = { .data_type = PQgetvalue(res, i, 0), .target = PQgetvalue(res, i, 1),
                          .days = atoi(PQgetvalue(res, i, 2)) };
        const char *p[2] = { LOCK_CLASS, pr.data_type };
        PGresult *l = exec(c, "SELECT pg_try_advisory_lock(hashtext($1), hashtext($2))", 2, p,
                           PGRES_TUPLES_OK, &pr);
        if (l && PQgetvalue(l, 0, 0)[0] == 't') {
            run_policy(r, c, &m, &pr, dry);
            PQclear(exec(c, "SELECT pg_advisory_unlock(hashtext($1), hashtext($2))", 2, p,
                         PGRES_TUPLES_OK, NULL));
        } else if (l) {
            pr.skipped = 1;
            insite_log_info("retention %s: another instance is running it, skipped", pr.data_type);
        }
        PQclear(l);
        failed += pr.error[0] != '\0';
        json_t *o = json_pack("{s:s, s:s, s:i, s:s, s:I, s:s, s:b}", "data_type", pr.data_type,
                              "target", pr.target, "retention_days", pr.days, "cutoff", pr.cutoff,
                              "rows", (json_int_t)pr.rows,
                              "status", pr.skipped ? "skipped" : pr.error[0] ? "failed"
                                        : dry ? "dry_run" : "completed",
                              "resumed", pr.resumed);
        if (pr.error[0])
            json_object_set_new(o, "error", json_string(pr.error));
        json_array_append_new(out, o);
    }
    if (res == NULL)
        insite_log_warn("retention: cannot read gdpr_retention_policies");
    PQclear(res);
    PQfinish(c);
    gdpr_datamap_free(&m);
    if (!dry && r->last_run)
        insite_gauge_set(r->last_run, (double)time(NULL));
    json_t *sum = json_pack("{s:o, s:i, s:b}", "policies", out, "failed", failed, "dry_run", dry);
    return sum;
}

/* ---- the schedule ---- */

/* The latest scheduled instant at or before now (Unix seconds). */
static int64_t last_slot(int minute, time_t now)
{
    int64_t day = (int64_t)now - (int64_t)now % 86400;
    int64_t s = day + (int64_t)minute * 60;
    return s <= now ? s : s - 86400;
}

/* Ran since the slot (by this or another instance)?  1, 0, -1. */
static int ran_since(gdpr_retention *r, int64_t slot)
{
    char err[512], ts[32];
    const char *p[1] = { ts };
    PGconn *c = insite_pg_connect(r->dsn, err, sizeof(err));
    int rc = -1;

    if (c == NULL)
        return -1;
    snprintf(ts, sizeof(ts), "%lld", (long long)slot);
    PGresult *res = exec(c, "SELECT EXISTS (SELECT 1 FROM gdpr_audit_log WHERE action = 'automated_deletion'"
                         " AND started_at >= to_timestamp($1::bigint))", 1, p, PGRES_TUPLES_OK, NULL);
    if (res)
        rc = PQgetvalue(res, 0, 0)[0] == 't';
    PQclear(res);
    PQfinish(c);
    return rc;
}

static void *schedule(void *arg)
{
    gdpr_retention *r = arg;

    while (!nap(r, 1000)) {
        int64_t slot = last_slot(r->minute, time(NULL));
        if (slot == r->last_slot)
            continue;
        /* a slot missed while the worker was down is caught up at start */
        int ran = ran_since(r, slot);
        if (ran < 0) {
            nap(r, 30000);
            continue;
        }
        if (!ran) {
            insite_log_info("retention: scheduled run");
            json_decref(gdpr_retention_run(r, 0));
        }
        r->last_slot = slot;
    }
    return NULL;
}

int gdpr_retention_start(gdpr_retention *r)
{
    if (r->minute < 0) {
        insite_log_info("retention: no schedule (gdpr.retention_time is empty)");
        return 0;
    }
    if (pthread_create(&r->thread, NULL, schedule, r) != 0) {
        insite_log_error("retention: cannot start its thread");
        return -1;
    }
    r->started = 1;
    return 0;
}

void gdpr_retention_stop(gdpr_retention *r)
{
    pthread_mutex_lock(&r->lock);
    r->stop = 1;
    pthread_cond_broadcast(&r->cond);
    pthread_mutex_unlock(&r->lock);
}

void gdpr_retention_free(gdpr_retention *r)
{
    if (r == NULL)
        return;
    gdpr_retention_stop(r);
    if (r->started)
        pthread_join(r->thread, NULL);
    pthread_mutex_destroy(&r->lock);
    pthread_cond_destroy(&r->cond);
    free(r->map_path);
    free(r->dsn);
    free(r);
}

/* ---- the operator API ---- */

#define TS(col) "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"

static int api_error(json_t **reply, int status, const char *code, const char *msg)
{
    *reply = insite_http_error(code, msg);
    return status;
}

static json_t *row_object(PGresult *res, int i)
{
    json_t *o = json_object();
    for (int j = 0; j < PQnfields(res); j++) {
        const char *v = PQgetvalue(res, i, j);
        json_t *x;
        if (PQgetisnull(res, i, j))
            x = json_null();
        else if (PQftype(res, j) == 16)            /* bool */
            x = json_boolean(v[0] == 't');
        else if (PQftype(res, j) == 20 || PQftype(res, j) == 23)   /* int8, int4 */
            x = json_integer(strtoll(v, NULL, 10));
        else if (PQftype(res, j) == 3802)          /* jsonb */
            x = json_loads(v, 0, NULL);
        else
            x = json_string(v);
        json_object_set_new(o, PQfname(res, j), x ? x : json_null());
    }
    return o;
}

static json_t *rows_array(PGresult *res)
{
    json_t *a = json_array();
    for (int i = 0; i < PQntuples(res); i++)
        json_array_append_new(a, row_object(res, i));
    return a;
}

static int data_type_ok(const char *s)
{
    size_t n = strlen(s);
    return n >= 1 && n <= 64 && strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789_") == n;
}

/* Checks the PUT body; NULL or the reason. */
static const char *policy_body_error(gdpr_retention *r, json_t *b, int *unknown_target)
{
    const char *k;
    json_t *v;

    *unknown_target = 0;
    if (!json_is_object(b) || json_object_size(b) == 0)
        return "send a JSON object with retention_days, is_active, target, legal_basis or description";
    json_object_foreach(b, k, v) {
        if (strcmp(k, "retention_days") == 0) {
            if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > 36500)
                return "retention_days must be an integer from 1 to 36500";
        } else if (strcmp(k, "is_active") == 0) {
            if (!json_is_boolean(v))
                return "is_active must be true or false";
        } else if (strcmp(k, "target") == 0) {
            gdpr_datamap m = { .ndbs = 0 };
            char err[512];
            if (!json_is_string(v) || !gdpr_ident_ok(json_string_value(v)))
                return "target must name a retention target of the data map";
            if (gdpr_datamap_load(&m, r->map_path, r->dsn, err, sizeof(err)) != 0)
                return "the data map cannot be read (see the log)";
            *unknown_target = gdpr_datamap_retention_find(&m, json_string_value(v)) == NULL;
            gdpr_datamap_free(&m);
            if (*unknown_target)
                return "target must name a retention target of the data map";
        } else if (strcmp(k, "legal_basis") == 0 || strcmp(k, "description") == 0) {
            if (!json_is_string(v) || strlen(json_string_value(v)) > 500)
                return "legal_basis and description are strings of at most 500 bytes";
        } else
            return "unknown field (retention_days, is_active, target, legal_basis, description)";
    }
    return NULL;
}

static const char policy_cols[] =
    "p.data_type, p.target, p.retention_days, p.is_active, p.legal_basis, p.description, "
    TS("p.updated_at") " AS updated_at, p.updated_by";

static int put_policy(gdpr_retention *r, const insite_http_request *req, const char *dt, const char *user,
                      json_t **reply)
{
    int bad_target;
    const char *why = policy_body_error(r, req->body, &bad_target);
    char days[16] = "", *body = NULL;
    json_t *b = req->body;
    PGresult *res;
    int status;

    if (why)
        return api_error(reply, 400, "bad_request", why);
    if (json_object_get(b, "retention_days"))
        snprintf(days, sizeof(days), "%lld", (long long)json_integer_value(json_object_get(b, "retention_days")));
    body = json_dumps(b, JSON_COMPACT | JSON_SORT_KEYS);
    const char *p[8] = {
        dt, json_string_value(json_object_get(b, "target")), days[0] ? days : NULL,
        json_object_get(b, "is_active") ? (json_is_true(json_object_get(b, "is_active")) ? "t" : "f") : NULL,
        json_string_value(json_object_get(b, "legal_basis")),
        json_string_value(json_object_get(b, "description")), user, body,
    };
    PGconn *c = gdpr_store_pg(r->store);
    if (c == NULL) {
        free(body);
        return api_error(reply, 503, "unavailable", "the policy store is unavailable, try again");
    }
    /* create needs target and retention_days; an edit changes what it names;
     * the edit and its log row are one statement */
    char sql[2048];
    snprintf(sql, sizeof(sql),
        "WITH u AS (INSERT INTO gdpr_retention_policies AS p (data_type, target, retention_days, is_active,"
        "   legal_basis, description, updated_by)"
        "   SELECT $1, coalesce($2::text, o.target), coalesce($3::int, o.retention_days),"
        "     coalesce($4::boolean, true), coalesce($5::text, ''),"
        "     coalesce($6::text, ''), $7::text"
        "   FROM (SELECT 1) one LEFT JOIN gdpr_retention_policies o ON o.data_type = $1"
        "   WHERE $2::text IS NOT NULL AND $3::int IS NOT NULL OR o.data_type IS NOT NULL"
        "   ON CONFLICT (data_type) DO UPDATE SET target = coalesce($2::text, p.target),"
        "   retention_days = coalesce($3::int, p.retention_days), is_active = coalesce($4::boolean, p.is_active),"
        "   legal_basis = coalesce($5::text, p.legal_basis), description = coalesce($6::text, p.description),"
        "   updated_by = $7, updated_at = now()"
        "   RETURNING p.*, (xmax = 0) AS created),"
        " l AS (INSERT INTO gdpr_audit_log (action, user_id, data_type, target, status, finished_at, details)"
        "   SELECT 'retention_policy_updated', $7, data_type, target, 'completed', now(), $8::jsonb FROM u)"
        " SELECT %s, p.created FROM u p", policy_cols);
    res = PQexecParams(c, sql, 8, NULL, p, NULL, NULL, 0);
    free(body);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        insite_log_warn("api: retention policy %s: %s", dt, PQresultErrorMessage(res));
        PQclear(res);
        return api_error(reply, 503, "unavailable", "the policy store is unavailable, try again");
    }
    if (PQntuples(res) == 0) {
        PQclear(res);
        return api_error(reply, 404, "not_found",
                         "no such policy (give target and retention_days to create one)");
    }
    status = PQgetvalue(res, 0, PQnfields(res) - 1)[0] == 't' ? 201 : 200;
    *reply = row_object(res, 0);
    json_object_del(*reply, "created");
    PQclear(res);
    insite_log_info("retention policy %s %s by %s", dt, status == 201 ? "created" : "updated", user);
    return status;
}

int gdpr_api_retention(const insite_http_request *req, json_t **reply, void *ud)
{
    gdpr_retention *r = ud;
    const char *user = insite_http_user(req);
    char sql[2048];
    PGresult *res;
    int status;

    if (user == NULL)
        return api_error(reply, 401, "unauthorized", "no authenticated user (X-User-Id)");
    if (!insite_http_has_scope(req, "gdpr:admin"))
        return api_error(reply, 403, "insufficient_scope", "retention is for operators (gdpr:admin)");
    if (r == NULL)
        return api_error(reply, 503, "unavailable", "retention is not configured (gdpr.data_map)");

    int runs = strcmp(req->rest, "/runs") == 0;
    int list = strcmp(req->rest, "/policies") == 0;
    int one = strncmp(req->rest, "/policies/", 10) == 0;
    if (!runs && !list && !one)
        return api_error(reply, 404, "not_found", "GET /policies, PUT /policies/{data_type}, GET /runs");
    if (one && !data_type_ok(req->rest + 10))
        return api_error(reply, 404, "not_found", "a data type is [a-z0-9_]{1,64}");
    if (strcmp(req->method, one ? "PUT" : "GET") != 0)
        return api_error(reply, 405, "method_not_allowed", one ? "PUT only" : "GET only");

    long long limit = 100;
    if (runs && (status = insite_http_query_int(req, "limit", 1, 1000, 100, &limit, reply)) != 0)
        return status;
    pthread_mutex_lock(&r->store->lock);
    if (one) {
        status = put_policy(r, req, req->rest + 10, user, reply);
        pthread_mutex_unlock(&r->store->lock);
        return status;
    }
    if (list)
        snprintf(sql, sizeof(sql), "SELECT %s, (SELECT json_build_object('status', status, 'rows_affected',"
                 " rows_affected, 'started_at', " TS("started_at") ", 'error', error) FROM gdpr_audit_log"
                 " WHERE data_type = p.data_type AND action = 'automated_deletion' ORDER BY id DESC LIMIT 1)"
                 "::jsonb AS last_run FROM gdpr_retention_policies p ORDER BY data_type", policy_cols);
    else
        snprintf(sql, sizeof(sql), "SELECT id, action, user_id, data_type, target, " TS("cutoff") " AS cutoff,"
                 " rows_affected, status, error, " TS("started_at") " AS started_at, " TS("finished_at")
                 " AS finished_at, details FROM gdpr_audit_log ORDER BY id DESC LIMIT %lld", limit);
    PGconn *c = gdpr_store_pg(r->store);
    res = c ? PQexec(c, sql) : NULL;
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        if (res)
            insite_log_warn("api: retention: %s", PQresultErrorMessage(res));
        PQclear(res);
        pthread_mutex_unlock(&r->store->lock);
        return api_error(reply, 503, "unavailable", "the policy store is unavailable, try again");
    }
    *reply = json_pack("{s:o}", list ? "policies" : "runs", rows_array(res));
    PQclear(res);
    pthread_mutex_unlock(&r->store->lock);
    return 200;
}
