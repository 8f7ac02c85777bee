/*
 * insite_http_prefer_has(): RFC 7240 preference tokens in a Prefer value.
 */

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "../../ngx_insite_core/insite_http_prefer.h"


static int
has(const char *v)
{
    /* an exact-size copy: a read past the value is ASan's to catch */
    size_t  n = strlen(v);
    char   *copy = malloc(n ? n : 1);
    int     rc;

    assert_non_null(copy);
    memcpy(copy, v, n);
    rc = insite_http_prefer_has(copy, n, "respond-async");
    free(copy);

    return rc;
}


static void
test_found(void **state)
{
    (void) state;

    assert_int_equal(has("respond-async"), 1);
    assert_int_equal(has("Respond-Async"), 1);
    assert_int_equal(has("  respond-async  "), 1);
    assert_int_equal(has("wait=10, respond-async"), 1);
    assert_int_equal(has("respond-async, wait=10"), 1);
    assert_int_equal(has("respond-async;foo=bar"), 1);
    assert_int_equal(has("respond-async=1"), 1);
    assert_int_equal(has("return=minimal,respond-async"), 1);
    assert_int_equal(has(",,respond-async,,"), 1);
    assert_int_equal(has("x=\"a\\\"b\", respond-async"), 1);
}


static void
test_not_found(void **state)
{
    (void) state;

    assert_int_equal(has(""), 0);
    assert_int_equal(has("return=minimal"), 0);
    assert_int_equal(has("respond-asynchronously"), 0);
    assert_int_equal(has("no-respond-async"), 0);
    assert_int_equal(has("respond"), 0);
    assert_int_equal(has("wait=respond-async"), 0);
    assert_int_equal(has("wait=10;respond-async"), 0);
    assert_int_equal(has("x=\"a, respond-async\""), 0);
    assert_int_equal(has("x=\"a\\\", respond-async\""), 0);
    assert_int_equal(has("x=\"unterminated, respond-async"), 0);
}


int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_found),
        cmocka_unit_test(test_not_found),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
