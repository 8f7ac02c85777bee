/*
 * Small helpers shared by the WebSocket benchmark's load client and
 * publisher: clocks, error reporting, a log-linear latency histogram.
 */
#ifndef BENCH_WS_COMMON_H
#define BENCH_WS_COMMON_H

#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define HIST_SUB   32                     /* sub-buckets per power of two */
#define HIST_BITS  40                     /* up to 2^40 us (12 days) */
#define HIST_SIZE  (HIST_BITS * HIST_SUB)

typedef struct {
    uint64_t  count[HIST_SIZE];
    uint64_t  n;
    uint64_t  max;
    double    sum;
} hist_t;

static inline uint64_t
now_ns(clockid_t clk)
{
    struct timespec ts;

    clock_gettime(clk, &ts);
    return (uint64_t) ts.tv_sec * 1000000000ull + (uint64_t) ts.tv_nsec;
}

static inline double
now_s(void)
{
    return (double) now_ns(CLOCK_MONOTONIC) / 1e9;
}

static inline void
die(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    fprintf(stderr, "fatal: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(2);
}

/* bucket: values < HIST_SUB exact; above, HIST_SUB steps per octave */
static inline unsigned
hist_bucket(uint64_t v)
{
    unsigned msb, shift, b;

    if (v < HIST_SUB) {
        return (unsigned) v;
    }

    msb = 63 - (unsigned) __builtin_clzll(v);       /* >= 5 */
    shift = msb - 5;                                /* log2(HIST_SUB) = 5 */
    b = (shift + 1) * HIST_SUB + (unsigned) ((v >> shift) - HIST_SUB);

    return b < HIST_SIZE ? b : HIST_SIZE - 1;
}

/* lowest value that falls in bucket b (a lower bound of the bucket) */
static inline uint64_t
hist_value(unsigned b)
{
    unsigned shift;

    if (b < HIST_SUB) {
        return b;
    }

    shift = b / HIST_SUB - 1;
    return ((uint64_t) (b % HIST_SUB) + HIST_SUB) << shift;
}

static inline void
hist_add(hist_t *h, uint64_t v)
{
    h->count[hist_bucket(v)]++;
    h->n++;
    h->sum += (double) v;
    if (v > h->max) {
        h->max = v;
    }
}

static inline void
hist_merge(hist_t *dst, const hist_t *src)
{
    unsigned i;

    for (i = 0; i < HIST_SIZE; i++) {
        dst->count[i] += src->count[i];
    }

    dst->n += src->n;
    dst->sum += src->sum;
    if (src->max > dst->max) {
        dst->max = src->max;
    }
}

/* the q-quantile (0..1); 0 when empty */
static inline uint64_t
hist_quantile(const hist_t *h, double q)
{
    uint64_t  want, seen;
    unsigned  i;

    if (h->n == 0) {
        return 0;
    }

    want = (uint64_t) (q * (double) h->n);
    if (want >= h->n) {
        want = h->n - 1;
    }

    seen = 0;
    for (i = 0; i < HIST_SIZE; i++) {
        seen += h->count[i];
        if (seen > want) {
            return hist_value(i);
        }
    }

    return h->max;
}

/*
 * 64 delivery counters shared by the load clients (each writes its slot)
 * and the publisher (reads them all to bound how far it runs ahead).
 */
#define SHM_SLOTS 64

static inline volatile uint64_t *
map_counters(const char *path)
{
    void *p;
    int   fd;

    fd = open(path, O_RDWR | O_CREAT, 0644);
    if (fd < 0) {
        die("%s: %s", path, strerror(errno));
    }

    if (ftruncate(fd, SHM_SLOTS * sizeof(uint64_t)) != 0) {
        die("%s: ftruncate: %s", path, strerror(errno));
    }

    p = mmap(NULL, SHM_SLOTS * sizeof(uint64_t), PROT_READ | PROT_WRITE,
             MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
        die("%s: mmap: %s", path, strerror(errno));
    }

    close(fd);
    return p;
}

#endif
