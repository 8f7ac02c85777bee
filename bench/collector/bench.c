/* Publish-path throughput of the collector's two sinks, through the same
 * runtime calls the collector makes:
 *
 *   bench kafka BOOTSTRAP N    N 200-byte events, insite_kafka_produce + flush
 *   bench redis PORT N [C]     N stock_update publishes via lua/publish.lua
 *                              over C connections (threads), default 1
 *
 * Prints one line: "<what>: N messages in S s = R msg/s". */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "kafka.h"
#include "log.h"
#include "redis_publish.h"

static char payload[201];

static int bench_kafka(const char *bootstrap, long n)
{
    char spool[] = "/tmp/insite-bench-spool.XXXXXX";
    if (mkdtemp(spool) == NULL)
        return 1;
    insite_kafka_options o = {
        .bootstrap = bootstrap, .client_id = "insite-bench", .compression = "lz4",
        .linger_ms = 20, .message_timeout_ms = 30000, .spool_dir = spool,
        .retry_max = 1000000, .retry_backoff_ms = 100, .flush_timeout_ms = 30000,
        .replication_factor = 1,
    };
    static const char *keys[] = { "AAPL", "MSFT", "GOOGL", "AMZN", "TSLA" };
    insite_kafka *k = insite_kafka_new(&o);
    if (k == NULL)
        return 1;
    double t0 = insite_clock_mono_s();
    for (long i = 0; i < n; i++) {
        /* 1 = queue full, kept in the runtime's retry queue: slow down */
        if (insite_kafka_produce(k, "bench_stock_updates", keys[i % 5], payload, 200) != 0)
            insite_kafka_poll(k, 5);
        if (i % 1000 == 0)
            insite_kafka_poll(k, 0);
    }
    int left = insite_kafka_flush(k, 60000);
    double s = insite_clock_mono_s() - t0;
    insite_kafka_stats st;
    insite_kafka_get_stats(k, &st);
    printf("kafka producer (%s, acks=all, idempotent): %ld messages of 200 bytes in %.2f s = %.0f msg/s"
           " (delivered %llu, failed %llu, outstanding %d)\n", insite_kafka_compression(k), n, s, n / s,
           (unsigned long long)st.delivered, (unsigned long long)st.failed, left);
    insite_kafka_close(k);
    rmdir(spool);                  /* empty unless something was spooled */
    return left == 0 ? 0 : 1;
}

typedef struct {
    int port, id;
    long n;
    int batch;          /* 1: one round trip per message; N: pipelines of N */
    int rc;
} redis_job;

static void *redis_worker(void *arg)
{
    redis_job *j = arg;
    insite_redis_options o = {
        .host = "127.0.0.1", .port = j->port, .password = "", .connect_timeout_ms = 1000,
        .command_timeout_ms = 2000, .prefix = "insite-bench:", .history = 1000,
        .idempotency_ttl_s = 60,
    };
    insite_redis *r = insite_redis_new(&o);
    insite_publish_result res[256];
    insite_publish_msg msgs[256];
    int rcs[256];
    char err[256], channels[50][64];
    j->rc = r == NULL;
    for (int c = 0; c < 50; c++)
        snprintf(channels[c], sizeof(channels[c]), "stock_updates:SYM%d_%d", j->id, c);
    for (long i = 0; r && i < j->n; i += j->batch) {
        int k = 0;
        for (; k < j->batch && i + k < j->n; k++)
            msgs[k] = (insite_publish_msg){ channels[(i + k) % 50], "stock_update", payload, NULL };
        int ok = j->batch == 1
            ? (insite_redis_publish(r, msgs[0].channel, msgs[0].type, payload, NULL, &res[0],
                                    err, sizeof(err)) == 0 ? 1 : -1)
            : insite_redis_publish_batch(r, msgs, (size_t) k, res, rcs, err, sizeof(err));
        if (ok != k) {
            fprintf(stderr, "publish: %s\n", ok < 0 ? err : "messages refused");
            j->rc = 1;
            break;
        }
    }
    insite_redis_free(r);
    return NULL;
}

/* n publishes split over `threads` connections (each publisher is
 * synchronous: one round trip per message) */
static int bench_redis(int port, long n, int threads, int batch)
{
    pthread_t t[64];
    redis_job j[64];
    int rc = 0;
    double t0 = insite_clock_mono_s();
    for (int i = 0; i < threads; i++) {
        j[i] = (redis_job){ .port = port, .id = i, .n = n / threads, .batch = batch };
        pthread_create(&t[i], NULL, redis_worker, &j[i]);
    }
    for (int i = 0; i < threads; i++) {
        pthread_join(t[i], NULL);
        rc |= j[i].rc;
    }
    double s = insite_clock_mono_s() - t0;
    long done = n / threads * threads;
    printf("redis publish.lua (seq + history 1000 + PUBLISH) over %d connection%s, %s: "
           "%ld messages in %.2f s = %.0f msg/s\n", threads, threads == 1 ? "" : "s",
           batch == 1 ? "one round trip each" : "pipelined", done, s, done / s);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc != 4 && !(argc >= 5 && argc <= 6 && strcmp(argv[1], "redis") == 0)) {
        fprintf(stderr, "usage: %s kafka BOOTSTRAP N | redis PORT N [CONNECTIONS [BATCH]]\n", argv[0]);
        return 2;
    }
    insite_log_set_level(INSITE_LOG_ERROR);
    /* a 200-byte stock_update-like JSON value */
    int len = snprintf(payload, sizeof(payload), "{\"symbol\":\"AAPL\",\"price\":225.67,\"change\":-1.11,"
                       "\"change_percent\":-0.4895,\"volume\":33638504,\"currency\":\"USD\","
                       "\"market_time\":\"2024-10-02T20:00:01.000Z\",\"source\":\"bench\",\"pad\":\"");
    while (len < 198)
        payload[len++] = 'x';
    payload[len++] = '"';
    payload[len++] = '}';
    payload[len] = '\0';
    long n = atol(argv[3]);
    return strcmp(argv[1], "kafka") == 0 ? bench_kafka(argv[2], n) : bench_redis(atoi(argv[2]), n, argc >= 5 ? atoi(argv[4]) : 1,
                             argc == 6 ? atoi(argv[5]) : 1);
}
