/*
 * The audit journal's hash chain: see insite_gdpr_chain.h.
 */

#include <string.h>

#include <openssl/evp.h>

#include "insite_gdpr_chain.h"
#include "insite_gdpr_json.h"


static int
insite_gdpr_is_hex(const char *p, size_t n)
{
    size_t  i;

    for (i = 0; i < n; i++) {
        if (!((p[i] >= '0' && p[i] <= '9') || (p[i] >= 'a' && p[i] <= 'f'))) {
            return 0;
        }
    }

    return 1;
}


int
insite_gdpr_hash(const char *prev_hash, const char *body, size_t len,
    char *out)
{
    unsigned int    n;
    unsigned char   md[EVP_MAX_MD_SIZE];
    int             ok;

    /* One context and one fetched SHA-256 per thread, reused: this runs
     * once per audited request, and EVP_sha256() would look the
     * implementation up in the provider at every EVP_DigestInit_ex(). */
    static __thread EVP_MD_CTX  *ctx;
    static __thread EVP_MD      *sha256;

    if (ctx == NULL) {
        sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
        ctx = EVP_MD_CTX_new();
        if (sha256 == NULL || ctx == NULL) {
            EVP_MD_free(sha256);
            EVP_MD_CTX_free(ctx);
            sha256 = NULL;
            ctx = NULL;
            return -1;
        }
    }

    ok = EVP_DigestInit_ex(ctx, sha256, NULL)
         && EVP_DigestUpdate(ctx, prev_hash, INSITE_GDPR_HASH_LEN)
         && EVP_DigestUpdate(ctx, body, len)
         && EVP_DigestFinal_ex(ctx, md, &n);

    if (!ok || n != 32) {
        return -1;
    }

    (void) insite_gdpr_json_hex(out, md, 32);

    return 0;
}


int
insite_gdpr_line_parse(const char *line, size_t len, insite_gdpr_line_t *out)
{
    static const char   tail[] = ",\"hash\":\"";
    static const char   prev[] = ",\"prev_hash\":\"";
    static const char   seq[] = ",\"seq\":";
    const char         *p, *end;
    uint64_t            v;
    size_t              body;

    if (len < INSITE_GDPR_TAIL_LEN + 64 || line[0] != '{'
        || line[len - 1] != '}' || line[len - 2] != '"')
    {
        return INSITE_GDPR_EFORMAT;
    }

    body = len - INSITE_GDPR_TAIL_LEN;

    if (memcmp(line + body, tail, sizeof(tail) - 1) != 0
        || !insite_gdpr_is_hex(line + body + 9, INSITE_GDPR_HASH_LEN))
    {
        return INSITE_GDPR_EFORMAT;
    }

    /* ,"prev_hash":"<64>" ends the body */
    if (body < sizeof(prev) - 1 + INSITE_GDPR_HASH_LEN + 1 + sizeof(seq)) {
        return INSITE_GDPR_EFORMAT;
    }

    p = line + body - 1 - INSITE_GDPR_HASH_LEN - (sizeof(prev) - 1);

    if (line[body - 1] != '"'
        || memcmp(p, prev, sizeof(prev) - 1) != 0
        || !insite_gdpr_is_hex(p + sizeof(prev) - 1, INSITE_GDPR_HASH_LEN))
    {
        return INSITE_GDPR_EFORMAT;
    }

    out->prev_hash = p + sizeof(prev) - 1;
    out->hash = line + body + 9;
    out->body_len = body;

    /* ,"seq":<digits> just before */
    end = p;
    for (p = end; p > line && p[-1] >= '0' && p[-1] <= '9'; p--) {
        /* void */
    }

    if (p == end || end - p > 19
        || (size_t) (p - line) < sizeof(seq) - 1
        || memcmp(p - (sizeof(seq) - 1), seq, sizeof(seq) - 1) != 0)
    {
        return INSITE_GDPR_EFORMAT;
    }

    for (v = 0; p < end; p++) {
        v = v * 10 + (uint64_t) (*p - '0');
    }

    out->seq = v;

    return INSITE_GDPR_OK;
}


int
insite_gdpr_line_check(const char *line, size_t len, const char *prev,
    uint64_t prev_seq, insite_gdpr_line_t *out)
{
    int   rc;
    char  h[INSITE_GDPR_HASH_LEN];

    rc = insite_gdpr_line_parse(line, len, out);
    if (rc != INSITE_GDPR_OK) {
        return rc;
    }

    if (insite_gdpr_hash(out->prev_hash, line, out->body_len, h) != 0
        || memcmp(h, out->hash, INSITE_GDPR_HASH_LEN) != 0)
    {
        return INSITE_GDPR_EHASH;
    }

    if (prev == NULL) {
        return INSITE_GDPR_OK;
    }

    if (memcmp(prev, out->prev_hash, INSITE_GDPR_HASH_LEN) != 0) {
        return INSITE_GDPR_EPREV;
    }

    if (out->seq != prev_seq + 1) {
        return INSITE_GDPR_ESEQ;
    }

    return INSITE_GDPR_OK;
}


const char *
insite_gdpr_strerror(int rc)
{
    switch (rc) {
    case INSITE_GDPR_OK:
        return "ok";
    case INSITE_GDPR_EFORMAT:
        return "not a journal record";
    case INSITE_GDPR_EHASH:
        return "hash does not match the record";
    case INSITE_GDPR_EPREV:
        return "prev_hash does not match the previous record";
    case INSITE_GDPR_ESEQ:
        return "seq does not follow the previous record";
    }

    return "unknown error";
}
