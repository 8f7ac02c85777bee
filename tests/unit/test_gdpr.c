/* insite-gdpr: consent type configuration, the data map's checks,
 * pseudonyms, receipts (sign + verify-receipt). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "../../workers/gdpr/gdpr.h"
#include "sign.h"

static void test_consent_types(void **state)
{
    gdpr_consent c;
    char err[256];
    char *ok[] = { "analytics=2026-01", "data_sharing=1.2", "cookies=v3_b" };
    char *dup[] = { "analytics=1", "analytics=2" };
    char *noeq[] = { "analytics" };
    char *upper[] = { "Analytics=1" };
    char *badv[] = { "analytics=1 2" };
    char *longt[] = { "abcdefghijabcdefghijabcdefghijabc=1" };

    assert_int_equal(gdpr_consent_types_parse(&c, ok, 3, err, sizeof(err)), 0);
    assert_int_equal(c.ntypes, 3);
    assert_string_equal(gdpr_consent_type_find(&c, "data_sharing")->version, "1.2");
    assert_null(gdpr_consent_type_find(&c, "marketing"));
    assert_int_equal(gdpr_consent_types_parse(&c, dup, 2, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "twice"));
    assert_int_equal(gdpr_consent_types_parse(&c, noeq, 1, err, sizeof(err)), -1);
    assert_int_equal(gdpr_consent_types_parse(&c, upper, 1, err, sizeof(err)), -1);
    assert_int_equal(gdpr_consent_types_parse(&c, badv, 1, err, sizeof(err)), -1);
    assert_int_equal(gdpr_consent_types_parse(&c, longt, 1, err, sizeof(err)), -1);
    assert_int_equal(gdpr_consent_types_parse(&c, ok, 0, err, sizeof(err)), -1);
}

static void test_consent_key(void **state)
{
    gdpr_store s = { .prefix = "insite:" };
    char k[64];
    assert_int_equal(gdpr_consent_key(&s, "u1", k, sizeof(k)), 0);
    assert_string_equal(k, "insite:consent:{u1}");
    assert_int_equal(gdpr_consent_key(&s, "a-very-long-user-id-that-does-not-fit-in-the-buffer", k, 32), -1);
}

static char dir[] = "/tmp/test-gdpr-XXXXXX";

static void spew(const char *name, const char *text)
{
    char p[256];
    snprintf(p, sizeof(p), "%s/%s", dir, name);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static gdpr_erasure *load(const char *map, char *err, size_t errlen)
{
    char m[256], k[256], s[256];
    static gdpr_store st = { .dsn = "dbname=none", .prefix = "insite:" };
    spew("map.json", map);
    snprintf(m, sizeof(m), "%s/map.json", dir);
    snprintf(k, sizeof(k), "%s/psn.key", dir);
    snprintf(s, sizeof(s), "%s/sign.pem", dir);
    gdpr_erasure_options o = { .data_map = m, .dsn = "dbname=none", .pseudonym_key = k,
                               .signing_key = s, .store = &st, .metrics = NULL };
    return gdpr_erasure_new(&o, err, errlen);
}

static void test_data_map(void **state)
{
    char err[512], a[40], b[40];
    gdpr_erasure *e;

    e = load("{\"version\":1,\"databases\":{\"insite\":\"\"},\"postgresql\":["
             "{\"name\":\"c\",\"database\":\"insite\",\"table\":\"t\",\"user_column\":\"u\",\"action\":\"delete\"},"
             "{\"name\":\"f\",\"database\":\"insite\",\"table\":\"t2\",\"user_column\":\"u\",\"action\":\"anonymize\","
             "\"columns\":{\"email\":null,\"name\":\"x\"}}],"
             "\"redis\":[{\"name\":\"k\",\"key\":\"insite:a:%u\"},"
             "{\"name\":\"m\",\"match\":\"insite:{alert:%u}:idem:*\"}]}", err, sizeof(err));
    assert_non_null(e);
    assert_int_equal(gdpr_pseudonym(e, "alice", a), 0);
    assert_int_equal(gdpr_pseudonym(e, "alice", b), 0);
    assert_string_equal(a, b);
    assert_int_equal(strncmp(a, "psn:", 4), 0);
    assert_int_equal(strlen(a), 36);
    assert_int_equal(gdpr_pseudonym(e, "bob", b), 0);
    assert_string_not_equal(a, b);
    gdpr_erasure_free(e);

    static const struct { const char *map, *why; } bad[] = {
        { "{", "" },
        { "{\"version\":2,\"databases\":{}}", "version" },
        { "{\"version\":1,\"databases\":{\"insite\":\"\"},\"postgresql\":[{\"name\":\"c\",\"database\":\"other\","
          "\"table\":\"t\",\"user_column\":\"u\",\"action\":\"delete\"}]}", "unknown database" },
        { "{\"version\":1,\"databases\":{\"insite\":\"\"},\"postgresql\":[{\"name\":\"c\",\"database\":\"insite\","
          "\"table\":\"t; DROP TABLE x\",\"user_column\":\"u\",\"action\":\"delete\"}]}", "identifiers" },
        { "{\"version\":1,\"databases\":{\"insite\":\"\"},\"postgresql\":[{\"name\":\"c\",\"database\":\"insite\","
          "\"table\":\"t\",\"user_column\":\"u\",\"action\":\"shred\"}]}", "action" },
        { "{\"version\":1,\"databases\":{\"insite\":\"\"},\"postgresql\":[{\"name\":\"c\",\"database\":\"insite\","
          "\"table\":\"t\",\"user_column\":\"u\",\"action\":\"retain\"}]}", "reason" },
        { "{\"version\":1,\"databases\":{\"insite\":\"\"},\"postgresql\":[{\"name\":\"c\",\"database\":\"insite\","
          "\"table\":\"t\",\"user_column\":\"u\",\"action\":\"anonymize\"}]}", "columns" },
        { "{\"version\":1,\"databases\":{\"insite\":\"\"},\"redis\":[{\"name\":\"k\",\"key\":\"insite:*\"}]}", "wildcards" },
        /* "match": %u and one final "*" only */
        { "{\"version\":1,\"databases\":{\"insite\":\"\"},\"redis\":[{\"name\":\"k\",\"match\":\"insite:*:%u\"}]}", "wildcards" },
        { "{\"version\":1,\"databases\":{\"insite\":\"\"},\"redis\":[{\"name\":\"k\",\"match\":\"insite:%u:*:*\"}]}", "wildcards" },
        { "{\"version\":1,\"databases\":{\"insite\":\"\"},\"redis\":[{\"name\":\"k\",\"match\":\"insite:idem:*\"}]}", "wildcards" },
        { "{\"version\":1,\"databases\":{\"insite\":\"\"},\"kafka\":{\"topic\":\"user_events\",\"event\":\"x\"}}", "kafka" },
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        assert_null(load(bad[i].map, err, sizeof(err)));
        if (strstr(err, bad[i].why) == NULL)
            fail_msg("map %zu: \"%s\" does not say \"%s\"", i, err, bad[i].why);
    }
}

static void test_receipt(void **state)
{
    char path[256], pub[256], sig[INSITE_SIG_HEX], line[1024];
    const char *payload = "{\"request_id\":\"r1\",\"targets\":[]}";
    FILE *devnull = fopen("/dev/null", "w");
    snprintf(path, sizeof(path), "%s/sign.pem", dir);
    snprintf(pub, sizeof(pub), "%s/sign.pub", dir);
    void *k = insite_sign_load_key(path, 1, "test");
    assert_non_null(k);
    assert_int_equal(insite_sign(k, payload, strlen(payload), sig), 0);
    insite_sign_free(k);

    snprintf(line, sizeof(line), "{\"payload\":\"{\\\"request_id\\\":\\\"r1\\\",\\\"targets\\\":[]}\",\"signature\":\"%s\"}", sig);
    spew("r.json", line);
    snprintf(path, sizeof(path), "%s/r.json", dir);
    char *argv[] = { path, pub };
    assert_int_equal(gdpr_verify_receipt_main(2, argv, devnull), 0);
    snprintf(line, sizeof(line), "{\"payload\":\"{\\\"request_id\\\":\\\"r2\\\",\\\"targets\\\":[]}\",\"signature\":\"%s\"}", sig);
    spew("r.json", line);
    assert_int_equal(gdpr_verify_receipt_main(2, argv, devnull), 1);
    spew("r.json", "{\"payload\":\"x\"}");
    assert_int_equal(gdpr_verify_receipt_main(2, argv, devnull), 1);
    assert_int_equal(gdpr_verify_receipt_main(1, argv, devnull), 2);
    fclose(devnull);
}

static int setup(void **state)
{
    char cmd[512];
    if (mkdtemp(dir) == NULL)
        return -1;
    spew("psn.key", "0123456789abcdef0123456789abcdef");
    snprintf(cmd, sizeof(cmd), "openssl genpkey -algorithm ed25519 -out %s/sign.pem 2>/dev/null && "
             "openssl pkey -in %s/sign.pem -pubout -out %s/sign.pub 2>/dev/null", dir, dir, dir);
    return system(cmd) == 0 ? 0 : -1;
}

static int teardown(void **state)
{
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_consent_types),
        cmocka_unit_test(test_consent_key),
        cmocka_unit_test(test_data_map),
        cmocka_unit_test(test_receipt),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
