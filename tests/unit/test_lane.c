/*
 * The lane (server/lane.h), the parts that need no live connection: a large
 * body's buffer given back is handed to the next large body that fits in
 * it, at most one is kept per slot (the rest are freed: the lane's memory
 * stays at slots × body), a buffer too small is not handed out, kept
 * buffers are freed once the lane has been idle for its keep time; and
 * once shutdown has turned the waiting away, a request that finds no free
 * slot is turned away at once instead of waiting for a resume that would
 * never come. Leaks show under ASan.
 */
#include "test_util.h"
#include "server/lane.h"
#include "core/timestamp.h"

#include <stdlib.h>
#include <time.h>

static void kept_buffer_is_reused_when_it_fits(void **state)
{
    ps_lane *lane = ps_lane_new(2, 1, 60000);
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
    ps_lane *lane = ps_lane_new(2, 1, 60000);
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
    ps_lane *lane = ps_lane_new(1, 2, 60000);
    assert_non_null(lane);
    ps_lane_buffer_give(lane, malloc(64), 64);
    ps_lane_free(lane); /* ASan: no leak */
}

static void kept_buffers_are_freed_when_idle(void **state)
{
    ps_lane *lane = ps_lane_new(1, 1, 50);
    assert_non_null(lane);
    ps_lane_buffer_give(lane, malloc(4096), 4096);
    /* The worker frees it 50 ms after; allow a slow machine 10 s. */
    int64_t deadline = ps__time_monotonic_ms() + 10000;
    while (ps_lane_kept_bytes(lane) != 0 && ps__time_monotonic_ms() < deadline) {
        struct timespec tick = {.tv_sec = 0, .tv_nsec = 10 * 1000 * 1000};
        nanosleep(&tick, NULL);
    }
    assert_int_equal(ps_lane_kept_bytes(lane), 0);
    ps_lane_free(lane);
}

static void after_the_turn_away_no_one_waits(void **state)
{
    ps_lane *lane = ps_lane_new(1, 1, 60000);
    assert_non_null(lane);
    ps_lane_ticket first = {0}, late = {0};
    /* a free slot is taken without touching the connection */
    assert_int_equal(ps_lane_enter(lane, &first, NULL), PS_LANE_ADMITTED);
    assert_int_equal(ps_lane_turn_away_waiting(lane), 0);
    /* no slot and the lane closed: turned away, not suspended */
    assert_int_equal(ps_lane_enter(lane, &late, NULL), PS_LANE_TURNED_AWAY);
    ps_lane_leave(lane, &late); /* holds nothing: a no-op */
    ps_lane_leave(lane, &first);
    ps_lane_free(lane);
}

/* --min-upload-rate: judged only after the grace, on the average since the
 * slot was taken; 0 turns it off. */
static void upload_rate_is_judged_after_the_grace(void **state)
{
    (void)state;
    const size_t rate = 16 * 1024;
    /* inside the grace, even nothing is fine */
    assert_false(ps_lane_upload_too_slow(0, PS_LANE_UPLOAD_GRACE_MS, rate));
    /* past it: 10 s at 16 KiB/s is 160 KiB */
    assert_true(ps_lane_upload_too_slow(160 * 1024 - 1, 10000, rate));
    assert_false(ps_lane_upload_too_slow(160 * 1024, 10000, rate));
    /* a byte a second, the trickle of issue 16 */
    assert_true(ps_lane_upload_too_slow(6, PS_LANE_UPLOAD_GRACE_MS + 1000, rate));
    assert_false(ps_lane_upload_too_slow(0, 3600 * 1000, 0));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(kept_buffer_is_reused_when_it_fits),
        cmocka_unit_test(at_most_one_buffer_per_slot_is_kept),
        cmocka_unit_test(lane_frees_what_it_keeps),
        cmocka_unit_test(kept_buffers_are_freed_when_idle),
        cmocka_unit_test(after_the_turn_away_no_one_waits),
        cmocka_unit_test(upload_rate_is_judged_after_the_grace),
    };
    return cmocka_run_group_tests_name("lane", tests, NULL, NULL);
}
