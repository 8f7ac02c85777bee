/* The audit hash chain against hashes computed outside this code.
 *
 * The expected digests below were computed with coreutils, not with
 * insite_gdpr_hash(), from the input the header documents
 * (hash = hex(SHA-256(prev_hash_hex || body)), body = the line up to
 * `,"hash":"`):
 *
 *   Z=0000000000000000000000000000000000000000000000000000000000000000
 *   printf '%s%s' "$Z"  "$B1" | sha256sum   -> H1
 *   printf '%s%s' "$H1" "$B2" | sha256sum   -> H2
 *   printf '%s'         "$B1" | sha256sum   -> NOPREV (prev left out: wrong)
 *
 * with B1 and B2 the two bodies written out below.  A chain that hashed
 * other bytes (prev left out, the body cut short or the tail included)
 * cannot agree with these. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "../../workers/auditd/auditd.h"

#define Z  INSITE_GDPR_GENESIS
#define H1 "aca2776786f95202847fe189ae7a837512a1e8a232475d56371b09925153aad5"
#define H2 "41691e232fc210f90f3652792d25ade54df555fcfac33141150d6d3211970a2f"
#define NOPREV "02cbc1ec6c97df040682026dadb099ccfe09cfb25d4f0938fabbe92240379516"

#define B1 "{\"id\":\"00000000-0000-4000-8000-000000000001\",\"ts\":\"2026-01-01T00:00:00.000Z\"," \
    "\"user_id\":\"alice\",\"access_type\":\"read\",\"data_type\":\"portfolio\",\"method\":\"GET\"," \
    "\"path\":\"/api/v1/portfolio\",\"status\":200,\"result\":true,\"ip\":\"10.0.0.7\"," \
    "\"request_id\":\"r1\",\"worker\":\"0\",\"seq\":1,\"prev_hash\":\"" Z "\""
#define B2 "{\"id\":\"00000000-0000-4000-8000-000000000002\",\"ts\":\"2026-01-01T00:00:01.000Z\"," \
    "\"user_id\":\"bob\",\"access_type\":\"write\",\"data_type\":\"portfolio\",\"method\":\"POST\"," \
    "\"path\":\"/api/v1/portfolio\",\"status\":403,\"result\":false,\"ip\":\"10.0.0.8\"," \
    "\"request_id\":null,\"worker\":\"0\",\"seq\":2,\"prev_hash\":\"" H1 "\""

#define L1 B1 ",\"hash\":\"" H1 "\"}"
#define L2 B2 ",\"hash\":\"" H2 "\"}"

static void test_hash_function(void **state)
{
    char out[INSITE_GDPR_HASH_LEN + 1] = { 0 };

    assert_int_equal(insite_gdpr_hash(Z, B1, strlen(B1), out), 0);
    assert_string_equal(out, H1);
    assert_int_equal(insite_gdpr_hash(H1, B2, strlen(B2), out), 0);
    assert_string_equal(out, H2);
}

static void test_parse_fields(void **state)
{
    insite_gdpr_line_t p;

    assert_int_equal(insite_gdpr_line_parse(L2, strlen(L2), &p), INSITE_GDPR_OK);
    assert_int_equal(p.seq, 2);
    assert_memory_equal(p.prev_hash, H1, 64);
    assert_memory_equal(p.hash, H2, 64);
}

static void test_check_against_independent_hashes(void **state)
{
    insite_gdpr_line_t p;

    assert_int_equal(insite_gdpr_line_check(L1, strlen(L1), Z, 0, &p), INSITE_GDPR_OK);
    assert_int_equal(insite_gdpr_line_check(L2, strlen(L2), H1, 1, &p), INSITE_GDPR_OK);
    assert_int_equal(insite_gdpr_line_check(L2, strlen(L2), NULL, 0, &p), INSITE_GDPR_OK);

    /* the same line claiming the digest of the body without prev_hash */
    static const char noprev[] = B1 ",\"hash\":\"" NOPREV "\"}";
    assert_int_equal(insite_gdpr_line_check(noprev, strlen(noprev), Z, 0, &p), INSITE_GDPR_EHASH);

    /* linkage and sequence, each alone */
    assert_int_equal(insite_gdpr_line_check(L2, strlen(L2), Z, 1, &p), INSITE_GDPR_EPREV);
    assert_int_equal(insite_gdpr_line_check(L2, strlen(L2), H1, 2, &p), INSITE_GDPR_ESEQ);
    assert_int_equal(insite_gdpr_line_check(L2, strlen(L2), H1, 0, &p), INSITE_GDPR_ESEQ);

    /* one byte of the body changed, hash kept */
    char t[sizeof(L1)];
    memcpy(t, L1, sizeof(L1));
    *strstr(t, "alice") = 'A';
    assert_int_equal(insite_gdpr_line_check(t, strlen(t), Z, 0, &p), INSITE_GDPR_EHASH);
}

static void test_chainstate(void **state)
{
    insite_gdpr_line_t p;
    auditd_chainstate st;

    auditd_chainstate_init(&st);
    assert_int_equal(auditd_chain_step(&st, L1, strlen(L1), 1, &p), INSITE_GDPR_OK);
    assert_int_equal(auditd_chain_step(&st, L2, strlen(L2), 1, &p), INSITE_GDPR_OK);
    assert_int_equal(st.seq, 2);

    /* strict: the first line of a chain must start from the genesis hash */
    auditd_chainstate_init(&st);
    assert_int_not_equal(auditd_chain_step(&st, L2, strlen(L2), 1, &p), INSITE_GDPR_OK);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hash_function),
        cmocka_unit_test(test_parse_fields),
        cmocka_unit_test(test_check_against_independent_hashes),
        cmocka_unit_test(test_chainstate),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
