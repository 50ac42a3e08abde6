/*
 * A chat a v2 answer names by id alone ({"id": ...}, what a first pull lists
 * for every chat the run pushed) is applied by ps__apply_remote_chat without
 * unpacking its header when it can be (ps__lstore_chat_touch: a row in
 * `touches`, folded in on load and into the header on the next save).
 *
 * The oracle is the general path those entries took before: the change
 * {chatId, clock: S, fields: {}} merged by ps__apply_change_ex as the
 * server's write with the tuple (S, "server"). The same entries go through
 * both on two copies of one store, at the same (wrapped) clock, and the
 * stores must then hold the same chats, every part and stamp
 * (ps__chat_state_to_json of each chat loaded whole), the same listing
 * columns, the same export and the same received counts; and again after a
 * second round (a chat with a touch kept takes the general path, folding
 * it) and after a change with content to every chat (each header saved: no
 * touch is left). Cases: live chats with a createdAt (kept aside), a chat
 * without one, a deleted one, one not in the store (all merged whole), and
 * a round whose clock is below the chats' own (nothing to raise).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "client/client_internal.h"
#include "client/sync_run.h"
#include "core/chat_codec.h"
#include "polysync/polysync.h"

#include <json-c/json.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Both paths read the time: the same for both in a round (-Wl,--wrap). */
static int64_t fake_now_ms = 1800000000000LL;
int64_t __wrap_ps__time_now_ms(void);
int64_t __wrap_ps__time_now_ms(void)
{
    return fake_now_ms;
}

static const char HISTORY[] =
    "[{\"id\":\"live-a\",\"title\":\"A\",\"createdAt\":\"2024-01-15T10:00:00.000Z\","
    "  \"messages\":[{\"id\":\"a1\",\"role\":\"user\",\"content\":\"hi\","
    "                 \"timestamp\":\"2024-01-15T10:00:00.000Z\"},"
    "                {\"id\":\"a2\",\"role\":\"assistant\",\"content\":\"hello\","
    "                 \"timestamp\":\"2024-01-15T10:01:00.000Z\"}]},"
    " {\"id\":\"live-b\",\"title\":\"B\",\"isArchived\":true,"
    "  \"createdAt\":\"2024-02-01T09:00:00.000Z\",\"updatedAt\":\"2024-02-02T09:00:00.000Z\","
    "  \"messages\":[{\"id\":\"b1\",\"role\":\"user\",\"content\":\"x\","
    "                 \"timestamp\":\"2024-02-01T09:00:00.000Z\"}]},"
    " {\"id\":\"no-created\",\"title\":\"N\","
    "  \"messages\":[{\"id\":\"n1\",\"role\":\"user\",\"content\":\"y\","
    "                 \"timestamp\":\"2024-03-01T09:00:00.000Z\"}]},"
    " {\"id\":\"gone\",\"title\":\"G\",\"createdAt\":\"2024-01-15T10:00:00.000Z\","
    "  \"messages\":[]}]";

static const char *const NAMED[] = {"live-a", "live-b", "no-created", "gone", "absent"};
#define NNAMED (sizeof NAMED / sizeof NAMED[0])

typedef struct pair {
    char dir[64];
    char fast_path[128], slow_path[128];
    ps_client *fast, *slow;
} pair;

static void check(ps_code rc, const ps_error *err)
{
    if (rc != PS_OK)
        fail_msg("%s", err->message);
}

static void open_pair(pair *p)
{
    ps_error err;
    snprintf(p->dir, sizeof p->dir, "/tmp/ps-touch-XXXXXX");
    assert_non_null(mkdtemp(p->dir));
    snprintf(p->fast_path, sizeof p->fast_path, "%s/fast.db", p->dir);
    snprintf(p->slow_path, sizeof p->slow_path, "%s/slow.db", p->dir);
    ps_client *c = NULL;
    check(ps_client_open(p->fast_path, &c, &err), &err);
    ps_import_report *rep = NULL;
    check(ps_client_import(c, HISTORY, strlen(HISTORY), &rep, &err), &err);
    ps_import_report_free(rep);
    check(ps_client_chat_delete(c, "gone", &err), &err);
    ps_client_close(c); /* the WAL folded in: the file is the whole store */
    char cmd[400];
    snprintf(cmd, sizeof cmd, "cp %s %s", p->fast_path, p->slow_path);
    assert_int_equal(system(cmd), 0);
    check(ps_client_open(p->fast_path, &p->fast, &err), &err);
    check(ps_client_open(p->slow_path, &p->slow, &err), &err);
}

static void close_pair(pair *p)
{
    ps_client_close(p->fast);
    ps_client_close(p->slow);
    char cmd[200];
    snprintf(cmd, sizeof cmd, "rm -rf %s", p->dir);
    assert_int_equal(system(cmd), 0);
}

/* One answer's id-only entries at serverClock S: through the code under
 * test on `fast`, through the general path on `slow`; the same counts. */
static void apply_round(pair *p, int64_t S)
{
    ps_error err;
    ps_sync_stats st_fast = {0};
    sync_run r = {.c = p->fast, .st = &st_fast};
    check(ps__lstore_begin(p->fast->store, &err), &err);
    for (size_t i = 0; i < NNAMED; i++) {
        json_object *chat = json_object_new_object();
        json_object_object_add(chat, "id", json_object_new_string(NAMED[i]));
        check(ps__apply_remote_chat(&r, chat, S, &err), &err);
        json_object_put(chat);
    }
    check(ps__lstore_commit(p->fast->store, &err), &err);

    size_t chats_received = 0, messages_received = 0;
    ps_lamport tuple = {.counter = S, .id = "server"};
    check(ps__lstore_begin(p->slow->store, &err), &err);
    for (size_t i = 0; i < NNAMED; i++) {
        json_object *change = json_object_new_object();
        json_object_object_add(change, "chatId", json_object_new_string(NAMED[i]));
        json_object_object_add(change, "clock", json_object_new_int64(S));
        json_object_object_add(change, "fields", json_object_new_object());
        ps_apply_effect eff;
        check(ps__apply_change_ex(p->slow, change, PS_SERVER_WRITER, &tuple, &eff, &err), &err);
        chats_received += eff.chat_changed;
        messages_received += eff.messages_changed;
        json_object_put(change);
    }
    check(ps__lstore_commit(p->slow->store, &err), &err);
    assert_int_equal(st_fast.chats_received, chats_received);
    assert_int_equal(st_fast.messages_received, messages_received);
}

/* A change with content to every stored chat, on both, by the general path. */
static void edit_all(pair *p, int64_t S)
{
    ps_client *both[2] = {p->fast, p->slow};
    ps_lamport tuple = {.counter = S, .id = "server"};
    for (int k = 0; k < 2; k++) {
        ps_error err;
        check(ps__lstore_begin(both[k]->store, &err), &err);
        for (size_t i = 0; i < NNAMED; i++) {
            json_object *change = json_object_new_object(), *fields = json_object_new_object();
            json_object_object_add(fields, "title", json_object_new_string("renamed"));
            json_object_object_add(change, "chatId", json_object_new_string(NAMED[i]));
            json_object_object_add(change, "clock", json_object_new_int64(S));
            json_object_object_add(change, "fields", fields);
            check(ps__apply_change_ex(both[k], change, PS_SERVER_WRITER, &tuple, NULL, &err), &err);
            json_object_put(change);
        }
        check(ps__lstore_commit(both[k]->store, &err), &err);
    }
}

static json_object *query(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    json_object *rows = json_object_new_array();
    while (sqlite3_step(st) == SQLITE_ROW) {
        json_object *row = json_object_new_array();
        for (int i = 0; i < sqlite3_column_count(st); i++) {
            const unsigned char *t = sqlite3_column_text(st, i);
            json_object_array_add(row, t ? json_object_new_string((const char *)t) : NULL);
        }
        json_object_array_add(rows, row);
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    return rows;
}

static int64_t count(const char *path, const char *sql)
{
    json_object *rows = query(path, sql);
    int64_t n =
        json_object_get_int64(json_object_array_get_idx(json_object_array_get_idx(rows, 0), 0));
    json_object_put(rows);
    return n;
}

static void assert_same_json(json_object *a, json_object *b, const char *what)
{
    if (!json_object_equal(a, b))
        fail_msg("%s differ:\n  fast %s\n  slow %s", what, json_object_to_json_string(a),
                 json_object_to_json_string(b));
}

/* Every chat, whole, with its stamps; the listing columns; the export. */
static void assert_same_stores(pair *p)
{
    ps_error err;
    for (size_t i = 0; i < NNAMED; i++) {
        ps_chat *a = NULL, *b = NULL;
        check(ps__lstore_chat_load(p->fast->store, NAMED[i], true, NULL, 0, &a, &err), &err);
        check(ps__lstore_chat_load(p->slow->store, NAMED[i], true, NULL, 0, &b, &err), &err);
        assert_true((a == NULL) == (b == NULL));
        if (a) {
            json_object *ja = ps__chat_state_to_json(a), *jb = ps__chat_state_to_json(b);
            assert_same_json(ja, jb, NAMED[i]);
            json_object_put(ja);
            json_object_put(jb);
        }
        ps__chat_free(a);
        ps__chat_free(b);
    }
    static const char cols[] =
        "SELECT id, live, title, archived, created_ms, updated_ms FROM chats ORDER BY id";
    json_object *ca = query(p->fast_path, cols), *cb = query(p->slow_path, cols);
    assert_same_json(ca, cb, "listing columns");
    json_object_put(ca);
    json_object_put(cb);
    char *ea = NULL, *eb = NULL;
    size_t la = 0, lb = 0;
    check(ps_client_export(p->fast, &ea, &la, &err), &err);
    check(ps_client_export(p->slow, &eb, &lb, &err), &err);
    assert_string_equal(ea, eb);
    free(ea);
    free(eb);
}

static void test_id_only_entries_same_as_the_general_path(void **state)
{
    (void)state;
    pair p;
    open_pair(&p);
    /* above every chat's own clock: the tuple and the touched stamp rise */
    fake_now_ms = 1800000000000LL;
    apply_round(&p, 1000);
    /* kept aside: the two live chats with a createdAt, and only them */
    assert_int_equal(count(p.fast_path, "SELECT count(*) FROM touches"), 2);
    assert_int_equal(count(p.slow_path, "SELECT count(*) FROM touches"), 0);
    assert_same_stores(&p);
    /* again, higher: the chats with a touch kept take the general path */
    fake_now_ms += 5000;
    apply_round(&p, 2000);
    assert_same_stores(&p);
    /* a content change saves each header: no touch is left behind */
    fake_now_ms += 5000;
    edit_all(&p, 3000);
    assert_int_equal(count(p.fast_path, "SELECT count(*) FROM touches"), 0);
    assert_same_stores(&p);
    close_pair(&p);
}

static void test_id_only_entries_below_the_chats_clock(void **state)
{
    (void)state;
    pair p;
    open_pair(&p);
    /* a clock below the chats' own: nothing rises, kept aside all the same */
    fake_now_ms = 1700000000000LL;
    apply_round(&p, 1);
    assert_int_equal(count(p.fast_path, "SELECT count(*) FROM touches"), 2);
    assert_same_stores(&p);
    fake_now_ms += 5000;
    apply_round(&p, 2500);
    assert_same_stores(&p);
    close_pair(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_id_only_entries_same_as_the_general_path),
        cmocka_unit_test(test_id_only_entries_below_the_chats_clock),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
