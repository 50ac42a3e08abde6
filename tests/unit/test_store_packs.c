/*
 * SQLite schema 12 (docs/storage.md, "Packs"): a chat saved new, with a
 * rendering (a legacy sync, which keeps the rendering beside the pack) or
 * without, keeps its messages as one compressed pack (messages not
 * numbered yet stay rows); later writes are
 * rows that shadow the packed message of their id. Judged against the
 * test's own record of what each save wrote (the model: a message, the
 * save that last wrote it, its device, whether it was deleted), never
 * against the store's reading of itself: messages_since for every cursor
 * and asker, chat_load, messages_load by id, the legacy rendering put
 * together from pack and rows, rows folded into the pack, tombstone
 * collection (a forgotten deletion
 * must not bring its packed message back), purges and user deletion (no
 * pack left behind), byte counts, a dictionary trained from packs, and the
 * migration from schema 11 (every row read as before, new chats packed);
 * a random walk of edits, deletions, collections and folds checked after
 * every step (also with the cold_seq chat_next_changed passes along), a
 * chat made again after its deletion is collected, packs made before and
 * after a dictionary read from a reopened store, and loaded packed
 * messages clean (not a change of the next save), as loaded rows are.
 * Includes the .c file to reach MIGRATIONS and the connection.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "../../src/store/store_sqlite.c"
#include "core/merge.h"

#include <stdio.h>
#include <unistd.h>
#include <zstd.h>

typedef struct fixture {
    char dir[64];
    char path[128];
    char url[160];
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/ps-packs-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof f->path, "%s/p.db", f->dir);
    snprintf(f->url, sizeof f->url, "sqlite:%s", f->path);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    char cmd[160];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

static int64_t query_int(sqlite_store *s, const char *sql)
{
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(s->db, sql, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int64_t v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

/* The model: what the last save of a message wrote. */
typedef struct written {
    char id[16];
    int64_t seq;
    char origin[16];
    char device[16];
    int64_t order_ts;
    int version; /* its content: "<id> v<version> ..." */
    bool deleted;
} written;

#define MAX_MSGS 64

typedef struct model {
    written w[MAX_MSGS];
    int n;
} model;

static written *model_get(model *md, const char *id)
{
    for (int i = 0; i < md->n; i++)
        if (strcmp(md->w[i].id, id) == 0)
            return &md->w[i];
    assert_true(md->n < MAX_MSGS);
    written *w = &md->w[md->n++];
    memset(w, 0, sizeof *w);
    snprintf(w->id, sizeof w->id, "%s", id);
    return w;
}

/* A message's content: long enough that a chat of 20 makes a pack. */
static void content_of(const char *id, int version, char *out, size_t size)
{
    snprintf(out, size,
             "%s v%d: the quick brown fox jumps over the lazy dog, then rests a while in the"
             " shade before it runs on",
             id, version);
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

/* Adds message `id` (version, or deleted when version < 0) stamped by
 * `device` to the chat being saved. */
static void put(ps_chat *c, const char *id, const char *device, int64_t order_ts, int version)
{
    ps_stamp st = {.ts = order_ts, .device = (char *)device};
    json_object *v = NULL;
    if (version >= 0) {
        char text[200];
        content_of(id, version, text, sizeof text);
        v = json_object_new_object();
        json_object_object_add(v, "id", json_object_new_string(id));
        json_object_object_add(v, "content", json_object_new_string(text));
    }
    assert_int_equal(ps__chat_append_message(c, id, v, &st, order_ts), PS_OK);
}

/* Saves `c` (all its messages dirty) at `seq` from `origin`, unrendered,
 * and records what it wrote in the model. */
static void save(ps_store *s, int64_t user, ps_chat *c, int64_t seq, const char *origin, model *md)
{
    ps__chat_normalize(c);
    ps__chat_number_received(c);
    assert_int_equal(ps__chat_mark_dirty(c, seq, origin), PS_OK);
    for (size_t i = 0; i < c->nmessages; i++) {
        const ps_message *m = &c->messages[i];
        written *w = model_get(md, m->id);
        w->seq = seq;
        snprintf(w->origin, sizeof w->origin, "%s", origin);
        snprintf(w->device, sizeof w->device, "%s", m->stamp.device);
        w->order_ts = m->order_ts;
        w->deleted = m->value == NULL;
        if (m->value) {
            json_object *content;
            assert_true(json_object_object_get_ex(m->value, "content", &content));
            w->version = atoi(strstr(json_object_get_string(content), " v") + 2);
        }
    }
    ps_error err;
    if (s->ops->chat_save(s, user, c, NULL, 0, seq, &err) != PS_OK)
        fail_msg("chat_save: %s", err.message);
    ps__chat_free(c);
}

/* What messages_since gave, one "id@seq:origin[:deleted|:vN]" each. */
typedef struct seen {
    char items[MAX_MSGS][64];
    int n;
} seen;

static void describe(char *out, size_t size, const char *id, int64_t seq, const char *origin,
                     bool deleted, int version)
{
    if (deleted)
        snprintf(out, size, "%s@%lld:%s:deleted", id, (long long)seq, origin);
    else
        snprintf(out, size, "%s@%lld:%s:v%d", id, (long long)seq, origin, version);
}

static ps_code collect(void *ctx, const ps_message *m)
{
    seen *s = ctx;
    assert_true(s->n < MAX_MSGS);
    int version = -1;
    if (m->value) {
        json_object *content;
        assert_true(json_object_object_get_ex(m->value, "content", &content));
        char want[200];
        version = atoi(strstr(json_object_get_string(content), " v") + 2);
        content_of(m->id, version, want, sizeof want);
        assert_string_equal(json_object_get_string(content), want);
    }
    describe(s->items[s->n++], sizeof s->items[0], m->id, m->mark.seq, m->mark.origin,
             m->value == NULL, version);
    return PS_OK;
}

/* The model's messages in display order (order_ts; the model's are distinct). */
static int model_order(const model *md, const written **out)
{
    int n = 0;
    int64_t last = INT64_MIN;
    for (;;) {
        const written *next = NULL;
        for (int i = 0; i < md->n; i++)
            if (md->w[i].order_ts > last && (!next || md->w[i].order_ts < next->order_ts))
                next = &md->w[i];
        if (!next)
            return n;
        last = next->order_ts;
        out[n++] = next;
    }
}

/* messages_since(after, skip) gives exactly the model's messages written
 * after `after`, less the asker's own after skip_after, in display order. */
static void expect_since(ps_store *s, int64_t user, const char *chat, const model *md,
                         int64_t after, const char *skip, int64_t skip_after)
{
    seen got = {0}, want = {0};
    ps_error err;
    assert_int_equal(
        s->ops->messages_since(s, user, chat, after, skip, skip_after, collect, &got, &err), PS_OK);
    const written *order[MAX_MSGS];
    int n = model_order(md, order);
    for (int i = 0; i < n; i++) {
        const written *w = order[i];
        if (w->seq > after && !(skip && strcmp(w->origin, skip) == 0 && w->seq > skip_after))
            describe(want.items[want.n++], sizeof want.items[0], w->id, w->seq, w->origin,
                     w->deleted, w->version);
    }
    if (got.n != want.n)
        fail_msg("chat %s after %lld skip %s: %d messages, want %d", chat, (long long)after,
                 skip ? skip : "-", got.n, want.n);
    for (int i = 0; i < got.n; i++)
        assert_string_equal(got.items[i], want.items[i]);
}

/* chat_load gives every model message with its fields. */
static void expect_loaded(ps_store *s, int64_t user, const char *chat, const model *md)
{
    ps_chat *c = NULL;
    ps_error err;
    assert_int_equal(s->ops->chat_load(s, user, chat, true, &c, &err), PS_OK);
    assert_non_null(c);
    assert_int_equal(c->nmessages, md->n);
    for (int i = 0; i < md->n; i++) {
        const written *w = &md->w[i];
        const ps_message *m = ps__chat_message(c, w->id);
        assert_non_null(m);
        assert_int_equal(m->mark.seq, w->seq);
        assert_string_equal(m->mark.origin, w->origin);
        assert_string_equal(m->stamp.device, w->device);
        assert_int_equal(m->order_ts, w->order_ts);
        assert_int_equal(m->stamp.ts, w->order_ts);
        assert_true(m->received >= 0);
        assert_false(m->mark.dirty); /* as stored: not a change of this save */
        if (w->deleted) {
            assert_null(m->value);
        } else {
            char want[200];
            content_of(w->id, w->version, want, sizeof want);
            json_object *content;
            assert_true(json_object_object_get_ex(m->value, "content", &content));
            assert_string_equal(json_object_get_string(content), want);
        }
    }
    ps__chat_free(c);
}

/* The legacy rendering (put together from the shell, pack and rows) lists
 * the model's live messages in display order with their last content. */
typedef struct rendered {
    const char *chat;
    char *doc;
} rendered;

static int take_doc(void *ctx, const ps_chat_row *row)
{
    rendered *r = ctx;
    if (strcmp(row->id, r->chat) != 0)
        return 0;
    size_t len = 0;
    const char *doc = row->doc(row, &len);
    assert_non_null(doc);
    r->doc = strndup(doc, len);
    return 1;
}

static void expect_rendered(ps_store *s, int64_t user, const char *chat, const model *md)
{
    rendered r = {.chat = chat};
    ps_error err;
    assert_int_equal(s->ops->chat_each(s, user, take_doc, &r, &err), PS_OK);
    assert_non_null(r.doc);
    json_object *doc = json_tokener_parse(r.doc);
    assert_non_null(doc);
    json_object *msgs;
    assert_true(json_object_object_get_ex(doc, "messages", &msgs));
    const written *order[MAX_MSGS];
    int n = model_order(md, order), k = 0;
    for (int i = 0; i < n; i++) {
        if (order[i]->deleted)
            continue;
        assert_true(k < (int)json_object_array_length(msgs));
        json_object *m = json_object_array_get_idx(msgs, (size_t)k++), *id, *content;
        assert_true(json_object_object_get_ex(m, "id", &id));
        assert_string_equal(json_object_get_string(id), order[i]->id);
        char want[200];
        content_of(order[i]->id, order[i]->version, want, sizeof want);
        assert_true(json_object_object_get_ex(m, "content", &content));
        assert_string_equal(json_object_get_string(content), want);
    }
    assert_int_equal(json_object_array_length(msgs), k);
    json_object_put(doc);
    free(r.doc);
}

static void expect_bytes_counted(sqlite_store *ss, ps_store *s, int64_t user)
{
    int64_t bytes = -1;
    ps_error err;
    assert_int_equal(s->ops->user_bytes(s, user, &bytes, &err), PS_OK);
    assert_int_equal(bytes, query_int(ss, "SELECT sum(length(CAST(state AS BLOB)) +"
                                          " coalesce(length(CAST(shell AS BLOB)), 0))"
                                          " FROM chat_bodies") +
                                query_int(ss, "SELECT coalesce(sum(length(CAST(id AS BLOB)) +"
                                              " coalesce(length(CAST(value AS BLOB)), 0)), 0)"
                                              " FROM messages") +
                                query_int(ss, "SELECT coalesce(sum(length(data)), 0) FROM packs") +
                                query_int(ss, "SELECT coalesce(sum(length(CAST(doc AS BLOB))), 0)"
                                              " FROM chat_docs"));
}

/* A chat new at 5 with 20 messages (packed), then at 9 the laptop
 * rewrites m03 and adds m20, at 12 the tablet deletes m05 (a packed one)
 * and m21 is added; every cursor and asker gets what the model says, and
 * chat_load, messages_load and the rendering agree with it. */
static void packed_and_hot_rows_read_as_one(void **state)
{
    fixture *f = *state;
    ps_error err;
    ps_store *s = NULL;
    assert_int_equal(ps_store_open(f->url, &s, &err), PS_OK);
    sqlite_store *ss = (sqlite_store *)s;
    ps_user u;
    assert_int_equal(ps_store_begin(s, true, &err), PS_OK);
    assert_int_equal(s->ops->user_load(s, "packer", &u, &err), PS_OK);
    model md = {0};
    ps_chat *c = chat_new("a");
    char id[16];
    for (int i = 0; i < 20; i++) {
        snprintf(id, sizeof id, "m%02d", i);
        put(c, id, i % 2 ? "phone" : "laptop", 100 + i, 1);
    }
    save(s, u.id, c, 5, "phone", &md);
    /* packed: no row, one pack of a few pieces at most */
    assert_int_equal(query_int(ss, "SELECT count(*) FROM messages"), 0);
    assert_true(query_int(ss, "SELECT count(*) FROM packs WHERE chat_id = 'a'") >= 1);
    expect_bytes_counted(ss, s, u.id);
    c = chat_new("a");
    put(c, "m03", "laptop", 103, 2);
    put(c, "m20", "laptop", 120, 1);
    save(s, u.id, c, 9, "laptop", &md);
    c = chat_new("a");
    put(c, "m05", "phone", 105, -1);
    put(c, "m21", "phone", 99, 1); /* shown first */
    save(s, u.id, c, 12, "tablet", &md);
    /* a tiny chat stays rows */
    model tiny = {0};
    c = chat_new("t");
    ps_stamp st = {.ts = 1, .device = (char *)"phone"};
    json_object *v = json_object_new_object();
    json_object_object_add(v, "content", json_object_new_string("t0 v1"));
    assert_int_equal(ps__chat_append_message(c, "t0", v, &st, 1), PS_OK);
    save(s, u.id, c, 13, "phone", &tiny);
    assert_int_equal(query_int(ss, "SELECT count(*) FROM packs WHERE chat_id = 't'"), 0);
    assert_int_equal(query_int(ss, "SELECT count(*) FROM messages WHERE chat_id = 't'"), 1);
    assert_int_equal(ps_store_commit(s, &err), PS_OK);
    assert_int_equal(query_int(ss, "SELECT count(*) FROM messages WHERE chat_id = 'a'"), 4);

    /* read transactions, and the writer's too */
    for (int write = 0; write < 2; write++) {
        assert_int_equal(ps_store_begin(s, write, &err), PS_OK);
        for (int64_t after = -1; after <= 13; after++) {
            expect_since(s, u.id, "a", &md, after, NULL, 0);
            expect_since(s, u.id, "a", &md, after, "laptop", 8);
            expect_since(s, u.id, "a", &md, after, "phone", 0);
            expect_since(s, u.id, "a", &md, after, "tablet", 11);
            /* after chat_next_changed named the chat (its cold_seq with it) */
            ps_chat *next = NULL;
            int64_t seq = 0;
            assert_int_equal(s->ops->chat_next_changed(s, u.id, after, &next, &seq, &err), PS_OK);
            if (next && strcmp(next->id, "a") == 0)
                expect_since(s, u.id, "a", &md, after, "phone", 0);
            ps__chat_free(next);
        }
        expect_loaded(s, u.id, "a", &md);
        expect_rendered(s, u.id, "a", &md);
        /* by id: a packed one, a shadowed one, a deleted one, none */
        ps_chat *some = ps__chat_new("a");
        const char *const ids[] = {"m07", "m03", "m05", "nope", "m21"};
        assert_int_equal(s->ops->messages_load(s, u.id, some, ids, 5, &err), PS_OK);
        assert_int_equal(some->nmessages, 4);
        const ps_message *m = ps__chat_message(some, "m07");
        assert_non_null(m);
        assert_int_equal(m->mark.seq, 5);
        assert_string_equal(m->mark.origin, "phone");
        assert_string_equal(m->stamp.device, "phone");
        m = ps__chat_message(some, "m03");
        assert_int_equal(m->mark.seq, 9);
        assert_string_equal(m->mark.origin, "laptop");
        assert_null(ps__chat_message(some, "m05")->value);
        assert_null(ps__chat_message(some, "nope"));
        ps__chat_free(some);
        ps_store_rollback(s);
    }
    assert_int_equal(ps_store_begin(s, false, &err), PS_OK);
    expect_bytes_counted(ss, s, u.id);
    ps_store_rollback(s);
    ps_store_close(s);
}

/* Saves `c` whole at `seq` from `origin` with its legacy rendering, as a
 * legacy sync saves a chat (sync_common.c: numbered, marked, rendered):
 * the model records its dirty messages; *doc_out is the rendering saved
 * (the caller's to free). Frees `c`. */
static void save_rendered(ps_store *s, int64_t user, ps_chat *c, int64_t seq, const char *origin,
                          model *md, char **doc_out)
{
    ps__chat_normalize(c);
    ps__chat_number_received(c);
    assert_int_equal(ps__chat_mark_dirty(c, seq, origin), PS_OK);
    for (size_t i = 0; i < c->nmessages; i++) {
        const ps_message *m = &c->messages[i];
        if (!m->mark.dirty)
            continue;
        written *w = model_get(md, m->id);
        w->seq = seq;
        snprintf(w->origin, sizeof w->origin, "%s", origin);
        snprintf(w->device, sizeof w->device, "%s", m->stamp.device);
        w->order_ts = m->order_ts;
        w->deleted = m->value == NULL;
        if (m->value) {
            json_object *content;
            assert_true(json_object_object_get_ex(m->value, "content", &content));
            w->version = atoi(strstr(json_object_get_string(content), " v") + 2);
        }
    }
    json_object *doc = ps__chat_to_legacy(c);
    size_t len = 0;
    const char *text = ps__json_text(doc, &len);
    *doc_out = strndup(text, len);
    ps_error err;
    if (s->ops->chat_save(s, user, c, text, len, seq, &err) != PS_OK)
        fail_msg("chat_save: %s", err.message);
    json_object_put(doc);
    ps__chat_free(c);
}

/* The rendering a legacy read of `chat` copies is exactly `want`. */
/* The rendering of `chat` as a listing's doc_append appends it to a piece
 * already holding other bytes (the answer's), *NULL when not appended. */
typedef struct appended_doc {
    const char *chat;
    char *doc;
} appended_doc;

static int take_doc_appended(void *ctx, const ps_chat_row *row)
{
    appended_doc *a = ctx;
    if (strcmp(row->id, a->chat) != 0)
        return 0;
    ps_dynbuf piece;
    ps__dynbuf_init(&piece, SIZE_MAX - 1);
    assert_int_equal(ps__dynbuf_add(&piece, "before|", 7), PS_OK);
    bool appended = false;
    ps_error err;
    assert_non_null(row->doc_append);
    assert_int_equal(row->doc_append(row, &piece, &appended, &err), PS_OK);
    assert_true(appended);
    assert_memory_equal(piece.data, "before|", 7);
    assert_int_equal(strlen(piece.data), piece.len); /* NUL-terminated, no NUL inside */
    a->doc = strdup(piece.data + 7);
    ps__dynbuf_free(&piece);
    return 1;
}

/* Both ways a listing reads a chat's rendering give `want`. */
static void expect_doc(ps_store *s, int64_t user, const char *chat, const char *want)
{
    rendered r = {.chat = chat};
    ps_error err;
    assert_int_equal(s->ops->chat_each(s, user, take_doc, &r, &err), PS_OK);
    assert_non_null(r.doc);
    assert_string_equal(r.doc, want);
    free(r.doc);
    appended_doc a = {.chat = chat};
    assert_int_equal(s->ops->chat_each(s, user, take_doc_appended, &a, &err), PS_OK);
    assert_non_null(a.doc);
    assert_string_equal(a.doc, want);
    free(a.doc);
}

/* Every cursor and asker of chat `chat` gets what the model says, and
 * chat_load agrees with it (a read transaction and the writer's). */
static void expect_reads(ps_store *s, int64_t user, const char *chat, const model *md, int64_t last)
{
    ps_error err;
    for (int write = 0; write < 2; write++) {
        assert_int_equal(ps_store_begin(s, write, &err), PS_OK);
        for (int64_t after = -1; after <= last; after++) {
            expect_since(s, user, chat, md, after, NULL, 0);
            expect_since(s, user, chat, md, after, "legacy", 0);
            expect_since(s, user, chat, md, after, "phone", after);
        }
        expect_loaded(s, user, chat, md);
        ps_store_rollback(s);
    }
}

/* A legacy sync's save of a chat new to the store (rendered): its messages
 * are one pack, an LZ4 frame (schema 14), and the rendering is not kept:
 * legacy reads (both ways a listing reads) put together exactly the
 * rendering it was given from the shell and the pack, a device's base is
 * copied from the hashes kept, and the v2 reads and chat_load give
 * exactly the messages saved (the model). A later legacy edit of one
 * packed message and a new one are rows (the edit shadows its packed
 * message): reads follow the model, the rendering is the new one, kept; ten
 * more edits are folded into the pack as a v2 save's rows are. A chat
 * under the pack's size stays rows, its rendering kept. Oracles:
 * docs/storage.md "Packs" for the layout, the model and the renderings
 * json-c made for the content. */
static void a_legacy_saved_new_chat_is_a_pack_without_its_rendering(void **state)
{
    fixture *f = *state;
    ps_error err;
    ps_store *s = NULL;
    assert_int_equal(ps_store_open(f->url, &s, &err), PS_OK);
    sqlite_store *ss = (sqlite_store *)s;
    ps_user u;
    assert_int_equal(ps_store_begin(s, true, &err), PS_OK);
    assert_int_equal(s->ops->user_load(s, "legacy", &u, &err), PS_OK);
    model md = {0};
    ps_chat *c = chat_new("a");
    char id[16], *doc = NULL;
    for (int i = 0; i < 20; i++) {
        snprintf(id, sizeof id, "m%02d", i);
        put(c, id, i % 2 ? "phone" : "laptop", 100 + i, 1);
    }
    save_rendered(s, u.id, c, 5, "legacy", &md, &doc);
    assert_int_equal(query_int(ss, "SELECT count(*) FROM messages"), 0);
    assert_true(query_int(ss, "SELECT count(*) FROM packs WHERE chat_id = 'a'") >= 1);
    /* schema 14: its pack an LZ4 frame (after the prefix of at most ~550
     * bytes), no rendering kept; its shell and its hashes (a device's base
     * when sent it) are */
    assert_int_equal(query_int(ss, "SELECT instr(data, X'04224D18') BETWEEN 1 AND 600 FROM packs"
                                   " WHERE chat_id = 'a' ORDER BY id LIMIT 1"),
                     1);
    assert_int_equal(query_int(ss, "SELECT count(*) FROM chat_docs WHERE chat_id = 'a'"), 0);
    assert_int_equal(query_int(ss, "SELECT count(*) FROM chat_bodies WHERE chat_id = 'a'"
                                   " AND shell IS NOT NULL AND hashes IS NOT NULL"),
                     1);
    expect_doc(s, u.id, "a", doc);
    expect_bytes_counted(ss, s, u.id);
    /* the rendering it was given is what legacy reads put together */
    bool copied = false;
    assert_int_equal(s->ops->base_copy(s, u.id, "phone", "a", 5, &copied, &err), PS_OK);
    assert_true(copied);
    /* a tiny chat stays rows, its rendering kept */
    model tiny = {0};
    char *tiny_doc = NULL;
    c = chat_new("t");
    put(c, "t0", "phone", 1, 1);
    save_rendered(s, u.id, c, 6, "legacy", &tiny, &tiny_doc);
    assert_int_equal(query_int(ss, "SELECT count(*) FROM packs WHERE chat_id = 't'"), 0);
    assert_int_equal(query_int(ss, "SELECT count(*) FROM messages WHERE chat_id = 't'"), 1);
    assert_int_equal(query_int(ss, "SELECT count(*) FROM chat_docs WHERE chat_id = 't'"), 1);
    assert_int_equal(ps_store_commit(s, &err), PS_OK);
    expect_reads(s, u.id, "a", &md, 6);
    expect_reads(s, u.id, "t", &tiny, 6);

    /* a legacy edit of m03 and a new m20: the whole chat as stored, those
     * two changed (the merge's dirty marks) */
    assert_int_equal(ps_store_begin(s, true, &err), PS_OK);
    assert_int_equal(s->ops->chat_load(s, u.id, "a", true, &c, &err), PS_OK);
    assert_non_null(c);
    ps_message *m03 = (ps_message *)ps__chat_message(c, "m03");
    assert_non_null(m03);
    char text[200];
    content_of("m03", 2, text, sizeof text);
    json_object_put(m03->value);
    m03->value = json_object_new_object();
    json_object_object_add(m03->value, "id", json_object_new_string("m03"));
    json_object_object_add(m03->value, "content", json_object_new_string(text));
    m03->mark.dirty = true;
    put(c, "m20", "laptop", 120, 1);
    char *edited = NULL;
    save_rendered(s, u.id, c, 9, "legacy", &md, &edited);
    assert_int_equal(ps_store_commit(s, &err), PS_OK);
    assert_int_equal(query_int(ss, "SELECT count(*) FROM messages WHERE chat_id = 'a'"), 2);
    assert_true(query_int(ss, "SELECT count(*) FROM packs WHERE chat_id = 'a'") >= 1);
    assert_int_equal(query_int(ss, "SELECT count(*) FROM chat_docs WHERE chat_id = 'a'"), 1);
    assert_string_not_equal(edited, doc);
    expect_reads(s, u.id, "a", &md, 9);
    assert_int_equal(ps_store_begin(s, false, &err), PS_OK);
    expect_doc(s, u.id, "a", edited);
    expect_doc(s, u.id, "t", tiny_doc);
    expect_bytes_counted(ss, s, u.id);
    ps_store_rollback(s);

    /* ten more legacy edits: 12 live rows weighing more than a quarter of
     * the pack are folded into it, as after a v2 save (docs/storage.md
     * "Repacking"): no row left, the reads and the rendering unchanged */
    assert_int_equal(ps_store_begin(s, true, &err), PS_OK);
    assert_int_equal(s->ops->chat_load(s, u.id, "a", true, &c, &err), PS_OK);
    for (int i = 10; i < 20; i++) {
        snprintf(id, sizeof id, "m%02d", i);
        ps_message *m = (ps_message *)ps__chat_message(c, id);
        assert_non_null(m);
        content_of(id, 3, text, sizeof text);
        json_object_put(m->value);
        m->value = json_object_new_object();
        json_object_object_add(m->value, "id", json_object_new_string(id));
        json_object_object_add(m->value, "content", json_object_new_string(text));
        m->mark.dirty = true;
    }
    char *folded = NULL;
    save_rendered(s, u.id, c, 11, "legacy", &md, &folded);
    assert_int_equal(ps_store_commit(s, &err), PS_OK);
    assert_int_equal(query_int(ss, "SELECT count(*) FROM messages WHERE chat_id = 'a'"), 0);
    expect_reads(s, u.id, "a", &md, 11);
    assert_int_equal(ps_store_begin(s, false, &err), PS_OK);
    expect_doc(s, u.id, "a", folded);
    expect_bytes_counted(ss, s, u.id);
    ps_store_rollback(s);
    free(doc);
    free(edited);
    free(folded);
    free(tiny_doc);
    ps_store_close(s);
}

/* A save whose messages are not numbered (`received` < 0: a caller that
 * did not run ps__chat_number_received; polysyncd's saves always do)
 * keeps them as rows, rendered or not, `received` as given: a pack cannot
 * hold them (its reader refuses a negative `received` as corrupt). The
 * chat reads back whole. Oracle: the messages and numbers put in. */
static void unnumbered_messages_stay_rows(void **state)
{
    fixture *f = *state;
    ps_error err;
    ps_store *s = NULL;
    assert_int_equal(ps_store_open(f->url, &s, &err), PS_OK);
    sqlite_store *ss = (sqlite_store *)s;
    ps_user u;
    assert_int_equal(ps_store_begin(s, true, &err), PS_OK);
    assert_int_equal(s->ops->user_load(s, "loose", &u, &err), PS_OK);
    for (int rendered_save = 0; rendered_save < 2; rendered_save++) {
        const char *chat = rendered_save ? "r" : "p";
        ps_chat *c = chat_new(chat);
        char id[16];
        for (int i = 0; i < 20; i++) {
            snprintf(id, sizeof id, "m%02d", i);
            put(c, id, "phone", 100 + i, 1);
        }
        ps__chat_normalize(c);
        assert_true(c->messages[0].received < 0);
        assert_int_equal(ps__chat_mark_dirty(c, 3 + rendered_save, "phone"), PS_OK);
        json_object *doc = rendered_save ? ps__chat_to_legacy(c) : NULL;
        size_t len = 0;
        const char *text = doc ? ps__json_text(doc, &len) : NULL;
        if (s->ops->chat_save(s, u.id, c, text, len, 3 + rendered_save, &err) != PS_OK)
            fail_msg("chat_save: %s", err.message);
        json_object_put(doc);
        char sql[128];
        snprintf(sql, sizeof sql, "SELECT count(*) FROM packs WHERE chat_id = '%s'", chat);
        assert_int_equal(query_int(ss, sql), 0);
        snprintf(sql, sizeof sql, "SELECT count(*) FROM messages WHERE chat_id = '%s'", chat);
        assert_int_equal(query_int(ss, sql), 20);
        ps_chat *back = NULL;
        assert_int_equal(s->ops->chat_load(s, u.id, chat, true, &back, &err), PS_OK);
        assert_int_equal(back->nmessages, 20);
        for (size_t i = 0; i < back->nmessages; i++) {
            const ps_message *m = ps__chat_message(c, back->messages[i].id);
            assert_non_null(m);
            assert_int_equal(back->messages[i].received, m->received);
            json_object *want, *got;
            assert_true(json_object_object_get_ex(m->value, "content", &want));
            assert_true(json_object_object_get_ex(back->messages[i].value, "content", &got));
            assert_string_equal(json_object_get_string(got), json_object_get_string(want));
        }
        ps__chat_free(back);
        ps__chat_free(c);
    }
    assert_int_equal(ps_store_commit(s, &err), PS_OK);
    ps_store_close(s);
}

/* Tombstone collection: the deletion of a packed message, once every
 * device acknowledged it, is forgotten with the message itself (the pack
 * written again without it), never brought back; the chat's other
 * messages stay. Purging a deleted chat and deleting the user leave no
 * pack. */
static void forgotten_deletions_purges_and_users_leave_no_pack(void **state)
{
    fixture *f = *state;
    ps_error err;
    ps_store *s = NULL;
    assert_int_equal(ps_store_open(f->url, &s, &err), PS_OK);
    sqlite_store *ss = (sqlite_store *)s;
    ps_user u;
    assert_int_equal(ps_store_begin(s, true, &err), PS_OK);
    assert_int_equal(s->ops->user_load(s, "erin", &u, &err), PS_OK);
    model md = {0}, other = {0};
    char id[16];
    ps_chat *c = chat_new("a");
    for (int i = 0; i < 20; i++) {
        snprintf(id, sizeof id, "m%02d", i);
        put(c, id, "phone", 100 + i, 1);
    }
    save(s, u.id, c, 5, "phone", &md);
    c = chat_new("b");
    for (int i = 0; i < 20; i++) {
        snprintf(id, sizeof id, "b%02d", i);
        put(c, id, "phone", 100 + i, 1);
    }
    save(s, u.id, c, 6, "phone", &other);
    c = chat_new("a");
    put(c, "m04", "phone", 104, -1);
    put(c, "m09", "laptop", 109, 2);
    save(s, u.id, c, 8, "laptop", &md);
    assert_int_equal(s->ops->device_seen(s, "erin", "A", "", "v2", 8, 3000, &err), PS_OK);
    int64_t n = 0;
    assert_int_equal(s->ops->user_tombstones(s, "erin", &n, &err), PS_OK);
    assert_int_equal(n, 1);
    assert_int_equal(s->ops->purge_acknowledged(s, "erin", 0, &n, &err), PS_OK);
    assert_int_equal(n, 1);
    assert_int_equal(ps_store_commit(s, &err), PS_OK);

    /* m04 is gone altogether: in no read, as if never there */
    for (int i = 0; i < md.n; i++)
        if (strcmp(md.w[i].id, "m04") == 0)
            md.w[i] = md.w[--md.n];
    assert_int_equal(ps_store_begin(s, false, &err), PS_OK);
    int64_t bytes_before = 0;
    assert_int_equal(s->ops->user_bytes(s, u.id, &bytes_before, &err), PS_OK);
    expect_bytes_counted(ss, s, u.id);
    for (int64_t after = -1; after <= 9; after++)
        expect_since(s, u.id, "a", &md, after, NULL, 0);
    expect_loaded(s, u.id, "a", &md);
    expect_rendered(s, u.id, "a", &md);
    expect_loaded(s, u.id, "b", &other);
    ps_chat *some = ps__chat_new("a");
    const char *const gone[] = {"m04"};
    assert_int_equal(s->ops->messages_load(s, u.id, some, gone, 1, &err), PS_OK);
    assert_int_equal(some->nmessages, 0);
    ps__chat_free(some);
    assert_int_equal(s->ops->user_tombstones(s, "erin", &n, &err), PS_OK);
    assert_int_equal(n, 0);
    ps_store_rollback(s);

    /* chat b deleted, then purged by age: its pack goes with it */
    assert_int_equal(ps_store_begin(s, true, &err), PS_OK);
    c = NULL;
    assert_int_equal(s->ops->chat_load(s, u.id, "b", true, &c, &err), PS_OK);
    ps_stamp del = {.ts = 1000, .device = (char *)"dev"};
    ps_lamport shown = {.counter = 9, .id = (char *)"server"};
    bool changed;
    assert_int_equal(ps__chat_delete(c, &del, &shown, &changed), PS_OK);
    assert_int_equal(s->ops->chat_save(s, u.id, c, NULL, 0, 20, &err), PS_OK);
    ps__chat_free(c);
    assert_int_equal(s->ops->purge_tombstones(s, 2000, &n, &err), PS_OK);
    assert_int_equal(n, 1);
    assert_int_equal(query_int(ss, "SELECT count(*) FROM packs WHERE chat_id = 'b'"), 0);
    assert_true(query_int(ss, "SELECT count(*) FROM packs WHERE chat_id = 'a'") >= 1);
    expect_bytes_counted(ss, s, u.id);
    assert_int_equal(s->ops->user_delete(s, "erin", &err), PS_OK);
    assert_int_equal(query_int(ss, "SELECT count(*) FROM packs"), 0);
    assert_int_equal(query_int(ss, "SELECT count(*) FROM messages"), 0);
    assert_int_equal(ps_store_commit(s, &err), PS_OK);
    ps_store_close(s);
}

/* Repacking: once a packed chat's live rows outgrow a share of its pack
 * they are folded into it (a deleted message stays a row, and the packed
 * message it shadows is gone); before and after, every cursor and asker
 * gets what the model says, and so do chat_load, messages_load and the
 * rendering; the byte count is what the tables hold. */
static void hot_rows_are_folded_into_the_pack(void **state)
{
    fixture *f = *state;
    ps_error err;
    ps_store *s = NULL;
    assert_int_equal(ps_store_open(f->url, &s, &err), PS_OK);
    sqlite_store *ss = (sqlite_store *)s;
    ps_user u;
    assert_int_equal(ps_store_begin(s, true, &err), PS_OK);
    assert_int_equal(s->ops->user_load(s, "folder", &u, &err), PS_OK);
    model md = {0};
    char id[16];
    ps_chat *c = chat_new("a");
    for (int i = 0; i < 20; i++) {
        snprintf(id, sizeof id, "m%02d", i);
        put(c, id, "phone", 100 + i, 1);
    }
    save(s, u.id, c, 5, "phone", &md);
    c = chat_new("a");
    put(c, "m02", "tablet", 102, -1);
    save(s, u.id, c, 6, "tablet", &md);
    int64_t folded_at = 0, seq = 7;
    for (int i = 0; i < 12; i++, seq++) {
        c = chat_new("a");
        if (i % 2 == 0) {
            snprintf(id, sizeof id, "m%02d", 3 + i);
            put(c, id, "laptop", 103 + i, 2);
        } else {
            snprintf(id, sizeof id, "n%02d", i);
            put(c, id, "tablet", 200 + i, 1);
        }
        save(s, u.id, c, seq, i % 2 ? "tablet" : "laptop", &md);
        if (!folded_at && query_int(ss, "SELECT count(*) FROM messages WHERE chat_id = 'a'"
                                        " AND value IS NOT NULL") == 0)
            folded_at = seq;
        expect_bytes_counted(ss, s, u.id);
    }
    assert_int_equal(ps_store_commit(s, &err), PS_OK);
    /* folded once, the deletion still a row, cold_seq the fold's newest */
    assert_true(folded_at >= 7 + REPACK_ROWS - 1 && folded_at < seq - 1);
    assert_int_equal(query_int(ss, "SELECT count(*) FROM messages WHERE chat_id = 'a'"
                                   " AND value IS NULL AND id = 'm02'"),
                     1);
    assert_int_equal(query_int(ss, "SELECT cold_seq FROM chats WHERE id = 'a'"), folded_at);
    assert_int_equal(query_int(ss, "SELECT count(*) FROM messages WHERE chat_id = 'a'"
                                   " AND value IS NOT NULL"),
                     seq - 1 - folded_at);

    assert_int_equal(ps_store_begin(s, false, &err), PS_OK);
    for (int64_t after = -1; after <= seq; after++) {
        expect_since(s, u.id, "a", &md, after, NULL, 0);
        expect_since(s, u.id, "a", &md, after, "laptop", 9);
        expect_since(s, u.id, "a", &md, after, "tablet", 0);
    }
    expect_loaded(s, u.id, "a", &md);
    expect_rendered(s, u.id, "a", &md);
    ps_chat *some = ps__chat_new("a");
    const char *const ids[] = {"m03", "m19", "n01", "m02"};
    assert_int_equal(s->ops->messages_load(s, u.id, some, ids, 4, &err), PS_OK);
    assert_int_equal(some->nmessages, 4);
    assert_int_equal(ps__chat_message(some, "m03")->mark.seq, 7);
    assert_string_equal(ps__chat_message(some, "m03")->mark.origin, "laptop");
    assert_int_equal(ps__chat_message(some, "m19")->mark.seq, 5);
    for (size_t i = 0; i < some->nmessages; i++) /* a packed one as clean as a row */
        assert_false(some->messages[i].mark.dirty);
    assert_int_equal(ps__chat_message(some, "n01")->mark.seq, 8);
    assert_null(ps__chat_message(some, "m02")->value);
    ps__chat_free(some);
    expect_bytes_counted(ss, s, u.id);
    ps_store_rollback(s);
    ps_store_close(s);
}

/* A user whose chats all came new in v2 pushes (packed, no plain rows)
 * still gets a dictionary once their history is large enough, trained on
 * their packs: a message written later is then stored as a frame. */
static void a_dictionary_is_trained_from_packs(void **state)
{
    fixture *f = *state;
    ps_error err;
    ps_store *s = NULL;
    assert_int_equal(ps_store_open(f->url, &s, &err), PS_OK);
    sqlite_store *ss = (sqlite_store *)s;
    ps_user u;
    assert_int_equal(ps_store_begin(s, true, &err), PS_OK);
    assert_int_equal(s->ops->user_load(s, "big", &u, &err), PS_OK);
    char id[32], text[600];
    int64_t seq = 1;
    /* chats of 100 messages of ~500 varied bytes until the user has a
     * dictionary (packs compress ~3x: ~3.5 MiB of text) */
    for (int chat = 0; chat < 200 && query_int(ss, "SELECT count(*) FROM value_dicts") == 0;
         chat++) {
        char cid[16];
        snprintf(cid, sizeof cid, "c%03d", chat);
        ps_chat *c = chat_new(cid);
        for (int i = 0; i < 100; i++) {
            snprintf(id, sizeof id, "%s-%d", cid, i);
            int k = snprintf(text, sizeof text, "%s:", id);
            for (unsigned x = (unsigned)(chat * 131 + i * 7); k < 480; x = x * 1103515245u + 12345u)
                k += snprintf(text + k, sizeof text - (size_t)k, " %s",
                              (const char *[]){"alpha", "beta", "gamma", "delta", "tau", "rho",
                                               "sigma", "omega", "kappa", "zeta"}[(x >> 16) % 10]);
            ps_stamp st = {.ts = 10 + i, .device = (char *)"d"};
            json_object *v = json_object_new_object();
            json_object_object_add(v, "content", json_object_new_string(text));
            assert_int_equal(ps__chat_append_message(c, id, v, &st, 10 + i), PS_OK);
        }
        ps__chat_normalize(c);
        ps__chat_number_received(c);
        assert_int_equal(ps__chat_mark_dirty(c, seq, "d"), PS_OK);
        assert_int_equal(s->ops->chat_save(s, u.id, c, NULL, 0, seq++, &err), PS_OK);
        ps__chat_free(c);
    }
    assert_int_equal(query_int(ss, "SELECT count(*) FROM value_dicts"), 1);
    assert_int_equal(query_int(ss, "SELECT count(*) FROM messages"), 0);
    /* one more message in the first chat: a row, compressed with it */
    ps_chat *c = chat_new("c000");
    ps_stamp st = {.ts = 999, .device = (char *)"d"};
    json_object *v = json_object_new_object();
    json_object_object_add(v, "content",
                           json_object_new_string("c000-new: alpha beta gamma delta tau rho sigma"
                                                  " omega kappa zeta alpha beta gamma delta tau"
                                                  " rho sigma omega kappa zeta alpha beta gamma"));
    assert_int_equal(ps__chat_append_message(c, "c000-new", v, &st, 999), PS_OK);
    ps__chat_normalize(c);
    ps__chat_number_received(c);
    assert_int_equal(ps__chat_mark_dirty(c, seq, "d"), PS_OK);
    assert_int_equal(s->ops->chat_save(s, u.id, c, NULL, 0, seq, &err), PS_OK);
    ps__chat_free(c);
    assert_int_equal(query_int(ss, "SELECT count(*) FROM messages WHERE typeof(value) = 'blob'"),
                     1);
    /* and the chat reads whole: 100 packed and the new row */
    c = NULL;
    assert_int_equal(s->ops->chat_load(s, u.id, "c000", true, &c, &err), PS_OK);
    assert_int_equal(c->nmessages, 101);
    ps__chat_free(c);
    /* review: a chat new after the training is packed with the dictionary;
     * reopened (no dictionary cached), the packs made before and after it
     * read whole */
    model after = {0};
    c = chat_new("after");
    for (int i = 0; i < 20; i++) {
        snprintf(id, sizeof id, "a%02d", i);
        put(c, id, "phone", 100 + i, 1);
    }
    save(s, u.id, c, seq + 1, "phone", &after);
    assert_int_equal(ps_store_commit(s, &err), PS_OK);
    sqlite3_stmt *frame = NULL;
    assert_int_equal(
        sqlite3_prepare_v2(ss->db, "SELECT data FROM packs WHERE chat_id = 'after' ORDER BY id", -1,
                           &frame, NULL),
        SQLITE_OK);
    assert_int_equal(sqlite3_step(frame), SQLITE_ROW);
    /* a pack made whole by a save may be based: its zstd frame follows the
     * base's prefix (pack_codec.h) */
    const char *stored = sqlite3_column_blob(frame, 0);
    size_t stored_len = (size_t)sqlite3_column_bytes(frame, 0), skip = 0;
    int64_t base = 0;
    (void)ps_pack_base_get(stored, stored_len, &base, &skip);
    assert_int_equal(ZSTD_getDictID_fromFrame(stored + skip, stored_len - skip),
                     query_int(ss, "SELECT id FROM value_dicts"));
    sqlite3_finalize(frame);
    ps_store_close(s);
    assert_int_equal(ps_store_open(f->url, &s, &err), PS_OK);
    assert_int_equal(ps_store_begin(s, false, &err), PS_OK);
    expect_loaded(s, u.id, "after", &after);
    for (int64_t since = -1; since <= seq + 1; since++)
        expect_since(s, u.id, "after", &after, since, NULL, 0);
    c = NULL;
    assert_int_equal(s->ops->chat_load(s, u.id, "c000", true, &c, &err), PS_OK);
    assert_int_equal(c->nmessages, 101);
    ps__chat_free(c);
    ps_store_rollback(s);
    ps_store_close(s);
}

static void same_value(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
    (void)argc;
    sqlite3_result_value(ctx, argv[0]);
}

/* migrates_from_schema_11's collector: "id@seq:origin " appended. */
static ps_code append_line(void *ctx, const ps_message *m)
{
    char *text = ctx;
    size_t len = strlen(text);
    snprintf(text + len, 256 - len, "%s@%lld:%s ", m->id, (long long)m->mark.seq, m->mark.origin);
    return PS_OK;
}

/* A schema-11 store (made by its own migrations, cold and hot rows as
 * schema 11 wrote them) migrates to 12: every row read as before (its
 * rows stay rows), and a chat saved new afterwards is packed. */
static void migrates_from_schema_11(void **state)
{
    fixture *f = *state;
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    char *msg = NULL;
    assert_int_equal(sqlite3_exec(db,
                                  "CREATE TABLE schema_version (version INTEGER PRIMARY KEY,"
                                  " applied_at TEXT NOT NULL DEFAULT '')",
                                  NULL, NULL, &msg),
                     SQLITE_OK);
    /* step 9 names it; no rows then, so the real one is never needed */
    assert_int_equal(
        sqlite3_create_function(db, "ps_pack_doc", 1, SQLITE_UTF8, NULL, same_value, NULL, NULL),
        SQLITE_OK);
    for (int v = 0; v < 11; v++) {
        char rec[80];
        snprintf(rec, sizeof rec, "INSERT INTO schema_version(version) VALUES (%d)", v + 1);
        if (sqlite3_exec(db, MIGRATIONS[v], NULL, NULL, &msg) != SQLITE_OK)
            fail_msg("migration %d: %s", v, msg);
        assert_int_equal(sqlite3_exec(db, rec, NULL, NULL, &msg), SQLITE_OK);
    }
    const char *state_json = "{\"id\":\"a\",\"f\":{\"title\":[\"T\",[5,0,\"d\"],2,\"d\"]},"
                             "\"L\":[3,\"d\"],\"n\":4}";
    char sql[2048];
    snprintf(sql, sizeof sql,
             "INSERT INTO users(id, name, clock, seq, bytes) VALUES (1, 'u', 9, 8, 1);"
             "INSERT INTO chats(user_id, id, live, state, doc, seq, cold_seq)"
             "  VALUES (1, 'a', 1, '', '', 8, 4);"
             "INSERT INTO chat_bodies(user_id, chat_id, state, shell) VALUES"
             "  (1, 'a', '%s', '{\"id\":\"a\",\"messages\":[]}');"
             "INSERT INTO messages VALUES"
             "  (1, 'a', 'x', '{\"id\":\"x\"}', 5, 0, 'd', 10, 4, NULL, 0, 0, 0),"
             "  (1, 'a', 'y', '{\"id\":\"y\"}', 5, 0, 'd', 20, 4, NULL, 0, 1, 0),"
             "  (1, 'a', 'z', '{\"id\":\"z\",\"v\":2}', 7, 1, 'e', 30, 6, NULL, 1, 2, 1),"
             "  (1, 'a', 'w', NULL, 9, 2, 'd', 40, 8, 'f', 0, 3, 1);",
             state_json);
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK)
        fail_msg("schema-11 rows: %s", msg);
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
    assert_int_equal(query_int(ss, "SELECT count(*) FROM messages"), 4);
    assert_int_equal(query_int(ss, "SELECT count(*) FROM packs"), 0);
    /* every cursor and asker as schema 11 answered (test_store_hot's
     * record of the same rows) */
    static const struct {
        int64_t after;
        const char *skip;
        int64_t skip_after;
        const char *want;
    } cases[] = {
        {0, NULL, 0, "x@4:d y@4:d z@6:e w@8:f "},
        {4, NULL, 0, "z@6:e w@8:f "},
        {6, NULL, 0, "w@8:f "},
        {0, "d", 0, "z@6:e w@8:f "},
        {3, "e", 5, "x@4:d y@4:d w@8:f "},
        {8, NULL, 0, ""},
    };
    assert_int_equal(ps_store_begin(s, false, &err), PS_OK);
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char line[256] = "";
        assert_int_equal(s->ops->messages_since(s, 1, "a", cases[i].after, cases[i].skip,
                                                cases[i].skip_after, append_line, line, &err),
                         PS_OK);
        assert_string_equal(line, cases[i].want);
    }
    ps_chat *c = NULL;
    assert_int_equal(s->ops->chat_load(s, 1, "a", true, &c, &err), PS_OK);
    assert_int_equal(c->nmessages, 4);
    const ps_message *z = ps__chat_message(c, "z");
    assert_int_equal(z->stamp.lamport, 1);
    assert_true(z->stamp.timed);
    assert_int_equal(z->received, 2);
    assert_string_equal(ps__chat_message(c, "w")->mark.origin, "f");
    assert_null(ps__chat_message(c, "w")->value);
    ps__chat_free(c);
    ps_store_rollback(s);

    /* a chat new after the upgrade is packed */
    assert_int_equal(ps_store_begin(s, true, &err), PS_OK);
    model md = {0};
    c = chat_new("new");
    char id[16];
    for (int i = 0; i < 20; i++) {
        snprintf(id, sizeof id, "n%02d", i);
        put(c, id, "d", 100 + i, 1);
    }
    save(s, 1, c, 9, "d", &md);
    assert_int_equal(ps_store_commit(s, &err), PS_OK);
    assert_true(query_int(ss, "SELECT count(*) FROM packs WHERE chat_id = 'new'") >= 1);
    assert_int_equal(query_int(ss, "SELECT count(*) FROM messages WHERE chat_id = 'new'"), 0);
    assert_int_equal(ps_store_begin(s, false, &err), PS_OK);
    for (int64_t after = -1; after <= 9; after++)
        expect_since(s, 1, "new", &md, after, NULL, 0);
    ps_store_rollback(s);
    ps_store_close(s);
}

/* The user's running byte count is what the tables hold of theirs. */
static void expect_user_bytes_counted(sqlite_store *ss, ps_store *s, int64_t user)
{
    int64_t bytes = -1;
    ps_error err;
    char sql[3][300];
    snprintf(sql[0], sizeof sql[0],
             "SELECT coalesce(sum(length(CAST(state AS BLOB)) +"
             " coalesce(length(CAST(shell AS BLOB)), 0)), 0) FROM chat_bodies WHERE user_id = %lld",
             (long long)user);
    snprintf(sql[1], sizeof sql[1],
             "SELECT coalesce(sum(length(CAST(id AS BLOB)) + coalesce(length(CAST(value AS BLOB)),"
             " 0)), 0) FROM messages WHERE user_id = %lld",
             (long long)user);
    snprintf(sql[2], sizeof sql[2],
             "SELECT coalesce(sum(length(data)), 0) FROM packs WHERE user_id = %lld",
             (long long)user);
    assert_int_equal(s->ops->user_bytes(s, user, &bytes, &err), PS_OK);
    assert_int_equal(bytes, query_int(ss, sql[0]) + query_int(ss, sql[1]) + query_int(ss, sql[2]));
}

/* A deterministic random walk over one packed chat (review): edits, new
 * messages, deletions of packed and row messages, a deleted message
 * written again, tombstone collection by acknowledgement (the model
 * forgets what it collects) and the folds these cause. After every step
 * every cursor and asker reads what the model says, and so do chat_load
 * and the rendering; the byte count is what the tables hold. */
static uint32_t walk_next(uint32_t *x)
{
    *x = *x * 1103515245u + 12345u;
    return (*x >> 16) & 0x7fff;
}

static void model_forget(model *md, int64_t acked)
{
    for (int i = 0; i < md->n;)
        if (md->w[i].deleted && md->w[i].seq <= acked)
            md->w[i] = md->w[--md->n];
        else
            i++;
}

static void a_random_walk_reads_as_the_model(void **state)
{
    fixture *f = *state;
    ps_error err;
    ps_store *s = NULL;
    assert_int_equal(ps_store_open(f->url, &s, &err), PS_OK);
    sqlite_store *ss = (sqlite_store *)s;
    static const char *const devices[] = {"phone", "laptop", "tablet"};
    for (uint32_t seed = 1; seed <= 6; seed++) {
        char name[16], id[16];
        snprintf(name, sizeof name, "walker%u", seed);
        ps_user u;
        assert_int_equal(ps_store_begin(s, true, &err), PS_OK);
        assert_int_equal(s->ops->user_load(s, name, &u, &err), PS_OK);
        model md = {0};
        int version[MAX_MSGS] = {0}; /* by message number; 0: never written */
        ps_chat *c = chat_new("w");
        for (int i = 0; i < 20; i++) {
            snprintf(id, sizeof id, "m%02d", i);
            put(c, id, "phone", 100 + i, version[i] = 1);
        }
        save(s, u.id, c, 1, "phone", &md);
        assert_int_equal(ps_store_commit(s, &err), PS_OK);
        uint32_t x = seed;
        int64_t seq = 2;
        for (int step = 0; step < 40; step++, seq++) {
            assert_int_equal(ps_store_begin(s, true, &err), PS_OK);
            uint32_t what = walk_next(&x) % 10;
            if (what == 9) { /* collect tombstones up to a recent ack */
                int64_t acked = seq - 1 - (int64_t)(walk_next(&x) % 4);
                int64_t n = 0;
                assert_int_equal(
                    s->ops->device_seen(s, name, "A", "", "v2", acked, 1000 + seq, &err), PS_OK);
                assert_int_equal(s->ops->purge_acknowledged(s, name, 0, &n, &err), PS_OK);
                model_forget(&md, acked);
            } else {
                const char *dev = devices[walk_next(&x) % 3];
                c = chat_new("w");
                int k = 1 + (int)(walk_next(&x) % 3);
                for (int j = 0; j < k; j++) {
                    int m = (int)(walk_next(&x) % 30);
                    snprintf(id, sizeof id, "m%02d", m);
                    if (ps__chat_message(c, id))
                        continue;
                    bool del = what < 3 && version[m] > 0;
                    version[m] = del ? -version[m] : abs(version[m]) + 1;
                    put(c, id, dev, 100 + m, del ? -1 : version[m]);
                    ps__chat_normalize(c);
                }
                save(s, u.id, c, seq, dev, &md);
            }
            expect_user_bytes_counted(ss, s, u.id);
            assert_int_equal(ps_store_commit(s, &err), PS_OK);
            assert_int_equal(ps_store_begin(s, false, &err), PS_OK);
            /* first with no chat_next_changed in this transaction: what an
             * earlier transaction on the connection read of the chat's
             * cold_seq (before a fold since) must not be taken */
            for (int64_t after = -1; after <= seq; after++)
                expect_since(s, u.id, "w", &md, after, NULL, 0);
            for (int64_t after = -1; after <= seq; after++) {
                /* as a pull asks: the chat, then its messages (the chat's
                 * cold_seq comes with it) */
                ps_chat *next = NULL;
                int64_t next_seq = 0;
                assert_int_equal(s->ops->chat_next_changed(s, u.id, after, &next, &next_seq, &err),
                                 PS_OK);
                ps__chat_free(next);
                expect_since(s, u.id, "w", &md, after, NULL, 0);
                expect_since(s, u.id, "w", &md, after, devices[after & 1 ? 1 : 2], after - 2);
            }
            expect_loaded(s, u.id, "w", &md);
            expect_rendered(s, u.id, "w", &md);
            ps_store_rollback(s);
        }
    }
    ps_store_close(s);
}

/* A packed chat deleted, its deletion collected (the chat row goes), then
 * a chat of the same id made new (packed again): only the new chat's
 * messages are read, by every cursor, chat_load and messages_load. */
/* A pack whose sequence number or arrival index does not fit an int64
 * (bytes a store could only hold corrupt: the codec writes int64 values)
 * is refused as corrupt, never read as a negative number; a based pack
 * whose base plus offset would overflow too (pack_next). */
static void numbers_past_int64_in_a_pack_are_corrupt(void **state)
{
    (void)state;
    const ps_pack_entry good = {
        .id = "m", .value = "{}", .value_len = 2, .device = "d", .seq = 5, .received = 1};
    for (int bad = 0; bad < 3; bad++) {
        ps_pack_entry e = good;
        if (bad == 1)
            e.seq = -1; /* written as 2^64 - 1 */
        if (bad == 2)
            e.received = INT64_MIN;
        ps_dynbuf raw;
        ps__dynbuf_init(&raw, SIZE_MAX - 1);
        assert_int_equal(ps_pack_begin(&raw), PS_OK);
        assert_int_equal(ps_pack_put(&raw, &e), PS_OK);
        size_t pos = 0;
        bool more = false;
        ps_pack_entry back;
        assert_int_equal(ps_pack_next(raw.data, raw.len, &pos, &back, &more),
                         bad ? PS_ERR_STORE : PS_OK);
        if (!bad) {
            assert_true(more);
            pack_buf p = {.raw = raw, .base = INT64_MAX - 4};
            ps_error err;
            pos = 0;
            assert_int_equal(pack_next(&p, &pos, &back, &more, &err), PS_ERR_STORE);
            p.base = INT64_MAX - 5;
            pos = 0;
            assert_int_equal(pack_next(&p, &pos, &back, &more, &err), PS_OK);
            assert_int_equal(back.seq, INT64_MAX);
        }
        ps__dynbuf_free(&raw);
    }
}

static void a_chat_made_again_after_its_deletion_is_collected(void **state)
{
    fixture *f = *state;
    ps_error err;
    ps_store *s = NULL;
    assert_int_equal(ps_store_open(f->url, &s, &err), PS_OK);
    sqlite_store *ss = (sqlite_store *)s;
    ps_user u;
    assert_int_equal(ps_store_begin(s, true, &err), PS_OK);
    assert_int_equal(s->ops->user_load(s, "again", &u, &err), PS_OK);
    model old = {0}, md = {0};
    char id[16];
    ps_chat *c = chat_new("a");
    for (int i = 0; i < 20; i++) {
        snprintf(id, sizeof id, "m%02d", i);
        put(c, id, "phone", 100 + i, 1);
    }
    save(s, u.id, c, 1, "phone", &old);
    c = chat_new("a");
    put(c, "m03", "laptop", 103, -1);
    save(s, u.id, c, 2, "laptop", &old);
    c = NULL;
    assert_int_equal(s->ops->chat_load(s, u.id, "a", true, &c, &err), PS_OK);
    ps_stamp del = {.ts = 1000, .device = (char *)"laptop"};
    ps_lamport shown = {.counter = 9, .id = (char *)"server"};
    bool changed;
    assert_int_equal(ps__chat_delete(c, &del, &shown, &changed), PS_OK);
    for (size_t i = 0; i < c->nmessages; i++)
        c->messages[i].mark.dirty = false;
    assert_int_equal(s->ops->chat_save(s, u.id, c, NULL, 0, 3, &err), PS_OK);
    ps__chat_free(c);
    assert_int_equal(s->ops->device_seen(s, "again", "A", "", "v2", 3, 1000, &err), PS_OK);
    int64_t n = 0;
    assert_int_equal(s->ops->purge_acknowledged(s, "again", 0, &n, &err), PS_OK);
    assert_true(n >= 1);
    assert_int_equal(query_int(ss, "SELECT count(*) FROM chats WHERE id = 'a'"), 0);
    assert_int_equal(query_int(ss, "SELECT count(*) FROM packs"), 0);
    /* made again: other messages, one with an old id */
    c = chat_new("a");
    for (int i = 0; i < 20; i++) {
        snprintf(id, sizeof id, "%c%02d", i ? 'n' : 'm', i ? i : 7);
        put(c, id, "tablet", 300 + i, 5);
    }
    save(s, u.id, c, 4, "tablet", &md);
    expect_user_bytes_counted(ss, s, u.id);
    assert_int_equal(ps_store_commit(s, &err), PS_OK);
    assert_int_equal(ps_store_begin(s, false, &err), PS_OK);
    for (int64_t after = -1; after <= 4; after++)
        expect_since(s, u.id, "a", &md, after, NULL, 0);
    expect_loaded(s, u.id, "a", &md);
    expect_rendered(s, u.id, "a", &md);
    ps_chat *some = ps__chat_new("a");
    const char *const ids[] = {"m03", "m05", "m07"};
    assert_int_equal(s->ops->messages_load(s, u.id, some, ids, 3, &err), PS_OK);
    assert_int_equal(some->nmessages, 1);
    assert_int_equal(ps__chat_message(some, "m07")->mark.seq, 4);
    ps__chat_free(some);
    ps_store_rollback(s);
    ps_store_close(s);
}

/*
 * Pack summaries (stored prefix version 3, pack_codec.h): a reader that
 * trusts the summary must return exactly what the full decode returns.
 * Judged against the test's own list of entries (a brute-force filter,
 * as Q_MSG_SINCE's and next_owed's), never the codec's reading of itself.
 */
typedef struct sum_entry {
    int64_t seq;
    const char *device, *origin; /* origin NULL: the device's */
} sum_entry;

static const char *sum_entry_origin(const sum_entry *e)
{
    return e->origin ? e->origin : e->device;
}

/* How many entries a read (after, skip, skip_after) owes, by brute force. */
static int owed_by_model(const sum_entry *es, int n, int64_t after, const char *skip,
                         int64_t skip_after)
{
    int owed = 0;
    for (int i = 0; i < n; i++)
        if (es[i].seq > after &&
            !(skip && strcmp(sum_entry_origin(&es[i]), skip) == 0 && es[i].seq > skip_after))
            owed++;
    return owed;
}

/* 400 packs of random seqs and origins (one origin for all in two rounds
 * of three; "A" and "AB" tell a prefix from a match): the summary read back
 * from the stored prefix is the model's range and sole origin; no read
 * (every cursor, asker, skip_after) the model says is owed something is
 * ruled out; the reads a pull relies on (all at or before the cursor; all
 * the asker's own after skip_after) are; each entry is within it. */
static void summaries_never_hide_an_owed_entry(void **state)
{
    (void)state;
    static const char *const names[] = {"A", "B", "AB"};
    uint32_t x = 7;
    for (int round = 0; round < 400; round++) {
        sum_entry es[6];
        int n = 1 + (int)(walk_next(&x) % 6);
        int64_t base = (int64_t)(walk_next(&x) % 4);
        for (int i = 0; i < n; i++) {
            es[i].seq = base + (int64_t)(walk_next(&x) % 6);
            es[i].device = names[walk_next(&x) % 3];
            uint32_t o = walk_next(&x) % 4; /* most: one origin for all */
            es[i].origin = round % 3 == 0 ? (o == 3 ? NULL : names[o]) : (o < 2 ? "A" : NULL);
            if (round % 3 != 0 && !es[i].origin)
                es[i].device = "A";
        }
        ps_dynbuf raw, stored;
        ps__dynbuf_init(&raw, SIZE_MAX - 1);
        ps__dynbuf_init(&stored, SIZE_MAX - 1);
        assert_int_equal(ps_pack_begin_based(&raw), PS_OK);
        for (int i = 0; i < n; i++) {
            ps_pack_entry e = {.id = "m",
                               .value = "{}",
                               .value_len = 2,
                               .device = es[i].device,
                               .origin = es[i].origin ? es[i].origin : "",
                               .seq = es[i].seq - base};
            if (!es[i].origin)
                e.origin = es[i].device; /* stored as "the device's" */
            assert_int_equal(ps_pack_put(&raw, &e), PS_OK);
        }
        ps_pack_summary sum;
        bool any = false;
        assert_int_equal(ps_pack_summarize(raw.data, raw.len, base, &sum, &any), PS_OK);
        assert_true(any);
        assert_int_equal(ps_pack_summary_put(&stored, base, &sum), PS_OK);
        assert_int_equal(ps__dynbuf_add(&stored, "\x28rest", 5), PS_OK);
        ps_pack_prefix pre;
        assert_int_equal(ps_pack_prefix_get(stored.data, stored.len, &pre), PS_OK);
        assert_true(pre.based && pre.summarized);
        assert_int_equal(pre.base, base);
        assert_int_equal(pre.skip, stored.len - 5);
        /* the model's range and sole origin */
        int64_t lo = INT64_MAX, hi = INT64_MIN;
        const char *sole = sum_entry_origin(&es[0]);
        for (int i = 0; i < n; i++) {
            lo = es[i].seq < lo ? es[i].seq : lo;
            hi = es[i].seq > hi ? es[i].seq : hi;
            if (sole && strcmp(sole, sum_entry_origin(&es[i])) != 0)
                sole = NULL;
        }
        assert_int_equal(pre.sum.lo, lo);
        assert_int_equal(pre.sum.hi, hi);
        if (sole) {
            assert_non_null(pre.sum.origin);
            assert_int_equal(pre.sum.origin_len, strlen(sole));
            assert_memory_equal(pre.sum.origin, sole, strlen(sole));
        } else {
            assert_null(pre.sum.origin);
        }
        const char *const skips[] = {NULL, "A", "B", "AB", "C"};
        for (int64_t after = -1; after <= base + 7; after++)
            for (int k = 0; k < 5; k++)
                for (int64_t skip_after = -1; skip_after <= base + 7; skip_after++) {
                    int owed = owed_by_model(es, n, after, skips[k], skip_after);
                    bool may = ps_pack_summary_may_owe(&pre.sum, after, skips[k], skip_after);
                    if (owed && !may)
                        fail_msg("round %d: after %lld skip %s/%lld owes %d, summary says none",
                                 round, (long long)after, skips[k] ? skips[k] : "-",
                                 (long long)skip_after, owed);
                    /* the fast paths a pull relies on are taken */
                    if (hi <= after ||
                        (skips[k] && sole && strcmp(sole, skips[k]) == 0 && lo > skip_after))
                        assert_false(may);
                }
        /* every entry is within the summary; one past it is not */
        size_t pos = 0;
        for (int i = 0; i < n; i++) {
            ps_pack_entry e;
            bool more;
            assert_int_equal(ps_pack_next(raw.data, raw.len, &pos, &e, &more), PS_OK);
            e.seq += base;
            assert_true(ps_pack_summary_covers(&pre.sum, &e));
            e.seq = hi + 1;
            assert_false(ps_pack_summary_covers(&pre.sum, &e));
        }
        ps__dynbuf_free(&raw);
        ps__dynbuf_free(&stored);
    }
}

/* A prefix cut short, or whose numbers pass int64, is corrupt; an
 * origin longer than PS_PACK_ORIGIN_MAX is recorded as several. */
static void a_corrupt_summary_is_refused(void **state)
{
    (void)state;
    ps_pack_prefix pre;
    ps_dynbuf b;
    ps__dynbuf_init(&b, SIZE_MAX - 1);
    ps_pack_summary sum = {.lo = 10, .hi = 12, .origin = "phone", .origin_len = 5};
    assert_int_equal(ps_pack_summary_put(&b, 4, &sum), PS_OK);
    for (size_t cut = 1; cut < b.len; cut++)
        assert_int_equal(ps_pack_prefix_get(b.data, cut, &pre), PS_ERR_STORE);
    assert_int_equal(ps_pack_prefix_get(b.data, b.len, &pre), PS_OK);
    int64_t base;
    size_t skip;
    assert_true(ps_pack_base_get(b.data, b.len, &base, &skip));
    assert_int_equal(base, 4);
    assert_int_equal(skip, b.len);
    /* by hand: mark, base, lo offset, span, origin tag */
    static const char overflow_lo[] = "\x03\x01\xff\xff\xff\xff\xff\xff\xff\xff\x7f\x00\x00";
    static const char overflow_span[] = "\x03\x00\x05\xff\xff\xff\xff\xff\xff\xff\xff\x7f\x00";
    static const char long_origin[] = "\x03\x00\x05\x00\x09"
                                      "abc";
    static const char fits[] = "\x03\x00\x05\x00\x04"
                               "abc";
    assert_int_equal(ps_pack_prefix_get(overflow_lo, sizeof overflow_lo - 1, &pre), PS_ERR_STORE);
    assert_int_equal(ps_pack_prefix_get(overflow_span, sizeof overflow_span - 1, &pre),
                     PS_ERR_STORE);
    assert_int_equal(ps_pack_prefix_get(long_origin, sizeof long_origin - 1, &pre), PS_ERR_STORE);
    assert_int_equal(ps_pack_prefix_get(fits, sizeof fits - 1, &pre), PS_OK);
    assert_int_equal(pre.sum.lo, 5);
    assert_int_equal(pre.sum.hi, 5);
    assert_int_equal(pre.sum.origin_len, 3);
    /* a base lower than the lowest seq only; an origin too long to keep */
    sum.lo = 3;
    assert_int_not_equal(ps_pack_summary_put(&b, 4, &sum), PS_OK);
    char big[PS_PACK_ORIGIN_MAX + 1];
    memset(big, 'x', sizeof big);
    ps_pack_summary wide = {.lo = 1, .hi = 1, .origin = big, .origin_len = sizeof big};
    ps__dynbuf_reset(&b);
    assert_int_equal(ps_pack_summary_put(&b, 0, &wide), PS_OK);
    assert_int_equal(ps_pack_prefix_get(b.data, b.len, &pre), PS_OK);
    assert_null(pre.sum.origin);
    ps__dynbuf_free(&b);
}

/* Chat `chat`'s stored pack bytes, its pieces end to end. */
static void stored_pack(sqlite_store *ss, const char *chat, ps_dynbuf *out)
{
    ps__dynbuf_reset(out);
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(ss->db,
                                        "SELECT data FROM packs WHERE chat_id = ?1 ORDER BY id", -1,
                                        &st, NULL),
                     SQLITE_OK);
    sqlite3_bind_text(st, 1, chat, -1, SQLITE_STATIC);
    while (sqlite3_step(st) == SQLITE_ROW)
        assert_int_equal(
            ps__dynbuf_add(out, sqlite3_column_blob(st, 0), (size_t)sqlite3_column_bytes(st, 0)),
            PS_OK);
    sqlite3_finalize(st);
    assert_true(out->len > 0);
}

/* Stores `data` as chat `chat`'s pack (one piece), in place of its own. */
static void replace_pack(sqlite_store *ss, int64_t user, const char *chat, const void *data,
                         size_t len)
{
    sqlite3_stmt *st = NULL;
    char sql[160];
    snprintf(sql, sizeof sql, "DELETE FROM packs WHERE chat_id = '%s'", chat);
    assert_int_equal(sqlite3_exec(ss->db, sql, NULL, NULL, NULL), SQLITE_OK);
    assert_int_equal(
        sqlite3_prepare_v2(ss->db, "INSERT INTO packs(user_id, chat_id, data) VALUES (?1, ?2, ?3)",
                           -1, &st, NULL),
        SQLITE_OK);
    sqlite3_bind_int64(st, 1, user);
    sqlite3_bind_text(st, 2, chat, -1, SQLITE_STATIC);
    sqlite3_bind_blob(st, 3, data, (int)len, SQLITE_TRANSIENT);
    assert_int_equal(sqlite3_step(st), SQLITE_DONE);
    sqlite3_finalize(st);
}

/* The stored bytes with their frame spoilt (every byte after the prefix
 * flipped): decompressing them fails. */
static void spoil_frame(ps_dynbuf *stored)
{
    ps_pack_prefix pre;
    assert_int_equal(ps_pack_prefix_get(stored->data, stored->len, &pre), PS_OK);
    for (size_t i = pre.skip; i < stored->len; i++)
        stored->data[i] = (char)~stored->data[i];
}

/* Every read of chat `chat` (every cursor, asker and skip_after up to
 * `last`) as the model says. */
static void expect_every_since(ps_store *s, int64_t user, const char *chat, const model *md,
                               int64_t last)
{
    static const char *const askers[] = {NULL, "phone", "laptop", "tablet"};
    for (int64_t after = -1; after <= last; after++)
        for (int k = 0; k < 4; k++)
            for (int64_t skip_after = -1; skip_after <= last; skip_after++) {
                expect_since(s, user, chat, md, after, askers[k], skip_after);
                if (!askers[k])
                    break;
            }
}

/* The old layouts of the same pack (read as before: no summary, the frame
 * decompressed): version 2, its base and frame; version 1, no prefix and
 * each entry's seq as it is. */
static void store_old_layout(sqlite_store *ss, int64_t user, const char *chat, int version)
{
    ps_dynbuf stored, raw, old, frame;
    ps__dynbuf_init(&stored, SIZE_MAX - 1);
    ps__dynbuf_init(&raw, SIZE_MAX - 1);
    ps__dynbuf_init(&old, SIZE_MAX - 1);
    ps__dynbuf_init(&frame, SIZE_MAX - 1);
    stored_pack(ss, chat, &stored);
    ps_pack_prefix pre;
    assert_int_equal(ps_pack_prefix_get(stored.data, stored.len, &pre), PS_OK);
    assert_true(pre.summarized);
    if (version == 2) {
        assert_int_equal(ps_pack_base_put(&old, pre.base), PS_OK);
        assert_int_equal(ps__dynbuf_add(&old, stored.data + pre.skip, stored.len - pre.skip),
                         PS_OK);
    } else {
        assert_int_equal(ps_value_unpack_frame_append(stored.data + pre.skip, stored.len - pre.skip,
                                                      user, load_dict, ss, &raw),
                         PS_OK);
        ps_dynbuf v1;
        ps__dynbuf_init(&v1, SIZE_MAX - 1);
        assert_int_equal(ps_pack_begin(&v1), PS_OK);
        size_t pos = 0;
        for (;;) {
            ps_pack_entry e;
            bool more;
            assert_int_equal(ps_pack_next(raw.data, raw.len, &pos, &e, &more), PS_OK);
            if (!more)
                break;
            e.seq += pre.base;
            if (!e.origin)
                e.origin = e.device;
            assert_int_equal(ps_pack_put(&v1, &e), PS_OK);
        }
        assert_int_equal(ps_value_pack_frame(v1.data, v1.len, user, 0, load_dict, ss, &old), PS_OK);
        ps__dynbuf_free(&v1);
    }
    replace_pack(ss, user, chat, old.data, old.len);
    ps__dynbuf_free(&stored);
    ps__dynbuf_free(&raw);
    ps__dynbuf_free(&old);
    ps__dynbuf_free(&frame);
}

/* A first pull of a run (cursor before the chat, skipping the device's
 * own messages of the run): a pack whose summary says it owes nothing is
 * never decompressed — its frame spoilt, the read still answers as the
 * model — while every other read decodes it (and finds it corrupt). Every
 * cursor and skip reads as the model, for a pack of one origin, a folded
 * one of several seqs and origins, one written again by tombstone
 * collection, and packs of the old layouts (versions 1 and 2: no
 * summary, so the spoilt frame is found by every read). */
static void a_pack_that_owes_nothing_is_not_decompressed(void **state)
{
    fixture *f = *state;
    ps_error err;
    ps_store *s = NULL;
    assert_int_equal(ps_store_open(f->url, &s, &err), PS_OK);
    sqlite_store *ss = (sqlite_store *)s;
    ps_user u;
    assert_int_equal(ps_store_begin(s, true, &err), PS_OK);
    assert_int_equal(s->ops->user_load(s, "summed", &u, &err), PS_OK);
    model md = {0};
    char id[16];
    ps_chat *c = chat_new("a");
    for (int i = 0; i < 20; i++) {
        snprintf(id, sizeof id, "m%02d", i);
        put(c, id, i % 3 ? "phone" : "laptop", 100 + i, 1); /* stamps of two devices */
    }
    save(s, u.id, c, 3, "phone", &md);
    c = chat_new("a");
    put(c, "m04", "laptop", 104, 2);
    put(c, "x01", "laptop", 300, 1);
    save(s, u.id, c, 4, "laptop", &md);
    assert_int_equal(ps_store_commit(s, &err), PS_OK);

    ps_dynbuf stored;
    ps__dynbuf_init(&stored, SIZE_MAX - 1);
    stored_pack(ss, "a", &stored);
    ps_pack_prefix pre;
    assert_int_equal(ps_pack_prefix_get(stored.data, stored.len, &pre), PS_OK);
    assert_true(pre.summarized); /* the save's origin: the pack's sole one */
    assert_int_equal(pre.sum.lo, 3);
    assert_int_equal(pre.sum.hi, 3);
    assert_int_equal(pre.sum.origin_len, 5);
    assert_memory_equal(pre.sum.origin, "phone", 5);
    assert_int_equal(ps_store_begin(s, false, &err), PS_OK);
    expect_every_since(s, u.id, "a", &md, 5);
    ps_store_rollback(s);

    /* spoilt: the reads the summary rules out still answer; others fail */
    ps_dynbuf spoilt;
    ps__dynbuf_init(&spoilt, SIZE_MAX - 1);
    assert_int_equal(ps__dynbuf_add(&spoilt, stored.data, stored.len), PS_OK);
    spoil_frame(&spoilt);
    replace_pack(ss, u.id, "a", spoilt.data, spoilt.len);
    assert_int_equal(ps_store_begin(s, false, &err), PS_OK);
    for (int64_t skip_after = -1; skip_after <= 2; skip_after++)
        for (int64_t after = -1; after <= 2; after++)
            expect_since(s, u.id, "a", &md, after, "phone", skip_after); /* the run's first pull */
    seen got = {0};
    assert_int_equal(s->ops->messages_since(s, u.id, "a", -1, NULL, 0, collect, &got, &err),
                     PS_ERR_STORE);
    got.n = 0;
    assert_int_equal(s->ops->messages_since(s, u.id, "a", -1, "phone", 3, collect, &got, &err),
                     PS_ERR_STORE);
    got.n = 0;
    assert_int_equal(s->ops->messages_since(s, u.id, "a", -1, "laptop", 2, collect, &got, &err),
                     PS_ERR_STORE);
    ps_store_rollback(s);

    /* the old layouts read as before, and decode whatever the read */
    for (int version = 1; version <= 2; version++) {
        replace_pack(ss, u.id, "a", stored.data, stored.len);
        store_old_layout(ss, u.id, "a", version);
        ps_dynbuf old;
        ps__dynbuf_init(&old, SIZE_MAX - 1);
        stored_pack(ss, "a", &old);
        assert_int_equal(ps_pack_prefix_get(old.data, old.len, &pre), PS_OK);
        assert_false(pre.summarized);
        assert_int_equal(pre.based, version == 2);
        assert_int_equal(ps_store_begin(s, false, &err), PS_OK);
        expect_every_since(s, u.id, "a", &md, 5);
        expect_loaded(s, u.id, "a", &md);
        ps_store_rollback(s);
        spoil_frame(&old);
        replace_pack(ss, u.id, "a", old.data, old.len);
        assert_int_equal(ps_store_begin(s, false, &err), PS_OK);
        got.n = 0;
        assert_int_equal(s->ops->messages_since(s, u.id, "a", -1, "phone", 0, collect, &got, &err),
                         PS_ERR_STORE);
        ps_store_rollback(s);
        ps__dynbuf_free(&old);
    }
    replace_pack(ss, u.id, "a", stored.data, stored.len);

    /* a summary that lies (entries past its range) is found by full reads */
    ps_dynbuf lying;
    ps__dynbuf_init(&lying, SIZE_MAX - 1);
    ps_pack_summary narrow = {.lo = 1, .hi = 2, .origin = "phone", .origin_len = 5};
    assert_int_equal(ps_pack_prefix_get(stored.data, stored.len, &pre), PS_OK);
    assert_int_equal(ps_pack_summary_put(&lying, 0, &narrow), PS_OK);
    /* the base moves into the entries: a v2 frame with base 0 reads seq 0 */
    assert_int_equal(ps__dynbuf_add(&lying, stored.data + pre.skip, stored.len - pre.skip), PS_OK);
    replace_pack(ss, u.id, "a", lying.data, lying.len);
    assert_int_equal(ps_store_begin(s, false, &err), PS_OK);
    got.n = 0;
    assert_int_equal(s->ops->messages_since(s, u.id, "a", -1, NULL, 0, collect, &got, &err),
                     PS_ERR_STORE);
    ps_chat *loaded = NULL;
    assert_int_equal(s->ops->chat_load(s, u.id, "a", true, &loaded, &err), PS_ERR_STORE);
    ps_store_rollback(s);
    /* and one whose numbers overflow is corrupt to every read */
    static const char overflow[] = "\x03\x01\xff\xff\xff\xff\xff\xff\xff\xff\x7f\x00\x00\x28";
    replace_pack(ss, u.id, "a", overflow, sizeof overflow - 1);
    assert_int_equal(ps_store_begin(s, false, &err), PS_OK);
    got.n = 0;
    assert_int_equal(s->ops->messages_since(s, u.id, "a", -1, "phone", 0, collect, &got, &err),
                     PS_ERR_STORE);
    ps_store_rollback(s);
    replace_pack(ss, u.id, "a", stored.data, stored.len);
    ps__dynbuf_free(&lying);

    /* folded: several seqs and origins; its summary says so, reads as the
     * model, and a cursor past all of it skips it */
    int64_t seq = 5;
    assert_int_equal(ps_store_begin(s, true, &err), PS_OK);
    for (int i = 0; i < 10; i++, seq++) {
        c = chat_new("a");
        snprintf(id, sizeof id, "n%02d", i);
        put(c, id, i % 2 ? "tablet" : "laptop", 200 + i, 1);
        save(s, u.id, c, seq, i % 2 ? "tablet" : "laptop", &md);
    }
    assert_int_equal(ps_store_commit(s, &err), PS_OK);
    int64_t folded_at = query_int(ss, "SELECT cold_seq FROM chats WHERE id = 'a'");
    assert_true(folded_at > 5); /* folded (then perhaps rows again) */
    ps_dynbuf folded;
    ps__dynbuf_init(&folded, SIZE_MAX - 1);
    stored_pack(ss, "a", &folded);
    assert_int_equal(ps_pack_prefix_get(folded.data, folded.len, &pre), PS_OK);
    assert_true(pre.summarized);
    assert_int_equal(pre.sum.lo, 3);
    assert_int_equal(pre.sum.hi, folded_at);
    assert_null(pre.sum.origin);
    assert_int_equal(ps_store_begin(s, false, &err), PS_OK);
    expect_every_since(s, u.id, "a", &md, seq);
    ps_store_rollback(s);

    /* written again by tombstone collection: still summarized, of one
     * origin once the others' messages are gone */
    assert_int_equal(ps_store_begin(s, true, &err), PS_OK);
    c = chat_new("b");
    for (int i = 0; i < 20; i++) {
        snprintf(id, sizeof id, "b%02d", i);
        put(c, id, "phone", 100 + i, 1);
    }
    model mb = {0};
    save(s, u.id, c, seq, "tablet", &mb);
    c = chat_new("b");
    put(c, "b07", "laptop", 107, -1);
    save(s, u.id, c, seq + 1, "laptop", &mb);
    assert_int_equal(s->ops->device_seen(s, "summed", "A", "", "v2", seq + 1, 3000, &err), PS_OK);
    int64_t purged = 0;
    assert_int_equal(s->ops->purge_acknowledged(s, "summed", 0, &purged, &err), PS_OK);
    assert_true(purged >= 1);
    assert_int_equal(ps_store_commit(s, &err), PS_OK);
    model_forget(&mb, seq + 1);
    ps_dynbuf again;
    ps__dynbuf_init(&again, SIZE_MAX - 1);
    stored_pack(ss, "b", &again);
    assert_int_equal(ps_pack_prefix_get(again.data, again.len, &pre), PS_OK);
    assert_true(pre.summarized);
    assert_int_equal(pre.sum.lo, seq);
    assert_int_equal(pre.sum.hi, seq);
    assert_int_equal(pre.sum.origin_len, 6);
    assert_memory_equal(pre.sum.origin, "tablet", 6);
    assert_int_equal(ps_store_begin(s, false, &err), PS_OK);
    expect_every_since(s, u.id, "b", &mb, seq + 2);
    ps_store_rollback(s);
    spoil_frame(&again);
    replace_pack(ss, u.id, "b", again.data, again.len);
    assert_int_equal(ps_store_begin(s, false, &err), PS_OK);
    expect_since(s, u.id, "b", &mb, -1, "tablet", seq - 1);
    ps_store_rollback(s);

    ps__dynbuf_free(&again);
    ps__dynbuf_free(&folded);
    ps__dynbuf_free(&spoilt);
    ps__dynbuf_free(&stored);
    ps_store_close(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(packed_and_hot_rows_read_as_one, setup, teardown),
        cmocka_unit_test_setup_teardown(a_legacy_saved_new_chat_is_a_pack_without_its_rendering,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(unnumbered_messages_stay_rows, setup, teardown),
        cmocka_unit_test_setup_teardown(forgotten_deletions_purges_and_users_leave_no_pack, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(hot_rows_are_folded_into_the_pack, setup, teardown),
        cmocka_unit_test_setup_teardown(a_dictionary_is_trained_from_packs, setup, teardown),
        cmocka_unit_test_setup_teardown(migrates_from_schema_11, setup, teardown),
        cmocka_unit_test_setup_teardown(a_random_walk_reads_as_the_model, setup, teardown),
        cmocka_unit_test_setup_teardown(a_chat_made_again_after_its_deletion_is_collected, setup,
                                        teardown),
        cmocka_unit_test(numbers_past_int64_in_a_pack_are_corrupt),
        cmocka_unit_test(summaries_never_hide_an_owed_entry),
        cmocka_unit_test(a_corrupt_summary_is_refused),
        cmocka_unit_test_setup_teardown(a_pack_that_owes_nothing_is_not_decompressed, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
