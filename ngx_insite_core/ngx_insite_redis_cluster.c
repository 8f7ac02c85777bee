/*
 * Redis Cluster behind the adapter's API (insite_redis_cluster).
 *
 * A cluster handle (ngx_insite_redis_t with ->cluster) has no socket of its
 * own.  Each worker keeps one topology: the slot map (insite_cluster_slots.c)
 * and one command connection per master, each an ordinary
 * ngx_insite_redis_t (handshake, scripts, deadlines, reconnects as for a
 * single Redis).  Handles share it:
 *
 *  - a command handle routes each command by its key's slot; MOVED updates
 *    the route, asks for a map refresh and resends; ASK resends once with
 *    ASKING to the target; TRYAGAIN, CLUSTERDOWN and a shard connection that
 *    is not ready wait with backoff (10ms doubling to 100ms) and resend, all
 *    within command_timeout, after which the caller gets TIMEOUT.  A command
 *    whose connection drops or times out after it was written is reported
 *    (LOST, TIMEOUT), never resent: it may have run, and a publish must not
 *    run twice.
 *  - a subscriber handle keeps one connection per shard (the master, or a
 *    replica with read_from=replica) and SSUBSCRIBEs each channel on its
 *    owner.  Whenever a subscription may have been lost (a shard connection
 *    (re)connects, the slot map changes owners, a server sunsubscribes a
 *    channel or answers MOVED) the handle's ready hooks run, and the owner
 *    resubscribes everything and repairs gaps from history.  Every shard
 *    connection is PINGed each second and dropped after 3s of silence (a
 *    frozen node holds a TCP connection open and says nothing).
 *
 * The map is read with CLUSTER SHARDS (CLUSTER SLOTS before Redis 7) from a
 * ready node, in turn: every 5s, every 250ms while a slot's owner is not
 * connected, and at once (at most one read in flight) after a redirect, a
 * CLUSTERDOWN or a lost shard connection.
 */

#include "ngx_insite_redis_int.h"


#define NGX_INSITE_CLUSTER_REFRESH       5000
#define NGX_INSITE_CLUSTER_REFRESH_FAST  250
#define NGX_INSITE_CLUSTER_BACKOFF_MIN   10
#define NGX_INSITE_CLUSTER_BACKOFF_MAX   100
#define NGX_INSITE_CLUSTER_REDIRECTS     5
#define NGX_INSITE_CLUSTER_PING          1000


typedef struct {
    ngx_insite_redis_conf_t      conf;      /* the cluster's, this address */
    ngx_insite_redis_t          *cmd;       /* NULL until routed to */
    u_char                       name[NGX_SOCKADDR_STRLEN + 8];
} ngx_insite_redis_node_t;


typedef struct {
    ngx_insite_redis_conf_t     *conf;
    ngx_cycle_t                 *cycle;
    ngx_log_t                   *log;
    ngx_insite_redis_metrics_t  *metrics;

    insite_cluster_map_t        *map;       /* the last one read */
    int16_t                      route[INSITE_CLUSTER_SLOTS];  /* node */
    int16_t                      reader[INSITE_CLUSTER_SLOTS]; /* node */
    ngx_array_t                  nodes;     /* ngx_insite_redis_node_t * */

    ngx_array_t                  handles;   /* ngx_insite_redis_cluster_t * */
    ngx_uint_t                   refs;
    ngx_uint_t                   have_map;
    ngx_uint_t                   source;    /* next node to read the map from */
    ngx_insite_redis_cmd_t      *reading;   /* map read in flight */
    unsigned                     use_slots:1;
    ngx_event_t                  refresh;
} ngx_insite_redis_topology_t;


struct ngx_insite_redis_cluster_s {
    ngx_insite_redis_t          *rd;        /* the handle callers hold */
    ngx_insite_redis_topology_t *topo;
    ngx_uint_t                   started;

    /* subscriber: per node index, its connection (NULL: none) */
    ngx_array_t                  shards;    /* ngx_insite_redis_t * */
    ngx_uint_t                   hooks_ran;
    ngx_event_t                  ping;

    ngx_queue_t                  waiting;   /* requests in backoff */
    ngx_uint_t                   next;      /* keyless round robin */
};


/* a shard subscriber connection's own state */
typedef struct {
    ngx_insite_redis_cluster_t  *cl;
    ngx_msec_t                   pong;      /* last sign of life */
    ngx_uint_t                   unsubs;    /* our SUNSUBSCRIBEs unanswered */
} ngx_insite_redis_shard_t;


typedef struct {
    ngx_queue_t                  queue;     /* in cl->waiting while waiting */
    ngx_insite_redis_cmd_t      *cmd;       /* the caller's record */
    ngx_insite_redis_cluster_t  *cl;
    char                        *buf;       /* hiredis-formatted, malloc'ed */
    size_t                       len;
    ngx_int_t                    slot;      /* -1: keyless */
    ngx_int_t                    ask;       /* node after ASK, -1 */
    ngx_uint_t                   redirects;
    ngx_msec_t                   deadline;
    ngx_msec_t                   backoff;
    ngx_event_t                  retry;
} ngx_insite_redis_creq_t;


static ngx_insite_redis_topology_t  *ngx_insite_redis_topo;


static ngx_insite_redis_topology_t *ngx_insite_redis_topo_get(
    ngx_cycle_t *cycle, ngx_insite_redis_conf_t *rc,
    ngx_insite_redis_metrics_t *metrics);
static ngx_int_t ngx_insite_redis_topo_node(ngx_insite_redis_topology_t *t,
    const char *host, size_t hostlen, int port);
static ngx_insite_redis_t *ngx_insite_redis_topo_cmd(
    ngx_insite_redis_topology_t *t, ngx_int_t idx);
static void ngx_insite_redis_topo_node_ready(ngx_insite_redis_t *rd,
    ngx_uint_t reconnected, void *data);
static void ngx_insite_redis_topo_read(ngx_insite_redis_topology_t *t);
static void ngx_insite_redis_topo_soon(ngx_insite_redis_topology_t *t);
static void ngx_insite_redis_topo_refresh_handler(ngx_event_t *ev);
static void ngx_insite_redis_topo_map_reply(ngx_insite_redis_status_e status,
    redisReply *reply, void *data);
static void ngx_insite_redis_topo_apply(ngx_insite_redis_topology_t *t);
static ngx_uint_t ngx_insite_redis_topo_degraded(
    ngx_insite_redis_topology_t *t);

static void ngx_insite_redis_creq_send(ngx_insite_redis_creq_t *req);
static void ngx_insite_redis_creq_wait(ngx_insite_redis_creq_t *req);
static void ngx_insite_redis_creq_retry(ngx_event_t *ev);
static void ngx_insite_redis_creq_reply(ngx_insite_redis_status_e status,
    redisReply *reply, void *data);
static void ngx_insite_redis_creq_done(ngx_insite_redis_creq_t *req,
    ngx_insite_redis_status_e status, redisReply *reply);

static void ngx_insite_redis_shards_ensure(ngx_insite_redis_cluster_t *cl);
static ngx_insite_redis_t *ngx_insite_redis_shard_at(
    ngx_insite_redis_cluster_t *cl, ngx_int_t idx);
static void ngx_insite_redis_shard_ready(ngx_insite_redis_t *rd,
    ngx_uint_t reconnected, void *data);
static void ngx_insite_redis_shard_lost(ngx_insite_redis_cluster_t *cl);
static void ngx_insite_redis_shards_state(ngx_insite_redis_cluster_t *cl);
static void ngx_insite_redis_ping_handler(ngx_event_t *ev);


/* configuration */


char *
ngx_insite_redis_cluster_parse_conf(ngx_conf_t *cf,
    ngx_insite_redis_conf_t *rc)
{
    u_char                   *p;
    ngx_str_t                *value, s;
    ngx_uint_t                i;
    ngx_insite_redis_addr_t  *a;

    value = cf->args->elts;

    rc->db = 0;
    rc->connect_timeout = 1000;
    rc->command_timeout = 200;

    rc->seeds = ngx_array_create(cf->pool, 4, sizeof(ngx_insite_redis_addr_t));
    if (rc->seeds == NULL) {
        return NGX_CONF_ERROR;
    }

    for (i = 1; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "password=", 9) == 0) {
            rc->password.len = value[i].len - 9;
            rc->password.data = value[i].data + 9;
            continue;
        }

        if (ngx_strncmp(value[i].data, "connect_timeout=", 16) == 0) {
            s.data = value[i].data + 16;
            s.len = value[i].len - 16;
            if (ngx_insite_conf_msec(cf, "insite_redis_cluster", &value[i],
                                     &s, 1, 60000, &rc->connect_timeout)
                != NGX_CONF_OK)
            {
                return NGX_CONF_ERROR;
            }
            continue;
        }

        if (ngx_strncmp(value[i].data, "command_timeout=", 16) == 0) {
            s.data = value[i].data + 16;
            s.len = value[i].len - 16;
            if (ngx_insite_conf_msec(cf, "insite_redis_cluster", &value[i],
                                     &s, 1, 60000, &rc->command_timeout)
                != NGX_CONF_OK)
            {
                return NGX_CONF_ERROR;
            }
            continue;
        }

        if (ngx_strncmp(value[i].data, "read_from=", 10) == 0) {
            if (value[i].len == 16
                && ngx_strncmp(value[i].data + 10, "master", 6) == 0)
            {
                rc->read_replica = 0;

            } else if (value[i].len == 17
                       && ngx_strncmp(value[i].data + 10, "replica", 7) == 0)
            {
                rc->read_replica = 1;

            } else {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "insite_redis_cluster: \"%V\": read_from "
                                   "is master or replica", &value[i]);
                return NGX_CONF_ERROR;
            }
            continue;
        }

        if (ngx_strlchr(value[i].data, value[i].data + value[i].len, '=')
            || ngx_strncmp(value[i].data, "unix:", 5) == 0)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "insite_redis_cluster: invalid parameter "
                               "\"%V\" (nodes are host:port)", &value[i]);
            return NGX_CONF_ERROR;
        }

        a = ngx_array_push(rc->seeds);
        if (a == NULL) {
            return NGX_CONF_ERROR;
        }

        if (ngx_insite_redis_parse_addr(cf, "insite_redis_cluster", &value[i],
                                        0, a)
            != NGX_CONF_OK)
        {
            return NGX_CONF_ERROR;
        }
    }

    if (rc->seeds->nelts == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "insite_redis_cluster: no node address given");
        return NGX_CONF_ERROR;
    }

    a = rc->seeds->elts;

    /* for logs: the first seed (never the password) */
    rc->name = a[0].name;
    rc->host = a[0].host;
    rc->port = a[0].port;

    p = ngx_strlchr(rc->name.data, rc->name.data + rc->name.len, ' ');
    if (p) {
        rc->name.len = p - rc->name.data;
    }

    return NGX_CONF_OK;
}


/* handles */


ngx_insite_redis_t *
ngx_insite_redis_cluster_create(ngx_cycle_t *cycle,
    ngx_insite_redis_conf_t *rc, const char *role,
    ngx_insite_redis_metrics_t *metrics)
{
    ngx_insite_redis_t           *rd;
    ngx_insite_redis_cluster_t   *cl, **clp;
    ngx_insite_redis_topology_t  *t;

    t = ngx_insite_redis_topo_get(cycle, rc, metrics);
    if (t == NULL) {
        return NULL;
    }

    rd = ngx_insite_redis_alloc(cycle, rc, role, metrics);
    cl = ngx_pcalloc(cycle->pool, sizeof(ngx_insite_redis_cluster_t));
    if (rd == NULL || cl == NULL) {
        return NULL;
    }

    if (ngx_array_init(&cl->shards, cycle->pool, 8,
                       sizeof(ngx_insite_redis_t *))
        != NGX_OK)
    {
        return NULL;
    }

    rd->cluster = cl;

    cl->rd = rd;
    cl->topo = t;
    ngx_queue_init(&cl->waiting);

    cl->ping.handler = ngx_insite_redis_ping_handler;
    cl->ping.data = cl;
    cl->ping.log = cycle->log;
    cl->ping.cancelable = 1;

    clp = ngx_array_push(&t->handles);
    if (clp == NULL) {
        return NULL;
    }
    *clp = cl;
    t->refs++;

    return rd;
}


void
ngx_insite_redis_cluster_start(ngx_insite_redis_t *rd)
{
    ngx_uint_t                    i;
    ngx_insite_redis_addr_t      *a;
    ngx_insite_redis_cluster_t   *cl = rd->cluster;
    ngx_insite_redis_topology_t  *t = cl->topo;

    cl->started = 1;
    rd->state = NGX_INSITE_REDIS_CONNECTING;

    if (rd->on_message) {
        ngx_add_timer(&cl->ping, NGX_INSITE_CLUSTER_PING);
    }

    if (t->have_map) {
        ngx_insite_redis_topo_apply(t);
        return;
    }

    /* the first handle started connects to the seeds */
    a = t->conf->seeds->elts;

    for (i = 0; i < t->conf->seeds->nelts; i++) {
        (void) ngx_insite_redis_topo_cmd(t,
                   ngx_insite_redis_topo_node(t, (char *) a[i].host.data,
                                              a[i].host.len, a[i].port));
    }
}


void
ngx_insite_redis_cluster_destroy(ngx_insite_redis_t *rd)
{
    ngx_uint_t                    i;
    ngx_queue_t                  *q;
    ngx_insite_redis_t          **shard;
    ngx_insite_redis_node_t     **node;
    ngx_insite_redis_creq_t      *req;
    ngx_insite_redis_cluster_t   *cl = rd->cluster;
    ngx_insite_redis_topology_t  *t = cl->topo;

    rd->exiting = 1;
    rd->state = NGX_INSITE_REDIS_DOWN;

    if (cl->ping.timer_set) {
        ngx_del_timer(&cl->ping);
    }

    while (!ngx_queue_empty(&cl->waiting)) {
        q = ngx_queue_head(&cl->waiting);
        req = ngx_queue_data(q, ngx_insite_redis_creq_t, queue);
        ngx_insite_redis_creq_done(req, NGX_INSITE_REDIS_LOST, NULL);
    }

    shard = cl->shards.elts;
    for (i = 0; i < cl->shards.nelts; i++) {
        if (shard[i]) {
            ngx_insite_redis_destroy(shard[i]);
        }
    }

    if (--t->refs > 0) {
        return;
    }

    if (t->refresh.timer_set) {
        ngx_del_timer(&t->refresh);
    }

    node = t->nodes.elts;
    for (i = 0; i < t->nodes.nelts; i++) {
        if (node[i]->cmd) {
            ngx_insite_redis_destroy(node[i]->cmd);
        }
    }

    ngx_free(t->map);
    ngx_insite_redis_topo = NULL;
}


/* topology */


static ngx_insite_redis_topology_t *
ngx_insite_redis_topo_get(ngx_cycle_t *cycle, ngx_insite_redis_conf_t *rc,
    ngx_insite_redis_metrics_t *metrics)
{
    ngx_insite_redis_topology_t  *t;

    if (ngx_insite_redis_topo) {
        return ngx_insite_redis_topo;
    }

    t = ngx_pcalloc(cycle->pool, sizeof(ngx_insite_redis_topology_t));
    if (t == NULL) {
        return NULL;
    }

    t->map = ngx_alloc(sizeof(insite_cluster_map_t), cycle->log);
    if (t->map == NULL) {
        return NULL;
    }

    if (ngx_array_init(&t->nodes, cycle->pool, 8,
                       sizeof(ngx_insite_redis_node_t *))
        != NGX_OK
        || ngx_array_init(&t->handles, cycle->pool, 4,
                          sizeof(ngx_insite_redis_cluster_t *))
           != NGX_OK)
    {
        return NULL;
    }

    t->conf = rc;
    t->cycle = cycle;
    t->log = cycle->log;
    t->metrics = metrics;

    ngx_memset(t->route, 0xff, sizeof(t->route));
    ngx_memset(t->reader, 0xff, sizeof(t->reader));

    t->refresh.handler = ngx_insite_redis_topo_refresh_handler;
    t->refresh.data = t;
    t->refresh.log = cycle->log;
    t->refresh.cancelable = 1;

    ngx_insite_redis_topo = t;

    return t;
}


/* the index of the node at host:port, added when new; -1 on no memory */
static ngx_int_t
ngx_insite_redis_topo_node(ngx_insite_redis_topology_t *t, const char *host,
    size_t hostlen, int port)
{
    u_char                    *p;
    ngx_uint_t                 i;
    ngx_insite_redis_node_t  **np, *n;

    np = t->nodes.elts;

    for (i = 0; i < t->nodes.nelts; i++) {
        if (np[i]->conf.port == port && np[i]->conf.host.len == hostlen
            && ngx_strncmp(np[i]->conf.host.data, host, hostlen) == 0)
        {
            return (ngx_int_t) i;
        }
    }

    if (t->nodes.nelts >= INSITE_CLUSTER_NODES_MAX) {
        return -1;
    }

    n = ngx_pcalloc(t->cycle->pool, sizeof(ngx_insite_redis_node_t));
    p = ngx_pnalloc(t->cycle->pool, hostlen + 1);
    np = ngx_array_push(&t->nodes);
    if (n == NULL || p == NULL || np == NULL) {
        return -1;
    }

    n->conf = *t->conf;
    n->conf.seeds = NULL;
    ngx_memcpy(p, host, hostlen);
    p[hostlen] = '\0';
    n->conf.host.data = p;
    n->conf.host.len = hostlen;
    n->conf.port = (in_port_t) port;

    /* an IPv6 address in brackets, as nginx writes host:port */
    n->conf.name.data = n->name;
    n->conf.name.len = ngx_snprintf(n->name, sizeof(n->name),
                                    ngx_strlchr(p, p + hostlen, ':')
                                    ? "[%s]:%d" : "%s:%d", p, port)
                       - n->name;

    *np = n;

    return (ngx_int_t) (t->nodes.nelts - 1);
}


/* the node's command connection, made and started when first needed */
static ngx_insite_redis_t *
ngx_insite_redis_topo_cmd(ngx_insite_redis_topology_t *t, ngx_int_t idx)
{
    ngx_insite_redis_node_t  **np, *n;

    if (idx < 0 || (ngx_uint_t) idx >= t->nodes.nelts) {
        return NULL;
    }

    np = t->nodes.elts;
    n = np[idx];

    if (n->cmd) {
        return n->cmd;
    }

    n->cmd = ngx_insite_redis_create(t->cycle, &n->conf, "commands",
                                     t->metrics);
    if (n->cmd == NULL) {
        return NULL;
    }

    if (ngx_insite_redis_on_ready(n->cmd, ngx_insite_redis_topo_node_ready,
                                  t)
        != NGX_OK)
    {
        return NULL;
    }

    ngx_insite_redis_start(n->cmd);

    return n->cmd;
}


static void
ngx_insite_redis_topo_node_ready(ngx_insite_redis_t *rd,
    ngx_uint_t reconnected, void *data)
{
    ngx_insite_redis_topology_t *t = data;

    /* the first node up reads the map; a node back may be a new master */
    ngx_insite_redis_topo_soon(t);
}


static void
ngx_insite_redis_topo_soon(ngx_insite_redis_topology_t *t)
{
    if (t->reading) {
        return;
    }

    if (t->refresh.timer_set) {
        ngx_del_timer(&t->refresh);
    }

    ngx_add_timer(&t->refresh, 1);
}


static void
ngx_insite_redis_topo_refresh_handler(ngx_event_t *ev)
{
    ngx_insite_redis_topology_t *t = ev->data;

    if (ngx_exiting || ngx_quit || ngx_terminate) {
        return;
    }

    ngx_insite_redis_topo_read(t);

    if (!t->refresh.timer_set) {
        ngx_add_timer(&t->refresh, ngx_insite_redis_topo_degraded(t)
                                   ? NGX_INSITE_CLUSTER_REFRESH_FAST
                                   : NGX_INSITE_CLUSTER_REFRESH);
    }
}


/* asks a ready node (each in turn) for the map */
static void
ngx_insite_redis_topo_read(ngx_insite_redis_topology_t *t)
{
    ngx_uint_t                i, n, k;
    ngx_insite_redis_node_t **np;

    if (t->reading) {
        return;
    }

    np = t->nodes.elts;
    n = t->nodes.nelts;

    for (i = 0; i < n; i++) {
        k = (t->source + i) % n;

        if (np[k]->cmd == NULL
            || np[k]->cmd->state != NGX_INSITE_REDIS_READY)
        {
            continue;
        }

        t->source = k + 1;

        t->reading = ngx_insite_redis_command(np[k]->cmd,
                         ngx_insite_redis_topo_map_reply, t,
                         t->use_slots ? "CLUSTER SLOTS" : "CLUSTER SHARDS");
        if (t->reading) {
            return;
        }
    }
}


static void
ngx_insite_redis_topo_map_reply(ngx_insite_redis_status_e status,
    redisReply *reply, void *data)
{
    ngx_insite_redis_topology_t *t = data;

    int   rc;
    char  err[128];

    t->reading = NULL;

    if (status != NGX_INSITE_REDIS_OK) {
        ngx_add_timer(&t->refresh, NGX_INSITE_CLUSTER_REFRESH_FAST);
        return;
    }

    if (reply->type == REDIS_REPLY_ERROR && !t->use_slots
        && ngx_strlcasestrn((u_char *) reply->str,
                            (u_char *) reply->str + reply->len,
                            (u_char *) "unknown", 7 - 1) != NULL)
    {
        /* before Redis 7 */
        t->use_slots = 1;
        ngx_insite_redis_topo_soon(t);
        return;
    }

    rc = t->use_slots
         ? insite_cluster_map_from_slots(t->map, reply, err, sizeof(err))
         : insite_cluster_map_from_shards(t->map, reply, err, sizeof(err));

    if (reply->type == REDIS_REPLY_ERROR) {
        ngx_snprintf((u_char *) err, sizeof(err) - 1, "%*s%Z",
                     (size_t) ngx_min(reply->len, 100), reply->str);
        rc = -1;
    }

    if (rc != 0 || t->map->nmasters == 0) {
        ngx_log_error(NGX_LOG_ERR, t->log, 0,
                      "insite redis cluster: cannot read the slot map: %s",
                      rc != 0 ? err : "no master owns a slot");
        ngx_add_timer(&t->refresh, NGX_INSITE_CLUSTER_REFRESH_FAST);
        return;
    }

    ngx_insite_redis_topo_apply(t);

    ngx_add_timer(&t->refresh, ngx_insite_redis_topo_degraded(t)
                               ? NGX_INSITE_CLUSTER_REFRESH_FAST
                               : NGX_INSITE_CLUSTER_REFRESH);
}


/* routes from the map; tells the handles what changed */
static void
ngx_insite_redis_topo_apply(ngx_insite_redis_topology_t *t)
{
    int                          reader;
    int16_t                      idx[INSITE_CLUSTER_NODES_MAX];
    unsigned                     s;
    ngx_uint_t                   i, changed, first;
    insite_cluster_node_t       *mn;
    ngx_insite_redis_cluster_t **clp, *cl;

    changed = 0;
    first = !t->have_map;

    for (i = 0; i < t->map->nnodes; i++) {
        mn = &t->map->nodes[i];
        idx[i] = mn->host[0]
                 ? (int16_t) ngx_insite_redis_topo_node(t, mn->host,
                                                        ngx_strlen(mn->host),
                                                        mn->port)
                 : -1;
    }

    for (s = 0; s < INSITE_CLUSTER_SLOTS; s++) {
        int16_t  owner, rd;

        owner = t->map->owner[s] >= 0 ? idx[t->map->owner[s]] : -1;
        reader = insite_cluster_map_reader(t->map, s, (unsigned) ngx_pid);
        rd = reader >= 0 ? idx[reader] : -1;

        if (owner != t->route[s] || rd != t->reader[s]) {
            changed = 1;
        }

        t->route[s] = owner;
        t->reader[s] = t->conf->read_replica ? rd : owner;
    }

    /* every master gets its command connection */
    for (i = 0; i < t->map->nnodes; i++) {
        if (t->map->nodes[i].master < 0 && idx[i] >= 0) {
            (void) ngx_insite_redis_topo_cmd(t, idx[i]);
        }
    }

    if (changed && !first) {
        ngx_log_error(NGX_LOG_NOTICE, t->log, 0,
                      "insite redis cluster: slot map changed (%ui masters)",
                      (ngx_uint_t) t->map->nmasters);
    }

    t->have_map = 1;

    clp = t->handles.elts;

    for (i = 0; i < t->handles.nelts; i++) {
        cl = clp[i];

        if (!cl->started || cl->rd->exiting) {
            continue;
        }

        if (cl->rd->on_message == NULL) {
            if (cl->rd->state != NGX_INSITE_REDIS_READY) {
                cl->rd->state = NGX_INSITE_REDIS_READY;
                ngx_log_error(NGX_LOG_INFO, t->log, 0,
                              "insite redis cluster (%s): slot map read, "
                              "%ui masters", cl->rd->role,
                              (ngx_uint_t) t->map->nmasters);
                ngx_insite_redis_run_hooks(cl->rd, 0);
            }
            continue;
        }

        ngx_insite_redis_shards_ensure(cl);
        ngx_insite_redis_shards_state(cl);

        if (changed && !first && cl->rd->state == NGX_INSITE_REDIS_READY) {
            /* a channel may now live elsewhere: resubscribe and repair */
            ngx_insite_redis_run_hooks(cl->rd, 1);
        }
    }
}


/* a slot's owner (or reader) not connected: read the map more often */
static ngx_uint_t
ngx_insite_redis_topo_degraded(ngx_insite_redis_topology_t *t)
{
    unsigned                   s;
    ngx_int_t                  last;
    ngx_insite_redis_node_t  **np;

    if (!t->have_map) {
        return 1;
    }

    np = t->nodes.elts;
    last = -2;

    for (s = 0; s < INSITE_CLUSTER_SLOTS; s++) {
        if (t->route[s] == last) {
            continue;
        }

        last = t->route[s];

        if (last < 0 || np[last]->cmd == NULL
            || np[last]->cmd->state != NGX_INSITE_REDIS_READY)
        {
            return 1;
        }
    }

    return 0;
}


/* commands */


ngx_insite_redis_cmd_t *
ngx_insite_redis_cluster_command(ngx_insite_redis_t *rd,
    ngx_insite_redis_reply_pt handler, void *data, char *buf, size_t len)
{
    int                          rc;
    size_t                       klen;
    const char                  *key;
    ngx_insite_redis_creq_t     *req;
    ngx_insite_redis_cluster_t  *cl = rd->cluster;

    if (rd->state != NGX_INSITE_REDIS_READY) {
        free(buf);
        if (rd->metrics) {
            ngx_insite_metric_inc(rd->metrics->refused);
        }
        return NULL;
    }

    rc = insite_cluster_command_key(buf, len, &key, &klen);
    if (rc < 0) {
        free(buf);
        return NULL;
    }

    req = ngx_calloc(sizeof(ngx_insite_redis_creq_t), rd->log);
    if (req == NULL) {
        free(buf);
        return NULL;
    }

    req->cmd = ngx_insite_redis_cmd_get(rd, handler, data,
                                        rd->conf->command_timeout);
    if (req->cmd == NULL) {
        ngx_free(req);
        free(buf);
        return NULL;
    }

    req->cl = cl;
    req->buf = buf;
    req->len = len;
    req->slot = rc == 1 ? (ngx_int_t) insite_cluster_key_slot(key, klen) : -1;
    req->ask = -1;
    req->deadline = req->cmd->deadline;
    req->backoff = NGX_INSITE_CLUSTER_BACKOFF_MIN;

    req->retry.handler = ngx_insite_redis_creq_retry;
    req->retry.data = req;
    req->retry.log = rd->log;
    req->retry.cancelable = 1;

    ngx_queue_init(&req->queue);

    if (rd->metrics) {
        ngx_insite_metric_inc(rd->metrics->commands);
    }

    ngx_insite_redis_creq_send(req);

    /* a record the caller may cancel; it outlives an immediate answer only
     * if the handler has not run, which send never does synchronously */
    return req->cmd;
}


/* a ready master for a command without a key, in turn */
static ngx_int_t
ngx_insite_redis_any_master(ngx_insite_redis_cluster_t *cl)
{
    unsigned                      s;
    ngx_uint_t                    i;
    ngx_insite_redis_node_t     **np;
    ngx_insite_redis_topology_t  *t = cl->topo;

    np = t->nodes.elts;

    for (i = 0; i < 16; i++) {
        s = (unsigned) ((cl->next++ * 4099) % INSITE_CLUSTER_SLOTS);

        if (t->route[s] >= 0 && np[t->route[s]]->cmd
            && np[t->route[s]]->cmd->state == NGX_INSITE_REDIS_READY)
        {
            return t->route[s];
        }
    }

    return t->route[0];
}


static void
ngx_insite_redis_creq_send(ngx_insite_redis_creq_t *req)
{
    ngx_int_t                     idx;
    ngx_insite_redis_t           *node;
    ngx_insite_redis_topology_t  *t = req->cl->topo;
    static const char             asking[] = "*1\r\n$6\r\nASKING\r\n";

    if (req->cmd->handler == NULL) {
        /* cancelled while waiting: nothing to send it for */
        ngx_insite_redis_creq_done(req, NGX_INSITE_REDIS_LOST, NULL);
        return;
    }

    if (req->ask >= 0) {
        idx = req->ask;

    } else if (req->slot >= 0) {
        idx = t->route[req->slot];

    } else {
        idx = ngx_insite_redis_any_master(req->cl);
    }

    node = ngx_insite_redis_topo_cmd(t, idx);

    if (node == NULL || node->state != NGX_INSITE_REDIS_READY) {
        ngx_insite_redis_topo_soon(t);
        ngx_insite_redis_creq_wait(req);
        return;
    }

    if (req->ask >= 0) {
        req->ask = -1;
        if (ngx_insite_redis_command_formatted(node, NULL, NULL, asking,
                                               sizeof(asking) - 1,
                                               req->deadline)
            == NULL)
        {
            ngx_insite_redis_creq_wait(req);
            return;
        }
    }

    if (ngx_insite_redis_command_formatted(node,
                                           ngx_insite_redis_creq_reply, req,
                                           req->buf, req->len, req->deadline)
        == NULL)
    {
        ngx_insite_redis_creq_wait(req);
    }
}


/* backoff, bounded by the command's deadline */
static void
ngx_insite_redis_creq_wait(ngx_insite_redis_creq_t *req)
{
    ngx_msec_int_t  left;

    left = (ngx_msec_int_t) (req->deadline - ngx_current_msec);

    if (left <= 0) {
        if (req->cl->rd->metrics) {
            ngx_insite_metric_inc(req->cl->rd->metrics->timeouts);
        }
        ngx_insite_redis_creq_done(req, NGX_INSITE_REDIS_TIMEOUT, NULL);
        return;
    }

    ngx_queue_insert_tail(&req->cl->waiting, &req->queue);
    ngx_add_timer(&req->retry, ngx_min((ngx_msec_t) left, req->backoff));

    req->backoff = ngx_min(req->backoff * 2, NGX_INSITE_CLUSTER_BACKOFF_MAX);
}


static void
ngx_insite_redis_creq_retry(ngx_event_t *ev)
{
    ngx_insite_redis_creq_t *req = ev->data;

    ngx_queue_remove(&req->queue);
    ngx_queue_init(&req->queue);

    ngx_insite_redis_creq_send(req);
}


static void
ngx_insite_redis_creq_reply(ngx_insite_redis_status_e status,
    redisReply *reply, void *data)
{
    ngx_insite_redis_creq_t *req = data;

    ngx_int_t                     idx;
    insite_cluster_err_e          kind;
    ngx_insite_redis_topology_t  *t = req->cl->topo;
    insite_cluster_redirect_t     to;

    if (status != NGX_INSITE_REDIS_OK || reply->type != REDIS_REPLY_ERROR
        || req->cmd->handler == NULL)
    {
        if (status != NGX_INSITE_REDIS_OK) {
            /* the shard's connection went away: the map may have changed */
            ngx_insite_redis_topo_soon(t);
        }

        ngx_insite_redis_creq_done(req, status, reply);
        return;
    }

    kind = insite_cluster_error(reply->str, reply->len, &to);

    switch (kind) {

    case INSITE_CLUSTER_ERR_MOVED:
    case INSITE_CLUSTER_ERR_ASK:

        if (++req->redirects > NGX_INSITE_CLUSTER_REDIRECTS) {
            ngx_log_error(NGX_LOG_ERR, t->log, 0,
                          "insite redis cluster: %ui redirects for slot %i, "
                          "giving up: %*s", req->redirects - 1, req->slot,
                          (size_t) reply->len, reply->str);
            break;
        }

        idx = ngx_insite_redis_topo_node(t, to.host, ngx_strlen(to.host),
                                         to.port);
        if (idx < 0) {
            break;
        }

        if (kind == INSITE_CLUSTER_ERR_MOVED) {
            t->route[to.slot] = (int16_t) idx;
            ngx_insite_redis_topo_soon(t);

        } else {
            req->ask = idx;
        }

        ngx_insite_redis_creq_send(req);
        return;

    case INSITE_CLUSTER_ERR_CLUSTERDOWN:
        ngx_insite_redis_topo_soon(t);
        /* fall through */

    case INSITE_CLUSTER_ERR_TRYAGAIN:
        ngx_insite_redis_creq_wait(req);
        return;

    default:
        break;
    }

    ngx_insite_redis_creq_done(req, status, reply);
}


static void
ngx_insite_redis_creq_done(ngx_insite_redis_creq_t *req,
    ngx_insite_redis_status_e status, redisReply *reply)
{
    void                       *data;
    ngx_insite_redis_reply_pt   handler;

    if (req->retry.timer_set) {
        ngx_del_timer(&req->retry);
    }

    if (!ngx_queue_empty(&req->queue)) {
        ngx_queue_remove(&req->queue);
    }

    handler = req->cmd->handler;
    data = req->cmd->data;

    ngx_insite_redis_cmd_put(req->cmd);
    free(req->buf);
    ngx_free(req);

    if (handler) {
        handler(status, reply, data);
    }
}


/* sharded pub/sub */


static ngx_insite_redis_t *
ngx_insite_redis_shard_at(ngx_insite_redis_cluster_t *cl, ngx_int_t idx)
{
    ngx_insite_redis_t  **shard;

    if (idx < 0 || (ngx_uint_t) idx >= cl->shards.nelts) {
        return NULL;
    }

    shard = cl->shards.elts;
    return shard[idx];
}


/* a subscriber connection to every node that serves a slot */
static void
ngx_insite_redis_shards_ensure(ngx_insite_redis_cluster_t *cl)
{
    unsigned                      s;
    ngx_int_t                     idx, last;
    ngx_insite_redis_t          **shard, *rd;
    ngx_insite_redis_node_t     **np;
    ngx_insite_redis_shard_t     *st;
    ngx_insite_redis_topology_t  *t = cl->topo;

    np = t->nodes.elts;
    last = -2;

    for (s = 0; s < INSITE_CLUSTER_SLOTS; s++) {
        idx = t->reader[s];

        if (idx == last || idx < 0) {
            continue;
        }

        last = idx;

        while (cl->shards.nelts <= (ngx_uint_t) idx) {
            shard = ngx_array_push(&cl->shards);
            if (shard == NULL) {
                return;
            }
            *shard = NULL;
        }

        shard = cl->shards.elts;

        if (shard[idx]) {
            continue;
        }

        rd = ngx_insite_redis_create(t->cycle, &np[idx]->conf, "pubsub",
                                     t->metrics);
        st = ngx_pcalloc(t->cycle->pool, sizeof(ngx_insite_redis_shard_t));
        if (rd == NULL || st == NULL) {
            return;
        }

        st->cl = cl;
        rd->shard_of = cl;

        /* a subscriber: no scripts in its handshake; replies come through
         * ngx_insite_redis_cluster_shard_reply() */
        ngx_insite_redis_on_message(rd, cl->rd->on_message, st);

        if (ngx_insite_redis_on_ready(rd, ngx_insite_redis_shard_ready, st)
            != NGX_OK)
        {
            return;
        }

        shard[idx] = rd;
        ngx_insite_redis_start(rd);
    }
}


/* the handle is ready when every slot's shard connection is */
static void
ngx_insite_redis_shards_state(ngx_insite_redis_cluster_t *cl)
{
    unsigned                      s;
    ngx_int_t                     last;
    ngx_insite_redis_t           *shard;
    ngx_insite_redis_topology_t  *t = cl->topo;

    last = -2;

    for (s = 0; s < INSITE_CLUSTER_SLOTS; s++) {
        if (t->reader[s] == last) {
            continue;
        }

        last = t->reader[s];
        shard = ngx_insite_redis_shard_at(cl, last);

        if (shard == NULL || shard->state != NGX_INSITE_REDIS_READY) {
            cl->rd->state = NGX_INSITE_REDIS_CONNECTING;
            return;
        }
    }

    cl->rd->state = NGX_INSITE_REDIS_READY;
}


static void
ngx_insite_redis_shard_ready(ngx_insite_redis_t *rd, ngx_uint_t reconnected,
    void *data)
{
    ngx_insite_redis_shard_t *st = data;

    ngx_uint_t                   was_ready;
    ngx_insite_redis_cluster_t  *cl = st->cl;

    st->pong = ngx_current_msec;
    st->unsubs = 0;

    /*
     * Subscriptions go to the shards that are ready, so the hooks run as
     * each one comes (a shard down must not hold the others' channels).
     */
    was_ready = cl->hooks_ran;
    ngx_insite_redis_shards_state(cl);

    if (cl->rd->state != NGX_INSITE_REDIS_READY) {
        /* hooks need a ready handle: resubscribe what can be, now */
        cl->rd->state = NGX_INSITE_REDIS_READY;
        cl->hooks_ran = 1;
        ngx_insite_redis_run_hooks(cl->rd, was_ready);
        ngx_insite_redis_shards_state(cl);
        return;
    }

    cl->hooks_ran = 1;
    ngx_insite_redis_run_hooks(cl->rd, was_ready);
}


/* something a subscription depended on changed: read the map, then the
 * hooks run if owners moved; run them now too, for a channel dropped by a
 * server that still owns the slot */
static void
ngx_insite_redis_shard_lost(ngx_insite_redis_cluster_t *cl)
{
    ngx_insite_redis_topo_soon(cl->topo);

    if (cl->rd->state == NGX_INSITE_REDIS_READY) {
        ngx_insite_redis_run_hooks(cl->rd, 1);
    }
}


ngx_int_t
ngx_insite_redis_cluster_subscribe(ngx_insite_redis_t *rd,
    ngx_str_t *channel, ngx_uint_t subscribe)
{
    int                          len;
    char                        *buf;
    unsigned                     slot;
    ngx_int_t                    rc;
    ngx_insite_redis_t          *shard;
    ngx_insite_redis_shard_t    *st;
    ngx_insite_redis_cluster_t  *cl = rd->cluster;

    if (!cl->topo->have_map) {
        return NGX_DECLINED;
    }

    slot = insite_cluster_key_slot((char *) channel->data, channel->len);
    shard = ngx_insite_redis_shard_at(cl, cl->topo->reader[slot]);

    if (shard == NULL || shard->state != NGX_INSITE_REDIS_READY) {
        return NGX_DECLINED;
    }

    len = redisFormatCommand(&buf, subscribe ? "SSUBSCRIBE %b"
                                             : "SUNSUBSCRIBE %b",
                             channel->data, channel->len);
    if (len <= 0) {
        return NGX_ERROR;
    }

    rc = ngx_insite_redis_send_raw(shard, buf, (size_t) len);
    free(buf);

    if (rc == NGX_OK && !subscribe) {
        st = shard->on_message_data;
        st->unsubs++;
    }

    return rc;
}


void
ngx_insite_redis_cluster_shard_reply(ngx_insite_redis_t *shard,
    redisReply *reply)
{
    ngx_uint_t                   event;
    redisReply                  *kind;
    ngx_insite_redis_shard_t    *st = shard->on_message_data;
    ngx_insite_redis_cluster_t  *cl = st->cl;

    st->pong = ngx_current_msec;

    if (reply->type == REDIS_REPLY_ERROR) {
        /* SSUBSCRIBE to a node that lost the slot: MOVED */
        ngx_log_error(NGX_LOG_INFO, cl->rd->log, 0,
                      "insite redis %V (pubsub): %*s", &shard->conf->name,
                      (size_t) reply->len, reply->str);
        ngx_insite_redis_shard_lost(cl);
        return;
    }

    if (reply->type != REDIS_REPLY_ARRAY || reply->elements < 2
        || reply->element[0]->type != REDIS_REPLY_STRING)
    {
        return;                                     /* +PONG */
    }

    kind = reply->element[0];

    if (kind->len == 4 && ngx_strncasecmp((u_char *) kind->str,
                                          (u_char *) "pong", 4) == 0)
    {
        return;
    }

    if (reply->elements < 3 || reply->element[1]->type != REDIS_REPLY_STRING) {
        return;
    }

    if (kind->len == 8 && ngx_strncmp(kind->str, "smessage", 8) == 0) {
        event = NGX_INSITE_REDIS_MESSAGE;

    } else if (kind->len == 10 && ngx_strncmp(kind->str, "ssubscribe", 10) == 0)
    {
        event = NGX_INSITE_REDIS_SUBSCRIBED;

    } else if (kind->len == 12
               && ngx_strncmp(kind->str, "sunsubscribe", 12) == 0)
    {
        event = NGX_INSITE_REDIS_UNSUBSCRIBED;

        if (st->unsubs > 0) {
            st->unsubs--;

        } else {
            /* the server dropped it: its slot moved */
            ngx_log_error(NGX_LOG_INFO, cl->rd->log, 0,
                          "insite redis %V (pubsub): channel \"%*s\" "
                          "unsubscribed by the server",
                          &shard->conf->name,
                          (size_t) reply->element[1]->len,
                          reply->element[1]->str);
            ngx_insite_redis_shard_lost(cl);
        }

    } else {
        return;
    }

    ngx_insite_redis_deliver(cl->rd, event, reply);
}


/* liveness of every shard connection, and the map after a drop */
static void
ngx_insite_redis_ping_handler(ngx_event_t *ev)
{
    ngx_insite_redis_cluster_t *cl = ev->data;

    ngx_uint_t                 i, down;
    ngx_insite_redis_t       **shard;
    ngx_insite_redis_shard_t  *st;
    static const char          ping[] = "*1\r\n$4\r\nPING\r\n";

    if (ngx_exiting || ngx_quit || ngx_terminate || cl->rd->exiting) {
        return;
    }

    shard = cl->shards.elts;
    down = 0;

    for (i = 0; i < cl->shards.nelts; i++) {
        if (shard[i] == NULL) {
            continue;
        }

        if (shard[i]->state != NGX_INSITE_REDIS_READY) {
            down = 1;
            continue;
        }

        st = shard[i]->on_message_data;

        if (ngx_current_msec - st->pong > 3 * NGX_INSITE_CLUSTER_PING) {
            ngx_insite_redis_reset(shard[i], "no PONG for 3s");
            down = 1;
            continue;
        }

        (void) ngx_insite_redis_send_raw(shard[i], ping, sizeof(ping) - 1);
    }

    if (down) {
        ngx_insite_redis_topo_soon(cl->topo);
    }

    ngx_insite_redis_shards_state(cl);

    ngx_add_timer(&cl->ping, NGX_INSITE_CLUSTER_PING);
}


void
ngx_insite_redis_cluster_reset(ngx_insite_redis_t *rd, const char *reason)
{
    ngx_uint_t                   i;
    ngx_insite_redis_t         **shard;
    ngx_insite_redis_cluster_t  *cl = rd->cluster;

    shard = cl->shards.elts;

    for (i = 0; i < cl->shards.nelts; i++) {
        if (shard[i]) {
            ngx_insite_redis_reset(shard[i], reason);
        }
    }
}
