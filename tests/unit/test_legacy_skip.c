/*
 * The "sent unchanged" skip of a legacy sync, keyed by (chat, device)
 * (docs/architecture.md, "The path of one legacy POST /sync", step 4): a
 * device re-sending the bytes it last synced a chat with, the chat unchanged
 * since, is answered without the chat being loaded or merged; two devices
 * each re-sending their own bytes of the same chat are both skipped (one
 * hash per chat used to make them evict each other); and a real change from
 * either is still merged. The same holds for a device re-sending the same
 * data in other bytes (another key order, spacing, escapes). What a sync
 * must return is worked out by hand
 * from the merge rules (docs/merge.md: the newer write wins; a value a
 * device only carried along is no write, "The base rule"), not from the
 * code's output. Whether a chat was skipped is seen from outside the sync:
 * the store's chat_load is counted through a wrapper of the store's ops
 * (counting_store.h).
 * Also: a request's chats are validated before the write transaction (a bad
 * chat is refused without one being begun, issue #15).
 */
#include "test_util.h"
#include "counting_store.h"
#include "server/legacy_body.h"
#include "server/sync_legacy.h"
#include "server/legacy_answer.h"

#include <stdlib.h>
#include <unistd.h>

typedef struct fixture {
    char dir[64];
    ps_store *store;
    ps_limits limits;
    int64_t now_ms;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    f->store = counting_store_open(f->dir, "skip");
    f->limits = ps__limits_default();
    f->now_ms = tu_t(60);
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

/* A body taken chat by chat as the endpoint takes it (legacy_body.h):
 * its envelope, parsed, in *req, and its chats through *src (borrowing the
 * returned body, freed by the caller). */
static ps_legacy_body *take_body(fixture *f, const char *body, json_object **req,
                                 ps_chat_source *src)
{
    ps_legacy_body_config cfg = {.max_bytes = SIZE_MAX,
                                 .max_chats = SIZE_MAX,
                                 .max_depth = PS_JSON_MAX_DEPTH,
                                 .envelope_max = PS_ENVELOPE_MAX_BYTES,
                                 .chat_max = PS_CHAT_MAX_BYTES,
                                 .spool_dir = f->dir,
                                 .memory_max = 1 << 20};
    ps_legacy_body *lb = ps_legacy_body_new(&cfg);
    assert_non_null(lb);
    assert_int_equal(ps_legacy_body_feed(lb, body, strlen(body)), PS_OK);
    ps_error err;
    assert_int_equal(ps_legacy_body_finish(lb, &err), PS_OK);
    *req = tu_json(ps_legacy_body_envelope(lb, &(size_t){0}));
    ps_legacy_body_chats(lb, src);
    return lb;
}

/* One /sync of `body` as the endpoint hands it over (the chats as byte
 * ranges of the body); the answer, parsed. *loads: chats loaded. */
static json_object *sync_body(fixture *f, const char *body, int *loads)
{
    ps_error err;
    json_object *req = NULL;
    ps_chat_source src;
    ps_legacy_body *lb = take_body(f, body, &req, &src);
    json_object *dev = json_object_object_get(req, "deviceId");
    ps_sync_ctx ctx = {
        .store = f->store,
        .user = "u",
        .now_ms = f->now_ms,
        .max_skew_ms = 5 * 60 * 1000,
        .max_response_bytes = 1 << 20,
        .limits = &f->limits,
        .device = dev ? json_object_get_string(dev) : NULL,
    };
    ps_legacy_answer *planned = NULL;
    chat_loads = 0;
    ps_code rc = ps_legacy_sync(&ctx, req, &src, &planned, &err);
    if (rc != PS_OK)
        fail_msg("sync failed: %s", err.message);
    *loads = chat_loads;
    /* the whole answer, as the server would stream it */
    ps_dynbuf answer;
    ps__dynbuf_init(&answer, 1 << 20);
    if (!ps_legacy_answer_take_whole(planned, &answer)) {
        bool done = false;
        while (!done)
            assert_int_equal(ps_legacy_answer_next(planned, &answer, &done, &err), PS_OK);
    }
    ps_legacy_answer_free(planned);
    assert_int_equal(ps__dynbuf_adds(&answer, ""), PS_OK); /* NUL-terminated */
    json_object *out = tu_json(answer.data);
    ps__dynbuf_free(&answer);
    json_object_put(req);
    ps_legacy_body_free(lb);
    f->now_ms += 1000;
    return out;
}

/* The chat `id` of an answer's `missing`, or NULL. */
static json_object *missing_chat(json_object *answer, const char *id)
{
    json_object *missing = json_object_object_get(answer, "missing");
    for (size_t i = 0; i < json_object_array_length(missing); i++) {
        json_object *c = json_object_array_get_idx(missing, i);
        if (strcmp(json_object_get_string(json_object_object_get(c, "id")), id) == 0)
            return c;
    }
    return NULL;
}

/* "id1,id2": the ids of a legacy chat's messages, in order. */
static void message_ids(json_object *chat, char *out, size_t size)
{
    json_object *msgs = json_object_object_get(chat, "messages");
    out[0] = '\0';
    for (size_t i = 0; i < json_object_array_length(msgs); i++) {
        const char *id = json_object_get_string(
            json_object_object_get(json_object_array_get_idx(msgs, i), "id"));
        snprintf(out + strlen(out), size - strlen(out), "%s%s", i ? "," : "", id);
    }
}

/* Device A's bytes of chat c, and device B's bytes of the same content
 * (keys in another order, spaces): the same data, other bytes. */
#define A1                                                                                         \
    "{\"deviceId\":\"A\",\"chats\":[{\"id\":\"c\",\"title\":\"Trip\","                             \
    "\"messages\":[{\"id\":\"m1\",\"role\":\"user\",\"content\":\"hi\","                           \
    "\"timestamp\":\"2024-01-15T10:00:00.000Z\"}],"                                                \
    "\"lastModified\":\"2024-01-15T10:00:00.000Z\",\"updatedAtLamport\":[1,\"A\"]}]}"
#define B1                                                                                         \
    "{\"chats\": [{\"updatedAtLamport\": [1, \"A\"], \"lastModified\": "                           \
    "\"2024-01-15T10:00:00.000Z\", \"messages\": [{\"timestamp\": "                                \
    "\"2024-01-15T10:00:00.000Z\", \"content\": \"hi\", \"role\": \"user\", \"id\": \"m1\"}], "    \
    "\"title\": \"Trip\", \"id\": \"c\"}], \"deviceId\": \"B\"}"

static void alternating_devices_are_each_skipped(void **state)
{
    fixture *f = *state;
    int loads;
    json_object *ans = sync_body(f, A1, &loads);
    assert_int_equal(loads, 1); /* news: merged */
    assert_null(missing_chat(ans, "c"));
    json_object_put(ans);
    ans = sync_body(f, B1, &loads);
    assert_int_equal(loads, 1); /* B's bytes were never seen: merged, nothing changes */
    assert_null(missing_chat(ans, "c"));
    json_object_put(ans);
    for (int round = 0; round < 3; round++) {
        ans = sync_body(f, A1, &loads);
        assert_int_equal(loads, 0); /* A's own bytes again: skipped */
        assert_null(missing_chat(ans, "c"));
        json_object_put(ans);
        ans = sync_body(f, B1, &loads);
        assert_int_equal(loads, 0); /* and B's: skipped, A's did not evict them */
        assert_null(missing_chat(ans, "c"));
        json_object_put(ans);
    }
}

/* B adds m2 (a newer write); A still re-sends its old bytes. */
#define B2                                                                                         \
    "{\"deviceId\":\"B\",\"chats\":[{\"id\":\"c\",\"title\":\"Trip\",\"messages\":["               \
    "{\"id\":\"m1\",\"role\":\"user\",\"content\":\"hi\","                                         \
    "\"timestamp\":\"2024-01-15T10:00:00.000Z\"},"                                                 \
    "{\"id\":\"m2\",\"role\":\"assistant\",\"content\":\"hello\","                                 \
    "\"timestamp\":\"2024-01-15T10:01:00.000Z\"}],"                                                \
    "\"lastModified\":\"2024-01-15T10:01:00.000Z\",\"updatedAtLamport\":[2,\"B\"]}]}"
/* A renames the chat (newer than everything), from the copy it holds. */
#define A3                                                                                         \
    "{\"deviceId\":\"A\",\"chats\":[{\"id\":\"c\",\"title\":\"Rome\",\"messages\":["               \
    "{\"id\":\"m1\",\"role\":\"user\",\"content\":\"hi\","                                         \
    "\"timestamp\":\"2024-01-15T10:00:00.000Z\"},"                                                 \
    "{\"id\":\"m2\",\"role\":\"assistant\",\"content\":\"hello\","                                 \
    "\"timestamp\":\"2024-01-15T10:01:00.000Z\"}],"                                                \
    "\"lastModified\":\"2024-01-15T10:02:00.000Z\",\"updatedAtLamport\":[9,\"A\"]}]}"

static void a_real_change_from_either_is_merged(void **state)
{
    fixture *f = *state;
    int loads;
    char ids[64];
    json_object_put(sync_body(f, A1, &loads));
    json_object_put(sync_body(f, B1, &loads));
    json_object_put(sync_body(f, A1, &loads));
    assert_int_equal(loads, 0);

    /* B's new message is a write: merged; B holds all of it */
    json_object *ans = sync_body(f, B2, &loads);
    assert_int_equal(loads, 1);
    assert_null(missing_chat(ans, "c"));
    json_object_put(ans);

    /* A's old bytes are not skipped any more (the chat changed since), and
     * they carry m1 and the title along: no write deletes m2. A lacks m2,
     * so the chat goes back to it with both messages. */
    ans = sync_body(f, A1, &loads);
    assert_int_equal(loads, 1);
    json_object *c = missing_chat(ans, "c");
    assert_non_null(c);
    message_ids(c, ids, sizeof ids);
    assert_string_equal(ids, "m1,m2");
    assert_string_equal(json_object_get_string(json_object_object_get(c, "title")), "Trip");
    json_object_put(ans);

    /* A's rename is a newer write than B's title: it wins, and B's re-send
     * of its own (now older) bytes is merged and gets the chat back. */
    ans = sync_body(f, A3, &loads);
    assert_int_equal(loads, 1);
    assert_null(missing_chat(ans, "c"));
    json_object_put(ans);
    ans = sync_body(f, B2, &loads);
    assert_int_equal(loads, 1);
    c = missing_chat(ans, "c");
    assert_non_null(c);
    assert_string_equal(json_object_get_string(json_object_object_get(c, "title")), "Rome");
    message_ids(c, ids, sizeof ids);
    assert_string_equal(ids, "m1,m2");
    json_object_put(ans);
}

/* A1's data in other bytes: keys in another order, spaces, an escaped é. */
#define A1_OTHER_BYTES                                                                             \
    "{ \"chats\": [ { \"messages\": [ { \"content\": \"hi\", \"id\": \"m1\", "                     \
    "\"timestamp\": \"2024-01-15T10:00:00.000Z\", \"role\": \"user\" } ], "                        \
    "\"updatedAtLamport\": [ 1, \"A\" ], \"title\": \"Trip\", \"id\": \"c\", "                     \
    "\"lastModified\": \"2024-01-15T10:00:00.000Z\" } ], \"deviceId\": \"A\" }"
/* A's rename (A3's data) in other bytes */
#define A3_OTHER_BYTES                                                                             \
    "{\"deviceId\":\"A\",\"chats\":[{\"updatedAtLamport\":[9,\"A\"],"                              \
    "\"lastModified\":\"2024-01-15T10:02:00.000Z\",\"title\":\"Rom\\u0065\",\"id\":\"c\","         \
    "\"messages\":[{\"role\":\"user\",\"id\":\"m1\",\"content\":\"hi\","                           \
    "\"timestamp\":\"2024-01-15T10:00:00.000Z\"},"                                                 \
    "{\"role\":\"assistant\",\"id\":\"m2\",\"content\":\"hello\","                                 \
    "\"timestamp\":\"2024-01-15T10:01:00.000Z\"}]}]}"

static void the_same_data_in_other_bytes_is_skipped(void **state)
{
    fixture *f = *state;
    int loads;
    char ids[64];
    json_object_put(sync_body(f, A1, &loads));
    /* the same data, other bytes: merging it would change nothing */
    json_object *ans = sync_body(f, A1_OTHER_BYTES, &loads);
    assert_int_equal(loads, 0);
    assert_null(missing_chat(ans, "c"));
    json_object_put(ans);
    /* and back to the first bytes: the same data again */
    ans = sync_body(f, A1, &loads);
    assert_int_equal(loads, 0);
    json_object_put(ans);
    /* B adds m2: A's data in other bytes is not skipped, A gets m2 */
    json_object_put(sync_body(f, B2, &loads));
    ans = sync_body(f, A1_OTHER_BYTES, &loads);
    assert_int_equal(loads, 1);
    json_object *c = missing_chat(ans, "c");
    assert_non_null(c);
    message_ids(c, ids, sizeof ids);
    assert_string_equal(ids, "m1,m2");
    json_object_put(ans);
    /* a real change in other bytes (A renames, newest write) is merged:
     * B's re-send of its older bytes gets the new title back */
    ans = sync_body(f, A3_OTHER_BYTES, &loads);
    assert_int_equal(loads, 1);
    assert_null(missing_chat(ans, "c"));
    json_object_put(ans);
    ans = sync_body(f, B2, &loads);
    c = missing_chat(ans, "c");
    assert_non_null(c);
    assert_string_equal(json_object_get_string(json_object_object_get(c, "title")), "Rome");
    json_object_put(ans);
}

/* The registry's row of device `id` of user "u" (docs/protocol.md,
 * "Devices"), copied. */
typedef struct device_view {
    const char *id;
    bool found;
    int64_t last_seen_ms, acked_seq;
    char protocol[16];
} device_view;

static int view_row(void *cls, const ps_device_row *row)
{
    device_view *v = cls;
    if (strcmp(row->id, v->id) != 0)
        return 0;
    v->found = true;
    v->last_seen_ms = row->last_seen_ms;
    v->acked_seq = row->acked_seq;
    snprintf(v->protocol, sizeof v->protocol, "%s", row->protocol);
    return 1;
}

static device_view device_row(fixture *f, const char *id)
{
    device_view v = {.id = id};
    ps_error err;
    assert_int_equal(f->store->ops->device_list(f->store, "u", view_row, &v, &err), PS_OK);
    assert_true(v.found);
    return v;
}

static int64_t last_sync_ms(fixture *f)
{
    ps_store_stats st;
    ps_error err;
    assert_int_equal(f->store->ops->stats(f->store, &st, &err), PS_OK);
    return st.last_sync_ms;
}

/* Device B's new chat d: a write that moves the user's change sequence. */
#define B_NEW_CHAT                                                                                 \
    "{\"deviceId\":\"B\",\"chats\":[{\"id\":\"d\",\"title\":\"Other\",\"messages\":[],"            \
    "\"lastModified\":\"2024-01-16T10:00:00.000Z\",\"updatedAtLamport\":[3,\"B\"]}]}"

/* A re-sync that changes nothing commits nothing while the store already
 * has what that sync would write, near enough (docs/protocol.md,
 * "Devices"): the device's row from a legacy sync less than a minute ago
 * with the same acknowledgement, the user's last sync as recent. No WAL
 * write, no fsync. The registry and the last sync time are written again
 * once a minute old, the acknowledgement at once when it moves, and every
 * answer is what the merge rules give. */
static void a_resync_changing_nothing_commits_nothing(void **state)
{
    fixture *f = *state;
    int loads;
    json_object_put(sync_body(f, A1, &loads)); /* news: merged and committed */
    device_view first = device_row(f, "A");
    assert_string_equal(first.protocol, "legacy");

    write_commits = device_seens = 0;
    int64_t at = f->now_ms;
    json_object *ans = sync_body(f, A1, &loads);
    assert_int_equal(loads, 0);
    assert_null(missing_chat(ans, "c"));
    json_object_put(ans);
    assert_int_equal(write_commits, 0); /* nothing written */
    assert_int_equal(device_seens, 0);
    assert_true(last_sync_ms(f) == first.last_seen_ms); /* the time lags, by < 1 min */
    assert_true(at - first.last_seen_ms < 60000);
    device_view now = device_row(f, "A");
    assert_true(now.last_seen_ms == first.last_seen_ms && now.acked_seq == first.acked_seq);

    /* a minute after the row was written, the registry is written again */
    f->now_ms = first.last_seen_ms + 60000;
    ans = sync_body(f, A1, &loads);
    assert_int_equal(loads, 0);
    json_object_put(ans);
    assert_int_equal(write_commits, 1);
    assert_true(device_row(f, "A").last_seen_ms == first.last_seen_ms + 60000);
    assert_true(last_sync_ms(f) == first.last_seen_ms + 60000);

    /* another device's new chat moves the sequence: A's unchanged chat is
     * still skipped, A gets d, and A's new acknowledgement is written */
    json_object_put(sync_body(f, B_NEW_CHAT, &loads));
    write_commits = device_seens = 0;
    ans = sync_body(f, A1, &loads);
    assert_int_equal(loads, 0);
    assert_non_null(missing_chat(ans, "d"));
    json_object_put(ans);
    assert_int_equal(write_commits, 1);
    assert_int_equal(device_seens, 1);
    device_view moved = device_row(f, "A");
    assert_true(moved.acked_seq > first.acked_seq);
    assert_true(moved.acked_seq == device_row(f, "B").acked_seq); /* both hold all of it */

    /* and then it is quiet again (A has not taken d: it is sent again) */
    write_commits = 0;
    ans = sync_body(f, A1, &loads);
    assert_non_null(missing_chat(ans, "d"));
    json_object_put(ans);
    assert_int_equal(write_commits, 0);

    /* the same data in other bytes rewrites A's sent row: committed */
    ans = sync_body(f, A1_OTHER_BYTES, &loads);
    assert_int_equal(loads, 0);
    json_object_put(ans);
    assert_int_equal(write_commits, 1);
}

/* Registers device `id` of user `user` as a legacy /sync at `at` would,
 * acknowledging user "u"'s current sequence (a row that would count as
 * current for u's quiet commit, were it the syncing device's). */
static void register_device(fixture *f, const char *user, const char *id, int64_t at)
{
    ps_error err;
    ps_user u, owner;
    assert_int_equal(ps_store_begin(f->store, true, &err), PS_OK);
    assert_int_equal(f->store->ops->user_load(f->store, "u", &u, &err), PS_OK);
    assert_int_equal(f->store->ops->user_load(f->store, user, &owner, &err), PS_OK);
    assert_int_equal(f->store->ops->device_seen(f->store, user, id, "", "legacy", u.seq, at, &err),
                     PS_OK);
    assert_int_equal(ps_store_commit(f->store, &err), PS_OK);
}

/* The quiet commit judges the syncing device by its own registry row, not
 * by any other: among hundreds of the user's devices whose rows are all
 * fresh, legacy and acknowledging the current sequence (ids sorting before
 * and after "A", seen before and after it), and an "A" of another user,
 * A's own stale row still makes its re-sync commit; once A's row is fresh
 * again, the re-sync is quiet. */
static void the_syncing_devices_own_row_decides_among_many(void **state)
{
    fixture *f = *state;
    int loads;
    json_object_put(sync_body(f, A1, &loads)); /* A's row, at t0 */
    device_view first = device_row(f, "A");
    char id[32];
    const char *near[] = {"", "0", "@", "A0", "AA", "a", "B", "Z"};
    /* a minute later: A's row is stale, every other row fresh */
    f->now_ms = first.last_seen_ms + 60000;
    for (size_t i = 0; i < sizeof near / sizeof *near; i++)
        register_device(f, "u", near[i], f->now_ms);
    for (int i = 0; i < 300; i++) {
        snprintf(id, sizeof id, "dev-%03d", i);
        register_device(f, "u", id, f->now_ms);
    }
    register_device(f, "v", "A", f->now_ms);
    /* B syncs nothing new: the user's last sync time is fresh again, the
     * sequence unmoved */
    json_object_put(sync_body(f, "{\"deviceId\":\"B\",\"chats\":[]}", &loads));
    assert_int_equal(device_row(f, "A").acked_seq, device_row(f, "B").acked_seq);
    assert_int_equal(device_row(f, "A").acked_seq, device_row(f, "dev-150").acked_seq);

    write_commits = device_seens = 0;
    json_object *ans = sync_body(f, A1, &loads);
    assert_int_equal(loads, 0);
    assert_null(missing_chat(ans, "c"));
    json_object_put(ans);
    assert_int_equal(write_commits, 1); /* A's own row was a minute old */
    assert_int_equal(device_seens, 1);
    device_view now = device_row(f, "A");
    assert_true(now.last_seen_ms > first.last_seen_ms + 60000);

    write_commits = device_seens = 0;
    ans = sync_body(f, A1, &loads);
    assert_int_equal(loads, 0);
    assert_null(missing_chat(ans, "c"));
    json_object_put(ans);
    assert_int_equal(write_commits, 0); /* now it is fresh: nothing written */
    assert_int_equal(device_seens, 0);
    assert_true(device_row(f, "A").last_seen_ms == now.last_seen_ms);
}

static fixture *racing;

static void b_adds_a_message(void)
{
    int loads;
    json_object_put(sync_body(racing, B2, &loads));
}

/* A's re-send of its own bytes is found unchanged in the read transaction;
 * B's new message lands before A's write transaction: A's chat is merged
 * after all, and A gets m2. */
static void a_write_between_the_two_transactions_is_seen(void **state)
{
    fixture *f = *state;
    int loads;
    char ids[64];
    json_object_put(sync_body(f, A1, &loads));
    json_object_put(sync_body(f, B1, &loads));
    racing = f;
    before_write = b_adds_a_message;
    json_object *ans = sync_body(f, A1, &loads);
    assert_null(before_write); /* it ran */
    json_object *c = missing_chat(ans, "c");
    assert_non_null(c);
    message_ids(c, ids, sizeof ids);
    assert_string_equal(ids, "m1,m2");
    json_object_put(ans);
}

/* A valid chat, then one whose message has no id (docs/protocol.md: every
 * message needs one): refused as a whole, before any write transaction. */
static void a_bad_chat_is_refused_before_the_write_transaction(void **state)
{
    fixture *f = *state;
    int loads;
    json_object_put(sync_body(f, A1, &loads));
    static const char bad[] =
        "{\"deviceId\":\"A\",\"chats\":[{\"id\":\"d\",\"title\":\"ok\",\"messages\":[]},"
        "{\"id\":\"e\",\"messages\":[{\"role\":\"user\",\"content\":\"no id\"}]}]}";
    ps_error err;
    json_object *req = NULL;
    ps_chat_source src;
    ps_legacy_body *lb = take_body(f, bad, &req, &src);
    ps_sync_ctx ctx = {.store = f->store,
                       .user = "u",
                       .now_ms = f->now_ms,
                       .max_skew_ms = 300000,
                       .max_response_bytes = 1 << 20,
                       .limits = &f->limits};
    ps_legacy_answer *answer = NULL;
    write_begins = 0;
    assert_int_equal(ps_legacy_sync(&ctx, req, &src, &answer, &err), PS_ERR_INVALID);
    assert_int_equal(err.chat_index, 1);
    assert_int_equal(write_begins, 0);
    assert_null(answer);
    json_object_put(req);
    ps_legacy_body_free(lb);
    /* nothing of it landed: d is not stored, A's next re-send is still a skip */
    json_object *ans = sync_body(f, A1, &loads);
    assert_int_equal(loads, 0);
    assert_null(missing_chat(ans, "d"));
    json_object_put(ans);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(alternating_devices_are_each_skipped, setup, teardown),
        cmocka_unit_test_setup_teardown(a_real_change_from_either_is_merged, setup, teardown),
        cmocka_unit_test_setup_teardown(the_same_data_in_other_bytes_is_skipped, setup, teardown),
        cmocka_unit_test_setup_teardown(a_write_between_the_two_transactions_is_seen, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(a_resync_changing_nothing_commits_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(the_syncing_devices_own_row_decides_among_many, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(a_bad_chat_is_refused_before_the_write_transaction, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
