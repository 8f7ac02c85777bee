#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "params.h"

#define DAY 86400LL

static const stocks_interval intervals[] = {
    { STOCKS_1M, "1m", 60, 31 * DAY, DAY, "1 minute" },
    { STOCKS_5M, "5m", 300, 93 * DAY, 5 * DAY, "5 minutes" },
    { STOCKS_15M, "15m", 900, 366 * DAY, 30 * DAY, "15 minutes" },
    { STOCKS_1H, "1h", 3600, 732 * DAY, 90 * DAY, "1 hour" },
    { STOCKS_1D, "1d", DAY, 7320 * DAY, 366 * DAY, "1 day" },
};

int stocks_symbol_normalize(const char *s, char out[STOCKS_SYMBOL_MAX])
{
    size_t n = 0;
    for (; s[n] != '\0'; n++) {
        unsigned char c = (unsigned char)s[n];
        if (n + 1 >= STOCKS_SYMBOL_MAX
            || !(isalnum(c) || c == '.' || c == '^' || c == '=' || c == '-'))
            return -1;
        out[n] = (char)toupper(c);
    }
    out[n] = '\0';
    return n > 0 ? 0 : -1;
}

const stocks_interval *stocks_interval_parse(const char *s)
{
    for (size_t i = 0; s != NULL && i < sizeof(intervals) / sizeof(intervals[0]); i++)
        if (strcmp(s, intervals[i].name) == 0)
            return &intervals[i];
    return NULL;
}

const stocks_interval *stocks_interval_by_id(int id)
{
    if (id < 0 || (size_t)id >= sizeof(intervals) / sizeof(intervals[0]))
        return NULL;
    return &intervals[id];
}

/* Exactly n digits at *p, advancing it. */
static int digits(const char **p, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (!isdigit((unsigned char)(*p)[i]))
            return -1;
        v = v * 10 + ((*p)[i] - '0');
    }
    *p += n;
    *out = v;
    return 0;
}

static int expect(const char **p, char c)
{
    if (**p != c)
        return -1;
    (*p)++;
    return 0;
}

int stocks_time_parse(const char *s, int64_t *out)
{
    const char *p = s;
    struct tm tm = { 0 };
    int y, mo, d, h = 0, mi = 0, sec = 0, off = 0;

    if (s == NULL || *s == '\0')
        return -1;
    if (strspn(s, "0123456789") == strlen(s)) {       /* epoch seconds */
        if (strlen(s) > 11)
            return -1;
        *out = strtoll(s, NULL, 10);
        return *out <= 253402300799LL ? 0 : -1;
    }
    if (digits(&p, 4, &y) || expect(&p, '-') || digits(&p, 2, &mo) || expect(&p, '-')
        || digits(&p, 2, &d))
        return -1;
    if (*p == 'T' || *p == 't') {
        p++;
        if (digits(&p, 2, &h) || expect(&p, ':') || digits(&p, 2, &mi) || expect(&p, ':')
            || digits(&p, 2, &sec))
            return -1;
        if (*p == '.') {                               /* fraction: ignored */
            p++;
            if (!isdigit((unsigned char)*p))
                return -1;
            while (isdigit((unsigned char)*p))
                p++;
        }
        if (*p == 'Z' || *p == 'z') {
            p++;
        } else if (*p == '+' || *p == '-') {
            int sign = *p++ == '-' ? -1 : 1, oh, om;
            if (digits(&p, 2, &oh) || expect(&p, ':') || digits(&p, 2, &om) || oh > 23 || om > 59)
                return -1;
            off = sign * (oh * 3600 + om * 60);
        } else {
            return -1;
        }
    }
    if (*p != '\0' || y < 1970 || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59
        || sec > 60)
        return -1;
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = sec;
    time_t t = timegm(&tm);
    if (tm.tm_mday != d)                               /* 2024-02-31 */
        return -1;
    *out = (int64_t)t - off;
    return *out >= 0 ? 0 : -1;
}

int stocks_range_resolve(const stocks_interval *iv, const char *from, const char *to,
                         int64_t now, int64_t *f, int64_t *t, char *err, size_t errlen)
{
    if (to != NULL) {
        if (stocks_time_parse(to, t) != 0) {
            snprintf(err, errlen, "to: expected epoch seconds, an RFC 3339 time or a date");
            return -1;
        }
    } else {
        *t = now;
    }
    if (from != NULL) {
        if (stocks_time_parse(from, f) != 0) {
            snprintf(err, errlen, "from: expected epoch seconds, an RFC 3339 time or a date");
            return -1;
        }
    } else {
        *f = *t > iv->default_range ? *t - iv->default_range : 0;
    }
    if (*f >= *t) {
        snprintf(err, errlen, "from must be before to");
        return -1;
    }
    if (*t - *f > iv->max_range) {
        snprintf(err, errlen, "range too long for interval %s: at most %" PRId64 " days",
                 iv->name, (int64_t)(iv->max_range / DAY));
        return -1;
    }
    return 0;
}

int stocks_limit_parse(const char *s, long def, long max, long *out, char *err, size_t errlen)
{
    char *end;
    if (s == NULL) {
        *out = def;
        return 0;
    }
    long v = strlen(s) <= 9 && isdigit((unsigned char)s[0]) ? strtol(s, &end, 10) : -1;
    if (v < 1 || v > max || *end != '\0') {
        snprintf(err, errlen, "limit must be an integer from 1 to %ld", max);
        return -1;
    }
    *out = v;
    return 0;
}

uint32_t stocks_symbol_hash(const char *symbol)
{
    uint32_t h = 2166136261u;                          /* FNV-1a */
    for (const unsigned char *p = (const unsigned char *)symbol; *p; p++)
        h = (h ^ *p) * 16777619u;
    return h;
}

int stocks_cursor_encode(const stocks_cursor *c, char *out, size_t outlen)
{
    char plain[(STOCKS_CURSOR_MAX - 3) / 2 + 1];
    int n = snprintf(plain, sizeof(plain), "%d.%" PRId64 ".%" PRId64 ".%" PRId64 ".%08" PRIx32,
                     c->interval, c->after, c->from, c->to, c->symbol_hash);
    if (n < 0 || (size_t)n >= sizeof(plain) || outlen < 2 + 2 * (size_t)n + 1)
        return -1;
    memcpy(out, "b1", 2);
    for (int i = 0; i < n; i++)
        snprintf(out + 2 + 2 * i, 3, "%02x", (unsigned char)plain[i]);
    return 0;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* A decimal int64 as printed by %PRId64 (optional '-', 1..12 digits, no
 * leading zero, no "-0") ending at sep; advances *p past sep. */
static int field(const char **p, char sep, int64_t *out)
{
    const char *s = *p;
    int neg = *s == '-';
    s += neg;
    int64_t v = 0;
    size_t n = 0;
    for (; isdigit((unsigned char)s[n]); n++) {
        if (n >= 12)
            return -1;
        v = v * 10 + (s[n] - '0');
    }
    if (n == 0 || s[n] != sep || (n > 1 && s[0] == '0') || (neg && v == 0))
        return -1;
    *p = s + n + (sep ? 1 : 0);
    *out = neg ? -v : v;
    return 0;
}

int stocks_cursor_decode(const char *s, stocks_cursor *c)
{
    char plain[(STOCKS_CURSOR_MAX - 3) / 2 + 1];
    size_t len = strlen(s);
    int64_t iv;

    if (len < 4 || len >= STOCKS_CURSOR_MAX || memcmp(s, "b1", 2) != 0 || len % 2 != 0)
        return -1;
    size_t n = (len - 2) / 2;
    for (size_t i = 0; i < n; i++) {
        int hi = hexval(s[2 + 2 * i]), lo = hexval(s[3 + 2 * i]);
        if (hi < 0 || lo < 0)
            return -1;
        plain[i] = (char)(hi * 16 + lo);
    }
    plain[n] = '\0';
    if (strlen(plain) != n)
        return -1;
    const char *p = plain;
    if (field(&p, '.', &iv) || field(&p, '.', &c->after) || field(&p, '.', &c->from)
        || field(&p, '.', &c->to))
        return -1;
    if (strlen(p) != 8 || strspn(p, "0123456789abcdef") != 8)
        return -1;
    c->symbol_hash = (uint32_t)strtoul(p, NULL, 16);
    if (stocks_interval_by_id((int)iv) == NULL || c->from >= c->to || c->after < c->from - 2 * 86400
        || c->after >= c->to)
        return -1;
    c->interval = (int)iv;
    /* round trip: only what encode produces is accepted */
    char again[STOCKS_CURSOR_MAX];
    if (stocks_cursor_encode(c, again, sizeof(again)) != 0 || strcmp(again, s) != 0)
        return -1;
    return 0;
}

void stocks_like_escape(const char *s, char *out)
{
    for (; *s; s++) {
        if (*s == '%' || *s == '_' || *s == '\\')
            *out++ = '\\';
        *out++ = *s;
    }
    *out = '\0';
}

int stocks_json_number_ok(const char *s)
{
    if (*s == '-')
        s++;
    if (*s == '0')
        s++;
    else if (*s >= '1' && *s <= '9')
        while (*s >= '0' && *s <= '9')
            s++;
    else
        return 0;
    if (*s == '.') {
        if (!(*++s >= '0' && *s <= '9'))
            return 0;
        while (*s >= '0' && *s <= '9')
            s++;
    }
    if (*s == 'e' || *s == 'E') {
        s++;
        if (*s == '+' || *s == '-')
            s++;
        if (!(*s >= '0' && *s <= '9'))
            return 0;
        while (*s >= '0' && *s <= '9')
            s++;
    }
    return *s == '\0';
}

int stocks_bars_change_parse(const char *s, char symbol[STOCKS_SYMBOL_MAX], int64_t *first,
                             int64_t *last)
{
    char sym[STOCKS_SYMBOL_MAX];
    size_t n = strcspn(s, " ");

    if (strcmp(s, "*") == 0)
        return 0;
    if (n == 0 || n >= STOCKS_SYMBOL_MAX || s[n] != ' ')
        return -1;
    memcpy(sym, s, n);
    sym[n] = '\0';
    const char *p = s + n + 1;
    if (stocks_symbol_normalize(sym, symbol) != 0 || strcmp(sym, symbol) != 0
        || field(&p, ' ', first) != 0 || field(&p, '\0', last) != 0
        || *first > *last)
        return -1;
    return 1;
}
