/* Ed25519 signatures over exact text, hex-encoded: the one signing
 * mechanism of the workers (insite-auditd checkpoints, insite-gdpr erasure
 * receipts).  Keys are PEM files (openssl genpkey -algorithm ed25519). */
#ifndef INSITE_SIGN_H
#define INSITE_SIGN_H

#include <stddef.h>

#define INSITE_SIG_HEX 129      /* 128 hex chars + NUL */

/* An EVP_PKEY * (as void *, so callers need no OpenSSL header), or NULL
 * (logged with what and path).  Free with insite_sign_free(). */
void *insite_sign_load_key(const char *path, int private_key, const char *what);
void insite_sign_free(void *pkey);
/* 0, or -1. */
int insite_sign(void *pkey, const char *msg, size_t len, char sig[INSITE_SIG_HEX]);
int insite_sign_verify(void *pkey, const char *msg, size_t len, const char *sighex);

#endif
