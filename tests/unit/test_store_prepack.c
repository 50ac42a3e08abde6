/*
 * Message values packed ahead of the write transaction (store.h,
 * values_pack_ahead; docs/performance.md "upload2"): polysyncd packs a
 * push's values with the user's dictionary in a read transaction, and the
 * save inside the write transaction takes each form made so, but only one
 * made for that user with the dictionary it packs with then. A form made
 * with a dictionary since replaced, or for another user, must never reach
 * the disk: the save packs that value again. Oracles: the texts the test
 * put in, read back through the store; the dictionary replaced by hand in
 * the file. Includes the .c file to reach the connection.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "../../src/store/store_sqlite.c"
#include "store_fixture.h"
#include "store_rows_fixture.h"
#include "sqlite_fixture.h"
#include "pushed_chat_fixture.h"

#include <stdio.h>
#include <unistd.h>
#include <zstd.h>

static int setup(void **state)
{
    return store_fixture_sqlite(state, "prepack", "p.db");
}

/* A pushed chat (pushed_chat_fixture.h) numbered as a merge leaves it. */
static ps_chat *new_chat(const char *id, int n, unsigned seed)
{
    ps_chat *c = new_pushed_chat(id, n, seed);
    ps__chat_number_received(c);
    return c;
}

/* Saves the chat with its rendering as change `seq`, in a write
 * transaction, its messages as rows: the chat made first when new
 * (store_rows_make_existing; a new chat's messages would be a pack), the
 * save of its messages an update (these tests are of row values). */
static void save(ps_store *s, int64_t user, ps_chat *c, int64_t seq)
{
    ps_error err;
    assert_int_equal(ps__chat_mark_dirty(c, seq, "dev"), PS_OK);
    json_object *doc = ps__chat_to_legacy(c);
    size_t doc_len;
    const char *doc_text = ps__json_text(doc, &doc_len);
    assert_int_equal(ps_store_begin(s, true, &err), PS_OK);
    if (stored_size((sqlite_store *)s, Q_CHAT_SIZE, user, c->id, NULL) == 0)
        store_rows_make_existing(s, user, c->id, seq);
    assert_int_equal(s->ops->chat_save(s, user, c, doc_text, doc_len, seq, &err), PS_OK);
    assert_int_equal(ps_store_commit(s, &err), PS_OK);
    json_object_put(doc);
}

/* A store whose user "zed" (*user) has a dictionary: 1.2 MB of values. */
static ps_store *store_with_dictionary(fixture *f, int64_t *user)
{
    ps_error err;
    ps_store *s = NULL;
    assert_int_equal(ps_store_open(f->url, &s, &err), PS_OK);
    ps_user u;
    assert_int_equal(ps_store_begin(s, true, &err), PS_OK);
    assert_int_equal(s->ops->user_load(s, "zed", &u, &err), PS_OK);
    assert_int_equal(s->ops->user_save(s, &u, &err), PS_OK);
    assert_int_equal(ps_store_commit(s, &err), PS_OK);
    for (int i = 0; i < 30; i++) {
        char id[16];
        snprintf(id, sizeof id, "c%02d", i);
        ps_chat *c = new_chat(id, 100, 1000u * (unsigned)i);
        save(s, u.id, c, 1 + i);
        ps__chat_free(c);
    }
    assert_int_equal(query_int((sqlite_store *)s, "SELECT count(*) FROM value_dicts"), 1);
    *user = u.id;
    return s;
}

/* values_pack_ahead in a read transaction, as polysyncd runs it. */
static void pack_ahead(ps_store *s, int64_t user, ps_chat *c, ps_values_ahead *ahead)
{
    ps_error err;
    assert_int_equal(ps_store_begin(s, false, &err), PS_OK);
    assert_int_equal(s->ops->values_pack_ahead(s, user, &c, 1, ahead, &err), PS_OK);
    assert_int_equal(ps_store_commit(s, &err), PS_OK);
}

/* Before a user has a dictionary nothing is made (the save packs nothing
 * either: the values are stored plain, counted towards training). */
static void nothing_is_made_without_a_dictionary(void **state)
{
    fixture *f = *state;
    ps_error err;
    ps_store *s = NULL;
    assert_int_equal(ps_store_open(f->url, &s, &err), PS_OK);
    ps_user u;
    assert_int_equal(ps_store_begin(s, true, &err), PS_OK);
    assert_int_equal(s->ops->user_load(s, "zed", &u, &err), PS_OK);
    assert_int_equal(s->ops->user_save(s, &u, &err), PS_OK);
    assert_int_equal(ps_store_commit(s, &err), PS_OK);
    ps_chat *c = new_chat("x", 5, 7);
    ps_values_ahead ahead = {0};
    pack_ahead(s, u.id, c, &ahead);
    assert_int_equal(ahead.n, 0);
    for (size_t i = 0; i < c->nmessages; i++)
        assert_null(c->messages[i].form);
    save(s, u.id, c, 1);
    expect_content(s, u.id, "x", 3, 7 + 3);
    ps__chat_free(c);
    ps_values_ahead_free(&ahead);
    ps_store_close(s);
}

/* With the user's current dictionary, each value's form is what the save
 * stores: message 0 given message 1's form reads back as message 1's text
 * (a save that packed every value again would store message 0's own). */
static void a_current_form_is_stored_as_made(void **state)
{
    int64_t user;
    ps_store *s = store_with_dictionary(*state, &user);
    ps_chat *c = new_chat("x", 3, 50);
    ps_values_ahead ahead = {0};
    pack_ahead(s, user, c, &ahead);
    assert_int_equal(ahead.n, 3);
    uint32_t dict = (uint32_t)query_int((sqlite_store *)s, "SELECT id FROM value_dicts");
    for (size_t i = 0; i < c->nmessages; i++) {
        const ps_value_form *form = c->messages[i].form;
        assert_non_null(form);
        assert_int_equal(form->user, user);
        assert_int_equal(form->dict, dict);
        assert_true(form->packed);
        assert_true(form->len > 0 && form->len < 400);
    }
    c->messages[0].form = c->messages[1].form;
    save(s, user, c, 100);
    expect_content(s, user, "x", 0, 50 + 1);
    expect_content(s, user, "x", 1, 50 + 1);
    expect_content(s, user, "x", 2, 50 + 2);
    ps__chat_free(c);
    ps_values_ahead_free(&ahead);
    ps_store_close(s);
}

/* The user's dictionary replaced between the packing ahead and the save
 * (by hand here: another trained dictionary in its row): the forms name
 * the old one, so the save packs every value
 * again with the new one. Had it stored the old frames, reading them would
 * look for a dictionary that no longer exists (a corrupt store). A form
 * made for another user is not taken either. */
static void a_stale_form_is_packed_again(void **state)
{
    int64_t user;
    ps_store *s = store_with_dictionary(*state, &user);
    sqlite_store *ss = (sqlite_store *)s;
    ps_chat *c = new_chat("stale", 4, 300);
    ps_values_ahead ahead = {0};
    pack_ahead(s, user, c, &ahead);
    assert_int_equal(ahead.n, 4);
    uint32_t old = (uint32_t)query_int(ss, "SELECT id FROM value_dicts");
    /* another dictionary, trained on other texts, takes the old one's place */
    enum { N = 3000 };
    static char samples[N * 400];
    static size_t sizes[N];
    size_t at = 0;
    for (unsigned i = 0; i < N; i++) {
        words(samples + at, 400, 777777u + i);
        sizes[i] = strlen(samples + at);
        at += sizes[i];
    }
    ps_dynbuf fresh;
    ps__dynbuf_init(&fresh, PS_VALUE_DICT_BYTES);
    uint32_t now = 0;
    assert_int_equal(ps_value_train(samples, sizes, N, &fresh, &now), PS_OK);
    assert_int_not_equal(old, now);
    sqlite3_stmt *up = NULL;
    assert_int_equal(
        sqlite3_prepare_v2(ss->db, "UPDATE value_dicts SET id = ?1, dict = ?2", -1, &up, NULL),
        SQLITE_OK);
    sqlite3_bind_int64(up, 1, now);
    sqlite3_bind_blob(up, 2, fresh.data, (int)fresh.len, SQLITE_STATIC);
    assert_int_equal(sqlite3_step(up), SQLITE_DONE);
    sqlite3_finalize(up);
    ps__dynbuf_free(&fresh);
    assert_int_equal(c->messages[0].form->dict, old);
    /* message 3: made for someone else, with the dictionary now current */
    ps_value_form other = *c->messages[3].form;
    other.user = user + 1;
    other.dict = now;
    c->messages[3].form = &other;
    save(s, user, c, 100);
    for (int m = 0; m < 4; m++)
        expect_content(s, user, "stale", m, 300u + (unsigned)m);
    /* every row a frame of the new dictionary (zstd names it in the frame;
     * this thread's cached copy of the old one would still decode the old
     * frames, so the content alone would not tell) */
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(ss->db,
                                        "SELECT value FROM messages WHERE chat_id = 'stale'", -1,
                                        &st, NULL),
                     SQLITE_OK);
    int rows = 0;
    while (sqlite3_step(st) == SQLITE_ROW) {
        assert_int_equal(sqlite3_column_type(st, 0), SQLITE_BLOB);
        assert_int_equal(ZSTD_getDictID_fromFrame(sqlite3_column_blob(st, 0),
                                                  (size_t)sqlite3_column_bytes(st, 0)),
                         now);
        rows++;
    }
    sqlite3_finalize(st);
    assert_int_equal(rows, 4);
    ps__chat_free(c);
    ps_values_ahead_free(&ahead);
    ps_store_close(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(nothing_is_made_without_a_dictionary, setup, teardown),
        cmocka_unit_test_setup_teardown(a_current_form_is_stored_as_made, setup, teardown),
        cmocka_unit_test_setup_teardown(a_stale_form_is_packed_again, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
