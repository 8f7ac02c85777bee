/* The HTTP API (docs/notify.md).  The caller is X-User-Id as nginx vouches
 * for it (insite_http_user); a user reaches only their own rules, alerts
 * and settings: another user's object answers 404, as if it did not exist.
 * Templates need the notify:admin scope. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"
#include "log.h"
#include "notify.h"
#include "pg.h"
#include "render.h"
#include "templates.h"


static int fail(json_t **reply, int status, const char *code, const char *msg)
{
    *reply = insite_http_error(code, msg);
    return status;
}

static int unauthorized(json_t **reply)
{
    *reply = insite_http_error("unauthorized", "no caller identity (X-User-Id)");
    return 401;
}

static int pg_down(json_t **reply)
{
    *reply = insite_http_error("unavailable", "the database is unreachable; try again");
    return 503;
}

static int internal(json_t **reply)
{
    *reply = insite_http_error("internal", "the request could not be completed");
    return 500;
}

static int invalid(json_t **reply, const char *code, const char *msg, json_t *reasons)
{
    *reply = insite_http_error(code, msg);
    json_object_set_new(*reply, "reasons", reasons);
    return 400;
}

static PGconn *pg_acquire(notify_app *a)
{
    pthread_mutex_lock(&a->api_lock);
    if (a->api_pg != NULL && PQstatus(a->api_pg) != CONNECTION_OK) {
        PQfinish(a->api_pg);
        a->api_pg = NULL;
    }
    if (a->api_pg == NULL) {
        char err[512];
        if ((a->api_pg = insite_pg_connect(a->dsn, err, sizeof(err))) == NULL) {
            insite_log_warn("api: postgresql: %s", err);
            pthread_mutex_unlock(&a->api_lock);
            return NULL;
        }
    }
    return a->api_pg;
}

static void pg_release(notify_app *a) { pthread_mutex_unlock(&a->api_lock); }

/* "/123" -> 123, and what follows in *tail; -1 when not an id */
static long long path_id(const char *rest, const char **tail)
{
    char *end;
    if (rest == NULL || rest[0] != '/' || !isdigit((unsigned char)rest[1]))
        return -1;
    errno = 0;
    long long v = strtoll(rest + 1, &end, 10);
    if (errno != 0 || v <= 0)
        return -1;
    if (tail != NULL)
        *tail = end;
    else if (*end != '\0')
        return -1;
    return v;
}

/* ---- rules */

static const char rule_cols[] =
    "r.id::text, r.user_id, r.symbol, r.kind, r.params::text, r.cooldown_s::text, "
    "r.recurring::text, r.priority, r.enabled::text, coalesce(s.side, 0)::text, "
    "coalesce(s.last_fired_ms, 0)::text, coalesce(s.fired_count, 0)::text";

static int row_rule(PGresult *r, int i, notify_rule *x)
{
    if (notify_rule_from_row(x, PQgetvalue(r, i, 0), PQgetvalue(r, i, 1), PQgetvalue(r, i, 2),
                             PQgetvalue(r, i, 3), PQgetvalue(r, i, 4), PQgetvalue(r, i, 5),
                             PQgetvalue(r, i, 6), PQgetvalue(r, i, 7), PQgetvalue(r, i, 8)) != 0)
        return -1;
    x->side = atoi(PQgetvalue(r, i, 9));
    x->last_fired_ms = atoll(PQgetvalue(r, i, 10));
    x->fired_count = atoi(PQgetvalue(r, i, 11));
    return 0;
}

/* The caller's rule `id` (with the engine's newer state when it has it):
 * 1 found, 0 not theirs / none, -1 database error. */
static int load_rule(notify_app *a, PGconn *c, const char *user, long long id, notify_rule *x)
{
    char sql[1024], ids[32];
    snprintf(ids, sizeof(ids), "%lld", id);
    snprintf(sql, sizeof(sql), "SELECT %s FROM alert_rules r LEFT JOIN alert_rule_state s "
             "ON s.rule_id = r.id WHERE r.id = $1 AND r.user_id = $2", rule_cols);
    const char *p[2] = { ids, user };
    PGresult *r = notify_pg(c, sql, 2, p);
    if (!notify_pg_ok(r, "load rule"))
        return -1;
    int found = PQntuples(r) == 1 && row_rule(r, 0, x) == 0;
    PQclear(r);
    if (found) {
        pthread_mutex_lock(&a->lock);
        notify_rule *live = notify_engine_get(a->engine, id);
        if (live != NULL) {
            x->side = live->side;
            x->last_fired_ms = live->last_fired_ms;
            x->fired_count = live->fired_count;
        }
        pthread_mutex_unlock(&a->lock);
    }
    return found;
}

static void engine_put(notify_app *a, const notify_rule *x)
{
    pthread_mutex_lock(&a->lock);
    if (x->enabled) {
        if (notify_engine_add(a->engine, x) == NULL)
            insite_log_error("engine: out of memory adding rule %lld", (long long)x->id);
    } else
        notify_engine_remove(a->engine, x->id);
    pthread_mutex_unlock(&a->lock);
}

static int rules_get(notify_app *a, const char *user, const insite_http_request *req,
                     json_t **reply)
{
    PGconn *c = pg_acquire(a);
    if (c == NULL)
        return pg_down(reply);
    int status = 200;
    if (req->rest[0] != '\0') {
        long long id = path_id(req->rest, NULL);
        notify_rule x;
        int f = id > 0 ? load_rule(a, c, user, id, &x) : 0;
        if (f < 0)
            status = internal(reply);
        else if (f == 0) {
            *reply = insite_http_error("not_found", "no such rule");
            status = 404;
        } else
            *reply = notify_rule_json(&x);
        pg_release(a);
        return status;
    }
    char sql[1024];
    snprintf(sql, sizeof(sql), "SELECT %s FROM alert_rules r LEFT JOIN alert_rule_state s "
             "ON s.rule_id = r.id WHERE r.user_id = $1 ORDER BY r.id", rule_cols);
    PGresult *r = notify_pg(c, sql, 1, &user);
    if (!notify_pg_ok(r, "list rules")) {
        pg_release(a);
        return internal(reply);
    }
    json_t *list = json_array();
    for (int i = 0; i < PQntuples(r); i++) {
        notify_rule x;
        if (row_rule(r, i, &x) == 0)
            json_array_append_new(list, notify_rule_json(&x));
    }
    PQclear(r);
    pg_release(a);
    *reply = json_pack("{s:o}", "rules", list);
    return 200;
}

static int rule_write(PGconn *c, const notify_rule *x, int insert, long long *id)
{
    char cd[32], ids[32];
    json_t *params = notify_rule_params(x);
    char *pj = json_dumps(params, JSON_COMPACT);
    json_decref(params);
    snprintf(cd, sizeof(cd), "%lld", (long long)(x->cooldown_ms / 1000));
    snprintf(ids, sizeof(ids), "%lld", (long long)x->id);
    const char *p[9] = { x->user, x->symbol, notify_kind_name(x->kind), pj, cd,
                         x->recurring ? "true" : "false", notify_priority_name(x->priority),
                         x->enabled ? "true" : "false", ids };
    PGresult *r = notify_pg(c, insert
        ? "INSERT INTO alert_rules (user_id, symbol, kind, params, cooldown_s, recurring, "
          "priority, enabled) VALUES ($1, $2, $3, $4::jsonb, $5::integer, $6::boolean, $7, "
          "$8::boolean) RETURNING id"
        : "UPDATE alert_rules SET symbol = $2, kind = $3, params = $4::jsonb, "
          "cooldown_s = $5::integer, recurring = $6::boolean, priority = $7, "
          "enabled = $8::boolean, updated_at = now() WHERE id = $9::bigint AND user_id = $1 "
          "RETURNING id", insert ? 8 : 9, p);
    free(pj);
    if (!notify_pg_ok(r, insert ? "insert rule" : "update rule"))
        return -1;
    int n = PQntuples(r);
    if (n == 1 && id != NULL)
        *id = atoll(PQgetvalue(r, 0, 0));
    PQclear(r);
    return n == 1 ? 0 : -1;
}

static int rules_post(notify_app *a, const char *user, const insite_http_request *req,
                      json_t **reply)
{
    json_t *why = json_array();
    notify_rule x;
    if (req->rest[0] != '\0') {
        json_decref(why);
        *reply = insite_http_error("not_found", "POST to /api/v1/alerts/rules");
        return 404;
    }
    if (strlen(user) > NOTIFY_USER_MAX) {
        json_decref(why);
        *reply = insite_http_error("invalid_user", "the user id is too long");
        return 400;
    }
    if (notify_rule_parse(req->body, NULL, &x, why) != 0)
        return invalid(reply, "invalid_rule", "the rule is not valid", why);
    json_decref(why);
    snprintf(x.user, sizeof(x.user), "%s", user);
    PGconn *c = pg_acquire(a);
    if (c == NULL)
        return pg_down(reply);
    const char *p[1] = { user };
    PGresult *r = notify_pg(c, "SELECT count(*) FROM alert_rules WHERE user_id = $1", 1, p);
    int status = 201;
    long long id = 0;
    if (!notify_pg_ok(r, "count rules"))
        status = internal(reply);
    else {
        long n = atol(PQgetvalue(r, 0, 0));
        PQclear(r);
        if (n >= a->max_rules) {
            *reply = insite_http_error("too_many_rules", "the rule limit per user is reached");
            status = 409;
        } else if (rule_write(c, &x, 1, &id) != 0)
            status = internal(reply);
        else {
            x.id = id;
            engine_put(a, &x);
            notify_rule st = x;
            load_rule(a, c, user, id, &st);
            *reply = notify_rule_json(&st);
        }
    }
    pg_release(a);
    return status;
}

static int rules_patch(notify_app *a, const char *user, const insite_http_request *req,
                       json_t **reply)
{
    long long id = path_id(req->rest, NULL);
    if (id <= 0)
        return fail(reply, 404, "not_found", "no such rule");
    PGconn *c = pg_acquire(a);
    if (c == NULL)
        return pg_down(reply);
    notify_rule base, x;
    int f = load_rule(a, c, user, id, &base), status = 200;
    json_t *why = json_array();
    if (f < 0)
        status = internal(reply);
    else if (f == 0) {
        *reply = insite_http_error("not_found", "no such rule");
        status = 404;
    } else if (notify_rule_parse(req->body, &base, &x, why) != 0) {
        pg_release(a);
        return invalid(reply, "invalid_rule", "the rule is not valid", why);
    } else if (rule_write(c, &x, 0, NULL) != 0)
        status = internal(reply);
    else {
        /* a changed condition starts over: its side is unknown again */
        char ids[32], side[8];
        snprintf(ids, sizeof(ids), "%lld", id);
        snprintf(side, sizeof(side), "%d", x.side);
        const char *p[2] = { ids, side };
        PGresult *r = notify_pg(c, "UPDATE alert_rule_state SET side = $2::smallint, "
                                   "updated_at = now() WHERE rule_id = $1::bigint", 2, p);
        if (notify_pg_ok(r, "reset rule state"))
            PQclear(r);
        engine_put(a, &x);
        *reply = notify_rule_json(&x);
    }
    json_decref(why);
    pg_release(a);
    return status;
}

static int rules_delete(notify_app *a, const char *user, const insite_http_request *req,
                        json_t **reply)
{
    long long id = path_id(req->rest, NULL);
    if (id <= 0)
        return fail(reply, 404, "not_found", "no such rule");
    PGconn *c = pg_acquire(a);
    if (c == NULL)
        return pg_down(reply);
    char ids[32];
    snprintf(ids, sizeof(ids), "%lld", id);
    const char *p[2] = { ids, user };
    PGresult *r = notify_pg(c, "DELETE FROM alert_rules WHERE id = $1::bigint AND user_id = $2 "
                               "RETURNING id", 2, p);
    int status;
    if (!notify_pg_ok(r, "delete rule"))
        status = internal(reply);
    else {
        status = PQntuples(r) == 1 ? 200 : 404;
        PQclear(r);
        if (status == 200) {
            pthread_mutex_lock(&a->lock);
            notify_engine_remove(a->engine, id);
            pthread_mutex_unlock(&a->lock);
            *reply = json_pack("{s:I}", "deleted", (json_int_t)id);
        } else
            *reply = insite_http_error("not_found", "no such rule");
    }
    pg_release(a);
    return status;
}

static int api_rules(const insite_http_request *req, json_t **reply, void *ud)
{
    notify_app *a = ud;
    const char *user = insite_http_user(req);
    if (user == NULL)
        return unauthorized(reply);
    if (strcmp(req->method, "GET") == 0)
        return rules_get(a, user, req, reply);
    if (strcmp(req->method, "POST") == 0)
        return rules_post(a, user, req, reply);
    if (strcmp(req->method, "PATCH") == 0)
        return rules_patch(a, user, req, reply);
    return rules_delete(a, user, req, reply);
}

/* ---- alerts */

static int api_alerts(const insite_http_request *req, json_t **reply, void *ud)
{
    notify_app *a = ud;
    const char *user = insite_http_user(req);
    if (user == NULL)
        return unauthorized(reply);
    PGconn *c;
    if (strcmp(req->method, "POST") == 0) {
        const char *tail = NULL;
        long long id = path_id(req->rest, &tail);
        if (id <= 0 || tail == NULL || strcmp(tail, "/read") != 0)
            return fail(reply, 404, "not_found", "POST /api/v1/alerts/{id}/read");
        if ((c = pg_acquire(a)) == NULL)
            return pg_down(reply);
        char ids[32];
        snprintf(ids, sizeof(ids), "%lld", id);
        const char *p[2] = { ids, user };
        PGresult *r = notify_pg(c, "UPDATE notifications SET read_at = coalesce(read_at, now()) "
                                   "WHERE id = $1::bigint AND user_id = $2 RETURNING id", 2, p);
        int status;
        if (!notify_pg_ok(r, "mark read"))
            status = internal(reply);
        else {
            status = PQntuples(r) == 1 ? 200 : 404;
            PQclear(r);
            *reply = status == 200 ? json_pack("{s:I, s:b}", "id", (json_int_t)id, "read", 1)
                                   : insite_http_error("not_found", "no such alert");
        }
        pg_release(a);
        return status;
    }
    if (req->rest[0] != '\0')
        return fail(reply, 404, "not_found", "no such resource");
    const char *lim = insite_http_query(req, "limit"), *unread = insite_http_query(req, "unread");
    long limit = lim ? strtol(lim, NULL, 10) : 50;
    if (limit < 1 || limit > 500) {
        *reply = insite_http_error("invalid_limit", "limit must be 1..500");
        return 400;
    }
    if ((c = pg_acquire(a)) == NULL)
        return pg_down(reply);
    char ls[16];
    snprintf(ls, sizeof(ls), "%ld", limit);
    const char *p[3] = { user, ls, unread && strcmp(unread, "1") == 0 ? "t" : "f" };
    PGresult *r = notify_pg(c,
        "SELECT coalesce(json_agg(x ORDER BY x.id DESC), '[]')::text, "
        "(SELECT count(*) FROM notifications WHERE user_id = $1 AND read_at IS NULL "
        " AND state NOT IN ('collapsed', 'digested')) FROM ("
        "SELECT id, event_id, rule_id, template_id, priority, state, collapsed AS count, lang, "
        "title, body, args, fired_ms, created_at, read_at, read_at IS NOT NULL AS read "
        "FROM notifications WHERE user_id = $1 AND state NOT IN ('collapsed', 'digested') "
        "AND ($3::boolean = false OR read_at IS NULL) ORDER BY id DESC LIMIT $2::integer) x",
        3, p);
    int status = 200;
    if (!notify_pg_ok(r, "list alerts"))
        status = internal(reply);
    else {
        *reply = json_pack("{s:o, s:I}", "alerts", json_loads(PQgetvalue(r, 0, 0), 0, NULL),
                           "unread", (json_int_t)atoll(PQgetvalue(r, 0, 1)));
        PQclear(r);
    }
    pg_release(a);
    return status;
}

/* ---- settings */

static const char *const channel_names[] = { "websocket", "email", "webhook" };

static int hhmm(json_t *v)
{
    const char *s = json_string_value(v);
    int h, m;
    char end;
    if (s == NULL || strlen(s) != 5 || sscanf(s, "%2d:%2d%c", &h, &m, &end) != 2 || h < 0
        || h > 23 || m < 0 || m > 59)
        return -1;
    return h * 60 + m;
}

static json_t *settings_defaults(void)
{
    return json_pack("{s:b, s:[s], s:s, s:[s], s:n, s:n, s:n, s:b, s:i, s:{}}", "enabled", 1,
                     "languages", "en", "time_zone", "UTC", "channels", "websocket",
                     "quiet_hours", "email", "webhook_url", "webhook_secret_set", 0,
                     "rate_per_hour", 60, "templates");
}

/* The caller's settings as the API shows them (the webhook secret is
 * write-only).  NULL on a database error. */
static json_t *settings_load(PGconn *c, const char *user)
{
    PGresult *r = notify_pg(c,
        "SELECT template_id, enabled, array_to_json(languages)::text, time_zone, "
        "array_to_json(channels)::text, quiet_start, quiet_end, email, webhook_url, "
        "webhook_secret IS NOT NULL, rate_per_hour FROM user_notification_settings "
        "WHERE user_id = $1 ORDER BY template_id", 1, &user);
    if (!notify_pg_ok(r, "load settings"))
        return NULL;
    json_t *s = settings_defaults(), *tpls = json_object_get(s, "templates");
    for (int i = 0; i < PQntuples(r); i++) {
        int en = PQgetvalue(r, i, 1)[0] == 't';
        if (PQgetvalue(r, i, 0)[0] != '\0') {
            json_object_set_new(tpls, PQgetvalue(r, i, 0), json_pack("{s:b}", "enabled", en));
            continue;
        }
        json_object_set_new(s, "enabled", json_boolean(en));
        json_object_set_new(s, "languages", json_loads(PQgetvalue(r, i, 2), 0, NULL));
        json_object_set_new(s, "time_zone", json_string(PQgetvalue(r, i, 3)));
        json_object_set_new(s, "channels", json_loads(PQgetvalue(r, i, 4), 0, NULL));
        if (!PQgetisnull(r, i, 5) && !PQgetisnull(r, i, 6)) {
            char a[8], b[8];
            int qs = atoi(PQgetvalue(r, i, 5)), qe = atoi(PQgetvalue(r, i, 6));
            snprintf(a, sizeof(a), "%02d:%02d", qs / 60 % 24, qs % 60);
            snprintf(b, sizeof(b), "%02d:%02d", qe / 60 % 24, qe % 60);
            json_object_set_new(s, "quiet_hours", json_pack("{s:s, s:s}", "start", a, "end", b));
        }
        json_object_set_new(s, "email", PQgetisnull(r, i, 7) ? json_null()
                                                             : json_string(PQgetvalue(r, i, 7)));
        json_object_set_new(s, "webhook_url", PQgetisnull(r, i, 8)
                                                  ? json_null() : json_string(PQgetvalue(r, i, 8)));
        json_object_set_new(s, "webhook_secret_set", json_boolean(PQgetvalue(r, i, 9)[0] == 't'));
        json_object_set_new(s, "rate_per_hour", json_integer(atoi(PQgetvalue(r, i, 10))));
    }
    PQclear(r);
    return s;
}

static void why(json_t *reasons, const char *msg) { json_array_append_new(reasons, json_string(msg)); }

/* Validates a PUT body over the current settings; the webhook secret is
 * returned separately (never shown back). */
static void settings_merge(notify_app *a, json_t *cur, const json_t *in, json_t *reasons,
                           const char **secret)
{
    const char *k;
    json_t *v;
    if (!json_is_object(in)) {
        why(reasons, "the body must be a JSON object");
        return;
    }
    json_object_foreach((json_t *)in, k, v) {
        if (strcmp(k, "enabled") == 0) {
            if (!json_is_boolean(v))
                why(reasons, "enabled: must be true or false");
        } else if (strcmp(k, "languages") == 0) {
            size_t i;
            json_t *l;
            int ok = json_is_array(v) && json_array_size(v) >= 1
                     && json_array_size(v) <= notify_nlanguages;
            json_array_foreach(v, i, l) ok = ok && notify_language_known(json_string_value(l));
            if (!ok) {
                why(reasons, "languages: 1..13 of en, ko, ja, zh-Hans, zh-Hant, es, fr, de, "
                             "pt-BR, it, ru, ar, hi, in order of preference");
                continue;
            }
        } else if (strcmp(k, "time_zone") == 0) {
            if (!json_is_string(v) || strlen(json_string_value(v)) > 64
                || !notify_tz_valid(json_string_value(v)))
                why(reasons, "time_zone: an IANA time zone such as Europe/Paris");
        } else if (strcmp(k, "channels") == 0) {
            size_t i;
            json_t *l;
            int ok = json_is_array(v) && json_array_size(v) <= 3;
            json_array_foreach(v, i, l) {
                const char *s = json_string_value(l);
                int known = 0;
                for (int j = 0; s && j < 3; j++)
                    known |= strcmp(s, channel_names[j]) == 0;
                ok = ok && known;
            }
            if (!ok)
                why(reasons, "channels: a list of websocket, email, webhook");
        } else if (strcmp(k, "quiet_hours") == 0) {
            if (!json_is_null(v) && (!json_is_object(v) || json_object_size(v) != 2
                                     || hhmm(json_object_get(v, "start")) < 0
                                     || hhmm(json_object_get(v, "end")) < 0
                                     || hhmm(json_object_get(v, "start"))
                                            == hhmm(json_object_get(v, "end"))))
                why(reasons, "quiet_hours: null or {\"start\":\"HH:MM\",\"end\":\"HH:MM\"}, "
                             "local time, start != end");
        } else if (strcmp(k, "email") == 0) {
            const char *s = json_string_value(v);
            if (!json_is_null(v) && (s == NULL || strlen(s) > 254 || strchr(s, '@') == NULL
                                     || strpbrk(s, " \r\n<>,;\"") != NULL))
                why(reasons, "email: null or an e-mail address");
        } else if (strcmp(k, "webhook_url") == 0) {
            const char *s = json_string_value(v);
            if (!json_is_null(v) && (s == NULL || strlen(s) > 2000
                                     || (strncmp(s, "https://", 8) != 0
                                         && strncmp(s, "http://", 7) != 0)
                                     || strpbrk(s, " \r\n") != NULL))
                why(reasons, "webhook_url: null or an http(s):// URL");
        } else if (strcmp(k, "webhook_secret") == 0) {
            const char *s = json_string_value(v);
            if (s == NULL || strlen(s) < 16 || strlen(s) > 256)
                why(reasons, "webhook_secret: a string of 16..256 characters");
            else
                *secret = s;
            continue;
        } else if (strcmp(k, "rate_per_hour") == 0) {
            if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > 10000)
                why(reasons, "rate_per_hour: an integer 1..10000");
        } else if (strcmp(k, "templates") == 0) {
            const char *t;
            json_t *o;
            if (!json_is_object(v)) {
                why(reasons, "templates: an object template id -> {\"enabled\":bool}");
                continue;
            }
            pthread_mutex_lock(&a->tpl_lock);
            json_object_foreach(v, t, o) {
                if (json_object_get(a->templates, t) == NULL || !json_is_object(o)
                    || json_object_size(o) != 1 || !json_is_boolean(json_object_get(o, "enabled"))) {
                    char m[200];
                    snprintf(m, sizeof(m), "templates.%.64s: a known template id -> "
                                           "{\"enabled\":bool}", t);
                    why(reasons, m);
                }
            }
            pthread_mutex_unlock(&a->tpl_lock);
            json_object_update(json_object_get(cur, "templates"), v);
            continue;
        } else if (strcmp(k, "webhook_secret_set") == 0) {
            continue;                 /* echoed back from GET: ignored */
        } else {
            char m[200];
            snprintf(m, sizeof(m), "%.64s: unknown field", k);
            why(reasons, m);
            continue;
        }
        json_object_set(cur, k, v);
    }
    json_t *ch = json_object_get(cur, "channels"), *l;
    size_t i;
    json_array_foreach(ch, i, l) {
        if (json_is_string(l) && strcmp(json_string_value(l), "email") == 0
            && !json_is_string(json_object_get(cur, "email")))
            why(reasons, "channels: email needs an email address");
        if (json_is_string(l) && strcmp(json_string_value(l), "webhook") == 0
            && !json_is_string(json_object_get(cur, "webhook_url")))
            why(reasons, "channels: webhook needs a webhook_url");
    }
}

static int settings_store(PGconn *c, const char *user, json_t *s, const char *secret)
{
    char *langs = json_dumps(json_object_get(s, "languages"), JSON_COMPACT);
    char *chans = json_dumps(json_object_get(s, "channels"), JSON_COMPACT);
    char *tpls = json_dumps(json_object_get(s, "templates"), JSON_COMPACT);
    char qs[8] = "", qe[8] = "", rate[16];
    json_t *q = json_object_get(s, "quiet_hours");
    if (json_is_object(q)) {
        snprintf(qs, sizeof(qs), "%d", hhmm(json_object_get(q, "start")));
        snprintf(qe, sizeof(qe), "%d", hhmm(json_object_get(q, "end")));
    }
    snprintf(rate, sizeof(rate), "%lld", (long long)json_integer_value(json_object_get(s, "rate_per_hour")));
    const char *p[11] = { user, json_is_true(json_object_get(s, "enabled")) ? "true" : "false",
                          langs, json_string_value(json_object_get(s, "time_zone")), chans,
                          qs[0] ? qs : NULL, qe[0] ? qe : NULL,
                          json_string_value(json_object_get(s, "email")),
                          json_string_value(json_object_get(s, "webhook_url")), secret, rate };
    PGresult *r = notify_pg(c,
        "INSERT INTO user_notification_settings (user_id, template_id, enabled, languages, "
        "time_zone, channels, quiet_start, quiet_end, email, webhook_url, webhook_secret, "
        "rate_per_hour) SELECT $1, '', $2::boolean, "
        "ARRAY(SELECT json_array_elements_text($3::json)), $4, "
        "ARRAY(SELECT json_array_elements_text($5::json)), $6::smallint, $7::smallint, $8, $9, "
        "$10, $11::integer "
        "ON CONFLICT (user_id, template_id) DO UPDATE SET enabled = EXCLUDED.enabled, "
        "languages = EXCLUDED.languages, time_zone = EXCLUDED.time_zone, "
        "channels = EXCLUDED.channels, quiet_start = EXCLUDED.quiet_start, "
        "quiet_end = EXCLUDED.quiet_end, email = EXCLUDED.email, "
        "webhook_url = EXCLUDED.webhook_url, "
        "webhook_secret = coalesce(EXCLUDED.webhook_secret, user_notification_settings.webhook_secret), "
        "rate_per_hour = EXCLUDED.rate_per_hour, updated_at = now()", 11, p);
    int ok = notify_pg_ok(r, "store settings");
    if (ok) {
        PQclear(r);
        const char *p2[2] = { user, tpls };
        r = notify_pg(c, "INSERT INTO user_notification_settings (user_id, template_id, enabled) "
                         "SELECT $1, key, (value->>'enabled')::boolean FROM json_each($2::json) "
                         "ON CONFLICT (user_id, template_id) DO UPDATE SET enabled = EXCLUDED.enabled, "
                         "updated_at = now()", 2, p2);
        ok = notify_pg_ok(r, "store template settings");
        if (ok)
            PQclear(r);
    }
    free(langs);
    free(chans);
    free(tpls);
    return ok ? 0 : -1;
}

static int api_settings(const insite_http_request *req, json_t **reply, void *ud)
{
    notify_app *a = ud;
    const char *user = insite_http_user(req);
    if (user == NULL)
        return unauthorized(reply);
    if (req->rest[0] != '\0')
        return fail(reply, 404, "not_found", "no such resource");
    PGconn *c = pg_acquire(a);
    if (c == NULL)
        return pg_down(reply);
    json_t *cur = settings_load(c, user);
    int status = 200;
    if (cur == NULL)
        status = internal(reply);
    else if (strcmp(req->method, "GET") == 0)
        *reply = json_incref(cur);
    else {
        json_t *reasons = json_array();
        const char *secret = NULL;
        settings_merge(a, cur, req->body, reasons, &secret);
        if (json_array_size(reasons) > 0)
            status = invalid(reply, "invalid_settings", "the settings are not valid",
                             json_incref(reasons));
        else if (settings_store(c, user, cur, secret) != 0)
            status = internal(reply);
        else {
            json_decref(cur);
            cur = settings_load(c, user);
            *reply = cur ? json_incref(cur) : json_object();
        }
        json_decref(reasons);
    }
    json_decref(cur);
    pg_release(a);
    return status;
}

/* ---- templates (operators) */

static const char *const shipped[] = { "price_alert", "percent_move", "volume_spike",
                                       "sentiment_shift", "system_incident", "deletion_completed",
                                       "export_ready", "digest" };

static int api_templates(const insite_http_request *req, json_t **reply, void *ud)
{
    notify_app *a = ud;
    if (insite_http_user(req) == NULL)
        return unauthorized(reply);
    if (!insite_http_has_scope(req, "notify:admin")) {
        *reply = insite_http_error("insufficient_scope", "templates need the notify:admin scope");
        return 403;
    }
    char id[80] = "";
    const char *action = "";
    if (req->rest[0] == '/') {
        size_t n = strcspn(req->rest + 1, "/");
        if (n == 0 || n >= sizeof(id))
            return fail(reply, 404, "not_found", "no such template");
        memcpy(id, req->rest + 1, n);
        id[n] = '\0';
        action = req->rest + 1 + n;
    }
    int status = 200;
    if (strcmp(req->method, "GET") == 0) {
        pthread_mutex_lock(&a->tpl_lock);
        json_t *t = id[0] ? json_object_get(a->templates, id) : NULL;
        if (id[0] && (t == NULL || action[0])) {
            *reply = insite_http_error("not_found", "no such template");
            status = 404;
        } else if (id[0])
            *reply = json_deep_copy(t);
        else {
            json_t *list = json_array(), *x;
            const char *k;
            json_object_foreach(a->templates, k, x) json_array_append_new(list, json_deep_copy(x));
            *reply = json_pack("{s:o}", "templates", list);
        }
        pthread_mutex_unlock(&a->tpl_lock);
        return status;
    }
    if (strcmp(req->method, "POST") == 0) {
        /* POST /templates/{id}/preview {"lang":"fr","args":{..},"time_zone":".."} */
        if (!id[0] || strcmp(action, "/preview") != 0)
            return fail(reply, 404, "not_found", "POST /api/v1/alerts/templates/{id}/preview");
        json_t *b = req->body ? req->body : NULL;
        const char *lang = json_string_value(json_object_get(b, "lang"));
        const char *tz = json_string_value(json_object_get(b, "time_zone"));
        json_t *args = json_object_get(b, "args");
        if (lang != NULL && !notify_language_known(lang))
            return fail(reply, 400, "invalid_preview", "lang: one of the 13 supported languages");
        if (tz != NULL && !notify_tz_valid(tz))
            return fail(reply, 400, "invalid_preview", "time_zone: an IANA time zone");
        if (args != NULL && !json_is_object(args))
            return fail(reply, 400, "invalid_preview", "args: an object");
        pthread_mutex_lock(&a->tpl_lock);
        json_t *t = json_object_get(a->templates, id);
        notify_rendered out;
        char err[512];
        const char *langs[1] = { lang ? lang : "en" };
        if (t == NULL) {
            *reply = insite_http_error("not_found", "no such template");
            status = 404;
        } else if (notify_render(a->templates, id, langs, 1, tz ? tz : "UTC",
                                 args ? args : json_object_get(t, "sample"), &out, err,
                                 sizeof(err)) != 0) {
            *reply = insite_http_error("render_failed", err);
            status = 422;
        } else {
            *reply = json_pack("{s:s, s:s, s:s, s:s}", "title", out.title, "body", out.body,
                               "lang", out.lang, "dir", out.rtl ? "rtl" : "ltr");
            notify_rendered_free(&out);
        }
        pthread_mutex_unlock(&a->tpl_lock);
        return status;
    }
    if (!id[0] || action[0])
        return fail(reply, 404, "not_found", "no such template");
    PGconn *c = pg_acquire(a);
    if (c == NULL)
        return pg_down(reply);
    if (strcmp(req->method, "PUT") == 0) {
        json_t *t = json_is_object(req->body) ? json_deep_copy(req->body) : NULL;
        char err[512];
        if (t != NULL && json_object_get(t, "id") == NULL)
            json_object_set_new(t, "id", json_string(id));
        if (t == NULL) {
            *reply = insite_http_error("invalid_template", "the body must be a template object");
            status = 400;
        } else if (strcmp(json_string_value(json_object_get(t, "id")) ?: "", id) != 0) {
            *reply = insite_http_error("invalid_template", "id: must match the path");
            status = 400;
        } else if (notify_template_check(t, err, sizeof(err)) != 0) {
            *reply = insite_http_error("invalid_template", err);
            status = 400;
        } else if (notify_template_store(c, t, 1) != 0 || notify_templates_reload(a, c) != 0)
            status = internal(reply);
        else
            *reply = json_incref(t);
        json_decref(t);
    } else {
        int builtin = 0;
        for (size_t i = 0; i < sizeof(shipped) / sizeof(shipped[0]); i++)
            builtin |= strcmp(shipped[i], id) == 0;
        const char *p[1] = { id };
        PGresult *r;
        if (builtin) {
            *reply = insite_http_error("template_in_use", "a shipped template cannot be deleted; "
                                                          "PUT a new text instead");
            status = 409;
        } else if (!notify_pg_ok(r = notify_pg(c, "DELETE FROM notification_templates WHERE id = $1 "
                                                  "RETURNING id", 1, p), "delete template"))
            status = internal(reply);
        else {
            status = PQntuples(r) == 1 ? 200 : 404;
            PQclear(r);
            *reply = status == 200 ? json_pack("{s:s}", "deleted", id)
                                   : insite_http_error("not_found", "no such template");
            notify_templates_reload(a, c);
        }
    }
    pg_release(a);
    return status;
}

const size_t notify_api_nroutes = 12;

void notify_api_routes(notify_app *a, void *out)
{
    insite_http_route *r = out;
    const insite_http_route routes[] = {
        { "GET", "/api/v1/alerts/rules", api_rules, a },
        { "POST", "/api/v1/alerts/rules", api_rules, a },
        { "PATCH", "/api/v1/alerts/rules", api_rules, a },
        { "DELETE", "/api/v1/alerts/rules", api_rules, a },
        { "GET", "/api/v1/alerts/settings", api_settings, a },
        { "PUT", "/api/v1/alerts/settings", api_settings, a },
        { "GET", "/api/v1/alerts/templates", api_templates, a },
        { "PUT", "/api/v1/alerts/templates", api_templates, a },
        { "DELETE", "/api/v1/alerts/templates", api_templates, a },
        { "POST", "/api/v1/alerts/templates", api_templates, a },
        { "GET", "/api/v1/alerts", api_alerts, a },
        { "POST", "/api/v1/alerts", api_alerts, a },
    };
    memcpy(r, routes, sizeof(routes));
}
