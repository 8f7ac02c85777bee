/* Worker main-loop helpers: common command-line flags and signals.
 *
 * Signals are delivered through a signalfd, never to handlers, so no work
 * happens in signal context: SIGTERM/SIGINT set `draining`, SIGHUP sets
 * `reload`.  Call insite_runtime_init() first thing in main(), before any
 * thread exists (librdkafka, libmicrohttpd), so every thread inherits the
 * blocked mask and the signals can only be read from the signalfd. */
#ifndef INSITE_RUNTIME_H
#define INSITE_RUNTIME_H

#include <stdbool.h>

#include "config.h"

typedef struct {
    const char *name;        /* "insite-publish" */
    const char *config_path; /* -c FILE / --config=FILE, NULL if absent */
    bool check_config;       /* --check-config */
    bool help;               /* --help / -h */
    int argc;                /* the worker's own arguments: argv[0] and */
    char **argv;             /* everything the runtime did not consume */
    int sigfd;               /* signalfd for SIGTERM, SIGINT, SIGHUP */
    bool draining;           /* SIGTERM/SIGINT seen: finish and exit */
    bool reload;             /* SIGHUP seen: caller reloads, then clears */
    double started;          /* monotonic seconds at init, for uptime */
    bool notified_ready;     /* systemd: READY=1 sent (first wait) */
    double watchdog_interval;/* seconds between WATCHDOG=1; 0 = none */
    double watchdog_last;
} insite_runtime;

/* Blocks the signals, opens the signalfd, ignores SIGPIPE, initialises the
 * log ident, and splits argv into common flags and the rest.  Returns 0, or
 * -1 on a usage error or system failure (logged). */
int insite_runtime_init(insite_runtime *rt, const char *name, int argc, char **argv);

/* Handles --help and --check-config: prints usage (with the schema's keys)
 * or the check result.  Returns -1 when the worker should continue, or an
 * exit status to return from main(). */
int insite_runtime_common(insite_runtime *rt, const insite_config_schema *s,
                          const char *usage);

/* Loads the config from rt->config_path and applies log.level if declared. */
insite_config *insite_runtime_load_config(insite_runtime *rt,
                                          const insite_config_schema *s);

/* Waits up to timeout_ms (-1 = forever) for a signal, or for `fd` to become
 * readable when fd >= 0.  Updates draining/reload.  Returns 1 if fd is
 * readable, 0 otherwise, -1 on error (logged).
 * Under systemd (Type=notify) the first call sends READY=1, later calls send
 * WATCHDOG=1 at half of WatchdogSec, and STOPPING=1 with SIGTERM: a worker's
 * loop must call it at least every few seconds (every loop does). */
int insite_runtime_wait(insite_runtime *rt, int timeout_ms, int fd);

/* If rt->reload is set: reloads *cfg (keeping the old one on error) and
 * clears the flag.  Returns 1 if a new config was installed, else 0. */
int insite_runtime_maybe_reload(insite_runtime *rt, insite_config **cfg);

double insite_runtime_uptime(const insite_runtime *rt);
void insite_runtime_close(insite_runtime *rt);

/* Keys every worker should declare (log.level). */
extern const insite_config_key insite_runtime_config_keys[];
extern const size_t insite_runtime_config_nkeys;

#endif
