/*
 * libFuzzer target for the RFC 6455 core (ngx_insite_ws/insite_ws_frame.c).
 *
 * Input: byte 0 picks the message size limit, byte 1 seeds how the rest is
 * cut into reads; the rest is the client byte stream. The stream goes
 * through the same loop the nginx glue runs (partial header kept and
 * re-offered, payload unmasked and validated piece by piece), once in a
 * single read and once cut into fuzzer-chosen pieces; both must agree.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined \
 *       tests/fuzz/fuzz_ws_frame.c ngx_insite_ws/insite_ws_frame.c -lcrypto
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../ngx_insite_ws/insite_ws_frame.h"


/* abort() rather than assert(): must hold with NDEBUG too */
#define CHECK(x)  do { if (!(x)) { __builtin_trap(); } } while (0)


static const uint64_t  limits[] = {
    0, 1, 16, 125, 126, 1000, 65535, 65536, INSITE_WS_NO_LIMIT
};


/*
 * An independent, slow UTF-8 decoder written from RFC 3629's definition:
 * 0 = valid, 1 = valid so far but cut in a code point, -1 = invalid.
 */
static int
ref_utf8(const u_char *p, size_t len)
{
    size_t    i, n, k;
    uint32_t  cp, min;

    for (i = 0; i < len; i += n) {
        u_char c = p[i];

        if (c < 0x80) {
            n = 1; cp = c; min = 0;
        } else if ((c & 0xe0) == 0xc0) {
            n = 2; cp = c & 0x1f; min = 0x80;
        } else if ((c & 0xf0) == 0xe0) {
            n = 3; cp = c & 0x0f; min = 0x800;
        } else if ((c & 0xf8) == 0xf0) {
            n = 4; cp = c & 0x07; min = 0x10000;
        } else {
            return -1;
        }

        for (k = 1; k < n; k++) {
            if (i + k == len) {
                /* cut short: valid only if some completion could be valid */
                u_char  buf[4];
                size_t  j;

                memcpy(buf, p + i, k);
                /* try the smallest and largest continuations */
                for (j = k; j < n; j++) {
                    buf[j] = 0x80;
                }
                if (ref_utf8(buf, n) == 0) {
                    return 1;
                }
                for (j = k; j < n; j++) {
                    buf[j] = 0xbf;
                }
                if (ref_utf8(buf, n) == 0) {
                    return 1;
                }
                /* a middle continuation, for F4 8x / ED 9x style limits */
                for (j = k; j < n; j++) {
                    buf[j] = 0x8f;
                }
                return ref_utf8(buf, n) == 0 ? 1 : -1;
            }

            if ((p[i + k] & 0xc0) != 0x80) {
                return -1;
            }
            cp = (cp << 6) | (p[i + k] & 0x3f);
        }

        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
            return -1;
        }
    }

    return 0;
}


typedef struct {
    int       rc;           /* how the stream ended */
    uint64_t  hash;         /* over every completed message */
    size_t    nev;
    size_t    consumed;
} result_t;


static void
hash_in(uint64_t *h, const void *p, size_t len)
{
    const u_char  *s = p;
    size_t         i;

    for (i = 0; i < len; i++) {
        *h = (*h ^ s[i]) * 0x100000001b3ULL;
    }
}


static uint32_t
next_rand(uint32_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 17;
    *s ^= *s << 5;
    return *s;
}


/* invariants of one accepted header, and that it re-encodes to itself */
static void
check_header(const u_char *hdr, size_t avail, uint64_t max,
    const insite_ws_frame_t *f)
{
    insite_ws_frame_t  g;
    u_char             enc[INSITE_WS_MAX_CLIENT_HEADER];
    size_t             n, minimal;

    CHECK(f->header_len == 6 || f->header_len == 8 || f->header_len == 14);
    CHECK(f->header_len <= avail);
    CHECK(f->fin <= 1 && f->masked == 1 && f->rsv == 0);
    CHECK(f->payload_len <= max);
    CHECK((f->payload_len >> 63) == 0);
    CHECK(memcmp(f->mask, hdr + f->header_len - 4, 4) == 0);

    if (insite_ws_op_is_control(f->opcode)) {
        CHECK(f->fin && f->payload_len <= INSITE_WS_MAX_CONTROL);
    }

    /* one byte short is never enough */
    CHECK(insite_ws_parse_header(hdr, f->header_len - 1, max, &g)
          == INSITE_WS_NEED_MORE);

    n = insite_ws_frame_header(enc, f->opcode, f->fin, f->payload_len);
    CHECK(n == 2 || n == 4 || n == 10);

    minimal = f->payload_len <= 125 ? 2 : f->payload_len <= 0xffff ? 4 : 10;
    CHECK(n == minimal);

    /* as a client would send it: mask bit and key */
    enc[1] |= 0x80;
    memcpy(enc + n, f->mask, 4);

    CHECK(insite_ws_parse_header(enc, n + 4, max, &g) == INSITE_WS_OK);
    CHECK(g.header_len == n + 4);
    CHECK(g.opcode == f->opcode && g.fin == f->fin);
    CHECK(g.payload_len == f->payload_len);
    CHECK(memcmp(g.mask, f->mask, 4) == 0);

    if (f->header_len == n + 4) {
        CHECK(memcmp(enc, hdr, n + 4) == 0);
    }
}


static void
check_close(const u_char *p, size_t len)
{
    uint16_t       code, code2;
    const u_char  *reason, *reason2;
    size_t         rlen, rlen2, n;
    u_char         frame[INSITE_WS_CLOSE_FRAME_MAX];
    int            rc;

    rc = insite_ws_close_parse(p, len, &code, &reason, &rlen);

    if (rc != INSITE_WS_OK) {
        CHECK(rc == INSITE_WS_ERR_CLOSE_LEN || rc == INSITE_WS_ERR_CLOSE_CODE
              || rc == INSITE_WS_ERR_CLOSE_UTF8);
        CHECK(len != 0);
        CHECK((rc == INSITE_WS_ERR_CLOSE_LEN) == (len == 1));
        return;
    }

    if (len == 0) {
        CHECK(code == INSITE_WS_CLOSE_NO_STATUS && rlen == 0);
        CHECK(insite_ws_close_frame(frame, 0, NULL, 0) == 2);
        return;
    }

    CHECK(insite_ws_close_code_valid(code));
    CHECK(rlen == len - 2 && reason == p + 2);
    CHECK(ref_utf8(reason, rlen) == 0);

    /* echoing it back must give the peer exactly what it sent */
    n = insite_ws_close_frame(frame, code, reason, rlen);
    CHECK(n == 4 + rlen);
    CHECK(frame[0] == 0x88 && frame[1] == len);
    CHECK(memcmp(frame + 2, p, len) == 0);
    CHECK(insite_ws_close_parse(frame + 2, n - 2, &code2, &reason2, &rlen2)
          == INSITE_WS_OK);
    CHECK(code2 == code && rlen2 == rlen);
}


/*
 * The glue's read loop. chunk == 0 means the whole stream in one read;
 * otherwise read sizes come from the seed.
 */
static void
run(const u_char *data, size_t size, uint64_t max, uint32_t seed,
    unsigned max_chunk, u_char *msgbuf, result_t *res)
{
    insite_ws_msg_t    m;
    insite_ws_frame_t  f;
    u_char             hdr[INSITE_WS_MAX_CLIENT_HEADER];
    u_char             ctl[INSITE_WS_MAX_CONTROL];
    u_char            *buf, *p;
    size_t             off, n, take, hlen, msg_len, ctl_len;
    int                rc, op, in_payload;

    memset(res, 0, sizeof(*res));
    res->hash = 0xcbf29ce484222325ULL;
    insite_ws_msg_init(&m, max);

    hlen = 0;
    msg_len = 0;
    ctl_len = 0;
    in_payload = 0;
    rc = INSITE_WS_OK;

    for (off = 0; off < size; off += n) {
        n = size - off;
        if (max_chunk) {
            take = 1 + next_rand(&seed) % max_chunk;
            if (take < n) {
                n = take;
            }
        }

        /* an exact-size heap copy, so a read past it is an ASan report */
        buf = malloc(n);
        CHECK(buf != NULL);
        memcpy(buf, data + off, n);
        p = buf;

        while (p < buf + n) {

            if (!in_payload) {
                take = (size_t) (buf + n - p);
                if (take > sizeof(hdr) - hlen) {
                    take = sizeof(hdr) - hlen;
                }
                memcpy(hdr + hlen, p, take);

                rc = insite_ws_parse_header(hdr, hlen + take, max, &f);

                if (rc == INSITE_WS_NEED_MORE) {
                    CHECK(hlen + take < INSITE_WS_MAX_CLIENT_HEADER);
                    hlen += take;
                    p += take;
                    continue;
                }

                if (rc != INSITE_WS_OK) {
                    CHECK(rc < 0);
                    CHECK(insite_ws_close_code(rc) == 1002
                          || insite_ws_close_code(rc) == 1009);
                    goto done;
                }

                check_header(hdr, hlen + take, max, &f);
                CHECK(f.header_len > hlen);

                p += f.header_len - hlen;
                hlen = 0;

                rc = insite_ws_msg_begin(&m, &f);
                if (rc != INSITE_WS_OK) {
                    CHECK(rc == INSITE_WS_ERR_CONT_UNEXPECTED
                          || rc == INSITE_WS_ERR_MSG_INTERLEAVED
                          || rc == INSITE_WS_ERR_MSG_TOO_BIG);
                    goto done;
                }

                CHECK(m.msg_len <= max);
                CHECK(m.frame_left == f.payload_len && m.frame_off == 0);

                if (insite_ws_op_is_control(f.opcode)) {
                    ctl_len = 0;
                }

                in_payload = 1;
            }

            take = (size_t) (buf + n - p);
            if (take > m.frame_left) {
                take = (size_t) m.frame_left;
            }

            rc = insite_ws_msg_payload(&m, p, take);

            /* keep the bytes either way: a UTF-8 failure is checked below */
            if (insite_ws_op_is_control(m.frame_opcode)) {
                CHECK(ctl_len + take <= sizeof(ctl));
                memcpy(ctl + ctl_len, p, take);
                ctl_len += take;

            } else {
                CHECK(msg_len + take <= size);
                memcpy(msgbuf + msg_len, p, take);
                msg_len += take;
            }

            if (rc != INSITE_WS_OK) {
                CHECK(rc == INSITE_WS_ERR_UTF8);
                CHECK(m.msg_opcode == INSITE_WS_OP_TEXT);
                CHECK(ref_utf8(msgbuf, msg_len) == -1);
                goto done;
            }

            p += take;
            CHECK(m.frame_off + m.frame_left == f.payload_len);

            if (m.frame_left != 0) {
                continue;
            }

            in_payload = 0;
            rc = insite_ws_msg_end(&m, &op);

            if (rc != INSITE_WS_OK) {
                CHECK(rc == INSITE_WS_ERR_UTF8);
                CHECK(ref_utf8(msgbuf, msg_len) == 1);
                goto done;
            }

            /* whole frames only, so a failure mid-frame compares equal */
            res->consumed += f.header_len + f.payload_len;

            switch (op) {

            case INSITE_WS_OP_CONT:
                CHECK(!f.fin && !insite_ws_op_is_control(f.opcode));
                CHECK(m.msg_opcode != 0);
                continue;

            case INSITE_WS_OP_TEXT:
                CHECK(ref_utf8(msgbuf, msg_len) == 0);
                /* fall through */

            case INSITE_WS_OP_BINARY:
                CHECK(f.fin && m.msg_opcode == 0);
                CHECK(msg_len <= max);
                hash_in(&res->hash, &op, sizeof(op));
                hash_in(&res->hash, &msg_len, sizeof(msg_len));
                hash_in(&res->hash, msgbuf, msg_len);
                msg_len = 0;
                break;

            case INSITE_WS_OP_CLOSE:
                check_close(ctl, ctl_len);
                /* fall through */

            case INSITE_WS_OP_PING:
            case INSITE_WS_OP_PONG:
                CHECK(op == f.opcode && ctl_len == f.payload_len);
                {
                    u_char  pong[INSITE_WS_MAX_SERVER_HEADER];
                    CHECK(insite_ws_frame_header(pong, INSITE_WS_OP_PONG, 1,
                                                 ctl_len) == 2);
                }
                hash_in(&res->hash, &op, sizeof(op));
                hash_in(&res->hash, ctl, ctl_len);
                break;

            default:
                CHECK(0);
            }

            res->nev++;
        }

        free(buf);
    }

    rc = (hlen || in_payload) ? INSITE_WS_NEED_MORE : INSITE_WS_OK;
    res->rc = rc;
    return;

done:

    free(buf);
    res->rc = rc;
}


/* the validator and unmask on their own: pieces must equal the whole */
static void
check_pieces(const u_char *data, size_t size, unsigned cut_seed)
{
    uint32_t  whole, st;
    size_t    cut;
    u_char    key[4] = { 0xa5, 0x01, 0xfe, 0x7c };
    u_char   *a, *b;
    int       ref;

    cut = size ? cut_seed % (size + 1) : 0;

    whole = insite_ws_utf8_validate(INSITE_WS_UTF8_ACCEPT, data, size);
    st = insite_ws_utf8_validate(INSITE_WS_UTF8_ACCEPT, data, cut);
    st = insite_ws_utf8_validate(st, data + cut, size - cut);
    CHECK(st == whole);

    ref = ref_utf8(data, size);
    CHECK((whole == INSITE_WS_UTF8_ACCEPT) == (ref == 0));
    CHECK((whole == INSITE_WS_UTF8_REJECT) == (ref == -1));
    CHECK(insite_ws_utf8_valid(data, size) == (ref == 0));

    if (size == 0) {
        return;
    }

    a = malloc(size);
    b = malloc(size);
    CHECK(a && b);
    memcpy(a, data, size);
    memcpy(b, data, size);
    key[0] ^= (u_char) cut_seed;

    insite_ws_unmask(a, size, key, 0);
    insite_ws_unmask(b, cut, key, 0);
    insite_ws_unmask(b + cut, size - cut, key, cut);
    CHECK(memcmp(a, b, size) == 0);

    /* masking is its own inverse */
    insite_ws_unmask(a, size, key, 0);
    CHECK(memcmp(a, data, size) == 0);

    free(a);
    free(b);
}


static void
check_key(const u_char *data, size_t size)
{
    u_char  out[INSITE_WS_ACCEPT_LEN + 1];
    size_t  len = size < 24 ? size : 24;

    if (!insite_ws_key_valid(data, len)) {
        return;
    }

    CHECK(len == 24);
    CHECK(insite_ws_accept_key(data, len, out) == INSITE_WS_OK);
    CHECK(strlen((char *) out) == INSITE_WS_ACCEPT_LEN);
    CHECK(out[27] == '=');
}


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    result_t   whole, split;
    uint64_t   max;
    uint32_t   seed;
    unsigned   max_chunk;
    u_char    *msgbuf;

    if (size < 2) {
        return 0;
    }

    max = limits[data[0] % (sizeof(limits) / sizeof(limits[0]))];
    seed = 0x9e3779b9u ^ ((uint32_t) data[1] << 8) ^ data[0];
    /* reads of 1..2, 1..4, ... 1..256 bytes */
    max_chunk = 2u << (data[1] & 7);

    data += 2;
    size -= 2;

    msgbuf = malloc(size + 1);
    CHECK(msgbuf != NULL);

    run(data, size, max, 0, 0, msgbuf, &whole);
    run(data, size, max, seed, max_chunk, msgbuf, &split);

    /* how the bytes arrive must not change what the connection sees */
    CHECK(whole.rc == split.rc);
    CHECK(whole.nev == split.nev);
    CHECK(whole.hash == split.hash);
    CHECK(whole.consumed == split.consumed);
    CHECK(whole.consumed <= size);

    free(msgbuf);

    check_pieces(data, size, seed);
    check_key(data, size);

    return 0;
}
