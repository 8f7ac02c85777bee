/*
 * JSON strings for the journal's records.  See the header.
 */

#include <stdint.h>
#include <string.h>

#include "insite_gdpr_json.h"


/* 1: a byte that goes out as it is (printable ASCII but '"' and '\') */
static const unsigned char  insite_gdpr_json_plain[256] = {
    [0x20] = 1, [0x21] = 1,             [0x23] = 1, [0x24] = 1, [0x25] = 1,
    [0x26] = 1, [0x27] = 1, [0x28] = 1, [0x29] = 1, [0x2a] = 1, [0x2b] = 1,
    [0x2c] = 1, [0x2d] = 1, [0x2e] = 1, [0x2f] = 1, [0x30] = 1, [0x31] = 1,
    [0x32] = 1, [0x33] = 1, [0x34] = 1, [0x35] = 1, [0x36] = 1, [0x37] = 1,
    [0x38] = 1, [0x39] = 1, [0x3a] = 1, [0x3b] = 1, [0x3c] = 1, [0x3d] = 1,
    [0x3e] = 1, [0x3f] = 1, [0x40] = 1, [0x41] = 1, [0x42] = 1, [0x43] = 1,
    [0x44] = 1, [0x45] = 1, [0x46] = 1, [0x47] = 1, [0x48] = 1, [0x49] = 1,
    [0x4a] = 1, [0x4b] = 1, [0x4c] = 1, [0x4d] = 1, [0x4e] = 1, [0x4f] = 1,
    [0x50] = 1, [0x51] = 1, [0x52] = 1, [0x53] = 1, [0x54] = 1, [0x55] = 1,
    [0x56] = 1, [0x57] = 1, [0x58] = 1, [0x59] = 1, [0x5a] = 1, [0x5b] = 1,
                [0x5d] = 1, [0x5e] = 1, [0x5f] = 1, [0x60] = 1, [0x61] = 1,
    [0x62] = 1, [0x63] = 1, [0x64] = 1, [0x65] = 1, [0x66] = 1, [0x67] = 1,
    [0x68] = 1, [0x69] = 1, [0x6a] = 1, [0x6b] = 1, [0x6c] = 1, [0x6d] = 1,
    [0x6e] = 1, [0x6f] = 1, [0x70] = 1, [0x71] = 1, [0x72] = 1, [0x73] = 1,
    [0x74] = 1, [0x75] = 1, [0x76] = 1, [0x77] = 1, [0x78] = 1, [0x79] = 1,
    [0x7a] = 1, [0x7b] = 1, [0x7c] = 1, [0x7d] = 1, [0x7e] = 1
};


/*
 * 1 when the 8 bytes at p all go out as they are: none below 0x20, none
 * from 0x7f up, no '"' and no '\'.  Word-at-a-time tests, exact for the
 * word as a whole (which byte they flag may be off, never whether one is):
 * w has a zero byte iff (w - 0x01..) & ~w & 0x80.. is not 0, and, when no
 * byte of w has its high bit, w has a byte below n <= 0x80 iff
 * (w - n * 0x01..) & ~w & 0x80.. is not 0.
 */
static int
insite_gdpr_json_plain8(const unsigned char *p)
{
    uint64_t  w;

#define ONES            0x0101010101010101ULL
#define HIGHS           0x8080808080808080ULL
#define HAS_LESS(x, n)  (((x) - (n) * ONES) & ~(x) & HIGHS)
#define HAS_BYTE(x, b)  HAS_LESS((x) ^ ((b) * ONES), 1)

    memcpy(&w, p, sizeof(w));

    return !((w & HIGHS) | HAS_LESS(w, 0x20) | HAS_BYTE(w, 0x7f)
             | HAS_BYTE(w, '"') | HAS_BYTE(w, '\\'));

#undef ONES
#undef HIGHS
#undef HAS_LESS
#undef HAS_BYTE
}


/* the length of a complete, shortest-form UTF-8 sequence at p, or 0 */
static size_t
insite_gdpr_json_utf8(const unsigned char *p, const unsigned char *end)
{
    size_t    n, k;
    uint32_t  cp;

    n = (p[0] & 0xe0) == 0xc0 ? 2 : (p[0] & 0xf0) == 0xe0 ? 3
        : (p[0] & 0xf8) == 0xf0 ? 4 : 0;

    if (n == 0 || (size_t) (end - p) < n) {
        return 0;
    }

    cp = p[0] & (0x7f >> n);

    for (k = 1; k < n; k++) {
        if ((p[k] & 0xc0) != 0x80) {
            return 0;
        }
        cp = (cp << 6) | (p[k] & 0x3f);
    }

    if ((n == 2 && cp < 0x80)
        || (n == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff)))
        || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)))
    {
        return 0;
    }

    return n;
}


char *
insite_gdpr_json_string(char *dst, const char *src, size_t len)
{
    size_t                n;
    unsigned char         c;
    const unsigned char  *p, *run, *end;
    static const char     hex[] = "0123456789abcdef";

    p = (const unsigned char *) src;
    end = p + len;

    *dst++ = '"';

    while (p < end) {

        run = p;
        while (end - p >= 8 && insite_gdpr_json_plain8(p)) {
            p += 8;
        }
        while (p < end && insite_gdpr_json_plain[*p]) {
            p++;
        }

        if (p > run) {
            memcpy(dst, run, p - run);
            dst += p - run;
            continue;
        }

        c = *p;

        if (c >= 0x80) {
            n = insite_gdpr_json_utf8(p, end);

            if (n) {
                memcpy(dst, p, n);
                dst += n;
                p += n;

            } else {
                memcpy(dst, "\\ufffd", 6);
                dst += 6;
                p++;
            }

            continue;
        }

        p++;

        switch (c) {
        case '"':
        case '\\':
            *dst++ = '\\';
            *dst++ = (char) c;
            break;
        case '\n':
            *dst++ = '\\'; *dst++ = 'n';
            break;
        case '\r':
            *dst++ = '\\'; *dst++ = 'r';
            break;
        case '\t':
            *dst++ = '\\'; *dst++ = 't';
            break;
        case 0:
            memcpy(dst, "\\ufffd", 6);
            dst += 6;
            break;
        default:
            /* the other control bytes and DEL */
            memcpy(dst, "\\u00", 4);
            dst[4] = hex[c >> 4];
            dst[5] = hex[c & 0xf];
            dst += 6;
        }
    }

    *dst++ = '"';

    return dst;
}


/* "00" .. "ff": two output bytes with one copy */
static const char  insite_gdpr_hex_pairs[512] =
    "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
    "202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f"
    "404142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f"
    "606162636465666768696a6b6c6d6e6f707172737475767778797a7b7c7d7e7f"
    "808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f"
    "a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf"
    "c0c1c2c3c4c5c6c7c8c9cacbcccdcecfd0d1d2d3d4d5d6d7d8d9dadbdcdddedf"
    "e0e1e2e3e4e5e6e7e8e9eaebecedeeeff0f1f2f3f4f5f6f7f8f9fafbfcfdfeff";


char *
insite_gdpr_json_hex(char *dst, const unsigned char *src, size_t n)
{
    while (n--) {
        memcpy(dst, &insite_gdpr_hex_pairs[2 * *src++], 2);
        dst += 2;
    }

    return dst;
}


char *
insite_gdpr_json_uint(char *dst, uint64_t v)
{
    char   tmp[INSITE_GDPR_JSON_UINT_MAX], *t;
    size_t n;

    t = tmp + sizeof(tmp);

    do {
        *--t = (char) ('0' + v % 10);
        v /= 10;
    } while (v);

    n = tmp + sizeof(tmp) - t;
    memcpy(dst, t, n);

    return dst + n;
}
