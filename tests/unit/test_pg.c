/* Migrations against a real PostgreSQL: INSITE_PG_DSN if set, else a
 * throw-away cluster made here with initdb (as the postgres user when run as
 * root, since PostgreSQL refuses root).  Each test works in its own schema. */
#include <pwd.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cmocka.h>

#include "log.h"
#include "pg.h"

static char tmpdir[64];
static char dsn[256];
static char as_user[64];     /* "runuser -u postgres -- " or "" */
static int started;
static char migrations[1024];
static int schema_no;

static int free_port(void)
{
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    bind(fd, (struct sockaddr *)&a, sizeof(a));
    getsockname(fd, (struct sockaddr *)&a, &len);
    close(fd);
    return ntohs(a.sin_port);
}

static int run(const char *fmt, ...)
{
    char cmd[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    int rc = system(cmd);
    if (rc != 0)
        fprintf(stderr, "command failed (%d): %s\n", rc, cmd);
    return rc;
}

/* workers/migrations, found from the working directory or the binary's
 * place (build/tests/x or build/asan/tests/x). */
static int find_migrations(void)
{
    char exe[256];
    if (access("workers/migrations/001_initial.sql", R_OK) == 0) {
        snprintf(migrations, sizeof(migrations), "workers/migrations");
        return 0;
    }
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n <= 0)
        return -1;
    exe[n] = '\0';
    for (char *slash; (slash = strrchr(exe, '/')) != NULL;) {
        *slash = '\0';
        snprintf(migrations, sizeof(migrations), "%s/workers/migrations", exe);
        char probe[1100];
        snprintf(probe, sizeof(probe), "%s/001_initial.sql", migrations);
        if (access(probe, R_OK) == 0)
            return 0;
    }
    return -1;
}

static int setup(void **state)
{
    const char *env = getenv("INSITE_PG_DSN");
    insite_log_set_level(INSITE_LOG_ERROR);
    if (find_migrations() != 0) {
        fprintf(stderr, "cannot find workers/migrations\n");
        return -1;
    }
    if (env != NULL) {
        snprintf(dsn, sizeof(dsn), "%s", env);
        return 0;
    }
    const char *bin = "/usr/lib/postgresql/15/bin";
    if (access("/usr/lib/postgresql/15/bin/initdb", X_OK) != 0)
        return 0;   /* tests skip loudly */
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/insite-pg.XXXXXX");
    if (mkdtemp(tmpdir) == NULL)
        return -1;
    if (geteuid() == 0) {
        struct passwd *pw = getpwnam("postgres");
        if (pw == NULL || chown(tmpdir, pw->pw_uid, pw->pw_gid) != 0)
            return 0;
        snprintf(as_user, sizeof(as_user), "runuser -u postgres -- ");
    }
    int port = free_port();
    if (run("%s%s/initdb -D %s/data -A trust -U postgres >%s/initdb.log 2>&1",
            as_user, bin, tmpdir, tmpdir) != 0
        || run("%s%s/pg_ctl -D %s/data -w -t 30 -l %s/pg.log -o \"-p %d -k %s "
               "-c listen_addresses=127.0.0.1 -c fsync=off\" start >/dev/null",
               as_user, bin, tmpdir, tmpdir, port, tmpdir) != 0)
        return -1;
    started = 1;
    snprintf(dsn, sizeof(dsn), "host=127.0.0.1 port=%d user=postgres dbname=postgres", port);
    return 0;
}

static int teardown(void **state)
{
    if (started)
        run("%s/usr/lib/postgresql/15/bin/pg_ctl -D %s/data -m immediate stop >/dev/null",
            as_user, tmpdir);
    if (tmpdir[0] != '\0')
        run("rm -rf %s", tmpdir);
    return 0;
}

/* A connection whose unqualified names live in a fresh schema. */
static PGconn *connect_fresh(void)
{
    char err[512], sql[128];
    if (dsn[0] == '\0') {
        fprintf(stderr, "SKIP: no PostgreSQL: set INSITE_PG_DSN or install "
                        "postgresql-15 (initdb) to run the migration tests\n");
        skip();
    }
    PGconn *c = insite_pg_connect(dsn, err, sizeof(err));
    if (c == NULL)
        fail_msg("%s", err);
    int no = ++schema_no;
    snprintf(sql, sizeof(sql), "CREATE SCHEMA t%ld_%d; SET search_path TO t%ld_%d",
             (long)getpid(), no, (long)getpid(), no);
    PGresult *r = PQexec(c, sql);
    assert_int_equal(PQresultStatus(r), PGRES_COMMAND_OK);
    PQclear(r);
    return c;
}

static long long scalar(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        fail_msg("%s: %s", sql, PQresultErrorMessage(r));
    long long v = atoll(PQgetvalue(r, 0, 0));
    PQclear(r);
    return v;
}

/* every NNN_name.sql of the shipped migrations is applied exactly once */
static int count_sql(const char *dir)
{
    int n = 0;
    struct dirent *de;
    DIR *d = opendir(dir);
    assert_non_null(d);
    while ((de = readdir(d)) != NULL) {
        size_t len = strlen(de->d_name);
        if (len > 4 && strcmp(de->d_name + len - 4, ".sql") == 0)
            n++;
    }
    closedir(d);
    return n;
}

static void test_apply_once(void **state)
{
    PGconn *c = connect_fresh();
    char err[512] = "";
    int shipped = count_sql(migrations);

    int n = insite_pg_migrate(c, migrations, err, sizeof(err));
    if (n < 0)
        fail_msg("%s", err);
    assert_true(shipped >= 1);
    assert_int_equal(n, shipped);
    assert_int_equal(scalar(c, "SELECT count(*) FROM schema_migrations WHERE version = 1 "
                               "AND name = 'initial' AND applied_at <= now()"), 1);
    /* the tables exist, with their unique keys */
    assert_int_equal(scalar(c, "SELECT count(*) FROM stock_prices"), 0);
    assert_int_equal(scalar(c, "SELECT count(*) FROM social_posts"), 0);
    assert_int_equal(scalar(c, "SELECT count(*) FROM sentiment_data"), 0);
    assert_int_equal(scalar(c, "SELECT count(*) FROM collection_jobs"), 0);
    PGresult *r = PQexec(c, "INSERT INTO stock_prices (symbol, ts, close, interval, source) "
                            "VALUES ('AAPL', '2026-11-26T10:30:00Z', 189.12, '1m', 't'),"
                            "       ('AAPL', '2026-11-26T10:30:00Z', 189.13, '1m', 't')");
    assert_int_equal(PQresultStatus(r), PGRES_FATAL_ERROR);   /* unique(symbol, ts, interval) */
    PQclear(r);

    /* second run: nothing to do */
    assert_int_equal(insite_pg_migrate(c, migrations, err, sizeof(err)), 0);
    assert_int_equal(scalar(c, "SELECT count(*) FROM schema_migrations"), shipped);
    PQfinish(c);
}

static void write_file(const char *dir, const char *name, const char *text)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void test_broken_rolls_back(void **state)
{
    PGconn *c = connect_fresh();
    char dir[] = "/tmp/insite-mig.XXXXXX", err[512] = "";

    assert_non_null(mkdtemp(dir));
    write_file(dir, "001_first.sql", "CREATE TABLE a (x int);\n");
    write_file(dir, "002_broken.sql", "CREATE TABLE b (x int);\nINSERT INTO nope VALUES (1);\n");
    write_file(dir, "003_later.sql", "CREATE TABLE c (x int);\n");
    write_file(dir, "README", "not a migration\n");

    assert_int_equal(insite_pg_migrate(c, dir, err, sizeof(err)), -1);
    if (strncmp(err, "002_broken.sql: ERROR:  relation \"nope\" does not exist", 54) != 0)
        fail_msg("unexpected error: %s", err);
    /* 001 stays, 002 is rolled back entirely (table b too), 003 never ran */
    assert_int_equal(scalar(c, "SELECT count(*) FROM schema_migrations"), 1);
    assert_int_equal(scalar(c, "SELECT count(*) FROM pg_tables WHERE schemaname = current_schema() "
                               "AND tablename IN ('a', 'b', 'c')"), 1);

    /* fixed: the rest applies, 001 is not run again */
    write_file(dir, "002_broken.sql", "CREATE TABLE b (x int);\n");
    assert_int_equal(insite_pg_migrate(c, dir, err, sizeof(err)), 2);
    assert_int_equal(scalar(c, "SELECT count(*) FROM schema_migrations"), 3);

    /* two files with one version are refused before anything runs */
    write_file(dir, "003_dup.sql", "SELECT 1;\n");
    assert_int_equal(insite_pg_migrate(c, dir, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "share version 3"));

    run("rm -rf %s", dir);
    PQfinish(c);
}

static void test_bad_dsn_and_dir(void **state)
{
    char err[512];
    assert_null(insite_pg_connect("host=127.0.0.1 port=1 connect_timeout=2", err, sizeof(err)));
    assert_non_null(strstr(err, "postgres: "));
    PGconn *c = connect_fresh();
    assert_int_equal(insite_pg_migrate(c, "/nonexistent", err, sizeof(err)), -1);
    assert_string_equal(err, "migrations dir /nonexistent: No such file or directory");
    PQfinish(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_apply_once),
        cmocka_unit_test(test_broken_rolls_back),
        cmocka_unit_test(test_bad_dsn_and_dir),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
