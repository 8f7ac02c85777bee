/*
 * The pseudonym of a user: see insite_gdpr_pseudonym.h.
 */

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "insite_gdpr_json.h"
#include "insite_gdpr_pseudonym.h"


#define INSITE_GDPR_SHA256_BLOCK  64


/*
 * The last pseudonyms computed, direct-mapped by a hash of the id: a user
 * who makes many requests (the common case behind nginx) costs a hash and
 * a compare instead of two digests and the two EVP context copies, each of
 * which allocates, cleanses and frees a provider context (~1,500
 * instructions a record, bench/gdpr/callgrind.sh).  Only in this process's
 * memory, as the key itself is; ids longer than a slot are not kept.
 */
#define INSITE_GDPR_PSN_CACHE       256     /* slots, a power of two */
#define INSITE_GDPR_PSN_CACHE_ID    62      /* longest id kept */

typedef struct {
    unsigned char   len;        /* the id's length + 1; 0: empty */
    char            id[INSITE_GDPR_PSN_CACHE_ID];
    char            psn[INSITE_GDPR_PSN_LEN];
} insite_gdpr_psn_slot_t;

struct insite_gdpr_psn_key_s {
    EVP_MD         *md;         /* fetched once: no lookup per digest */
    EVP_MD_CTX     *inner;      /* SHA-256 after key ^ ipad */
    EVP_MD_CTX     *outer;      /* SHA-256 after key ^ opad */
    EVP_MD_CTX     *work;
    insite_gdpr_psn_slot_t  cache[INSITE_GDPR_PSN_CACHE];
};


static void insite_gdpr_psn_hex(const unsigned char *md, char *out);


int
insite_gdpr_pseudonym(const unsigned char *key, size_t key_len,
    const char *user, size_t user_len, char *out)
{
    unsigned int    n;
    unsigned char   md[EVP_MAX_MD_SIZE];

    if (HMAC(EVP_sha256(), key, (int) key_len, (const unsigned char *) user,
             user_len, md, &n) == NULL || n < 16)
    {
        return -1;
    }

    insite_gdpr_psn_hex(md, out);

    return 0;
}


static void
insite_gdpr_psn_hex(const unsigned char *md, char *out)
{
    memcpy(out, INSITE_GDPR_PSN_PREFIX, 4);
    (void) insite_gdpr_json_hex(out + 4, md, 16);
}


insite_gdpr_psn_key_t *
insite_gdpr_psn_key_new(const unsigned char *key, size_t key_len)
{
    size_t                  i;
    unsigned int            n;
    unsigned char           k[INSITE_GDPR_SHA256_BLOCK], pad[sizeof(k)];
    insite_gdpr_psn_key_t  *pk;

    pk = OPENSSL_zalloc(sizeof(insite_gdpr_psn_key_t));
    if (pk == NULL) {
        return NULL;
    }

    pk->md = EVP_MD_fetch(NULL, "SHA256", NULL);
    pk->inner = EVP_MD_CTX_new();
    pk->outer = EVP_MD_CTX_new();
    pk->work = EVP_MD_CTX_new();

    if (pk->md == NULL || pk->inner == NULL || pk->outer == NULL
        || pk->work == NULL)
    {
        goto failed;
    }

    /* RFC 2104: a key longer than a block is hashed first */
    memset(k, 0, sizeof(k));

    if (key_len > sizeof(k)) {
        if (EVP_Digest(key, key_len, k, &n, pk->md, NULL) != 1) {
            goto failed;
        }

    } else {
        memcpy(k, key, key_len);
    }

    for (i = 0; i < sizeof(k); i++) {
        pad[i] = k[i] ^ 0x36;
    }

    if (EVP_DigestInit_ex(pk->inner, pk->md, NULL) != 1
        || EVP_DigestUpdate(pk->inner, pad, sizeof(pad)) != 1)
    {
        goto failed;
    }

    for (i = 0; i < sizeof(k); i++) {
        pad[i] = k[i] ^ 0x5c;
    }

    if (EVP_DigestInit_ex(pk->outer, pk->md, NULL) != 1
        || EVP_DigestUpdate(pk->outer, pad, sizeof(pad)) != 1)
    {
        goto failed;
    }

    OPENSSL_cleanse(k, sizeof(k));
    OPENSSL_cleanse(pad, sizeof(pad));

    return pk;

failed:

    OPENSSL_cleanse(k, sizeof(k));
    OPENSSL_cleanse(pad, sizeof(pad));
    insite_gdpr_psn_key_free(pk);

    return NULL;
}


void
insite_gdpr_psn_key_free(insite_gdpr_psn_key_t *pk)
{
    if (pk == NULL) {
        return;
    }

    EVP_MD_CTX_free(pk->inner);
    EVP_MD_CTX_free(pk->outer);
    EVP_MD_CTX_free(pk->work);
    EVP_MD_free(pk->md);
    OPENSSL_clear_free(pk, sizeof(insite_gdpr_psn_key_t));    /* the ids */
}


/* FNV-1a: the id's slot */
static insite_gdpr_psn_slot_t *
insite_gdpr_psn_slot(insite_gdpr_psn_key_t *pk, const char *user,
    size_t user_len)
{
    size_t    i;
    uint32_t  h;

    h = 2166136261u;

    for (i = 0; i < user_len; i++) {
        h = (h ^ (unsigned char) user[i]) * 16777619u;
    }

    return &pk->cache[h & (INSITE_GDPR_PSN_CACHE - 1)];
}


int
insite_gdpr_psn_key_pseudonym(insite_gdpr_psn_key_t *pk, const char *user,
    size_t user_len, char *out)
{
    unsigned int             n;
    unsigned char            ih[EVP_MAX_MD_SIZE], md[EVP_MAX_MD_SIZE];
    insite_gdpr_psn_slot_t  *slot;

    slot = NULL;

    if (user_len <= INSITE_GDPR_PSN_CACHE_ID) {
        slot = insite_gdpr_psn_slot(pk, user, user_len);

        if (slot->len == user_len + 1 && memcmp(slot->id, user, user_len) == 0)
        {
            memcpy(out, slot->psn, INSITE_GDPR_PSN_LEN);
            return 0;
        }
    }

    if (EVP_MD_CTX_copy_ex(pk->work, pk->inner) != 1
        || EVP_DigestUpdate(pk->work, user, user_len) != 1
        || EVP_DigestFinal_ex(pk->work, ih, &n) != 1
        || EVP_MD_CTX_copy_ex(pk->work, pk->outer) != 1
        || EVP_DigestUpdate(pk->work, ih, n) != 1
        || EVP_DigestFinal_ex(pk->work, md, &n) != 1
        || n < 16)
    {
        return -1;
    }

    insite_gdpr_psn_hex(md, out);

    if (slot != NULL) {
        slot->len = (unsigned char) (user_len + 1);
        memcpy(slot->id, user, user_len);
        memcpy(slot->psn, out, INSITE_GDPR_PSN_LEN);
    }

    return 0;
}


int
insite_gdpr_pseudonym_key_read(const char *path, unsigned char *key,
    size_t size)
{
    int      fd, err;
    size_t   len;
    ssize_t  n;

    if (size > INSITE_GDPR_PSN_KEY_MAX) {
        size = INSITE_GDPR_PSN_KEY_MAX;
    }

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd == -1) {
        return -1;
    }

    for (len = 0; len < size; len += (size_t) n) {
        n = read(fd, key + len, size - len);
        if (n == 0) {
            break;
        }
        if (n < 0) {
            if (errno == EINTR) {
                n = 0;
                continue;
            }
            err = errno;
            close(fd);
            errno = err;
            return -1;
        }
    }

    close(fd);

    if (len < INSITE_GDPR_PSN_KEY_MIN) {
        errno = EINVAL;
        return -1;
    }

    return (int) len;
}
