/*
 * The channel contract (see insite_channel.h).  Plain C: jansson validates
 * JSON, insite_json_span finds "data" verbatim.
 */

#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "insite_channel.h"
#include "insite_json_span.h"


/* types of the frames the server makes itself (docs/ws-protocol.md) */
const char *const insite_channel_reserved_types[] = {
    "subscribed", "unsubscribed", "reset", "error", "pong", NULL
};


static int
insite_channel_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
           || (c >= '0' && c <= '9') || c == '_' || c == '.' || c == ':'
           || c == '-';
}


int
insite_channel_token_valid(const char *s, size_t len, size_t max)
{
    size_t  i;

    if (s == NULL || len == 0 || len > max) {
        return 0;
    }

    for (i = 0; i < len; i++) {
        if (!insite_channel_char((unsigned char) s[i])) {
            return 0;
        }
    }

    return 1;
}


int
insite_channel_idem_valid(const char *s, size_t len)
{
    size_t  i;

    if (s == NULL || len == 0 || len > INSITE_CHANNEL_IDEM_MAX) {
        return 0;
    }

    for (i = 0; i < len; i++) {
        if ((unsigned char) s[i] <= ' ' || (unsigned char) s[i] >= 0x7f) {
            return 0;
        }
    }

    return 1;
}


int
insite_channel_name_valid(const char *s, size_t len)
{
    return insite_channel_token_valid(s, len, INSITE_CHANNEL_NAME_MAX);
}


int
insite_channel_prefix_valid(const char *s, size_t len)
{
    size_t  i;

    if (len > INSITE_CHANNEL_PREFIX_MAX || (len && s == NULL)) {
        return 0;
    }

    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char) s[i];

        if (c <= ' ' || c >= 0x7f || c == '{' || c == '}') {
            return 0;
        }
    }

    return 1;
}


int
insite_channel_type_reserved(const char *s, size_t len)
{
    const char *const  *t;

    for (t = insite_channel_reserved_types; *t; t++) {
        if (strlen(*t) == len && memcmp(*t, s, len) == 0) {
            return 1;
        }
    }

    return 0;
}


int
insite_channel_glob_valid(const char *p, size_t len)
{
    size_t  i;

    if (p == NULL || len == 0 || len > INSITE_CHANNEL_NAME_MAX) {
        return 0;
    }

    for (i = 0; i < len; i++) {
        if (p[i] != '*' && !insite_channel_char((unsigned char) p[i])) {
            return 0;
        }
    }

    return 1;
}


/* iterative '*' matching with one backtrack point: linear in practice,
   never worse than plen * slen */
int
insite_channel_glob_match(const char *p, size_t plen, const char *s,
    size_t slen)
{
    size_t  pi, si, star_p, star_s;
    int     star;

    pi = si = star_p = star_s = 0;
    star = 0;

    while (si < slen) {
        if (pi < plen && p[pi] == '*') {
            star = 1;
            star_p = ++pi;
            star_s = si;

        } else if (pi < plen && p[pi] == s[si]) {
            pi++;
            si++;

        } else if (star) {
            pi = star_p;
            si = ++star_s;

        } else {
            return 0;
        }
    }

    while (pi < plen && p[pi] == '*') {
        pi++;
    }

    return pi == plen;
}


size_t
insite_channel_key(char *buf, size_t size, const char *prefix, size_t plen,
    insite_channel_key_e kind, const char *ch, size_t chlen,
    const char *idem, size_t idem_len)
{
    int  n;

    if (buf == NULL || size == 0 || !insite_channel_prefix_valid(prefix, plen)
        || !insite_channel_name_valid(ch, chlen))
    {
        return 0;
    }

    switch (kind) {

    case INSITE_CHANNEL_KEY_STATE:
        n = snprintf(buf, size, "%.*s{%.*s}:seq", (int) plen, prefix,
                     (int) chlen, ch);
        break;

    case INSITE_CHANNEL_KEY_HIST:
        n = snprintf(buf, size, "%.*s{%.*s}:hist", (int) plen, prefix,
                     (int) chlen, ch);
        break;

    case INSITE_CHANNEL_KEY_IDEM:
        if (!insite_channel_idem_valid(idem, idem_len)) {
            return 0;
        }

        n = snprintf(buf, size, "%.*s{%.*s}:idem:%.*s", (int) plen, prefix,
                     (int) chlen, ch, (int) idem_len, idem);
        break;

    case INSITE_CHANNEL_KEY_PUB:
        n = snprintf(buf, size, "%.*spub:%.*s", (int) plen, prefix,
                     (int) chlen, ch);
        break;

    case INSITE_CHANNEL_KEY_SPUB:
        n = snprintf(buf, size, "%.*s{%.*s}:pub", (int) plen, prefix,
                     (int) chlen, ch);
        break;

    default:
        return 0;
    }

    if (n < 0 || (size_t) n >= size) {
        return 0;
    }

    return (size_t) n;
}


static void
insite_channel_why(char *why, size_t whylen, const char *text)
{
    if (why && whylen) {
        snprintf(why, whylen, "%s", text);
    }
}


int
insite_channel_type_check(const char *t, size_t len, char *why,
    size_t whylen)
{
    if (!insite_channel_token_valid(t, len, INSITE_CHANNEL_TYPE_MAX)) {
        insite_channel_why(why, whylen, "\"type\" is 1-64 characters of "
                                        "A-Z a-z 0-9 _ . : -");
        return -1;
    }

    if (insite_channel_type_reserved(t, len)) {
        if (why && whylen) {
            snprintf(why, whylen, "\"type\" \"%.*s\" is reserved for the "
                     "server's own frames (subscribed, unsubscribed, reset, "
                     "error, pong)", (int) len, t);
        }
        return -1;
    }

    return 0;
}


int
insite_channel_data_check(const char *data, size_t len, char *why,
    size_t whylen)
{
    json_t        *v;
    json_error_t   err;

    if (data == NULL) {
        insite_channel_why(why, whylen, "data is missing");
        return -1;
    }

    /* the script splices data into the message text: anything but exactly
       one JSON value would corrupt every subscriber's stream */
    v = json_loadb(data, len, JSON_DECODE_ANY | JSON_DECODE_INT_AS_REAL, &err);

    if (v == NULL) {
        if (why && whylen) {
            snprintf(why, whylen, "data is not a JSON value: %s", err.text);
        }
        return -1;
    }

    json_decref(v);
    return 0;
}


static int
insite_channel_space(char c)
{
    return c == ' ' || c == '\n' || c == '\r' || c == '\t';
}


int
insite_channel_payload_parse(const char *body, size_t len,
    insite_channel_payload_t *out, char *why, size_t whylen)
{
    int             has_data, rc;
    size_t          dlen;
    json_t         *root, *jtype;
    json_error_t    err;
    const u_char   *d;

    if (body == NULL) {
        insite_channel_why(why, whylen, "the body must be a JSON object");
        return -1;
    }

    /* integers past 64 bits are valid JSON: parse them as reals to check */
    root = json_loadb(body, len,
                      JSON_REJECT_DUPLICATES | JSON_DECODE_INT_AS_REAL, &err);

    if (root == NULL) {
        if (why && whylen) {
            snprintf(why, whylen, "the body is not valid JSON: %s "
                     "(line %d, column %d)", err.text, err.line, err.column);
        }
        return -1;
    }

    if (!json_is_object(root)) {
        json_decref(root);
        insite_channel_why(why, whylen, "the body must be a JSON object");
        return -1;
    }

    out->type = "message";
    out->type_len = 7;

    jtype = json_object_get(root, "type");

    if (jtype) {
        if (!json_is_string(jtype)) {
            json_decref(root);
            insite_channel_why(why, whylen, "\"type\" is 1-64 characters of "
                                            "A-Z a-z 0-9 _ . : -");
            return -1;
        }

        /* valid JSON text with no escapes in a token: the value's bytes are
           in the body, found as the member's span without its quotes */
        if (insite_channel_type_check(json_string_value(jtype),
                                      json_string_length(jtype), why, whylen)
            != 0)
        {
            json_decref(root);
            return -1;
        }

        rc = insite_json_member_span((const u_char *) body, len, "type", &d,
                                     &dlen);
        if (rc != 1 || dlen < 2 || dlen - 2 != json_string_length(jtype)
            || memcmp(d + 1, json_string_value(jtype), dlen - 2) != 0)
        {
            /* written with escapes ("\u0061"): refuse rather than guess */
            json_decref(root);
            insite_channel_why(why, whylen, "\"type\" is 1-64 characters of "
                                            "A-Z a-z 0-9 _ . : -");
            return -1;
        }

        out->type = (const char *) d + 1;
        out->type_len = dlen - 2;
    }

    has_data = json_object_get(root, "data") != NULL;
    json_decref(root);

    if (has_data) {
        if (insite_json_member_span((const u_char *) body, len, "data", &d,
                                    &dlen) != 1)
        {
            insite_channel_why(why, whylen, "\"data\" could not be located");
            return -1;
        }

        out->data = (const char *) d;
        out->data_len = dlen;
        return 0;
    }

    out->data = body;
    out->data_len = len;

    while (out->data_len && insite_channel_space(out->data[out->data_len - 1]))
    {
        out->data_len--;
    }

    while (out->data_len && insite_channel_space(*out->data)) {
        out->data++;
        out->data_len--;
    }

    return 0;
}


int
insite_channel_publish_args(insite_channel_publish_args_t *a,
    const char *prefix, size_t plen, const insite_channel_publish_t *m,
    char *why, size_t whylen)
{
    size_t  n;
    int     i;

    if (!insite_channel_prefix_valid(prefix, plen)) {
        insite_channel_why(why, whylen, "the key prefix is over 64 characters "
                                        "or has white space or braces");
        return -1;
    }

    if (!insite_channel_name_valid(m->channel, m->channel_len)) {
        insite_channel_why(why, whylen, "channel names are 1-128 characters "
                                        "of A-Z a-z 0-9 _ . : -");
        return -1;
    }

    if (insite_channel_type_check(m->type, m->type_len, why, whylen) != 0) {
        return -1;
    }

    if (m->idem && !insite_channel_idem_valid(m->idem, m->idem_len)) {
        insite_channel_why(why, whylen, "Idempotency-Key is 1-128 visible "
                                        "ASCII characters");
        return -1;
    }

    if (m->idem && (m->idem_ttl == 0 || m->idem_ttl > INSITE_CHANNEL_IDEM_TTL_MAX))
    {
        insite_channel_why(why, whylen, "the idempotency key lifetime must "
                                        "be 1s to 30d");
        return -1;
    }

    if (m->history > INSITE_CHANNEL_HISTORY_MAX) {
        insite_channel_why(why, whylen, "history is 0 to 1000000 messages");
        return -1;
    }

    if (m->data == NULL || m->data_len == 0 || m->ts == NULL || m->ts_len == 0
        || m->epoch == NULL || m->epoch_len == 0
        || m->epoch_len > INSITE_CHANNEL_EPOCH_MAX)
    {
        insite_channel_why(why, whylen, "data, timestamp or epoch missing");
        return -1;
    }

    a->nkeys = m->idem ? 3 : 2;

    i = 0;

    n = insite_channel_key(a->k_state, sizeof(a->k_state), prefix, plen,
                           INSITE_CHANNEL_KEY_STATE, m->channel,
                           m->channel_len, NULL, 0);
    a->argv[i] = a->k_state;
    a->lens[i++] = n;

    n = insite_channel_key(a->k_hist, sizeof(a->k_hist), prefix, plen,
                           INSITE_CHANNEL_KEY_HIST, m->channel,
                           m->channel_len, NULL, 0);
    a->argv[i] = a->k_hist;
    a->lens[i++] = n;

    if (m->idem) {
        n = insite_channel_key(a->k_idem, sizeof(a->k_idem), prefix, plen,
                               INSITE_CHANNEL_KEY_IDEM, m->channel,
                               m->channel_len, m->idem, m->idem_len);
        a->argv[i] = a->k_idem;
        a->lens[i++] = n;
    }

    n = insite_channel_key(a->pub, sizeof(a->pub), prefix, plen,
                           m->sharded ? INSITE_CHANNEL_KEY_SPUB
                                      : INSITE_CHANNEL_KEY_PUB,
                           m->channel, m->channel_len, NULL, 0);

    snprintf(a->history, sizeof(a->history), "%lu", m->history);
    snprintf(a->ttl, sizeof(a->ttl), "%lu", m->idem ? m->idem_ttl : 1UL);

    a->argv[i] = m->channel;      a->lens[i++] = m->channel_len;
    a->argv[i] = m->type;         a->lens[i++] = m->type_len;
    a->argv[i] = m->data;         a->lens[i++] = m->data_len;
    a->argv[i] = m->ts;           a->lens[i++] = m->ts_len;
    a->argv[i] = a->history;      a->lens[i++] = strlen(a->history);
    a->argv[i] = m->epoch;        a->lens[i++] = m->epoch_len;
    a->argv[i] = a->pub;          a->lens[i++] = n;
    a->argv[i] = a->ttl;          a->lens[i++] = strlen(a->ttl);

    if (m->sharded) {
        a->argv[i] = "1";         a->lens[i++] = 1;
    }

    a->nargs = i;

    return 0;
}
