/* Runtime: common flags are split from the worker's own, and signals arrive
 * as flags through the signalfd (no handlers). */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "log.h"
#include "runtime.h"

static void test_flags_and_signals(void **state)
{
    char *argv[] = { "insite-x", "-c", "x.conf", "--channel", "a", "--check-config", "--data", "1", NULL };
    insite_runtime rt;

    assert_int_equal(insite_runtime_init(&rt, "insite-x", 8, argv), 0);
    assert_string_equal(rt.config_path, "x.conf");
    assert_true(rt.check_config);
    assert_false(rt.help);
    assert_int_equal(rt.argc, 5);
    assert_string_equal(rt.argv[1], "--channel");
    assert_string_equal(rt.argv[4], "1");
    assert_null(rt.argv[5]);

    assert_int_equal(insite_runtime_wait(&rt, 0, -1), 0);
    assert_false(rt.reload);
    raise(SIGHUP);      /* blocked: queued for the signalfd */
    assert_int_equal(insite_runtime_wait(&rt, 1000, -1), 0);
    assert_true(rt.reload);
    assert_false(rt.draining);
    raise(SIGTERM);
    assert_int_equal(insite_runtime_wait(&rt, 1000, -1), 0);
    assert_true(rt.draining);
    insite_runtime_close(&rt);
}

static void test_usage_error(void **state)
{
    char *argv[] = { "insite-x", "-c", NULL };
    insite_runtime rt;
    assert_int_equal(insite_runtime_init(&rt, "insite-x", 2, argv), -1);
    insite_runtime_close(&rt);
}

int main(void)
{
    insite_log_set_level(INSITE_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_flags_and_signals),
        cmocka_unit_test(test_usage_error),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
