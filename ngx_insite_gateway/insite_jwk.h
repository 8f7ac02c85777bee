/*
 * JSON Web Keys (RFC 7517) and the JWS algorithms (RFC 7518, RFC 8037) the
 * gateway verifies, in plain C (OpenSSL, jansson; no nginx headers), so the
 * parser is unit-tested and fuzzed outside nginx.
 *
 * The rule this file exists for: the algorithm comes from the key, never
 * from the token.  A key's kty/crv (and its "alg" member when present) fix
 * the algorithms it may verify; a token header whose "alg" is not one of
 * them is refused before any cryptography, so "none", HS256 with a public
 * key as the HMAC secret, or ES256 against an RSA key cannot happen.
 */

#ifndef INSITE_JWK_H
#define INSITE_JWK_H

#include <stddef.h>
#include <jansson.h>
#include <openssl/evp.h>


typedef enum {
    INSITE_JWA_UNKNOWN = 0,
    INSITE_JWA_HS256,
    INSITE_JWA_RS256,
    INSITE_JWA_RS384,
    INSITE_JWA_RS512,
    INSITE_JWA_PS256,
    INSITE_JWA_ES256,
    INSITE_JWA_ES384,
    INSITE_JWA_EDDSA
} insite_jwa_e;

/* a bit per algorithm, for the set a key allows */
#define INSITE_JWA_BIT(a)   (1u << (a))
#define INSITE_JWA_RSA_ALL  (INSITE_JWA_BIT(INSITE_JWA_RS256)                \
                             | INSITE_JWA_BIT(INSITE_JWA_RS384)              \
                             | INSITE_JWA_BIT(INSITE_JWA_RS512)              \
                             | INSITE_JWA_BIT(INSITE_JWA_PS256))

#define INSITE_JWK_KID_MAX   256
#define INSITE_JWKS_MAX_KEYS 64
#define INSITE_JWKS_MAX_SIZE (256 * 1024)


typedef struct {
    char          kid[INSITE_JWK_KID_MAX + 1];   /* "" when absent */
    size_t        kid_len;
    unsigned      algs;        /* INSITE_JWA_BIT()s this key may verify */
    EVP_PKEY     *pkey;
} insite_jwk_t;

typedef struct {
    insite_jwk_t *keys;
    size_t        n;
} insite_jwks_t;


/* why a key was not found (insite_jwks_select) */
typedef enum {
    INSITE_JWK_FOUND = 0,
    INSITE_JWK_NO_KID,        /* no key with this kid */
    INSITE_JWK_WRONG_ALG,     /* the kid's key does not allow this alg */
    INSITE_JWK_AMBIGUOUS      /* no kid, and not exactly one key for alg */
} insite_jwk_select_e;


/* "RS256" -> INSITE_JWA_RS256; INSITE_JWA_UNKNOWN for anything else */
insite_jwa_e insite_jwa_parse(const char *name, size_t len);
const char *insite_jwa_name(insite_jwa_e alg);

/*
 * Parses a JWKS document ({"keys":[...]}) into public keys.  Keys of a
 * type this file does not know, or marked "use":"enc", are skipped (RFC
 * 7517 section 5); a malformed key of a known type, a symmetric ("oct")
 * key, an RSA modulus under 2048 bits, a duplicate kid, or a set with no
 * usable key is an error described in err.  NULL on error.
 */
insite_jwks_t *insite_jwks_parse(const char *json, size_t len, char *err,
    size_t errlen);
void insite_jwks_free(insite_jwks_t *set);

/*
 * The key for a token: by kid when the token has one; without a kid only
 * when exactly one key of the set allows alg.
 */
const insite_jwk_t *insite_jwks_select(const insite_jwks_t *set,
    const char *kid, size_t kid_len, insite_jwa_e alg,
    insite_jwk_select_e *why);

/*
 * 1 when sig is the signature of input under key with alg, 0 otherwise
 * (alg not allowed by the key included).  ES256/ES384 signatures are JOSE's
 * fixed-size r||s, converted to DER for OpenSSL here.
 */
int insite_jwk_verify(const insite_jwk_t *key, insite_jwa_e alg,
    const unsigned char *input, size_t input_len, const unsigned char *sig,
    size_t sig_len);

/* strict base64url without padding; returns the length or -1 */
long insite_b64url_decode(const char *in, size_t len, unsigned char *out,
    size_t out_size);


/*
 * Claims.  The text of a claim as a variable shows it: a string as is, a
 * number as JSON writes it, true/false, an array of those joined by single
 * spaces.  Objects, null, nested arrays and any value with a control
 * character (it would end up in a header) have no text: -1.  Otherwise the
 * length, with at most out_size bytes written (call with out == NULL to
 * learn the length).
 */
long insite_jwt_claim_text(json_t *claims, const char *name, size_t name_len,
    char *out, size_t out_size);

/*
 * 1 when the claim holds value: a string equal to it, a number or boolean
 * whose text is equal to it, an array with such an element, or, for the
 * space-separated OAuth claims "scope" and "scp", a string with it as one
 * of its words.
 */
int insite_jwt_claim_has(json_t *claims, const char *name, size_t name_len,
    const char *value, size_t value_len);


#endif /* INSITE_JWK_H */
