#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#include "clock.h"
#include "envelope.h"
#include "ingest.h"
#include "kafka_dlq.h"
#include "log.h"
#include "social_msg.h"

#define BATCH 500

struct sent_pipeline {
    sent_pipeline_options o;
    vader_work *work;
    sent_windows *win;
    sent_emitter emit;
    int loaded;                     /* windows rebuilt from the table */
    int64_t backoff_until;          /* monotonic ms */
    sent_pipeline_stats st;
};

static int64_t real_now(void *ud)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

static int64_t now_ms(const sent_pipeline *p)
{
    return p->o.now_ms ? p->o.now_ms(p->o.now_ud) : real_now(NULL);
}

sent_pipeline *sent_pipeline_new(const sent_pipeline_options *o)
{
    sent_pipeline *p = calloc(1, sizeof(*p));
    if (p == NULL || (p->work = vader_work_new()) == NULL
        || (p->win = sent_windows_new()) == NULL) {
        insite_log_error("sentiment pipeline: out of memory");
        sent_pipeline_free(p);
        return NULL;
    }
    p->o = *o;
    if (p->o.retry_backoff_ms <= 0)
        p->o.retry_backoff_ms = 1000;
    p->emit = (sent_emitter){ .redis = o->redis, .kafka = o->out, .db = o->db,
                              .service = o->service, .topic = o->updates_topic };
    return p;
}

void sent_pipeline_free(sent_pipeline *p)
{
    if (p == NULL)
        return;
    vader_work_free(p->work);
    sent_windows_free(p->win);
    free(p);
}

static int load_row(const char *symbol, int64_t ts_ms, double compound, void *ud)
{
    return sent_windows_add(ud, symbol, ts_ms, compound);
}

static int load(sent_pipeline *p)
{
    long n = sent_db_load(p->o.db, now_ms(p) - sent_window_defs[SENT_NWINDOWS - 1].span_ms,
                          load_row, p->win);
    if (n < 0)
        return -1;
    p->loaded = 1;
    insite_log_info("sentiment pipeline: %ld score(s) of the last 24 h reloaded", n);
    return 0;
}

/* Sends m to the DLQ with the reason; 0 when the producer took it. */
static int dead_letter(sent_pipeline *p, const rd_kafka_message_t *m, const char *reason)
{
    return insite_kafka_dead_letter(p->o.out, p->o.service, p->o.dlq_topic, m, reason);
}

/* The time a post counts at in the windows. */
static int64_t post_time(const sent_pipeline *p, const sent_post *post, int64_t now)
{
    int64_t t = p->o.use_received_time ? now
              : post->created_ms > 0 ? post->created_ms
              : post->event_ms > 0 ? post->event_ms : now;
    return t > now ? now : t;       /* a clock ahead of ours */
}

/* 0 processed (scored, duplicate or dead-lettered), -1 retry later.
 * *etype: the event type it was handled as, for the processing metric. */
static int handle(sent_pipeline *p, const rd_kafka_message_t *m, const char **etype)
{
    sent_post post;
    char reason[256];
    *etype = "social_post";
    if (sent_post_parse(m->payload, m->len, &post, reason, sizeof(reason)) != 0) {
        *etype = "invalid";
        if (dead_letter(p, m, reason) != 0)
            return -1;
        p->st.poison++;
        return 0;
    }
    vader_scores s;
    if (vader_score(p->o.model, p->work, post.text, post.text_len, &s) != 0) {
        insite_log_error("sentiment pipeline: out of memory scoring %s/%s", post.source,
                         post.source_id);
        sent_post_clear(&post);
        return -1;
    }
    int64_t now = now_ms(p), ts = post_time(p, &post, now);
    int fresh[SENT_POST_SYMBOLS];
    int n = sent_db_record(p->o.db, &post, &s, ts, fresh);
    if (n < 0) {
        sent_post_clear(&post);
        return -1;
    }
    if ((size_t)n < post.nsymbols)
        p->st.duplicates++;
    for (size_t i = 0; i < post.nsymbols; i++)
        if (fresh[i])
            sent_windows_add(p->win, post.symbols[i], ts, s.compound);
    if (n > 0)
        p->st.scored++;
    sent_post_clear(&post);
    return 0;
}

static int due(const char *symbol, const sent_agg aggs[SENT_NWINDOWS],
               const int changed[SENT_NWINDOWS], void *ud)
{
    sent_pipeline *p = ud;
    int rc = sent_emit(&p->emit, symbol, aggs, changed, now_ms(p));
    if (rc == 0)
        p->st.published++;
    return rc;
}

void sent_pipeline_tick(sent_pipeline *p)
{
    if (p->loaded)
        sent_windows_due(p->win, now_ms(p), p->o.publish_interval_ms, due, p);
}

int sent_pipeline_step(sent_pipeline *p, int timeout_ms)
{
    int64_t mono = insite_clock_mono_ms();
    if (mono < p->backoff_until) {
        int64_t wait = p->backoff_until - mono;
        usleep((useconds_t)(wait < timeout_ms ? wait : timeout_ms) * 1000);
        sent_pipeline_tick(p);
        return -1;
    }
    if (!p->loaded && load(p) != 0) {
        p->backoff_until = mono + p->o.retry_backoff_ms;
        return -1;
    }
    if (p->o.out != NULL)
        insite_kafka_poll(p->o.out, 0);   /* delivery reports, retries */
    for (int i = 0; i < BATCH; i++) {
        rd_kafka_message_t *m = sent_consumer_poll(p->o.in, i == 0 ? timeout_ms : 0);
        if (m == NULL)
            break;
        p->st.consumed++;
        const char *etype;
        double t0 = insite_clock_mono_s();
        if (handle(p, m, &etype) == 0) {
            insite_kafka_consumer_metrics_processed(p->o.metrics, rd_kafka_topic_name(m->rkt),
                                                    etype, insite_clock_mono_s() - t0);
            sent_consumer_done(p->o.in, m);
        } else {
            p->st.retried++;
            sent_consumer_again(p->o.in, m);
            p->backoff_until = insite_clock_mono_ms() + p->o.retry_backoff_ms;
            rd_kafka_message_destroy(m);
            sent_pipeline_tick(p);
            return -1;
        }
        rd_kafka_message_destroy(m);
    }
    sent_pipeline_tick(p);
    return 0;
}

void sent_pipeline_get_stats(const sent_pipeline *p, sent_pipeline_stats *st)
{
    *st = p->st;
}
