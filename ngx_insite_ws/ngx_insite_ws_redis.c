/*
 * The WebSocket module's use of Redis.
 *
 *   <prefix>pub:<channel>    pub/sub channel the publish script PUBLISHes to
 *   <prefix>{<channel>}:pub  the same on Redis Cluster (insite_redis_cluster):
 *                            sharded pub/sub, SPUBLISH/SSUBSCRIBE on the
 *                            shard that owns the channel's slot
 *   <prefix>{<channel>}:seq  hash: seq, epoch (lua/publish.lua, position.lua)
 *   <prefix>{<channel>}:hist sorted set of framed messages, score = seq
 *   <prefix>hb:<pid>         this worker's pub/sub heartbeat
 *
 * The channel keys are made by insite_channel_key() (insite_channel.h), the
 * one home of the layout.
 *
 * Each worker has one subscriber connection of its own (a subscribed
 * connection cannot run commands) and uses the core's command connection
 * for positions, history and publishing.  The subscriber's liveness is
 * proven end to end: every check interval the worker PUBLISHes to its own
 * heartbeat channel through the command connection; if nothing comes back
 * for three intervals, the subscriber connection is dropped and re-made.
 */

#include "ngx_insite_ws.h"


#define NGX_INSITE_WS_KEY_MAX  INSITE_CHANNEL_KEY_MAX


static void ngx_insite_ws_redis_message(ngx_insite_redis_t *rd,
    ngx_uint_t event, ngx_str_t *channel, ngx_str_t *payload, void *data);
static void ngx_insite_ws_redis_ready(ngx_insite_redis_t *rd,
    ngx_uint_t reconnected, void *data);
static void ngx_insite_ws_redis_check_handler(ngx_event_t *ev);
static void ngx_insite_ws_redis_heartbeat(
    ngx_http_insite_ws_main_conf_t *wmcf);
static size_t ngx_insite_ws_redis_key(u_char *buf,
    insite_channel_key_e kind, ngx_str_t *name);
static void ngx_insite_ws_redis_sub_history(ngx_insite_redis_status_e status,
    redisReply *reply, void *data);
static void ngx_insite_ws_redis_channel_history(
    ngx_insite_redis_status_e status, redisReply *reply, void *data);


ngx_int_t
ngx_insite_ws_redis_init(ngx_cycle_t *cycle)
{
    ngx_http_insite_ws_main_conf_t  *wmcf;

    wmcf = ngx_http_cycle_get_module_main_conf(cycle,
                                               ngx_http_insite_ws_module);

    wmcf->pubsub = ngx_insite_redis_create(cycle,
                                           ngx_insite_redis_shared_conf(cycle),
                                           "pubsub",
                                           ngx_insite_redis_shared_metrics(
                                               cycle));
    if (wmcf->pubsub == NULL) {
        return NGX_ERROR;
    }

    ngx_insite_redis_on_message(wmcf->pubsub, ngx_insite_ws_redis_message,
                                wmcf);

    if (ngx_insite_redis_on_ready(wmcf->pubsub, ngx_insite_ws_redis_ready,
                                  wmcf)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    ngx_insite_redis_start(wmcf->pubsub);

    wmcf->check.handler = ngx_insite_ws_redis_check_handler;
    wmcf->check.data = wmcf;
    wmcf->check.log = cycle->log;
    wmcf->check.cancelable = 1;

    ngx_add_timer(&wmcf->check, wmcf->check_interval);

    return NGX_OK;
}


void
ngx_insite_ws_redis_exit(ngx_cycle_t *cycle)
{
    ngx_http_insite_ws_main_conf_t  *wmcf;

    wmcf = ngx_http_cycle_get_module_main_conf(cycle,
                                               ngx_http_insite_ws_module);

    if (wmcf->check.timer_set) {
        ngx_del_timer(&wmcf->check);
    }

    if (wmcf->pubsub) {
        ngx_insite_redis_destroy(wmcf->pubsub);
        wmcf->pubsub = NULL;
    }
}


/* the pub/sub channel of a channel: sharded on a cluster */
static insite_channel_key_e
ngx_insite_ws_redis_pub_kind(ngx_http_insite_ws_main_conf_t *wmcf)
{
    return (wmcf->pubsub && wmcf->pubsub->cluster) ? INSITE_CHANNEL_KEY_SPUB
                                                   : INSITE_CHANNEL_KEY_PUB;
}


static size_t
ngx_insite_ws_redis_key(u_char *buf, insite_channel_key_e kind,
    ngx_str_t *name)
{
    ngx_http_insite_ws_main_conf_t  *wmcf;

    wmcf = ngx_insite_ws_main_conf();

    /* names are validated before a channel exists, the prefix when the
       configuration is read: never 0 */
    return insite_channel_key((char *) buf, NGX_INSITE_WS_KEY_MAX,
                              (char *) wmcf->prefix.data, wmcf->prefix.len,
                              kind, (char *) name->data, name->len, NULL, 0);
}


ngx_int_t
ngx_insite_ws_redis_subscribe(ngx_insite_ws_channel_t *ch)
{
    u_char                           buf[NGX_INSITE_WS_KEY_MAX];
    ngx_str_t                        key;
    ngx_http_insite_ws_main_conf_t  *wmcf;

    wmcf = ngx_insite_ws_main_conf();

    key.data = buf;
    key.len = ngx_insite_ws_redis_key(buf, ngx_insite_ws_redis_pub_kind(wmcf),
                                      &ch->node.str);

    if (wmcf->pubsub == NULL
        || ngx_insite_redis_subscribe(wmcf->pubsub, &key) != NGX_OK)
    {
        /* not connected: the ready hook subscribes every channel */
        return NGX_DECLINED;
    }

    ch->state = NGX_INSITE_WS_CH_SUBSCRIBING;

    return NGX_OK;
}


ngx_int_t
ngx_insite_ws_redis_unsubscribe(ngx_insite_ws_channel_t *ch)
{
    u_char                           buf[NGX_INSITE_WS_KEY_MAX];
    ngx_str_t                        key;
    ngx_http_insite_ws_main_conf_t  *wmcf;

    wmcf = ngx_insite_ws_main_conf();

    if (wmcf->pubsub == NULL) {
        return NGX_DECLINED;
    }

    key.data = buf;
    key.len = ngx_insite_ws_redis_key(buf, ngx_insite_ws_redis_pub_kind(wmcf),
                                      &ch->node.str);

    return ngx_insite_redis_unsubscribe(wmcf->pubsub, &key);
}


static void
ngx_insite_ws_redis_message(ngx_insite_redis_t *rd, ngx_uint_t event,
    ngx_str_t *channel, ngx_str_t *payload, void *data)
{
    ngx_http_insite_ws_main_conf_t *wmcf = data;

    ngx_str_t                 name;
    ngx_insite_ws_channel_t  *ch;

    if (channel->len <= wmcf->prefix.len
        || ngx_strncmp(channel->data, wmcf->prefix.data, wmcf->prefix.len)
           != 0)
    {
        return;
    }

    name.data = channel->data + wmcf->prefix.len;
    name.len = channel->len - wmcf->prefix.len;

    if (name.len > 3 && ngx_strncmp(name.data, "hb:", 3) == 0) {
        if (event == NGX_INSITE_REDIS_MESSAGE) {
            wmcf->heartbeat_seen = ngx_current_msec;
        }
        return;
    }

    if (name.len > 4 && ngx_strncmp(name.data, "pub:", 4) == 0) {
        name.data += 4;
        name.len -= 4;

    } else if (name.len > 6 && name.data[0] == '{'
               && ngx_strncmp(name.data + name.len - 5, "}:pub", 5) == 0)
    {
        /* {<channel>}:pub, sharded (Redis Cluster) */
        name.data += 1;
        name.len -= 6;

    } else {
        return;
    }

    switch (event) {

    case NGX_INSITE_REDIS_MESSAGE:
        if (payload) {
            ngx_insite_ws_channel_message(&name, payload->data, payload->len);
        }
        break;

    case NGX_INSITE_REDIS_SUBSCRIBED:
        ch = ngx_insite_ws_channel_get(&name, 0);
        if (ch) {
            ngx_insite_ws_channel_subscribed(ch);
        }
        break;

    default:
        break;
    }
}


static void
ngx_insite_ws_redis_ready(ngx_insite_redis_t *rd, ngx_uint_t reconnected,
    void *data)
{
    ngx_http_insite_ws_main_conf_t *wmcf = data;

    u_char     buf[64];
    ngx_str_t  hb;

    hb.data = buf;
    hb.len = ngx_sprintf(buf, "%Vhb:%P", &wmcf->prefix, ngx_pid) - buf;

    (void) ngx_insite_redis_subscribe(rd, &hb);

    wmcf->heartbeat_seen = ngx_current_msec;
    wmcf->heartbeat_sent = 0;

    ngx_insite_ws_channels_resubscribe();
}


/*
 * On a cluster one script call reads the keys of one slot: positions of
 * channels in different slots are read one call each and answered together,
 * as one reply of the shape lua/position.lua gives ({ seq1, epoch1, ... }).
 */

typedef struct ngx_insite_ws_positions_s  ngx_insite_ws_positions_t;

typedef struct {
    ngx_insite_ws_positions_t  *g;
    ngx_uint_t                  i;
} ngx_insite_ws_position_part_t;

struct ngx_insite_ws_positions_s {
    ngx_insite_redis_cmd_t     *group;     /* what the caller holds */
    ngx_uint_t                  n;
    ngx_uint_t                  left;
    ngx_insite_redis_status_e   status;    /* the first failure */
    ngx_uint_t                  bad;       /* an error or odd reply */
    redisReply                **element;   /* 2n pointers into part[] */
    redisReply                 *value;     /* 2n: seq, epoch per channel */
    ngx_insite_ws_position_part_t  *parts; /* n */
};


static void
ngx_insite_ws_redis_position_part(ngx_insite_redis_status_e status,
    redisReply *reply, void *data)
{
    ngx_insite_ws_position_part_t *part = data;

    size_t                      len;
    ngx_uint_t                  i;
    redisReply                  top, *seq, *epoch;
    ngx_insite_ws_positions_t  *g = part->g;

    i = part->i;

    if (status != NGX_INSITE_REDIS_OK) {
        if (g->status == NGX_INSITE_REDIS_OK) {
            g->status = status;
        }

    } else if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2
               || reply->element[0]->type != REDIS_REPLY_INTEGER
               || reply->element[1]->type != REDIS_REPLY_STRING)
    {
        g->bad = 1;

    } else {
        seq = &g->value[2 * i];
        epoch = &g->value[2 * i + 1];
        seq->type = REDIS_REPLY_INTEGER;
        seq->integer = reply->element[0]->integer;
        len = reply->element[1]->len;
        epoch->type = REDIS_REPLY_STRING;
        epoch->str = ngx_alloc(len + 1, ngx_cycle->log);
        if (epoch->str == NULL) {
            g->bad = 1;
        } else {
            ngx_memcpy(epoch->str, reply->element[1]->str, len);
            epoch->str[len] = '\0';
            epoch->len = len;
        }
    }

    if (--g->left > 0) {
        return;
    }

    ngx_memzero(&top, sizeof(redisReply));

    if (g->status == NGX_INSITE_REDIS_OK && !g->bad) {
        top.type = REDIS_REPLY_ARRAY;
        top.elements = 2 * g->n;
        top.element = g->element;

    } else {
        top.type = REDIS_REPLY_ERROR;
        top.str = "positions across cluster slots: bad reply";
        top.len = ngx_strlen(top.str);
    }

    ngx_insite_redis_group_done(g->group, g->status,
                                g->status == NGX_INSITE_REDIS_OK ? &top
                                                                 : NULL);

    for (i = 0; i < g->n; i++) {
        ngx_free(g->value[2 * i + 1].str);
    }

    ngx_free(g);
}


/* one position.lua call per channel, answered together */
static ngx_insite_redis_cmd_t *
ngx_insite_ws_redis_positions_split(ngx_insite_ws_channel_t **chs,
    ngx_uint_t n, ngx_insite_redis_reply_pt handler, void *data)
{
    u_char                           key[NGX_INSITE_WS_KEY_MAX];
    size_t                           len;
    ngx_uint_t                       i;
    const char                      *arg;
    ngx_insite_redis_t              *rd;
    ngx_insite_ws_positions_t       *g;
    ngx_http_insite_ws_main_conf_t  *wmcf;

    wmcf = ngx_insite_ws_main_conf();
    rd = ngx_insite_redis_shared();

    g = ngx_calloc(sizeof(ngx_insite_ws_positions_t)
                   + 2 * n * (sizeof(redisReply *) + sizeof(redisReply))
                   + n * sizeof(ngx_insite_ws_position_part_t),
                   ngx_cycle->log);
    if (g == NULL) {
        return NULL;
    }

    g->element = (redisReply **) (g + 1);
    g->value = (redisReply *) (g->element + 2 * n);
    g->parts = (ngx_insite_ws_position_part_t *) (g->value + 2 * n);
    g->n = n;

    g->group = ngx_insite_redis_group(rd, handler, data);
    if (g->group == NULL) {
        ngx_free(g);
        return NULL;
    }

    for (i = 0; i < 2 * n; i++) {
        g->element[i] = &g->value[i];
    }

    for (i = 0; i < n; i++) {
        g->parts[i].g = g;
        g->parts[i].i = i;

        len = ngx_insite_ws_redis_key(key, INSITE_CHANNEL_KEY_STATE,
                                      &chs[i]->node.str);
        arg = (const char *) key;

        if (ngx_insite_redis_eval(rd, wmcf->position_script,
                                  ngx_insite_ws_redis_position_part,
                                  &g->parts[i], 1, 1, &arg, &len)
            == NULL)
        {
            /* the ones sent answer; the rest count as lost */
            g->status = NGX_INSITE_REDIS_LOST;
            continue;
        }

        g->left++;
    }

    if (g->left == 0) {
        ngx_insite_redis_cancel(g->group);
        ngx_insite_redis_group_done(g->group, NGX_INSITE_REDIS_LOST, NULL);
        ngx_free(g);
        return NULL;
    }

    return g->group;
}


ngx_int_t
ngx_insite_ws_redis_positions(ngx_insite_ws_channel_t **chs, ngx_uint_t n,
    ngx_insite_redis_reply_pt handler, void *data,
    ngx_insite_redis_cmd_t **cmd)
{
    u_char                          *keys, *p;
    size_t                          *lens;
    ngx_uint_t                       i;
    const char                     **args;
    ngx_http_insite_ws_main_conf_t  *wmcf;

    wmcf = ngx_insite_ws_main_conf();

    if (n > 1 && ngx_insite_redis_shared()
        && ngx_insite_redis_shared()->cluster)
    {
        *cmd = ngx_insite_ws_redis_positions_split(chs, n, handler, data);
        if (*cmd == NULL) {
            return NGX_ERROR;
        }

        goto sent;
    }

    args = ngx_alloc(n * (sizeof(char *) + sizeof(size_t)), ngx_cycle->log);
    keys = ngx_alloc(n * NGX_INSITE_WS_KEY_MAX, ngx_cycle->log);

    if (args == NULL || keys == NULL) {
        ngx_free(args);
        ngx_free(keys);
        return NGX_ERROR;
    }

    lens = (size_t *) (args + n);
    p = keys;

    /* read only (lua/position.lua): a subscribe writes nothing to Redis */
    for (i = 0; i < n; i++) {
        args[i] = (const char *) p;
        lens[i] = ngx_insite_ws_redis_key(p, INSITE_CHANNEL_KEY_STATE,
                                          &chs[i]->node.str);
        p += NGX_INSITE_WS_KEY_MAX;
    }

    *cmd = ngx_insite_redis_eval(ngx_insite_redis_shared(),
                                 wmcf->position_script, handler, data,
                                 (int) n, (int) n, args, lens);

    ngx_free(args);
    ngx_free(keys);

    if (*cmd == NULL) {
        return NGX_ERROR;
    }

sent:

    for (i = 0; i < n; i++) {
        chs[i]->busy++;
    }

    return NGX_OK;
}


ngx_int_t
ngx_insite_ws_redis_history(ngx_insite_ws_channel_t *ch,
    ngx_insite_ws_sub_t *sub, uint64_t after)
{
    u_char                   key[NGX_INSITE_WS_KEY_MAX];
    size_t                   len;
    ngx_insite_redis_cmd_t  *cmd;

    len = ngx_insite_ws_redis_key(key, INSITE_CHANNEL_KEY_HIST, &ch->node.str);

    cmd = ngx_insite_redis_command(ngx_insite_redis_shared(),
                                   sub ? ngx_insite_ws_redis_sub_history
                                       : ngx_insite_ws_redis_channel_history,
                                   sub ? (void *) sub : (void *) ch,
                                   "ZRANGEBYSCORE %b (%llu +inf WITHSCORES "
                                   "LIMIT 0 %d",
                                   key, len, (unsigned long long) after,
                                   NGX_INSITE_WS_HISTORY_BATCH);
    if (cmd == NULL) {
        return NGX_ERROR;
    }

    if (sub) {
        sub->cmd = cmd;

    } else {
        ch->busy++;
    }

    return NGX_OK;
}


static void
ngx_insite_ws_redis_sub_history(ngx_insite_redis_status_e status,
    redisReply *reply, void *data)
{
    ngx_insite_ws_sub_t *sub = data;

    sub->cmd = NULL;

    if (status != NGX_INSITE_REDIS_OK || reply->type != REDIS_REPLY_ARRAY) {
        /* stays CATCHUP: the periodic check asks again */
        ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                      "insite ws: channel \"%V\": reading history failed: "
                      "%s", &sub->ch->node.str,
                      status != NGX_INSITE_REDIS_OK
                      ? ngx_insite_redis_status_name(status)
                      : (reply->type == REDIS_REPLY_ERROR ? reply->str
                                                          : "bad reply"));
        return;
    }

    ngx_insite_ws_channel_history(sub->ch, sub, reply);
}


static void
ngx_insite_ws_redis_channel_history(ngx_insite_redis_status_e status,
    redisReply *reply, void *data)
{
    ngx_insite_ws_channel_t *ch = data;

    if (!ch->dead) {
        if (status == NGX_INSITE_REDIS_OK && reply->type == REDIS_REPLY_ARRAY) {
            ngx_insite_ws_channel_history(ch, NULL, reply);

        } else {
            ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                          "insite ws: channel \"%V\": repair read failed: %s",
                          &ch->node.str,
                          status != NGX_INSITE_REDIS_OK
                          ? ngx_insite_redis_status_name(status)
                          : "bad reply");
            ch->state = NGX_INSITE_WS_CH_LIVE;
        }
    }

    ngx_insite_ws_channel_unbusy(ch);
}


void
ngx_insite_ws_redis_check_soon(void)
{
    ngx_http_insite_ws_main_conf_t  *wmcf;

    wmcf = ngx_insite_ws_main_conf();

    if (wmcf->check.handler) {
        ngx_add_timer(&wmcf->check, 10);
    }
}


static void
ngx_insite_ws_redis_check_handler(ngx_event_t *ev)
{
    ngx_http_insite_ws_main_conf_t *wmcf = ev->data;

    if (ngx_exiting || ngx_quit || ngx_terminate) {
        return;
    }

    ngx_insite_ws_redis_heartbeat(wmcf);
    ngx_insite_ws_channels_check();

    ngx_add_timer(&wmcf->check, wmcf->check_interval);
}


static void
ngx_insite_ws_redis_heartbeat(ngx_http_insite_ws_main_conf_t *wmcf)
{
    u_char               buf[64];
    size_t               len;
    ngx_msec_t           silent;
    ngx_insite_redis_t  *cmd;

    cmd = ngx_insite_redis_shared();

    if (wmcf->pubsub->state != NGX_INSITE_REDIS_READY || cmd == NULL
        || cmd->state != NGX_INSITE_REDIS_READY)
    {
        wmcf->heartbeat_sent = 0;
        return;
    }

    silent = ngx_current_msec - wmcf->heartbeat_seen;

    if (wmcf->heartbeat_sent >= 3 && silent > 3 * wmcf->check_interval) {
        ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                      "insite ws: no heartbeat through Redis pub/sub for "
                      "%Mms, reconnecting the subscriber", silent);
        ngx_insite_redis_reset(wmcf->pubsub, "pub/sub heartbeat lost");
        return;
    }

    len = ngx_sprintf(buf, "%Vhb:%P", &wmcf->prefix, ngx_pid) - buf;

    /* SPUBLISH on a cluster: the subscriber uses sharded pub/sub */
    if (ngx_insite_redis_command(cmd, NULL, NULL, "%s %b 1",
                                 ngx_insite_redis_publish_command(cmd),
                                 buf, len))
    {
        wmcf->heartbeat_sent++;
    }
}
