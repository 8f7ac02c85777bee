/*
 * The channel contract's parsers (ngx_insite_ws/insite_channel.c) on any
 * input: the publish body parser, the name rule, '*' patterns, keys and the
 * publish script's arguments.  Properties: nothing reads outside the input
 * (an exact-size copy, ASan), an accepted body has a valid, unreserved type
 * and data that is exactly one JSON value, and every accepted argument
 * vector names keys inside one hash tag.
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "insite_channel.h"


static void
check_body(const char *p, size_t n)
{
    char                       why[256];
    json_t                    *v;
    json_error_t               err;
    insite_channel_payload_t   pl;

    if (insite_channel_payload_parse(p, n, &pl, why, sizeof(why)) != 0) {
        return;
    }

    if (pl.type < p || pl.type + pl.type_len > p + n) {
        if (pl.type_len != 7 || memcmp(pl.type, "message", 7) != 0) {
            abort();
        }
    }

    if (pl.data < p || pl.data + pl.data_len > p + n) {
        abort();
    }

    if (!insite_channel_token_valid(pl.type, pl.type_len,
                                    INSITE_CHANNEL_TYPE_MAX)
        || insite_channel_type_reserved(pl.type, pl.type_len))
    {
        abort();
    }

    v = json_loadb(pl.data, pl.data_len,
                   JSON_DECODE_ANY | JSON_DECODE_INT_AS_REAL, &err);
    if (v == NULL) {
        abort();
    }
    json_decref(v);
}


static void
check_names(const char *p, size_t n)
{
    size_t                          half;
    char                            why[256];
    char                            key[INSITE_CHANNEL_KEY_MAX];
    insite_channel_publish_t        m;
    insite_channel_publish_args_t   a;

    /* first half a pattern / channel, second half a name / idempotency key */
    half = n / 2;

    if (insite_channel_glob_valid(p, half)
        && insite_channel_name_valid(p + half, n - half))
    {
        (void) insite_channel_glob_match(p, half, p + half, n - half);
    }

    if (insite_channel_glob_valid(p, n)
        && insite_channel_name_valid(p, n)
        && !insite_channel_glob_match(p, n, p, n))
    {
        abort();                    /* a name is a pattern matching itself */
    }

    if (insite_channel_key(key, sizeof(key), "insite:", 7,
                           INSITE_CHANNEL_KEY_IDEM, p, half, p + half,
                           n - half))
    {
        if (!insite_channel_name_valid(p, half)) {
            abort();
        }
    }

    memset(&m, 0, sizeof(m));
    m.channel = p;
    m.channel_len = half;
    m.type = "t";
    m.type_len = 1;
    m.data = "1";
    m.data_len = 1;
    m.idem = p + half;
    m.idem_len = n - half;
    m.ts = "ts";
    m.ts_len = 2;
    m.epoch = "e";
    m.epoch_len = 1;
    m.idem_ttl = 1;

    if (insite_channel_publish_args(&a, "insite:", 7, &m, why, sizeof(why))
        == 0)
    {
        /* every key carries the channel's hash tag: {<channel>} */
        for (int i = 0; i < a.nkeys; i++) {
            if (a.lens[i] < 7 + half + 2 || a.argv[i][7] != '{'
                || memcmp(a.argv[i] + 8, p, half) != 0
                || a.argv[i][8 + half] != '}')
            {
                abort();
            }
        }
    }
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char  *copy;

    /* an exact-size copy: reading past it is an ASan report */
    copy = malloc(size ? size : 1);
    if (copy == NULL) {
        return 0;
    }
    memcpy(copy, data, size);

    check_body(copy, size);
    check_names(copy, size);

    free(copy);
    return 0;
}
