#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "pg.h"

const insite_config_key insite_pg_config_keys[] = {
    { "pg.dsn", INSITE_CFG_STRING, "host=127.0.0.1 dbname=insite", 0, 0,
      "libpq connection string or postgresql:// URI" },
    { "pg.migrations_dir", INSITE_CFG_STRING, "workers/migrations", 0, 0,
      "directory of NNN_name.sql migrations, relative to the working directory" },
};
const size_t insite_pg_config_nkeys =
    sizeof(insite_pg_config_keys) / sizeof(insite_pg_config_keys[0]);

/* One lock id for every worker: hashtext() keeps it readable in pg_locks. */
#define LOCK_SQL "SELECT pg_advisory_xact_lock(hashtext('insite.schema_migrations'))"

typedef struct {
    long version;
    char *file;       /* "001_initial.sql" */
    char *name;       /* "initial" */
} migration;

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    if (err == NULL || errlen == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* PostgreSQL's messages end in a newline; errors read better without it. */
static const char *pg_msg(const char *m, char *buf, size_t size)
{
    snprintf(buf, size, "%s", m ? m : "");
    size_t n = strlen(buf);
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
        buf[--n] = '\0';
    return buf;
}

/* NOTICEs ("relation already exists, skipping") belong in the debug log,
 * not on stderr in libpq's own format. */
static void on_notice(void *arg, const char *message)
{
    char buf[512];
    insite_log_debug("postgres: %s", pg_msg(message, buf, sizeof(buf)));
}

/* Connects with the parameters in keys/values (NULL-terminated; the last
 * is "dbname" = dsn, expanded, so the caller's connection string overrides
 * what comes before it) and checks the status. */
static PGconn *connect_params(const char *const *keys, const char *const *values,
                              char *err, size_t errlen)
{
    char buf[512];
    PGconn *c = PQconnectdbParams(keys, values, 1);

    if (c == NULL) {
        set_err(err, errlen, "postgres: out of memory");
        return NULL;
    }
    if (PQstatus(c) != CONNECTION_OK) {
        set_err(err, errlen, "postgres: %s", pg_msg(PQerrorMessage(c), buf, sizeof(buf)));
        PQfinish(c);
        return NULL;
    }
    PQsetNoticeProcessor(c, on_notice, NULL);
    return c;
}

PGconn *insite_pg_connect(const char *dsn, char *err, size_t errlen)
{
    const char *const keys[] = { "dbname", NULL };
    const char *const values[] = { dsn, NULL };
    return connect_params(keys, values, err, errlen);
}

PGconn *insite_pg_connect_waiting(const char *dsn, char *err, size_t errlen)
{
    const char *const keys[] = { "keepalives", "keepalives_idle", "keepalives_interval",
                                 "keepalives_count", "dbname", NULL };
    const char *const values[] = { "1", "10", "5", "3", dsn, NULL };
    return connect_params(keys, values, err, errlen);
}

/* Runs sql; 0 if it succeeded (any non-error status). */
static int exec(PGconn *c, const char *sql, const char *what, char *err, size_t errlen)
{
    char buf[1024];
    PGresult *r = PQexec(c, sql);
    ExecStatusType st = PQresultStatus(r);
    int ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK || st == PGRES_EMPTY_QUERY;
    if (!ok)
        set_err(err, errlen, "%s: %s", what,
                pg_msg(r ? PQresultErrorMessage(r) : PQerrorMessage(c), buf, sizeof(buf)));
    PQclear(r);
    return ok ? 0 : -1;
}

static void rollback(PGconn *c)
{
    PGresult *r = PQexec(c, "ROLLBACK");
    PQclear(r);
}

static int cmp_migration(const void *a, const void *b)
{
    const migration *x = a, *y = b;
    return (x->version > y->version) - (x->version < y->version);
}

static void free_list(migration *m, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(m[i].file);
        free(m[i].name);
    }
    free(m);
}

/* NNN_name.sql: digits, underscore, [A-Za-z0-9_-]+, ".sql". */
static int parse_name(const char *file, long *version, char **name)
{
    char *end;
    size_t n = strlen(file);

    if (n < 7 || strcmp(file + n - 4, ".sql") != 0 || file[0] < '0' || file[0] > '9')
        return -1;
    errno = 0;
    *version = strtol(file, &end, 10);
    if (errno != 0 || *end != '_' || end + 1 >= file + n - 4)
        return -1;
    for (const char *p = end + 1; p < file + n - 4; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')
              || (*p >= '0' && *p <= '9') || *p == '_' || *p == '-'))
            return -1;
    *name = strndup(end + 1, (size_t)(file + n - 4 - (end + 1)));
    return *name ? 0 : -1;
}

static int list_migrations(const char *dir, migration **out, size_t *count,
                           char *err, size_t errlen)
{
    DIR *d = opendir(dir);
    migration *m = NULL;
    size_t n = 0;
    struct dirent *e;

    if (d == NULL) {
        set_err(err, errlen, "migrations dir %s: %s", dir, strerror(errno));
        return -1;
    }
    while ((e = readdir(d)) != NULL) {
        long v;
        char *name;
        if (e->d_name[0] == '.' || parse_name(e->d_name, &v, &name) != 0) {
            if (e->d_name[0] != '.' && strstr(e->d_name, ".sql"))
                insite_log_warn("migrations: ignoring %s/%s (not NNN_name.sql)", dir, e->d_name);
            continue;
        }
        migration *nm = realloc(m, (n + 1) * sizeof(*m));
        if (nm == NULL || (nm[n].file = strdup(e->d_name)) == NULL) {
            m = nm ? nm : m;
            free(name);
            set_err(err, errlen, "migrations: out of memory");
            goto fail;
        }
        m = nm;
        m[n].version = v;
        m[n].name = name;
        n++;
    }
    closedir(d);
    d = NULL;
    qsort(m, n, sizeof(*m), cmp_migration);
    for (size_t i = 1; i < n; i++)
        if (m[i].version == m[i - 1].version) {
            set_err(err, errlen, "migrations %s and %s share version %ld",
                    m[i - 1].file, m[i].file, m[i].version);
            goto fail;
        }
    *out = m;
    *count = n;
    return 0;
fail:
    if (d)
        closedir(d);
    free_list(m, n);
    return -1;
}

static char *read_all(const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    char *buf = NULL;
    size_t len = 0;

    if (f == NULL) {
        set_err(err, errlen, "%s: %s", path, strerror(errno));
        return NULL;
    }
    FILE *mem = open_memstream(&buf, &len);
    char chunk[8192];
    size_t n;
    while (mem && (n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        fwrite(chunk, 1, n, mem);
    int bad = ferror(f) || mem == NULL;
    fclose(f);
    if (mem)
        fclose(mem);
    if (bad) {
        set_err(err, errlen, "%s: read error", path);
        free(buf);
        return NULL;
    }
    return buf;
}

/* Is version already recorded?  1 yes, 0 no, -1 error. */
static int applied(PGconn *c, long version, char *err, size_t errlen)
{
    char v[24], buf[512];
    const char *params[1] = { v };
    snprintf(v, sizeof(v), "%ld", version);
    PGresult *r = PQexecParams(c, "SELECT 1 FROM schema_migrations WHERE version = $1",
                               1, NULL, params, NULL, NULL, 0);
    int rc = -1;
    if (PQresultStatus(r) == PGRES_TUPLES_OK)
        rc = PQntuples(r) > 0;
    else
        set_err(err, errlen, "schema_migrations: %s",
                pg_msg(PQresultErrorMessage(r), buf, sizeof(buf)));
    PQclear(r);
    return rc;
}

static int record(PGconn *c, const migration *m, char *err, size_t errlen)
{
    char v[24], buf[512];
    const char *params[2] = { v, m->name };
    snprintf(v, sizeof(v), "%ld", m->version);
    PGresult *r = PQexecParams(c, "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                               2, NULL, params, NULL, NULL, 0);
    int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    if (!ok)
        set_err(err, errlen, "%s: recording: %s", m->file,
                pg_msg(PQresultErrorMessage(r), buf, sizeof(buf)));
    PQclear(r);
    return ok ? 0 : -1;
}

/* Applies one migration in its own transaction.  1 applied, 0 skipped
 * (another worker got there first), -1 error (rolled back). */
static int apply_one(PGconn *c, const char *dir, const migration *m, char *err, size_t errlen)
{
    char *path = NULL, *sql = NULL;
    int rc = -1;

    if (asprintf(&path, "%s/%s", dir, m->file) < 0) {
        set_err(err, errlen, "out of memory");
        return -1;
    }
    if ((sql = read_all(path, err, errlen)) == NULL)
        goto out;
    if (exec(c, "BEGIN", "BEGIN", err, errlen) != 0)
        goto out;
    if (exec(c, LOCK_SQL, "advisory lock", err, errlen) != 0)
        goto fail;
    int done = applied(c, m->version, err, errlen);
    if (done < 0)
        goto fail;
    if (done) {
        rollback(c);
        rc = 0;
        goto out;
    }
    if (exec(c, sql, m->file, err, errlen) != 0 || record(c, m, err, errlen) != 0)
        goto fail;
    if (exec(c, "COMMIT", m->file, err, errlen) != 0)
        goto fail;
    insite_log_info("migrations: applied %s", m->file);
    rc = 1;
    goto out;
fail:
    rollback(c);
out:
    free(sql);
    free(path);
    return rc;
}

int insite_pg_migrate(PGconn *c, const char *dir, char *err, size_t errlen)
{
    migration *m = NULL;
    size_t n = 0;
    int count = 0;

    if (list_migrations(dir, &m, &n, err, errlen) != 0)
        return -1;

    /* Created under the same lock: concurrent CREATE TABLE IF NOT EXISTS
     * can still fail on the catalog's unique index. */
    if (exec(c, "BEGIN", "BEGIN", err, errlen) != 0
        || exec(c, LOCK_SQL, "advisory lock", err, errlen) != 0
        || exec(c, "CREATE TABLE IF NOT EXISTS schema_migrations ("
                   " version bigint PRIMARY KEY,"
                   " name text NOT NULL,"
                   " applied_at timestamptz NOT NULL DEFAULT now())",
                "schema_migrations", err, errlen) != 0
        || exec(c, "COMMIT", "schema_migrations", err, errlen) != 0) {
        rollback(c);
        free_list(m, n);
        return -1;
    }

    for (size_t i = 0; i < n; i++) {
        int rc = apply_one(c, dir, &m[i], err, errlen);
        if (rc < 0) {
            count = -1;
            break;
        }
        count += rc;
    }
    free_list(m, n);
    return count;
}

PGconn *insite_pg_open(const char *dsn, const char *dir, const char *what)
{
    char err[512];
    PGconn *c = insite_pg_connect(dsn, err, sizeof(err));

    if (c == NULL) {
        insite_log_error("%s: %s", what, err);
        return NULL;
    }
    int n = insite_pg_migrate(c, dir, err, sizeof(err));
    if (n < 0) {
        insite_log_error("%s: migrations in %s: %s", what, dir, err);
        PQfinish(c);
        return NULL;
    }
    if (n > 0)
        insite_log_info("%s: applied %d migration(s) from %s", what, n, dir);
    return c;
}
