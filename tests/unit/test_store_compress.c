/*
 * SQLite schema 9 (docs/storage.md, "Compression"): message values stored
 * as zstd frames made with a dictionary per user, trained once the user
 * has enough; the migration from schema 7 keeping every chat, message,
 * tombstone, base and rendering; a user's dictionary going with the user;
 * a corrupt frame reported, not served. The codec on its own too. Oracles:
 * the values the test put in. Includes the .c file to reach MIGRATIONS
 * (to build a schema-7 store by hand) and the connection.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "../../src/store/store_sqlite.c"
#include "sqlite_fixture.h"
#include "store_fixture.h"
#include "store_rows_fixture.h"

#include <stdio.h>
#include <unistd.h>

static int setup(void **state)
{
    return store_fixture_sqlite(state, "zstore", "p.db");
}

/* Deterministic message text from a small vocabulary (compressible, as
 * chat text is), `len` bytes at most. */
static void words(char *out, size_t len, unsigned seed)
{
    static const char *const w[] = {"sync ", "chat ",  "café ",   "мир ", "世界 ",
                                    "🚀 ",    "model ", "reply\n", "the ", "merge "};
    size_t n = 0;
    unsigned r = seed * 2654435761u + 7;
    while (n + 12 < len) {
        r = r * 1103515245u + 12345u;
        const char *x = w[(r >> 16) % (sizeof w / sizeof *w)];
        memcpy(out + n, x, strlen(x));
        n += strlen(x);
    }
    out[n] = '\0';
}

static ps_code no_dict(void *ctx, int64_t user, uint32_t id, ps_dynbuf *dict)
{
    (void)ctx, (void)user, (void)id, (void)dict;
    return PS_ERR_STORE;
}

static ps_dynbuf the_dict;
static ps_code test_dict(void *ctx, int64_t user, uint32_t id, ps_dynbuf *dict)
{
    (void)ctx, (void)id;
    if (user != 42)
        return PS_ERR_STORE;
    ps__dynbuf_reset(dict);
    return ps__dynbuf_add(dict, the_dict.data, the_dict.len);
}

/* The codec alone: a trained dictionary, values back byte for byte,
 * short and incompressible values left plain, a frame of another user
 * (another dictionary) refused. */
static void codec_round_trips(void **state)
{
    (void)state;
    enum { N = 3000, LEN = 400 };
    char *samples = malloc((size_t)N * LEN);
    size_t *sizes = malloc(N * sizeof *sizes), at = 0;
    for (unsigned i = 0; i < N; i++) {
        words(samples + at, LEN, i);
        sizes[i] = strlen(samples + at);
        at += sizes[i];
    }
    ps__dynbuf_init(&the_dict, SIZE_MAX - 1);
    uint32_t id = 0;
    assert_int_equal(ps_value_train(samples, sizes, N, &the_dict, &id), PS_OK);
    assert_true(id != 0);
    assert_true(the_dict.len > 0 && the_dict.len <= PS_VALUE_DICT_BYTES);
    free(samples);
    free(sizes);

    ps_dynbuf frame;
    ps__dynbuf_init(&frame, SIZE_MAX - 1);
    bool packed = true;
    /* short: plain */
    assert_int_equal(ps_value_pack("{\"id\":\"a\"}", 10, 42, id, test_dict, NULL, &frame, &packed),
                     PS_OK);
    assert_false(packed);
    /* no dictionary (id 0): plain */
    char text[4096];
    words(text, sizeof text, 99999);
    assert_int_equal(ps_value_pack(text, strlen(text), 42, 0, test_dict, NULL, &frame, &packed),
                     PS_OK);
    assert_false(packed);
    /* ordinary text: a frame, much smaller, back byte for byte */
    assert_int_equal(ps_value_pack(text, strlen(text), 42, id, test_dict, NULL, &frame, &packed),
                     PS_OK);
    assert_true(packed);
    assert_true(frame.len * 2 < strlen(text));
    const char *back;
    size_t back_len;
    assert_int_equal(ps_value_unpack(frame.data, frame.len, 42, test_dict, NULL, &back, &back_len),
                     PS_OK);
    assert_int_equal(back_len, strlen(text));
    assert_memory_equal(back, text, back_len);
    /* appended after what a rendering holds */
    ps_dynbuf doc;
    ps__dynbuf_init(&doc, SIZE_MAX - 1);
    assert_int_equal(ps__dynbuf_adds(&doc, "[x,"), PS_OK);
    assert_int_equal(ps_value_unpack_append(frame.data, frame.len, 42, test_dict, NULL, &doc),
                     PS_OK);
    assert_int_equal(doc.len, 3 + strlen(text));
    assert_memory_equal(doc.data + 3, text, strlen(text));
    ps__dynbuf_free(&doc);
    /* a frame read as another user's (whose dictionary cannot be found) */
    assert_int_equal(ps_value_unpack(frame.data, frame.len, 7, no_dict, NULL, &back, &back_len),
                     PS_ERR_STORE);
    /* garbage is not a frame */
    assert_int_equal(
        ps_value_unpack("not a frame at all", 18, 42, test_dict, NULL, &back, &back_len),
        PS_ERR_STORE);
    /* incompressible (every byte value but NUL, shuffled): plain */
    unsigned char noise[2048];
    unsigned r = 1;
    for (size_t i = 0; i < sizeof noise; i++) {
        r = r * 1103515245u + 12345u;
        noise[i] = (unsigned char)(1 + (r >> 16) % 255);
    }
    assert_int_equal(
        ps_value_pack((const char *)noise, sizeof noise, 42, id, test_dict, NULL, &frame, &packed),
        PS_OK);
    assert_false(packed);
    ps__dynbuf_free(&frame);
    ps__dynbuf_free(&the_dict);
}

/* the_dict trained on 2,000 samples of 400 bytes of words; its id. */
static uint32_t train_the_dict(void)
{
    enum { N = 2000, LEN = 400 };
    char *samples = malloc((size_t)N * LEN);
    size_t *sizes = malloc(N * sizeof *sizes), at = 0;
    for (unsigned i = 0; i < N; i++) {
        words(samples + at, LEN, i);
        sizes[i] = strlen(samples + at);
        at += sizes[i];
    }
    ps__dynbuf_init(&the_dict, SIZE_MAX - 1);
    uint32_t id = 0;
    assert_int_equal(ps_value_train(samples, sizes, N, &the_dict, &id), PS_OK);
    free(samples);
    free(sizes);
    return id;
}

/* ps_value_pack_many (a batch shared with a second thread, a first
 * upload's path) gives every value the frame ps_value_pack gives it alone,
 * byte for byte, and leaves short and incompressible ones plain; a small
 * batch (done on the calling thread alone) as well; twice, so the second
 * thread is used again. */
static void codec_packs_many_as_one_by_one(void **state)
{
    (void)state;
    enum { VALUES = 120 };
    uint32_t id = train_the_dict();
    static char texts[VALUES][1200];
    ps_value_item items[VALUES];
    for (int i = 0; i < VALUES; i++) {
        if (i % 10 == 3) { /* incompressible */
            unsigned r = (unsigned)i;
            for (size_t k = 0; k < 600; k++) {
                r = r * 1103515245u + 12345u;
                texts[i][k] = (char)(1 + (r >> 16) % 255);
            }
            texts[i][600] = '\0';
        } else { /* every fifth short, the rest up to 1.2 KB */
            words(texts[i], i % 5 == 0 ? 60 : 200 + (size_t)(i * 37) % 1000, 5000u + (unsigned)i);
        }
        items[i] = (ps_value_item){.text = texts[i], .len = strlen(texts[i])};
    }
    ps_dynbuf frames, one;
    ps__dynbuf_init(&frames, SIZE_MAX - 1);
    ps__dynbuf_init(&one, SIZE_MAX - 1);
    for (int round = 0; round < 3; round++) {
        size_t n = round == 2 ? 5 : VALUES; /* the last: too small to share */
        assert_int_equal(ps_value_pack_many(items, n, 42, id, test_dict, NULL, &frames), PS_OK);
        for (size_t i = 0; i < n; i++) {
            bool packed = false;
            assert_int_equal(
                ps_value_pack(texts[i], items[i].len, 42, id, test_dict, NULL, &one, &packed),
                PS_OK);
            assert_int_equal(items[i].packed, packed);
            if (i % 5 == 0 || i % 10 == 3)
                assert_false(packed);
            if (packed) {
                assert_int_equal(items[i].frame_len, one.len);
                assert_memory_equal(frames.data + items[i].frame_at, one.data, one.len);
            }
        }
    }
    ps__dynbuf_free(&frames);
    ps__dynbuf_free(&one);
    ps__dynbuf_free(&the_dict);
}

/* ps_value_pack_frames (the packs of a request's new chats, shared with a
 * second thread) gives every buffer the frame ps_value_pack_frame gives it
 * alone, byte for byte, with the dictionary and without one: every buffer
 * a frame, short and incompressible ones too; twice, so the second thread
 * is used again, then a batch too small to share. */
static void codec_packs_frames_as_one_by_one(void **state)
{
    (void)state;
    enum { PACKS = 24 };
    uint32_t id = train_the_dict();
    static char packs[PACKS][40000];
    ps_value_item items[PACKS];
    for (int i = 0; i < PACKS; i++) {
        if (i % 8 == 3) { /* incompressible */
            unsigned r = (unsigned)i;
            for (size_t k = 0; k < 3000; k++) {
                r = r * 1103515245u + 12345u;
                packs[i][k] = (char)(1 + (r >> 16) % 255);
            }
            packs[i][3000] = '\0';
        } else { /* every sixth short, the rest 10 to 39 KB */
            words(packs[i], i % 6 == 0 ? 50 : 10000 + (size_t)(i * 1237) % 29000,
                  7000u + (unsigned)i);
        }
        items[i] = (ps_value_item){.text = packs[i], .len = strlen(packs[i])};
    }
    ps_dynbuf frames, one;
    ps__dynbuf_init(&frames, SIZE_MAX - 1);
    ps__dynbuf_init(&one, SIZE_MAX - 1);
    for (int round = 0; round < 4; round++) {
        uint32_t dict = round % 2 ? 0 : id;
        size_t n = round == 3 ? 1 : PACKS; /* the last: too small to share */
        assert_int_equal(ps_value_pack_frames(items, n, 42, dict, test_dict, NULL, &frames), PS_OK);
        for (size_t i = 0; i < n; i++) {
            assert_int_equal(
                ps_value_pack_frame(packs[i], items[i].len, 42, dict, test_dict, NULL, &one),
                PS_OK);
            assert_true(items[i].packed);
            assert_int_equal(items[i].frame_len, one.len);
            assert_memory_equal(frames.data + items[i].frame_at, one.data, one.len);
            ps__dynbuf_reset(&one);
            assert_int_equal(ps_value_unpack_frame_append(frames.data + items[i].frame_at,
                                                          items[i].frame_len, 42, test_dict, NULL,
                                                          &one),
                             PS_OK);
            assert_int_equal(one.len, items[i].len);
            assert_memory_equal(one.data, packs[i], one.len);
        }
    }
    ps__dynbuf_free(&frames);
    ps__dynbuf_free(&one);
    ps__dynbuf_free(&the_dict);
}

/* A chat of `n` messages of ~`len` bytes, saved with its rendering as
 * message rows: made first (store_rows_make_existing), the save of its
 * messages an update (these tests are of row values). */
static void save_chat(ps_store *s, int64_t user, const char *id, int n, size_t len, int64_t seq)
{
    ps_chat *c = ps__chat_new(id);
    ps_stamp st = {.ts = 1000, .device = (char *)"dev"};
    bool changed;
    assert_int_equal(ps__chat_put_field(c, "title", json_object_new_string(id), &st, &changed),
                     PS_OK);
    assert_int_equal(ps__lamport_set(&c->lamport, 1, "server"), PS_OK);
    char *text = malloc(len + 1), mid[48];
    for (int m = 0; m < n; m++) {
        snprintf(mid, sizeof mid, "%s-%d", id, m);
        words(text, len, (unsigned)(seq * 1000 + m));
        json_object *v = json_object_new_object();
        json_object_object_add(v, "id", json_object_new_string(mid));
        json_object_object_add(v, "content", json_object_new_string(text));
        assert_int_equal(ps__chat_append_message(c, mid, v, &st, 1000 + m), PS_OK);
    }
    free(text);
    ps__chat_normalize(c);
    ps__chat_number_received(c);
    assert_int_equal(ps__chat_mark_dirty(c, seq, "dev"), PS_OK);
    json_object *doc = ps__chat_to_legacy(c);
    size_t doc_len;
    const char *doc_text = ps__json_text(doc, &doc_len);
    ps_error err;
    store_rows_make_existing(s, user, id, seq);
    assert_int_equal(s->ops->chat_save(s, user, c, doc_text, doc_len, seq, &err), PS_OK);
    json_object_put(doc);
    ps__chat_free(c);
}

/* The content saved for message m of a chat saved at `seq` (save_chat's). */
static void expect_content(ps_store *s, int64_t user, const char *chat, int m, size_t len,
                           int64_t seq)
{
    ps_chat *back = NULL;
    ps_error err;
    char mid[48], *want = malloc(len + 1);
    snprintf(mid, sizeof mid, "%s-%d", chat, m);
    words(want, len, (unsigned)(seq * 1000 + m));
    assert_int_equal(s->ops->chat_load(s, user, chat, true, &back, &err), PS_OK);
    assert_non_null(back);
    const ps_message *msg = ps__chat_message(back, mid);
    assert_non_null(msg);
    assert_string_equal(json_object_get_string(json_object_object_get(msg->value, "content")),
                        want);
    free(want);
    ps__chat_free(back);
}

/* The renderings chat_each gives, counted and weighed (as served). */
typedef struct all_docs {
    size_t chats, bytes;
} all_docs;

static int sum_docs(void *ctx, const ps_chat_row *row)
{
    all_docs *a = ctx;
    size_t len = 0;
    assert_non_null(row->doc(row, &len));
    a->chats++;
    a->bytes += len;
    return 0;
}

/* Below PS_VALUE_TRAIN_BYTES values stay plain; past it the user gets a
 * dictionary and every value (those before it too) becomes a frame, the
 * byte count falls with them, the content is unchanged; deleting the user
 * deletes their dictionary (it is made of their messages). */
static void a_user_gets_a_dictionary_and_loses_it_with_their_data(void **state)
{
    fixture *f = *state;
    ps_error err;
    ps_store *s = NULL;
    assert_int_equal(ps_store_open(f->url, &s, &err), PS_OK);
    sqlite_store *ss = (sqlite_store *)s;
    ps_user u;
    assert_int_equal(ps_store_begin(s, true, &err), PS_OK);
    assert_int_equal(s->ops->user_load(s, "zed", &u, &err), PS_OK);
    save_chat(s, u.id, "small", 20, 400, 1); /* 8 KB */
    assert_int_equal(query_int(ss, "SELECT count(*) FROM value_dicts"), 0);
    assert_int_equal(query_int(ss, "SELECT count(*) FROM messages WHERE typeof(value) = 'blob'"),
                     0);
    for (int i = 0; i < 30; i++) { /* 30 x 100 x 400 B = 1.2 MB */
        char id[16];
        snprintf(id, sizeof id, "c%02d", i);
        save_chat(s, u.id, id, 100, 400, 2 + i);
    }
    assert_int_equal(ps_store_commit(s, &err), PS_OK);
    assert_int_equal(ps_store_begin(s, true, &err), PS_OK);
    assert_int_equal(query_int(ss, "SELECT count(*) FROM value_dicts"), 1);
    assert_int_equal(query_int(ss, "SELECT count(*) FROM messages WHERE typeof(value) <> 'blob'"),
                     0); /* the early ones too */
    int64_t bytes = 0;
    assert_int_equal(s->ops->user_bytes(s, u.id, &bytes, &err), PS_OK);
    /* renderings and message values both compressed (schema 10): all of
     * it weighs less than the renderings' text once */
    all_docs every = {0};
    assert_int_equal(s->ops->chat_each(s, u.id, sum_docs, &every, &err), PS_OK);
    assert_int_equal(every.chats, 31);
    assert_true(bytes < (int64_t)every.bytes);
    assert_true(bytes == query_int(ss,
                                   "SELECT sum(length(CAST(state AS BLOB)) +"
                                   " coalesce(length(CAST(shell AS BLOB)), 0)) FROM chat_bodies") +
                             query_int(ss, "SELECT sum(length(CAST(doc AS BLOB))) FROM chat_docs") +
                             query_int(ss, "SELECT sum(length(CAST(id AS BLOB)) +"
                                           " length(CAST(value AS BLOB))) FROM messages"));
    expect_content(s, u.id, "small", 7, 400, 1);
    expect_content(s, u.id, "c00", 0, 400, 2);
    expect_content(s, u.id, "c29", 99, 400, 31);
    assert_int_equal(s->ops->user_delete(s, "zed", &err), PS_OK);
    assert_int_equal(query_int(ss, "SELECT count(*) FROM value_dicts"), 0);
    assert_int_equal(ps_store_commit(s, &err), PS_OK);
    ps_store_close(s);
}

/* A frame that does not decompress is a corrupt store: reported. */
static void a_corrupt_frame_is_reported(void **state)
{
    fixture *f = *state;
    ps_error err;
    ps_store *s = NULL;
    assert_int_equal(ps_store_open(f->url, &s, &err), PS_OK);
    sqlite_store *ss = (sqlite_store *)s;
    ps_user u;
    assert_int_equal(ps_store_begin(s, true, &err), PS_OK);
    assert_int_equal(s->ops->user_load(s, "yan", &u, &err), PS_OK);
    for (int i = 0; i < 30; i++) {
        char id[16];
        snprintf(id, sizeof id, "c%02d", i);
        save_chat(s, u.id, id, 100, 400, 1 + i);
    }
    assert_int_equal(sqlite3_exec(ss->db,
                                  "UPDATE messages SET value = substr(value, 1, 12) || x'00ff00ff'"
                                  " WHERE chat_id = 'c03' AND id = 'c03-5'",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    ps_chat *back = NULL;
    assert_int_equal(s->ops->chat_load(s, u.id, "c03", true, &back, &err), PS_ERR_STORE);
    assert_null(back);
    assert_int_equal(s->ops->chat_load(s, u.id, "c04", true, &back, &err), PS_OK);
    ps__chat_free(back);
    ps_store_rollback(s);
    ps_store_close(s);
}

/* The rendering chat_each gives chat `id` (malloc'ed). */
typedef struct one_doc {
    const char *id;
    char *doc;
} one_doc;

static int take_doc(void *ctx, const ps_chat_row *row)
{
    one_doc *o = ctx;
    if (strcmp(row->id, o->id) != 0)
        return 0;
    size_t len = 0;
    const char *doc = row->doc(row, &len);
    if (doc)
        o->doc = strndup(doc, len);
    return 1;
}

/* A schema-7 store (made by its own migrations, rows written as schema 7
 * wrote them) migrates to 8 keeping every chat, message (values, stamps,
 * order, marks), tombstone (chat and message), base and rendering; the
 * user with enough history gets a dictionary and frames, the one without
 * keeps plain values; bytes are recounted. */
static void migrates_from_schema_7(void **state)
{
    fixture *f = *state;
    sqlite3 *db = sqlite_at_schema(f->path, 7);
    char *msg = NULL;
    assert_int_equal(
        sqlite3_exec(db,
                     "INSERT INTO users(id, name, clock, seq, purged_seq, bytes)"
                     "  VALUES (1, 'big', 9, 40, 2, 1), (2, 'tiny', 3, 2, 0, 1);"
                     "INSERT INTO chats(user_id, id, live, state, doc, seq)"
                     "  VALUES (2, 't1', 1, '', '', 2);"
                     "INSERT INTO chat_bodies(user_id, chat_id, state, doc) VALUES (2, 't1',"
                     "  '{\"id\":\"t1\",\"f\":{\"title\":[\"T\",[5,0,\"d\"],2,\"d\"]},"
                     "\"L\":[3,\"d\"],\"n\":1}', '{\"id\":\"t1\",\"title\":\"T\"}');"
                     "INSERT INTO chats(user_id, id, live, state, doc, deleted_counter,"
                     "  deleted_device, deleted_at_ms, seq) VALUES (1, 'gone', 0, '', '', 4, 'd',"
                     "  123456, 3);"
                     "INSERT INTO chat_bodies(user_id, chat_id, state, doc) VALUES (1, 'gone',"
                     "  '{\"id\":\"gone\",\"f\":{},\"d\":[123456,4,\"d\"],\"D\":[4,\"d\"],"
                     "\"n\":0}', '');",
                     NULL, NULL, &msg),
        SQLITE_OK);
    /* big: 30 chats x 100 messages of ~400 B (1.2 MB), message 0 of each
     * deleted (NULL), every row with its own stamp, order and mark */
    sqlite3_stmt *chat = NULL, *body = NULL, *m = NULL;
    assert_int_equal(
        sqlite3_prepare_v2(db,
                           "INSERT INTO chats(user_id, id, live, state, doc, seq,"
                           " sent_hash, sent_seq) VALUES (1, ?1, 1, '', '', ?2, 77, ?2)",
                           -1, &chat, NULL),
        SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db,
                                        "INSERT INTO chat_bodies(user_id, chat_id, state, doc,"
                                        " hashes) VALUES (1, ?1, ?2, ?3, x'0102030405060708')",
                                        -1, &body, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db,
                                        "INSERT INTO messages VALUES (1, ?1, ?2, ?3, ?4, ?5, ?6,"
                                        " ?7, ?8, ?9, ?10, ?11)",
                                        -1, &m, NULL),
                     SQLITE_OK);
    char text[420], value[600], mid[32], cid[16], state_json[200], doc[64];
    for (int c = 0; c < 30; c++) {
        snprintf(cid, sizeof cid, "c%02d", c);
        sqlite3_bind_text(chat, 1, cid, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int(chat, 2, 4 + c);
        assert_int_equal(sqlite3_step(chat), SQLITE_DONE);
        sqlite3_reset(chat);
        snprintf(state_json, sizeof state_json,
                 "{\"id\":\"%s\",\"f\":{\"title\":[\"%s\",[5,0,\"d\"],%d,\"d\"]},\"L\":[3,\"d\"],"
                 "\"n\":100}",
                 cid, cid, 4 + c);
        /* c29 as a v2 push left it: no rendering */
        snprintf(doc, sizeof doc, c == 29 ? "" : "{\"id\":\"%s\",\"kept\":true}", cid);
        sqlite3_bind_text(body, 1, cid, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(body, 2, state_json, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(body, 3, doc, -1, SQLITE_TRANSIENT);
        assert_int_equal(sqlite3_step(body), SQLITE_DONE);
        sqlite3_reset(body);
        for (int i = 0; i < 100; i++) {
            snprintf(mid, sizeof mid, "%s-%d", cid, i);
            words(text, sizeof text, (unsigned)(c * 100 + i));
            snprintf(value, sizeof value, "{\"id\":\"%s\",\"content\":\"%s\"}", mid, text);
            for (char *p = value; *p; p++)
                if (*p == '\n')
                    *p = ' '; /* words() ends some with a newline: not in a JSON string */
            sqlite3_bind_text(m, 1, cid, -1, SQLITE_TRANSIENT);
            sqlite3_bind_text(m, 2, mid, -1, SQLITE_TRANSIENT);
            if (i == 0)
                sqlite3_bind_null(m, 3);
            else
                sqlite3_bind_text(m, 3, value, -1, SQLITE_TRANSIENT);
            sqlite3_bind_int64(m, 4, 1000 + i); /* ts */
            sqlite3_bind_int64(m, 5, i % 3);    /* lamport */
            sqlite3_bind_text(m, 6, i % 2 ? "phone" : "laptop", -1, SQLITE_STATIC);
            sqlite3_bind_int64(m, 7, 5000 - i); /* order_ts */
            sqlite3_bind_int64(m, 8, 4 + c);    /* seq */
            sqlite3_bind_text(m, 9, "laptop", -1, SQLITE_STATIC);
            sqlite3_bind_int(m, 10, i == 7); /* timed */
            sqlite3_bind_int64(m, 11, i);    /* received */
            assert_int_equal(sqlite3_step(m), SQLITE_DONE);
            sqlite3_reset(m);
        }
    }
    sqlite3_finalize(chat);
    sqlite3_finalize(body);
    sqlite3_finalize(m);
    assert_int_equal(
        sqlite3_exec(db,
                     "INSERT INTO messages VALUES (2, 't1', 'tm', '{\"id\":\"tm\","
                     "\"content\":\"a tiny message of the tiny user, long enough to be"
                     " worth a frame were there a dictionary for it: it stays plain\"}',"
                     " 5, 0, 'd', 5, 2, 'd', 0, 0);"
                     "INSERT INTO bases VALUES (1, 'phone', 'c05', x'0807060504030201', 11);",
                     NULL, NULL, &msg),
        SQLITE_OK);
    sqlite3_close(db);

    ps_error err;
    ps_store *s = NULL;
    assert_int_equal(ps_store_open(f->url, &s, &err), PS_OK);
    sqlite_store *ss = (sqlite_store *)s;
    assert_int_equal(schema_version(ss), SCHEMA_VERSION);
    assert_int_equal(query_int(ss, "SELECT count(*) FROM value_dicts WHERE user_id = 1"), 1);
    assert_int_equal(query_int(ss, "SELECT count(*) FROM value_dicts WHERE user_id = 2"), 0);
    assert_int_equal(query_int(ss, "SELECT count(*) FROM messages WHERE user_id = 1"
                                   " AND typeof(value) = 'text'"),
                     0);
    assert_int_equal(query_int(ss, "SELECT count(*) FROM messages WHERE user_id = 1"
                                   " AND value IS NULL"),
                     30);
    assert_int_equal(query_int(ss, "SELECT count(*) FROM messages WHERE user_id = 2"
                                   " AND typeof(value) = 'text'"),
                     1);
    assert_int_equal(query_int(ss, "SELECT bytes FROM users WHERE id = 1"),
                     query_int(ss, "SELECT sum(length(CAST(state AS BLOB)) +"
                                   " coalesce(length(CAST(shell AS BLOB)), 0)) FROM chat_bodies"
                                   " WHERE user_id = 1") +
                         query_int(ss, "SELECT coalesce(sum(length(CAST(doc AS BLOB))), 0)"
                                       " FROM chat_docs WHERE user_id = 1") +
                         query_int(ss, "SELECT sum(length(CAST(id AS BLOB)) +"
                                       " coalesce(length(CAST(value AS BLOB)), 0))"
                                       " FROM messages WHERE user_id = 1"));

    ps_user u;
    assert_int_equal(ps_store_begin(s, false, &err), PS_OK);
    assert_int_equal(s->ops->user_load(s, "big", &u, &err), PS_OK);
    assert_int_equal(u.clock, 9);
    assert_int_equal(u.seq, 40);
    assert_int_equal(u.purged_seq, 2);
    for (int c = 0; c < 30; c += 7) {
        snprintf(cid, sizeof cid, "c%02d", c);
        ps_chat *back = NULL;
        if (s->ops->chat_load(s, u.id, cid, true, &back, &err) != PS_OK)
            fail_msg("%s: %s", cid, err.message);
        assert_non_null(back);
        assert_string_equal(json_object_get_string(ps__chat_field(back, "title")->value), cid);
        assert_int_equal(back->nmessages, 100);
        for (int i = 0; i < 100; i++) {
            snprintf(mid, sizeof mid, "%s-%d", cid, i);
            const ps_message *msgp = ps__chat_message(back, mid);
            assert_non_null(msgp);
            if (i == 0) {
                assert_null(msgp->value); /* the deleted message stays deleted */
            } else {
                words(text, sizeof text, (unsigned)(c * 100 + i));
                for (char *p = text; *p; p++)
                    if (*p == '\n')
                        *p = ' ';
                assert_string_equal(
                    json_object_get_string(json_object_object_get(msgp->value, "content")), text);
                assert_string_equal(
                    json_object_get_string(json_object_object_get(msgp->value, "id")), mid);
            }
            assert_int_equal(msgp->stamp.ts, 1000 + i);
            assert_int_equal(msgp->stamp.lamport, i % 3);
            assert_string_equal(msgp->stamp.device, i % 2 ? "phone" : "laptop");
            assert_int_equal(msgp->stamp.timed, i == 7);
            assert_int_equal(msgp->order_ts, 5000 - i);
            assert_int_equal(msgp->received, i);
            assert_int_equal(msgp->mark.seq, 4 + c);
            assert_string_equal(msgp->mark.origin, "laptop");
        }
        ps__chat_free(back);
    }
    /* the chat tombstone */
    ps_chat *gone = NULL;
    assert_int_equal(s->ops->chat_load(s, u.id, "gone", true, &gone, &err), PS_OK);
    assert_non_null(gone);
    assert_true(gone->has_tombstone);
    assert_false(ps__chat_is_live(gone));
    ps__chat_free(gone);
    /* the base, and the one kept with the rendering */
    ps_base b = {0};
    int64_t seq = 0;
    bool found = false;
    assert_int_equal(s->ops->base_load(s, u.id, "phone", "c05", &b, &seq, &found, &err), PS_OK);
    assert_true(found);
    assert_int_equal(seq, 11);
    assert_int_equal(b.n, 1);
    const unsigned char want_base[8] = {8, 7, 6, 5, 4, 3, 2, 1};
    assert_memory_equal(b.hashes, want_base, 8);
    ps__base_free(&b);
    /* the old one-per-chat sent hash is not carried over (schema 8 keys
     * it by chat and device, with another hash function): docs/storage.md */
    char id[64];
    bool unchanged = true;
    assert_int_equal(s->ops->chat_find_sent(s, u.id, "", 77, id, sizeof id, &unchanged, &err),
                     PS_OK);
    assert_false(unchanged);
    /* the kept rendering is what is served */
    const char *want_doc = "{\"id\":\"c12\",\"kept\":true}";
    sqlite3_stmt *st = stmt(ss, Q_CHAT_DOC);
    sqlite3_bind_int64(st, 1, u.id);
    sqlite3_bind_text(st, 2, "c12", -1, SQLITE_STATIC);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(st, 0), want_doc);
    sqlite3_reset(st);
    /* c29 had no rendering: put together from its state and rows, as the
     * hand-made oracle says (display order: order_ts = 5000 - i, so the
     * last message first; message 0 is deleted) */
    json_object *want = json_object_new_object();
    json_object_object_add(want, "id", json_object_new_string("c29"));
    json_object_object_add(want, "title", json_object_new_string("c29"));
    json_object *list = json_object_new_array();
    for (int i = 99; i >= 1; i--) {
        snprintf(mid, sizeof mid, "c29-%d", i);
        words(text, sizeof text, (unsigned)(29 * 100 + i));
        for (char *p = text; *p; p++)
            if (*p == '\n')
                *p = ' ';
        json_object *v = json_object_new_object();
        json_object_object_add(v, "id", json_object_new_string(mid));
        json_object_object_add(v, "content", json_object_new_string(text));
        json_object_array_add(list, v);
    }
    json_object_object_add(want, "messages", list);
    json_object *lam = json_object_new_array();
    json_object_array_add(lam, json_object_new_int(3));
    json_object_array_add(lam, json_object_new_string("d"));
    json_object_object_add(want, "updatedAtLamport", lam);
    one_doc o = {.id = "c29"};
    assert_int_equal(s->ops->chat_each(s, u.id, take_doc, &o, &err), PS_OK);
    assert_non_null(o.doc);
    json_object *got = json_tokener_parse(o.doc);
    if (!json_object_equal(got, want))
        fail_msg("c29 rendered: %.300s", o.doc);
    free(o.doc);
    json_object_put(got);
    json_object_put(want);
    /* the tiny user's message, plain, intact */
    ps_user t;
    assert_int_equal(s->ops->user_load(s, "tiny", &t, &err), PS_OK);
    ps_chat *t1 = NULL;
    assert_int_equal(s->ops->chat_load(s, t.id, "t1", true, &t1, &err), PS_OK);
    assert_int_equal(t1->nmessages, 1);
    assert_non_null(
        strstr(json_object_get_string(json_object_object_get(t1->messages[0].value, "content")),
               "it stays plain"));
    ps__chat_free(t1);
    ps_store_rollback(s);
    ps_store_close(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(codec_round_trips),
        cmocka_unit_test(codec_packs_many_as_one_by_one),
        cmocka_unit_test(codec_packs_frames_as_one_by_one),
        cmocka_unit_test_setup_teardown(a_user_gets_a_dictionary_and_loses_it_with_their_data,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(a_corrupt_frame_is_reported, setup, teardown),
        cmocka_unit_test_setup_teardown(migrates_from_schema_7, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
