/*
 * JWKS parsing, key selection and JWS signature verification: see
 * insite_jwk.h for the contract.
 */

#include "insite_jwk.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ecdsa.h>
#include <openssl/param_build.h>
#include <openssl/rsa.h>


static const struct {
    const char    *name;
    insite_jwa_e   alg;
} insite_jwa_names[] = {
    { "HS256", INSITE_JWA_HS256 },
    { "RS256", INSITE_JWA_RS256 },
    { "RS384", INSITE_JWA_RS384 },
    { "RS512", INSITE_JWA_RS512 },
    { "PS256", INSITE_JWA_PS256 },
    { "ES256", INSITE_JWA_ES256 },
    { "ES384", INSITE_JWA_ES384 },
    { "EdDSA", INSITE_JWA_EDDSA },
    { NULL, INSITE_JWA_UNKNOWN }
};


insite_jwa_e
insite_jwa_parse(const char *name, size_t len)
{
    size_t  i;

    for (i = 0; insite_jwa_names[i].name; i++) {
        if (strlen(insite_jwa_names[i].name) == len
            && memcmp(insite_jwa_names[i].name, name, len) == 0)
        {
            return insite_jwa_names[i].alg;
        }
    }

    return INSITE_JWA_UNKNOWN;
}


const char *
insite_jwa_name(insite_jwa_e alg)
{
    size_t  i;

    for (i = 0; insite_jwa_names[i].name; i++) {
        if (insite_jwa_names[i].alg == alg) {
            return insite_jwa_names[i].name;
        }
    }

    return "unknown";
}


long
insite_b64url_decode(const char *in, size_t len, unsigned char *out,
    size_t out_size)
{
    size_t    i, n;
    unsigned  acc, bits, c;

    if (len % 4 == 1) {
        return -1;
    }

    acc = 0;
    bits = 0;
    n = 0;

    for (i = 0; i < len; i++) {
        c = (unsigned char) in[i];

        if (c >= 'A' && c <= 'Z') {
            c -= 'A';
        } else if (c >= 'a' && c <= 'z') {
            c = c - 'a' + 26;
        } else if (c >= '0' && c <= '9') {
            c = c - '0' + 52;
        } else if (c == '-') {
            c = 62;
        } else if (c == '_') {
            c = 63;
        } else {
            return -1;
        }

        acc = (acc << 6) | c;
        bits += 6;

        if (bits >= 8) {
            bits -= 8;
            if (n == out_size) {
                return -1;
            }
            out[n++] = (unsigned char) (acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }

    /* one encoding per value: the unused trailing bits must be zero */
    if (acc != 0) {
        return -1;
    }

    return (long) n;
}


/* a base64url member of a JWK, decoded into a malloc()ed buffer */

static unsigned char *
insite_jwk_member(json_t *jwk, const char *name, size_t *len)
{
    json_t         *v;
    size_t          n;
    long            r;
    unsigned char  *buf;

    v = json_object_get(jwk, name);
    if (!json_is_string(v)) {
        return NULL;
    }

    n = json_string_length(v);
    if (n == 0 || n > 4096) {
        return NULL;
    }

    buf = malloc(n);
    if (buf == NULL) {
        return NULL;
    }

    r = insite_b64url_decode(json_string_value(v), n, buf, n);
    if (r <= 0) {
        free(buf);
        return NULL;
    }

    *len = (size_t) r;
    return buf;
}


static EVP_PKEY *
insite_jwk_fromdata(const char *type, OSSL_PARAM_BLD *bld)
{
    EVP_PKEY      *pkey, *ret;
    OSSL_PARAM    *params;
    EVP_PKEY_CTX  *ctx, *check;

    pkey = NULL;
    ret = NULL;
    check = NULL;

    params = OSSL_PARAM_BLD_to_param(bld);
    ctx = EVP_PKEY_CTX_new_from_name(NULL, type, NULL);

    if (params == NULL || ctx == NULL
        || EVP_PKEY_fromdata_init(ctx) <= 0
        || EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) <= 0)
    {
        goto done;
    }

    /* a point not on the curve, an even modulus: refuse it here */
    check = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
    if (check == NULL || EVP_PKEY_public_check(check) <= 0) {
        goto done;
    }

    ret = pkey;
    pkey = NULL;

done:

    EVP_PKEY_CTX_free(check);
    EVP_PKEY_free(pkey);
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);

    return ret;
}


static EVP_PKEY *
insite_jwk_rsa(json_t *jwk, const char **why)
{
    size_t           nlen, elen;
    BIGNUM          *n, *e;
    EVP_PKEY        *pkey;
    unsigned char   *nb, *eb;
    OSSL_PARAM_BLD  *bld;

    pkey = NULL;
    n = NULL;
    e = NULL;
    bld = NULL;

    nb = insite_jwk_member(jwk, "n", &nlen);
    eb = insite_jwk_member(jwk, "e", &elen);

    if (nb == NULL || eb == NULL) {
        *why = "an RSA key needs base64url \"n\" and \"e\"";
        goto done;
    }

    n = BN_bin2bn(nb, (int) nlen, NULL);
    e = BN_bin2bn(eb, (int) elen, NULL);

    if (n == NULL || e == NULL) {
        *why = "out of memory";
        goto done;
    }

    if (BN_num_bits(n) < 2048) {
        *why = "an RSA modulus under 2048 bits";
        goto done;
    }

    bld = OSSL_PARAM_BLD_new();
    if (bld == NULL
        || !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n)
        || !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e))
    {
        *why = "out of memory";
        goto done;
    }

    pkey = insite_jwk_fromdata("RSA", bld);
    if (pkey == NULL) {
        *why = "an invalid RSA public key";
    }

done:

    OSSL_PARAM_BLD_free(bld);
    BN_free(n);
    BN_free(e);
    free(nb);
    free(eb);

    return pkey;
}


static EVP_PKEY *
insite_jwk_ec(json_t *jwk, size_t size, const char *group, const char **why)
{
    size_t           xlen, ylen;
    EVP_PKEY        *pkey;
    unsigned char   *xb, *yb;
    unsigned char    point[1 + 2 * 66];
    OSSL_PARAM_BLD  *bld;

    pkey = NULL;
    bld = NULL;

    xb = insite_jwk_member(jwk, "x", &xlen);
    yb = insite_jwk_member(jwk, "y", &ylen);

    /* RFC 7518 6.2.1.2: the full size of the field, leading zeros kept */
    if (xb == NULL || yb == NULL || xlen != size || ylen != size) {
        *why = "an EC key needs \"x\" and \"y\" of the curve's size";
        goto done;
    }

    point[0] = 0x04;
    memcpy(point + 1, xb, size);
    memcpy(point + 1 + size, yb, size);

    bld = OSSL_PARAM_BLD_new();
    if (bld == NULL
        || !OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME,
                                            group, 0)
        || !OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY,
                                             point, 1 + 2 * size))
    {
        *why = "out of memory";
        goto done;
    }

    pkey = insite_jwk_fromdata("EC", bld);
    if (pkey == NULL) {
        *why = "an invalid EC public key (not on the curve?)";
    }

done:

    OSSL_PARAM_BLD_free(bld);
    free(xb);
    free(yb);

    return pkey;
}


static EVP_PKEY *
insite_jwk_ed25519(json_t *jwk, const char **why)
{
    size_t          xlen;
    EVP_PKEY       *pkey;
    unsigned char  *xb;

    xb = insite_jwk_member(jwk, "x", &xlen);

    if (xb == NULL || xlen != 32) {
        free(xb);
        *why = "an Ed25519 key needs a 32-byte \"x\"";
        return NULL;
    }

    pkey = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, xb, xlen);
    free(xb);

    if (pkey == NULL) {
        *why = "an invalid Ed25519 public key";
    }

    return pkey;
}


/*
 * One JWK: 1 parsed into key, 0 skipped (a type or use we do not verify
 * with), -1 an error (why).
 */

static int
insite_jwk_parse_one(json_t *jwk, insite_jwk_t *key, const char **why)
{
    json_t        *v;
    const char    *kty, *crv, *s;
    unsigned       allowed;
    insite_jwa_e   alg;

    if (!json_is_object(jwk)) {
        *why = "a key is not a JSON object";
        return -1;
    }

    v = json_object_get(jwk, "kty");
    if (!json_is_string(v)) {
        *why = "a key has no \"kty\"";
        return -1;
    }

    kty = json_string_value(v);

    v = json_object_get(jwk, "use");
    if (v != NULL) {
        if (!json_is_string(v)) {
            *why = "a key's \"use\" is not a string";
            return -1;
        }

        if (strcmp(json_string_value(v), "sig") != 0) {
            return 0;
        }
    }

    v = json_object_get(jwk, "crv");
    crv = json_is_string(v) ? json_string_value(v) : "";

    memset(key, 0, sizeof(*key));

    if (strcmp(kty, "RSA") == 0) {
        allowed = INSITE_JWA_RSA_ALL;
        key->pkey = insite_jwk_rsa(jwk, why);

    } else if (strcmp(kty, "EC") == 0 && strcmp(crv, "P-256") == 0) {
        allowed = INSITE_JWA_BIT(INSITE_JWA_ES256);
        key->pkey = insite_jwk_ec(jwk, 32, "prime256v1", why);

    } else if (strcmp(kty, "EC") == 0 && strcmp(crv, "P-384") == 0) {
        allowed = INSITE_JWA_BIT(INSITE_JWA_ES384);
        key->pkey = insite_jwk_ec(jwk, 48, "secp384r1", why);

    } else if (strcmp(kty, "OKP") == 0 && strcmp(crv, "Ed25519") == 0) {
        allowed = INSITE_JWA_BIT(INSITE_JWA_EDDSA);
        key->pkey = insite_jwk_ed25519(jwk, why);

    } else if (strcmp(kty, "oct") == 0) {
        /* a shared secret published as a key is a configuration mistake */
        *why = "a symmetric (\"oct\") key in a key set";
        return -1;

    } else {
        /* P-521, Ed448, a future kty: not ours to verify with */
        return 0;
    }

    if (key->pkey == NULL) {
        return -1;
    }

    /* "alg" narrows the key to one algorithm; it never widens it */

    v = json_object_get(jwk, "alg");
    if (v != NULL) {
        s = json_is_string(v) ? json_string_value(v) : "";
        alg = insite_jwa_parse(s, strlen(s));

        if (alg == INSITE_JWA_UNKNOWN || !(allowed & INSITE_JWA_BIT(alg))) {
            EVP_PKEY_free(key->pkey);
            key->pkey = NULL;
            *why = "a key's \"alg\" does not fit its key type";
            return -1;
        }

        allowed = INSITE_JWA_BIT(alg);
    }

    key->algs = allowed;

    v = json_object_get(jwk, "kid");
    if (v != NULL) {
        if (!json_is_string(v) || json_string_length(v) == 0
            || json_string_length(v) > INSITE_JWK_KID_MAX)
        {
            EVP_PKEY_free(key->pkey);
            key->pkey = NULL;
            *why = "a key's \"kid\" is not a string of 1 to 256 bytes";
            return -1;
        }

        key->kid_len = json_string_length(v);
        memcpy(key->kid, json_string_value(v), key->kid_len);
    }

    return 1;
}


insite_jwks_t *
insite_jwks_parse(const char *json, size_t len, char *err, size_t errlen)
{
    int             rc;
    size_t          i, j, n;
    json_t         *root, *keys;
    const char     *why;
    json_error_t    jerr;
    insite_jwks_t  *set;

    set = NULL;
    why = NULL;

    if (len > INSITE_JWKS_MAX_SIZE) {
        snprintf(err, errlen, "larger than %d bytes", INSITE_JWKS_MAX_SIZE);
        return NULL;
    }

    root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        snprintf(err, errlen, "invalid JSON: %s (line %d)", jerr.text,
                 jerr.line);
        return NULL;
    }

    keys = json_object_get(root, "keys");
    if (!json_is_array(keys)) {
        why = "no \"keys\" array";
        goto failed;
    }

    n = json_array_size(keys);
    if (n > INSITE_JWKS_MAX_KEYS) {
        why = "more than 64 keys";
        goto failed;
    }

    set = calloc(1, sizeof(insite_jwks_t));
    if (set == NULL || (n && (set->keys = calloc(n, sizeof(insite_jwk_t)))
                             == NULL))
    {
        why = "out of memory";
        goto failed;
    }

    for (i = 0; i < n; i++) {
        rc = insite_jwk_parse_one(json_array_get(keys, i), &set->keys[set->n],
                                  &why);
        if (rc < 0) {
            snprintf(err, errlen, "key #%zu: %s", i + 1, why);
            why = NULL;
            goto failed;
        }

        if (rc == 0) {
            continue;
        }

        for (j = 0; j < set->n; j++) {
            if (set->keys[j].kid_len
                && set->keys[j].kid_len == set->keys[set->n].kid_len
                && memcmp(set->keys[j].kid, set->keys[set->n].kid,
                          set->keys[j].kid_len) == 0)
            {
                EVP_PKEY_free(set->keys[set->n].pkey);
                snprintf(err, errlen, "key #%zu: duplicate \"kid\"", i + 1);
                why = NULL;
                goto failed;
            }
        }

        set->n++;
    }

    if (set->n == 0) {
        why = "no key this gateway can verify with (RSA, EC P-256/P-384, "
              "Ed25519)";
        goto failed;
    }

    json_decref(root);
    return set;

failed:

    if (why) {
        snprintf(err, errlen, "%s", why);
    }

    json_decref(root);
    insite_jwks_free(set);

    return NULL;
}


void
insite_jwks_free(insite_jwks_t *set)
{
    size_t  i;

    if (set == NULL) {
        return;
    }

    for (i = 0; i < set->n; i++) {
        EVP_PKEY_free(set->keys[i].pkey);
    }

    free(set->keys);
    free(set);
}


const insite_jwk_t *
insite_jwks_select(const insite_jwks_t *set, const char *kid, size_t kid_len,
    insite_jwa_e alg, insite_jwk_select_e *why)
{
    size_t               i;
    const insite_jwk_t  *found;

    found = NULL;

    if (kid_len) {
        for (i = 0; i < set->n; i++) {
            if (set->keys[i].kid_len == kid_len
                && memcmp(set->keys[i].kid, kid, kid_len) == 0)
            {
                found = &set->keys[i];
                break;
            }
        }

        if (found == NULL) {
            *why = INSITE_JWK_NO_KID;
            return NULL;
        }

        if (alg == INSITE_JWA_UNKNOWN
            || !(found->algs & INSITE_JWA_BIT(alg)))
        {
            *why = INSITE_JWK_WRONG_ALG;
            return NULL;
        }

        *why = INSITE_JWK_FOUND;
        return found;
    }

    if (alg == INSITE_JWA_UNKNOWN) {
        *why = INSITE_JWK_WRONG_ALG;
        return NULL;
    }

    for (i = 0; i < set->n; i++) {
        if (set->keys[i].algs & INSITE_JWA_BIT(alg)) {
            if (found) {
                *why = INSITE_JWK_AMBIGUOUS;
                return NULL;
            }

            found = &set->keys[i];
        }
    }

    *why = found ? INSITE_JWK_FOUND : INSITE_JWK_AMBIGUOUS;
    return found;
}


/* JOSE r||s to the DER ECDSA-Sig-Value OpenSSL verifies; NULL if bad */

static unsigned char *
insite_jwk_ecdsa_der(const unsigned char *sig, size_t half, int *der_len)
{
    int             n;
    BIGNUM         *r, *s;
    ECDSA_SIG      *es;
    unsigned char  *der, *p;

    r = BN_bin2bn(sig, (int) half, NULL);
    s = BN_bin2bn(sig + half, (int) half, NULL);
    es = ECDSA_SIG_new();

    if (r == NULL || s == NULL || es == NULL) {
        BN_free(r);
        BN_free(s);
        ECDSA_SIG_free(es);
        return NULL;
    }

    ECDSA_SIG_set0(es, r, s);    /* es owns r and s now */

    der = NULL;
    n = i2d_ECDSA_SIG(es, NULL);

    if (n > 0 && (der = malloc((size_t) n)) != NULL) {
        p = der;
        *der_len = i2d_ECDSA_SIG(es, &p);
    }

    ECDSA_SIG_free(es);

    return der;
}


int
insite_jwk_verify(const insite_jwk_t *key, insite_jwa_e alg,
    const unsigned char *input, size_t input_len, const unsigned char *sig,
    size_t sig_len)
{
    int             ok, der_len;
    const EVP_MD   *md;
    EVP_MD_CTX     *mctx;
    EVP_PKEY_CTX   *pctx;
    unsigned char  *der;

    if (key == NULL || key->pkey == NULL || !(key->algs & INSITE_JWA_BIT(alg)))
    {
        return 0;
    }

    md = NULL;
    der = NULL;

    switch (alg) {
    case INSITE_JWA_RS256:
    case INSITE_JWA_PS256:
    case INSITE_JWA_ES256:
        md = EVP_sha256();
        break;
    case INSITE_JWA_RS384:
    case INSITE_JWA_ES384:
        md = EVP_sha384();
        break;
    case INSITE_JWA_RS512:
        md = EVP_sha512();
        break;
    case INSITE_JWA_EDDSA:
        break;
    default:
        return 0;
    }

    if (alg == INSITE_JWA_ES256 || alg == INSITE_JWA_ES384) {
        if (sig_len != (alg == INSITE_JWA_ES256 ? 64 : 96)) {
            return 0;
        }

        der = insite_jwk_ecdsa_der(sig, sig_len / 2, &der_len);
        if (der == NULL || der_len <= 0) {
            free(der);
            return 0;
        }

        sig = der;
        sig_len = (size_t) der_len;
    }

    ok = 0;

    mctx = EVP_MD_CTX_new();
    if (mctx == NULL) {
        free(der);
        return 0;
    }

    pctx = NULL;

    if (EVP_DigestVerifyInit(mctx, &pctx, md, NULL, key->pkey) != 1) {
        goto done;
    }

    if (alg == INSITE_JWA_PS256
        && (EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) <= 0
            || EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST)
               <= 0))
    {
        goto done;
    }

    ok = EVP_DigestVerify(mctx, sig, sig_len, input, input_len) == 1;

done:

    EVP_MD_CTX_free(mctx);
    free(der);

    return ok;
}


/* claims */


static json_t *
insite_jwt_member(json_t *obj, const char *name, size_t name_len)
{
    const char  *k;
    json_t      *v;

    if (!json_is_object(obj)) {
        return NULL;
    }

    /* names may hold any byte: no NUL-terminated lookup */
    json_object_foreach(obj, k, v) {
        if (strlen(k) == name_len && memcmp(k, name, name_len) == 0) {
            return v;
        }
    }

    return NULL;
}


/*
 * A top-level claim by its full name ("cognito:groups", "a.b" too); if
 * there is none, a dotted name is a path into objects, as Keycloak nests
 * its roles ("realm_access.roles").
 */

static json_t *
insite_jwt_claim(json_t *claims, const char *name, size_t name_len)
{
    json_t      *v;
    const char  *dot, *end;

    v = insite_jwt_member(claims, name, name_len);
    if (v != NULL || memchr(name, '.', name_len) == NULL) {
        return v;
    }

    v = claims;
    end = name + name_len;

    while (v != NULL && name < end) {
        dot = memchr(name, '.', (size_t) (end - name));
        if (dot == NULL) {
            dot = end;
        }

        v = insite_jwt_member(v, name, (size_t) (dot - name));
        name = dot + 1;
    }

    return v;
}


/* a scalar's text into buf (at least 32 bytes); length, or -1 */

static long
insite_jwt_scalar(json_t *v, const char **text, char *buf, size_t size)
{
    size_t  i, n;
    int     r;

    switch (json_typeof(v)) {

    case JSON_STRING:
        n = json_string_length(v);
        *text = json_string_value(v);

        for (i = 0; i < n; i++) {
            if ((unsigned char) (*text)[i] < 0x20 || (*text)[i] == 0x7f) {
                return -1;
            }
        }

        return (long) n;

    case JSON_INTEGER:
        r = snprintf(buf, size, "%" JSON_INTEGER_FORMAT,
                     json_integer_value(v));
        break;

    case JSON_REAL:
        r = snprintf(buf, size, "%.17g", json_real_value(v));
        break;

    case JSON_TRUE:
        r = snprintf(buf, size, "true");
        break;

    case JSON_FALSE:
        r = snprintf(buf, size, "false");
        break;

    default:
        return -1;
    }

    if (r < 0 || (size_t) r >= size) {
        return -1;
    }

    *text = buf;
    return r;
}


long
insite_jwt_claim_text(json_t *claims, const char *name, size_t name_len,
    char *out, size_t out_size)
{
    long         n;
    size_t       i, total;
    json_t      *v, *e;
    const char  *text;
    char         buf[64];

    v = insite_jwt_claim(claims, name, name_len);
    if (v == NULL) {
        return -1;
    }

    if (!json_is_array(v)) {
        n = insite_jwt_scalar(v, &text, buf, sizeof(buf));
        if (n < 0) {
            return -1;
        }

        if (out) {
            memcpy(out, text, (size_t) n < out_size ? (size_t) n : out_size);
        }

        return n;
    }

    total = 0;

    json_array_foreach(v, i, e) {
        n = insite_jwt_scalar(e, &text, buf, sizeof(buf));
        if (n < 0) {
            return -1;
        }

        if (i > 0) {
            if (out && total < out_size) {
                out[total] = ' ';
            }
            total++;
        }

        if (out && total < out_size) {
            memcpy(out + total, text,
                   (size_t) n < out_size - total ? (size_t) n
                                                 : out_size - total);
        }

        total += (size_t) n;
    }

    return (long) total;
}


static int
insite_jwt_words_have(const char *s, size_t len, const char *value,
    size_t value_len)
{
    size_t  i, start;

    start = 0;

    for (i = 0; i <= len; i++) {
        if (i == len || s[i] == ' ') {
            if (i - start == value_len
                && memcmp(s + start, value, value_len) == 0)
            {
                return 1;
            }

            start = i + 1;
        }
    }

    return 0;
}


int
insite_jwt_claim_has(json_t *claims, const char *name, size_t name_len,
    const char *value, size_t value_len)
{
    int          words;
    long         n;
    size_t       i;
    json_t      *v, *e;
    const char  *text;
    char         buf[64];

    v = insite_jwt_claim(claims, name, name_len);
    if (v == NULL || value_len == 0) {
        return 0;
    }

    words = (name_len == 5 && memcmp(name, "scope", 5) == 0)
            || (name_len == 3 && memcmp(name, "scp", 3) == 0);

    if (!json_is_array(v)) {
        n = insite_jwt_scalar(v, &text, buf, sizeof(buf));
        if (n < 0) {
            return 0;
        }

        if (words && json_is_string(v)) {
            return insite_jwt_words_have(text, (size_t) n, value, value_len);
        }

        return (size_t) n == value_len && memcmp(text, value, value_len) == 0;
    }

    json_array_foreach(v, i, e) {
        n = insite_jwt_scalar(e, &text, buf, sizeof(buf));

        if (n >= 0 && (size_t) n == value_len
            && memcmp(text, value, value_len) == 0)
        {
            return 1;
        }
    }

    return 0;
}
