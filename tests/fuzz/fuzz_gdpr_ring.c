/* The audit ring's recovery (insite_gdpr_ring.c) over any file content: a
 * ring is a file in the journal directory, left by a killed worker, a crash
 * of the machine, or anyone who could write there.  Whatever it holds, the
 * records recovered lie inside it, are whole lines, and form the chain that
 * continues the journal's last record (seq 0 and the genesis hash here, or
 * the first line's own predecessor): each re-checks alone. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "insite_gdpr_chain.h"
#include "insite_gdpr_ring.h"

static void check(const insite_gdpr_ring_t *r, uint64_t seq0, const char *hash0)
{
    uint64_t seq = seq0;
    unsigned records;
    size_t start;
    char hash[INSITE_GDPR_HASH_LEN], prev[INSITE_GDPR_HASH_LEN];
    insite_gdpr_line_t l;

    memcpy(hash, hash0, INSITE_GDPR_HASH_LEN);
    size_t len = insite_gdpr_ring_recover(r, &seq, hash, &records, &start);
    if (len == 0) {
        if (records != 0 || seq != seq0 || memcmp(hash, hash0, INSITE_GDPR_HASH_LEN) != 0)
            __builtin_trap();
        return;
    }
    if (start > r->size || len > r->size - start || records == 0)
        __builtin_trap();

    const char *p = r->base + start, *end = p + len;
    uint64_t s = seq0;
    unsigned n = 0;
    memcpy(prev, hash0, INSITE_GDPR_HASH_LEN);
    while (p < end) {
        const char *nl = memchr(p, '\n', end - p);
        if (nl == NULL || insite_gdpr_line_check(p, nl - p, prev, s, &l) != INSITE_GDPR_OK)
            __builtin_trap();
        memcpy(prev, l.hash, INSITE_GDPR_HASH_LEN);
        s = l.seq;
        n++;
        p = nl + 1;
    }
    if (n != records || s != seq || memcmp(prev, hash, INSITE_GDPR_HASH_LEN) != 0)
        __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    insite_gdpr_ring_t r = { .fd = -1 };
    insite_gdpr_line_t l;

    if (size == 0)
        return 0;
    r.base = malloc(size);          /* exact size: reads past it are caught */
    if (r.base == NULL)
        return 0;
    memcpy(r.base, data, size);
    r.size = size;

    check(&r, 0, INSITE_GDPR_GENESIS);

    /* a journal that ends just before the ring's first line */
    const char *nl = memchr(r.base, '\n', size);
    if (nl && insite_gdpr_line_parse(r.base, nl - r.base, &l) == INSITE_GDPR_OK && l.seq > 0) {
        char h[INSITE_GDPR_HASH_LEN];
        memcpy(h, l.prev_hash, INSITE_GDPR_HASH_LEN);
        check(&r, l.seq - 1, h);
    }

    free(r.base);
    return 0;
}
