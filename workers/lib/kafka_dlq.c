#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "envelope.h"
#include "kafka_dlq.h"
#include "kafka_topics.h"
#include "log.h"

static char *hex(const unsigned char *in, size_t n)
{
    static const char d[] = "0123456789abcdef";
    char *out = malloc(n * 2 + 1);
    if (out == NULL)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = d[in[i] >> 4];
        out[2 * i + 1] = d[in[i] & 15];
    }
    out[2 * n] = '\0';
    return out;
}

static json_t *dead_letter_data(const rd_kafka_message_t *m, const char *topic,
                                const char *reason, const char *key)
{
    json_t *d = json_pack("{s:s, s:s, s:i, s:I}", "reason", reason, "topic", topic,
                          "partition", (int)m->partition, "offset", (json_int_t)m->offset);
    if (d == NULL)                  /* the reason itself was unprintable */
        d = json_pack("{s:s, s:s, s:i, s:I}", "reason", "malformed message", "topic", topic,
                      "partition", (int)m->partition, "offset", (json_int_t)m->offset);
    if (d == NULL)
        return NULL;
    json_t *payload = json_stringn(m->payload ? m->payload : "", m->len);
    if (payload != NULL) {
        json_object_set_new(d, "payload", payload);
    } else {                        /* not UTF-8: keep the bytes anyway */
        char *h = hex(m->payload, m->len);
        json_object_set_new(d, "payload_hex", h ? json_string(h) : json_null());
        free(h);
    }
    if (key != NULL)
        json_object_set_new(d, "key", json_string(key));   /* NULL if not UTF-8: skipped */
    return d;
}

int insite_kafka_dead_letter(insite_kafka *out, const char *service, const char *dlq_topic,
                             const rd_kafka_message_t *m, const char *reason)
{
    const char *topic = rd_kafka_topic_name(m->rkt);
    char dlq[256];
    if (dlq_topic == NULL) {
        if (insite_kafka_dlq_topic(topic, dlq, sizeof(dlq)) != 0) {
            insite_log_error("kafka: cannot dead-letter %s[%d]@%lld: topic name too long",
                             topic, (int)m->partition, (long long)m->offset);
            return -1;
        }
        dlq_topic = dlq;
    }
    char *key = m->key ? strndup(m->key, m->key_len) : NULL;
    json_t *d = dead_letter_data(m, topic, reason, key);
    json_t *env = d ? insite_envelope_new("dead_letter", service, NULL, d) : NULL;
    char *text = env ? insite_envelope_dumps(env) : NULL;
    int rc = text && insite_kafka_produce(out, dlq_topic, key, text, strlen(text)) >= 0 ? 0 : -1;
    if (rc == 0)
        insite_log_warn("kafka: %s[%d]@%lld to %s: %s", topic, (int)m->partition,
                        (long long)m->offset, dlq_topic, reason);
    else
        insite_log_error("kafka: cannot dead-letter %s[%d]@%lld (%s); will retry",
                         topic, (int)m->partition, (long long)m->offset, reason);
    free(text);
    free(key);
    json_decref(env);
    return rc;
}
