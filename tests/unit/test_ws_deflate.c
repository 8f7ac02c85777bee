/*
 * Unit tests for permessage-deflate (ngx_insite_ws/insite_ws_deflate.c):
 * RFC 7692 offers, the answer, a message through zlib both ways.
 */

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "../../ngx_insite_ws/insite_ws_deflate.h"


static int
offer(const char *h, insite_ws_deflate_params_t *p)
{
    memset(p, 0xa5, sizeof(*p));
    return insite_ws_deflate_negotiate((const u_char *) h, strlen(h), p);
}


static void
test_offers_accepted(void **state)
{
    insite_ws_deflate_params_t  p;

    (void) state;

    /* what Chromium and Firefox send */
    assert_int_equal(offer("permessage-deflate; client_max_window_bits", &p),
                     INSITE_WS_DEFLATE_OK);
    assert_int_equal(p.server_window_bits, 15);
    assert_int_equal(p.server_bits_asked, 0);

    assert_int_equal(offer("permessage-deflate", &p), INSITE_WS_DEFLATE_OK);

    assert_int_equal(offer("PerMessage-Deflate ;server_no_context_takeover ;"
                           " client_no_context_takeover", &p),
                     INSITE_WS_DEFLATE_OK);

    assert_int_equal(offer("permessage-deflate; server_max_window_bits=10; "
                           "client_max_window_bits=\"12\"", &p),
                     INSITE_WS_DEFLATE_OK);
    assert_int_equal(p.server_window_bits, 10);
    assert_int_equal(p.server_bits_asked, 1);

    /* other extensions are skipped, the first acceptable offer wins */
    assert_int_equal(offer("x-webkit-deflate-frame, permessage-deflate; "
                           "server_max_window_bits=8, permessage-deflate; "
                           "server_max_window_bits=9, permessage-deflate",
                           &p),
                     INSITE_WS_DEFLATE_OK);
    assert_int_equal(p.server_window_bits, 9);

    /* empty list elements */
    assert_int_equal(offer(" ,, permessage-deflate ,", &p),
                     INSITE_WS_DEFLATE_OK);
}


static void
test_offers_declined(void **state)
{
    size_t                      i;
    insite_ws_deflate_params_t  p;
    static const char          *declined[] = {
        "",
        "x-webkit-deflate-frame",
        "permessage-deflate; server_max_window_bits=8",   /* zlib cannot */
        "permessage-deflate; server_max_window_bits",     /* value needed */
        "permessage-deflate; server_max_window_bits=16",
        "permessage-deflate; server_max_window_bits=09",  /* leading zero */
        "permessage-deflate; client_max_window_bits=7",
        "permessage-deflate; client_max_window_bits=\"\"",
        "permessage-deflate; server_no_context_takeover=1",
        "permessage-deflate; server_no_context_takeover; "
            "server_no_context_takeover",
        "permessage-deflate; client_max_window_bits; client_max_window_bits",
        "permessage-deflate; unknown_param",
        "permessage-deflate; server_max_window_bits=\"1234567890123456789\"",
    };

    (void) state;

    for (i = 0; i < sizeof(declined) / sizeof(declined[0]); i++) {
        assert_int_equal(offer(declined[i], &p), INSITE_WS_DEFLATE_NONE);
    }
}


static void
test_offers_malformed(void **state)
{
    size_t                      i;
    insite_ws_deflate_params_t  p;
    static const char          *bad[] = {
        "permessage-deflate;",
        "permessage-deflate; =1",
        "permessage-deflate; a=",
        "permessage-deflate; a=\"unterminated",
        "permessage-deflate; a=\"x\\",
        "permessage-deflate x",
        ";",
        "permessage-deflate; a=b c",
        "perm\x01essage",
        "permessage-deflate; a=\"\x01\"",
    };

    (void) state;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(offer(bad[i], &p), INSITE_WS_DEFLATE_BAD_HEADER);
    }
}


static void
test_response(void **state)
{
    u_char                      buf[INSITE_WS_DEFLATE_RESPONSE_MAX];
    size_t                      n;
    insite_ws_deflate_params_t  p;
    const char                 *want;

    (void) state;

    p.server_window_bits = 15;
    p.server_bits_asked = 0;
    n = insite_ws_deflate_response(&p, buf);
    want = "permessage-deflate; server_no_context_takeover; "
           "client_no_context_takeover";
    assert_int_equal(n, strlen(want));
    assert_memory_equal(buf, want, n);

    p.server_window_bits = 11;
    p.server_bits_asked = 1;
    n = insite_ws_deflate_response(&p, buf);
    want = "permessage-deflate; server_no_context_takeover; "
           "client_no_context_takeover; server_max_window_bits=11";
    assert_int_equal(n, strlen(want));
    assert_memory_equal(buf, want, n);
}


static void
test_round_trip(void **state)
{
    int           bits;
    size_t        zlen, n, len, i;
    u_char       *msg, *z, *back;
    z_stream      d, inf;

    (void) state;

    len = 20000;
    msg = malloc(len);
    back = malloc(len);
    z = malloc(len + 64);
    assert_non_null(msg);

    for (i = 0; i < len; i++) {
        msg[i] = "{\"type\":\"stock_update\",\"price\":123.45}"[i % 38];
    }

    memset(&inf, 0, sizeof(inf));
    assert_int_equal(inflateInit2(&inf, -15), Z_OK);

    for (bits = 9; bits <= 15; bits++) {
        memset(&d, 0, sizeof(d));
        assert_int_equal(deflateInit2(&d, 6, Z_DEFLATED, -bits, 8,
                                      Z_DEFAULT_STRATEGY), Z_OK);

        /* twice on one stream: no context carried from one to the next */
        for (i = 0; i < 2; i++) {
            assert_int_equal(insite_ws_deflate_message(&d, msg, len, z,
                                                       len + 64, &zlen),
                             INSITE_WS_DEFLATE_OK);
            assert_true(zlen < len / 10);
            assert_int_equal(insite_ws_inflate_message(&inf, z, zlen, back,
                                                       len, &n),
                             INSITE_WS_DEFLATE_OK);
            assert_int_equal(n, len);
            assert_memory_equal(back, msg, len);
        }

        /* one byte short of the room: too big, not cut */
        assert_int_equal(insite_ws_inflate_message(&inf, z, zlen, back,
                                                   len - 1, &n),
                         INSITE_WS_DEFLATE_TOO_BIG);

        /* too little output room when compressing */
        assert_int_equal(insite_ws_deflate_message(&d, msg, len, z, 8, &zlen),
                         INSITE_WS_DEFLATE_TOO_BIG);

        deflateEnd(&d);
    }

    /* garbage is not deflate data */
    memset(z, 0xff, 16);
    assert_int_equal(insite_ws_inflate_message(&inf, z, 16, back, len, &n),
                     INSITE_WS_DEFLATE_BAD_DATA);

    /* a final block followed by more bytes */
    memset(&d, 0, sizeof(d));
    assert_int_equal(deflateInit2(&d, 6, Z_DEFLATED, -15, 8,
                                  Z_DEFAULT_STRATEGY), Z_OK);
    d.next_in = msg;
    d.avail_in = 100;
    d.next_out = z;
    d.avail_out = len;
    assert_int_equal(deflate(&d, Z_FINISH), Z_STREAM_END);
    zlen = len - d.avail_out;
    z[zlen++] = 0x00;
    assert_int_equal(insite_ws_inflate_message(&inf, z, zlen, back, len, &n),
                     INSITE_WS_DEFLATE_BAD_DATA);
    /* ... and without: a final block is a complete message */
    assert_int_equal(insite_ws_inflate_message(&inf, z, zlen - 1, back, len,
                                               &n),
                     INSITE_WS_DEFLATE_OK);
    assert_int_equal(n, 100);
    deflateEnd(&d);

    inflateEnd(&inf);
    free(msg);
    free(back);
    free(z);
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_offers_accepted),
        cmocka_unit_test(test_offers_declined),
        cmocka_unit_test(test_offers_malformed),
        cmocka_unit_test(test_response),
        cmocka_unit_test(test_round_trip),
    };

    return cmocka_run_group_tests_name("ws_deflate", tests, NULL, NULL);
}
