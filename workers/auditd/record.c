/* The fields of a journal record that PostgreSQL will cast: checked here
 * so that one odd line can never wedge a batch. */
#include <stdio.h>
#include <string.h>

#include "auditd.h"

static int is_uuid_n(const char *s, size_t n)
{
    if (s == NULL || n != 36)
        return 0;
    for (int i = 0; i < 36; i++) {
        char c = s[i];
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (c != '-')
                return 0;
        } else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')))
            return 0;
    }
    return 1;
}

static int is_uuid(const char *s)
{
    return s != NULL && is_uuid_n(s, strlen(s));
}

/* 2026-11-26T10:30:45.123Z */
static int is_ts_n(const char *s, size_t n)
{
    static const char pat[] = "dddd-dd-ddTdd:dd:dd.dddZ";
    if (s == NULL || n != sizeof(pat) - 1)
        return 0;
    for (size_t i = 0; i < sizeof(pat) - 1; i++)
        if (pat[i] == 'd' ? !(s[i] >= '0' && s[i] <= '9') : s[i] != pat[i])
            return 0;
    return s[5] <= '1' && s[8] <= '3' && s[11] <= '2';
}

static int is_ts(const char *s)
{
    return s != NULL && is_ts_n(s, strlen(s));
}

json_t *auditd_record_parse(const char *line, size_t len, char *err, size_t errlen)
{
    json_error_t je;
    json_t *r = json_loadb(line, len, 0, &je);
    const char *bad = NULL;

    if (r == NULL || !json_is_object(r)) {
        snprintf(err, errlen, "not JSON: %s", r ? "not an object" : je.text);
        json_decref(r);
        return NULL;
    }
    if (!is_uuid(json_string_value(json_object_get(r, "id"))))
        bad = "id";
    else if (!is_ts(json_string_value(json_object_get(r, "ts"))))
        bad = "ts";
    else if (!json_is_integer(json_object_get(r, "status"))
             || json_integer_value(json_object_get(r, "status")) < 0
             || json_integer_value(json_object_get(r, "status")) > 999)
        bad = "status";
    else if (!json_is_boolean(json_object_get(r, "result")))
        bad = "result";
    else if (!json_is_string(json_object_get(r, "access_type")))
        bad = "access_type";
    else if (!json_is_string(json_object_get(r, "worker")))
        bad = "worker";
    /* the format: 1 (no "v") or 2 ("v":2, with "reason") */
    else if (json_object_get(r, "v") != NULL
             && json_integer_value(json_object_get(r, "v")) != AUDITD_RECORD_FORMAT)
        bad = "v";
    else if (json_object_get(r, "v") != NULL
             && !json_is_string(json_object_get(r, "reason"))
             && !json_is_null(json_object_get(r, "reason")))
        bad = "reason";
    /* since migration 021; records written before it have none */
    else if (json_object_get(r, "data_subject") != NULL
             && !json_is_string(json_object_get(r, "data_subject"))
             && !json_is_null(json_object_get(r, "data_subject")))
        bad = "data_subject";
    if (bad) {
        snprintf(err, errlen, "field \"%s\" missing or invalid", bad);
        json_decref(r);
        return NULL;
    }
    return r;
}

/* the checks of auditd_record_parse on a plain line's members */
int auditd_record_check_fields(const insite_gdpr_fields_t *f)
{
    const insite_gdpr_member_t *id = insite_gdpr_fields_get(f, "id"),
        *ts = insite_gdpr_fields_get(f, "ts"), *st = insite_gdpr_fields_get(f, "status"),
        *res = insite_gdpr_fields_get(f, "result"), *at = insite_gdpr_fields_get(f, "access_type"),
        *w = insite_gdpr_fields_get(f, "worker"), *ds = insite_gdpr_fields_get(f, "data_subject"),
        *v = insite_gdpr_fields_get(f, "v"), *why = insite_gdpr_fields_get(f, "reason");
    long long status = 0;

    if (id == NULL || id->type != INSITE_GDPR_STRING || !is_uuid_n(id->value, id->value_len)
        || ts == NULL || ts->type != INSITE_GDPR_STRING || !is_ts_n(ts->value, ts->value_len)
        || st == NULL || st->type != INSITE_GDPR_INTEGER || st->value[0] == '-' || st->value_len > 3
        || res == NULL || (res->type != INSITE_GDPR_TRUE && res->type != INSITE_GDPR_FALSE)
        || at == NULL || at->type != INSITE_GDPR_STRING
        || w == NULL || w->type != INSITE_GDPR_STRING
        || (ds != NULL && ds->type != INSITE_GDPR_STRING && ds->type != INSITE_GDPR_NULL))
        return -1;
    /* the format, as auditd_record_parse checks it: 1 (no "v") or 2 ("v":2,
     * with "reason" a string or null) */
    if (v != NULL
        && (v->type != INSITE_GDPR_INTEGER || v->value_len != 1
            || v->value[0] != '0' + AUDITD_RECORD_FORMAT
            || why == NULL || (why->type != INSITE_GDPR_STRING && why->type != INSITE_GDPR_NULL)))
        return -1;
    for (size_t i = 0; i < st->value_len; i++)
        status = status * 10 + (st->value[i] - '0');
    return status <= 999 ? 0 : -1;
}
