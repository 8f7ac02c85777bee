/*
 * WebSocket fan-out load client: thousands of subscriber connections in one
 * epoll loop, for the InsiteChart module (-P insite) and for nchan
 * (-P nchan).
 *
 *   loadclient -P insite|nchan -p PORT -c CONNS -C CHANNELS -n NAME_PREFIX
 *              [-H 127.0.0.1] [-s 127.0.0.2,127.0.0.3] [-u /ws] [-R readyfile]
 *              [-F finalfile] [-o summary.json] [-T max_seconds]
 *              [-D drain_seconds] [-i id]
 *
 * Connection i subscribes to channel NAME_PREFIX<i % CHANNELS> (ours: one
 * subscribe request on -u PATH; nchan: GET <-u PATH>/<channel>).  Each
 * delivered message must carry "seq":N (ours: the envelope's; nchan: the
 * body the publisher sent, numbered per publisher connection "p":K) and
 * "t":NANOSECONDS (CLOCK_REALTIME at publish time) so that every connection
 * checks that seq grows by exactly one (per stream) and the latency
 * publish -> deliver goes into a histogram.  With -M the running delivery
 * count is kept in slot -j of a shared file for the publisher's window.
 *
 * Once every connection is subscribed (or failed) the client creates
 * READYFILE.  It then waits for FINALFILE ("<channel> <stream> <seq>" lines,
 * written by the publisher when it is done), keeps reading until every
 * connection has reached its channel's last seq or nothing arrived for
 * DRAIN seconds, and counts as lost, per connection, every gap plus what is
 * missing at the end.  A connection the server closed loses what it did not
 * get.  A 1-second trace goes to stderr, a JSON summary to -o (or stdout).
 *
 * -L PCT -B BYTES: PCT % of the connections (i % 100 < PCT) are slow
 * readers: a 4 KB receive buffer and at most BYTES read per second.  Their
 * deliveries go to a histogram of their own ("slow" in the summary: how
 * old a message is when a slow reader gets it), so "lat_us" is the fast
 * readers'.  A conflated message (insite_ws_conflate) counts as its seq
 * range: no gap, and "conflated" counts the messages it stood for.
 *
 * -z offers permessage-deflate (as browsers do) and inflates compressed
 * messages (RSV1) with the module's own core (insite_ws_deflate.c); the
 * summary counts the bytes read off the sockets ("wire_bytes") and the
 * compressed messages ("compressed"), with or without -z.
 */

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common.h"
#include "insite_ws_deflate.h"

#define MAX_SRC        64
#define MAX_HANDSHAKES 512               /* connects in flight at once */
#define RBUF_SIZE      (1 << 20)
#define NAME_MAX_LEN   128
#define MAX_STREAMS    64                /* publisher connections (nchan) */

enum proto { PROTO_INSITE, PROTO_NCHAN };

enum state {
    ST_IDLE,            /* not started yet */
    ST_CONNECTING,
    ST_HANDSHAKE,       /* request sent, waiting for 101 */
    ST_SUBSCRIBING,     /* ours: subscribe sent, waiting for "subscribed" */
    ST_READY,
    ST_CLOSED,
    ST_FAILED           /* never became ready */
};

typedef struct {
    int        fd;
    uint8_t    state;
    uint8_t    got_close;
    uint16_t   close_code;
    uint32_t   channel;
    uint64_t   next_seq[MAX_STREAMS]; /* seq expected next per publisher
                                     stream; 0 = not known yet */
    uint64_t   received;
    uint64_t   lost;          /* gaps seen so far */
    uint64_t   dups;          /* seq lower than expected */
    uint8_t   *pend;          /* bytes of an incomplete frame */
    uint32_t   pend_len;
    uint32_t   pend_cap;
    uint8_t   *frag;          /* fragmented message being assembled */
    uint32_t   frag_len;
    uint32_t   frag_cap;
    uint8_t    frag_rsv1;     /* ... which is compressed */
    uint8_t    slow;          /* -L: reads at most -B bytes a second */
    uint8_t    paused;        /* slow, budget spent: not in epoll */
    uint32_t   budget;        /* slow: bytes it may still read */
} conn_t;

typedef struct {
    enum proto   proto;
    const char  *host;
    int          port;
    const char  *path;
    int          conns;
    int          channels;
    const char  *prefix;
    const char  *ready_file;
    const char  *final_file;
    const char  *out_file;
    const char  *id;
    const char  *shm_file;
    int          shm_slot;
    double       max_seconds;
    double       drain_seconds;
    int          nsrc;
    int          deflate;          /* -z: offer permessage-deflate */
    int          slow_pct;         /* -L */
    int          slow_bps;         /* -B */
    struct in_addr src[MAX_SRC];
} opts_t;

typedef struct {
    opts_t      o;
    int         ep;
    conn_t     *c;
    int         started;          /* connections started so far */
    int         in_flight;        /* connecting/handshaking/subscribing */
    int         ready_now;
    int         ready_peak;
    int         failed;
    int         closed;           /* ready connections the server closed */
    int         ready_signalled;
    uint64_t   *ch_deliv;         /* deliveries per channel */
    uint64_t   *ch_final;         /* last seq per channel and stream */
    volatile uint64_t *shm;       /* deliveries, for the publisher's window */
    int         have_final;
    uint64_t    deliveries;
    uint64_t    errors;           /* error frames from the server */
    uint64_t    resets;
    uint64_t    bad_payload;      /* messages without seq or t */
    uint64_t    wire_bytes;       /* read off the sockets */
    uint64_t    compressed;       /* messages with RSV1 */
    uint64_t    conflated;        /* messages conflated messages stood for */
    uint64_t    slow_deliveries;
    hist_t      slow;             /* latency of the slow readers */
    double      t_refill;
    z_stream    inflater;
    uint8_t    *zbuf;
    hist_t      total;
    hist_t      second;
    uint64_t    second_deliv;
    double      t_start;
    double      t_ready;
    double      t_first;          /* first delivery */
    double      t_last;           /* last delivery */
    double      t_final;          /* FINALFILE seen */
    uint8_t    *rbuf;
    uint64_t    rng;
    uint64_t    peak_second;
} client_t;

static volatile sig_atomic_t stop_now;

static const char ws_key[] = "dGhlIHNhbXBsZSBub25jZQ==";


static void
on_signal(int sig)
{
    (void) sig;
    stop_now = 1;
}

static uint32_t
rnd32(client_t *cl)
{
    cl->rng ^= cl->rng << 13;
    cl->rng ^= cl->rng >> 7;
    cl->rng ^= cl->rng << 17;
    return (uint32_t) cl->rng;
}

static void
channel_name(const client_t *cl, uint32_t ch, char *buf, size_t size)
{
    snprintf(buf, size, "%s%u", cl->o.prefix, ch);
}

/* ------------------------------------------------------------ sending */

/* a masked client frame; returns bytes written into out */
static size_t
ws_frame(client_t *cl, uint8_t *out, int opcode, const void *data, size_t len)
{
    uint32_t  key;
    uint8_t  *m, *p;
    size_t    i;

    p = out;
    *p++ = (uint8_t) (0x80 | opcode);

    if (len < 126) {
        *p++ = (uint8_t) (0x80 | len);
    } else {
        *p++ = 0x80 | 126;
        *p++ = (uint8_t) (len >> 8);
        *p++ = (uint8_t) len;
    }

    key = rnd32(cl);
    m = p;
    memcpy(p, &key, 4);
    p += 4;

    for (i = 0; i < len; i++) {
        *p++ = ((const uint8_t *) data)[i] ^ m[i & 3];
    }

    return (size_t) (p - out);
}

/* small writes (handshake, subscribe, pong, close) go out whole or fail */
static int
send_all(conn_t *c, const void *data, size_t len)
{
    ssize_t n;

    n = send(c->fd, data, len, MSG_NOSIGNAL);
    if (n < 0 && errno == EAGAIN) {
        return -1;  /* the socket buffer is full of tiny frames: treat as error */
    }

    return n == (ssize_t) len ? 0 : -1;
}

static int
send_handshake(client_t *cl, conn_t *c)
{
    char  req[512], name[NAME_MAX_LEN + 1];
    int   n;

    if (cl->o.proto == PROTO_NCHAN) {
        channel_name(cl, c->channel, name, sizeof(name));
        n = snprintf(req, sizeof(req), "GET %s/%s HTTP/1.1\r\n", cl->o.path,
                     name);
    } else {
        n = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\n", cl->o.path);
    }

    n += snprintf(req + n, sizeof(req) - (size_t) n,
                  "Host: %s:%d\r\nUpgrade: websocket\r\n"
                  "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                  "Sec-WebSocket-Version: 13\r\n%s\r\n",
                  cl->o.host, cl->o.port, ws_key,
                  cl->o.deflate ? "Sec-WebSocket-Extensions: permessage-deflate;"
                                  " client_max_window_bits\r\n" : "");

    return send_all(c, req, (size_t) n);
}

static int
send_subscribe(client_t *cl, conn_t *c)
{
    char     msg[256], name[NAME_MAX_LEN + 1];
    uint8_t  frame[300];
    int      n;

    channel_name(cl, c->channel, name, sizeof(name));
    n = snprintf(msg, sizeof(msg),
                 "{\"op\":\"subscribe\",\"channels\":[\"%s\"]}", name);

    return send_all(c, frame, ws_frame(cl, frame, 1, msg, (size_t) n));
}

/* ------------------------------------------------------- connections */

static void conn_finish(client_t *cl, conn_t *c, int failed);

static int
conn_start(client_t *cl, int i)
{
    conn_t             *c = &cl->c[i];
    struct sockaddr_in  sa, src;
    struct epoll_event  ev;
    int                 fd, one = 1;

    c->channel = (uint32_t) (i % cl->o.channels);
    c->slow = (i % 100) < cl->o.slow_pct;
    c->budget = (uint32_t) cl->o.slow_bps / 10;

    fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        fprintf(stderr, "conn %d: socket: %s\n", i, strerror(errno));
        return -1;
    }

    if (c->slow) {
        int rcv = 4096;         /* a phone on a slow link: a small window */

        (void) setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof(rcv));
    }

    (void) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));

    if (cl->o.nsrc > 0) {
        (void) setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one,
                          sizeof(one));
        memset(&src, 0, sizeof(src));
        src.sin_family = AF_INET;
        src.sin_addr = cl->o.src[i % cl->o.nsrc];
        if (bind(fd, (struct sockaddr *) &src, sizeof(src)) != 0) {
            fprintf(stderr, "conn %d: bind %s: %s\n", i,
                    inet_ntoa(src.sin_addr), strerror(errno));
            close(fd);
            return -1;
        }
    }

    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t) cl->o.port);
    if (inet_pton(AF_INET, cl->o.host, &sa.sin_addr) != 1) {
        die("bad host address \"%s\"", cl->o.host);
    }

    if (connect(fd, (struct sockaddr *) &sa, sizeof(sa)) != 0
        && errno != EINPROGRESS)
    {
        fprintf(stderr, "conn %d: connect: %s\n", i, strerror(errno));
        close(fd);
        return -1;
    }

    c->fd = fd;
    c->state = ST_CONNECTING;

    ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP;
    ev.data.u32 = (uint32_t) i;
    if (epoll_ctl(cl->ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
        fprintf(stderr, "conn %d: epoll_ctl: %s\n", i, strerror(errno));
        close(fd);
        c->fd = -1;
        return -1;
    }

    cl->in_flight++;
    return 0;
}

static void
start_more(client_t *cl)
{
    while (cl->started < cl->o.conns && cl->in_flight < MAX_HANDSHAKES) {
        int i = cl->started++;

        if (conn_start(cl, i) != 0) {
            cl->c[i].state = ST_FAILED;
            cl->failed++;
        }
    }
}

static void
conn_ready(client_t *cl, conn_t *c)
{
    c->state = ST_READY;
    cl->in_flight--;
    cl->ready_now++;
    if (cl->ready_now > cl->ready_peak) {
        cl->ready_peak = cl->ready_now;
    }
}

static void
conn_finish(client_t *cl, conn_t *c, int failed)
{
    if (c->fd >= 0) {
        close(c->fd);               /* also removes it from epoll */
        c->fd = -1;
    }

    if (c->state == ST_READY) {
        cl->ready_now--;
        cl->closed++;
        c->state = ST_CLOSED;
    } else if (c->state != ST_CLOSED && c->state != ST_FAILED) {
        cl->in_flight--;
        cl->failed++;
        c->state = ST_FAILED;
    }

    (void) failed;
    free(c->pend);
    c->pend = NULL;
    c->pend_len = c->pend_cap = 0;
    free(c->frag);
    c->frag = NULL;
    c->frag_len = c->frag_cap = 0;
}

/* --------------------------------------------------------- messages */

static int
json_u64(const uint8_t *p, size_t len, const char *key, uint64_t *out)
{
    const uint8_t *hit, *end = p + len;
    size_t         klen = strlen(key);
    uint64_t       v = 0;

    hit = memmem(p, len, key, klen);
    if (hit == NULL) {
        return -1;
    }

    hit += klen;
    if (hit >= end || *hit < '0' || *hit > '9') {
        return -1;
    }

    while (hit < end && *hit >= '0' && *hit <= '9') {
        v = v * 10 + (uint64_t) (*hit++ - '0');
    }

    *out = v;
    return 0;
}

static void
check_seq(conn_t *c, unsigned stream, uint64_t seq)
{
    uint64_t *next = &c->next_seq[stream];

    if (*next == 0) {
        *next = 1;                    /* nchan: publishers start at 1 */
    }

    if (seq == *next) {
        (*next)++;
    } else if (seq > *next) {
        c->lost += seq - *next;
        *next = seq + 1;
    } else {
        c->dups++;
    }
}

static void
on_delivery(client_t *cl, conn_t *c, const uint8_t *p, size_t len)
{
    uint64_t seq, t, now, stream, first;
    double   ts;

    if (json_u64(p, len, "\"seq\":", &seq) != 0
        || json_u64(p, len, "\"t\":", &t) != 0)
    {
        cl->bad_payload++;
        return;
    }

    /* nchan bodies name the publisher connection ("p"), each of which
       numbers its messages on its own; ours has one seq per channel */
    if (cl->o.proto != PROTO_NCHAN || json_u64(p, len, "\"p\":", &stream) != 0
        || stream >= MAX_STREAMS)
    {
        stream = 0;
    }

    if (json_u64(p, len, "\"first_seq\":", &first) == 0 && first < seq
        && memmem(p, len, "\"conflated\":", 12) != NULL)
    {
        /* stands for first..seq: the seq check starts at first */
        check_seq(c, (unsigned) stream, first);
        c->next_seq[stream] = seq + 1;
        cl->conflated += seq - first;
    } else {
        check_seq(c, (unsigned) stream, seq);
    }
    c->received++;
    cl->ch_deliv[c->channel]++;
    cl->deliveries++;
    cl->second_deliv++;
    if (cl->shm) {
        cl->shm[cl->o.shm_slot] = cl->deliveries;
    }

    now = now_ns(CLOCK_REALTIME);
    now = now > t ? (now - t) / 1000 : 0;
    if (c->slow) {
        hist_add(&cl->slow, now);
        cl->slow_deliveries++;
    } else {
        hist_add(&cl->total, now);
        hist_add(&cl->second, now);
    }

    ts = now_s();
    if (cl->t_first == 0) {
        cl->t_first = ts;
    }
    cl->t_last = ts;
}

static void
on_text(client_t *cl, conn_t *c, const uint8_t *p, size_t len)
{
    static const char sub[] = "{\"type\":\"subscribed\"";
    static const char err[] = "{\"type\":\"error\"";
    static const char rst[] = "{\"type\":\"reset\"";
    uint64_t          seq;

    if (cl->o.proto == PROTO_NCHAN) {
        on_delivery(cl, c, p, len);
        return;
    }

    if (len >= sizeof(sub) - 1 && memcmp(p, sub, sizeof(sub) - 1) == 0) {
        if (json_u64(p, len, "\"seq\":", &seq) != 0) {
            fprintf(stderr, "subscribed without seq: %.*s\n", (int) len, p);
            conn_finish(cl, c, 1);
            return;
        }
        c->next_seq[0] = seq + 1;
        if (c->state == ST_SUBSCRIBING) {
            conn_ready(cl, c);
        }
        return;
    }

    if (len >= sizeof(err) - 1 && memcmp(p, err, sizeof(err) - 1) == 0) {
        cl->errors++;
        if (cl->errors <= 5) {
            fprintf(stderr, "error frame: %.*s\n", (int) len, p);
        }
        return;
    }

    if (len >= sizeof(rst) - 1 && memcmp(p, rst, sizeof(rst) - 1) == 0) {
        cl->resets++;
        return;
    }

    on_delivery(cl, c, p, len);
}

static void
on_close_frame(client_t *cl, conn_t *c, const uint8_t *p, size_t len)
{
    uint8_t frame[16];

    c->got_close = 1;
    c->close_code = len >= 2 ? (uint16_t) (p[0] << 8 | p[1]) : 1005;
    (void) send_all(c, frame, ws_frame(cl, frame, 8, p, len >= 2 ? 2 : 0));
    conn_finish(cl, c, 0);
}

static int
frag_append(conn_t *c, const uint8_t *p, size_t len)
{
    uint8_t  *n;
    uint32_t  cap;

    if (c->frag_len + len > c->frag_cap) {
        cap = (uint32_t) (c->frag_len + len) * 2;
        n = realloc(c->frag, cap);
        if (n == NULL) {
            return -1;
        }
        c->frag = n;
        c->frag_cap = cap;
    }

    memcpy(c->frag + c->frag_len, p, len);
    c->frag_len += (uint32_t) len;
    return 0;
}

/* a text message, inflated first when it came compressed */
static void
on_message(client_t *cl, conn_t *c, int rsv1, const uint8_t *p, size_t len)
{
    size_t  n;

    if (rsv1) {
        cl->compressed++;
        if (insite_ws_inflate_message(&cl->inflater, p, len, cl->zbuf,
                                      RBUF_SIZE, &n)
            != INSITE_WS_DEFLATE_OK)
        {
            fprintf(stderr, "a compressed message does not inflate\n");
            cl->bad_payload++;
            return;
        }
        p = cl->zbuf;
        len = n;
    }

    on_text(cl, c, p, len);
}

/* one complete frame; returns -1 when the connection is gone */
static int
on_frame(client_t *cl, conn_t *c, int fin, int rsv1, int op,
    const uint8_t *p, size_t len)
{
    uint8_t frame[140];

    switch (op) {
    case 0x9:                                   /* ping */
        if (len > 125 || send_all(c, frame, ws_frame(cl, frame, 0xA, p, len)))
        {
            conn_finish(cl, c, 1);
            return -1;
        }
        return 0;
    case 0xA:
        return 0;
    case 0x8:
        on_close_frame(cl, c, p, len);
        return -1;
    case 0x1:
    case 0x0:
        if (op == 0x1 && fin) {
            on_message(cl, c, rsv1, p, len);
            return c->fd < 0 ? -1 : 0;
        }
        if (op == 0x1) {
            c->frag_len = 0;
            c->frag_rsv1 = (uint8_t) rsv1;
        }
        if (frag_append(c, p, len) != 0) {
            fprintf(stderr, "out of memory assembling a message\n");
            conn_finish(cl, c, 1);
            return -1;
        }
        if (fin) {
            on_message(cl, c, c->frag_rsv1, c->frag, c->frag_len);
            c->frag_len = 0;
        }
        return c->fd < 0 ? -1 : 0;
    default:
        fprintf(stderr, "unexpected opcode %d\n", op);
        conn_finish(cl, c, 1);
        return -1;
    }
}

/* parses the frames in buf; returns bytes consumed or -1 if closed */
static ssize_t
parse_frames(client_t *cl, conn_t *c, const uint8_t *buf, size_t len)
{
    size_t   off = 0, hdr;
    uint64_t plen;

    while (len - off >= 2) {
        const uint8_t *f = buf + off;

        if (f[1] & 0x80) {
            fprintf(stderr, "server sent a masked frame\n");
            conn_finish(cl, c, 1);
            return -1;
        }

        plen = f[1] & 0x7f;
        hdr = 2;
        if (plen == 126) {
            if (len - off < 4) {
                break;
            }
            plen = (uint64_t) f[2] << 8 | f[3];
            hdr = 4;
        } else if (plen == 127) {
            if (len - off < 10) {
                break;
            }
            plen = 0;
            for (int k = 0; k < 8; k++) {
                plen = plen << 8 | f[2 + k];
            }
            hdr = 10;
        }

        if (len - off < hdr + plen) {
            break;
        }

        if (on_frame(cl, c, f[0] >> 7, (f[0] & 0x40) != 0, f[0] & 0x0f,
                     f + hdr, plen) != 0)
        {
            return -1;
        }

        off += hdr + plen;
    }

    return (ssize_t) off;
}

/* parses the 101 answer; returns bytes consumed, 0 if incomplete, -1 bad */
static ssize_t
parse_handshake(client_t *cl, conn_t *c, const uint8_t *buf, size_t len)
{
    const uint8_t *end;

    end = memmem(buf, len, "\r\n\r\n", 4);
    if (end == NULL) {
        return len > 8192 ? -1 : 0;
    }

    if (len < 12 || memcmp(buf, "HTTP/1.1 101", 12) != 0) {
        static int shown;

        if (shown++ < 3) {
            fprintf(stderr, "handshake refused: %.*s\n",
                    (int) (end - buf > 200 ? 200 : end - buf), buf);
        }
        return -1;
    }

    if (cl->o.proto == PROTO_NCHAN) {
        conn_ready(cl, c);
    } else {
        if (send_subscribe(cl, c) != 0) {
            fprintf(stderr, "sending subscribe failed\n");
            return -1;
        }
        c->state = ST_SUBSCRIBING;
    }

    return end + 4 - buf;
}

static int
keep_pending(conn_t *c, const uint8_t *p, size_t len)
{
    uint8_t *n;

    if (len > c->pend_cap) {
        n = realloc(c->pend, len);
        if (n == NULL) {
            return -1;
        }
        c->pend = n;
        c->pend_cap = (uint32_t) len;
    }

    memmove(c->pend, p, len);
    c->pend_len = (uint32_t) len;
    return 0;
}

/* a slow reader out of budget leaves epoll until the next refill */
static void
slow_pause(client_t *cl, conn_t *c)
{
    if (!c->paused && c->fd >= 0) {
        (void) epoll_ctl(cl->ep, EPOLL_CTL_DEL, c->fd, NULL);
        c->paused = 1;
    }
}

/* every 100 ms: a tenth of -B for each slow reader, paused ones resume */
static void
slow_refill(client_t *cl, double t)
{
    struct epoll_event  ev;

    if (cl->o.slow_pct == 0 || t < cl->t_refill + 0.1) {
        return;
    }

    cl->t_refill = t;

    for (int i = 0; i < cl->o.conns; i++) {
        conn_t *c = &cl->c[i];

        if (!c->slow) {
            continue;
        }

        c->budget = (uint32_t) cl->o.slow_bps / 10;

        if (c->paused && c->fd >= 0) {
            ev.events = EPOLLIN | EPOLLRDHUP;
            ev.data.u32 = (uint32_t) i;
            (void) epoll_ctl(cl->ep, EPOLL_CTL_ADD, c->fd, &ev);
            c->paused = 0;
        }
    }
}

static void
on_readable(client_t *cl, conn_t *c)
{
    size_t   have, room;
    ssize_t  n, used, k;

    for (;;) {
        have = c->pend_len;
        if (have >= RBUF_SIZE / 2) {
            fprintf(stderr, "frame larger than %d bytes\n", RBUF_SIZE / 2);
            conn_finish(cl, c, 1);
            return;
        }
        memcpy(cl->rbuf, c->pend, have);
        room = RBUF_SIZE - have;

        if (c->slow && c->state == ST_READY) {
            if (c->budget == 0) {
                slow_pause(cl, c);
                return;
            }
            room = room < c->budget ? room : c->budget;
        }

        n = recv(c->fd, cl->rbuf + have, room, 0);
        if (n < 0 && errno == EAGAIN) {
            return;
        }
        if (n <= 0) {
            conn_finish(cl, c, 1);
            return;
        }

        have += (size_t) n;
        cl->wire_bytes += (uint64_t) n;
        if (c->slow && c->state == ST_READY) {
            c->budget -= (uint32_t) n;
        }
        used = 0;

        if (c->state == ST_HANDSHAKE) {
            k = parse_handshake(cl, c, cl->rbuf, have);
            if (k < 0) {
                conn_finish(cl, c, 1);
                return;
            }
            used = k;
        }

        if (c->state == ST_SUBSCRIBING || c->state == ST_READY) {
            k = parse_frames(cl, c, cl->rbuf + used, have - (size_t) used);
            if (k < 0) {
                return;
            }
            used += k;
        }

        if (keep_pending(c, cl->rbuf + used, have - (size_t) used) != 0) {
            fprintf(stderr, "out of memory\n");
            conn_finish(cl, c, 1);
            return;
        }

        if ((size_t) n < room) {
            return;
        }
    }
}

static void
on_writable(client_t *cl, conn_t *c, int i)
{
    struct epoll_event ev;
    int                err = 0;
    socklen_t          elen = sizeof(err);

    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &elen) != 0 || err) {
        static int shown;

        if (shown++ < 3) {
            fprintf(stderr, "connect: %s\n", strerror(err ? err : errno));
        }
        conn_finish(cl, c, 1);
        return;
    }

    ev.events = EPOLLIN | EPOLLRDHUP;
    ev.data.u32 = (uint32_t) i;
    if (epoll_ctl(cl->ep, EPOLL_CTL_MOD, c->fd, &ev) != 0
        || send_handshake(cl, c) != 0)
    {
        fprintf(stderr, "sending the handshake failed: %s\n", strerror(errno));
        conn_finish(cl, c, 1);
        return;
    }

    c->state = ST_HANDSHAKE;
}

/* ------------------------------------------------------ final / drain */

static int
read_final(client_t *cl)
{
    FILE     *f;
    char      name[NAME_MAX_LEN + 2];
    unsigned long long seq;
    size_t    plen = strlen(cl->o.prefix);
    unsigned long ch;
    unsigned      stream;

    f = fopen(cl->o.final_file, "r");
    if (f == NULL) {
        return -1;
    }

    while (fscanf(f, "%129s %u %llu", name, &stream, &seq) == 3) {
        if (strncmp(name, cl->o.prefix, plen) != 0 || stream >= MAX_STREAMS) {
            continue;
        }
        ch = strtoul(name + plen, NULL, 10);
        if (ch < (unsigned long) cl->o.channels) {
            cl->ch_final[ch * MAX_STREAMS + stream] = seq;
        }
    }

    fclose(f);
    cl->have_final = 1;
    cl->t_final = now_s();
    return 0;
}

/* what connection c still misses of what was published */
static uint64_t
missing(client_t *cl, conn_t *c)
{
    uint64_t  n = 0, fin, next;

    for (unsigned k = 0; k < MAX_STREAMS; k++) {
        fin = cl->ch_final[(size_t) c->channel * MAX_STREAMS + k];
        next = c->next_seq[k] ? c->next_seq[k] : 1;
        if (fin >= next) {
            n += fin - next + 1;
        }
    }

    return n;
}

static int
all_caught_up(client_t *cl)
{
    for (int i = 0; i < cl->o.conns; i++) {
        conn_t *c = &cl->c[i];

        if (c->state == ST_READY && missing(cl, c) > 0) {
            return 0;
        }
    }

    return 1;
}

/* ---------------------------------------------------------- reports */

static void
trace_second(client_t *cl, double t)
{
    fprintf(stderr,
            "[%s] t=%.0f ready=%d failed=%d closed=%d deliv/s=%llu "
            "p50=%.2fms p99=%.2fms max=%.2fms\n",
            cl->o.id, t - cl->t_start, cl->ready_now, cl->failed, cl->closed,
            (unsigned long long) cl->second_deliv,
            (double) hist_quantile(&cl->second, 0.5) / 1000.0,
            (double) hist_quantile(&cl->second, 0.99) / 1000.0,
            (double) cl->second.max / 1000.0);

    if (cl->second_deliv > cl->peak_second) {
        cl->peak_second = cl->second_deliv;
    }
    memset(&cl->second, 0, sizeof(cl->second));
    cl->second_deliv = 0;
}

static void
count_loss(client_t *cl, uint64_t *lost, uint64_t *dups, uint64_t *closes,
    uint64_t *zero_ch)
{
    *lost = *dups = *closes = *zero_ch = 0;

    for (int i = 0; i < cl->o.conns; i++) {
        conn_t   *c = &cl->c[i];

        if (c->state != ST_READY && c->state != ST_CLOSED) {
            continue;                       /* never subscribed */
        }

        *lost += c->lost;
        *dups += c->dups;
        if (c->got_close) {
            (*closes)++;
        }

        if (cl->have_final) {
            *lost += missing(cl, c);
        }
    }

    for (int ch = 0; ch < cl->o.channels; ch++) {
        if (cl->ch_deliv[ch] == 0) {
            (*zero_ch)++;
        }
    }
}

static void
summary(client_t *cl)
{
    uint64_t  lost, dups, closes, zero_ch;
    double    span;
    int       slow_conns = 0, slow_closed = 0;
    FILE     *f = stdout;

    count_loss(cl, &lost, &dups, &closes, &zero_ch);

    for (int i = 0; i < cl->o.conns; i++) {
        if (cl->c[i].slow) {
            slow_conns++;
            slow_closed += cl->c[i].state == ST_CLOSED;
        }
    }
    span = cl->t_last > cl->t_first ? cl->t_last - cl->t_first : 0;

    if (cl->o.out_file) {
        f = fopen(cl->o.out_file, "w");
        if (f == NULL) {
            fprintf(stderr, "%s: %s\n", cl->o.out_file, strerror(errno));
            f = stdout;
        }
    }

    fprintf(f,
            "{\"id\":\"%s\",\"proto\":\"%s\",\"conns\":%d,\"channels\":%d,"
            "\"ready_peak\":%d,\"ready_end\":%d,\"failed\":%d,"
            "\"closed_by_server\":%d,\"close_frames\":%llu,"
            "\"deliveries\":%llu,\"span_s\":%.3f,\"deliveries_per_s\":%.0f,"
            "\"peak_second\":%llu,\"lost\":%llu,\"dups\":%llu,"
            "\"final_known\":%s,\"channels_without_delivery\":%llu,"
            "\"error_frames\":%llu,\"resets\":%llu,\"bad_payload\":%llu,"
            "\"wire_bytes\":%llu,\"compressed\":%llu,\"conflated\":%llu,"
            "\"slow\":{\"conns\":%d,\"deliveries\":%llu,\"closed\":%d,"
            "\"p50\":%llu,\"p99\":%llu,\"max\":%llu},"
            "\"connect_s\":%.3f,"
            "\"lat_us\":{\"n\":%llu,\"p50\":%llu,\"p90\":%llu,\"p99\":%llu,"
            "\"p999\":%llu,\"max\":%llu,\"mean\":%.0f}}\n",
            cl->o.id, cl->o.proto == PROTO_NCHAN ? "nchan" : "insite",
            cl->o.conns, cl->o.channels, cl->ready_peak, cl->ready_now,
            cl->failed, cl->closed, (unsigned long long) closes,
            (unsigned long long) cl->deliveries, span,
            span > 0 ? (double) cl->deliveries / span : 0.0,
            (unsigned long long) cl->peak_second,
            (unsigned long long) lost, (unsigned long long) dups,
            cl->have_final ? "true" : "false", (unsigned long long) zero_ch,
            (unsigned long long) cl->errors, (unsigned long long) cl->resets,
            (unsigned long long) cl->bad_payload,
            (unsigned long long) cl->wire_bytes,
            (unsigned long long) cl->compressed,
            (unsigned long long) cl->conflated,
            slow_conns, (unsigned long long) cl->slow_deliveries, slow_closed,
            (unsigned long long) hist_quantile(&cl->slow, 0.5),
            (unsigned long long) hist_quantile(&cl->slow, 0.99),
            (unsigned long long) cl->slow.max,
            cl->t_ready > 0 ? cl->t_ready - cl->t_start : -1.0,
            (unsigned long long) cl->total.n,
            (unsigned long long) hist_quantile(&cl->total, 0.5),
            (unsigned long long) hist_quantile(&cl->total, 0.9),
            (unsigned long long) hist_quantile(&cl->total, 0.99),
            (unsigned long long) hist_quantile(&cl->total, 0.999),
            (unsigned long long) cl->total.max,
            cl->total.n ? cl->total.sum / (double) cl->total.n : 0.0);

    if (f != stdout) {
        fclose(f);
    }
}

/* ------------------------------------------------------------- loop */

static void
signal_ready(client_t *cl)
{
    int fd;

    cl->ready_signalled = 1;
    cl->t_ready = now_s();
    fprintf(stderr, "[%s] subscribed %d of %d in %.2fs (%d failed)\n",
            cl->o.id, cl->ready_now, cl->o.conns, cl->t_ready - cl->t_start,
            cl->failed);

    if (cl->o.ready_file == NULL) {
        return;
    }

    fd = open(cl->o.ready_file, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
        die("%s: %s", cl->o.ready_file, strerror(errno));
    }
    dprintf(fd, "%d %d\n", cl->ready_now, cl->failed);
    close(fd);
}

static int
should_stop(client_t *cl, double t, double *last_progress, uint64_t *seen)
{
    if (stop_now || t - cl->t_start > cl->o.max_seconds) {
        return 1;
    }

    if (!cl->have_final) {
        if (cl->o.final_file && cl->ready_signalled
            && access(cl->o.final_file, R_OK) == 0)
        {
            (void) read_final(cl);
            *last_progress = t;
            *seen = cl->deliveries;
        }
        return 0;
    }

    if (all_caught_up(cl)) {
        return 1;
    }

    if (cl->deliveries != *seen) {
        *seen = cl->deliveries;
        *last_progress = t;
    }

    return t - *last_progress > cl->o.drain_seconds;
}

static void
run(client_t *cl)
{
    struct epoll_event evs[1024];
    double             t, next_trace, last_progress = 0;
    uint64_t           seen = 0;

    cl->t_start = now_s();
    next_trace = cl->t_start + 1;

    for (;;) {
        int n = epoll_wait(cl->ep, evs, 1024, 20);

        if (n < 0 && errno != EINTR) {
            die("epoll_wait: %s", strerror(errno));
        }

        for (int k = 0; k < n; k++) {
            int     i = (int) evs[k].data.u32;
            conn_t *c = &cl->c[i];

            if (c->fd < 0) {
                continue;
            }
            if (c->state == ST_CONNECTING) {
                on_writable(cl, c, i);
            } else {
                on_readable(cl, c);
            }
        }

        start_more(cl);
        slow_refill(cl, now_s());

        if (!cl->ready_signalled && cl->started == cl->o.conns
            && cl->in_flight == 0)
        {
            signal_ready(cl);
        }

        t = now_s();
        if (t >= next_trace) {
            trace_second(cl, t);
            next_trace += 1;
        }

        if (should_stop(cl, t, &last_progress, &seen)) {
            break;
        }
    }
}

/* ----------------------------------------------------------- options */

static void
parse_src(opts_t *o, char *list)
{
    for (char *s = strtok(list, ","); s; s = strtok(NULL, ",")) {
        if (o->nsrc == MAX_SRC) {
            die("at most %d source addresses", MAX_SRC);
        }
        if (inet_pton(AF_INET, s, &o->src[o->nsrc]) != 1) {
            die("bad source address \"%s\"", s);
        }
        o->nsrc++;
    }
}

static void
usage(void)
{
    fprintf(stderr,
            "usage: loadclient -P insite|nchan -p PORT -c CONNS [-C CHANNELS]\n"
            "  [-n PREFIX] [-H HOST] [-s SRC,SRC] [-u PATH] [-R READYFILE]\n"
            "  [-F FINALFILE] [-o OUT.json] [-T MAX_S] [-D DRAIN_S] [-i ID]\n"
            "  [-M SHMFILE -j SLOT]   publish deliveries for publisher -M\n");
    exit(2);
}

static void
parse_opts(opts_t *o, int argc, char **argv)
{
    int opt;

    memset(o, 0, sizeof(*o));
    o->host = "127.0.0.1";
    o->channels = 1;
    o->prefix = "bench:";
    o->max_seconds = 3600;
    o->drain_seconds = 3;
    o->id = "client";

    while ((opt = getopt(argc, argv, "P:p:c:C:n:H:s:u:R:F:o:T:D:i:M:j:zL:B:")) != -1) {
        switch (opt) {
        case 'P':
            if (strcmp(optarg, "insite") == 0) {
                o->proto = PROTO_INSITE;
            } else if (strcmp(optarg, "nchan") == 0) {
                o->proto = PROTO_NCHAN;
            } else {
                usage();
            }
            break;
        case 'p': o->port = atoi(optarg); break;
        case 'c': o->conns = atoi(optarg); break;
        case 'C': o->channels = atoi(optarg); break;
        case 'n': o->prefix = optarg; break;
        case 'H': o->host = optarg; break;
        case 's': parse_src(o, optarg); break;
        case 'u': o->path = optarg; break;
        case 'R': o->ready_file = optarg; break;
        case 'F': o->final_file = optarg; break;
        case 'o': o->out_file = optarg; break;
        case 'T': o->max_seconds = atof(optarg); break;
        case 'D': o->drain_seconds = atof(optarg); break;
        case 'i': o->id = optarg; break;
        case 'M': o->shm_file = optarg; break;
        case 'j': o->shm_slot = atoi(optarg); break;
        case 'z': o->deflate = 1; break;
        case 'L': o->slow_pct = atoi(optarg); break;
        case 'B': o->slow_bps = atoi(optarg); break;
        default: usage();
        }
    }

    if (o->port <= 0 || o->conns <= 0 || o->channels <= 0
        || strlen(o->prefix) > NAME_MAX_LEN - 12 || o->shm_slot < 0
        || o->shm_slot >= 64)
    {
        usage();
    }

    if (o->path == NULL) {
        o->path = o->proto == PROTO_NCHAN ? "/sub" : "/ws";
    }
}

static void
raise_nofile(int want)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) {
        die("getrlimit: %s", strerror(errno));
    }

    rl.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0) {
        die("setrlimit: %s", strerror(errno));
    }

    if ((rlim_t) want + 16 > rl.rlim_cur) {
        die("%d connections need more than the %llu open files allowed: use "
            "more client processes", want, (unsigned long long) rl.rlim_cur);
    }
}

int
main(int argc, char **argv)
{
    client_t cl;

    memset(&cl, 0, sizeof(cl));
    parse_opts(&cl.o, argc, argv);
    raise_nofile(cl.o.conns);

    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    signal(SIGPIPE, SIG_IGN);

    cl.rng = now_ns(CLOCK_MONOTONIC) | 1;
    cl.c = calloc((size_t) cl.o.conns, sizeof(conn_t));
    cl.ch_deliv = calloc((size_t) cl.o.channels, sizeof(uint64_t));
    cl.ch_final = calloc((size_t) cl.o.channels * MAX_STREAMS,
                         sizeof(uint64_t));
    cl.rbuf = malloc(RBUF_SIZE);
    cl.zbuf = malloc(RBUF_SIZE);
    if (cl.zbuf == NULL || inflateInit2(&cl.inflater, -15) != Z_OK) {
        fprintf(stderr, "cannot set up inflating\n");
        return 1;
    }
    if (!cl.c || !cl.ch_deliv || !cl.ch_final || !cl.rbuf) {
        die("out of memory for %d connections", cl.o.conns);
    }

    for (int i = 0; i < cl.o.conns; i++) {
        cl.c[i].fd = -1;
    }

    if (cl.o.shm_file) {
        cl.shm = map_counters(cl.o.shm_file);
        cl.shm[cl.o.shm_slot] = 0;
    }

    cl.ep = epoll_create1(EPOLL_CLOEXEC);
    if (cl.ep < 0) {
        die("epoll_create1: %s", strerror(errno));
    }

    run(&cl);
    summary(&cl);
    return 0;
}
