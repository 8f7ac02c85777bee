#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>

#include <systemd/sd-daemon.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"
#include "runtime.h"

const insite_config_key insite_runtime_config_keys[] = {
    { "log.level", INSITE_CFG_STRING, "info", 0, 0,
      "error, warn, info or debug" },
};
const size_t insite_runtime_config_nkeys =
    sizeof(insite_runtime_config_keys) / sizeof(insite_runtime_config_keys[0]);

static int setup_signals(insite_runtime *rt)
{
    sigset_t set;

    /* A peer closing a socket must surface as EPIPE, not kill the worker. */
    signal(SIGPIPE, SIG_IGN);

    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    if (pthread_sigmask(SIG_BLOCK, &set, NULL) != 0) {
        insite_log_error("runtime: pthread_sigmask: %s", strerror(errno));
        return -1;
    }
    rt->sigfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (rt->sigfd < 0) {
        insite_log_error("runtime: signalfd: %s", strerror(errno));
        return -1;
    }
    return 0;
}

int insite_runtime_init(insite_runtime *rt, const char *name, int argc, char **argv)
{
    memset(rt, 0, sizeof(*rt));
    rt->name = name;
    rt->sigfd = -1;
    rt->started = insite_clock_mono_s();
    insite_log_init(name);

    rt->argv = calloc((size_t)argc + 1, sizeof(char *));
    if (rt->argv == NULL) {
        insite_log_error("runtime: out of memory");
        return -1;
    }
    rt->argv[rt->argc++] = argv[0];
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-c") == 0 || strcmp(a, "--config") == 0) {
            if (i + 1 >= argc) {
                insite_log_error("%s needs a file name", a);
                return -1;
            }
            rt->config_path = argv[++i];
        } else if (strncmp(a, "--config=", 9) == 0) {
            rt->config_path = a + 9;
        } else if (strcmp(a, "--check-config") == 0) {
            rt->check_config = true;
        } else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            rt->help = true;
        } else {
            rt->argv[rt->argc++] = argv[i];
        }
    }
    return setup_signals(rt);
}

int insite_runtime_common(insite_runtime *rt, const insite_config_schema *s,
                          const char *usage)
{
    if (rt->help) {
        printf("usage: %s [-c FILE] [--check-config] [--help]%s%s\n\n"
               "config keys (file, or environment INSITE_<KEY>):\n",
               rt->name, usage ? " " : "", usage ? usage : "");
        insite_config_schema_print(s, stdout);
        return 0;
    }
    if (rt->check_config)
        return insite_config_check(s, rt->config_path, stdout);
    return -1;
}

/* Every worker declares log.level (insite_runtime_config_keys). */
static void apply_log_level(const insite_config *c)
{
    const char *lvl = insite_config_string(c, "log.level");
    int l = insite_log_level_parse(lvl);
    if (l < 0)
        insite_log_warn("log.level \"%s\" is not error/warn/info/debug; keeping %d",
                        lvl, (int)insite_log_get_level());
    else
        insite_log_set_level((enum insite_log_level)l);
}

insite_config *insite_runtime_load_config(insite_runtime *rt,
                                          const insite_config_schema *s)
{
    char err[512];
    insite_config *c = insite_config_load(s, rt->config_path, err, sizeof(err));
    if (c == NULL) {
        insite_log_error("%s", err);
        return NULL;
    }
    apply_log_level(c);
    return c;
}

static int read_signals(insite_runtime *rt)
{
    struct signalfd_siginfo si;

    for (;;) {
        ssize_t n = read(rt->sigfd, &si, sizeof(si));
        if (n < 0) {
            if (errno == EAGAIN)
                return 0;
            if (errno == EINTR)
                continue;
            insite_log_error("runtime: read signalfd: %s", strerror(errno));
            return -1;
        }
        if (n != (ssize_t)sizeof(si))
            return 0;
        if (si.ssi_signo == SIGHUP) {
            rt->reload = true;
        } else if (!rt->draining) {
            rt->draining = true;
            sd_notify(0, "STOPPING=1");
            insite_log_info("%s received, draining", strsignal((int)si.ssi_signo));
        }
    }
}

/* systemd: a worker is ready once it has set itself up and waits for work
 * for the first time, so READY=1 is sent on the first insite_runtime_wait()
 * (every worker's loop goes through it).  WATCHDOG=1 follows at half the
 * unit's WatchdogSec, from the same loop: a worker stuck outside its loop
 * stops petting the watchdog and systemd restarts it.  STOPPING=1 is sent
 * where SIGTERM is read (read_signals).  Without
 * $NOTIFY_SOCKET both are no-ops. */
static void notify_systemd(insite_runtime *rt)
{
    double now = insite_clock_mono_s();
    uint64_t usec;

    if (!rt->notified_ready) {
        rt->notified_ready = true;
        rt->watchdog_interval = 0;
        if (sd_watchdog_enabled(0, &usec) > 0)
            rt->watchdog_interval = (double)usec / 2e6;
        sd_notifyf(0, "READY=1\nSTATUS=%s running\nMAINPID=%ld", rt->name,
                   (long)getpid());
        rt->watchdog_last = now;
        return;
    }
    if (rt->watchdog_interval > 0 && now - rt->watchdog_last >= rt->watchdog_interval) {
        sd_notify(0, "WATCHDOG=1");
        rt->watchdog_last = now;
    }
}

int insite_runtime_wait(insite_runtime *rt, int timeout_ms, int fd)
{
    notify_systemd(rt);

    struct pollfd p[2] = {
        { .fd = rt->sigfd, .events = POLLIN },
        { .fd = fd, .events = POLLIN },
    };
    int n = poll(p, fd >= 0 ? 2 : 1, timeout_ms);

    if (n < 0) {
        if (errno == EINTR)
            return 0;
        insite_log_error("runtime: poll: %s", strerror(errno));
        return -1;
    }
    if (p[0].revents & POLLIN && read_signals(rt) != 0)
        return -1;
    return fd >= 0 && (p[1].revents & (POLLIN | POLLHUP | POLLERR)) ? 1 : 0;
}

int insite_runtime_maybe_reload(insite_runtime *rt, insite_config **cfg)
{
    if (!rt->reload)
        return 0;
    rt->reload = false;
    if (insite_config_reload(cfg) != 0)
        return 0;
    apply_log_level(*cfg);
    return 1;
}

double insite_runtime_uptime(const insite_runtime *rt)
{
    return insite_clock_mono_s() - rt->started;
}

void insite_runtime_close(insite_runtime *rt)
{
    if (rt->sigfd >= 0)
        close(rt->sigfd);
    rt->sigfd = -1;
    free(rt->argv);
    rt->argv = NULL;
}
