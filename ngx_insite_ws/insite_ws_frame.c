/*
 * RFC 6455 protocol core: see insite_ws_frame.h for the calling sequence.
 */

#include <string.h>

#include <openssl/evp.h>

#include "insite_ws_frame.h"


#define INSITE_WS_GUID      "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define INSITE_WS_KEY_LEN   24      /* base64 of 16 bytes, with "==" */


static int
insite_ws_opcode_known(unsigned op)
{
    switch (op) {
    case INSITE_WS_OP_CONT:
    case INSITE_WS_OP_TEXT:
    case INSITE_WS_OP_BINARY:
    case INSITE_WS_OP_CLOSE:
    case INSITE_WS_OP_PING:
    case INSITE_WS_OP_PONG:
        return 1;
    default:
        return 0;
    }
}


/*
 * Stateless over a growing prefix: the caller re-offers the frame start with
 * more bytes after NEED_MORE. A header is at most 14 bytes, so re-parsing is
 * cheaper than carrying a state machine, and an error is reported as soon as
 * the byte that proves it has arrived (a bad first byte fails with len == 1).
 */
int
insite_ws_parse_header(const u_char *p, size_t len, uint64_t max_payload,
    insite_ws_frame_t *f)
{
    return insite_ws_parse_header_rsv(p, len, max_payload, 0, f);
}


int
insite_ws_parse_header_rsv(const u_char *p, size_t len, uint64_t max_payload,
    unsigned rsv_allowed, insite_ws_frame_t *f)
{
    unsigned  b0, b1, op, len7;
    size_t    need, i;
    uint64_t  plen;

    if (len < 1) {
        return INSITE_WS_NEED_MORE;
    }

    b0 = p[0];
    op = b0 & 0x0f;

    /* an RSV bit is a violation unless an extension gave it a meaning */
    if (b0 & 0x70 & ~(rsv_allowed << 4)) {
        return INSITE_WS_ERR_RSV;
    }

    if (!insite_ws_opcode_known(op)) {
        return INSITE_WS_ERR_OPCODE;
    }

    if (insite_ws_op_is_control(op) && !(b0 & 0x80)) {
        return INSITE_WS_ERR_CTRL_FRAGMENTED;
    }

    if (len < 2) {
        return INSITE_WS_NEED_MORE;
    }

    b1 = p[1];

    /* 5.1: a server MUST close on an unmasked client frame */
    if (!(b1 & 0x80)) {
        return INSITE_WS_ERR_UNMASKED;
    }

    len7 = b1 & 0x7f;

    if (len7 == 127) {
        if (len >= 3 && (p[2] & 0x80)) {
            return INSITE_WS_ERR_LEN_MSB;
        }
        need = 2 + 8;

    } else if (len7 == 126) {
        need = 2 + 2;

    } else {
        need = 2;
    }

    if (len < need) {
        return INSITE_WS_NEED_MORE;
    }

    /*
     * Non-minimal length encodings are accepted: being liberal here costs
     * nothing, and a control frame so encoded is judged by the length it
     * carries, not by its form.
     */
    if (len7 == 127) {
        plen = 0;
        for (i = 2; i < 10; i++) {
            plen = (plen << 8) | p[i];
        }

    } else if (len7 == 126) {
        plen = ((uint64_t) p[2] << 8) | p[3];

    } else {
        plen = len7;
    }

    if (insite_ws_op_is_control(op) && plen > INSITE_WS_MAX_CONTROL) {
        return INSITE_WS_ERR_CTRL_TOO_LONG;
    }

    /* checked before the mask key arrives: refuse a huge frame early */
    if (plen > max_payload) {
        return INSITE_WS_ERR_FRAME_TOO_BIG;
    }

    need += 4;

    if (len < need) {
        return INSITE_WS_NEED_MORE;
    }

    f->payload_len = plen;
    memcpy(f->mask, p + need - 4, 4);
    f->header_len = (uint8_t) need;
    f->opcode = (uint8_t) op;
    f->fin = (uint8_t) (b0 >> 7);
    f->rsv = (uint8_t) ((b0 >> 4) & 0x07);
    f->masked = 1;

    return INSITE_WS_OK;
}


/*
 * The key is replicated into a 64-bit word already rotated by offset, so a
 * payload unmasked in pieces of any size gives the same bytes as one call.
 * memcpy() keeps the word loads legal at any alignment; compilers turn it
 * into plain moves.
 */
void
insite_ws_unmask(u_char *data, size_t len, const u_char key[4],
    uint64_t offset)
{
    u_char    k[8];
    uint64_t  k64, w;
    size_t    i;

    for (i = 0; i < 8; i++) {
        k[i] = key[(offset + i) & 3];
    }

    memcpy(&k64, k, 8);

    for (i = 0; i + 32 <= len; i += 32) {
        memcpy(&w, data + i, 8);      w ^= k64; memcpy(data + i, &w, 8);
        memcpy(&w, data + i + 8, 8);  w ^= k64; memcpy(data + i + 8, &w, 8);
        memcpy(&w, data + i + 16, 8); w ^= k64; memcpy(data + i + 16, &w, 8);
        memcpy(&w, data + i + 24, 8); w ^= k64; memcpy(data + i + 24, &w, 8);
    }

    for ( /* void */ ; i + 8 <= len; i += 8) {
        memcpy(&w, data + i, 8);
        w ^= k64;
        memcpy(data + i, &w, 8);
    }

    /* i is a multiple of 8 here, so k[] is still in phase */
    for ( /* void */ ; i < len; i++) {
        data[i] ^= k[i & 7];
    }
}


/* Returns 0 for arguments no valid frame can carry, so bugs do not hit the wire */
size_t
insite_ws_frame_header(u_char *buf, int opcode, int fin, uint64_t len)
{
    int  i;

    if (opcode < 0 || !insite_ws_opcode_known((unsigned) opcode)
        || (len >> 63) != 0)
    {
        return 0;
    }

    if (insite_ws_op_is_control(opcode)
        && (!fin || len > INSITE_WS_MAX_CONTROL))
    {
        return 0;
    }

    buf[0] = (u_char) ((fin ? 0x80 : 0) | opcode);

    if (len <= INSITE_WS_MAX_CONTROL) {
        buf[1] = (u_char) len;
        return 2;
    }

    if (len <= 0xffff) {
        buf[1] = 126;
        buf[2] = (u_char) (len >> 8);
        buf[3] = (u_char) len;
        return 4;
    }

    buf[1] = 127;
    for (i = 0; i < 8; i++) {
        buf[2 + i] = (u_char) (len >> (56 - 8 * i));
    }

    return 10;
}


void
insite_ws_msg_init(insite_ws_msg_t *m, uint64_t max_msg)
{
    memset(m, 0, sizeof(*m));
    m->max_msg = max_msg;
    m->utf8 = INSITE_WS_UTF8_ACCEPT;
}


/*
 * Control frames may arrive between the fragments of a data message (5.4),
 * so they never touch the message fields, only the frame fields.
 */
int
insite_ws_msg_begin(insite_ws_msg_t *m, const insite_ws_frame_t *f)
{
    if (m->in_frame) {
        return INSITE_WS_ERR_USAGE;
    }

    /* RSV1 (permessage-deflate) marks the first frame of a data message */
    if ((f->rsv & INSITE_WS_RSV1)
        && (insite_ws_op_is_control(f->opcode)
            || f->opcode == INSITE_WS_OP_CONT))
    {
        return INSITE_WS_ERR_RSV;
    }

    if (!insite_ws_op_is_control(f->opcode)) {

        if (f->opcode == INSITE_WS_OP_CONT) {
            if (m->msg_opcode == 0) {
                return INSITE_WS_ERR_CONT_UNEXPECTED;
            }

        } else {
            if (m->msg_opcode != 0) {
                return INSITE_WS_ERR_MSG_INTERLEAVED;
            }

            m->msg_len = 0;
            m->utf8 = INSITE_WS_UTF8_ACCEPT;
            m->compressed = (f->rsv & INSITE_WS_RSV1) ? 1 : 0;
        }

        /* msg_len <= max_msg always holds, so this cannot wrap */
        if (f->payload_len > m->max_msg - m->msg_len) {
            return INSITE_WS_ERR_MSG_TOO_BIG;
        }

        if (f->opcode != INSITE_WS_OP_CONT) {
            m->msg_opcode = f->opcode;
        }

        m->msg_len += f->payload_len;
    }

    memcpy(m->mask, f->mask, 4);
    m->frame_left = f->payload_len;
    m->frame_off = 0;
    m->frame_opcode = f->opcode;
    m->fin = f->fin;
    m->masked = f->masked;
    m->in_frame = 1;

    return INSITE_WS_OK;
}


/*
 * Validating each piece as it arrives fails a bad text message at the first
 * offending byte instead of after buffering all of it.
 */
int
insite_ws_msg_payload(insite_ws_msg_t *m, u_char *data, size_t len)
{
    if (!m->in_frame || len > m->frame_left) {
        return INSITE_WS_ERR_USAGE;
    }

    if (m->masked) {
        insite_ws_unmask(data, len, m->mask, m->frame_off);
    }

    /* a compressed message is checked once inflated, by the caller */
    if (!insite_ws_op_is_control(m->frame_opcode)
        && m->msg_opcode == INSITE_WS_OP_TEXT && !m->compressed)
    {
        m->utf8 = insite_ws_utf8_validate(m->utf8, data, len);
        if (m->utf8 == INSITE_WS_UTF8_REJECT) {
            return INSITE_WS_ERR_UTF8;
        }
    }

    m->frame_off += len;
    m->frame_left -= len;

    return INSITE_WS_OK;
}


int
insite_ws_msg_end(insite_ws_msg_t *m, int *opcode)
{
    if (!m->in_frame || m->frame_left != 0) {
        return INSITE_WS_ERR_USAGE;
    }

    m->in_frame = 0;
    *opcode = INSITE_WS_OP_CONT;

    if (insite_ws_op_is_control(m->frame_opcode)) {
        *opcode = m->frame_opcode;
        return INSITE_WS_OK;
    }

    if (!m->fin) {
        return INSITE_WS_OK;
    }

    /* a code point cut off by the end of the final fragment */
    if (m->msg_opcode == INSITE_WS_OP_TEXT
        && m->utf8 != INSITE_WS_UTF8_ACCEPT)
    {
        return INSITE_WS_ERR_UTF8;
    }

    *opcode = m->msg_opcode;
    m->msg_opcode = 0;
    m->msg_len = 0;
    m->utf8 = INSITE_WS_UTF8_ACCEPT;

    return INSITE_WS_OK;
}


/*
 * RFC 6455 7.4.1 plus the IANA registry, as Autobahn checks it: 1004 is
 * reserved, 1005/1006/1015 are for APIs only, 1016-2999 are unassigned.
 */
int
insite_ws_close_code_valid(unsigned code)
{
    return (code >= 1000 && code <= 1003)
           || (code >= 1007 && code <= 1014)
           || (code >= 3000 && code <= 4999);
}


int
insite_ws_close_parse(const u_char *p, size_t len, uint16_t *code,
    const u_char **reason, size_t *reason_len)
{
    unsigned  c;

    if (len == 0) {
        /* no code is a normal closure as far as the peer is concerned */
        c = INSITE_WS_CLOSE_NO_STATUS;
        p = (const u_char *) "";

    } else if (len == 1) {
        return INSITE_WS_ERR_CLOSE_LEN;

    } else if (len > INSITE_WS_MAX_CONTROL) {
        return INSITE_WS_ERR_CTRL_TOO_LONG;

    } else {
        c = ((unsigned) p[0] << 8) | p[1];

        if (!insite_ws_close_code_valid(c)) {
            return INSITE_WS_ERR_CLOSE_CODE;
        }

        p += 2;
        len -= 2;

        if (!insite_ws_utf8_valid(p, len)) {
            return INSITE_WS_ERR_CLOSE_UTF8;
        }
    }

    if (code) {
        *code = (uint16_t) c;
    }

    if (reason) {
        *reason = p;
    }

    if (reason_len) {
        *reason_len = len;
    }

    return INSITE_WS_OK;
}


/*
 * The reason is cut to the longest valid UTF-8 prefix that fits, so a long or
 * even broken reason from the caller never makes the peer fail us with 1007.
 * code 0 sends an empty close frame.
 */
size_t
insite_ws_close_frame(u_char *buf, uint16_t code, const u_char *reason,
    size_t reason_len)
{
    size_t    i, ok, max;
    uint32_t  st;

    if (code == 0) {
        buf[0] = 0x80 | INSITE_WS_OP_CLOSE;
        buf[1] = 0;
        return 2;
    }

    if (!insite_ws_close_code_valid(code)) {
        return 0;
    }

    max = INSITE_WS_MAX_CONTROL - 2;
    if (reason == NULL) {
        reason_len = 0;
    }

    st = INSITE_WS_UTF8_ACCEPT;
    ok = 0;

    for (i = 0; i < reason_len && i < max; i++) {
        st = insite_ws_utf8_validate(st, reason + i, 1);
        if (st == INSITE_WS_UTF8_REJECT) {
            break;
        }
        if (st == INSITE_WS_UTF8_ACCEPT) {
            ok = i + 1;
        }
    }

    buf[0] = 0x80 | INSITE_WS_OP_CLOSE;
    buf[1] = (u_char) (2 + ok);
    buf[2] = (u_char) (code >> 8);
    buf[3] = (u_char) code;

    if (ok) {
        memcpy(buf + 4, reason, ok);
    }

    return 4 + ok;
}


/*
 * UTF-8 as a DFA over byte classes (the approach of Bjoern Hoehrmann's
 * decoder, tables derived here from the RFC 3629 section 4 grammar). The
 * classes split 80..BF where E0, ED, F0 and F4 restrict their second byte:
 * that is what rules out overlongs, surrogates and code points > U+10FFFF.
 */

enum {
    U8_ASCII,   /* 00..7F */
    U8_C80,     /* 80..8F */
    U8_C90,     /* 90..9F */
    U8_CA0,     /* A0..BF */
    U8_L2,      /* C2..DF */
    U8_E0,      /* E0: second byte A0..BF (no overlongs) */
    U8_L3,      /* E1..EC, EE..EF */
    U8_ED,      /* ED: second byte 80..9F (no surrogates) */
    U8_F0,      /* F0: second byte 90..BF (no overlongs) */
    U8_L4,      /* F1..F3 */
    U8_F4,      /* F4: second byte 80..8F (<= U+10FFFF) */
    U8_BAD      /* C0, C1, F5..FF */
};

static const uint8_t  insite_ws_utf8_class[256] = {
#define A U8_ASCII
    A,A,A,A,A,A,A,A,A,A,A,A,A,A,A,A, A,A,A,A,A,A,A,A,A,A,A,A,A,A,A,A,
    A,A,A,A,A,A,A,A,A,A,A,A,A,A,A,A, A,A,A,A,A,A,A,A,A,A,A,A,A,A,A,A,
    A,A,A,A,A,A,A,A,A,A,A,A,A,A,A,A, A,A,A,A,A,A,A,A,A,A,A,A,A,A,A,A,
    A,A,A,A,A,A,A,A,A,A,A,A,A,A,A,A, A,A,A,A,A,A,A,A,A,A,A,A,A,A,A,A,
#undef A
#define X U8_C80
#define Y U8_C90
#define Z U8_CA0
    X,X,X,X,X,X,X,X,X,X,X,X,X,X,X,X, Y,Y,Y,Y,Y,Y,Y,Y,Y,Y,Y,Y,Y,Y,Y,Y,
    Z,Z,Z,Z,Z,Z,Z,Z,Z,Z,Z,Z,Z,Z,Z,Z, Z,Z,Z,Z,Z,Z,Z,Z,Z,Z,Z,Z,Z,Z,Z,Z,
#undef X
#undef Y
#undef Z
#define B U8_BAD
#define L U8_L2
    B,B,L,L,L,L,L,L,L,L,L,L,L,L,L,L, L,L,L,L,L,L,L,L,L,L,L,L,L,L,L,L,
#undef L
#define L U8_L3
    U8_E0,L,L,L,L,L,L,L,L,L,L,L,L,U8_ED,L,L,
#undef L
    U8_F0,U8_L4,U8_L4,U8_L4,U8_F4,B,B,B,B,B,B,B,B,B,B,B
#undef B
};

/* states: 0 accept, 1 reject, then what the next byte must be */
enum {
    U8_S_ACCEPT = INSITE_WS_UTF8_ACCEPT,
    U8_S_REJECT = INSITE_WS_UTF8_REJECT,
    U8_S_TAIL1,         /* any 80..BF, then done */
    U8_S_TAIL2,         /* any 80..BF, then TAIL1 */
    U8_S_TAIL3,         /* any 80..BF, then TAIL2 */
    U8_S_E0,            /* A0..BF, then TAIL1 */
    U8_S_ED,            /* 80..9F, then TAIL1 */
    U8_S_F0,            /* 90..BF, then TAIL2 */
    U8_S_F4,            /* 80..8F, then TAIL2 */
    U8_S_N
};

#define R U8_S_REJECT
static const uint8_t  insite_ws_utf8_next[U8_S_N][12] = {
    /*           ASCII C80 C90 CA0 L2 E0 L3 ED F0 L4 F4 BAD */
    /* ACCEPT */ { 0, R, R, R, U8_S_TAIL1, U8_S_E0, U8_S_TAIL2, U8_S_ED,
                   U8_S_F0, U8_S_TAIL3, U8_S_F4, R },
    /* REJECT */ { R, R, R, R, R, R, R, R, R, R, R, R },
    /* TAIL1  */ { R, 0, 0, 0, R, R, R, R, R, R, R, R },
    /* TAIL2  */ { R, U8_S_TAIL1, U8_S_TAIL1, U8_S_TAIL1, R, R, R, R, R, R, R,
                   R },
    /* TAIL3  */ { R, U8_S_TAIL2, U8_S_TAIL2, U8_S_TAIL2, R, R, R, R, R, R, R,
                   R },
    /* E0     */ { R, R, R, U8_S_TAIL1, R, R, R, R, R, R, R, R },
    /* ED     */ { R, U8_S_TAIL1, U8_S_TAIL1, R, R, R, R, R, R, R, R, R },
    /* F0     */ { R, R, U8_S_TAIL2, U8_S_TAIL2, R, R, R, R, R, R, R, R },
    /* F4     */ { R, U8_S_TAIL2, R, R, R, R, R, R, R, R, R, R },
};
#undef R


/* REJECT is sticky; any state not ACCEPT at the end means a cut code point */
uint32_t
insite_ws_utf8_validate(uint32_t state, const u_char *p, size_t len)
{
    const u_char  *end;
    uint64_t       w;

    if (state >= U8_S_N) {
        return INSITE_WS_UTF8_REJECT;
    }

    end = p + len;

    while (p < end) {

        if (state == U8_S_ACCEPT) {
            /* chat text is mostly ASCII: skip it a word at a time */
            while (end - p >= 8) {
                memcpy(&w, p, 8);
                if (w & 0x8080808080808080ULL) {
                    break;
                }
                p += 8;
            }

            if (p == end) {
                break;
            }
        }

        state = insite_ws_utf8_next[state][insite_ws_utf8_class[*p++]];

        if (state == U8_S_REJECT) {
            break;
        }
    }

    return state;
}


int
insite_ws_utf8_valid(const u_char *p, size_t len)
{
    return insite_ws_utf8_validate(INSITE_WS_UTF8_ACCEPT, p, len)
           == INSITE_WS_UTF8_ACCEPT;
}


static int
insite_ws_b64_char(u_char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')
           || (c >= '0' && c <= '9') || c == '+' || c == '/';
}


/*
 * 16 bytes encode to 22 characters and "==". The 22nd carries 2 data bits
 * and 4 zero bits, so only A, Q, g and w can appear there in a canonical
 * encoding; anything else does not decode to exactly 16 bytes.
 */
int
insite_ws_key_valid(const u_char *key, size_t len)
{
    size_t  i;
    u_char  last;

    if (key == NULL || len != INSITE_WS_KEY_LEN) {
        return 0;
    }

    for (i = 0; i < 22; i++) {
        if (!insite_ws_b64_char(key[i])) {
            return 0;
        }
    }

    last = key[21];
    if (last != 'A' && last != 'Q' && last != 'g' && last != 'w') {
        return 0;
    }

    return key[22] == '=' && key[23] == '=';
}


int
insite_ws_accept_key(const u_char *key, size_t len,
    u_char out[INSITE_WS_ACCEPT_LEN + 1])
{
    EVP_MD_CTX    *ctx;
    unsigned char  md[EVP_MAX_MD_SIZE];
    unsigned int   mdlen = 0;
    int            ok;

    ctx = EVP_MD_CTX_new();
    if (ctx == NULL) {
        return INSITE_WS_ERR_CRYPTO;
    }

    ok = EVP_DigestInit_ex(ctx, EVP_sha1(), NULL)
         && EVP_DigestUpdate(ctx, key, len)
         && EVP_DigestUpdate(ctx, INSITE_WS_GUID, sizeof(INSITE_WS_GUID) - 1)
         && EVP_DigestFinal_ex(ctx, md, &mdlen);

    EVP_MD_CTX_free(ctx);

    if (!ok || mdlen != 20) {
        return INSITE_WS_ERR_CRYPTO;
    }

    /* writes 28 characters and a NUL */
    if (EVP_EncodeBlock(out, md, 20) != INSITE_WS_ACCEPT_LEN) {
        return INSITE_WS_ERR_CRYPTO;
    }

    return INSITE_WS_OK;
}


unsigned
insite_ws_close_code(int rc)
{
    switch (rc) {
    case INSITE_WS_OK:
    case INSITE_WS_NEED_MORE:
        return INSITE_WS_CLOSE_NORMAL;

    case INSITE_WS_ERR_FRAME_TOO_BIG:
    case INSITE_WS_ERR_MSG_TOO_BIG:
        return INSITE_WS_CLOSE_TOO_BIG;

    case INSITE_WS_ERR_UTF8:
    case INSITE_WS_ERR_CLOSE_UTF8:
        return INSITE_WS_CLOSE_INVALID_DATA;

    case INSITE_WS_ERR_USAGE:
    case INSITE_WS_ERR_CRYPTO:
        return INSITE_WS_CLOSE_INTERNAL;

    default:
        return INSITE_WS_CLOSE_PROTOCOL;
    }
}


const char *
insite_ws_strerror(int rc)
{
    switch (rc) {
    case INSITE_WS_OK:                  return "ok";
    case INSITE_WS_NEED_MORE:           return "need more data";
    case INSITE_WS_ERR_RSV:             return "reserved bits set";
    case INSITE_WS_ERR_OPCODE:          return "reserved opcode";
    case INSITE_WS_ERR_UNMASKED:        return "unmasked client frame";
    case INSITE_WS_ERR_CTRL_TOO_LONG:   return "control frame payload > 125";
    case INSITE_WS_ERR_CTRL_FRAGMENTED: return "fragmented control frame";
    case INSITE_WS_ERR_LEN_MSB:         return "64-bit length with MSB set";
    case INSITE_WS_ERR_FRAME_TOO_BIG:   return "frame too big";
    case INSITE_WS_ERR_CONT_UNEXPECTED: return "continuation without message";
    case INSITE_WS_ERR_MSG_INTERLEAVED: return "data frame inside fragmented "
                                               "message";
    case INSITE_WS_ERR_MSG_TOO_BIG:     return "message too big";
    case INSITE_WS_ERR_UTF8:            return "invalid UTF-8 in text message";
    case INSITE_WS_ERR_CLOSE_LEN:       return "close payload of 1 byte";
    case INSITE_WS_ERR_CLOSE_CODE:      return "invalid close code";
    case INSITE_WS_ERR_CLOSE_UTF8:      return "invalid UTF-8 in close reason";
    case INSITE_WS_ERR_USAGE:           return "API misuse";
    case INSITE_WS_ERR_CRYPTO:          return "OpenSSL failure";
    default:                            return "unknown error";
    }
}
