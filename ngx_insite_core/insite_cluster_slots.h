/*
 * Redis Cluster routing, plain C (no nginx): shared by the nginx core adapter
 * (ngx_insite_core/ngx_insite_redis_cluster.c) and the workers
 * (workers/lib/redis_publish.c), unit-tested (tests/unit/test_cluster_slots.c)
 * and fuzzed (tests/fuzz/fuzz_cluster_slots.c).
 *
 *  - key -> slot: CRC16-CCITT (XMODEM) of the key, or of its hash tag (the
 *    part between the first '{' and the next '}' when not empty), mod 16384;
 *  - slot map from a CLUSTER SHARDS reply (Redis 7) or CLUSTER SLOTS (older);
 *  - redirect and retryable errors: MOVED <slot> <host>:<port>,
 *    ASK <slot> <host>:<port>, TRYAGAIN, CLUSTERDOWN;
 *  - a seed list "h1:p1,h2:p2" (the workers' redis.cluster);
 *  - the key a command is routed by, read from the command as hiredis
 *    formats it (RESP array of bulk strings).
 *
 * Replies are taken as hiredis redisReply trees: both callers already have
 * them, and the fuzzer makes them with hiredis' own reader.
 */

#ifndef INSITE_CLUSTER_SLOTS_H
#define INSITE_CLUSTER_SLOTS_H

#include <stddef.h>
#include <stdint.h>
#include <hiredis/hiredis.h>


#define INSITE_CLUSTER_SLOTS      16384
#define INSITE_CLUSTER_NODES_MAX  256      /* masters + replicas */
#define INSITE_CLUSTER_HOST_MAX   255


uint16_t insite_cluster_crc16(const char *buf, size_t len);

/* the slot of a key, hash tags honoured */
unsigned insite_cluster_key_slot(const char *key, size_t len);


typedef struct {
    char      host[INSITE_CLUSTER_HOST_MAX + 1];
    int       port;
    int       master;      /* index of this node's master; -1 for a master */
    unsigned  online:1;    /* CLUSTER SHARDS health "online" (SLOTS: always) */
} insite_cluster_node_t;


typedef struct {
    insite_cluster_node_t  nodes[INSITE_CLUSTER_NODES_MAX];
    unsigned               nnodes;
    unsigned               nmasters;          /* masters owning slots */
    int16_t                owner[INSITE_CLUSTER_SLOTS];   /* master, or -1 */
} insite_cluster_map_t;


/*
 * Fills *map from a CLUSTER SHARDS / CLUSTER SLOTS reply.  Returns 0, or -1
 * with the reason in err (a reply of another shape, a slot out of range, a
 * port out of range, too many nodes): *map is then unusable.  Slots no shard
 * claims have owner -1.  A node listed with an empty address ("?" or "")
 * gets host "" and is never routed to.
 */
int insite_cluster_map_from_shards(insite_cluster_map_t *map,
    const redisReply *reply, char *err, size_t errlen);
int insite_cluster_map_from_slots(insite_cluster_map_t *map,
    const redisReply *reply, char *err, size_t errlen);

/* the node index for host:port, or -1 */
int insite_cluster_map_find(const insite_cluster_map_t *map,
    const char *host, size_t hostlen, int port);

/*
 * A replica of a slot's master that CLUSTER SHARDS reported online, chosen by
 * `pick` (callers pass anything stable, e.g. their pid) among them; the
 * master itself when there is none.  -1 for an unowned slot.
 */
int insite_cluster_map_reader(const insite_cluster_map_t *map, unsigned slot,
    unsigned pick);


typedef enum {
    INSITE_CLUSTER_ERR_NONE = 0,    /* not a cluster error: give it the caller */
    INSITE_CLUSTER_ERR_MOVED,       /* slot moved for good: refresh, retry */
    INSITE_CLUSTER_ERR_ASK,         /* slot migrating: ASKING + retry there once */
    INSITE_CLUSTER_ERR_TRYAGAIN,    /* multi-key op during migration: retry */
    INSITE_CLUSTER_ERR_CLUSTERDOWN  /* no quorum / slot unserved: retry */
} insite_cluster_err_e;

typedef struct {
    insite_cluster_err_e  kind;
    unsigned              slot;     /* MOVED, ASK */
    char                  host[INSITE_CLUSTER_HOST_MAX + 1];
    int                   port;     /* MOVED, ASK */
} insite_cluster_redirect_t;

/*
 * Classifies an error reply's text.  A MOVED/ASK with a malformed target is
 * INSITE_CLUSTER_ERR_NONE (passed to the caller as the error it is).  An
 * empty host in a redirect ("MOVED 3999 :6380", the server's unknown
 * endpoint) means "the node you asked", so host stays "".
 */
insite_cluster_err_e insite_cluster_error(const char *str, size_t len,
    insite_cluster_redirect_t *out);


/*
 * The key a command is routed by, from the command as hiredis formats it
 * ("*<n>\r\n$<len>\r\n<arg>\r\n..."):
 *   EVAL / EVALSHA / EVAL_RO / EVALSHA_RO / FCALL / FCALL_RO: the first key
 *   (argv[3]) when numkeys > 0;
 *   any other command with arguments: argv[1] (GET, SET, HSET, ZRANGEBYSCORE,
 *   SPUBLISH, SSUBSCRIBE, PUBLISH ... all take the key or channel there);
 *   no arguments (PING) or numkeys 0: no key, any master serves it.
 * Returns 1 with *key and keylen pointing into cmd, 0 when the command has no
 * key, -1 when cmd is not a well-formed RESP array of bulk strings.
 */
int insite_cluster_command_key(const char *cmd, size_t len,
    const char **key, size_t *keylen);


/*
 * A seed list "h1:p1,h2:p2" (white space around the commas ignored; the
 * last ':' separates the port, so "::1:7000" is ::1 port 7000): add() is
 * called with each host (NUL-terminated, not empty) and port (1..65535) in
 * order; a non-zero return from it stops the walk.  Returns 0, or -1 with
 * the reason in err (an empty or over-long item, a missing or bad port, no
 * item at all, or add() failing).
 */
int insite_cluster_parse_seeds(const char *list,
    int (*add)(const char *host, int port, void *data), void *data,
    char *err, size_t errlen);


#endif /* INSITE_CLUSTER_SLOTS_H */
