/*
 * ngx_http_insite_ws_module: shared definitions.
 *
 * Files, one job each:
 *   ngx_http_insite_ws_module.c   directives, configuration, worker start/exit
 *   ngx_insite_ws_handshake.c     HTTP upgrade checks and the 101
 *   ngx_insite_ws_conn_limit.c    open connections counted across workers
 *   ngx_insite_ws_conn.c          a client connection: read frames, send
 *                                 queue, heartbeats, close
 *   ngx_insite_ws_proto.c         the JSON protocol: subscribe, unsubscribe,
 *                                 ping; replies and errors
 *   ngx_insite_ws_channel.c       this worker's channels: fan-out (a message is
 *                                 framed once), per-subscriber cursors,
 *                                 catch-up, gap repair
 *   ngx_insite_ws_redis.c         Redis: pub/sub subscriber connection,
 *                                 positions, history, the publish script
 *   ngx_insite_ws_publish.c       the insite_ws_publish HTTP endpoint
 *   ngx_insite_ws_publish_replicas.c  WAIT for replicas before its answer
 *   ngx_insite_ws_status.c        the insite_ws_status JSON endpoint
 *   insite_ws_frame.c             RFC 6455 framing, plain C (fuzzed)
 *   insite_ws_conflate.c          conflation runs and the conflated
 *                                 message, plain C (fuzzed)
 *   ngx_insite_ws_deflate.c       permessage-deflate: the handshake answer,
 *                                 compressed frames shared, inflating
 *   insite_ws_deflate.c           permessage-deflate offers and zlib,
 *                                 plain C (fuzzed)
 *   insite_channel.c              the channel contract: names, Redis keys,
 *                                 publish bodies and script arguments,
 *                                 plain C shared with the workers (fuzzed)
 */

#ifndef _NGX_INSITE_WS_H_INCLUDED_
#define _NGX_INSITE_WS_H_INCLUDED_


#include "ngx_insite_core.h"
#include "insite_ws_frame.h"
#include "insite_ws_conflate.h"
#include "insite_ws_deflate.h"
#include "insite_channel.h"


#define NGX_INSITE_WS_CHANNEL_MAX     INSITE_CHANNEL_NAME_MAX
#define NGX_INSITE_WS_EPOCH_LEN       16
#define NGX_INSITE_WS_HISTORY_BATCH   500
#define NGX_INSITE_WS_LAST_MAX        1000


typedef struct ngx_insite_ws_conn_s     ngx_insite_ws_conn_t;
typedef struct ngx_insite_ws_channel_s  ngx_insite_ws_channel_t;
typedef struct ngx_insite_ws_sub_s      ngx_insite_ws_sub_t;


/* A frame ready to send, shared by every subscriber it goes to. */
/*
 * Built with INSITE_WS_TRACE=1 (scripts/build-modules.sh), the module logs
 * one NOTICE line per step of a message's way, "insite trace <us> <step>",
 * us = CLOCK_REALTIME in microseconds: publish body read, script reply,
 * pub/sub message read, frames queued, frame written to every subscriber.
 * bench/ws/trace.py turns them into a per-step latency table.  Otherwise
 * the macro is empty.
 */
#if (INSITE_WS_TRACE)
#define ngx_insite_ws_trace(fmt, ...)                                         \
    ngx_log_error(NGX_LOG_NOTICE, ngx_cycle->log, 0, "insite trace %uL " fmt, \
                  ngx_insite_ws_trace_us(), __VA_ARGS__)

static ngx_inline uint64_t
ngx_insite_ws_trace_us(void)
{
    struct timespec  ts;

    (void) clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}
#else
#define ngx_insite_ws_trace(fmt, ...)
#endif


typedef struct ngx_insite_ws_frame_s  ngx_insite_ws_frame_t;

struct ngx_insite_ws_frame_s {
    ngx_uint_t                  refs;
    size_t                      len;
    size_t                      hlen;             /* payload at data + hlen */
    ngx_insite_ws_frame_t      *deflated[8];      /* permessage-deflate, per
                                                     window bits - 8; owned */
    u_char                      plain_only;       /* bits - 8 not worth it */
#if (INSITE_WS_TRACE)
    uint64_t                    trace_seq;        /* a live message's seq */
#endif
    u_char                      data[1];
};


/* one entry of a connection's send queue */
typedef struct {
    ngx_queue_t                 queue;
    ngx_insite_ws_frame_t      *frame;
    size_t                      sent;
    ngx_insite_ws_sub_t        *sub;              /* in sub's conflation run */
    insite_ws_cq_link_t         run;
} ngx_insite_ws_out_t;


typedef struct {
    ngx_insite_metric_t        *connections;      /* gauge */
    ngx_insite_metric_t        *connections_peak; /* gauge */
    ngx_insite_metric_t        *accepted;
    ngx_insite_metric_t        *refused;
    ngx_insite_metric_t        *channels;         /* gauge: worker channels */
    ngx_insite_metric_t        *subscriptions;    /* gauge */
    ngx_insite_metric_t        *published;
    ngx_insite_metric_t        *received;         /* from Redis pub/sub */
    ngx_insite_metric_t        *delivered;
    ngx_insite_metric_t        *replayed;
    ngx_insite_metric_t        *slow_closes;
    ngx_insite_metric_t        *idle_closes;
    ngx_insite_metric_t        *protocol_closes;
    ngx_insite_metric_t        *gap_repairs;
    ngx_insite_metric_t        *resets;
    ngx_insite_metric_t        *client_errors;
    ngx_insite_metric_t        *conflated;        /* messages merged away */
    ngx_insite_metric_t        *async_failures;   /* 202 answered, then failed */
} ngx_insite_ws_metrics_t;


typedef struct ngx_http_insite_ws_loc_conf_s  ngx_http_insite_ws_loc_conf_t;


/* an insite_ws location, for checks made once everything is merged */
typedef struct {
    ngx_http_insite_ws_loc_conf_t  *wlcf;
    ngx_http_core_loc_conf_t       *clcf;
} ngx_insite_ws_location_t;


typedef struct {
    ngx_str_t                   prefix;           /* Redis key prefix */
    ngx_uint_t                  max_connections;
    ngx_msec_t                  check_interval;
    ngx_msec_t                  shutdown_spread;
    time_t                      idempotency_ttl;
    ngx_uint_t                  used;             /* ws or publish somewhere */
    ngx_msec_t                  publish_replicas_timeout;  /* the largest */
    ngx_msec_t                  publish_replicas_default;  /* half of the
                                            Redis command_timeout, set by
                                            ..._publish_replicas_check() */
    ngx_shm_zone_t             *limit_zone;       /* connection counts */
    ngx_array_t                 ws_locations;     /* ngx_insite_ws_location_t */

    ngx_insite_ws_metrics_t     metrics;

    /* per worker */
    ngx_insite_redis_t         *pubsub;
    ngx_rbtree_t                channels;
    ngx_rbtree_node_t           sentinel;
    ngx_uint_t                  nchannels;
    ngx_queue_t                 conns;            /* ngx_insite_ws_conn_t */
    ngx_event_t                 check;            /* position check timer */
    ngx_event_t                 shutdown;
    ngx_insite_redis_script_t  *publish_script;
    ngx_insite_redis_script_t  *position_script;
    ngx_msec_t                  heartbeat_seen;   /* pub/sub liveness */
    ngx_uint_t                  heartbeat_sent;
} ngx_http_insite_ws_main_conf_t;


struct ngx_http_insite_ws_loc_conf_s {
    ngx_flag_t                  enable;
    ngx_flag_t                  publish;
    ngx_flag_t                  status;
    ngx_msec_t                  ping_interval;
    ngx_msec_t                  idle_timeout;
    size_t                      max_message_size;
    size_t                      send_buffer;
    ngx_uint_t                  history;
    ngx_uint_t                  max_channels;
    ngx_array_t                *allowed_origins;  /* ngx_str_t */
    ngx_flag_t                  allow_any_origin;
    ngx_http_complex_value_t   *user;
    ngx_str_t                   private_prefix;
    ngx_array_t                *channels;         /* ngx_str_t patterns */
    ngx_uint_t                  subscribe_rate;   /* channels per second */
    ngx_uint_t                  subscribe_burst;
    ngx_flag_t                  deflate;
    size_t                      deflate_min_size;
    ngx_array_t                *conflate;         /* ngx_str_t patterns */
    size_t                      conflate_after;
    size_t                      notsent_lowat;    /* 0: off */
    ngx_uint_t                  publish_replicas; /* WAIT N; 0: off */
    ngx_msec_t                  publish_replicas_timeout;  /* 0: default */
};


struct ngx_insite_ws_conn_s {
    ngx_queue_t                 queue;            /* in main conf's conns */
    ngx_http_request_t         *request;          /* until the 101 is out */
    ngx_pool_cleanup_t         *cleanup;
    ngx_connection_t           *connection;
    ngx_http_insite_ws_loc_conf_t *conf;
    ngx_str_t                   user;
    ngx_uint_t                  deflate_bits;     /* permessage-deflate: the
                                                     server window, 0: off */

    /* reading */
    u_char                      hdr[INSITE_WS_MAX_CLIENT_HEADER];
    size_t                      hdr_len;          /* partial frame header */
    u_char                     *msg;              /* assembled data message */
    size_t                      msg_len;
    size_t                      msg_cap;
    u_char                      ctrl[INSITE_WS_MAX_CONTROL];
    size_t                      ctrl_len;
    insite_ws_frame_t           frame;
    insite_ws_msg_t             assembler;
    ngx_uint_t                  in_payload;

    /* writing */
    ngx_queue_t                 out;              /* ngx_insite_ws_out_t */
    ngx_queue_t                 out_free;
    size_t                      out_bytes;

    /* subscriptions */
    ngx_queue_t                 subs;             /* ngx_insite_ws_sub_t */
    ngx_uint_t                  nsubs;
    ngx_queue_t                 requests;         /* subscribes in flight */
    ngx_uint_t                  sub_tokens;       /* insite_ws_subscribe_rate */
    ngx_msec_t                  sub_refill;       /* last refill */

    ngx_event_t                 heartbeat;
    ngx_event_t                 going_away;
    ngx_event_t                 detach;           /* frees the request */
    ngx_msec_t                  last_rx;

    unsigned                    closing:1;        /* close frame queued */
    unsigned                    close_sent:1;     /* ... and written */
    unsigned                    close_received:1;
    unsigned                    broken:1;         /* protocol error seen */
    unsigned                    catchup_stalled:1;  /* replay waits to drain */
    unsigned                    finished:1;
    unsigned                    released:1;
};


/* channel subscription states, per subscriber */
#define NGX_INSITE_WS_SUB_WAIT      0     /* Redis SUBSCRIBE not confirmed */
#define NGX_INSITE_WS_SUB_CATCHUP   1     /* reading history up to live */
#define NGX_INSITE_WS_SUB_LIVE      2


struct ngx_insite_ws_sub_s {
    ngx_queue_t                 conn_link;        /* in conn's subs */
    ngx_queue_t                 chan_link;        /* in channel's subs */
    ngx_insite_ws_conn_t       *wc;
    ngx_insite_ws_channel_t    *ch;
    uint64_t                    cursor;           /* last seq sent */
    ngx_uint_t                  state;
    void                       *request;          /* subscribe in progress */
    ngx_insite_redis_cmd_t     *cmd;              /* history read */
    ngx_str_t                   since_epoch;
    u_char                      epoch_buf[NGX_INSITE_WS_EPOCH_LEN];
    uint64_t                    since;
    uint64_t                    last;             /* replay the last N */
    insite_ws_cq_t              run;              /* conflation, see
                                                     insite_ws_conflate.h */
    unsigned                    has_since:1;
    unsigned                    force_reset:1;    /* epoch changed */
    unsigned                    snapshot:1;       /* "last": no reset owed */
    unsigned                    conflate:1;       /* insite_ws_conflate */
};


/* channel states, per worker */
#define NGX_INSITE_WS_CH_UNSUBSCRIBED  0
#define NGX_INSITE_WS_CH_SUBSCRIBING   1
#define NGX_INSITE_WS_CH_POSITIONING   2   /* subscribed, reading the top */
#define NGX_INSITE_WS_CH_LIVE          3
#define NGX_INSITE_WS_CH_REPAIRING     4   /* reading history to fill a gap */


/*
 * What a channel delivered last, by seq: a pub/sub message whose seq was
 * delivered with other content means Redis reused that seq (it lost the
 * newest writes in a failover), not a duplicate (ngx_insite_ws_channel.c).
 */
#define NGX_INSITE_WS_RECENT           16


struct ngx_insite_ws_channel_s {
    ngx_str_node_t              node;             /* name, key of the rbtree */
    ngx_queue_t                 subs;
    ngx_uint_t                  nsubs;
    ngx_uint_t                  state;
    uint64_t                    last_seq;         /* delivered in order */
    uint64_t                    max_seen;         /* highest seq seen live */
    u_char                      epoch[NGX_INSITE_WS_EPOCH_LEN + 1];
    size_t                      epoch_len;
    ngx_uint_t                  busy;             /* Redis reads in flight */
    uint64_t                    suspect;          /* top seen behind */
    uint64_t                    check_seq;        /* last_seq when the check asked */
    struct {
        uint64_t                seq;
        uint32_t                hash;             /* murmur2 of the message */
    }                           recent[NGX_INSITE_WS_RECENT]; /* by seq % N */
    ngx_msec_t                  last_live;        /* last pub/sub message */
    unsigned                    positioned:1;     /* last_seq is known */
    unsigned                    resubscribed:1;   /* after a Redis outage */
    unsigned                    dead:1;           /* left the tree */
};


extern ngx_module_t  ngx_http_insite_ws_module;


/* handshake */
ngx_int_t ngx_insite_ws_handshake(ngx_http_request_t *r);
ngx_int_t ngx_insite_ws_refuse(ngx_http_request_t *r, ngx_uint_t status,
    const char *code, const char *message, const char *hname,
    const char *hvalue);

/* connection limit */
ngx_int_t ngx_insite_ws_limit_init_conf(ngx_conf_t *cf,
    ngx_http_insite_ws_main_conf_t *wmcf);
ngx_int_t ngx_insite_ws_limit_init_process(ngx_cycle_t *cycle,
    ngx_http_insite_ws_main_conf_t *wmcf);
ngx_int_t ngx_insite_ws_limit_acquire(ngx_http_request_t *r);
void ngx_insite_ws_limit_release(void);

/* connection */
ngx_int_t ngx_insite_ws_conn_start(ngx_http_request_t *r, ngx_str_t *user,
    ngx_uint_t deflate_bits);
ngx_int_t ngx_insite_ws_send(ngx_insite_ws_conn_t *wc,
    ngx_insite_ws_frame_t *frame);
ngx_int_t ngx_insite_ws_send_text(ngx_insite_ws_conn_t *wc, u_char *data,
    size_t len);
ngx_int_t ngx_insite_ws_send_message(ngx_insite_ws_sub_t *sub,
    ngx_insite_ws_frame_t *frame, uint64_t seq);
void ngx_insite_ws_conflate_end(ngx_insite_ws_sub_t *sub);
void ngx_insite_ws_close(ngx_insite_ws_conn_t *wc, ngx_uint_t code,
    const char *reason);
void ngx_insite_ws_go_away(ngx_insite_ws_conn_t *wc);

/* permessage-deflate */
ngx_int_t ngx_insite_ws_deflate_handshake(ngx_http_request_t *r,
    ngx_uint_t *bits);
ngx_insite_ws_frame_t *ngx_insite_ws_frame_deflated(
    ngx_insite_ws_frame_t *frame, ngx_uint_t bits, size_t min_size,
    ngx_log_t *log);
ngx_uint_t ngx_insite_ws_inflate(ngx_insite_ws_conn_t *wc, u_char *in,
    size_t len, u_char **out, size_t *out_len);
void ngx_insite_ws_deflate_exit(void);

/* frames */
ngx_insite_ws_frame_t *ngx_insite_ws_frame_alloc(ngx_log_t *log, int opcode,
    u_char *payload, size_t len);
void ngx_insite_ws_frame_release(ngx_insite_ws_frame_t *frame);

/* protocol */
void ngx_insite_ws_proto_message(ngx_insite_ws_conn_t *wc, u_char *data,
    size_t len);
ngx_int_t ngx_insite_ws_proto_error(ngx_insite_ws_conn_t *wc,
    ngx_str_t *id, const char *code, const char *message);
void ngx_insite_ws_proto_continue(void *request);
void ngx_insite_ws_proto_forget(ngx_insite_ws_sub_t *sub);
void ngx_insite_ws_proto_cancel(ngx_insite_ws_conn_t *wc);
ngx_int_t ngx_insite_ws_proto_reset(ngx_insite_ws_sub_t *sub,
    uint64_t first_seq);

/* channels */
ngx_insite_ws_channel_t *ngx_insite_ws_channel_get(ngx_str_t *name,
    ngx_uint_t create);
ngx_insite_ws_sub_t *ngx_insite_ws_channel_join(ngx_insite_ws_channel_t *ch,
    ngx_insite_ws_conn_t *wc);
void ngx_insite_ws_channel_leave(ngx_insite_ws_sub_t *sub);
void ngx_insite_ws_channel_subscribed(ngx_insite_ws_channel_t *ch);
void ngx_insite_ws_channel_position(ngx_insite_ws_channel_t *ch,
    uint64_t top, ngx_str_t *epoch);
void ngx_insite_ws_channel_message(ngx_str_t *name, u_char *payload,
    size_t len);
void ngx_insite_ws_channel_start(ngx_insite_ws_sub_t *sub, uint64_t top,
    ngx_str_t *epoch);
void ngx_insite_ws_channel_history(ngx_insite_ws_channel_t *ch,
    ngx_insite_ws_sub_t *sub, redisReply *reply);
void ngx_insite_ws_channel_catch_up(ngx_insite_ws_sub_t *sub);
void ngx_insite_ws_channel_resume(ngx_insite_ws_conn_t *wc);
void ngx_insite_ws_channel_repair(ngx_insite_ws_channel_t *ch);
void ngx_insite_ws_channel_unbusy(ngx_insite_ws_channel_t *ch);
void ngx_insite_ws_channels_resubscribe(void);
void ngx_insite_ws_channels_check(void);
ngx_int_t ngx_insite_ws_channel_name_valid(ngx_str_t *name);
ngx_int_t ngx_insite_ws_channel_known(ngx_http_insite_ws_loc_conf_t *wlcf,
    ngx_str_t *name);
ngx_int_t ngx_insite_ws_channel_match(ngx_array_t *patterns, ngx_str_t *name);

/* redis */
ngx_int_t ngx_insite_ws_redis_init(ngx_cycle_t *cycle);
void ngx_insite_ws_redis_exit(ngx_cycle_t *cycle);
ngx_int_t ngx_insite_ws_redis_subscribe(ngx_insite_ws_channel_t *ch);
ngx_int_t ngx_insite_ws_redis_unsubscribe(ngx_insite_ws_channel_t *ch);
ngx_int_t ngx_insite_ws_redis_positions(ngx_insite_ws_channel_t **chs,
    ngx_uint_t n, ngx_insite_redis_reply_pt handler, void *data,
    ngx_insite_redis_cmd_t **cmd);
ngx_int_t ngx_insite_ws_redis_history(ngx_insite_ws_channel_t *ch,
    ngx_insite_ws_sub_t *sub, uint64_t after);
void ngx_insite_ws_redis_check_soon(void);

/* endpoints */
ngx_int_t ngx_insite_ws_publish_handler(ngx_http_request_t *r);

/* ngx_insite_ws_publish_replicas.c: WAIT before acknowledging a publish */
char *ngx_http_insite_ws_publish_replicas(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
ngx_int_t ngx_insite_ws_publish_replicas_check(ngx_conf_t *cf,
    ngx_http_insite_ws_main_conf_t *wmcf, ngx_insite_redis_conf_t *rc);
/* from the publish's reply handler: sends the answer (status, body) once
 * enough replicas hold the write, or an error; NGX_DONE while waiting */
ngx_int_t ngx_insite_ws_publish_replicas_wait(ngx_http_request_t *r,
    ngx_str_t *channel, ngx_uint_t status, ngx_buf_t *body);
ngx_int_t ngx_insite_ws_status_handler(ngx_http_request_t *r);

ngx_http_insite_ws_main_conf_t *ngx_insite_ws_main_conf(void);


#endif /* _NGX_INSITE_WS_H_INCLUDED_ */
