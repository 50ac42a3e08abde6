/*
 * The SQLite backend: persistence across reopen, forward migration from the
 * first schema keeping existing data, refusal of a newer schema, tombstone
 * purge, the rollback of a transaction, and the no-op sync times kept until
 * a write. Includes the .c file to reach MIGRATIONS and build a version-1
 * store by hand.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "../../src/store/store_sqlite.c"
#include "sqlite_fixture.h"
#include "store_fixture.h"
#include "core/chat_codec.h"
#include "core/merge.h"
#include "server/sync_common.h"

#include <stdio.h>
#include <unistd.h>

static int setup(void **state)
{
    return store_fixture_sqlite(state, "store", "sub/dir/p.db");
}

static ps_chat *sample_chat(const char *id, const char *title)
{
    ps_chat *c = ps__chat_new(id);
    ps_stamp st = {.ts = 1000, .lamport = 0, .device = (char *)"dev"};
    bool changed;
    assert_int_equal(ps__chat_put_field(c, "title", json_object_new_string(title), &st, &changed),
                     PS_OK);
    assert_int_equal(ps__lamport_set(&c->lamport, 1, "server"), PS_OK);
    return c;
}

static int64_t next_seq;

static void save(ps_store *s, int64_t user, ps_chat *c)
{
    ps_error err;
    json_object *doc = ps__chat_to_legacy(c);
    size_t len;
    const char *text = ps__json_text(doc, &len);
    assert_int_equal(s->ops->chat_save(s, user, c, text, len, ++next_seq, &err), PS_OK);
    json_object_put(doc);
}

static void reopen_keeps_chats(void **state)
{
    fixture *f = *state;
    ps_error err;
    ps_store *s = NULL;
    assert_int_equal(ps_store_open(f->url, &s, &err), PS_OK); /* folders are created */
    ps_user u;
    assert_int_equal(ps_store_begin(s, true, &err), PS_OK);
    assert_int_equal(s->ops->user_load(s, "alice", &u, &err), PS_OK);
    ps_chat *c = sample_chat("c1", "Hello");
    save(s, u.id, c);
    ps__chat_free(c);
    u.clock = 42;
    assert_int_equal(s->ops->user_save(s, &u, &err), PS_OK);
    assert_int_equal(ps_store_commit(s, &err), PS_OK);
    ps_store_close(s);

    assert_int_equal(ps_store_open(f->url, &s, &err), PS_OK);
    assert_int_equal(ps_store_begin(s, false, &err), PS_OK);
    assert_int_equal(s->ops->user_load(s, "alice", &u, &err), PS_OK);
    assert_int_equal(u.clock, 42);
    ps_chat *back = NULL;
    assert_int_equal(s->ops->chat_load(s, u.id, "c1", true, &back, &err), PS_OK);
    assert_non_null(back);
    assert_string_equal(json_object_get_string(ps__chat_field(back, "title")->value), "Hello");
    ps__chat_free(back);
    assert_int_equal(s->ops->chat_load(s, u.id, "nope", true, &back, &err), PS_OK);
    assert_null(back);
    assert_int_equal(ps_store_commit(s, &err), PS_OK);
    ps_store_close(s);
}

static void rollback_discards(void **state)
{
    fixture *f = *state;
    ps_error err;
    ps_store *s = NULL;
    ps_user u;
    assert_int_equal(ps_store_open(f->url, &s, &err), PS_OK);
    assert_int_equal(ps_store_begin(s, true, &err), PS_OK);
    assert_int_equal(s->ops->user_load(s, "bob", &u, &err), PS_OK);
    ps_chat *c = sample_chat("gone", "x");
    save(s, u.id, c);
    ps__chat_free(c);
    ps_store_rollback(s);
    assert_int_equal(ps_store_begin(s, false, &err), PS_OK);
    assert_int_equal(s->ops->user_load(s, "bob", &u, &err), PS_OK);
    ps_chat *back = NULL;
    assert_int_equal(s->ops->chat_load(s, u.id, "gone", true, &back, &err), PS_OK);
    assert_null(back);
    assert_int_equal(ps_store_commit(s, &err), PS_OK);
    ps_store_close(s);
}

/* A store written by the first release: schema 1, a live chat and a
 * tombstone. Opening it must migrate to the current schema, keep both, and
 * backfill when the tombstone was made. */
static void migrates_from_version_1(void **state)
{
    fixture *f = *state;
    ps_error err;
    assert_int_equal(make_parent_dirs(f->path, &err), PS_OK);
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    char *msg = NULL;
    const char *v1_rows =
        "CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL"
        " DEFAULT '');"
        "INSERT INTO schema_version(version) VALUES (1);"
        "INSERT INTO users(id, name, clock) VALUES (1, 'local', 7);"
        "INSERT INTO chats VALUES (1, 'live', 1,"
        " '{\"id\":\"live\",\"f\":{\"title\":[\"Kept\",[5,0,\"d\"]]},\"m\":[[\"m1\","
        "{\"id\":\"m1\",\"role\":\"user\",\"content\":\"hi\"},[5,0,\"d\"],7],"
        "[\"m2\",null,[6,0,\"d\"],0]],\"L\":[3,\"d\"]}',"
        " '{\"id\":\"live\",\"title\":\"Kept\"}', 0, '');"
        "INSERT INTO chats VALUES (1, 'dead', 0,"
        " '{\"id\":\"dead\",\"f\":{},\"m\":[],\"d\":[123456,4,\"d\"],\"D\":[4,\"d\"]}',"
        " '{\"id\":\"dead\"}', 4, 'd');";
    assert_int_equal(sqlite3_exec(db, MIGRATIONS[0], NULL, NULL, &msg), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, v1_rows, NULL, NULL, &msg), SQLITE_OK);
    sqlite3_close(db);

    ps_store *s = NULL;
    assert_int_equal(ps_store_open(f->url, &s, &err), PS_OK);
    sqlite_store *ss = (sqlite_store *)s;
    assert_int_equal(schema_version(ss), SCHEMA_VERSION);
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(ss->db, "SELECT deleted_at_ms FROM chats WHERE id='dead'",
                                        -1, &st, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int64(st, 0), 123456);
    sqlite3_finalize(st);

    ps_user u;
    ps_chat *back = NULL;
    assert_int_equal(ps_store_begin(s, false, &err), PS_OK);
    assert_int_equal(s->ops->user_load(s, "local", &u, &err), PS_OK);
    assert_int_equal(u.clock, 7);
    assert_int_equal(s->ops->chat_load(s, u.id, "live", true, &back, &err), PS_OK);
    assert_non_null(back);
    assert_string_equal(json_object_get_string(ps__chat_field(back, "title")->value), "Kept");
    /* messages moved from the state into rows of their own (schema 3) */
    assert_int_equal(back->nmessages, 2);
    const ps_message *m1 = ps__chat_message(back, "m1");
    assert_non_null(m1);
    assert_string_equal(json_object_get_string(json_object_object_get(m1->value, "content")), "hi");
    assert_int_equal(m1->order_ts, 7);
    assert_int_equal(m1->stamp.ts, 5);
    assert_null(ps__chat_message(back, "m2")->value); /* the tombstone stays one */
    /* schema 6: numbered in the id order they were shown in, next is 2 */
    assert_int_equal(m1->received, 0);
    assert_int_equal(ps__chat_message(back, "m2")->received, 1);
    assert_int_equal(back->next_received, 2);
    ps__chat_free(back);
    assert_int_equal(s->ops->chat_load(s, u.id, "dead", true, &back, &err), PS_OK);
    assert_non_null(back);
    assert_true(back->has_tombstone);
    assert_false(ps__chat_is_live(back));
    ps__chat_free(back);
    assert_int_equal(ps_store_commit(s, &err), PS_OK);
    ps_store_close(s);
}

/* A device's base round-trips, is copied from a chat saved with its
 * rendering, and goes with its chat. */
static void bases_round_trip_and_go_with_their_chat(void **state)
{
    fixture *f = *state;
    ps_error err;
    ps_store *s = NULL;
    assert_int_equal(ps_store_open(f->url, &s, &err), PS_OK);
    ps_user u;
    assert_int_equal(ps_store_begin(s, true, &err), PS_OK);
    assert_int_equal(s->ops->user_load(s, "local", &u, &err), PS_OK);
    ps_chat *c = ps__chat_new("c");
    ps_stamp st = {.ts = 5, .device = "d"};
    bool changed;
    ps__chat_put_field(c, "title", json_object_new_string("t"), &st, &changed);
    json_object *m1 = json_object_new_object();
    json_object_object_add(m1, "id", json_object_new_string("m1"));
    ps__chat_append_message(c, "m1", m1, &st, 0);
    c->messages[0].received = 0;
    assert_int_equal(s->ops->chat_save(s, u.id, c, "{}", 2, 1, &err), PS_OK);
    ps_base b = {0}, got = {0};
    assert_int_equal(ps__base_add_chat(&b, c), PS_OK);
    ps__base_seal(&b);
    int64_t seq = -1;
    bool found = true;
    assert_int_equal(s->ops->base_load(s, u.id, "dev", "c", &got, &seq, &found, &err), PS_OK);
    assert_false(found);
    bool copied = false;
    assert_int_equal(s->ops->base_copy(s, u.id, "dev", "c", 1, &copied, &err), PS_OK);
    assert_true(copied);
    assert_int_equal(s->ops->base_load(s, u.id, "dev", "c", &got, &seq, &found, &err), PS_OK);
    assert_true(found);
    assert_int_equal(seq, 1);
    assert_int_equal(got.n, b.n);
    assert_true(ps__base_has(&got, ps__base_field_hash("title", ps__chat_field(c, "title")->value)));
    assert_true(ps__base_has(&got, ps__base_message_hash("m1", c->messages[0].value)));
    assert_int_equal(s->ops->base_save(s, u.id, "dev2", "c", &b, 0, &err), PS_OK);
    assert_int_equal(s->ops->base_load(s, u.id, "dev2", "c", NULL, &seq, &found, &err), PS_OK);
    assert_true(found);
    assert_int_equal(seq, 0);
    /* a chat saved without a rendering has no base to copy */
    assert_int_equal(s->ops->chat_save(s, u.id, c, NULL, 0, 2, &err), PS_OK);
    assert_int_equal(s->ops->base_copy(s, u.id, "dev3", "c", 2, &copied, &err), PS_OK);
    assert_false(copied);
    /* deleting the chat's row (as the purge does) takes its bases along */
    assert_int_equal(exec((sqlite_store *)s, "DELETE FROM chats WHERE id = 'c'", &err), PS_OK);
    assert_int_equal(s->ops->base_load(s, u.id, "dev", "c", &got, &seq, &found, &err), PS_OK);
    assert_false(found);
    assert_int_equal(ps_store_commit(s, &err), PS_OK);
    ps__base_free(&b);
    ps__base_free(&got);
    ps__chat_free(c);
    ps_store_close(s);
}

/* A chat handed to a device outside a sync answer joins the base it has. */
static void base_note_sent_adds_the_chat(void **state)
{
    fixture *f = *state;
    ps_error err;
    ps_store *s = NULL;
    assert_int_equal(ps_store_open(f->url, &s, &err), PS_OK);
    ps_user u;
    assert_int_equal(ps_store_begin(s, true, &err), PS_OK);
    assert_int_equal(s->ops->user_load(s, "local", &u, &err), PS_OK);
    ps_chat *c = ps__chat_new("c");
    ps_stamp st = {.ts = 5, .device = "d"};
    bool changed;
    ps__chat_put_field(c, "title", json_object_new_string("new"), &st, &changed);
    assert_int_equal(s->ops->chat_save(s, u.id, c, NULL, 0, 1, &err), PS_OK);
    json_object *old = json_object_new_string("old");
    ps_base b = {.hashes = NULL};
    uint64_t h_old = ps__base_field_hash("title", old);
    ps_chat *held = ps__chat_new("c");
    ps__chat_put_field(held, "title", old, &st, &changed);
    assert_int_equal(ps__base_add_chat(&b, held), PS_OK);
    ps__base_seal(&b);
    assert_int_equal(s->ops->base_save(s, u.id, "dev", "c", &b, 0, &err), PS_OK);
    assert_int_equal(ps_store_commit(s, &err), PS_OK);
    ps_sync_ctx ctx = {.store = s, .user = "local"};
    assert_int_equal(ps__base_note_sent(&ctx, "c", "dev", &err), PS_OK);
    ps_base got = {0};
    int64_t seq;
    bool found;
    assert_int_equal(ps_store_begin(s, false, &err), PS_OK);
    assert_int_equal(s->ops->base_load(s, u.id, "dev", "c", &got, &seq, &found, &err), PS_OK);
    assert_true(found);
    assert_true(ps__base_has(&got, h_old));
    assert_true(ps__base_has(&got, ps__base_field_hash("title", ps__chat_field(c, "title")->value)));
    assert_int_equal(ps_store_commit(s, &err), PS_OK);
    ps__base_free(&b);
    ps__base_free(&got);
    ps__chat_free(c);
    ps__chat_free(held);
    ps_store_close(s);
}

static void refuses_newer_schema(void **state)
{
    fixture *f = *state;
    ps_error err;
    ps_store *s = NULL;
    assert_int_equal(ps_store_open(f->url, &s, &err), PS_OK);
    assert_int_equal(
        exec((sqlite_store *)s, "INSERT INTO schema_version(version) VALUES (999)", &err), PS_OK);
    ps_store_close(s);
    assert_int_equal(ps_store_open(f->url, &s, &err), PS_ERR_SCHEMA);
    assert_null(s);
    assert_non_null(strstr(err.message, "999"));
}

static void purge_forgets_only_old_tombstones(void **state)
{
    fixture *f = *state;
    ps_error err;
    ps_store *s = NULL;
    ps_user u;
    assert_int_equal(ps_store_open(f->url, &s, &err), PS_OK);
    assert_int_equal(ps_store_begin(s, true, &err), PS_OK);
    assert_int_equal(s->ops->user_load(s, "local", &u, &err), PS_OK);
    const int64_t times[2] = {1000, 5000};
    const char *ids[2] = {"old", "recent"};
    for (int i = 0; i < 2; i++) {
        ps_chat *c = sample_chat(ids[i], "t");
        ps_stamp del = {.ts = times[i], .device = (char *)"dev"};
        ps_lamport shown = {.counter = 9, .id = (char *)"server"};
        bool changed;
        assert_int_equal(ps__chat_delete(c, &del, &shown, &changed), PS_OK);
        assert_false(ps__chat_is_live(c));
        save(s, u.id, c);
        ps__chat_free(c);
    }
    ps_chat *alive = sample_chat("alive", "t");
    save(s, u.id, alive);
    ps__chat_free(alive);
    int64_t purged = -1;
    int64_t old_seq = next_seq - 2; /* "old" was saved first of the three */
    assert_int_equal(s->ops->purge_tombstones(s, 3000, &purged, &err), PS_OK);
    assert_int_equal(purged, 1);
    /* cursors from before the forgotten tombstone must now get 410 */
    ps_user after;
    assert_int_equal(s->ops->user_load(s, "local", &after, &err), PS_OK);
    assert_int_equal(after.purged_seq, old_seq);
    ps_chat *back = NULL;
    assert_int_equal(s->ops->chat_load(s, u.id, "old", true, &back, &err), PS_OK);
    assert_null(back);
    for (int i = 0; i < 2; i++) {
        const char *keep = i ? "alive" : "recent";
        assert_int_equal(s->ops->chat_load(s, u.id, keep, true, &back, &err), PS_OK);
        assert_non_null(back);
        ps__chat_free(back);
    }
    assert_int_equal(ps_store_commit(s, &err), PS_OK);
    ps_store_close(s);
}

static void bad_urls_are_refused(void **state)
{
    ps_error err;
    ps_store *s = NULL;
    assert_int_equal(ps_store_open("mysql://x", &s, &err), PS_ERR_CONFIG);
    assert_int_equal(ps_store_open("sqlite:", &s, &err), PS_ERR_CONFIG);
    assert_null(s);
}

static int64_t stats_last_sync(ps_store *s)
{
    ps_error err;
    ps_store_stats stats;
    assert_int_equal(ps_store_begin(s, false, &err), PS_OK);
    assert_int_equal(s->ops->stats(s, &stats, &err), PS_OK);
    assert_int_equal(ps_store_commit(s, &err), PS_OK);
    return stats.last_sync_ms;
}

/* user_seen in a read transaction writes nothing, yet stats() shows it; a
 * rolled-back write transaction does not lose it, a committed one writes it,
 * and so does close. A user that is gone does not count. */
static void seen_times_wait_for_a_write(void **state)
{
    fixture *f = *state;
    ps_error err;
    ps_store *s = NULL;
    ps_user u;
    bool found = true;
    assert_int_equal(ps_store_open(f->url, &s, &err), PS_OK);
    assert_int_equal(ps_store_begin(s, false, &err), PS_OK);
    assert_int_equal(s->ops->user_find(s, "carol", &u, &found, &err), PS_OK);
    assert_false(found); /* and not created: */
    assert_int_equal(ps_store_commit(s, &err), PS_OK);
    assert_int_equal(on_disk_last_sync(f->path, "carol"), -1);
    assert_int_equal(ps_store_begin(s, true, &err), PS_OK);
    assert_int_equal(s->ops->user_load(s, "carol", &u, &err), PS_OK);
    assert_int_equal(s->ops->user_load(s, "dave", &u, &err), PS_OK);
    assert_int_equal(ps_store_commit(s, &err), PS_OK);

    assert_int_equal(ps_store_begin(s, false, &err), PS_OK);
    assert_int_equal(s->ops->user_find(s, "carol", &u, &found, &err), PS_OK);
    assert_true(found);
    assert_int_equal(s->ops->user_seen(s, "carol", 5000, &err), PS_OK);
    assert_int_equal(ps_store_commit(s, &err), PS_OK);
    assert_int_equal(on_disk_last_sync(f->path, "carol"), 0);
    assert_int_equal(stats_last_sync(s), 5000);

    assert_int_equal(ps_store_begin(s, true, &err), PS_OK);
    ps_store_rollback(s);
    assert_int_equal(on_disk_last_sync(f->path, "carol"), 0);
    assert_int_equal(stats_last_sync(s), 5000);
    assert_int_equal(ps_store_begin(s, true, &err), PS_OK);
    assert_int_equal(ps_store_commit(s, &err), PS_OK);
    assert_int_equal(on_disk_last_sync(f->path, "carol"), 5000);

    /* a later time of a user whom another process then deletes */
    assert_int_equal(ps_store_begin(s, false, &err), PS_OK);
    assert_int_equal(s->ops->user_seen(s, "dave", 9000, &err), PS_OK);
    assert_int_equal(s->ops->user_seen(s, "carol", 7000, &err), PS_OK);
    assert_int_equal(ps_store_commit(s, &err), PS_OK);
    assert_int_equal(stats_last_sync(s), 9000);
    sqlite3 *admin = NULL;
    assert_int_equal(sqlite3_open(f->path, &admin), SQLITE_OK);
    assert_int_equal(sqlite3_exec(admin, "DELETE FROM users WHERE name = 'dave'", NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(admin);
    assert_int_equal(stats_last_sync(s), 7000);
    ps_store_close(s); /* a clean stop writes what is left */
    assert_int_equal(on_disk_last_sync(f->path, "carol"), 7000);
    assert_int_equal(on_disk_last_sync(f->path, "dave"), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(reopen_keeps_chats, setup, teardown),
        cmocka_unit_test_setup_teardown(rollback_discards, setup, teardown),
        cmocka_unit_test_setup_teardown(migrates_from_version_1, setup, teardown),
        cmocka_unit_test_setup_teardown(refuses_newer_schema, setup, teardown),
        cmocka_unit_test_setup_teardown(bases_round_trip_and_go_with_their_chat, setup, teardown),
        cmocka_unit_test_setup_teardown(base_note_sent_adds_the_chat, setup, teardown),
        cmocka_unit_test_setup_teardown(purge_forgets_only_old_tombstones, setup, teardown),
        cmocka_unit_test_setup_teardown(seen_times_wait_for_a_write, setup, teardown),
        cmocka_unit_test(bad_urls_are_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
