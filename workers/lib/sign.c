#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/pem.h>

#include "log.h"
#include "sign.h"

int insite_sign(void *pkey, const char *msg, size_t len, char sig[INSITE_SIG_HEX])
{
    unsigned char raw[64];
    size_t n = sizeof(raw);
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ok = ctx && EVP_DigestSignInit(ctx, NULL, NULL, NULL, pkey) == 1
             && EVP_DigestSign(ctx, raw, &n, (const unsigned char *)msg, len) == 1 && n == 64;
    EVP_MD_CTX_free(ctx);
    if (!ok)
        return -1;
    for (size_t i = 0; i < 64; i++)
        snprintf(sig + 2 * i, 3, "%02x", raw[i]);
    return 0;
}

int insite_sign_verify(void *pkey, const char *msg, size_t len, const char *sighex)
{
    unsigned char raw[64];
    if (sighex == NULL || strlen(sighex) != 128)
        return -1;
    for (int i = 0; i < 64; i++) {
        unsigned v;
        if (sscanf(sighex + 2 * i, "%2x", &v) != 1)
            return -1;
        raw[i] = (unsigned char)v;
    }
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ok = ctx && EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, pkey) == 1
             && EVP_DigestVerify(ctx, raw, 64, (const unsigned char *)msg, len) == 1;
    EVP_MD_CTX_free(ctx);
    return ok ? 0 : -1;
}

void *insite_sign_load_key(const char *path, int private_key, const char *what)
{
    FILE *f = fopen(path, "r");
    EVP_PKEY *k;
    if (f == NULL) {
        insite_log_error("%s key %s: %s", what, path, strerror(errno));
        return NULL;
    }
    k = private_key ? PEM_read_PrivateKey(f, NULL, NULL, NULL) : PEM_read_PUBKEY(f, NULL, NULL, NULL);
    fclose(f);
    if (k == NULL || EVP_PKEY_id(k) != EVP_PKEY_ED25519) {
        insite_log_error("%s key %s: not an Ed25519 %s key in PEM", what, path,
                         private_key ? "private" : "public");
        EVP_PKEY_free(k);
        return NULL;
    }
    return k;
}

void insite_sign_free(void *pkey)
{
    EVP_PKEY_free(pkey);
}
