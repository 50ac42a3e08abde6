/*
 * The merge (core/merge.h, core/chat.h) rule by rule, each in both orders:
 * per-field last-writer-wins in the write order of docs/merge.md (writes
 * with a Lamport counter by counter, device, time, and all newer than writes
 * without one, which go by time, device), equal stamps broken by value
 * (a tombstone lowest); messages as a set keyed by id (union) with
 * last-writer-wins per message and tombstones; whole-chat deletion against a
 * newer write (the chat comes back), an older or equal one (it stays deleted),
 * and the tuple clients are shown for the newest deletion; createdAt
 * earliest, updatedAt/lastModified latest; the largest Lamport tuple; the
 * `changed` flag. Then the seed document's three conflict scenarios, as
 * DESIGN.md and docs/merge.md say polysync answers them, through the legacy
 * conversions, for Lamport clients and for time-only clients.
 */
#include "test_util.h"
#include "core/merge.h"

#define NOW tu_t(24 * 60) /* the server's clock: a day after the scenario times */

static ps_chat *chat_with_field(const char *name, const char *value, ps_stamp s)
{
    ps_chat *chat = ps__chat_new("c");
    bool changed;
    assert_int_equal(
        ps__chat_put_field(chat, name, value ? json_object_new_string(value) : NULL, &s, &changed),
        PS_OK);
    assert_true(changed);
    return chat;
}

static ps_chat *chat_with_message(const char *id, const char *content, ps_stamp s)
{
    ps_chat *chat = ps__chat_new("c");
    json_object *msg = NULL;
    if (content) {
        msg = json_object_new_object();
        json_object_object_add(msg, "id", json_object_new_string(id));
        json_object_object_add(msg, "role", json_object_new_string("user"));
        json_object_object_add(msg, "content", json_object_new_string(content));
    }
    assert_int_equal(ps__chat_append_message(chat, id, msg, &s, 0), PS_OK);
    ps__chat_normalize(chat);
    return chat;
}

/* merge(copy of a, b) */
static ps_chat *merged(const ps_chat *a, const ps_chat *b)
{
    ps_chat *out = ps__chat_new(a->id);
    bool changed;
    assert_int_equal(ps__chat_merge(out, a, &changed), PS_OK);
    assert_int_equal(ps__chat_merge(out, b, &changed), PS_OK);
    return out;
}

/* Merges both ways, checks both give the same state, returns one. */
static ps_chat *merged_both_ways(const ps_chat *a, const ps_chat *b)
{
    ps_chat *ab = merged(a, b), *ba = merged(b, a);
    assert_true(tu_same_state(ab, ba));
    ps__chat_free(ba);
    return ab;
}

static const char *title_of(const ps_chat *chat)
{
    const ps_field *f = ps__chat_field(chat, "title");
    assert_non_null(f);
    return f->value ? json_object_get_string(f->value) : NULL;
}

static const char *content_of(const ps_chat *chat, const char *id)
{
    const ps_message *m = ps__chat_message(chat, id);
    assert_non_null(m);
    return m->value ? tu_get_str(m->value, "content") : NULL;
}

static void field_newer_timestamp_wins(void **state)
{
    /* writes without a Lamport counter: by time first */
    ps_chat *a = chat_with_field("title", "old", tu_stamp(1000, 0, "zzz"));
    ps_chat *b = chat_with_field("title", "new", tu_stamp(2000, 0, "aaa"));
    ps_chat *m = merged_both_ways(a, b);
    assert_string_equal(title_of(m), "new");
    assert_int_equal(ps__chat_field(m, "title")->stamp.ts, 2000);
    assert_string_equal(ps__chat_field(m, "title")->stamp.device, "aaa");
    ps__chat_free(m);
    ps__chat_free(a);
    ps__chat_free(b);
}

static void fields_are_independent(void **state)
{
    ps_chat *a = chat_with_field("title", "A title", tu_stamp(2000, 0, "a"));
    ps_chat *b = chat_with_field("model", "B model", tu_stamp(1000, 0, "b"));
    bool changed;
    ps_stamp old = tu_stamp(500, 0, "b");
    assert_int_equal(
        ps__chat_put_field(b, "title", json_object_new_string("B title"), &old, &changed), PS_OK);
    ps_chat *m = merged_both_ways(a, b);
    assert_int_equal(m->nfields, 2);
    assert_string_equal(title_of(m), "A title");
    assert_string_equal(json_object_get_string(ps__chat_field(m, "model")->value), "B model");
    ps__chat_free(m);
    ps__chat_free(a);
    ps__chat_free(b);
}

/* Writes with a Lamport counter: the higher counter wins, whatever the time. */
static void higher_counter_wins_whatever_the_time(void **state)
{
    ps_chat *a = chat_with_field("title", "low", tu_stamp(9000, 3, "zzz"));
    ps_chat *b = chat_with_field("title", "high", tu_stamp(1000, 4, "aaa"));
    ps_chat *m = merged_both_ways(a, b);
    assert_string_equal(title_of(m), "high");
    ps__chat_free(m);
    ps__chat_free(a);
    ps__chat_free(b);
}

/* Any write with a counter is newer than any write without one. */
static void counter_write_beats_time_only_write(void **state)
{
    ps_chat *a = chat_with_field("title", "time only", tu_stamp(tu_t(60), 0, "zzz"));
    ps_chat *b = chat_with_field("title", "lamport", tu_stamp(0, 1, ""));
    ps_chat *m = merged_both_ways(a, b);
    assert_string_equal(title_of(m), "lamport");
    ps__chat_free(m);
    ps__chat_free(a);
    ps__chat_free(b);
}

static void tie_broken_by_device(void **state)
{
    /* equal counters: the device decides, before the time */
    ps_chat *a = chat_with_field("title", "zzz from a", tu_stamp(5000, 2, "device-a"));
    ps_chat *b = chat_with_field("title", "aaa from b", tu_stamp(1000, 2, "device-b"));
    ps_chat *m = merged_both_ways(a, b);
    assert_string_equal(title_of(m), "aaa from b");
    assert_string_equal(ps__chat_field(m, "title")->stamp.device, "device-b");
    ps__chat_free(m);
    ps__chat_free(a);
    ps__chat_free(b);
    /* equal counter and device: the time */
    a = chat_with_field("title", "later", tu_stamp(5000, 2, "d"));
    b = chat_with_field("title", "earlier", tu_stamp(1000, 2, "d"));
    m = merged_both_ways(a, b);
    assert_string_equal(title_of(m), "later");
    ps__chat_free(m);
    ps__chat_free(a);
    ps__chat_free(b);
    /* no counters, equal times: the device */
    a = chat_with_field("title", "zzz from a", tu_stamp(1000, 0, "device-a"));
    b = chat_with_field("title", "aaa from b", tu_stamp(1000, 0, "device-b"));
    m = merged_both_ways(a, b);
    assert_string_equal(title_of(m), "aaa from b");
    ps__chat_free(m);
    ps__chat_free(a);
    ps__chat_free(b);
}

static void tie_on_stamp_broken_by_value(void **state)
{
    ps_chat *a = chat_with_field("title", "apple", tu_stamp(1000, 2, "d"));
    ps_chat *b = chat_with_field("title", "banana", tu_stamp(1000, 2, "d"));
    ps_chat *m = merged_both_ways(a, b);
    assert_string_equal(title_of(m), "banana");
    ps__chat_free(m);
    /* a null value loses a tie to any value */
    ps_chat *n = chat_with_field("title", NULL, tu_stamp(1000, 2, "d"));
    m = merged_both_ways(a, n);
    assert_string_equal(title_of(m), "apple");
    ps__chat_free(m);
    ps__chat_free(n);
    ps__chat_free(a);
    ps__chat_free(b);
    /* and the order itself */
    ps_stamp s = tu_stamp(1, 1, "d");
    json_object *x = json_object_new_string("x"), *y = json_object_new_string("y");
    assert_true(ps__write_cmp(&s, y, &s, x) > 0);
    assert_true(ps__write_cmp(&s, x, &s, y) < 0);
    assert_int_equal(ps__write_cmp(&s, x, &s, x), 0);
    assert_true(ps__write_cmp(&s, NULL, &s, x) < 0);
    json_object_put(x);
    json_object_put(y);
}

static void expect_order(ps_stamp older, ps_stamp newer)
{
    assert_int_equal(ps__stamp_cmp(&older, &newer), -1);
    assert_int_equal(ps__stamp_cmp(&newer, &older), 1);
}

static void stamp_order(void **state)
{
    /* without counters: time, then device */
    expect_order(tu_stamp(1000, 0, "z"), tu_stamp(1001, 0, "a"));
    expect_order(tu_stamp(1000, 0, "a"), tu_stamp(1000, 0, "b"));
    expect_order(tu_stamp(-5, 0, ""), tu_stamp(0, 0, ""));
    expect_order(tu_stamp(INT64_MIN, 0, ""), tu_stamp(INT64_MAX, 0, ""));
    /* with counters: counter, then device, then time */
    expect_order(tu_stamp(9000, 5, "z"), tu_stamp(1000, 6, "a"));
    expect_order(tu_stamp(9000, 5, "a"), tu_stamp(1000, 5, "b"));
    expect_order(tu_stamp(1000, 5, "a"), tu_stamp(1001, 5, "a"));
    /* every counter write after every time-only write */
    expect_order(tu_stamp(INT64_MAX, 0, "zzz"), tu_stamp(INT64_MIN, 1, ""));
    ps_stamp a = tu_stamp(1000, 5, "b"), b = tu_stamp(1000, 5, "b");
    assert_int_equal(ps__stamp_cmp(&a, &b), 0);
    ps_stamp null_dev = tu_stamp(1000, 5, NULL), empty_dev = tu_stamp(1000, 5, "");
    assert_int_equal(ps__stamp_cmp(&null_dev, &empty_dev), 0);
}

/* One total order: transitive across both kinds of write (checked on all
 * triples of a grid that mixes them). */
static void stamp_order_is_total(void **state)
{
    static const int64_t ts[] = {0, 1000, 2000};
    static const int64_t lam[] = {0, 1, 2};
    static const char *const dev[] = {"", "a", "b"};
    ps_stamp all[27];
    size_t n = 0;
    for (size_t i = 0; i < 3; i++)
        for (size_t j = 0; j < 3; j++)
            for (size_t k = 0; k < 3; k++)
                all[n++] = tu_stamp(ts[i], lam[j], dev[k]);
    for (size_t x = 0; x < n; x++) {
        assert_int_equal(ps__stamp_cmp(&all[x], &all[x]), 0);
        for (size_t y = 0; y < n; y++) {
            int xy = ps__stamp_cmp(&all[x], &all[y]);
            assert_int_equal(xy, -ps__stamp_cmp(&all[y], &all[x]));
            if (x != y)
                assert_int_not_equal(xy, 0);
            for (size_t z = 0; z < n; z++)
                if (xy < 0 && ps__stamp_cmp(&all[y], &all[z]) < 0)
                    assert_int_equal(ps__stamp_cmp(&all[x], &all[z]), -1);
        }
    }
}

static void messages_union(void **state)
{
    ps_chat *a = chat_with_message("m1", "from a", tu_stamp(1000, 0, "a"));
    ps_chat *b = chat_with_message("m2", "from b", tu_stamp(500, 0, "b"));
    ps_chat *m = merged_both_ways(a, b);
    assert_int_equal(m->nmessages, 2);
    assert_string_equal(content_of(m, "m1"), "from a");
    assert_string_equal(content_of(m, "m2"), "from b");
    ps__chat_free(m);
    ps__chat_free(a);
    ps__chat_free(b);
}

static void message_union_interleaves_sorted_ids(void **state)
{
    ps_chat *a = ps__chat_new("c"), *b = ps__chat_new("c");
    static const char *const ids_a[] = {"m05", "m01", "m09", "m03"};
    static const char *const ids_b[] = {"m02", "m09", "m00", "m10", "m04"};
    ps_stamp s = tu_stamp(1, 0, "d");
    for (size_t i = 0; i < 4; i++)
        assert_int_equal(ps__chat_append_message(a, ids_a[i], json_object_new_object(), &s, 0),
                         PS_OK);
    for (size_t i = 0; i < 5; i++)
        assert_int_equal(ps__chat_append_message(b, ids_b[i], json_object_new_object(), &s, 0),
                         PS_OK);
    ps__chat_normalize(a);
    ps__chat_normalize(b);
    ps_chat *m = merged_both_ways(a, b);
    static const char *const want[] = {"m00", "m01", "m02", "m03", "m04", "m05", "m09", "m10"};
    assert_int_equal(m->nmessages, 8);
    for (size_t i = 0; i < 8; i++) {
        assert_string_equal(m->messages[i].id, want[i]);
        assert_non_null(ps__chat_message(m, want[i]));
    }
    ps__chat_free(m);
    ps__chat_free(a);
    ps__chat_free(b);
}

static void message_last_writer_wins(void **state)
{
    ps_chat *a = chat_with_message("m1", "edited on a", tu_stamp(2000, 0, "a"));
    ps_chat *b = chat_with_message("m1", "original", tu_stamp(1000, 0, "b"));
    ps_chat *m = merged_both_ways(a, b);
    assert_int_equal(m->nmessages, 1);
    assert_string_equal(content_of(m, "m1"), "edited on a");
    ps__chat_free(m);
    ps__chat_free(a);
    ps__chat_free(b);
}

static void message_tombstone(void **state)
{
    ps_chat *live_old = chat_with_message("m1", "text", tu_stamp(1000, 0, "a"));
    ps_chat *deleted = chat_with_message("m1", NULL, tu_stamp(2000, 0, "b"));
    ps_chat *live_new = chat_with_message("m1", "re-added", tu_stamp(3000, 0, "a"));
    /* deletion newer than the write: deleted */
    ps_chat *m = merged_both_ways(live_old, deleted);
    assert_int_equal(m->nmessages, 1);
    assert_null(content_of(m, "m1"));
    json_object *legacy = ps__chat_to_legacy(m);
    char ids[32];
    assert_string_equal(tu_legacy_message_ids(legacy, ids, sizeof ids), "");
    json_object_put(legacy);
    ps__chat_free(m);
    /* a write newer than the deletion: back */
    m = merged_both_ways(deleted, live_new);
    assert_string_equal(content_of(m, "m1"), "re-added");
    ps__chat_free(m);
    /* equal stamps: the write wins over the tombstone */
    ps_chat *same = chat_with_message("m1", "text", tu_stamp(2000, 0, "b"));
    m = merged_both_ways(deleted, same);
    assert_string_equal(content_of(m, "m1"), "text");
    ps__chat_free(m);
    ps__chat_free(same);
    ps__chat_free(live_old);
    ps__chat_free(deleted);
    ps__chat_free(live_new);
}

static void normalize_joins_duplicate_ids(void **state)
{
    ps_chat *chat = ps__chat_new("c");
    ps_stamp s1 = tu_stamp(1, 0, "d"), s2 = tu_stamp(2, 0, "d");
    json_object *v1 = tu_json("{\"content\":\"one\"}"), *v2 = tu_json("{\"content\":\"two\"}");
    assert_int_equal(ps__chat_append_message(chat, "m", v2, &s2, 0), PS_OK);
    assert_int_equal(ps__chat_append_message(chat, "m", v1, &s1, 0), PS_OK);
    assert_int_equal(ps__chat_append_message(chat, "m", NULL, &s1, 0), PS_OK);
    ps__chat_normalize(chat);
    assert_int_equal(chat->nmessages, 1);
    assert_string_equal(content_of(chat, "m"), "two");
    ps__chat_free(chat);
}

static const ps_lamport NO_TUPLE = {0, NULL};

static ps_chat *deleted_chat(const char *legacy, int64_t deleted_at)
{
    ps_chat *chat = tu_from_legacy(legacy, "a", NOW);
    ps_stamp s = tu_stamp(deleted_at, 0, "a");
    bool changed;
    assert_int_equal(ps__chat_delete(chat, &s, &NO_TUPLE, &changed), PS_OK);
    assert_true(changed);
    return chat;
}

static void chat_tombstone_against_writes(void **state)
{
    const char *v1 = "{\"id\":\"c\",\"title\":\"v1\",\"lastModified\":1000}";
    ps_chat *gone = deleted_chat(v1, 2000);
    assert_true(gone->has_tombstone);
    assert_false(ps__chat_is_live(gone));

    ps_chat *older =
        tu_from_legacy("{\"id\":\"c\",\"title\":\"older\",\"lastModified\":1500}", "b", NOW);
    ps_chat *m = merged_both_ways(gone, older);
    assert_false(ps__chat_is_live(m));
    ps__chat_free(m);

    ps_chat *equal =
        tu_from_legacy("{\"id\":\"c\",\"title\":\"equal\",\"lastModified\":2000}", "a", NOW);
    m = merged_both_ways(gone, equal);
    assert_false(ps__chat_is_live(m)); /* not newer than the deletion */
    ps__chat_free(m);

    ps_chat *newer =
        tu_from_legacy("{\"id\":\"c\",\"title\":\"newer\",\"lastModified\":2500}", "b", NOW);
    m = merged_both_ways(gone, newer);
    assert_true(ps__chat_is_live(m));
    assert_string_equal(title_of(m), "newer");
    ps__chat_free(m);

    ps__chat_free(newer);
    ps__chat_free(equal);
    ps__chat_free(older);
    ps__chat_free(gone);
}

static void newest_deletion_is_kept(void **state)
{
    ps_chat *chat = ps__chat_new("c");
    bool changed;
    ps_stamp s2 = tu_stamp(2000, 0, "a"), s1 = tu_stamp(1000, 0, "b"), s3 = tu_stamp(3000, 0, "");
    ps_lamport t2 = {12, "server"}, t1 = {11, "server"}, t3 = {13, "server"};
    assert_int_equal(ps__chat_delete(chat, &s2, &t2, &changed), PS_OK);
    assert_true(changed);
    assert_true(chat->has_tombstone);
    assert_int_equal(chat->deleted_lamport.counter, 12);
    assert_int_equal(ps__chat_delete(chat, &s1, &t1, &changed), PS_OK);
    assert_false(changed);
    assert_int_equal(chat->tombstone.ts, 2000);
    assert_int_equal(chat->deleted_lamport.counter, 12);
    assert_int_equal(ps__chat_delete(chat, &s2, &t2, &changed), PS_OK);
    assert_false(changed);
    assert_int_equal(ps__chat_delete(chat, &s3, &t3, &changed), PS_OK);
    assert_true(changed);
    assert_int_equal(chat->tombstone.ts, 3000);
    assert_int_equal(chat->deleted_lamport.counter, 13);
    assert_string_equal(chat->deleted_lamport.id, "server");
    assert_false(ps__chat_is_live(chat));
    ps__chat_free(chat);
}

/* The tuple shown for a deletion travels with the deletion that won. */
static void shown_tuple_follows_the_winning_deletion(void **state)
{
    ps_chat *a = ps__chat_new("c"), *b = ps__chat_new("c");
    bool changed;
    ps_stamp sa = tu_stamp(1000, 8, "phone"), sb = tu_stamp(9000, 7, "laptop");
    ps_lamport ta = {8, "phone"}, tb = {7, "laptop"};
    assert_int_equal(ps__chat_delete(a, &sa, &ta, &changed), PS_OK);
    assert_int_equal(ps__chat_delete(b, &sb, &tb, &changed), PS_OK);
    ps_chat *m = merged_both_ways(a, b);
    assert_int_equal(m->tombstone.lamport, 8);
    assert_int_equal(m->deleted_lamport.counter, 8);
    assert_string_equal(m->deleted_lamport.id, "phone");
    ps__chat_free(m);
    ps__chat_free(a);
    ps__chat_free(b);
}

/* A deletion newer than everything, merged into a live chat, removes it. */
static void deletion_arriving_later(void **state)
{
    ps_chat *live =
        tu_from_legacy("{\"id\":\"c\",\"title\":\"t\",\"lastModified\":1000}", "a", NOW);
    ps_chat *del = ps__chat_new("c");
    ps_stamp s = tu_stamp(1500, 0, "b");
    bool changed;
    assert_int_equal(ps__chat_delete(del, &s, &NO_TUPLE, &changed), PS_OK);
    ps_chat *m = merged_both_ways(live, del);
    assert_false(ps__chat_is_live(m));
    ps__chat_free(m);
    ps__chat_free(del);
    ps__chat_free(live);
}

static void time_fields(void **state)
{
    ps_chat *a = tu_from_legacy("{\"id\":\"c\",\"createdAt\":\"2024-01-15T09:00:00Z\","
                                "\"updatedAt\":\"2024-01-15T09:30:00Z\",\"lastModified\":"
                                "\"2024-01-15T09:10:00Z\"}",
                                "a", NOW);
    ps_chat *b = tu_from_legacy("{\"id\":\"c\",\"createdAt\":1705305600000,\"updatedAt\":"
                                "1705309200000,\"lastModified\":\"2024-01-15T09:20:00Z\"}",
                                "b", NOW);
    ps_chat *m = merged_both_ways(a, b);
    /* createdAt: b's 08:00 (earliest), as b wrote it */
    assert_int_equal(m->created_at.ms, 1705305600000LL);
    assert_true(json_object_is_type(m->created_at.value, json_type_int));
    /* updatedAt: a's 09:30 (latest) */
    assert_int_equal(m->updated_at.ms, tu_t(-30));
    assert_string_equal(json_object_get_string(m->updated_at.value), "2024-01-15T09:30:00Z");
    /* lastModified: b's 09:20 */
    assert_int_equal(m->last_modified.ms, tu_t(-40));
    ps__chat_free(m);

    /* a chat without a time field takes the other's */
    ps_chat *none = tu_from_legacy("{\"id\":\"c\",\"title\":\"x\"}", "c", NOW);
    m = merged_both_ways(none, a);
    assert_int_equal(m->created_at.ms, tu_t(-60));
    ps__chat_free(m);
    ps__chat_free(none);

    /* the same instant written two ways: one deterministic winner */
    ps_chat *c =
        tu_from_legacy("{\"id\":\"c\",\"createdAt\":\"2024-01-15T09:00:00.000Z\"}", "c", NOW);
    m = merged_both_ways(a, c);
    assert_int_equal(m->created_at.ms, tu_t(-60));
    ps__chat_free(m);
    ps__chat_free(c);
    ps__chat_free(a);
    ps__chat_free(b);
}

static void largest_lamport_is_kept(void **state)
{
    ps_chat *a = tu_from_legacy("{\"id\":\"c\",\"updatedAtLamport\":[5,\"b\"]}", "x", NOW);
    ps_chat *b = tu_from_legacy("{\"id\":\"c\",\"updatedAtLamport\":[7,\"a\"]}", "x", NOW);
    ps_chat *c = tu_from_legacy("{\"id\":\"c\",\"updatedAtLamport\":[7,\"b\"]}", "x", NOW);
    ps_chat *none = tu_from_legacy("{\"id\":\"c\"}", "x", NOW);
    ps_chat *m = merged_both_ways(a, b);
    assert_int_equal(m->lamport.counter, 7);
    assert_string_equal(m->lamport.id, "a");
    ps__chat_free(m);
    m = merged_both_ways(b, c);
    assert_int_equal(m->lamport.counter, 7);
    assert_string_equal(m->lamport.id, "b");
    ps__chat_free(m);
    m = merged_both_ways(a, none);
    assert_int_equal(m->lamport.counter, 5);
    assert_string_equal(m->lamport.id, "b");
    ps__chat_free(m);
    ps__chat_free(a);
    ps__chat_free(b);
    ps__chat_free(c);
    ps__chat_free(none);
}

static void changed_flag(void **state)
{
    ps_chat *a =
        tu_from_legacy("{\"id\":\"c\",\"title\":\"t\",\"lastModified\":1000,"
                       "\"messages\":[{\"id\":\"m\",\"role\":\"user\",\"content\":\"x\"}]}",
                       "a", NOW);
    ps_chat *copy = merged(a, a);
    bool changed = true;
    /* the same state again: nothing changes */
    assert_int_equal(ps__chat_merge(copy, a, &changed), PS_OK);
    assert_false(changed);
    /* an older write of the same chat: nothing changes */
    ps_chat *older =
        tu_from_legacy("{\"id\":\"c\",\"title\":\"u\",\"lastModified\":500}", "a", NOW);
    assert_int_equal(ps__chat_merge(copy, older, &changed), PS_OK);
    assert_false(changed);
    assert_string_equal(title_of(copy), "t");
    /* a newer one does */
    ps_chat *newer =
        tu_from_legacy("{\"id\":\"c\",\"title\":\"t\",\"lastModified\":2000}", "a", NOW);
    assert_int_equal(ps__chat_merge(copy, newer, &changed), PS_OK);
    assert_true(changed);
    /* merging an empty chat changes nothing */
    ps_chat *empty = ps__chat_new("c");
    assert_int_equal(ps__chat_merge(copy, empty, &changed), PS_OK);
    assert_false(changed);
    /* a new message does */
    ps_chat *msg = chat_with_message("m2", "y", tu_stamp(1, 0, ""));
    assert_int_equal(ps__chat_merge(copy, msg, &changed), PS_OK);
    assert_true(changed);
    ps__chat_free(msg);
    ps__chat_free(empty);
    ps__chat_free(newer);
    ps__chat_free(older);
    ps__chat_free(copy);
    ps__chat_free(a);
}

/* ---- the seed document's scenarios (DESIGN.md, "Merge") ---- */

/* 1. A retitles at 10:00; B, with the stale title, adds a message at 10:01.
 * Through the legacy endpoint B's whole chat is stamped 10:01: the message
 * is kept, A's message too, and the title follows last-writer-wins: B's. */
static void scenario1_retitle_vs_new_message_legacy(void **state)
{
    ps_chat *server = tu_from_legacy(
        "{\"id\":\"123\",\"title\":\"Old Title\",\"lastModified\":\"2024-01-15T09:00:00Z\","
        "\"messages\":[{\"id\":\"m0\",\"role\":\"user\",\"content\":\"first\",\"timestamp\":"
        "\"2024-01-15T09:00:00Z\"}]}",
        "a", NOW);
    ps_chat *a = tu_from_legacy(
        "{\"id\":\"123\",\"title\":\"New Title\",\"lastModified\":\"2024-01-15T10:00:00Z\","
        "\"messages\":[{\"id\":\"m0\",\"role\":\"user\",\"content\":\"first\",\"timestamp\":"
        "\"2024-01-15T09:00:00Z\"}]}",
        "a", NOW);
    ps_chat *b = tu_from_legacy(
        "{\"id\":\"123\",\"title\":\"Old Title\",\"lastModified\":\"2024-01-15T10:01:00Z\","
        "\"messages\":[{\"id\":\"m0\",\"role\":\"user\",\"content\":\"first\",\"timestamp\":"
        "\"2024-01-15T09:00:00Z\"},{\"id\":\"m1\",\"role\":\"user\",\"content\":\"from B\","
        "\"timestamp\":\"2024-01-15T10:01:00Z\"}]}",
        "b", NOW);
    bool changed;
    /* A syncs first, then B; and the other order */
    ps_chat *ab = merged(server, a), *ba = merged(server, b);
    assert_int_equal(ps__chat_merge(ab, b, &changed), PS_OK);
    assert_int_equal(ps__chat_merge(ba, a, &changed), PS_OK);
    assert_true(tu_same_state(ab, ba));
    assert_string_equal(title_of(ab), "Old Title");
    json_object *legacy = ps__chat_to_legacy(ab);
    char ids[32];
    assert_string_equal(tu_legacy_message_ids(legacy, ids, sizeof ids), "m0,m1");
    assert_string_equal(tu_get_str(legacy, "lastModified"), "2024-01-15T10:01:00Z");
    json_object_put(legacy);
    ps__chat_free(ab);
    ps__chat_free(ba);
    ps__chat_free(server);
    ps__chat_free(a);
    ps__chat_free(b);
}

/* 1, with a message on each side that the other lacks: never lose one. */
static void scenario1_both_sides_add_messages(void **state)
{
    ps_chat *a = tu_from_legacy(
        "{\"id\":\"123\",\"title\":\"New Title\",\"lastModified\":\"2024-01-15T10:00:00Z\","
        "\"messages\":[{\"id\":\"mA\",\"role\":\"user\",\"content\":\"from A\"}]}",
        "a", NOW);
    ps_chat *b = tu_from_legacy(
        "{\"id\":\"123\",\"title\":\"Old Title\",\"lastModified\":\"2024-01-15T10:01:00Z\","
        "\"messages\":[{\"id\":\"mB\",\"role\":\"user\",\"content\":\"from B\"}]}",
        "b", NOW);
    ps_chat *m = merged_both_ways(a, b);
    assert_string_equal(title_of(m), "Old Title");
    assert_string_equal(content_of(m, "mA"), "from A");
    assert_string_equal(content_of(m, "mB"), "from B");
    ps__chat_free(m);
    ps__chat_free(a);
    ps__chat_free(b);
}

/* 1 at field level (how v2 writes it): A's title register at 10:00, B's new
 * message at 10:01 and B's title register untouched since 09:00: A's title
 * and B's message. */
static void scenario1_field_level(void **state)
{
    ps_chat *a = chat_with_field("title", "New Title", tu_stamp(tu_t(0), 0, "a"));
    ps_chat *b = chat_with_field("title", "Old Title", tu_stamp(tu_t(-60), 0, "a"));
    ps_chat *msg = chat_with_message("m1", "from B", tu_stamp(tu_t(1), 0, "b"));
    bool changed;
    assert_int_equal(ps__chat_merge(b, msg, &changed), PS_OK);
    ps_chat *m = merged_both_ways(a, b);
    assert_string_equal(title_of(m), "New Title");
    assert_string_equal(content_of(m, "m1"), "from B");
    ps__chat_free(m);
    ps__chat_free(msg);
    ps__chat_free(a);
    ps__chat_free(b);
}

/* 2, time-only clients: the server's chat, A's deletion through
 * /deleteChat at 10:00 and B's edit `b_edit` (legacy JSON, stamped by its
 * lastModified), merged in both orders: the same state either way, which is
 * returned. *b_changed: whether B's edit changed the deleted chat. */
static ps_chat *scenario2_time_only(const char *b_edit, bool *b_changed)
{
    const char *chat = "{\"id\":\"123\",\"title\":\"T\",\"lastModified\":\"2024-01-15T09:00:00Z\"}";
    ps_chat *server = tu_from_legacy(chat, "a", NOW);
    ps_chat *deletion = ps__chat_new("123");
    bool changed;
    ps_stamp at = tu_stamp(tu_t(0), 0, "a");
    ps_lamport shown = {1, "server"};
    assert_int_equal(ps__chat_delete(deletion, &at, &shown, &changed), PS_OK);
    ps_chat *b = tu_from_legacy(b_edit, "b", NOW);
    ps_chat *s1 = merged(server, deletion);
    assert_int_equal(ps__chat_merge(s1, b, b_changed), PS_OK);
    ps_chat *s2 = merged(server, b);
    assert_int_equal(ps__chat_merge(s2, deletion, &changed), PS_OK);
    assert_true(tu_same_state(s1, s2));
    ps__chat_free(s2);
    ps__chat_free(b);
    ps__chat_free(deletion);
    ps__chat_free(server);
    return s1;
}

/* B's edit stamped 09:59 is older than the deletion: gone on both. */
static void scenario2_delete_vs_older_edit_stays_deleted(void **state)
{
    bool changed;
    ps_chat *s = scenario2_time_only("{\"id\":\"123\",\"title\":\"B's edit\",\"lastModified\":"
                                     "\"2024-01-15T09:59:00Z\"}",
                                     &changed);
    assert_false(ps__chat_is_live(s));
    ps__chat_free(s);
}

/* B's edit at 10:01 is newer than the deletion: back on both, with B's
 * edit. */
static void scenario2_delete_vs_newer_edit_comes_back(void **state)
{
    bool changed;
    ps_chat *s =
        scenario2_time_only("{\"id\":\"123\",\"title\":\"B's edit\",\"lastModified\":"
                            "\"2024-01-15T10:01:00Z\",\"messages\":[{\"id\":\"m1\",\"role\":"
                            "\"user\",\"content\":\"new\"}]}",
                            &changed);
    assert_true(changed);
    assert_true(ps__chat_is_live(s));
    json_object *legacy = ps__chat_to_legacy(s);
    assert_string_equal(tu_get_str(legacy, "title"), "B's edit");
    char ids[16];
    assert_string_equal(tu_legacy_message_ids(legacy, ids, sizeof ids), "m1");
    json_object_put(legacy);
    ps__chat_free(s);
}

/* 2, Polyglot clients: A deletes at Lamport counter 8; the server has the
 * chat from A at counter 5. `b_counter` is B's edit's counter. */
static ps_chat *scenario2_lamport(int b_counter, const char *b_time)
{
    ps_chat *server = tu_from_legacy("{\"id\":\"123\",\"title\":\"T\",\"updatedAtLamport\":"
                                     "[5,\"dev-a\"]}",
                                     "dev-a", NOW);
    ps_chat *deletion = ps__chat_new("123");
    bool changed;
    /* the deletion record: no time from the client, the server's clock */
    ps_stamp at = tu_stamp(tu_t(0), 8, "dev-a");
    ps_lamport shown = {8, "dev-a"};
    assert_int_equal(ps__chat_delete(deletion, &at, &shown, &changed), PS_OK);
    char b_text[256];
    snprintf(b_text, sizeof b_text,
             "{\"id\":\"123\",\"title\":\"B's edit\",\"lastModified\":\"%s\","
             "\"updatedAtLamport\":[%d,\"dev-b\"]}",
             b_time, b_counter);
    ps_chat *b = tu_from_legacy(b_text, "dev-b", NOW);
    ps_chat *s1 = merged(server, deletion);
    assert_int_equal(ps__chat_merge(s1, b, &changed), PS_OK);
    ps_chat *s2 = merged(server, b);
    assert_int_equal(ps__chat_merge(s2, deletion, &changed), PS_OK);
    assert_true(tu_same_state(s1, s2));
    ps__chat_free(s2);
    ps__chat_free(b);
    ps__chat_free(deletion);
    ps__chat_free(server);
    return s1;
}

/* B's edit at counter 6 was made before B saw the deletion, even if B's
 * clock says it is later: the chat stays deleted. */
static void scenario2_lamport_older_edit_stays_deleted(void **state)
{
    ps_chat *m = scenario2_lamport(6, "2024-01-15T10:30:00Z");
    assert_false(ps__chat_is_live(m));
    assert_int_equal(m->deleted_lamport.counter, 8);
    ps__chat_free(m);
}

/* B's edit at counter 9 comes after the deletion: back, with B's edit. */
static void scenario2_lamport_newer_edit_comes_back(void **state)
{
    ps_chat *m = scenario2_lamport(9, "2024-01-15T09:00:00Z");
    assert_true(ps__chat_is_live(m));
    json_object *legacy = ps__chat_to_legacy(m);
    assert_string_equal(tu_get_str(legacy, "title"), "B's edit");
    json_object *want = tu_json("[9,\"dev-b\"]");
    assert_true(json_object_equal(json_object_object_get(legacy, "updatedAtLamport"), want));
    json_object_put(want);
    json_object_put(legacy);
    ps__chat_free(m);
}

/* 3. Same id, different chats: merged like any other chat. */
static void scenario3_same_id_different_content(void **state)
{
    ps_chat *a = tu_from_legacy(
        "{\"id\":\"123\",\"title\":\"Recipes\",\"model\":\"gpt-4\",\"createdAt\":"
        "\"2024-01-15T08:00:00Z\",\"lastModified\":\"2024-01-15T09:00:00Z\",\"messages\":["
        "{\"id\":\"a1\",\"role\":\"user\",\"content\":\"soup?\",\"timestamp\":"
        "\"2024-01-15T08:00:00Z\"}]}",
        "a", NOW);
    ps_chat *b = tu_from_legacy(
        "{\"id\":\"123\",\"title\":\"Taxes\",\"provider\":\"openai\",\"createdAt\":"
        "\"2024-01-15T07:00:00Z\",\"lastModified\":\"2024-01-15T09:30:00Z\",\"messages\":["
        "{\"id\":\"b1\",\"role\":\"user\",\"content\":\"deductions?\",\"timestamp\":"
        "\"2024-01-15T07:30:00Z\"}]}",
        "b", NOW);
    ps_chat *m = merged_both_ways(a, b);
    assert_string_equal(title_of(m), "Taxes");
    assert_string_equal(json_object_get_string(ps__chat_field(m, "model")->value), "gpt-4");
    assert_string_equal(json_object_get_string(ps__chat_field(m, "provider")->value), "openai");
    json_object *legacy = ps__chat_to_legacy(m);
    char ids[16];
    assert_string_equal(tu_legacy_message_ids(legacy, ids, sizeof ids), "b1,a1");
    assert_string_equal(tu_get_str(legacy, "createdAt"), "2024-01-15T07:00:00Z");
    assert_string_equal(tu_get_str(legacy, "lastModified"), "2024-01-15T09:30:00Z");
    json_object_put(legacy);
    ps__chat_free(m);
    ps__chat_free(a);
    ps__chat_free(b);
}

/* Lookups in a chat without messages: nothing found, and no NULL array
 * handed to bsearch() (undefined behaviour, fatal under UBSan). */
static void message_lookup_in_empty_chat(void **state)
{
    ps_chat *chat = ps__chat_new("c");
    assert_null(ps__chat_field(chat, "title"));
    assert_null(ps__chat_message(chat, "m1"));
    ps__chat_free(chat);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(field_newer_timestamp_wins),
        cmocka_unit_test(fields_are_independent),
        cmocka_unit_test(higher_counter_wins_whatever_the_time),
        cmocka_unit_test(counter_write_beats_time_only_write),
        cmocka_unit_test(tie_broken_by_device),
        cmocka_unit_test(tie_on_stamp_broken_by_value),
        cmocka_unit_test(stamp_order),
        cmocka_unit_test(stamp_order_is_total),
        cmocka_unit_test(messages_union),
        cmocka_unit_test(message_union_interleaves_sorted_ids),
        cmocka_unit_test(message_last_writer_wins),
        cmocka_unit_test(message_tombstone),
        cmocka_unit_test(normalize_joins_duplicate_ids),
        cmocka_unit_test(chat_tombstone_against_writes),
        cmocka_unit_test(newest_deletion_is_kept),
        cmocka_unit_test(shown_tuple_follows_the_winning_deletion),
        cmocka_unit_test(deletion_arriving_later),
        cmocka_unit_test(time_fields),
        cmocka_unit_test(largest_lamport_is_kept),
        cmocka_unit_test(changed_flag),
        cmocka_unit_test(scenario1_retitle_vs_new_message_legacy),
        cmocka_unit_test(scenario1_both_sides_add_messages),
        cmocka_unit_test(scenario1_field_level),
        cmocka_unit_test(scenario2_delete_vs_older_edit_stays_deleted),
        cmocka_unit_test(scenario2_delete_vs_newer_edit_comes_back),
        cmocka_unit_test(scenario2_lamport_older_edit_stays_deleted),
        cmocka_unit_test(scenario2_lamport_newer_edit_comes_back),
        cmocka_unit_test(scenario3_same_id_different_content),
        /* last: under UBSan a failure here ends the process */
        cmocka_unit_test(message_lookup_in_empty_chat),
    };
    return cmocka_run_group_tests_name("merge", tests, NULL, NULL);
}
