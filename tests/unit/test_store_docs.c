/*
 * SQLite schema 10 (docs/storage.md, "Renderings"): legacy renderings kept
 * in `chat_docs`, compressed (doc_codec.h), apart from the small columns of
 * `chat_bodies`; the migration from schema 9 keeping every rendering, shell,
 * base and byte count; a listing continued after a chat id (what a streamed
 * answer does piece by piece); a corrupt rendering reported, not served.
 * The codec on its own too. Oracles: the bytes the test put in, and
 * renderings written by hand. Includes the .c file to reach MIGRATIONS (to
 * build a schema-9 store by hand) and the connection.
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
    return store_fixture_sqlite(state, "docs", "p.db");
}

/* A rendering-like JSON text of about `len` bytes (compressible, as chats
 * are): {"id":ID,"title":"T","messages":[{"id":..,"content":..},...]}. */
static char *rendering(const char *id, size_t len)
{
    static const char *const w[] = {"sync ", "chat ",  "café ",  "мир ", "世界 ",
                                    "🚀 ",    "model ", "reply ", "the ", "merge "};
    char *out = malloc(len + 256);
    size_t n = (size_t)sprintf(out, "{\"id\":\"%s\",\"title\":\"T\",\"messages\":[", id);
    unsigned r = 12345;
    for (int m = 0; n + 200 < len; m++) {
        n += (size_t)sprintf(out + n, "%s{\"id\":\"m%d\",\"content\":\"", m ? "," : "", m);
        for (int k = 0; k < 20; k++) {
            r = r * 1103515245u + 12345u;
            const char *x = w[(r >> 16) % (sizeof w / sizeof *w)];
            memcpy(out + n, x, strlen(x));
            n += strlen(x);
        }
        n += (size_t)sprintf(out + n, "\"}");
    }
    sprintf(out + n, "]}");
    return out;
}

/* Every chat a listing gives: ids in order, and each one's rendering as
 * doc() and as doc_append() give it (after a marker, so an append that
 * overwrote instead would show). */
typedef struct listed {
    char ids[16][16];
    char *docs[16];
    size_t n;
} listed;

static int take(void *ctx, const ps_chat_row *row)
{
    listed *l = ctx;
    assert_true(l->n < 16);
    snprintf(l->ids[l->n], sizeof l->ids[l->n], "%s", row->id);
    size_t len = 0;
    const char *got = row->doc(row, &len);
    char *doc = got ? strndup(got, len) : NULL; /* valid until the next read: copied */
    ps_dynbuf out;
    ps__dynbuf_init(&out, SIZE_MAX - 1);
    assert_int_equal(ps__dynbuf_adds(&out, "<<"), PS_OK);
    bool appended = false;
    ps_error err;
    assert_int_equal(row->doc_append(row, &out, &appended, &err), PS_OK);
    assert_int_equal(appended, doc != NULL);
    if (doc) {
        assert_int_equal(out.len, 2 + len);
        assert_memory_equal(out.data + 2, doc, len);
        l->docs[l->n] = doc;
    }
    ps__dynbuf_free(&out);
    l->n++;
    return 0;
}

static void listed_free(listed *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->docs[i]);
}

/* The codec alone: a long rendering becomes a much smaller frame and comes
 * back byte for byte, appended after what the buffer held; a short one
 * stays plain; what is not a frame is refused. */
static void codec_round_trips(void **state)
{
    (void)state;
    char *text = rendering("c", 40000);
    ps_dynbuf out;
    ps__dynbuf_init(&out, SIZE_MAX - 1);
    const void *frame = NULL;
    size_t frame_len = 0;
    bool packed = false;
    assert_int_equal(ps_doc_pack(text, strlen(text), &frame, &frame_len, &packed), PS_OK);
    assert_true(packed);
    assert_true(frame_len * 2 < strlen(text));
    assert_int_equal(ps__dynbuf_adds(&out, "[x,"), PS_OK);
    assert_int_equal(ps_doc_unpack_append(frame, frame_len, &out), PS_OK);
    assert_int_equal(out.len, 3 + strlen(text));
    assert_memory_equal(out.data + 3, text, strlen(text));
    assert_int_equal(ps_doc_pack("{\"id\":\"c\"}", 10, &frame, &frame_len, &packed), PS_OK);
    assert_false(packed);
    assert_int_equal(frame_len, 0);
    assert_int_equal(ps_doc_unpack_append("not a frame at all", 18, &out), PS_ERR_STORE);
    ps__dynbuf_free(&out);
    free(text);
}

/* A schema-9 store (made by its own migrations, rows as schema 9 wrote
 * them) migrates to 10: a long rendering becomes a frame in chat_docs, a
 * short one stays text, a chat without one (a v2 push's shell, a tombstone)
 * gets no row; each is served as before, byte for byte; the base kept with
 * a rendering is still copied; bytes are recounted; the file is sound. */
static void migrates_from_schema_9(void **state)
{
    fixture *f = *state;
    sqlite3 *db = sqlite_at_schema(f->path, 9);
    char *msg = NULL;
    char *long_doc = rendering("long", 30000);
    const char *short_doc = "{\"id\":\"short\",\"title\":\"S\",\"messages\":[]}";
    const char *state_json = "{\"id\":\"%s\",\"f\":{\"title\":[\"T\",[5,0,\"d\"],2,\"d\"]},"
                             "\"L\":[3,\"d\"],\"n\":2}";
    assert_int_equal(
        sqlite3_exec(db,
                     "INSERT INTO users(id, name, clock, seq, bytes)"
                     "  VALUES (1, 'u', 9, 9, 1);"
                     "INSERT INTO chats(user_id, id, live, state, doc, seq) VALUES"
                     "  (1, 'long', 1, '', '', 2), (1, 'short', 1, '', '', 3),"
                     "  (1, 'v2', 1, '', '', 4);"
                     "INSERT INTO chats(user_id, id, live, state, doc, deleted_counter,"
                     "  deleted_device, deleted_at_ms, seq)"
                     "  VALUES (1, 'gone', 0, '', '', 4, 'd', 123456, 5);",
                     NULL, NULL, &msg),
        SQLITE_OK);
    sqlite3_stmt *body = NULL;
    assert_int_equal(sqlite3_prepare_v2(db,
                                        "INSERT INTO chat_bodies(user_id, chat_id, state, doc,"
                                        " hashes, shell) VALUES (1, ?1, ?2, ?3, ?4, ?5)",
                                        -1, &body, NULL),
                     SQLITE_OK);
    const char *ids[4] = {"long", "short", "v2", "gone"};
    const char *docs[4] = {long_doc, short_doc, "", ""};
    const char *shells[4] = {NULL, NULL, "{\"id\":\"v2\",\"title\":\"V\",\"messages\":[]}", NULL};
    for (int i = 0; i < 4; i++) {
        char st[200];
        snprintf(st, sizeof st, state_json, ids[i]);
        sqlite3_bind_text(body, 1, ids[i], -1, SQLITE_STATIC);
        sqlite3_bind_text(body, 2, st, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(body, 3, docs[i], -1, SQLITE_STATIC);
        if (i == 0)
            sqlite3_bind_blob(body, 4, "\x01\x02\x03\x04\x05\x06\x07\x08", 8, SQLITE_STATIC);
        else
            sqlite3_bind_null(body, 4);
        if (shells[i])
            sqlite3_bind_text(body, 5, shells[i], -1, SQLITE_STATIC);
        else
            sqlite3_bind_null(body, 5);
        assert_int_equal(sqlite3_step(body), SQLITE_DONE);
        sqlite3_reset(body);
    }
    sqlite3_finalize(body);
    /* the v2 chat's rows, the later one first in display order */
    assert_int_equal(sqlite3_exec(db,
                                  "INSERT INTO messages VALUES"
                                  " (1, 'v2', 'a', '{\"id\":\"a\",\"content\":\"second\"}',"
                                  "  5, 0, 'd', 20, 4, 'd', 0, 0),"
                                  " (1, 'v2', 'b', '{\"id\":\"b\",\"content\":\"first\"}',"
                                  "  5, 0, 'd', 10, 4, 'd', 0, 1),"
                                  " (1, 'v2', 'c', NULL, 5, 0, 'd', 15, 4, 'd', 0, 2);",
                                  NULL, NULL, &msg),
                     SQLITE_OK);
    sqlite3_close(db);

    ps_error err;
    ps_store *s = NULL;
    if (ps_store_open(f->url, &s, &err) != PS_OK)
        fail_msg("open: %s", err.message);
    sqlite_store *ss = (sqlite_store *)s;
    assert_int_equal(schema_version(ss), SCHEMA_VERSION);
    char *sound = query_text(ss, "PRAGMA integrity_check");
    assert_string_equal(sound, "ok");
    free(sound);
    assert_int_equal(query_int(ss, "SELECT count(*) FROM chat_docs"), 2);
    assert_int_equal(query_int(ss, "SELECT count(*) FROM chat_docs WHERE chat_id = 'long'"
                                   " AND typeof(doc) = 'blob'"),
                     1);
    assert_true(query_int(ss, "SELECT length(doc) FROM chat_docs WHERE chat_id = 'long'") * 2 <
                (int64_t)strlen(long_doc));
    assert_int_equal(query_int(ss, "SELECT count(*) FROM chat_docs WHERE chat_id = 'short'"
                                   " AND typeof(doc) = 'text'"),
                     1);
    /* chat_bodies keeps the small columns only */
    assert_int_equal(query_int(ss, "SELECT count(*) FROM pragma_table_info('chat_bodies')"
                                   " WHERE name = 'doc'"),
                     0);
    assert_int_equal(query_int(ss, "SELECT count(*) FROM chat_bodies"), 4);
    assert_int_equal(query_int(ss, "SELECT bytes FROM users WHERE id = 1"),
                     query_int(ss, "SELECT sum(length(CAST(state AS BLOB)) +"
                                   " coalesce(length(CAST(shell AS BLOB)), 0)) FROM chat_bodies") +
                         query_int(ss, "SELECT sum(length(CAST(doc AS BLOB))) FROM chat_docs") +
                         query_int(ss, "SELECT sum(length(CAST(id AS BLOB)) +"
                                       " coalesce(length(CAST(value AS BLOB)), 0)) FROM messages"));

    assert_int_equal(ps_store_begin(s, false, &err), PS_OK);
    listed l = {0};
    assert_int_equal(s->ops->chat_each(s, 1, take, &l, &err), PS_OK);
    assert_int_equal(l.n, 4);
    assert_string_equal(l.ids[0], "gone");
    assert_string_equal(l.ids[1], "long");
    assert_string_equal(l.docs[1], long_doc);
    assert_string_equal(l.ids[2], "short");
    assert_string_equal(l.docs[2], short_doc);
    assert_string_equal(l.ids[3], "v2");
    assert_string_equal(l.docs[3], "{\"id\":\"v2\",\"title\":\"V\",\"messages\":["
                                   "{\"id\":\"b\",\"content\":\"first\"},"
                                   "{\"id\":\"a\",\"content\":\"second\"}]}");
    listed_free(&l);
    ps_store_rollback(s);
    /* the base kept with the long rendering is what a device sent it gets */
    assert_int_equal(ps_store_begin(s, true, &err), PS_OK);
    bool copied = false;
    assert_int_equal(s->ops->base_copy(s, 1, "phone", "long", 2, &copied, &err), PS_OK);
    assert_true(copied);
    ps_base b = {0};
    int64_t seq = 0;
    bool found = false;
    assert_int_equal(s->ops->base_load(s, 1, "phone", "long", &b, &seq, &found, &err), PS_OK);
    assert_true(found);
    assert_int_equal(seq, 2);
    assert_int_equal(b.n, 1);
    assert_memory_equal(b.hashes, "\x01\x02\x03\x04\x05\x06\x07\x08", 8);
    ps__base_free(&b);
    assert_int_equal(s->ops->base_copy(s, 1, "phone", "short", 3, &copied, &err), PS_OK);
    assert_false(copied);
    ps_store_rollback(s);
    ps_store_close(s);
    free(long_doc);
}

/* A chat with `n` messages saved with its rendering (a legacy save) or
 * without (doc NULL: a v2 push); *text: the rendering, the caller's. */
static void save(ps_store *s, const char *id, int n, bool rendered, int64_t seq, char **text)
{
    ps_chat *c = ps__chat_new(id);
    ps_stamp st = {.ts = 1000, .device = (char *)"dev"};
    bool changed;
    assert_int_equal(ps__chat_put_field(c, "title", json_object_new_string(id), &st, &changed),
                     PS_OK);
    assert_int_equal(ps__lamport_set(&c->lamport, 1, "server"), PS_OK);
    char mid[32], content[600];
    for (int m = 0; m < n; m++) {
        snprintf(mid, sizeof mid, "%s-%d", id, m);
        for (int k = 0; k < 20; k++)
            sprintf(content + 25 * k, "message %04d of chat %-3.3s.", m, id);
        json_object *v = json_object_new_object();
        json_object_object_add(v, "id", json_object_new_string(mid));
        json_object_object_add(v, "content", json_object_new_string(content));
        assert_int_equal(ps__chat_append_message(c, mid, v, &st, 1000 + m), PS_OK);
    }
    ps__chat_normalize(c);
    ps__chat_number_received(c);
    assert_int_equal(ps__chat_mark_dirty(c, seq, "dev"), PS_OK);
    json_object *doc = ps__chat_to_legacy(c);
    size_t len;
    const char *doc_text = ps__json_text(doc, &len);
    *text = strndup(doc_text, len);
    ps_error err;
    assert_int_equal(
        s->ops->chat_save(s, 1, c, rendered ? doc_text : NULL, rendered ? len : 0, seq, &err),
        PS_OK);
    json_object_put(doc);
    ps__chat_free(c);
}

/* Saved with its rendering, a chat keeps it compressed in chat_docs and
 * serves it byte for byte; saved again without one (a v2 push), the row
 * goes and the chat is put together from its shell and rows, the same
 * bytes; a listing continued after an id gives the chats after it; a
 * frame that does not decompress is reported, not served. */
static void renderings_are_kept_compressed(void **state)
{
    fixture *f = *state;
    ps_error err;
    ps_store *s = NULL;
    assert_int_equal(ps_store_open(f->url, &s, &err), PS_OK);
    sqlite_store *ss = (sqlite_store *)s;
    ps_user u;
    assert_int_equal(ps_store_begin(s, true, &err), PS_OK);
    assert_int_equal(s->ops->user_load(s, "u", &u, &err), PS_OK);
    assert_int_equal(u.id, 1);
    char *text[4];
    /* each chat known to the store first (a device's v2 push of one
     * message): a legacy save of a chat new to the store keeps a pack and
     * no rendering (schema 14, test_store_packs) */
    static const char *const ids[4] = {"a", "b", "c", "d"};
    for (int i = 0; i < 4; i++) {
        char *first;
        save(s, ids[i], 1, false, 1, &first);
        free(first);
    }
    save(s, "a", 40, true, 1, &text[0]);
    save(s, "b", 40, true, 2, &text[1]);
    save(s, "c", 3, true, 3, &text[2]);
    save(s, "d", 40, true, 4, &text[3]);
    assert_int_equal(query_int(ss, "SELECT count(*) FROM chat_docs WHERE typeof(doc) = 'blob'"), 4);
    free(text[1]);
    save(s, "b", 41, false, 5, &text[1]); /* a v2 push: the rendering goes */
    assert_int_equal(query_int(ss, "SELECT count(*) FROM chat_docs WHERE chat_id = 'b'"), 0);
    assert_int_equal(ps_store_commit(s, &err), PS_OK);

    assert_int_equal(ps_store_begin(s, false, &err), PS_OK);
    listed l = {0};
    assert_int_equal(s->ops->chat_each(s, 1, take, &l, &err), PS_OK);
    assert_int_equal(l.n, 4);
    for (int i = 0; i < 4; i++)
        assert_string_equal(l.docs[i], text[i]);
    listed_free(&l);
    listed after = {0};
    assert_int_equal(s->ops->chat_each_after(s, 1, "b", take, &after, &err), PS_OK);
    assert_int_equal(after.n, 2);
    assert_string_equal(after.ids[0], "c");
    assert_string_equal(after.ids[1], "d");
    assert_string_equal(after.docs[1], text[3]);
    listed_free(&after);
    listed none = {0};
    assert_int_equal(s->ops->chat_each_after(s, 1, "d", take, &none, &err), PS_OK);
    assert_int_equal(none.n, 0);
    ps_store_rollback(s);
    for (int i = 0; i < 4; i++)
        free(text[i]);

    /* a corrupt (cut) frame: the chat is not served as anything */
    assert_int_equal(
        sqlite3_exec(ss->db, "UPDATE chat_docs SET doc = substr(doc, 1, 40) WHERE chat_id = 'd'",
                     NULL, NULL, NULL),
        SQLITE_OK);
    assert_int_equal(ps_store_begin(s, false, &err), PS_OK);
    chat_listing cur = {.s = ss, .user = 1};
    ps_doc_builder_init(&cur.doc);
    ps_chat_row row = {.id = "d", .impl = &cur};
    ps_dynbuf out;
    ps__dynbuf_init(&out, SIZE_MAX - 1);
    bool appended = true;
    assert_int_equal(row_doc_append(&row, &out, &appended, &err), PS_ERR_STORE);
    assert_false(appended);
    size_t len = 1;
    assert_null(row_doc(&row, &len));
    ps__dynbuf_free(&out);
    ps_doc_builder_free(&cur.doc);
    ps_store_rollback(s);
    ps_store_close(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(codec_round_trips),
        cmocka_unit_test_setup_teardown(migrates_from_schema_9, setup, teardown),
        cmocka_unit_test_setup_teardown(renderings_are_kept_compressed, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
