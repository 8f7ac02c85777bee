/*
 * RFC 6455 protocol core for the InsiteChart WebSocket module: server side
 * framing, message assembly, UTF-8 validation and the opening handshake key.
 *
 * Plain C with no nginx headers so it can be unit-tested and fuzzed on its
 * own; every public symbol is prefixed insite_ws_ so it cannot clash with
 * nginx. Nothing here allocates: the caller owns every buffer.
 *
 * Reading client frames, as the nginx glue does it:
 *
 *     rc = insite_ws_parse_header(pos, last - pos, max, &f);
 *         NEED_MORE: keep the (at most 14) bytes and read more
 *         < 0:       close with insite_ws_close_code(rc)
 *     pos += f.header_len;
 *     rc = insite_ws_msg_begin(&msg, &f);                 (< 0: close)
 *     while (msg.frame_left) {
 *         n = min(available, msg.frame_left);
 *         rc = insite_ws_msg_payload(&msg, pos, n);       (unmasks in place)
 *         ...store or forward pos[0..n); pos += n;
 *     }
 *     rc = insite_ws_msg_end(&msg, &op);
 *         op == INSITE_WS_OP_CONT: the data message continues
 *         otherwise op is TEXT/BINARY (message complete) or CLOSE/PING/PONG
 *
 * After insite_ws_msg_begin() msg.msg_opcode already says TEXT or BINARY, so
 * a binary message can be refused (1003) before its payload is read. Control
 * payloads are at most 125 bytes: copy them aside; for CLOSE, check them with
 * insite_ws_close_parse() and echo the code with insite_ws_close_frame().
 * Any error leaves the state undefined: close the connection.
 */

#ifndef INSITE_WS_FRAME_H
#define INSITE_WS_FRAME_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>


#define INSITE_WS_OP_CONT            0x0
#define INSITE_WS_OP_TEXT            0x1
#define INSITE_WS_OP_BINARY          0x2
#define INSITE_WS_OP_CLOSE           0x8
#define INSITE_WS_OP_PING            0x9
#define INSITE_WS_OP_PONG            0xa

#define insite_ws_op_is_control(op)  (((op) & 0x8) != 0)

/* RSV1 as insite_ws_frame_t.rsv has it: permessage-deflate's bit */
#define INSITE_WS_RSV1               0x4

/* a masked client header: 2 + 8 (64-bit length) + 4 (mask key) */
#define INSITE_WS_MAX_CLIENT_HEADER  14
/* an unmasked server header: 2 + 8 */
#define INSITE_WS_MAX_SERVER_HEADER  10
#define INSITE_WS_MAX_CONTROL        125
/* header + 2-byte code + 123-byte reason */
#define INSITE_WS_CLOSE_FRAME_MAX    (2 + INSITE_WS_MAX_CONTROL)
/* base64 of a SHA-1 digest plus NUL */
#define INSITE_WS_ACCEPT_LEN         28

#define INSITE_WS_NO_LIMIT           UINT64_MAX


/*
 * Return codes. Non-negative values are not errors; every negative value is a
 * distinct failure, mapped to the close code to send by insite_ws_close_code().
 */
enum {
    INSITE_WS_OK                   =  0,
    INSITE_WS_NEED_MORE            =  1,

    INSITE_WS_ERR_RSV              = -1,   /* 1002: RSV1-3 set, no extension */
    INSITE_WS_ERR_OPCODE           = -2,   /* 1002: reserved opcode */
    INSITE_WS_ERR_UNMASKED         = -3,   /* 1002: client frame not masked */
    INSITE_WS_ERR_CTRL_TOO_LONG    = -4,   /* 1002: control payload > 125 */
    INSITE_WS_ERR_CTRL_FRAGMENTED  = -5,   /* 1002: control frame without FIN */
    INSITE_WS_ERR_LEN_MSB          = -6,   /* 1002: 64-bit length, MSB set */
    INSITE_WS_ERR_FRAME_TOO_BIG    = -7,   /* 1009: frame payload > max */
    INSITE_WS_ERR_CONT_UNEXPECTED  = -8,   /* 1002: continuation, no message */
    INSITE_WS_ERR_MSG_INTERLEAVED  = -9,   /* 1002: new data frame mid-message */
    INSITE_WS_ERR_MSG_TOO_BIG      = -10,  /* 1009: fragments sum > max */
    INSITE_WS_ERR_UTF8             = -11,  /* 1007: text message not UTF-8 */
    INSITE_WS_ERR_CLOSE_LEN        = -12,  /* 1002: close payload of 1 byte */
    INSITE_WS_ERR_CLOSE_CODE       = -13,  /* 1002: code not allowed on wire */
    INSITE_WS_ERR_CLOSE_UTF8       = -14,  /* 1007: close reason not UTF-8 */
    INSITE_WS_ERR_USAGE            = -15,  /* 1011: API misuse by the caller */
    INSITE_WS_ERR_CRYPTO           = -16   /* 1011: OpenSSL failed */
};

#define INSITE_WS_CLOSE_NORMAL       1000
#define INSITE_WS_CLOSE_GOING_AWAY   1001
#define INSITE_WS_CLOSE_PROTOCOL     1002
#define INSITE_WS_CLOSE_UNSUPPORTED  1003
#define INSITE_WS_CLOSE_NO_STATUS    1005
#define INSITE_WS_CLOSE_INVALID_DATA 1007
#define INSITE_WS_CLOSE_POLICY       1008
#define INSITE_WS_CLOSE_TOO_BIG      1009
#define INSITE_WS_CLOSE_INTERNAL     1011


/* A parsed client frame header; filled only when the parser returns OK. */
typedef struct {
    uint64_t   payload_len;
    u_char     mask[4];
    uint8_t    header_len;     /* bytes consumed: 6, 8 or 14 */
    uint8_t    opcode;
    uint8_t    fin;            /* 0 or 1 */
    uint8_t    rsv;            /* RSV1..3 as bits 2..0 (INSITE_WS_RSV1) */
    uint8_t    masked;         /* 0 or 1; always 1 for accepted client frames */
} insite_ws_frame_t;


/*
 * Per-connection message assembler. Fields are public for reading (nginx
 * style); change them only through the functions below.
 */
typedef struct {
    uint64_t   max_msg;        /* limit for a data message, all fragments */
    uint64_t   msg_len;        /* declared payload of the open message */
    uint64_t   frame_left;     /* payload bytes of this frame still to come */
    uint64_t   frame_off;      /* payload bytes of this frame already seen */
    uint32_t   utf8;           /* UTF-8 state of the open text message */
    u_char     mask[4];
    uint8_t    msg_opcode;     /* TEXT/BINARY while a message is open, else 0 */
    uint8_t    frame_opcode;   /* opcode of the frame being read */
    uint8_t    fin;
    uint8_t    masked;
    uint8_t    in_frame;
    uint8_t    compressed;     /* RSV1 on its first frame: the open (or just
                                  completed) message is deflated; its UTF-8
                                  is the caller's to check once inflated */
} insite_ws_msg_t;


/* framing */

int insite_ws_parse_header(const u_char *p, size_t len, uint64_t max_payload,
    insite_ws_frame_t *f);
/* the same, with the RSV bits an extension gave a meaning (INSITE_WS_RSV1
   for permessage-deflate); insite_ws_msg_begin() checks where they may be */
int insite_ws_parse_header_rsv(const u_char *p, size_t len,
    uint64_t max_payload, unsigned rsv_allowed, insite_ws_frame_t *f);
void insite_ws_unmask(u_char *data, size_t len, const u_char key[4],
    uint64_t offset);
size_t insite_ws_frame_header(u_char *buf, int opcode, int fin, uint64_t len);

/* assembly */

void insite_ws_msg_init(insite_ws_msg_t *m, uint64_t max_msg);
int insite_ws_msg_begin(insite_ws_msg_t *m, const insite_ws_frame_t *f);
int insite_ws_msg_payload(insite_ws_msg_t *m, u_char *data, size_t len);
int insite_ws_msg_end(insite_ws_msg_t *m, int *opcode);

/* close frames */

int insite_ws_close_parse(const u_char *p, size_t len, uint16_t *code,
    const u_char **reason, size_t *reason_len);
int insite_ws_close_code_valid(unsigned code);
size_t insite_ws_close_frame(u_char *buf, uint16_t code, const u_char *reason,
    size_t reason_len);

/* UTF-8 (RFC 3629): feed chunks, then the message is valid iff ACCEPT */

#define INSITE_WS_UTF8_ACCEPT        0
#define INSITE_WS_UTF8_REJECT        1

uint32_t insite_ws_utf8_validate(uint32_t state, const u_char *p, size_t len);
int insite_ws_utf8_valid(const u_char *p, size_t len);

/* handshake (RFC 6455 4.2) */

int insite_ws_key_valid(const u_char *key, size_t len);
int insite_ws_accept_key(const u_char *key, size_t len,
    u_char out[INSITE_WS_ACCEPT_LEN + 1]);

/* errors */

unsigned insite_ws_close_code(int rc);
const char *insite_ws_strerror(int rc);

#endif /* INSITE_WS_FRAME_H */
