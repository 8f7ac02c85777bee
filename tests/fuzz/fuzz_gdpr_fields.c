/*
 * Differential fuzzing of insite_gdpr_fields_scan() against jansson: every
 * line the scanner takes must be a JSON object for jansson too, with the
 * same members, each of the same type and value (strings byte for byte,
 * integers as the same number); the scanner must stay inside the buffer
 * (ASan) whatever the input.
 */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "insite_gdpr_fields.h"


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int                          i;
    char                        *copy, num[32];
    json_t                      *root, *v;
    json_error_t                 err;
    insite_gdpr_fields_t         f;
    const insite_gdpr_member_t  *m;

    /* an exact-size copy: reading past it is an ASan report */
    copy = malloc(size ? size : 1);
    if (copy == NULL) {
        return 0;
    }
    memcpy(copy, data, size);

    if (insite_gdpr_fields_scan(copy, size, &f) != INSITE_GDPR_FIELDS_OK) {
        free(copy);
        return 0;
    }

    root = json_loadb(copy, size, 0, &err);
    if (root == NULL || !json_is_object(root)
        || json_object_size(root) != (size_t) f.n)
    {
        abort();
    }

    for (i = 0; i < f.n; i++) {
        m = &f.m[i];

        char key[256];
        if (m->key_len >= sizeof(key)) {
            continue;
        }
        memcpy(key, m->key, m->key_len);
        key[m->key_len] = '\0';

        v = json_object_get(root, key);
        if (v == NULL) {
            abort();
        }

        switch (m->type) {
        case INSITE_GDPR_STRING:
            if (!json_is_string(v) || json_string_length(v) != m->value_len
                || memcmp(json_string_value(v), m->value, m->value_len) != 0)
            {
                abort();
            }
            break;
        case INSITE_GDPR_INTEGER:
            if (!json_is_integer(v)) {
                abort();
            }
            snprintf(num, sizeof(num), "%lld", (long long) json_integer_value(v));
            if (strlen(num) != m->value_len
                || memcmp(num, m->value, m->value_len) != 0)
            {
                abort();
            }
            break;
        case INSITE_GDPR_TRUE:
            if (!json_is_true(v)) {
                abort();
            }
            break;
        case INSITE_GDPR_FALSE:
            if (!json_is_false(v)) {
                abort();
            }
            break;
        case INSITE_GDPR_NULL:
            if (!json_is_null(v)) {
                abort();
            }
            break;
        }

        if (insite_gdpr_fields_get(&f, key) != m) {
            abort();
        }
    }

    json_decref(root);
    free(copy);

    return 0;
}
