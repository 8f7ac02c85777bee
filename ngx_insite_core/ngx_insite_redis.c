/*
 * hiredis async API on nginx's event loop.
 *
 * The Redis socket is wrapped in an nginx connection taken from the worker's
 * free list, and registered level-triggered: hiredis reads at most one buffer
 * per call, so with edge-triggered epoll the rest of a large reply would wait
 * for the next packet.
 *
 * Deadlines: one timer per connection.  A command past its deadline fails
 * to its caller with TIMEOUT at once; its record stays queued (Redis answers
 * in order) and its late reply is dropped.  The connection itself is
 * dropped only when it is stalled: commands are pending and nothing at all
 * has come back for command_timeout (a frozen or unreachable Redis).  A
 * Redis that is slow but answering (a bulk read of 10k positions on a busy
 * machine) keeps its connection, so a slow read cannot turn into a
 * reconnect that repeats the read (issue 18).  Dropping fails every pending
 * command (TIMEOUT for the expired ones, LOST for the rest) and starts a
 * reconnect.
 *
 * Teardown has one path: hiredis calls our cleanup hook whenever it frees
 * the context (error, EOF, or redisAsyncFree() by us), after it has failed
 * the pending callbacks; that hook detaches the nginx connection, logs the
 * state change and schedules the reconnect.
 */

#include "ngx_insite_redis_int.h"
#include <openssl/sha.h>


#define NGX_INSITE_REDIS_BACKOFF_MIN  1000
#define NGX_INSITE_REDIS_BACKOFF_MAX  30000


/* the connection whose reply is being handled, for ngx_insite_redis_wait() */
static ngx_insite_redis_t  *ngx_insite_redis_replying;






static void ngx_insite_redis_connect(ngx_insite_redis_t *rd);
static ngx_int_t ngx_insite_redis_attach(ngx_insite_redis_t *rd,
    redisAsyncContext *ac);
static void ngx_insite_redis_handshake(ngx_insite_redis_t *rd);
static void ngx_insite_redis_refused(ngx_insite_redis_t *rd,
    redisReply *reply);
static void ngx_insite_redis_handshake_reply(ngx_insite_redis_status_e status,
    redisReply *reply, void *data);
static void ngx_insite_redis_script_reply(ngx_insite_redis_status_e status,
    redisReply *reply, void *data);
static ngx_int_t ngx_insite_redis_load_scripts(ngx_insite_redis_t *rd);
static void ngx_insite_redis_sub_reply(redisAsyncContext *ac, void *r,
    void *privdata);
static void ngx_insite_redis_became_ready(ngx_insite_redis_t *rd);
static void ngx_insite_redis_drop(ngx_insite_redis_t *rd, const char *reason);
static void ngx_insite_redis_schedule_retry(ngx_insite_redis_t *rd);

static void ngx_insite_redis_shard_replies(ngx_insite_redis_t *rd);
static void ngx_insite_redis_arm_timer(ngx_insite_redis_t *rd);
static ngx_uint_t ngx_insite_redis_stalled(ngx_insite_redis_t *rd);
static ngx_int_t ngx_insite_redis_expire(ngx_insite_redis_t *rd);
static void ngx_insite_redis_reply(redisAsyncContext *ac, void *r,
    void *privdata);
static void ngx_insite_redis_cancel_cleanup(void *data);

static void ngx_insite_redis_timer_handler(ngx_event_t *ev);
static void ngx_insite_redis_retry_handler(ngx_event_t *ev);
static void ngx_insite_redis_read_handler(ngx_event_t *ev);
static void ngx_insite_redis_write_handler(ngx_event_t *ev);

static void ngx_insite_redis_add_read(void *privdata);
static void ngx_insite_redis_del_read(void *privdata);
static void ngx_insite_redis_add_write(void *privdata);
static void ngx_insite_redis_flush_soon(ngx_insite_redis_t *rd);
static void ngx_insite_redis_del_write(void *privdata);
static void ngx_insite_redis_cleanup(void *privdata);


/* configuration */


char *
ngx_insite_redis_parse_conf(ngx_conf_t *cf, ngx_insite_redis_conf_t *rc)
{
    u_char                   *p;
    ngx_str_t                *value, s;
    ngx_uint_t                i, db;
    ngx_insite_redis_addr_t   addr;

    value = cf->args->elts;

    rc->db = 0;
    rc->connect_timeout = 1000;
    rc->command_timeout = 200;

    if (ngx_strncmp(value[1].data, "unix:", 5) == 0) {
        rc->unix_path.len = value[1].len - 5;
        rc->unix_path.data = ngx_pnalloc(cf->pool, rc->unix_path.len + 1);
        if (rc->unix_path.data == NULL) {
            return NGX_CONF_ERROR;
        }
        ngx_cpystrn(rc->unix_path.data, value[1].data + 5,
                    rc->unix_path.len + 1);

    } else {
        if (ngx_insite_redis_parse_addr(cf, "insite_redis", &value[1], 6379,
                                        &addr)
            != NGX_CONF_OK)
        {
            return NGX_CONF_ERROR;
        }

        rc->host = addr.host;
        rc->port = addr.port;
    }

    rc->name = value[1];

    for (i = 2; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "password=", 9) == 0) {
            rc->password.len = value[i].len - 9;
            rc->password.data = value[i].data + 9;
            continue;
        }

        if (ngx_strncmp(value[i].data, "db=", 3) == 0) {
            s.data = value[i].data + 3;
            s.len = value[i].len - 3;
            if (ngx_insite_conf_uint(cf, "insite_redis", &value[i], &s, 0,
                                     65535, &db)
                != NGX_CONF_OK)
            {
                return NGX_CONF_ERROR;
            }
            rc->db = db;
            continue;
        }

        /* a timeout of 0 would never fire; beyond a minute nothing waits */

        if (ngx_strncmp(value[i].data, "connect_timeout=", 16) == 0) {
            s.data = value[i].data + 16;
            s.len = value[i].len - 16;
            if (ngx_insite_conf_msec(cf, "insite_redis", &value[i], &s, 1,
                                     60000, &rc->connect_timeout)
                != NGX_CONF_OK)
            {
                return NGX_CONF_ERROR;
            }
            continue;
        }

        if (ngx_strncmp(value[i].data, "command_timeout=", 16) == 0) {
            s.data = value[i].data + 16;
            s.len = value[i].len - 16;
            if (ngx_insite_conf_msec(cf, "insite_redis", &value[i], &s, 1,
                                     60000, &rc->command_timeout)
                != NGX_CONF_OK)
            {
                return NGX_CONF_ERROR;
            }
            continue;
        }

        goto invalid;
    }

    /* the password must not leak into logs through the name */
    p = ngx_strlchr(rc->name.data, rc->name.data + rc->name.len, ' ');
    if (p) {
        rc->name.len = p - rc->name.data;
    }

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "insite_redis: invalid parameter \"%V\"", &value[i]);
    return NGX_CONF_ERROR;
}


char *
ngx_insite_redis_parse_addr(ngx_conf_t *cf, const char *directive,
    ngx_str_t *text, in_port_t default_port, ngx_insite_redis_addr_t *a)
{
    u_char     buf[NGX_SOCKADDR_STRLEN];
    size_t     len;
    ngx_url_t  u;

    ngx_memzero(&u, sizeof(ngx_url_t));

    u.url = *text;
    u.default_port = default_port;

    /* resolved here, once: hiredis would resolve with a blocking call */
    if (ngx_parse_url(cf->pool, &u) != NGX_OK || u.naddrs == 0
        || (u.port == 0 && default_port == 0))
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "%s: %s in \"%V\"",
                           directive,
                           u.err ? u.err
                           : u.naddrs == 0 ? "host not found" : "no port",
                           &u.url);
        return NGX_CONF_ERROR;
    }

    len = ngx_sock_ntop(u.addrs[0].sockaddr, u.addrs[0].socklen, buf,
                        NGX_SOCKADDR_STRLEN, 0);

    a->host.data = ngx_pnalloc(cf->pool, len + 1);
    if (a->host.data == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_cpystrn(a->host.data, buf, len + 1);
    a->host.len = len;
    a->port = u.port ? u.port : default_port;
    a->name = *text;

    return NGX_CONF_OK;
}


/* life cycle */


ngx_insite_redis_t *
ngx_insite_redis_alloc(ngx_cycle_t *cycle, ngx_insite_redis_conf_t *rc,
    const char *role, ngx_insite_redis_metrics_t *metrics)
{
    ngx_insite_redis_t  *rd;

    rd = ngx_pcalloc(cycle->pool, sizeof(ngx_insite_redis_t));
    if (rd == NULL) {
        return NULL;
    }

    if (ngx_array_init(&rd->hooks, cycle->pool, 4,
                       sizeof(ngx_insite_redis_hook_t))
        != NGX_OK)
    {
        return NULL;
    }

    rd->conf = rc;
    rd->role = role;
    rd->log = cycle->log;
    rd->metrics = metrics;

    ngx_queue_init(&rd->pending);
    ngx_queue_init(&rd->free);

    return rd;
}


ngx_insite_redis_t *
ngx_insite_redis_create(ngx_cycle_t *cycle, ngx_insite_redis_conf_t *rc,
    const char *role, ngx_insite_redis_metrics_t *metrics)
{
    ngx_insite_redis_t  *rd;

    if (rc->seeds) {
        return ngx_insite_redis_cluster_create(cycle, rc, role, metrics);
    }

    rd = ngx_insite_redis_alloc(cycle, rc, role, metrics);
    if (rd == NULL) {
        return NULL;
    }

    rd->backoff = NGX_INSITE_REDIS_BACKOFF_MIN;

    /*
     * Set only while commands are pending: a graceful shutdown waits for
     * their replies (bounded by command_timeout), so a request waiting on
     * Redis is answered instead of cut off with the worker.
     */
    rd->timer.handler = ngx_insite_redis_timer_handler;
    rd->timer.data = rd;
    rd->timer.log = rd->log;
    rd->timer.cancelable = 0;

    rd->retry.handler = ngx_insite_redis_retry_handler;
    rd->retry.data = rd;
    rd->retry.log = rd->log;
    rd->retry.cancelable = 1;

    return rd;
}


void
ngx_insite_redis_start(ngx_insite_redis_t *rd)
{
    if (rd->cluster) {
        ngx_insite_redis_cluster_start(rd);
        return;
    }

    ngx_insite_redis_connect(rd);
}


void
ngx_insite_redis_destroy(ngx_insite_redis_t *rd)
{
    ngx_queue_t             *q;
    ngx_insite_redis_cmd_t  *cmd;

    if (rd->cluster) {
        ngx_insite_redis_cluster_destroy(rd);
        return;
    }

    rd->exiting = 1;

    if (rd->retry.timer_set) {
        ngx_del_timer(&rd->retry);
    }

    ngx_insite_redis_drop(rd, "worker exiting");

    while (!ngx_queue_empty(&rd->free)) {
        q = ngx_queue_head(&rd->free);
        ngx_queue_remove(q);
        cmd = ngx_queue_data(q, ngx_insite_redis_cmd_t, queue);
        ngx_free(cmd);
    }
}


ngx_int_t
ngx_insite_redis_on_ready(ngx_insite_redis_t *rd,
    ngx_insite_redis_ready_pt handler, void *data)
{
    ngx_insite_redis_hook_t  *hook;

    hook = ngx_array_push(&rd->hooks);
    if (hook == NULL) {
        return NGX_ERROR;
    }

    hook->handler = handler;
    hook->data = data;

    return NGX_OK;
}


static void
ngx_insite_redis_connect(ngx_insite_redis_t *rd)
{
    redisAsyncContext  *ac;

    rd->state = NGX_INSITE_REDIS_CONNECTING;
    rd->drop_reason = NULL;

    if (rd->conf->unix_path.len) {
        ac = redisAsyncConnectUnix((char *) rd->conf->unix_path.data);

    } else {
        ac = redisAsyncConnect((char *) rd->conf->host.data, rd->conf->port);
    }

    if (ac == NULL) {
        ngx_log_error(NGX_LOG_ALERT, rd->log, 0,
                      "insite redis %V (%s): out of memory",
                      &rd->conf->name, rd->role);
        rd->state = NGX_INSITE_REDIS_DOWN;
        ngx_insite_redis_schedule_retry(rd);
        return;
    }

    if (ac->err) {
        ngx_log_error(NGX_LOG_WARN, rd->log, 0,
                      "insite redis %V (%s): connect failed: %s; "
                      "retrying in %Mms",
                      &rd->conf->name, rd->role, ac->errstr, rd->backoff);
        redisAsyncFree(ac);
        rd->state = NGX_INSITE_REDIS_DOWN;
        ngx_insite_redis_schedule_retry(rd);
        return;
    }

    if (ngx_insite_redis_attach(rd, ac) != NGX_OK) {
        redisAsyncFree(ac);
        rd->state = NGX_INSITE_REDIS_DOWN;
        ngx_insite_redis_schedule_retry(rd);
        return;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_EVENT, rd->log, 0,
                   "insite redis %V (%s): connecting",
                   &rd->conf->name, rd->role);

    ngx_insite_redis_handshake(rd);
}


static ngx_int_t
ngx_insite_redis_attach(ngx_insite_redis_t *rd, redisAsyncContext *ac)
{
    ngx_connection_t  *c;

    c = ngx_get_connection(ac->c.fd, rd->log);
    if (c == NULL) {
        ngx_log_error(NGX_LOG_ALERT, rd->log, 0,
                      "insite redis %V (%s): no free connection "
                      "(worker_connections is too small)",
                      &rd->conf->name, rd->role);
        return NGX_ERROR;
    }

    c->data = rd;
    c->read->handler = ngx_insite_redis_read_handler;
    c->write->handler = ngx_insite_redis_write_handler;
    c->read->log = rd->log;
    c->write->log = rd->log;

    rd->conn = c;
    rd->ac = ac;

    ac->data = rd;
    ac->ev.data = rd;
    ac->ev.addRead = ngx_insite_redis_add_read;
    ac->ev.delRead = ngx_insite_redis_del_read;
    ac->ev.addWrite = ngx_insite_redis_add_write;
    ac->ev.delWrite = ngx_insite_redis_del_write;
    ac->ev.cleanup = ngx_insite_redis_cleanup;

    return NGX_OK;
}


/*
 * AUTH and SELECT when configured, then PING: the connection is ready only
 * once Redis has answered, which also covers a server still loading its data
 * set.  All three run under connect_timeout.
 */

static void
ngx_insite_redis_handshake(ngx_insite_redis_t *rd)
{
    int                      step;
    u_char                   db[NGX_INT_T_LEN];
    size_t                   argvlen[2];
    const char              *argv[2];
    ngx_insite_redis_cmd_t  *cmd;

    for (step = 0; step < 3; step++) {

        if (step == 0) {
            if (rd->conf->password.len == 0) {
                continue;
            }
            argv[0] = "AUTH";
            argv[1] = (const char *) rd->conf->password.data;
            argvlen[1] = rd->conf->password.len;

        } else if (step == 1) {
            if (rd->conf->db == 0) {
                continue;
            }
            argv[0] = "SELECT";
            argv[1] = (const char *) db;
            argvlen[1] = ngx_sprintf(db, "%i", rd->conf->db) - db;

        } else {
            if (rd->on_message == NULL
                && ngx_insite_redis_load_scripts(rd) != NGX_OK)
            {
                ngx_insite_redis_drop(rd, "cannot queue SCRIPT LOAD");
                return;
            }

            argv[0] = "PING";
        }

        argvlen[0] = ngx_strlen(argv[0]);

        cmd = ngx_insite_redis_cmd_get(rd, ngx_insite_redis_handshake_reply,
                                       rd, rd->conf->connect_timeout);
        if (cmd == NULL) {
            ngx_insite_redis_drop(rd, "out of memory");
            return;
        }

        cmd->internal = 1;

        if (redisAsyncCommandArgv(rd->ac, ngx_insite_redis_reply, cmd,
                                  step == 2 ? 1 : 2, argv, argvlen)
            != REDIS_OK)
        {
            ngx_insite_redis_cmd_put(cmd);
            ngx_insite_redis_drop(rd, "cannot queue handshake");
            return;
        }

        ngx_queue_insert_tail(&rd->pending, &cmd->queue);
    }

    ngx_insite_redis_arm_timer(rd);
}


/* remembers why Redis refused the handshake (see refused in the header) */
static void
ngx_insite_redis_refused(ngx_insite_redis_t *rd, redisReply *reply)
{
    size_t       n;
    ngx_uint_t   i;
    static const char  *auth[] = { "NOAUTH", "WRONGPASS",
                                   "ERR invalid password", "ERR AUTH",
                                   "ERR Client sent AUTH", NULL };

    n = ngx_min((size_t) reply->len, sizeof(rd->refused));
    ngx_memcpy(rd->refused, reply->str, n);
    rd->refused_len = n;
    rd->auth_refused = 0;

    for (i = 0; auth[i]; i++) {
        if (n >= ngx_strlen(auth[i])
            && ngx_strncmp(rd->refused, auth[i], ngx_strlen(auth[i])) == 0)
        {
            rd->auth_refused = 1;
        }
    }
}


static void
ngx_insite_redis_handshake_reply(ngx_insite_redis_status_e status,
    redisReply *reply, void *data)
{
    ngx_insite_redis_t  *rd = data;

    if (status != NGX_INSITE_REDIS_OK) {
        return;                     /* the drop is logged by the cleanup */
    }

    if (reply->type == REDIS_REPLY_ERROR) {
        ngx_log_error(NGX_LOG_ERR, rd->log, 0,
                      "insite redis %V (%s): handshake refused: %*s",
                      &rd->conf->name, rd->role, (size_t) reply->len,
                      reply->str);
        ngx_insite_redis_refused(rd, reply);
        ngx_insite_redis_drop(rd, "handshake refused");
        return;
    }

    if (reply->type == REDIS_REPLY_STATUS && reply->len == 4
        && ngx_strncmp(reply->str, "PONG", 4) == 0)
    {
        ngx_insite_redis_became_ready(rd);
    }
}


/* SCRIPT LOAD of every registered script, as internal commands */

static ngx_int_t
ngx_insite_redis_load_scripts(ngx_insite_redis_t *rd)
{
    size_t                      argvlen[3];
    ngx_uint_t                  i;
    const char                 *argv[3];
    ngx_insite_redis_cmd_t     *cmd;
    ngx_insite_redis_script_t **sp;

    if (rd->conf->scripts == NULL) {
        return NGX_OK;
    }

    sp = rd->conf->scripts->elts;

    for (i = 0; i < rd->conf->scripts->nelts; i++) {

        cmd = ngx_insite_redis_cmd_get(rd, ngx_insite_redis_script_reply,
                                       sp[i], rd->conf->connect_timeout);
        if (cmd == NULL) {
            return NGX_ERROR;
        }

        cmd->internal = 1;

        argv[0] = "SCRIPT";
        argvlen[0] = 6;
        argv[1] = "LOAD";
        argvlen[1] = 4;
        argv[2] = sp[i]->text;
        argvlen[2] = ngx_strlen(sp[i]->text);

        if (redisAsyncCommandArgv(rd->ac, ngx_insite_redis_reply, cmd, 3,
                                  argv, argvlen)
            != REDIS_OK)
        {
            ngx_insite_redis_cmd_put(cmd);
            return NGX_ERROR;
        }

        ngx_queue_insert_tail(&rd->pending, &cmd->queue);
    }

    ngx_insite_redis_arm_timer(rd);

    return NGX_OK;
}


static void
ngx_insite_redis_script_reply(ngx_insite_redis_status_e status,
    redisReply *reply, void *data)
{
    ngx_insite_redis_script_t  *script = data;

    if (status != NGX_INSITE_REDIS_OK) {
        return;
    }

    if (reply->type == REDIS_REPLY_ERROR) {
        /* a broken script is a bug of ours: say so loudly, keep going */
        ngx_log_error(NGX_LOG_ALERT, ngx_cycle->log, 0,
                      "insite redis: SCRIPT LOAD of \"%s\" failed: %*s",
                      script->name, (size_t) reply->len, reply->str);
        return;
    }

    if (reply->type != REDIS_REPLY_STRING || reply->len != 40
        || ngx_strncmp(reply->str, script->sha, 40) != 0)
    {
        ngx_log_error(NGX_LOG_ALERT, ngx_cycle->log, 0,
                      "insite redis: SCRIPT LOAD of \"%s\" returned an "
                      "unexpected digest", script->name);
    }
}


ngx_insite_redis_script_t *
ngx_insite_redis_script_add(ngx_conf_t *cf, ngx_insite_redis_conf_t *rc,
    const char *name, const char *text)
{
    u_char                      digest[SHA_DIGEST_LENGTH];
    ngx_insite_redis_script_t  *script, **sp;

    script = ngx_pcalloc(cf->pool, sizeof(ngx_insite_redis_script_t));
    if (script == NULL) {
        return NULL;
    }

    script->name = name;
    script->text = text;

    SHA1((const u_char *) text, ngx_strlen(text), digest);
    ngx_hex_dump(script->sha, digest, SHA_DIGEST_LENGTH);

    if (rc == NULL) {
        return script;
    }

    if (rc->scripts == NULL) {
        rc->scripts = ngx_array_create(cf->pool, 4,
                                       sizeof(ngx_insite_redis_script_t *));
        if (rc->scripts == NULL) {
            return NULL;
        }
    }

    sp = ngx_array_push(rc->scripts);
    if (sp == NULL) {
        return NULL;
    }

    *sp = script;

    return script;
}


ngx_insite_redis_cmd_t *
ngx_insite_redis_eval(ngx_insite_redis_t *rd, ngx_insite_redis_script_t *script,
    ngx_insite_redis_reply_pt handler, void *data, int nkeys, int nargs,
    const char **args, const size_t *lens)
{
    int                      i;
    u_char                   nk[NGX_INT_T_LEN];
    size_t                   small_lens[16], *argvlen;
    const char              *small_argv[16], **argv;
    ngx_insite_redis_cmd_t  *cmd;

    argv = small_argv;
    argvlen = small_lens;

    if (nargs + 3 > 16) {
        argv = ngx_alloc((nargs + 3) * (sizeof(char *) + sizeof(size_t)),
                         rd->log);
        if (argv == NULL) {
            return NULL;
        }
        argvlen = (size_t *) (argv + nargs + 3);
    }

    argv[0] = "EVALSHA";
    argvlen[0] = 7;
    argv[1] = (const char *) script->sha;
    argvlen[1] = 40;
    argv[2] = (const char *) nk;
    argvlen[2] = ngx_sprintf(nk, "%d", nkeys) - nk;

    for (i = 0; i < nargs; i++) {
        argv[3 + i] = args[i];
        argvlen[3 + i] = lens[i];
    }

    /* hiredis formats the command at once: argv need not outlive the call */
    cmd = ngx_insite_redis_command_argv(rd, handler, data, 3 + nargs, argv,
                                        argvlen);

    if (argv != small_argv) {
        ngx_free(argv);
    }

    return cmd;
}


/* pub/sub */


void
ngx_insite_redis_on_message(ngx_insite_redis_t *rd,
    ngx_insite_redis_message_pt handler, void *data)
{
    rd->on_message = handler;
    rd->on_message_data = data;
}


ngx_int_t
ngx_insite_redis_subscribe(ngx_insite_redis_t *rd, ngx_str_t *channel)
{
    if (rd->cluster) {
        return ngx_insite_redis_cluster_subscribe(rd, channel, 1);
    }

    if (rd->state != NGX_INSITE_REDIS_READY) {
        return NGX_DECLINED;
    }

    if (redisAsyncCommand(rd->ac, ngx_insite_redis_sub_reply, rd,
                          "SUBSCRIBE %b", channel->data, channel->len)
        != REDIS_OK)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


ngx_int_t
ngx_insite_redis_unsubscribe(ngx_insite_redis_t *rd, ngx_str_t *channel)
{
    if (rd->cluster) {
        return ngx_insite_redis_cluster_subscribe(rd, channel, 0);
    }

    if (rd->state != NGX_INSITE_REDIS_READY) {
        return NGX_DECLINED;
    }

    if (redisAsyncCommand(rd->ac, ngx_insite_redis_sub_reply, rd,
                          "UNSUBSCRIBE %b", channel->data, channel->len)
        != REDIS_OK)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


static void
ngx_insite_redis_sub_reply(redisAsyncContext *ac, void *r, void *privdata)
{
    ngx_uint_t           event;
    redisReply          *reply = r, *kind;
    ngx_insite_redis_t  *rd = privdata;

    if (reply == NULL || rd->on_message == NULL) {
        return;                     /* dropped: the ready hook resubscribes */
    }

    if (reply->type != REDIS_REPLY_ARRAY || reply->elements < 3
        || reply->element[0]->type != REDIS_REPLY_STRING
        || reply->element[1]->type != REDIS_REPLY_STRING)
    {
        return;
    }

    kind = reply->element[0];

    if (kind->len == 7 && ngx_strncmp(kind->str, "message", 7) == 0) {
        event = NGX_INSITE_REDIS_MESSAGE;

    } else if (kind->len == 9 && ngx_strncmp(kind->str, "subscribe", 9) == 0) {
        event = NGX_INSITE_REDIS_SUBSCRIBED;

    } else if (kind->len == 11
               && ngx_strncmp(kind->str, "unsubscribe", 11) == 0)
    {
        event = NGX_INSITE_REDIS_UNSUBSCRIBED;

    } else {
        return;
    }

    ngx_insite_redis_deliver(rd, event, reply);
}


/* a pub/sub event ([kind, channel, payload or count]) to rd's handler */
void
ngx_insite_redis_deliver(ngx_insite_redis_t *rd, ngx_uint_t event,
    redisReply *reply)
{
    ngx_str_t   channel, payload, *pp;

    channel.data = (u_char *) reply->element[1]->str;
    channel.len = reply->element[1]->len;

    pp = NULL;

    if (event == NGX_INSITE_REDIS_MESSAGE
        && reply->element[2]->type == REDIS_REPLY_STRING)
    {
        payload.data = (u_char *) reply->element[2]->str;
        payload.len = reply->element[2]->len;
        pp = &payload;
    }

    if (rd->on_message) {
        rd->on_message(rd, event, &channel, pp, rd->on_message_data);
    }
}


void
ngx_insite_redis_reset(ngx_insite_redis_t *rd, const char *reason)
{
    if (rd->cluster) {
        ngx_insite_redis_cluster_reset(rd, reason);
        return;
    }

    ngx_insite_redis_drop(rd, reason);
}


const char *
ngx_insite_redis_publish_command(ngx_insite_redis_t *rd)
{
    return (rd && rd->cluster) ? "SPUBLISH" : "PUBLISH";
}


static void
ngx_insite_redis_became_ready(ngx_insite_redis_t *rd)
{
    ngx_uint_t  reconnected, level;

    reconnected = rd->ever_ready;
    level = reconnected ? NGX_LOG_NOTICE : NGX_LOG_INFO;

    rd->state = NGX_INSITE_REDIS_READY;
    rd->ever_ready = 1;
    rd->refused_len = 0;
    rd->auth_refused = 0;
    rd->backoff = NGX_INSITE_REDIS_BACKOFF_MIN;

    ngx_log_error(level, rd->log, 0,
                  "insite redis %V (%s): %s",
                  &rd->conf->name, rd->role,
                  reconnected ? "reconnected" : "connected");

    if (rd->metrics) {
        ngx_insite_metric_add_value(rd->metrics->connected, 1);
        if (reconnected) {
            ngx_insite_metric_inc(rd->metrics->reconnects);
        }
    }

    ngx_insite_redis_run_hooks(rd, reconnected);
}


void
ngx_insite_redis_run_hooks(ngx_insite_redis_t *rd, ngx_uint_t reconnected)
{
    ngx_uint_t                i;
    ngx_insite_redis_hook_t  *hook;

    hook = rd->hooks.elts;

    for (i = 0; i < rd->hooks.nelts && rd->state == NGX_INSITE_REDIS_READY;
         i++)
    {
        hook[i].handler(rd, reconnected, hook[i].data);
    }
}


/*
 * Drops the connection: hiredis fails the pending callbacks and calls
 * ngx_insite_redis_cleanup().  Safe inside hiredis callbacks too: there
 * redisAsyncFree() defers the free until the callback returns.
 */

static void
ngx_insite_redis_drop(ngx_insite_redis_t *rd, const char *reason)
{
    if (rd->ac == NULL) {
        return;
    }

    if (rd->drop_reason == NULL) {
        rd->drop_reason = reason;
    }

    redisAsyncFree(rd->ac);
}


static void
ngx_insite_redis_schedule_retry(ngx_insite_redis_t *rd)
{
    if (rd->exiting || ngx_exiting || ngx_terminate || ngx_quit) {
        return;
    }

    ngx_add_timer(&rd->retry, rd->backoff);

    rd->backoff *= 2;
    if (rd->backoff > NGX_INSITE_REDIS_BACKOFF_MAX) {
        rd->backoff = NGX_INSITE_REDIS_BACKOFF_MAX;
    }
}


static void
ngx_insite_redis_retry_handler(ngx_event_t *ev)
{
    ngx_insite_redis_t  *rd = ev->data;

    if (rd->exiting || ngx_exiting) {
        return;
    }

    ngx_insite_redis_connect(rd);
}


/* commands */


/*
 * Both command calls: get a record when the connection is ready, hand the
 * command to hiredis, then queue the record behind the commands in flight.
 */

static ngx_insite_redis_cmd_t *
ngx_insite_redis_cmd_start(ngx_insite_redis_t *rd,
    ngx_insite_redis_reply_pt handler, void *data)
{
    if (rd == NULL || rd->state != NGX_INSITE_REDIS_READY) {
        if (rd && rd->metrics) {
            ngx_insite_metric_inc(rd->metrics->refused);
        }
        return NULL;
    }

    return ngx_insite_redis_cmd_get(rd, handler, data,
                                    rd->conf->command_timeout);
}


static ngx_insite_redis_cmd_t *
ngx_insite_redis_cmd_sent(ngx_insite_redis_cmd_t *cmd, int rc)
{
    ngx_insite_redis_t  *rd = cmd->rd;

    if (rc != REDIS_OK) {
        ngx_insite_redis_cmd_put(cmd);
        return NULL;
    }

    /* an idle connection's clock starts with its first command */
    if (ngx_queue_empty(&rd->pending)) {
        rd->progress = ngx_current_msec;
    }

    ngx_queue_insert_tail(&rd->pending, &cmd->queue);
    ngx_insite_redis_arm_timer(rd);

    if (rd->metrics) {
        ngx_insite_metric_inc(rd->metrics->commands);
    }

    return cmd;
}


ngx_insite_redis_cmd_t *
ngx_insite_redis_command(ngx_insite_redis_t *rd,
    ngx_insite_redis_reply_pt handler, void *data, const char *fmt, ...)
{
    int                      rc;
    char                    *buf;
    va_list                  args;
    ngx_insite_redis_cmd_t  *cmd;

    if (rd && rd->cluster) {
        va_start(args, fmt);
        rc = redisvFormatCommand(&buf, fmt, args);
        va_end(args);

        if (rc <= 0) {
            return NULL;
        }

        return ngx_insite_redis_cluster_command(rd, handler, data, buf,
                                                (size_t) rc);
    }

    cmd = ngx_insite_redis_cmd_start(rd, handler, data);
    if (cmd == NULL) {
        return NULL;
    }

    va_start(args, fmt);
    rc = redisvAsyncCommand(rd->ac, ngx_insite_redis_reply, cmd, fmt, args);
    va_end(args);

    return ngx_insite_redis_cmd_sent(cmd, rc);
}


ngx_insite_redis_cmd_t *
ngx_insite_redis_command_argv(ngx_insite_redis_t *rd,
    ngx_insite_redis_reply_pt handler, void *data, int argc,
    const char **argv, const size_t *argvlen)
{
    int                      len;
    char                    *buf;
    ngx_insite_redis_cmd_t  *cmd;

    if (rd && rd->cluster) {
        len = redisFormatCommandArgv(&buf, argc, argv, argvlen);
        if (len <= 0) {
            return NULL;
        }

        return ngx_insite_redis_cluster_command(rd, handler, data, buf,
                                                (size_t) len);
    }

    cmd = ngx_insite_redis_cmd_start(rd, handler, data);
    if (cmd == NULL) {
        return NULL;
    }

    return ngx_insite_redis_cmd_sent(cmd,
               redisAsyncCommandArgv(rd->ac, ngx_insite_redis_reply, cmd,
                                     argc, argv, argvlen));
}


ngx_insite_redis_cmd_t *
ngx_insite_redis_command_formatted(ngx_insite_redis_t *rd,
    ngx_insite_redis_reply_pt handler, void *data, const char *buf,
    size_t len, ngx_msec_t deadline)
{
    ngx_insite_redis_cmd_t  *cmd;

    cmd = ngx_insite_redis_cmd_start(rd, handler, data);
    if (cmd == NULL) {
        return NULL;
    }

    if ((ngx_msec_int_t) (deadline - cmd->deadline) < 0) {
        cmd->deadline = deadline;
    }

    cmd->internal = (handler == NULL);

    return ngx_insite_redis_cmd_sent(cmd,
               redisAsyncFormattedCommand(rd->ac, ngx_insite_redis_reply, cmd,
                                          buf, len));
}


ngx_int_t
ngx_insite_redis_send_raw(ngx_insite_redis_t *rd, const char *buf,
    size_t len)
{
    if (rd->state != NGX_INSITE_REDIS_READY || rd->ac == NULL) {
        return NGX_DECLINED;
    }

    if (redisAppendFormattedCommand(&rd->ac->c, buf, len) != REDIS_OK) {
        return NGX_ERROR;
    }

    ngx_insite_redis_add_write(rd);

    return NGX_OK;
}


ngx_insite_redis_cmd_t *
ngx_insite_redis_group(ngx_insite_redis_t *rd,
    ngx_insite_redis_reply_pt handler, void *data)
{
    if (rd == NULL || rd->state != NGX_INSITE_REDIS_READY) {
        return NULL;
    }

    return ngx_insite_redis_cmd_get(rd, handler, data, 0);
}


void
ngx_insite_redis_group_done(ngx_insite_redis_cmd_t *cmd,
    ngx_insite_redis_status_e status, redisReply *reply)
{
    void                       *data;
    ngx_insite_redis_reply_pt   handler;

    handler = cmd->handler;
    data = cmd->data;

    ngx_insite_redis_cmd_put(cmd);

    if (handler) {
        handler(status, reply, data);
    }
}


void
ngx_insite_redis_cancel(ngx_insite_redis_cmd_t *cmd)
{
    cmd->handler = NULL;
    cmd->data = NULL;

    if (cmd->cln) {
        cmd->cln->handler = NULL;
        cmd->cln = NULL;
    }
}


ngx_int_t
ngx_insite_redis_cancel_with_pool(ngx_insite_redis_cmd_t *cmd,
    ngx_pool_t *pool)
{
    ngx_pool_cleanup_t  *cln;

    cln = ngx_pool_cleanup_add(pool, 0);
    if (cln == NULL) {
        return NGX_ERROR;
    }

    cln->handler = ngx_insite_redis_cancel_cleanup;
    cln->data = cmd;
    cmd->cln = cln;

    return NGX_OK;
}


static void
ngx_insite_redis_cancel_cleanup(void *data)
{
    ngx_insite_redis_cmd_t  *cmd = data;

    cmd->cln = NULL;
    ngx_insite_redis_cancel(cmd);
}


ngx_insite_redis_cmd_t *
ngx_insite_redis_cmd_get(ngx_insite_redis_t *rd,
    ngx_insite_redis_reply_pt handler, void *data, ngx_msec_t timeout)
{
    ngx_queue_t             *q;
    ngx_insite_redis_cmd_t  *cmd;

    if (!ngx_queue_empty(&rd->free)) {
        q = ngx_queue_head(&rd->free);
        ngx_queue_remove(q);
        cmd = ngx_queue_data(q, ngx_insite_redis_cmd_t, queue);

    } else {
        cmd = ngx_alloc(sizeof(ngx_insite_redis_cmd_t), rd->log);
        if (cmd == NULL) {
            return NULL;
        }
    }

    ngx_memzero(cmd, sizeof(ngx_insite_redis_cmd_t));

    cmd->rd = rd;
    cmd->handler = handler;
    cmd->data = data;
    cmd->start = ngx_current_msec;
    cmd->deadline = ngx_current_msec + timeout;

    return cmd;
}


void
ngx_insite_redis_cmd_put(ngx_insite_redis_cmd_t *cmd)
{
    if (cmd->cln) {
        cmd->cln->handler = NULL;
        cmd->cln = NULL;
    }

    ngx_queue_insert_head(&cmd->rd->free, &cmd->queue);
}


static void
ngx_insite_redis_arm_timer(ngx_insite_redis_t *rd)
{
    ngx_msec_t               at;
    ngx_msec_int_t           left;
    ngx_queue_t             *q;
    ngx_insite_redis_cmd_t  *cmd;

    if (ngx_queue_empty(&rd->pending)) {
        if (rd->timer.timer_set) {
            ngx_del_timer(&rd->timer);
        }
        return;
    }

    /* the first deadline not yet expired; once ready, also the stall's */

    at = rd->progress + rd->conf->command_timeout;

    for (q = ngx_queue_head(&rd->pending);
         q != ngx_queue_sentinel(&rd->pending);
         q = ngx_queue_next(q))
    {
        cmd = ngx_queue_data(q, ngx_insite_redis_cmd_t, queue);

        if (cmd->timed_out) {
            continue;
        }

        if (rd->state != NGX_INSITE_REDIS_READY
            || (ngx_msec_int_t) (cmd->deadline - at) < 0)
        {
            at = cmd->deadline;
        }

        break;
    }

    left = (ngx_msec_int_t) (at - ngx_current_msec);

    ngx_add_timer(&rd->timer, left > 0 ? (ngx_msec_t) left : 1);
}


static void
ngx_insite_redis_reply(redisAsyncContext *ac, void *r, void *privdata)
{
    void                       *data;
    ngx_insite_redis_t         *rd, *prev;
    ngx_insite_redis_cmd_t     *cmd = privdata;
    ngx_insite_redis_status_e   status;
    ngx_insite_redis_reply_pt   handler;

    rd = cmd->rd;

    ngx_queue_remove(&cmd->queue);

    if (r) {
        rd->progress = ngx_current_msec;
    }

    if (r) {
        status = NGX_INSITE_REDIS_OK;

    } else if (cmd->timed_out) {
        status = NGX_INSITE_REDIS_TIMEOUT;

    } else {
        status = NGX_INSITE_REDIS_LOST;
    }

    /* a command already failed by its deadline was counted then */
    if (rd->metrics && !cmd->internal && !cmd->timed_out) {
        if (status == NGX_INSITE_REDIS_OK) {
            ngx_insite_metric_observe(rd->metrics->latency,
                                      (ngx_current_msec - cmd->start) / 1000.0);

        } else if (status == NGX_INSITE_REDIS_TIMEOUT) {
            ngx_insite_metric_inc(rd->metrics->timeouts);

        } else {
            ngx_insite_metric_inc(rd->metrics->lost);
        }
    }

    if (r && ((redisReply *) r)->type == REDIS_REPLY_ERROR
        && ((redisReply *) r)->len > 8
        && ngx_strncmp(((redisReply *) r)->str, "NOSCRIPT", 8) == 0
        && rd->ac)
    {
        ngx_log_error(NGX_LOG_WARN, rd->log, 0,
                      "insite redis %V (%s): script cache flushed, "
                      "loading scripts again", &rd->conf->name, rd->role);
        (void) ngx_insite_redis_load_scripts(rd);
    }

    handler = cmd->handler;
    data = cmd->data;

    ngx_insite_redis_cmd_put(cmd);

    if (r && rd->ac) {
        ngx_insite_redis_arm_timer(rd);
    }

    if (handler) {
        /* a handler may drop a connection, which fails other commands
           (this function again) before it returns: restore, not clear */
        prev = ngx_insite_redis_replying;
        ngx_insite_redis_replying = (r && rd->ac) ? rd : NULL;

        handler(status, r, data);

        ngx_insite_redis_replying = prev;
    }
}


ngx_insite_redis_cmd_t *
ngx_insite_redis_wait(ngx_insite_redis_reply_pt handler, void *data,
    ngx_uint_t replicas, ngx_msec_t timeout)
{
    int                      rc;
    ngx_insite_redis_t      *rd;
    ngx_insite_redis_cmd_t  *cmd;

    rd = ngx_insite_redis_replying;

    if (rd == NULL || rd->ac == NULL || timeout == 0) {
        return NULL;
    }

    cmd = ngx_insite_redis_cmd_start(rd, handler, data);
    if (cmd == NULL) {
        return NULL;
    }

    /* Redis holds the reply for up to `timeout`: that is not a hang */
    cmd->deadline += timeout;

    rc = redisAsyncCommand(rd->ac, ngx_insite_redis_reply, cmd, "WAIT %u %u",
                           (unsigned) replicas, (unsigned) timeout);

    return ngx_insite_redis_cmd_sent(cmd, rc);
}


static void
ngx_insite_redis_timer_handler(ngx_event_t *ev)
{
    ngx_uint_t               expired;
    ngx_queue_t             *q;
    ngx_insite_redis_t      *rd = ev->data;
    ngx_insite_redis_cmd_t  *cmd;

    if (rd->state != NGX_INSITE_REDIS_READY) {
        /* the handshake: any expired step means the connect failed */
        expired = 0;

        for (q = ngx_queue_head(&rd->pending);
             q != ngx_queue_sentinel(&rd->pending);
             q = ngx_queue_next(q))
        {
            cmd = ngx_queue_data(q, ngx_insite_redis_cmd_t, queue);

            if ((ngx_msec_int_t) (cmd->deadline - ngx_current_msec) > 0) {
                break;
            }

            cmd->timed_out = 1;
            expired++;
        }

        if (expired) {
            ngx_insite_redis_drop(rd, "connect timed out");
            return;
        }

        ngx_insite_redis_arm_timer(rd);
        return;
    }

    /* the expired commands fail with TIMEOUT either way */
    if (ngx_insite_redis_expire(rd) != NGX_OK) {
        return;                                   /* dropped meanwhile */
    }

    if (ngx_insite_redis_stalled(rd)) {
        ngx_insite_redis_drop(rd, "command timed out");
        return;
    }

    ngx_insite_redis_arm_timer(rd);
}


/* commands are waiting and nothing came back for command_timeout */

static ngx_uint_t
ngx_insite_redis_stalled(ngx_insite_redis_t *rd)
{
    return !ngx_queue_empty(&rd->pending)
           && (ngx_msec_int_t) (ngx_current_msec - rd->progress)
              >= (ngx_msec_int_t) rd->conf->command_timeout;
}


/*
 * Fails the commands past their deadline to their callers, keeping their
 * records queued for the replies still to come.  A handler may issue
 * commands (queued at the tail) or drop the connection: NGX_DONE then.
 */

static ngx_int_t
ngx_insite_redis_expire(ngx_insite_redis_t *rd)
{
    void                       *data;
    ngx_queue_t                *q, *next;
    redisAsyncContext          *ac;
    ngx_insite_redis_cmd_t     *cmd;
    ngx_insite_redis_reply_pt   handler;

    ac = rd->ac;

    for (q = ngx_queue_head(&rd->pending);
         q != ngx_queue_sentinel(&rd->pending);
         q = next)
    {
        next = ngx_queue_next(q);
        cmd = ngx_queue_data(q, ngx_insite_redis_cmd_t, queue);

        if (cmd->timed_out) {
            continue;
        }

        if ((ngx_msec_int_t) (cmd->deadline - ngx_current_msec) > 0) {
            break;
        }

        cmd->timed_out = 1;

        if (rd->metrics && !cmd->internal) {
            ngx_insite_metric_inc(rd->metrics->timeouts);
        }

        handler = cmd->handler;
        data = cmd->data;
        ngx_insite_redis_cancel(cmd);

        if (handler == NULL) {
            continue;
        }

        handler(NGX_INSITE_REDIS_TIMEOUT, NULL, data);

        if (rd->ac != ac) {
            return NGX_DONE;
        }
    }

    return NGX_OK;
}


/* events: hiredis asks, nginx delivers */


/*
 * Once a connection is ready its bytes are read here and fed to hiredis'
 * reader, not by redisAsyncHandleRead(): knowing how much one recv() took
 * tells whether the socket may hold more.  A busy subscriber connection is
 * read again while a read fills the buffer (bounded, so one connection
 * cannot starve the rest); a short read ends the turn without the extra
 * syscall (an ioctl(FIONREAD) per event, two per HTTP publish) that asking
 * the socket would cost.  The handshake keeps to hiredis' own path.
 */

#define NGX_INSITE_REDIS_READ_BUF    (16 * 1024)
#define NGX_INSITE_REDIS_READ_TURNS  16

/* exported by libhiredis 0.14 and 1.x (async.c) but not declared in
 * async.h: the half of redisAsyncHandleRead() that runs the callbacks of
 * the replies already in the reader */
void redisProcessCallbacks(redisAsyncContext *ac);


static void
ngx_insite_redis_read_handler(ngx_event_t *ev)
{
    ssize_t              n;
    ngx_err_t            err;
    ngx_uint_t           i;
    ngx_connection_t    *c = ev->data;
    ngx_insite_redis_t  *rd = c->data;

    static char          buf[NGX_INSITE_REDIS_READ_BUF];

    for (i = 0; i < NGX_INSITE_REDIS_READ_TURNS; i++) {

        /* a callback may have dropped the connection, or replaced it */
        if (rd->ac == NULL || rd->conn != c) {
            return;
        }

        if (rd->state != NGX_INSITE_REDIS_READY) {
            redisAsyncHandleRead(rd->ac);
            return;
        }

        n = recv(c->fd, buf, sizeof(buf), 0);

        if (n == -1) {
            err = ngx_socket_errno;

            if (err != NGX_EAGAIN && err != NGX_EINTR) {
                ngx_insite_redis_drop(rd, strerror(err));
            }

            return;
        }

        if (n == 0) {
            /* the words hiredis' own read uses, which logs and tests know */
            ngx_insite_redis_drop(rd, "Server closed the connection");
            return;
        }

        if (redisReaderFeed(rd->ac->c.reader, buf, (size_t) n) != REDIS_OK) {
            ngx_insite_redis_drop(rd, "protocol error");
            return;
        }

        if (rd->shard_of) {
            ngx_insite_redis_shard_replies(rd);

        } else {
            redisProcessCallbacks(rd->ac);
        }

        if ((size_t) n < sizeof(buf)) {
            return;
        }
    }
}


/*
 * A ready shard subscriber: hiredis 0.14's async layer has no sharded
 * pub/sub (an "smessage" with no callback waiting would trip its asserts),
 * so its replies are taken from hiredis' reader here and handed to the
 * cluster router.  Nothing it writes after the handshake has a callback.
 */

static void
ngx_insite_redis_shard_replies(ngx_insite_redis_t *rd)
{
    void  *reply;

    while (rd->ac) {
        if (redisGetReplyFromReader(&rd->ac->c, &reply) != REDIS_OK) {
            ngx_insite_redis_drop(rd, "protocol error");
            return;
        }

        if (reply == NULL) {
            return;
        }

        ngx_insite_redis_cluster_shard_reply(rd, reply);
        freeReplyObject(reply);
    }
}


static void
ngx_insite_redis_write_handler(ngx_event_t *ev)
{
    ngx_connection_t    *c = ev->data;
    ngx_insite_redis_t  *rd = c->data;

    if (rd->ac) {
        rd->writing = 1;
        redisAsyncHandleWrite(rd->ac);
        rd->writing = 0;
    }
}


static void
ngx_insite_redis_add_read(void *privdata)
{
    ngx_insite_redis_t  *rd = privdata;

    if (rd->conn && !rd->conn->read->active) {
        if (ngx_add_event(rd->conn->read, NGX_READ_EVENT, NGX_LEVEL_EVENT)
            != NGX_OK)
        {
            ngx_log_error(NGX_LOG_ALERT, rd->log, 0,
                          "insite redis %V (%s): cannot add read event",
                          &rd->conf->name, rd->role);
        }
    }
}


static void
ngx_insite_redis_del_read(void *privdata)
{
    ngx_insite_redis_t  *rd = privdata;

    if (rd->conn && rd->conn->read->active) {
        (void) ngx_del_event(rd->conn->read, NGX_READ_EVENT, 0);
    }
}


static void
ngx_insite_redis_add_write(void *privdata)
{
    ngx_insite_redis_t  *rd = privdata;

    if (rd->conn == NULL) {
        return;
    }

    /*
     * A new command on a ready connection: written from a posted event at
     * the end of this loop turn (ngx_insite_redis_flush_soon), with no
     * epoll_ctl() to arm the write event and another to disarm it once
     * hiredis has written everything.  The event is armed only when the
     * socket could not take it all (hiredis asks again from inside its
     * write), or during the handshake.
     */
    if (rd->state == NGX_INSITE_REDIS_READY && !rd->writing) {
        ngx_insite_redis_flush_soon(rd);
        return;
    }

    if (!rd->conn->write->active) {
        if (ngx_add_event(rd->conn->write, NGX_WRITE_EVENT, NGX_LEVEL_EVENT)
            != NGX_OK)
        {
            ngx_log_error(NGX_LOG_ALERT, rd->log, 0,
                          "insite redis %V (%s): cannot add write event",
                          &rd->conf->name, rd->role);
        }
    }
}


/*
 * Commands appended during one event loop iteration (concurrent HTTP
 * publishes, say) leave together at the end of that iteration, as a posted
 * event, instead of one iteration later when epoll reports the socket
 * writable: still one write for all of them, one loop turn less on every
 * round trip (issue 18).  Only once connected: the handshake keeps to the
 * plain write event.
 */

static void
ngx_insite_redis_flush_soon(ngx_insite_redis_t *rd)
{
    if (rd->conn && rd->state == NGX_INSITE_REDIS_READY
        && !rd->conn->write->posted)
    {
        ngx_post_event(rd->conn->write, &ngx_posted_events);
    }
}


static void
ngx_insite_redis_del_write(void *privdata)
{
    ngx_insite_redis_t  *rd = privdata;

    if (rd->conn && rd->conn->write->active) {
        (void) ngx_del_event(rd->conn->write, NGX_WRITE_EVENT, 0);
    }
}


/*
 * hiredis is about to close the socket and free the context; the pending
 * callbacks have already been failed.
 */

static void
ngx_insite_redis_cleanup(void *privdata)
{
    ngx_uint_t           was_ready;
    const char          *reason;
    ngx_connection_t    *c;
    ngx_insite_redis_t  *rd = privdata;

    c = rd->conn;

    if (c) {
        if (c->read->active) {
            (void) ngx_del_event(c->read, NGX_READ_EVENT, NGX_CLOSE_EVENT);
        }
        if (c->write->active) {
            (void) ngx_del_event(c->write, NGX_WRITE_EVENT, NGX_CLOSE_EVENT);
        }
        if (c->read->posted) {
            ngx_delete_posted_event(c->read);
        }
        if (c->write->posted) {
            ngx_delete_posted_event(c->write);
        }

        ngx_free_connection(c);
        c->fd = (ngx_socket_t) -1;
        rd->conn = NULL;
    }

    reason = rd->drop_reason;
    if (reason == NULL) {
        reason = (rd->ac && rd->ac->err && rd->ac->errstr)
                 ? rd->ac->errstr : "connection closed";
    }

    rd->ac = NULL;

    if (rd->timer.timer_set) {
        ngx_del_timer(&rd->timer);
    }

    was_ready = (rd->state == NGX_INSITE_REDIS_READY);
    rd->state = NGX_INSITE_REDIS_DOWN;

    if (was_ready && rd->metrics) {
        ngx_insite_metric_add_value(rd->metrics->connected, -1);
    }

    if (rd->exiting) {
        ngx_log_error(NGX_LOG_INFO, rd->log, 0,
                      "insite redis %V (%s): closed: %s",
                      &rd->conf->name, rd->role, reason);
        return;
    }

    if (was_ready) {
        /*
         * A connection that worked is retried at once: a timeout under load
         * or a restarted Redis should not cost a second of refusals.  If
         * that attempt fails, the backoff starts.
         */
        ngx_log_error(NGX_LOG_WARN, rd->log, 0,
                      "insite redis %V (%s): connection lost: %s; "
                      "reconnecting now", &rd->conf->name, rd->role, reason);

        if (!rd->exiting && !ngx_exiting && !ngx_terminate && !ngx_quit) {
            ngx_add_timer(&rd->retry, 1);
        }

        return;
    }

    ngx_log_error(NGX_LOG_WARN, rd->log, 0,
                  "insite redis %V (%s): connect failed: %s; "
                  "reconnecting in %Mms",
                  &rd->conf->name, rd->role, reason, rd->backoff);

    ngx_insite_redis_schedule_retry(rd);
}


const char *
ngx_insite_redis_state_name(ngx_insite_redis_state_e state)
{
    switch (state) {
    case NGX_INSITE_REDIS_READY:
        return "connected";
    case NGX_INSITE_REDIS_CONNECTING:
        return "connecting";
    default:
        return "down";
    }
}


const char *
ngx_insite_redis_status_name(ngx_insite_redis_status_e status)
{
    switch (status) {
    case NGX_INSITE_REDIS_OK:
        return "ok";
    case NGX_INSITE_REDIS_TIMEOUT:
        return "timeout";
    default:
        return "connection lost";
    }
}
