/* The bars cache's invalidations: a thread with its own PostgreSQL session
 * that LISTENs on insite_stock_bars (migration 033) and drops the pages a
 * change touches (bars_cache.h).  The cache is online only while that
 * session is: on a lost connection it goes offline (empty, nothing served
 * or stored), and back online (emptied again) once LISTEN is in place
 * again, so a change made while nobody listened never leaves a stale page. */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "pg.h"
#include "stocks.h"

#define RETRY_MS 1000
#define POLL_MS 250        /* how soon a stop is noticed */

static int should_stop(stocks_listener *l)
{
    return __atomic_load_n(&l->stop, __ATOMIC_ACQUIRE);
}

static void pause_ms(stocks_listener *l, int ms)
{
    for (; ms > 0 && !should_stop(l); ms -= POLL_MS)
        poll(NULL, 0, POLL_MS);
}

static PGconn *listen_connect(stocks_listener *l)
{
    char err[256];
    PGconn *c = insite_pg_connect_waiting(l->dsn, err, sizeof(err));
    if (c == NULL) {
        insite_log_warn("stocks: bars cache listener: postgresql: %s", err);
        return NULL;
    }
    PGresult *r = PQexec(c, "LISTEN insite_stock_bars");
    int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    PQclear(r);
    if (!ok) {
        insite_log_warn("stocks: bars cache listener: LISTEN: %s", PQerrorMessage(c));
        PQfinish(c);
        return NULL;
    }
    return c;
}

static void apply(stocks_listener *l, const char *payload)
{
    char symbol[STOCKS_SYMBOL_MAX];
    int64_t first, last;
    switch (stocks_bars_change_parse(payload, symbol, &first, &last)) {
    case 1:
        stocks_bars_cache_invalidate(l->cache, symbol, first, last);
        break;
    case 0:
        stocks_bars_cache_invalidate(l->cache, NULL, 0, 0);
        break;
    default:
        /* not ours to read: drop everything rather than keep a stale page */
        insite_log_warn("stocks: bars cache listener: unreadable change \"%.64s\": cache emptied",
                        payload);
        stocks_bars_cache_invalidate(l->cache, NULL, 0, 0);
    }
    insite_counter_inc(l->applied);
}

/* Reads notifications until the session fails or a stop is asked. */
static void listen_loop(stocks_listener *l, PGconn *c)
{
    struct pollfd pfd = { .fd = PQsocket(c), .events = POLLIN };
    while (!should_stop(l)) {
        int n = poll(&pfd, 1, POLL_MS);
        if (n < 0 && errno != EINTR) {
            insite_log_warn("stocks: bars cache listener: poll: %s", strerror(errno));
            return;
        }
        if (n <= 0)
            continue;
        if (PQconsumeInput(c) != 1) {
            insite_log_warn("stocks: bars cache listener: postgresql: %s", PQerrorMessage(c));
            return;
        }
        PGnotify *nf;
        while ((nf = PQnotifies(c)) != NULL) {
            apply(l, nf->extra);
            PQfreemem(nf);
        }
    }
}

static void *listener_main(void *arg)
{
    stocks_listener *l = arg;
    int was_online = 0;
    while (!should_stop(l)) {
        PGconn *c = listen_connect(l);
        if (c == NULL) {
            pause_ms(l, RETRY_MS);
            continue;
        }
        stocks_bars_cache_set_online(l->cache, 1);
        if (was_online)
            insite_log_info("stocks: bars cache listener: back (cache emptied)");
        else
            insite_log_info("stocks: bars cache listener: online (LISTEN insite_stock_bars)");
        was_online = 1;
        listen_loop(l, c);
        stocks_bars_cache_set_online(l->cache, 0);
        PQfinish(c);
        if (!should_stop(l)) {
            insite_log_warn("stocks: bars cache listener: lost; cache offline until it is back");
            pause_ms(l, RETRY_MS);
        }
    }
    return NULL;
}

int stocks_listener_start(stocks_listener *l)
{
    l->stop = 0;
    int rc = pthread_create(&l->thread, NULL, listener_main, l);
    if (rc != 0) {
        insite_log_error("stocks: bars cache listener: thread: %s", strerror(rc));
        return -1;
    }
    return 0;
}

void stocks_listener_stop(stocks_listener *l)
{
    __atomic_store_n(&l->stop, 1, __ATOMIC_RELEASE);
    pthread_join(l->thread, NULL);
}
