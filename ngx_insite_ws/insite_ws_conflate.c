/*
 * Conflation of "latest value wins" channels: a subscriber's run of queued
 * messages of one channel, and the conflated message.  See the header.
 */

#include <stdio.h>
#include <string.h>

#include "insite_ws_conflate.h"


#define insite_ws_json_space(c)                                              \
    ((c) == ' ' || (c) == '\t' || (c) == '\r' || (c) == '\n')


void
insite_ws_cq_init(insite_ws_cq_t *q)
{
    q->head.prev = &q->head;
    q->head.next = &q->head;
    q->n = 0;
    q->bytes = 0;
}


int
insite_ws_cq_push(insite_ws_cq_t *q, insite_ws_cq_link_t *l,
    uint64_t first_seq, uint64_t seq, size_t len)
{
    if (first_seq > seq || (q->n && q->head.prev->seq + 1 != first_seq)) {
        return -1;
    }

    l->first_seq = first_seq;
    l->seq = seq;
    l->len = len;

    l->prev = q->head.prev;
    l->next = &q->head;
    q->head.prev->next = l;
    q->head.prev = l;

    q->n++;
    q->bytes += len;

    return 0;
}


void
insite_ws_cq_remove(insite_ws_cq_t *q, insite_ws_cq_link_t *l)
{
    l->prev->next = l->next;
    l->next->prev = l->prev;
    l->prev = NULL;
    l->next = NULL;

    q->n--;
    q->bytes -= l->len;
}


insite_ws_cq_link_t *
insite_ws_cq_pop(insite_ws_cq_t *q)
{
    insite_ws_cq_link_t  *l;

    if (q->n == 0) {
        return NULL;
    }

    l = q->head.next;
    insite_ws_cq_remove(q, l);

    return l;
}


int
insite_ws_cq_due(const insite_ws_cq_t *q, uint64_t seq, size_t len,
    size_t after, int full)
{
    if (q->n == 0 || q->head.prev->seq + 1 != seq) {
        return 0;
    }

    return full || q->bytes + len > after;
}


uint64_t
insite_ws_cq_first(const insite_ws_cq_t *q)
{
    return q->head.next->first_seq;
}


size_t
insite_ws_conflate_message(u_char *dst, size_t cap, const u_char *msg,
    size_t len, uint64_t n, uint64_t first)
{
    int          hlen;
    size_t       i, rest;
    const char  *sep;

    /* JSON white space may lead; the object's members follow its brace */
    for (i = 0; i < len && insite_ws_json_space(msg[i]); i++) { /* void */ }

    if (i == len || msg[i] != '{') {
        return 0;
    }

    msg += i + 1;
    rest = len - i - 1;

    for (i = 0; i < rest && insite_ws_json_space(msg[i]); i++) { /* void */ }

    if (i == rest) {
        return 0;
    }

    /* an empty object takes the two members without a trailing comma */
    sep = msg[i] == '}' ? "" : ",";

    hlen = snprintf((char *) dst, cap,
                    "{\"conflated\":%llu,\"first_seq\":%llu%s",
                    (unsigned long long) n, (unsigned long long) first, sep);

    if (hlen < 0 || (size_t) hlen >= cap || cap - (size_t) hlen < rest) {
        return 0;
    }

    memcpy(dst + hlen, msg, rest);

    return (size_t) hlen + rest;
}
