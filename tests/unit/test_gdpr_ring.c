/* The audit ring (ngx_insite_gdpr/insite_gdpr_ring.c): records copied in,
 * what a successor recovers from the file after the writer is gone (a
 * second mapping of the same file stands for the next worker), and what it
 * must not: records cut short, stale lines of an earlier turn, lines that do
 * not continue the journal's chain, a ring cleared after a flush. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "../../ngx_insite_gdpr/insite_gdpr_ring.h"

#define SIZE  4096

static char dir[] = "/tmp/test_gdpr_ring.XXXXXX";
static char path[256];

/* the journal line of record seq after prev (64 hex); *hash gets its hash */
static size_t line(char *out, uint64_t seq, const char *prev, const char *pad,
    char *hash)
{
    int n = snprintf(out, 1024, "{\"v\":2,\"id\":\"r%llu\",\"path\":\"/%s\",\"worker\":\"0\","
                     "\"seq\":%llu,\"prev_hash\":\"%.64s\"", (unsigned long long) seq, pad,
                     (unsigned long long) seq, prev);
    assert_int_equal(insite_gdpr_hash(prev, out, (size_t) n, hash), 0);
    n += snprintf(out + n, 1024 - n, ",\"hash\":\"%.64s\"}\n", hash);
    return (size_t) n;
}

/* records first..last into the ring, chained after prev; prev advances */
static void put(insite_gdpr_ring_t *r, uint64_t first, uint64_t last, char *prev,
    const char *pad)
{
    char buf[1024], h[INSITE_GDPR_HASH_LEN];

    for (uint64_t s = first; s <= last; s++) {
        size_t n = line(buf, s, prev, pad, h);
        assert_int_equal(insite_gdpr_ring_put(r, buf, n), 0);
        memcpy(prev, h, INSITE_GDPR_HASH_LEN);
    }
}

/* what a successor finds after (seq, hash): records, and bytes returned
 * (from offset *start) */
static size_t successor_at(uint64_t *seq, char *hash, unsigned *records, size_t *start)
{
    insite_gdpr_ring_t r;
    assert_int_equal(insite_gdpr_ring_open(&r, path, SIZE), 0);
    size_t n = insite_gdpr_ring_recover(&r, seq, hash, records, start);
    insite_gdpr_ring_close(&r);
    return n;
}

static size_t successor(uint64_t *seq, char *hash, unsigned *records)
{
    size_t start = 99;
    size_t n = successor_at(seq, hash, records, &start);
    if (n > 0) assert_int_equal(start, 0);
    return n;
}

static int setup(void **state)
{
    struct stat st;

    snprintf(path, sizeof(path), "%s/audit-0.ring", dir);
    unlink(path);
    insite_gdpr_ring_t r;
    assert_int_equal(insite_gdpr_ring_open(&r, path, SIZE), 0);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_size, SIZE);
    insite_gdpr_ring_touch(&r);
    insite_gdpr_ring_close(&r);
    return 0;
}

static void test_fresh_ring_has_nothing(void **state)
{
    uint64_t seq = 0;
    unsigned n = 7;
    char h[INSITE_GDPR_HASH_LEN];
    memcpy(h, INSITE_GDPR_GENESIS, 64);
    assert_int_equal(successor(&seq, h, &n), 0);
    assert_int_equal(n, 0);
    assert_int_equal(seq, 0);
}

static void test_records_left_by_a_killed_writer(void **state)
{
    insite_gdpr_ring_t r;
    char head[64], journal[64], h[64];
    uint64_t seq = 41;
    unsigned n;

    memset(journal, 'a', 64);              /* the journal ends at seq 41 */
    memcpy(head, journal, 64);
    assert_int_equal(insite_gdpr_ring_open(&r, path, SIZE), 0);
    put(&r, 42, 46, head, "x");
    size_t used = r.used;
    assert_int_equal(r.records, 5);
    /* the writer dies without unmapping: the successor maps the file */
    memcpy(h, journal, 64);
    assert_int_equal(successor(&seq, h, &n), used);
    assert_int_equal(n, 5);
    assert_int_equal(seq, 46);
    assert_memory_equal(h, head, 64);

    /* the records are in the journal now (seq 46): nothing more to append */
    assert_int_equal(successor(&seq, h, &n), 0);
    assert_int_equal(n, 0);

    /* a journal that got part of them (the flush's write() cut short by
     * the kill at a page, the partial line truncated): the rest only */
    char buf[1024], g[64], h43[64];
    memcpy(g, journal, 64);
    size_t l42 = line(buf, 42, g, "x", g);
    size_t l43 = line(buf, 43, g, "x", h43);
    seq = 43;
    memcpy(h, h43, 64);
    size_t start;
    assert_int_equal(successor_at(&seq, h, &n, &start), used - l42 - l43);
    assert_int_equal(start, l42 + l43);
    assert_int_equal(n, 3);
    assert_int_equal(seq, 46);
    assert_memory_equal(h, head, 64);

    /* the same seq with another hash (not this chain's record 43): none */
    seq = 43;
    memset(h, 'c', 64);
    assert_int_equal(successor_at(&seq, h, &n, &start), 0);
    assert_int_equal(n, 0);
    insite_gdpr_ring_close(&r);
}

static void test_cut_short_and_foreign(void **state)
{
    insite_gdpr_ring_t r;
    char head[64], h[64];
    uint64_t seq;
    unsigned n;

    assert_int_equal(insite_gdpr_ring_open(&r, path, SIZE), 0);
    memcpy(head, INSITE_GDPR_GENESIS, 64);
    put(&r, 1, 3, head, "y");
    size_t third = r.used;
    put(&r, 4, 4, head, "y");
    /* record 4 cut short by the kill: its last bytes never stored */
    memset(r.base + third + 40, 0, r.used - third - 40);
    seq = 0;
    memcpy(h, INSITE_GDPR_GENESIS, 64);
    assert_int_equal(successor(&seq, h, &n), third);
    assert_int_equal(n, 3);
    assert_int_equal(seq, 3);

    /* one byte of record 2 changed: records 1 only */
    r.base[third / 2] ^= 1;
    seq = 0;
    memcpy(h, INSITE_GDPR_GENESIS, 64);
    successor(&seq, h, &n);
    assert_int_equal(n, 1);
    r.base[third / 2] ^= 1;

    /* a journal of another chain position: nothing links */
    seq = 0;
    memset(h, 'b', 64);
    assert_int_equal(successor(&seq, h, &n), 0);
    seq = 5;
    memcpy(h, INSITE_GDPR_GENESIS, 64);
    assert_int_equal(successor(&seq, h, &n), 0);
    insite_gdpr_ring_close(&r);
}

static void test_cleared_and_stale(void **state)
{
    insite_gdpr_ring_t r;
    char head[64], journal[64], h[64];
    uint64_t seq;
    unsigned n;

    assert_int_equal(insite_gdpr_ring_open(&r, path, SIZE), 0);
    memcpy(head, INSITE_GDPR_GENESIS, 64);
    put(&r, 1, 6, head, "a-long-path-so-that-these-lines-are-longer");
    memcpy(journal, head, 64);
    /* flushed: the journal ends at 6, the ring starts again */
    insite_gdpr_ring_clear(&r);
    assert_int_equal(r.used, 0);
    assert_int_equal(r.records, 0);
    seq = 6;
    memcpy(h, journal, 64);
    assert_int_equal(successor(&seq, h, &n), 0);
    /* also against the journal before that flush (seq 0): cleared means
     * given up or written, never replayed */
    seq = 0;
    memcpy(h, INSITE_GDPR_GENESIS, 64);
    assert_int_equal(successor(&seq, h, &n), 0);

    /* the next turn: one short record over the start of the stale ones */
    put(&r, 7, 7, head, "b");
    size_t used = r.used;
    seq = 6;
    memcpy(h, journal, 64);
    assert_int_equal(successor(&seq, h, &n), used);
    assert_int_equal(n, 1);
    assert_int_equal(seq, 7);
    insite_gdpr_ring_close(&r);
}

static void test_full_and_touch(void **state)
{
    insite_gdpr_ring_t r;
    char head[64], buf[1024], h[64];

    assert_int_equal(insite_gdpr_ring_open(&r, path, SIZE), 0);
    memcpy(head, INSITE_GDPR_GENESIS, 64);
    uint64_t s = 1;
    for (;;) {
        size_t n = line(buf, s, head, "z", h);
        if (insite_gdpr_ring_put(&r, buf, n) != 0) {
            assert_true(r.used + n > SIZE);
            break;
        }
        memcpy(head, h, 64);
        s++;
    }
    assert_int_equal(r.records, s - 1);
    insite_gdpr_ring_touch(&r);
    assert_int_equal(r.used, 0);
    for (size_t i = 0; i < SIZE; i++) {
        if (r.base[i] != 0) fail_msg("byte %zu not zero", i);
    }
    insite_gdpr_ring_close(&r);

    /* a path that cannot be made */
    assert_int_equal(insite_gdpr_ring_open(&r, "/nonexistent/dir/audit-0.ring", SIZE), -1);
    assert_null(r.base);
}

int main(void)
{
    if (mkdtemp(dir) == NULL) {
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_fresh_ring_has_nothing, setup),
        cmocka_unit_test_setup(test_records_left_by_a_killed_writer, setup),
        cmocka_unit_test_setup(test_cut_short_and_foreign, setup),
        cmocka_unit_test_setup(test_cleared_and_stale, setup),
        cmocka_unit_test_setup(test_full_and_touch, setup),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    unlink(path);
    rmdir(dir);
    return rc;
}
