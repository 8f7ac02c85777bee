/* Unpredictable identifiers from OpenSSL's CSPRNG (seeded from the kernel). */
#ifndef INSITE_RANDOM_H
#define INSITE_RANDOM_H

#include <stddef.h>

#define INSITE_UUID_LEN 37   /* 36 chars + NUL */

/* Fills buf with n random bytes; returns 0, or -1 if the CSPRNG failed
 * (logged). */
int insite_random_bytes(void *buf, size_t n);
/* Writes 2*nbytes lowercase hex chars plus NUL into out (size >= 2*nbytes+1). */
int insite_random_hex(char *out, size_t nbytes);
/* Writes a version 4 UUID, "xxxxxxxx-xxxx-4xxx-[89ab]xxx-xxxxxxxxxxxx". */
int insite_uuid_v4(char out[INSITE_UUID_LEN]);

#endif
