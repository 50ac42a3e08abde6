/*
 * The client under json-c allocation failures (issue #12): every json-c
 * constructor, container add and writer (json_object_to_json_string_*,
 * which returns NULL when out of memory) the library calls is made to fail
 * in turn (tests/shim/json_fault.c, the Nth call for N = 1, 2, ... until a
 * run makes fewer calls than N), over what builds a request or a change:
 * each local edit, an import, the legacy /sync body, the snapshot of a full
 * resync, applying a v2 and a legacy answer (which restamps pending local
 * changes); and over what reads a chat out: ps_client_chat_get (a
 * non-string content as its JSON text), ps_client_chat_json and
 * ps_client_export; and opening a store of schema 1, which migrates every
 * message row.
 *
 * The oracle is the same operation run without a fault, on a copy of the
 * same store: a run with a failure either
 *   - answers PS_ERR_NOMEM, leaves the store byte for byte as it was (every
 *     row of every table) and hands out no request, or
 *   - answers PS_OK with exactly the reference's outcome: the same request
 *     text, the same log entries and the same chats.
 * A build that drops the piece it could not allocate (a change logged or a
 * request sent without its title, clock or messages, a chat read out
 * without its text) fails the second point; a NULL passed on crashes or
 * leaks (run under ASan too).
 *
 * The client's clock stands still here (--wrap=ps__time_now_ms), so two
 * runs stamp the same times; a new message's random id is replaced by
 * "NEW" before comparing.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "../shim/json_fault.h"
#include "client/client_internal.h"
#include "client/sync_run.h"
#include "core/dynbuf.h"
#include "polysync/polysync.h"

#include <json-c/json.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const char *__real_json_object_to_json_string_ext(json_object *obj, int flags);
int64_t __wrap_ps__time_now_ms(void);
int64_t __wrap_ps__time_now_ms(void)
{
    return 1796212800000LL; /* 2026-12-02T12:00:00Z */
}

/* The store every run starts from: c1 (two messages, one deleted here),
 * c2, c3 (deleted here), all with log entries; c4 map-shaped import. */
/* c2's message has a multimodal (array) content. */
static const char *const BASE_IMPORT =
    "[{\"id\":\"c1\",\"title\":\"One\",\"createdAt\":\"2026-11-01T10:00:00.000Z\","
    "\"updatedAt\":\"2026-11-01T10:00:00.000Z\",\"provider\":\"ollama\",\"messages\":["
    "{\"id\":\"m1\",\"role\":\"user\",\"content\":\"hi\",\"timestamp\":\"2026-11-01T10:00:00."
    "000Z\"},"
    "{\"id\":\"m2\",\"role\":\"assistant\",\"content\":\"hello\",\"timestamp\":"
    "\"2026-11-01T10:00:01.000Z\"}]},"
    "{\"id\":\"c2\",\"title\":\"Two\",\"createdAt\":\"2026-11-02T10:00:00.000Z\",\"messages\":["
    "{\"id\":\"m7\",\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"parts\"}],"
    "\"timestamp\":\"2026-11-02T10:00:00.000Z\"}]},"
    "{\"id\":\"c3\",\"title\":\"Three\",\"createdAt\":\"2026-11-03T10:00:00.000Z\",\"messages\":[]}"
    "]";

/* A chatStore.json map: entries without an id take their key. */
static const char *const MAP_IMPORT =
    "{\"chats\":{\"c4\":{\"title\":\"Four\",\"createdAt\":\"2026-11-04T10:00:00.000Z\","
    "\"isArchived\":false,\"messages\":[{\"id\":\"m4\",\"role\":\"user\",\"content\":\"q\","
    "\"timestamp\":\"2026-11-04T10:00:00.000Z\"}]},"
    "\"c1\":{\"title\":\"One (old)\",\"createdAt\":\"2026-10-01T10:00:00.000Z\",\"messages\":[]}}}";

/* A v2 answer to a first pull (null cursor, whole): c1 changed, c2 gone,
 * c5 new; c3 unseen. */
static const char *const V2_ANSWER =
    "{\"accepted\":3,\"more\":false,\"serverClock\":40,\"cursor\":\"c1.40\",\"chats\":["
    "{\"id\":\"c1\",\"fields\":{\"title\":\"One, there\",\"provider\":null},"
    "\"updatedAt\":\"2026-11-05T10:00:00.000Z\",\"messages\":[{\"id\":\"m3\",\"role\":\"user\","
    "\"content\":\"more\",\"timestamp\":\"2026-11-05T10:00:00.000Z\"}],\"deletedMessages\":[\"m1\"]"
    "},"
    "{\"id\":\"c2\",\"deleted\":true},"
    "{\"id\":\"c5\",\"fields\":{\"title\":\"Five\"},\"createdAt\":\"2026-11-06T10:00:00.000Z\","
    "\"messages\":[{\"id\":\"m5\",\"role\":\"assistant\",\"content\":\"x\",\"timestamp\":"
    "\"2026-11-06T10:00:00.000Z\"}]}]}";

static const char *const LEGACY_ANSWER =
    "{\"serverClock\":30,\"missing\":[{\"id\":\"c1\",\"title\":\"One, legacy\",\"provider\":null,"
    "\"createdAt\":\"2026-11-01T10:00:00.000Z\",\"updatedAtLamport\":[30,\"server\"],"
    "\"messages\":[{\"id\":\"m1\",\"role\":\"user\",\"content\":\"hi\",\"timestamp\":"
    "\"2026-11-01T10:00:00.000Z\"}]},"
    "{\"id\":\"c6\",\"title\":\"Six\",\"createdAt\":\"2026-11-07T10:00:00.000Z\",\"messages\":[]}],"
    "\"deletions\":[{\"id\":\"c2\",\"lamport\":[29,\"server\"]}]}";

static char dir[64], base_path[96], work_path[96], v1_path[96];

/* A store of schema 1 (rows as JSON text, as polysync 0.1 wrote them; the
 * format as tests/client/test_client_store.py writes it): opening it
 * migrates it, every message row rewritten. */
#define V1_DEVICE "5b0e6a4c-1d2e-4f3a-9b8c-7d6e5f4a3b2c"
#define V1_STAMP "[1705320001000,0,\"" V1_DEVICE "\"]"
static const char *const V1_STORE =
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;"
    "CREATE TABLE chats (id TEXT PRIMARY KEY, header TEXT NOT NULL, live INTEGER NOT NULL,"
    " title TEXT, archived INTEGER NOT NULL DEFAULT 0, created_ms INTEGER NOT NULL DEFAULT 0,"
    " updated_ms INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID;"
    "CREATE TABLE messages (chat_id TEXT NOT NULL, id TEXT NOT NULL, row TEXT NOT NULL,"
    " live INTEGER NOT NULL, PRIMARY KEY (chat_id, id)) WITHOUT ROWID;"
    "CREATE TABLE changes (seq INTEGER PRIMARY KEY AUTOINCREMENT, chat_id TEXT NOT NULL,"
    " kind INTEGER NOT NULL, clock INTEGER NOT NULL, body TEXT NOT NULL);"
    "CREATE INDEX changes_by_chat ON changes(chat_id);"
    "INSERT INTO meta VALUES ('device_id', '" V1_DEVICE "'), ('clock', '9');"
    "INSERT INTO chats VALUES ('c1', '{\"id\":\"c1\",\"f\":{\"title\":[\"Old\"," V1_STAMP "]},"
    "\"c\":[\"2024-01-15T12:00:00.000Z\",1705320000000],\"u\":[\"2024-01-15T12:00:01.000Z\","
    "1705320001000],\"l\":[\"2024-01-15T12:00:01.000Z\",1705320001000],\"t\":" V1_STAMP "}',"
    " 1, 'Old', 0, 1705320000000, 1705320001000);"
    "INSERT INTO messages VALUES ('c1', 'm1', '[\"m1\",{\"id\":\"m1\",\"role\":\"user\","
    "\"content\":\"hi\",\"timestamp\":\"2024-01-15T12:00:00.000Z\"}," V1_STAMP
    ",1705320000000]', 1),"
    " ('c1', 'm2', '[\"m2\",{\"id\":\"m2\",\"role\":\"assistant\",\"content\":[{\"type\":"
    "\"text\",\"text\":\"parts\"}]}," V1_STAMP ",1705320000500]', 1),"
    " ('c1', 'm0', '[\"m0\",null,[1705320001005,3,\"" V1_DEVICE "\"],0]', 0);"
    "INSERT INTO changes(seq, chat_id, kind, clock, body) VALUES (1, 'c1', 0, 9,"
    " '{\"chatId\":\"c1\",\"clock\":9,\"fields\":{\"title\":\"Old\"}}');"
    "PRAGMA user_version = 1;";

/* What a scenario did: its result and, when it makes one, its output text
 * (a request) or a new id (replaced by "NEW" in what is compared). */
typedef struct outcome {
    ps_code rc;
    char *text;
    char *new_id;
} outcome;

typedef void (*scenario)(ps_client *c, outcome *o);

static void outcome_free(outcome *o)
{
    free(o->text);
    free(o->new_id);
    memset(o, 0, sizeof *o);
}

static void append(char **buf, size_t *len, const char *s, size_t n);

/* ---- the scenarios ---- */

static void op_create(ps_client *c, outcome *o)
{
    ps_error err;
    char *id = NULL;
    o->rc = ps_client_chat_create(c, "Created", &id, &err);
    o->new_id = id;
}

static void op_rename(ps_client *c, outcome *o)
{
    ps_error err;
    o->rc = ps_client_chat_rename(c, "c1", "Renamed", &err);
}

static void op_archive(ps_client *c, outcome *o)
{
    ps_error err;
    o->rc = ps_client_chat_archive(c, "c2", true, &err);
}

static void op_delete_chat(ps_client *c, outcome *o)
{
    ps_error err;
    o->rc = ps_client_chat_delete(c, "c2", &err);
}

static void op_msg_add(ps_client *c, outcome *o)
{
    ps_error err;
    char *id = NULL;
    o->rc = ps_client_msg_add(c, "c1", "user", "added", &id, &err);
    o->new_id = id;
}

static void op_msg_edit(ps_client *c, outcome *o)
{
    ps_error err;
    o->rc = ps_client_msg_edit(c, "c1", "m1", "edited", &err);
}

static void op_msg_delete(ps_client *c, outcome *o)
{
    ps_error err;
    o->rc = ps_client_msg_delete(c, "c1", "m1", &err);
}

static void op_import_map(ps_client *c, outcome *o)
{
    ps_error err;
    ps_import_report *rep = NULL;
    o->rc = ps_client_import(c, MAP_IMPORT, strlen(MAP_IMPORT), &rep, &err);
    ps_import_report_free(rep);
}

static void op_legacy_request(ps_client *c, outcome *o)
{
    ps_error err;
    ps_sync_stats st = {0};
    sync_run r = {.c = c, .st = &st};
    json_object *req = NULL;
    int64_t max_seq = 0;
    size_t count = 0;
    o->rc = ps__build_legacy_request(&r, &max_seq, &count, &req, &err);
    if (o->rc == PS_OK) {
        assert_non_null(req);
        /* json-c's own writer: the armed fault is for the library's calls */
        o->text = strdup(__real_json_object_to_json_string_ext(req, JSON_C_TO_STRING_PLAIN));
    } else {
        assert_null(req);
    }
    json_object_put(req);
}

static void op_full_resync(ps_client *c, outcome *o)
{
    ps_error err;
    ps_sync_stats st = {0};
    sync_run r = {.c = c, .st = &st};
    o->rc = ps__start_full_resync(&r, &err);
}

static void op_v2_answer(ps_client *c, outcome *o)
{
    ps_error err;
    ps_http_answer a;
    ps__http_answer_init(&a);
    a.status = 200;
    assert_int_equal(ps__dynbuf_add(&a.body, V2_ANSWER, strlen(V2_ANSWER)), PS_OK);
    v2_answer ans = {0};
    o->rc = ps__parse_v2_answer(c, &a, &ans, &err);
    if (o->rc == PS_OK) {
        ps_sync_stats st = {0};
        sync_run r = {.c = c, .st = &st};
        o->rc = ps__apply_v2_answer(&r, &ans, NULL, 0, NULL, false, &err);
    }
    json_object_put(ans.root);
    ps__http_answer_free(&a);
}

static void op_legacy_answer(ps_client *c, outcome *o)
{
    ps_error err;
    json_object *ans = json_tokener_parse(LEGACY_ANSWER);
    assert_non_null(ans);
    ps_sync_stats st = {0};
    sync_run r = {.c = c, .st = &st};
    o->rc = ps__apply_legacy_answer(&r, ans, 0, &err);
    json_object_put(ans);
}

/* Reading out, which changes nothing: what was read is the outcome. */
static void op_chat_get(ps_client *c, outcome *o)
{
    ps_error err;
    ps_chat_detail *d = NULL;
    o->rc = ps_client_chat_get(c, "c2", &d, &err);
    if (o->rc != PS_OK) {
        assert_null(d);
        return;
    }
    char *out = NULL;
    size_t len = 0;
    append(&out, &len, d->info.id, strlen(d->info.id));
    for (size_t i = 0; i < d->info.message_count; i++) {
        const ps_message_info *m = &d->messages[i];
        char line[64];
        snprintf(line, sizeof line, "\n%s %s %lld ", m->id, m->role, (long long)m->timestamp_ms);
        append(&out, &len, line, strlen(line));
        append(&out, &len, m->content, strlen(m->content));
    }
    ps_chat_detail_free(d);
    o->text = out;
}

static void op_chat_json(ps_client *c, outcome *o)
{
    ps_error err;
    char *json = NULL;
    o->rc = ps_client_chat_json(c, "c1", &json, &err);
    if (json) {
        o->text = strdup(json);
        ps_free(json);
    }
}

static void op_export(ps_client *c, outcome *o)
{
    ps_error err;
    char *json = NULL;
    size_t len = 0;
    o->rc = ps_client_export(c, &json, &len, &err);
    if (json) {
        assert_int_equal(strlen(json), len);
        o->text = strdup(json);
        ps_free(json);
    }
}

/* ---- states ---- */

/* Appends `s` to a growing string. */
static void append(char **buf, size_t *len, const char *s, size_t n)
{
    char *b = realloc(*buf, *len + n + 1);
    assert_non_null(b);
    memcpy(b + *len, s, n);
    *len += n;
    b[*len] = '\0';
    *buf = b;
}

/* Every row of every table of the store file, as hex: "nothing changed"
 * means this text is the same. */
static char *raw_state(const char *path)
{
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_stmt *tables = NULL;
    assert_int_equal(sqlite3_prepare_v2(db,
                                        "SELECT name FROM sqlite_master WHERE type = 'table' "
                                        "ORDER BY name",
                                        -1, &tables, NULL),
                     SQLITE_OK);
    char *out = NULL;
    size_t len = 0;
    while (sqlite3_step(tables) == SQLITE_ROW) {
        const char *name = (const char *)sqlite3_column_text(tables, 0);
        char sql[256];
        snprintf(sql, sizeof sql, "SELECT * FROM \"%s\"", name);
        append(&out, &len, name, strlen(name));
        sqlite3_stmt *rows = NULL;
        assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &rows, NULL), SQLITE_OK);
        while (sqlite3_step(rows) == SQLITE_ROW) {
            append(&out, &len, "\n", 1);
            for (int i = 0; i < sqlite3_column_count(rows); i++) {
                const unsigned char *b = sqlite3_column_blob(rows, i);
                int n = sqlite3_column_bytes(rows, i);
                char hex[3];
                append(&out, &len, "|", 1);
                for (int k = 0; b && k < n; k++) {
                    snprintf(hex, sizeof hex, "%02x", b[k]);
                    append(&out, &len, hex, 2);
                }
            }
        }
        sqlite3_finalize(rows);
        append(&out, &len, "\n", 1);
    }
    sqlite3_finalize(tables);
    sqlite3_close(db);
    return out ? out : strdup("");
}

/* `id` replaced by "NEW" throughout `s`, in place. */
static void replace_id(char *s, const char *id)
{
    if (!id || !*id)
        return;
    size_t idlen = strlen(id);
    for (char *p = strstr(s, id); p; p = strstr(p + 3, id)) {
        memcpy(p, "NEW", 3);
        memmove(p + 3, p + idlen, strlen(p + idlen) + 1);
    }
}

static int cmp_lines(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The export's lines (one chat each) in sorted order: chats updated at the
 * same time are listed by id, and a new chat's random id may sort anywhere. */
static void append_sorted_export(char **out, size_t *len, char *json, const char *new_id)
{
    replace_id(json, new_id);
    char *lines[64];
    size_t n = 0;
    for (char *save = NULL, *l = strtok_r(json, "\n", &save); l && n < 64;
         l = strtok_r(NULL, "\n", &save)) {
        size_t k = strlen(l);
        if (k && l[k - 1] == ',') /* the separator goes with the place, not the chat */
            l[k - 1] = '\0';
        lines[n++] = l;
    }
    qsort(lines, n, sizeof *lines, cmp_lines);
    for (size_t i = 0; i < n; i++) {
        append(out, len, lines[i], strlen(lines[i]));
        append(out, len, "\n", 1);
    }
}

/* What the store means: the export of the live chats, each chat (deleted
 * ones included, as far as ps_client_chat_json shows them), the log
 * entries and the clock and cursor; the new id replaced by "NEW". */
static char *logical_state(ps_client *c, const outcome *o)
{
    ps_error err;
    char *out = NULL;
    size_t len = 0;
    char *json = NULL;
    size_t jlen = 0;
    assert_int_equal(ps_client_export(c, &json, &jlen, &err), PS_OK);
    append_sorted_export(&out, &len, json, o->new_id);
    ps_free(json);
    static const char *const ids[] = {"c1", "c2", "c3", "c4", "c5", "c6"};
    for (size_t i = 0; i < sizeof ids / sizeof *ids; i++) {
        json = NULL;
        ps_code rc = ps_client_chat_json(c, ids[i], &json, &err);
        char line[64];
        snprintf(line, sizeof line, "\n%s %d ", ids[i], (int)rc);
        append(&out, &len, line, strlen(line));
        if (json)
            append(&out, &len, json, strlen(json));
        ps_free(json);
    }
    ps_change_row *rows = NULL;
    size_t n = 0;
    bool more = false;
    assert_int_equal(
        ps__lstore_changes(c->store, 0, 100000, (size_t)1 << 30, &rows, &n, &more, &err), PS_OK);
    for (size_t i = 0; i < n; i++) {
        char line[160];
        snprintf(line, sizeof line, "\nlog %s %d %lld %lld ", rows[i].chat_id, rows[i].kind,
                 (long long)rows[i].clock, (long long)rows[i].messages);
        append(&out, &len, line, strlen(line));
        append(&out, &len, rows[i].body, rows[i].body_len);
    }
    ps__change_rows_free(rows, n);
    int64_t clock = 0;
    char *cursor = NULL;
    assert_int_equal(ps__lstore_meta_int(c->store, "clock", 0, &clock, &err), PS_OK);
    assert_int_equal(ps__lstore_meta_get(c->store, "cursor", &cursor, &err), PS_OK);
    char line[160];
    snprintf(line, sizeof line, "\nclock %lld cursor %s", (long long)clock,
             cursor ? cursor : "(none)");
    free(cursor);
    append(&out, &len, line, strlen(line));
    if (o->text) {
        append(&out, &len, "\nrequest ", 9);
        append(&out, &len, o->text, strlen(o->text));
    }
    replace_id(out, o->new_id); /* the new id, wherever else it appears */
    return out;
}

/* ---- the sweep ---- */

static void copy_file(const char *from, const char *to)
{
    FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
    assert_non_null(in);
    assert_non_null(out);
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, in)) > 0)
        assert_int_equal(fwrite(buf, 1, n, out), n);
    fclose(in);
    assert_int_equal(fclose(out), 0);
}

static void remove_work(void)
{
    static const char *const suffixes[] = {"", "-wal", "-shm", "-journal"};
    for (size_t i = 0; i < 4; i++) {
        char p[128];
        snprintf(p, sizeof p, "%s%s", work_path, suffixes[i]);
        unlink(p);
    }
}

/* Runs `scn` on a fresh copy of the base store with the Nth json-c call
 * failing (0: none); *fired: whether it did. Returns the logical state
 * after (NULL when the run answered PS_ERR_NOMEM, checked unchanged).
 * `scn` NULL: opening a copy of the schema-1 store, which migrates it. */
static char *run_once(scenario scn, long n, bool *fired, ps_code *rc_out)
{
    remove_work();
    copy_file(scn ? base_path : v1_path, work_path);
    ps_client *c = NULL;
    ps_error err;
    if (scn)
        assert_int_equal(ps_client_open(work_path, &c, &err), PS_OK);
    char *before = raw_state(work_path);
    outcome o = {0};
    ps_json_fault_arm(n);
    if (scn)
        scn(c, &o);
    else if ((o.rc = ps_client_open(work_path, &c, &err)) != PS_OK) /* the migration */
        assert_null(c);
    *fired = ps_json_fault_fired();
    long calls = ps_json_fault_calls();
    ps_json_fault_arm(0);
    *rc_out = o.rc;
    char *logical = NULL;
    if (o.rc == PS_ERR_NOMEM) {
        if (!*fired) /* only an injected failure may say so */
            fail_msg("PS_ERR_NOMEM without a failure (call %ld of %ld)", n, calls);
        assert_null(o.text);
        char *after = raw_state(work_path);
        if (strcmp(before, after) != 0)
            fail_msg("failure at json-c call %ld: PS_ERR_NOMEM but the store changed", n);
        free(after);
    } else {
        if (o.rc != PS_OK)
            fail_msg("failure at json-c call %ld: answered %s, not PS_OK or PS_ERR_NOMEM", n,
                     ps_strerror(o.rc));
        logical = logical_state(c, &o);
    }
    free(before);
    outcome_free(&o);
    ps_client_close(c);
    return logical;
}

static void sweep(scenario scn, const char *name)
{
    bool fired = false;
    ps_code rc;
    char *reference = run_once(scn, 0, &fired, &rc);
    assert_int_equal(rc, PS_OK);
    assert_false(fired);
    long n = 1, failures = 0;
    for (;; n++) {
        char *got = run_once(scn, n, &fired, &rc);
        if (!fired) { /* the whole operation made fewer than n calls */
            assert_string_equal(got, reference);
            free(got);
            break;
        }
        if (got) {
            if (strcmp(got, reference) != 0)
                fail_msg("%s: json-c call %ld failed, PS_OK answered, but the outcome differs:\n"
                         "got      %s\nexpected %s",
                         name, n, got, reference);
        } else {
            failures++;
        }
        free(got);
    }
    /* the sweep reached real building: most failures must be reported */
    assert_true(n > 3);
    assert_true(failures > 0);
    print_message("%s: %ld json-c calls failed in turn, %ld answered PS_ERR_NOMEM\n", name, n - 1,
                  failures);
    free(reference);
}

#define SWEEP(fn)                                                                                  \
    static void test_##fn(void **state)                                                            \
    {                                                                                              \
        (void)state;                                                                               \
        sweep(fn, #fn);                                                                            \
    }
SWEEP(op_create)
SWEEP(op_rename)
SWEEP(op_archive)
SWEEP(op_delete_chat)
SWEEP(op_msg_add)
SWEEP(op_msg_edit)
SWEEP(op_msg_delete)
SWEEP(op_import_map)
SWEEP(op_legacy_request)
SWEEP(op_full_resync)
SWEEP(op_v2_answer)
SWEEP(op_legacy_answer)
SWEEP(op_chat_get)
SWEEP(op_chat_json)
SWEEP(op_export)

static void test_open_migrates_schema_1(void **state)
{
    (void)state;
    sweep(NULL, "open_migrates_schema_1");
}

/* The base store: imported chats, then edits so the log holds local
 * entries, a message deleted here and a chat deleted here. */
static int make_base(void **state)
{
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/ps-client-nomem-XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    snprintf(base_path, sizeof base_path, "%s/base.db", dir);
    snprintf(work_path, sizeof work_path, "%s/work.db", dir);
    ps_client *c = NULL;
    ps_error err;
    ps_import_report *rep = NULL;
    if (ps_client_open(base_path, &c, &err) != PS_OK ||
        ps_client_import(c, BASE_IMPORT, strlen(BASE_IMPORT), &rep, &err) != PS_OK ||
        rep->chats_imported != 3)
        return -1;
    ps_import_report_free(rep);
    if (ps_client_msg_delete(c, "c1", "m2", &err) != PS_OK ||
        ps_client_chat_rename(c, "c1", "One!", &err) != PS_OK ||
        ps_client_chat_delete(c, "c3", &err) != PS_OK)
        return -1;
    ps_client_close(c); /* checkpoints: the copy is the whole store */
    snprintf(v1_path, sizeof v1_path, "%s/v1.db", dir);
    sqlite3 *db = NULL;
    int ok = sqlite3_open(v1_path, &db) == SQLITE_OK &&
             sqlite3_exec(db, V1_STORE, NULL, NULL, NULL) == SQLITE_OK;
    sqlite3_close(db);
    return ok ? 0 : -1;
}

static int drop_base(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_op_create),         cmocka_unit_test(test_op_rename),
        cmocka_unit_test(test_op_archive),        cmocka_unit_test(test_op_delete_chat),
        cmocka_unit_test(test_op_msg_add),        cmocka_unit_test(test_op_msg_edit),
        cmocka_unit_test(test_op_msg_delete),     cmocka_unit_test(test_op_import_map),
        cmocka_unit_test(test_op_legacy_request), cmocka_unit_test(test_op_full_resync),
        cmocka_unit_test(test_op_v2_answer),      cmocka_unit_test(test_op_legacy_answer),
        cmocka_unit_test(test_op_chat_get),       cmocka_unit_test(test_op_chat_json),
        cmocka_unit_test(test_op_export),         cmocka_unit_test(test_open_migrates_schema_1),
    };
    return cmocka_run_group_tests(tests, make_base, drop_base);
}
