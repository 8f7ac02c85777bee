/* The publish path against a real redis-server: INSITE_REDIS_PORT (on
 * 127.0.0.1) if set, else one started here on a free port in a temp dir.
 * Keys use a per-run prefix so a shared server is not disturbed. */
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
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <hiredis/hiredis.h>

#include "log.h"
#include "redis_publish.h"

static pid_t server_pid;
static char tmpdir[64];
static int port;
static char prefix[64];
static int chan_no;

static int free_port(void)
{
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0
        || getsockname(fd, (struct sockaddr *)&a, &len) != 0)
        return -1;
    close(fd);
    return ntohs(a.sin_port);
}

static redisContext *connect_plain(void)
{
    struct timeval tv = { 1, 0 };
    redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);
    if (c != NULL && c->err) {
        redisFree(c);
        return NULL;
    }
    return c;
}

static int start_server(void **state)
{
    const char *env = getenv("INSITE_REDIS_PORT");
    snprintf(prefix, sizeof(prefix), "insite-test-%ld:", (long)getpid());
    insite_log_set_level(INSITE_LOG_ERROR);
    if (env != NULL) {
        port = atoi(env);
        return 0;
    }
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/insite-redis.XXXXXX");
    if (mkdtemp(tmpdir) == NULL || (port = free_port()) < 0)
        return -1;
    char portstr[16];
    snprintf(portstr, sizeof(portstr), "%d", port);
    server_pid = fork();
    if (server_pid == 0) {
        execlp("redis-server", "redis-server", "--port", portstr, "--bind", "127.0.0.1",
               "--dir", tmpdir, "--save", "", "--appendonly", "no",
               "--logfile", "redis.log", (char *)NULL);
        perror("exec redis-server");
        _exit(127);
    }
    for (int i = 0; i < 100; i++) {   /* up to 5 s */
        redisContext *c = connect_plain();
        if (c != NULL) {
            redisFree(c);
            return 0;
        }
        usleep(50000);
    }
    fprintf(stderr, "redis-server did not start on port %d\n", port);
    return -1;
}

static int stop_server(void **state)
{
    if (server_pid > 0) {
        kill(server_pid, SIGTERM);
        waitpid(server_pid, NULL, 0);
        char cmd[128];
        snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
        if (system(cmd) != 0)
            fprintf(stderr, "could not remove %s\n", tmpdir);
    }
    return 0;
}

static insite_redis *open_pub(long history)
{
    insite_redis_options o = {
        .host = "127.0.0.1", .port = port, .connect_timeout_ms = 1000,
        .command_timeout_ms = 2000, .prefix = prefix, .history = history,
        .idempotency_ttl_s = 60,
    };
    insite_redis *r = insite_redis_new(&o);
    assert_non_null(r);
    return r;
}

/* A channel nobody used before in this run. */
static const char *new_channel(char *buf, size_t size)
{
    snprintf(buf, size, "stock_updates:T%d", ++chan_no);
    return buf;
}

static void publish_ok(insite_redis *r, const char *ch, const char *data, const char *idem,
                       insite_publish_result *res)
{
    char err[256] = "";
    int rc = insite_redis_publish(r, ch, "stock_update", data, idem, res, err, sizeof(err));
    if (rc != 0)
        fail_msg("publish failed: %s", err);
}

static void test_seq_and_epoch(void **state)
{
    insite_redis *r = open_pub(1000);
    insite_publish_result res, first;
    char ch[64];

    new_channel(ch, sizeof(ch));
    publish_ok(r, ch, "{\"price\":1}", NULL, &first);
    assert_int_equal(first.seq, 1);
    assert_false(first.duplicate);
    assert_int_equal(strlen(first.epoch), 16);
    assert_int_equal(strspn(first.epoch, "0123456789abcdef"), 16);
    for (int i = 2; i <= 20; i++) {
        publish_ok(r, ch, "{\"price\":2}", NULL, &res);
        assert_int_equal(res.seq, i);
        assert_string_equal(res.epoch, first.epoch);
    }
    insite_redis_free(r);

    /* a new connection sees the same channel state */
    r = open_pub(1000);
    publish_ok(r, ch, "3", NULL, &res);
    assert_int_equal(res.seq, 21);
    assert_string_equal(res.epoch, first.epoch);
    insite_redis_free(r);
}

static void test_history_capped(void **state)
{
    insite_redis *r = open_pub(5);
    insite_publish_result res;
    char ch[64], key[160];
    redisContext *c = connect_plain();

    new_channel(ch, sizeof(ch));
    for (int i = 0; i < 8; i++)
        publish_ok(r, ch, "[1,2]", NULL, &res);
    snprintf(key, sizeof(key), "%s{%s}:hist", prefix, ch);
    redisReply *rep = redisCommand(c, "ZRANGE %s 0 -1 WITHSCORES", key);
    assert_int_equal(rep->type, REDIS_REPLY_ARRAY);
    assert_int_equal(rep->elements, 10);                 /* 5 members + scores */
    assert_string_equal(rep->element[1]->str, "4");      /* oldest kept */
    assert_string_equal(rep->element[9]->str, "8");
    assert_non_null(strstr(rep->element[8]->str, "\"seq\":8,"));
    freeReplyObject(rep);

    insite_redis_free(r);
    r = open_pub(0);   /* history 0: nothing appended, old history kept */
    publish_ok(r, ch, "1", NULL, &res);
    rep = redisCommand(c, "ZCARD %s", key);
    assert_int_equal(rep->integer, 5);
    freeReplyObject(rep);
    insite_redis_free(r);
    redisFree(c);
}

/* A pipeline keeps order, publishes the valid ones, refuses the rest. */
static void test_batch(void **state)
{
    enum { N = 200 };
    insite_redis *r = open_pub(1000);
    insite_publish_msg msgs[N];
    insite_publish_result res[N];
    int rcs[N];
    char ch[64], err[256] = "";
    long long want = 0;

    new_channel(ch, sizeof(ch));
    for (int i = 0; i < N; i++) {
        msgs[i].channel = ch;
        msgs[i].type = "stock_update";
        msgs[i].data_json = (i == 50) ? "{not json" : "{\"price\":1.25}";
        msgs[i].idem_key = (i == 7 || i == 8) ? "same-key" : NULL;
    }
    msgs[120].channel = "bad channel";

    int n = insite_redis_publish_batch(r, msgs, N, res, rcs, err, sizeof(err));
    if (n < 0)
        fail_msg("batch failed: %s", err);
    assert_int_equal(n, N - 2);
    for (int i = 0; i < N; i++) {
        if (i == 50 || i == 120) {
            assert_int_equal(rcs[i], -1);
            continue;
        }
        assert_int_equal(rcs[i], 0);
        if (i == 8) {                       /* the retried key: same seq */
            assert_true(res[i].duplicate);
            assert_int_equal(res[i].seq, res[7].seq);
            continue;
        }
        assert_false(res[i].duplicate);
        assert_int_equal(res[i].seq, ++want);   /* in order, no gap */
    }

    /* the connection stays usable for single publishes */
    publish_ok(r, ch, "1", NULL, &res[0]);
    assert_int_equal(res[0].seq, want + 1);
    insite_redis_free(r);
}

static void test_idempotency(void **state)
{
    insite_redis *r = open_pub(1000);
    insite_publish_result a, b, c;
    char ch[64];

    new_channel(ch, sizeof(ch));
    publish_ok(r, ch, "{\"n\":1}", "order-1", &a);
    publish_ok(r, ch, "{\"n\":1}", "order-1", &b);
    assert_false(a.duplicate);
    assert_true(b.duplicate);
    assert_int_equal(b.seq, a.seq);
    assert_string_equal(b.epoch, a.epoch);
    publish_ok(r, ch, "{\"n\":2}", "order-2", &c);
    assert_false(c.duplicate);
    assert_int_equal(c.seq, a.seq + 1);                  /* the duplicate used no seq */
    insite_redis_free(r);
}

static void expect_rejected(insite_redis *r, const char *ch, const char *type,
                            const char *data, const char *idem, const char *reason)
{
    insite_publish_result res;
    char err[256] = "";
    assert_int_equal(insite_redis_publish(r, ch, type, data, idem, &res, err, sizeof(err)), -1);
    if (strstr(err, reason) == NULL)
        fail_msg("error \"%s\" does not mention \"%s\"", err, reason);
}

static void test_rejects(void **state)
{
    insite_redis *r = open_pub(1000);
    char long_ch[200];
    memset(long_ch, 'a', 129);
    long_ch[129] = '\0';

    expect_rejected(r, "bad channel", "t", "1", NULL, "invalid channel \"bad channel\"");
    expect_rejected(r, "", "t", "1", NULL, "invalid channel");
    expect_rejected(r, long_ch, "t", "1", NULL, "invalid channel");
    expect_rejected(r, "a/b", "t", "1", NULL, "invalid channel");
    expect_rejected(r, "ok", "t", "{\"a\":", NULL, "data is not a JSON value");
    expect_rejected(r, "ok", "t", "1 2", NULL, "data is not a JSON value");
    expect_rejected(r, "ok", "t", "", NULL, "data is not a JSON value");
    expect_rejected(r, "ok", "t", "{\"a\":1}\"],\"x\":{", NULL, "data is not a JSON value");
    expect_rejected(r, "ok", "", "1", NULL, "\"type\" is 1-64");
    expect_rejected(r, "ok", "t", "1", "", "Idempotency-Key is 1-128");
    /* the server's own frame types cannot be forged (issue 11, finding 14) */
    expect_rejected(r, "ok", "reset", "1", NULL, "reserved");
    expect_rejected(r, "ok", "subscribed", "1", NULL, "reserved");
    expect_rejected(r, "ok", "error", "1", NULL, "reserved");

    /* 128 characters is still fine */
    long_ch[128] = '\0';
    assert_true(insite_channel_valid(long_ch));
    assert_true(insite_channel_valid("A-z_0.9:x"));

    /* nothing reached the server for the rejected channel */
    redisContext *c = connect_plain();
    redisReply *rep = redisCommand(c, "EXISTS %s{ok}:seq", prefix);
    assert_int_equal(rep->integer, 0);
    freeReplyObject(rep);
    redisFree(c);
    insite_redis_free(r);
}

static void test_pubsub_payload(void **state)
{
    insite_redis *r = open_pub(1000);
    insite_publish_result res;
    char ch[64];
    redisContext *sub = connect_plain();
    redisReply *rep;

    new_channel(ch, sizeof(ch));
    rep = redisCommand(sub, "SUBSCRIBE %spub:%s", prefix, ch);
    freeReplyObject(rep);

    publish_ok(r, ch, "{\"price\":189.10,\"v\":[1, 2]}", NULL, &res);
    assert_int_equal(redisGetReply(sub, (void **)&rep), REDIS_OK);
    assert_int_equal(rep->type, REDIS_REPLY_ARRAY);
    assert_string_equal(rep->element[0]->str, "message");
    const char *payload = rep->element[2]->str;

    char head[512];
    snprintf(head, sizeof(head), "%lld %s\n{\"type\":\"stock_update\",\"channel\":\"%s\",\"seq\":%lld,\"ts\":\"",
             res.seq, res.epoch, ch, res.seq);
    assert_memory_equal(payload, head, strlen(head));
    /* ts is RFC 3339 UTC with ms, then data verbatim (digits kept) */
    const char *ts = payload + strlen(head);
    assert_int_equal(ts[23], 'Z');
    assert_int_equal(ts[19], '.');
    assert_string_equal(ts + 24, "\",\"data\":{\"price\":189.10,\"v\":[1, 2]}}");
    freeReplyObject(rep);
    redisFree(sub);
    insite_redis_free(r);
}

static void test_script_flush_and_reconnect(void **state)
{
    insite_redis *r = open_pub(1000);
    insite_publish_result res;
    char ch[64];
    redisContext *c = connect_plain();
    redisReply *rep;

    new_channel(ch, sizeof(ch));
    publish_ok(r, ch, "1", NULL, &res);

    /* NOSCRIPT -> EVAL fallback */
    rep = redisCommand(c, "SCRIPT FLUSH");
    freeReplyObject(rep);
    publish_ok(r, ch, "2", NULL, &res);
    assert_int_equal(res.seq, 2);

    /* the server drops our connection: the next publish reconnects */
    rep = redisCommand(c, "CLIENT KILL TYPE normal SKIPME yes");
    assert_true(rep->integer >= 1);
    freeReplyObject(rep);
    publish_ok(r, ch, "3", NULL, &res);
    assert_int_equal(res.seq, 3);
    char err[128];
    assert_int_equal(insite_redis_ping(r, err, sizeof(err)), 0);
    redisFree(c);
    insite_redis_free(r);
}

static void test_unreachable(void **state)
{
    insite_redis_options o = { .host = "127.0.0.1", .port = free_port(), .prefix = "x:",
                               .connect_timeout_ms = 200 };
    insite_redis *r = insite_redis_new(&o);
    insite_publish_result res;
    char err[256];
    assert_int_equal(insite_redis_publish(r, "ch", "t", "1", NULL, &res, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "connect 127.0.0.1:"));
    assert_non_null(strstr(err, "Connection refused"));
    insite_redis_free(r);
}

/* insite_redis_each_master() on a single Redis: one call, with its
 * connection; insite_redis_master_run() sends on it */
typedef struct {
    insite_redis *r;
    int calls;
} each_single_ctx;

static int each_single(const insite_redis_master *m, void *arg, char *err, size_t errlen)
{
    each_single_ctx *x = arg;
    char key[96];
    const char *argv[] = { "EXISTS", key };
    insite_redis_cmd one = { 2, argv, NULL };
    redisReply *r;

    x->calls++;
    snprintf(key, sizeof(key), "%seach:{%s}", prefix, m->tag);
    if ((r = insite_redis_master_run(x->r, m, key, strlen(key), &one, err, errlen)) == NULL)
        return -1;
    assert_int_equal(r->type, REDIS_REPLY_INTEGER);
    freeReplyObject(r);
    assert_non_null(strstr(m->name, "127.0.0.1:"));
    return 0;
}

static void test_each_master_single(void **state)
{
    insite_redis *r = open_pub(10);
    char err[256] = "";
    each_single_ctx x = { r, 0 };

    if (insite_redis_each_master(r, each_single, &x, err, sizeof(err)) != 0)
        fail_msg("each_master: %s", err);
    assert_int_equal(x.calls, 1);
    insite_redis_free(r);
}

/* insite_redis_master_wait() after a write on the lent connection (what
 * erasure does after its DELs on a master): rc and err say how it went */
typedef struct {
    insite_redis *r;
    const char *key;
    int rc;
    char err[256];
} master_wait_ctx;

static int del_and_wait(const insite_redis_master *m, void *arg, char *err, size_t errlen)
{
    master_wait_ctx *x = arg;
    const char *argv[] = { "DEL", x->key };
    insite_redis_cmd one = { 2, argv, NULL };
    redisReply *r = insite_redis_master_run(x->r, m, x->key, strlen(x->key), &one, err, errlen);

    if (r == NULL)
        return -1;
    freeReplyObject(r);
    x->rc = insite_redis_master_wait(x->r, m, x->err, sizeof(x->err));
    return 0;
}

/* redis.publish_replicas: with no replica, WAIT 1 cannot be met: the
 * publish ran (its seq is taken) but is reported as not done; once a real
 * replica (a redis-server started here with --replicaof) is in sync, the
 * retry with the same key is acknowledged, as the duplicate of that seq. */
static void test_publish_replicas(void **state)
{
    insite_redis_options o = {
        .host = "127.0.0.1", .port = port, .connect_timeout_ms = 1000,
        .command_timeout_ms = 3000, .prefix = prefix, .history = 10,
        .idempotency_ttl_s = 60, .publish_replicas = 1, .publish_replicas_timeout_ms = 1000,
    };
    insite_publish_result res;
    char ch[64], err[256] = "", dir[64], portstr[16], master[16];

    /* a timeout not below command_timeout is refused */
    o.publish_replicas_timeout_ms = 3000;
    assert_null(insite_redis_new(&o));
    o.publish_replicas_timeout_ms = 1000;

    insite_redis *r = insite_redis_new(&o);
    assert_non_null(r);
    redisContext *c = connect_plain();
    assert_non_null(c);
    redisReply *rep = redisCommand(c, "INFO replication");
    int has_replicas = rep && rep->type == REDIS_REPLY_STRING
                       && strstr(rep->str, "connected_slaves:0") == NULL;
    freeReplyObject(rep);
    if (has_replicas) {                 /* a shared server with replicas */
        redisFree(c);
        insite_redis_free(r);
        skip();
    }

    new_channel(ch, sizeof(ch));
    assert_int_equal(insite_redis_publish(r, ch, "t", "1", "k1", &res, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "published, but 0 of 1 replicas acknowledged it within 1000 ms"));

    insite_publish_msg m[2] = { { ch, "t", "2", NULL }, { ch, "t", "3", NULL } };
    insite_publish_result br[2];
    int rcs[2];
    assert_int_equal(insite_redis_publish_batch(r, m, 2, br, rcs, err, sizeof(err)), -1);
    assert_int_equal(rcs[0], -2);
    assert_int_equal(rcs[1], -2);
    assert_non_null(strstr(err, "0 of 1 replicas"));

    /* insite_redis_run_replicated() (insite-gdpr's consent writes): the
     * same WAIT; too few replicas is a NULL that says the write ran */
    char key[96];
    snprintf(key, sizeof(key), "%srun-replicated", prefix);
    const char *set1[3] = { "SET", key, "1" }, *set2[3] = { "SET", key, "2" };
    insite_redis_cmd one = { 3, set1, NULL }, two = { 3, set2, NULL };
    int unrep = -1;
    assert_null(insite_redis_run_replicated(r, key, strlen(key), &one, 1, &unrep,
                                            err, sizeof(err)));
    assert_int_equal(unrep, 1);
    assert_non_null(strstr(err, "written, but 0 of 1 replicas acknowledged it within 1000 ms"));
    assert_null(strstr(err, "idempotency"));
    rep = redisCommand(c, "GET %s", key);
    assert_true(rep && rep->type == REDIS_REPLY_STRING && strcmp(rep->str, "1") == 0);
    freeReplyObject(rep);
    /* insite_redis_master_wait(): the same WAIT on a master's connection */
    master_wait_ctx mw = { r, key, 9, "" };
    if (insite_redis_each_master(r, del_and_wait, &mw, err, sizeof(err)) != 0)
        fail_msg("each_master: %s", err);
    assert_int_equal(mw.rc, -1);
    assert_non_null(strstr(mw.err, "written, but 0 of 1 replicas acknowledged it within 1000 ms"));
    /* insite_redis_run() does not wait */
    rep = insite_redis_run(r, key, strlen(key), &two, 1, err, sizeof(err));
    assert_non_null(rep);
    freeReplyObject(rep);

    /* a replica of the test server */
    snprintf(dir, sizeof(dir), "/tmp/insite-replica.XXXXXX");
    assert_non_null(mkdtemp(dir));
    int rport = free_port();
    snprintf(portstr, sizeof(portstr), "%d", rport);
    snprintf(master, sizeof(master), "%d", port);
    pid_t pid = fork();
    if (pid == 0) {
        execlp("redis-server", "redis-server", "--port", portstr, "--bind", "127.0.0.1",
               "--dir", dir, "--save", "", "--appendonly", "no", "--logfile", "redis.log",
               "--replicaof", "127.0.0.1", master, (char *)NULL);
        _exit(127);
    }
    int synced = 0;
    for (int i = 0; i < 200 && !synced; i++) {      /* up to 10 s */
        rep = redisCommand(c, "INFO replication");
        synced = rep && rep->type == REDIS_REPLY_STRING
                 && strstr(rep->str, "connected_slaves:1") && strstr(rep->str, "state=online");
        freeReplyObject(rep);
        if (!synced)
            usleep(50000);
    }
    redisFree(c);

    int rc = synced ? insite_redis_publish(r, ch, "t", "1", "k1", &res, err, sizeof(err)) : -9;
    int brc = synced ? insite_redis_publish_batch(r, m, 2, br, rcs, err, sizeof(err)) : -9;
    char rerr[256] = "";
    unrep = -1;
    redisReply *rrep = synced ? insite_redis_run_replicated(r, key, strlen(key), &one, 1, &unrep,
                                                            rerr, sizeof(rerr)) : NULL;
    master_wait_ctx mw2 = { r, key, 9, "" };
    int erc = synced ? insite_redis_each_master(r, del_and_wait, &mw2, rerr, sizeof(rerr)) : -9;

    kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
    insite_redis_free(r);

    assert_true(synced);
    if (rc != 0)
        fail_msg("publish with a replica: %s", err);
    assert_true(res.duplicate);
    assert_int_equal(res.seq, 1);
    if (brc != 2)
        fail_msg("batch with a replica: %d: %s", brc, err);
    assert_int_equal(rcs[0], 0);
    assert_int_equal(br[1].seq, 5);     /* 2 and 3 went out unacknowledged */
    if (rrep == NULL)
        fail_msg("run_replicated with a replica: %s", rerr);
    assert_int_equal(unrep, 0);
    freeReplyObject(rrep);
    assert_int_equal(erc, 0);
    if (mw2.rc != 0)
        fail_msg("master_wait with a replica: %s", mw2.err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_seq_and_epoch),
        cmocka_unit_test(test_history_capped),
        cmocka_unit_test(test_idempotency),
        cmocka_unit_test(test_batch),
        cmocka_unit_test(test_rejects),
        cmocka_unit_test(test_pubsub_payload),
        cmocka_unit_test(test_script_flush_and_reconnect),
        cmocka_unit_test(test_unreachable),
        cmocka_unit_test(test_each_master_single),
        cmocka_unit_test(test_publish_replicas),
    };
    return cmocka_run_group_tests(tests, start_server, stop_server);
}
