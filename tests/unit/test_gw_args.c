/*
 * insite_gw_args_drop(): the gateway's removal of `token=` from a query.
 */

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "../../ngx_insite_gateway/insite_gw_args.h"


static void
check(const char *in, const char *want)
{
    unsigned char  out[256], *end;
    size_t         len = strlen(in);

    end = insite_gw_args_drop(out, (const unsigned char *) in,
                              (const unsigned char *) in + len, "token", 5);
    assert_true((size_t) (end - out) <= len);
    *end = '\0';
    assert_string_equal((char *) out, want);
}


static void
test_drops_token(void **state)
{
    check("token=abc", "");
    check("token=", "");
    check("a=1&token=abc", "a=1");
    check("token=abc&a=1", "a=1");
    check("a=1&token=abc&b=2", "a=1&b=2");
    check("TOKEN=x&Token=y&a=1", "a=1");
    check("token=a&token=b", "");
}


static void
test_keeps_others(void **state)
{
    check("", "");
    check("a=1", "a=1");
    check("tokens=1&xtoken=2&token", "tokens=1&xtoken=2&token");
    check("a=%20b&&c=", "a=%20b&&c=");
    check("a=1&&token=x&b", "a=1&&b");
    check("tok=1&token=x", "tok=1");
}


int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_drops_token),
        cmocka_unit_test(test_keeps_others),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
