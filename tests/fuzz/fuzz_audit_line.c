/* The audit journal's line format (insite_gdpr_chain.c), as insite-auditd
 * reads it from a file anyone with write access to the journal directory
 * could have edited: format-1 and format-2 records (docs/gdpr.md).  A line
 * that checks must parse to a body inside the line, and re-hashing that
 * body with its prev_hash gives its hash; the same bytes pseudonymized
 * (insite_gdpr_pseudonym.c) always give one "psn:" + 32 hex, the same with
 * HMAC() and with the prepared key nginx uses. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "insite_gdpr_chain.h"
#include "insite_gdpr_pseudonym.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *line = (const char *)data;
    insite_gdpr_line_t l;
    char h[INSITE_GDPR_HASH_LEN], a[INSITE_GDPR_PSN_LEN], b[INSITE_GDPR_PSN_LEN];
    static const unsigned char key[] = "fuzz-key-0123456789";

    if (insite_gdpr_line_check(line, size, NULL, 0, &l) == INSITE_GDPR_OK) {
        if (l.body_len >= size || l.prev_hash < line || l.hash + INSITE_GDPR_HASH_LEN > line + size)
            __builtin_trap();
        if (insite_gdpr_hash(l.prev_hash, line, l.body_len, h) != 0
            || memcmp(h, l.hash, INSITE_GDPR_HASH_LEN) != 0)
            __builtin_trap();
    }
    static insite_gdpr_psn_key_t *pk;   /* nginx's prepared key: same ids */
    if (pk == NULL && (pk = insite_gdpr_psn_key_new(key, sizeof(key) - 1)) == NULL)
        __builtin_trap();
    if (insite_gdpr_pseudonym(key, sizeof(key) - 1, line, size, a) != 0
        || insite_gdpr_psn_key_pseudonym(pk, line, size, b) != 0
        || memcmp(a, b, sizeof(a)) != 0 || memcmp(a, "psn:", 4) != 0)
        __builtin_trap();
    for (size_t i = 4; i < sizeof(a); i++)
        if (!((a[i] >= '0' && a[i] <= '9') || (a[i] >= 'a' && a[i] <= 'f')))
            __builtin_trap();
    return 0;
}
