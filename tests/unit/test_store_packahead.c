/*
 * A new chat's pack made ahead of the write transaction (store.h,
 * values_pack_ahead, ps_pack_form; docs/performance.md "upload3"): the
 * frame compressed in a read transaction before the chat's seq is known
 * (a based pack), taken by the save only while it is still what the save
 * would compress: the same bytes laid out (the same messages, numbered and
 * marked as guessed), for the same user, with the same dictionary. Each
 * test gives the chat a form whose frame holds other texts under the same
 * message ids (another chat's, made ahead the same way): reading those
 * texts back shows the frame was stored as made, reading the chat's own
 * shows it was compressed again. Oracles: the texts the test put in and
 * the seq it saved with, read back through the store; the dictionary
 * replaced by hand in the file. Includes the .c file to reach the
 * connection.
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
#include <lz4frame.h>
#include <unistd.h>
#include <zstd.h>

static int setup(void **state)
{
    return store_fixture_sqlite(state, "packahead", "p.db");
}

/* Saves the chat as polysyncd saves a pushed chat (no rendering: a chat
 * new to the store becomes a pack), numbered and marked as change `seq` of
 * device `origin`, in a write transaction. */
static void save(ps_store *s, int64_t user, ps_chat *c, int64_t seq, const char *origin)
{
    ps_error err;
    ps__chat_number_received(c);
    assert_int_equal(ps__chat_mark_dirty(c, seq, origin), PS_OK);
    assert_int_equal(ps_store_begin(s, true, &err), PS_OK);
    assert_int_equal(s->ops->chat_save(s, user, c, NULL, 0, seq, &err), PS_OK);
    assert_int_equal(ps_store_commit(s, &err), PS_OK);
}

/* A store whose user "zed" (*user) has a dictionary: 1.2 MB of values in
 * rows (the chats made first, store_rows_make_existing: as packs without
 * a dictionary they would weigh less than the training threshold). */
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
        ps_chat *c = new_pushed_chat(id, 100, 1000u * (unsigned)i);
        ps__chat_number_received(c);
        assert_int_equal(ps__chat_mark_dirty(c, 1 + i, "dev"), PS_OK);
        assert_int_equal(ps_store_begin(s, true, &err), PS_OK);
        store_rows_make_existing(s, u.id, id, 1 + i);
        json_object *doc = ps__chat_to_legacy(c);
        size_t doc_len;
        const char *doc_text = ps__json_text(doc, &doc_len);
        assert_int_equal(s->ops->chat_save(s, u.id, c, doc_text, doc_len, 1 + i, &err), PS_OK);
        assert_int_equal(ps_store_commit(s, &err), PS_OK);
        json_object_put(doc);
        ps__chat_free(c);
    }
    assert_int_equal(query_int((sqlite_store *)s, "SELECT count(*) FROM value_dicts"), 1);
    *user = u.id;
    return s;
}

/* values_pack_ahead in a read transaction, as polysyncd runs it for a
 * push of device "dev". */
static void pack_ahead(ps_store *s, int64_t user, ps_chat *c, ps_values_ahead *ahead)
{
    ps_error err;
    *ahead = (ps_values_ahead){.device = "dev"};
    assert_int_equal(ps_store_begin(s, false, &err), PS_OK);
    assert_int_equal(s->ops->values_pack_ahead(s, user, &c, 1, ahead, &err), PS_OK);
    assert_int_equal(ps_store_commit(s, &err), PS_OK);
}

/* Chat `id` of n messages from seed, made ahead, its form given the frame
 * of the same ids with texts from `decoy` (*form, *decoy_ahead: the
 * caller's to keep until the save). */
static ps_chat *with_decoy(ps_store *s, int64_t user, const char *id, int n, unsigned seed,
                           unsigned decoy, ps_values_ahead *ahead, ps_values_ahead *decoy_ahead,
                           ps_pack_form *form)
{
    ps_chat *c = new_pushed_chat(id, n, seed);
    pack_ahead(s, user, c, ahead);
    assert_int_equal(ahead->npacks, 1);
    assert_int_equal(ahead->n, 0); /* its values go into the pack, not alone */
    assert_ptr_equal(c->pack_form, &ahead->packs[0]);
    ps_chat *d = new_pushed_chat(id, n, decoy);
    pack_ahead(s, user, d, decoy_ahead);
    assert_int_equal(decoy_ahead->npacks, 1);
    *form = *c->pack_form;
    form->frame = d->pack_form->frame;
    form->len = d->pack_form->len;
    c->pack_form = form;
    ps__chat_free(d);
    return c;
}

static void seq_is(ps_store *s, int64_t user, const char *id, int64_t seq)
{
    ps_error err;
    ps_chat *back = NULL;
    assert_int_equal(ps_store_begin(s, false, &err), PS_OK);
    assert_int_equal(s->ops->chat_load(s, user, id, true, &back, &err), PS_OK);
    ps_store_rollback(s);
    assert_non_null(back);
    assert_true(back->nmessages > 0);
    for (size_t i = 0; i < back->nmessages; i++)
        assert_int_equal(back->messages[i].mark.seq, seq);
    ps__chat_free(back);
}

/* Still valid: the frame made ahead is what is stored (the decoy's texts
 * read back), with the seq the save gave (the pack's base). */
/* The chat's stored pack carries a summary (pack_codec.h, prefix 0x03) of
 * what the save wrote: every message at `seq`, all from `origin` — whether
 * the frame was made ahead or in the save. */
static void summary_is(ps_store *s, const char *chat, int64_t seq, const char *origin)
{
    sqlite_store *ss = (sqlite_store *)s;
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(ss->db,
                                        "SELECT data FROM packs WHERE chat_id = ?1"
                                        " ORDER BY id LIMIT 1",
                                        -1, &st, NULL),
                     SQLITE_OK);
    sqlite3_bind_text(st, 1, chat, -1, SQLITE_STATIC);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    ps_pack_prefix pre;
    assert_int_equal(
        ps_pack_prefix_get(sqlite3_column_blob(st, 0), (size_t)sqlite3_column_bytes(st, 0), &pre),
        PS_OK);
    assert_true(pre.summarized);
    assert_int_equal(pre.sum.lo, seq);
    assert_int_equal(pre.sum.hi, seq);
    assert_int_equal(pre.sum.origin_len, strlen(origin));
    assert_memory_equal(pre.sum.origin, origin, strlen(origin));
    sqlite3_finalize(st);
}

/* pack_ahead_make's arguments and answer, for a thread of its own. */
typedef struct make_call {
    ps_store *s;
    const ps_pack_ahead *pa;
    const ps_chat *chat;
    ps_pack_form *form;
    ps_code rc;
} make_call;

static void *make_on_a_thread(void *arg)
{
    make_call *m = arg;
    m->rc = m->s->ops->pack_ahead_make(m->s, m->pa, m->chat, "dev", &m->form);
    return NULL;
}

/* liblz4's own reading of an LZ4 frame (not the store's codec): its bytes. */
static void lz4_frame_holds(const void *frame, size_t len, const char *want, size_t want_len)
{
    LZ4F_dctx *d = NULL;
    assert_false(LZ4F_isError(LZ4F_createDecompressionContext(&d, LZ4F_VERSION)));
    char *out = malloc(want_len + 1);
    size_t out_len = want_len + 1, in_len = len;
    size_t left = LZ4F_decompress(d, out, &out_len, frame, &in_len, NULL);
    assert_int_equal(left, 0); /* the whole frame, ended */
    assert_int_equal(in_len, len);
    assert_int_equal(out_len, want_len);
    assert_memory_equal(out, want, want_len);
    free(out);
    LZ4F_freeDecompressionContext(d);
}

/* The packs a legacy sync makes on its helper thread (pack_ahead_begin in
 * the write transaction, pack_ahead_make on another thread): the same
 * bytes as values_pack_ahead's for the same chat, in an LZ4 frame (schema
 * 14: a legacy save's pack, docs/storage.md "Packs"), which liblz4 reads
 * back to them; none for a chat too small to be a pack; made for a user
 * without a dictionary too (LZ4 needs none). chat_is_new tells a stored
 * chat from a new one. */
static void packs_made_on_another_thread_are_values_pack_aheads(void **state)
{
    int64_t user;
    ps_store *s = store_with_dictionary(*state, &user);
    ps_chat *c = new_pushed_chat("y", 8, 50), *same = new_pushed_chat("y", 8, 50);
    ps_chat *tiny = new_pushed_chat("t", 1, 70);
    ps_values_ahead ahead;
    pack_ahead(s, user, same, &ahead);
    assert_int_equal(ahead.npacks, 1);
    ps_error err;
    ps_pack_ahead *pa = NULL;
    bool is_new = false;
    assert_int_equal(ps_store_begin(s, true, &err), PS_OK);
    assert_int_equal(s->ops->pack_ahead_begin(s, user, &pa, &err), PS_OK);
    assert_non_null(pa);
    assert_int_equal(s->ops->chat_is_new(s, user, "y", &is_new, &err), PS_OK);
    assert_true(is_new);
    assert_int_equal(s->ops->chat_is_new(s, user, "c07", &is_new, &err), PS_OK);
    assert_false(is_new);
    make_call calls[2] = {{.s = s, .pa = pa, .chat = c}, {.s = s, .pa = pa, .chat = tiny}};
    pthread_t t[2];
    for (int k = 0; k < 2; k++)
        assert_int_equal(pthread_create(&t[k], NULL, make_on_a_thread, &calls[k]), 0);
    for (int k = 0; k < 2; k++)
        assert_int_equal(pthread_join(t[k], NULL), 0);
    assert_int_equal(calls[0].rc, PS_OK);
    assert_non_null(calls[0].form);
    const ps_pack_form *want = same->pack_form;
    assert_int_equal(calls[0].form->raw_len, want->raw_len);
    assert_memory_equal(calls[0].form->raw, want->raw, want->raw_len);
    assert_true(calls[0].form->lz4);
    assert_false(want->lz4);
    assert_int_equal(calls[0].form->dict, 0);
    lz4_frame_holds(calls[0].form->frame, calls[0].form->len, want->raw, want->raw_len);
    assert_int_equal(calls[0].form->user, user);
    assert_int_equal(calls[1].rc, PS_OK);
    assert_null(calls[1].form);
    s->ops->pack_ahead_end(s, pa);
    /* a user without a dictionary: LZ4 packs are made all the same */
    ps_user other;
    assert_int_equal(s->ops->user_load(s, "newcomer", &other, &err), PS_OK);
    assert_int_equal(s->ops->pack_ahead_begin(s, other.id, &pa, &err), PS_OK);
    assert_non_null(pa);
    ps_pack_form *theirs = NULL;
    assert_int_equal(s->ops->pack_ahead_make(s, pa, c, "dev", &theirs), PS_OK);
    assert_non_null(theirs);
    assert_true(theirs->lz4);
    lz4_frame_holds(theirs->frame, theirs->len, want->raw, want->raw_len);
    ps_pack_form_free(theirs);
    s->ops->pack_ahead_end(s, pa);
    ps_store_rollback(s);
    ps_pack_form_free(calls[0].form);
    ps_values_ahead_free(&ahead);
    ps__chat_free(c);
    ps__chat_free(same);
    ps__chat_free(tiny);
    ps_store_close(s);
}

static void a_current_pack_is_stored_as_made(void **state)
{
    int64_t user;
    ps_store *s = store_with_dictionary(*state, &user);
    ps_values_ahead ahead, decoy;
    ps_pack_form form;
    ps_chat *c = with_decoy(s, user, "x", 8, 50, 90, &ahead, &decoy, &form);
    save(s, user, c, 123, "dev");
    for (int m = 0; m < 8; m++)
        expect_content(s, user, "x", m, 90u + (unsigned)m);
    seq_is(s, user, "x", 123);
    summary_is(s, "x", 123, "dev");
    ps__chat_free(c);
    ps_values_ahead_free(&ahead);
    ps_values_ahead_free(&decoy);
    ps_store_close(s);
}

/* A legacy save of chat c (numbered, marked, saved in one transaction as
 * polysyncd's ps__save_chat does it for a chat new to the store that
 * keeps_legacy_pack keeps: no rendering made, PS_DOC_FROM_PACK). */
static void save_legacy(ps_store *s, int64_t user, ps_chat *c, int64_t seq)
{
    ps_error err;
    ps__chat_number_received(c);
    assert_int_equal(ps__chat_mark_dirty(c, seq, "dev"), PS_OK);
    assert_int_equal(ps_store_begin(s, true, &err), PS_OK);
    assert_true(s->ops->keeps_legacy_pack(s, user, c));
    assert_int_equal(s->ops->chat_save(s, user, c, PS_DOC_FROM_PACK, 0, seq, &err), PS_OK);
    assert_int_equal(ps_store_commit(s, &err), PS_OK);
}

/* A legacy save takes the LZ4 pack made ahead on another thread as made:
 * given the frame made of a decoy (same ids, other texts), the decoy's
 * texts are read back. A zstd form (values_pack_ahead's, a v2 push's)
 * given to a legacy save is not taken: the chat's own texts are stored,
 * compressed in the save, as an LZ4 frame. Both read back with the seq
 * and summary the save gave. */
static void a_legacy_pack_made_ahead_is_stored_as_made(void **state)
{
    int64_t user;
    ps_store *s = store_with_dictionary(*state, &user);
    ps_error err;
    ps_pack_ahead *pa = NULL;
    ps_chat *c = new_pushed_chat("lx", 8, 50), *decoy = new_pushed_chat("lx", 8, 90);
    assert_int_equal(ps_store_begin(s, true, &err), PS_OK);
    assert_int_equal(s->ops->pack_ahead_begin(s, user, &pa, &err), PS_OK);
    ps_store_rollback(s);
    assert_non_null(pa);
    ps_pack_form *mine = NULL, *theirs = NULL;
    assert_int_equal(s->ops->pack_ahead_make(s, pa, c, "dev", &mine), PS_OK);
    assert_int_equal(s->ops->pack_ahead_make(s, pa, decoy, "dev", &theirs), PS_OK);
    s->ops->pack_ahead_end(s, pa);
    ps_pack_form swapped = *mine;
    swapped.frame = theirs->frame;
    swapped.len = theirs->len;
    c->pack_form = &swapped;
    save_legacy(s, user, c, 77);
    for (int m = 0; m < 8; m++)
        expect_content(s, user, "lx", m, 90u + (unsigned)m);
    seq_is(s, user, "lx", 77);
    summary_is(s, "lx", 77, "dev");
    ps__chat_free(c);
    ps__chat_free(decoy);
    ps_pack_form_free(mine);
    ps_pack_form_free(theirs);

    /* a zstd form, even of the right bytes, is not an LZ4 pack */
    ps_values_ahead ahead, decoy_ahead;
    ps_pack_form form;
    c = with_decoy(s, user, "lz", 8, 50, 90, &ahead, &decoy_ahead, &form);
    save_legacy(s, user, c, 78);
    for (int m = 0; m < 8; m++)
        expect_content(s, user, "lz", m, 50u + (unsigned)m);
    seq_is(s, user, "lz", 78);
    summary_is(s, "lz", 78, "dev");
    assert_int_equal(query_int((sqlite_store *)s,
                               "SELECT instr(data, X'04224D18') BETWEEN 1 AND 600 FROM packs"
                               " WHERE chat_id = 'lz' ORDER BY id LIMIT 1"),
                     1);
    ps__chat_free(c);
    ps_values_ahead_free(&ahead);
    ps_values_ahead_free(&decoy_ahead);
    ps_store_close(s);
}

/* The user's dictionary replaced between the making and the save (by hand:
 * another trained dictionary in its row): compressed again, with the new
 * one (zstd names it in the frame after the base). */
static void a_pack_made_with_a_replaced_dictionary_is_compressed_again(void **state)
{
    int64_t user;
    ps_store *s = store_with_dictionary(*state, &user);
    sqlite_store *ss = (sqlite_store *)s;
    ps_values_ahead ahead, decoy;
    ps_pack_form form;
    ps_chat *c = with_decoy(s, user, "stale", 8, 300, 90, &ahead, &decoy, &form);
    uint32_t old = (uint32_t)query_int(ss, "SELECT id FROM value_dicts");
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
    assert_int_equal(form.dict, old);
    save(s, user, c, 100, "dev");
    for (int m = 0; m < 8; m++)
        expect_content(s, user, "stale", m, 300u + (unsigned)m);
    seq_is(s, user, "stale", 100);
    summary_is(s, "stale", 100, "dev");
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(ss->db,
                                        "SELECT data FROM packs WHERE chat_id = 'stale'"
                                        " ORDER BY id LIMIT 1",
                                        -1, &st, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int64_t base;
    size_t skip;
    assert_true(ps_pack_base_get(sqlite3_column_blob(st, 0), (size_t)sqlite3_column_bytes(st, 0),
                                 &base, &skip));
    assert_int_equal(base, 100);
    assert_int_equal(ZSTD_getDictID_fromFrame((const char *)sqlite3_column_blob(st, 0) + skip,
                                              (size_t)sqlite3_column_bytes(st, 0) - skip),
                     now);
    sqlite3_finalize(st);
    ps__chat_free(c);
    ps_values_ahead_free(&ahead);
    ps_values_ahead_free(&decoy);
    ps_store_close(s);
}

/* The chat created meanwhile by another request (it is stored when this
 * one saves): no pack, its messages are rows with their own texts. */
static void a_pack_of_a_chat_created_meanwhile_is_not_used(void **state)
{
    int64_t user;
    ps_store *s = store_with_dictionary(*state, &user);
    ps_values_ahead ahead, decoy;
    ps_pack_form form;
    ps_chat *c = with_decoy(s, user, "both", 8, 400, 90, &ahead, &decoy, &form);
    ps_chat *other = new_pushed_chat("both", 8, 600);
    save(s, user, other, 100, "dev2");
    ps__chat_free(other);
    save(s, user, c, 101, "dev");
    for (int m = 0; m < 8; m++)
        expect_content(s, user, "both", m, 400u + (unsigned)m);
    ps__chat_free(c);
    ps_values_ahead_free(&ahead);
    ps_values_ahead_free(&decoy);
    ps_store_close(s);
}

/* What the save lays out is not what was made ahead: a message's value
 * changed (as a merge could), one more message, another origin than the
 * device guessed; each compressed again. */
static void a_pack_of_other_messages_is_compressed_again(void **state)
{
    int64_t user;
    ps_store *s = store_with_dictionary(*state, &user);
    ps_values_ahead ahead[3], decoy[3];
    ps_pack_form form[3];
    ps_chat *c[3];
    static const char *const ids[] = {"value", "more", "origin"};
    for (int k = 0; k < 3; k++)
        c[k] = with_decoy(s, user, ids[k], 8, 700u + 100u * (unsigned)k, 90, &ahead[k], &decoy[k],
                          &form[k]);
    /* message 2's value replaced by another text */
    char text[400];
    words(text, sizeof text, 2000);
    json_object *v = json_object_new_object();
    json_object_object_add(v, "id", json_object_new_string("value-2"));
    json_object_object_add(v, "content", json_object_new_string(text));
    json_object_put(c[0]->messages[2].value);
    c[0]->messages[2].value = v;
    /* a ninth message */
    ps_stamp st = {.ts = 1000, .device = (char *)"dev"};
    words(text, sizeof text, 808);
    v = json_object_new_object();
    json_object_object_add(v, "id", json_object_new_string("more-8"));
    json_object_object_add(v, "content", json_object_new_string(text));
    assert_int_equal(ps__chat_append_message(c[1], "more-8", v, &st, 1008), PS_OK);
    ps__chat_normalize(c[1]);
    save(s, user, c[0], 100, "dev");
    save(s, user, c[1], 101, "dev");
    save(s, user, c[2], 102, "dev3");
    for (int m = 0; m < 8; m++) {
        expect_content(s, user, "value", m, m == 2 ? 2000u : 700u + (unsigned)m);
        expect_content(s, user, "origin", m, 900u + (unsigned)m);
    }
    for (int m = 0; m < 9; m++)
        expect_content(s, user, "more", m, 800u + (unsigned)m);
    for (int k = 0; k < 3; k++) {
        ps__chat_free(c[k]);
        ps_values_ahead_free(&ahead[k]);
        ps_values_ahead_free(&decoy[k]);
    }
    ps_store_close(s);
}

/* The parts of a pack the save compares with what was made ahead, each
 * changed in its own chat between the making and the save. */
enum pack_change {
    VALUE_SAME_LENGTH, /* a value's text, one byte other, as long */
    ONE_FEWER,         /* the chat saved has a message less than the form */
    OTHER_ORDER,       /* the form's bytes hold the right entries, reversed */
    RECEIVED,          /* two messages arrived the other way round */
    SEQ,               /* one message of another change than the chat's */
    DEVICE,            /* a message from another device (stamp and origin) */
    TS,                /* a message's stamp time */
    LAMPORT,           /* a message's stamp counter */
    ORDER_TS,          /* a message's display time */
    TIMED,             /* a message's stamp placed by the server */
    OTHER_USER,        /* the form made for another user */
    PACK_CHANGES
};

/* The form's bytes with the entries in the opposite order, in *raw. */
static void reversed_form(const ps_pack_form *form, ps_dynbuf *raw)
{
    ps_pack_entry e[16];
    size_t n = 0, pos = 0;
    bool more = true;
    while (more) {
        assert_int_equal(ps_pack_next(form->raw, form->raw_len, &pos, &e[n], &more), PS_OK);
        n += more;
        assert_true(n < 16);
    }
    assert_true(n > 2);
    ps__dynbuf_init(raw, SIZE_MAX - 1);
    assert_int_equal(ps_pack_begin_based(raw), PS_OK);
    while (n--)
        assert_int_equal(ps_pack_put(raw, &e[n]), PS_OK);
}

/* Each part that changed is found, and the pack compressed again: the
 * chat's own texts read back, not the frame's (message m of chat k:
 * words(1000 + 100k + m); the frame's: words(90 + m)). */
static void a_pack_changed_in_any_part_is_compressed_again(void **state)
{
    int64_t user;
    ps_store *s = store_with_dictionary(*state, &user);
    for (int k = 0; k < PACK_CHANGES; k++) {
        char id[8];
        snprintf(id, sizeof id, "k%d", k);
        unsigned seed = 1000u + 100u * (unsigned)k;
        ps_values_ahead ahead, decoy;
        ps_pack_form form;
        ps_dynbuf reversed = {0};
        ps_chat *c = with_decoy(s, user, id, 8, seed, 90, &ahead, &decoy, &form);
        int n = 8;
        char changed_text[400] = "";
        switch ((enum pack_change)k) {
        case VALUE_SAME_LENGTH: {
            json_object *old = c->messages[2].value;
            snprintf(changed_text, sizeof changed_text, "%s",
                     json_object_get_string(json_object_object_get(old, "content")));
            char *space = strrchr(changed_text, ' ');
            assert_non_null(space);
            *space = '_';
            json_object *v = json_object_new_object();
            json_object_object_add(v, "id", json_object_get(json_object_object_get(old, "id")));
            json_object_object_add(v, "content", json_object_new_string(changed_text));
            json_object_put(old);
            c->messages[2].value = v;
            break;
        }
        case ONE_FEWER: {
            ps_chat *fewer = new_pushed_chat(id, 7, seed);
            fewer->pack_form = c->pack_form;
            ps__chat_free(c);
            c = fewer;
            n = 7;
            break;
        }
        case OTHER_ORDER:
            reversed_form(&form, &reversed);
            form.raw = reversed.data;
            form.raw_len = reversed.len;
            break;
        case RECEIVED: {
            int64_t r = c->messages[3].received;
            c->messages[3].received = c->messages[4].received;
            c->messages[4].received = r;
            break;
        }
        case SEQ:
            break; /* after the marking, below */
        case DEVICE:
            free(c->messages[4].stamp.device);
            c->messages[4].stamp.device = strdup("dev9");
            break;
        case TS:
            c->messages[5].stamp.ts++;
            break;
        case LAMPORT:
            c->messages[5].stamp.lamport++;
            break;
        case ORDER_TS:
            c->messages[6].order_ts += 5;
            break;
        case TIMED:
            c->messages[1].stamp.timed = !c->messages[1].stamp.timed;
            break;
        case OTHER_USER:
            form.user = user + 1;
            break;
        case PACK_CHANGES:
            break;
        }
        ps_error err;
        ps__chat_number_received(c);
        assert_int_equal(ps__chat_mark_dirty(c, 200 + k, "dev"), PS_OK);
        if (k == SEQ)
            c->messages[3].mark.seq++;
        if (k == DEVICE) { /* its own origin too: only the stamp differs */
            free(c->messages[4].mark.origin);
            c->messages[4].mark.origin = strdup("dev9");
        }
        assert_int_equal(ps_store_begin(s, true, &err), PS_OK);
        assert_int_equal(s->ops->chat_save(s, user, c, NULL, 0, 200 + k, &err), PS_OK);
        assert_int_equal(ps_store_commit(s, &err), PS_OK);
        for (int m = 0; m < n; m++) {
            if (k == VALUE_SAME_LENGTH && m == 2) {
                char *got = content_of(s, user, id, m);
                assert_string_equal(got, changed_text);
                free(got);
            } else {
                expect_content(s, user, id, m, seed + (unsigned)m);
            }
        }
        ps__chat_free(c);
        ps__dynbuf_free(&reversed);
        ps_values_ahead_free(&ahead);
        ps_values_ahead_free(&decoy);
    }
    ps_store_close(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(a_current_pack_is_stored_as_made, setup, teardown),
        cmocka_unit_test_setup_teardown(a_legacy_pack_made_ahead_is_stored_as_made, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(packs_made_on_another_thread_are_values_pack_aheads, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(a_pack_made_with_a_replaced_dictionary_is_compressed_again,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(a_pack_of_a_chat_created_meanwhile_is_not_used, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(a_pack_of_other_messages_is_compressed_again, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(a_pack_changed_in_any_part_is_compressed_again, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
