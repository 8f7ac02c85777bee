/* The journal's string encoder (ngx_insite_gdpr/insite_gdpr_json.c): what a
 * record holds for the bytes a client chose, printable or not, valid UTF-8
 * or not. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "../../ngx_insite_gdpr/insite_gdpr_json.h"

static void check(const char *in, size_t len, const char *want)
{
    char   out[INSITE_GDPR_JSON_MAX(64) + 8];
    char  *end;

    assert_true(len <= 64);
    memset(out, 'X', sizeof(out));
    end = insite_gdpr_json_string(out, in, len);
    assert_int_equal(end - out, strlen(want));
    assert_memory_equal(out, want, strlen(want));
    assert_int_equal(out[end - out], 'X');      /* nothing past the end */
}

#define CHECK(in, want)  check(in, sizeof(in) - 1, want)

static void test_ascii(void **state)
{
    (void) state;
    CHECK("", "\"\"");
    CHECK("/api/v1/portfolio", "\"/api/v1/portfolio\"");
    CHECK("a b~{}", "\"a b~{}\"");
}

static void test_escapes(void **state)
{
    (void) state;
    CHECK("bob\"\\", "\"bob\\\"\\\\\"");
    CHECK("a\nb\rc\td", "\"a\\nb\\rc\\td\"");
    CHECK("\x01\x1f\x7f", "\"\\u0001\\u001f\\u007f\"");
    CHECK("a\0b", "\"a\\ufffdb\"");
}

static void test_utf8_kept(void **state)
{
    (void) state;
    CHECK("caf\xc3\xa9", "\"caf\xc3\xa9\"");                 /* U+00E9 */
    CHECK("\xe2\x82\xac", "\"\xe2\x82\xac\"");               /* U+20AC */
    CHECK("\xf0\x9f\x93\x88", "\"\xf0\x9f\x93\x88\"");       /* U+1F4C8 */
    CHECK("\xf4\x8f\xbf\xbf", "\"\xf4\x8f\xbf\xbf\"");       /* U+10FFFF */
}

static void test_utf8_replaced(void **state)
{
    (void) state;
    CHECK("\xff", "\"\\ufffd\"");                            /* never UTF-8 */
    CHECK("\x80x", "\"\\ufffdx\"");                          /* stray continuation */
    CHECK("\xc0\x80", "\"\\ufffd\\ufffd\"");                 /* overlong NUL */
    CHECK("\xe0\x80\xaf", "\"\\ufffd\\ufffd\\ufffd\"");      /* overlong '/' */
    CHECK("\xed\xa0\x80", "\"\\ufffd\\ufffd\\ufffd\"");      /* a surrogate */
    CHECK("\xf4\x90\x80\x80", "\"\\ufffd\\ufffd\\ufffd\\ufffd\"");  /* > U+10FFFF */
    CHECK("ab\xe2\x82", "\"ab\\ufffd\\ufffd\"");             /* cut short at the end */
    CHECK("\xc3(", "\"\\ufffd(\"");                          /* cut short by ASCII */
}

static void test_worst_case_fits(void **state)
{
    char  in[64], out[INSITE_GDPR_JSON_MAX(64)];

    (void) state;
    memset(in, 0, sizeof(in));
    assert_int_equal(insite_gdpr_json_string(out, in, sizeof(in)) - out,
                     INSITE_GDPR_JSON_MAX(64));
}

/* The encoder tests 8 bytes at a time: a byte that needs work is found at
 * any place in a word, in the first or the second, and right at the edges
 * of what passes (0x1f/0x20, 0x7e/0x7f, 0x7f/0x80). */
static void test_word_at_a_time(void **state)
{
    static const struct { unsigned char c; const char *out; } bytes[] = {
        { 0x00, "\\ufffd" }, { 0x1f, "\\u001f" }, { 0x20, " " }, { '"', "\\\"" },
        { '\\', "\\\\" }, { 0x7e, "~" }, { 0x7f, "\\u007f" }, { 0x80, "\\ufffd" },
        { 0xff, "\\ufffd" }, { '\n', "\\n" },
    };
    char in[20], want[64];

    (void) state;
    for (size_t b = 0; b < sizeof(bytes) / sizeof(bytes[0]); b++) {
        for (size_t at = 0; at < sizeof(in); at++) {
            memset(in, 'a', sizeof(in));
            in[at] = (char) bytes[b].c;
            snprintf(want, sizeof(want), "\"%.*s%s%.*s\"", (int) at, in, bytes[b].out,
                     (int) (sizeof(in) - at - 1), in + at + 1);
            check(in, sizeof(in), want);
        }
    }
}

/* every byte value, as printf's %02x writes it, and nothing past 2n */
static void test_hex(void **state)
{
    unsigned char  in[256];
    char           out[2 * sizeof(in) + 1], want[3];

    (void) state;
    for (size_t i = 0; i < sizeof(in); i++)
        in[i] = (unsigned char) i;
    memset(out, 'X', sizeof(out));
    assert_ptr_equal(insite_gdpr_json_hex(out, in, sizeof(in)), out + 2 * sizeof(in));
    for (size_t i = 0; i < sizeof(in); i++) {
        snprintf(want, sizeof(want), "%02x", (unsigned) i);
        assert_memory_equal(out + 2 * i, want, 2);
    }
    assert_int_equal(out[2 * sizeof(in)], 'X');
    assert_ptr_equal(insite_gdpr_json_hex(out, in, 0), out);
}

static void test_uint(void **state)
{
    char  out[INSITE_GDPR_JSON_UINT_MAX + 1];

    (void) state;
    *insite_gdpr_json_uint(out, 0) = '\0';
    assert_string_equal(out, "0");
    *insite_gdpr_json_uint(out, 200) = '\0';
    assert_string_equal(out, "200");
    *insite_gdpr_json_uint(out, 1000000007) = '\0';
    assert_string_equal(out, "1000000007");
    *insite_gdpr_json_uint(out, UINT64_MAX) = '\0';
    assert_string_equal(out, "18446744073709551615");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ascii),
        cmocka_unit_test(test_escapes),
        cmocka_unit_test(test_utf8_kept),
        cmocka_unit_test(test_utf8_replaced),
        cmocka_unit_test(test_worst_case_fits),
        cmocka_unit_test(test_word_at_a_time),
        cmocka_unit_test(test_uint),
        cmocka_unit_test(test_hex),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
