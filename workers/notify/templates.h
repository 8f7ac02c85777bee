/* Notification templates: the shipped files (the .json files of workers/notify/templates),
 * their validation, and rendering with language fallback.
 *
 * A template is a JSON object:
 *   {"id":"price_alert","priority":"HIGH","description":"...",
 *    "sample":{...arguments for previews and tests...},
 *    "translations":{"en":{"title":"ICU MessageFormat","body":"..."}, ...}}
 *
 * The set is a JSON object id -> template, owned by the caller; callers
 * that share it across threads hold their own lock. */
#ifndef NOTIFY_TEMPLATES_H
#define NOTIFY_TEMPLATES_H

#include <stddef.h>

#include <jansson.h>

/* The 13 languages every shipped template is written in. */
extern const char *const notify_languages[];
extern const size_t notify_nlanguages;
int notify_language_known(const char *lang);

/* Checks one template: id [a-z0-9_]{1,64}, priority, every translation's
 * language known and its title and body valid MessageFormat.  0, or -1
 * with "template <id>, language <lang>, body: line 1, offset 17: ..." in
 * err. */
int notify_template_check(const json_t *tpl, char *err, size_t errlen);

/* Loads and checks every .json file of dir into *set (a new object).  A file
 * that does not parse or a template that fails the check refuses the whole
 * load, with the file and the reason in err.  Returns the count or -1. */
int notify_templates_load_dir(const char *dir, json_t **set, char *err, size_t errlen);

typedef struct {
    char *title, *body;          /* malloc'd UTF-8 */
    char lang[16];               /* the language used */
    int rtl;
} notify_rendered;

/* Renders template `id` for the first of langs[] it has, else English;
 * dates in time zone tz.  0, or -1 with the reason in err. */
int notify_render(const json_t *set, const char *id, const char *const *langs, size_t nlangs,
                  const char *tz, const json_t *args, notify_rendered *out,
                  char *err, size_t errlen);
void notify_rendered_free(notify_rendered *r);

#endif
