#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <errno.h>

#include "clock.h"
#include "log.h"

#define LOG_LINE_MAX 4096

static const char *level_names[] = { "error", "warn", "info", "debug" };
/* journald priorities: LOG_ERR=3, LOG_WARNING=4, LOG_INFO=6, LOG_DEBUG=7 */
static const int level_prio[] = { 3, 4, 6, 7 };

static atomic_int log_level = INSITE_LOG_INFO;
/* Written once at startup before threads exist; read-only afterwards. */
static char log_ident[64] = "insite";

void insite_log_init(const char *ident)
{
    if (ident != NULL)
        snprintf(log_ident, sizeof(log_ident), "%s", ident);
}

void insite_log_set_level(enum insite_log_level level)
{
    atomic_store(&log_level, (int)level);
}

enum insite_log_level insite_log_get_level(void)
{
    return (enum insite_log_level)atomic_load(&log_level);
}

int insite_log_level_parse(const char *name)
{
    for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++)
        if (strcmp(name, level_names[i]) == 0)
            return (int)i;
    return -1;
}

void insite_log(enum insite_log_level level, const char *fmt, ...)
{
    char line[LOG_LINE_MAX];
    size_t len;
    int n;
    int saved_errno = errno;   /* callers often log then inspect errno */

    if ((int)level > atomic_load(&log_level))
        return;

    if (getenv("JOURNAL_STREAM") != NULL) {
        n = snprintf(line, sizeof(line), "<%d>%s[%ld] %s: ",
                     level_prio[level], log_ident, (long)getpid(),
                     level_names[level]);
    } else {
        char ts[INSITE_RFC3339_LEN];
        insite_clock_rfc3339(ts, sizeof(ts));
        n = snprintf(line, sizeof(line), "%s %s[%ld] %s: ", ts, log_ident,
                     (long)getpid(), level_names[level]);
    }
    len = n > 0 ? (size_t)n : 0;

    va_list ap;
    va_start(ap, fmt);
    n = vsnprintf(line + len, sizeof(line) - len, fmt, ap);
    va_end(ap);
    if (n > 0)
        len += (size_t)n;
    if (len > sizeof(line) - 2)
        len = sizeof(line) - 2;   /* truncated: still one whole line */

    /* Embedded newlines would split one event over several journal entries. */
    for (size_t i = 0; i < len; i++)
        if (line[i] == '\n' || line[i] == '\r')
            line[i] = ' ';
    line[len++] = '\n';

    /* One write per line keeps lines from different threads unmixed. */
    ssize_t w = write(STDERR_FILENO, line, len);
    (void)w;   /* nowhere left to report a failing stderr */
    errno = saved_errno;
}
