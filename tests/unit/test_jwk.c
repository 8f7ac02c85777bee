/*
 * Unit tests for JWKS parsing, key selection, JWS verification and claims
 * (ngx_insite_gateway/insite_jwk.c).  Keys are generated here by OpenSSL,
 * published as JWK members and used to sign, so every algorithm is checked
 * against a real signature and against each confusion it must refuse.
 */

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>

#include "../../ngx_insite_gateway/insite_jwk.h"


static EVP_PKEY  *rsa_key, *ec256_key, *ec384_key, *ed_key;


static void
b64url(const unsigned char *in, size_t len, char *out)
{
    static const char  t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                             "0123456789-_";
    size_t    i;
    unsigned  v;
    char     *p = out;

    for (i = 0; i + 2 < len; i += 3) {
        v = (unsigned) in[i] << 16 | (unsigned) in[i + 1] << 8 | in[i + 2];
        *p++ = t[v >> 18];
        *p++ = t[(v >> 12) & 63];
        *p++ = t[(v >> 6) & 63];
        *p++ = t[v & 63];
    }

    if (len - i == 1) {
        v = (unsigned) in[i] << 16;
        *p++ = t[v >> 18];
        *p++ = t[(v >> 12) & 63];

    } else if (len - i == 2) {
        v = (unsigned) in[i] << 16 | (unsigned) in[i + 1] << 8;
        *p++ = t[v >> 18];
        *p++ = t[(v >> 12) & 63];
        *p++ = t[(v >> 6) & 63];
    }

    *p = '\0';
}


static void
bn_member(EVP_PKEY *k, const char *param, char *out)
{
    BIGNUM         *bn = NULL;
    unsigned char   buf[1024];
    int             n;

    assert_int_equal(EVP_PKEY_get_bn_param(k, param, &bn), 1);
    n = BN_bn2bin(bn, buf);
    b64url(buf, (size_t) n, out);
    BN_free(bn);
}


/* the JWK of a key, with extra members ("kid":"x",...) appended */

static char *
jwk(EVP_PKEY *k, const char *extra)
{
    static char    out[8][4096];
    static int     next;
    char          *o = out[next++ % 8];
    char           a[1024], b[1024];
    unsigned char  pub[200];
    size_t         len, half;

    if (EVP_PKEY_is_a(k, "RSA")) {
        bn_member(k, OSSL_PKEY_PARAM_RSA_N, a);
        bn_member(k, OSSL_PKEY_PARAM_RSA_E, b);
        snprintf(o, 4096, "{\"kty\":\"RSA\",\"n\":\"%s\",\"e\":\"%s\"%s}", a, b,
                 extra);

    } else if (EVP_PKEY_is_a(k, "EC")) {
        assert_int_equal(EVP_PKEY_get_octet_string_param(k,
                             OSSL_PKEY_PARAM_PUB_KEY, pub, sizeof(pub), &len),
                         1);
        half = (len - 1) / 2;
        b64url(pub + 1, half, a);
        b64url(pub + 1 + half, half, b);
        snprintf(o, 4096, "{\"kty\":\"EC\",\"crv\":\"%s\",\"x\":\"%s\","
                 "\"y\":\"%s\"%s}", half == 32 ? "P-256" : "P-384", a, b,
                 extra);

    } else {
        len = 32;
        assert_int_equal(EVP_PKEY_get_raw_public_key(k, pub, &len), 1);
        b64url(pub, len, a);
        snprintf(o, 4096, "{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"%s\"%s}",
                 a, extra);
    }

    return o;
}


/* a JWS signature as JOSE writes it; returns its length */

static size_t
sign(EVP_PKEY *k, insite_jwa_e alg, const char *input, unsigned char *sig)
{
    const EVP_MD   *md = NULL;
    EVP_MD_CTX     *m;
    EVP_PKEY_CTX   *pctx;
    unsigned char   der[600];
    size_t          len = sizeof(der);
    ECDSA_SIG      *es;
    const unsigned char  *p;
    const BIGNUM   *r, *s;
    int             half;

    switch (alg) {
    case INSITE_JWA_RS256: case INSITE_JWA_PS256: case INSITE_JWA_ES256:
        md = EVP_sha256(); break;
    case INSITE_JWA_RS384: case INSITE_JWA_ES384:
        md = EVP_sha384(); break;
    case INSITE_JWA_RS512:
        md = EVP_sha512(); break;
    default:
        break;
    }

    m = EVP_MD_CTX_new();
    assert_int_equal(EVP_DigestSignInit(m, &pctx, md, NULL, k), 1);
    if (alg == INSITE_JWA_PS256) {
        EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING);
        EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST);
    }
    assert_int_equal(EVP_DigestSign(m, der, &len,
                                    (const unsigned char *) input,
                                    strlen(input)), 1);
    EVP_MD_CTX_free(m);

    if (alg != INSITE_JWA_ES256 && alg != INSITE_JWA_ES384) {
        memcpy(sig, der, len);
        return len;
    }

    half = alg == INSITE_JWA_ES256 ? 32 : 48;
    p = der;
    es = d2i_ECDSA_SIG(NULL, &p, (long) len);
    assert_non_null(es);
    ECDSA_SIG_get0(es, &r, &s);
    BN_bn2binpad(r, sig, half);
    BN_bn2binpad(s, sig + half, half);
    ECDSA_SIG_free(es);

    return (size_t) half * 2;
}


static int
setup(void **state)
{
    rsa_key = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t) 2048);
    ec256_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    ec384_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");
    ed_key = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");

    return rsa_key && ec256_key && ec384_key && ed_key ? 0 : -1;
}


static int
teardown(void **state)
{
    EVP_PKEY_free(rsa_key);
    EVP_PKEY_free(ec256_key);
    EVP_PKEY_free(ec384_key);
    EVP_PKEY_free(ed_key);
    return 0;
}


static insite_jwks_t *
parse(const char *fmt, ...)
{
    char            doc[32768], err[256];
    va_list         ap;
    insite_jwks_t  *set;

    va_start(ap, fmt);
    vsnprintf(doc, sizeof(doc), fmt, ap);
    va_end(ap);

    set = insite_jwks_parse(doc, strlen(doc), err, sizeof(err));
    if (set == NULL) {
        print_message("parse: %s\n", err);
    }
    return set;
}


static void
expect_error(const char *doc, const char *needle)
{
    char            err[256] = "";
    insite_jwks_t  *set;

    set = insite_jwks_parse(doc, strlen(doc), err, sizeof(err));
    assert_null(set);
    if (strstr(err, needle) == NULL) {
        fail_msg("error \"%s\" lacks \"%s\"", err, needle);
    }
}


static void
test_every_algorithm_verifies(void **state)
{
    static const struct { EVP_PKEY **k; insite_jwa_e alg; const char *kid; }
        cases[] = {
        { &rsa_key, INSITE_JWA_RS256, "r" }, { &rsa_key, INSITE_JWA_RS384, "r" },
        { &rsa_key, INSITE_JWA_RS512, "r" }, { &rsa_key, INSITE_JWA_PS256, "r" },
        { &ec256_key, INSITE_JWA_ES256, "e" },
        { &ec384_key, INSITE_JWA_ES384, "f" },
        { &ed_key, INSITE_JWA_EDDSA, "d" },
    };
    const char          *input = "eyJhbGciOiJ4In0.eyJzdWIiOiJhIn0";
    unsigned char        sig[600];
    size_t               i, n;
    insite_jwks_t       *set;
    const insite_jwk_t  *key;
    insite_jwk_select_e  why;

    set = parse("{\"keys\":[%s,%s,%s,%s]}", jwk(rsa_key, ",\"kid\":\"r\""),
                jwk(ec256_key, ",\"kid\":\"e\",\"use\":\"sig\""),
                jwk(ec384_key, ",\"kid\":\"f\""), jwk(ed_key, ",\"kid\":\"d\""));
    assert_non_null(set);
    assert_int_equal(set->n, 4);

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        n = sign(*cases[i].k, cases[i].alg, input, sig);
        key = insite_jwks_select(set, cases[i].kid, 1, cases[i].alg, &why);
        assert_non_null(key);
        assert_int_equal(insite_jwk_verify(key, cases[i].alg,
                             (const unsigned char *) input, strlen(input),
                             sig, n), 1);

        /* one flipped bit anywhere: refused */
        sig[n / 2] ^= 0x01;
        assert_int_equal(insite_jwk_verify(key, cases[i].alg,
                             (const unsigned char *) input, strlen(input),
                             sig, n), 0);
        sig[n / 2] ^= 0x01;
        assert_int_equal(insite_jwk_verify(key, cases[i].alg,
                             (const unsigned char *) input,
                             strlen(input) - 1, sig, n), 0);
    }

    insite_jwks_free(set);
}


static void
test_algorithm_comes_from_the_key(void **state)
{
    const char          *input = "a.b";
    unsigned char        sig[600];
    size_t               n;
    insite_jwks_t       *set;
    const insite_jwk_t  *key;
    insite_jwk_select_e  why;

    set = parse("{\"keys\":[%s,%s,%s]}",
                jwk(rsa_key, ",\"kid\":\"r\",\"alg\":\"RS256\""),
                jwk(ec256_key, ",\"kid\":\"e\""), jwk(ed_key, ",\"kid\":\"d\""));
    assert_non_null(set);

    /* HS256, none, an unknown name: never a key */
    assert_null(insite_jwks_select(set, "r", 1, INSITE_JWA_HS256, &why));
    assert_int_equal(why, INSITE_JWK_WRONG_ALG);
    assert_null(insite_jwks_select(set, "r", 1, INSITE_JWA_UNKNOWN, &why));
    assert_int_equal(insite_jwa_parse("none", 4), INSITE_JWA_UNKNOWN);
    assert_int_equal(insite_jwa_parse("rs256", 5), INSITE_JWA_UNKNOWN);
    assert_int_equal(insite_jwa_parse("RS256\0", 6), INSITE_JWA_UNKNOWN);

    /* "alg":"RS256" on the key narrows it */
    assert_null(insite_jwks_select(set, "r", 1, INSITE_JWA_PS256, &why));
    assert_null(insite_jwks_select(set, "r", 1, INSITE_JWA_RS512, &why));
    assert_null(insite_jwks_select(set, "e", 1, INSITE_JWA_ES384, &why));
    assert_null(insite_jwks_select(set, "e", 1, INSITE_JWA_RS256, &why));
    assert_null(insite_jwks_select(set, "d", 1, INSITE_JWA_ES256, &why));
    assert_null(insite_jwks_select(set, "x", 1, INSITE_JWA_RS256, &why));
    assert_int_equal(why, INSITE_JWK_NO_KID);

    /* the verifier itself refuses an alg the key does not allow */
    key = insite_jwks_select(set, "r", 1, INSITE_JWA_RS256, &why);
    assert_non_null(key);
    n = sign(rsa_key, INSITE_JWA_PS256, input, sig);
    assert_int_equal(insite_jwk_verify(key, INSITE_JWA_PS256,
                         (const unsigned char *) input, 3, sig, n), 0);

    /* ES256 signature bytes of the wrong size, or DER instead of r||s */
    key = insite_jwks_select(set, "e", 1, INSITE_JWA_ES256, &why);
    n = sign(ec256_key, INSITE_JWA_ES256, input, sig);
    assert_int_equal(insite_jwk_verify(key, INSITE_JWA_ES256,
                         (const unsigned char *) input, 3, sig, n - 1), 0);
    assert_int_equal(insite_jwk_verify(key, INSITE_JWA_ES256,
                         (const unsigned char *) input, 3, sig, 0), 0);

    /* without kid: one key for the alg is enough, two are ambiguous */
    assert_non_null(insite_jwks_select(set, NULL, 0, INSITE_JWA_EDDSA, &why));
    assert_null(insite_jwks_select(set, NULL, 0, INSITE_JWA_ES384, &why));
    insite_jwks_free(set);

    set = parse("{\"keys\":[%s,%s]}", jwk(rsa_key, ",\"kid\":\"a\""),
                jwk(rsa_key, ",\"kid\":\"b\""));
    assert_non_null(set);
    assert_null(insite_jwks_select(set, NULL, 0, INSITE_JWA_RS256, &why));
    assert_int_equal(why, INSITE_JWK_AMBIGUOUS);
    insite_jwks_free(set);
}


static void
test_bad_sets(void **state)
{
    char  doc[8192];

    expect_error("", "invalid JSON");
    expect_error("[]", "no \"keys\"");
    expect_error("{\"keys\":{}}", "no \"keys\"");
    expect_error("{\"keys\":[]}", "no key");
    expect_error("{\"keys\":[1]}", "not a JSON object");
    expect_error("{\"keys\":[{\"kty\":\"oct\",\"k\":\"c2VjcmV0\"}]}",
                 "symmetric");
    expect_error("{\"keys\":[{\"kty\":\"RSA\",\"n\":\"AQAB\",\"e\":\"AQAB\"}]}",
                 "2048");
    expect_error("{\"keys\":[{\"kty\":\"RSA\",\"e\":\"AQAB\"}]}", "\"n\"");
    expect_error("{\"keys\":[{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"AQ\"}]}",
                 "32-byte");
    expect_error("{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\","
                 "\"x\":\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\","
                 "\"y\":\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAE\"}]}",
                 "invalid EC");
    expect_error("{\"keys\":[{\"kty\":\"RSA\",\"n\":\"A+B\",\"e\":\"AQAB\"}]}",
                 "\"n\"");

    snprintf(doc, sizeof(doc), "{\"keys\":[%s]}",
             jwk(ec256_key, ",\"alg\":\"RS256\""));
    expect_error(doc, "does not fit");
    snprintf(doc, sizeof(doc), "{\"keys\":[%s]}",
             jwk(rsa_key, ",\"alg\":\"HS256\""));
    expect_error(doc, "does not fit");
    snprintf(doc, sizeof(doc), "{\"keys\":[%s]}",
             jwk(rsa_key, ",\"alg\":\"none\""));
    expect_error(doc, "does not fit");
    snprintf(doc, sizeof(doc), "{\"keys\":[%s,%s]}",
             jwk(ec256_key, ",\"kid\":\"k\""), jwk(ed_key, ",\"kid\":\"k\""));
    expect_error(doc, "duplicate");
    snprintf(doc, sizeof(doc), "{\"keys\":[%s]}", jwk(ed_key, ",\"kid\":7"));
    expect_error(doc, "kid");
}


static void
test_skipped_keys(void **state)
{
    insite_jwks_t  *set;

    /* an encryption key and a curve we do not verify with are left out */
    set = parse("{\"keys\":[%s,{\"kty\":\"EC\",\"crv\":\"P-521\",\"x\":\"AA\","
                "\"y\":\"AA\"},{\"kty\":\"OKP\",\"crv\":\"X25519\",\"x\":\"AA\"},"
                "%s]}", jwk(rsa_key, ",\"use\":\"enc\""),
                jwk(ed_key, ",\"kid\":\"d\""));
    assert_non_null(set);
    assert_int_equal(set->n, 1);
    assert_int_equal(set->keys[0].kid_len, 1);
    insite_jwks_free(set);
}


static void
test_b64url(void **state)
{
    unsigned char  out[16];

    assert_int_equal(insite_b64url_decode("YWJj", 4, out, sizeof(out)), 3);
    assert_memory_equal(out, "abc", 3);
    assert_int_equal(insite_b64url_decode("YWI", 3, out, sizeof(out)), 2);
    assert_int_equal(insite_b64url_decode("YWJ", 3, out, sizeof(out)), -1);
    assert_int_equal(insite_b64url_decode("YWI=", 4, out, sizeof(out)), -1);
    assert_int_equal(insite_b64url_decode("YW+j", 4, out, sizeof(out)), -1);
    assert_int_equal(insite_b64url_decode("Y", 1, out, sizeof(out)), -1);
    assert_int_equal(insite_b64url_decode("YWJjYWJj", 8, out, 5), -1);
    assert_int_equal(insite_b64url_decode("", 0, out, sizeof(out)), 0);
}


static void
test_claims(void **state)
{
    char          out[128];
    long          n;
    json_t       *c;
    json_error_t  e;

    c = json_loads("{\"sub\":\"alice\",\"scope\":\"read gdpr:admin  write\","
                   "\"roles\":[\"operator\",\"viewer\"],\"n\":42,\"f\":1.5,"
                   "\"ok\":true,\"o\":{\"a\":1},\"z\":null,\"bad\":\"a\\r\\nb\","
                   "\"mix\":[\"a\",7,false],\"nest\":[[\"x\"]],\"empty\":[],"
                   "\"name\":\"John Smith\",\"scp\":\"api.read\","
                   "\"realm_access\":{\"roles\":[\"operator\"]},"
                   "\"a.b\":\"flat\",\"a\":{\"b\":\"nested\"}}", 0, &e);
    assert_non_null(c);

#define TEXT(name, want)                                                      \
    n = insite_jwt_claim_text(c, name, strlen(name), out, sizeof(out));      \
    assert_int_equal(n, (long) strlen(want));                                \
    assert_memory_equal(out, want, strlen(want))

    TEXT("sub", "alice");
    TEXT("roles", "operator viewer");
    TEXT("n", "42");
    TEXT("f", "1.5");
    TEXT("ok", "true");
    TEXT("mix", "a 7 false");
    TEXT("empty", "");
    assert_int_equal(insite_jwt_claim_text(c, "o", 1, out, sizeof(out)), -1);
    assert_int_equal(insite_jwt_claim_text(c, "z", 1, out, sizeof(out)), -1);
    assert_int_equal(insite_jwt_claim_text(c, "bad", 3, out, sizeof(out)), -1);
    assert_int_equal(insite_jwt_claim_text(c, "nest", 4, out, sizeof(out)), -1);
    assert_int_equal(insite_jwt_claim_text(c, "nope", 4, out, sizeof(out)), -1);
    assert_int_equal(insite_jwt_claim_text(c, "roles", 5, NULL, 0), 15);
    /* a short buffer gets a prefix and the full length */
    assert_int_equal(insite_jwt_claim_text(c, "roles", 5, out, 4), 15);
    assert_memory_equal(out, "oper", 4);

    assert_true(insite_jwt_claim_has(c, "scope", 5, "gdpr:admin", 10));
    assert_true(insite_jwt_claim_has(c, "scope", 5, "write", 5));
    assert_false(insite_jwt_claim_has(c, "scope", 5, "gdpr", 4));
    assert_false(insite_jwt_claim_has(c, "scope", 5, "read gdpr:admin", 15));
    assert_true(insite_jwt_claim_has(c, "scp", 3, "api.read", 8));
    assert_true(insite_jwt_claim_has(c, "roles", 5, "viewer", 6));
    assert_false(insite_jwt_claim_has(c, "roles", 5, "operator viewer", 15));
    assert_false(insite_jwt_claim_has(c, "roles", 5, "view", 4));
    assert_true(insite_jwt_claim_has(c, "n", 1, "42", 2));
    assert_true(insite_jwt_claim_has(c, "ok", 2, "true", 4));
    assert_true(insite_jwt_claim_has(c, "mix", 3, "7", 1));
    /* only scope and scp are word lists */
    assert_false(insite_jwt_claim_has(c, "name", 4, "John", 4));
    assert_true(insite_jwt_claim_has(c, "name", 4, "John Smith", 10));
    assert_false(insite_jwt_claim_has(c, "o", 1, "{}", 2));
    assert_false(insite_jwt_claim_has(c, "nope", 4, "x", 1));
    assert_false(insite_jwt_claim_has(c, "sub", 3, "", 0));

    /* dotted paths into objects; a flat name with a dot wins */
    assert_true(insite_jwt_claim_has(c, "realm_access.roles", 18,
                                     "operator", 8));
    assert_false(insite_jwt_claim_has(c, "realm_access.roles.x", 20,
                                      "operator", 8));
    assert_false(insite_jwt_claim_has(c, "realm_access.", 13, "operator", 8));
    TEXT("a.b", "flat");
    assert_int_equal(insite_jwt_claim_text(c, "sub.x", 5, out, sizeof(out)),
                     -1);

    json_decref(c);
}


int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_algorithm_verifies),
        cmocka_unit_test(test_algorithm_comes_from_the_key),
        cmocka_unit_test(test_bad_sets),
        cmocka_unit_test(test_skipped_keys),
        cmocka_unit_test(test_b64url),
        cmocka_unit_test(test_claims),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
