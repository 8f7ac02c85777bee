/* The sentiment pipeline: message parsing, sliding windows and the publish
 * throttle (pure), then end to end against librdkafka's mock cluster (made
 * here), the services' Redis (INSITE_REDIS_PORT) and PostgreSQL
 * (INSITE_PG_DSN, in a schema of its own): consume social_posts in a group,
 * dead-letter poison, dedupe by post id, publish sentiment_update to Redis,
 * Kafka and sentiment_data at most every 10 s per symbol, commit offsets and
 * rebuild the windows after a restart.  The wall clock is the test's. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#include <cmocka.h>
#include <hiredis/hiredis.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "clock.h"
#include "envelope.h"
#include "log.h"
#include "pg.h"
#include "../../workers/analytics/consumer.h"
#include "../../workers/analytics/emit.h"
#include "../../workers/analytics/finance.h"
#include "../../workers/analytics/lexicon.h"
#include "../../workers/analytics/ingest.h"
#include "../../workers/analytics/scores_db.h"
#include "../../workers/analytics/social_msg.h"
#include "../../workers/analytics/vader.h"
#include "../../workers/analytics/windows.h"

#define HOUR (3600LL * 1000)

/* ---- pure parts ---------------------------------------------------------- */

static char *envelope_text(const char *type, json_t *data)
{
    json_t *env = insite_envelope_new(type, "collector", NULL, data);
    char *s = insite_envelope_dumps(env);
    json_decref(env);
    return s;
}

static void test_parse(void **state)
{
    sent_post p;
    char why[256];
    char *m = envelope_text("social_post", json_pack("{s:s, s:s, s:s, s:s, s:s}", "source", "reddit",
        "source_id", "t3_a", "symbol", "AAPL", "text", "$AAPL to the moon", "created_at",
        "2024-10-02T13:30:00.250Z"));
    assert_int_equal(sent_post_parse(m, strlen(m), &p, why, sizeof(why)), 0);
    assert_string_equal(p.source_id, "t3_a");
    assert_int_equal(p.nsymbols, 1);
    assert_string_equal(p.symbols[0], "AAPL");
    assert_true(p.created_ms == 1727875800250LL);
    assert_true(p.event_ms > 1727875800250LL);
    sent_post_clear(&p);
    free(m);

    static const struct { const char *payload, *reason; } bad[] = {
        { "", "empty message" },
        { "{not json", "not JSON" },
        { "[1]", "not an envelope" },
        { "{\"event_type\":\"stock_update\",\"data\":{}}", "event_type \"stock_update\"" },
        { "{\"event_type\":\"social_post\",\"data\":{\"source\":\"x\",\"text\":\"hi\",\"symbol\":\"A\"}}",
          "data.source_id" },
        { "{\"event_type\":\"social_post\",\"data\":{\"source\":\"x\",\"source_id\":\"1\",\"symbol\":\"A\"}}",
          "data.text" },
        { "{\"event_type\":\"social_post\",\"data\":{\"source\":\"x\",\"source_id\":\"1\",\"text\":\"t\"}}",
          "no symbol" },
        { "{\"event_type\":\"social_post\",\"data\":{\"source\":\"x\",\"source_id\":\"1\",\"text\":\"t\","
          "\"symbol\":\"A B\"}}", "not a valid symbol" },
        { "{\"event_type\":\"social_post\",\"data\":{\"source\":\"x\",\"source_id\":\"1\",\"text\":\"t\","
          "\"symbol\":\"A\",\"created_at\":\"yesterday\"}}", "not RFC 3339" },
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(sent_post_parse(bad[i].payload, strlen(bad[i].payload), &p, why,
                                         sizeof(why)), -1);
        if (strstr(why, bad[i].reason) == NULL)
            fail_msg("%s: reason \"%s\" lacks \"%s\"", bad[i].payload, why, bad[i].reason);
        assert_null(p.root);
    }
    const char *multi = "{\"event_type\":\"social_post\",\"data\":{\"source\":\"x\",\"source_id\":\"1\","
                        "\"text\":\"t\",\"symbol\":\"AAPL\",\"symbols\":[\"MSFT\",\"AAPL\"]}}";
    assert_int_equal(sent_post_parse(multi, strlen(multi), &p, why, sizeof(why)), 0);
    assert_int_equal(p.nsymbols, 2);
    assert_string_equal(p.symbols[1], "MSFT");
    assert_true(p.created_ms == 0 && p.event_ms == 0);
    sent_post_clear(&p);

    assert_true(sent_parse_time("2024-10-02T15:30:00+02:00") == 1727875800000LL);
    assert_true(sent_parse_time("2024-10-02T13:30:00.5Z") == 1727875800500LL);
    assert_true(sent_parse_time("2024-10-02 13:30:00") == -1);
}

typedef struct {
    int calls;
    char symbol[16];
    sent_agg aggs[SENT_NWINDOWS];
    int changed[SENT_NWINDOWS];
    int fail;
} due_log;

static int record_due(const char *symbol, const sent_agg aggs[SENT_NWINDOWS],
                      const int changed[SENT_NWINDOWS], void *ud)
{
    due_log *l = ud;
    l->calls++;
    snprintf(l->symbol, sizeof(l->symbol), "%s", symbol);
    memcpy(l->aggs, aggs, sizeof(l->aggs));
    memcpy(l->changed, changed, sizeof(l->changed));
    return l->fail;
}

static void test_windows(void **state)
{
    const int64_t t0 = 1700000000000LL;
    sent_windows *w = sent_windows_new();
    sent_agg a;
    due_log l = { 0 };

    /* 24 h window: 4 samples; 1 h window: the last two */
    assert_int_equal(sent_windows_add(w, "AAPL", t0 - 23 * HOUR, 0.5), 0);
    assert_int_equal(sent_windows_add(w, "AAPL", t0 - 30 * 60000, -0.05), 0);  /* negative */
    assert_int_equal(sent_windows_add(w, "AAPL", t0 - 2 * HOUR, 0.0499), 0);   /* neutral */
    assert_int_equal(sent_windows_add(w, "AAPL", t0, 0.05), 0);                /* positive */
    assert_int_equal(sent_windows_add(w, "MSFT", t0 - 25 * HOUR, 0.9), 0);     /* too old */
    assert_int_equal(sent_windows_add(w, "AN-INVALID-SYMBOL", t0, 0.1), -1);
    sent_windows_aggregate(w, "AAPL", t0, HOUR, &a);
    assert_int_equal(a.mentions, 2);
    assert_int_equal(a.positive, 1);
    assert_int_equal(a.negative, 1);
    assert_true(a.compound == 0.0);
    sent_windows_aggregate(w, "AAPL", t0, 24 * HOUR, &a);
    assert_int_equal(a.mentions, 4);
    assert_int_equal(a.neutral, 1);
    assert_true(a.compound == 0.1375);   /* (0.5 - 0.05 + 0.0499 + 0.05) / 4 = 0.137475 */
    sent_windows_aggregate(w, "NONE", t0, HOUR, &a);
    assert_int_equal(a.mentions, 0);

    /* first check: both symbols (MSFT reports its empty windows once) */
    assert_int_equal(sent_windows_due(w, t0, 10000, record_due, &l), 2);
    assert_int_equal(sent_windows_samples(w), 4);               /* MSFT's expired */
    l.calls = 0;
    /* changed, but within 10 s of the last publish: held back */
    assert_int_equal(sent_windows_add(w, "AAPL", t0 + 1000, 0.8), 0);
    assert_int_equal(sent_windows_due(w, t0 + 9999, 10000, record_due, &l), 0);
    assert_int_equal(sent_windows_due(w, t0 + 10000, 10000, record_due, &l), 1);
    assert_string_equal(l.symbol, "AAPL");
    assert_int_equal(l.aggs[0].mentions, 3);
    assert_int_equal(l.aggs[1].mentions, 5);
    assert_true(l.changed[0] && l.changed[1]);
    /* unchanged: nothing, however long */
    assert_int_equal(sent_windows_due(w, t0 + 60000, 10000, record_due, &l), 0);
    /* the 1 h window slides past t0 - 30 min: only "1h" changed */
    assert_int_equal(sent_windows_due(w, t0 + 31 * 60000, 10000, record_due, &l), 1);
    assert_int_equal(l.aggs[0].mentions, 2);
    assert_true(l.changed[0] && !l.changed[1]);
    /* a failed delivery is offered again after the interval */
    sent_windows_add(w, "AAPL", t0 + 32 * 60000, -0.9);
    l.fail = -1;
    assert_int_equal(sent_windows_due(w, t0 + 32 * 60000, 10000, record_due, &l), 1);
    l.fail = 0;
    assert_int_equal(sent_windows_due(w, t0 + 32 * 60000 + 5000, 10000, record_due, &l), 0);
    assert_int_equal(sent_windows_due(w, t0 + 32 * 60000 + 10000, 10000, record_due, &l), 1);
    assert_int_equal(l.aggs[0].negative, 1);
    /* many symbols: the table grows */
    for (int i = 0; i < 200; i++) {
        char s[16];
        snprintf(s, sizeof(s), "S%d", i);
        assert_int_equal(sent_windows_add(w, s, t0, i % 2 ? 0.5 : -0.5), 0);
    }
    assert_int_equal(sent_windows_symbols(w), 202);
    sent_windows_aggregate(w, "S7", t0, HOUR, &a);
    assert_true(a.mentions == 1 && a.positive == 1);

    json_t *j = sent_update_json("AAPL", "1h", &l.aggs[0], 1727875800250LL);
    char *s = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
    assert_string_equal(s, "{\"symbol\":\"AAPL\",\"window\":\"1h\",\"compound\":-0.0167,\"positive\":2,"
                           "\"negative\":1,\"neutral\":0,\"mentions\":3,\"ts\":\"2024-10-02T13:30:00.250Z\"}");
    free(s);
    json_decref(j);
    sent_windows_free(w);
}

/* ---- end to end -------------------------------------------------------- */

static rd_kafka_t *mock_rk;
static rd_kafka_mock_cluster_t *mock;
static char bootstrap[256], spool[64], dsn[512], schema[64], prefix[64];
static int redis_port;
static vader_model model;
static int64_t fake_now;

static int64_t clock_fn(void *ud)
{
    return fake_now;
}

static int64_t wall_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

static char afinn[4200];

static char *lexicon_path(void)
{
    static char path[4200];
    FILE *p = popen("scripts/lexicons.sh", "r");
    char line[4096];
    while (p != NULL && fgets(line, sizeof(line), p) != NULL) {
        line[strcspn(line, "\n")] = '\0';
        if (strncmp(line, "INSITE_ANALYTICS_VADER_LEXICON=", 31) == 0)
            snprintf(path, sizeof(path), "%s", line + 31);
        if (strncmp(line, "INSITE_ANALYTICS_AFINN_PATH=", 28) == 0)
            snprintf(afinn, sizeof(afinn), "%s", line + 28);
    }
    if (p != NULL)
        pclose(p);
    return path;
}

static PGconn *pg_plain(void)
{
    char err[256];
    PGconn *c = insite_pg_connect(getenv("INSITE_PG_DSN"), err, sizeof(err));
    if (c == NULL)
        fprintf(stderr, "postgres: %s\n", err);
    return c;
}

static int setup(void **state)
{
    char err[512];
    insite_log_set_level(INSITE_LOG_ERROR);
    if (getenv("INSITE_PG_DSN") == NULL || getenv("INSITE_REDIS_PORT") == NULL)
        return 0;   /* the end-to-end test skips loudly */
    redis_port = atoi(getenv("INSITE_REDIS_PORT"));
    if ((model.lex = vader_lexicon_new(lexicon_path(), err, sizeof(err))) == NULL) {
        fprintf(stderr, "lexicon: %s\n", err);
        return -1;
    }
    /* as the worker runs: finance overlay and entities on */
    char *const tickers[] = { "AAPL", "MSFT" };
    if (finance_overlay((lexicon *)model.lex, afinn, err, sizeof(err)) < 0
        || (model.tickers = finance_tickers(tickers, 2)) == NULL) {
        fprintf(stderr, "finance overlay: %s\n", err);
        return -1;
    }
    model.entities = 1;
    snprintf(spool, sizeof(spool), "/tmp/insite-spool.XXXXXX");
    if (mkdtemp(spool) == NULL)
        return -1;
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "log_level", "3", err, sizeof(err));   /* no bootstrap: fine */
    if ((mock_rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err))) == NULL
        || (mock = rd_kafka_mock_cluster_new(mock_rk, 1)) == NULL)
        return -1;
    snprintf(bootstrap, sizeof(bootstrap), "%s", rd_kafka_mock_cluster_bootstraps(mock));
    rd_kafka_mock_topic_create(mock, "social_posts", 2, 1);
    rd_kafka_mock_topic_create(mock, "social_posts.dlq", 1, 1);
    rd_kafka_mock_topic_create(mock, "sentiment_updates", 1, 1);

    /* a schema of our own: search_path through the DSN's options */
    snprintf(schema, sizeof(schema), "analytics_pipe_%ld", (long)getpid());
    snprintf(prefix, sizeof(prefix), "insite-test-%ld:", (long)getpid());
    const char *base = getenv("INSITE_PG_DSN");
    snprintf(dsn, sizeof(dsn), "%s%soptions=-csearch_path%%3D%s", base,
             strchr(base, '?') ? "&" : "?", schema);
    PGconn *c = pg_plain();
    char sql[128];
    snprintf(sql, sizeof(sql), "CREATE SCHEMA %s", schema);
    PGresult *r = c ? PQexec(c, sql) : NULL;
    int ok = r && PQresultStatus(r) == PGRES_COMMAND_OK;
    PQclear(r);
    if (c)
        PQfinish(c);
    return ok ? 0 : -1;
}

static int teardown(void **state)
{
    char cmd[160];
    if (schema[0]) {
        PGconn *c = pg_plain();
        snprintf(cmd, sizeof(cmd), "DROP SCHEMA %s CASCADE", schema);
        if (c) {
            PQclear(PQexec(c, cmd));
            PQfinish(c);
        }
    }
    if (redis_port) {
        struct timeval tv = { 1, 0 };
        redisContext *rc = redisConnectWithTimeout("127.0.0.1", redis_port, tv);
        if (rc && !rc->err) {
            redisReply *keys = redisCommand(rc, "KEYS %s*", prefix);
            for (size_t i = 0; keys && i < keys->elements; i++)
                freeReplyObject(redisCommand(rc, "DEL %s", keys->element[i]->str));
            freeReplyObject(keys);
        }
        redisFree(rc);
    }
    if (mock)
        rd_kafka_mock_cluster_destroy(mock);
    if (mock_rk)
        rd_kafka_destroy(mock_rk);
    lexicon_free((lexicon *)model.lex);
    lexicon_free((lexicon *)model.tickers);
    if (spool[0]) {
        snprintf(cmd, sizeof(cmd), "rm -rf %s", spool);
        return system(cmd) == 0 ? 0 : -1;
    }
    return 0;
}

static void produce_raw(const char *topic, const char *key, const char *payload)
{
    char err[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap, err, sizeof(err));
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    assert_non_null(rk);
    assert_int_equal(rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic),
                                       RD_KAFKA_V_KEY(key, key ? strlen(key) : 0),
                                       RD_KAFKA_V_VALUE((void *)payload, strlen(payload)),
                                       RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END),
                     RD_KAFKA_RESP_ERR_NO_ERROR);
    assert_int_equal(rd_kafka_flush(rk, 5000), RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_destroy(rk);
}

/* A post exactly as the collector's produce_post() builds it. */
static void produce_post(const char *source_id, const char *symbol, const char *text,
                         int64_t created_ms)
{
    char t[INSITE_RFC3339_LEN];
    insite_clock_rfc3339_ms(t, sizeof(t), created_ms);
    json_t *d = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "source", "reddit",
                          "source_id", source_id, "symbol", symbol, "author", "someone",
                          "text", text, "url", "https://example.invalid/", "created_at", t);
    char *m = envelope_text("social_post", d);
    produce_raw("social_posts", symbol, m);
    free(m);
}

/* Every message of a topic: [{"key":..,"value":..}] (values parsed). */
static json_t *read_topic(const char *topic, size_t want)
{
    char err[256], group[64];
    static int no;
    snprintf(group, sizeof(group), "reader-%d", ++no);
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap, err, sizeof(err));
    rd_kafka_conf_set(conf, "group.id", group, err, sizeof(err));
    rd_kafka_conf_set(conf, "auto.offset.reset", "earliest", err, sizeof(err));
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
    rd_kafka_poll_set_consumer(rk);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, topic, RD_KAFKA_PARTITION_UA);
    rd_kafka_subscribe(rk, l);
    rd_kafka_topic_partition_list_destroy(l);
    json_t *all = json_array();
    int64_t until = insite_clock_mono_ms() + 15000;
    while (json_array_size(all) < want && insite_clock_mono_ms() < until) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 200);
        if (m == NULL)
            continue;
        if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR)
            json_array_append_new(all, json_pack("{s:s%, s:o}", "key", m->key ? (char *)m->key : "",
                                                 m->key_len, "value",
                                                 json_loadb(m->payload, m->len, 0, NULL)));
        rd_kafka_message_destroy(m);
    }
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    return all;
}

typedef struct {
    sent_consumer *in;
    insite_kafka *out;
    insite_redis *redis;
    sent_db *db;
    sent_pipeline *p;
} rig;

static void rig_open(rig *g)
{
    insite_kafka_options ko = {
        .bootstrap = bootstrap, .client_id = "test", .compression = "none", .linger_ms = 5,
        .message_timeout_ms = 5000, .spool_dir = spool, .retry_max = 100,
        .retry_backoff_ms = 100, .flush_timeout_ms = 5000, .replication_factor = 1,
    };
    insite_redis_options ro = {
        .host = "127.0.0.1", .port = redis_port, .connect_timeout_ms = 1000,
        .command_timeout_ms = 2000, .prefix = prefix, .history = 100, .idempotency_ttl_s = 60,
    };
    sent_consumer_options co = { .bootstrap = bootstrap, .group = "analytics-test",
                                 .topic = "social_posts", .commit_interval_ms = 200,
                                 .session_timeout_ms = 6000 };
    assert_non_null(g->out = insite_kafka_new(&ko));
    assert_non_null(g->redis = insite_redis_new(&ro));
    assert_non_null(g->db = sent_db_new(dsn, "workers/migrations"));
    assert_non_null(g->in = sent_consumer_new(&co));
    sent_pipeline_options po = {
        .model = &model, .in = g->in, .out = g->out, .redis = g->redis, .db = g->db,
        .service = "analytics", .dlq_topic = "social_posts.dlq",
        .updates_topic = "sentiment_updates", .publish_interval_ms = 10000,
        .retry_backoff_ms = 100, .now_ms = clock_fn,
    };
    assert_non_null(g->p = sent_pipeline_new(&po));
}

static void rig_close(rig *g)
{
    sent_pipeline_free(g->p);
    sent_consumer_close(g->in);
    insite_kafka_close(g->out);
    insite_redis_free(g->redis);
    sent_db_free(g->db);
}

/* Steps until `consumed` messages were seen (or 20 s). */
static sent_pipeline_stats run_until(rig *g, uint64_t consumed)
{
    sent_pipeline_stats st;
    int64_t until = insite_clock_mono_ms() + 20000;
    do {
        sent_pipeline_step(g->p, 100);
        sent_pipeline_get_stats(g->p, &st);
    } while (st.consumed < consumed && insite_clock_mono_ms() < until);
    return st;
}

static long pg_count(const char *sql)
{
    char err[256];
    PGconn *c = insite_pg_connect(dsn, err, sizeof(err));
    assert_non_null(c);
    PGresult *r = PQexec(c, sql);
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        fail_msg("%s: %s", sql, PQerrorMessage(c));
    long n = atol(PQgetvalue(r, 0, 0));
    PQclear(r);
    PQfinish(c);
    return n;
}

/* The data of every sentiment_update in the channel's history. */
static json_t *redis_updates(const char *symbol)
{
    struct timeval tv = { 1, 0 };
    redisContext *c = redisConnectWithTimeout("127.0.0.1", redis_port, tv);
    assert_true(c != NULL && !c->err);
    redisReply *r = redisCommand(c, "ZRANGE %s{sentiment_updates:%s}:hist 0 -1", prefix, symbol);
    json_t *all = json_array();
    for (size_t i = 0; r && i < r->elements; i++) {
        json_t *m = json_loads(r->element[i]->str, 0, NULL);
        assert_string_equal(json_string_value(json_object_get(m, "type")), "sentiment_update");
        json_array_append(all, json_object_get(m, "data"));
        json_decref(m);
    }
    freeReplyObject(r);
    redisFree(c);
    return all;
}

/* The latest update of a window, and how many there were. */
static json_t *last_window(json_t *updates, const char *window, size_t *count)
{
    json_t *u, *last = NULL;
    size_t i, n = 0;
    json_array_foreach(updates, i, u)
        if (strcmp(json_string_value(json_object_get(u, "window")), window) == 0) {
            last = u;
            n++;
        }
    if (count)
        *count = n;
    return last;
}

static void test_pipeline(void **state)
{
    if (mock == NULL) {
        fprintf(stderr, "SKIP test_pipeline: needs INSITE_PG_DSN and INSITE_REDIS_PORT "
                        "(scripts/services.sh start; . build/run/services.env)\n");
        skip();
    }
    int64_t t0 = wall_ms();
    fake_now = t0;
    rig g;

    /* AAPL: two positive, one negative in the last hour, one positive 3 h ago.
     * All nine are in the topic before the consumer starts, but how they
     * split over its fetches is still librdkafka's business: a first fetch
     * may hold only some of AAPL's posts, which then go out at once and the
     * rest when the 10 s interval is over (seen under ASan, twice).  So the
     * checks read each window's latest update once the interval has passed. */
    produce_post("t3_p1", "AAPL", "$AAPL earnings beat, very bullish!", t0 - 10 * 60000);
    produce_post("t3_p2", "AAPL", "Great quarter for AAPL", t0 - 5 * 60000);
    produce_post("t3_p3", "AAPL", "This is a terrible downgrade", t0 - 60000);
    produce_post("t3_p4", "AAPL", "I love it", t0 - 3 * HOUR);
    produce_post("t3_m1", "MSFT", "MSFT is fine I guess", t0 - 60000);
    produce_post("t3_old", "MSFT", "ancient history, wonderful", t0 - 48 * HOUR);  /* outside 24 h */
    produce_raw("social_posts", "AAPL", "{\"event_type\":\"social_post\",\"data\":{\"text\":\"no id\"}}");
    produce_raw("social_posts", NULL, "\xff\xfe not even text");
    produce_post("t3_p1", "AAPL", "$AAPL earnings beat, very bullish!", t0 - 10 * 60000); /* again */
    rig_open(&g);

    sent_pipeline_stats st = run_until(&g, 9);
    assert_int_equal(st.consumed, 9);
    assert_int_equal(st.poison, 2);
    assert_int_equal(st.duplicates, 1);
    assert_int_equal(st.scored, 6);
    assert_true(st.published >= 2);                 /* AAPL and MSFT, at once */
    assert_int_equal(pg_count("SELECT count(*) FROM sentiment_post_scores"), 6);
    fake_now = t0 + 10000;                          /* what was held back, if any */
    sent_pipeline_tick(g.p);
    sent_pipeline_get_stats(g.p, &st);
    uint64_t published = st.published;
    assert_true(published == 2 || published == 3);

    /* the scores are VADER's with the finance overlay and the cashtag off */
    vader_work *w = vader_work_new();
    vader_scores s1, s2, s3, s4;
    vader_score(&model, w, "$AAPL earnings beat, very bullish!", 34, &s1);
    vader_score(&model, w, "Great quarter for AAPL", 22, &s2);
    vader_score(&model, w, "This is a terrible downgrade", 28, &s3);
    vader_score(&model, w, "I love it", 9, &s4);
    vader_work_free(w);
    assert_true(s1.compound >= 0.05 && s2.compound >= 0.05 && s3.compound <= -0.05);

    json_t *ups = redis_updates("AAPL");
    size_t n1h, n24h;
    json_t *h1 = last_window(ups, "1h", &n1h), *d1 = last_window(ups, "24h", &n24h);
    assert_int_equal(n1h, published - 1);           /* MSFT once, AAPL the rest */
    assert_int_equal(n24h, published - 1);
    assert_non_null(h1);
    assert_non_null(d1);
    assert_int_equal(json_integer_value(json_object_get(h1, "mentions")), 3);
    assert_int_equal(json_integer_value(json_object_get(h1, "positive")), 2);
    assert_int_equal(json_integer_value(json_object_get(h1, "negative")), 1);
    assert_int_equal(json_integer_value(json_object_get(h1, "neutral")), 0);
    double mean1 = vader_round((s1.compound + s2.compound + s3.compound) / 3, 4);
    assert_true(fabs(json_real_value(json_object_get(h1, "compound")) - mean1) < 1e-9);
    assert_int_equal(json_integer_value(json_object_get(d1, "mentions")), 4);
    double mean24 = vader_round((s1.compound + s2.compound + s3.compound + s4.compound) / 4, 4);
    assert_true(fabs(json_real_value(json_object_get(d1, "compound")) - mean24) < 1e-9);
    json_decref(ups);
    ups = redis_updates("MSFT");
    assert_int_equal(json_integer_value(json_object_get(last_window(ups, "24h", NULL), "mentions")), 1);
    json_decref(ups);

    /* the DLQ has both poison messages with their reasons */
    json_t *dlq = read_topic("social_posts.dlq", 2), *m;
    size_t i;
    int got_reason = 0, got_hex = 0;
    assert_int_equal(json_array_size(dlq), 2);
    json_array_foreach(dlq, i, m) {
        json_t *v = json_object_get(m, "value"), *d = json_object_get(v, "data");
        assert_string_equal(json_string_value(json_object_get(v, "event_type")), "dead_letter");
        assert_string_equal(json_string_value(json_object_get(d, "topic")), "social_posts");
        got_reason += strstr(json_string_value(json_object_get(d, "reason")), "source_id") != NULL;
        got_hex += json_object_get(d, "payload_hex") != NULL;
    }
    assert_int_equal(got_reason, 1);
    assert_int_equal(got_hex, 1);
    json_decref(dlq);

    /* 20 s on, a change goes out at once (the interval is over); one 2 s
     * after that is held back until 10 s after the publish before it */
    fake_now = t0 + 20000;
    produce_post("t3_p5", "AAPL", "Awful, horrible, bearish", t0 + 19000);
    st = run_until(&g, 10);
    assert_int_equal(st.published, published + 1);
    fake_now = t0 + 22000;
    produce_post("t3_p6", "AAPL", "What a wonderful rally", t0 + 21000);
    st = run_until(&g, 11);
    assert_int_equal(st.published, published + 1);
    fake_now = t0 + 29999;
    sent_pipeline_tick(g.p);
    sent_pipeline_get_stats(g.p, &st);
    assert_int_equal(st.published, published + 1);
    fake_now = t0 + 30000;
    sent_pipeline_tick(g.p);
    sent_pipeline_get_stats(g.p, &st);
    assert_int_equal(st.published, published + 2);
    ups = redis_updates("AAPL");
    h1 = last_window(ups, "1h", NULL);
    assert_int_equal(json_integer_value(json_object_get(h1, "mentions")), 5);
    assert_int_equal(json_integer_value(json_object_get(h1, "negative")), 2);
    assert_int_equal(json_integer_value(json_object_get(h1, "positive")), 3);
    json_decref(ups);
    /* unchanged: nothing more */
    fake_now = t0 + 50000;
    sent_pipeline_tick(g.p);
    sent_pipeline_get_stats(g.p, &st);
    assert_int_equal(st.published, published + 2);
    published += 2;

    /* Kafka: enveloped, keyed by symbol; sentiment_data: latest per window */
    size_t nk = 2 * published;                      /* 1h and 24h each time */
    json_t *kt = read_topic("sentiment_updates", nk);
    assert_int_equal(json_array_size(kt), nk);
    json_t *last = json_array_get(kt, nk - 1);
    assert_string_equal(json_string_value(json_object_get(last, "key")), "AAPL");
    json_t *v = json_object_get(last, "value");
    assert_string_equal(json_string_value(json_object_get(v, "event_type")), "sentiment_update");
    assert_string_equal(json_string_value(json_object_get(v, "source_service")), "analytics");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(v, "data"), "mentions")), 6);
    json_decref(kt);
    assert_int_equal(pg_count("SELECT mentions FROM sentiment_data WHERE symbol = 'AAPL'"
                              " AND \"window\" = '24h' ORDER BY ts DESC LIMIT 1"), 6);
    assert_int_equal(pg_count("SELECT neg_count FROM sentiment_data WHERE symbol = 'AAPL'"
                              " AND \"window\" = '1h' ORDER BY ts DESC LIMIT 1"), 2);
    rig_close(&g);

    /* restart: offsets were committed (nothing is consumed again) and the
     * windows come back from sentiment_post_scores; a redelivered post is a
     * duplicate, not a new mention */
    rig_open(&g);
    produce_post("t3_p2", "AAPL", "Great quarter for AAPL", t0 - 5 * 60000);
    st = run_until(&g, 1);
    assert_int_equal(st.consumed, 1);
    assert_int_equal(st.duplicates, 1);
    assert_int_equal(st.scored, 0);
    fake_now = t0 + 70000;
    sent_pipeline_tick(g.p);
    ups = redis_updates("AAPL");
    size_t n24h_after;
    json_t *after = last_window(ups, "24h", &n24h_after);   /* the restart's first publish */
    assert_int_equal(n24h_after, n24h + 3);         /* p5, p6 (held back), the restart */
    assert_int_equal(json_integer_value(json_object_get(after, "mentions")), 6);
    json_decref(ups);
    rig_close(&g);
}

int main(void)
{
    insite_log_set_level(INSITE_LOG_ERROR);   /* test_windows logs one expected error */
    const struct CMUnitTest pure[] = {
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_windows),
    };
    const struct CMUnitTest e2e[] = {
        cmocka_unit_test(test_pipeline),
    };
    int rc = cmocka_run_group_tests_name("analytics_pipeline_pure", pure, NULL, NULL);
    return rc | cmocka_run_group_tests_name("analytics_pipeline", e2e, setup, teardown);
}
