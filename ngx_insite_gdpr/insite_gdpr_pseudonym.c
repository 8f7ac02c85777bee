/*
 * The pseudonym of a user: see insite_gdpr_pseudonym.h.
 */

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "insite_gdpr_pseudonym.h"


int
insite_gdpr_pseudonym(const unsigned char *key, size_t key_len,
    const char *user, size_t user_len, char *out)
{
    unsigned int    n, i;
    unsigned char   md[EVP_MAX_MD_SIZE];
    static const char  hex[] = "0123456789abcdef";

    if (HMAC(EVP_sha256(), key, (int) key_len, (const unsigned char *) user,
             user_len, md, &n) == NULL || n < 16)
    {
        return -1;
    }

    out[0] = 'p'; out[1] = 's'; out[2] = 'n'; out[3] = ':';

    for (i = 0; i < 16; i++) {
        out[4 + 2 * i] = hex[md[i] >> 4];
        out[4 + 2 * i + 1] = hex[md[i] & 0x0f];
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
