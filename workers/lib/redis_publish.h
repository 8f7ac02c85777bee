/* The workers' publish path to Redis: runs lua/publish.lua (the same script
 * the nginx WebSocket module runs) so sequence numbers, history and pub/sub
 * fan-out stay consistent across every publisher.  Other commands of the
 * workers (insite-gdpr's consent state and erasure) go through
 * insite_redis_run(), insite_redis_run_replicated() and
 * insite_redis_each_master(), so a Redis Cluster is routed, and WAIT for
 * replicas is done, in one place.
 *
 * Synchronous hiredis on one connection guarded by a mutex: give the
 * publisher its own thread if the caller must not block.  Connects lazily,
 * reconnects after failures. */
#ifndef INSITE_REDIS_PUBLISH_H
#define INSITE_REDIS_PUBLISH_H

#include <stddef.h>

#include <hiredis/hiredis.h>

#include "config.h"
#include "../../ngx_insite_ws/insite_channel.h"

/* the channel contract (names, keys, script arguments) is insite_channel.h */
#define INSITE_CHANNEL_MAX INSITE_CHANNEL_NAME_MAX
#define INSITE_EPOCH_MAX 64

typedef struct {
    const char *host;
    int port;
    const char *cluster;         /* Redis Cluster seeds "h1:p1,h2:p2"; ""
                                    or NULL: host:port is a single Redis */
    const char *password;        /* "" or NULL = no AUTH */
    int connect_timeout_ms;
    int command_timeout_ms;
    const char *prefix;          /* key prefix, "insite:" */
    long history;                /* messages kept per channel, 0 = none */
    long idempotency_ttl_s;
    int publish_replicas;        /* WAIT for this many replicas after a
                                    publish or insite_redis_run_replicated()
                                    (redis.publish_replicas); 0: off */
    int publish_replicas_timeout_ms;   /* below command_timeout_ms */
} insite_redis_options;

typedef struct {
    long long seq;
    char epoch[INSITE_EPOCH_MAX + 1];
    int duplicate;               /* 1: the idempotency key was seen before;
                                    nothing was published, seq is the
                                    first publish's */
} insite_publish_result;

typedef struct insite_redis insite_redis;

/* Config keys redis.* and the options they map to (strings point into cfg). */
extern const insite_config_key insite_redis_config_keys[];
extern const size_t insite_redis_config_nkeys;
void insite_redis_options_from_config(const insite_config *cfg,
                                      insite_redis_options *opt);

/* Copies the options; does not connect yet.  NULL on out of memory or an
 * invalid key prefix (over 64 characters, white space or braces). */
insite_redis *insite_redis_new(const insite_redis_options *opt);
void insite_redis_free(insite_redis *r);

/* [A-Za-z0-9_.:-]{1,128}: insite_channel_name_valid() for a C string. */
int insite_channel_valid(const char *channel);

/* Publishes one message.  data_json must be one JSON value; it is sent
 * verbatim (not re-serialised, so prices keep their digits).  idem_key may
 * be NULL.  Returns 0 and fills *res, or -1 with the reason in err (the
 * caller decides how to log it).
 *
 * With publish_replicas, a publish counts as done only once that many
 * replicas hold it (WAIT on the same connection); fewer within the timeout
 * is -1 with "published, but K of N replicas ..." in err: the message ran
 * and may be delivered; retry with the same idempotency key.
 *
 * After a lost connection the command is retried once on a new connection
 * only when that cannot publish twice: the server closed the connection
 * before the command ran, or an idempotency key was given.  A timeout
 * without a key is reported as an error with an unknown outcome. */
int insite_redis_publish(insite_redis *r, const char *channel, const char *type,
                         const char *data_json, const char *idem_key,
                         insite_publish_result *res, char *err, size_t errlen);

typedef struct {
    const char *channel, *type, *data_json, *idem_key;   /* idem_key may be NULL */
} insite_publish_msg;

/* Publishes n messages in one pipeline (one round trip instead of n), in
 * order.  rcs[i] is 0 (res[i] filled), -1 (refused: invalid, or the script
 * failed; logged) or -2 (sent, but the connection broke before its reply:
 * outcome unknown, safe to retry only with an idempotency key).  Returns
 * how many were published, or -1 when the connection failed (err).  With
 * publish_replicas, one WAIT follows the batch: too few replicas turns
 * every 0 into -2 and returns -1 (err says why). */
int insite_redis_publish_batch(insite_redis *r, const insite_publish_msg *msgs, size_t n,
                               insite_publish_result *res, int *rcs, char *err, size_t errlen);

/* One command, argv[0] the command name (lens NULL: strlen of each). */
typedef struct {
    int argc;
    const char **argv;
    const size_t *lens;
} insite_redis_cmd;

/* Runs n commands on the server that owns key's slot (on a single Redis,
 * its one connection), routed as a publish is (MOVED, ASK, TRYAGAIN,
 * CLUSTERDOWN within redis.command_timeout): one command as it is, several
 * in one MULTI ... EXEC, so every key they name must share key's slot.
 * They are resent after a lost connection, so use it only for commands that
 * can run twice (overwrites, deletes, reads, change notices).  Returns the
 * reply (the command's, or EXEC's array; the caller frees it), or NULL with
 * the reason in err (an error reply is a NULL with its text in err). */
redisReply *insite_redis_run(insite_redis *r, const char *key, size_t keylen,
                             const insite_redis_cmd *cmds, size_t n,
                             char *err, size_t errlen);

/* insite_redis_run() for writes that must survive a failover of their
 * master: with redis.publish_replicas N (the setting of publishes), WAIT N
 * redis.publish_replicas_timeout follows on the connection that ran them,
 * and they count as done only once N replicas hold them (0: no WAIT, the
 * same as insite_redis_run()).  NULL with *unreplicated = 1: they ran on
 * the master (a reader of it sees them), but fewer replicas acknowledged
 * them in time ("written, but K of N replicas ..." in err), so a failover
 * may lose them: run them again later.  *unreplicated is 0 for every other
 * NULL (not run, or outcome unknown) and for a reply. */
redisReply *insite_redis_run_replicated(insite_redis *r, const char *key, size_t keylen,
                                        const insite_redis_cmd *cmds, size_t n,
                                        int *unreplicated, char *err, size_t errlen);

/* A master as insite_redis_each_master() hands it to its callback. */
typedef struct {
    redisContext *c;             /* connected (AUTH, redis.command_timeout);
                                    the callback's alone until it returns */
    const char *name;            /* "host:port", for messages */
    const char *tag;             /* a hash tag of a slot the master served
                                    when the map was read: a key holding
                                    "{tag}" is one of its keys */
} insite_redis_master;

/* 0: on to the next master; -1: stop, the reason in err. */
typedef int (*insite_redis_master_pt)(const insite_redis_master *m, void *arg,
                                      char *err, size_t errlen);

/* Calls cb once for every master: on a cluster, every node that serves
 * slots in a slot map read now (CLUSTER SHARDS); on a single Redis, once,
 * with its connection.  For what is per node, not per key: SCAN, a marker
 * key on every master.  The contract:
 *  - A slot without a master, a map that cannot be read or a master that
 *    cannot be reached is -1 (err): a walk that skipped a master would miss
 *    its keys.  Masters are walked in turn, so cb may have run for some.
 *  - The masters are those of that one map: a failover or a slot moved
 *    during the walk is not followed.  Commands on m->c are not routed (a
 *    keyed one can meet MOVED or ASK): send keyed commands through
 *    insite_redis_master_run(), which reroutes those.
 *  - No lock is held while cb runs: it may call any insite_redis_* function
 *    (they use other connections).  It must read every reply it asks for on
 *    m->c; a connection it leaves broken (m->c->err) is dropped.
 * Returns 0 once cb has run for every master and returned 0, else -1. */
int insite_redis_each_master(insite_redis *r, insite_redis_master_pt cb, void *arg,
                             char *err, size_t errlen);

/* One command naming key, on m->c (no new connection); when m no longer
 * serves key's slot (MOVED, ASK, TRYAGAIN, CLUSTERDOWN: a reshard or a
 * failover since the map was read) sent again through
 * insite_redis_run_replicated() (so a rerouted write has waited for
 * redis.publish_replicas there).  The reply (the caller frees it), or NULL
 * with the reason in err (an error reply, m->c broken, or a rerouted write
 * too few replicas hold). */
redisReply *insite_redis_master_run(insite_redis *r, const insite_redis_master *m,
                                    const char *key, size_t keylen,
                                    const insite_redis_cmd *cmd, char *err, size_t errlen);

/* WAIT for redis.publish_replicas replicas (0: returns 0 at once) on m's
 * connection: every write made there so far, by insite_redis_master_run()
 * or on m->c, is then on that many replicas (a write it rerouted was
 * waited for on its new owner already).  -1 with the reason in err: fewer
 * in redis.publish_replicas_timeout, or the WAIT failed. */
int insite_redis_master_wait(insite_redis *r, const insite_redis_master *m,
                             char *err, size_t errlen);

/* "PUBLISH", or "SPUBLISH" on a cluster (to the channel's shard: name the
 * channel as insite_redis_run's key): what nginx's subscribers listen to. */
const char *insite_redis_publish_command(const insite_redis *r);

/* PING; 0 when reachable (for health checks). */
int insite_redis_ping(insite_redis *r, char *err, size_t errlen);

#endif
