/* The data map (docs/gdpr-rights.md, docs/gdpr-retention.md): where personal
 * and bulky data lives.  One JSON file, read by the erasure and export job
 * (the "postgresql", "redis" and "kafka" targets, found by user) and by the
 * retention run (the "retention" targets, found by age).  datamap.c is the
 * only parser; identifiers are checked ([a-z_][a-z0-9_]{0,62}) and stored
 * quoted, ready for SQL. */
#ifndef GDPR_DATAMAP_H
#define GDPR_DATAMAP_H

#include <stddef.h>

#include <jansson.h>
#include <libpq-fe.h>

#define GDPR_MAP_DBS 16

enum { GDPR_T_PG, GDPR_T_REDIS, GDPR_T_KAFKA };
enum { GDPR_A_DELETE, GDPR_A_ANONYMIZE, GDPR_A_RETAIN };

/* A place holding a user's data (erasure, export). */
typedef struct {
    int kind, action;
    char *name;                  /* "pg:consents", "redis:consent_state", "kafka" */
    int db;                      /* index into dbs */
    char *table, *column;        /* quoted identifiers */
    json_t *columns;             /* anonymize: column -> string|null */
    json_t *replace_in;          /* column names holding the id in text */
    int pseudonymize;
    char *reason;
    char *key;                   /* redis key pattern with %u */
    int match;                   /* key is a SCAN pattern ending in "*" */
} gdpr_target;

/* A table whose rows expire by age (retention):
 *   {"name","database","table","time_column", "where": {"column": [values]}}
 * Rows with time_column < cutoff (and, with "where", column IN values) go. */
typedef struct {
    char *name;                  /* "stock_prices" (unquoted) */
    int db;
    char *table, *time_column;   /* quoted */
    char *filter_column;         /* quoted, NULL = every row */
    json_t *filter_values;       /* array of strings */
} gdpr_retention_target;

typedef struct {
    char *name, *dsn;
    PGconn *pg;                  /* the erasure job's connection */
} gdpr_database;

typedef struct {
    gdpr_database dbs[GDPR_MAP_DBS];
    size_t ndbs;
    gdpr_target *targets;
    size_t ntargets;
    char *kafka_topic, *kafka_event;
    gdpr_retention_target *retention;
    size_t nretention;
} gdpr_datamap;

/* Loads and checks the file into *m (zeroed by the caller); a database DSN
 * "" means our_dsn.  0, or -1 with the reason in err (m is then freed). */
int gdpr_datamap_load(gdpr_datamap *m, const char *path, const char *our_dsn,
                      char *err, size_t errlen);
/* The retention target called name, or NULL. */
const gdpr_retention_target *gdpr_datamap_retention_find(const gdpr_datamap *m,
                                                         const char *name);
/* Frees what the map holds (and closes its connections), not m itself. */
void gdpr_datamap_free(gdpr_datamap *m);

/* [a-z_][a-z0-9_]{0,62} */
int gdpr_ident_ok(const char *s);
/* "\"s\"", malloc'ed; s must pass gdpr_ident_ok(). */
char *gdpr_quote_ident(const char *s);

#endif
