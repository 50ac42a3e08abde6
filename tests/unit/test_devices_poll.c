/*
 * What a v2 device that only polls costs the store (server/devices.h,
 * ps_devices_note_v2; docs/storage.md: a no-op sync stays read-only). The
 * rule, from devices.h: the registry row is written when the device is new
 * or its row is a minute old, or when its acknowledgement moved and
 * tombstones wait on it; an acknowledgement that moved with no tombstone
 * waiting is looked at once, and the polls after it with the same
 * acknowledgement cost no store call at all. Each poll used to count the
 * user's tombstones again until the minutely refresh (10.7 ms a poll at
 * 1,000 chats x 50 messages, commit 9f045c6): counting the store's calls
 * through a wrapper of its ops catches that, where timing would not.
 */
#include "test_util.h"
#include "counting_store.h"
#include "server/devices.h"
#include "server/sync_legacy.h"

typedef struct fixture {
    char dir[64];
    ps_store *store;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    f->store = counting_store_open(f->dir, "devpoll");
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    counting_store_close(f->store, f->dir);
    free(f);
    return 0;
}

#define RETENTION_MS (30LL * 24 * 3600 * 1000)

/* One poll of `device` acknowledging the change sequence `ack` (the
 * registry's slots outlive a store, so each test names its own devices). */
static void poll(fixture *f, const char *device, int64_t ack, int64_t now_ms)
{
    char body[128];
    snprintf(body, sizeof body, "{\"deviceId\":\"%s\",\"client\":\"test\"}", device);
    json_object *req = tu_json(body);
    ps_error err;
    ps_error_clear(&err);
    if (ps_devices_note_v2(f->store, "u", req, "agent", ack, now_ms, RETENTION_MS, &err) != PS_OK)
        fail_msg("note_v2: %s", err.message);
    json_object_put(req);
}

static void repeated_no_op_polls_cost_nothing(void **state)
{
    fixture *f = *state;
    int64_t now = tu_t(0);
    poll(f, "poller", 3, now); /* a new device: its row is written */
    assert_int_equal(write_begins, 1);
    assert_int_equal(last_seen_ack, 3);
    /* the ack moved, no tombstone waits: looked at once, not written */
    poll(f, "poller", 7, now + 1000);
    assert_int_equal(tombstone_counts, 1);
    assert_int_equal(write_begins, 1);
    /* 20 more polls with that ack, within the minute: no store call */
    int before = store_calls;
    for (int i = 0; i < 20; i++)
        poll(f, "poller", 7, now + 2000 + i * 1000);
    assert_int_equal(tombstone_counts, 1);
    assert_int_equal(store_calls, before);
    assert_int_equal(write_begins, 1);
    /* and the ack it saw is written with the row's minutely refresh */
    poll(f, "poller", 7, now + 61000);
    assert_int_equal(write_begins, 2);
    assert_int_equal(last_seen_ack, 7);
}

static void a_moved_ack_with_tombstones_waiting_is_written(void **state)
{
    fixture *f = *state;
    int64_t now = tu_t(0);
    ps_limits limits = ps__limits_default();
    ps_sync_ctx ctx = {.store = f->store,
                       .user = "u",
                       .now_ms = now,
                       .max_skew_ms = 5 * 60 * 1000,
                       .max_response_bytes = 1 << 20,
                       .limits = &limits};
    json_object *ids = tu_json("[\"gone\"]");
    size_t deleted = 0;
    ps_error err;
    assert_int_equal(ps_legacy_delete(&ctx, ids, &deleted, &err), PS_OK);
    json_object_put(ids);
    int64_t tombstones = 0;
    assert_int_equal(ps_store_begin(f->store, false, &err), PS_OK);
    assert_int_equal(real_ops->user_tombstones(f->store, "u", &tombstones, &err), PS_OK);
    assert_int_equal(ps_store_commit(f->store, &err), PS_OK);
    assert_int_equal(tombstones, 1);
    /* a device that has acknowledged nothing holds the tombstone, so the
     * collector's acks never free it (docs/merge.md, tombstone collection) */
    poll(f, "holdout", 0, now);
    poll(f, "collector", 1, now);
    int writes = write_begins;
    /* the ack moved and a tombstone waits on it: written now, each time */
    poll(f, "collector", 5, now + 1000);
    assert_int_equal(write_begins, writes + 1);
    assert_int_equal(last_seen_ack, 5);
    poll(f, "collector", 6, now + 2000);
    assert_int_equal(write_begins, writes + 2);
    assert_int_equal(last_seen_ack, 6);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(repeated_no_op_polls_cost_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(a_moved_ack_with_tombstones_waiting_is_written, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
