/*
 * Random bytes for ids (request ids, audit record ids, channel epochs).
 */

#ifndef _NGX_INSITE_RANDOM_H_INCLUDED_
#define _NGX_INSITE_RANDOM_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>


/*
 * Fills out[0..n) (n <= 256) from this worker's pool of CSPRNG bytes.  The
 * pool is refilled by one RAND_bytes() call per 4 KiB: OpenSSL's per-call
 * cost (its DRBG lock, and a getpid() to notice a fork) was a few per cent
 * of a worker's time when paid per request.  Bytes handed out are wiped
 * from the pool.  Never fails: should OpenSSL's generator fail, the pool is
 * filled from ngx_random() so that no id, and no request, is lost; the
 * failure is logged (once per refill) on the cycle's log.
 */
void ngx_insite_random(u_char *out, size_t n);


#endif /* _NGX_INSITE_RANDOM_H_INCLUDED_ */
