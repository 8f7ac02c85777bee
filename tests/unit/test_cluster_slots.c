/*
 * Unit tests for the Redis Cluster routing core
 * (ngx_insite_core/insite_cluster_slots.c): CRC16 against the cluster
 * spec's vectors, slot maps from a real cluster's CLUSTER SHARDS and
 * CLUSTER SLOTS, MOVED and ASK from a real cluster with a slot
 * mid-migration, the routing key of formatted commands.
 *
 * The cluster is three redis-server masters started here on free loopback
 * ports in a temp dir (slots assigned with ADDSLOTSRANGE, joined with
 * CLUSTER MEET), stopped at the end.
 */
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <hiredis/hiredis.h>

#include "../../ngx_insite_core/insite_cluster_slots.h"
#include "log.h"
#include "redis_publish.h"


#define NODES 3

static pid_t          pids[NODES];
static int            ports[NODES];
static int            buses[NODES];
static redisContext  *ctx[NODES];
static char           tmpdir[64];


static int
free_port(void)
{
    struct sockaddr_in a = { .sin_family = AF_INET,
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    if (fd < 0 || bind(fd, (struct sockaddr *) &a, sizeof(a)) != 0
        || getsockname(fd, (struct sockaddr *) &a, &len) != 0)
    {
        return -1;
    }
    close(fd);
    return ntohs(a.sin_port);
}


static void
msleep(int ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}


static redisReply *
cmd(int node, const char *fmt, ...)
{
    va_list      ap;
    redisReply  *r;

    va_start(ap, fmt);
    r = redisvCommand(ctx[node], fmt, ap);
    va_end(ap);
    assert_non_null(r);
    return r;
}


static int
node_of_port(int port)
{
    int  i;

    for (i = 0; i < NODES; i++) {
        if (ports[i] == port) {
            return i;
        }
    }
    return -1;
}


static int
cluster_ok(void)
{
    int          i, ok = 1;
    redisReply  *r;

    for (i = 0; i < NODES; i++) {
        r = redisCommand(ctx[i], "CLUSTER INFO");
        if (r == NULL || r->type != REDIS_REPLY_STRING
            || strstr(r->str, "cluster_state:ok") == NULL
            || strstr(r->str, "cluster_known_nodes:3") == NULL)
        {
            ok = 0;
        }
        freeReplyObject(r);
    }
    return ok;
}


static int
start_cluster(void **state)
{
    int          i, j, bus;
    char         dir[128], conf[160], p[16], b[16];
    redisReply  *r;
    struct timeval tv = { 2, 0 };
    static const int range[NODES][2] = { { 0, 5460 }, { 5461, 10922 },
                                         { 10923, 16383 } };

    snprintf(tmpdir, sizeof(tmpdir), "/tmp/insite-cluster-unit-XXXXXX");
    if (mkdtemp(tmpdir) == NULL) {
        return -1;
    }

    for (i = 0; i < NODES; i++) {
        ports[i] = free_port();
        bus = buses[i] = free_port();
        snprintf(dir, sizeof(dir), "%s/n%d", tmpdir, i);
        mkdir(dir, 0700);
        snprintf(conf, sizeof(conf), "%s/nodes.conf", dir);
        snprintf(p, sizeof(p), "%d", ports[i]);
        snprintf(b, sizeof(b), "%d", bus);

        pids[i] = fork();
        if (pids[i] == 0) {
            int fd = open("/dev/null", 1);
            dup2(fd, 1);
            dup2(fd, 2);
            execlp("redis-server", "redis-server", "--port", p,
                   "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                   "--dir", dir, "--cluster-enabled", "yes",
                   "--cluster-config-file", conf, "--cluster-port", b,
                   "--cluster-node-timeout", "5000", (char *) NULL);
            _exit(127);
        }
    }

    for (i = 0; i < NODES; i++) {
        for (j = 0; j < 500; j++) {
            ctx[i] = redisConnectWithTimeout("127.0.0.1", ports[i], tv);
            if (ctx[i] && !ctx[i]->err) {
                r = redisCommand(ctx[i], "PING");
                if (r && r->type == REDIS_REPLY_STATUS) {
                    freeReplyObject(r);
                    break;
                }
                freeReplyObject(r);
            }
            if (ctx[i]) {
                redisFree(ctx[i]);
                ctx[i] = NULL;
            }
            msleep(20);
        }
        if (ctx[i] == NULL) {
            fprintf(stderr, "redis-server on %d did not start\n", ports[i]);
            return -1;
        }

        r = redisCommand(ctx[i], "CLUSTER ADDSLOTSRANGE %d %d",
                         range[i][0], range[i][1]);
        freeReplyObject(r);
    }

    for (i = 1; i < NODES; i++) {
        r = redisCommand(ctx[0], "CLUSTER MEET 127.0.0.1 %d %d", ports[i],
                         buses[i]);
        freeReplyObject(r);
    }

    for (j = 0; j < 600 && !cluster_ok(); j++) {
        msleep(50);
    }

    if (!cluster_ok()) {
        fprintf(stderr, "cluster not ok after 30s\n");
        return -1;
    }

    return 0;
}


static int
stop_cluster(void **state)
{
    int   i;
    char  rm[128];

    for (i = 0; i < NODES; i++) {
        if (ctx[i]) {
            redisFree(ctx[i]);
        }
        if (pids[i] > 0) {
            kill(pids[i], SIGKILL);
            waitpid(pids[i], NULL, 0);
        }
    }

    snprintf(rm, sizeof(rm), "rm -rf %s", tmpdir);
    return system(rm) == 0 ? 0 : -1;
}


/* the cluster spec: CRC16("123456789") = 0x31C3; slots as Redis' own
 * CLUSTER KEYSLOT computes them (asked below too) */
static void
test_crc16_vectors(void **state)
{
    assert_int_equal(insite_cluster_crc16("123456789", 9), 0x31C3);
    assert_int_equal(insite_cluster_crc16("", 0), 0);
    assert_int_equal(insite_cluster_key_slot("123456789", 9), 12739);
    assert_int_equal(insite_cluster_key_slot("foo{bar}", 8),
                     insite_cluster_key_slot("bar", 3));
    assert_int_equal(insite_cluster_key_slot("bar", 3), 5061);
    /* empty tag: the whole key; only the first tag counts */
    assert_int_equal(insite_cluster_key_slot("{}x", 3), 10595);
    assert_int_equal(insite_cluster_key_slot("{}", 2), 15257);
    assert_int_equal(insite_cluster_key_slot("a{b}{c}", 7),
                     insite_cluster_key_slot("b", 1));
    assert_int_equal(insite_cluster_key_slot("a{b", 3),
                     insite_cluster_key_slot("a{b", 3));
    assert_int_equal(insite_cluster_key_slot("insite:{AAPL}:seq", 17),
                     insite_cluster_key_slot("insite:{AAPL}:hist", 18));
}


/* every slot Redis computes for 2000 keys (tags, binary) equals ours */
static void
test_keyslot_agrees_with_redis(void **state)
{
    int          i;
    char         key[64];
    size_t       len;
    redisReply  *r;

    for (i = 0; i < 2000; i++) {
        len = (size_t) snprintf(key, sizeof(key),
                                i % 3 == 0 ? "insite:{ch.%d}:seq"
                                : i % 3 == 1 ? "k%d\xff{" : "{}%d}{x", i);
        r = cmd(0, "CLUSTER KEYSLOT %b", key, len);
        assert_int_equal(r->type, REDIS_REPLY_INTEGER);
        assert_int_equal(insite_cluster_key_slot(key, len), r->integer);
        freeReplyObject(r);
    }
}


/* the map built from each node's CLUSTER SHARDS and CLUSTER SLOTS routes
 * every one of 300 keys to the node that serves it without a redirect */
static void
check_map_routes(insite_cluster_map_t *m)
{
    int          i, owner, node;
    char         key[32];
    size_t       len;
    redisReply  *r;

    assert_int_equal(m->nmasters, 3);

    for (i = 0; i < INSITE_CLUSTER_SLOTS; i++) {
        assert_true(m->owner[i] >= 0);
    }

    for (i = 0; i < 300; i++) {
        len = (size_t) snprintf(key, sizeof(key), "{route%d}", i);
        owner = m->owner[insite_cluster_key_slot(key, len)];
        node = node_of_port(m->nodes[owner].port);
        assert_true(node >= 0);
        assert_string_equal(m->nodes[owner].host, "127.0.0.1");

        r = cmd(node, "SET %b 1", key, len);
        assert_int_equal(r->type, REDIS_REPLY_STATUS);
        freeReplyObject(r);
    }
}


static void
test_map_from_real_cluster(void **state)
{
    int                    i;
    char                   err[128];
    redisReply            *r;
    insite_cluster_map_t  *m = malloc(sizeof(*m));

    assert_non_null(m);

    for (i = 0; i < NODES; i++) {
        r = cmd(i, "CLUSTER SHARDS");
        assert_int_equal(insite_cluster_map_from_shards(m, r, err,
                                                        sizeof(err)), 0);
        freeReplyObject(r);
        check_map_routes(m);
        assert_int_equal(m->nnodes, 3);
        assert_int_equal(insite_cluster_map_reader(m, 0, 7), m->owner[0]);

        r = cmd(i, "CLUSTER SLOTS");
        assert_int_equal(insite_cluster_map_from_slots(m, r, err,
                                                       sizeof(err)), 0);
        freeReplyObject(r);
        check_map_routes(m);
    }

    /* the wrong reply for each parser: an error, not a map */
    r = cmd(0, "CLUSTER SLOTS");
    assert_int_equal(insite_cluster_map_from_shards(m, r, err, sizeof(err)),
                     -1);
    freeReplyObject(r);
    r = cmd(0, "PING");
    assert_int_equal(insite_cluster_map_from_slots(m, r, err, sizeof(err)),
                     -1);
    assert_non_null(strstr(err, "not an array"));
    freeReplyObject(r);

    free(m);
}


/*
 * A slot mid-migration on a real cluster: a migrated key gets ASK from the
 * source, a key still there is served, the target answers MOVED without
 * ASKING and the value with it; once the slot is handed over, the source
 * answers MOVED to the target.
 */
static void
test_moved_and_ask_mid_migration(void **state)
{
    int                        src, dst, n;
    char                       id_src[64], id_dst[64];
    unsigned                   slot;
    redisReply                *r;
    insite_cluster_redirect_t  rd;

    slot = insite_cluster_key_slot("{mig}", 5);
    src = slot <= 5460 ? 0 : slot <= 10922 ? 1 : 2;
    dst = (src + 1) % NODES;

    r = cmd(src, "CLUSTER MYID");
    snprintf(id_src, sizeof(id_src), "%s", r->str);
    freeReplyObject(r);
    r = cmd(dst, "CLUSTER MYID");
    snprintf(id_dst, sizeof(id_dst), "%s", r->str);
    freeReplyObject(r);

    freeReplyObject(cmd(src, "SET {mig}a moved"));
    freeReplyObject(cmd(src, "SET {mig}b stays"));

    /* the target without the slot: MOVED back to the owner */
    r = cmd(dst, "GET {mig}a");
    assert_int_equal(r->type, REDIS_REPLY_ERROR);
    assert_int_equal(insite_cluster_error(r->str, r->len, &rd),
                     INSITE_CLUSTER_ERR_MOVED);
    assert_int_equal(rd.slot, slot);
    assert_int_equal(rd.port, ports[src]);
    assert_string_equal(rd.host, "127.0.0.1");
    freeReplyObject(r);

    r = cmd(dst, "CLUSTER SETSLOT %u IMPORTING %s", slot, id_src);
    assert_int_equal(r->type, REDIS_REPLY_STATUS);
    freeReplyObject(r);
    r = cmd(src, "CLUSTER SETSLOT %u MIGRATING %s", slot, id_dst);
    assert_int_equal(r->type, REDIS_REPLY_STATUS);
    freeReplyObject(r);
    r = cmd(src, "MIGRATE 127.0.0.1 %d {mig}a 0 5000", ports[dst]);
    assert_int_equal(r->type, REDIS_REPLY_STATUS);
    freeReplyObject(r);

    /* a key still on the source: served there */
    r = cmd(src, "GET {mig}b");
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    assert_string_equal(r->str, "stays");
    freeReplyObject(r);

    /* a migrated key: ASK to the target */
    r = cmd(src, "GET {mig}a");
    assert_int_equal(r->type, REDIS_REPLY_ERROR);
    assert_int_equal(insite_cluster_error(r->str, r->len, &rd),
                     INSITE_CLUSTER_ERR_ASK);
    assert_int_equal(rd.slot, slot);
    assert_int_equal(rd.port, ports[dst]);
    freeReplyObject(r);

    /* the target: MOVED without ASKING, the value with it */
    r = cmd(dst, "GET {mig}a");
    assert_int_equal(insite_cluster_error(r->str, r->len, &rd),
                     INSITE_CLUSTER_ERR_MOVED);
    assert_int_equal(rd.port, ports[src]);
    freeReplyObject(r);

    freeReplyObject(cmd(dst, "ASKING"));
    r = cmd(dst, "GET {mig}a");
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    assert_string_equal(r->str, "moved");
    freeReplyObject(r);

    /* a multi-key command over both halves: TRYAGAIN */
    r = cmd(src, "MGET {mig}a {mig}b");
    assert_int_equal(r->type, REDIS_REPLY_ERROR);
    assert_int_equal(insite_cluster_error(r->str, r->len, &rd),
                     INSITE_CLUSTER_ERR_TRYAGAIN);
    freeReplyObject(r);

    /* hand the slot over: the source now answers MOVED to the target */
    r = cmd(src, "MIGRATE 127.0.0.1 %d {mig}b 0 5000", ports[dst]);
    freeReplyObject(r);
    for (n = 0; n < NODES; n++) {
        freeReplyObject(cmd(n, "CLUSTER SETSLOT %u NODE %s", slot, id_dst));
    }

    r = cmd(src, "GET {mig}b");
    assert_int_equal(insite_cluster_error(r->str, r->len, &rd),
                     INSITE_CLUSTER_ERR_MOVED);
    assert_int_equal(rd.port, ports[dst]);
    freeReplyObject(r);
}


static void
test_error_texts(void **state)
{
    insite_cluster_redirect_t  rd;

#define E(s) insite_cluster_error(s, sizeof(s) - 1, &rd)
    assert_int_equal(E("MOVED 3999 127.0.0.1:6381"), INSITE_CLUSTER_ERR_MOVED);
    assert_int_equal(rd.slot, 3999);
    assert_int_equal(rd.port, 6381);
    assert_int_equal(E("ASK 0 ::1:7000"), INSITE_CLUSTER_ERR_ASK);
    assert_string_equal(rd.host, "::1");
    assert_int_equal(rd.port, 7000);
    assert_int_equal(E("MOVED 3999 :6380"), INSITE_CLUSTER_ERR_MOVED);
    assert_string_equal(rd.host, "");
    assert_int_equal(E("TRYAGAIN Multiple keys request during rehashing"),
                     INSITE_CLUSTER_ERR_TRYAGAIN);
    assert_int_equal(E("CLUSTERDOWN The cluster is down"),
                     INSITE_CLUSTER_ERR_CLUSTERDOWN);
    /* malformed or other errors: the caller's */
    assert_int_equal(E("MOVED 16384 127.0.0.1:6381"), INSITE_CLUSTER_ERR_NONE);
    assert_int_equal(E("MOVED 1 127.0.0.1:65536"), INSITE_CLUSTER_ERR_NONE);
    assert_int_equal(E("MOVED 1 127.0.0.1"), INSITE_CLUSTER_ERR_NONE);
    assert_int_equal(E("MOVED x 127.0.0.1:1"), INSITE_CLUSTER_ERR_NONE);
    assert_int_equal(E("MOVEDX 1 127.0.0.1:1"), INSITE_CLUSTER_ERR_NONE);
    assert_int_equal(E("ERR insite publish: missing argument"),
                     INSITE_CLUSTER_ERR_NONE);
    assert_int_equal(E("ASK"), INSITE_CLUSTER_ERR_NONE);
#undef E
}


static int
key_of(const char *expect, int argc, const char **argv)
{
    int          rc;
    char        *buf;
    size_t       klen;
    long long    len;
    const char  *key;

    len = redisFormatCommandArgv(&buf, argc, argv, NULL);
    assert_true(len > 0);
    rc = insite_cluster_command_key(buf, (size_t) len, &key, &klen);
    if (rc == 1) {
        assert_non_null(expect);
        assert_int_equal(klen, strlen(expect));
        assert_memory_equal(key, expect, klen);
    }
    /* a truncation is malformed unless the part read (the first four
       arguments) is whole; never a key past the end */
    for (len--; len >= 0; len--) {
        if (insite_cluster_command_key(buf, (size_t) len, &key, &klen) == 1) {
            assert_true(key + klen + 2 <= buf + len);
        }
    }
    redisFreeCommand(buf);
    return rc;
}


static void
test_command_key(void **state)
{
    const char *get[] = { "GET", "insite:{a}:seq" };
    const char *ping[] = { "PING" };
    const char *eval[] = { "EVALSHA", "abc", "2", "insite:{c}:seq", "h", "x" };
    const char *eval0[] = { "evalsha", "abc", "0", "x" };
    const char *evalbad[] = { "EVAL", "s", "x1", "k" };
    const char *pub[] = { "SPUBLISH", "insite:pub:c", "m" };

    assert_int_equal(key_of("insite:{a}:seq", 2, get), 1);
    assert_int_equal(key_of(NULL, 1, ping), 0);
    assert_int_equal(key_of("insite:{c}:seq", 6, eval), 1);
    assert_int_equal(key_of(NULL, 4, eval0), 0);
    assert_int_equal(key_of(NULL, 4, evalbad), -1);
    assert_int_equal(key_of("insite:pub:c", 3, pub), 1);
    assert_int_equal(insite_cluster_command_key("*1\r\n$4\r\nPINGxx", 14,
                                                NULL, NULL), -1);
    assert_int_equal(insite_cluster_command_key("*0\r\n", 4, NULL, NULL), -1);
}

/* the seq of channel ch as node n holds it (-1: not there) */
static long long
seq_on(int n, const char *ch)
{
    long long   v;
    redisReply *r;

    freeReplyObject(cmd(n, "ASKING"));     /* the node may be importing */
    r = cmd(n, "HGET wk:{%s}:seq seq", ch);
    v = r->type == REDIS_REPLY_STRING ? atoll(r->str) : -1;
    freeReplyObject(r);
    return v;
}


/* slot starts moving from src to dst; their ids in id_src, id_dst */
static void
begin_migration(int src, int dst, unsigned slot, char *id_src, char *id_dst,
    size_t len)
{
    redisReply *r;

    r = cmd(src, "CLUSTER MYID");
    snprintf(id_src, len, "%s", r->str);
    freeReplyObject(r);
    r = cmd(dst, "CLUSTER MYID");
    snprintf(id_dst, len, "%s", r->str);
    freeReplyObject(r);
    freeReplyObject(cmd(dst, "CLUSTER SETSLOT %u IMPORTING %s", slot, id_src));
    freeReplyObject(cmd(src, "CLUSTER SETSLOT %u MIGRATING %s", slot, id_dst));
}


/*
 * The workers' publish path with redis.cluster (workers/lib/redis_publish.c)
 * on the real cluster, given one seed only: it reads the slot map, publishes
 * on the channel's owner; with the channel's slot mid-migration and its keys
 * moved, it follows ASK (ASKING on the target); once the slot is handed
 * over, its stale map meets MOVED and it follows that.  Every publish lands
 * once, in order, on the node that owns the keys.
 */
static void
test_workers_publish_follows_redirects(void **state)
{
    int                    src, dst, n;
    char                   seed[32], err[256] = "", id_src[64], id_dst[64];
    unsigned               slot;
    redisReply            *r;
    insite_redis          *rp;
    insite_publish_result  res;
    const char            *ch = "wmig";

    insite_log_set_level(INSITE_LOG_ERROR);
    snprintf(seed, sizeof(seed), " 127.0.0.1:%d ", ports[1]);
    insite_redis_options o = {
        .cluster = seed, .connect_timeout_ms = 1000, .command_timeout_ms = 2000,
        .prefix = "wk:", .history = 10, .idempotency_ttl_s = 60,
    };

    /* bad seed lists are refused */
    o.cluster = "127.0.0.1";
    assert_null(insite_redis_new(&o));
    o.cluster = "127.0.0.1:1,,";
    assert_null(insite_redis_new(&o));
    o.cluster = "127.0.0.1:70000";
    assert_null(insite_redis_new(&o));
    o.cluster = seed;

    rp = insite_redis_new(&o);
    assert_non_null(rp);

    slot = insite_cluster_key_slot(ch, strlen(ch));
    src = slot <= 5460 ? 0 : slot <= 10922 ? 1 : 2;
    dst = (src + 1) % NODES;

    if (insite_redis_publish(rp, ch, "t", "1", NULL, &res, err, sizeof(err)) != 0)
        fail_msg("publish on the owner: %s", err);
    assert_int_equal(res.seq, 1);
    assert_int_equal(seq_on(src, ch), 1);

    begin_migration(src, dst, slot, id_src, id_dst, sizeof(id_src));
    r = cmd(src, "CLUSTER GETKEYSINSLOT %u 100", slot);
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    assert_true(r->elements >= 2);                /* seq, history */
    for (size_t i = 0; i < r->elements; i++) {
        redisReply *m = cmd(src, "MIGRATE 127.0.0.1 %d %s 0 5000", ports[dst],
                            r->element[i]->str);
        assert_int_equal(m->type, REDIS_REPLY_STATUS);
        freeReplyObject(m);
    }
    freeReplyObject(r);

    /* mid-migration, keys on the target: ASK */
    if (insite_redis_publish(rp, ch, "t", "2", NULL, &res, err, sizeof(err)) != 0)
        fail_msg("publish during the migration: %s", err);
    assert_int_equal(res.seq, 2);
    assert_int_equal(seq_on(dst, ch), 2);
    assert_int_equal(seq_on(src, ch), -1);

    for (n = 0; n < NODES; n++)
        freeReplyObject(cmd(n, "CLUSTER SETSLOT %u NODE %s", slot, id_dst));

    /* handed over: the stale map meets MOVED */
    if (insite_redis_publish(rp, ch, "t", "3", "k3", &res, err, sizeof(err)) != 0)
        fail_msg("publish after the move: %s", err);
    assert_int_equal(res.seq, 3);
    assert_int_equal(seq_on(dst, ch), 3);

    /* a batch, one of whose channels lives on each master */
    insite_publish_msg m[3] = { { ch, "t", "4", NULL }, { "wa", "t", "1", NULL },
                                { "wb", "t", "1", NULL } };
    insite_publish_result br[3];
    int rcs[3];
    assert_int_equal(insite_redis_publish_batch(rp, m, 3, br, rcs, err, sizeof(err)), 3);
    assert_int_equal(br[0].seq, 4);
    assert_int_equal(seq_on(dst, ch), 4);
    assert_int_equal(rcs[1], 0);
    assert_int_equal(rcs[2], 0);

    assert_int_equal(insite_redis_ping(rp, err, sizeof(err)), 0);
    insite_redis_free(rp);
}

/* a field of a hash on node n, "" when missing */
static void
hget_on(int n, const char *key, const char *field, char *out, size_t len)
{
    redisReply *r;

    freeReplyObject(cmd(n, "ASKING"));     /* the node may be importing */
    r = cmd(n, "HGET %s %s", key, field);
    snprintf(out, len, "%s", r->type == REDIS_REPLY_STRING ? r->str : "");
    freeReplyObject(r);
}


/*
 * insite_redis_run() (the consent path of insite-gdpr): a MULTI of DEL +
 * HSET on one key's slot, routed like a publish: on the owner, mid-migration
 * with the key moved (the queued DEL gets ASK, EXEC aborts, the whole
 * transaction is sent again after ASKING on the target), after the
 * hand-over with a stale map (MOVED); SPUBLISH named by its channel.
 */
static void
test_workers_run_follows_redirects(void **state)
{
    int                src, dst, n;
    char               seed[32], err[256] = "", id_src[64], id_dst[64], v[32];
    unsigned           slot;
    redisReply        *r;
    insite_redis      *rp;
    const char        *key = "wk:consent:{runmig}";
    const char        *del[] = { "DEL", key };
    const char        *hset[] = { "HSET", key, "analytics", NULL };
    const char        *pub[] = { "SPUBLISH", "wk:consent:changed", "runmig" };
    insite_redis_cmd   tx[2] = { { 2, del, NULL }, { 4, hset, NULL } };
    insite_redis_cmd   one = { 3, pub, NULL };

    insite_log_set_level(INSITE_LOG_ERROR);
    snprintf(seed, sizeof(seed), "127.0.0.1:%d", ports[2]);
    insite_redis_options o = {
        .cluster = seed, .connect_timeout_ms = 1000, .command_timeout_ms = 2000,
        .prefix = "wk:", .history = 10, .idempotency_ttl_s = 60,
    };
    rp = insite_redis_new(&o);
    assert_non_null(rp);
    assert_string_equal(insite_redis_publish_command(rp), "SPUBLISH");

    slot = insite_cluster_key_slot(key, strlen(key));
    src = slot <= 5460 ? 0 : slot <= 10922 ? 1 : 2;
    dst = (src + 1) % NODES;

    hset[3] = "v1";
    r = insite_redis_run(rp, key, strlen(key), tx, 2, err, sizeof(err));
    if (r == NULL)
        fail_msg("transaction on the owner: %s", err);
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);    /* EXEC's replies */
    assert_int_equal(r->elements, 2);
    freeReplyObject(r);
    hget_on(src, key, "analytics", v, sizeof(v));
    assert_string_equal(v, "v1");

    begin_migration(src, dst, slot, id_src, id_dst, sizeof(id_src));
    r = cmd(src, "MIGRATE 127.0.0.1 %d %s 0 5000", ports[dst], key);
    assert_int_equal(r->type, REDIS_REPLY_STATUS);
    freeReplyObject(r);

    /* mid-migration, the key on the target: ASK, the transaction there */
    hset[3] = "v2";
    r = insite_redis_run(rp, key, strlen(key), tx, 2, err, sizeof(err));
    if (r == NULL)
        fail_msg("transaction during the migration: %s", err);
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    freeReplyObject(r);
    hget_on(dst, key, "analytics", v, sizeof(v));
    assert_string_equal(v, "v2");

    for (n = 0; n < NODES; n++)
        freeReplyObject(cmd(n, "CLUSTER SETSLOT %u NODE %s", slot, id_dst));

    /* handed over: the stale map meets MOVED */
    hset[3] = "v3";
    r = insite_redis_run(rp, key, strlen(key), tx, 2, err, sizeof(err));
    if (r == NULL)
        fail_msg("transaction after the move: %s", err);
    freeReplyObject(r);
    hget_on(dst, key, "analytics", v, sizeof(v));
    assert_string_equal(v, "v3");

    /* one command, routed by the channel's slot: SPUBLISH is accepted
       only by the shard that owns it (0 subscribers) */
    r = insite_redis_run(rp, pub[1], strlen(pub[1]), &one, 1, err, sizeof(err));
    if (r == NULL)
        fail_msg("SPUBLISH: %s", err);
    assert_int_equal(r->type, REDIS_REPLY_INTEGER);
    freeReplyObject(r);

    /* an error reply is a NULL with its text */
    const char *bad[] = { "HSET", key };
    insite_redis_cmd b = { 2, bad, NULL };
    assert_null(insite_redis_run(rp, key, strlen(key), &b, 1, err, sizeof(err)));
    assert_non_null(strstr(err, "wrong number of arguments"));

    insite_redis_free(rp);
}

/*
 * insite_redis_each_master(): one call per master, each with a connection
 * to it and a hash tag of one of its slots; a SCAN on each finds every key
 * once; insite_redis_master_run() of a key another master serves is
 * rerouted (MOVED on the lent connection, then insite_redis_run()).
 */
typedef struct {
    int     calls;
    char    names[NODES][64];
    long    found;
    int     own_tags;         /* SET of "{tag}" accepted unrouted */
    int     rerouted;         /* DEL of a key of another master: 1 */
    insite_redis *rp;
} each_ctx;

static int
each_cb(const insite_redis_master *m, void *arg, char *err, size_t errlen)
{
    each_ctx     *x = arg;
    char          key[64], cursor[32] = "0";
    redisReply   *r;

    if (x->calls == NODES) {
        snprintf(err, errlen, "more masters than nodes");
        return -1;
    }
    snprintf(x->names[x->calls++], sizeof(x->names[0]), "%s", m->name);

    /* the tag is one of this master's slots: no redirect */
    snprintf(key, sizeof(key), "wk:each:{%s}", m->tag);
    r = redisCommand(m->c, "SET %s 1", key);
    if (r != NULL && r->type == REDIS_REPLY_STATUS) {
        x->own_tags++;
    }
    freeReplyObject(r);

    do {
        r = redisCommand(m->c, "SCAN %s MATCH wk:em:* COUNT 100", cursor);
        if (r == NULL || r->type != REDIS_REPLY_ARRAY) {
            snprintf(err, errlen, "%s: SCAN: %s", m->name,
                     r == NULL ? m->c->errstr : "not an array");
            freeReplyObject(r);
            return -1;
        }
        snprintf(cursor, sizeof(cursor), "%s", r->element[0]->str);
        x->found += (long) r->element[1]->elements;
        freeReplyObject(r);
    } while (strcmp(cursor, "0") != 0);

    /* "wk:other:{<n>}" lives on some master; from every master's
       connection the DEL lands (once) */
    const char *argv[] = { "DEL", "wk:other:{1}" };
    insite_redis_cmd  del = { 2, argv, NULL };
    r = insite_redis_master_run(x->rp, m, argv[1], strlen(argv[1]), &del, err, errlen);
    if (r == NULL) {
        return -1;
    }
    x->rerouted += r->type == REDIS_REPLY_INTEGER ? (int) r->integer : 100;
    freeReplyObject(r);
    return 0;
}

static void
test_workers_each_master(void **state)
{
    int                i, j;
    char               seed[32], key[32], err[256] = "";
    insite_redis      *rp;
    redisReply        *r;
    each_ctx           x;
    const char        *set[] = { "SET", key, "1" };
    insite_redis_cmd   one = { 3, set, NULL };

    insite_log_set_level(INSITE_LOG_ERROR);
    snprintf(seed, sizeof(seed), "127.0.0.1:%d", ports[1]);
    insite_redis_options o = {
        .cluster = seed, .connect_timeout_ms = 1000, .command_timeout_ms = 2000,
        .prefix = "wk:", .history = 10, .idempotency_ttl_s = 60,
    };
    rp = insite_redis_new(&o);
    assert_non_null(rp);

    for (i = 0; i < 60; i++) {
        snprintf(key, sizeof(key), "wk:em:%d", i);
        r = insite_redis_run(rp, key, strlen(key), &one, 1, err, sizeof(err));
        if (r == NULL)
            fail_msg("SET %s: %s", key, err);
        freeReplyObject(r);
    }
    snprintf(key, sizeof(key), "wk:other:{1}");
    freeReplyObject(insite_redis_run(rp, key, strlen(key), &one, 1, err, sizeof(err)));

    memset(&x, 0, sizeof(x));
    x.rp = rp;
    if (insite_redis_each_master(rp, each_cb, &x, err, sizeof(err)) != 0)
        fail_msg("each_master: %s", err);
    assert_int_equal(x.calls, NODES);
    for (i = 0; i < NODES; i++)
        for (j = i + 1; j < NODES; j++)
            assert_string_not_equal(x.names[i], x.names[j]);
    assert_int_equal(x.found, 60);          /* every key, once */
    assert_int_equal(x.own_tags, NODES);
    assert_int_equal(x.rerouted, 1);        /* deleted once, found 0 after */

    /* a master that stops answering mid-walk (SIGSTOP): the callback's
       -1 ends the walk; its timed-out connection is dropped, not lent
       again */
    kill(pids[2], SIGSTOP);
    insite_redis_options o2 = o;
    o2.command_timeout_ms = 300;
    insite_redis *slow = insite_redis_new(&o2);
    memset(&x, 0, sizeof(x));
    x.rp = slow;
    assert_int_equal(insite_redis_each_master(slow, each_cb, &x, err, sizeof(err)), -1);
    kill(pids[2], SIGCONT);
    assert_non_null(strstr(err, ": SCAN: "));
    memset(&x, 0, sizeof(x));
    x.rp = slow;
    if (insite_redis_each_master(slow, each_cb, &x, err, sizeof(err)) != 0)
        fail_msg("each_master after SIGCONT: %s", err);
    assert_int_equal(x.found, 60);
    insite_redis_free(slow);
    insite_redis_free(rp);
}

static int
seed_collect(const char *host, int port, void *data)
{
    char  *out = data;
    size_t n = strlen(out);

    snprintf(out + n, 256 - n, "%s[%s]%d", n ? " " : "", host, port);
    return 0;
}


static void
test_seed_lists(void **state)
{
    char  out[256], err[128];

#define OK(list, want)                                                       \
    out[0] = '\0';                                                           \
    assert_int_equal(insite_cluster_parse_seeds(list, seed_collect, out,     \
                                                err, sizeof(err)), 0);       \
    assert_string_equal(out, want)
#define BAD(list, why)                                                       \
    out[0] = '\0';                                                           \
    assert_int_equal(insite_cluster_parse_seeds(list, seed_collect, out,     \
                                                err, sizeof(err)), -1);      \
    assert_string_equal(err, why)

    OK("127.0.0.1:7000", "[127.0.0.1]7000");
    OK(" 10.0.0.5:7000 ,redis-2:65535,\t::1:7001 ",
       "[10.0.0.5]7000 [redis-2]65535 [::1]7001");
    OK("a:1,", "[a]1");
    BAD("", "no node address");
    BAD("a:1,,b:2", "an empty or over-long node address");
    BAD("127.0.0.1", "\"127.0.0.1\" is not host:port");
    BAD(":7000", "\":7000\" is not host:port");
    BAD("a:", "\"a:\" is not host:port");
    BAD("a:0", "\"a:0\" is not host:port");
    BAD("a:65536", "\"a:65536\" is not host:port");
    BAD("a:1x", "\"a:1x\" is not host:port");
    BAD("a:-1", "\"a:-1\" is not host:port");
#undef OK
#undef BAD
}


int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crc16_vectors),
        cmocka_unit_test(test_error_texts),
        cmocka_unit_test(test_seed_lists),
        cmocka_unit_test(test_command_key),
        cmocka_unit_test(test_keyslot_agrees_with_redis),
        cmocka_unit_test(test_map_from_real_cluster),
        cmocka_unit_test(test_moved_and_ask_mid_migration),
        cmocka_unit_test(test_workers_publish_follows_redirects),
        cmocka_unit_test(test_workers_run_follows_redirects),
        cmocka_unit_test(test_workers_each_master),
    };

    return cmocka_run_group_tests_name("cluster_slots", tests, start_cluster,
                                       stop_cluster);
}
