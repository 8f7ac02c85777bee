/*
 * Conflation of "latest value wins" channels, plain C (unit-tested and
 * fuzzed without nginx).
 *
 * A subscriber of a conflated channel (insite_ws_conflate) keeps a run: its
 * messages of that channel that sit in the connection's send queue, not yet
 * started on the wire, with nothing else of that channel (a reset) queued
 * after them.  When the run grows past insite_ws_conflate_after bytes, or
 * the connection's queue would pass insite_ws_send_buffer, the run and the
 * new message are replaced by one message: the newest, carrying
 *
 *     {"conflated":N,"first_seq":F, ...the newest message's members...}
 *
 * where seq (the newest's) - F + 1 == N: it stands for seq F to seq, so a
 * client checking seq == previous + 1 checks F instead and stays exact.
 *
 * The run is an intrusive list: each link lives in the connection's queue
 * entry, so the nginx glue finds the entries to drop from the run.  The run
 * never owns memory; nothing here allocates.
 */

#ifndef INSITE_WS_CONFLATE_H
#define INSITE_WS_CONFLATE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>


/* at most what insite_ws_conflate_message() adds to a message */
#define INSITE_WS_CONFLATE_EXTRA  72


typedef struct insite_ws_cq_link_s  insite_ws_cq_link_t;

struct insite_ws_cq_link_s {
    insite_ws_cq_link_t  *prev;
    insite_ws_cq_link_t  *next;
    uint64_t              first_seq;  /* first seq the queued message covers */
    uint64_t              seq;        /* its own seq */
    size_t                len;        /* its bytes on the wire */
};


typedef struct {
    insite_ws_cq_link_t   head;       /* sentinel: head.next is the oldest */
    size_t                n;
    size_t                bytes;
} insite_ws_cq_t;


void insite_ws_cq_init(insite_ws_cq_t *q);

/*
 * Appends a queued message covering first_seq..seq.  Returns 0, or -1 when
 * it does not follow the run's last seq: the caller ends the run first
 * (insite_ws_cq_pop() until empty) and pushes again.
 */
int insite_ws_cq_push(insite_ws_cq_t *q, insite_ws_cq_link_t *l,
    uint64_t first_seq, uint64_t seq, size_t len);

/* the message started on the wire, or left the queue: out of the run */
void insite_ws_cq_remove(insite_ws_cq_t *q, insite_ws_cq_link_t *l);

/* the oldest link, unlinked; NULL when the run is empty */
insite_ws_cq_link_t *insite_ws_cq_pop(insite_ws_cq_t *q);

/*
 * 1 when a new message of len bytes with the given seq should replace the
 * run: the run is not empty, the message follows it, and the run plus the
 * message pass after bytes (or the caller says the connection is full).
 */
int insite_ws_cq_due(const insite_ws_cq_t *q, uint64_t seq, size_t len,
    size_t after, int full);

/* the first seq the run covers (the run is not empty) */
uint64_t insite_ws_cq_first(const insite_ws_cq_t *q);

/*
 * Writes the newest message msg (a JSON object) into dst with "conflated":n
 * and "first_seq":first as its first members.  Returns the length, or 0
 * when msg is not an object or dst (cap bytes) is too small; cap =
 * len + INSITE_WS_CONFLATE_EXTRA is always enough.
 */
size_t insite_ws_conflate_message(u_char *dst, size_t cap, const u_char *msg,
    size_t len, uint64_t n, uint64_t first);


#endif /* INSITE_WS_CONFLATE_H */
