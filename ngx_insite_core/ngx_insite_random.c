/*
 * Random bytes for ids: see ngx_insite_random.h.
 */

#include <ngx_config.h>
#include <ngx_core.h>

#include <openssl/rand.h>

#include "ngx_insite_random.h"


#define NGX_INSITE_RANDOM_POOL  4096


void
ngx_insite_random(u_char *out, size_t n)
{
    ngx_uint_t     i;
    static u_char  pool[NGX_INSITE_RANDOM_POOL];
    static size_t  left;

    if (left < n) {
        if (RAND_bytes(pool, sizeof(pool)) != 1) {
            ngx_log_error(NGX_LOG_ALERT, ngx_cycle->log, 0,
                          "insite: RAND_bytes() failed, ids from ngx_random()");

            for (i = 0; i < sizeof(pool); i++) {
                pool[i] = (u_char) ngx_random();
            }
        }

        left = sizeof(pool);
    }

    ngx_memcpy(out, pool + sizeof(pool) - left, n);
    ngx_explicit_memzero(pool + sizeof(pool) - left, n);
    left -= n;
}
