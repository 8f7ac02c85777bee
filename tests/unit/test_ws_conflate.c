/*
 * Unit tests for conflation (ngx_insite_ws/insite_ws_conflate.c): the run
 * of a subscriber's queued messages of one channel, and the conflated
 * message a client checks its seqs against.
 */

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <jansson.h>

#include "../../ngx_insite_ws/insite_ws_conflate.h"


static void
test_run_push_contiguous(void **state)
{
    insite_ws_cq_t       q;
    insite_ws_cq_link_t  l[4];

    (void) state;

    insite_ws_cq_init(&q);
    assert_int_equal(q.n, 0);
    assert_null(insite_ws_cq_pop(&q));

    assert_int_equal(insite_ws_cq_push(&q, &l[0], 5, 5, 100), 0);
    assert_int_equal(insite_ws_cq_push(&q, &l[1], 6, 9, 120), 0);  /* merged */
    assert_int_equal(insite_ws_cq_push(&q, &l[2], 10, 10, 100), 0);
    assert_int_equal(q.n, 3);
    assert_int_equal(q.bytes, 320);
    assert_int_equal(insite_ws_cq_first(&q), 5);

    /* not the next seq: refused, the run unchanged */
    assert_int_equal(insite_ws_cq_push(&q, &l[3], 12, 12, 100), -1);
    assert_int_equal(insite_ws_cq_push(&q, &l[3], 10, 10, 100), -1);
    assert_int_equal(insite_ws_cq_push(&q, &l[3], 12, 11, 100), -1);
    assert_int_equal(q.n, 3);
    assert_int_equal(q.bytes, 320);
}


static void
test_run_remove_and_pop(void **state)
{
    insite_ws_cq_t       q;
    insite_ws_cq_link_t  l[3];

    (void) state;

    insite_ws_cq_init(&q);
    insite_ws_cq_push(&q, &l[0], 1, 1, 10);
    insite_ws_cq_push(&q, &l[1], 2, 2, 20);
    insite_ws_cq_push(&q, &l[2], 3, 3, 30);

    /* the oldest started on the wire: the run starts at 2 */
    insite_ws_cq_remove(&q, &l[0]);
    assert_int_equal(q.n, 2);
    assert_int_equal(q.bytes, 50);
    assert_int_equal(insite_ws_cq_first(&q), 2);

    assert_ptr_equal(insite_ws_cq_pop(&q), &l[1]);
    assert_ptr_equal(insite_ws_cq_pop(&q), &l[2]);
    assert_null(insite_ws_cq_pop(&q));
    assert_int_equal(q.n, 0);
    assert_int_equal(q.bytes, 0);

    /* an empty run takes any seq again */
    assert_int_equal(insite_ws_cq_push(&q, &l[0], 40, 40, 10), 0);
}


static void
test_run_due(void **state)
{
    insite_ws_cq_t       q;
    insite_ws_cq_link_t  l[2];

    (void) state;

    insite_ws_cq_init(&q);

    /* nothing queued: nothing to merge, whatever the size */
    assert_int_equal(insite_ws_cq_due(&q, 1, 1000000, 0, 1), 0);

    insite_ws_cq_push(&q, &l[0], 1, 1, 600);
    assert_int_equal(insite_ws_cq_due(&q, 2, 400, 1000, 0), 0);   /* = after */
    assert_int_equal(insite_ws_cq_due(&q, 2, 401, 1000, 0), 1);
    assert_int_equal(insite_ws_cq_due(&q, 2, 10, 1000, 1), 1);    /* full */
    assert_int_equal(insite_ws_cq_due(&q, 2, 10, 0, 0), 1);       /* after 0 */

    /* a seq that does not follow never merges */
    assert_int_equal(insite_ws_cq_due(&q, 3, 401, 1000, 1), 0);
    assert_int_equal(insite_ws_cq_due(&q, 1, 401, 1000, 1), 0);

    insite_ws_cq_push(&q, &l[1], 2, 2, 600);
    assert_int_equal(insite_ws_cq_due(&q, 3, 1, 1000, 0), 1);
}


static json_t *
conflated(const char *msg, uint64_t n, uint64_t first, size_t *len)
{
    u_char        out[512];
    json_error_t  err;

    *len = insite_ws_conflate_message(out, sizeof(out), (const u_char *) msg,
                                      strlen(msg), n, first);
    if (*len == 0) {
        return NULL;
    }

    return json_loadb((const char *) out, *len, JSON_REJECT_DUPLICATES, &err);
}


static void
test_message_fields(void **state)
{
    size_t   len;
    json_t  *j;

    (void) state;

    j = conflated("{\"type\":\"stock_update\",\"channel\":\"stock_updates:AAPL\","
                  "\"seq\":42,\"data\":{\"price\":1.5}}", 7, 36, &len);
    assert_non_null(j);
    assert_int_equal(json_integer_value(json_object_get(j, "conflated")), 7);
    assert_int_equal(json_integer_value(json_object_get(j, "first_seq")), 36);
    assert_int_equal(json_integer_value(json_object_get(j, "seq")), 42);
    assert_string_equal(json_string_value(json_object_get(j, "type")),
                        "stock_update");
    assert_true(json_real_value(json_object_get(json_object_get(j, "data"),
                                                "price")) == 1.5);
    json_decref(j);

    /* an empty object, white space inside */
    j = conflated("{ \n}", 2, 1, &len);
    assert_non_null(j);
    assert_int_equal(json_object_size(j), 2);
    json_decref(j);

    /* the largest numbers fit the promised extra room */
    {
        u_char       out[256];
        const char  *m = "{\"seq\":1}";
        char         want[256];

        len = insite_ws_conflate_message(out, strlen(m)
                                              + INSITE_WS_CONFLATE_EXTRA,
                                         (const u_char *) m, strlen(m),
                                         UINT64_MAX, UINT64_MAX);
        snprintf(want, sizeof(want), "{\"conflated\":%llu,\"first_seq\":%llu,"
                 "\"seq\":1}", (unsigned long long) UINT64_MAX,
                 (unsigned long long) UINT64_MAX);
        assert_int_equal(len, strlen(want));
        assert_memory_equal(out, want, len);
    }
}


static void
test_message_refused(void **state)
{
    u_char       out[64];
    const char  *msg = "{\"seq\":1,\"data\":\"0123456789\"}";

    (void) state;

    /* not an object */
    assert_int_equal(insite_ws_conflate_message(out, sizeof(out),
                         (const u_char *) "[1]", 3, 2, 1), 0);
    assert_int_equal(insite_ws_conflate_message(out, sizeof(out),
                         (const u_char *) "", 0, 2, 1), 0);
    assert_int_equal(insite_ws_conflate_message(out, sizeof(out),
                         (const u_char *) "{  ", 3, 2, 1), 0);

    /* too small: refused, never written past cap */
    assert_int_equal(insite_ws_conflate_message(out, 40,
                         (const u_char *) msg, strlen(msg), 2, 1), 0);
    assert_int_equal(insite_ws_conflate_message(out, 10,
                         (const u_char *) msg, strlen(msg), 2, 1), 0);
    assert_int_not_equal(insite_ws_conflate_message(out, sizeof(out),
                         (const u_char *) msg, strlen(msg), 2, 1), 0);
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_run_push_contiguous),
        cmocka_unit_test(test_run_remove_and_pop),
        cmocka_unit_test(test_run_due),
        cmocka_unit_test(test_message_fields),
        cmocka_unit_test(test_message_refused),
    };

    return cmocka_run_group_tests_name("ws_conflate", tests, NULL, NULL);
}
