/* Python str semantics on UTF-8 bytes.  ASCII takes a fast path; other code
 * points go through glibc's C.UTF-8 ctype tables. */
#include <locale.h>
#include <pthread.h>
#include <wctype.h>

#include "text.h"

static locale_t utf8_locale;
static pthread_once_t utf8_once = PTHREAD_ONCE_INIT;

static void utf8_init(void)
{
    utf8_locale = newlocale(LC_CTYPE_MASK, "C.UTF-8", (locale_t)0);
}

static locale_t loc(void)
{
    pthread_once(&utf8_once, utf8_init);
    return utf8_locale;
}

size_t text_decode(const char *p, size_t n, uint32_t *cp)
{
    const unsigned char *s = (const unsigned char *)p;
    size_t need;
    uint32_t c = s[0];
    if (c < 0x80) { *cp = c; return 1; }
    if (c >= 0xc2 && c <= 0xdf) { need = 1; c &= 0x1f; }
    else if (c >= 0xe0 && c <= 0xef) { need = 2; c &= 0x0f; }
    else if (c >= 0xf0 && c <= 0xf4) { need = 3; c &= 0x07; }
    else { *cp = 0xfffd; return 1; }
    if (need >= n) { *cp = 0xfffd; return 1; }
    for (size_t i = 1; i <= need; i++) {
        if ((s[i] & 0xc0) != 0x80) { *cp = 0xfffd; return 1; }
        c = (c << 6) | (s[i] & 0x3f);
    }
    *cp = c;
    return need + 1;
}

static size_t encode(uint32_t c, char *o)
{
    if (c < 0x80) { o[0] = (char)c; return 1; }
    if (c < 0x800) {
        o[0] = (char)(0xc0 | (c >> 6));
        o[1] = (char)(0x80 | (c & 0x3f));
        return 2;
    }
    if (c < 0x10000) {
        o[0] = (char)(0xe0 | (c >> 12));
        o[1] = (char)(0x80 | ((c >> 6) & 0x3f));
        o[2] = (char)(0x80 | (c & 0x3f));
        return 3;
    }
    o[0] = (char)(0xf0 | (c >> 18));
    o[1] = (char)(0x80 | ((c >> 12) & 0x3f));
    o[2] = (char)(0x80 | ((c >> 6) & 0x3f));
    o[3] = (char)(0x80 | (c & 0x3f));
    return 4;
}

int text_is_space(uint32_t c)
{
    if (c < 0x80)
        return (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x20);
    return c == 0x85 || c == 0xa0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200a)
        || c == 0x2028 || c == 0x2029 || c == 0x202f || c == 0x205f || c == 0x3000;
}

/* Width of a whitespace character at s, or 0. */
static size_t space_at(const char *s, size_t n)
{
    unsigned char b = (unsigned char)s[0];
    if (b < 0x80)
        return text_is_space(b) ? 1 : 0;
    uint32_t cp;
    size_t w = text_decode(s, n, &cp);
    return text_is_space(cp) ? w : 0;
}

int text_next_token(const char *s, size_t n, size_t *pos,
                    const char **start, size_t *len)
{
    size_t i = *pos, w;
    while (i < n && (w = space_at(s + i, n - i)) > 0)
        i += w;
    if (i >= n) {
        *pos = n;
        return 0;
    }
    size_t b = i;
    while (i < n && space_at(s + i, n - i) == 0) {
        uint32_t cp;
        i += (unsigned char)s[i] < 0x80 ? 1 : text_decode(s + i, n - i, &cp);
    }
    *start = s + b;
    *len = i - b;
    *pos = i;
    return 1;
}

size_t text_codepoints(const char *s, size_t n)
{
    size_t count = 0;
    uint32_t cp;
    for (size_t i = 0; i < n; count++)
        i += (unsigned char)s[i] < 0x80 ? 1 : text_decode(s + i, n - i, &cp);
    return count;
}

int text_is_upper(const char *s, size_t n)
{
    int cased = 0;
    locale_t l = (locale_t)0;
    for (size_t i = 0; i < n;) {
        unsigned char b = (unsigned char)s[i];
        if (b < 0x80) {
            if (b >= 'a' && b <= 'z')
                return 0;
            cased |= b >= 'A' && b <= 'Z';
            i++;
            continue;
        }
        uint32_t cp;
        i += text_decode(s + i, n - i, &cp);
        if (l == (locale_t)0 && (l = loc()) == (locale_t)0)
            continue;   /* no C.UTF-8: non-ASCII letters count as uncased */
        if (iswlower_l((wint_t)cp, l))
            return 0;
        if (iswupper_l((wint_t)cp, l))
            cased = 1;
        else if (towlower_l((wint_t)cp, l) != (wint_t)cp)
            return 0;   /* titlecase (Lt): cased, not upper */
    }
    return cased;
}

size_t text_lower(const char *s, size_t n, char *out)
{
    size_t o = 0;
    locale_t l = (locale_t)0;
    for (size_t i = 0; i < n;) {
        unsigned char b = (unsigned char)s[i];
        if (b < 0x80) {
            out[o++] = (char)(b >= 'A' && b <= 'Z' ? b + 32 : b);
            i++;
            continue;
        }
        uint32_t cp;
        size_t w = text_decode(s + i, n - i, &cp);
        if (cp == 0xfffd && w == 1) {   /* invalid byte: copied as is */
            out[o++] = s[i++];
            continue;
        }
        if (l == (locale_t)0)
            l = loc();
        uint32_t lc = l != (locale_t)0 ? (uint32_t)towlower_l((wint_t)cp, l) : cp;
        o += encode(lc, out + o);
        i += w;
    }
    return o;
}

int text_is_punct(unsigned char c)
{
    return (c >= '!' && c <= '/') || (c >= ':' && c <= '@')
        || (c >= '[' && c <= '`') || (c >= '{' && c <= '~');
}
