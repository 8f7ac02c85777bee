/*
 * The channel contract, in one place: what a channel name is, where a
 * channel lives in Redis, what a publish body may say, and the arguments of
 * lua/publish.lua.  Plain C (no nginx headers), compiled into the WebSocket
 * module, the workers (workers/lib/redis_publish.c), bench/ws and the unit
 * tests; fuzzed by tests/fuzz/fuzz_channel.c.  The JavaScript client's name
 * rule is tested against the same table (tests/fixtures/channel_names.json).
 *
 * Redis layout (docs/ws-protocol.md, "Redis keys"), <p> = key prefix:
 *
 *   <p>{<channel>}:seq          hash: seq, epoch       (publish.lua)
 *   <p>{<channel>}:hist         zset: framed messages, score = seq
 *   <p>{<channel>}:idem:<key>   string: seq of the first publish, with TTL
 *   <p>pub:<channel>            pub/sub channel (not a key), single Redis
 *   <p>{<channel>}:pub          sharded pub/sub channel (SPUBLISH), Redis
 *                               Cluster: in the channel's slot, so the
 *                               publish script may SPUBLISH to it
 *
 * The braces are a Redis Cluster hash tag: every key of one channel is in
 * one slot, so the publish script may touch them all.  Channel names cannot
 * contain braces, and neither may the prefix, so "X" with key "b:c" and
 * "X:b" with key "c" are different keys ({X}:idem:b:c, {X:b}:idem:c).
 */

#ifndef INSITE_CHANNEL_H
#define INSITE_CHANNEL_H

#include <stddef.h>


#define INSITE_CHANNEL_NAME_MAX    128
#define INSITE_CHANNEL_TYPE_MAX    64
#define INSITE_CHANNEL_IDEM_MAX    128
#define INSITE_CHANNEL_PREFIX_MAX  64
#define INSITE_CHANNEL_EPOCH_MAX   64

/* the longest key or pub/sub name insite_channel_key() writes, with NUL */
#define INSITE_CHANNEL_KEY_MAX                                               \
    (INSITE_CHANNEL_PREFIX_MAX + INSITE_CHANNEL_NAME_MAX                     \
     + INSITE_CHANNEL_IDEM_MAX + 16)


/* 1 when s[0..len) is a channel name: [A-Za-z0-9_.:-]{1,128} */
int insite_channel_name_valid(const char *s, size_t len);

/* 1 when s[0..len) is 1..max characters of the channel-name alphabet
 * (message types, idempotency keys) */
int insite_channel_token_valid(const char *s, size_t len, size_t max);

/* 1 when s[0..len) is an idempotency key: 1..128 visible ASCII characters
 * (0x21-0x7e).  Any of them is safe inside the channel's hash tag: the tag
 * is the first {...}, and channel names cannot contain braces. */
int insite_channel_idem_valid(const char *s, size_t len);

/* 1 when a key prefix is usable: 0..64 printable ASCII characters without
 * white space or braces (a brace would break the hash tag) */
int insite_channel_prefix_valid(const char *s, size_t len);

/* 1 when a message type is one the server uses for its own frames
 * (subscribed, reset, error, ...): publishers may not forge those */
int insite_channel_type_reserved(const char *s, size_t len);

/* the reserved types, NULL-terminated (for documentation and tests) */
extern const char *const insite_channel_reserved_types[];


/*
 * insite_ws_channels patterns: the name alphabet plus '*', which matches any
 * run of characters (also none).  1 when valid / matching.
 */
int insite_channel_glob_valid(const char *p, size_t len);
int insite_channel_glob_match(const char *p, size_t plen, const char *s,
    size_t slen);


typedef enum {
    INSITE_CHANNEL_KEY_STATE = 0,   /* {c}:seq */
    INSITE_CHANNEL_KEY_HIST,        /* {c}:hist */
    INSITE_CHANNEL_KEY_IDEM,        /* {c}:idem:<key> */
    INSITE_CHANNEL_KEY_PUB,         /* pub:<c> */
    INSITE_CHANNEL_KEY_SPUB         /* {c}:pub (Redis Cluster) */
} insite_channel_key_e;

/*
 * Writes the key of kind for channel ch (and idempotency key idem for
 * INSITE_CHANNEL_KEY_IDEM) into buf, NUL-terminated.  Returns its length,
 * or 0 when an argument is invalid or buf is too small.
 */
size_t insite_channel_key(char *buf, size_t size, const char *prefix,
    size_t plen, insite_channel_key_e kind, const char *ch, size_t chlen,
    const char *idem, size_t idem_len);


/*
 * A publish body as the HTTP endpoint takes it: a JSON object; "type"
 * (optional, default "message") a token that is not reserved; "data" the
 * message's data, or, when absent, the whole body.  On success returns 0
 * with type and data pointing into body (data verbatim: numbers keep their
 * digits); on failure -1 with a reason for the client in why.
 */
typedef struct {
    const char  *type;
    size_t       type_len;
    const char  *data;
    size_t       data_len;
} insite_channel_payload_t;

int insite_channel_payload_parse(const char *body, size_t len,
    insite_channel_payload_t *out, char *why, size_t whylen);

/* 0 when data[0..len) is exactly one JSON value, else -1 and why */
int insite_channel_data_check(const char *data, size_t len, char *why,
    size_t whylen);

/* 0 when t is a token (1..64) and not reserved, else -1 and why */
int insite_channel_type_check(const char *t, size_t len, char *why,
    size_t whylen);


/*
 * The arguments of lua/publish.lua for one message: KEYS then ARGV, ready
 * for EVALSHA <sha> <nkeys> argv[0..nargs).  Everything is checked here
 * (not the data: see insite_channel_data_check) so the script never meets
 * an argument it would have to refuse half-way.  The pointers refer to m's
 * strings and to a's own buffers.
 */
typedef struct {
    const char     *channel;
    size_t          channel_len;
    const char     *type;
    size_t          type_len;
    const char     *data;
    size_t          data_len;
    const char     *idem;            /* NULL: no idempotency key */
    size_t          idem_len;
    const char     *ts;              /* RFC 3339 UTC, made by the caller */
    size_t          ts_len;
    const char     *epoch;           /* random candidate, 1..64 chars */
    size_t          epoch_len;
    unsigned long   history;         /* messages kept, 0 = none */
    unsigned long   idem_ttl;        /* seconds, >= 1 when idem is given */
    int             sharded;         /* 1: Redis Cluster, SPUBLISH to
                                        {c}:pub (ARGV[9] = "1") */
} insite_channel_publish_t;

#define INSITE_CHANNEL_PUBLISH_ARGS  12
#define INSITE_CHANNEL_HISTORY_MAX   1000000UL
#define INSITE_CHANNEL_IDEM_TTL_MAX  (30UL * 86400)

typedef struct {
    int             nkeys;
    int             nargs;
    const char     *argv[INSITE_CHANNEL_PUBLISH_ARGS];
    size_t          lens[INSITE_CHANNEL_PUBLISH_ARGS];
    char            k_state[INSITE_CHANNEL_KEY_MAX];
    char            k_hist[INSITE_CHANNEL_KEY_MAX];
    char            k_idem[INSITE_CHANNEL_KEY_MAX];
    char            pub[INSITE_CHANNEL_KEY_MAX];
    char            history[24];
    char            ttl[24];
} insite_channel_publish_args_t;

int insite_channel_publish_args(insite_channel_publish_args_t *a,
    const char *prefix, size_t plen, const insite_channel_publish_t *m,
    char *why, size_t whylen);


#endif /* INSITE_CHANNEL_H */
