#include <poll.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "clock.h"
#include "fetch.h"
#include "log.h"

#define BODY_MAX (16u << 20)

struct fetch {
    fetch_options o;
    CURLM *multi;
    long long hold_until;        /* monotonic ms; Retry-After beyond a round */
    unsigned seed;
};

fetch *fetch_new(const fetch_options *o)
{
    static int global_done;
    fetch *f = calloc(1, sizeof(*f));

    if (!global_done) {
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
            insite_log_error("fetch: curl_global_init failed");
            free(f);
            return NULL;
        }
        global_done = 1;
    }
    if (f == NULL || (f->multi = curl_multi_init()) == NULL) {
        insite_log_error("fetch: cannot create a curl multi handle");
        free(f);
        return NULL;
    }
    f->o = *o;
    if (f->o.max_parallel <= 0)
        f->o.max_parallel = 16;
    curl_multi_setopt(f->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long)f->o.max_parallel);
    f->seed = (unsigned)insite_clock_mono_ms() ^ 0x5eedu;
    return f;
}

void fetch_free(fetch *f)
{
    if (f == NULL)
        return;
    curl_multi_cleanup(f->multi);
    free(f);
}

long long fetch_hold_until(const fetch *f)
{
    return f->hold_until;
}

void fetch_reqs_clear(fetch_req *reqs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(reqs[i].body);
        reqs[i].body = NULL;
        reqs[i].len = reqs[i].cap = 0;
    }
}

static size_t on_body(char *p, size_t size, size_t nmemb, void *ud)
{
    fetch_req *r = ud;
    size_t n = size * nmemb;

    if (r->len + n + 1 > BODY_MAX)
        return 0;                              /* -> CURLE_WRITE_ERROR */
    if (r->len + n + 1 > r->cap) {
        size_t cap = r->cap ? r->cap : 16384;
        while (cap < r->len + n + 1)
            cap *= 2;
        char *b = realloc(r->body, cap);
        if (b == NULL)
            return 0;
        r->body = b;
        r->cap = cap;
    }
    memcpy(r->body + r->len, p, n);
    r->len += n;
    r->body[r->len] = '\0';
    return n;
}

static int start(fetch *f, fetch_req *r)
{
    CURL *e = curl_easy_init();
    struct curl_slist *h = NULL;

    if (e == NULL)
        return -1;
    r->len = 0;
    if (r->body)
        r->body[0] = '\0';
    if (r->auth)
        h = curl_slist_append(h, r->auth);
    h = curl_slist_append(h, "Accept: application/json, application/rss+xml, */*;q=0.5");
    curl_easy_setopt(e, CURLOPT_URL, r->url);
    curl_easy_setopt(e, CURLOPT_PRIVATE, r);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(e, CURLOPT_USERAGENT, f->o.user_agent);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)f->o.timeout_ms);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)f->o.connect_timeout_ms);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(e, CURLOPT_MAXREDIRS, 3L);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    r->easy = e;
    r->attempts++;
    if (curl_multi_add_handle(f->multi, e) != CURLM_OK) {
        curl_easy_cleanup(e);
        curl_slist_free_all(h);
        r->easy = NULL;
        return -1;
    }
    r->headers = h;              /* must outlive the transfer */
    return 0;
}

static void finish(fetch *f, fetch_req *r)
{
    curl_multi_remove_handle(f->multi, r->easy);
    curl_easy_cleanup(r->easy);
    curl_slist_free_all(r->headers);
    r->easy = NULL;
    r->headers = NULL;
}

static long long backoff(fetch *f, int attempt)
{
    long long d = f->o.backoff_ms;
    for (int i = 1; i < attempt && d < f->o.backoff_max_ms; i++)
        d *= 2;
    if (d > f->o.backoff_max_ms)
        d = f->o.backoff_max_ms;
    /* equal jitter: [d/2, d] keeps a floor but spreads the retries */
    return d / 2 + (d > 1 ? rand_r(&f->seed) % (d / 2 + 1) : 0);
}

/* Decides what a finished transfer means: 0 final, 1 retry scheduled. */
static int judge(fetch *f, fetch_req *r, CURLcode code, long long now)
{
    CURL *e = r->easy;
    curl_off_t ra = 0;
    long long delay;
    int left = r->attempts <= f->o.retries;

    r->status = 0;
    if (code != CURLE_OK) {
        snprintf(r->err, sizeof(r->err), "%s", curl_easy_strerror(code));
        if (code == CURLE_URL_MALFORMAT || code == CURLE_UNSUPPORTED_PROTOCOL || !left)
            return 0;
        delay = backoff(f, r->attempts);
    } else {
        curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &r->status);
        if (r->status < 400) {
            r->err[0] = '\0';
            return 0;
        }
        if (r->status == 429) {
            curl_easy_getinfo(e, CURLINFO_RETRY_AFTER, &ra);
            snprintf(r->err, sizeof(r->err), "HTTP 429 Too Many Requests (Retry-After: %llds)",
                     (long long)ra);
            delay = ra > 0 ? (long long)ra * 1000 : backoff(f, r->attempts);
            if (delay > f->o.retry_after_max_ms) {
                f->hold_until = now + delay;
                return 0;
            }
        } else if (r->status >= 500) {
            snprintf(r->err, sizeof(r->err), "HTTP %ld", r->status);
            delay = backoff(f, r->attempts);
        } else {
            snprintf(r->err, sizeof(r->err), "HTTP %ld", r->status);
            return 0;
        }
        if (!left)
            return 0;
    }
    insite_log_warn("%s %s: %s (attempt %d of %d), retrying in %lldms", f->o.provider,
                    r->label, r->err, r->attempts, f->o.retries + 1, delay);
    r->due_ms = now + delay;
    return 1;
}

static void abort_all(fetch *f, fetch_req *reqs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (reqs[i].easy)
            finish(f, &reqs[i]);
        if (!reqs[i].done) {
            reqs[i].done = 1;
            reqs[i].status = 0;
            snprintf(reqs[i].err, sizeof(reqs[i].err), "aborted (shutting down)");
        }
    }
}

/* Starts what is due; returns ms until the next due request (or 1000). */
static long long start_due(fetch *f, fetch_req *reqs, size_t n, int *running,
                           size_t *left, long long now)
{
    long long next = 1000;
    for (size_t i = 0; i < n; i++) {
        fetch_req *r = &reqs[i];
        if (r->done || r->easy)
            continue;
        if (r->due_ms > now) {
            if (r->due_ms - now < next)
                next = r->due_ms - now;
            continue;
        }
        if (*running >= f->o.max_parallel)
            continue;
        if (start(f, r) != 0) {
            r->done = 1;
            snprintf(r->err, sizeof(r->err), "cannot start a transfer (out of memory?)");
            (*left)--;
            continue;
        }
        (*running)++;
    }
    return next;
}

int fetch_run(fetch *f, fetch_req *reqs, size_t n)
{
    size_t left = n;
    int running = 0, ok = 0;
    long long now = insite_clock_mono_ms();

    for (size_t i = 0; i < n; i++) {
        reqs[i].status = 0;
        reqs[i].attempts = 0;
        reqs[i].done = 0;
        reqs[i].easy = NULL;
        reqs[i].headers = NULL;
        reqs[i].err[0] = '\0';
        reqs[i].due_ms = f->hold_until > now ? f->hold_until : 0;
        if (reqs[i].due_ms - now > f->o.retry_after_max_ms) {
            reqs[i].done = 1;
            snprintf(reqs[i].err, sizeof(reqs[i].err),
                     "rate limited (429), server asked to wait %llds more",
                     (reqs[i].due_ms - now + 999) / 1000);
            left--;
        }
    }
    while (left > 0) {
        struct curl_waitfd w = { .fd = f->o.abort_fd, .events = POLLIN };
        int still, msgs;
        CURLMsg *m;

        now = insite_clock_mono_ms();
        long long wait = start_due(f, reqs, n, &running, &left, now);
        curl_multi_perform(f->multi, &still);
        while ((m = curl_multi_info_read(f->multi, &msgs)) != NULL) {
            fetch_req *r = NULL;
            if (m->msg != CURLMSG_DONE)
                continue;
            curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&r);
            running--;
            int again = judge(f, r, m->data.result, insite_clock_mono_ms());
            finish(f, r);
            if (again) {
                wait = 0;
                continue;
            }
            r->done = 1;
            left--;
            ok += r->status >= 200 && r->status < 300;
        }
        if (left == 0)
            break;
        curl_multi_poll(f->multi, f->o.abort_fd >= 0 ? &w : NULL, f->o.abort_fd >= 0,
                        (int)(wait < 0 ? 0 : wait), NULL);
        if (f->o.abort_fd >= 0 && (w.revents & POLLIN)) {
            abort_all(f, reqs, n);
            return -1;
        }
    }
    return ok;
}
