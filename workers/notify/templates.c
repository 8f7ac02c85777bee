#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "render.h"
#include "templates.h"

const char *const notify_languages[] = {
    "en", "ko", "ja", "zh-Hans", "zh-Hant", "es", "fr", "de", "pt-BR", "it", "ru", "ar", "hi",
};
const size_t notify_nlanguages = sizeof(notify_languages) / sizeof(notify_languages[0]);

int notify_language_known(const char *lang)
{
    for (size_t i = 0; lang != NULL && i < notify_nlanguages; i++)
        if (strcmp(lang, notify_languages[i]) == 0)
            return 1;
    return 0;
}

static int id_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > 64)
        return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_'))
            return 0;
    return 1;
}

int notify_template_check(const json_t *tpl, char *err, size_t errlen)
{
    const char *id = json_string_value(json_object_get(tpl, "id"));
    const char *prio = json_string_value(json_object_get(tpl, "priority"));
    json_t *tr = json_object_get(tpl, "translations"), *t;
    const char *lang, *key;
    json_t *v;

    if (!json_is_object(tpl)) {
        snprintf(err, errlen, "a template must be a JSON object");
        return -1;
    }
    if (!id_ok(id)) {
        snprintf(err, errlen, "template id: must be 1..64 characters a-z 0-9 _");
        return -1;
    }
    json_object_foreach((json_t *)tpl, key, v) {
        if (strcmp(key, "id") && strcmp(key, "priority") && strcmp(key, "description")
            && strcmp(key, "sample") && strcmp(key, "translations")) {
            snprintf(err, errlen, "template %s: unknown field \"%s\"", id, key);
            return -1;
        }
    }
    if (prio == NULL || notify_priority_parse(prio) < 0) {
        snprintf(err, errlen, "template %s: priority must be CRITICAL, HIGH, MEDIUM or LOW", id);
        return -1;
    }
    v = json_object_get(tpl, "description");
    if (v != NULL && !json_is_string(v)) {
        snprintf(err, errlen, "template %s: description must be a string", id);
        return -1;
    }
    v = json_object_get(tpl, "sample");
    if (v != NULL && !json_is_object(v)) {
        snprintf(err, errlen, "template %s: sample must be an object", id);
        return -1;
    }
    if (!json_is_object(tr) || json_object_get(tr, "en") == NULL) {
        snprintf(err, errlen, "template %s: translations must be an object with at least \"en\"",
                 id);
        return -1;
    }
    json_object_foreach(tr, lang, t) {
        if (!notify_language_known(lang)) {
            snprintf(err, errlen, "template %s, language %s: not one of the supported languages",
                     id, lang);
            return -1;
        }
        static const char *const parts[] = { "title", "body" };
        if (!json_is_object(t) || json_object_size(t) != 2) {
            snprintf(err, errlen, "template %s, language %s: must be {\"title\":..,\"body\":..}",
                     id, lang);
            return -1;
        }
        for (int i = 0; i < 2; i++) {
            const char *pat = json_string_value(json_object_get(t, parts[i]));
            char why[200];
            if (pat == NULL || pat[0] == '\0' || strlen(pat) > 4000) {
                snprintf(err, errlen, "template %s, language %s, %s: a string of 1..4000 bytes",
                         id, lang, parts[i]);
                return -1;
            }
            if (notify_msg_check(lang, pat, why, sizeof(why)) != 0) {
                snprintf(err, errlen, "template %s, language %s, %s: %s", id, lang, parts[i], why);
                return -1;
            }
        }
    }
    return 0;
}

static int json_file(const struct dirent *d)
{
    size_t n = strlen(d->d_name);
    return d->d_name[0] != '.' && n > 5 && strcmp(d->d_name + n - 5, ".json") == 0;
}

int notify_templates_load_dir(const char *dir, json_t **set, char *err, size_t errlen)
{
    struct dirent **names;
    int n = scandir(dir, &names, json_file, alphasort), count = 0;
    if (n < 0) {
        snprintf(err, errlen, "%s: cannot read the directory", dir);
        return -1;
    }
    json_t *all = json_object();
    for (int i = 0; i < n; i++) {
        char path[4096], why[512];
        json_error_t je;
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]->d_name);
        json_t *t = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
        if (t == NULL)
            snprintf(err, errlen, "%s:%d: %s", path, je.line, je.text);
        else if (notify_template_check(t, why, sizeof(why)) != 0)
            snprintf(err, errlen, "%s: %s", path, why);
        else if (json_object_get(all, json_string_value(json_object_get(t, "id"))) != NULL)
            snprintf(err, errlen, "%s: template %s defined twice", path,
                     json_string_value(json_object_get(t, "id")));
        else {
            json_object_set_new(all, json_string_value(json_object_get(t, "id")), t);
            count++;
            continue;
        }
        json_decref(t);
        count = -1;
        break;
    }
    for (int i = 0; i < n; i++)
        free(names[i]);
    free(names);
    if (count < 0) {
        json_decref(all);
        return -1;
    }
    *set = all;
    return count;
}

void notify_rendered_free(notify_rendered *r)
{
    free(r->title);
    free(r->body);
    r->title = r->body = NULL;
}

int notify_render(const json_t *set, const char *id, const char *const *langs, size_t nlangs,
                  const char *tz, const json_t *args, notify_rendered *out,
                  char *err, size_t errlen)
{
    json_t *tr = json_object_get(json_object_get(set, id), "translations"), *t = NULL;
    const char *lang = "en";
    memset(out, 0, sizeof(*out));
    if (tr == NULL) {
        snprintf(err, errlen, "no template %s", id);
        return -1;
    }
    for (size_t i = 0; i < nlangs && t == NULL; i++)
        if ((t = json_object_get(tr, langs[i])) != NULL)
            lang = langs[i];
    if (t == NULL)
        t = json_object_get(tr, "en");
    char why[256];
    out->title = notify_msg_format(lang, tz, json_string_value(json_object_get(t, "title")), args,
                                   why, sizeof(why));
    if (out->title != NULL)
        out->body = notify_msg_format(lang, tz, json_string_value(json_object_get(t, "body")),
                                      args, why, sizeof(why));
    if (out->body == NULL) {
        snprintf(err, errlen, "template %s, language %s: %s", id, lang, why);
        notify_rendered_free(out);
        return -1;
    }
    snprintf(out->lang, sizeof(out->lang), "%s", lang);
    out->rtl = notify_lang_rtl(lang);
    return 0;
}
