/*
 * Redis on nginx's event loop: hiredis' async API driven by nginx events and
 * timers.  One ngx_insite_redis_t is one connection owned by one worker.
 *
 * What callers can rely on:
 *  - nothing here blocks: connect, commands and replies are all events;
 *  - a command either gets its reply or fails: never a hang.  A command not
 *    answered within command_timeout fails with TIMEOUT (its late reply is
 *    dropped).  The connection is dropped when nothing at all has come back
 *    for command_timeout while commands wait (a frozen Redis must not stall
 *    requests queued behind it); a slow Redis that keeps answering keeps
 *    its connection;
 *  - commands issued while the connection is not ready fail at once (NULL);
 *  - after a drop the connection is re-established with exponential backoff
 *    (1s, 2s, 4s ... 30s) and the "ready" hooks fire again, so subscribers can
 *    resubscribe and repair gaps.
 */

#ifndef _NGX_INSITE_REDIS_H_INCLUDED_
#define _NGX_INSITE_REDIS_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <hiredis/hiredis.h>
#include <hiredis/async.h>
#include "ngx_insite_metrics.h"


typedef enum {
    NGX_INSITE_REDIS_OK = 0,
    NGX_INSITE_REDIS_TIMEOUT,     /* no reply within command_timeout */
    NGX_INSITE_REDIS_LOST         /* connection dropped before the reply */
} ngx_insite_redis_status_e;


typedef enum {
    NGX_INSITE_REDIS_DOWN = 0,
    NGX_INSITE_REDIS_CONNECTING,  /* TCP connect, AUTH, SELECT, PING */
    NGX_INSITE_REDIS_READY
} ngx_insite_redis_state_e;


typedef struct ngx_insite_redis_s      ngx_insite_redis_t;
typedef struct ngx_insite_redis_cmd_s  ngx_insite_redis_cmd_t;
typedef struct ngx_insite_redis_cluster_s  ngx_insite_redis_cluster_t;

/*
 * A reply handler.  reply is NULL unless status is OK; a Redis error reply
 * (REDIS_REPLY_ERROR) comes with status OK: the command reached Redis.
 * The reply is freed by hiredis when the handler returns.
 */
typedef void (*ngx_insite_redis_reply_pt)(ngx_insite_redis_status_e status,
    redisReply *reply, void *data);

/* Called each time the connection becomes ready; reconnected is 0 the first
 * time in this worker, 1 after any drop. */
typedef void (*ngx_insite_redis_ready_pt)(ngx_insite_redis_t *rd,
    ngx_uint_t reconnected, void *data);


/* pub/sub events delivered to a subscriber connection's handler */
#define NGX_INSITE_REDIS_SUBSCRIBED    1
#define NGX_INSITE_REDIS_MESSAGE       2
#define NGX_INSITE_REDIS_UNSUBSCRIBED  3

typedef void (*ngx_insite_redis_message_pt)(ngx_insite_redis_t *rd,
    ngx_uint_t event, ngx_str_t *channel, ngx_str_t *payload, void *data);


/* A Lua script run with EVALSHA; loaded on every (re)connect. */
typedef struct {
    const char                *name;
    const char                *text;
    u_char                     sha[41];
} ngx_insite_redis_script_t;


/* a node address of `insite_redis_cluster` */
typedef struct {
    ngx_str_t                  name;            /* as written, for logs */
    ngx_str_t                  host;            /* numeric, NUL-terminated */
    in_port_t                  port;
} ngx_insite_redis_addr_t;


/* what an `insite_redis` or `insite_redis_cluster` directive says */
typedef struct {
    ngx_str_t                  name;            /* for logs: host:port */
    ngx_str_t                  host;            /* numeric address */
    in_port_t                  port;
    ngx_str_t                  unix_path;       /* set for unix: sockets */
    ngx_str_t                  password;
    ngx_int_t                  db;
    ngx_msec_t                 connect_timeout;
    ngx_msec_t                 command_timeout;
    ngx_array_t               *scripts;         /* ngx_insite_redis_script_t * */

    /* insite_redis_cluster: seed nodes (ngx_insite_redis_addr_t); NULL for
     * a single Redis.  A cluster has no db (SELECT is refused there). */
    ngx_array_t               *seeds;
    unsigned                   read_replica:1;  /* read_from=replica */
} ngx_insite_redis_conf_t;


typedef struct {
    ngx_insite_metric_t       *connected;       /* gauge: workers connected */
    ngx_insite_metric_t       *reconnects;
    ngx_insite_metric_t       *commands;
    ngx_insite_metric_t       *timeouts;
    ngx_insite_metric_t       *lost;
    ngx_insite_metric_t       *refused;         /* issued while not ready */
    ngx_insite_metric_t       *latency;         /* histogram, seconds */
} ngx_insite_redis_metrics_t;


struct ngx_insite_redis_s {
    ngx_insite_redis_conf_t   *conf;
    const char                *role;            /* "commands", "pubsub" */
    ngx_log_t                 *log;

    redisAsyncContext         *ac;
    ngx_connection_t          *conn;
    ngx_insite_redis_state_e   state;

    ngx_event_t                timer;           /* connect + command deadlines */
    ngx_msec_t                 progress;        /* last reply, or the first
                                                   command of an idle spell */
    ngx_event_t                retry;           /* reconnect backoff */
    ngx_msec_t                 backoff;
    ngx_uint_t                 ever_ready;
    ngx_uint_t                 exiting;
    const char                *drop_reason;     /* ours, when we drop it */

    /* Redis refused the handshake (AUTH, SELECT): its error reply, kept
     * until the connection is ready again, so that health checks can tell
     * "TCP reachable but refused" from "down".  auth_refused: the refusal
     * was about credentials (NOAUTH, WRONGPASS, invalid password). */
    u_char                     refused[128];
    size_t                     refused_len;
    unsigned                   auth_refused:1;
    /* inside redisAsyncHandleWrite(): an add-write then means the socket
     * took less than all, and the write event must really be armed */
    unsigned                   writing:1;

    ngx_queue_t                pending;         /* ngx_insite_redis_cmd_t, FIFO */
    ngx_queue_t                free;
    ngx_array_t                hooks;           /* ngx_insite_redis_hook_t */

    ngx_insite_redis_message_pt  on_message;    /* pub/sub connections */
    void                      *on_message_data;

    ngx_insite_redis_metrics_t *metrics;

    /*
     * Set on a cluster handle (a conf with seeds): the handle has no socket
     * of its own; commands are routed by slot to per-master connections
     * (ngx_insite_redis_cluster.c), subscriptions go to the channel's shard
     * with SSUBSCRIBE.  state is READY once the slot map is known (and, for
     * a subscriber, every shard's connection is ready).
     */
    ngx_insite_redis_cluster_t *cluster;

    /* a cluster shard's subscriber connection: once ready, its replies are
     * read past hiredis' callbacks (hiredis 0.14 knows no sharded pub/sub) */
    ngx_insite_redis_cluster_t *shard_of;
};


char *ngx_insite_redis_parse_conf(ngx_conf_t *cf, ngx_insite_redis_conf_t *rc);
/* insite_redis_cluster host:port [host:port ...] [password=]
 * [connect_timeout=] [command_timeout=] [read_from=master|replica] */
char *ngx_insite_redis_cluster_parse_conf(ngx_conf_t *cf,
    ngx_insite_redis_conf_t *rc);

ngx_insite_redis_t *ngx_insite_redis_create(ngx_cycle_t *cycle,
    ngx_insite_redis_conf_t *rc, const char *role,
    ngx_insite_redis_metrics_t *metrics);
void ngx_insite_redis_start(ngx_insite_redis_t *rd);
void ngx_insite_redis_destroy(ngx_insite_redis_t *rd);

ngx_int_t ngx_insite_redis_on_ready(ngx_insite_redis_t *rd,
    ngx_insite_redis_ready_pt handler, void *data);

/*
 * Sends a command (hiredis format string).  Returns NULL, having logged
 * nothing, when the connection is not ready or the command cannot be queued:
 * the caller reports that with its own context.
 */
ngx_insite_redis_cmd_t *ngx_insite_redis_command(ngx_insite_redis_t *rd,
    ngx_insite_redis_reply_pt handler, void *data, const char *fmt, ...);
ngx_insite_redis_cmd_t *ngx_insite_redis_command_argv(ngx_insite_redis_t *rd,
    ngx_insite_redis_reply_pt handler, void *data, int argc,
    const char **argv, const size_t *argvlen);

/*
 * Scripts: register at configuration time; every connection loads them
 * (SCRIPT LOAD) during its handshake, so EVALSHA never meets NOSCRIPT unless
 * someone flushes the script cache, in which case the error reply reaches the
 * caller and the scripts are loaded again.
 */
ngx_insite_redis_script_t *ngx_insite_redis_script_add(ngx_conf_t *cf,
    ngx_insite_redis_conf_t *rc, const char *name, const char *text);
ngx_insite_redis_cmd_t *ngx_insite_redis_eval(ngx_insite_redis_t *rd,
    ngx_insite_redis_script_t *script, ngx_insite_redis_reply_pt handler,
    void *data, int nkeys, int nargs, const char **args, const size_t *lens);

/*
 * Pub/sub: a connection given a message handler is a subscriber connection;
 * SUBSCRIBE/UNSUBSCRIBE confirmations and messages all go to the handler.
 * Subscriptions are not restored by the adapter after a reconnect: the ready
 * hook is where the owner resubscribes (it knows what it still needs).
 *
 * On a cluster handle a channel is subscribed (SSUBSCRIBE) on the shard that
 * owns its slot; subscribe answers NGX_DECLINED while that shard's
 * connection is not ready.  The ready hooks run (reconnected = 1) whenever
 * a subscription may have been lost: a shard connection (re)connects, the
 * slot map changes owners, a server drops a channel (sunsubscribe when its
 * slot moves) or refuses it (MOVED).  The owner then resubscribes everything
 * and repairs gaps, exactly as after a single Redis comes back.
 */
void ngx_insite_redis_on_message(ngx_insite_redis_t *rd,
    ngx_insite_redis_message_pt handler, void *data);
ngx_int_t ngx_insite_redis_subscribe(ngx_insite_redis_t *rd,
    ngx_str_t *channel);
ngx_int_t ngx_insite_redis_unsubscribe(ngx_insite_redis_t *rd,
    ngx_str_t *channel);

/*
 * "PUBLISH", or "SPUBLISH" on a cluster: the command that reaches this
 * handle's subscribers (a cluster subscriber uses sharded pub/sub).
 */
const char *ngx_insite_redis_publish_command(ngx_insite_redis_t *rd);

/* Drops the connection (it reconnects with backoff), e.g. on a failed
 * end-to-end heartbeat.  On a cluster subscriber: every shard's. */
void ngx_insite_redis_reset(ngx_insite_redis_t *rd, const char *reason);

/*
 * A reply the caller assembles from several commands (on a cluster, a read
 * across slots): a record cancelable like a command's, whose handler runs
 * once, when the caller completes it with ngx_insite_redis_group_done()
 * (reply may be one the caller built; it stays the caller's).
 */
ngx_insite_redis_cmd_t *ngx_insite_redis_group(ngx_insite_redis_t *rd,
    ngx_insite_redis_reply_pt handler, void *data);
void ngx_insite_redis_group_done(ngx_insite_redis_cmd_t *cmd,
    ngx_insite_redis_status_e status, redisReply *reply);

/*
 * Durability of a write: WAIT replicas timeout (milliseconds, >= 1) on the
 * connection whose reply is being handled.  Call it only from a reply
 * handler, before it returns: on a cluster that connection is the shard
 * that ran the command (after any MOVED or ASK), so the count is about this
 * write.  The handler gets WAIT's integer reply: how many replicas hold
 * every write made on that connection so far.  Commands sent after it on
 * the same connection wait behind it, up to `timeout`: keep it below
 * command_timeout.  NULL when called elsewhere or that connection is gone.
 */
ngx_insite_redis_cmd_t *ngx_insite_redis_wait(
    ngx_insite_redis_reply_pt handler, void *data, ngx_uint_t replicas,
    ngx_msec_t timeout);

/* The handler will not be called; use when the caller goes away first. */
void ngx_insite_redis_cancel(ngx_insite_redis_cmd_t *cmd);

/* Like ngx_insite_redis_cancel() for a request: cancels at pool cleanup. */
ngx_int_t ngx_insite_redis_cancel_with_pool(ngx_insite_redis_cmd_t *cmd,
    ngx_pool_t *pool);

const char *ngx_insite_redis_state_name(ngx_insite_redis_state_e state);
const char *ngx_insite_redis_status_name(ngx_insite_redis_status_e status);


#endif /* _NGX_INSITE_REDIS_H_INCLUDED_ */
