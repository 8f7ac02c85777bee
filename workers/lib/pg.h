/* PostgreSQL: connection helper and versioned schema migrations.
 *
 * Migrations are files NNN_name.sql in a directory (config pg.migrations_dir,
 * default "workers/migrations", relative to the working directory, i.e. the
 * repository root in development; installs point it at
 * /usr/share/insite/migrations).  They are applied in version order, each in
 * its own transaction holding pg_advisory_xact_lock, so workers starting at
 * the same time never race, and recorded in
 * schema_migrations(version, name, applied_at).  Applied versions are
 * skipped.  A migration must not contain BEGIN/COMMIT itself. */
#ifndef INSITE_PG_H
#define INSITE_PG_H

#include <stddef.h>

#include <libpq-fe.h>

#include "config.h"

extern const insite_config_key insite_pg_config_keys[];
extern const size_t insite_pg_config_nkeys;

/* Connects and checks the status.  NULL with the reason in err. */
PGconn *insite_pg_connect(const char *dsn, char *err, size_t errlen);

/* The same, for a session that only waits (LISTEN): a reader that never
 * writes would not notice a half-open TCP connection, so TCP keepalives
 * (idle 10 s, then 3 probes 5 s apart) end it within ~25 s.  Keepalive
 * settings in dsn take precedence; a Unix socket ignores them. */
PGconn *insite_pg_connect_waiting(const char *dsn, char *err, size_t errlen);

/* Applies pending migrations from dir.  Returns the number applied (>= 0),
 * or -1 with "NNN_name.sql: <PostgreSQL message>" (or the I/O problem) in
 * err; the failing migration is rolled back, earlier ones stay applied. */
int insite_pg_migrate(PGconn *c, const char *dir, char *err, size_t errlen);

/* A worker's start: connects and applies the migrations of dir.  Failures
 * are logged as "<what>: <reason>" and "<what>: migrations in <dir>:
 * <reason>" (NULL returned), applied migrations as "<what>: applied N
 * migration(s) from <dir>". */
PGconn *insite_pg_open(const char *dsn, const char *dir, const char *what);

#endif
