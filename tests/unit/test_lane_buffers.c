/*
 * The lane's kept buffers (server/lane.h): a large body's buffer given back
 * is handed to the next large body that fits in it, at most one is kept per
 * slot (the rest are freed: the lane's memory stays at slots × body), and a
 * buffer too small for a body is not handed out. Leaks show under ASan.
 */
#include "test_util.h"
#include "server/lane.h"

#include <stdlib.h>

static void kept_buffer_is_reused_when_it_fits(void **state)
{
    ps_lane *lane = ps_lane_new(2, 1);
    assert_non_null(lane);
    size_t cap = 0;
    assert_null(ps_lane_buffer_take(lane, 100, &cap)); /* nothing kept yet */
    char *buf = malloc(4096);
    assert_non_null(buf);
    ps_lane_buffer_give(lane, buf, 4096);
    assert_null(ps_lane_buffer_take(lane, 5000, &cap)); /* too small */
    char *again = ps_lane_buffer_take(lane, 4096, &cap);
    assert_ptr_equal(again, buf);
    assert_int_equal(cap, 4096);
    assert_null(ps_lane_buffer_take(lane, 10, &cap)); /* handed out once */
    free(again);
    ps_lane_free(lane);
}

static void at_most_one_buffer_per_slot_is_kept(void **state)
{
    ps_lane *lane = ps_lane_new(2, 1);
    assert_non_null(lane);
    for (int i = 0; i < 5; i++)
        ps_lane_buffer_give(lane, malloc(1000 + (size_t)i), 1000 + (size_t)i);
    size_t cap = 0;
    int taken = 0;
    char *p;
    while ((p = ps_lane_buffer_take(lane, 1, &cap)) != NULL) {
        free(p);
        taken++;
    }
    assert_int_equal(taken, 2);
    ps_lane_free(lane); /* kept buffers are freed with the lane */
}

static void lane_frees_what_it_keeps(void **state)
{
    ps_lane *lane = ps_lane_new(1, 2);
    assert_non_null(lane);
    ps_lane_buffer_give(lane, malloc(64), 64);
    ps_lane_free(lane); /* ASan: no leak */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(kept_buffer_is_reused_when_it_fits),
        cmocka_unit_test(at_most_one_buffer_per_slot_is_kept),
        cmocka_unit_test(lane_frees_what_it_keeps),
    };
    return cmocka_run_group_tests_name("lane buffers", tests, NULL, NULL);
}
