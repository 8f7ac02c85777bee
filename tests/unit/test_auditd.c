/* insite-auditd: the hash chain (shared with the nginx module), journal
 * file names, record checks, suspicion levels, Ed25519 signatures. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/evp.h>

#include "../../workers/auditd/auditd.h"

/* a record as the module writes it */
static size_t make(char *out, size_t size, uint64_t seq, const char *prev, const char *user)
{
    int n = snprintf(out, size,
        "{\"id\":\"0b8f8e4e-1c7a-4f5e-9d1e-2a3b4c5d6e%02d\",\"ts\":\"2026-11-26T10:30:45.123Z\","
        "\"user_id\":\"%s\",\"access_type\":\"read\",\"data_type\":\"portfolio\",\"method\":\"GET\","
        "\"path\":\"/api/v1/portfolio\",\"status\":200,\"result\":true,\"ip\":\"10.0.0.7\","
        "\"request_id\":\"r1\",\"worker\":\"0\",\"seq\":%llu,\"prev_hash\":\"%s\"",
        (int)(seq % 100), user, (unsigned long long)seq, prev);
    char h[INSITE_GDPR_HASH_LEN + 1] = { 0 };
    assert_int_equal(insite_gdpr_hash(prev, out, (size_t)n, h), 0);
    n += snprintf(out + n, size - (size_t)n, ",\"hash\":\"%s\"}", h);
    return (size_t)n;
}

static void test_chain(void **state)
{
    char l[3][1024], prev[65] = INSITE_GDPR_GENESIS;
    size_t len[3];
    insite_gdpr_line_t p;
    auditd_chainstate st;

    for (int i = 0; i < 3; i++) {
        len[i] = make(l[i], sizeof(l[i]), (uint64_t)i + 1, prev, "alice");
        assert_int_equal(insite_gdpr_line_parse(l[i], len[i], &p), INSITE_GDPR_OK);
        memcpy(prev, p.hash, 64);
        assert_int_equal(p.seq, i + 1);
    }
    auditd_chainstate_init(&st);
    for (int i = 0; i < 3; i++)
        assert_int_equal(auditd_chain_step(&st, l[i], len[i], 1, &p), INSITE_GDPR_OK);
    assert_int_equal(st.seq, 3);

    /* an edit */
    char t[1024];
    memcpy(t, l[1], len[1]);
    memcpy(strstr(t, "alice"), "malic", 5);
    auditd_chainstate_init(&st);
    auditd_chain_step(&st, l[0], len[0], 1, &p);
    assert_int_equal(auditd_chain_step(&st, t, len[1], 1, &p), INSITE_GDPR_EHASH);
    /* one edit is one finding: the next line links to the claimed hash */
    assert_int_equal(auditd_chain_step(&st, l[2], len[2], 1, &p), INSITE_GDPR_OK);

    /* a deletion */
    auditd_chainstate_init(&st);
    auditd_chain_step(&st, l[0], len[0], 1, &p);
    assert_int_equal(auditd_chain_step(&st, l[2], len[2], 1, &p), INSITE_GDPR_EPREV);

    /* a reorder */
    auditd_chainstate_init(&st);
    assert_int_not_equal(auditd_chain_step(&st, l[1], len[1], 1, &p), INSITE_GDPR_OK);

    /* joining midway is allowed only when not strict */
    auditd_chainstate_init(&st);
    assert_int_equal(auditd_chain_step(&st, l[1], len[1], 0, &p), INSITE_GDPR_OK);

    /* layout */
    assert_int_equal(insite_gdpr_line_parse("{}", 2, &p), INSITE_GDPR_EFORMAT);
    assert_int_equal(insite_gdpr_line_parse(l[0], len[0] - 1, &p), INSITE_GDPR_EFORMAT);
    memcpy(t, l[0], len[0]);
    *strstr(t, "\"seq\"") = 'x';
    assert_int_equal(insite_gdpr_line_parse(t, len[0], &p), INSITE_GDPR_EFORMAT);
    assert_string_equal(insite_gdpr_strerror(INSITE_GDPR_EPREV), "prev_hash does not match the previous record");
}

static void test_names(void **state)
{
    auditd_file f;
    assert_int_equal(auditd_parse_name("audit-0-00000000000000000042.jsonl", &f), 0);
    assert_string_equal(f.chain, "0");
    assert_int_equal(f.first_seq, 42);
    assert_int_equal(auditd_parse_name("audit-1.4711-00000000000000000001.jsonl", &f), 0);
    assert_string_equal(f.chain, "1.4711");
    assert_int_not_equal(auditd_parse_name("audit-0.lock", &f), 0);
    assert_int_not_equal(auditd_parse_name("audit--00000000000000000001.jsonl", &f), 0);
    assert_int_not_equal(auditd_parse_name("audit-x-00000000000000000001.jsonl", &f), 0);
    assert_int_not_equal(auditd_parse_name("audit-0-0000000000000000001.jsonl", &f), 0);
}

static void test_record(void **state)
{
    char l[1024], err[128];
    size_t n = make(l, sizeof(l), 1, INSITE_GDPR_GENESIS, "bob");
    json_t *r = auditd_record_parse(l, n, err, sizeof(err));
    assert_non_null(r);
    assert_string_equal(json_string_value(json_object_get(r, "user_id")), "bob");
    json_decref(r);
    assert_null(auditd_record_parse("{\"id\":\"x\"}", 10, err, sizeof(err)));
    assert_string_equal(err, "field \"id\" missing or invalid");
    assert_null(auditd_record_parse("nope", 4, err, sizeof(err)));
}

/* the same, with data_subject (written since migration 021) as raw JSON */
static size_t make_subject(char *out, size_t size, uint64_t seq, const char *prev,
                           const char *subject)
{
    int n = snprintf(out, size,
        "{\"id\":\"0b8f8e4e-1c7a-4f5e-9d1e-2a3b4c5d6e%02d\",\"ts\":\"2026-11-26T10:30:45.123Z\","
        "\"user_id\":\"ops\",\"data_subject\":%s,\"access_type\":\"export\","
        "\"data_type\":\"audit_trail\",\"method\":\"GET\",\"path\":\"/api/v1/gdpr/audit-trail\","
        "\"status\":200,\"result\":true,\"ip\":\"10.0.0.7\",\"request_id\":\"r1\",\"worker\":\"0\","
        "\"seq\":%llu,\"prev_hash\":\"%s\"",
        (int)(seq % 100), subject, (unsigned long long)seq, prev);
    char h[INSITE_GDPR_HASH_LEN + 1] = { 0 };
    assert_int_equal(insite_gdpr_hash(prev, out, (size_t)n, h), 0);
    n += snprintf(out + n, size - (size_t)n, ",\"hash\":\"%s\"}", h);
    return (size_t)n;
}

/* one chain across the format change: an old record, then new ones */
static void test_data_subject(void **state)
{
    char old[1024], neu[1024], nul[1024], bad[1024], err[128];
    insite_gdpr_line_t a, b, c;
    size_t n1 = make(old, sizeof(old), 1, INSITE_GDPR_GENESIS, "bob");
    assert_int_equal(insite_gdpr_line_check(old, n1, INSITE_GDPR_GENESIS, 0, &a), INSITE_GDPR_OK);
    char h1[INSITE_GDPR_HASH_LEN + 1] = { 0 };
    memcpy(h1, a.hash, INSITE_GDPR_HASH_LEN);
    size_t n2 = make_subject(neu, sizeof(neu), 2, h1, "\"bob\"");
    assert_int_equal(insite_gdpr_line_check(neu, n2, h1, 1, &b), INSITE_GDPR_OK);
    char h2[INSITE_GDPR_HASH_LEN + 1] = { 0 };
    memcpy(h2, b.hash, INSITE_GDPR_HASH_LEN);
    size_t n3 = make_subject(nul, sizeof(nul), 3, h2, "null");
    assert_int_equal(insite_gdpr_line_check(nul, n3, h2, 2, &c), INSITE_GDPR_OK);

    json_t *r = auditd_record_parse(old, n1, err, sizeof(err));
    assert_non_null(r);
    assert_null(json_object_get(r, "data_subject"));        /* shipped as NULL */
    json_decref(r);
    r = auditd_record_parse(neu, n2, err, sizeof(err));
    assert_non_null(r);
    assert_string_equal(json_string_value(json_object_get(r, "data_subject")), "bob");
    json_decref(r);
    r = auditd_record_parse(nul, n3, err, sizeof(err));
    assert_non_null(r);
    json_decref(r);
    size_t n4 = make_subject(bad, sizeof(bad), 4, INSITE_GDPR_GENESIS, "42");
    assert_null(auditd_record_parse(bad, n4, err, sizeof(err)));
    assert_string_equal(err, "field \"data_subject\" missing or invalid");
}

/* format 2: "v":2 first, "reason" after "result"; a chain runs across the
 * format change, and a format the shipper does not know is malformed */
static size_t make_v2(char *out, size_t size, uint64_t seq, const char *prev, int v, const char *reason)
{
    int n = snprintf(out, size,
        "{\"v\":%d,\"id\":\"0b8f8e4e-1c7a-4f5e-9d1e-2a3b4c5d6e%02d\",\"ts\":\"2026-11-26T10:30:45.123Z\","
        "\"user_id\":\"psn:710aa3fbcb49980f7666626948eaac0e\",\"data_subject\":\"psn:710aa3fbcb49980f7666626948eaac0e\","
        "\"access_type\":\"read\",\"data_type\":\"analytics\",\"method\":\"GET\",\"path\":\"/a\","
        "\"status\":403,\"result\":false,\"reason\":%s,\"ip\":\"10.0.0.7\",\"request_id\":\"r1\","
        "\"worker\":\"0\",\"seq\":%llu,\"prev_hash\":\"%s\"",
        v, (int)(seq % 100), reason, (unsigned long long)seq, prev);
    char h[INSITE_GDPR_HASH_LEN + 1] = { 0 };
    assert_int_equal(insite_gdpr_hash(prev, out, (size_t)n, h), 0);
    n += snprintf(out + n, size - (size_t)n, ",\"hash\":\"%s\"}", h);
    return (size_t)n;
}

static void test_format2(void **state)
{
    char old[1024], neu[1024], nul[1024], bad[1024], err[128];
    char h1[INSITE_GDPR_HASH_LEN + 1] = { 0 }, h2[INSITE_GDPR_HASH_LEN + 1] = { 0 };
    insite_gdpr_line_t a, b, c;
    size_t n1 = make(old, sizeof(old), 1, INSITE_GDPR_GENESIS, "bob");
    assert_int_equal(insite_gdpr_line_check(old, n1, INSITE_GDPR_GENESIS, 0, &a), INSITE_GDPR_OK);
    memcpy(h1, a.hash, INSITE_GDPR_HASH_LEN);
    size_t n2 = make_v2(neu, sizeof(neu), 2, h1, 2, "\"consent_required\"");
    assert_int_equal(insite_gdpr_line_check(neu, n2, h1, 1, &b), INSITE_GDPR_OK);
    memcpy(h2, b.hash, INSITE_GDPR_HASH_LEN);
    size_t n3 = make_v2(nul, sizeof(nul), 3, h2, 2, "null");
    assert_int_equal(insite_gdpr_line_check(nul, n3, h2, 2, &c), INSITE_GDPR_OK);

    json_t *r = auditd_record_parse(old, n1, err, sizeof(err));
    assert_non_null(r);
    assert_null(json_object_get(r, "reason"));              /* shipped as NULL */
    json_decref(r);
    r = auditd_record_parse(neu, n2, err, sizeof(err));
    assert_non_null(r);
    assert_string_equal(json_string_value(json_object_get(r, "reason")), "consent_required");
    json_decref(r);
    r = auditd_record_parse(nul, n3, err, sizeof(err));
    assert_non_null(r);
    json_decref(r);

    size_t n4 = make_v2(bad, sizeof(bad), 4, INSITE_GDPR_GENESIS, 3, "null");
    assert_null(auditd_record_parse(bad, n4, err, sizeof(err)));
    assert_string_equal(err, "field \"v\" missing or invalid");
    n4 = make_v2(bad, sizeof(bad), 4, INSITE_GDPR_GENESIS, 2, "false");
    assert_null(auditd_record_parse(bad, n4, err, sizeof(err)));
    assert_string_equal(err, "field \"reason\" missing or invalid");
}

/* the pseudonym every component computes: a fixed vector (Python's
 * hmac.new(key, b"alice", sha256).hexdigest()[:32]) */
static void test_pseudonym(void **state)
{
    static const unsigned char key[] = "0123456789abcdef-key";
    char out[INSITE_GDPR_PSN_LEN + 1] = { 0 };
    assert_int_equal(insite_gdpr_pseudonym(key, sizeof(key) - 1, "alice", 5, out), 0);
    assert_string_equal(out, "psn:710aa3fbcb49980f7666626948eaac0e");

    /* the prepared key (nginx's per-request path) gives the same ids, for
     * keys shorter than, as long as and longer than SHA-256's block */
    insite_gdpr_psn_key_t *pk = insite_gdpr_psn_key_new(key, sizeof(key) - 1);
    assert_non_null(pk);
    memset(out, 0, sizeof(out));
    assert_int_equal(insite_gdpr_psn_key_pseudonym(pk, "alice", 5, out), 0);
    assert_string_equal(out, "psn:710aa3fbcb49980f7666626948eaac0e");
    assert_int_equal(insite_gdpr_psn_key_pseudonym(pk, "alice", 5, out), 0);
    assert_string_equal(out, "psn:710aa3fbcb49980f7666626948eaac0e");
    insite_gdpr_psn_key_free(pk);
    unsigned char lk[100];
    for (size_t kl = 16; kl <= sizeof(lk); kl += 12) {
        char a[INSITE_GDPR_PSN_LEN], b[INSITE_GDPR_PSN_LEN];
        for (size_t i = 0; i < kl; i++) lk[i] = (unsigned char)(i * 7 + kl);
        pk = insite_gdpr_psn_key_new(lk, kl);
        assert_non_null(pk);
        assert_int_equal(insite_gdpr_pseudonym(lk, kl, "user-42", 7, a), 0);
        assert_int_equal(insite_gdpr_psn_key_pseudonym(pk, "user-42", 7, b), 0);
        assert_memory_equal(a, b, sizeof(a));
        assert_int_equal(insite_gdpr_psn_key_pseudonym(pk, "", 0, b), 0);
        assert_int_equal(insite_gdpr_pseudonym(lk, kl, "", 0, a), 0);
        assert_memory_equal(a, b, sizeof(a));
        insite_gdpr_psn_key_free(pk);
    }

    /* the kept pseudonyms: 2,000 ids over 256 slots, twice (hits, evictions,
     * ids sharing a slot), of lengths 0 to 70 (62 is the longest kept), each
     * the reference's */
    pk = insite_gdpr_psn_key_new(key, sizeof(key) - 1);
    assert_non_null(pk);
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < 2000; i++) {
            char id[80], a[INSITE_GDPR_PSN_LEN], b[INSITE_GDPR_PSN_LEN];
            int want = i % 71;                  /* 0: the empty id */
            int len = want ? snprintf(id, sizeof(id), "user-%d-", i) : 0;
            while (len < want) id[len++] = 'x';
            assert_int_equal(insite_gdpr_pseudonym(key, sizeof(key) - 1, id, (size_t)len, a), 0);
            assert_int_equal(insite_gdpr_psn_key_pseudonym(pk, id, (size_t)len, b), 0);
            assert_memory_equal(a, b, sizeof(a));
        }
    }
    /* an id that only differs in its last byte from a kept one */
    char a1[INSITE_GDPR_PSN_LEN], a2[INSITE_GDPR_PSN_LEN];
    assert_int_equal(insite_gdpr_psn_key_pseudonym(pk, "bob-1", 5, a1), 0);
    assert_int_equal(insite_gdpr_psn_key_pseudonym(pk, "bob-2", 5, a2), 0);
    assert_memory_not_equal(a1, a2, sizeof(a1));
    assert_int_equal(insite_gdpr_psn_key_pseudonym(pk, "bob-1", 4, a2), 0);
    assert_memory_not_equal(a1, a2, sizeof(a1));
    insite_gdpr_psn_key_free(pk);

    char path[] = "/tmp/insite-psn-XXXXXX";
    unsigned char k[INSITE_GDPR_PSN_KEY_MAX];
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "short\n", 6), 6);
    assert_int_equal(insite_gdpr_pseudonym_key_read(path, k, sizeof(k)), -1);
    assert_int_equal(errno, EINVAL);
    assert_int_equal(write(fd, key, sizeof(key) - 1), (ssize_t)sizeof(key) - 1);
    close(fd);
    assert_int_equal(insite_gdpr_pseudonym_key_read(path, k, sizeof(k)), 6 + (int)sizeof(key) - 1);
    assert_memory_equal(k, "short\n0123", 10);
    unlink(path);
    assert_int_equal(insite_gdpr_pseudonym_key_read(path, k, sizeof(k)), -1);
    assert_int_equal(errno, ENOENT);
}

static void test_levels(void **state)
{
    assert_null(auditd_suspicion_level(50));
    assert_string_equal(auditd_suspicion_level(51), "MEDIUM");
    assert_string_equal(auditd_suspicion_level(100), "MEDIUM");
    assert_string_equal(auditd_suspicion_level(101), "HIGH");
}

static void test_sign(void **state)
{
    EVP_PKEY *k = NULL;
    EVP_PKEY_CTX *c = EVP_PKEY_CTX_new_id(EVP_PKEY_ED25519, NULL);
    char sig[129];
    assert_non_null(c);
    assert_int_equal(EVP_PKEY_keygen_init(c), 1);
    assert_int_equal(EVP_PKEY_keygen(c, &k), 1);
    assert_int_equal(auditd_sign(k, "heads", 5, sig), 0);
    assert_int_equal(strlen(sig), 128);
    assert_int_equal(auditd_verify_sig(k, "heads", 5, sig), 0);
    assert_int_equal(auditd_verify_sig(k, "headz", 5, sig), -1);
    sig[0] = sig[0] == '0' ? '1' : '0';
    assert_int_equal(auditd_verify_sig(k, "heads", 5, sig), -1);
    EVP_PKEY_free(k);
    EVP_PKEY_CTX_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chain),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_record),
        cmocka_unit_test(test_data_subject),
        cmocka_unit_test(test_format2),
        cmocka_unit_test(test_pseudonym),
        cmocka_unit_test(test_levels),
        cmocka_unit_test(test_sign),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
