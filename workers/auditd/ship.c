/* Journal -> PostgreSQL, exactly once.
 *
 * Each chain's position (file, byte offset, last seq and hash) lives in
 * gdpr_audit_positions and is updated in the same transaction as the rows
 * it covers, so after a crash, a lost connection or an unknown COMMIT
 * outcome the shipper reloads the positions and re-reads exactly what was
 * not committed.  Rows are also unique by record id (ON CONFLICT DO
 * NOTHING), which keeps a re-shipped journal (positions lost) idempotent.
 *
 * A pass: list the directory, then per chain read complete lines from its
 * position on (a newer file of the chain means the older one is complete:
 * the listing is taken before reading), verify the chain, COPY the rows
 * into the table (streamed while reading; through a stage table and ON
 * CONFLICT only when some are there already: ship_rows), record incidents
 * and positions, commit. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "auditd.h"
#include "clock.h"
#include "envelope.h"
#include "log.h"
#include "pg.h"

#define READ_CHUNK (1 << 20)

struct auditd_chain {
    char name[AUDITD_NAME_MAX];
    /* committed */
    char file[AUDITD_NAME_MAX * 2];
    uint64_t file_seq;
    int64_t offset;
    auditd_chainstate st;
    /* this pass */
    char nfile[AUDITD_NAME_MAX * 2];
    uint64_t nfile_seq;
    int64_t noffset;
    auditd_chainstate nst;
    int touched;
    struct auditd_chain *next;
};

typedef struct {
    char *copy;          /* COPY text data */
    size_t len, cap;
    size_t sent;         /* bytes already streamed into the open COPY */
    int streaming;       /* BEGIN, SAVEPOINT and COPY are open */
    int stream_failed;   /* then the transaction is lost: reconnect */
    json_t *records;     /* parsed rows (for Kafka) */
    json_t *incidents;
    int rows;
} batch;

static void stream(auditd_shipper *s, batch *b);

static int buf_add(batch *b, const char *s, size_t n)
{
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 1 << 20;
        while (cap < b->len + n)
            cap *= 2;
        char *p = realloc(b->copy, cap);
        if (p == NULL)
            return -1;
        b->copy = p;
        b->cap = cap;
    }
    memcpy(b->copy + b->len, s, n);
    b->len += n;
    return 0;
}

/* one COPY text field: backslash, tab, LF, CR escaped */
static int copy_text(batch *b, const char *v, size_t n)
{
    size_t i, start = 0;
    for (i = 0; i < n; i++) {
        const char *esc = v[i] == '\\' ? "\\\\" : v[i] == '\t' ? "\\t"
                        : v[i] == '\n' ? "\\n" : v[i] == '\r' ? "\\r" : NULL;
        if (esc) {
            if (buf_add(b, v + start, i - start) || buf_add(b, esc, 2))
                return -1;
            start = i + 1;
        }
    }
    return buf_add(b, v + start, n - start);
}

/* a member as a COPY field: strings as text, null or absent as \N, numbers
 * and booleans as PostgreSQL reads them */
static int copy_field(batch *b, json_t *rec, const char *key, char sep)
{
    char num[32];
    int rc;
    json_t *v = json_object_get(rec, key);

    if (json_is_string(v))
        rc = copy_text(b, json_string_value(v), json_string_length(v));
    else if (json_is_integer(v))
        rc = buf_add(b, num, (size_t) snprintf(num, sizeof(num), "%lld",
                                               (long long) json_integer_value(v)));
    else if (json_is_boolean(v))
        rc = buf_add(b, json_is_true(v) ? "t" : "f", 1);
    else
        rc = buf_add(b, "\\N", 2);
    return rc || buf_add(b, &sep, 1);
}

/* the record members that are gdpr_audit_trail's columns, in the order of
 * COLUMNS; "source" and "record" (the exact line) follow them in a row */
static const char *row_fields[] = { "id", "ts", "user_id", "access_type", "data_type",
                                    "method", "path", "status", "result", "ip",
                                    "request_id", "worker", "seq", "prev_hash", "hash",
                                    "data_subject", "reason" };
#define COLUMNS "id, ts, user_id, access_type, data_type, method, path, status, result," \
                " ip, request_id, worker, seq, prev_hash, hash, data_subject, reason"

/*
 * One typed COPY row of gdpr_audit_trail: the record was parsed and checked
 * (auditd_record_parse) for the chain anyway, so PostgreSQL gets columns,
 * not JSON to cast; the exact journal line goes into "record".
 */
static int copy_row(batch *b, json_t *rec, const char *source, const char *line, size_t n)
{

    for (size_t i = 0; i < sizeof(row_fields) / sizeof(row_fields[0]); i++)
        if (copy_field(b, rec, row_fields[i], '\t') != 0)
            return -1;
    return copy_text(b, source, strlen(source)) || buf_add(b, "\t", 1)
           || copy_text(b, line, n) || buf_add(b, "\n", 1);
}

/* copy_row from a plain line's members (no JSON objects): the same bytes,
 * since a plain string has nothing COPY would escape and an integer is
 * written as jansson would print it back */
static int copy_row_fields(batch *b, const insite_gdpr_fields_t *f, const char *source,
                           const char *line, size_t n)
{

    for (size_t i = 0; i < sizeof(row_fields) / sizeof(row_fields[0]); i++) {
        const insite_gdpr_member_t *m = insite_gdpr_fields_get(f, row_fields[i]);
        int rc;
        if (m == NULL || m->type == INSITE_GDPR_NULL)
            rc = buf_add(b, "\\N", 2);
        else if (m->type == INSITE_GDPR_TRUE || m->type == INSITE_GDPR_FALSE)
            rc = buf_add(b, m->type == INSITE_GDPR_TRUE ? "t" : "f", 1);
        else
            rc = buf_add(b, m->value, m->value_len);
        if (rc || buf_add(b, "\t", 1))
            return -1;
    }
    return copy_text(b, source, strlen(source)) || buf_add(b, "\t", 1)
           || copy_text(b, line, n) || buf_add(b, "\n", 1);
}

static void incident(auditd_shipper *s, batch *b, const char *kind, const auditd_chain *c,
                     const char *file, int64_t offset, uint64_t seq, const char *msg,
                     const char *line, size_t len)
{
    char sample[512];
    size_t n = len < sizeof(sample) - 1 ? len : sizeof(sample) - 1;
    memcpy(sample, line ? line : "", line ? n : 0);
    sample[line ? n : 0] = '\0';
    insite_log_error("audit chain %s: %s:%lld: %s: %s", c->name, file, (long long)offset, kind, msg);
    json_array_append_new(b->incidents, json_pack("{s:s, s:s, s:s, s:I, s:I, s:s, s:s}",
        "kind", kind, "chain", c->name, "file", file, "offset", (json_int_t)offset,
        "seq", (json_int_t)seq, "message", msg, "sample", sample));
    insite_counter_inc(s->incidents);
}

static auditd_chain *chain_get(auditd_shipper *s, const char *name)
{
    auditd_chain *c;
    for (c = s->chains; c; c = c->next)
        if (strcmp(c->name, name) == 0)
            return c;
    if ((c = calloc(1, sizeof(*c))) == NULL)
        return NULL;
    snprintf(c->name, sizeof(c->name), "%s", name);
    auditd_chainstate_init(&c->st);
    c->nst = c->st;
    c->next = s->chains;
    s->chains = c;
    return c;
}

static void chains_free(auditd_shipper *s)
{
    while (s->chains) {
        auditd_chain *n = s->chains->next;
        free(s->chains);
        s->chains = n;
    }
}

static void pg_drop(auditd_shipper *s, const char *why)
{
    insite_log_warn("postgresql: %s; retrying in %dms", why, s->pg_backoff_ms);
    insite_counter_inc(s->pg_errors);
    insite_gauge_set(s->pg_up, 0);
    if (s->pg)
        PQfinish(s->pg);
    s->pg = NULL;
    s->pg_retry_at = insite_clock_mono_ms() + s->pg_backoff_ms;
    s->pg_backoff_ms = s->pg_backoff_ms * 2 > 5000 ? 5000 : s->pg_backoff_ms * 2;
}

static int exec_ok(PGconn *pg, const char *sql, char *err, size_t errlen)
{
    PGresult *r = PQexec(pg, sql);
    int ok = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK;
    if (!ok)
        snprintf(err, errlen, "%s", PQerrorMessage(pg));
    PQclear(r);
    return ok ? 0 : -1;
}

/* (re)connects: migrations, stage table, positions reloaded */
static int pg_ready(auditd_shipper *s)
{
    char err[512];
    if (s->pg && PQstatus(s->pg) == CONNECTION_OK)
        return 0;
    if (s->pg)
        pg_drop(s, "connection lost");
    if (insite_clock_mono_ms() < s->pg_retry_at)
        return -1;
    if ((s->pg = insite_pg_connect(s->dsn, err, sizeof(err))) == NULL) {
        pg_drop(s, err);
        return -1;
    }
    if (insite_pg_migrate(s->pg, s->migrations_dir, err, sizeof(err)) < 0
        || exec_ok(s->pg, "CREATE TEMP TABLE IF NOT EXISTS gdpr_audit_stage"
                          " (LIKE gdpr_audit_trail INCLUDING DEFAULTS)"
                          " ON COMMIT DELETE ROWS", err, sizeof(err)) != 0) {
        pg_drop(s, err);
        return -1;
    }
    const char *p[1] = { s->source };
    PGresult *r = PQexecParams(s->pg, "SELECT chain, file, \"offset\", seq, hash FROM gdpr_audit_positions"
                               " WHERE source = $1", 1, NULL, p, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        PQclear(r);
        pg_drop(s, PQerrorMessage(s->pg));
        return -1;
    }
    /* the database is the truth: an unknown COMMIT outcome resolves here */
    chains_free(s);
    int npos = PQntuples(r);
    for (int i = 0; i < npos; i++) {
        auditd_chain *c = chain_get(s, PQgetvalue(r, i, 0));
        auditd_file f;
        if (c == NULL)
            break;
        snprintf(c->file, sizeof(c->file), "%s", PQgetvalue(r, i, 1));
        c->file_seq = auditd_parse_name(c->file, &f) == 0 ? f.first_seq : 0;
        c->offset = strtoll(PQgetvalue(r, i, 2), NULL, 10);
        c->st.seq = strtoull(PQgetvalue(r, i, 3), NULL, 10);
        snprintf(c->st.hash, sizeof(c->st.hash), "%s", PQgetvalue(r, i, 4));
    }
    PQclear(r);
    insite_log_info("postgresql: connected, %d chain position(s) of source \"%s\" loaded",
                    npos, s->source);
    s->pg_backoff_ms = 250;
    insite_gauge_set(s->pg_up, 1);
    return 0;
}

/* Reads complete lines of one file from c->noffset; returns rows taken or -1. */
static int read_file(auditd_shipper *s, batch *b, auditd_chain *c, const char *name, int room)
{
    char path[4096], err[256];
    struct stat sb;
    int fd, taken = 0;
    insite_gdpr_line_t l;
    insite_gdpr_fields_t f;

    snprintf(path, sizeof(path), "%s/%s", s->dir, name);
    if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0 || fstat(fd, &sb) != 0) {
        if (fd >= 0)
            close(fd);
        return errno == ENOENT ? 0 : -1;
    }
    if (sb.st_size < c->noffset) {
        char msg[128];
        snprintf(msg, sizeof(msg), "file shrank from %lld to %lld bytes",
                 (long long)c->noffset, (long long)sb.st_size);
        incident(s, b, "journal_truncated", c, name, c->noffset, c->nst.seq, msg, NULL, 0);
        c->noffset = sb.st_size;
        c->touched = 1;
    }
    char *buf = malloc(READ_CHUNK);
    if (buf == NULL) {
        close(fd);
        return -1;
    }
    while (taken < room && c->noffset < sb.st_size) {
        ssize_t n = pread(fd, buf, READ_CHUNK, c->noffset);
        if (n <= 0)
            break;
        char *p = buf, *end = buf + n, *nl;
        while (taken < room && (nl = memchr(p, '\n', (size_t)(end - p))) != NULL) {
            size_t len = (size_t)(nl - p);
            /* a chain whose first files are gone (chain_gap) is joined midway */
            int rc = auditd_chain_step(&c->nst, p, len, c->nst.seq != 0 || c->nfile_seq <= 1, &l);
            if (rc != INSITE_GDPR_OK)
                incident(s, b, rc == INSITE_GDPR_EFORMAT ? "malformed_record"
                               : rc == INSITE_GDPR_EHASH ? "hash_mismatch" : "chain_break",
                         c, name, c->noffset + (p - buf), l.seq, insite_gdpr_strerror(rc), p, len);
            int row = 1;        /* 0: a row added, -1: out of memory */
            if (rc != INSITE_GDPR_EFORMAT && s->kafka == NULL
                && insite_gdpr_fields_scan(p, len, &f) == INSITE_GDPR_FIELDS_OK
                && auditd_record_check_fields(&f) == 0) {
                /* the plain line, without Kafka to feed: no JSON objects */
                row = copy_row_fields(b, &f, s->source, p, len) ? -1 : 0;
            } else if (rc != INSITE_GDPR_EFORMAT) {
                json_t *rec = auditd_record_parse(p, len, err, sizeof(err));
                if (rec == NULL) {
                    incident(s, b, "malformed_record", c, name, c->noffset + (p - buf), l.seq, err, p, len);
                } else {
                    json_array_append_new(b->records, rec);
                    row = copy_row(b, rec, s->source, p, len) ? -1 : 0;
                }
            }
            if (row < 0) {
                free(buf);
                close(fd);
                return -1;
            }
            if (row == 0) {
                b->rows++;
                taken++;
                stream(s, b);
            }
            p = nl + 1;
        }
        c->noffset += p - buf;
        c->touched = 1;
        if (p == buf)
            break;      /* a record longer than the chunk or a partial line: wait */
    }
    free(buf);
    close(fd);
    return taken;
}

/* Starts COPY ... FROM STDIN into table; 0 or -1 with the error. */
static int copy_start(PGconn *pg, const char *table, char *err, size_t errlen)
{
    char sql[256];
    PGresult *r;
    int ok;

    snprintf(sql, sizeof(sql), "COPY %s (" COLUMNS ", source, record) FROM STDIN", table);
    r = PQexec(pg, sql);
    ok = PQresultStatus(r) == PGRES_COPY_IN;
    PQclear(r);
    if (!ok)
        snprintf(err, errlen, "%s", PQerrorMessage(pg));
    return ok ? 0 : -1;
}

/* Sends the batch's rows from byte `from` on and ends the COPY; 0, or -1
 * with the error and its SQLSTATE ("" when not from the server). */
static int copy_finish(PGconn *pg, batch *b, size_t from, char *err, size_t errlen,
                       char sqlstate[6])
{
    PGresult *r;
    int ok;

    sqlstate[0] = '\0';
    if ((b->len > from && PQputCopyData(pg, b->copy + from, (int)(b->len - from)) != 1)
        || PQputCopyEnd(pg, NULL) != 1) {
        snprintf(err, errlen, "%s", PQerrorMessage(pg));
        return -1;
    }
    r = PQgetResult(pg);
    ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    if (!ok) {
        const char *st = PQresultErrorField(r, PG_DIAG_SQLSTATE);
        snprintf(sqlstate, 6, "%s", st ? st : "");
        snprintf(err, errlen, "COPY: %s", PQerrorMessage(pg));
    }
    PQclear(r);
    while ((r = PQgetResult(pg)) != NULL)
        PQclear(r);
    return ok ? 0 : -1;
}

/*
 * Rows go to PostgreSQL while the rest of the batch is still being read:
 * once a batch has STREAM_CHUNK bytes of rows, the transaction opens
 * (BEGIN, a savepoint, COPY straight into gdpr_audit_trail) and every
 * further chunk is sent as it is ready, so PostgreSQL inserts while the
 * shipper verifies the next lines.  Nothing commits before commit(): the
 * positions still go in the same transaction.  A failure here loses the
 * transaction; commit() then reconnects and the batch is read again.
 */
#define STREAM_CHUNK (256 * 1024)

static void stream(auditd_shipper *s, batch *b)
{
    char err[512];

    if (b->stream_failed || b->len - b->sent < STREAM_CHUNK)
        return;
    if (!b->streaming) {
        if (exec_ok(s->pg, "BEGIN", err, sizeof(err)) != 0
            || exec_ok(s->pg, "SAVEPOINT ship_direct", err, sizeof(err)) != 0
            || copy_start(s->pg, "gdpr_audit_trail", err, sizeof(err)) != 0)
            goto failed;
        b->streaming = 1;
    }
    if (PQputCopyData(s->pg, b->copy + b->sent, (int)(b->len - b->sent)) != 1) {
        snprintf(err, sizeof(err), "%s", PQerrorMessage(s->pg));
        goto failed;
    }
    b->sent = b->len;
    return;
failed:
    insite_log_warn("postgresql: streaming a batch: %s", err);
    b->stream_failed = 1;
}

/*
 * The end of the batch's rows, inside the caller's transaction.  The
 * common case is one COPY straight into gdpr_audit_trail (a savepoint
 * around it, perhaps already streaming); a row already there (a journal
 * shipped again after its positions were lost: unique_violation) rolls
 * the COPY back to the savepoint and takes the idempotent path, a stage
 * table and INSERT ... ON CONFLICT DO NOTHING.  Either way the rows commit
 * with the positions or not at all.
 */
static int ship_rows(auditd_shipper *s, batch *b, char *err, size_t errlen)
{
    char state[6];
    PGresult *r;
    int ok;

    if (!b->streaming
        && (exec_ok(s->pg, "SAVEPOINT ship_direct", err, errlen) != 0
            || copy_start(s->pg, "gdpr_audit_trail", err, errlen) != 0))
        return -1;
    if (copy_finish(s->pg, b, b->streaming ? b->sent : 0, err, errlen, state) == 0)
        return exec_ok(s->pg, "RELEASE SAVEPOINT ship_direct", err, errlen);
    if (strcmp(state, "23505") != 0)
        return -1;
    insite_log_info("rows already in gdpr_audit_trail: this batch of %d goes through"
                    " INSERT ... ON CONFLICT DO NOTHING", b->rows);
    if (exec_ok(s->pg, "ROLLBACK TO SAVEPOINT ship_direct", err, errlen) != 0
        || copy_start(s->pg, "gdpr_audit_stage", err, errlen) != 0
        || copy_finish(s->pg, b, 0, err, errlen, state) != 0)
        return -1;
    r = PQexec(s->pg,
        "INSERT INTO gdpr_audit_trail (" COLUMNS ", source, record)"
        " SELECT " COLUMNS ", source, record FROM gdpr_audit_stage"
        " ON CONFLICT (id) DO NOTHING");
    ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    PQclear(r);
    if (!ok) {
        snprintf(err, errlen, "insert: %s", PQerrorMessage(s->pg));
        return -1;
    }
    return 0;
}

static int commit(auditd_shipper *s, batch *b)
{
    char err[512];
    PGresult *r;
    json_t *pos = json_array();
    const char *p[2];
    int ok = 0;

    for (auditd_chain *c = s->chains; c; c = c->next)
        if (c->touched)
            json_array_append_new(pos, json_pack("{s:s, s:s, s:I, s:I, s:s}", "chain", c->name,
                "file", c->nfile, "offset", (json_int_t)c->noffset, "seq", (json_int_t)c->nst.seq,
                "hash", c->nst.hash));
    char *pos_text = json_dumps(pos, JSON_COMPACT);
    char *inc_text = json_dumps(b->incidents, JSON_COMPACT);
    json_decref(pos);
    if (pos_text == NULL || inc_text == NULL)
        goto out;

    if (b->stream_failed) {
        snprintf(err, sizeof(err), "the batch's transaction was lost while streaming");
        goto fail;
    }
    if (!b->streaming && exec_ok(s->pg, "BEGIN", err, sizeof(err)) != 0)
        goto fail;
    if ((b->rows || b->streaming) && ship_rows(s, b, err, sizeof(err)) != 0)
        goto fail;
    if (json_array_size(b->incidents)) {
        p[0] = s->source;
        p[1] = inc_text;
        r = PQexecParams(s->pg,
            "INSERT INTO security_incidents (source, kind, severity, chain, file, file_offset, seq, details)"
            " SELECT $1, x->>'kind', 'HIGH', x->>'chain', x->>'file', (x->>'offset')::bigint,"
            " (x->>'seq')::bigint, x FROM jsonb_array_elements($2::jsonb) x", 2, NULL, p, NULL, NULL, 0);
        ok = PQresultStatus(r) == PGRES_COMMAND_OK;
        PQclear(r);
        if (!ok) {
            snprintf(err, sizeof(err), "incidents: %s", PQerrorMessage(s->pg));
            goto fail;
        }
    }
    p[0] = s->source;
    p[1] = pos_text;
    r = PQexecParams(s->pg,
        "INSERT INTO gdpr_audit_positions (source, chain, file, \"offset\", seq, hash)"
        " SELECT $1, x->>'chain', x->>'file', (x->>'offset')::bigint, (x->>'seq')::bigint, x->>'hash'"
        " FROM jsonb_array_elements($2::jsonb) x ON CONFLICT (source, chain) DO UPDATE SET"
        " file = EXCLUDED.file, \"offset\" = EXCLUDED.\"offset\", seq = EXCLUDED.seq,"
        " hash = EXCLUDED.hash, updated_at = now()", 2, NULL, p, NULL, NULL, 0);
    ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    PQclear(r);
    if (!ok) {
        snprintf(err, sizeof(err), "positions: %s", PQerrorMessage(s->pg));
        goto fail;
    }
    /* Kafka before COMMIT: a crash in between re-produces (consumers dedupe
     * by event_id = record id), it never skips */
    if (s->kafka && b->rows) {
        size_t i;
        json_t *rec;
        json_array_foreach(b->records, i, rec) {
            const char *rid = json_string_value(json_object_get(rec, "request_id"));
            const char *uid = json_string_value(json_object_get(rec, "user_id"));
            json_t *env = insite_envelope_new("data_access", "auditd", rid, json_incref(rec));
            if (env == NULL)
                continue;
            json_object_set(env, "event_id", json_object_get(rec, "id"));
            char *text = insite_envelope_dumps(env);
            if (text && insite_kafka_produce(s->kafka, "user_events", uid ? uid : "", text, strlen(text)) >= 0)
                insite_counter_inc(s->kafka_produced);
            free(text);
            json_decref(env);
        }
        insite_kafka_flush(s->kafka, 5000);
    }
    if (exec_ok(s->pg, "COMMIT", err, sizeof(err)) != 0)
        goto fail;
    ok = 1;
    goto out;
fail:
    ok = 0;
    pg_drop(s, err);
out:
    free(pos_text);
    free(inc_text);
    return ok ? 0 : -1;
}

static void retention(auditd_shipper *s, const auditd_file *v, int n)
{
    time_t now = time(NULL);
    char path[4096];
    struct stat sb;

    for (int i = 0; i < n; i++) {
        auditd_chain *c;
        for (c = s->chains; c && strcmp(c->name, v[i].chain) != 0; c = c->next)
            ;
        if (c == NULL || c->file[0] == '\0' || v[i].first_seq >= c->file_seq)
            continue;           /* not fully shipped */
        snprintf(path, sizeof(path), "%s/%s", s->dir, v[i].name);
        if (stat(path, &sb) != 0 || (long long)(now - sb.st_mtime) * 1000 < s->retention_ms)
            continue;
        if (unlink(path) == 0) {
            insite_counter_inc(s->deleted);
            insite_log_info("retention: deleted shipped journal %s", v[i].name);
        }
    }
}

int auditd_ship_once(auditd_shipper *s)
{
    auditd_file *v;
    int n, room = s->batch_size, rc = 0;
    batch b = { 0 };

    if (pg_ready(s) != 0)
        return -1;
    if ((n = auditd_list(s->dir, &v)) < 0) {
        insite_log_warn("journal dir %s: %s", s->dir, strerror(errno));
        return 0;
    }
    b.records = json_array();
    b.incidents = json_array();
    for (auditd_chain *c = s->chains; c; c = c->next) {
        memcpy(c->nfile, c->file, sizeof(c->file));
        c->nfile_seq = c->file_seq;
        c->noffset = c->offset;
        c->nst = c->st;
        c->touched = 0;
    }
    for (int i = 0; i < n && room > 0;) {
        int j, k;
        for (j = i; j < n && strcmp(v[j].chain, v[i].chain) == 0; j++)
            ;
        auditd_chain *c = chain_get(s, v[i].chain);
        if (c == NULL) {
            rc = -1;
            break;
        }
        if (c->nfile[0] == '\0') {      /* a new chain: from its first file */
            snprintf(c->nfile, sizeof(c->nfile), "%s", v[i].name);
            c->nfile_seq = v[i].first_seq;
            c->noffset = 0;
            c->touched = 1;
            if (v[i].first_seq > 1 && c->nst.seq == 0)
                incident(s, &b, "chain_gap", c, v[i].name, 0, v[i].first_seq,
                         "the chain's first files are missing", NULL, 0);
        }
        for (k = i; k < j && v[k].first_seq < c->nfile_seq; k++)
            ;
        if (k < j && strcmp(v[k].name, c->nfile) != 0) {
            /* the position's file is gone: the chain check reports the gap */
            snprintf(c->nfile, sizeof(c->nfile), "%s", v[k].name);
            c->nfile_seq = v[k].first_seq;
            c->noffset = 0;
            c->touched = 1;
        }
        for (; k < j && room > 0; k++) {
            int got = read_file(s, &b, c, v[k].name, room);
            if (got < 0) {
                insite_log_warn("journal %s/%s: %s", s->dir, v[k].name, strerror(errno));
                break;
            }
            room -= got;
            if (room > 0 && k + 1 < j) {   /* complete: a newer file exists */
                snprintf(c->nfile, sizeof(c->nfile), "%s", v[k + 1].name);
                c->nfile_seq = v[k + 1].first_seq;
                c->noffset = 0;
                c->touched = 1;
            }
        }
        i = j;
    }
    int any = 0;
    for (auditd_chain *c = s->chains; c; c = c->next)
        any |= c->touched;
    if ((b.streaming || b.stream_failed) && !(rc == 0 && any))
        pg_drop(s, "a pass ended with its transaction open");
    if (rc == 0 && any) {
        if (commit(s, &b) != 0) {
            rc = -1;
        } else {
            for (auditd_chain *c = s->chains; c; c = c->next)
                if (c->touched) {
                    memcpy(c->file, c->nfile, sizeof(c->file));
                    c->file_seq = c->nfile_seq;
                    c->offset = c->noffset;
                    c->st = c->nst;
                }
            insite_counter_add(s->shipped, (uint64_t)b.rows);
            insite_counter_inc(s->batches);
            rc = b.rows;
        }
    }
    if (rc >= 0 && s->retention_ms >= 0)
        retention(s, v, n);
    free(v);
    free(b.copy);
    json_decref(b.records);
    json_decref(b.incidents);
    return rc;
}

int auditd_shipper_init(auditd_shipper *s)
{
    s->shipped = insite_metrics_counter(s->metrics, "records_shipped", "Audit records committed to PostgreSQL.");
    s->incidents = insite_metrics_counter(s->metrics, "chain_incidents", "Hash chain breaks and malformed records found.");
    s->batches = insite_metrics_counter(s->metrics, "batches", "Transactions committed.");
    s->pg_errors = insite_metrics_counter(s->metrics, "pg_errors", "PostgreSQL failures (batch retried).");
    s->deleted = insite_metrics_counter(s->metrics, "files_deleted", "Shipped journal files deleted by retention.");
    s->kafka_produced = insite_metrics_counter(s->metrics, "kafka_produced", "Records produced to user_events.");
    s->pg_up = insite_metrics_gauge(s->metrics, "pg_up", "1 while PostgreSQL is connected.");
    s->pg_backoff_ms = 250;
    return s->shipped && s->incidents && s->batches && s->pg_errors && s->deleted
           && s->kafka_produced && s->pg_up ? 0 : -1;
}

void auditd_shipper_close(auditd_shipper *s)
{
    if (s->pg)
        PQfinish(s->pg);
    s->pg = NULL;
    chains_free(s);
}
