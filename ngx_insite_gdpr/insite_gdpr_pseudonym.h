/*
 * The pseudonym of a user: one definition for the nginx module (journal
 * records), insite-auditd (looking a caller's records up) and insite-gdpr
 * (erasure, deletion requests).  Plain C + OpenSSL, no nginx headers.
 *
 *     "psn:" + hex(first 16 bytes of HMAC-SHA256(key, user id))
 *
 * The same key gives the same pseudonym everywhere, so records stay linkable
 * to each other; without the key a pseudonym names nobody (docs/gdpr-rights.md).
 */

#ifndef _INSITE_GDPR_PSEUDONYM_H_INCLUDED_
#define _INSITE_GDPR_PSEUDONYM_H_INCLUDED_

#include <stddef.h>

#define INSITE_GDPR_PSN_PREFIX    "psn:"
#define INSITE_GDPR_PSN_LEN       (4 + 32)      /* "psn:" + 32 hex */
#define INSITE_GDPR_PSN_KEY_MIN   16            /* bytes of secret */
#define INSITE_GDPR_PSN_KEY_MAX   64            /* bytes read from the file */

/* out gets INSITE_GDPR_PSN_LEN chars (not NUL-terminated).  0, or -1 when
 * the HMAC failed. */
int insite_gdpr_pseudonym(const unsigned char *key, size_t key_len,
    const char *user, size_t user_len, char *out);

/*
 * A key prepared once, for a caller that computes many pseudonyms with one
 * key (nginx: one per audited request): HMAC's inner and outer SHA-256
 * states after the padded key, so a pseudonym costs two short digests and
 * no allocation of an HMAC context, and the last 256 ids' pseudonyms are
 * kept (an id seen again costs a hash and a compare).  Same result as
 * insite_gdpr_pseudonym().  Not for concurrent use by threads.
 */
typedef struct insite_gdpr_psn_key_s  insite_gdpr_psn_key_t;

/* NULL when OpenSSL fails (no memory, no SHA-256) */
insite_gdpr_psn_key_t *insite_gdpr_psn_key_new(const unsigned char *key,
    size_t key_len);
void insite_gdpr_psn_key_free(insite_gdpr_psn_key_t *k);

/* out gets INSITE_GDPR_PSN_LEN chars; 0, or -1 when a digest failed */
int insite_gdpr_psn_key_pseudonym(insite_gdpr_psn_key_t *k, const char *user,
    size_t user_len, char *out);

/* Reads a key file: its first INSITE_GDPR_PSN_KEY_MAX bytes, as they are
 * (a trailing newline is part of the secret: every reader gets the same key).
 * Returns the key length (>= INSITE_GDPR_PSN_KEY_MIN), or -1 with errno set
 * (EINVAL: shorter than the minimum). */
int insite_gdpr_pseudonym_key_read(const char *path, unsigned char *key,
    size_t size);

#endif /* _INSITE_GDPR_PSEUDONYM_H_INCLUDED_ */
