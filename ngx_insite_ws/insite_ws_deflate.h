/*
 * permessage-deflate (RFC 7692), plain C over zlib (unit-tested and
 * fuzzed without nginx): the handshake's offer parser and answer, and
 * one message compressed or decompressed on a caller's zlib stream.
 *
 * What the server agrees to, always:
 *   - server_no_context_takeover: every message is compressed on its own,
 *     so one compressed frame serves every subscriber with the same
 *     window (compressed once per message, not once per subscriber);
 *   - client_no_context_takeover (RFC 7692 7.1.1.2 lets the server ask it
 *     unasked): the client's messages are independent too, so a
 *     connection keeps no inflate state between messages.
 * An offer with server_max_window_bits=8 is declined (zlib's raw deflate
 * cannot make 256-byte windows); any other invalid or unknown parameter
 * declines that offer (RFC 7692 5), the next one may be taken.
 */

#ifndef INSITE_WS_DEFLATE_H
#define INSITE_WS_DEFLATE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <zlib.h>


#define INSITE_WS_DEFLATE_RESPONSE_MAX  128

/* RFC 7692 7.2.1: the tail every sync-flushed message ends with */
#define INSITE_WS_DEFLATE_TAIL_LEN      4

/* return codes */
#define INSITE_WS_DEFLATE_OK            0
#define INSITE_WS_DEFLATE_NONE          1     /* no acceptable offer */
#define INSITE_WS_DEFLATE_BAD_HEADER   -1     /* not the RFC's syntax */
#define INSITE_WS_DEFLATE_TOO_BIG      -2     /* output past the room */
#define INSITE_WS_DEFLATE_BAD_DATA     -3     /* not a deflate stream */
#define INSITE_WS_DEFLATE_ZLIB         -4     /* zlib failed otherwise */


typedef struct {
    int        server_window_bits;     /* the window the server uses, 9-15 */
    unsigned   server_bits_asked:1;    /* the offer limited it: answer it */
} insite_ws_deflate_params_t;


/*
 * The value of Sec-WebSocket-Extensions: the first acceptable
 * permessage-deflate offer fills *params.  Returns INSITE_WS_DEFLATE_OK,
 * _NONE (answer without the extension) or _BAD_HEADER (refuse with 400).
 */
int insite_ws_deflate_negotiate(const u_char *p, size_t len,
    insite_ws_deflate_params_t *params);

/* the Sec-WebSocket-Extensions answer; returns its length (< _RESPONSE_MAX) */
size_t insite_ws_deflate_response(const insite_ws_deflate_params_t *params,
    u_char *buf);

/*
 * Compresses one message on zs (deflateInit2(zs, level, Z_DEFLATED,
 * -bits, ...)), without the tail.  *out_len gets the length; returns
 * _OK, or _TOO_BIG when cap is short (deflateBound(len) + 8 never is).
 */
int insite_ws_deflate_message(z_stream *zs, const u_char *in, size_t len,
    u_char *out, size_t cap, size_t *out_len);

/*
 * Decompresses one message (without its tail) on zs (inflateInit2(zs,
 * -15)); at most cap bytes: _TOO_BIG past it, _BAD_DATA for a stream that
 * is not deflate or does not end at a block boundary.
 */
int insite_ws_inflate_message(z_stream *zs, const u_char *in, size_t len,
    u_char *out, size_t cap, size_t *out_len);


#endif /* INSITE_WS_DEFLATE_H */
