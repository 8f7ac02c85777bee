#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>
#include <jansson.h>
#include <openssl/evp.h>

#include "clock.h"
#include "insite_lua.h"
#include "log.h"
#include "random.h"
#include "redis_publish.h"
#include "../../ngx_insite_core/insite_cluster_slots.h"


const insite_config_key insite_redis_config_keys[] = {
    { "redis.host", INSITE_CFG_STRING, "127.0.0.1", 0, 0, "Redis server address" },
    { "redis.port", INSITE_CFG_INT, "6379", 1, 65535, "Redis server port" },
    { "redis.cluster", INSITE_CFG_STRING, "", 0, 0,
      "Redis Cluster seed nodes \"h1:p1,h2:p2\"; set, it replaces redis.host/port" },
    { "redis.password", INSITE_CFG_STRING, "", 0, 0, "AUTH password, empty for none" },
    { "redis.connect_timeout", INSITE_CFG_DURATION, "1s", 1, 60000, "connect timeout" },
    { "redis.command_timeout", INSITE_CFG_DURATION, "2s", 1, 60000, "per-command timeout" },
    { "redis.prefix", INSITE_CFG_STRING, "insite:", 0, 0,
      "key prefix; must match the nginx module's insite_redis_prefix" },
    { "redis.history", INSITE_CFG_INT, "1000", 0, 1000000,
      "messages kept per channel for resume (0 = none)" },
    { "redis.idempotency_ttl", INSITE_CFG_DURATION, "24h", 1000, 30 * 86400000.0,
      "how long an idempotency key is remembered" },
    { "redis.publish_replicas", INSITE_CFG_INT, "0", 0, 100,
      "replicas that must hold a publish (or a consent write) before it counts as done "
      "(WAIT); 0 = off" },
    { "redis.publish_replicas_timeout", INSITE_CFG_DURATION, "100ms", 1, 60000,
      "how long a publish (or a consent write) waits for them; below redis.command_timeout" },
};
const size_t insite_redis_config_nkeys =
    sizeof(insite_redis_config_keys) / sizeof(insite_redis_config_keys[0]);

/* a server: the one Redis, or a cluster node (seed, or learnt from the
 * slot map or a redirect) */
typedef struct {
    char *host;
    int port;
    redisContext *c;
    int loaded;                      /* the script is in its cache */
    int tag_slot;                    /* tag is a hash tag of this slot; -1: none yet */
    char tag[8];
} insite_redis_node;

struct insite_redis {
    pthread_mutex_t lock;
    insite_redis_node *cur;          /* the node commands go to */
    insite_redis_node nodes[INSITE_CLUSTER_NODES_MAX];
    int nnodes;
    int cluster;                     /* redis.cluster: route by slot */
    int have_map;
    int map_from;                    /* the node that gave the last map */
    int16_t route[INSITE_CLUSTER_SLOTS];   /* node index, -1: unknown */
    char *password, *prefix;
    int connect_timeout_ms, command_timeout_ms;
    long history, idem_ttl_s;
    int replicas, replicas_timeout_ms;   /* WAIT after a publish or a
                                            replicated run; 0: off */
    char sha[41];          /* SHA1 of the script, for EVALSHA */
};

void insite_redis_options_from_config(const insite_config *cfg,
                                      insite_redis_options *o)
{
    o->host = insite_config_string(cfg, "redis.host");
    o->cluster = insite_config_string(cfg, "redis.cluster");
    o->port = (int)insite_config_int(cfg, "redis.port");
    o->password = insite_config_string(cfg, "redis.password");
    o->connect_timeout_ms = (int)insite_config_duration_ms(cfg, "redis.connect_timeout");
    o->command_timeout_ms = (int)insite_config_duration_ms(cfg, "redis.command_timeout");
    o->prefix = insite_config_string(cfg, "redis.prefix");
    o->history = (long)insite_config_int(cfg, "redis.history");
    o->idempotency_ttl_s = (long)(insite_config_duration_ms(cfg, "redis.idempotency_ttl") / 1000);
    o->publish_replicas = (int)insite_config_int(cfg, "redis.publish_replicas");
    o->publish_replicas_timeout_ms =
        (int)insite_config_duration_ms(cfg, "redis.publish_replicas_timeout");
}

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    if (err == NULL || errlen == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static int script_sha1(char out[41])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;

    if (EVP_Digest(INSITE_LUA_PUBLISH, strlen(INSITE_LUA_PUBLISH), md, &n,
                   EVP_sha1(), NULL) != 1 || n != 20)
        return -1;
    for (unsigned i = 0; i < n; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
    return 0;
}

static void disconnect(insite_redis *r)
{
    if (r->cur->c != NULL)
        redisFree(r->cur->c);
    r->cur->c = NULL;
    r->cur->loaded = 0;
}

/* the node index of host:port, added if new; -1 when the table is full */
static int add_node(insite_redis *r, const char *host, int port)
{
    for (int i = 0; i < r->nnodes; i++)
        if (r->nodes[i].port == port && strcmp(r->nodes[i].host, host) == 0)
            return i;
    if (r->nnodes == INSITE_CLUSTER_NODES_MAX)
        return -1;
    char *h = strdup(host);
    if (h == NULL)
        return -1;
    r->nodes[r->nnodes].host = h;
    r->nodes[r->nnodes].port = port;
    r->nodes[r->nnodes].c = NULL;
    r->nodes[r->nnodes].loaded = 0;
    r->nodes[r->nnodes].tag_slot = -1;
    return r->nnodes++;
}

static int add_seed(const char *host, int port, void *data)
{
    return add_node(data, host, port) < 0 ? -1 : 0;
}

insite_redis *insite_redis_new(const insite_redis_options *o)
{
    insite_redis *r = calloc(1, sizeof(*r));

    if (r != NULL) {
        pthread_mutex_init(&r->lock, NULL);
        r->cur = &r->nodes[0];
        memset(r->route, 0xff, sizeof(r->route));
    }
    if (r != NULL && o->cluster != NULL && o->cluster[0] != '\0') {
        char why[256];
        r->cluster = 1;
        if (insite_cluster_parse_seeds(o->cluster, add_seed, r, why, sizeof(why)) != 0) {
            insite_log_error("redis: redis.cluster \"%s\": %s", o->cluster, why);
            insite_redis_free(r);
            return NULL;
        }
    }
    if (r == NULL
        || (!r->cluster && add_node(r, o->host ? o->host : "127.0.0.1", o->port) < 0)
        || (r->password = strdup(o->password ? o->password : "")) == NULL
        || (r->prefix = strdup(o->prefix ? o->prefix : "insite:")) == NULL) {
        insite_log_error("redis: out of memory");
        insite_redis_free(r);
        return NULL;
    }
    if (!insite_channel_prefix_valid(r->prefix, strlen(r->prefix))) {
        insite_log_error("redis: invalid key prefix \"%s\": up to 64 printable characters "
                         "without white space or braces", r->prefix);
        insite_redis_free(r);
        return NULL;
    }
    if (script_sha1(r->sha) != 0) {
        insite_log_error("redis: cannot hash the publish script");
        insite_redis_free(r);
        return NULL;
    }
    r->connect_timeout_ms = o->connect_timeout_ms > 0 ? o->connect_timeout_ms : 1000;
    r->command_timeout_ms = o->command_timeout_ms > 0 ? o->command_timeout_ms : 2000;
    r->history = o->history;
    r->idem_ttl_s = o->idempotency_ttl_s > 0 ? o->idempotency_ttl_s : 86400;
    r->replicas = o->publish_replicas > 0 ? o->publish_replicas : 0;
    r->replicas_timeout_ms = o->publish_replicas_timeout_ms > 0
                             ? o->publish_replicas_timeout_ms : 100;
    if (r->replicas > 0 && r->replicas_timeout_ms >= r->command_timeout_ms) {
        /* the socket would time out while Redis still waits */
        insite_log_error("redis: redis.publish_replicas_timeout (%d ms) must be below "
                         "redis.command_timeout (%d ms)", r->replicas_timeout_ms,
                         r->command_timeout_ms);
        insite_redis_free(r);
        return NULL;
    }
    return r;
}


void insite_redis_free(insite_redis *r)
{
    if (r == NULL)
        return;
    for (int i = 0; i < r->nnodes; i++) {
        r->cur = &r->nodes[i];
        disconnect(r);
        free(r->nodes[i].host);
    }
    pthread_mutex_destroy(&r->lock);
    free(r->password);
    free(r->prefix);
    free(r);
}

static struct timeval ms_tv(int ms)
{
    struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };
    return tv;
}

static int connect_redis(insite_redis *r, char *err, size_t errlen)
{
    if (r->cur->c != NULL)
        return 0;
    r->cur->c = redisConnectWithTimeout(r->cur->host, r->cur->port, ms_tv(r->connect_timeout_ms));
    if (r->cur->c == NULL || r->cur->c->err) {
        set_err(err, errlen, "connect %s:%d: %s", r->cur->host, r->cur->port,
                r->cur->c ? r->cur->c->errstr : "out of memory");
        disconnect(r);
        return -1;
    }
    if (redisSetTimeout(r->cur->c, ms_tv(r->command_timeout_ms)) != REDIS_OK) {
        set_err(err, errlen, "set timeout on %s:%d: %s", r->cur->host, r->cur->port, r->cur->c->errstr);
        disconnect(r);
        return -1;
    }
    if (r->password[0] != '\0') {
        redisReply *rep = redisCommand(r->cur->c, "AUTH %s", r->password);
        int ok = rep && rep->type != REDIS_REPLY_ERROR;
        set_err(err, errlen, "AUTH on %s:%d: %s", r->cur->host, r->cur->port,
                rep ? (rep->type == REDIS_REPLY_ERROR ? rep->str : "ok") : r->cur->c->errstr);
        if (rep)
            freeReplyObject(rep);
        if (!ok) {
            disconnect(r);
            return -1;
        }
    }
    return 0;
}

int insite_channel_valid(const char *ch)
{
    return ch != NULL && insite_channel_name_valid(ch, strlen(ch));
}

static int parse_reply(const redisReply *rep, insite_publish_result *res,
                       char *err, size_t errlen)
{
    if (rep->type == REDIS_REPLY_ERROR) {
        set_err(err, errlen, "script error: %s", rep->str);
        return -1;
    }
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 3
        || rep->element[0]->type != REDIS_REPLY_INTEGER
        || (rep->element[1]->type != REDIS_REPLY_STRING
            && rep->element[1]->type != REDIS_REPLY_INTEGER)
        || rep->element[2]->type != REDIS_REPLY_INTEGER) {
        set_err(err, errlen, "unexpected reply from the publish script (type %d)", rep->type);
        return -1;
    }
    res->seq = rep->element[0]->integer;
    if (rep->element[1]->type == REDIS_REPLY_STRING)
        snprintf(res->epoch, sizeof(res->epoch), "%s", rep->element[1]->str);
    else
        snprintf(res->epoch, sizeof(res->epoch), "%lld", rep->element[1]->integer);
    res->duplicate = rep->element[2]->integer != 0;
    return 0;
}

/* redis.publish_replicas: WAIT on the connection the publishes (or, for
 * insite_redis_run_replicated(), the commands) ran on.  0 when enough
 * replicas hold every write made on it so far; -1 when too few (the writes
 * ran: a publish may be delivered, and either may be lost if the master
 * fails); -2 when the connection broke (r->cur->c freed).  err says which
 * with "published" or "written". */
/* WAIT for redis.publish_replicas on connection c (named where): 0 (also
 * when off), -1 with fewer replicas in time or an odd reply, -2 when the
 * connection broke (the caller drops it).  publish: the words of err. */
static int wait_on(insite_redis *r, redisContext *c, const char *where, int publish,
                   char *err, size_t errlen)
{
    const char *done = publish ? "published" : "written";

    if (r->replicas == 0)
        return 0;

    redisReply *rep = redisCommand(c, "WAIT %d %d", r->replicas, r->replicas_timeout_ms);

    if (rep == NULL) {
        set_err(err, errlen, "WAIT on %s: %s (%s, replication unknown)", where, c->errstr, done);
        return -2;
    }
    int rc = 0;
    if (rep->type != REDIS_REPLY_INTEGER) {
        set_err(err, errlen, "WAIT on %s: %s (%s, replication unknown)", where,
                rep->type == REDIS_REPLY_ERROR ? rep->str : "unexpected reply", done);
        rc = -1;
    } else if (rep->integer < r->replicas) {
        set_err(err, errlen, "%s, but %lld of %d replicas acknowledged it within %d ms: "
                "it may be lost if the master fails%s", done,
                rep->integer, r->replicas, r->replicas_timeout_ms,
                publish ? "; retry with the same idempotency key" : "");
        rc = -1;
    }
    freeReplyObject(rep);
    return rc;
}

static int wait_replicas(insite_redis *r, int publish, char *err, size_t errlen)
{
    char where[300];

    snprintf(where, sizeof(where), "%s:%d", r->cur->host, r->cur->port);
    int rc = wait_on(r, r->cur->c, where, publish, err, errlen);
    if (rc == -2)
        disconnect(r);
    return rc;
}

/* One EVALSHA (EVAL on NOSCRIPT) on the current connection.  Returns 0,
 * -1 for a definite failure, -2 when the connection broke (r->cur->c freed);
 * *eof tells whether the server closed it (the command did not run). */
static int run_script(insite_redis *r, const char **argv, size_t *lens, int argc,
                      insite_publish_result *res, int *eof, insite_cluster_redirect_t *to,
                      char *err, size_t errlen)
{
    argv[0] = "EVALSHA";
    argv[1] = r->sha;
    lens[0] = 7;
    lens[1] = strlen(r->sha);
    redisReply *rep = redisCommandArgv(r->cur->c, argc, argv, lens);

    if (rep != NULL && rep->type == REDIS_REPLY_ERROR && strncmp(rep->str, "NOSCRIPT", 8) == 0) {
        /* First use on this server, or after SCRIPT FLUSH: EVAL also caches it. */
        freeReplyObject(rep);
        argv[0] = "EVAL";
        argv[1] = INSITE_LUA_PUBLISH;
        lens[0] = 4;
        lens[1] = strlen(INSITE_LUA_PUBLISH);
        rep = redisCommandArgv(r->cur->c, argc, argv, lens);
    }
    if (rep == NULL) {
        *eof = r->cur->c->err == REDIS_ERR_EOF;
        set_err(err, errlen, "%s:%d: %s", r->cur->host, r->cur->port, r->cur->c->errstr);
        disconnect(r);   /* a context with err set is unusable */
        return -2;
    }
    if (to != NULL && rep->type == REDIS_REPLY_ERROR
        && insite_cluster_error(rep->str, rep->len, to) != INSITE_CLUSTER_ERR_NONE) {
        set_err(err, errlen, "%s:%d: %s", r->cur->host, r->cur->port, rep->str);
        freeReplyObject(rep);
        return -3;
    }
    int rc = parse_reply(rep, res, err, errlen);
    freeReplyObject(rep);
    return rc;
}

/* The script's KEYS and ARGV for one message: EVALSHA, sha, numkeys, then
 * what insite_channel_publish_args() (the channel contract) builds. */
typedef struct {
    insite_channel_publish_args_t ca;
    char ts[INSITE_RFC3339_LEN], epoch[17], nkeys[4];
    const char *argv[3 + INSITE_CHANNEL_PUBLISH_ARGS];
    size_t lens[3 + INSITE_CHANNEL_PUBLISH_ARGS];
    int argc;
} publish_args;

/* Checks everything (name, type, key, data) and builds the arguments; the
 * rules are the channel contract's, the same nginx applies. */
static int build_args(insite_redis *r, const insite_publish_msg *m, publish_args *a,
                      char *err, size_t errlen)
{
    insite_channel_publish_t cm;

    if (m->channel == NULL || !insite_channel_valid(m->channel)) {
        set_err(err, errlen, "invalid channel \"%s\": must match [A-Za-z0-9_.:-]{1,128}",
                m->channel ? m->channel : "(null)");
        return -1;
    }
    if (m->type == NULL) {
        set_err(err, errlen, "missing type");
        return -1;
    }
    if (m->data_json == NULL
        || insite_channel_data_check(m->data_json, strlen(m->data_json), err, errlen) != 0) {
        if (m->data_json == NULL)
            set_err(err, errlen, "data is missing");
        return -1;
    }
    if (insite_random_hex(a->epoch, 8) != 0) {
        set_err(err, errlen, "cannot generate an epoch candidate");
        return -1;
    }
    insite_clock_rfc3339(a->ts, sizeof(a->ts));

    memset(&cm, 0, sizeof(cm));
    cm.channel = m->channel;
    cm.channel_len = strlen(m->channel);
    cm.type = m->type;
    cm.type_len = strlen(m->type);
    cm.data = m->data_json;
    cm.data_len = strlen(m->data_json);
    cm.idem = m->idem_key;
    cm.idem_len = m->idem_key ? strlen(m->idem_key) : 0;
    cm.ts = a->ts;
    cm.ts_len = strlen(a->ts);
    cm.epoch = a->epoch;
    cm.epoch_len = strlen(a->epoch);
    cm.history = r->history < 0 ? 0 : (unsigned long) r->history;
    cm.idem_ttl = (unsigned long) r->idem_ttl_s;
    cm.sharded = r->cluster;

    if (insite_channel_publish_args(&a->ca, r->prefix, strlen(r->prefix), &cm, err, errlen) != 0)
        return -1;

    snprintf(a->nkeys, sizeof(a->nkeys), "%d", a->ca.nkeys);
    a->argv[0] = "EVALSHA";
    a->lens[0] = 7;
    a->argv[1] = r->sha;
    a->lens[1] = strlen(r->sha);
    a->argv[2] = a->nkeys;
    a->lens[2] = strlen(a->nkeys);
    for (int i = 0; i < a->ca.nargs; i++) {
        a->argv[3 + i] = a->ca.argv[i];
        a->lens[3 + i] = a->ca.lens[i];
    }
    a->argc = 3 + a->ca.nargs;
    return 0;
}

/* Redis Cluster (redis.cluster) */

static int load_script(insite_redis *r, char *err, size_t errlen);

#define CLUSTER_REDIRECTS   5
#define CLUSTER_BACKOFF_MIN 10      /* ms, doubling */
#define CLUSTER_BACKOFF_MAX 100

/* The slot map from the first node that gives one (CLUSTER SHARDS, or
 * CLUSTER SLOTS before Redis 7), parsed by the slot core shared with nginx;
 * asked first: the node that gave the last one (a dead seed is not tried
 * again on every refresh). */
static int refresh_map(insite_redis *r, char *err, size_t errlen)
{
    insite_redis_node *keep = r->cur;
    insite_cluster_map_t *map = malloc(sizeof(*map));
    int found = 0;

    if (map == NULL) {
        set_err(err, errlen, "out of memory");
        return -1;
    }
    for (int k = 0; k < r->nnodes && !found; k++) {
        int i = (r->map_from + k) % r->nnodes;
        r->cur = &r->nodes[i];
        if (connect_redis(r, err, errlen) != 0)
            continue;
        int slots = 0;
        redisReply *rep = redisCommand(r->cur->c, "CLUSTER SHARDS");
        if (rep != NULL && rep->type == REDIS_REPLY_ERROR) {
            freeReplyObject(rep);
            rep = redisCommand(r->cur->c, "CLUSTER SLOTS");
            slots = 1;
        }
        if (rep == NULL) {
            set_err(err, errlen, "%s:%d: %s", r->cur->host, r->cur->port, r->cur->c->errstr);
            disconnect(r);
            continue;
        }
        int rc = slots ? insite_cluster_map_from_slots(map, rep, err, errlen)
                       : insite_cluster_map_from_shards(map, rep, err, errlen);
        freeReplyObject(rep);
        if (rc != 0)
            continue;
        int idx[INSITE_CLUSTER_NODES_MAX];
        for (unsigned n = 0; n < map->nnodes; n++)
            idx[n] = map->nodes[n].host[0] == '\0' ? -1
                     : add_node(r, map->nodes[n].host, map->nodes[n].port);
        for (unsigned s = 0; s < INSITE_CLUSTER_SLOTS; s++)
            r->route[s] = map->owner[s] < 0 ? -1 : (int16_t) idx[map->owner[s]];
        r->map_from = i;
        found = 1;
    }
    free(map);
    r->cur = keep;
    r->have_map = found;
    if (!found)
        insite_log_warn("redis: no cluster node gave its slot map: %s", err);
    return found ? 0 : -1;
}

/* One step on the node a command is routed to (r->cur, connected):
 * 0 done, -1 refused (err), -2 the connection broke (r->cur->c freed; *eof:
 * the server closed it, so the command did not run), -3 a redirect or a
 * retryable cluster error (*to). */
typedef int (*cluster_step_pt)(insite_redis *r, void *data, int *eof,
                               insite_cluster_redirect_t *to, char *err, size_t errlen);

/* Runs step on the owner of slot: MOVED re-routes and resends, ASK resends
 * once with ASKING, TRYAGAIN / CLUSTERDOWN / a node that cannot be reached
 * wait (10 ms doubling to 100 ms) and resend, all within command_timeout.
 * A step whose connection broke after it was sent is resent only when
 * resend_lost (it can run twice) or the server closed the connection first.
 * script: load publish.lua on the node first.  Returns 0 (r->cur is the
 * node that ran it), -1 (refused, or no node could take it) or -2 (sent,
 * outcome unknown: err ends with " (outcome unknown: <unknown>)"). */
static int cluster_route(insite_redis *r, unsigned slot, int script, int resend_lost,
                         const char *unknown, cluster_step_pt step, void *data,
                         char *err, size_t errlen)
{
    int64_t deadline = insite_clock_mono_ms() + r->command_timeout_ms;
    int ask = -1, redirects = 0, backoff = CLUSTER_BACKOFF_MIN, moved = 0;
    insite_cluster_redirect_t to;

    for (;;) {
        int idx = -1;
        if (ask < 0 && !r->have_map)
            (void) refresh_map(r, err, errlen);
        idx = ask >= 0 ? ask : r->route[slot];
        if (idx < 0) {
            if (r->have_map)
                set_err(err, errlen, "slot %u has no master in the cluster's map", slot);
            r->have_map = 0;
            goto wait;
        }
        r->cur = &r->nodes[idx];
        /* loaded before ASKING, which holds for one command only: EVALSHA
           must not meet NOSCRIPT there */
        if (connect_redis(r, err, errlen) != 0
            || (script && !r->cur->loaded && load_script(r, err, errlen) != 0)) {
            r->have_map = 0;
            goto wait;
        }
        if (ask >= 0) {
            redisReply *x = redisCommand(r->cur->c, "ASKING");
            ask = -1;
            if (x == NULL) {
                set_err(err, errlen, "%s:%d: %s", r->cur->host, r->cur->port, r->cur->c->errstr);
                disconnect(r);
                goto wait;
            }
            freeReplyObject(x);
        }

        int eof = 0;
        int rc = step(r, data, &eof, &to, err, errlen);

        if (rc == 0) {
            if (moved)
                (void) refresh_map(r, err, errlen);   /* other slots moved too */
            return 0;
        }
        if (rc == -1)
            return -1;
        if (rc == -2) {
            r->have_map = 0;
            if (!eof && !resend_lost) {
                size_t n = strlen(err);
                set_err(err + n, errlen - n, " (outcome unknown: %s)", unknown);
                return -2;
            }
            goto wait;
        }

        /* rc == -3: a redirect or a retryable cluster error */
        switch (to.kind) {
        case INSITE_CLUSTER_ERR_MOVED:
        case INSITE_CLUSTER_ERR_ASK:
            if (++redirects > CLUSTER_REDIRECTS) {
                size_t n = strlen(err);
                set_err(err + n, errlen - n, " (%d redirects, giving up)", redirects - 1);
                return -1;
            }
            idx = add_node(r, to.host[0] ? to.host : r->cur->host, to.port);
            if (idx < 0)
                return -1;
            if (to.kind == INSITE_CLUSTER_ERR_MOVED) {
                r->route[to.slot] = (int16_t) idx;
                moved = 1;
            } else {
                ask = idx;
            }
            continue;
        case INSITE_CLUSTER_ERR_CLUSTERDOWN:
            r->have_map = 0;
            break;
        default:                    /* TRYAGAIN */
            break;
        }

    wait:
        if (insite_clock_mono_ms() + backoff > deadline) {
            size_t n = strlen(err);
            set_err(err + n, errlen - n, " (cluster: gave up after redis.command_timeout)");
            return -1;
        }
        usleep((useconds_t) backoff * 1000);
        backoff = backoff * 2 > CLUSTER_BACKOFF_MAX ? CLUSTER_BACKOFF_MAX : backoff * 2;
    }
}

typedef struct {
    publish_args *a;
    insite_publish_result *res;
} publish_step_ctx;

static int publish_step(insite_redis *r, void *data, int *eof, insite_cluster_redirect_t *to,
                        char *err, size_t errlen)
{
    publish_step_ctx *x = data;

    x->a->argv[0] = "EVALSHA";
    x->a->argv[1] = r->sha;
    x->a->lens[0] = 7;
    x->a->lens[1] = strlen(r->sha);
    return run_script(r, x->a->argv, x->a->lens, x->a->argc, x->res, eof, to, err, errlen);
}

/* One publish routed by its channel's slot (cluster_route); resent after a
 * lost connection only with an idempotency key.  Returns 0, -1 (refused, or
 * no node could take it) or -2 (sent, outcome unknown; or published but too
 * few replicas). */
static int cluster_publish(insite_redis *r, publish_args *a, const char *idem_key,
                           insite_publish_result *res, char *err, size_t errlen)
{
    publish_step_ctx x = { a, res };
    unsigned slot = insite_cluster_key_slot(a->argv[3], a->lens[3]);
    int rc = cluster_route(r, slot, 1, idem_key != NULL,
                           "the message may have been published", publish_step, &x,
                           err, errlen);

    if (rc != 0)
        return rc;
    return wait_replicas(r, 1, err, errlen) == 0 ? 0 : -2;
}

int insite_redis_publish(insite_redis *r, const char *channel, const char *type,
                         const char *data_json, const char *idem_key,
                         insite_publish_result *res, char *err, size_t errlen)
{
    insite_publish_msg m = { channel, type, data_json, idem_key };
    publish_args a;
    int rc = -1;

    if (build_args(r, &m, &a, err, errlen) != 0)
        return -1;

    pthread_mutex_lock(&r->lock);
    if (r->cluster) {
        rc = cluster_publish(r, &a, idem_key, res, err, errlen);
        pthread_mutex_unlock(&r->lock);
        return rc == 0 ? 0 : -1;
    }
    for (int attempt = 0; attempt < 2; attempt++) {
        int eof = 0;
        if (connect_redis(r, err, errlen) != 0)
            break;
        rc = run_script(r, a.argv, a.lens, a.argc, res, &eof, NULL, err, errlen);
        if (rc == 0 && wait_replicas(r, 1, err, errlen) != 0)
            rc = -1;
        if (rc != -2)
            break;
        /* Stale connection (server restarted) or idempotent: safe to retry. */
        if (attempt == 0 && (eof || idem_key != NULL)) {
            insite_log_warn("redis: %s; reconnecting and retrying once", err);
            a.argv[0] = "EVALSHA";
            a.argv[1] = r->sha;
            a.lens[0] = 7;
            a.lens[1] = strlen(r->sha);
            continue;
        }
        if (!eof && idem_key == NULL) {
            size_t n = strlen(err);
            set_err(err + n, errlen - n, " (outcome unknown: the message may have been published)");
        }
        break;
    }
    pthread_mutex_unlock(&r->lock);
    return rc == 0 ? 0 : -1;
}

/* SCRIPT LOAD on the current connection, so a pipeline of EVALSHA cannot
 * meet NOSCRIPT halfway (short of a SCRIPT FLUSH in between). */
static int load_script(insite_redis *r, char *err, size_t errlen)
{
    redisReply *rep = redisCommand(r->cur->c, "SCRIPT LOAD %s", INSITE_LUA_PUBLISH);

    if (rep == NULL) {
        set_err(err, errlen, "SCRIPT LOAD on %s:%d: %s", r->cur->host, r->cur->port, r->cur->c->errstr);
        disconnect(r);
        return -1;
    }
    int ok = rep->type == REDIS_REPLY_STRING && strcmp(rep->str, r->sha) == 0;
    r->cur->loaded = ok;
    if (!ok)
        set_err(err, errlen, "SCRIPT LOAD on %s:%d: %s", r->cur->host, r->cur->port,
                rep->type == REDIS_REPLY_ERROR ? rep->str : "unexpected digest");
    freeReplyObject(rep);
    return ok ? 0 : -1;
}

int insite_redis_publish_batch(insite_redis *r, const insite_publish_msg *msgs, size_t n,
                               insite_publish_result *res, int *rcs, char *err, size_t errlen)
{
    publish_args a;
    size_t i, sent = 0, published = 0;
    int rc = 0;

    pthread_mutex_lock(&r->lock);
    if (r->cluster) {
        /* one at a time, each to its channel's shard */
        for (i = 0; i < n; i++) {
            char why[256];
            rcs[i] = -1;
            if (build_args(r, &msgs[i], &a, why, sizeof(why)) != 0
                || (rcs[i] = cluster_publish(r, &a, msgs[i].idem_key, &res[i], why,
                                             sizeof(why))) != 0) {
                insite_log_warn("redis: publish to %s failed: %s",
                                msgs[i].channel ? msgs[i].channel : "(null)", why);
                continue;
            }
            published++;
        }
        pthread_mutex_unlock(&r->lock);
        return (int) published;
    }
    if (connect_redis(r, err, errlen) != 0 || load_script(r, err, errlen) != 0) {
        for (i = 0; i < n; i++)
            rcs[i] = -1;
        pthread_mutex_unlock(&r->lock);
        return -1;
    }

    for (i = 0; i < n; i++) {
        char why[256];
        rcs[i] = -1;
        if (build_args(r, &msgs[i], &a, why, sizeof(why)) != 0) {
            insite_log_warn("redis: not publishing to %s: %s",
                            msgs[i].channel ? msgs[i].channel : "(null)", why);
            continue;
        }
        /* hiredis formats the command now: the buffers can be reused */
        if (redisAppendCommandArgv(r->cur->c, a.argc, a.argv, a.lens) != REDIS_OK) {
            set_err(err, errlen, "out of memory");
            rc = -1;
            break;
        }
        rcs[i] = 1;          /* sent, awaiting its reply */
        sent++;
    }

    for (i = 0; i < n && sent > 0 && rc == 0; i++) {
        redisReply *rep;
        if (rcs[i] != 1)
            continue;
        if (redisGetReply(r->cur->c, (void **) &rep) != REDIS_OK || rep == NULL) {
            set_err(err, errlen, "%s:%d: %s (outcome unknown for the rest of the batch)",
                    r->cur->host, r->cur->port, r->cur->c->errstr);
            disconnect(r);
            rc = -1;
            break;
        }
        char why[256];
        rcs[i] = parse_reply(rep, &res[i], why, sizeof(why));
        if (rcs[i] != 0)
            insite_log_warn("redis: publish to %s failed: %s", msgs[i].channel, why);
        else
            published++;
        freeReplyObject(rep);
        sent--;
    }
    for (; i < n; i++)
        if (rcs[i] == 1)
            rcs[i] = -2;     /* the connection broke before its reply */
    if (rc == 0 && published > 0 && wait_replicas(r, 1, err, errlen) != 0) {
        /* published, but not (known to be) on enough replicas */
        for (i = 0; i < n; i++)
            if (rcs[i] == 0)
                rcs[i] = -2;
        published = 0;
        rc = -1;
    }
    pthread_mutex_unlock(&r->lock);
    return rc == 0 ? (int) published : -1;
}

int insite_redis_ping(insite_redis *r, char *err, size_t errlen)
{
    int rc = -1;

    pthread_mutex_lock(&r->lock);
    for (int i = 0; r->cluster && i < r->nnodes; i++) {
        /* any node: the cluster answers when one of them does */
        r->cur = &r->nodes[i];
        if (connect_redis(r, err, errlen) == 0)
            break;
    }
    if (connect_redis(r, err, errlen) == 0) {
        redisReply *rep = redisCommand(r->cur->c, "PING");
        if (rep == NULL) {
            set_err(err, errlen, "%s:%d: %s", r->cur->host, r->cur->port, r->cur->c->errstr);
            disconnect(r);
        } else {
            rc = rep->type == REDIS_REPLY_ERROR ? -1 : 0;
            if (rc != 0)
                set_err(err, errlen, "%s:%d: %s", r->cur->host, r->cur->port, rep->str);
            freeReplyObject(rep);
        }
    }
    pthread_mutex_unlock(&r->lock);
    return rc;
}


/* ---- other commands, routed like publishes ---- */

typedef struct {
    const insite_redis_cmd *cmds;
    size_t n;
    int wait;                    /* WAIT for redis.publish_replicas after */
    int unreplicated;            /* they ran, too few replicas have them */
    redisReply *reply;
} cmds_step_ctx;

/* cmds on r->cur: the one command, or MULTI cmds EXEC; keeps the last
 * reply (the command's, or EXEC's) in x->reply.  With x->wait, then WAIT
 * on the same connection: too few replicas is -1 (x->unreplicated), the
 * connection lost during it -2 like a lost command (they can run again). */
static int cmds_step(insite_redis *r, void *data, int *eof, insite_cluster_redirect_t *to,
                     char *err, size_t errlen)
{
    cmds_step_ctx *x = data;
    int multi = x->n > 1, rc = 0;
    size_t nrep = x->n + (multi ? 2 : 0);

    if (multi && redisAppendCommand(r->cur->c, "MULTI") != REDIS_OK)
        goto oom;
    for (size_t i = 0; i < x->n; i++)
        if (redisAppendCommandArgv(r->cur->c, x->cmds[i].argc, x->cmds[i].argv,
                                   x->cmds[i].lens) != REDIS_OK)
            goto oom;
    if (multi && redisAppendCommand(r->cur->c, "EXEC") != REDIS_OK)
        goto oom;

    for (size_t i = 0; i < nrep; i++) {
        redisReply *rep;
        if (redisGetReply(r->cur->c, (void **) &rep) != REDIS_OK || rep == NULL) {
            *eof = r->cur->c->err == REDIS_ERR_EOF;
            set_err(err, errlen, "%s:%d: %s", r->cur->host, r->cur->port, r->cur->c->errstr);
            disconnect(r);
            return -2;
        }
        if (rc == 0 && rep->type == REDIS_REPLY_ERROR) {
            /* a queued command redirected: EXEC will abort, resend all */
            rc = to != NULL && insite_cluster_error(rep->str, rep->len, to)
                               != INSITE_CLUSTER_ERR_NONE ? -3 : -1;
            set_err(err, errlen, "%s:%d: %s", r->cur->host, r->cur->port, rep->str);
        } else if (rc == 0 && i == nrep - 1 && multi && rep->type != REDIS_REPLY_ARRAY) {
            set_err(err, errlen, "%s:%d: transaction aborted", r->cur->host, r->cur->port);
            rc = -1;
        }
        if (rc == 0 && i == nrep - 1) {
            x->reply = rep;
            continue;
        }
        freeReplyObject(rep);
    }
    if (rc != 0 || !x->wait)
        return rc;
    rc = wait_replicas(r, 0, err, errlen);
    if (rc == -1)
        x->unreplicated = 1;
    if (rc != 0) {
        freeReplyObject(x->reply);
        x->reply = NULL;
    }
    return rc;

oom:
    set_err(err, errlen, "out of memory");
    disconnect(r);               /* half a command may be in its buffer */
    return -1;
}

static redisReply *run_cmds(insite_redis *r, const char *key, size_t keylen,
                            const insite_redis_cmd *cmds, size_t n, int wait,
                            int *unreplicated, char *err, size_t errlen)
{
    cmds_step_ctx x = { cmds, n, wait, 0, NULL };
    int rc = -1;

    if (n == 0) {
        set_err(err, errlen, "no command");
        return NULL;
    }
    pthread_mutex_lock(&r->lock);
    if (r->cluster) {
        rc = cluster_route(r, insite_cluster_key_slot(key, keylen), 0, 1,
                           "it may have run", cmds_step, &x, err, errlen);
    } else {
        for (int attempt = 0; attempt < 2 && rc != 0; attempt++) {
            int eof = 0;
            if (connect_redis(r, err, errlen) != 0)
                break;
            rc = cmds_step(r, &x, &eof, NULL, err, errlen);
            if (rc != -2)
                break;          /* resent once after a lost connection */
        }
    }
    pthread_mutex_unlock(&r->lock);
    if (rc != 0 && x.reply != NULL) {
        freeReplyObject(x.reply);
        x.reply = NULL;
    }
    if (unreplicated != NULL)
        *unreplicated = x.reply == NULL && x.unreplicated;
    return x.reply;
}

redisReply *insite_redis_run(insite_redis *r, const char *key, size_t keylen,
                             const insite_redis_cmd *cmds, size_t n,
                             char *err, size_t errlen)
{
    return run_cmds(r, key, keylen, cmds, n, 0, NULL, err, errlen);
}

redisReply *insite_redis_run_replicated(insite_redis *r, const char *key, size_t keylen,
                                        const insite_redis_cmd *cmds, size_t n,
                                        int *unreplicated, char *err, size_t errlen)
{
    return run_cmds(r, key, keylen, cmds, n, 1, unreplicated, err, errlen);
}

const char *insite_redis_publish_command(const insite_redis *r)
{
    return r->cluster ? "SPUBLISH" : "PUBLISH";
}


/* ---- per master (SCAN, a marker on every shard) ---- */

/* the smallest decimal hash tag of slot (tags below 110,000 cover every
 * slot; 16,384 tries on average), kept on the node */
static const char *slot_tag(insite_redis_node *n, unsigned slot)
{
    if (n->tag_slot == (int) slot)
        return n->tag;
    for (unsigned long i = 0; i < 1000000; i++) {
        int len = snprintf(n->tag, sizeof(n->tag), "%lu", i);
        if (insite_cluster_key_slot(n->tag, (size_t) len) == slot) {
            n->tag_slot = (int) slot;
            return n->tag;
        }
    }
    n->tag_slot = -1;              /* not reached: see above */
    snprintf(n->tag, sizeof(n->tag), "0");
    return n->tag;
}

/* the masters (node indexes) with the lowest slot of each, from a map
 * read now; the one node of a single Redis with slot 0.  Lock held. */
static int list_masters(insite_redis *r, int *idx, unsigned *slot, int *n,
                        char *err, size_t errlen)
{
    *n = 0;
    if (!r->cluster) {
        idx[0] = 0;
        slot[0] = 0;
        *n = 1;
        return 0;
    }
    if (refresh_map(r, err, errlen) != 0)
        return -1;
    for (unsigned s = 0; s < INSITE_CLUSTER_SLOTS; s++) {
        int k, m = r->route[s];
        if (m < 0) {
            set_err(err, errlen, "slot %u has no master in the cluster's map", s);
            r->have_map = 0;
            return -1;
        }
        for (k = 0; k < *n && idx[k] != m; k++)
            ;
        if (k == *n) {
            idx[k] = m;
            slot[k] = s;
            (*n)++;
        }
    }
    return 0;
}

int insite_redis_each_master(insite_redis *r, insite_redis_master_pt cb, void *arg,
                             char *err, size_t errlen)
{
    int idx[INSITE_CLUSTER_NODES_MAX], n;
    unsigned slot[INSITE_CLUSTER_NODES_MAX];

    pthread_mutex_lock(&r->lock);
    int rc = list_masters(r, idx, slot, &n, err, errlen);
    pthread_mutex_unlock(&r->lock);
    if (rc != 0)
        return -1;

    for (int k = 0; k < n; k++) {
        insite_redis_node *node = &r->nodes[idx[k]];
        char name[INSITE_CLUSTER_HOST_MAX + 16], tag[sizeof(node->tag)];
        insite_redis_master m = { NULL, name, tag };

        /* the node's connection is lent to cb: taken from the node, so
           other callers open their own meanwhile */
        pthread_mutex_lock(&r->lock);
        insite_redis_node *keep = r->cur;
        r->cur = node;
        if (connect_redis(r, err, errlen) == 0) {
            m.c = node->c;
            node->c = NULL;
            node->loaded = 0;
        }
        r->cur = keep;
        snprintf(name, sizeof(name), "%s:%d", node->host, node->port);
        snprintf(tag, sizeof(tag), "%s", slot_tag(node, slot[k]));
        pthread_mutex_unlock(&r->lock);
        if (m.c == NULL)
            return -1;

        rc = cb(&m, arg, err, errlen);

        pthread_mutex_lock(&r->lock);
        if (m.c->err == 0 && node->c == NULL)
            node->c = m.c;         /* given back */
        else
            redisFree(m.c);
        pthread_mutex_unlock(&r->lock);
        if (rc != 0)
            return -1;
    }
    return 0;
}

redisReply *insite_redis_master_run(insite_redis *r, const insite_redis_master *m,
                                    const char *key, size_t keylen,
                                    const insite_redis_cmd *cmd, char *err, size_t errlen)
{
    insite_cluster_redirect_t to;
    redisReply *rep = redisCommandArgv(m->c, cmd->argc, cmd->argv, cmd->lens);

    if (rep == NULL) {
        set_err(err, errlen, "%s: %s", m->name, m->c->errstr);
        return NULL;
    }
    if (rep->type != REDIS_REPLY_ERROR)
        return rep;
    if (r->cluster && insite_cluster_error(rep->str, rep->len, &to) != INSITE_CLUSTER_ERR_NONE) {
        /* the key's slot is served elsewhere now: routed, and waited for
         * there, since insite_redis_master_wait() sees only m->c */
        freeReplyObject(rep);
        return insite_redis_run_replicated(r, key, keylen, cmd, 1, NULL, err, errlen);
    }
    set_err(err, errlen, "%s: %s", m->name, rep->str);
    freeReplyObject(rep);
    return NULL;
}

int insite_redis_master_wait(insite_redis *r, const insite_redis_master *m,
                             char *err, size_t errlen)
{
    return wait_on(r, m->c, m->name, 0, err, errlen) == 0 ? 0 : -1;
}
