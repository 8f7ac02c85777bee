/* Worker configuration: one libconfig file per worker, then environment
 * overrides.
 *
 * A worker declares the keys it accepts (tables of insite_config_key, e.g.
 * its own plus insite_redis_config_keys) in a schema, then loads a file:
 *
 *     redis = { host = "10.0.0.5"; port = 6380; };
 *     kafka = { linger = "20ms"; };
 *
 * Dotted key "redis.port" is the setting "port" in group "redis".  Every key
 * can be overridden by the environment variable INSITE_<KEY> with dots
 * turned into underscores and upper-cased (INSITE_REDIS_PORT=6380).
 * Precedence: environment > file > default.
 *
 * Errors name the place and the reason, first error only:
 *     collector.conf:12: redis.port: must be 1..65535
 *     collector.conf:3: unknown key "redis.hots"
 *     INSITE_REDIS_PORT: must be an integer (got "abc")
 *
 * Value types: durations are strings with a unit ("250ms", "5s", "2m", "1h",
 * "7d"; "0" is allowed) and read back in milliseconds; string lists are
 * libconfig arrays/lists (["a", "b"]) or comma-separated in the environment. */
#ifndef INSITE_CONFIG_H
#define INSITE_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

typedef enum {
    INSITE_CFG_STRING,
    INSITE_CFG_INT,
    INSITE_CFG_BOOL,
    INSITE_CFG_DOUBLE,
    INSITE_CFG_DURATION,
    INSITE_CFG_STRING_LIST
} insite_config_type;

typedef struct {
    const char *name;         /* "redis.port" */
    insite_config_type type;
    const char *def;          /* default, written as in the environment:
                                 "6379", "true", "5s", "a,b"; NULL = "" */
    double min, max;          /* inclusive bounds for int/double/duration
                                 (duration in ms); both 0 = unbounded */
    const char *help;
} insite_config_key;

typedef struct insite_config_schema insite_config_schema;
typedef struct insite_config insite_config;

insite_config_schema *insite_config_schema_new(void);
/* Adds n keys; the table must outlive the schema (use static tables).
 * Returns 0, or -1 on a duplicate name (logged: a programming error). */
int insite_config_schema_add(insite_config_schema *s,
                             const insite_config_key *keys, size_t n);
void insite_config_schema_free(insite_config_schema *s);
/* Prints every key with type, default and help (for --help). */
void insite_config_schema_print(const insite_config_schema *s, FILE *out);

/* Parses path (NULL = no file: defaults and environment only), then applies
 * the environment.  Returns a new config, or NULL with the reason in err.
 * The config keeps a reference to the schema and a copy of path for reloads. */
insite_config *insite_config_load(const insite_config_schema *s,
                                  const char *path, char *err, size_t errlen);
void insite_config_free(insite_config *c);

/* For SIGHUP: re-parses the same file into a new object.  On success *cur is
 * freed and replaced and 0 is returned; on error *cur is left untouched, the
 * error is logged and -1 returned. */
int insite_config_reload(insite_config **cur);

/* For --check-config: loads, prints "<path>: ok" to out or the error to err
 * stream; returns 0 when valid, 1 otherwise (an exit status). */
int insite_config_check(const insite_config_schema *s, const char *path,
                        FILE *out);

/* Typed getters.  Asking for an undeclared key or with the wrong type is a
 * programming error: logged and abort()ed. */
const char *insite_config_string(const insite_config *c, const char *name);
long long insite_config_int(const insite_config *c, const char *name);
bool insite_config_bool(const insite_config *c, const char *name);
double insite_config_double(const insite_config *c, const char *name);
long long insite_config_duration_ms(const insite_config *c, const char *name);
/* Returns the item count; *items points into the config (do not free). */
size_t insite_config_list(const insite_config *c, const char *name,
                          char *const **items);
const char *insite_config_path(const insite_config *c);

#endif
