/*
 * The storage contract of store.h, through the vtable only, on the backend
 * PS_TEST_DB names: unset or "sqlite" = a SQLite file in a temporary
 * folder; a postgres://... URL (or "@FILE" holding one) = a fresh database
 * on that server per test. `make check` runs it both ways. Oracle: what
 * store.h promises (reopen keeps data, rollback discards, only dirty
 * messages are written, the change order, listings in byte order, the sent
 * hash, purge, quotas' byte counts, user deletion, tokens, accounts and the
 * access generation, the device registry, collection by acknowledgement,
 * renaming).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "core/base.h"
#include "core/chat_codec.h"
#include "core/json_parse.h"
#include "core/merge.h"
#include "store/store.h"
#include "store_fixture.h"
#include "server/sync_common.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int setup(void **state)
{
    return store_fixture_setup(state, "unit");
}

static ps_store *open_store(const fixture *f)
{
    ps_error err;
    ps_store *s = NULL;
    ps_code rc = ps_store_open(f->url, &s, &err);
    if (rc != PS_OK)
        fail_msg("open %s: %s", f->url, err.message);
    return s;
}

static ps_chat *titled(const char *id, const char *title, int64_t ts)
{
    ps_chat *c = ps__chat_new(id);
    ps_stamp st = {.ts = ts, .lamport = 0, .device = (char *)"dev"};
    bool changed;
    assert_int_equal(ps__chat_put_field(c, "title", json_object_new_string(title), &st, &changed),
                     PS_OK);
    assert_int_equal(ps__lamport_set(&c->lamport, 1, "server"), PS_OK);
    return c;
}

static void add_message(ps_chat *c, const char *id, const char *text, int64_t order_ts)
{
    ps_stamp st = {.ts = order_ts, .lamport = 0, .device = (char *)"dev"};
    json_object *v = json_object_new_object();
    json_object_object_add(v, "id", json_object_new_string(id));
    json_object_object_add(v, "content", json_object_new_string(text));
    assert_int_equal(ps__chat_append_message(c, id, v, &st, order_ts), PS_OK);
    ps__chat_normalize(c);
}

/* Saves the chat at change sequence `seq` from `origin`, rendered, its new
 * messages numbered first as polysyncd's saves number them
 * (ps__chat_number_received, sync_common.c). */
static void save(ps_store *s, int64_t user, ps_chat *c, int64_t seq, const char *origin)
{
    ps_error err;
    ps__chat_number_received(c);
    ps_code rc = ps__chat_mark_dirty(c, seq, origin);
    assert_int_equal(rc, PS_OK);
    json_object *doc = ps__chat_to_legacy(c);
    size_t len;
    const char *text = ps__json_text(doc, &len);
    rc = s->ops->chat_save(s, user, c, text, len, seq, &err);
    if (rc != PS_OK)
        fail_msg("chat_save: %s", err.message);
    json_object_put(doc);
}

static int64_t begin_user(ps_store *s, bool write, const char *name, ps_user *u)
{
    ps_error err;
    assert_int_equal(ps_store_begin(s, write, &err), PS_OK);
    assert_int_equal(s->ops->user_load(s, name, u, &err), PS_OK);
    return u->id;
}

static void commit(ps_store *s)
{
    ps_error err;
    ps_code rc = ps_store_commit(s, &err);
    if (rc != PS_OK)
        fail_msg("commit: %s", err.message);
}

static void reopen_keeps_users_chats_and_messages(void **state)
{
    fixture *f = *state;
    ps_error err;
    ps_store *s = open_store(f);
    ps_user u;
    begin_user(s, true, "alice", &u);
    ps_chat *c = titled("c1", "Hello", 1000);
    add_message(c, "m2", "second", 2000);
    add_message(c, "m1", "first \"quoted\" \\ back", 1000);
    save(s, u.id, c, 1, "laptop");
    ps__chat_free(c);
    u.clock = 42;
    u.seq = 1;
    assert_int_equal(s->ops->user_save(s, &u, &err), PS_OK);
    commit(s);
    ps_store_close(s);

    s = open_store(f);
    begin_user(s, false, "alice", &u);
    assert_int_equal(u.clock, 42);
    assert_int_equal(u.seq, 1);
    ps_chat *back = NULL;
    assert_int_equal(s->ops->chat_load(s, u.id, "c1", true, &back, &err), PS_OK);
    assert_non_null(back);
    assert_string_equal(json_object_get_string(ps__chat_field(back, "title")->value), "Hello");
    assert_int_equal(back->nmessages, 2);
    const ps_message *m1 = ps__chat_message(back, "m1");
    assert_non_null(m1);
    json_object *content = NULL;
    assert_true(json_object_object_get_ex(m1->value, "content", &content));
    assert_string_equal(json_object_get_string(content), "first \"quoted\" \\ back");
    assert_int_equal(m1->mark.seq, 1);
    assert_string_equal(m1->mark.origin, "laptop");
    ps__chat_free(back);
    /* without messages: the chat-level parts only */
    assert_int_equal(s->ops->chat_load(s, u.id, "c1", false, &back, &err), PS_OK);
    assert_int_equal(back->nmessages, 0);
    /* and some messages by id (the missing one is not invented) */
    const char *ids[2] = {"m2", "nope"};
    assert_int_equal(s->ops->messages_load(s, u.id, back, ids, 2, &err), PS_OK);
    assert_int_equal(back->nmessages, 1);
    assert_string_equal(back->messages[0].id, "m2");
    ps__chat_free(back);
    assert_int_equal(s->ops->chat_load(s, u.id, "nope", true, &back, &err), PS_OK);
    assert_null(back);
    commit(s);
    ps_store_close(s);
}

static void rollback_discards(void **state)
{
    fixture *f = *state;
    ps_error err;
    ps_store *s = open_store(f);
    ps_user u;
    begin_user(s, true, "bob", &u);
    ps_chat *c = titled("gone", "x", 1);
    save(s, u.id, c, 1, "d");
    ps__chat_free(c);
    ps_store_rollback(s);
    bool found = true;
    assert_int_equal(ps_store_begin(s, false, &err), PS_OK);
    /* the user made in the rolled-back transaction is gone too */
    assert_int_equal(s->ops->user_find(s, "bob", &u, &found, &err), PS_OK);
    assert_false(found);
    commit(s);
    ps_store_close(s);
}

typedef struct seen_msgs {
    char ids[8][16];
    int n;
} seen_msgs;

static ps_code collect(void *ctx, const ps_message *m)
{
    seen_msgs *s = ctx;
    snprintf(s->ids[s->n++], sizeof s->ids[0], "%s%s", m->id, m->value ? "" : "(deleted)");
    return PS_OK;
}

/* The change order: next changed chat after a sequence number, and the
 * messages set after one, in display order, without the asker's own. */
static void changes_come_in_sequence_order(void **state)
{
    fixture *f = *state;
    ps_error err;
    ps_store *s = open_store(f);
    ps_user u;
    begin_user(s, true, "carol", &u);
    ps_chat *a = titled("a", "A", 1);
    add_message(a, "a1", "x", 50);
    save(s, u.id, a, 1, "phone");
    ps_chat *b = titled("b", "B", 1);
    save(s, u.id, b, 2, "phone");
    ps__chat_free(b);
    /* a again, later: one new message from the laptop, one older in display order */
    ps__chat_clear_dirty(a);
    add_message(a, "a3", "y", 40);
    add_message(a, "a2", "z", 60);
    save(s, u.id, a, 3, "laptop");
    ps__chat_free(a);
    commit(s);

    assert_int_equal(ps_store_begin(s, false, &err), PS_OK);
    ps_chat *next = NULL;
    int64_t seq = 0;
    assert_int_equal(s->ops->chat_next_changed(s, u.id, 0, &next, &seq, &err), PS_OK);
    assert_string_equal(next->id, "b"); /* a moved to 3 */
    assert_int_equal(seq, 2);
    ps__chat_free(next);
    assert_int_equal(s->ops->chat_next_changed(s, u.id, 2, &next, &seq, &err), PS_OK);
    assert_string_equal(next->id, "a");
    assert_int_equal(seq, 3);
    ps__chat_free(next);
    assert_int_equal(s->ops->chat_next_changed(s, u.id, 3, &next, &seq, &err), PS_OK);
    assert_null(next);
    seen_msgs got = {0};
    assert_int_equal(s->ops->messages_since(s, u.id, "a", 0, NULL, 0, collect, &got, &err), PS_OK);
    assert_int_equal(got.n, 3);
    assert_string_equal(got.ids[0], "a3"); /* display order: order_ts */
    assert_string_equal(got.ids[1], "a1");
    assert_string_equal(got.ids[2], "a2");
    memset(&got, 0, sizeof got);
    assert_int_equal(s->ops->messages_since(s, u.id, "a", 1, "laptop", 1, collect, &got, &err),
                     PS_OK);
    assert_int_equal(got.n, 0); /* after 1 only the laptop's, and it is the laptop asking */
    memset(&got, 0, sizeof got);
    assert_int_equal(s->ops->messages_since(s, u.id, "a", 1, "phone", 1, collect, &got, &err),
                     PS_OK);
    assert_int_equal(got.n, 2);
    /* the asker's own left out only when set after skip_after: the laptop's
     * rows (change 3) after 2 go, the phone's (change 1) stay */
    memset(&got, 0, sizeof got);
    assert_int_equal(s->ops->messages_since(s, u.id, "a", 0, "laptop", 2, collect, &got, &err),
                     PS_OK);
    assert_int_equal(got.n, 1);
    assert_string_equal(got.ids[0], "a1");
    memset(&got, 0, sizeof got);
    assert_int_equal(s->ops->messages_since(s, u.id, "a", 0, "laptop", 3, collect, &got, &err),
                     PS_OK);
    assert_int_equal(got.n, 3); /* nothing of the laptop's after 3 */
    memset(&got, 0, sizeof got);
    assert_int_equal(s->ops->messages_since(s, u.id, "a", 0, "phone", 0, collect, &got, &err),
                     PS_OK);
    assert_int_equal(got.n, 2);
    assert_string_equal(got.ids[0], "a3");
    assert_string_equal(got.ids[1], "a2");
    commit(s);
    ps_store_close(s);
}

typedef struct listing {
    char ids[8][16];
    char docs[8][8];
    bool live[8];
    int n;
} listing;

static int list_row(void *ctx, const ps_chat_row *row)
{
    listing *l = ctx;
    snprintf(l->ids[l->n], sizeof l->ids[0], "%s", row->id);
    l->live[l->n] = row->live;
    size_t len = 0;
    const char *doc = row->doc(row, &len);
    snprintf(l->docs[l->n], sizeof l->docs[0], "%.*s", doc ? 1 : 0, doc ? doc : "");
    l->n++;
    return 0;
}

/* Listed in byte order of ids (as SQLite compares), tombstones included,
 * each with its rendering. */
static void listing_in_byte_order_with_tombstones(void **state)
{
    fixture *f = *state;
    ps_error err;
    ps_store *s = open_store(f);
    ps_user u;
    begin_user(s, true, "dave", &u);
    const char *ids[3] = {"b", "B", "a"};
    for (int i = 0; i < 3; i++) {
        ps_chat *c = titled(ids[i], "t", 1);
        if (i == 2) {
            ps_stamp del = {.ts = 9, .device = (char *)"dev"};
            ps_lamport shown = {.counter = 7, .id = (char *)"server"};
            bool changed;
            assert_int_equal(ps__chat_delete(c, &del, &shown, &changed), PS_OK);
        }
        save(s, u.id, c, i + 1, "d");
        ps__chat_free(c);
    }
    commit(s);
    assert_int_equal(ps_store_begin(s, false, &err), PS_OK);
    listing l = {0};
    assert_int_equal(s->ops->chat_each(s, u.id, list_row, &l, &err), PS_OK);
    assert_int_equal(l.n, 3);
    assert_string_equal(l.ids[0], "B");
    assert_string_equal(l.ids[1], "a");
    assert_string_equal(l.ids[2], "b");
    assert_true(l.live[0]);
    assert_false(l.live[1]);
    assert_string_equal(l.docs[0], "{");
    ps_store_stats st;
    assert_int_equal(s->ops->stats(s, &st, &err), PS_OK);
    assert_int_equal(st.live_chats, 2);
    commit(s);
    ps_store_close(s);
}

static void sent_hash_and_bytes(void **state)
{
    fixture *f = *state;
    ps_error err;
    ps_store *s = open_store(f);
    ps_user u;
    begin_user(s, true, "erin", &u);
    ps_chat *c = titled("c", "t", 1);
    save(s, u.id, c, 1, "d");
    int64_t small = 0, big = 0;
    assert_int_equal(s->ops->user_bytes(s, u.id, &small, &err), PS_OK);
    assert_true(small > 0);
    ps__chat_clear_dirty(c);
    char text[2000];
    memset(text, 'x', sizeof text - 1);
    text[sizeof text - 1] = '\0';
    add_message(c, "long", text, 5);
    save(s, u.id, c, 2, "d");
    assert_int_equal(s->ops->user_bytes(s, u.id, &big, &err), PS_OK);
    assert_true(big >= small + 1999);
    ps__chat_free(c);
    assert_int_equal(
        s->ops->chat_set_sent(s, u.id, "dev-a", "c", 0xfeedbeefcafe1234ull, 0xc0ull, &err), PS_OK);
    commit(s);

    begin_user(s, true, "erin", &u);
    char id[64];
    bool unchanged = false;
    assert_int_equal(s->ops->chat_find_sent(s, u.id, "dev-a", 0xfeedbeefcafe1234ull, id, sizeof id,
                                            &unchanged, &err),
                     PS_OK);
    assert_string_equal(id, "c");
    assert_true(unchanged);
    assert_int_equal(
        s->ops->chat_find_sent(s, u.id, "dev-a", 12345, id, sizeof id, &unchanged, &err), PS_OK);
    assert_string_equal(id, "");
    /* one hash per (chat, device): another device's bytes of the same chat
     * do not replace these, and are not taken for this device's */
    assert_int_equal(s->ops->chat_set_sent(s, u.id, "dev-b", "c", 0xb0bull, 0xc1ull, &err), PS_OK);
    assert_int_equal(s->ops->chat_find_sent(s, u.id, "dev-a", 0xfeedbeefcafe1234ull, id, sizeof id,
                                            &unchanged, &err),
                     PS_OK);
    assert_string_equal(id, "c");
    assert_true(unchanged);
    assert_int_equal(
        s->ops->chat_find_sent(s, u.id, "dev-b", 0xb0bull, id, sizeof id, &unchanged, &err), PS_OK);
    assert_string_equal(id, "c");
    assert_true(unchanged);
    assert_int_equal(
        s->ops->chat_find_sent(s, u.id, "dev-a", 0xb0bull, id, sizeof id, &unchanged, &err), PS_OK);
    assert_string_equal(id, "");
    assert_int_equal(s->ops->chat_find_sent(s, u.id, "dev-b", 0xfeedbeefcafe1234ull, id, sizeof id,
                                            &unchanged, &err),
                     PS_OK);
    assert_string_equal(id, "");
    /* the content hash of each device's last upload, by chat */
    uint64_t content = 0;
    assert_int_equal(s->ops->chat_sent_content(s, u.id, "dev-a", "c", &content, &unchanged, &err),
                     PS_OK);
    assert_true(content == 0xc0ull && unchanged);
    assert_int_equal(s->ops->chat_sent_content(s, u.id, "dev-b", "c", &content, &unchanged, &err),
                     PS_OK);
    assert_true(content == 0xc1ull && unchanged);
    assert_int_equal(s->ops->chat_sent_content(s, u.id, "dev-c", "c", &content, &unchanged, &err),
                     PS_OK);
    assert_true(content == 0 && !unchanged);
    /* a change after that sync: no longer "as sent" */
    ps_chat *again = NULL;
    assert_int_equal(s->ops->chat_load(s, u.id, "c", true, &again, &err), PS_OK);
    ps__chat_clear_dirty(again);
    add_message(again, "more", "m", 6);
    save(s, u.id, again, 3, "d");
    ps__chat_free(again);
    assert_int_equal(s->ops->chat_find_sent(s, u.id, "dev-a", 0xfeedbeefcafe1234ull, id, sizeof id,
                                            &unchanged, &err),
                     PS_OK);
    assert_string_equal(id, "c");
    assert_false(unchanged);
    assert_int_equal(s->ops->chat_sent_content(s, u.id, "dev-b", "c", &content, &unchanged, &err),
                     PS_OK);
    assert_true(content == 0xc1ull && !unchanged);
    commit(s);
    ps_store_close(s);
}

static void purge_and_user_delete(void **state)
{
    fixture *f = *state;
    ps_error err;
    ps_store *s = open_store(f);
    ps_user u;
    begin_user(s, true, "frank", &u);
    const int64_t times[2] = {1000, 5000};
    const char *ids[2] = {"old", "recent"};
    for (int i = 0; i < 2; i++) {
        ps_chat *c = titled(ids[i], "t", 1);
        add_message(c, "m", "x", 1);
        ps_stamp del = {.ts = times[i], .device = (char *)"dev"};
        ps_lamport shown = {.counter = 9, .id = (char *)"server"};
        bool changed;
        assert_int_equal(ps__chat_delete(c, &del, &shown, &changed), PS_OK);
        save(s, u.id, c, 10 + i, "d");
        ps__chat_free(c);
    }
    commit(s);
    ps_user other;
    begin_user(s, true, "grace", &other);
    ps_chat *g = titled("g", "t", 1);
    save(s, other.id, g, 1, "d");
    ps__chat_free(g);
    commit(s);

    assert_int_equal(ps_store_begin(s, true, &err), PS_OK);
    int64_t purged = -1;
    assert_int_equal(s->ops->purge_tombstones(s, 3000, &purged, &err), PS_OK);
    assert_int_equal(purged, 1);
    commit(s);
    begin_user(s, false, "frank", &u);
    assert_int_equal(u.purged_seq, 10);
    ps_chat *back = NULL;
    assert_int_equal(s->ops->chat_load(s, u.id, "old", true, &back, &err), PS_OK);
    assert_null(back);
    assert_int_equal(s->ops->chat_load(s, u.id, "recent", true, &back, &err), PS_OK);
    assert_non_null(back);
    ps__chat_free(back);
    commit(s);

    assert_int_equal(ps_store_begin(s, true, &err), PS_OK);
    assert_int_equal(s->ops->user_delete(s, "frank", &err), PS_OK);
    assert_int_equal(s->ops->user_delete(s, "nobody", &err), PS_ERR_NOT_FOUND);
    commit(s);
    bool found = true;
    assert_int_equal(ps_store_begin(s, false, &err), PS_OK);
    assert_int_equal(s->ops->user_find(s, "frank", &u, &found, &err), PS_OK);
    assert_false(found);
    assert_int_equal(s->ops->user_find(s, "grace", &u, &found, &err), PS_OK);
    assert_true(found);
    commit(s);
    ps_store_close(s);
}

/* A no-op sync's time, recorded in a read transaction, shows in stats at
 * once and survives a clean close. */
static void seen_time_counts_and_survives_close(void **state)
{
    fixture *f = *state;
    ps_error err;
    ps_store *s = open_store(f);
    ps_user u;
    begin_user(s, true, "hank", &u);
    commit(s);
    assert_int_equal(ps_store_begin(s, false, &err), PS_OK);
    assert_int_equal(s->ops->user_seen(s, "hank", 1234567, &err), PS_OK);
    commit(s);
    ps_store_stats st;
    assert_int_equal(ps_store_begin(s, false, &err), PS_OK);
    assert_int_equal(s->ops->stats(s, &st, &err), PS_OK);
    commit(s);
    assert_int_equal(st.last_sync_ms, 1234567);
    ps_store_close(s);
    s = open_store(f);
    assert_int_equal(ps_store_begin(s, false, &err), PS_OK);
    assert_int_equal(s->ops->stats(s, &st, &err), PS_OK);
    commit(s);
    assert_int_equal(st.last_sync_ms, 1234567);
    ps_store_close(s);
}

/* A full-state device's base per chat: saved and read back as given, made
 * from the rendering chat_save keeps (only when it got one), one per
 * device, gone with the chat. */
static void bases_per_device_and_chat(void **state)
{
    fixture *f = *state;
    ps_error err;
    ps_store *s = open_store(f);
    ps_user u;
    begin_user(s, true, "ivy", &u);
    ps_chat *c = titled("c", "t", 1);
    add_message(c, "m", "x", 1);
    save(s, u.id, c, 1, "d"); /* with a rendering */
    ps_chat *bare = titled("bare", "t", 1);
    ps_code rc = ps__chat_mark_dirty(bare, 2, "d");
    assert_int_equal(rc, PS_OK);
    assert_int_equal(s->ops->chat_save(s, u.id, bare, NULL, 0, 2, &err), PS_OK);
    ps__chat_free(bare);
    uint64_t raw[3] = {7, 0x8000000000000001ull, 42};
    ps_base b = {.hashes = raw, .n = 3, .cap = 3};
    assert_int_equal(s->ops->base_save(s, u.id, "phone", "c", &b, 5, &err), PS_OK);
    bool copied = false;
    assert_int_equal(s->ops->base_copy(s, u.id, "laptop", "c", 1, &copied, &err), PS_OK);
    assert_true(copied);
    assert_int_equal(s->ops->base_copy(s, u.id, "laptop", "bare", 2, &copied, &err), PS_OK);
    assert_false(copied); /* saved without a rendering: no hashes kept */
    commit(s);

    begin_user(s, false, "ivy", &u);
    ps_base got = {0};
    int64_t seq = 0;
    bool found = false;
    assert_int_equal(s->ops->base_load(s, u.id, "phone", "c", &got, &seq, &found, &err), PS_OK);
    assert_true(found);
    assert_int_equal(seq, 5);
    assert_int_equal(got.n, 3);
    assert_memory_equal(got.hashes, raw, sizeof raw);
    /* the copy is the chat as saved: what ps__base_add_chat makes of it */
    ps_base want = {0};
    assert_int_equal(ps__base_add_chat(&want, c), PS_OK);
    ps__base_seal(&want);
    assert_int_equal(s->ops->base_load(s, u.id, "laptop", "c", &got, &seq, &found, &err), PS_OK);
    assert_true(found);
    assert_int_equal(seq, 1);
    assert_int_equal(got.n, want.n);
    assert_memory_equal(got.hashes, want.hashes, want.n * sizeof(uint64_t));
    assert_int_equal(s->ops->base_load(s, u.id, "tablet", "c", &got, &seq, &found, &err), PS_OK);
    assert_false(found);
    commit(s);
    ps__base_free(&want);
    ps__chat_free(c);

    /* deleting the user takes the bases along */
    assert_int_equal(ps_store_begin(s, true, &err), PS_OK);
    assert_int_equal(s->ops->user_delete(s, "ivy", &err), PS_OK);
    commit(s);
    begin_user(s, true, "ivy", &u); /* a new user of the same name */
    ps_chat *again = titled("c", "t", 1);
    save(s, u.id, again, 1, "d");
    ps__chat_free(again);
    assert_int_equal(s->ops->base_load(s, u.id, "phone", "c", &got, &seq, &found, &err), PS_OK);
    assert_false(found);
    commit(s);
    ps__base_free(&got);
    ps_store_close(s);
}

/* ---- accounts, tokens and the device registry (store.h, #18) ---------- */

typedef struct listed {
    char text[512]; /* "a,b,c," in callback order */
} listed;

static int list_token(void *ctx, const ps_token_row *row)
{
    listed *l = ctx;
    size_t n = strlen(l->text);
    snprintf(l->text + n, sizeof l->text - n, "%s:%s:%lld,", row->jti, row->user,
             (long long)row->revoked_ms);
    return 0;
}

static int list_account(void *ctx, const ps_account_row *row)
{
    listed *l = ctx;
    size_t n = strlen(l->text);
    snprintf(l->text + n, sizeof l->text - n, "%s:%d:%lld,", row->name, row->disabled ? 1 : 0,
             (long long)row->tokens_before_ms);
    return 0;
}

static int list_device(void *ctx, const ps_device_row *row)
{
    listed *l = ctx;
    size_t n = strlen(l->text);
    snprintf(l->text + n, sizeof l->text - n, "%s:%lld-%lld:%s:%s:%lld,", row->id,
             (long long)row->first_seen_ms, (long long)row->last_seen_ms, row->client,
             row->protocol, (long long)row->acked_seq);
    return 0;
}

static int64_t generation(ps_store *s)
{
    ps_error err;
    int64_t g = -1;
    assert_int_equal(ps_store_begin(s, false, &err), PS_OK);
    assert_int_equal(s->ops->access_generation(s, &g, &err), PS_OK);
    commit(s);
    return g;
}

/* Tokens by issue time, revocation by id and by user (counted once), the
 * revoked-and-unexpired list, account refusals (-1 keeps), and the access
 * generation moving with each change that commits. */
static void tokens_and_accounts(void **state)
{
    fixture *f = *state;
    ps_error err;
    ps_store *s = open_store(f);
    assert_int_equal(ps_store_begin(s, true, &err), PS_OK);
    assert_int_equal(s->ops->token_add(s, "t2", "alice", 200, 2000, &err), PS_OK);
    assert_int_equal(s->ops->token_add(s, "t1", "alice", 100, 1000, &err), PS_OK);
    assert_int_equal(s->ops->token_add(s, "t3", "bob", 150, 500, &err), PS_OK);
    commit(s);
    listed l = {0};
    assert_int_equal(ps_store_begin(s, false, &err), PS_OK);
    assert_int_equal(s->ops->token_list(s, NULL, list_token, &l, &err), PS_OK);
    assert_string_equal(l.text, "t1:alice:0,t3:bob:0,t2:alice:0,");
    l.text[0] = '\0';
    assert_int_equal(s->ops->token_list(s, "alice", list_token, &l, &err), PS_OK);
    assert_string_equal(l.text, "t1:alice:0,t2:alice:0,");
    commit(s);

    int64_t g0 = generation(s), count = -1;
    assert_int_equal(ps_store_begin(s, true, &err), PS_OK);
    assert_int_equal(s->ops->token_revoke(s, "t1", NULL, 300, &count, &err), PS_OK);
    assert_int_equal(count, 1);
    commit(s);
    int64_t g1 = generation(s);
    assert_true(g1 != g0);
    assert_int_equal(ps_store_begin(s, true, &err), PS_OK);
    assert_int_equal(s->ops->token_revoke(s, "t1", NULL, 350, &count, &err), PS_OK);
    assert_int_equal(count, 0); /* already revoked: kept at 300 */
    assert_int_equal(s->ops->token_revoke(s, NULL, "alice", 400, &count, &err), PS_OK);
    assert_int_equal(count, 1); /* t2 only */
    commit(s);
    l.text[0] = '\0';
    assert_int_equal(ps_store_begin(s, false, &err), PS_OK);
    assert_int_equal(s->ops->token_revoked_each(s, 900, list_token, &l, &err), PS_OK);
    assert_true(strstr(l.text, "t1:alice:300,") && strstr(l.text, "t2:alice:400,"));
    assert_null(strstr(l.text, "t3"));
    l.text[0] = '\0';
    /* t1 expired at 1000: no longer needs refusing */
    assert_int_equal(s->ops->token_revoked_each(s, 1500, list_token, &l, &err), PS_OK);
    assert_string_equal(l.text, "t2:alice:400,");
    commit(s);

    int64_t g2 = generation(s);
    assert_true(g2 != g1);
    assert_int_equal(ps_store_begin(s, true, &err), PS_OK);
    assert_int_equal(s->ops->account_set(s, "carol", 1, -1, &err), PS_OK);
    commit(s);
    int64_t g3 = generation(s);
    assert_true(g3 != g2);
    l.text[0] = '\0';
    assert_int_equal(ps_store_begin(s, true, &err), PS_OK);
    assert_int_equal(s->ops->account_each(s, list_account, &l, &err), PS_OK);
    assert_string_equal(l.text, "carol:1:0,");
    assert_int_equal(s->ops->account_set(s, "carol", -1, 777, &err), PS_OK);
    assert_int_equal(s->ops->account_set(s, "dan", 0, 0, &err), PS_OK);
    l.text[0] = '\0';
    assert_int_equal(s->ops->account_each(s, list_account, &l, &err), PS_OK);
    assert_string_equal(l.text, "carol:1:777,"); /* dan refuses nothing */
    assert_int_equal(s->ops->account_set(s, "carol", 0, 0, &err), PS_OK);
    l.text[0] = '\0';
    assert_int_equal(s->ops->account_each(s, list_account, &l, &err), PS_OK);
    assert_string_equal(l.text, "");
    ps_store_rollback(s);
    assert_int_equal(generation(s), g3); /* rolled back: no change */
    ps_store_close(s);
}

/* The registry (first/last seen, client "" and acked -1 keep the stored
 * ones, by first sighting), forgetting, renaming, and tombstone collection
 * by acknowledgement with its legacy and no-ack exceptions. */
static void devices_rename_and_collection(void **state)
{
    fixture *f = *state;
    ps_error err;
    ps_store *s = open_store(f);
    ps_user u;
    begin_user(s, true, "erin", &u);
    ps_chat *dead = titled("dead", "t", 1);
    add_message(dead, "m", "x", 1);
    ps_stamp del = {.ts = 1000, .device = (char *)"dev"};
    ps_lamport shown = {.counter = 9, .id = (char *)"server"};
    bool changed;
    assert_int_equal(ps__chat_delete(dead, &del, &shown, &changed), PS_OK);
    save(s, u.id, dead, 10, "d");
    ps__chat_free(dead);
    ps_chat *live = titled("live", "t", 1);
    save(s, u.id, live, 11, "d");
    ps__chat_free(live);
    assert_int_equal(s->ops->device_seen(s, "erin", "A", "ua/1", "v2", -1, 1000, &err), PS_OK);
    assert_int_equal(s->ops->device_seen(s, "erin", "B", "", "legacy", -1, 2000, &err), PS_OK);
    assert_int_equal(s->ops->device_seen(s, "erin", "A", "", "v2", 10, 3000, &err), PS_OK);
    assert_int_equal(s->ops->device_seen(s, "nobody", "Z", "", "v2", 1, 3000, &err), PS_OK);
    commit(s);
    listed l = {0};
    int64_t n = -1;
    assert_int_equal(ps_store_begin(s, true, &err), PS_OK);
    assert_int_equal(s->ops->device_list(s, "erin", list_device, &l, &err), PS_OK);
    assert_string_equal(l.text, "A:1000-3000:ua/1:v2:10,B:2000-2000::legacy:-1,");
    l.text[0] = '\0';
    assert_int_equal(s->ops->device_list(s, "nobody", list_device, &l, &err), PS_OK);
    assert_string_equal(l.text, "");
    assert_int_equal(s->ops->user_tombstones(s, "erin", &n, &err), PS_OK);
    assert_true(n >= 1);
    /* B is a legacy device seen since 0: the time rule only */
    assert_int_equal(s->ops->purge_acknowledged(s, "erin", 0, &n, &err), PS_OK);
    assert_int_equal(n, 0);
    commit(s);

    assert_int_equal(ps_store_begin(s, true, &err), PS_OK);
    /* B was last seen before 2500: only A counts, and it acked 10 */
    assert_int_equal(s->ops->purge_acknowledged(s, "erin", 2500, &n, &err), PS_OK);
    assert_true(n >= 1);
    commit(s);
    begin_user(s, false, "erin", &u);
    assert_int_equal(u.purged_seq, 10);
    ps_chat *back = NULL;
    assert_int_equal(s->ops->chat_load(s, u.id, "dead", false, &back, &err), PS_OK);
    assert_null(back);
    assert_int_equal(s->ops->chat_load(s, u.id, "live", false, &back, &err), PS_OK);
    assert_non_null(back);
    ps__chat_free(back);
    assert_int_equal(s->ops->user_tombstones(s, "erin", &n, &err), PS_OK);
    assert_int_equal(n, 0);
    commit(s);

    assert_int_equal(ps_store_begin(s, true, &err), PS_OK);
    assert_int_equal(s->ops->device_forget(s, "erin", "B", &err), PS_OK);
    assert_int_equal(s->ops->device_forget(s, "erin", "B", &err), PS_ERR_NOT_FOUND);
    assert_int_equal(s->ops->user_load(s, "fay", &u, &err), PS_OK);
    assert_int_equal(s->ops->user_rename(s, "erin", "fay", &err), PS_ERR_INVALID);
    assert_int_equal(s->ops->user_rename(s, "nobody", "gus", &err), PS_ERR_NOT_FOUND);
    assert_int_equal(s->ops->user_rename(s, "erin", "gus", &err), PS_OK);
    commit(s);
    bool found = true;
    l.text[0] = '\0';
    assert_int_equal(ps_store_begin(s, false, &err), PS_OK);
    assert_int_equal(s->ops->user_find(s, "erin", &u, &found, &err), PS_OK);
    assert_false(found);
    assert_int_equal(s->ops->user_find(s, "gus", &u, &found, &err), PS_OK);
    assert_true(found);
    /* the chats and devices went with the name */
    assert_int_equal(s->ops->chat_load(s, u.id, "live", false, &back, &err), PS_OK);
    assert_non_null(back);
    ps__chat_free(back);
    assert_int_equal(s->ops->device_list(s, "gus", list_device, &l, &err), PS_OK);
    assert_string_equal(l.text, "A:1000-3000:ua/1:v2:10,");
    commit(s);
    ps_store_close(s);
}

/* device_get: one device's row by id, as device_seen wrote it (the same
 * keep-the-stored-one rules), among many devices of the user and the same
 * id under another user; nothing for an unknown device, user or a
 * forgotten device. In read and write transactions alike. */
static void one_device_by_id(void **state)
{
    fixture *f = *state;
    ps_error err;
    ps_store *s = open_store(f);
    ps_user u;
    begin_user(s, true, "hal", &u);
    assert_int_equal(s->ops->user_load(s, "ivy", &u, &err), PS_OK);
    char id[32], want[128];
    for (int i = 0; i < 40; i++) {
        snprintf(id, sizeof id, "dev-%02d", i);
        assert_int_equal(s->ops->device_seen(s, "hal", id, i % 2 ? "ua/odd" : "ua/even",
                                             i % 3 ? "v2" : "legacy", i, 1000 + i, &err),
                         PS_OK);
    }
    /* seen again: the last sight moves, "" keeps the client, -1 the ack */
    assert_int_equal(s->ops->device_seen(s, "hal", "dev-07", "", "legacy", -1, 5000, &err), PS_OK);
    assert_int_equal(s->ops->device_seen(s, "ivy", "dev-07", "other", "v2", 99, 7000, &err), PS_OK);
    commit(s);
    for (int write = 0; write <= 1; write++) {
        assert_int_equal(ps_store_begin(s, write, &err), PS_OK);
        for (int i = 0; i < 40; i++) {
            snprintf(id, sizeof id, "dev-%02d", i);
            if (i == 7)
                snprintf(want, sizeof want, "dev-07:1007-5000:ua/odd:legacy:7,");
            else
                snprintf(want, sizeof want, "%s:%d-%d:%s:%s:%d,", id, 1000 + i, 1000 + i,
                         i % 2 ? "ua/odd" : "ua/even", i % 3 ? "v2" : "legacy", i);
            listed l = {0};
            assert_int_equal(s->ops->device_get(s, "hal", id, list_device, &l, &err), PS_OK);
            assert_string_equal(l.text, want);
        }
        listed l = {0};
        assert_int_equal(s->ops->device_get(s, "ivy", "dev-07", list_device, &l, &err), PS_OK);
        assert_string_equal(l.text, "dev-07:7000-7000:other:v2:99,");
        l.text[0] = '\0';
        assert_int_equal(s->ops->device_get(s, "ivy", "dev-08", list_device, &l, &err), PS_OK);
        assert_int_equal(s->ops->device_get(s, "hal", "dev-40", list_device, &l, &err), PS_OK);
        assert_int_equal(s->ops->device_get(s, "nobody", "dev-07", list_device, &l, &err), PS_OK);
        assert_int_equal(s->ops->device_get(s, "hal", "", list_device, &l, &err), PS_OK);
        assert_string_equal(l.text, "");
        commit(s);
    }
    assert_int_equal(ps_store_begin(s, true, &err), PS_OK);
    assert_int_equal(s->ops->device_forget(s, "hal", "dev-07", &err), PS_OK);
    listed l = {0};
    assert_int_equal(s->ops->device_get(s, "hal", "dev-07", list_device, &l, &err), PS_OK);
    assert_string_equal(l.text, "");
    assert_int_equal(s->ops->device_get(s, "ivy", "dev-07", list_device, &l, &err), PS_OK);
    assert_string_equal(l.text, "dev-07:7000-7000:other:v2:99,");
    commit(s);
    ps_store_close(s);
}

/* A chat as the server renders it for legacy clients (ps__append_doc: the
 * backend's rendering, or one made from the chat when it has none). */
typedef struct one_doc {
    ps_store *s;
    int64_t user;
    const char *id;
    ps_dynbuf doc;
    ps_code rc;
} one_doc;

static int take_doc(void *ctx, const ps_chat_row *row)
{
    one_doc *o = ctx;
    if (strcmp(row->id, o->id) != 0)
        return 0;
    ps_sync_ctx sync = {.store = o->s};
    ps_error err;
    o->rc = ps__append_doc(&sync, o->user, row, &o->doc, &err);
    return 1;
}

/* *doc: the chat's rendering (malloc'ed, the caller frees it). */
static ps_code render_one(ps_store *s, int64_t user, const char *id, char **doc, size_t *len)
{
    one_doc o = {.s = s, .user = user, .id = id, .rc = PS_ERR_NOT_FOUND};
    ps__dynbuf_init(&o.doc, SIZE_MAX - 1);
    ps_error err;
    ps_code rc = s->ops->chat_each(s, user, take_doc, &o, &err);
    *doc = ps__dynbuf_take(&o.doc, len);
    return rc != PS_OK ? rc : o.rc;
}

/* ---- stored messages, whatever their content (schema 8: compressed) ---- */

/* Deterministic filler text: words of several scripts, so a store has
 * enough to train a dictionary on (over PS_VALUE_TRAIN_BYTES, 1 MiB). */
static void filler(char *out, size_t len, unsigned seed)
{
    static const char *const words[] = {"sync ",  "chat ",   "café ",  "мир ",  "世界 ",      "🚀 ",
                                        "model ", "token\n", "\"q\" ", "a\\b ", "x = y * 2; "};
    size_t n = 0;
    unsigned r = seed * 2654435761u + 1;
    while (n + 16 < len) {
        r = r * 1103515245u + 12345u;
        const char *w = words[(r >> 16) % (sizeof words / sizeof *words)];
        size_t wl = strlen(w);
        memcpy(out + n, w, wl);
        n += wl;
    }
    out[n] = '\0';
}

typedef struct odd_message {
    const char *id;
    char *content;       /* the message's "content", as put in */
    int64_t ts, lamport; /* its stamp */
    const char *device;
    bool timed;
    int64_t order_ts;
} odd_message;

static json_object *odd_value(const odd_message *m)
{
    json_object *v = json_object_new_object();
    json_object_object_add(v, "id", json_object_new_string(m->id));
    json_object_object_add(v, "role", json_object_new_string("user"));
    json_object_object_add(v, "content", json_object_new_string(m->content));
    json_object_object_add(v, "n", json_object_new_double_s(1.50, "1.50"));
    return v;
}

/* Every field of a message comes back as it was saved, on both backends,
 * for odd content (empty, every ASCII control and escape, several
 * scripts, 1 MiB) before and after the store has enough to compress
 * with; and a chat saved without a rendering (a v2 push) is rendered for
 * legacy clients as the hand-made oracle says. */
static void messages_round_trip_whatever_their_content(void **state)
{
    fixture *f = *state;
    ps_error err;
    ps_store *s = open_store(f);
    ps_user u;
    begin_user(s, true, "erin", &u);

    char controls[160];
    size_t k = 0;
    for (int c = 1; c < 128; c++)
        if (c < 32 || c == '"' || c == '\\' || c == '/' || c == 127)
            controls[k++] = (char)c;
    controls[k] = '\0';
    char *big = malloc((size_t)1 << 20);
    filler(big, (size_t)1 << 20, 7);
    odd_message odd[] = {
        {"m-empty", strdup(""), 10, 0, "dev", false, 3000},
        {"m-controls", strdup(controls), 11, 5, "phone", true, 1000},
        {"m-scripts", strdup("Ünïcödé ✓ 世界 한국어 Ελληνικά 🚀👍 \u00e9\u0301 \xef\xbf\xbd"), 12, 0,
         "laptop", false, 2000},
        {"m-big", big, 13, 9, "dev", false, 2000}, /* same time as m-scripts */
    };
    const size_t nodd = sizeof odd / sizeof *odd;

    /* 1: odd messages in a chat saved as a v2 push saves it (no rendering) */
    ps_chat *c = titled("odd", "Tïtle ✓", 1000);
    for (size_t i = 0; i < nodd; i++) {
        ps_stamp st = {.ts = odd[i].ts,
                       .lamport = odd[i].lamport,
                       .device = (char *)odd[i].device,
                       .timed = odd[i].timed};
        assert_int_equal(
            ps__chat_append_message(c, odd[i].id, odd_value(&odd[i]), &st, odd[i].order_ts), PS_OK);
        c->messages[c->nmessages - 1].received = (int64_t)i;
    }
    ps__chat_normalize(c);
    assert_int_equal(ps__chat_mark_dirty(c, 1, "phone"), PS_OK);
    assert_int_equal(s->ops->chat_save(s, u.id, c, NULL, 0, 1, &err), PS_OK);
    ps__chat_free(c);
    /* 2: enough ordinary messages for a dictionary, in other chats */
    char text[420];
    for (int ch = 0; ch < 60; ch++) {
        char id[16];
        snprintf(id, sizeof id, "bulk%02d", ch);
        ps_chat *b = titled(id, "bulk", 1000);
        for (int m = 0; m < 50; m++) {
            char mid[16];
            snprintf(mid, sizeof mid, "b%02d-%02d", ch, m);
            filler(text, sizeof text, (unsigned)(ch * 50 + m));
            add_message(b, mid, text, 1000 + m);
        }
        save(s, u.id, b, 2 + ch, "laptop");
        ps__chat_free(b);
    }
    /* 3: the same odd messages once more, after (a dictionary, if any) */
    c = titled("odd2", "again", 1000);
    for (size_t i = 0; i < nodd; i++) {
        ps_stamp st = {.ts = odd[i].ts,
                       .lamport = odd[i].lamport,
                       .device = (char *)odd[i].device,
                       .timed = odd[i].timed};
        assert_int_equal(
            ps__chat_append_message(c, odd[i].id, odd_value(&odd[i]), &st, odd[i].order_ts), PS_OK);
        c->messages[c->nmessages - 1].received = (int64_t)i;
    }
    ps__chat_normalize(c);
    save(s, u.id, c, 70, "tablet");
    ps__chat_free(c);
    commit(s);
    ps_store_close(s);

    s = open_store(f);
    begin_user(s, false, "erin", &u);
    const char *chats[2] = {"odd", "odd2"};
    for (int ci = 0; ci < 2; ci++) {
        ps_chat *back = NULL;
        assert_int_equal(s->ops->chat_load(s, u.id, chats[ci], true, &back, &err), PS_OK);
        assert_non_null(back);
        assert_int_equal(back->nmessages, nodd);
        for (size_t i = 0; i < nodd; i++) {
            const ps_message *m = ps__chat_message(back, odd[i].id);
            assert_non_null(m);
            json_object *want = odd_value(&odd[i]);
            if (!json_object_equal(m->value, want))
                fail_msg("%s/%s: %s", chats[ci], odd[i].id, json_object_to_json_string(m->value));
            json_object_put(want);
            assert_string_equal(json_object_get_string(json_object_object_get(m->value, "n")),
                                "1.50"); /* a number's text is kept */
            assert_int_equal(m->stamp.ts, odd[i].ts);
            assert_int_equal(m->stamp.lamport, odd[i].lamport);
            assert_string_equal(m->stamp.device, odd[i].device);
            assert_int_equal(m->stamp.timed, odd[i].timed);
            assert_int_equal(m->order_ts, odd[i].order_ts);
            assert_int_equal(m->received, (int64_t)i);
            assert_int_equal(m->mark.seq, ci ? 70 : 1);
            assert_string_equal(m->mark.origin, ci ? "tablet" : "phone");
        }
        ps__chat_free(back);
    }
    /* a bulk message too */
    ps_chat *bulk = NULL;
    assert_int_equal(s->ops->chat_load(s, u.id, "bulk37", true, &bulk, &err), PS_OK);
    filler(text, sizeof text, 37 * 50 + 12);
    json_object *content = NULL;
    assert_true(
        json_object_object_get_ex(ps__chat_message(bulk, "b37-12")->value, "content", &content));
    assert_string_equal(json_object_get_string(content), text);
    ps__chat_free(bulk);

    /* the v2-saved chat as legacy clients get it: display order is by
     * time, then order received (m-scripts before m-big at 2000) */
    json_object *want = json_object_new_object();
    json_object_object_add(want, "id", json_object_new_string("odd"));
    json_object_object_add(want, "title", json_object_new_string("Tïtle ✓"));
    json_object *list = json_object_new_array();
    const int order[4] = {1, 2, 3, 0};
    for (int i = 0; i < 4; i++)
        json_object_array_add(list, odd_value(&odd[order[i]]));
    json_object_object_add(want, "messages", list);
    json_object *lam = json_object_new_array();
    json_object_array_add(lam, json_object_new_int(1));
    json_object_array_add(lam, json_object_new_string("server"));
    json_object_object_add(want, "updatedAtLamport", lam);
    json_object *got = NULL;
    size_t len = 0;
    char *doc = NULL;
    assert_int_equal(render_one(s, u.id, "odd", &doc, &len), PS_OK);
    assert_non_null(doc);
    assert_int_equal(ps__json_parse_trusted(doc, len, &got, &err), PS_OK);
    if (!json_object_equal(got, want))
        fail_msg("rendered: %.300s", doc);
    free(doc);
    json_object_put(got);
    json_object_put(want);
    commit(s);
    ps_store_close(s);
    for (size_t i = 0; i < nodd; i++)
        free(odd[i].content);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(reopen_keeps_users_chats_and_messages, setup, teardown),
        cmocka_unit_test_setup_teardown(rollback_discards, setup, teardown),
        cmocka_unit_test_setup_teardown(changes_come_in_sequence_order, setup, teardown),
        cmocka_unit_test_setup_teardown(listing_in_byte_order_with_tombstones, setup, teardown),
        cmocka_unit_test_setup_teardown(sent_hash_and_bytes, setup, teardown),
        cmocka_unit_test_setup_teardown(purge_and_user_delete, setup, teardown),
        cmocka_unit_test_setup_teardown(seen_time_counts_and_survives_close, setup, teardown),
        cmocka_unit_test_setup_teardown(bases_per_device_and_chat, setup, teardown),
        cmocka_unit_test_setup_teardown(tokens_and_accounts, setup, teardown),
        cmocka_unit_test_setup_teardown(devices_rename_and_collection, setup, teardown),
        cmocka_unit_test_setup_teardown(one_device_by_id, setup, teardown),
        cmocka_unit_test_setup_teardown(messages_round_trip_whatever_their_content, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
