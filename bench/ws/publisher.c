/*
 * Publisher for the WebSocket fan-out benchmark.
 *
 *   publisher -m insite-http|nchan-http|insite-redis -p PORT
 *             [-H 127.0.0.1] [-C CHANNELS] [-n PREFIX] [-r RATE] [-d SECONDS]
 *             [-c CONNS] [-w DEPTH] [-S SIZE] [-F FINALFILE] [-o OUT.json]
 *             [-2] [-L lua/publish.lua] [-k KEY_PREFIX] [-h HISTORY]
 *             [-M SHMFILE -N CLIENTS -f FANOUT -W WINDOW]
 *
 * Publishes SIZE-byte bodies (default 100) round-robin over channels
 * PREFIX0..PREFIX<CHANNELS-1> and over CONNS keep-alive connections (up to
 * DEPTH requests pipelined on each; nginx answers them one at a time),
 * RATE messages/s in total (0 = max rate), for SECONDS.
 *
 * -2 (HTTP modes): every connection speaks HTTP/2 cleartext with prior
 * knowledge (h2c, nginx's "listen ... http2") and DEPTH is the number of
 * concurrent streams on it, capped at the server's
 * SETTINGS_MAX_CONCURRENT_STREAMS (nginx: 128).  nginx runs the streams of
 * one connection concurrently, so one connection carries many publishes at
 * once, where HTTP/1.1 pipelining gets one answered at a time.
 *
 * Max rate is closed-loop when -M is given: the load clients count their
 * deliveries in SHMFILE and the publisher stays at most WINDOW messages
 * (x FANOUT deliveries each) ahead of them, so that the figure is what the
 * server sustains, not how it behaves when flooded.
 *
 *   insite-http   POST /pub?channel=NAME  {"data":{"p":K,"seq":0,"t":NS,..}}
 *                 the envelope's seq (from Redis) is what clients check; the
 *                 201 answer gives it
 *   insite-redis  EVALSHA lua/publish.lua straight to Redis (same keys as
 *                 the module, key prefix -k, history -h)
 *   nchan-http    POST /pub/NAME  {"p":K,"seq":N,"t":NS,"pad":...}: nchan
 *                 has no seq of its own, so connection K numbers what it
 *                 publishes on each channel (a "stream"); requests on one
 *                 connection keep their order, so each stream must arrive
 *                 gap-free and in order (HTTP/2: a stream's HEADERS and
 *                 DATA go out in submission order and nginx reads them in
 *                 that order; concurrent publishes to one channel on one
 *                 connection could still be reordered by nchan, which
 *                 the loss count would show)
 *
 * "t" is CLOCK_REALTIME in ns when the request is written.  At the end the
 * last accepted seq of every channel (and stream) goes to FINALFILE
 * ("<name> <stream> <seq>" lines, written to a temporary file and renamed)
 * for the load clients' loss count.
 */

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <hiredis/hiredis.h>
#include <nghttp2/nghttp2.h>

#include "common.h"
#include "insite_channel.h"

#define MAX_CONNS   64
#define MAX_DEPTH   256
#define OBUF_SIZE   (256 * 1024)
#define IBUF_SIZE   (256 * 1024)
#define BODY_SIZE   1024        /* a request body; -S is at most 900 */
#define ANSWER_SIZE 512         /* kept of an HTTP/2 answer body: the seq
                                   is in its first bytes */

enum mode { M_INSITE_HTTP, M_INSITE_REDIS, M_NCHAN_HTTP };

typedef struct {
    uint32_t  channel;
    uint64_t  seq;              /* nchan: the seq in the body */
} inflight_t;

typedef struct pub_s pub_t;

/* one HTTP/2 stream: its request body (the data provider reads it) and
   what came back */
typedef struct {
    unsigned    slot;           /* its in-flight slot, q[] and sent_at[] */
    char        body[BODY_SIZE];
    size_t      blen, boff;
    int         status;         /* :status, 0 until the HEADERS */
    char        answer[ANSWER_SIZE];
    size_t      alen;
} h2stream_t;

/* the HTTP/2 side of one connection; streams end in any order, so their
   in-flight slots come from a free list, not from the FIFO ring */
typedef struct {
    nghttp2_session *session;
    pub_t           *p;
    int              k;         /* connection index */
    h2stream_t       s[MAX_DEPTH];
    unsigned         free[MAX_DEPTH];
    unsigned         nfree;
} h2conn_t;

typedef struct {
    int         fd;
    uint8_t     obuf[OBUF_SIZE];
    size_t      olen;
    uint8_t     ibuf[IBUF_SIZE];
    size_t      ilen;
    inflight_t  q[MAX_DEPTH];
    unsigned    qhead, qlen;
    redisReader *reader;
    h2conn_t    *h2;            /* -2 only */
} pconn_t;

typedef struct {
    enum mode    mode;
    const char  *host;
    int          port;
    int          channels;
    const char  *prefix;
    double       rate;
    double       seconds;
    int          conns;
    int          depth;
    int          size;
    int          quotes;           /* -Q: quote-like padding, not 'x' */
    int          h2;               /* -2: HTTP/2 with prior knowledge */
    int          async;            /* -A: Prefer: respond-async (ours) */
    const char  *final_file;
    const char  *out_file;
    const char  *lua_file;
    const char  *key_prefix;
    int          history;
    const char  *shm_file;
    int          shm_slots;     /* load client processes writing counters */
    double       fanout;        /* deliveries per publish */
    double       window;        /* messages allowed ahead of delivery */
} popts_t;

struct pub_s {
    popts_t     o;
    pconn_t    *pc;
    uint64_t   *next_seq;       /* nchan: next seq per channel and conn */
    uint64_t   *last_seq;       /* highest seq accepted, same index */
    volatile uint64_t *shm;     /* the load clients' delivery counters */
    int         rrconn;         /* next connection, round-robin */
    uint64_t    sent, ok, failed;
    uint32_t    rr;             /* next channel, round-robin */
    char        sha[41];
    hist_t      rtt;            /* publish round trip, us */
    uint64_t   *sent_at;        /* per in-flight slot, for rtt */
};

static volatile sig_atomic_t stop_now;


static void
on_signal(int sig)
{
    (void) sig;
    stop_now = 1;
}

/* ------------------------------------------------------------ setup */

static int
tcp_connect(const char *host, int port)
{
    struct sockaddr_in sa;
    int                fd, one = 1;

    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        die("socket: %s", strerror(errno));
    }

    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t) port);
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
        die("bad address \"%s\"", host);
    }

    if (connect(fd, (struct sockaddr *) &sa, sizeof(sa)) != 0) {
        die("connect %s:%d: %s", host, port, strerror(errno));
    }

    (void) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return fd;
}

static char *
read_file(const char *path, size_t *len)
{
    FILE *f;
    char *buf;
    long  n;

    f = fopen(path, "r");
    if (f == NULL) {
        die("%s: %s", path, strerror(errno));
    }

    if (fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0
        || fseek(f, 0, SEEK_SET) != 0)
    {
        die("%s: cannot size it: %s", path, strerror(errno));
    }

    buf = malloc((size_t) n + 1);
    if (buf == NULL || fread(buf, 1, (size_t) n, f) != (size_t) n) {
        die("%s: read failed", path);
    }

    buf[n] = '\0';
    fclose(f);
    *len = (size_t) n;
    return buf;
}

/* SCRIPT LOAD of the module's publish script; keeps its sha1 */
static void
load_script(pub_t *p)
{
    redisContext *rc;
    redisReply   *r;
    size_t        len;
    char         *src;

    src = read_file(p->o.lua_file, &len);

    rc = redisConnect(p->o.host, p->o.port);
    if (rc == NULL || rc->err) {
        die("redis %s:%d: %s", p->o.host, p->o.port,
            rc ? rc->errstr : "out of memory");
    }

    r = redisCommand(rc, "SCRIPT LOAD %b", src, len);
    if (r == NULL || r->type != REDIS_REPLY_STRING || r->len != 40) {
        die("SCRIPT LOAD %s failed: %s", p->o.lua_file,
            r ? (r->str ? r->str : "bad reply") : rc->errstr);
    }

    memcpy(p->sha, r->str, 40);
    p->sha[40] = '\0';
    freeReplyObject(r);
    redisFree(rc);
    free(src);
}

/* --------------------------------------------------------- requests */

static int
body_json(pub_t *p, char *buf, size_t size, int k, uint64_t seq, uint64_t t)
{
    int n, pad;

    n = snprintf(buf, size, "{\"p\":%d,\"seq\":%llu,\"t\":%llu,\"pad\":\"",
                 k, (unsigned long long) seq, (unsigned long long) t);
    pad = p->o.size - n - 2;
    if (pad < 0) {
        pad = 0;
    }
    if (p->o.quotes) {
        /* "S012 187.23 41234567;" with digits from the seq: compresses
           about as a quote list does, not as one repeated byte */
        uint64_t  r = seq * 6364136223846793005ULL + 1442695040888963407ULL;
        int       left = pad, m;
        char      q[32];

        while (left > 0) {
            r = r * 6364136223846793005ULL + 1442695040888963407ULL;
            m = snprintf(q, sizeof(q), "S%03u %u.%02u %u;",
                         (unsigned) (r >> 56) % 500,
                         (unsigned) (r >> 40) % 400 + 10,
                         (unsigned) (r >> 33) % 100,
                         (unsigned) (r >> 8) % 90000000);
            m = m < left ? m : left;
            memcpy(buf + n + (pad - left), q, (size_t) m);
            left -= m;
        }
    } else {
        memset(buf + n, 'x', (size_t) pad);
    }
    n += pad;
    buf[n++] = '"';
    buf[n++] = '}';
    buf[n] = '\0';
    return n;
}

/* the target and body of a publish over HTTP, whichever the version;
   returns the body's length, 0 if it does not fit */
static size_t
req_parts(pub_t *p, int k, uint32_t ch, uint64_t seq, char *path,
    size_t psize, char *body, size_t bsize)
{
    char  data[BODY_SIZE];
    int   n, blen;

    body_json(p, data, sizeof(data), k, seq, now_ns(CLOCK_REALTIME));

    if (p->o.mode == M_INSITE_HTTP) {
        n = snprintf(path, psize, "/pub?channel=%s%u", p->o.prefix, ch);
        blen = snprintf(body, bsize, "{\"data\":%s}", data);
    } else {
        n = snprintf(path, psize, "/pub/%s%u", p->o.prefix, ch);
        blen = snprintf(body, bsize, "%s", data);
    }

    if (n <= 0 || (size_t) n >= psize || blen <= 0 || (size_t) blen >= bsize) {
        return 0;
    }

    return (size_t) blen;
}

static size_t
req_http(pub_t *p, uint8_t *out, size_t room, int k, uint32_t ch,
    uint64_t seq)
{
    char    path[256], body[BODY_SIZE];
    size_t  blen;
    int     n;

    blen = req_parts(p, k, ch, seq, path, sizeof(path), body, sizeof(body));
    if (blen == 0) {
        return 0;
    }

    n = snprintf((char *) out, room,
                 "POST %s HTTP/1.1\r\nHost: bench\r\n%s"
                 "Content-Type: application/json\r\n"
                 "Content-Length: %zu\r\n\r\n%s", path,
                 p->o.async ? "Prefer: respond-async\r\n" : "", blen, body);

    return n > 0 && (size_t) n < room ? (size_t) n : 0;
}

/* the data provider of a request body: all of it, then END_STREAM */
static ssize_t
h2_read_body(nghttp2_session *session, int32_t id, uint8_t *buf,
    size_t length, uint32_t *flags, nghttp2_data_source *source,
    void *user_data)
{
    h2stream_t *st = source->ptr;
    size_t      n = st->blen - st->boff;

    (void) session; (void) id; (void) user_data;

    if (n > length) {
        n = length;
    }

    memcpy(buf, st->body + st->boff, n);
    st->boff += n;
    if (st->boff == st->blen) {
        *flags |= NGHTTP2_DATA_FLAG_EOF;
    }

    return (ssize_t) n;
}

/* a request header; nghttp2 copies it when the request is submitted */
static nghttp2_nv
h2_nv(const char *name, const char *value)
{
    nghttp2_nv nv = { (uint8_t *) name, (uint8_t *) value, strlen(name),
                      strlen(value), NGHTTP2_NV_FLAG_NONE };

    return nv;
}

/* submits one publish as a new stream; nghttp2 frames it when the
   connection is next flushed (h2_send) */
static int
req_h2(pub_t *p, int k, unsigned slot, uint32_t ch, uint64_t seq)
{
    h2conn_t              *h2 = p->pc[k].h2;
    h2stream_t            *st = &h2->s[slot];
    char                   path[256], clen[24];
    nghttp2_nv             nv[7];
    nghttp2_data_provider  dp;
    int32_t                id;

    st->blen = req_parts(p, k, ch, seq, path, sizeof(path), st->body,
                         sizeof(st->body));
    if (st->blen == 0) {
        return -1;
    }

    snprintf(clen, sizeof(clen), "%zu", st->blen);
    nv[0] = h2_nv(":method", "POST");
    nv[1] = h2_nv(":scheme", "http");
    nv[2] = h2_nv(":authority", "bench");
    nv[3] = h2_nv(":path", path);
    nv[4] = h2_nv("content-type", "application/json");
    nv[5] = h2_nv("content-length", clen);
    nv[6] = h2_nv("prefer", "respond-async");

    st->slot = slot;
    st->boff = 0;
    st->status = 0;
    st->alen = 0;
    st->answer[0] = '\0';          /* the slot's last stream wrote there */
    dp.source.ptr = st;
    dp.read_callback = h2_read_body;

    id = nghttp2_submit_request(h2->session, NULL, nv,
                                sizeof(nv) / sizeof(nv[0]) - !p->o.async,
                                &dp, st);
    if (id < 0) {
        die("connection %d: nghttp2_submit_request: %s", k,
            nghttp2_strerror(id));
    }

    return 0;
}

static size_t
req_redis(pub_t *p, uint8_t *out, size_t room, uint32_t ch)
{
    char        name[160], data[1024], why[256];
    char        epoch[33], ts[32];
    const char *argv[3 + INSITE_CHANNEL_PUBLISH_ARGS];
    size_t      lens[3 + INSITE_CHANNEL_PUBLISH_ARGS];
    char       *cmd, nkeys[4];
    long long   n;
    uint64_t    now = now_ns(CLOCK_REALTIME);
    time_t      sec = (time_t) (now / 1000000000ull);
    struct tm   tm;

    insite_channel_publish_t       m;
    insite_channel_publish_args_t  a;

    snprintf(name, sizeof(name), "%s%u", p->o.prefix, ch);
    snprintf(epoch, sizeof(epoch), "%016llx%016llx",
             (unsigned long long) now, (unsigned long long) (now * 2654435761u));
    gmtime_r(&sec, &tm);
    strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(ts + strlen(ts), sizeof(ts) - strlen(ts), ".%03lluZ",
             (unsigned long long) (now / 1000000 % 1000));
    body_json(p, data, sizeof(data), 0, 0, now);

    /* the key layout and arguments are the channel contract's */
    memset(&m, 0, sizeof(m));
    m.channel = name;
    m.channel_len = strlen(name);
    m.type = "message";
    m.type_len = 7;
    m.data = data;
    m.data_len = strlen(data);
    m.ts = ts;
    m.ts_len = strlen(ts);
    m.epoch = epoch;
    m.epoch_len = strlen(epoch);
    m.history = (unsigned long) p->o.history;

    if (insite_channel_publish_args(&a, p->o.key_prefix,
                                    strlen(p->o.key_prefix), &m, why,
                                    sizeof(why)) != 0)
    {
        fprintf(stderr, "publisher: %s\n", why);
        return 0;
    }

    snprintf(nkeys, sizeof(nkeys), "%d", a.nkeys);
    argv[0] = "EVALSHA"; argv[1] = p->sha; argv[2] = nkeys;
    lens[0] = 7; lens[1] = strlen(p->sha); lens[2] = strlen(nkeys);
    for (int i = 0; i < a.nargs; i++) {
        argv[3 + i] = a.argv[i];
        lens[3 + i] = a.lens[i];
    }

    n = redisFormatCommandArgv(&cmd, 3 + a.nargs, argv, lens);
    if (n < 0 || (size_t) n >= room) {
        if (n >= 0) {
            free(cmd);
        }
        return 0;
    }

    memcpy(out, cmd, (size_t) n);
    free(cmd);
    return (size_t) n;
}

/* publishes connection k may have in flight: -w, and over HTTP/2 no more
   streams than the server allows (nghttp2 would hold the others back
   unsent, and they would count as in flight) */
static unsigned
conn_depth(pub_t *p, pconn_t *c)
{
    uint32_t max;

    if (c->h2 == NULL) {
        return (unsigned) p->o.depth;
    }

    max = nghttp2_session_get_remote_settings(c->h2->session,
              NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);

    return max < (uint32_t) p->o.depth ? max : (unsigned) p->o.depth;
}

/* writes one request into obuf (HTTP/1.1, Redis) or submits it as a
   stream (HTTP/2); returns its in-flight slot */
static unsigned
request(pub_t *p, int k, uint32_t ch, uint64_t seq)
{
    pconn_t *c = &p->pc[k];
    unsigned slot;
    size_t   n;

    if (c->h2 != NULL) {
        slot = c->h2->free[--c->h2->nfree];
        if (req_h2(p, k, slot, ch, seq) != 0) {
            die("request for channel %u does not fit", ch);
        }
        return slot;
    }

    n = p->o.mode == M_INSITE_REDIS
        ? req_redis(p, c->obuf + c->olen, OBUF_SIZE - c->olen, ch)
        : req_http(p, c->obuf + c->olen, OBUF_SIZE - c->olen, k, ch, seq);
    if (n == 0) {
        die("request for channel %u does not fit", ch);
    }

    c->olen += n;
    /* answers come in request order: the ring after the oldest */
    return (c->qhead + c->qlen) % MAX_DEPTH;
}

/* queues one publish on connection k; returns 0 when there is no room */
static int
queue_one(pub_t *p, int k, uint32_t ch)
{
    pconn_t *c = &p->pc[k];
    uint64_t seq = 0;
    unsigned slot;

    if (c->qlen >= conn_depth(p, c) || OBUF_SIZE - c->olen < 2048) {
        return 0;
    }

    if (p->o.mode == M_NCHAN_HTTP) {
        seq = p->next_seq[(size_t) ch * p->o.conns + k];
    }

    slot = request(p, k, ch, seq);
    c->q[slot].channel = ch;
    c->q[slot].seq = seq;
    p->sent_at[(size_t) k * MAX_DEPTH + slot] = now_ns(CLOCK_MONOTONIC);
    c->qlen++;
    p->sent++;

    if (p->o.mode == M_NCHAN_HTTP) {
        p->next_seq[(size_t) ch * p->o.conns + k]++;
    }

    return 1;
}

/* --------------------------------------------------------- answers */

/* counts the answer to the publish in slot `slot` of connection k: ok,
   and for ours the seq Redis gave it (nchan's is the one it was sent
   with) */
static void
account(pub_t *p, int k, unsigned slot, int ok, uint64_t seq)
{
    pconn_t    *c = &p->pc[k];
    inflight_t *f = &c->q[slot];
    uint64_t    t0 = p->sent_at[(size_t) k * MAX_DEPTH + slot];

    hist_add(&p->rtt, (now_ns(CLOCK_MONOTONIC) - t0) / 1000);

    if (p->o.mode == M_NCHAN_HTTP) {
        seq = f->seq;
    }

    if (ok) {
        size_t i = (size_t) f->channel * p->o.conns
                   + (p->o.mode == M_NCHAN_HTTP ? (size_t) k : 0);

        p->ok++;

        /* a 202 has no seq; a channel's seqs are dense from 1 (each run
           has channels of its own), so its last is the count accepted */
        if (p->o.async) {
            seq = p->last_seq[i] + 1;
        }

        if (seq > p->last_seq[i]) {
            p->last_seq[i] = seq;
        }
    } else {
        p->failed++;
    }

    c->qlen--;
}

/* HTTP/1.1 and Redis answer in request order: this is the oldest's */
static void
answered(pub_t *p, int k, int ok, uint64_t seq)
{
    pconn_t  *c = &p->pc[k];
    unsigned  slot = c->qhead;

    if (c->qlen == 0) {
        die("an answer with no request in flight on connection %d", k);
    }

    c->qhead = (c->qhead + 1) % MAX_DEPTH;
    account(p, k, slot, ok, seq);
}

/* the seq of ours' 201 body {"channel":..,"seq":N,..}; 0 for nchan, whose
   seq is the one the publisher sent */
static uint64_t
answer_seq(pub_t *p, int status, const uint8_t *body, size_t blen)
{
    const uint8_t *s;

    if (status < 200 || status >= 300 || p->o.mode != M_INSITE_HTTP) {
        return 0;
    }

    s = memmem(body, blen, "\"seq\":", 6);

    return s ? strtoull((const char *) s + 6, NULL, 10) : 0;
}

/* a publish the server did not take: the first few are shown */
static void
refused(pub_t *p, const char *what, int len)
{
    if (p->failed < 5) {
        fprintf(stderr, "publish failed: %.*s\n", len > 300 ? 300 : len, what);
    }
    if (p->o.mode == M_NCHAN_HTTP) {
        fprintf(stderr, "nchan refused a publish: its seq numbering now "
                "has a hole and loss counts are off\n");
    }
}

/* one HTTP answer from ibuf; returns bytes used, 0 if incomplete */
static size_t
parse_http(pub_t *p, int k, const uint8_t *b, size_t len)
{
    const uint8_t *end, *cl;
    size_t         hlen, blen = 0;
    int            status;
    uint64_t       seq;

    end = memmem(b, len, "\r\n\r\n", 4);
    if (end == NULL) {
        return 0;
    }

    hlen = (size_t) (end + 4 - b);
    if (sscanf((const char *) b, "HTTP/1.1 %d", &status) != 1) {
        die("bad HTTP answer: %.60s", b);
    }

    cl = memmem(b, hlen, "\r\nContent-Length: ", 18);
    if (cl == NULL) {
        cl = memmem(b, hlen, "\r\ncontent-length: ", 18);
    }
    if (cl != NULL) {
        blen = strtoul((const char *) cl + 18, NULL, 10);
    } else if (memmem(b, hlen, "chunked", 7) != NULL) {
        die("chunked publisher answers are not supported");
    }

    if (len < hlen + blen) {
        return 0;
    }

    seq = answer_seq(p, status, b + hlen, blen);

    if (status < 200 || status >= 300) {
        refused(p, (const char *) b, (int) (hlen + blen));
    }

    answered(p, k, status >= 200 && status < 300, seq);
    return hlen + blen;
}

static void
read_redis(pub_t *p, int k)
{
    pconn_t    *c = &p->pc[k];
    redisReply *r;
    void       *v;

    if (redisReaderFeed(c->reader, (char *) c->ibuf, c->ilen) != REDIS_OK) {
        die("redis reply parse error");
    }
    c->ilen = 0;

    for (;;) {
        if (redisReaderGetReply(c->reader, &v) != REDIS_OK) {
            die("redis reply parse error: %s", c->reader->errstr);
        }
        if (v == NULL) {
            return;
        }
        r = v;
        if (r->type == REDIS_REPLY_ARRAY && r->elements == 3
            && r->element[0]->type == REDIS_REPLY_INTEGER)
        {
            answered(p, k, 1, (uint64_t) r->element[0]->integer);
        } else {
            if (p->failed < 5) {
                fprintf(stderr, "EVALSHA failed: %s\n",
                        r->type == REDIS_REPLY_ERROR ? r->str : "bad reply");
            }
            answered(p, k, 0, 0);
        }
        freeReplyObject(r);
    }
}

/* ----------------------------------------------------------- HTTP/2 */

/* nghttp2's frames go to obuf, which on_output sends as for HTTP/1.1; a
   partial copy is fine, nghttp2 offers the rest again */
static ssize_t
h2_send_cb(nghttp2_session *session, const uint8_t *data, size_t length,
    int flags, void *user_data)
{
    h2conn_t *h2 = user_data;
    pconn_t  *c = &h2->p->pc[h2->k];
    size_t    n = OBUF_SIZE - c->olen;

    (void) session; (void) flags;

    if (n == 0) {
        return NGHTTP2_ERR_WOULDBLOCK;
    }
    if (n > length) {
        n = length;
    }

    memcpy(c->obuf + c->olen, data, n);
    c->olen += n;
    return (ssize_t) n;
}

/* keeps a stream's :status; nghttp2 has checked the header block */
static int
h2_header_cb(nghttp2_session *session, const nghttp2_frame *frame,
    const uint8_t *name, size_t namelen, const uint8_t *value,
    size_t valuelen, uint8_t flags, void *user_data)
{
    h2stream_t *st;

    (void) valuelen; (void) flags; (void) user_data;

    if (frame->hd.type != NGHTTP2_HEADERS || namelen != 7
        || memcmp(name, ":status", 7) != 0)
    {
        return 0;
    }

    st = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
    if (st != NULL) {
        st->status = atoi((const char *) value);     /* NUL-terminated */
    }

    return 0;
}

/* keeps the first ANSWER_SIZE - 1 bytes of a stream's answer body */
static int
h2_data_cb(nghttp2_session *session, uint8_t flags, int32_t id,
    const uint8_t *data, size_t len, void *user_data)
{
    h2stream_t *st;
    size_t      room;

    (void) flags; (void) user_data;

    st = nghttp2_session_get_stream_user_data(session, id);
    if (st == NULL) {
        return 0;
    }

    room = sizeof(st->answer) - 1 - st->alen;
    if (len > room) {
        len = room;
    }

    memcpy(st->answer + st->alen, data, len);
    st->alen += len;
    st->answer[st->alen] = '\0';
    return 0;
}

/* a stream ended, answered or reset: its publish is counted as the
   HTTP/1.1 path counts an answer (2xx = ok; else failed and shown) and
   its slot is free again */
static int
h2_close_cb(nghttp2_session *session, int32_t id, uint32_t error_code,
    void *user_data)
{
    h2conn_t   *h2 = user_data;
    pub_t      *p = h2->p;
    h2stream_t *st;
    char        what[ANSWER_SIZE + 128];
    int         ok, n;

    st = nghttp2_session_get_stream_user_data(session, id);
    if (st == NULL) {
        return 0;
    }

    ok = error_code == NGHTTP2_NO_ERROR && st->status >= 200
         && st->status < 300;

    if (!ok) {
        n = snprintf(what, sizeof(what), "HTTP/2 stream %d: status %d, %s: %s",
                     id, st->status, nghttp2_http2_strerror(error_code),
                     st->answer);
        refused(p, what, n < (int) sizeof(what) ? n : (int) sizeof(what) - 1);
    }

    account(p, h2->k, st->slot, ok,
            answer_seq(p, st->status, (const uint8_t *) st->answer, st->alen));
    h2->free[h2->nfree++] = st->slot;
    return 0;
}

/* a client session on connection k: its preface (nghttp2 sends the magic,
   we the SETTINGS) goes out with the first h2_send */
static void
h2_open(pub_t *p, int k)
{
    nghttp2_session_callbacks *cb;
    nghttp2_settings_entry     iv = { NGHTTP2_SETTINGS_ENABLE_PUSH, 0 };
    h2conn_t                  *h2;
    int                        rv;

    h2 = calloc(1, sizeof(h2conn_t));
    if (h2 == NULL || nghttp2_session_callbacks_new(&cb) != 0) {
        die("out of memory");
    }

    h2->p = p;
    h2->k = k;
    for (unsigned i = 0; i < MAX_DEPTH; i++) {
        h2->free[h2->nfree++] = MAX_DEPTH - 1 - i;
    }

    nghttp2_session_callbacks_set_send_callback(cb, h2_send_cb);
    nghttp2_session_callbacks_set_on_header_callback(cb, h2_header_cb);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, h2_data_cb);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, h2_close_cb);

    rv = nghttp2_session_client_new(&h2->session, cb, h2);
    nghttp2_session_callbacks_del(cb);
    if (rv != 0) {
        die("nghttp2_session_client_new: %s", nghttp2_strerror(rv));
    }

    rv = nghttp2_submit_settings(h2->session, NGHTTP2_FLAG_NONE, &iv, 1);
    if (rv != 0) {
        die("nghttp2_submit_settings: %s", nghttp2_strerror(rv));
    }

    p->pc[k].h2 = h2;
}

/* frames nghttp2 has ready (requests, SETTINGS acks, WINDOW_UPDATEs) go
   to obuf */
static void
h2_send(pub_t *p, int k)
{
    nghttp2_session *session = p->pc[k].h2->session;
    int              rv;

    rv = nghttp2_session_send(session);
    if (rv != 0) {
        die("publisher connection %d: nghttp2_session_send: %s", k,
            nghttp2_strerror(rv));
    }

    /* neither: a GOAWAY ended the session; HTTP/1.1 would see EOF */
    if (!nghttp2_session_want_read(session)
        && !nghttp2_session_want_write(session))
    {
        die("publisher connection %d: the server ended the HTTP/2 session", k);
    }
}

/* all of ibuf goes to nghttp2, which calls back per header, body chunk
   and stream end; what it has to answer is flushed at once */
static void
h2_input(pub_t *p, int k)
{
    pconn_t *c = &p->pc[k];
    ssize_t  rv;

    rv = nghttp2_session_mem_recv(c->h2->session, c->ibuf, c->ilen);
    if (rv < 0) {
        die("publisher connection %d: HTTP/2: %s", k,
            nghttp2_strerror((int) rv));
    }

    c->ilen = 0;
    h2_send(p, k);
}

/* ----------------------------------------------------------- sockets */

static void
on_input(pub_t *p, int k)
{
    pconn_t *c = &p->pc[k];
    ssize_t  n;
    size_t   used, off = 0;

    n = recv(c->fd, c->ibuf + c->ilen, IBUF_SIZE - c->ilen, MSG_DONTWAIT);
    if (n < 0 && errno == EAGAIN) {
        return;
    }
    if (n <= 0) {
        die("publisher connection %d closed by the server (%s)", k,
            n < 0 ? strerror(errno) : "EOF");
    }

    c->ilen += (size_t) n;

    if (p->o.mode == M_INSITE_REDIS) {
        read_redis(p, k);
        return;
    }

    if (c->h2 != NULL) {
        h2_input(p, k);
        return;
    }

    while ((used = parse_http(p, k, c->ibuf + off, c->ilen - off)) > 0) {
        off += used;
    }

    memmove(c->ibuf, c->ibuf + off, c->ilen - off);
    c->ilen -= off;
}

static void
on_output(pub_t *p, int k)
{
    pconn_t *c = &p->pc[k];
    ssize_t  n;

    n = send(c->fd, c->obuf, c->olen, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n < 0 && errno == EAGAIN) {
        return;
    }
    if (n < 0) {
        die("publisher connection %d: send: %s", k, strerror(errno));
    }

    memmove(c->obuf, c->obuf + n, c->olen - (size_t) n);
    c->olen -= (size_t) n;
}

/* what connection k has to send goes out, as far as the socket takes it */
static void
flush(pub_t *p, int k)
{
    if (p->pc[k].h2 != NULL) {
        h2_send(p, k);
    }
    if (p->pc[k].olen) {
        on_output(p, k);
    }
}

/* ------------------------------------------------------------- loop */

static uint64_t
due_now(pub_t *p, double t0, double t)
{
    if (p->o.rate <= 0) {
        return UINT64_MAX;
    }

    return (uint64_t) ((t - t0) * p->o.rate) + 1;
}

/* the window: stop while the subscribers lag too far behind */
static int
window_full(pub_t *p)
{
    uint64_t delivered = 0;

    if (p->shm == NULL) {
        return 0;
    }

    for (int i = 0; i < p->o.shm_slots; i++) {
        delivered += p->shm[i];
    }

    return (double) p->sent * p->o.fanout - (double) delivered
           > p->o.window * p->o.fanout;
}

/* connections in turn, channels in turn; a full connection is skipped */
static void
fill(pub_t *p, uint64_t due)
{
    int full = 0;

    while (p->sent < due && full < p->o.conns && !window_full(p)) {
        int k = p->rrconn;

        p->rrconn = (p->rrconn + 1) % p->o.conns;

        if (!queue_one(p, k, p->rr)) {
            full++;
            continue;
        }

        full = 0;
        p->rr = (p->rr + 1) % (uint32_t) p->o.channels;
    }
}

static unsigned
total_inflight(pub_t *p)
{
    unsigned n = 0;

    for (int k = 0; k < p->o.conns; k++) {
        n += p->pc[k].qlen;
    }

    return n;
}

static void
pump(pub_t *p, int timeout_ms)
{
    struct pollfd pf[MAX_CONNS];

    for (int k = 0; k < p->o.conns; k++) {
        pf[k].fd = p->pc[k].fd;
        pf[k].events = POLLIN | (p->pc[k].olen ? POLLOUT : 0);
        pf[k].revents = 0;
    }

    if (poll(pf, (nfds_t) p->o.conns, timeout_ms) < 0 && errno != EINTR) {
        die("poll: %s", strerror(errno));
    }

    for (int k = 0; k < p->o.conns; k++) {
        if (pf[k].revents & POLLOUT) {
            on_output(p, k);
        }
        if (pf[k].revents & (POLLIN | POLLHUP | POLLERR)) {
            on_input(p, k);
        }
    }
}

static void
run(pub_t *p)
{
    double   t0 = now_s(), t, next_trace = t0 + 1;
    uint64_t last_ok = 0;

    while (!stop_now && (t = now_s()) - t0 < p->o.seconds) {
        fill(p, due_now(p, t0, t));
        for (int k = 0; k < p->o.conns; k++) {
            flush(p, k);
        }
        pump(p, 1);

        if (t >= next_trace) {
            fprintf(stderr, "[pub] t=%.0f published/s=%llu in_flight=%u "
                    "failed=%llu\n", t - t0,
                    (unsigned long long) (p->ok - last_ok), total_inflight(p),
                    (unsigned long long) p->failed);
            last_ok = p->ok;
            next_trace += 1;
        }
    }

    t = now_s();
    while (total_inflight(p) > 0 && now_s() - t < 30) {
        for (int k = 0; k < p->o.conns; k++) {
            flush(p, k);
        }
        pump(p, 10);
    }

    if (total_inflight(p) > 0) {
        fprintf(stderr, "[pub] %u publishes still unanswered after 30 s\n",
                total_inflight(p));
    }
}

static void
write_final(pub_t *p)
{
    char  tmp[4096];
    FILE *f;

    snprintf(tmp, sizeof(tmp), "%s.tmp", p->o.final_file);
    f = fopen(tmp, "w");
    if (f == NULL) {
        die("%s: %s", tmp, strerror(errno));
    }

    /* "<channel> <stream> <last seq>": nchan has one numbering per
       publisher connection, ours one per channel (stream 0) */
    for (int ch = 0; ch < p->o.channels; ch++) {
        int streams = p->o.mode == M_NCHAN_HTTP ? p->o.conns : 1;

        for (int k = 0; k < streams; k++) {
            fprintf(f, "%s%d %d %llu\n", p->o.prefix, ch, k,
                    (unsigned long long)
                        p->last_seq[(size_t) ch * p->o.conns + k]);
        }
    }

    if (fclose(f) != 0 || rename(tmp, p->o.final_file) != 0) {
        die("writing %s: %s", p->o.final_file, strerror(errno));
    }
}

static void
summary(pub_t *p, double secs)
{
    FILE *f = stdout;

    if (p->o.out_file && (f = fopen(p->o.out_file, "w")) == NULL) {
        fprintf(stderr, "%s: %s\n", p->o.out_file, strerror(errno));
        f = stdout;
    }

    fprintf(f, "{\"sent\":%llu,\"ok\":%llu,\"failed\":%llu,\"seconds\":%.3f,"
            "\"published_per_s\":%.0f,\"rtt_us\":{\"p50\":%llu,\"p99\":%llu,"
            "\"max\":%llu}}\n",
            (unsigned long long) p->sent, (unsigned long long) p->ok,
            (unsigned long long) p->failed, secs,
            secs > 0 ? (double) p->ok / secs : 0.0,
            (unsigned long long) hist_quantile(&p->rtt, 0.5),
            (unsigned long long) hist_quantile(&p->rtt, 0.99),
            (unsigned long long) p->rtt.max);

    if (f != stdout) {
        fclose(f);
    }
}

/* ----------------------------------------------------------- options */

static void
usage(void)
{
    fprintf(stderr,
            "usage: publisher -m insite-http|insite-redis|nchan-http -p PORT\n"
            "  [-H HOST] [-C CHANNELS] [-n PREFIX] [-r RATE|0] [-d SECONDS]\n"
            "  [-c CONNS] [-w DEPTH] [-S SIZE] [-F FINALFILE] [-o OUT.json]\n"
            "  [-2]  HTTP/2 with prior knowledge (h2c), DEPTH streams per\n"
            "  connection (insite-http, nchan-http)\n"
            "  [-A]  insite-http: \"Prefer: respond-async\", answered 202\n"
            "  without the seq (seqs are dense per channel: counted)\n"
            "  [-L publish.lua] [-k KEY_PREFIX] [-h HISTORY]\n"
            "  [-M SHMFILE -N CLIENTS -f FANOUT -W WINDOW]  stay at most WINDOW\n"
            "  messages ahead of the deliveries the load clients count\n");
    exit(2);
}

static void
parse_opts(popts_t *o, int argc, char **argv)
{
    int opt;

    memset(o, 0, sizeof(*o));
    o->host = "127.0.0.1";
    o->channels = 1;
    o->prefix = "bench:";
    o->seconds = 10;
    o->conns = 1;
    o->depth = 16;
    o->size = 100;
    o->lua_file = "lua/publish.lua";
    o->key_prefix = "insite:";
    o->history = 1000;
    o->mode = (enum mode) -1;

    while ((opt = getopt(argc, argv, "m:p:H:C:n:r:d:c:w:S:Q2AF:o:L:k:h:M:N:f:W:")) != -1)
    {
        switch (opt) {
        case 'm':
            if (strcmp(optarg, "insite-http") == 0) {
                o->mode = M_INSITE_HTTP;
            } else if (strcmp(optarg, "insite-redis") == 0) {
                o->mode = M_INSITE_REDIS;
            } else if (strcmp(optarg, "nchan-http") == 0) {
                o->mode = M_NCHAN_HTTP;
            } else {
                usage();
            }
            break;
        case 'p': o->port = atoi(optarg); break;
        case 'H': o->host = optarg; break;
        case 'C': o->channels = atoi(optarg); break;
        case 'n': o->prefix = optarg; break;
        case 'r': o->rate = atof(optarg); break;
        case 'd': o->seconds = atof(optarg); break;
        case 'c': o->conns = atoi(optarg); break;
        case 'w': o->depth = atoi(optarg); break;
        case 'S': o->size = atoi(optarg); break;
        case 'Q': o->quotes = 1; break;
        case '2': o->h2 = 1; break;
        case 'A': o->async = 1; break;
        case 'F': o->final_file = optarg; break;
        case 'o': o->out_file = optarg; break;
        case 'L': o->lua_file = optarg; break;
        case 'k': o->key_prefix = optarg; break;
        case 'h': o->history = atoi(optarg); break;
        case 'M': o->shm_file = optarg; break;
        case 'N': o->shm_slots = atoi(optarg); break;
        case 'f': o->fanout = atof(optarg); break;
        case 'W': o->window = atof(optarg); break;
        default: usage();
        }
    }

    if ((int) o->mode < 0 || o->port <= 0 || o->channels <= 0
        || o->conns <= 0 || o->conns > MAX_CONNS || o->depth <= 0
        || o->depth > MAX_DEPTH || o->size < 40 || o->size > 900
        || (o->h2 && o->mode == M_INSITE_REDIS)
        || (o->async && o->mode != M_INSITE_HTTP)
        || (o->shm_file && (o->shm_slots <= 0 || o->shm_slots > SHM_SLOTS
                            || o->fanout <= 0 || o->window <= 0)))
    {
        usage();
    }
}

int
main(int argc, char **argv)
{
    pub_t  p;
    double t0;

    memset(&p, 0, sizeof(p));
    parse_opts(&p.o, argc, argv);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    signal(SIGPIPE, SIG_IGN);

    p.pc = calloc((size_t) p.o.conns, sizeof(pconn_t));
    p.next_seq = calloc((size_t) p.o.channels * p.o.conns, sizeof(uint64_t));
    p.last_seq = calloc((size_t) p.o.channels * p.o.conns, sizeof(uint64_t));
    p.sent_at = calloc((size_t) p.o.conns * MAX_DEPTH, sizeof(uint64_t));
    if (!p.pc || !p.next_seq || !p.last_seq || !p.sent_at) {
        die("out of memory");
    }

    for (size_t i = 0; i < (size_t) p.o.channels * p.o.conns; i++) {
        p.next_seq[i] = 1;
    }

    if (p.o.shm_file) {
        p.shm = map_counters(p.o.shm_file);
    }

    if (p.o.mode == M_INSITE_REDIS) {
        load_script(&p);
    }

    for (int k = 0; k < p.o.conns; k++) {
        p.pc[k].fd = tcp_connect(p.o.host, p.o.port);
        if (p.o.mode == M_INSITE_REDIS
            && (p.pc[k].reader = redisReaderCreate()) == NULL)
        {
            die("redisReaderCreate: out of memory");
        }
        if (p.o.h2) {
            h2_open(&p, k);
        }
    }

    t0 = now_s();
    run(&p);

    if (p.o.final_file) {
        write_final(&p);
    }

    summary(&p, now_s() - t0);
    return 0;
}
