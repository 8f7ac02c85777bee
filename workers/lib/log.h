/* Leveled logging to stderr, one line per event.
 *
 *   2026-11-26T10:30:45.123Z insite-collector[1234] warn: message
 *
 * Under systemd (JOURNAL_STREAM set) the timestamp is replaced by a journald
 * priority prefix (<3> error .. <7> debug) because journald stamps lines
 * itself and uses the prefix as the priority.  Thread-safe: each line is
 * formatted in a private buffer and written with a single write(2). */
#ifndef INSITE_LOG_H
#define INSITE_LOG_H

enum insite_log_level {
    INSITE_LOG_ERROR = 0,
    INSITE_LOG_WARN,
    INSITE_LOG_INFO,
    INSITE_LOG_DEBUG
};

/* ident is the program name shown in each line ("insite-collector"); the
 * string is copied.  Safe to call again (e.g. after a config reload). */
void insite_log_init(const char *ident);
void insite_log_set_level(enum insite_log_level level);
enum insite_log_level insite_log_get_level(void);
/* Parses "error", "warn", "info", "debug"; returns -1 for anything else. */
int insite_log_level_parse(const char *name);

void insite_log(enum insite_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#define insite_log_error(...) insite_log(INSITE_LOG_ERROR, __VA_ARGS__)
#define insite_log_warn(...)  insite_log(INSITE_LOG_WARN, __VA_ARGS__)
#define insite_log_info(...)  insite_log(INSITE_LOG_INFO, __VA_ARGS__)
#define insite_log_debug(...) insite_log(INSITE_LOG_DEBUG, __VA_ARGS__)

#endif
