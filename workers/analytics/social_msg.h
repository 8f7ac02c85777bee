/* A social_posts message as the collector produces it (workers/collector/
 * social.c): the envelope of workers/lib/envelope.h with event_type
 * "social_post" and data
 *
 *   {"source":"reddit","source_id":"t3_abc","symbol":"AAPL","author":..,
 *    "text":"..","url":..,"created_at":"2026-11-26T10:30:45.000Z"}
 *
 * "symbols": [..] is accepted too (a post about several symbols).  Anything
 * else is a poison message: parsing fails with the reason. */
#ifndef ANALYTICS_SOCIAL_MSG_H
#define ANALYTICS_SOCIAL_MSG_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "windows.h"

#define SENT_POST_SYMBOLS 16
#define SENT_TEXT_MAX (64 * 1024)

typedef struct {
    json_t *root;                   /* owns the strings below */
    const char *source, *source_id, *text;
    size_t text_len;
    char symbols[SENT_POST_SYMBOLS][SENT_SYMBOL_MAX];
    size_t nsymbols;
    int64_t created_ms;             /* 0 = not given */
    int64_t event_ms;               /* envelope timestamp, 0 = unreadable */
} sent_post;

/* 0, or -1 with the reason (for the dead-letter queue) in reason. */
int sent_post_parse(const char *payload, size_t len, sent_post *p, char *reason,
                    size_t reasonlen);
void sent_post_clear(sent_post *p);

/* RFC 3339 ("2026-11-26T10:30:45.123Z", "+02:00" offsets) to epoch ms;
 * -1 when unreadable. */
int64_t sent_parse_time(const char *s);

/* [A-Za-z0-9._-]{1,15}: a symbol that is also a valid channel suffix. */
int sent_symbol_valid(const char *s);

#endif
