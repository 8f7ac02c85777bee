/*
 * Between the single-connection adapter (ngx_insite_redis.c) and the cluster
 * router (ngx_insite_redis_cluster.c) only: no other file includes this.
 */

#ifndef _NGX_INSITE_REDIS_INT_H_INCLUDED_
#define _NGX_INSITE_REDIS_INT_H_INCLUDED_


#include "ngx_insite_core.h"
#include "insite_cluster_slots.h"


typedef struct {
    ngx_insite_redis_ready_pt    handler;
    void                        *data;
} ngx_insite_redis_hook_t;


struct ngx_insite_redis_cmd_s {
    ngx_queue_t                  queue;
    ngx_insite_redis_t          *rd;
    ngx_insite_redis_reply_pt    handler;
    void                        *data;
    ngx_pool_cleanup_t          *cln;
    ngx_msec_t                   start;
    ngx_msec_t                   deadline;
    unsigned                     timed_out:1;
    unsigned                     internal:1;
};


/* host:port of an insite_redis* directive, resolved at configuration time
 * (hiredis would resolve with a blocking call) into numeric address text;
 * default_port 0: the port is required */
char *ngx_insite_redis_parse_addr(ngx_conf_t *cf, const char *directive,
    ngx_str_t *text, in_port_t default_port, ngx_insite_redis_addr_t *a);

/* a command record of rd (any handle, connected or not) */
ngx_insite_redis_cmd_t *ngx_insite_redis_cmd_get(ngx_insite_redis_t *rd,
    ngx_insite_redis_reply_pt handler, void *data, ngx_msec_t timeout);
void ngx_insite_redis_cmd_put(ngx_insite_redis_cmd_t *cmd);

/* sends a command hiredis formatted, timed to end by `deadline`; NULL when
 * the connection is not ready */
ngx_insite_redis_cmd_t *ngx_insite_redis_command_formatted(
    ngx_insite_redis_t *rd, ngx_insite_redis_reply_pt handler, void *data,
    const char *buf, size_t len, ngx_msec_t deadline);

/* writes a command without a reply callback (a shard subscriber reads its
 * replies itself); NGX_DECLINED when not ready */
ngx_int_t ngx_insite_redis_send_raw(ngx_insite_redis_t *rd, const char *buf,
    size_t len);

/* a pub/sub reply [kind, channel, payload] to rd's message handler */
void ngx_insite_redis_deliver(ngx_insite_redis_t *rd, ngx_uint_t event,
    redisReply *reply);

void ngx_insite_redis_run_hooks(ngx_insite_redis_t *rd,
    ngx_uint_t reconnected);

/* a handle's fields common to a single Redis and a cluster's facade (its
 * configuration, hooks and command queues), from cycle's pool; the caller
 * adds what its kind needs */
ngx_insite_redis_t *ngx_insite_redis_alloc(ngx_cycle_t *cycle,
    ngx_insite_redis_conf_t *rc, const char *role,
    ngx_insite_redis_metrics_t *metrics);


/* the cluster side, called by ngx_insite_redis.c for a handle with cluster
 * set (or a conf with seeds) */
ngx_insite_redis_t *ngx_insite_redis_cluster_create(ngx_cycle_t *cycle,
    ngx_insite_redis_conf_t *rc, const char *role,
    ngx_insite_redis_metrics_t *metrics);
void ngx_insite_redis_cluster_start(ngx_insite_redis_t *rd);
void ngx_insite_redis_cluster_destroy(ngx_insite_redis_t *rd);
/* takes buf (malloc'ed by hiredis' formatter) in every case */
ngx_insite_redis_cmd_t *ngx_insite_redis_cluster_command(
    ngx_insite_redis_t *rd, ngx_insite_redis_reply_pt handler, void *data,
    char *buf, size_t len);
ngx_int_t ngx_insite_redis_cluster_subscribe(ngx_insite_redis_t *rd,
    ngx_str_t *channel, ngx_uint_t subscribe);
void ngx_insite_redis_cluster_reset(ngx_insite_redis_t *rd,
    const char *reason);
/* one reply read off a shard subscriber connection */
void ngx_insite_redis_cluster_shard_reply(ngx_insite_redis_t *shard,
    redisReply *reply);


#endif /* _NGX_INSITE_REDIS_INT_H_INCLUDED_ */
