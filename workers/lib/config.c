#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <libconfig.h>

#include "config.h"
#include "log.h"

struct insite_config_schema {
    const insite_config_key **keys;
    size_t n, cap;
};

typedef struct {
    char *s;             /* STRING */
    long long i;         /* INT, DURATION (ms) */
    bool b;              /* BOOL */
    double d;            /* DOUBLE */
    char **list;         /* STRING_LIST, NULL-terminated */
    size_t nlist;
} value;

struct insite_config {
    const insite_config_schema *schema;
    char *path;
    value *v;            /* parallel to schema->keys */
};

static const char *type_names[] = {
    "string", "int", "bool", "double", "duration", "string list"
};

/* ---- schema ---------------------------------------------------------- */

insite_config_schema *insite_config_schema_new(void)
{
    return calloc(1, sizeof(insite_config_schema));
}

void insite_config_schema_free(insite_config_schema *s)
{
    if (s == NULL)
        return;
    free(s->keys);
    free(s);
}

static long find_key(const insite_config_schema *s, const char *name)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->keys[i]->name, name) == 0)
            return (long)i;
    return -1;
}

int insite_config_schema_add(insite_config_schema *s,
                             const insite_config_key *keys, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (find_key(s, keys[i].name) >= 0) {
            insite_log_error("config: key %s declared twice", keys[i].name);
            return -1;
        }
        if (s->n == s->cap) {
            size_t cap = s->cap ? s->cap * 2 : 32;
            const insite_config_key **k = realloc(s->keys, cap * sizeof(*k));
            if (k == NULL) {
                insite_log_error("config: out of memory");
                return -1;
            }
            s->keys = k;
            s->cap = cap;
        }
        s->keys[s->n++] = &keys[i];
    }
    return 0;
}

static void env_name(const char *key, char *out, size_t size)
{
    size_t j = (size_t)snprintf(out, size, "INSITE_");
    for (const char *p = key; *p && j + 1 < size; p++)
        out[j++] = *p == '.' || *p == '-' ? '_' : (char)toupper((unsigned char)*p);
    out[j] = '\0';
}

void insite_config_schema_print(const insite_config_schema *s, FILE *out)
{
    char env[128];
    for (size_t i = 0; i < s->n; i++) {
        const insite_config_key *k = s->keys[i];
        env_name(k->name, env, sizeof(env));
        fprintf(out, "  %-28s %-11s default \"%s\" (env %s)\n      %s\n",
                k->name, type_names[k->type], k->def ? k->def : "", env,
                k->help ? k->help : "");
    }
}

/* ---- value parsing --------------------------------------------------- */

static void value_clear(value *v)
{
    free(v->s);
    for (size_t i = 0; i < v->nlist; i++)
        free(v->list[i]);
    free(v->list);
    memset(v, 0, sizeof(*v));
}

static int parse_int(const char *text, long long *out)
{
    char *end;
    errno = 0;
    long long x = strtoll(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0')
        return -1;
    *out = x;
    return 0;
}

/* "250ms", "5s", "2m", "1h", "7d", or "0". */
static int parse_duration(const char *text, long long *ms)
{
    char *end;
    long long mult;

    if (strcmp(text, "0") == 0) {
        *ms = 0;
        return 0;
    }
    errno = 0;
    long long x = strtoll(text, &end, 10);
    if (errno != 0 || end == text || x < 0)
        return -1;
    if (strcmp(end, "ms") == 0)      mult = 1;
    else if (strcmp(end, "s") == 0)  mult = 1000;
    else if (strcmp(end, "m") == 0)  mult = 60 * 1000;
    else if (strcmp(end, "h") == 0)  mult = 3600 * 1000;
    else if (strcmp(end, "d") == 0)  mult = 86400 * 1000LL;
    else return -1;
    if (x > INT64_MAX / mult)
        return -1;
    *ms = x * mult;
    return 0;
}

static void format_duration(long long ms, char *out, size_t size)
{
    if (ms != 0 && ms % 86400000 == 0)   snprintf(out, size, "%lldd", ms / 86400000);
    else if (ms != 0 && ms % 3600000 == 0) snprintf(out, size, "%lldh", ms / 3600000);
    else if (ms != 0 && ms % 60000 == 0) snprintf(out, size, "%lldm", ms / 60000);
    else if (ms != 0 && ms % 1000 == 0)  snprintf(out, size, "%llds", ms / 1000);
    else                                 snprintf(out, size, "%lldms", ms);
}

static int list_push(value *v, const char *item)
{
    char **l = realloc(v->list, (v->nlist + 2) * sizeof(char *));
    if (l == NULL)
        return -1;
    v->list = l;
    if ((l[v->nlist] = strdup(item)) == NULL)
        return -1;
    l[++v->nlist] = NULL;
    return 0;
}

static int empty_list(value *v)
{
    if (v->list == NULL && (v->list = calloc(1, sizeof(char *))) == NULL)
        return -1;
    return 0;
}

static const char *range_reason(const insite_config_key *k, double x,
                                char *buf, size_t size)
{
    char lo[32], hi[32];

    if (k->min == 0 && k->max == 0)
        return NULL;
    if (x >= k->min && x <= k->max)
        return NULL;
    if (k->type == INSITE_CFG_DURATION) {
        format_duration((long long)k->min, lo, sizeof(lo));
        format_duration((long long)k->max, hi, sizeof(hi));
    } else if (k->type == INSITE_CFG_INT) {
        snprintf(lo, sizeof(lo), "%lld", (long long)k->min);
        snprintf(hi, sizeof(hi), "%lld", (long long)k->max);
    } else {
        snprintf(lo, sizeof(lo), "%g", k->min);
        snprintf(hi, sizeof(hi), "%g", k->max);
    }
    if (k->max >= 1e18)
        snprintf(buf, size, "must be >= %s", lo);
    else
        snprintf(buf, size, "must be %s..%s", lo, hi);
    return buf;
}

/* Parses text (a default or an environment value).  Returns NULL on success
 * or the reason; buf holds reasons that need formatting. */
static const char *parse_text(const insite_config_key *k, const char *text,
                              value *v, char *buf, size_t size)
{
    switch (k->type) {
    case INSITE_CFG_STRING:
        if ((v->s = strdup(text)) == NULL)
            return "out of memory";
        return NULL;
    case INSITE_CFG_INT:
        if (parse_int(text, &v->i) != 0)
            return "must be an integer";
        return range_reason(k, (double)v->i, buf, size);
    case INSITE_CFG_BOOL:
        if (!strcmp(text, "true") || !strcmp(text, "1") || !strcmp(text, "yes") || !strcmp(text, "on"))
            v->b = true;
        else if (!strcmp(text, "false") || !strcmp(text, "0") || !strcmp(text, "no") || !strcmp(text, "off"))
            v->b = false;
        else
            return "must be true or false";
        return NULL;
    case INSITE_CFG_DOUBLE: {
        char *end;
        errno = 0;
        v->d = strtod(text, &end);
        if (errno != 0 || end == text || *end != '\0')
            return "must be a number";
        return range_reason(k, v->d, buf, size);
    }
    case INSITE_CFG_DURATION:
        if (parse_duration(text, &v->i) != 0)
            return "must be a duration such as \"500ms\", \"5s\", \"2m\", \"1h\"";
        return range_reason(k, (double)v->i, buf, size);
    case INSITE_CFG_STRING_LIST: {
        if (empty_list(v) != 0)
            return "out of memory";
        if (*text == '\0')
            return NULL;
        char *copy = strdup(text), *save = NULL;
        if (copy == NULL)
            return "out of memory";
        for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
            while (isspace((unsigned char)*t))
                t++;
            size_t n = strlen(t);
            while (n > 0 && isspace((unsigned char)t[n - 1]))
                t[--n] = '\0';
            if (list_push(v, t) != 0) {
                free(copy);
                return "out of memory";
            }
        }
        free(copy);
        return NULL;
    }
    }
    return "unknown type";
}

static const char *parse_setting(const insite_config_key *k,
                                 const config_setting_t *st, value *v,
                                 char *buf, size_t size)
{
    int t = config_setting_type(st);

    switch (k->type) {
    case INSITE_CFG_STRING:
        if (t != CONFIG_TYPE_STRING)
            return "must be a string";
        return parse_text(k, config_setting_get_string(st), v, buf, size);
    case INSITE_CFG_INT:
        if (t != CONFIG_TYPE_INT && t != CONFIG_TYPE_INT64)
            return "must be an integer";
        v->i = config_setting_get_int64(st);
        return range_reason(k, (double)v->i, buf, size);
    case INSITE_CFG_BOOL:
        if (t != CONFIG_TYPE_BOOL)
            return "must be true or false";
        v->b = config_setting_get_bool(st) != 0;
        return NULL;
    case INSITE_CFG_DOUBLE:
        if (t == CONFIG_TYPE_FLOAT)
            v->d = config_setting_get_float(st);
        else if (t == CONFIG_TYPE_INT || t == CONFIG_TYPE_INT64)
            v->d = (double)config_setting_get_int64(st);
        else
            return "must be a number";
        return range_reason(k, v->d, buf, size);
    case INSITE_CFG_DURATION:
        if ((t == CONFIG_TYPE_INT || t == CONFIG_TYPE_INT64)
            && config_setting_get_int64(st) == 0) {
            v->i = 0;
            return range_reason(k, 0, buf, size);
        }
        if (t != CONFIG_TYPE_STRING)
            return "must be a duration such as \"500ms\", \"5s\", \"2m\", \"1h\"";
        return parse_text(k, config_setting_get_string(st), v, buf, size);
    case INSITE_CFG_STRING_LIST:
        if (t != CONFIG_TYPE_ARRAY && t != CONFIG_TYPE_LIST)
            return "must be a list of strings";
        if (empty_list(v) != 0)
            return "out of memory";
        for (int i = 0; i < config_setting_length(st); i++) {
            const config_setting_t *e = config_setting_get_elem(st, (unsigned)i);
            if (config_setting_type(e) != CONFIG_TYPE_STRING)
                return "must be a list of strings";
            if (list_push(v, config_setting_get_string(e)) != 0)
                return "out of memory";
        }
        return NULL;
    }
    return "unknown type";
}

/* ---- loading --------------------------------------------------------- */

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    if (err == NULL || errlen == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static bool is_group_prefix(const insite_config_schema *s, const char *name)
{
    size_t n = strlen(name);
    for (size_t i = 0; i < s->n; i++)
        if (strncmp(s->keys[i]->name, name, n) == 0 && s->keys[i]->name[n] == '.')
            return true;
    return false;
}

/* Rejects settings nobody declared: a typo must not silently fall back to
 * the default. */
static int check_unknown(const insite_config_schema *s, const config_setting_t *group,
                         const char *prefix, const char *path,
                         char *err, size_t errlen)
{
    for (int i = 0; i < config_setting_length(group); i++) {
        const config_setting_t *st = config_setting_get_elem(group, (unsigned)i);
        char name[256];
        snprintf(name, sizeof(name), "%s%s%s", prefix, *prefix ? "." : "",
                 config_setting_name(st));
        if (find_key(s, name) >= 0)
            continue;
        if (config_setting_is_group(st) && is_group_prefix(s, name)) {
            if (check_unknown(s, st, name, path, err, errlen) != 0)
                return -1;
            continue;
        }
        const char *file = config_setting_source_file(st);
        set_err(err, errlen, "%s:%u: unknown key \"%s\"", file ? file : path,
                config_setting_source_line(st), name);
        return -1;
    }
    return 0;
}

static int read_file(config_t *cf, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        set_err(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    int ok = config_read(cf, f);
    fclose(f);
    if (ok != CONFIG_TRUE) {
        const char *file = config_error_file(cf);
        set_err(err, errlen, "%s:%d: %s", file ? file : path,
                config_error_line(cf), config_error_text(cf));
        return -1;
    }
    return 0;
}

static int load_values(insite_config *c, config_t *cf, const char *path,
                       char *err, size_t errlen)
{
    const insite_config_schema *s = c->schema;
    char buf[160];

    for (size_t i = 0; i < s->n; i++) {
        const insite_config_key *k = s->keys[i];
        const config_setting_t *st = cf ? config_lookup(cf, k->name) : NULL;
        const char *why;

        if (st != NULL) {
            why = parse_setting(k, st, &c->v[i], buf, sizeof(buf));
            if (why != NULL) {
                const char *file = config_setting_source_file(st);
                set_err(err, errlen, "%s:%u: %s: %s", file ? file : path,
                        config_setting_source_line(st), k->name, why);
                return -1;
            }
        } else {
            why = parse_text(k, k->def ? k->def : "", &c->v[i], buf, sizeof(buf));
            if (why != NULL) {
                set_err(err, errlen, "default of %s: %s", k->name, why);
                return -1;
            }
        }

        char var[160];
        env_name(k->name, var, sizeof(var));
        const char *env = getenv(var);
        if (env == NULL)
            continue;
        value_clear(&c->v[i]);
        why = parse_text(k, env, &c->v[i], buf, sizeof(buf));
        if (why != NULL) {
            set_err(err, errlen, "%s: %s: %s (got \"%s\")", var, k->name, why, env);
            return -1;
        }
    }
    return 0;
}

insite_config *insite_config_load(const insite_config_schema *s,
                                  const char *path, char *err, size_t errlen)
{
    insite_config *c = calloc(1, sizeof(*c));
    config_t cf;
    int rc = -1;

    if (c == NULL || (c->v = calloc(s->n ? s->n : 1, sizeof(value))) == NULL
        || (path != NULL && (c->path = strdup(path)) == NULL)) {
        set_err(err, errlen, "config: out of memory");
        insite_config_free(c);
        return NULL;
    }
    c->schema = s;

    config_init(&cf);
    if (path != NULL) {
        if (read_file(&cf, path, err, errlen) != 0
            || check_unknown(s, config_root_setting(&cf), "", path, err, errlen) != 0)
            goto out;
    }
    rc = load_values(c, path ? &cf : NULL, path, err, errlen);
out:
    config_destroy(&cf);
    if (rc != 0) {
        insite_config_free(c);
        return NULL;
    }
    return c;
}

void insite_config_free(insite_config *c)
{
    if (c == NULL)
        return;
    if (c->v != NULL)
        for (size_t i = 0; i < c->schema->n; i++)
            value_clear(&c->v[i]);
    free(c->v);
    free(c->path);
    free(c);
}

int insite_config_reload(insite_config **cur)
{
    char err[512];
    insite_config *next = insite_config_load((*cur)->schema, (*cur)->path,
                                             err, sizeof(err));
    if (next == NULL) {
        insite_log_error("config reload failed, keeping the running config: %s", err);
        return -1;
    }
    insite_config_free(*cur);
    *cur = next;
    insite_log_info("config reloaded from %s", next->path ? next->path : "(environment)");
    return 0;
}

int insite_config_check(const insite_config_schema *s, const char *path, FILE *out)
{
    char err[512];
    insite_config *c = insite_config_load(s, path, err, sizeof(err));
    if (c == NULL) {
        fprintf(out, "%s\n", err);
        return 1;
    }
    fprintf(out, "%s: ok\n", path ? path : "(defaults and environment)");
    insite_config_free(c);
    return 0;
}

/* ---- getters --------------------------------------------------------- */

static const value *get(const insite_config *c, const char *name,
                        insite_config_type type)
{
    long i = find_key(c->schema, name);
    if (i < 0 || c->schema->keys[i]->type != type) {
        insite_log_error("config: %s is not a declared %s key", name, type_names[type]);
        abort();
    }
    return &c->v[i];
}

const char *insite_config_string(const insite_config *c, const char *name)
{
    return get(c, name, INSITE_CFG_STRING)->s;
}

long long insite_config_int(const insite_config *c, const char *name)
{
    return get(c, name, INSITE_CFG_INT)->i;
}

bool insite_config_bool(const insite_config *c, const char *name)
{
    return get(c, name, INSITE_CFG_BOOL)->b;
}

double insite_config_double(const insite_config *c, const char *name)
{
    return get(c, name, INSITE_CFG_DOUBLE)->d;
}

long long insite_config_duration_ms(const insite_config *c, const char *name)
{
    return get(c, name, INSITE_CFG_DURATION)->i;
}

size_t insite_config_list(const insite_config *c, const char *name,
                          char *const **items)
{
    const value *v = get(c, name, INSITE_CFG_STRING_LIST);
    *items = v->list;
    return v->nlist;
}

const char *insite_config_path(const insite_config *c)
{
    return c->path;
}
