#include <stdint.h>
#include <stdio.h>

#include <openssl/err.h>
#include <openssl/rand.h>

#include "log.h"
#include "random.h"

int insite_random_bytes(void *buf, size_t n)
{
    if (RAND_bytes(buf, (int)n) != 1) {
        insite_log_error("random: RAND_bytes failed: %s",
                         ERR_error_string(ERR_get_error(), NULL));
        return -1;
    }
    return 0;
}

int insite_random_hex(char *out, size_t nbytes)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char b[64];

    if (nbytes > sizeof(b) || insite_random_bytes(b, nbytes) != 0)
        return -1;
    for (size_t i = 0; i < nbytes; i++) {
        out[2 * i] = hex[b[i] >> 4];
        out[2 * i + 1] = hex[b[i] & 0xf];
    }
    out[2 * nbytes] = '\0';
    return 0;
}

int insite_uuid_v4(char out[INSITE_UUID_LEN])
{
    unsigned char b[16];

    if (insite_random_bytes(b, sizeof(b)) != 0)
        return -1;
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);   /* version 4 */
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);   /* RFC 4122 variant */
    snprintf(out, INSITE_UUID_LEN,
             "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
             b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7],
             b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
    return 0;
}
