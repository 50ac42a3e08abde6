/*
 * SQLite schema 11 (docs/storage.md, "Hot and cold rows"): the index by
 * sequence number holds only rows written after their chat was new, and a
 * message's origin is left NULL when it is its stamp's device. What a
 * device is sent must not change: for every cursor, messages_since gives
 * exactly the messages last written after it (the test's own record of
 * which save wrote which message), with their origin, and leaves out the
 * asker's own. The migration from schema 10 keeps every row and its
 * fields. Includes the .c file to reach MIGRATIONS (to build a schema-10
 * store by hand) and the connection.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "../../src/store/store_sqlite.c"
#include "sqlite_fixture.h"
#include "store_fixture.h"

#include <stdio.h>
#include <unistd.h>

static int setup(void **state)
{
    return store_fixture_sqlite(state, "hot", "h.db");
}

/* What messages_since gave: "id@seq:origin" per message, in order. */
typedef struct seen {
    char items[32][48];
    int n;
} seen;

static ps_code collect(void *ctx, const ps_message *m)
{
    seen *s = ctx;
    assert_true(s->n < 32);
    snprintf(s->items[s->n++], sizeof s->items[0], "%s@%lld:%s", m->id, (long long)m->mark.seq,
             m->mark.origin);
    return PS_OK;
}

/* The model: a message, the save that last wrote it, from which device. */
typedef struct written {
    const char *id;
    int64_t seq;
    const char *origin;
    int64_t order_ts;
} written;

/* messages_since(after, skip) must give exactly the model's messages
 * written after `after`, less the asker's own after skip_after, in display
 * order (order_ts; the model's are distinct). */
static void expect_since(ps_store *s, int64_t user, const char *chat, const written *w, int n,
                         int64_t after, const char *skip, int64_t skip_after)
{
    seen got = {0};
    ps_error err;
    assert_int_equal(
        s->ops->messages_since(s, user, chat, after, skip, skip_after, collect, &got, &err), PS_OK);
    seen want = {0};
    int64_t last_ts = INT64_MIN;
    for (;;) { /* the model's in order_ts order */
        const written *next = NULL;
        for (int i = 0; i < n; i++)
            if (w[i].order_ts > last_ts && (!next || w[i].order_ts < next->order_ts))
                next = &w[i];
        if (!next)
            break;
        last_ts = next->order_ts;
        if (next->seq > after &&
            !(skip && strcmp(next->origin, skip) == 0 && next->seq > skip_after))
            snprintf(want.items[want.n++], sizeof want.items[0], "%s@%lld:%s", next->id,
                     (long long)next->seq, next->origin);
    }
    if (got.n != want.n)
        fail_msg("chat %s after %lld: %d messages, want %d", chat, (long long)after, got.n, want.n);
    for (int i = 0; i < got.n; i++)
        assert_string_equal(got.items[i], want.items[i]);
}

static void add(ps_chat *c, const char *id, const char *device, int64_t order_ts)
{
    ps_stamp st = {.ts = order_ts, .device = (char *)device};
    json_object *v = json_object_new_object();
    json_object_object_add(v, "id", json_object_new_string(id));
    json_object_object_add(v, "content", json_object_new_string(id));
    assert_int_equal(ps__chat_append_message(c, id, v, &st, order_ts), PS_OK);
}

/* Saves `c` (its dirty messages) at `seq` from `origin`, unrendered. */
static void save(ps_store *s, int64_t user, ps_chat *c, int64_t seq, const char *origin)
{
    ps__chat_normalize(c);
    ps__chat_number_received(c);
    assert_int_equal(ps__chat_mark_dirty(c, seq, origin), PS_OK);
    ps_error err;
    if (s->ops->chat_save(s, user, c, NULL, 0, seq, &err) != PS_OK)
        fail_msg("chat_save: %s", err.message);
}

static ps_chat *chat_new(const char *id)
{
    ps_chat *c = ps__chat_new(id);
    ps_stamp st = {.ts = 1, .device = (char *)"phone"};
    bool changed;
    assert_int_equal(ps__chat_put_field(c, "title", json_object_new_string(id), &st, &changed),
                     PS_OK);
    assert_int_equal(ps__lamport_set(&c->lamport, 1, "server"), PS_OK);
    return c;
}

/* A chat new at change 5 (10 messages), then one message rewritten and one
 * added at 9 by another device, one more at 12; a chat copied whole with
 * rows of several sequence numbers (as `polysyncd migrate` writes one);
 * every cursor from 0 to 13 gets what the model says, and the rows of the
 * new chats stay out of the index. */
static void every_cursor_gets_what_changed_after_it(void **state)
{
    fixture *f = *state;
    ps_error err;
    ps_store *s = NULL;
    assert_int_equal(ps_store_open(f->url, &s, &err), PS_OK);
    ps_user u;
    assert_int_equal(ps_store_begin(s, true, &err), PS_OK);
    assert_int_equal(s->ops->user_load(s, "hot", &u, &err), PS_OK);

    static const char *const ids[] = {"m0", "m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "m9"};
    written a[12];
    ps_chat *c = chat_new("a");
    for (int i = 0; i < 10; i++) {
        add(c, ids[i], "phone", 100 + i);
        a[i] = (written){ids[i], 5, "phone", 100 + i};
    }
    save(s, u.id, c, 5, "phone");
    ps__chat_free(c);
    /* the laptop rewrites m3 and adds m10 at 9 (its stamp: the laptop) */
    c = chat_new("a");
    add(c, "m3", "laptop", 103);
    add(c, "m10", "laptop", 110);
    save(s, u.id, c, 9, "laptop");
    ps__chat_free(c);
    a[3] = (written){"m3", 9, "laptop", 103};
    a[10] = (written){"m10", 9, "laptop", 110};
    /* m11 at 12, its origin not its stamp's device */
    c = chat_new("a");
    add(c, "m11", "phone", 111);
    save(s, u.id, c, 12, "tablet");
    ps__chat_free(c);
    a[11] = (written){"m11", 12, "tablet", 111};

    /* chat c new, copied with rows marked 3, 7 and 5 */
    c = chat_new("c");
    add(c, "c0", "phone", 300);
    add(c, "c1", "phone", 301);
    add(c, "c2", "phone", 302);
    ps__chat_normalize(c);
    ps__chat_number_received(c);
    assert_int_equal(ps__chat_mark_dirty(c, 7, "phone"), PS_OK);
    ((ps_message *)ps__chat_message(c, "c0"))->mark.seq = 3;
    ((ps_message *)ps__chat_message(c, "c2"))->mark.seq = 5;
    assert_int_equal(s->ops->chat_save(s, u.id, c, NULL, 0, 7, &err), PS_OK);
    ps__chat_free(c);
    written cc[3] = {{"c0", 3, "phone", 300}, {"c1", 7, "phone", 301}, {"c2", 5, "phone", 302}};
    assert_int_equal(ps_store_commit(s, &err), PS_OK);

    assert_int_equal(ps_store_begin(s, false, &err), PS_OK);
    for (int64_t after = 0; after <= 13; after++) {
        expect_since(s, u.id, "a", a, 12, after, NULL, 0);
        expect_since(s, u.id, "c", cc, 3, after, NULL, 0);
        /* the asker's own left out: the laptop's after 8, the phone's after 0 */
        expect_since(s, u.id, "a", a, 12, after, "laptop", 8);
        expect_since(s, u.id, "a", a, 12, after, "phone", 0);
        expect_since(s, u.id, "a", a, 12, after, "tablet", 11);
    }
    ps_store_rollback(s);
    sqlite_store *ss = (sqlite_store *)s;
    /* what was new with its chat is not in the index: a's first ten less
     * the one rewritten, and c's rows; origin kept only where it is not
     * the stamp's device (m11) */
    assert_int_equal(query_int(ss, "SELECT count(*) FROM messages WHERE NOT hot"), 9 + 3);
    assert_int_equal(query_int(ss, "SELECT count(*) FROM messages INDEXED BY messages_hot"
                                   " WHERE user_id = 1 AND chat_id = 'a' AND hot AND seq > 0"),
                     3);
    assert_int_equal(query_int(ss, "SELECT count(*) FROM messages WHERE origin IS NOT NULL"), 1);
    ps_store_close(s);
}

/* A schema-10 store (made by its own migrations, rows as schema 10 wrote
 * them: origin always spelt out, every row in messages_by_seq) migrates to
 * 11: every row kept with its fields; each cursor gets what changed after
 * it; the old index is gone; the file is sound. */
static void migrates_from_schema_10(void **state)
{
    fixture *f = *state;
    sqlite3 *db = sqlite_at_schema(f->path, 10);
    char *msg = NULL;
    const char *state_json = "{\"id\":\"a\",\"f\":{\"title\":[\"T\",[5,0,\"d\"],2,\"d\"]},"
                             "\"L\":[3,\"d\"],\"n\":4}";
    char sql[2048];
    snprintf(sql, sizeof sql,
             "INSERT INTO users(id, name, clock, seq, bytes) VALUES (1, 'u', 9, 8, 1);"
             "INSERT INTO chats(user_id, id, live, state, doc, seq) VALUES (1, 'a', 1, '', '', 8),"
             "  (1, 'empty', 1, '', '', 2);"
             "INSERT INTO chat_bodies(user_id, chat_id, state, shell) VALUES"
             "  (1, 'a', '%s', '{\"id\":\"a\",\"messages\":[]}'),"
             "  (1, 'empty', '%s', '{\"id\":\"empty\",\"messages\":[]}');"
             /* a's first save at 4 (two rows), a rewrite at 6 from another
              * device, a deletion at 8 whose origin is not its stamp's */
             "INSERT INTO messages VALUES"
             "  (1, 'a', 'x', '{\"id\":\"x\"}', 5, 0, 'd', 10, 4, 'd', 0, 0),"
             "  (1, 'a', 'y', '{\"id\":\"y\"}', 5, 0, 'd', 20, 4, 'd', 0, 1),"
             "  (1, 'a', 'z', '{\"id\":\"z\",\"v\":2}', 7, 1, 'e', 30, 6, 'e', 1, 2),"
             "  (1, 'a', 'w', NULL, 9, 2, 'd', 40, 8, 'f', 0, 3);",
             state_json, state_json);
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK)
        fail_msg("schema-10 rows: %s", msg);
    sqlite3_close(db);

    ps_error err;
    ps_store *s = NULL;
    if (ps_store_open(f->url, &s, &err) != PS_OK)
        fail_msg("open: %s", err.message);
    sqlite_store *ss = (sqlite_store *)s;
    assert_int_equal(schema_version(ss), SCHEMA_VERSION);
    assert_int_equal(query_int(ss, "SELECT count(*) FROM pragma_integrity_check"
                                   " WHERE integrity_check = 'ok'"),
                     1);
    assert_int_equal(query_int(ss, "SELECT count(*) FROM sqlite_schema"
                                   " WHERE name = 'messages_by_seq'"),
                     0);
    assert_int_equal(query_int(ss, "SELECT cold_seq FROM chats WHERE id = 'a'"), 4);
    assert_int_equal(query_int(ss, "SELECT count(*) FROM messages WHERE hot"), 2);

    written a[4] = {{"x", 4, "d", 10}, {"y", 4, "d", 20}, {"z", 6, "e", 30}, {"w", 8, "f", 40}};
    assert_int_equal(ps_store_begin(s, false, &err), PS_OK);
    for (int64_t after = 0; after <= 9; after++) {
        expect_since(s, 1, "a", a, 4, after, NULL, 0);
        expect_since(s, 1, "a", a, 4, after, "d", 0);
        expect_since(s, 1, "a", a, 4, after, "e", 5);
    }
    /* every field of a row as schema 10 had it */
    ps_chat *c = NULL;
    assert_int_equal(s->ops->chat_load(s, 1, "a", true, &c, &err), PS_OK);
    assert_non_null(c);
    assert_int_equal(c->nmessages, 4);
    const ps_message *z = ps__chat_message(c, "z");
    assert_non_null(z);
    assert_int_equal(z->stamp.ts, 7);
    assert_int_equal(z->stamp.lamport, 1);
    assert_string_equal(z->stamp.device, "e");
    assert_int_equal(z->order_ts, 30);
    assert_int_equal(z->mark.seq, 6);
    assert_string_equal(z->mark.origin, "e");
    assert_true(z->stamp.timed);
    assert_int_equal(z->received, 2);
    assert_string_equal(json_object_to_json_string_ext(z->value, JSON_C_TO_STRING_PLAIN),
                        "{\"id\":\"z\",\"v\":2}");
    const ps_message *w = ps__chat_message(c, "w");
    assert_non_null(w);
    assert_null(w->value);
    assert_string_equal(w->stamp.device, "d");
    assert_string_equal(w->mark.origin, "f");
    ps__chat_free(c);
    ps_store_rollback(s);
    ps_store_close(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(every_cursor_gets_what_changed_after_it, setup, teardown),
        cmocka_unit_test_setup_teardown(migrates_from_schema_10, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
