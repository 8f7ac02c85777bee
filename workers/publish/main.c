/* insite-publish: publish one message the way the workers do, for operators
 * and for the nginx module tests.
 *
 *   insite-publish -c FILE --channel stock_updates:AAPL --type stock_update \
 *       --data '{"price":1}' [--idempotency-key K] [--topic T [--key K]
 *       [--correlation-id ID]]
 *   insite-publish -c FILE --create-topics
 *
 * Prints one JSON line: {"channel":...,"seq":N,"epoch":...,"duplicate":false}
 * (plus "topic" and "event_id" when --topic is given).  Exit status 0 on
 * success, 1 on failure, 2 on usage errors. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "envelope.h"
#include "kafka.h"
#include "log.h"
#include "redis_publish.h"
#include "runtime.h"
#include "worker.h"

static const insite_config_key publish_keys[] = {
    { "publish.source_service", INSITE_CFG_STRING, "insite-publish", 0, 0,
      "source_service written into Kafka envelopes" },
    { "publish.topic_timeout", INSITE_CFG_DURATION, "10s", 100, 600000,
      "how long --create-topics waits for the cluster" },
};

static const char usage[] =
    "--channel CH --type T --data JSON [--idempotency-key K]\n"
    "       [--topic TOPIC [--key KEY] [--correlation-id ID]]\n"
    "   or: --create-topics";

typedef struct {
    const char *channel, *type, *data, *idem, *topic, *key, *corr;
    int create_topics;
} args;

static int parse_args(int argc, char **argv, args *a)
{
    static const struct option opts[] = {
        { "channel", required_argument, NULL, 'C' },
        { "type", required_argument, NULL, 't' },
        { "data", required_argument, NULL, 'd' },
        { "idempotency-key", required_argument, NULL, 'i' },
        { "topic", required_argument, NULL, 'T' },
        { "key", required_argument, NULL, 'k' },
        { "correlation-id", required_argument, NULL, 'r' },
        { "create-topics", no_argument, NULL, 'X' },
        { NULL, 0, NULL, 0 },
    };
    int c;

    memset(a, 0, sizeof(*a));
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'C': a->channel = optarg; break;
        case 't': a->type = optarg; break;
        case 'd': a->data = optarg; break;
        case 'i': a->idem = optarg; break;
        case 'T': a->topic = optarg; break;
        case 'k': a->key = optarg; break;
        case 'r': a->corr = optarg; break;
        case 'X': a->create_topics = 1; break;
        default: return -1;
        }
    }
    if (optind < argc) {
        insite_log_error("unexpected argument \"%s\"", argv[optind]);
        return -1;
    }
    if (!a->create_topics && (!a->channel || !a->type || !a->data)) {
        insite_log_error("--channel, --type and --data are required");
        return -1;
    }
    return 0;
}

static insite_kafka *open_kafka(const insite_config *cfg)
{
    insite_kafka_options ko;
    insite_kafka_options_from_config(cfg, &ko);
    return insite_kafka_new(&ko);
}

static int create_topics(const insite_config *cfg)
{
    char err[512];
    insite_kafka *k = open_kafka(cfg);
    if (k == NULL)
        return 1;
    int rc = insite_kafka_create_topics(k, (int)insite_config_duration_ms(cfg, "publish.topic_timeout"),
                                        err, sizeof(err));
    if (rc != 0)
        insite_log_error("create topics: %s", err);
    else
        printf("{\"topics\":%zu,\"ok\":true}\n", insite_kafka_ntopics);
    insite_kafka_close(k);
    return rc == 0 ? 0 : 1;
}

/* Returns the event id in *event_id (caller frees) or NULL on failure. */
static int produce(const insite_config *cfg, const args *a, char **event_id)
{
    json_error_t jerr;
    json_t *data = json_loads(a->data, JSON_DECODE_ANY, &jerr);
    if (data == NULL) {
        insite_log_error("--data is not JSON: %s", jerr.text);
        return -1;
    }
    json_t *env = insite_envelope_new(a->type, insite_config_string(cfg, "publish.source_service"),
                                      a->corr, data);
    char *text = env ? insite_envelope_dumps(env) : NULL;
    if (text == NULL) {
        json_decref(env);
        return -1;
    }
    *event_id = strdup(json_string_value(json_object_get(env, "event_id")));
    json_decref(env);

    insite_kafka *k = open_kafka(cfg);
    int rc = -1;
    if (k != NULL) {
        if (insite_kafka_produce(k, a->topic, a->key ? a->key : a->channel, text, strlen(text)) == 0
            && insite_kafka_flush(k, (int)insite_config_duration_ms(cfg, "kafka.flush_timeout")) == 0)
            rc = 0;
        else
            insite_log_error("kafka: message to %s not delivered (kept in the retry spool)", a->topic);
        insite_kafka_close(k);
    }
    free(text);
    return rc;
}

static int publish(const insite_config *cfg, const args *a)
{
    insite_redis_options ro;
    insite_publish_result res;
    char err[512], *event_id = NULL;

    insite_redis_options_from_config(cfg, &ro);
    insite_redis *r = insite_redis_new(&ro);
    if (r == NULL)
        return 1;
    int rc = insite_redis_publish(r, a->channel, a->type, a->data, a->idem, &res, err, sizeof(err));
    insite_redis_free(r);
    if (rc != 0) {
        insite_log_error("publish to %s: %s", a->channel, err);
        return 1;
    }
    /* Kafka only after Redis accepted it: an invalid message never reaches
     * the durable log. */
    if (a->topic != NULL && produce(cfg, a, &event_id) != 0) {
        free(event_id);
        return 1;
    }

    json_t *out = json_pack("{s:s, s:I, s:s, s:b}", "channel", a->channel,
                            "seq", (json_int_t)res.seq, "epoch", res.epoch,
                            "duplicate", res.duplicate);
    if (out && a->topic) {
        json_object_set_new(out, "topic", json_string(a->topic));
        json_object_set_new(out, "event_id", json_string(event_id ? event_id : ""));
    }
    char *text = out ? json_dumps(out, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    if (text != NULL)
        printf("%s\n", text);
    free(text);
    json_decref(out);
    free(event_id);
    return 0;
}

static int parse(insite_runtime *rt, void *ud)
{
    return parse_args(rt->argc, rt->argv, ud) == 0 ? -1 : insite_worker_usage(rt, usage);
}

static int run(insite_runtime *rt, insite_config **cfg, void *ud)
{
    const args *a = ud;

    (void)rt;
    return a->create_topics ? create_topics(*cfg) : publish(*cfg, a);
}

int main(int argc, char **argv)
{
    args a;
    const insite_worker_keys keys[] = {
        { insite_redis_config_keys, insite_redis_config_nkeys },
        { insite_kafka_config_keys, insite_kafka_config_nkeys },
        INSITE_WORKER_KEYS(publish_keys),
    };
    const insite_worker_options o = {
        .name = "insite-publish", .usage = usage, .keys = keys,
        .nkeys = sizeof(keys) / sizeof(keys[0]), .args = parse, .run = run, .ud = &a,
    };
    return insite_worker_main(&o, argc, argv);
}
