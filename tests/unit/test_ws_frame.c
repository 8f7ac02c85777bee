/*
 * Unit tests for the RFC 6455 protocol core (ngx_insite_ws/insite_ws_frame.c).
 */

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "../../ngx_insite_ws/insite_ws_frame.h"


#define MAX_MSG   (1024 * 1024)

static const u_char  key_rfc[4] = { 0x37, 0xfa, 0x21, 0x3d };


/* how a test client encodes the payload length */
enum { LEN_MIN, LEN_16, LEN_64 };

/* Builds a masked client frame; b0 is FIN|RSV|opcode as on the wire. */
static size_t
client_frame(u_char *out, unsigned b0, const void *payload, uint64_t len,
    const u_char key[4], int form)
{
    size_t  n, i;

    out[0] = (u_char) b0;
    n = 2;

    if (form == LEN_MIN && len <= 125) {
        out[1] = 0x80 | (u_char) len;

    } else if (form != LEN_64 && len <= 0xffff) {
        out[1] = 0x80 | 126;
        out[n++] = (u_char) (len >> 8);
        out[n++] = (u_char) len;

    } else {
        out[1] = 0x80 | 127;
        for (i = 0; i < 8; i++) {
            out[n++] = (u_char) (len >> (56 - 8 * i));
        }
    }

    memcpy(out + n, key, 4);
    n += 4;

    for (i = 0; i < len; i++) {
        out[n + i] = ((const u_char *) payload)[i] ^ key[i & 3];
    }

    return n + len;
}


/*
 * The nginx glue's read loop in miniature: the stream arrives in pieces of
 * `chunk` bytes, a partial header is kept and re-offered, payload is handed
 * to the assembler as it comes. Completed messages are collected.
 */
typedef struct {
    int      nev;
    int      op[16];
    size_t   len[16];
    u_char   data[16][70000];
    u_char   cur[70000];       /* data message being assembled */
    size_t   cur_len;
    u_char   ctl[128];
    size_t   ctl_len;
} events_t;

static events_t  ev;

static int
drive(const u_char *in, size_t len, size_t chunk, uint64_t max)
{
    insite_ws_msg_t    m;
    insite_ws_frame_t  f;
    u_char             hdr[INSITE_WS_MAX_CLIENT_HEADER];
    u_char            *buf, *p;
    size_t             hlen, off, n, take;
    int                rc, op, in_payload;

    memset(&ev, 0, sizeof(ev));
    insite_ws_msg_init(&m, max);
    hlen = 0;
    in_payload = 0;

    for (off = 0; off < len; off += n) {
        n = len - off < chunk ? len - off : chunk;

        /* an exact-size copy: any over-read shows up under ASan */
        buf = malloc(n);
        assert_non_null(buf);
        memcpy(buf, in + off, n);
        p = buf;

        while (p < buf + n) {

            if (!in_payload) {
                take = buf + n - p;
                if (take > sizeof(hdr) - hlen) {
                    take = sizeof(hdr) - hlen;
                }
                memcpy(hdr + hlen, p, take);

                rc = insite_ws_parse_header(hdr, hlen + take, max, &f);
                if (rc == INSITE_WS_NEED_MORE) {
                    hlen += take;
                    p += take;
                    continue;
                }
                if (rc != INSITE_WS_OK) {
                    free(buf);
                    return rc;
                }

                p += f.header_len - hlen;
                hlen = 0;

                rc = insite_ws_msg_begin(&m, &f);
                if (rc != INSITE_WS_OK) {
                    free(buf);
                    return rc;
                }
                in_payload = 1;
                if (insite_ws_op_is_control(f.opcode)) {
                    ev.ctl_len = 0;
                }
            }

            take = buf + n - p;
            if (take > m.frame_left) {
                take = (size_t) m.frame_left;
            }

            rc = insite_ws_msg_payload(&m, p, take);
            if (rc != INSITE_WS_OK) {
                free(buf);
                return rc;
            }

            if (insite_ws_op_is_control(m.frame_opcode)) {
                memcpy(ev.ctl + ev.ctl_len, p, take);
                ev.ctl_len += take;
            } else {
                memcpy(ev.cur + ev.cur_len, p, take);
                ev.cur_len += take;
            }
            p += take;

            if (m.frame_left == 0) {
                in_payload = 0;
                rc = insite_ws_msg_end(&m, &op);
                if (rc != INSITE_WS_OK) {
                    free(buf);
                    return rc;
                }

                if (op != INSITE_WS_OP_CONT) {
                    assert_true(ev.nev < 16);
                    ev.op[ev.nev] = op;
                    if (insite_ws_op_is_control(op)) {
                        memcpy(ev.data[ev.nev], ev.ctl, ev.ctl_len);
                        ev.len[ev.nev] = ev.ctl_len;
                    } else {
                        memcpy(ev.data[ev.nev], ev.cur, ev.cur_len);
                        ev.len[ev.nev] = ev.cur_len;
                        ev.cur_len = 0;
                    }
                    ev.nev++;
                }
            }
        }

        free(buf);
    }

    return (hlen || in_payload) ? INSITE_WS_NEED_MORE : INSITE_WS_OK;
}


/* feeds the stream whole, in every small chunk size and byte at a time */
static void
drive_all_ways(const u_char *in, size_t len, int want_rc, int want_nev)
{
    static const size_t  chunks[] = { 1, 2, 3, 5, 7, 13, 64, 1 << 20 };
    size_t               i;
    int                  rc;

    for (i = 0; i < sizeof(chunks) / sizeof(chunks[0]); i++) {
        rc = drive(in, len, chunks[i], MAX_MSG);
        assert_int_equal(rc, want_rc);
        assert_int_equal(ev.nev, want_nev);
    }
}


/* RFC 6455 5.7 */

static void
test_rfc_unmasked_hello(void **state)
{
    static const u_char  wire[] = { 0x81, 0x05, 'H', 'e', 'l', 'l', 'o' };
    u_char               buf[INSITE_WS_MAX_SERVER_HEADER];
    insite_ws_frame_t    f;
    int                  rc;

    assert_int_equal(insite_ws_frame_header(buf, INSITE_WS_OP_TEXT, 1, 5), 2);
    assert_memory_equal(buf, wire, 2);

    /* the same bytes from a client are a protocol error: not masked */
    rc = insite_ws_parse_header(wire, sizeof(wire), MAX_MSG, &f);
    assert_int_equal(rc, INSITE_WS_ERR_UNMASKED);
    assert_int_equal(insite_ws_close_code(rc), 1002);
}


static void
test_rfc_masked_hello(void **state)
{
    static const u_char  wire[] = { 0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d,
                                    0x7f, 0x9f, 0x4d, 0x51, 0x58 };
    u_char               copy[sizeof(wire)];
    insite_ws_frame_t    f;
    size_t               i;

    memset(&f, 0xee, sizeof(f));
    assert_int_equal(insite_ws_parse_header(wire, sizeof(wire), MAX_MSG, &f),
                     INSITE_WS_OK);
    assert_int_equal(f.header_len, 6);
    assert_int_equal(f.fin, 1);
    assert_int_equal(f.rsv, 0);
    assert_int_equal(f.opcode, INSITE_WS_OP_TEXT);
    assert_int_equal(f.masked, 1);
    assert_int_equal(f.payload_len, 5);
    assert_memory_equal(f.mask, key_rfc, 4);

    /* every proper prefix asks for more */
    for (i = 0; i < f.header_len; i++) {
        assert_int_equal(insite_ws_parse_header(wire, i, MAX_MSG, &f),
                         INSITE_WS_NEED_MORE);
    }

    memcpy(copy, wire, sizeof(wire));
    insite_ws_unmask(copy + 6, 5, f.mask, 0);
    assert_memory_equal(copy + 6, "Hello", 5);

    drive_all_ways(wire, sizeof(wire), INSITE_WS_OK, 1);
    assert_int_equal(ev.op[0], INSITE_WS_OP_TEXT);
    assert_int_equal(ev.len[0], 5);
    assert_memory_equal(ev.data[0], "Hello", 5);
}


static void
test_rfc_fragmented(void **state)
{
    static const u_char  w1[] = { 0x01, 0x03, 'H', 'e', 'l' };
    static const u_char  w2[] = { 0x80, 0x02, 'l', 'o' };
    u_char               buf[64];
    size_t               n;

    assert_int_equal(insite_ws_frame_header(buf, INSITE_WS_OP_TEXT, 0, 3), 2);
    assert_memory_equal(buf, w1, 2);
    assert_int_equal(insite_ws_frame_header(buf, INSITE_WS_OP_CONT, 1, 2), 2);
    assert_memory_equal(buf, w2, 2);

    /* the masked equivalent assembles into one message */
    n = client_frame(buf, 0x01, "Hel", 3, key_rfc, LEN_MIN);
    n += client_frame(buf + n, 0x80, "lo", 2, key_rfc, LEN_MIN);

    drive_all_ways(buf, n, INSITE_WS_OK, 1);
    assert_int_equal(ev.op[0], INSITE_WS_OP_TEXT);
    assert_int_equal(ev.len[0], 5);
    assert_memory_equal(ev.data[0], "Hello", 5);
}


static void
test_rfc_ping_pong(void **state)
{
    static const u_char  ping[] = { 0x89, 0x05 };
    static const u_char  pong[] = { 0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d,
                                    0x7f, 0x9f, 0x4d, 0x51, 0x58 };
    u_char               buf[16];
    insite_ws_frame_t    f;

    assert_int_equal(insite_ws_frame_header(buf, INSITE_WS_OP_PING, 1, 5), 2);
    assert_memory_equal(buf, ping, 2);

    assert_int_equal(insite_ws_parse_header(pong, sizeof(pong), MAX_MSG, &f),
                     INSITE_WS_OK);
    assert_int_equal(f.opcode, INSITE_WS_OP_PONG);

    drive_all_ways(pong, sizeof(pong), INSITE_WS_OK, 1);
    assert_int_equal(ev.op[0], INSITE_WS_OP_PONG);
    assert_memory_equal(ev.data[0], "Hello", 5);

    /* a masked ping with the same payload */
    memcpy(buf, pong, sizeof(pong));
    buf[0] = 0x89;
    drive_all_ways(buf, sizeof(pong), INSITE_WS_OK, 1);
    assert_int_equal(ev.op[0], INSITE_WS_OP_PING);
    assert_int_equal(ev.len[0], 5);
}


static void
test_rfc_lengths(void **state)
{
    static const u_char  h256[] = { 0x82, 0x7e, 0x01, 0x00 };
    static const u_char  h64k[] = { 0x82, 0x7f, 0, 0, 0, 0, 0, 0x01, 0, 0 };
    static u_char        payload[65536], wire[65536 + 14];
    u_char               buf[INSITE_WS_MAX_SERVER_HEADER];
    insite_ws_frame_t    f;
    size_t               i, n;

    assert_int_equal(insite_ws_frame_header(buf, INSITE_WS_OP_BINARY, 1, 256),
                     4);
    assert_memory_equal(buf, h256, 4);
    assert_int_equal(insite_ws_frame_header(buf, INSITE_WS_OP_BINARY, 1, 65536),
                     10);
    assert_memory_equal(buf, h64k, 10);

    for (i = 0; i < sizeof(payload); i++) {
        payload[i] = (u_char) (i * 7);
    }

    n = client_frame(wire, 0x82, payload, 256, key_rfc, LEN_MIN);
    assert_int_equal(n, 8 + 256);
    assert_int_equal(insite_ws_parse_header(wire, n, MAX_MSG, &f),
                     INSITE_WS_OK);
    assert_int_equal(f.header_len, 8);
    assert_int_equal(f.payload_len, 256);
    drive_all_ways(wire, n, INSITE_WS_OK, 1);
    assert_int_equal(ev.op[0], INSITE_WS_OP_BINARY);
    assert_int_equal(ev.len[0], 256);
    assert_memory_equal(ev.data[0], payload, 256);

    n = client_frame(wire, 0x82, payload, 65536, key_rfc, LEN_MIN);
    assert_int_equal(n, 14 + 65536);
    assert_int_equal(insite_ws_parse_header(wire, n, MAX_MSG, &f),
                     INSITE_WS_OK);
    assert_int_equal(f.header_len, 14);
    assert_int_equal(f.payload_len, 65536);
    assert_int_equal(drive(wire, n, 1, MAX_MSG), INSITE_WS_OK);
    assert_int_equal(ev.nev, 1);
    assert_int_equal(ev.len[0], 65536);
    assert_memory_equal(ev.data[0], payload, 65536);
    assert_int_equal(drive(wire, n, 4096, MAX_MSG), INSITE_WS_OK);
    assert_memory_equal(ev.data[0], payload, 65536);
}


static void
test_rfc_handshake(void **state)
{
    static const u_char  key[] = "dGhlIHNhbXBsZSBub25jZQ==";
    u_char               out[INSITE_WS_ACCEPT_LEN + 1];

    assert_true(insite_ws_key_valid(key, sizeof(key) - 1));
    assert_int_equal(insite_ws_accept_key(key, sizeof(key) - 1, out),
                     INSITE_WS_OK);
    assert_string_equal((char *) out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}


static void
test_key_valid(void **state)
{
#define KV(s) insite_ws_key_valid((const u_char *) (s), sizeof(s) - 1)
    assert_true(KV("AAAAAAAAAAAAAAAAAAAAAA=="));
    assert_true(KV("/////////////////////w=="));
    assert_true(KV("+++++++++++++++++++++g=="));
    assert_false(KV(""));
    assert_false(KV("dGhlIHNhbXBsZSBub25jZQ="));       /* 23 chars */
    assert_false(KV("dGhlIHNhbXBsZSBub25jZQ==="));     /* 25 chars */
    assert_false(KV("dGhlIHNhbXBsZSBub25jZQAA"));      /* no padding */
    assert_false(KV("dGhlIHNhbXBsZSBub25jZR=="));      /* non-zero pad bits */
    assert_false(KV("dGhlIHNhbXBsZSBub25j*Q=="));      /* not base64 */
    assert_false(KV("dGhlIHNhbXBsZSBub25jZQ=A"));
    assert_false(KV("AAAAAAAAAAAAAAAAAAAAAAA="));      /* 17 bytes */
    assert_false(insite_ws_key_valid(NULL, 24));
#undef KV
}


/* every header error, its code and the earliest byte that proves it */

static void
expect_hdr(const u_char *p, size_t len, size_t first, int want, unsigned code)
{
    insite_ws_frame_t  f;
    size_t             i;

    for (i = 0; i < first; i++) {
        assert_int_equal(insite_ws_parse_header(p, i, MAX_MSG, &f),
                         INSITE_WS_NEED_MORE);
    }
    for (i = first; i <= len; i++) {
        assert_int_equal(insite_ws_parse_header(p, i, MAX_MSG, &f), want);
    }
    assert_int_equal(insite_ws_close_code(want), code);
    assert_int_equal(drive(p, len, 1, MAX_MSG), want);
}


static void
test_header_errors(void **state)
{
    u_char  b[32];
    int     rsv, op;

    for (rsv = 1; rsv < 8; rsv++) {
        b[0] = (u_char) (0x81 | (rsv << 4));
        b[1] = 0x80;
        memcpy(b + 2, key_rfc, 4);
        expect_hdr(b, 6, 1, INSITE_WS_ERR_RSV, 1002);
    }

    for (op = 0; op < 16; op++) {
        if (op <= 2 || (op >= 8 && op <= 10)) {
            continue;
        }
        b[0] = (u_char) (0x80 | op);
        b[1] = 0x80;
        memcpy(b + 2, key_rfc, 4);
        expect_hdr(b, 6, 1, INSITE_WS_ERR_OPCODE, 1002);
        b[0] = (u_char) op;     /* without FIN too */
        expect_hdr(b, 6, 1, INSITE_WS_ERR_OPCODE, 1002);
    }

    /* unmasked, of each kind */
    b[0] = 0x81; b[1] = 0x00;
    expect_hdr(b, 2, 2, INSITE_WS_ERR_UNMASKED, 1002);
    b[0] = 0x89; b[1] = 0x05;
    memcpy(b + 2, "Hello", 5);
    expect_hdr(b, 7, 2, INSITE_WS_ERR_UNMASKED, 1002);

    /* control frames: not FIN, payload > 125 in each length form */
    for (op = 8; op <= 10; op++) {
        b[0] = (u_char) op; b[1] = 0x80;
        memcpy(b + 2, key_rfc, 4);
        expect_hdr(b, 6, 1, INSITE_WS_ERR_CTRL_FRAGMENTED, 1002);

        b[0] = (u_char) (0x80 | op); b[1] = 0x80 | 126;
        b[2] = 0; b[3] = 126;
        memcpy(b + 4, key_rfc, 4);
        expect_hdr(b, 8, 4, INSITE_WS_ERR_CTRL_TOO_LONG, 1002);

        b[2] = 0xff; b[3] = 0xff;
        expect_hdr(b, 8, 4, INSITE_WS_ERR_CTRL_TOO_LONG, 1002);

        b[1] = 0x80 | 127;
        memset(b + 2, 0, 8);
        b[9] = 126;
        memcpy(b + 10, key_rfc, 4);
        expect_hdr(b, 14, 10, INSITE_WS_ERR_CTRL_TOO_LONG, 1002);
    }

    /* 64-bit length with the most significant bit set */
    b[0] = 0x82; b[1] = 0xff;
    b[2] = 0x80; memset(b + 3, 0, 7);
    memcpy(b + 10, key_rfc, 4);
    expect_hdr(b, 14, 3, INSITE_WS_ERR_LEN_MSB, 1002);
    memset(b + 2, 0xff, 8);
    expect_hdr(b, 14, 3, INSITE_WS_ERR_LEN_MSB, 1002);
}


static void
test_header_nonminimal_and_max(void **state)
{
    u_char             b[64];
    insite_ws_frame_t  f;
    size_t             n;

    /* "Hello" in the 16-bit and 64-bit forms: legal, accepted */
    n = client_frame(b, 0x81, "Hello", 5, key_rfc, LEN_16);
    assert_int_equal(n, 8 + 5);
    drive_all_ways(b, n, INSITE_WS_OK, 1);
    assert_memory_equal(ev.data[0], "Hello", 5);

    n = client_frame(b, 0x81, "Hello", 5, key_rfc, LEN_64);
    assert_int_equal(n, 14 + 5);
    drive_all_ways(b, n, INSITE_WS_OK, 1);
    assert_memory_equal(ev.data[0], "Hello", 5);

    /* a control frame in a long form is fine while its length is <= 125 */
    n = client_frame(b, 0x89, "ping", 4, key_rfc, LEN_64);
    drive_all_ways(b, n, INSITE_WS_OK, 1);
    assert_int_equal(ev.op[0], INSITE_WS_OP_PING);
    n = client_frame(b, 0x8a, "pong", 4, key_rfc, LEN_16);
    drive_all_ways(b, n, INSITE_WS_OK, 1);
    assert_int_equal(ev.op[0], INSITE_WS_OP_PONG);

    /* largest legal 64-bit length parses when the limit allows it */
    b[0] = 0x82; b[1] = 0xff; b[2] = 0x7f;
    memset(b + 3, 0xff, 7);
    memcpy(b + 10, key_rfc, 4);
    assert_int_equal(insite_ws_parse_header(b, 14, INSITE_WS_NO_LIMIT, &f),
                     INSITE_WS_OK);
    assert_true(f.payload_len == INT64_MAX);

    /* frame over the caller's limit: 1009; at the limit: fine */
    n = client_frame(b, 0x82, "0123456789", 10, key_rfc, LEN_MIN);
    assert_int_equal(insite_ws_parse_header(b, n, 10, &f), INSITE_WS_OK);
    assert_int_equal(insite_ws_parse_header(b, n, 9, &f),
                     INSITE_WS_ERR_FRAME_TOO_BIG);
    assert_int_equal(insite_ws_close_code(INSITE_WS_ERR_FRAME_TOO_BIG), 1009);
    assert_int_equal(drive(b, n, 1, 9), INSITE_WS_ERR_FRAME_TOO_BIG);

    /* refused as soon as the length is known, before the mask key */
    assert_int_equal(insite_ws_parse_header(b, 2, 9, &f),
                     INSITE_WS_ERR_FRAME_TOO_BIG);
    b[0] = 0x82; b[1] = 0xff; memset(b + 2, 0, 8); b[6] = 1;   /* 2^24 */
    assert_int_equal(insite_ws_parse_header(b, 9, 1 << 20, &f),
                     INSITE_WS_NEED_MORE);
    assert_int_equal(insite_ws_parse_header(b, 10, 1 << 20, &f),
                     INSITE_WS_ERR_FRAME_TOO_BIG);
}


/* fragmentation (5.4) */

static void
test_fragment_errors(void **state)
{
    u_char  b[256];
    size_t  n;

    /* continuation with no message open */
    n = client_frame(b, 0x80, "x", 1, key_rfc, LEN_MIN);
    drive_all_ways(b, n, INSITE_WS_ERR_CONT_UNEXPECTED, 0);
    assert_int_equal(insite_ws_close_code(INSITE_WS_ERR_CONT_UNEXPECTED), 1002);

    /* ... also right after a completed message */
    n = client_frame(b, 0x81, "a", 1, key_rfc, LEN_MIN);
    n += client_frame(b + n, 0x80, "b", 1, key_rfc, LEN_MIN);
    drive_all_ways(b, n, INSITE_WS_ERR_CONT_UNEXPECTED, 1);

    /* a new text / binary frame while a message is open */
    n = client_frame(b, 0x01, "a", 1, key_rfc, LEN_MIN);
    n += client_frame(b + n, 0x81, "b", 1, key_rfc, LEN_MIN);
    drive_all_ways(b, n, INSITE_WS_ERR_MSG_INTERLEAVED, 0);
    assert_int_equal(insite_ws_close_code(INSITE_WS_ERR_MSG_INTERLEAVED), 1002);

    n = client_frame(b, 0x02, "a", 1, key_rfc, LEN_MIN);
    n += client_frame(b + n, 0x02, "b", 1, key_rfc, LEN_MIN);
    drive_all_ways(b, n, INSITE_WS_ERR_MSG_INTERLEAVED, 0);
}


static void
test_fragment_interleaved_control(void **state)
{
    u_char  b[256];
    size_t  n;

    n = client_frame(b, 0x01, "fra", 3, key_rfc, LEN_MIN);
    n += client_frame(b + n, 0x89, "p1", 2, key_rfc, LEN_MIN);
    n += client_frame(b + n, 0x00, "gme", 3, key_rfc, LEN_MIN);
    n += client_frame(b + n, 0x8a, "", 0, key_rfc, LEN_MIN);
    n += client_frame(b + n, 0x00, "", 0, key_rfc, LEN_MIN);
    n += client_frame(b + n, 0x80, "nts", 3, key_rfc, LEN_MIN);
    n += client_frame(b + n, 0x88, "\x03\xe8", 2, key_rfc, LEN_MIN);

    drive_all_ways(b, n, INSITE_WS_OK, 4);
    assert_int_equal(ev.op[0], INSITE_WS_OP_PING);
    assert_int_equal(ev.len[0], 2);
    assert_memory_equal(ev.data[0], "p1", 2);
    assert_int_equal(ev.op[1], INSITE_WS_OP_PONG);
    assert_int_equal(ev.len[1], 0);
    assert_int_equal(ev.op[2], INSITE_WS_OP_TEXT);
    assert_int_equal(ev.len[2], 9);
    assert_memory_equal(ev.data[2], "fragments", 9);
    assert_int_equal(ev.op[3], INSITE_WS_OP_CLOSE);
    assert_int_equal(ev.len[3], 2);

    /* binary is reported as binary, so the glue can close with 1003 */
    n = client_frame(b, 0x02, "\x00\x01", 2, key_rfc, LEN_MIN);
    n += client_frame(b + n, 0x80, "\xff", 1, key_rfc, LEN_MIN);
    drive_all_ways(b, n, INSITE_WS_OK, 1);
    assert_int_equal(ev.op[0], INSITE_WS_OP_BINARY);
    assert_int_equal(ev.len[0], 3);
}


static void
test_message_too_big(void **state)
{
    u_char           b[256];
    size_t           n;
    insite_ws_msg_t  m;
    insite_ws_frame_t f;

    /* each frame fits, the sum does not */
    n = client_frame(b, 0x01, "12345", 5, key_rfc, LEN_MIN);
    n += client_frame(b + n, 0x00, "12345", 5, key_rfc, LEN_MIN);
    n += client_frame(b + n, 0x80, "1", 1, key_rfc, LEN_MIN);
    assert_int_equal(drive(b, n, 1, 10), INSITE_WS_ERR_MSG_TOO_BIG);
    assert_int_equal(insite_ws_close_code(INSITE_WS_ERR_MSG_TOO_BIG), 1009);
    assert_int_equal(drive(b, n, 1, 11), INSITE_WS_OK);
    assert_int_equal(ev.len[0], 11);

    /* control frames do not count against the data message */
    n = client_frame(b, 0x01, "12345", 5, key_rfc, LEN_MIN);
    n += client_frame(b + n, 0x89, "123456789", 9, key_rfc, LEN_MIN);
    n += client_frame(b + n, 0x80, "12345", 5, key_rfc, LEN_MIN);
    assert_int_equal(drive(b, n, 3, 10), INSITE_WS_OK);
    assert_int_equal(ev.nev, 2);

    /* the limit restarts with each message */
    n = client_frame(b, 0x81, "1234567890", 10, key_rfc, LEN_MIN);
    n += client_frame(b + n, 0x82, "1234567890", 10, key_rfc, LEN_MIN);
    assert_int_equal(drive(b, n, 1, 10), INSITE_WS_OK);
    assert_int_equal(ev.nev, 2);

    /* a huge declared length cannot wrap the running sum */
    insite_ws_msg_init(&m, INSITE_WS_NO_LIMIT - 1);
    memset(&f, 0, sizeof(f));
    f.opcode = INSITE_WS_OP_BINARY;
    f.payload_len = 10;
    assert_int_equal(insite_ws_msg_begin(&m, &f), INSITE_WS_OK);
    m.frame_left = 0;
    {
        int op;
        assert_int_equal(insite_ws_msg_end(&m, &op), INSITE_WS_OK);
    }
    f.opcode = INSITE_WS_OP_CONT;
    f.payload_len = INSITE_WS_NO_LIMIT - 5;
    assert_int_equal(insite_ws_msg_begin(&m, &f), INSITE_WS_ERR_MSG_TOO_BIG);
}


static void
test_usage_errors(void **state)
{
    insite_ws_msg_t    m;
    insite_ws_frame_t  f;
    u_char             d[8] = { 0 };
    int                op;

    insite_ws_msg_init(&m, 100);
    assert_int_equal(insite_ws_msg_payload(&m, d, 1), INSITE_WS_ERR_USAGE);
    assert_int_equal(insite_ws_msg_end(&m, &op), INSITE_WS_ERR_USAGE);

    memset(&f, 0, sizeof(f));
    f.opcode = INSITE_WS_OP_TEXT;
    f.fin = 1;
    f.payload_len = 4;
    assert_int_equal(insite_ws_msg_begin(&m, &f), INSITE_WS_OK);
    assert_int_equal(insite_ws_msg_begin(&m, &f), INSITE_WS_ERR_USAGE);
    assert_int_equal(insite_ws_msg_payload(&m, d, 5), INSITE_WS_ERR_USAGE);
    assert_int_equal(insite_ws_msg_end(&m, &op), INSITE_WS_ERR_USAGE);
    memcpy(d, "abcd", 4);
    assert_int_equal(insite_ws_msg_payload(&m, d, 4), INSITE_WS_OK);
    assert_int_equal(insite_ws_msg_end(&m, &op), INSITE_WS_OK);
    assert_int_equal(op, INSITE_WS_OP_TEXT);
    assert_int_equal(insite_ws_close_code(INSITE_WS_ERR_USAGE), 1011);
}


/* UTF-8 (8.1) */

static void
test_utf8_split_across_fragments(void **state)
{
    /* 1-, 2-, 3- and 4-byte code points, U+10FFFF last */
    static const u_char  text[] = "a\xc2\xa9\xe2\x82\xac\xf0\x9f\x98\x80"
                                  "\xf4\x8f\xbf\xbf";
    size_t               len = sizeof(text) - 1, cut, cut2, n;
    u_char               b[128];

    for (cut = 0; cut <= len; cut++) {
        n = client_frame(b, 0x01, text, cut, key_rfc, LEN_MIN);
        n += client_frame(b + n, 0x80, text + cut, len - cut, key_rfc,
                          LEN_MIN);
        drive_all_ways(b, n, INSITE_WS_OK, 1);
        assert_int_equal(ev.len[0], len);
        assert_memory_equal(ev.data[0], text, len);

        for (cut2 = cut; cut2 <= len; cut2++) {
            n = client_frame(b, 0x01, text, cut, key_rfc, LEN_MIN);
            n += client_frame(b + n, 0x89, "", 0, key_rfc, LEN_MIN);
            n += client_frame(b + n, 0x00, text + cut, cut2 - cut, key_rfc,
                              LEN_MIN);
            n += client_frame(b + n, 0x80, text + cut2, len - cut2, key_rfc,
                              LEN_MIN);
            assert_int_equal(drive(b, n, 1, MAX_MSG), INSITE_WS_OK);
            assert_int_equal(ev.nev, 2);
            assert_memory_equal(ev.data[1], text, len);
        }
    }

    /* the validator alone, in every two-piece split */
    for (cut = 0; cut <= len; cut++) {
        uint32_t st = insite_ws_utf8_validate(INSITE_WS_UTF8_ACCEPT, text, cut);
        assert_int_not_equal(st, INSITE_WS_UTF8_REJECT);
        st = insite_ws_utf8_validate(st, text + cut, len - cut);
        assert_int_equal(st, INSITE_WS_UTF8_ACCEPT);
    }
}


typedef struct {
    const char  *s;
    size_t       len;
} bytes_t;

#define BYTES(s) { s, sizeof(s) - 1 }

static const bytes_t  utf8_bad[] = {
    BYTES("\xc0\xaf"),                  /* overlong '/' */
    BYTES("\xe0\x80\xaf"),
    BYTES("\xf0\x80\x80\xaf"),
    BYTES("\xf8\x80\x80\x80\xaf"),
    BYTES("\xfc\x80\x80\x80\x80\xaf"),
    BYTES("\xc1\xbf"),                  /* overlong U+007F */
    BYTES("\xe0\x9f\xbf"),              /* overlong U+07FF */
    BYTES("\xf0\x8f\xbf\xbf"),          /* overlong U+FFFF */
    BYTES("\xc0\x80"),                  /* overlong NUL */
    BYTES("\xed\xa0\x80"),              /* U+D800 */
    BYTES("\xed\xad\xbf"),              /* U+DB7F */
    BYTES("\xed\xb0\x80"),              /* U+DC00 */
    BYTES("\xed\xbf\xbf"),              /* U+DFFF */
    BYTES("\xed\xa0\x80\xed\xb0\x80"),  /* surrogate pair */
    BYTES("\xf4\x90\x80\x80"),          /* U+110000 */
    BYTES("\xf7\xbf\xbf\xbf"),
    BYTES("\xf5\x80\x80\x80"),
    BYTES("\x80"),                      /* lone continuation bytes */
    BYTES("\xbf"),
    BYTES("a\x80"),
    BYTES("\xc2\xa9\xa9"),
    BYTES("\xfe"),
    BYTES("\xff"),
    BYTES("\xc2"),                      /* truncated */
    BYTES("\xe2\x82"),
    BYTES("\xf0\x9f\x98"),
    BYTES("\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80" "edited"),
    BYTES("\xc2 "),                     /* lead then ASCII */
    BYTES("\xe2\x82 "),
};

static const bytes_t  utf8_good[] = {
    BYTES(""),
    BYTES("\x00"),
    BYTES("\x7f"),
    BYTES("\xc2\x80"),
    BYTES("\xdf\xbf"),
    BYTES("\xe0\xa0\x80"),
    BYTES("\xed\x9f\xbf"),              /* U+D7FF */
    BYTES("\xee\x80\x80"),              /* U+E000 */
    BYTES("\xef\xbf\xbf"),              /* U+FFFF */
    BYTES("\xef\xbf\xbe"),              /* non-characters are valid */
    BYTES("\xf0\x90\x80\x80"),
    BYTES("\xf4\x8f\xbf\xbf"),          /* U+10FFFF */
    BYTES("\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5"),
    BYTES("Hello-\xc2\xb5@\xc3\x9f\xc3\xb6\xc3\xa4\xc3\xbc\xc3\xa0\xc3\xa1"
          "-UTF-8!!"),
    BYTES("plain ASCII long enough to take the word-at-a-time path....."),
};


static void
test_utf8_kuhn(void **state)
{
    size_t  i, n, cut;
    u_char  b[256];
    int     rc;

    for (i = 0; i < sizeof(utf8_bad) / sizeof(utf8_bad[0]); i++) {
        const u_char *s = (const u_char *) utf8_bad[i].s;
        size_t        len = utf8_bad[i].len;

        assert_false(insite_ws_utf8_valid(s, len));

        /* as a single text frame, and split into two fragments anywhere */
        n = client_frame(b, 0x81, s, len, key_rfc, LEN_MIN);
        drive_all_ways(b, n, INSITE_WS_ERR_UTF8, 0);
        assert_int_equal(insite_ws_close_code(INSITE_WS_ERR_UTF8), 1007);

        for (cut = 0; cut <= len; cut++) {
            n = client_frame(b, 0x01, s, cut, key_rfc, LEN_MIN);
            n += client_frame(b + n, 0x80, s + cut, len - cut, key_rfc,
                              LEN_MIN);
            rc = drive(b, n, 1, MAX_MSG);
            assert_int_equal(rc, INSITE_WS_ERR_UTF8);
        }

        /* the same bytes as binary are not checked */
        n = client_frame(b, 0x82, s, len, key_rfc, LEN_MIN);
        drive_all_ways(b, n, INSITE_WS_OK, 1);
    }

    for (i = 0; i < sizeof(utf8_good) / sizeof(utf8_good[0]); i++) {
        const u_char *s = (const u_char *) utf8_good[i].s;
        size_t        len = utf8_good[i].len;

        assert_true(insite_ws_utf8_valid(s, len));
        n = client_frame(b, 0x81, s, len, key_rfc, LEN_MIN);
        drive_all_ways(b, n, INSITE_WS_OK, 1);
        assert_memory_equal(ev.data[0], s, len);
    }
}


static void
test_utf8_fail_fast(void **state)
{
    insite_ws_msg_t    m;
    insite_ws_frame_t  f;
    u_char             d[4] = { 'o', 'k', 0xc0, 0xaf };

    /* the bad byte fails the message before the frame (or message) ends */
    insite_ws_msg_init(&m, MAX_MSG);
    memset(&f, 0, sizeof(f));
    f.opcode = INSITE_WS_OP_TEXT;
    f.payload_len = 100;
    assert_int_equal(insite_ws_msg_begin(&m, &f), INSITE_WS_OK);
    assert_int_equal(insite_ws_msg_payload(&m, d, 2), INSITE_WS_OK);
    assert_int_equal(insite_ws_msg_payload(&m, d + 2, 2), INSITE_WS_ERR_UTF8);

    assert_int_equal(insite_ws_utf8_validate(INSITE_WS_UTF8_REJECT,
                                             (const u_char *) "a", 1),
                     INSITE_WS_UTF8_REJECT);
    assert_int_equal(insite_ws_utf8_validate(1000, (const u_char *) "a", 1),
                     INSITE_WS_UTF8_REJECT);
}


/* unmasking */

static void
test_unmask_pieces(void **state)
{
    u_char    plain[100], whole[100], piece[100];
    u_char    key[4] = { 0x12, 0x34, 0x56, 0x78 };
    size_t    i, len, cut1, cut2;

    for (i = 0; i < sizeof(plain); i++) {
        plain[i] = (u_char) (i * 31 + 5);
        whole[i] = plain[i] ^ key[i & 3];
    }

    for (len = 0; len <= 41; len++) {
        for (cut1 = 0; cut1 <= len; cut1++) {
            for (cut2 = cut1; cut2 <= len; cut2 += 3) {
                memcpy(piece, whole, len);
                insite_ws_unmask(piece, cut1, key, 0);
                insite_ws_unmask(piece + cut1, cut2 - cut1, key, cut1);
                insite_ws_unmask(piece + cut2, len - cut2, key, cut2);
                assert_memory_equal(piece, plain, len);
            }
        }
    }

    /* unaligned start, long run through the 32-byte loop */
    memcpy(piece, whole, 100);
    insite_ws_unmask(piece, 3, key, 0);
    insite_ws_unmask(piece + 3, 97, key, 3);
    assert_memory_equal(piece, plain, 100);

    /* offsets beyond 32 bits */
    memcpy(piece, whole, 8);
    insite_ws_unmask(piece, 8, key, ((uint64_t) 1 << 40));
    assert_memory_equal(piece, plain, 8);
}


/* close frames (5.5.1, 7.4) */

static void
test_close_parse(void **state)
{
    uint16_t       code;
    const u_char  *reason;
    size_t         rlen;
    unsigned       c;
    u_char         p[130] = { 0 };
    int            rc;

    assert_int_equal(insite_ws_close_parse(p, 0, &code, &reason, &rlen),
                     INSITE_WS_OK);
    assert_int_equal(code, 1005);
    assert_int_equal(rlen, 0);

    p[0] = 0x03;
    assert_int_equal(insite_ws_close_parse(p, 1, &code, &reason, &rlen),
                     INSITE_WS_ERR_CLOSE_LEN);
    assert_int_equal(insite_ws_close_code(INSITE_WS_ERR_CLOSE_LEN), 1002);

    for (c = 0; c < 70000; c++) {
        int valid = (c >= 1000 && c <= 1003) || (c >= 1007 && c <= 1014)
                    || (c >= 3000 && c <= 4999);

        assert_int_equal(insite_ws_close_code_valid(c), valid);
        if (c > 0xffff) {
            continue;
        }
        p[0] = (u_char) (c >> 8);
        p[1] = (u_char) c;
        rc = insite_ws_close_parse(p, 2, &code, &reason, &rlen);
        assert_int_equal(rc, valid ? INSITE_WS_OK : INSITE_WS_ERR_CLOSE_CODE);
        if (valid) {
            assert_int_equal(code, c);
            assert_int_equal(rlen, 0);
        }
    }

    /* explicit ones Autobahn 7.9.x sends */
    {
        static const unsigned bad[] = { 0, 999, 1004, 1005, 1006, 1015, 1016,
                                        1100, 2000, 2999, 5000, 65535 };
        size_t i;
        for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
            assert_false(insite_ws_close_code_valid(bad[i]));
        }
    }
    assert_int_equal(insite_ws_close_code(INSITE_WS_ERR_CLOSE_CODE), 1002);

    memcpy(p, "\x03\xe8" "bye \xe2\x82\xac", 9);
    assert_int_equal(insite_ws_close_parse(p, 9, &code, &reason, &rlen),
                     INSITE_WS_OK);
    assert_int_equal(code, 1000);
    assert_int_equal(rlen, 7);
    assert_memory_equal(reason, "bye \xe2\x82\xac", 7);

    /* reason truncated mid code point, or a surrogate */
    assert_int_equal(insite_ws_close_parse(p, 8, &code, &reason, &rlen),
                     INSITE_WS_ERR_CLOSE_UTF8);
    assert_int_equal(insite_ws_close_code(INSITE_WS_ERR_CLOSE_UTF8), 1007);
    memcpy(p + 2, "\xed\xa0\x80", 3);
    assert_int_equal(insite_ws_close_parse(p, 5, NULL, NULL, NULL),
                     INSITE_WS_ERR_CLOSE_UTF8);

    memset(p + 2, 'a', 124);
    assert_int_equal(insite_ws_close_parse(p, 125, NULL, NULL, NULL),
                     INSITE_WS_OK);
    assert_int_equal(insite_ws_close_parse(p, 126, NULL, NULL, NULL),
                     INSITE_WS_ERR_CTRL_TOO_LONG);
}


static void
test_close_frame_build(void **state)
{
    u_char         buf[INSITE_WS_CLOSE_FRAME_MAX], reason[300];
    uint16_t       code;
    const u_char  *r;
    size_t         n, rlen, i;

    n = insite_ws_close_frame(buf, 1000, (const u_char *) "bye", 3);
    assert_int_equal(n, 7);
    assert_memory_equal(buf, "\x88\x05\x03\xe8" "bye", 7);

    n = insite_ws_close_frame(buf, 0, NULL, 0);
    assert_int_equal(n, 2);
    assert_memory_equal(buf, "\x88\x00", 2);

    n = insite_ws_close_frame(buf, 1009, NULL, 5);
    assert_int_equal(n, 4);
    assert_memory_equal(buf, "\x88\x02\x03\xf1", 4);

    /* codes that must not be sent */
    assert_int_equal(insite_ws_close_frame(buf, 1005, NULL, 0), 0);
    assert_int_equal(insite_ws_close_frame(buf, 1006, NULL, 0), 0);
    assert_int_equal(insite_ws_close_frame(buf, 999, NULL, 0), 0);

    /* 123 bytes fit exactly */
    memset(reason, 'r', sizeof(reason));
    n = insite_ws_close_frame(buf, 1001, reason, 123);
    assert_int_equal(n, 127);
    assert_int_equal(buf[1], 125);

    /* longer: cut to 123 */
    n = insite_ws_close_frame(buf, 1001, reason, sizeof(reason));
    assert_int_equal(n, 127);

    /* a euro sign straddling byte 123 is dropped whole, at every position */
    for (i = 118; i <= 123; i++) {
        memset(reason, 'r', sizeof(reason));
        memcpy(reason + i, "\xe2\x82\xac", 3);
        n = insite_ws_close_frame(buf, 1000, reason, 200);
        assert_int_equal(buf[1], n - 2);
        assert_true(n - 2 <= INSITE_WS_MAX_CONTROL);
        assert_int_equal(insite_ws_close_parse(buf + 2, n - 2, &code, &r,
                                               &rlen), INSITE_WS_OK);
        assert_int_equal(code, 1000);
        assert_int_equal(rlen, i + 3 <= 123 ? 123 : i);
    }

    /* an invalid reason is cut before the first bad byte */
    memcpy(reason, "ok\xc0\xafno", 6);
    n = insite_ws_close_frame(buf, 1000, reason, 6);
    assert_int_equal(n, 6);
    assert_memory_equal(buf + 4, "ok", 2);
}


static void
test_encoder_lengths(void **state)
{
    static const struct {
        uint64_t  len;
        size_t    hlen;
        u_char    b[10];
    } t[] = {
        { 0,      2,  { 0x82, 0 } },
        { 125,    2,  { 0x82, 125 } },
        { 126,    4,  { 0x82, 126, 0, 126 } },
        { 65535,  4,  { 0x82, 126, 0xff, 0xff } },
        { 65536,  10, { 0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0 } },
        { 0x0102030405060708ULL, 10,
                      { 0x82, 127, 1, 2, 3, 4, 5, 6, 7, 8 } },
        { INT64_MAX, 10,
                      { 0x82, 127, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                        0xff } },
    };
    u_char  buf[INSITE_WS_MAX_SERVER_HEADER];
    size_t  i;

    for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        assert_int_equal(insite_ws_frame_header(buf, INSITE_WS_OP_BINARY, 1,
                                                t[i].len), t[i].hlen);
        assert_memory_equal(buf, t[i].b, t[i].hlen);
    }

    assert_int_equal(insite_ws_frame_header(buf, INSITE_WS_OP_TEXT, 0, 1), 2);
    assert_int_equal(buf[0], 0x01);
    assert_int_equal(insite_ws_frame_header(buf, INSITE_WS_OP_CONT, 1, 1), 2);
    assert_int_equal(buf[0], 0x80);

    /* what no frame may carry */
    assert_int_equal(insite_ws_frame_header(buf, 3, 1, 0), 0);
    assert_int_equal(insite_ws_frame_header(buf, 16, 1, 0), 0);
    assert_int_equal(insite_ws_frame_header(buf, -1, 1, 0), 0);
    assert_int_equal(insite_ws_frame_header(buf, INSITE_WS_OP_BINARY, 1,
                                            (uint64_t) 1 << 63), 0);
    assert_int_equal(insite_ws_frame_header(buf, INSITE_WS_OP_PING, 1, 126), 0);
    assert_int_equal(insite_ws_frame_header(buf, INSITE_WS_OP_PING, 0, 1), 0);
    assert_int_equal(insite_ws_frame_header(buf, INSITE_WS_OP_CLOSE, 1, 125),
                     2);
}


static void
test_strerror_distinct(void **state)
{
    int  a, b;

    for (a = INSITE_WS_ERR_CRYPTO; a <= INSITE_WS_NEED_MORE; a++) {
        assert_string_not_equal(insite_ws_strerror(a), "unknown error");
        assert_true(insite_ws_close_code(a) >= 1000);
        for (b = INSITE_WS_ERR_CRYPTO; b < a; b++) {
            assert_string_not_equal(insite_ws_strerror(a),
                                    insite_ws_strerror(b));
        }
    }
    assert_string_equal(insite_ws_strerror(-100), "unknown error");
    assert_int_equal(insite_ws_close_code(INSITE_WS_OK), 1000);
    assert_int_equal(insite_ws_close_code(INSITE_WS_ERR_CRYPTO), 1011);
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_rfc_unmasked_hello),
        cmocka_unit_test(test_rfc_masked_hello),
        cmocka_unit_test(test_rfc_fragmented),
        cmocka_unit_test(test_rfc_ping_pong),
        cmocka_unit_test(test_rfc_lengths),
        cmocka_unit_test(test_rfc_handshake),
        cmocka_unit_test(test_key_valid),
        cmocka_unit_test(test_header_errors),
        cmocka_unit_test(test_header_nonminimal_and_max),
        cmocka_unit_test(test_fragment_errors),
        cmocka_unit_test(test_fragment_interleaved_control),
        cmocka_unit_test(test_message_too_big),
        cmocka_unit_test(test_usage_errors),
        cmocka_unit_test(test_utf8_split_across_fragments),
        cmocka_unit_test(test_utf8_kuhn),
        cmocka_unit_test(test_utf8_fail_fast),
        cmocka_unit_test(test_unmask_pieces),
        cmocka_unit_test(test_close_parse),
        cmocka_unit_test(test_close_frame_build),
        cmocka_unit_test(test_encoder_lengths),
        cmocka_unit_test(test_strerror_distinct),
    };

    return cmocka_run_group_tests_name("ws_frame", tests, NULL, NULL);
}
