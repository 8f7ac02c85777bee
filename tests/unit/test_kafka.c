/* The Kafka producer against INSITE_KAFKA_BOOTSTRAP if set, else against
 * librdkafka's mock cluster (the real protocol, in-process), read back with
 * a real consumer. */
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "envelope.h"
#include "kafka.h"
#include "log.h"

static rd_kafka_t *mock_rk;
static rd_kafka_mock_cluster_t *mock;
static char bootstrap[256];
static char spool[64];

static int setup(void **state)
{
    char err[256];
    /* a real broker, when one is at hand; the services' Kafka is a mock too */
    const char *env = getenv("INSITE_KAFKA_REAL_BOOTSTRAP");

    insite_log_set_level(INSITE_LOG_ERROR);
    snprintf(spool, sizeof(spool), "/tmp/insite-spool.XXXXXX");
    if (mkdtemp(spool) == NULL)
        return -1;
    if (env != NULL) {
        snprintf(bootstrap, sizeof(bootstrap), "%s", env);
        return 0;
    }
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    mock_rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    if (mock_rk == NULL) {
        fprintf(stderr, "mock handle: %s\n", err);
        return -1;
    }
    mock = rd_kafka_mock_cluster_new(mock_rk, 1);
    if (mock == NULL)
        return -1;
    snprintf(bootstrap, sizeof(bootstrap), "%s", rd_kafka_mock_cluster_bootstraps(mock));
    return 0;
}

static int teardown(void **state)
{
    if (mock != NULL)
        rd_kafka_mock_cluster_destroy(mock);
    if (mock_rk != NULL)
        rd_kafka_destroy(mock_rk);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", spool);
    return system(cmd) == 0 ? 0 : -1;
}

static insite_kafka *open_producer(const char *servers, int message_timeout_ms)
{
    insite_kafka_options o = {
        .bootstrap = servers, .client_id = "test", .compression = "zstd",
        .linger_ms = 5, .message_timeout_ms = message_timeout_ms,
        .spool_dir = spool, .retry_max = 100, .retry_backoff_ms = 100,
        .flush_timeout_ms = 2000, .replication_factor = 1,
    };
    insite_kafka *k = insite_kafka_new(&o);
    assert_non_null(k);
    return k;
}

static int partitions_of(insite_kafka *unused, const char *topic)
{
    char err[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap, err, sizeof(err));
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    rd_kafka_topic_t *t = rd_kafka_topic_new(rk, topic, NULL);
    const struct rd_kafka_metadata *md = NULL;
    int n = -1;
    if (rd_kafka_metadata(rk, 0, t, &md, 5000) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        if (md->topic_cnt == 1 && md->topics[0].err == RD_KAFKA_RESP_ERR_NO_ERROR)
            n = md->topics[0].partition_cnt;
        rd_kafka_metadata_destroy(md);
    }
    rd_kafka_topic_destroy(t);
    rd_kafka_destroy(rk);
    return n;
}

/* librdkafka 2.0.2's mock cluster answers Metadata with ControllerId 0
 * while its brokers are numbered from 1, so the Admin API waits for a
 * controller forever: CreateTopics can only be exercised against a real
 * cluster (INSITE_KAFKA_REAL_BOOTSTRAP).  On the mock the topics are created
 * through the mock API instead, with the same partition counts. */

static void ensure_topics(void)
{
    char err[256] = "";
    if (mock == NULL) {
        insite_kafka *k = open_producer(bootstrap, 5000);
        if (insite_kafka_create_topics(k, 5000, err, sizeof(err)) != 0)
            fail_msg("create topics: %s", err);
        insite_kafka_close(k);
        return;
    }
    for (size_t i = 0; i < insite_kafka_ntopics; i++) {
        /* already exists -> error; fine, the partition count is checked later */
        rd_kafka_mock_topic_create(mock, insite_kafka_topics[i].name,
                                   insite_kafka_topics[i].partitions, 1);
    }
}

static void test_create_topics(void **state)
{
    char err[256] = "";

    if (mock != NULL) {
        fprintf(stderr, "SKIP test_create_topics: the librdkafka 2.0.2 mock cluster reports "
                        "no valid controller, so CreateTopics cannot run on it; set "
                        "INSITE_KAFKA_REAL_BOOTSTRAP to a real broker to run this test\n");
        skip();
    }
    insite_kafka *k = open_producer(bootstrap, 5000);

    if (insite_kafka_create_topics(k, 5000, err, sizeof(err)) != 0)
        fail_msg("create topics: %s", err);
    /* second run: TOPIC_ALREADY_EXISTS counts as success */
    if (insite_kafka_create_topics(k, 5000, err, sizeof(err)) != 0)
        fail_msg("create topics again: %s", err);
    for (size_t i = 0; i < insite_kafka_ntopics; i++)
        assert_int_equal(partitions_of(k, insite_kafka_topics[i].name),
                         insite_kafka_topics[i].partitions);
    assert_int_equal(insite_kafka_topics[2].partitions, 3);   /* alerts */
    assert_true(insite_kafka_topics[4].retention_ms == 30LL * 86400 * 1000);
    insite_kafka_close(k);
}

typedef struct {
    char key[16];
    int partition;
    json_t *env;
} got;

/* Reads n messages from every partition of topic, from the beginning. */
static int consume(const char *topic, int partitions, got *out, int n)
{
    char err[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap, err, sizeof(err));
    rd_kafka_conf_set(conf, "group.id", "insite-test", err, sizeof(err));
    rd_kafka_conf_set(conf, "enable.auto.commit", "false", err, sizeof(err));
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(partitions);
    for (int p = 0; p < partitions; p++)
        rd_kafka_topic_partition_list_add(l, topic, p)->offset = RD_KAFKA_OFFSET_BEGINNING;
    rd_kafka_assign(rk, l);
    rd_kafka_topic_partition_list_destroy(l);

    int got_n = 0;
    for (int tries = 0; tries < 100 && got_n < n; tries++) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
        if (m == NULL)
            continue;
        if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
            assert_string_equal(rd_kafka_topic_name(m->rkt), topic);
            snprintf(out[got_n].key, sizeof(out[got_n].key), "%.*s", (int)m->key_len,
                     (const char *)m->key);
            out[got_n].partition = m->partition;
            out[got_n].env = json_loadb(m->payload, m->len, 0, NULL);
            assert_non_null(out[got_n].env);
            got_n++;
        }
        rd_kafka_message_destroy(m);
    }
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    return got_n;
}

static void produce_event(insite_kafka *k, const char *topic, const char *key, int i)
{
    json_t *env = insite_envelope_new("stock_update", "test", "corr-1",
                                      json_pack("{s:s, s:i}", "symbol", key, "i", i));
    char *text = insite_envelope_dumps(env);
    assert_int_equal(insite_kafka_produce(k, topic, key, text, strlen(text)), 0);
    free(text);
    json_decref(env);
}

static void test_produce_and_read_back(void **state)
{
    insite_kafka *k = open_producer(bootstrap, 5000);
    static const char *keys[] = { "AAPL", "MSFT", "AAPL", "TSLA", "AAPL", "MSFT" };
    got g[6];
    insite_kafka_stats st;

    ensure_topics();
    assert_int_equal(partitions_of(k, "sentiment_updates"), 5);
    for (int i = 0; i < 6; i++)
        produce_event(k, "sentiment_updates", keys[i], i);
    assert_int_equal(insite_kafka_flush(k, 10000), 0);
    insite_kafka_get_stats(k, &st);
    assert_int_equal(st.delivered, 6);
    assert_int_equal(st.failed, 0);
    assert_int_equal(st.retry_queue, 0);
    assert_string_not_equal(insite_kafka_compression(k), "");
    insite_kafka_close(k);

    assert_int_equal(consume("sentiment_updates", 5, g, 6), 6);
    int aapl_part = -1;
    for (int i = 0; i < 6; i++) {
        json_t *e = g[i].env;
        const char *sym = json_string_value(json_object_get(json_object_get(e, "data"), "symbol"));
        assert_string_equal(sym, g[i].key);   /* key = symbol */
        assert_string_equal(json_string_value(json_object_get(e, "event_type")), "stock_update");
        assert_string_equal(json_string_value(json_object_get(e, "version")), "1.0");
        assert_string_equal(json_string_value(json_object_get(e, "correlation_id")), "corr-1");
        assert_int_equal(strlen(json_string_value(json_object_get(e, "event_id"))), 36);
        if (strcmp(g[i].key, "AAPL") == 0) {
            if (aapl_part < 0)
                aapl_part = g[i].partition;
            assert_int_equal(g[i].partition, aapl_part);   /* same key, same partition */
        }
        json_decref(e);
    }
    assert_true(aapl_part >= 0);
}

static int free_port(void)
{
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    bind(fd, (struct sockaddr *)&a, sizeof(a));
    getsockname(fd, (struct sockaddr *)&a, &len);
    close(fd);
    return ntohs(a.sin_port);
}

static int count_lines(const char *path)
{
    FILE *f = fopen(path, "r");
    int n = 0, ch;
    if (f == NULL)
        return -1;
    while ((ch = fgetc(f)) != EOF)
        n += ch == '\n';
    fclose(f);
    return n;
}

/* Undeliverable messages are never dropped: they end in the spool file at
 * shutdown, and the next producer replays them. */
static void test_spool_and_replay(void **state)
{
    char dead[64], path[128];
    snprintf(dead, sizeof(dead), "127.0.0.1:%d", free_port());
    snprintf(path, sizeof(path), "%s/kafka-spool.jsonl", spool);

    insite_kafka *k = open_producer(dead, 1000);
    produce_event(k, "alerts", "user-1", 1);
    produce_event(k, "alerts", "user-2", 2);
    assert_true(insite_kafka_flush(k, 1500) > 0);   /* cannot be delivered */
    insite_kafka_close(k);
    assert_int_equal(count_lines(path), 2);

    /* both, each whole; in the order librdkafka failed them, which for two
     * keys (two partitions) it does not define */
    char buf[8192];
    int seen = 0;
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    while (fgets(buf, sizeof(buf), f)) {
        json_t *line = json_loads(buf, 0, NULL);
        assert_non_null(line);
        const char *key = json_string_value(json_object_get(line, "key"));
        assert_non_null(key);
        assert_string_equal(json_string_value(json_object_get(line, "topic")), "alerts");
        assert_non_null(strstr(json_string_value(json_object_get(line, "payload")), "\"event_type\":\"stock_update\""));
        if (strcmp(key, "user-1") == 0)
            seen |= 1;
        else if (strcmp(key, "user-2") == 0)
            seen |= 2;
        json_decref(line);
    }
    fclose(f);
    assert_int_equal(seen, 3);

    /* the next start replays into the real cluster and removes the file */
    ensure_topics();   /* before replay: alerts needs its 3 partitions */
    k = open_producer(bootstrap, 5000);
    assert_int_equal(access(path, F_OK), -1);
    insite_kafka_close(k);

    got g[2];
    assert_int_equal(consume("alerts", 3, g, 2), 2);
    for (int i = 0; i < 2; i++) {
        assert_true(strcmp(g[i].key, "user-1") == 0 || strcmp(g[i].key, "user-2") == 0);
        json_decref(g[i].env);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_create_topics),
        cmocka_unit_test(test_produce_and_read_back),
        cmocka_unit_test(test_spool_and_replay),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
