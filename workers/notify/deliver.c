/* The delivery thread: the outbox of fired alerts (docs/notify.md).
 *
 * plan:    the evaluation thread plans the alerts it fires before it
 *          commits them (notify_plan_fires: the user's settings decide:
 *          suppressed, held for quiet hours, capped by the hourly rate, or
 *          planned: rendered in the user's language, WebSocket/Kafka
 *          'sending' in the alert's row, a notification_deliveries row per
 *          e-mail/webhook channel), then queues them here
 *          (notify_deliver_enqueue).  This thread plans the rest the same
 *          way: held alerts when quiet hours end (collapsed per rule,
 *          digested), alerts fired while delivery was off.
 * send:    the queued alerts' WebSocket messages in one Redis pipeline,
 *          their Kafka messages queued, then one statement records the
 *          outcomes in the alert rows; a failed send gets a delivery row.
 * attempt: every pending delivery row whose time has come is tried once;
 *          the outcome is written back (attempts, error, next try with
 *          exponential backoff).  Channels are independent, so a failing
 *          one never holds the others back.
 * A crash anywhere re-runs the step from the rows: the WebSocket publish
 * carries the alert's event_id as idempotency key, Kafka consumers dedupe
 * by the envelope's event_id (= the alert's), so an alert is delivered
 * once. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "clock.h"
#include "envelope.h"
#include "log.h"
#include "notify.h"
#include "pg.h"
#include "random.h"
#include "render.h"
#include "templates.h"

#define NOTIFY_PLAN_MAX "500"         /* held/unplanned alerts planned, and
                                         unrecorded sends sent again, per pass
                                         (a few statements a pass, not a few per
                                         alert); the evaluation thread's queue
                                         goes out whole */
#define NOTIFY_ATTEMPT_MAX "5000"     /* websocket/kafka deliveries attempted per pass */
#define NOTIFY_SLOW_MAX "50"          /* e-mail/webhook attempts per pass */

typedef struct {
    int enabled, tpl_enabled;
    char *langs[16];
    size_t nlangs;
    char tz[72];
    int ws, email, webhook;
    int quiet_start, quiet_end;       /* -1: none */
    char *email_addr, *webhook_url, *webhook_secret;
    int rate;
} settings;

static void settings_free(settings *s)
{
    for (size_t i = 0; i < s->nlangs; i++)
        free(s->langs[i]);
    free(s->email_addr);
    free(s->webhook_url);
    free(s->webhook_secret);
    memset(s, 0, sizeof(*s));
}

static char *dup_or_null(PGresult *r, int i, int col)
{
    return PQgetisnull(r, i, col) ? NULL : strdup(PQgetvalue(r, i, col));
}

static void settings_defaults(settings *s)
{
    memset(s, 0, sizeof(*s));
    s->enabled = s->tpl_enabled = 1;
    s->ws = 1;
    s->quiet_start = s->quiet_end = -1;
    s->rate = 60;
    snprintf(s->tz, sizeof(s->tz), "UTC");
}

#define SETTINGS_COLUMNS \
    "template_id, enabled, array_to_json(languages)::text, time_zone, " \
    "array_to_json(channels)::text, quiet_start, quiet_end, email, webhook_url, " \
    "webhook_secret, rate_per_hour"

/* One user_notification_settings row (SETTINGS_COLUMNS from column `o`)
 * applied to s: the defaults row ('' template) or a template's switch. */
static void settings_apply(PGresult *r, int i, int o, settings *s)
{
    if (PQgetvalue(r, i, o)[0] != '\0') {
        s->tpl_enabled = PQgetvalue(r, i, o + 1)[0] == 't';
        return;
    }
    s->enabled = PQgetvalue(r, i, o + 1)[0] == 't';
    json_t *l = json_loads(PQgetvalue(r, i, o + 2), 0, NULL), *v;
    size_t k;
    json_array_foreach(l, k, v) if (s->nlangs < 16 && json_is_string(v))
        s->langs[s->nlangs++] = strdup(json_string_value(v));
    json_decref(l);
    snprintf(s->tz, sizeof(s->tz), "%s", PQgetvalue(r, i, o + 3));
    json_t *ch = json_loads(PQgetvalue(r, i, o + 4), 0, NULL);
    s->ws = s->email = s->webhook = 0;
    json_array_foreach(ch, k, v) {
        const char *n = json_string_value(v);
        if (n == NULL)
            continue;
        s->ws |= strcmp(n, "websocket") == 0;
        s->email |= strcmp(n, "email") == 0;
        s->webhook |= strcmp(n, "webhook") == 0;
    }
    json_decref(ch);
    if (!PQgetisnull(r, i, o + 5) && !PQgetisnull(r, i, o + 6)) {
        s->quiet_start = atoi(PQgetvalue(r, i, o + 5));
        s->quiet_end = atoi(PQgetvalue(r, i, o + 6));
    }
    s->email_addr = dup_or_null(r, i, o + 7);
    s->webhook_url = dup_or_null(r, i, o + 8);
    s->webhook_secret = dup_or_null(r, i, o + 9);
    s->rate = atoi(PQgetvalue(r, i, o + 10));
}

/* A user's settings for a template (defaults when they have none). */
static int settings_get(PGconn *c, const char *user, const char *tpl, settings *s)
{
    const char *p[2] = { user, tpl };
    settings_defaults(s);
    PGresult *r = notify_pg(c, "SELECT " SETTINGS_COLUMNS " FROM user_notification_settings "
                               "WHERE user_id = $1 AND template_id IN ('', $2)", 2, p);
    if (!notify_pg_ok(r, "settings"))
        return -1;
    for (int i = 0; i < PQntuples(r); i++)
        settings_apply(r, i, 0, s);
    PQclear(r);
    return 0;
}

/* Inside quiet hours at `now`?  Then *until is when they end. */
static int quiet(const settings *s, int64_t now, int64_t *until)
{
    if (s->quiet_start < 0)
        return 0;
    int m = notify_tz_minute_of_day(s->tz, now);
    int in = s->quiet_start < s->quiet_end ? m >= s->quiet_start && m < s->quiet_end
                                           : m >= s->quiet_start || m < s->quiet_end;
    if (in)
        *until = notify_tz_next_local(s->tz, now, s->quiet_end);
    return in && *until > now;
}

static int exec_ok(PGconn *c, const char *sql, int n, const char *const *p, const char *what)
{
    PGresult *r = notify_pg(c, sql, n, p);
    if (!notify_pg_ok(r, what))
        return 0;
    PQclear(r);
    return 1;
}

static void set_state(PGconn *c, const char *id, const char *state, int64_t due)
{
    char d[32];
    snprintf(d, sizeof(d), "%lld", (long long)due);
    const char *p[3] = { id, state, d };
    exec_ok(c, "UPDATE notifications SET state = $2, due_ms = $3::bigint WHERE id = $1::bigint",
            3, p, "alert state");
}

/* What one planning pass writes, in one statement at its end (a round trip
 * per alert is what limits a burst), and the users' hourly counts. */
typedef struct {
    json_t *rows;                     /* [{id, lang, title, body, count, args, ws, webhook, email,
                                         user, event_id, msg: the message sent}] */
    json_t *sent;                     /* user -> alerts planned in the last hour */
    int nslow;                        /* e-mail/webhook deliveries created */
} plan_pass;

/* What every channel sends (WebSocket data, Kafka envelope data, webhook
 * body): {"id","event_id","template","priority","title","body","lang","dir",
 * "count","fired_at","rule_id","args"}.  args is taken (NULL = {}). */
static json_t *message_new(const char *id, const char *event_id, const char *tpl, const char *prio,
                           const char *title, const char *body, const char *lang, int count,
                           int64_t fired_ms, const char *rule_id, json_t *args)
{
    char ts[INSITE_RFC3339_LEN];
    insite_clock_rfc3339_ms(ts, sizeof(ts), fired_ms);
    return json_pack("{s:I, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:i, s:s, s:o, s:o}",
                     "id", (json_int_t)atoll(id), "event_id", event_id, "template", tpl,
                     "priority", prio, "title", title, "body", body, "lang", lang,
                     "dir", notify_lang_rtl(lang) ? "rtl" : "ltr", "count", count, "fired_at", ts,
                     "rule_id", rule_id != NULL && rule_id[0] ? json_integer(atoll(rule_id))
                                                              : json_null(),
                     "args", args != NULL ? args : json_object());
}

/* The alert being planned: its row's fields as text (rule "" = none). */
typedef struct {
    const char *id, *event_id, *user, *rule, *tpl, *prio, *fired_ms;
} due_alert;

/* Over the user's hourly cap (sent: user -> alerts planned in the last
 * hour)?  CRITICAL never is; an alert that is not counts. */
static int over_cap(json_t *sent, const char *user, const settings *s, const char *prio)
{
    json_t *sj = json_object_get(sent, user);
    if (json_integer_value(sj) >= s->rate && strcmp(prio, "CRITICAL") != 0)
        return 1;
    json_integer_set(sj, json_integer_value(sj) + 1);
    return 0;
}

/* The alert's text in the user's language (args gets "count"); on a
 * template error (logged, `what` names the alert) the template id as
 * title.  The caller frees *out. */
static void render_alert(notify_app *a, const char *what, const char *tpl, json_t *args, int count,
                         const settings *s, notify_rendered *out)
{
    char err[512];
    const char *langs[17];
    json_object_set_new(args, "count", json_integer(count));
    for (size_t i = 0; i < s->nlangs; i++)
        langs[i] = s->langs[i];
    pthread_mutex_lock(&a->tpl_lock);
    int rc = notify_render(a->templates, tpl, langs, s->nlangs, s->tz, args, out, err, sizeof(err));
    pthread_mutex_unlock(&a->tpl_lock);
    if (rc != 0) {
        insite_log_error("alert %s: %s", what, err);
        out->title = strdup(tpl);
        out->body = strdup("");
        snprintf(out->lang, sizeof(out->lang), "en");
    }
}

static void plan_one(notify_app *a, PGconn *c, plan_pass *pp, const due_alert *d, json_t *args,
                     int count, const settings *s, int64_t now)
{
    const char *id = d->id, *user = d->user, *tpl = d->tpl, *prio = d->prio;
    if (json_object_get(pp->sent, user) == NULL) {
        char hour[32];
        snprintf(hour, sizeof(hour), "%lld", (long long)(now - 3600000));
        const char *pc[2] = { user, hour };
        PGresult *r = notify_pg(c, "SELECT count(*) FROM notifications WHERE user_id = $1 AND "
                                   "state = 'planned' AND planned_ms > $2::bigint", 2, pc);
        if (!notify_pg_ok(r, "rate"))
            return;
        json_object_set_new(pp->sent, user, json_integer(atoll(PQgetvalue(r, 0, 0))));
        PQclear(r);
    }
    if (over_cap(pp->sent, user, s, prio)) {
        insite_log_info("alert %s for %s: over the rate cap (%d/h)", id, user, s->rate);
        set_state(c, id, "capped", 0);
        return;
    }
    notify_rendered out;
    render_alert(a, id, tpl, args, count, s, &out);
    json_t *msg = message_new(id, d->event_id, tpl, prio, out.title, out.body, out.lang, count,
                              atoll(d->fired_ms), d->rule, json_incref(args));
    json_array_append_new(pp->rows,
                          json_pack("{s:I, s:s, s:s, s:s, s:i, s:O, s:b, s:b, s:b, s:s, s:s, s:o}",
                                    "id", (json_int_t)atoll(id), "lang", out.lang,
                                    "title", out.title, "body", out.body, "count", count,
                                    "args", args, "ws", s->ws, "webhook", s->webhook,
                                    "email", s->email, "user", user, "event_id", d->event_id,
                                    "msg", msg));
    notify_rendered_free(&out);
}

static int plan_flush(notify_app *a, PGconn *c, plan_pass *pp, int64_t now);

/* Quiet hours are over for these held alerts: LOW ones of the user become
 * one digest; HIGH/MEDIUM ones of a rule become one message with the count
 * (the newest carries it). */
static void release_held(notify_app *a, PGconn *c, plan_pass *pp, const due_alert *d, int64_t now,
                         json_t *args, const settings *s)
{
    const char *id = d->id, *user = d->user, *rule = d->rule, *prio = d->prio;
    char ns[32];
    snprintf(ns, sizeof(ns), "%lld", (long long)now);
    if (strcmp(prio, "LOW") == 0) {
        const char *p[2] = { user, ns };
        PGresult *r = notify_pg(c,
            "WITH d AS (UPDATE notifications SET state = 'digested' WHERE user_id = $1 AND "
            "state = 'held' AND priority = 'LOW' AND due_ms <= $2::bigint "
            "RETURNING args->>'symbol' AS symbol) "
            "INSERT INTO notifications (user_id, template_id, priority, args, fired_ms, collapsed) "
            "SELECT $1, 'digest', 'LOW', json_build_object('count', count(*), 'symbols', "
            "coalesce(string_agg(DISTINCT symbol, ', '), '')), $2::bigint, count(*) FROM d "
            "HAVING count(*) > 0 RETURNING id", 2, p);
        if (notify_pg_ok(r, "digest")) {
            if (PQntuples(r) == 1)
                insite_log_info("digest %s for %s", PQgetvalue(r, 0, 0), user);
            PQclear(r);
        }
        return;
    }
    const char *p[4] = { user, rule, ns, id };
    PGresult *r = notify_pg(c,
        "WITH h AS (SELECT id FROM notifications WHERE user_id = $1 AND rule_id = $2::bigint AND "
        "state = 'held' AND due_ms <= $3::bigint), "
        "keep AS (SELECT max(id) AS id, count(*) AS n FROM h), "
        "c AS (UPDATE notifications SET state = 'collapsed' WHERE id IN (SELECT id FROM h) "
        "AND id <> (SELECT id FROM keep) RETURNING id) "
        "SELECT keep.id, keep.n, n.args::text, n.event_id, n.fired_ms "
        "FROM keep JOIN notifications n ON n.id = keep.id",
        rule[0] ? 3 : 0, p);
    if (rule[0] == '\0') {                /* not from a rule: on its own */
        PQclear(r);
        plan_one(a, c, pp, d, args, 1, s, now);
        return;
    }
    if (!notify_pg_ok(r, "collapse"))
        return;
    if (PQntuples(r) == 1 && !PQgetisnull(r, 0, 0)) {
        json_t *kargs = json_loads(PQgetvalue(r, 0, 2), 0, NULL);
        due_alert k = *d;             /* the newest held alert carries the count */
        k.id = PQgetvalue(r, 0, 0);
        k.event_id = PQgetvalue(r, 0, 3);
        k.fired_ms = PQgetvalue(r, 0, 4);
        if (kargs != NULL)
            plan_one(a, c, pp, &k, kargs, atoi(PQgetvalue(r, 0, 1)), s, now);
        json_decref(kargs);
        PQclear(r);
        return;
    }
    PQclear(r);
}

/* The settings rows and hourly counts of every user with a due alert, read
 * in one statement: a round trip per user is what made a burst slow, and
 * the evaluation thread pays this one per batch that fires. */
typedef struct {
    PGresult *rows;                   /* user_id, SETTINGS_COLUMNS, planned count */
    json_t *by_user;                  /* user -> [row index] */
    json_t *by_key;                   /* user \1 template -> index in cache */
    settings *cache;
    size_t ncache;
} pass_settings;

#define PASS_COUNT_COL 12             /* non-NULL: an hourly-count row */

/* users: the user ids (JSON array, no repeats) of nalerts alerts (at most
 * that many user/template pairs are looked up); sent gets each user's
 * alerts planned in the last hour.  0, or -1 (logged). */
static int pass_settings_load(PGconn *c, json_t *users, size_t nalerts, pass_settings *ps,
                              json_t *sent, int64_t now)
{
    size_t i;
    json_t *u;
    json_array_foreach(users, i, u)
        json_object_set_new(sent, json_string_value(u), json_integer(0));
    char *uj = json_dumps(users, JSON_COMPACT), hour[32];
    snprintf(hour, sizeof(hour), "%lld", (long long)(now - 3600000));
    const char *p[2] = { uj ? uj : "[]", hour };
    ps->by_user = json_object();
    ps->by_key = json_object();
    ps->cache = calloc(nalerts + 1, sizeof(*ps->cache));
    ps->rows = notify_pg(c,
        "SELECT user_id, " SETTINGS_COLUMNS ", NULL::bigint FROM user_notification_settings "
        "WHERE user_id = ANY (ARRAY(SELECT json_array_elements_text($1::json))) "
        "UNION ALL SELECT user_id, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, "
        "NULL, count(*) FROM notifications WHERE user_id = ANY "
        "(ARRAY(SELECT json_array_elements_text($1::json))) AND state = 'planned' "
        "AND planned_ms > $2::bigint GROUP BY user_id", 2, p);
    free(uj);
    if (!notify_pg_ok(ps->rows, "settings and hourly counts")) {
        ps->rows = NULL;
        return -1;
    }
    for (int k = 0; k < PQntuples(ps->rows); k++) {
        const char *user = PQgetvalue(ps->rows, k, 0);
        if (!PQgetisnull(ps->rows, k, PASS_COUNT_COL)) {
            json_object_set_new(sent, user, json_integer(atoll(PQgetvalue(ps->rows, k, PASS_COUNT_COL))));
            continue;
        }
        json_t *l = json_object_get(ps->by_user, user);
        if (l == NULL)
            json_object_set_new(ps->by_user, user, l = json_array());
        json_array_append_new(l, json_integer(k));
    }
    return ps->cache != NULL ? 0 : -1;
}

/* A user's settings for a template, from the pass's rows (owned by ps). */
static const settings *pass_settings_get(pass_settings *ps, const char *user, const char *tpl)
{
    char key[300];
    snprintf(key, sizeof(key), "%s%c%s", user, 1, tpl);
    json_t *k = json_object_get(ps->by_key, key);
    if (k != NULL)
        return &ps->cache[json_integer_value(k)];
    settings *s = &ps->cache[ps->ncache];
    settings_defaults(s);
    json_t *v, *l = json_object_get(ps->by_user, user);
    size_t i;
    json_array_foreach(l, i, v) {
        int row = (int)json_integer_value(v);
        const char *t = PQgetvalue(ps->rows, row, 1);
        if (t[0] == '\0' || strcmp(t, tpl) == 0)
            settings_apply(ps->rows, row, 1, s);
    }
    json_object_set_new(ps->by_key, key, json_integer((json_int_t)ps->ncache++));
    return s;
}

static void pass_settings_free(pass_settings *ps)
{
    for (size_t k = 0; k < ps->ncache; k++)
        settings_free(&ps->cache[k]);
    free(ps->cache);
    PQclear(ps->rows);
    json_decref(ps->by_user);
    json_decref(ps->by_key);
}

int notify_plan_fires(notify_app *a, PGconn *c, json_t *fires, json_t *slow, int64_t now)
{
    size_t n = json_array_size(fires), i;
    if (n == 0)
        return 0;
    json_t *sent = json_object(), *users = json_array(), *f;
    json_array_foreach(fires, i, f) {
        const char *u = json_string_value(json_object_get(f, "user_id"));
        if (json_object_get(sent, u) == NULL) {
            json_object_set_new(sent, u, json_integer(0));
            json_array_append_new(users, json_string(u));
        }
    }
    pass_settings ps = { 0 };
    int rc = pass_settings_load(c, users, n, &ps, sent, now);
    json_decref(users);
    json_array_foreach(fires, i, f) {
        if (rc != 0)
            break;                    /* unplanned: state 'new', the delivery thread's pass */
        const char *user = json_string_value(json_object_get(f, "user_id")),
                   *tpl = json_string_value(json_object_get(f, "template_id")),
                   *prio = json_string_value(json_object_get(f, "priority"));
        json_t *args = json_object_get(f, "args");
        char eid[INSITE_UUID_LEN];
        int64_t until = 0;
        if (user == NULL || tpl == NULL || prio == NULL || !json_is_object(args)
            || insite_uuid_v4(eid) != 0)
            continue;
        const settings *s = pass_settings_get(&ps, user, tpl);
        json_object_set_new(f, "event_id", json_string(eid));
        if (!s->enabled || !s->tpl_enabled)
            json_object_set_new(f, "state", json_string("suppressed"));
        else if (strcmp(prio, "CRITICAL") != 0 && quiet(s, now, &until)) {
            insite_counter_inc(a->m_held);
            json_object_set_new(f, "state", json_string("held"));
            json_object_set_new(f, "due_ms", json_integer((json_int_t)until));
        } else if (over_cap(sent, user, s, prio)) {
            insite_log_info("alert %s for %s: over the rate cap (%d/h)", eid, user, s->rate);
            json_object_set_new(f, "state", json_string("capped"));
        } else {
            notify_rendered out;
            render_alert(a, eid, tpl, args, 1, s, &out);
            json_object_set_new(f, "state", json_string("planned"));
            json_object_set_new(f, "planned_ms", json_integer((json_int_t)now));
            json_object_set_new(f, "lang", json_string(out.lang));
            json_object_set_new(f, "title", json_string(out.title));
            json_object_set_new(f, "body", json_string(out.body));
            json_object_set_new(f, "websocket_status", s->ws ? json_string("sending") : json_null());
            json_object_set_new(f, "kafka_status", json_string("sending"));
            notify_rendered_free(&out);
            for (int k = 0; k < 2; k++) {
                const char *ch = k ? "email" : "webhook";
                if (!(k ? s->email : s->webhook))
                    continue;
                json_array_append_new(slow, json_pack("{s:s, s:s}", "event_id", eid, "channel", ch));
                json_object_set_new(f, "slow", json_true());
            }
        }
    }
    pass_settings_free(&ps);
    json_decref(sent);
    return rc;
}

void notify_deliver_enqueue(notify_app *a, json_t *fires, PGresult *ids)
{
    json_t *by_eid = json_object(), *f, *q = json_array();
    size_t i;
    for (int k = 0; k < PQntuples(ids); k++)
        json_object_set_new(by_eid, PQgetvalue(ids, k, 1), json_string(PQgetvalue(ids, k, 0)));
    json_array_foreach(fires, i, f) {
        const char *eid = json_string_value(json_object_get(f, "event_id"));
        const char *id = json_string_value(json_object_get(by_eid, eid ? eid : ""));
        if (id == NULL)
            continue;                 /* not planned here */
        char rule[32];
        snprintf(rule, sizeof(rule), "%lld",
                 (long long)json_integer_value(json_object_get(f, "rule_id")));
        json_t *msg = message_new(id, eid, json_string_value(json_object_get(f, "template_id")),
                                  json_string_value(json_object_get(f, "priority")),
                                  json_string_value(json_object_get(f, "title")),
                                  json_string_value(json_object_get(f, "body")),
                                  json_string_value(json_object_get(f, "lang")), 1,
                                  json_integer_value(json_object_get(f, "fired_ms")), rule,
                                  json_incref(json_object_get(f, "args")));
        json_array_append_new(q, json_pack("{s:I, s:O, s:s, s:b, s:b, s:b, s:o}",
                                           "id", (json_int_t)atoll(id),
                                           "user", json_object_get(f, "user_id"), "event_id", eid,
                                           "ws", json_is_string(json_object_get(f, "websocket_status")),
                                           "kafka", 1, "slow", json_is_true(json_object_get(f, "slow")),
                                           "msg", msg));
    }
    json_decref(by_eid);
    if (json_array_size(q) == 0) {
        json_decref(q);
        return;
    }
    pthread_mutex_lock(&a->wake_lock);
    if (a->sendq == NULL)
        a->sendq = q;
    else {
        json_array_extend(a->sendq, q);
        json_decref(q);
    }
    a->wake_pending = 1;
    pthread_cond_signal(&a->wake_cond);
    pthread_mutex_unlock(&a->wake_lock);
}

/* The queue notify_deliver_enqueue() fills (NULL when empty). */
static json_t *take_queue(notify_app *a)
{
    pthread_mutex_lock(&a->wake_lock);
    json_t *q = a->sendq;
    a->sendq = NULL;
    pthread_mutex_unlock(&a->wake_lock);
    return q;
}

/* Plans up to NOTIFY_PLAN_MAX due alerts and sends their WebSocket and
 * Kafka messages; *nslow = the e-mail/webhook deliveries it created.  The
 * alerts the evaluation thread fires are planned there (notify_plan_fires);
 * this pass takes what it left: held alerts whose quiet hours ended, the
 * digests it creates, and alerts fired while delivery was off or the
 * settings could not be read. */
static int plan(notify_app *a, PGconn *c, int64_t now, int *nslow)
{
    *nslow = 0;
    char ns[32];
    snprintf(ns, sizeof(ns), "%lld", (long long)now);
    const char *p[1] = { ns };
    PGresult *r = notify_pg(c, "SELECT id, user_id, coalesce(rule_id::text, ''), template_id, "
                               "priority, args::text, state, collapsed, event_id, fired_ms "
                               "FROM notifications "
                               "WHERE state IN ('new', 'held') AND due_ms <= $1::bigint "
                               "ORDER BY id LIMIT " NOTIFY_PLAN_MAX, 1, p);
    if (!notify_pg_ok(r, "due alerts"))
        return -1;
    int n = PQntuples(r);
    plan_pass pp = { json_array(), json_object(), 0 };
    pass_settings ps = { 0 };
    json_t *users = json_array();
    for (int i = 0; i < n; i++) {
        const char *u = PQgetvalue(r, i, 1);
        if (json_object_get(pp.sent, u) == NULL) {
            json_object_set_new(pp.sent, u, json_integer(0));
            json_array_append_new(users, json_string(u));
        }
    }
    int ok = n > 0 && pass_settings_load(c, users, (size_t)n, &ps, pp.sent, now) == 0;
    json_decref(users);
    for (int i = 0; ok && i < n; i++) {
        const due_alert d = { PQgetvalue(r, i, 0), PQgetvalue(r, i, 8), PQgetvalue(r, i, 1),
                              PQgetvalue(r, i, 2), PQgetvalue(r, i, 3), PQgetvalue(r, i, 4),
                              PQgetvalue(r, i, 9) };
        const char *id = d.id, *user = d.user, *tpl = d.tpl, *prio = d.prio,
                   *state = PQgetvalue(r, i, 6);
        int64_t until = 0;
        const settings *s = pass_settings_get(&ps, user, tpl);
        json_t *args = json_loads(PQgetvalue(r, i, 5), 0, NULL);
        if (args == NULL)
            args = json_object();
        if (!s->enabled || !s->tpl_enabled)
            set_state(c, id, "suppressed", 0);
        else if (strcmp(prio, "CRITICAL") != 0 && quiet(s, now, &until)) {
            if (strcmp(state, "new") == 0)
                insite_counter_inc(a->m_held);
            set_state(c, id, "held", until);   /* or due again inside the next quiet hours */
        } else if (strcmp(state, "held") == 0) {
            release_held(a, c, &pp, &d, now, args, s);
            pp.nslow += plan_flush(a, c, &pp, now);  /* the kept alert leaves 'held' before the next row */
        } else
            plan_one(a, c, &pp, &d, args, atoi(PQgetvalue(r, i, 7)), s, now);
        json_decref(args);
    }
    pass_settings_free(&ps);
    pp.nslow += plan_flush(a, c, &pp, now);
    *nslow = pp.nslow;
    json_decref(pp.rows);
    json_decref(pp.sent);
    PQclear(r);
    return n;
}

/* ---- channels */

/* The message of a delivery row (ATTEMPT_COLUMNS). */
static json_t *message_json(PGresult *r, int i)
{
    return message_new(PQgetvalue(r, i, 3), PQgetvalue(r, i, 4), PQgetvalue(r, i, 6),
                       PQgetvalue(r, i, 7), PQgetvalue(r, i, 8), PQgetvalue(r, i, 9),
                       PQgetvalue(r, i, 10), atoi(PQgetvalue(r, i, 11)),
                       atoll(PQgetvalue(r, i, 12)),
                       PQgetisnull(r, i, 14) ? NULL : PQgetvalue(r, i, 14),
                       json_loads(PQgetvalue(r, i, 13), 0, NULL));
}

static int send_kafka(notify_app *a, const char *user, const char *event_id, json_t *msg,
                      char *err, size_t errlen)
{
    json_t *env = insite_envelope_new("alert", a->service, NULL, json_incref(msg));
    if (env == NULL) {
        snprintf(err, errlen, "envelope");
        return -1;
    }
    /* the alert's own id: a redelivery after a crash carries the same one */
    json_object_set_new(env, "event_id", json_string(event_id));
    char *text = insite_envelope_dumps(env);
    json_decref(env);
    int rc = text ? insite_kafka_produce(a->kafka, a->alerts_topic, user, text, strlen(text)) : -1;
    free(text);
    if (rc < 0) {
        snprintf(err, errlen, "kafka: could not queue nor spool the message");
        return -1;
    }
    return 0;
}

typedef struct {
    const notify_app *a;
    int refused;                      /* the target was a private address */
} sock_ctx;

static curl_socket_t open_socket(void *ud, curlsocktype purpose, struct curl_sockaddr *addr)
{
    sock_ctx *sc = ud;
    if (!sc->a->webhook_allow_private) {
        int private = 0;
        if (addr->family == AF_INET) {
            uint32_t ip = ntohl(((struct sockaddr_in *)&addr->addr)->sin_addr.s_addr);
            private = (ip >> 24) == 127 || (ip >> 24) == 10 || (ip >> 24) == 0
                      || (ip >> 20) == 0xAC1 || (ip >> 16) == 0xC0A8 || (ip >> 16) == 0xA9FE
                      || (ip >> 22) == (100 << 2 | 1);
        } else if (addr->family == AF_INET6) {
            const struct in6_addr *x = &((struct sockaddr_in6 *)&addr->addr)->sin6_addr;
            private = IN6_IS_ADDR_LOOPBACK(x) || IN6_IS_ADDR_LINKLOCAL(x) || IN6_IS_ADDR_V4MAPPED(x)
                      || (x->s6_addr[0] & 0xfe) == 0xfc || IN6_IS_ADDR_UNSPECIFIED(x);
        }
        if (private) {
            sc->refused = 1;
            return CURL_SOCKET_BAD;   /* a user's webhook must not reach our own network */
        }
    }
    return socket(addr->family, addr->socktype, addr->protocol);
}

static size_t discard(char *p, size_t s, size_t n, void *ud) { return s * n; }

/* The POST carries, besides the signature, what a receiver dedupes on:
 * Idempotency-Key (the alert's event_id, the same on every attempt and
 * after a crash), X-Insite-Delivery-Id and X-Insite-Attempt. */
static int send_webhook(notify_app *a, const settings *s, const char *event_id,
                        const char *delivery_id, int attempt_no, const char *body,
                        char *err, size_t errlen)
{
    if (s->webhook_url == NULL) {
        snprintf(err, errlen, "no webhook_url in the settings");
        return -1;
    }
    char ts[32], sig[200], hdr[300], evh[120], idk[120], dvh[80], ath[40];
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int maclen = 0;
    snprintf(ts, sizeof(ts), "%lld", (long long)time(NULL));
    /* HMAC-SHA256 over "<t>.<body>" (docs/notify.md) */
    size_t tl = strlen(ts), bl = strlen(body);
    char *signed_text = malloc(tl + 1 + bl + 1);
    if (signed_text == NULL)
        return -1;
    memcpy(signed_text, ts, tl);
    signed_text[tl] = '.';
    memcpy(signed_text + tl + 1, body, bl + 1);
    const char *key = s->webhook_secret ? s->webhook_secret : "";
    HMAC(EVP_sha256(), key, (int)strlen(key), (unsigned char *)signed_text, tl + 1 + bl, mac,
         &maclen);
    free(signed_text);
    for (unsigned i = 0; i < maclen; i++)
        snprintf(sig + 2 * i, 3, "%02x", mac[i]);
    snprintf(hdr, sizeof(hdr), "X-Insite-Signature: t=%s,v1=%s", ts, sig);
    snprintf(evh, sizeof(evh), "X-Insite-Event-Id: %s", event_id);
    snprintf(idk, sizeof(idk), "Idempotency-Key: \"%s\"", event_id);
    snprintf(dvh, sizeof(dvh), "X-Insite-Delivery-Id: %s", delivery_id);
    snprintf(ath, sizeof(ath), "X-Insite-Attempt: %d", attempt_no);

    CURL *h = curl_easy_init();
    struct curl_slist *hl = NULL;
    hl = curl_slist_append(hl, "Content-Type: application/json");
    hl = curl_slist_append(hl, hdr);
    hl = curl_slist_append(hl, evh);
    hl = curl_slist_append(hl, idk);
    hl = curl_slist_append(hl, dvh);
    hl = curl_slist_append(hl, ath);
    curl_easy_setopt(h, CURLOPT_URL, s->webhook_url);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hl);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)a->channel_timeout_ms);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "insite-notify");
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(h, CURLOPT_OPENSOCKETFUNCTION, open_socket);
    sock_ctx sc = { a, 0 };
    curl_easy_setopt(h, CURLOPT_OPENSOCKETDATA, &sc);
    CURLcode rc = curl_easy_perform(h);
    long status = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(hl);
    curl_easy_cleanup(h);
    if (rc != CURLE_OK && sc.refused) {
        snprintf(err, errlen, "webhook: the URL leads to a loopback or private address "
                              "(refused; notify.webhook_allow_private)");
        return -1;
    }
    if (rc != CURLE_OK) {
        snprintf(err, errlen, "webhook: %s", curl_easy_strerror(rc));
        return -1;
    }
    if (status < 200 || status > 299) {
        snprintf(err, errlen, "webhook: HTTP %ld", status);
        return -1;
    }
    return 0;
}

/* ---- e-mail */

typedef struct {
    char *buf;
    size_t len, cap;
} sbuf;

static void sb_add(sbuf *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t nc = (b->len + n + 1) * 2;
        char *x = realloc(b->buf, nc);
        if (x == NULL)
            return;
        b->buf = x;
        b->cap = nc;
    }
    memcpy(b->buf + b->len, s, n);
    b->len += n;
    b->buf[b->len] = '\0';
}

static void sb_str(sbuf *b, const char *s) { sb_add(b, s, strlen(s)); }

/* base64 in lines of 76 characters */
static void sb_base64(sbuf *b, const unsigned char *s, size_t n)
{
    for (size_t off = 0; off < n; off += 57) {
        unsigned char out[80];
        size_t k = n - off < 57 ? n - off : 57;
        int m = EVP_EncodeBlock(out, s + off, (int)k);
        sb_add(b, (char *)out, (size_t)m);
        sb_str(b, "\r\n");
    }
}

/* RFC 2047: UTF-8 words of at most 45 bytes (60 base64 characters),
 * never splitting a character. */
static void sb_subject(sbuf *b, const char *s)
{
    size_t n = strlen(s), off = 0;
    int first = 1;
    while (off < n) {
        size_t k = n - off < 45 ? n - off : 45;
        while (k > 0 && off + k < n && ((unsigned char)s[off + k] & 0xC0) == 0x80)
            k--;
        unsigned char out[80];
        int m = EVP_EncodeBlock(out, (const unsigned char *)s + off, (int)k);
        sb_str(b, first ? "=?UTF-8?B?" : "\r\n =?UTF-8?B?");
        sb_add(b, (char *)out, (size_t)m);
        sb_str(b, "?=");
        off += k;
        first = 0;
    }
}

static void sb_html(sbuf *b, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '<': sb_str(b, "&lt;"); break;
        case '>': sb_str(b, "&gt;"); break;
        case '&': sb_str(b, "&amp;"); break;
        case '"': sb_str(b, "&quot;"); break;
        default: sb_add(b, s, 1);
        }
    }
}

static char *email_message(const notify_app *a, const char *to, const char *event_id,
                           const char *delivery_id, const char *user, const char *title, const char *body,
                           const char *lang)
{
    sbuf m = { 0 }, html = { 0 }, text = { 0 };
    char date[64], line[1024];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S +0000", &tm);
    const char *dir = notify_lang_rtl(lang) ? "rtl" : "ltr";

    /* Message-ID: the same on every attempt (also after a crash between
     * the send and its record), so the recipient's mail store can drop a
     * repeat */
    snprintf(line, sizeof(line), "Date: %s\r\nFrom: %s\r\nTo: <%s>\r\nMessage-ID: <%s@insite-notify>\r\n"
             "X-Insite-Delivery-Id: %s\r\n", date, a->smtp_from, to, event_id, delivery_id);
    sb_str(&m, line);
    sb_str(&m, "Subject: ");
    sb_subject(&m, title);
    sb_str(&m, "\r\n");
    if (a->unsubscribe_url && a->unsubscribe_url[0]) {
        char *u = curl_easy_escape(NULL, user, 0);
        snprintf(line, sizeof(line), "List-Unsubscribe: <%s%suser=%s>\r\n"
                 "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n", a->unsubscribe_url,
                 strchr(a->unsubscribe_url, '?') ? "&" : "?", u ? u : "");
        curl_free(u);
        sb_str(&m, line);
    }
    snprintf(line, sizeof(line), "Content-Language: %s\r\nMIME-Version: 1.0\r\n"
             "Content-Type: multipart/alternative; boundary=\"=_%s\"\r\n\r\n"
             "--=_%s\r\nContent-Type: text/plain; charset=UTF-8\r\n"
             "Content-Transfer-Encoding: base64\r\n\r\n", lang, event_id, event_id);
    sb_str(&m, line);
    sb_str(&text, title);
    sb_str(&text, "\n\n");
    sb_str(&text, body);
    sb_str(&text, "\n");
    sb_base64(&m, (unsigned char *)text.buf, text.len);
    snprintf(line, sizeof(line), "--=_%s\r\nContent-Type: text/html; charset=UTF-8\r\n"
             "Content-Transfer-Encoding: base64\r\n\r\n", event_id);
    sb_str(&m, line);
    snprintf(line, sizeof(line), "<!DOCTYPE html><html lang=\"%s\" dir=\"%s\"><head>"
             "<meta charset=\"utf-8\"></head><body><h1>", lang, dir);
    sb_str(&html, line);
    sb_html(&html, title);
    sb_str(&html, "</h1><p>");
    sb_html(&html, body);
    sb_str(&html, "</p></body></html>\n");
    sb_base64(&m, (unsigned char *)html.buf, html.len);
    snprintf(line, sizeof(line), "--=_%s--\r\n", event_id);
    sb_str(&m, line);
    free(html.buf);
    free(text.buf);
    return m.buf;
}

typedef struct {
    const char *p;
    size_t left;
} reader;

static size_t read_cb(char *out, size_t size, size_t n, void *ud)
{
    reader *r = ud;
    size_t k = size * n < r->left ? size * n : r->left;
    memcpy(out, r->p, k);
    r->p += k;
    r->left -= k;
    return k;
}

static int send_email(notify_app *a, const settings *s, const char *user, const char *event_id,
                      const char *delivery_id,
                      const char *title, const char *body, const char *lang, char *err,
                      size_t errlen)
{
    if (a->smtp_url == NULL || a->smtp_url[0] == '\0') {
        snprintf(err, errlen, "no SMTP server configured (notify.smtp_url)");
        return -1;
    }
    if (s->email_addr == NULL) {
        snprintf(err, errlen, "no email address in the settings");
        return -1;
    }
    char *msg = email_message(a, s->email_addr, event_id, delivery_id, user, title, body, lang);
    if (msg == NULL)
        return -1;
    char from[300], to[300];
    const char *lt = strchr(a->smtp_from, '<');
    snprintf(from, sizeof(from), "%s", lt ? lt : a->smtp_from);
    if (lt == NULL)
        snprintf(from, sizeof(from), "<%s>", a->smtp_from);
    snprintf(to, sizeof(to), "<%s>", s->email_addr);
    reader rd = { msg, strlen(msg) };
    CURL *h = curl_easy_init();
    struct curl_slist *rcpt = curl_slist_append(NULL, to);
    curl_easy_setopt(h, CURLOPT_URL, a->smtp_url);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "smtp,smtps");
    curl_easy_setopt(h, CURLOPT_USE_SSL, (long)(a->smtp_starttls ? CURLUSESSL_ALL : CURLUSESSL_TRY));
    curl_easy_setopt(h, CURLOPT_MAIL_FROM, from);
    curl_easy_setopt(h, CURLOPT_MAIL_RCPT, rcpt);
    curl_easy_setopt(h, CURLOPT_READFUNCTION, read_cb);
    curl_easy_setopt(h, CURLOPT_READDATA, &rd);
    curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)a->channel_timeout_ms);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    if (a->smtp_user && a->smtp_user[0]) {
        curl_easy_setopt(h, CURLOPT_USERNAME, a->smtp_user);
        curl_easy_setopt(h, CURLOPT_PASSWORD, a->smtp_password ? a->smtp_password : "");
    }
    CURLcode rc = curl_easy_perform(h);
    curl_slist_free_all(rcpt);
    curl_easy_cleanup(h);
    free(msg);
    if (rc != CURLE_OK) {
        snprintf(err, errlen, "smtp: %s", curl_easy_strerror(rc));
        return -1;
    }
    return 0;
}

/* ---- attempts */

/* test hook (notify.test_crash_after = email|webhook|websocket) */
static void crash_hook(const notify_app *a, const char *ch)
{
    if (a->crash_after != NULL && strcmp(a->crash_after, ch) == 0) {
        insite_log_warn("test hook notify.test_crash_after: killing myself after the %s send", ch);
        raise(SIGKILL);
    }
}


/* WebSocket messages in one Redis pipeline (lua/publish.lua per message,
 * the alert's event_id as idempotency key): msgs[i] to alert:<users[i]>,
 * skipped where users[i] is NULL.  rcs[i]: 0 published (or recognised as
 * published before), -1 failed/unknown (retried), -3 the user id cannot
 * form a channel name; untouched where skipped. */
static void publish_websocket_batch(notify_app *a, size_t n, const char *const *users,
                                    json_t *const *msgs, const char *const *event_ids, int *rcs)
{
    insite_publish_msg *m = calloc(n + 1, sizeof(*m));
    int *idx = calloc(n + 1, sizeof(int)), *brc = calloc(n + 1, sizeof(int));
    char (*chans)[INSITE_CHANNEL_MAX + 16] = calloc(n + 1, sizeof(*chans));
    char **datas = calloc(n + 1, sizeof(char *));
    insite_publish_result *res = calloc(n + 1, sizeof(*res));
    size_t k = 0;
    char err[256];
    if (m == NULL || idx == NULL || brc == NULL || chans == NULL || datas == NULL || res == NULL) {
        for (size_t i = 0; i < n; i++)
            if (users[i] != NULL)
                rcs[i] = -1;
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        if (users[i] == NULL)
            continue;
        snprintf(chans[k], sizeof(chans[k]), "alert:%s", users[i]);
        if (strlen(chans[k]) > INSITE_CHANNEL_MAX || !insite_channel_valid(chans[k])) {
            rcs[i] = -3;
            continue;
        }
        datas[k] = json_dumps(msgs[i], JSON_COMPACT);
        m[k] = (insite_publish_msg){ chans[k], "alert", datas[k] ? datas[k] : "{}", event_ids[i] };
        idx[k++] = (int)i;
    }
    if (k > 0) {
        int done = insite_redis_publish_batch(a->redis, m, k, res, brc, err, sizeof(err));
        for (size_t j = 0; j < k; j++)
            rcs[idx[j]] = done < 0 ? -1 : brc[j] == 0 ? 0 : -1;
        if (done < 0)
            insite_log_warn("websocket: %s", err);
        if (done > 0)
            crash_hook(a, "websocket");
    }
out:
    for (size_t j = 0; datas != NULL && j < k; j++)
        free(datas[j]);
    free(m);
    free(idx);
    free(brc);
    free(chans);
    free(datas);
    free(res);
}


/* Before an e-mail or webhook goes out, its attempt is recorded and
 * committed synchronously (a database crash cannot lose it either): the
 * delivery's `attempts` grows and a notification_attempts row without an
 * outcome says "this send may be happening".  An earlier row still without
 * an outcome was interrupted between its send and its record: it becomes
 * 'in_doubt' and this attempt repeats the same Message-ID /
 * Idempotency-Key.  0 = go ahead (*no = the attempt's number), -1 = do not
 * send (the database is unavailable, or the row is no longer pending). */
static int attempt_begin(PGconn *c, const char *did, int *no, int *in_doubt)
{
    const char *p[1] = { did };
    if (!exec_ok(c, "BEGIN", 0, NULL, "attempt") ||
        !exec_ok(c, "SET LOCAL synchronous_commit = on", 0, NULL, "attempt")) {
        PQclear(PQexec(c, "ROLLBACK"));
        return -1;
    }
    PGresult *r = notify_pg(c,
        "WITH doubt AS (UPDATE notification_attempts SET outcome = 'in_doubt', finished_at = now(), "
        "error = 'interrupted between the send and its record' "
        "WHERE delivery_id = $1::bigint AND outcome IS NULL RETURNING attempt), "
        "d AS (UPDATE notification_deliveries SET attempts = attempts + 1, updated_at = now() "
        "WHERE id = $1::bigint AND status = 'pending' RETURNING attempts) "
        "INSERT INTO notification_attempts (delivery_id, attempt) "
        "SELECT $1::bigint, attempts FROM d RETURNING attempt, (SELECT count(*) FROM doubt)",
        1, p);
    int ok = notify_pg_ok(r, "attempt");
    if (ok) {
        ok = PQntuples(r) == 1;       /* 0 rows: no longer pending */
        if (ok) {
            *no = atoi(PQgetvalue(r, 0, 0));
            *in_doubt = atoi(PQgetvalue(r, 0, 1)) > 0;
        }
        PQclear(r);
    }
    if (!ok || !exec_ok(c, "COMMIT", 0, NULL, "attempt")) {
        PQclear(PQexec(c, "ROLLBACK"));
        return -1;
    }
    return 0;
}

/* The outcomes [{id, status, attempts, error, next}] of deliveries, their
 * attempt rows (slow channels) and, for WebSocket/Kafka retries, their
 * alert rows' statuses, in one statement. */
static void record_outcomes(PGconn *c, json_t *outcomes)
{
    if (json_array_size(outcomes) == 0)
        return;
    char *oj = json_dumps(outcomes, JSON_COMPACT);
    const char *p[1] = { oj };
    if (oj != NULL)
        exec_ok(c,
            "WITH x AS (SELECT * FROM json_to_recordset($1::json) AS x(id bigint, status text, "
            "attempts integer, error text, next bigint)), "
            "t AS (UPDATE notification_attempts t SET finished_at = now(), error = x.error, "
            "outcome = CASE x.status WHEN 'delivered' THEN 'delivered' ELSE 'failed' END "
            "FROM x WHERE t.delivery_id = x.id AND t.delivery_id = ANY (ARRAY(SELECT id FROM x)) "
            "AND t.attempt = x.attempts AND t.outcome IS NULL), "
            /* a WebSocket/Kafka retry: its alert row's status follows */
            "f AS (SELECT d.notification_id AS id, "
            "max(CASE WHEN d.channel = 'websocket' THEN s END) AS ws, "
            "max(CASE WHEN d.channel = 'kafka' THEN s END) AS kafka "
            "FROM x JOIN notification_deliveries d ON d.id = x.id, "
            "LATERAL (SELECT CASE x.status WHEN 'pending' THEN 'retrying' ELSE x.status END AS s) l "
            "WHERE d.id = ANY (ARRAY(SELECT id FROM x)) AND d.channel IN ('websocket', 'kafka') "
            "GROUP BY d.notification_id), "
            "n AS (UPDATE notifications n SET websocket_status = coalesce(f.ws, n.websocket_status), "
            "kafka_status = coalesce(f.kafka, n.kafka_status), sent_at = now() FROM f WHERE n.id = f.id "
            "AND n.id = ANY (ARRAY(SELECT id FROM f))) "
            "UPDATE notification_deliveries d SET status = x.status, attempts = x.attempts, "
            "error = x.error, next_attempt_ms = x.next, updated_at = now() "
            "FROM x WHERE d.id = x.id AND d.id = ANY (ARRAY(SELECT id FROM x))", 1, p,
            "delivery outcomes");
    free(oj);
    json_array_clear(outcomes);
}

/* One e-mail or webhook attempt, recorded before the send (attempt_begin)
 * and right after it.  *rc as in attempt(); returns -1 when nothing was
 * sent nor must be recorded. */
static int attempt_slow(notify_app *a, PGconn *c, PGresult *r, int i, const char *data,
                        int *attempts, char *err, size_t errlen)
{
    const char *did = PQgetvalue(r, i, 0), *ch = PQgetvalue(r, i, 1),
               *event_id = PQgetvalue(r, i, 4), *user = PQgetvalue(r, i, 5);
    settings s;
    int no = 0, in_doubt = 0, rc = -1;
    if (settings_get(c, user, PQgetvalue(r, i, 6), &s) != 0) {
        settings_free(&s);
        return -1;                    /* the database is down: try later */
    }
    if (attempt_begin(c, did, &no, &in_doubt) != 0) {
        settings_free(&s);
        return -1;
    }
    if (in_doubt)
        insite_log_warn("alert %s via %s: the previous attempt was interrupted after its send "
                        "may have happened; sending again with the same %s", PQgetvalue(r, i, 3),
                        ch, strcmp(ch, "email") == 0 ? "Message-ID" : "Idempotency-Key");
    *attempts = no;
    if (strcmp(ch, "webhook") == 0)
        rc = send_webhook(a, &s, event_id, did, no, data, err, errlen);
    else
        rc = send_email(a, &s, user, event_id, did, PQgetvalue(r, i, 8), PQgetvalue(r, i, 9),
                        PQgetvalue(r, i, 10), err, errlen);
    settings_free(&s);
    if (rc == 0)
        crash_hook(a, ch);
    return rc == 0 ? 0 : 1;
}

/* The outcome of one attempt for the record statement: {status, attempts,
 * error, next} (the caller adds the keys of its row), counted, and logged
 * when it failed. */
static json_t *outcome_new(notify_app *a, int rc, int permanent, int attempts, const char *err,
                           int64_t now, const char *alert_id, const char *ch)
{
    const char *status = rc == 0 ? "delivered"
                         : (permanent || attempts >= a->max_attempts) ? "failed" : "pending";
    int64_t backoff = a->backoff_ms << (attempts - 1 < 12 ? attempts - 1 : 12);
    if (backoff > 600000)
        backoff = 600000;
    if (rc == 0)
        insite_counter_inc(a->m_delivered);
    else {
        insite_counter_inc(a->m_failed);
        insite_log_warn("alert %s via %s (attempt %d): %s", alert_id, ch, attempts, err);
    }
    return json_pack("{s:s, s:i, s:s?, s:I}", "status", status, "attempts", attempts, "error",
                     rc == 0 ? NULL : err, "next", (json_int_t)(now + backoff));
}

static int slow_channel(const char *ch)
{
    return strcmp(ch, "email") == 0 || strcmp(ch, "webhook") == 0;
}

/* The columns attempt_rows() reads, in its order (d = the delivery, n =
 * its alert). */
#define ATTEMPT_COLUMNS(d, n) \
    d ".id, " d ".channel, " d ".attempts, " n ".id, " n ".event_id, " n ".user_id, " \
    n ".template_id, " n ".priority, " n ".title, " n ".body, " n ".lang, " n ".collapsed, " \
    n ".fired_ms, " n ".args::text, " n ".rule_id"

static int attempt_rows(notify_app *a, PGconn *c, PGresult *r, int64_t now, int slow);

/* One pass over the pending deliveries of the fast channels (websocket,
 * kafka: in memory and one Redis pipeline, outcomes recorded in one
 * statement at the end) or the slow ones (e-mail, webhook: a network
 * exchange each, up to notify.channel_timeout, each recorded before and
 * after its send), so a slow receiver delays the next pass's WebSocket
 * messages by at most NOTIFY_SLOW_MAX exchanges. */
static int attempt(notify_app *a, PGconn *c, int64_t now, int slow)
{
    char ns[32];
    snprintf(ns, sizeof(ns), "%lld", (long long)now);
    const char *p[3] = { ns, slow ? "{email,webhook}" : "{websocket,kafka}",
                         slow ? NOTIFY_SLOW_MAX : NOTIFY_ATTEMPT_MAX };
    PGresult *r = notify_pg(c,
        "SELECT " ATTEMPT_COLUMNS("d", "n") " "
        "FROM notification_deliveries d JOIN notifications n ON n.id = d.notification_id "
        "WHERE d.status = 'pending' AND d.next_attempt_ms <= $1::bigint AND d.channel "
        "= ANY($2::text[]) ORDER BY d.id LIMIT $3::integer",
        3, p);
    if (!notify_pg_ok(r, "pending deliveries"))
        return -1;
    int n = attempt_rows(a, c, r, now, slow);
    PQclear(r);
    return n;
}

/* Tries the deliveries of r (ATTEMPT_COLUMNS) of the fast channels
 * (slow = 0; e-mail/webhook rows are left for the slow pass) or the slow
 * ones, and records the outcomes.  Returns the rows tried. */
static int attempt_rows(notify_app *a, PGconn *c, PGresult *r, int64_t now, int slow)
{
    int n = PQntuples(r);
    json_t *outcomes = json_array();
    int *ws_rc = calloc((size_t)n + 1, sizeof(int));
    if (ws_rc == NULL) {
        json_decref(outcomes);
        return -1;
    }
    if (!slow) {
        const char **users = calloc((size_t)n + 1, sizeof(char *)),
                   **eids = calloc((size_t)n + 1, sizeof(char *));
        json_t **msgs = calloc((size_t)n + 1, sizeof(json_t *));
        for (int i = 0; users && eids && msgs && i < n; i++) {
            if (strcmp(PQgetvalue(r, i, 1), "websocket") != 0)
                continue;
            users[i] = PQgetvalue(r, i, 5);
            eids[i] = PQgetvalue(r, i, 4);
            msgs[i] = message_json(r, i);
        }
        if (users && eids && msgs)
            publish_websocket_batch(a, (size_t)n, users, msgs, eids, ws_rc);
        else
            for (int i = 0; i < n; i++)
                ws_rc[i] = -1;
        for (int i = 0; msgs && i < n; i++)
            json_decref(msgs[i]);
        free(users);
        free(eids);
        free(msgs);
    }
    for (int i = 0; i < n; i++) {
        const char *did = PQgetvalue(r, i, 0), *ch = PQgetvalue(r, i, 1),
                   *event_id = PQgetvalue(r, i, 4), *user = PQgetvalue(r, i, 5);
        int attempts = atoi(PQgetvalue(r, i, 2)) + 1, permanent = 0, rc = -1;
        char err[512] = "";
        if (slow != slow_channel(ch))
            continue;
        json_t *msg = message_json(r, i);
        char *data = json_dumps(msg, JSON_COMPACT);
        if (strcmp(ch, "websocket") == 0) {
            rc = ws_rc[i] == 0 ? 0 : -1;
            permanent = ws_rc[i] == -3;
            snprintf(err, sizeof(err), "%s", ws_rc[i] == -3 ? "the user id cannot form a channel name"
                                            : "redis: the publish failed or its outcome is unknown");
        } else if (strcmp(ch, "kafka") == 0)
            rc = send_kafka(a, user, event_id, msg, err, sizeof(err));
        else if (strcmp(ch, "webhook") == 0 || strcmp(ch, "email") == 0) {
            int k = attempt_slow(a, c, r, i, data ? data : "{}", &attempts, err, sizeof(err));
            if (k < 0) {              /* nothing sent, nothing to record */
                free(data);
                json_decref(msg);
                continue;
            }
            rc = k == 0 ? 0 : -1;
        } else {
            snprintf(err, sizeof(err), "unknown channel");
            permanent = 1;
        }
        free(data);
        json_decref(msg);
        json_t *o = outcome_new(a, rc, permanent, attempts, err, now, PQgetvalue(r, i, 3), ch);
        json_object_set_new(o, "id", json_integer(atoll(did)));
        json_array_append_new(outcomes, o);
        if (slow)
            record_outcomes(c, outcomes);   /* right after the send: the window stays short */
    }
    /* the fast channels' outcomes in one statement; a crash before it
     * repeats the pass's sends (idempotent on WebSocket and Kafka) */
    record_outcomes(c, outcomes);
    json_decref(outcomes);
    free(ws_rc);
    return n;
}

/* One alert's WebSocket and Kafka sends (fast_send). */
typedef struct {
    json_int_t id;
    const char *user, *event_id;
    json_t *msg;                      /* borrowed: what every channel sends */
    int ws, kafka;                    /* send on this channel */
    json_t *row;                      /* borrowed: gets "websocket" / "kafka" */
} fast_item;

/* The alert row's status for a send's outcome (outcome_new()). */
static json_t *row_status(json_t *outcome)
{
    const char *st = json_string_value(json_object_get(outcome, "status"));
    return json_string(st == NULL ? "retrying" : strcmp(st, "pending") == 0 ? "retrying" : st);
}

/* The WebSocket messages of `it` in one Redis pipeline (lua/publish.lua,
 * the alert's event_id as idempotency key), the Kafka messages queued in
 * librdkafka.  Each item's row gets the statuses of its alert row
 * ("websocket", "kafka": delivered, retrying, failed; absent when not
 * sent); a failed send also adds its notification_deliveries row
 * ({id, channel, status, attempts, error, next}) to `fails`, from where
 * attempt() retries it.  *published_us: when Redis answered. */
static void fast_send(notify_app *a, const fast_item *it, size_t n, int64_t now, json_t *fails,
                      int64_t *published_us)
{
    const char **users = calloc(n + 1, sizeof(char *)), **eids = calloc(n + 1, sizeof(char *));
    json_t **msgs = calloc(n + 1, sizeof(json_t *));
    int *ws_rc = calloc(n + 1, sizeof(int));
    if (users == NULL || eids == NULL || msgs == NULL || ws_rc == NULL) {
        *published_us = notify_wall_us();
        goto out;                     /* left 'sending': sent again later */
    }
    for (size_t i = 0; i < n; i++) {
        msgs[i] = it[i].msg;
        eids[i] = it[i].event_id;
        users[i] = it[i].ws ? it[i].user : NULL;
    }
    publish_websocket_batch(a, n, users, msgs, eids, ws_rc);
    *published_us = notify_wall_us();
    for (size_t i = 0; i < n; i++) {
        char err[512] = "", id[32];
        snprintf(id, sizeof(id), "%lld", (long long)it[i].id);
        for (int k = 0; k < 2; k++) {
            const char *ch = k ? "kafka" : "websocket";
            int rc, permanent = 0;
            if (!(k ? it[i].kafka : it[i].ws))
                continue;
            if (k)
                rc = send_kafka(a, it[i].user, eids[i], msgs[i], err, sizeof(err));
            else {
                rc = ws_rc[i] == 0 ? 0 : -1;
                permanent = ws_rc[i] == -3;
                snprintf(err, sizeof(err), "%s", permanent ? "the user id cannot form a channel name"
                                           : "redis: the publish failed or its outcome is unknown");
            }
            json_t *o = outcome_new(a, rc, permanent, 1, err, now, id, ch);
            json_object_set_new(it[i].row, ch, row_status(o));
            if (rc == 0) {
                json_decref(o);
                continue;
            }
            json_object_set_new(o, "id", json_integer(it[i].id));
            json_object_set_new(o, "channel", json_string(ch));
            json_array_append_new(fails, o);
        }
    }
out:
    free(users);
    free(eids);
    free(msgs);
    free(ws_rc);
}

/* Alerts the evaluation thread planned (queue items {id, user, event_id,
 * ws, kafka, slow, msg}, notify_deliver_enqueue(), or recover()): their
 * WebSocket and Kafka messages go out, then one statement records the
 * outcomes in their rows (failed sends also get a delivery row, retried by
 * attempt()).  A crash before that statement leaves the rows 'sending':
 * recover() sends them again with the same event_id, which
 * lua/publish.lua recognises (and Kafka consumers dedupe on).  Returns 1
 * when some of them have e-mail/webhook deliveries waiting. */
static int send_queued(notify_app *a, PGconn *c, json_t *q, int64_t now, int64_t woke_us)
{
    size_t n = json_array_size(q), i;
    fast_item *it = calloc(n + 1, sizeof(*it));
    json_t *rows = json_array(), *fails = json_array(), *x;
    int slow = 0;
    int64_t published_us = 0;
    if (it == NULL)
        goto out;                     /* left 'sending': recover() sends them */
    json_array_foreach(q, i, x) {
        json_t *row = json_pack("{s:O}", "id", json_object_get(x, "id"));
        json_array_append_new(rows, row);
        it[i] = (fast_item){ json_integer_value(json_object_get(x, "id")),
                             json_string_value(json_object_get(x, "user")),
                             json_string_value(json_object_get(x, "event_id")),
                             json_object_get(x, "msg"), json_is_true(json_object_get(x, "ws")),
                             json_is_true(json_object_get(x, "kafka")), row };
        slow |= json_is_true(json_object_get(x, "slow"));
    }
    fast_send(a, it, n, now, fails, &published_us);
    char *rj = json_dumps(rows, JSON_COMPACT), *fj = json_dumps(fails, JSON_COMPACT);
    const char *p[2] = { rj, fj };
    if (rj != NULL && fj != NULL)
        exec_ok(c,
            "WITH x AS (SELECT * FROM json_to_recordset($1::json) AS x(id bigint, websocket text, "
            "kafka text)), "
            "u AS (UPDATE notifications n SET "
            "websocket_status = CASE WHEN n.websocket_status = 'sending' AND x.websocket IS NOT NULL "
            "THEN x.websocket ELSE n.websocket_status END, "
            "kafka_status = CASE WHEN n.kafka_status = 'sending' AND x.kafka IS NOT NULL "
            "THEN x.kafka ELSE n.kafka_status END, sent_at = now() "
            "FROM x WHERE n.id = x.id AND n.id = ANY (ARRAY(SELECT id FROM x)) RETURNING n.id) "
            "INSERT INTO notification_deliveries (notification_id, channel, status, attempts, "
            "error, next_attempt_ms) SELECT d.id, d.channel, d.status, d.attempts, d.error, d.next "
            "FROM json_to_recordset($2::json) AS d(id bigint, channel text, status text, "
            "attempts integer, error text, next bigint) JOIN u ON u.id = d.id "
            "ON CONFLICT DO NOTHING", 2, p, "record the sends");
    free(rj);
    free(fj);
    insite_log_debug("stage send n=%zu woke_us=%lld published_us=%lld recorded_us=%lld", n,
                     (long long)woke_us, (long long)published_us, (long long)notify_wall_us());
out:
    free(it);
    json_decref(rows);
    json_decref(fails);
    return slow;
}

/* Planned alerts whose WebSocket/Kafka sends were never recorded: the
 * worker died after committing them, or their record failed.  At start
 * all of them; later those older than 5 s (younger ones are still in the
 * queue; a repeat would be harmless, only wasted).  Sent again like queued
 * ones.  Returns how many. */
static int recover(notify_app *a, PGconn *c, int64_t now, int all)
{
    const char *p[1] = { all ? "t" : "f" };
    PGresult *r = notify_pg(c,
        "SELECT id, event_id, user_id, template_id, priority, coalesce(title, ''), "
        "coalesce(body, ''), coalesce(lang, 'en'), collapsed, fired_ms, args::text, "
        "coalesce(rule_id::text, ''), websocket_status = 'sending', kafka_status = 'sending' "
        "FROM notifications WHERE (websocket_status = 'sending' OR kafka_status = 'sending') "
        "AND ($1::boolean OR created_at < now() - interval '5 seconds') "
        "ORDER BY id LIMIT " NOTIFY_PLAN_MAX, 1, p);
    if (!notify_pg_ok(r, "unrecorded sends"))
        return -1;
    int n = PQntuples(r);
    json_t *q = json_array();
    for (int i = 0; i < n; i++) {
        const char *rule = PQgetvalue(r, i, 11);
        json_t *msg = message_new(PQgetvalue(r, i, 0), PQgetvalue(r, i, 1), PQgetvalue(r, i, 3),
                                  PQgetvalue(r, i, 4), PQgetvalue(r, i, 5), PQgetvalue(r, i, 6),
                                  PQgetvalue(r, i, 7), atoi(PQgetvalue(r, i, 8)),
                                  atoll(PQgetvalue(r, i, 9)), rule[0] ? rule : NULL,
                                  json_loads(PQgetvalue(r, i, 10), 0, NULL));
        json_array_append_new(q, json_pack("{s:I, s:s, s:s, s:b, s:b, s:b, s:o}",
                                           "id", (json_int_t)atoll(PQgetvalue(r, i, 0)),
                                           "user", PQgetvalue(r, i, 2), "event_id", PQgetvalue(r, i, 1),
                                           "ws", PQgetvalue(r, i, 12)[0] == 't',
                                           "kafka", PQgetvalue(r, i, 13)[0] == 't', "slow", 0,
                                           "msg", msg));
    }
    if (n > 0) {
        insite_log_info("sending %d planned alerts again whose sends were not recorded", n);
        send_queued(a, c, q, now, notify_wall_us());
    }
    json_decref(q);
    PQclear(r);
    return n;
}

/* The pass's plans go out, then are recorded (fast_send): then one
 * statement (atomic on its own) marks the alerts planned with the
 * WebSocket/Kafka outcomes in their rows, and creates the delivery rows of
 * failed sends and of e-mail and webhooks (pending, for the slow pass).  A
 * crash between the sends and the statement leaves the alerts 'new': they
 * are planned and sent again with the same event_id, which lua/publish.lua
 * recognises (and Kafka consumers dedupe on).  Returns the number of
 * e-mail/webhook deliveries created. */
static int plan_flush(notify_app *a, PGconn *c, plan_pass *pp, int64_t now)
{
    size_t n = json_array_size(pp->rows), i;
    if (n == 0)
        return 0;
    int64_t published_us;
    fast_item *it = calloc(n, sizeof(*it));
    json_t *row, *deliveries = json_array();
    int nslow = 0;
    if (it == NULL)
        goto out;                     /* the alerts stay due: the next pass tries again */
    json_array_foreach(pp->rows, i, row)
        it[i] = (fast_item){ json_integer_value(json_object_get(row, "id")),
                             json_string_value(json_object_get(row, "user")),
                             json_string_value(json_object_get(row, "event_id")),
                             json_object_get(row, "msg"), json_is_true(json_object_get(row, "ws")),
                             1, row };
    fast_send(a, it, n, now, deliveries, &published_us);
    json_array_foreach(pp->rows, i, row) {
        json_int_t nid = json_integer_value(json_object_get(row, "id"));
        for (int k = 0; k < 2; k++) {
            const char *ch = k ? "email" : "webhook";
            if (!json_is_true(json_object_get(row, ch)))
                continue;
            json_array_append_new(deliveries, json_pack("{s:I, s:s, s:s, s:i, s:I}", "id", nid,
                                                        "channel", ch, "status", "pending",
                                                        "attempts", 0, "next", (json_int_t)0));
            nslow++;
        }
        json_object_del(row, "msg");  /* not for PostgreSQL */
    }
    char ns[32], *rows = json_dumps(pp->rows, JSON_COMPACT), *dj = json_dumps(deliveries, JSON_COMPACT);
    snprintf(ns, sizeof(ns), "%lld", (long long)now);
    const char *p[3] = { rows, ns, dj };
    if (rows != NULL && dj != NULL)
        exec_ok(c,
            "WITH x AS (SELECT * FROM json_to_recordset($1::json) AS x(id bigint, lang text, "
            "title text, body text, count integer, args jsonb, websocket text, kafka text)), "
            "u AS (UPDATE notifications n SET state = 'planned', planned_ms = $2::bigint, "
            "lang = x.lang, title = x.title, body = x.body, collapsed = x.count, args = x.args, "
            "websocket_status = x.websocket, kafka_status = x.kafka, sent_at = now() "
            "FROM x WHERE n.id = x.id AND n.id = ANY (ARRAY(SELECT id FROM x)) "
            "AND n.state IN ('new', 'held') RETURNING n.id) "
            "INSERT INTO notification_deliveries (notification_id, channel, status, attempts, "
            "error, next_attempt_ms) SELECT d.id, d.channel, d.status, d.attempts, d.error, d.next "
            "FROM json_to_recordset($3::json) AS d(id bigint, channel text, status text, "
            "attempts integer, error text, next bigint) JOIN u ON u.id = d.id "
            "ON CONFLICT DO NOTHING", 3, p, "plan");
    free(rows);
    free(dj);
out:
    free(it);
    json_decref(deliveries);
    json_array_clear(pp->rows);
    return nslow;
}

/* Sleeps until notify_deliver_wake() or ms pass (retries and the end of
 * quiet hours are found by the next pass). */
static void wait_for_work(notify_app *a, long ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += (ms % 1000) * 1000000L;
    ts.tv_sec += ms / 1000 + ts.tv_nsec / 1000000000L;
    ts.tv_nsec %= 1000000000L;
    pthread_mutex_lock(&a->wake_lock);
    while (!a->wake_pending && !a->stop)
        if (pthread_cond_timedwait(&a->wake_cond, &a->wake_lock, &ts) != 0)
            break;
    a->wake_pending = 0;
    pthread_mutex_unlock(&a->wake_lock);
}

void notify_deliver_wake(notify_app *a)
{
    pthread_mutex_lock(&a->wake_lock);
    a->wake_pending = 1;
    pthread_cond_signal(&a->wake_cond);
    pthread_mutex_unlock(&a->wake_lock);
}

static void *deliver_main(void *ud)
{
    notify_app *a = ud;
    PGconn *c = NULL;
    int64_t last_retry_us = 0;
    while (!a->stop) {
        if (c != NULL && PQstatus(c) != CONNECTION_OK) {
            PQfinish(c);
            c = NULL;
        }
        if (c == NULL) {
            char err[512];
            if ((c = insite_pg_connect(a->dsn, err, sizeof(err))) == NULL) {
                insite_log_warn("deliver: postgresql: %s", err);
                sleep(1);
                continue;
            }
            /* A delivery record lost in a database crash only repeats its
             * send, which the idempotency keys make harmless; not waiting
             * for the WAL flush per alert is what lets this thread keep up
             * with a burst (the evaluation path keeps synchronous commits:
             * its rows are the only record of a fired alert). */
            PGresult *r = PQexec(c, "SET synchronous_commit = off");
            if (notify_pg_ok(r, "synchronous_commit"))
                PQclear(r);
        }
        int64_t now = notify_now_ms(a), woke_us = notify_wall_us();
        /* the hot path: what the evaluation thread planned and committed */
        json_t *q = take_queue(a);
        int busy = q != NULL, slow = q != NULL && send_queued(a, c, q, now, woke_us);
        json_decref(q);
        /* The rest, when e-mail/webhook deliveries were created, else every
         * 100 ms (so that while alerts stream in a pass costs no extra
         * read): held alerts whose quiet hours ended and unplanned ones,
         * sends never recorded (all of them at start), retries of the fast
         * channels, then the slow channels. */
        if (slow || woke_us - last_retry_us >= 100000) {
            int nslow = 0;
            busy |= plan(a, c, now, &nslow) > 0;
            busy |= recover(a, c, now, last_retry_us == 0) > 0;
            busy |= attempt(a, c, now, 0) > 0;
            busy |= attempt(a, c, now, 1) > 0;
            last_retry_us = woke_us;
        }
        insite_kafka_poll(a->kafka, 0);
        if (!busy) {
            long left = 100 - (long)((notify_wall_us() - last_retry_us) / 1000);
            wait_for_work(a, left < 1 ? 1 : left);
        }
    }
    if (c != NULL)
        PQfinish(c);
    return NULL;
}

int notify_deliver_start(notify_app *a)
{
    a->stop = 0;
    if (pthread_create(&a->deliver_thread, NULL, deliver_main, a) != 0) {
        insite_log_error("deliver: cannot start the thread");
        return -1;
    }
    return 0;
}

void notify_deliver_stop(notify_app *a)
{
    a->stop = 1;
    notify_deliver_wake(a);
    pthread_join(a->deliver_thread, NULL);
    json_decref(take_queue(a));       /* committed 'sending': the next start sends them */
}
