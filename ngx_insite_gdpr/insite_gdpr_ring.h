/*
 * The audit ring: a worker's records between the response and the journal.
 * Plain C, no nginx headers (the nginx glue is ngx_insite_gdpr_journal.c).
 *
 * A small file of its own (<dir>/audit-<n>.ring, fixed size), mapped
 * MAP_SHARED and written once at worker start so that every page is present
 * and writable.  A record is copied into it, as the exact bytes of its
 * journal line, before the response leaves; the records then go to the
 * journal with one write() (when the ring is half full, or a few
 * milliseconds after the first of them: ngx_insite_gdpr_journal.c) and the
 * ring starts again at offset 0.  The mapping is the page cache of the file: a worker killed with
 * kill -9 leaves its unwritten records there, and its successor (which holds
 * the same chain lock) appends them to the journal before it writes anything
 * (insite_gdpr_ring_recover).
 *
 * Recovery trusts nothing in the file: it reads lines from offset 0 for as
 * long as each one is a journal line that continues the previous one (seq
 * one more, prev_hash the previous hash, hash matching its bytes), skips
 * those the journal already has (a kill -9 can cut the flush's write() short
 * at a page) and takes the rest when the first of them continues the
 * journal's last record.  A record cut short by the kill, a stale line from
 * an earlier turn, or bytes left by a crash of the machine end the scan.  After each flush the first byte is
 * zeroed, so a ring whose records all reached the journal replays nothing.
 */

#ifndef _INSITE_GDPR_RING_H_INCLUDED_
#define _INSITE_GDPR_RING_H_INCLUDED_

#include <stddef.h>
#include <stdint.h>

#include "insite_gdpr_chain.h"

/* 64 KiB: written out at half, ~70 records of ~450 bytes; the other half
 * takes the rest of that event-loop turn (a turn of 64 connections fits) */
#define INSITE_GDPR_RING_SIZE  65536

typedef struct {
    int        fd;
    char      *base;        /* the mapping, size bytes */
    size_t     size;
    size_t     used;        /* bytes of records not yet in the journal */
    unsigned   records;     /* records among them */
} insite_gdpr_ring_t;

/* Opens (creates) path with size bytes allocated on disk (so a store into
 * the mapping can never meet a full disk) and maps it; the content is left
 * as it is for insite_gdpr_ring_recover.  0, or -1 with errno set. */
int insite_gdpr_ring_open(insite_gdpr_ring_t *ring, const char *path,
    size_t size);

/* The records a predecessor left that the journal lacks, the journal ending
 * at *seq / hash (64 hex).  The ring's lines from offset 0 must form a
 * chain of their own; those the journal already has (a flush cut short) are
 * skipped, and the first one after them must continue the journal's last
 * record.  Returns their length in bytes from *start (0: none); *seq, hash
 * and *records are advanced to the last of them.  Reads only. */
size_t insite_gdpr_ring_recover(const insite_gdpr_ring_t *ring,
    uint64_t *seq, char *hash, unsigned *records, size_t *start);

/* Writes the whole ring (zeros): every page present and writable, nothing
 * to replay.  Call after a recovery's records reached the journal. */
void insite_gdpr_ring_touch(insite_gdpr_ring_t *ring);

/* Copies one journal line (with its '\n') in.  0, or -1 when it does not
 * fit: flush first. */
int insite_gdpr_ring_put(insite_gdpr_ring_t *ring, const char *line,
    size_t len);

/* The records are in the journal, or given up (the journal failed): the ring
 * starts again at offset 0, and its first byte no longer begins a line, so
 * none of them can be replayed. */
void insite_gdpr_ring_clear(insite_gdpr_ring_t *ring);

void insite_gdpr_ring_close(insite_gdpr_ring_t *ring);

#endif /* _INSITE_GDPR_RING_H_INCLUDED_ */
