/* Config: defaults, file values, environment overrides, every error message
 * with its place, unknown keys, and reload keeping the old config. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"
#include "log.h"

static const insite_config_key keys[] = {
    { "t.host", INSITE_CFG_STRING, "127.0.0.1", 0, 0, "host" },
    { "t.port", INSITE_CFG_INT, "6379", 1, 65535, "port" },
    { "t.enabled", INSITE_CFG_BOOL, "true", 0, 0, "switch" },
    { "t.ratio", INSITE_CFG_DOUBLE, "0.5", 0, 1, "ratio" },
    { "t.timeout", INSITE_CFG_DURATION, "2s", 1, 3600000, "timeout" },
    { "t.symbols", INSITE_CFG_STRING_LIST, "AAPL,MSFT", 0, 0, "symbols" },
    { "top", INSITE_CFG_INT, "7", 0, 0, "a key outside any group" },
};

static const char *envs[] = {
    "INSITE_T_HOST", "INSITE_T_PORT", "INSITE_T_ENABLED", "INSITE_T_RATIO",
    "INSITE_T_TIMEOUT", "INSITE_T_SYMBOLS", "INSITE_TOP",
};

typedef struct {
    insite_config_schema *s;
    char path[64];
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));
    f->s = insite_config_schema_new();
    assert_int_equal(insite_config_schema_add(f->s, keys, sizeof(keys) / sizeof(keys[0])), 0);
    snprintf(f->path, sizeof(f->path), "/tmp/test_config.XXXXXX");
    int fd = mkstemp(f->path);
    assert_true(fd >= 0);
    close(fd);
    for (size_t i = 0; i < sizeof(envs) / sizeof(envs[0]); i++)
        unsetenv(envs[i]);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    unlink(f->path);
    insite_config_schema_free(f->s);
    free(f);
    for (size_t i = 0; i < sizeof(envs) / sizeof(envs[0]); i++)
        unsetenv(envs[i]);
    return 0;
}

static void write_file(fixture *f, const char *text)
{
    FILE *fp = fopen(f->path, "w");
    assert_non_null(fp);
    fputs(text, fp);
    fclose(fp);
}

/* Loads text and returns the error, asserting that loading failed. */
static const char *load_error(fixture *f, const char *text)
{
    static char err[512];
    write_file(f, text);
    err[0] = '\0';
    insite_config *c = insite_config_load(f->s, f->path, err, sizeof(err));
    assert_null(c);
    return err;
}

/* "<path>:<line>: rest" */
static void assert_error_at(fixture *f, const char *err, int line, const char *rest)
{
    char want[512];
    snprintf(want, sizeof(want), "%s:%d: %s", f->path, line, rest);
    assert_string_equal(err, want);
}

static void test_defaults(void **state)
{
    fixture *f = *state;
    char err[256];
    char *const *items;
    insite_config *c = insite_config_load(f->s, NULL, err, sizeof(err));

    assert_non_null(c);
    assert_string_equal(insite_config_string(c, "t.host"), "127.0.0.1");
    assert_int_equal(insite_config_int(c, "t.port"), 6379);
    assert_true(insite_config_bool(c, "t.enabled"));
    assert_true(insite_config_double(c, "t.ratio") == 0.5);
    assert_int_equal(insite_config_duration_ms(c, "t.timeout"), 2000);
    assert_int_equal(insite_config_list(c, "t.symbols", &items), 2);
    assert_string_equal(items[0], "AAPL");
    assert_string_equal(items[1], "MSFT");
    assert_null(items[2]);
    assert_int_equal(insite_config_int(c, "top"), 7);
    insite_config_free(c);
}

static void test_file_values(void **state)
{
    fixture *f = *state;
    char err[256];
    char *const *items;

    write_file(f, "# comment\n"
                  "t = {\n"
                  "  host = \"10.0.0.5\";\n"
                  "  port = 6380;\n"
                  "  enabled = false;\n"
                  "  ratio = 1;\n"            /* an integer is a fine double */
                  "  timeout = \"250ms\";\n"
                  "  symbols = [\"TSLA\"];\n"
                  "};\n"
                  "top = 9;\n");
    insite_config *c = insite_config_load(f->s, f->path, err, sizeof(err));
    assert_non_null(c);
    assert_string_equal(insite_config_string(c, "t.host"), "10.0.0.5");
    assert_int_equal(insite_config_int(c, "t.port"), 6380);
    assert_false(insite_config_bool(c, "t.enabled"));
    assert_true(insite_config_double(c, "t.ratio") == 1.0);
    assert_int_equal(insite_config_duration_ms(c, "t.timeout"), 250);
    assert_int_equal(insite_config_list(c, "t.symbols", &items), 1);
    assert_string_equal(items[0], "TSLA");
    assert_int_equal(insite_config_int(c, "top"), 9);
    assert_string_equal(insite_config_path(c), f->path);
    insite_config_free(c);
}

static void test_durations(void **state)
{
    fixture *f = *state;
    const char *text[] = { "\"5s\"", "\"2m\"", "\"1h\"", "\"1d\"" };
    long long want[] = { 5000, 120000, 3600000, -1 };
    char buf[128], err[256];

    for (size_t i = 0; i < 4; i++) {
        snprintf(buf, sizeof(buf), "t = { timeout = %s; };\n", text[i]);
        write_file(f, buf);
        insite_config *c = insite_config_load(f->s, f->path, err, sizeof(err));
        if (want[i] < 0) {   /* 1d is above the 1h maximum */
            assert_null(c);
            assert_error_at(f, err, 1, "t.timeout: must be 1ms..1h");
            continue;
        }
        assert_non_null(c);
        assert_int_equal(insite_config_duration_ms(c, "t.timeout"), want[i]);
        insite_config_free(c);
    }
}

static void test_env_overrides(void **state)
{
    fixture *f = *state;
    char err[256];
    char *const *items;

    write_file(f, "t = { host = \"file\"; port = 1000; };\n");
    setenv("INSITE_T_HOST", "from-env", 1);
    setenv("INSITE_T_ENABLED", "off", 1);
    setenv("INSITE_T_TIMEOUT", "3m", 1);
    setenv("INSITE_T_SYMBOLS", "A, B ,C", 1);
    setenv("INSITE_T_RATIO", "0.25", 1);
    insite_config *c = insite_config_load(f->s, f->path, err, sizeof(err));
    assert_non_null(c);
    assert_string_equal(insite_config_string(c, "t.host"), "from-env");
    assert_int_equal(insite_config_int(c, "t.port"), 1000);      /* file kept */
    assert_false(insite_config_bool(c, "t.enabled"));
    assert_int_equal(insite_config_duration_ms(c, "t.timeout"), 180000);
    assert_true(insite_config_double(c, "t.ratio") == 0.25);
    assert_int_equal(insite_config_list(c, "t.symbols", &items), 3);
    assert_string_equal(items[1], "B");
    assert_string_equal(items[2], "C");
    insite_config_free(c);
}

static void test_env_errors(void **state)
{
    fixture *f = *state;
    char err[256];

    setenv("INSITE_T_PORT", "abc", 1);
    assert_null(insite_config_load(f->s, NULL, err, sizeof(err)));
    assert_string_equal(err, "INSITE_T_PORT: t.port: must be an integer (got \"abc\")");

    setenv("INSITE_T_PORT", "70000", 1);
    assert_null(insite_config_load(f->s, NULL, err, sizeof(err)));
    assert_string_equal(err, "INSITE_T_PORT: t.port: must be 1..65535 (got \"70000\")");
    unsetenv("INSITE_T_PORT");

    setenv("INSITE_T_ENABLED", "maybe", 1);
    assert_null(insite_config_load(f->s, NULL, err, sizeof(err)));
    assert_string_equal(err, "INSITE_T_ENABLED: t.enabled: must be true or false (got \"maybe\")");
    unsetenv("INSITE_T_ENABLED");

    setenv("INSITE_T_TIMEOUT", "10", 1);
    assert_null(insite_config_load(f->s, NULL, err, sizeof(err)));
    assert_string_equal(err, "INSITE_T_TIMEOUT: t.timeout: must be a duration such as "
                             "\"500ms\", \"5s\", \"2m\", \"1h\" (got \"10\")");
}

static void test_file_errors(void **state)
{
    fixture *f = *state;

    assert_error_at(f, load_error(f, "\n\nt = { port = 70000; };\n"), 3,
                    "t.port: must be 1..65535");
    assert_error_at(f, load_error(f, "t = {\n port = \"6379\";\n};\n"), 2,
                    "t.port: must be an integer");
    assert_error_at(f, load_error(f, "t = { host = 5; };\n"), 1,
                    "t.host: must be a string");
    assert_error_at(f, load_error(f, "t = { enabled = 1; };\n"), 1,
                    "t.enabled: must be true or false");
    assert_error_at(f, load_error(f, "t = { ratio = 1.5; };\n"), 1,
                    "t.ratio: must be 0..1");
    assert_error_at(f, load_error(f, "t = { ratio = \"x\"; };\n"), 1,
                    "t.ratio: must be a number");
    assert_error_at(f, load_error(f, "t = { timeout = \"5 parsecs\"; };\n"), 1,
                    "t.timeout: must be a duration such as \"500ms\", \"5s\", \"2m\", \"1h\"");
    assert_error_at(f, load_error(f, "t = { symbols = [1, 2]; };\n"), 1,
                    "t.symbols: must be a list of strings");
}

static void test_unknown_keys(void **state)
{
    fixture *f = *state;

    assert_error_at(f, load_error(f, "t = {\n  host = \"x\";\n  hots = \"y\";\n};\n"), 3,
                    "unknown key \"t.hots\"");
    assert_error_at(f, load_error(f, "\nredis = { port = 1; };\n"), 2,
                    "unknown key \"redis\"");
    assert_error_at(f, load_error(f, "top = 1;\nbottom = 2;\n"), 2,
                    "unknown key \"bottom\"");
}

static void test_syntax_and_io_errors(void **state)
{
    fixture *f = *state;
    char err[256];
    const char *e = load_error(f, "t = {\n  host = \"x\";\n  port = = 6379;\n};\n");

    char want[128];
    snprintf(want, sizeof(want), "%s:3: syntax error", f->path);
    assert_string_equal(e, want);

    assert_null(insite_config_load(f->s, "/nonexistent/insite.conf", err, sizeof(err)));
    assert_string_equal(err, "/nonexistent/insite.conf: cannot open: No such file or directory");
}

static void test_check(void **state)
{
    fixture *f = *state;
    char *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);

    write_file(f, "t = { port = 1; };\n");
    assert_int_equal(insite_config_check(f->s, f->path, out), 0);
    write_file(f, "t = { port = 0; };\n");
    assert_int_equal(insite_config_check(f->s, f->path, out), 1);
    fclose(out);
    char want[512];
    snprintf(want, sizeof(want), "%s: ok\n%s:1: t.port: must be 1..65535\n", f->path, f->path);
    assert_string_equal(buf, want);
    free(buf);
}

static void test_reload(void **state)
{
    fixture *f = *state;
    char err[256];

    write_file(f, "t = { port = 1111; };\n");
    insite_config *c = insite_config_load(f->s, f->path, err, sizeof(err));
    assert_non_null(c);

    /* a broken file: the running config stays */
    write_file(f, "t = { port = 99999; };\n");
    insite_config *before = c;
    assert_int_equal(insite_config_reload(&c), -1);
    assert_ptr_equal(c, before);
    assert_int_equal(insite_config_int(c, "t.port"), 1111);

    /* a good file: swapped in */
    write_file(f, "t = { port = 2222; };\n");
    assert_int_equal(insite_config_reload(&c), 0);
    assert_int_equal(insite_config_int(c, "t.port"), 2222);
    insite_config_free(c);
}

static void test_duplicate_declaration(void **state)
{
    fixture *f = *state;
    assert_int_equal(insite_config_schema_add(f->s, keys, 1), -1);
}

int main(void)
{
    /* the reload test logs its expected failure; keep test output readable */
    insite_log_set_level(INSITE_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_defaults, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file_values, setup, teardown),
        cmocka_unit_test_setup_teardown(test_durations, setup, teardown),
        cmocka_unit_test_setup_teardown(test_env_overrides, setup, teardown),
        cmocka_unit_test_setup_teardown(test_env_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(test_syntax_and_io_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_check, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reload, setup, teardown),
        cmocka_unit_test_setup_teardown(test_duplicate_declaration, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
