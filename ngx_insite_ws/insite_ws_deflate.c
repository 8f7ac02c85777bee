/*
 * permessage-deflate (RFC 7692): offer parsing, the answer, and messages
 * through zlib.  See the header for what is agreed.
 */

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "insite_ws_deflate.h"


#define INSITE_WS_PARAM_VALUE_MAX  16

typedef struct {
    const u_char  *p;
    const u_char  *last;
} insite_ws_cursor_t;


static const u_char  insite_ws_deflate_tail[INSITE_WS_DEFLATE_TAIL_LEN] =
    { 0x00, 0x00, 0xff, 0xff };


/* RFC 7230 tchar */
static int
insite_ws_tchar(u_char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z')
           || (c >= 'A' && c <= 'Z') || (c != 0 && strchr("!#$%&'*+-.^_`|~",
                                                          c) != NULL);
}


static void
insite_ws_ows(insite_ws_cursor_t *c)
{
    while (c->p < c->last && (*c->p == ' ' || *c->p == '\t')) {
        c->p++;
    }
}


static size_t
insite_ws_token(insite_ws_cursor_t *c, const u_char **start)
{
    *start = c->p;

    while (c->p < c->last && insite_ws_tchar(*c->p)) {
        c->p++;
    }

    return (size_t) (c->p - *start);
}


/*
 * A parameter value: a token or a quoted string, unescaped into val (its
 * first _MAX bytes; *val_len is the whole length).  0, or -1 on a syntax
 * error.
 */
static int
insite_ws_param_value(insite_ws_cursor_t *c, u_char *val, size_t *val_len)
{
    size_t         n;
    const u_char  *start;

    *val_len = 0;

    if (c->p < c->last && *c->p == '"') {
        c->p++;

        for ( ;; ) {
            if (c->p == c->last) {
                return -1;
            }

            if (*c->p == '"') {
                c->p++;
                return 0;
            }

            if (*c->p == '\\') {
                if (++c->p == c->last) {
                    return -1;
                }
            }

            if (*c->p < 0x20 && *c->p != '\t') {
                return -1;
            }

            if (*val_len < INSITE_WS_PARAM_VALUE_MAX) {
                val[*val_len] = *c->p;
            }

            (*val_len)++;
            c->p++;
        }
    }

    n = insite_ws_token(c, &start);
    if (n == 0) {
        return -1;
    }

    memcpy(val, start, n < INSITE_WS_PARAM_VALUE_MAX
                       ? n : INSITE_WS_PARAM_VALUE_MAX);
    *val_len = n;

    return 0;
}


/* "8" to "15" without leading zeros (RFC 7692 7.1.2.1); -1 otherwise */
static int
insite_ws_window_bits(const u_char *v, size_t len)
{
    if (len == 1 && v[0] >= '8' && v[0] <= '9') {
        return v[0] - '0';
    }

    if (len == 2 && v[0] == '1' && v[1] >= '0' && v[1] <= '5') {
        return 10 + v[1] - '0';
    }

    return -1;
}


#define insite_ws_is(s, n, lit)                                              \
    ((n) == sizeof(lit) - 1 && strncasecmp((const char *) (s), lit, (n)) == 0)


int
insite_ws_deflate_negotiate(const u_char *p, size_t len,
    insite_ws_deflate_params_t *params)
{
    int                          found, ours, acceptable, bits, has_value;
    size_t                       n, vlen;
    u_char                       val[INSITE_WS_PARAM_VALUE_MAX];
    unsigned                     seen;
    const u_char                *name;
    insite_ws_cursor_t           c;
    insite_ws_deflate_params_t   offer;

    c.p = p;
    c.last = p + len;
    found = 0;

    for ( ;; ) {
        insite_ws_ows(&c);

        /* 1#extension: empty list elements are allowed and skipped */
        if (c.p < c.last && *c.p == ',') {
            c.p++;
            continue;
        }

        if (c.p == c.last) {
            break;
        }

        n = insite_ws_token(&c, &name);
        if (n == 0) {
            return INSITE_WS_DEFLATE_BAD_HEADER;
        }

        ours = insite_ws_is(name, n, "permessage-deflate");
        acceptable = ours;
        seen = 0;
        offer.server_window_bits = 15;
        offer.server_bits_asked = 0;

        for ( ;; ) {
            insite_ws_ows(&c);

            if (c.p == c.last || *c.p == ',') {
                break;
            }

            if (*c.p != ';') {
                return INSITE_WS_DEFLATE_BAD_HEADER;
            }

            c.p++;
            insite_ws_ows(&c);

            n = insite_ws_token(&c, &name);
            if (n == 0) {
                return INSITE_WS_DEFLATE_BAD_HEADER;
            }

            insite_ws_ows(&c);
            has_value = 0;
            vlen = 0;

            if (c.p < c.last && *c.p == '=') {
                c.p++;
                insite_ws_ows(&c);

                if (insite_ws_param_value(&c, val, &vlen) != 0) {
                    return INSITE_WS_DEFLATE_BAD_HEADER;
                }

                has_value = 1;
            }

            if (!ours) {
                continue;
            }

            if (vlen > INSITE_WS_PARAM_VALUE_MAX) {
                acceptable = 0;

            } else if (insite_ws_is(name, n, "server_no_context_takeover")) {
                acceptable &= !has_value && !(seen & 1);
                seen |= 1;

            } else if (insite_ws_is(name, n, "client_no_context_takeover")) {
                acceptable &= !has_value && !(seen & 2);
                seen |= 2;

            } else if (insite_ws_is(name, n, "server_max_window_bits")) {
                bits = has_value ? insite_ws_window_bits(val, vlen) : -1;
                /* 8: zlib's raw deflate cannot keep to a 256-byte window */
                acceptable &= bits >= 9 && !(seen & 4);
                seen |= 4;
                offer.server_window_bits = bits;
                offer.server_bits_asked = 1;

            } else if (insite_ws_is(name, n, "client_max_window_bits")) {
                bits = has_value ? insite_ws_window_bits(val, vlen) : 15;
                acceptable &= bits >= 8 && !(seen & 8);
                seen |= 8;

            } else {
                acceptable = 0;
            }
        }

        if (acceptable && !found) {
            *params = offer;
            found = 1;
        }
    }

    return found ? INSITE_WS_DEFLATE_OK : INSITE_WS_DEFLATE_NONE;
}


size_t
insite_ws_deflate_response(const insite_ws_deflate_params_t *params,
    u_char *buf)
{
    int  n;

    n = snprintf((char *) buf, INSITE_WS_DEFLATE_RESPONSE_MAX,
                 "permessage-deflate; server_no_context_takeover; "
                 "client_no_context_takeover");

    if (params->server_bits_asked) {
        n += snprintf((char *) buf + n, INSITE_WS_DEFLATE_RESPONSE_MAX - n,
                      "; server_max_window_bits=%d",
                      params->server_window_bits);
    }

    return (size_t) n;
}


int
insite_ws_deflate_message(z_stream *zs, const u_char *in, size_t len,
    u_char *out, size_t cap, size_t *out_len)
{
    int  rc;

    if (deflateReset(zs) != Z_OK) {
        return INSITE_WS_DEFLATE_ZLIB;
    }

    zs->next_in = (Bytef *) in;
    zs->avail_in = (uInt) len;
    zs->next_out = out;
    zs->avail_out = (uInt) cap;

    rc = deflate(zs, Z_SYNC_FLUSH);

    /* a full output buffer may hide more to flush: too small */
    if (rc != Z_OK || zs->avail_in != 0 || zs->avail_out == 0) {
        return rc == Z_OK || rc == Z_BUF_ERROR ? INSITE_WS_DEFLATE_TOO_BIG
                                               : INSITE_WS_DEFLATE_ZLIB;
    }

    *out_len = cap - zs->avail_out;

    if (*out_len < INSITE_WS_DEFLATE_TAIL_LEN
        || memcmp(out + *out_len - INSITE_WS_DEFLATE_TAIL_LEN,
                  insite_ws_deflate_tail, INSITE_WS_DEFLATE_TAIL_LEN) != 0)
    {
        return INSITE_WS_DEFLATE_ZLIB;
    }

    *out_len -= INSITE_WS_DEFLATE_TAIL_LEN;

    return INSITE_WS_DEFLATE_OK;
}


int
insite_ws_inflate_message(z_stream *zs, const u_char *in, size_t len,
    u_char *out, size_t cap, size_t *out_len)
{
    int     rc, pass, full;
    u_char  spare[1];

    if (inflateReset(zs) != Z_OK) {
        return INSITE_WS_DEFLATE_ZLIB;
    }

    zs->next_out = out;
    zs->avail_out = (uInt) cap;
    rc = Z_OK;
    full = 0;

    /*
     * The message, then the tail the sender stripped.  Once the room is
     * full, one spare byte tells whether more output would follow.
     */
    for (pass = 0; pass < 2 && rc != Z_STREAM_END; pass++) {
        zs->next_in = (Bytef *) (pass == 0 ? in : insite_ws_deflate_tail);
        zs->avail_in = (uInt) (pass == 0 ? len : INSITE_WS_DEFLATE_TAIL_LEN);

        while (zs->avail_in) {
            if (zs->avail_out == 0) {
                if (full) {
                    return INSITE_WS_DEFLATE_TOO_BIG;
                }
                full = 1;
                zs->next_out = spare;
                zs->avail_out = 1;
            }

            rc = inflate(zs, Z_SYNC_FLUSH);

            if (full && zs->avail_out == 0) {
                return INSITE_WS_DEFLATE_TOO_BIG;
            }

            if (rc == Z_STREAM_END) {
                /* a final block: nothing may follow it in the message */
                if (pass == 0 && zs->avail_in) {
                    return INSITE_WS_DEFLATE_BAD_DATA;
                }
                break;
            }

            if (rc == Z_MEM_ERROR) {
                return INSITE_WS_DEFLATE_ZLIB;
            }

            if (rc != Z_OK) {
                return INSITE_WS_DEFLATE_BAD_DATA;
            }
        }
    }

    if (!full && zs->avail_out == 0 && rc != Z_STREAM_END) {
        full = 1;
        zs->next_out = spare;
        zs->avail_out = 1;

        (void) inflate(zs, Z_SYNC_FLUSH);

        if (zs->avail_out == 0) {
            return INSITE_WS_DEFLATE_TOO_BIG;
        }
    }

    *out_len = full ? cap : cap - zs->avail_out;

    return INSITE_WS_DEFLATE_OK;
}
