/* A worker's main(): the life cycle every insite-* worker shares, so that
 * each main.c says only what is its own.
 *
 *   insite_runtime_init   signals (signalfd), log ident, common flags
 *   schema                insite_runtime_config_keys, then o->keys in order
 *                         (the order --help prints them in)
 *   --help/--check-config insite_runtime_common, exit 0 or the check's status
 *   o->args               the worker's own arguments; without it, any
 *                         argument is a usage error (exit 2)
 *   config                insite_runtime_load_config (applies log.level);
 *                         a config that does not load: exit 1
 *   o->run                the worker (HTTP API, loops, drain on SIGTERM);
 *                         its return value is the exit status
 *   shutdown              config, schema and runtime freed
 *
 * systemd readiness and the watchdog stay where they were: the first
 * insite_runtime_wait() of o->run sends READY=1 (runtime.h). */
#ifndef INSITE_WORKER_H
#define INSITE_WORKER_H

#include <stddef.h>

#include "config.h"
#include "runtime.h"

/* One set of config keys: a library's (insite_pg_config_keys, ...) or the
 * worker's own. */
typedef struct {
    const insite_config_key *keys;
    size_t n;
} insite_worker_keys;

#define INSITE_WORKER_KEYS(a) { (a), sizeof(a) / sizeof((a)[0]) }

typedef struct {
    const char *name;                   /* "insite-auditd" */
    const char *usage;                  /* extra usage text after
                                           "[-c FILE]"; NULL or "" = none */
    const insite_worker_keys *keys;     /* after the runtime's, in order */
    size_t nkeys;
    /* The arguments the runtime left (rt->argc > 1 or not): returns -1 to
     * go on (load the config, then run), or an exit status.  May run a
     * subcommand that needs no config.  NULL: no argument is accepted. */
    int (*args)(insite_runtime *rt, void *ud);
    /* The worker itself, with its loaded config; returns the exit status.
     * A SIGHUP reload may replace *cfg (insite_runtime_maybe_reload(rt,
     * cfg)): what *cfg is on return is freed. */
    int (*run)(insite_runtime *rt, insite_config **cfg, void *ud);
    void *ud;
} insite_worker_options;

/* The whole life cycle above; returns main()'s exit status. */
int insite_worker_main(const insite_worker_options *o, int argc, char **argv);

/* "usage: NAME [-c FILE] USAGE" on stderr; returns 2 (a usage error). */
int insite_worker_usage(const insite_runtime *rt, const char *usage);

#endif
