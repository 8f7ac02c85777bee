/* Templates in PostgreSQL: the shipped files are loaded at start; the
 * table is what the worker renders from (operators edit it via the API). */
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "notify.h"
#include "templates.h"

/* Stores one checked template (replacing its translations).  edited: the
 * operator API's write, which the shipped files then leave alone. */
int notify_template_store(PGconn *c, const json_t *tpl, int edited)
{
    const char *id = json_string_value(json_object_get(tpl, "id"));
    json_t *sample = json_object_get(tpl, "sample");
    char *sj = json_dumps(sample ? sample : json_object(), JSON_COMPACT);
    char *tj = json_dumps(json_object_get(tpl, "translations"), JSON_COMPACT);
    const char *desc = json_string_value(json_object_get(tpl, "description"));
    const char *p[6] = { id, json_string_value(json_object_get(tpl, "priority")),
                         desc ? desc : "", sj, edited ? "true" : "false", tj };
    PGresult *r;
    int ok = 0;
    if (sj == NULL || tj == NULL)
        goto out;
    r = notify_pg(c, "WITH t AS (INSERT INTO notification_templates (id, priority, description, "
                     "sample, edited) VALUES ($1, $2, $3, $4::jsonb, $5::boolean) "
                     "ON CONFLICT (id) DO UPDATE SET priority = EXCLUDED.priority, "
                     "description = EXCLUDED.description, sample = EXCLUDED.sample, "
                     "edited = EXCLUDED.edited, updated_at = now() "
                     "WHERE $5::boolean OR NOT notification_templates.edited RETURNING id), "
                     "d AS (DELETE FROM notification_translations WHERE template_id IN "
                     "(SELECT id FROM t)) "
                     "INSERT INTO notification_translations (template_id, lang, title, body) "
                     "SELECT t.id, x.key, x.value->>'title', x.value->>'body' "
                     "FROM t, json_each($6::json) AS x "
                     "ON CONFLICT (template_id, lang) DO UPDATE SET title = EXCLUDED.title, "
                     "body = EXCLUDED.body, updated_at = now()",
                  6, p);
    ok = notify_pg_ok(r, "store template");
    if (ok)
        PQclear(r);
out:
    free(sj);
    free(tj);
    return ok ? 0 : -1;
}

int notify_templates_sync(notify_app *a, PGconn *c, const char *dir)
{
    json_t *set = NULL, *t;
    const char *id;
    char err[1024];
    int n = notify_templates_load_dir(dir, &set, err, sizeof(err));
    if (n < 0) {
        insite_log_error("templates: %s", err);
        return -1;
    }
    json_object_foreach(set, id, t) {
        if (notify_template_store(c, t, 0) != 0) {
            json_decref(set);
            return -1;
        }
    }
    json_decref(set);
    insite_log_info("templates: %d loaded from %s", n, dir);
    return notify_templates_reload(a, c);
}

int notify_templates_reload(notify_app *a, PGconn *c)
{
    PGresult *r = notify_pg(c, "SELECT t.id, t.priority, t.description, t.sample::text, "
                               "coalesce(json_object_agg(x.lang, json_build_object('title', x.title, "
                               "'body', x.body)) FILTER (WHERE x.lang IS NOT NULL), '{}')::text "
                               "FROM notification_templates t LEFT JOIN notification_translations x "
                               "ON x.template_id = t.id GROUP BY t.id", 0, NULL);
    if (!notify_pg_ok(r, "load templates"))
        return -1;
    json_t *set = json_object();
    for (int i = 0; i < PQntuples(r); i++) {
        json_t *t = json_pack("{s:s, s:s, s:s, s:o, s:o}", "id", PQgetvalue(r, i, 0), "priority",
                              PQgetvalue(r, i, 1), "description", PQgetvalue(r, i, 2), "sample",
                              json_loads(PQgetvalue(r, i, 3), 0, NULL), "translations",
                              json_loads(PQgetvalue(r, i, 4), 0, NULL));
        if (t != NULL)
            json_object_set_new(set, PQgetvalue(r, i, 0), t);
    }
    PQclear(r);
    pthread_mutex_lock(&a->tpl_lock);
    json_decref(a->templates);
    a->templates = set;
    pthread_mutex_unlock(&a->tpl_lock);
    return 0;
}
