/* The data map: one parser for the erasure job and the retention run
 * (datamap.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "datamap.h"

#define VALUE_CHARS "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.:-"

int gdpr_ident_ok(const char *s)
{
    size_t n = 0;
    if (s == NULL || !((s[0] >= 'a' && s[0] <= 'z') || s[0] == '_'))
        return 0;
    for (; s[n]; n++)
        if (!((s[n] >= 'a' && s[n] <= 'z') || (s[n] >= '0' && s[n] <= '9') || s[n] == '_'))
            return 0;
    return n <= 63;
}

char *gdpr_quote_ident(const char *s)
{
    char *q = malloc(strlen(s) + 3);
    if (q)
        sprintf(q, "\"%s\"", s);
    return q;
}

static int find_db(const gdpr_datamap *m, const char *name)
{
    for (size_t i = 0; i < m->ndbs; i++)
        if (strcmp(m->dbs[i].name, name) == 0)
            return (int)i;
    return -1;
}

static int parse_pg_target(gdpr_datamap *e, json_t *t, gdpr_target *x, char *err, size_t errlen)
{
    const char *name = json_string_value(json_object_get(t, "name"));
    const char *db = json_string_value(json_object_get(t, "database"));
    const char *table = json_string_value(json_object_get(t, "table"));
    const char *col = json_string_value(json_object_get(t, "user_column"));
    const char *act = json_string_value(json_object_get(t, "action"));
    size_t i;

    if (!gdpr_ident_ok(name) || !gdpr_ident_ok(table) || !gdpr_ident_ok(col) || db == NULL || act == NULL) {
        snprintf(err, errlen, "postgresql target %s: needs name, database, table, user_column, "
                 "action (identifiers [a-z_][a-z0-9_]*)", name ? name : "?");
        return -1;
    }
    x->kind = GDPR_T_PG;
    if ((x->db = find_db(e, db)) < 0) {
        snprintf(err, errlen, "postgresql target %s: unknown database \"%s\"", name, db);
        return -1;
    }
    x->action = strcmp(act, "delete") == 0 ? GDPR_A_DELETE : strcmp(act, "anonymize") == 0 ? GDPR_A_ANONYMIZE
                : strcmp(act, "retain") == 0 ? GDPR_A_RETAIN : -1;
    if (x->action < 0) {
        snprintf(err, errlen, "postgresql target %s: action must be delete, anonymize or retain", name);
        return -1;
    }
    x->name = malloc(strlen(name) + 4);
    sprintf(x->name, "pg:%s", name);
    x->table = gdpr_quote_ident(table);
    x->column = gdpr_quote_ident(col);
    x->pseudonymize = json_is_true(json_object_get(t, "pseudonymize"));
    x->replace_in = json_incref(json_object_get(t, "replace_in"));
    x->columns = json_incref(json_object_get(t, "columns"));
    if (json_string_value(json_object_get(t, "reason")))
        x->reason = strdup(json_string_value(json_object_get(t, "reason")));
    if (x->action == GDPR_A_RETAIN && x->reason == NULL) {
        snprintf(err, errlen, "postgresql target %s: retain needs a reason", name);
        return -1;
    }
    if (x->action == GDPR_A_ANONYMIZE && json_object_size(x->columns) == 0) {
        snprintf(err, errlen, "postgresql target %s: anonymize needs columns", name);
        return -1;
    }
    const char *k;
    json_t *v;
    json_object_foreach(x->columns, k, v)
        if (!gdpr_ident_ok(k) || !(json_is_string(v) || json_is_null(v))) {
            snprintf(err, errlen, "postgresql target %s: column \"%s\": string or null", name, k);
            return -1;
        }
    json_array_foreach(x->replace_in, i, v)
        if (!gdpr_ident_ok(json_string_value(v))) {
            snprintf(err, errlen, "postgresql target %s: replace_in: identifiers", name);
            return -1;
        }
    return 0;
}

/* {"name","database","table","time_column"[,"where":{"column":["v",...]}]} */
static int parse_retention_target(gdpr_datamap *e, json_t *t, gdpr_retention_target *x,
                                  char *err, size_t errlen)
{
    const char *name = json_string_value(json_object_get(t, "name"));
    const char *db = json_string_value(json_object_get(t, "database"));
    const char *table = json_string_value(json_object_get(t, "table"));
    const char *col = json_string_value(json_object_get(t, "time_column"));
    json_t *where = json_object_get(t, "where"), *vals, *v;
    const char *k;
    size_t i;

    if (!gdpr_ident_ok(name) || !gdpr_ident_ok(table) || !gdpr_ident_ok(col) || db == NULL) {
        snprintf(err, errlen, "retention target %s: needs name, database, table, time_column "
                 "(identifiers [a-z_][a-z0-9_]*)", name ? name : "?");
        return -1;
    }
    for (const gdpr_retention_target *o = e->retention; o < x; o++)
        if (strcmp(o->name, name) == 0) {
            snprintf(err, errlen, "retention target %s: named twice", name);
            return -1;
        }
    x->name = strdup(name);
    x->table = gdpr_quote_ident(table);
    x->time_column = gdpr_quote_ident(col);
    if ((x->db = find_db(e, db)) < 0) {
        snprintf(err, errlen, "retention target %s: unknown database \"%s\"", name, db);
        return -1;
    }
    if (where == NULL)
        return 0;
    if (!json_is_object(where) || json_object_size(where) != 1) {
        snprintf(err, errlen, "retention target %s: where: one {\"column\": [values]}", name);
        return -1;
    }
    json_object_foreach(where, k, vals) {
        if (!gdpr_ident_ok(k) || !json_is_array(vals) || json_array_size(vals) == 0) {
            snprintf(err, errlen, "retention target %s: where: a column and a list of strings", name);
            return -1;
        }
        json_array_foreach(vals, i, v) {
            const char *s = json_string_value(v);
            if (s == NULL || s[0] == '\0' || strlen(s) > 64 || strspn(s, VALUE_CHARS) != strlen(s)) {
                snprintf(err, errlen, "retention target %s: where: values are strings of [A-Za-z0-9_.:-]",
                         name);
                return -1;
            }
        }
        x->filter_column = gdpr_quote_ident(k);
        x->filter_values = json_incref(vals);
    }
    return 0;
}

int gdpr_datamap_load(gdpr_datamap *e, const char *path, const char *our_dsn, char *err, size_t errlen)
{
    json_error_t je;
    json_t *m = json_load_file(path, 0, &je), *v;
    const char *k;
    size_t i, n;

    if (m == NULL) {
        snprintf(err, errlen, "%s:%d: %s", path, je.line, je.text);
        return -1;
    }
    if (json_integer_value(json_object_get(m, "version")) != 1
        || !json_is_object(json_object_get(m, "databases"))) {
        snprintf(err, errlen, "%s: needs \"version\": 1 and \"databases\"", path);
        goto fail;
    }
    json_object_foreach(json_object_get(m, "databases"), k, v) {
        if (e->ndbs == GDPR_MAP_DBS || !json_is_string(v)) {
            snprintf(err, errlen, "%s: databases: at most %d, DSN strings", path, GDPR_MAP_DBS);
            goto fail;
        }
        e->dbs[e->ndbs].name = strdup(k);
        e->dbs[e->ndbs].dsn = strdup(json_string_value(v)[0] ? json_string_value(v) : our_dsn);
        e->ndbs++;
    }
    n = json_array_size(json_object_get(m, "postgresql")) + json_array_size(json_object_get(m, "redis")) + 1;
    e->targets = calloc(n, sizeof(gdpr_target));
    json_array_foreach(json_object_get(m, "postgresql"), i, v) {
        /* counted before the check: a half-parsed target is freed too */
        if (parse_pg_target(e, v, &e->targets[e->ntargets++], err, errlen) != 0)
            goto fail;
    }
    json_array_foreach(json_object_get(m, "redis"), i, v) {
        const char *name = json_string_value(json_object_get(v, "name"));
        const char *key = json_string_value(json_object_get(v, "key"));
        const char *match = json_string_value(json_object_get(v, "match"));
        gdpr_target *x = &e->targets[e->ntargets];
        /* "match": every key with that prefix, the only wildcard a final "*" */
        if (key == NULL && match != NULL) {
            size_t len = strlen(match);
            if (len > 1 && match[len - 1] == '*' && strchr(match, '*') == match + len - 1)
                key = match;
            x->match = 1;
        }
        if (!gdpr_ident_ok(name) || key == NULL || strstr(key, "%u") == NULL
            || (!x->match && strchr(key, '*'))) {
            snprintf(err, errlen, "%s: redis target: name and a key with %%u (no wildcards),"
                     " or a match with %%u ending in the only \"*\"", path);
            goto fail;
        }
        x->kind = GDPR_T_REDIS;
        x->action = GDPR_A_DELETE;
        x->name = malloc(strlen(name) + 7);
        sprintf(x->name, "redis:%s", name);
        x->key = strdup(key);
        e->ntargets++;
    }
    if ((v = json_object_get(m, "kafka")) != NULL) {
        const char *topic = json_string_value(json_object_get(v, "topic"));
        const char *ev = json_string_value(json_object_get(v, "event"));
        if (topic == NULL || ev == NULL) {
            snprintf(err, errlen, "%s: kafka: topic and event", path);
            goto fail;
        }
        e->kafka_topic = strdup(topic);
        e->kafka_event = strdup(ev);
        e->targets[e->ntargets].kind = GDPR_T_KAFKA;
        e->targets[e->ntargets].name = strdup("kafka");
        e->ntargets++;
    }
    e->retention = calloc(json_array_size(json_object_get(m, "retention")) + 1,
                          sizeof(gdpr_retention_target));
    json_array_foreach(json_object_get(m, "retention"), i, v) {
        if (parse_retention_target(e, v, &e->retention[e->nretention++], err, errlen) != 0)
            goto fail;
    }
    json_decref(m);
    return 0;
fail:
    json_decref(m);
    gdpr_datamap_free(e);
    return -1;
}

const gdpr_retention_target *gdpr_datamap_retention_find(const gdpr_datamap *m, const char *name)
{
    for (size_t i = 0; i < m->nretention; i++)
        if (strcmp(m->retention[i].name, name) == 0)
            return &m->retention[i];
    return NULL;
}

void gdpr_datamap_free(gdpr_datamap *m)
{
    for (size_t i = 0; i < m->ndbs; i++) {
        if (m->dbs[i].pg)
            PQfinish(m->dbs[i].pg);
        free(m->dbs[i].name);
        free(m->dbs[i].dsn);
    }
    for (size_t i = 0; i < m->ntargets; i++) {
        gdpr_target *x = &m->targets[i];
        free(x->name);
        free(x->table);
        free(x->column);
        free(x->reason);
        free(x->key);
        json_decref(x->columns);
        json_decref(x->replace_in);
    }
    for (size_t i = 0; i < m->nretention; i++) {
        gdpr_retention_target *r = &m->retention[i];
        free(r->name);
        free(r->table);
        free(r->time_column);
        free(r->filter_column);
        json_decref(r->filter_values);
    }
    free(m->targets);
    free(m->retention);
    free(m->kafka_topic);
    free(m->kafka_event);
    memset(m, 0, sizeof(*m));
}

