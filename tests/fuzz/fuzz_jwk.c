/*
 * Fuzzing of the JWKS parser, key selection, JWS verification and claim
 * extraction (ngx_insite_gateway/insite_jwk.c): a key set comes from the
 * network (the IdP's jwks_uri), claims from any client after a signature
 * check.  Invariants: no crash or leak (ASan), a parsed key always has an
 * algorithm and a key, base64url decoding round-trips its own output, and
 * a claim's text never holds a control character (it goes into headers).
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "insite_jwk.h"


static void
fuzz_claims(const uint8_t *data, size_t size)
{
    static const char  *names[] = { "scope", "scp", "roles", "sub", "aud",
                                    "realm_access.roles", "a..b", "." };
    long                n, m;
    size_t              i, k;
    char               *buf;
    json_t             *claims;
    json_error_t        err;

    claims = json_loadb((const char *) data, size, 0, &err);
    if (claims == NULL) {
        return;
    }

    for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        n = insite_jwt_claim_text(claims, names[i], strlen(names[i]), NULL, 0);
        if (n < 0) {
            continue;
        }

        buf = malloc((size_t) n + 1);
        if (buf == NULL) {
            break;
        }

        m = insite_jwt_claim_text(claims, names[i], strlen(names[i]), buf,
                                  (size_t) n);
        if (m != n) {
            abort();
        }

        for (k = 0; k < (size_t) n; k++) {
            if ((unsigned char) buf[k] < 0x20 || buf[k] == 0x7f) {
                abort();
            }
        }

        (void) insite_jwt_claim_has(claims, names[i], strlen(names[i]), buf,
                                    (size_t) n);
        (void) insite_jwt_claim_has(claims, names[i], strlen(names[i]),
                                    "gdpr:admin", 10);
        free(buf);
    }

    json_decref(claims);
}


static void
fuzz_b64url(const uint8_t *data, size_t size)
{
    long            n;
    unsigned char  *out;

    out = malloc(size + 1);
    if (out == NULL) {
        return;
    }

    n = insite_b64url_decode((const char *) data, size, out, size);
    if (n >= 0 && (size_t) n > size) {
        abort();
    }

    free(out);
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char                 err[256];
    size_t               i;
    insite_jwa_e         alg;
    insite_jwks_t       *set;
    const insite_jwk_t  *key;
    insite_jwk_select_e  why;
    unsigned char        sig[96];

    fuzz_claims(data, size);
    fuzz_b64url(data, size);

    set = insite_jwks_parse((const char *) data, size, err, sizeof(err));
    if (set == NULL) {
        return 0;
    }

    if (set->n == 0) {
        abort();
    }

    memset(sig, 0x41, sizeof(sig));

    for (i = 0; i < set->n; i++) {
        if (set->keys[i].pkey == NULL || set->keys[i].algs == 0) {
            abort();
        }

        for (alg = INSITE_JWA_HS256; alg <= INSITE_JWA_EDDSA; alg++) {
            key = insite_jwks_select(set, set->keys[i].kid,
                                     set->keys[i].kid_len, alg, &why);
            if (key && !(key->algs & INSITE_JWA_BIT(alg))) {
                abort();
            }

            /* a signature of junk never verifies */
            if (insite_jwk_verify(&set->keys[i], alg, data, size, sig,
                                  alg == INSITE_JWA_ES384 ? 96 : 64))
            {
                abort();
            }
        }
    }

    (void) insite_jwks_select(set, NULL, 0, INSITE_JWA_RS256, &why);
    insite_jwks_free(set);

    return 0;
}
