/* The evaluation path: Kafka messages -> engine -> one transaction. */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <librdkafka/rdkafka.h>

#include "kafka_dlq.h"
#include "log.h"
#include "notify.h"

int64_t notify_now_ms(const notify_app *a)
{
    if (a->clock_file != NULL && a->clock_file[0] != '\0') {
        FILE *f = fopen(a->clock_file, "r");
        long long v = -1;
        if (f != NULL) {
            if (fscanf(f, "%lld", &v) != 1)
                v = -1;
            fclose(f);
        }
        if (v >= 0)
            return v;
        insite_log_warn("clock file %s: no number, using the real clock", a->clock_file);
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t notify_wall_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t notify_parse_time(const char *s)
{
    struct tm tm = { 0 };
    int ms = 0, n = 0;
    if (s == NULL || sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
                            &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &n) != 6)
        return -1;
    s += n;
    if (*s == '.') {
        int digits = 0;
        for (s++; *s >= '0' && *s <= '9'; s++, digits++)
            if (digits < 3)
                ms = ms * 10 + (*s - '0');
        while (digits > 0 && digits < 3) {
            ms *= 10;
            digits++;
        }
    }
    int off = 0;
    if (*s == '+' || *s == '-') {
        int hh, mm;
        if (sscanf(s + 1, "%2d:%2d", &hh, &mm) != 2)
            return -1;
        off = (hh * 60 + mm) * (*s == '-' ? -1 : 1);
    } else if (*s != 'Z')
        return -1;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    time_t t = timegm(&tm);
    if (t == (time_t)-1)
        return -1;
    return ((int64_t)t - off * 60) * 1000 + ms;
}

PGresult *notify_pg(PGconn *c, const char *sql, int n, const char *const *params)
{
    return PQexecParams(c, sql, n, NULL, params, NULL, NULL, 0);
}

int notify_pg_ok(PGresult *r, const char *what)
{
    ExecStatusType st = PQresultStatus(r);
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)
        return 1;
    insite_log_error("postgresql: %s: %s", what, r ? PQresultErrorMessage(r) : "no result");
    PQclear(r);
    return 0;
}

int notify_rule_from_row(notify_rule *r, const char *id, const char *user, const char *symbol,
                         const char *kind, const char *params, const char *cooldown_s,
                         const char *recurring, const char *priority, const char *enabled)
{
    json_t *body = json_loads(params, 0, NULL), *why = json_array();
    int rc = -1;
    if (json_is_object(body)) {
        json_object_set_new(body, "type", json_string(kind));
        json_object_set_new(body, "symbol", json_string(symbol));
        json_object_set_new(body, "cooldown_seconds", json_integer(atoll(cooldown_s)));
        json_object_set_new(body, "recurring", json_boolean(recurring[0] == 't'));
        json_object_set_new(body, "enabled", json_boolean(enabled[0] == 't'));
        json_object_set_new(body, "priority", json_string(priority));
        if (notify_rule_parse(body, NULL, r, why) == 0) {
            r->id = atoll(id);
            snprintf(r->user, sizeof(r->user), "%s", user);
            rc = 0;
        } else {
            char *t = json_dumps(why, 0);
            insite_log_error("rule %s in alert_rules is invalid: %s", id, t ? t : "?");
            free(t);
        }
    }
    json_decref(body);
    json_decref(why);
    return rc;
}

int notify_load(notify_app *a, PGconn *c)
{
    notify_engine *e = notify_engine_new();
    notify_offset *offs = NULL;
    size_t noffs = 0;
    PGresult *r;
    if (e == NULL)
        return -1;
    /* samples first: rules added afterwards learn their side from them */
    r = notify_pg(c, "SELECT symbol, metric, ts_ms, value, volume FROM notify_samples "
                     "WHERE ts_ms >= (SELECT coalesce(max(ts_ms), 0) - 86400000 FROM notify_samples) "
                     "ORDER BY symbol, metric, ts_ms", 0, NULL);
    if (!notify_pg_ok(r, "load samples"))
        goto fail;
    for (int i = 0; i < PQntuples(r); i++)
        notify_engine_sample(e, PQgetvalue(r, i, 0), atoi(PQgetvalue(r, i, 1)),
                             atoll(PQgetvalue(r, i, 2)), atof(PQgetvalue(r, i, 3)),
                             atof(PQgetvalue(r, i, 4)));
    PQclear(r);
    r = notify_pg(c, "SELECT r.id, r.user_id, r.symbol, r.kind, r.params::text, r.cooldown_s, "
                     "r.recurring, r.priority, r.enabled, coalesce(s.side, 0), "
                     "coalesce(s.last_fired_ms, 0), coalesce(s.fired_count, 0) "
                     "FROM alert_rules r LEFT JOIN alert_rule_state s ON s.rule_id = r.id "
                     "WHERE r.enabled", 0, NULL);
    if (!notify_pg_ok(r, "load rules"))
        goto fail;
    for (int i = 0; i < PQntuples(r); i++) {
        notify_rule x;
        if (notify_rule_from_row(&x, PQgetvalue(r, i, 0), PQgetvalue(r, i, 1),
                                 PQgetvalue(r, i, 2), PQgetvalue(r, i, 3), PQgetvalue(r, i, 4),
                                 PQgetvalue(r, i, 5), PQgetvalue(r, i, 6), PQgetvalue(r, i, 7),
                                 PQgetvalue(r, i, 8)) != 0)
            continue;
        x.side = atoi(PQgetvalue(r, i, 9));
        x.last_fired_ms = atoll(PQgetvalue(r, i, 10));
        x.fired_count = atoi(PQgetvalue(r, i, 11));
        if (notify_engine_add(e, &x) == NULL) {
            PQclear(r);
            goto fail;
        }
    }
    PQclear(r);
    notify_engine_clean(e, NULL, NULL);
    r = notify_pg(c, "SELECT topic, partition, next_offset FROM notify_offsets WHERE grp = $1",
                  1, &a->group);
    if (!notify_pg_ok(r, "load offsets"))
        goto fail;
    noffs = (size_t)PQntuples(r);
    offs = calloc(noffs + 1, sizeof(*offs));
    for (size_t i = 0; offs && i < noffs; i++) {
        snprintf(offs[i].topic, sizeof(offs[i].topic), "%s", PQgetvalue(r, (int)i, 0));
        offs[i].partition = atoi(PQgetvalue(r, (int)i, 1));
        offs[i].next = atoll(PQgetvalue(r, (int)i, 2));
    }
    PQclear(r);
    if (offs == NULL)
        goto fail;
    pthread_mutex_lock(&a->lock);
    notify_engine_free(a->engine);
    free(a->offsets);
    a->engine = e;
    a->offsets = offs;
    a->noffsets = noffs;
    pthread_mutex_unlock(&a->lock);
    insite_log_info("loaded %zu rules, %zu offsets", notify_engine_count(e), noffs);
    return 0;
fail:
    notify_engine_free(e);
    free(offs);
    return -1;
}

/* ---- one batch */

static notify_offset *offset_slot(notify_offset **v, size_t *n, const char *topic, int32_t part,
                                  int create)
{
    for (size_t i = 0; i < *n; i++)
        if ((*v)[i].partition == part && strcmp((*v)[i].topic, topic) == 0)
            return &(*v)[i];
    if (!create)
        return NULL;
    notify_offset *nv = realloc(*v, (*n + 1) * sizeof(*nv));
    if (nv == NULL)
        return NULL;
    *v = nv;
    notify_offset *o = &nv[(*n)++];
    snprintf(o->topic, sizeof(o->topic), "%s", topic);
    o->partition = part;
    o->next = -1;
    return o;
}

/* Parses one message into an update; 0, or -1 when it is not one we read. */
static int parse_update(notify_app *a, json_t *env, notify_update *u, const char **currency)
{
    const char *type = json_string_value(json_object_get(env, "event_type"));
    json_t *d = json_object_get(env, "data");
    const char *sym = json_string_value(json_object_get(d, "symbol"));
    memset(u, 0, sizeof(*u));
    if (type == NULL || sym == NULL || strlen(sym) > NOTIFY_SYMBOL_MAX)
        return -1;
    u->symbol = sym;
    if (strcmp(type, "stock_update") == 0) {
        json_t *p = json_object_get(d, "price"), *v = json_object_get(d, "volume");
        if (!json_is_number(p) || json_number_value(p) <= 0)
            return -1;
        u->has_price = 1;
        u->price = json_number_value(p);
        if (json_is_number(v)) {
            u->has_volume = 1;
            u->volume = json_number_value(v);
        }
        u->ts_ms = notify_parse_time(json_string_value(json_object_get(d, "market_time")));
        *currency = json_string_value(json_object_get(d, "currency"));
    } else if (strcmp(type, "sentiment_update") == 0) {
        const char *w = json_string_value(json_object_get(d, "window"));
        json_t *c = json_object_get(d, "compound");
        if (w == NULL || strcmp(w, a->sentiment_window) != 0 || !json_is_number(c))
            return -1;
        u->has_sentiment = 1;
        u->sentiment = json_number_value(c);
        u->ts_ms = notify_parse_time(json_string_value(json_object_get(d, "ts")));
    } else
        return -1;
    if (u->ts_ms < 0)
        u->ts_ms = notify_parse_time(json_string_value(json_object_get(env, "timestamp")));
    return u->ts_ms < 0 ? -1 : 0;
}

static const char *template_of(notify_kind k)
{
    switch (k) {
    case NR_PRICE_ABOVE:
    case NR_PRICE_BELOW:
        return "price_alert";
    case NR_PERCENT_CHANGE:
        return "percent_move";
    case NR_VOLUME_SPIKE:
        return "volume_spike";
    default:
        return "sentiment_shift";
    }
}

static double round_to(double v, double unit) { return round(v / unit) * unit; }

/* The template arguments of a fired rule. */
static json_t *fire_args(const notify_fire *f, const notify_update *u, const char *currency)
{
    const notify_rule *r = f->rule;
    const char *cur = currency && strlen(currency) == 3 ? currency : "USD";
    json_t *a = json_pack("{s:s, s:i, s:{s:I}}", "symbol", r->symbol, "count", 1, "fired_at",
                          "epoch_ms", (json_int_t)u->ts_ms);
    int wmin = (int)(r->window_ms / 60000);
    switch (r->kind) {
    case NR_PRICE_ABOVE:
    case NR_PRICE_BELOW:
        json_object_set_new(a, "direction", json_string(r->kind == NR_PRICE_ABOVE ? "above" : "below"));
        json_object_set_new(a, "threshold", json_pack("{s:f, s:s}", "amount", r->value, "currency", cur));
        json_object_set_new(a, "price", json_pack("{s:f, s:s}", "amount", f->value, "currency", cur));
        break;
    case NR_PERCENT_CHANGE:
        json_object_set_new(a, "change_percent", json_real(round_to(f->change, 0.01)));
        json_object_set_new(a, "window_minutes", json_integer(wmin));
        json_object_set_new(a, "price", json_pack("{s:f, s:s}", "amount", f->value, "currency", cur));
        break;
    case NR_VOLUME_SPIKE:
        json_object_set_new(a, "ratio", json_real(round_to(f->change, 0.01)));
        json_object_set_new(a, "window_minutes", json_integer(wmin));
        break;
    case NR_SENTIMENT_ABOVE:
    case NR_SENTIMENT_BELOW:
    case NR_SENTIMENT_SHIFT:
    default:
        json_object_set_new(a, "kind", json_string(r->kind == NR_SENTIMENT_SHIFT ? "shift" : "level"));
        json_object_set_new(a, "sentiment", json_real(round_to(f->value, 0.0001)));
        json_object_set_new(a, "level", json_real(r->kind == NR_SENTIMENT_SHIFT ? 0 : r->value));
        json_object_set_new(a, "change", json_real(round_to(r->kind == NR_SENTIMENT_SHIFT
                                                            ? f->change : f->value - r->value, 0.0001)));
        json_object_set_new(a, "window_minutes", json_integer(wmin));
        break;
    }
    return a;
}

typedef struct {
    json_t *states, *disabled;
} clean_ctx;

static void collect_state(const notify_rule *r, void *ud)
{
    clean_ctx *c = ud;
    if (c == NULL)
        return;
    json_array_append_new(c->states, json_pack("{s:I, s:i, s:I, s:i}", "rule_id", (json_int_t)r->id,
                                               "side", r->side, "last_fired_ms",
                                               (json_int_t)r->last_fired_ms, "fired_count",
                                               r->fired_count));
    if (!r->enabled)
        json_array_append_new(c->disabled, json_integer(r->id));
}

/* The batch's effects in one statement (data-modifying CTEs: atomic on
 * their own, one round trip instead of one per table): fired alerts (as
 * notify_plan_fires() planned them, with their e-mail/webhook deliveries),
 * rule state, disabled one-shot rules, window samples and the offsets.
 * Returns the (id, event_id) of the alerts whose WebSocket/Kafka sends are
 * due, or NULL when the transaction failed (logged). */
static PGresult *commit_batch(PGconn *c, const char *group, json_t *fires, json_t *states,
                              json_t *disabled, json_t *samples, json_t *offsets, json_t *slow)
{
    char *p[7] = { json_dumps(fires, JSON_COMPACT), json_dumps(states, JSON_COMPACT),
                   json_dumps(disabled, JSON_COMPACT), json_dumps(samples, JSON_COMPACT),
                   json_dumps(offsets, JSON_COMPACT), (char *)group, json_dumps(slow, JSON_COMPACT) };
    PGresult *r = NULL;
    if (p[0] && p[1] && p[2] && p[3] && p[4] && p[6]) {
        r = notify_pg(c,
                   "WITH f AS (INSERT INTO notifications (event_id, user_id, rule_id, template_id, "
                   "priority, args, fired_ms, due_ms, state, planned_ms, lang, title, body, "
                   "websocket_status, kafka_status) SELECT coalesce(event_id, gen_random_uuid()), "
                   "user_id, rule_id, template_id, priority, args, fired_ms, coalesce(due_ms, 0), "
                   "coalesce(state, 'new'), planned_ms, lang, title, body, websocket_status, "
                   "kafka_status FROM json_to_recordset($1::json) AS x(event_id uuid, user_id text, "
                   "rule_id bigint, template_id text, priority text, args jsonb, fired_ms bigint, "
                   "due_ms bigint, state text, planned_ms bigint, lang text, title text, body text, "
                   "websocket_status text, kafka_status text) RETURNING id, event_id, kafka_status), "
                   "d AS (INSERT INTO notification_deliveries (notification_id, channel) "
                   "SELECT f.id, x.channel FROM json_to_recordset($7::json) AS x(event_id uuid, "
                   "channel text) JOIN f USING (event_id)), "
                   "s AS (INSERT INTO alert_rule_state (rule_id, side, last_fired_ms, fired_count) "
                   "SELECT x.rule_id, x.side, x.last_fired_ms, x.fired_count "
                   "FROM json_to_recordset($2::json) AS x(rule_id bigint, side smallint, "
                   "last_fired_ms bigint, fired_count integer) "
                   "WHERE x.rule_id IN (SELECT r.id FROM alert_rules r WHERE r.id = ANY (ARRAY("
                   "SELECT (value->>'rule_id')::bigint FROM json_array_elements($2::json)))) "
                   "ON CONFLICT (rule_id) DO UPDATE SET side = EXCLUDED.side, "
                   "last_fired_ms = EXCLUDED.last_fired_ms, fired_count = EXCLUDED.fired_count, "
                   "updated_at = now()), "
                   "o AS (UPDATE alert_rules SET enabled = false, updated_at = now() WHERE id = ANY "
                   "(ARRAY(SELECT value::bigint FROM json_array_elements_text($3::json)))), "
                   "w AS (INSERT INTO notify_samples (symbol, metric, ts_ms, value, volume) "
                   "SELECT * FROM json_to_recordset($4::json) AS x(symbol text, metric smallint, "
                   "ts_ms bigint, value float8, volume float8)), "
                   "k AS (INSERT INTO notify_offsets (grp, topic, partition, next_offset) "
                   "SELECT $6, * FROM json_to_recordset($5::json) AS x(topic text, "
                   "partition integer, next_offset bigint) ON CONFLICT (grp, topic, partition) "
                   "DO UPDATE SET next_offset = greatest(notify_offsets.next_offset, "
                   "EXCLUDED.next_offset)) "
                   "SELECT id, event_id FROM f WHERE kafka_status = 'sending'",
                   7, (const char *const *)p);
        if (!notify_pg_ok(r, "commit the batch"))
            r = NULL;
    } else
        insite_log_error("commit the batch: out of memory building its parameters");
    for (int i = 0; i < 7; i++)
        if (i != 5)
            free(p[i]);
    return r;
}

int notify_eval_batch(notify_app *a, PGconn *c, rd_kafka_message_t **msgs, size_t n,
                      int64_t polled_us)
{
    int64_t produced_ms = INT64_MAX;  /* the batch's oldest CreateTime */
    json_t *fires = json_array(), *samples = json_array(), *offsets = json_array();
    clean_ctx cc = { json_array(), json_array() };
    notify_offset *seen = NULL;
    size_t nseen = 0, nfired = 0, nskipped = 0, nbad = 0;
    notify_fire *fv = NULL;
    size_t nf = 0, cap = 0;

    pthread_mutex_lock(&a->lock);
    for (size_t i = 0; i < n; i++) {
        rd_kafka_message_t *m = msgs[i];
        const char *topic = rd_kafka_topic_name(m->rkt);
        rd_kafka_timestamp_type_t tst;
        int64_t ct = rd_kafka_message_timestamp(m, &tst);
        if (ct >= 0 && ct < produced_ms)
            produced_ms = ct;
        notify_offset *done = offset_slot(&a->offsets, &a->noffsets, topic, m->partition, 0);
        notify_offset *s = offset_slot(&seen, &nseen, topic, m->partition, 1);
        if (s != NULL && m->offset + 1 > s->next)
            s->next = m->offset + 1;
        if (done != NULL && m->offset < done->next) {
            nskipped++;                /* evaluated before a crash: its effects are committed */
            continue;
        }
        json_t *env = json_loadb(m->payload, m->len, 0, NULL);
        notify_update u;
        const char *currency = NULL;
        if (env == NULL || parse_update(a, env, &u, &currency) != 0) {
            nbad++;
            /* dead letter (kafka_dlq.h): kept on <topic>.dlq, logged there */
            if (a->kafka != NULL)
                insite_kafka_dead_letter(a->kafka, a->service, NULL, m,
                                         env == NULL ? "not JSON"
                                                     : "not a stock or sentiment update");
            json_decref(env);
            continue;
        }
        nf = 0;
        if (notify_engine_update(a->engine, &u, &fv, &nf, &cap) < 0)
            insite_log_error("engine: out of memory evaluating %s", u.symbol);
        for (size_t k = 0; k < nf; k++) {
            const notify_rule *r = fv[k].rule;
            json_array_append_new(fires, json_pack("{s:s, s:I, s:s, s:s, s:o, s:I}", "user_id",
                                                   r->user, "rule_id", (json_int_t)r->id,
                                                   "template_id", template_of(r->kind), "priority",
                                                   notify_priority_name(r->priority), "args",
                                                   fire_args(&fv[k], &u, currency), "fired_ms",
                                                   (json_int_t)u.ts_ms));
        }
        nfired += nf;
        if (notify_engine_symbol_windowed(a->engine, u.symbol))
            json_array_append_new(samples, json_pack("{s:s, s:i, s:I, s:f, s:f}", "symbol", u.symbol,
                                                     "metric", u.has_sentiment ? 1 : 0, "ts_ms",
                                                     (json_int_t)u.ts_ms, "value",
                                                     u.has_sentiment ? u.sentiment : u.price,
                                                     "volume", u.has_volume ? u.volume : 0.0));
        json_decref(env);
    }
    notify_engine_clean(a->engine, collect_state, &cc);
    pthread_mutex_unlock(&a->lock);
    free(fv);

    for (size_t i = 0; i < nseen; i++)
        json_array_append_new(offsets, json_pack("{s:s, s:i, s:I}", "topic", seen[i].topic,
                                                 "partition", seen[i].partition, "next_offset",
                                                 (json_int_t)seen[i].next));
    int64_t evaluated_us = notify_wall_us();
    /* planned before the commit: the rows are written ready to send */
    json_t *slow = json_array();
    if (a->deliver && nfired > 0)
        notify_plan_fires(a, c, fires, slow, notify_now_ms(a));
    int64_t planned_us = notify_wall_us();
    PGresult *sending = commit_batch(c, a->group, fires, cc.states, cc.disabled, samples, offsets,
                                     slow);
    int rc = sending != NULL ? 0 : -1;
    json_decref(slow);
    if (rc == 0) {
        int64_t committed_us = notify_wall_us();
        /* the alert ids this batch wrote (one INSERT: a range no other
         * batch shares), so the bench can tell each alert's fire time */
        long long first_id = 0, last_id = 0;
        for (int k = 0; k < PQntuples(sending); k++) {
            long long id = atoll(PQgetvalue(sending, k, 0));
            if (first_id == 0 || id < first_id)
                first_id = id;
            if (id > last_id)
                last_id = id;
        }
        if (a->deliver)
            notify_deliver_enqueue(a, fires, sending);
        PQclear(sending);
        if (produced_ms != INT64_MAX)
            insite_log_debug("stage eval n=%zu fired=%zu produced_us=%lld polled_us=%lld "
                             "evaluated_us=%lld planned_us=%lld committed_us=%lld "
                             "first_id=%lld last_id=%lld", n, nfired,
                             (long long)produced_ms * 1000, (long long)polled_us,
                             (long long)evaluated_us, (long long)planned_us,
                             (long long)committed_us, first_id, last_id);
        pthread_mutex_lock(&a->lock);
        for (size_t i = 0; i < nseen; i++) {
            notify_offset *o = offset_slot(&a->offsets, &a->noffsets, seen[i].topic,
                                           seen[i].partition, 1);
            if (o != NULL && seen[i].next > o->next)
                o->next = seen[i].next;
        }
        pthread_mutex_unlock(&a->lock);
        insite_counter_add(a->m_updates, n - nskipped - nbad);
        insite_counter_add(a->m_fired, nfired);
        insite_counter_add(a->m_skipped, nskipped);
        insite_counter_add(a->m_bad, nbad);
        if (nfired > 0) {
            notify_deliver_wake(a);   /* delivered now, not at the next poll */
            insite_log_info("batch of %zu: %zu alerts fired", n, nfired);
        }
    } else
        a->reload = 1;
    free(seen);
    json_decref(fires);
    json_decref(samples);
    json_decref(offsets);
    json_decref(cc.states);
    json_decref(cc.disabled);
    return rc;
}
