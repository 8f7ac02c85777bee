#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "social_msg.h"

int sent_symbol_valid(const char *s)
{
    size_t n = 0;
    for (; s[n]; n++)
        if (!isalnum((unsigned char)s[n]) && s[n] != '.' && s[n] != '_' && s[n] != '-')
            return 0;
    return n > 0 && n < SENT_SYMBOL_MAX;
}

int64_t sent_parse_time(const char *s)
{
    struct tm tm = { 0 };
    int ms = 0, used = 0;
    if (s == NULL || sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon,
                            &tm.tm_mday, &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &used) != 6)
        return -1;
    const char *p = s + used;
    if (*p == '.') {
        int digits = 0;
        for (p++; isdigit((unsigned char)*p); p++, digits++)
            if (digits < 3)
                ms = ms * 10 + (*p - '0');
        for (; digits < 3 && digits > 0; digits++)
            ms *= 10;
    }
    long off = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int hh, mm;
        if (sscanf(p + 1, "%2d:%2d", &hh, &mm) != 2)
            return -1;
        off = (hh * 60L + mm) * 60 * (*p == '-' ? -1 : 1);
        p += 6;
    } else {
        return -1;
    }
    if (*p || tm.tm_mon < 1 || tm.tm_mon > 12 || tm.tm_mday < 1 || tm.tm_mday > 31
        || tm.tm_hour > 23 || tm.tm_min > 59 || tm.tm_sec > 60)
        return -1;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    time_t t = timegm(&tm);
    return ((int64_t)t - off) * 1000 + ms;
}

void sent_post_clear(sent_post *p)
{
    json_decref(p->root);
    memset(p, 0, sizeof(*p));
}

static int add_symbol(sent_post *p, json_t *v)
{
    const char *s = json_string_value(v);
    if (s == NULL || !sent_symbol_valid(s))
        return -1;
    for (size_t i = 0; i < p->nsymbols; i++)
        if (strcmp(p->symbols[i], s) == 0)
            return 0;
    if (p->nsymbols == SENT_POST_SYMBOLS)
        return -1;
    snprintf(p->symbols[p->nsymbols++], SENT_SYMBOL_MAX, "%s", s);
    return 0;
}

/* At most 40 bytes of s for a reason, not cutting a UTF-8 sequence. */
static const char *clip(const char *s, char buf[44])
{
    size_t n = strlen(s);
    if (n > 40) {
        n = 40;
        while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
            n--;
    }
    memcpy(buf, s, n);
    strcpy(buf + n, n < strlen(s) ? "..." : "");
    return buf;
}

#define FAIL(...) do { snprintf(reason, reasonlen, __VA_ARGS__); sent_post_clear(p); return -1; } while (0)

int sent_post_parse(const char *payload, size_t len, sent_post *p, char *reason,
                    size_t reasonlen)
{
    json_error_t je;
    char cb[44];
    memset(p, 0, sizeof(*p));
    if (payload == NULL || len == 0)
        FAIL("empty message");
    if ((p->root = json_loadb(payload, len, JSON_REJECT_DUPLICATES, &je)) == NULL)
        FAIL("not JSON: %s (line %d, column %d)", je.text, je.line, je.column);
    const char *type = json_string_value(json_object_get(p->root, "event_type"));
    json_t *data = json_object_get(p->root, "data");
    if (!json_is_object(p->root) || type == NULL || !json_is_object(data))
        FAIL("not an envelope: expected an object with event_type and data");
    if (strcmp(type, "social_post") != 0)
        FAIL("event_type \"%s\", expected \"social_post\"", clip(type, cb));
    p->event_ms = sent_parse_time(json_string_value(json_object_get(p->root, "timestamp")));
    if (p->event_ms < 0)
        p->event_ms = 0;
    p->source = json_string_value(json_object_get(data, "source"));
    p->source_id = json_string_value(json_object_get(data, "source_id"));
    json_t *text = json_object_get(data, "text");
    if (p->source == NULL || !*p->source || p->source_id == NULL || !*p->source_id)
        FAIL("data.source and data.source_id must be non-empty strings (the post id)");
    if (!json_is_string(text))
        FAIL("data.text must be a string");
    p->text = json_string_value(text);
    p->text_len = json_string_length(text);
    if (p->text_len > SENT_TEXT_MAX)
        FAIL("data.text is %zu bytes, more than %d", p->text_len, SENT_TEXT_MAX);
    json_t *sym = json_object_get(data, "symbol"), *syms = json_object_get(data, "symbols"), *v;
    size_t i;
    if (sym != NULL && add_symbol(p, sym) != 0)
        FAIL("data.symbol is not a valid symbol ([A-Za-z0-9._-]{1,15})");
    if (syms != NULL && !json_is_array(syms))
        FAIL("data.symbols must be an array");
    json_array_foreach(syms, i, v)
        if (add_symbol(p, v) != 0)
            FAIL("data.symbols[%zu] is not a valid symbol, or more than %d symbols", i,
                 SENT_POST_SYMBOLS);
    if (p->nsymbols == 0)
        FAIL("no symbol: data.symbol or data.symbols is required");
    json_t *created = json_object_get(data, "created_at");
    if (json_is_string(created)) {
        if ((p->created_ms = sent_parse_time(json_string_value(created))) < 0)
            FAIL("data.created_at is not RFC 3339: \"%s\"", clip(json_string_value(created), cb));
    } else if (created != NULL && !json_is_null(created)) {
        FAIL("data.created_at must be an RFC 3339 string");
    }
    return 0;
}
