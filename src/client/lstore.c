/*
 * The client's local SQLite store; see lstore.h. Chat state goes through the
 * core codec (header and message-row forms), so what is stored is exactly
 * what ps__chat_merge works on; nothing here decides what wins.
 */
#include "client/lstore.h"
#include "client/lstore_pack.h"
#include "core/chat_codec.h"
#include "core/json_build.h"
#include "core/json_parse.h"
#include "core/merge.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Schema 1: rows as JSON text; every message row also carried its chat's
 * id (WITHOUT ROWID rows over ~1 KB spill into a page of their own: the
 * reference history took 241 MB). */
static const char SCHEMA_1[] =
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;"
    "CREATE TABLE chats ("
    "  id TEXT PRIMARY KEY,"
    "  header TEXT NOT NULL,"
    "  live INTEGER NOT NULL,"
    "  title TEXT,"
    "  archived INTEGER NOT NULL DEFAULT 0,"
    "  created_ms INTEGER NOT NULL DEFAULT 0,"
    "  updated_ms INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID;"
    "CREATE TABLE messages ("
    "  chat_id TEXT NOT NULL,"
    "  id TEXT NOT NULL,"
    "  row TEXT NOT NULL," /* [id, value|null, [ts, lamport, device], order_ts] */
    "  live INTEGER NOT NULL,"
    "  PRIMARY KEY (chat_id, id)) WITHOUT ROWID;"
    "CREATE TABLE changes ("
    "  seq INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  chat_id TEXT NOT NULL,"
    "  kind INTEGER NOT NULL,"
    "  clock INTEGER NOT NULL,"
    "  body TEXT NOT NULL);"
    "CREATE INDEX changes_by_chat ON changes(chat_id);";

/* Schema 2 (docs/client.md, "The local store on disk"): chats get a number
 * that keys their messages; a message row is zstd of [value|null, [ts,
 * lamport, device], order_ts] (its id is the key), with the dictionary
 * `dict` of zdicts (0 = none); a change's body is zstd when `packed`, and
 * `messages` counts its messages (-1: not counted). Rows move over in C
 * (migrate_2). */
static const char SCHEMA_2[] =
    "CREATE TABLE chats2 ("
    "  n INTEGER PRIMARY KEY,"
    "  id TEXT NOT NULL UNIQUE,"
    "  header TEXT NOT NULL,"
    "  live INTEGER NOT NULL,"
    "  title TEXT,"
    "  archived INTEGER NOT NULL DEFAULT 0,"
    "  created_ms INTEGER NOT NULL DEFAULT 0,"
    "  updated_ms INTEGER NOT NULL DEFAULT 0);"
    "INSERT INTO chats2(id, header, live, title, archived, created_ms, updated_ms) "
    "  SELECT id, header, live, title, archived, created_ms, updated_ms FROM chats ORDER BY id;"
    "CREATE TABLE zdicts (id INTEGER PRIMARY KEY, dict BLOB NOT NULL);"
    "ALTER TABLE messages RENAME TO messages1;"
    "CREATE TABLE messages ("
    "  chat INTEGER NOT NULL,"
    "  id TEXT NOT NULL,"
    "  live INTEGER NOT NULL,"
    "  dict INTEGER NOT NULL,"
    "  row BLOB NOT NULL,"
    "  PRIMARY KEY (chat, id)) WITHOUT ROWID;"
    "ALTER TABLE changes ADD COLUMN messages INTEGER NOT NULL DEFAULT -1;"
    "ALTER TABLE changes ADD COLUMN packed INTEGER NOT NULL DEFAULT 0;";

/* Schema 3 (docs/client.md, "The local store on disk"): a message's key
 * is its id's 16 bytes (BLOB) when the id is a UUID as the apps write them
 * (lowercase, 8-4-4-4-12), any other id stays TEXT (msg_key); rows are
 * unchanged (those written since leave out their id: strip_id). */
static const char SCHEMA_3[] = "CREATE TABLE messages3 ("
                               "  chat INTEGER NOT NULL,"
                               "  id NOT NULL," /* no type: TEXT or BLOB as stored */
                               "  live INTEGER NOT NULL,"
                               "  dict INTEGER NOT NULL,"
                               "  row BLOB NOT NULL,"
                               "  PRIMARY KEY (chat, id)) WITHOUT ROWID;"
                               "INSERT INTO messages3(chat, id, live, dict, row)"
                               "  SELECT chat, ps_msg_key(id), live, dict, row FROM messages;"
                               "DROP TABLE messages;"
                               "ALTER TABLE messages3 RENAME TO messages;";

/* Schema 4 (docs/client.md, "The local store on disk"): `touches`, the
 * server's writes of chats it named by id alone (a first upload's last
 * answer lists every chat it pushed so), kept beside the header instead of
 * unpacking, merging and repacking it for each: a touched stamp and a
 * Lamport tuple per chat, folded in when the chat is loaded and into its
 * header when it is next saved (ps__lstore_chat_touch). An older polysync
 * would read the headers without them: schema 4 keeps it out. */
static const char SCHEMA_4[] = "CREATE TABLE touches ("
                               "  chat INTEGER PRIMARY KEY," /* chats.n */
                               "  ts INTEGER NOT NULL,"
                               "  lamport INTEGER NOT NULL,"
                               "  device TEXT NOT NULL,"
                               "  timed INTEGER NOT NULL,"
                               "  counter INTEGER NOT NULL,"
                               "  lamport_id TEXT NOT NULL);";

#define SCHEMA_VERSION 4

#define PS_STR_(x) #x
#define PS_STR(x) PS_STR_(x)

/* The statements every chat load and save runs, prepared once per handle
 * (preparing them for each of 2,000 chats was 7% of a fresh pull). */
enum {
    HOT_HEADER,
    HOT_ALL_ROWS,
    HOT_ONE_ROW,
    HOT_SAVE_CHAT,
    HOT_SAVE_ROW,
    HOT_TOUCH_GET,
    HOT_TOUCH_DROP,
    HOT_TOUCH_PROBE,
    HOT_TOUCH_ADD,
    HOT_COUNT
};

struct ps_lstore {
    sqlite3 *db;
    ps_pack *pack;
    sqlite3_stmt *hot[HOT_COUNT];
};

static ps_code db_fail(ps_lstore *s, ps_error *err, const char *what)
{
    int code = sqlite3_errcode(s->db);
    ps_code rc = (code == SQLITE_BUSY || code == SQLITE_LOCKED) ? PS_ERR_BUSY : PS_ERR_STORE;
    return ps_error_set(err, rc, -1, "", "local store: %s: %s", what, sqlite3_errmsg(s->db));
}

static ps_code exec(ps_lstore *s, const char *sql, ps_error *err)
{
    if (sqlite3_exec(s->db, sql, NULL, NULL, NULL) != SQLITE_OK)
        return db_fail(s, err, sql);
    return PS_OK;
}

static ps_code prepare(ps_lstore *s, const char *sql, sqlite3_stmt **st, ps_error *err)
{
    if (sqlite3_prepare_v2(s->db, sql, -1, st, NULL) != SQLITE_OK)
        return db_fail(s, err, "prepare");
    return PS_OK;
}

static ps_code migrate_2(ps_lstore *s, ps_error *err);

/* ---- message keys and rows (schema 3) ---- */

/* A UUID's 16 bytes as a message key: 36 characters of key become 16 (1.9
 * MB of the reference history's 100,000 rows). */
#define KEY_BYTES 16
#define UUID_CHARS 36

static int hex_digit(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* True and out filled if `id` is a lowercase 8-4-4-4-12 UUID: the only form
 * stored as bytes, so that formatting them back gives the same id. */
static bool uuid_key(const char *id, size_t len, unsigned char out[KEY_BYTES])
{
    if (len != UUID_CHARS)
        return false;
    size_t k = 0;
    for (size_t i = 0; i < UUID_CHARS; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (id[i] != '-')
                return false;
            continue;
        }
        int hi = hex_digit(id[i]), lo = i + 1 < UUID_CHARS ? hex_digit(id[i + 1]) : -1;
        if (hi < 0 || lo < 0)
            return false;
        out[k++] = (unsigned char)(hi << 4 | lo);
        i++;
    }
    return k == KEY_BYTES;
}

static void bind_msg_key(sqlite3_stmt *st, int col, const char *id)
{
    unsigned char key[KEY_BYTES];
    if (uuid_key(id, strlen(id), key))
        sqlite3_bind_blob(st, col, key, KEY_BYTES, SQLITE_TRANSIENT);
    else
        sqlite3_bind_text(st, col, id, -1, SQLITE_STATIC);
}

/* The id of the key in column `col`: the TEXT as stored, or a BLOB key
 * formatted into buf. */
static const char *msg_key_id(sqlite3_stmt *st, int col, char buf[UUID_CHARS + 1])
{
    if (sqlite3_column_type(st, col) != SQLITE_BLOB)
        return (const char *)sqlite3_column_text(st, col);
    const unsigned char *b = sqlite3_column_blob(st, col);
    if (sqlite3_column_bytes(st, col) != KEY_BYTES)
        return NULL;
    static const char HEX[] = "0123456789abcdef";
    size_t o = 0;
    for (size_t i = 0; i < KEY_BYTES; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            buf[o++] = '-';
        buf[o++] = HEX[b[i] >> 4];
        buf[o++] = HEX[b[i] & 15];
    }
    buf[o] = '\0';
    return buf;
}

/* ps_msg_key(id): the key schema 3 stores for `id` (the migration's). */
static void sql_msg_key(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
    (void)argc;
    unsigned char key[KEY_BYTES];
    if (sqlite3_value_type(argv[0]) == SQLITE_TEXT &&
        uuid_key((const char *)sqlite3_value_text(argv[0]), (size_t)sqlite3_value_bytes(argv[0]),
                 key))
        sqlite3_result_blob(ctx, key, KEY_BYTES, SQLITE_TRANSIENT);
    else
        sqlite3_result_value(ctx, argv[0]);
}

/*
 * A row's text without its message's id: the codec writes a row as
 * [{"id":"<id>", ...}, stamp, order_ts], and the id is the row's key
 * already; a random UUID is ~20 bytes of every packed row (2.4 MB of the
 * reference history's). Stored as ID_LEFT_OUT followed by the text after
 * `[{"id":"<id>"`; a row of another form (a deleted message's null, an id
 * the codec escaped) is stored whole. JSON never starts with '~', so the
 * two cannot be confused.
 */
#define ID_LEFT_OUT '~'
#define ROW_HEAD "[{\"id\":\""

static size_t id_prefix(const char *id, const char *text, size_t len)
{
    size_t head = sizeof ROW_HEAD - 1, idlen = strlen(id);
    if (len < head + idlen + 1 || memcmp(text, ROW_HEAD, head) != 0 ||
        memcmp(text + head, id, idlen) != 0 || text[head + idlen] != '"')
        return 0;
    return head + idlen + 1;
}

/* The text to pack for a row: *out points into text, or at *buf (the
 * caller's, freed by it) holding the shortened row. */
static ps_code strip_id(const char *id, const char *text, size_t len, char **buf, const char **out,
                        size_t *out_len, ps_error *err)
{
    *buf = NULL;
    size_t skip = id_prefix(id, text, len);
    if (!skip) {
        *out = text;
        *out_len = len;
        return PS_OK;
    }
    if (!(*buf = malloc(len - skip + 1)))
        return ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
    (*buf)[0] = ID_LEFT_OUT;
    memcpy(*buf + 1, text + skip, len - skip);
    *out = *buf;
    *out_len = len - skip + 1;
    return PS_OK;
}

/* A row's unpacked text with its id put back (strip_id's inverse); *text is
 * replaced when it changes. */
static ps_code restore_id(const char *id, char **text, size_t *len, ps_error *err)
{
    if (*len == 0 || (*text)[0] != ID_LEFT_OUT)
        return PS_OK;
    size_t head = sizeof ROW_HEAD - 1, idlen = strlen(id), rest = *len - 1;
    size_t n = head + idlen + 1 + rest;
    char *whole = malloc(n + 1);
    if (!whole)
        return ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
    memcpy(whole, ROW_HEAD, head);
    memcpy(whole + head, id, idlen);
    whole[head + idlen] = '"';
    memcpy(whole + head + idlen + 1, *text + 1, rest);
    whole[n] = '\0';
    free(*text);
    *text = whole;
    *len = n;
    return PS_OK;
}

/* A hot statement, reset and unbound when it comes back (hot_done). */
static ps_code prepare_hot(ps_lstore *s, int which, const char *sql, sqlite3_stmt **st,
                           ps_error *err)
{
    if (!s->hot[which] && sqlite3_prepare_v3(s->db, sql, -1, SQLITE_PREPARE_PERSISTENT,
                                             &s->hot[which], NULL) != SQLITE_OK)
        return db_fail(s, err, "prepare");
    *st = s->hot[which];
    return PS_OK;
}

static void hot_done(sqlite3_stmt *st)
{
    if (st) {
        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
    }
}

static ps_code migrate(ps_lstore *s, bool *rewritten, ps_error *err)
{
    sqlite3_stmt *st = NULL;
    *rewritten = false;
    ps_code rc = prepare(s, "PRAGMA user_version", &st, err);
    if (rc != PS_OK)
        return rc;
    int version = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int(st, 0) : 0;
    sqlite3_finalize(st);
    if (version > SCHEMA_VERSION)
        return ps_error_set(err, PS_ERR_SCHEMA, -1, "",
                            "the local store has schema %d; this polysync knows up to %d "
                            "(written by a newer polysync)",
                            version, SCHEMA_VERSION);
    if (version == SCHEMA_VERSION)
        return PS_OK;
    if ((rc = exec(s, "BEGIN IMMEDIATE", err)) != PS_OK)
        return rc;
    if (version < 1)
        rc = exec(s, SCHEMA_1, err);
    if (rc == PS_OK && version < 2)
        rc = migrate_2(s, err);
    if (rc == PS_OK && version < 3)
        rc = exec(s, SCHEMA_3, err);
    if (rc == PS_OK && version < 4)
        rc = exec(s, SCHEMA_4, err);
    char sql[64];
    snprintf(sql, sizeof sql, "PRAGMA user_version = %d", SCHEMA_VERSION);
    if (rc == PS_OK)
        rc = exec(s, sql, err);
    if (rc == PS_OK && (rc = exec(s, "COMMIT", err)) == PS_OK) {
        *rewritten = version >= 1 && version < 3; /* schema 4 only adds a table */
        return PS_OK;
    }
    sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
    ps__pack_forget(s->pack);
    return rc;
}

ps_code ps__lstore_open(const char *path, ps_lstore **out, ps_error *err)
{
    *out = NULL;
    /* Create the file 0600 ourselves: chats are private, and SQLite would
     * create it with the umask's 0644. */
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return ps_error_set(err, PS_ERR_IO, -1, "", "cannot open the local store %s: %s", path,
                            strerror(errno));
    close(fd);
    ps_lstore *s = calloc(1, sizeof *s);
    if (!s)
        return ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
    if (sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) !=
        SQLITE_OK) {
        ps_code rc = ps_error_set(err, PS_ERR_STORE, -1, "", "cannot open the local store %s: %s",
                                  path, s->db ? sqlite3_errmsg(s->db) : "out of memory");
        ps__lstore_close(s);
        return rc;
    }
    sqlite3_busy_timeout(s->db, 10000);
    if (sqlite3_create_function_v2(s->db, "ps_msg_key", 1,
                                   SQLITE_UTF8 | SQLITE_DETERMINISTIC | SQLITE_DIRECTONLY, NULL,
                                   sql_msg_key, NULL, NULL, NULL) != SQLITE_OK) {
        ps_code rc = db_fail(s, err, "register a function");
        ps__lstore_close(s);
        return rc;
    }
    if (!(s->pack = ps__pack_new())) {
        ps__lstore_close(s);
        return ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
    }
    /* Incremental vacuum: the pages a sync frees (the acknowledged log) go
     * back to the file system (ps__lstore_reclaim). Takes effect on a new
     * store now, on an older one with the VACUUM after its migration. */
    ps_code rc = exec(s, "PRAGMA auto_vacuum=INCREMENTAL", err);
    if (rc == PS_OK)
        rc = exec(s, "PRAGMA journal_mode=WAL", err);
    if (rc == PS_OK)
        rc = exec(s, "PRAGMA synchronous=FULL", err);
    bool rewritten = false;
    if (rc == PS_OK)
        rc = migrate(s, &rewritten, err);
    if (rc == PS_OK && rewritten)
        sqlite3_exec(s->db, "VACUUM", NULL, NULL, NULL); /* only space: may fail while shared */
    if (rc != PS_OK) {
        ps__lstore_close(s);
        return rc;
    }
    *out = s;
    return PS_OK;
}

void ps__lstore_close(ps_lstore *s)
{
    if (!s)
        return;
    for (int i = 0; i < HOT_COUNT; i++)
        sqlite3_finalize(s->hot[i]);
    sqlite3_close(s->db);
    ps__pack_free(s->pack);
    free(s);
}

ps_code ps__lstore_begin(ps_lstore *s, ps_error *err)
{
    return exec(s, "BEGIN IMMEDIATE", err);
}

ps_code ps__lstore_commit(ps_lstore *s, ps_error *err)
{
    ps_code rc = exec(s, "COMMIT", err);
    if (rc != PS_OK)
        ps__lstore_rollback(s);
    return rc;
}

void ps__lstore_rollback(ps_lstore *s)
{
    if (!sqlite3_get_autocommit(s->db))
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
    ps__pack_forget(s->pack); /* a dictionary trained in it is gone */
}

/* Whether the file's free pages are worth giving back: a few are what the
 * next writes use anyway. False when it cannot tell. */
static bool reclaim_due(sqlite3 *db)
{
    int64_t pages = 0, free_pages = 0;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db,
                           "SELECT (SELECT page_count FROM pragma_page_count), "
                           "(SELECT freelist_count FROM pragma_freelist_count)",
                           -1, &st, NULL) != SQLITE_OK)
        return false;
    if (sqlite3_step(st) == SQLITE_ROW) {
        pages = sqlite3_column_int64(st, 0);
        free_pages = sqlite3_column_int64(st, 1);
    }
    sqlite3_finalize(st);
    return free_pages >= 256 && free_pages * 8 >= pages;
}

ps_code ps__lstore_reclaim(ps_lstore *s, ps_error *err)
{
    if (!reclaim_due(s->db))
        return PS_OK;
    return exec(s, "PRAGMA incremental_vacuum", err);
}

/* Pages given back in one step of the background reclaim: a step is one
 * write transaction, so a stop waits for at most one (~1 MB moved). */
#define RECLAIM_STEP_PAGES 256

struct ps_lstore_reclaim {
    sqlite3 *db; /* a connection of its own: only the main thread uses s->db */
    pthread_t thread;
    atomic_bool stop;
};

static void *reclaim_steps(void *arg)
{
    ps_lstore_reclaim *r = arg;
    if (!reclaim_due(r->db))
        return NULL;
    for (;;) {
        int64_t left = 0;
        sqlite3_stmt *st = NULL;
        if (atomic_load(&r->stop) ||
            sqlite3_exec(r->db, "PRAGMA incremental_vacuum(" PS_STR(RECLAIM_STEP_PAGES) ")", NULL,
                         NULL, NULL) != SQLITE_OK ||
            sqlite3_prepare_v2(r->db, "SELECT freelist_count FROM pragma_freelist_count", -1, &st,
                               NULL) != SQLITE_OK)
            break;
        if (sqlite3_step(st) == SQLITE_ROW)
            left = sqlite3_column_int64(st, 0);
        sqlite3_finalize(st);
        if (left == 0)
            break;
    }
    return NULL;
}

ps_lstore_reclaim *ps__lstore_reclaim_start(ps_lstore *s)
{
    const char *path = sqlite3_db_filename(s->db, "main");
    ps_lstore_reclaim *r = calloc(1, sizeof *r);
    if (!r || !path || !*path ||
        sqlite3_open_v2(path, &r->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) !=
            SQLITE_OK)
        goto fail;
    /* Busy (another writer): no wait, the step is only space. A step lost
     * to a power cut is only pages not given back yet: no fsync each. */
    if (sqlite3_exec(r->db, "PRAGMA synchronous=NORMAL", NULL, NULL, NULL) != SQLITE_OK)
        goto fail;
    atomic_init(&r->stop, false);
    if (pthread_create(&r->thread, NULL, reclaim_steps, r) != 0)
        goto fail;
    return r;
fail:
    if (r)
        sqlite3_close(r->db);
    free(r);
    return NULL;
}

void ps__lstore_reclaim_stop(ps_lstore_reclaim *r)
{
    if (!r)
        return;
    atomic_store(&r->stop, true);
    pthread_join(r->thread, NULL);
    sqlite3_close(r->db);
    free(r);
}

/* ---- meta ---- */

ps_code ps__lstore_meta_get(ps_lstore *s, const char *key, char **value_out, ps_error *err)
{
    *value_out = NULL;
    sqlite3_stmt *st = NULL;
    ps_code rc = prepare(s, "SELECT value FROM meta WHERE key = ?", &st, err);
    if (rc != PS_OK)
        return rc;
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    int step = sqlite3_step(st);
    if (step == SQLITE_ROW) {
        *value_out = strdup((const char *)sqlite3_column_text(st, 0));
        if (!*value_out)
            rc = ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
    } else if (step != SQLITE_DONE) {
        rc = db_fail(s, err, "read meta");
    }
    sqlite3_finalize(st);
    return rc;
}

ps_code ps__lstore_meta_set(ps_lstore *s, const char *key, const char *value, ps_error *err)
{
    sqlite3_stmt *st = NULL;
    ps_code rc = prepare(s,
                         value ? "INSERT INTO meta(key, value) VALUES (?, ?) "
                                 "ON CONFLICT(key) DO UPDATE SET value = excluded.value"
                               : "DELETE FROM meta WHERE key = ?",
                         &st, err);
    if (rc != PS_OK)
        return rc;
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    if (value)
        sqlite3_bind_text(st, 2, value, -1, SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_DONE)
        rc = db_fail(s, err, "write meta");
    sqlite3_finalize(st);
    return rc;
}

ps_code ps__lstore_meta_int(ps_lstore *s, const char *key, int64_t dflt, int64_t *out,
                            ps_error *err)
{
    char *v = NULL;
    ps_code rc = ps__lstore_meta_get(s, key, &v, err);
    *out = v ? strtoll(v, NULL, 10) : dflt;
    free(v);
    return rc;
}

ps_code ps__lstore_meta_set_int(ps_lstore *s, const char *key, int64_t value, ps_error *err)
{
    char buf[32];
    snprintf(buf, sizeof buf, "%lld", (long long)value);
    return ps__lstore_meta_set(s, key, buf, err);
}

/* ---- chats ---- */

/* A stored message row back in the codec's form [id, value, stamp,
 * order_ts]: unpacked, parsed, its id put first. */
static ps_code unpack_row(ps_lstore *s, const char *id, sqlite3_stmt *st, int col_dict, int col_row,
                          json_object **row_out, ps_error *err)
{
    char *text;
    size_t len;
    json_object *rest = NULL;
    *row_out = NULL;
    ps_code rc = ps__unpack(s->pack, s->db, sqlite3_column_int64(st, col_dict),
                            sqlite3_column_blob(st, col_row),
                            (size_t)sqlite3_column_bytes(st, col_row), &text, &len, err);
    if (rc != PS_OK)
        return rc;
    if ((rc = restore_id(id, &text, &len, err)) != PS_OK) {
        free(text);
        return rc;
    }
    ps_error perr;
    rc = ps__json_parse(text, len, PS_JSON_MAX_DEPTH + 8, &rest, &perr);
    free(text);
    if (rc != PS_OK || !json_object_is_type(rest, json_type_array) ||
        json_object_array_length(rest) != 3) {
        json_object_put(rest);
        return ps_error_set(err, PS_ERR_STORE, -1, "", "local store: corrupt message row");
    }
    json_object *row = json_object_new_array_ext(4);
    ps_code built = PS_OK;
    ps__json_push(&built, row, json_object_new_string(id));
    for (size_t i = 0; i < 3; i++) {
        json_object *v = json_object_array_get_idx(rest, i); /* the value may be null */
        ps__json_push_opt(&built, row, v != NULL, json_object_get(v));
    }
    json_object_put(rest);
    if (built != PS_OK) {
        json_object_put(row);
        return ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
    }
    *row_out = row;
    return PS_OK;
}

/* Adds the rows `st` yields (id, dict, row) to `rows`. */
static ps_code add_rows(ps_lstore *s, sqlite3_stmt *st, json_object *rows, ps_error *err)
{
    int step;
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        json_object *row = NULL;
        char idbuf[UUID_CHARS + 1];
        const char *id = msg_key_id(st, 0, idbuf);
        if (!id)
            return ps_error_set(err, PS_ERR_STORE, -1, "", "local store: corrupt message key");
        ps_code rc = unpack_row(s, id, st, 1, 2, &row, err);
        if (rc != PS_OK)
            return rc;
        ps__json_push(&rc, rows, row);
        if (rc != PS_OK)
            return ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
    }
    return step == SQLITE_DONE ? PS_OK : db_fail(s, err, "read messages");
}

/* The server's write of a chat named by id alone (stamp, shown tuple),
 * merged into `chat` exactly as ps__apply_change_ex merges a change that
 * carries nothing: a chat whose only parts are the touched stamp. */
static ps_code merge_touch(ps_chat *chat, const ps_stamp *stamp, const ps_lamport *tuple)
{
    ps_chat *touch = ps__chat_new(chat->id);
    bool changed = false;
    ps_code rc = touch ? ps__stamp_copy(&touch->touched, stamp) : PS_ERR_NOMEM;
    if (touch)
        touch->has_touched = true;
    if (rc == PS_OK)
        rc = ps__chat_merge(chat, touch, &changed);
    if (rc == PS_OK && tuple->counter && ps__lamport_cmp(tuple, &chat->lamport) > 0)
        rc = ps__lamport_set(&chat->lamport, tuple->counter, tuple->id);
    ps__chat_free(touch);
    return rc;
}

/* Folds the chat's entry of `touches`, if any, into the loaded chat (left
 * clean: what is stored, read). */
static ps_code fold_touch(ps_lstore *s, int64_t chat_n, ps_chat *chat, ps_error *err)
{
    sqlite3_stmt *st = NULL;
    ps_code rc = prepare_hot(s, HOT_TOUCH_GET,
                             "SELECT ts, lamport, device, timed, counter, lamport_id FROM touches "
                             "WHERE chat = ?",
                             &st, err);
    if (rc != PS_OK)
        return rc;
    sqlite3_bind_int64(st, 1, chat_n);
    int step = sqlite3_step(st);
    if (step == SQLITE_ROW) {
        ps_stamp stamp = {.ts = sqlite3_column_int64(st, 0),
                          .lamport = sqlite3_column_int64(st, 1),
                          .device = (char *)sqlite3_column_text(st, 2),
                          .timed = sqlite3_column_int(st, 3) != 0};
        ps_lamport tuple = {.counter = sqlite3_column_int64(st, 4),
                            .id = (char *)sqlite3_column_text(st, 5)};
        if (!stamp.device || !tuple.id)
            rc = ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
        else if (merge_touch(chat, &stamp, &tuple) != PS_OK)
            rc = ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
        ps__chat_clear_dirty(chat);
    } else if (step != SQLITE_DONE) {
        rc = db_fail(s, err, "read chat");
    }
    hot_done(st);
    return rc;
}

ps_code ps__lstore_chat_touch(ps_lstore *s, const char *id, const ps_stamp *stamp,
                              const ps_lamport *tuple, bool *done, ps_error *err)
{
    *done = false;
    sqlite3_stmt *st = NULL;
    ps_code rc = prepare_hot(s, HOT_TOUCH_PROBE,
                             "SELECT n, live, created_ms, "
                             "EXISTS (SELECT 1 FROM touches t WHERE t.chat = c.n) "
                             "FROM chats c WHERE id = ?",
                             &st, err);
    if (rc != PS_OK)
        return rc;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    int step = sqlite3_step(st);
    /* Kept aside only when the listing columns cannot change: a live chat
     * stays live (its newest change only gets newer), and a createdAt that
     * is not 0 orders it instead of the touched stamp (chat_updated_ms);
     * and when the chat holds no such write yet (two are not joined here). */
    bool fits = step == SQLITE_ROW && sqlite3_column_int(st, 1) &&
                sqlite3_column_int64(st, 2) != 0 && !sqlite3_column_int(st, 3);
    int64_t chat_n = fits ? sqlite3_column_int64(st, 0) : 0;
    if (step != SQLITE_ROW && step != SQLITE_DONE)
        rc = db_fail(s, err, "read chat");
    hot_done(st);
    if (rc != PS_OK || !fits)
        return rc;
    if ((rc = prepare_hot(s, HOT_TOUCH_ADD,
                          "INSERT INTO touches(chat, ts, lamport, device, timed, counter, "
                          "lamport_id) VALUES (?, ?, ?, ?, ?, ?, ?)",
                          &st, err)) != PS_OK)
        return rc;
    sqlite3_bind_int64(st, 1, chat_n);
    sqlite3_bind_int64(st, 2, stamp->ts);
    sqlite3_bind_int64(st, 3, stamp->lamport);
    sqlite3_bind_text(st, 4, stamp->device ? stamp->device : "", -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 5, stamp->timed);
    sqlite3_bind_int64(st, 6, tuple->counter);
    sqlite3_bind_text(st, 7, tuple->id ? tuple->id : "", -1, SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_DONE)
        rc = db_fail(s, err, "write chat");
    else
        *done = true;
    hot_done(st);
    return rc;
}

ps_code ps__lstore_chat_load(ps_lstore *s, const char *id, bool all, const char *const *msg_ids,
                             size_t n, ps_chat **out, ps_error *err)
{
    *out = NULL;
    sqlite3_stmt *st = NULL;
    json_object *state = NULL, *rows = NULL;
    ps_code rc = prepare_hot(s, HOT_HEADER, "SELECT header, n FROM chats WHERE id = ?", &st, err);
    if (rc != PS_OK)
        return rc;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    int step = sqlite3_step(st);
    if (step == SQLITE_DONE)
        goto done;
    if (step != SQLITE_ROW) {
        rc = db_fail(s, err, "read chat");
        goto done;
    }
    ps_error perr;
    /* a header is zstd (BLOB) since schema 3, the text before */
    char *unpacked = NULL;
    size_t hlen = 0;
    if (sqlite3_column_type(st, 0) == SQLITE_BLOB &&
        (rc = ps__unpack(s->pack, s->db, 0, sqlite3_column_blob(st, 0),
                         (size_t)sqlite3_column_bytes(st, 0), &unpacked, &hlen, err)) != PS_OK)
        goto done;
    const char *htext = unpacked ? unpacked : (const char *)sqlite3_column_text(st, 0);
    if (!unpacked)
        hlen = (size_t)sqlite3_column_bytes(st, 0);
    ps_code parsed = ps__json_parse(htext, hlen, PS_JSON_MAX_DEPTH + 8, &state, &perr);
    free(unpacked);
    if (parsed != PS_OK) {
        rc = ps_error_set(err, PS_ERR_STORE, -1, "", "local store: corrupt chat %s", id);
        goto done;
    }
    int64_t chat_n = sqlite3_column_int64(st, 1);
    hot_done(st);
    st = NULL;
    if (!(rows = json_object_new_array())) {
        rc = ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
        goto done;
    }
    if (all) {
        if ((rc = prepare_hot(s, HOT_ALL_ROWS, "SELECT id, dict, row FROM messages WHERE chat = ?",
                              &st, err)) != PS_OK)
            goto done;
        sqlite3_bind_int64(st, 1, chat_n);
        rc = add_rows(s, st, rows, err);
    } else if (n) {
        rc = prepare_hot(s, HOT_ONE_ROW,
                         "SELECT id, dict, row FROM messages WHERE chat = ? AND id = ?", &st, err);
        for (size_t i = 0; i < n && rc == PS_OK; i++) {
            sqlite3_reset(st);
            sqlite3_bind_int64(st, 1, chat_n);
            bind_msg_key(st, 2, msg_ids[i]);
            rc = add_rows(s, st, rows, err);
        }
    }
    if (rc != PS_OK)
        goto done;
    ps__json_set(&rc, state, "m", rows);
    rows = NULL;
    if (rc != PS_OK) {
        rc = ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
        goto done;
    }
    if ((rc = ps__chat_state_from_json(state, out, err)) == PS_OK)
        (*out)->stored = true;
    if (rc == PS_OK && (rc = fold_touch(s, chat_n, *out, err)) != PS_OK) {
        ps__chat_free(*out);
        *out = NULL;
    }
done:
    hot_done(st);
    json_object_put(rows);
    json_object_put(state);
    return rc;
}

/* What is stored of a message: [value|null, [ts, lamport, device],
 * order_ts], the codec's row without the id (the row's key). */
static json_object *message_row(const ps_message *m)
{
    ps_code rc = PS_OK;
    json_object *row = json_object_new_array_ext(3);
    json_object *stamp = json_object_new_array_ext(3);
    ps__json_push(&rc, stamp, json_object_new_int64(m->stamp.ts));
    ps__json_push(&rc, stamp, json_object_new_int64(m->stamp.lamport));
    ps__json_push(&rc, stamp, json_object_new_string(m->stamp.device ? m->stamp.device : ""));
    ps__json_push_opt(&rc, row, m->value != NULL, json_object_get(m->value)); /* null: deleted */
    ps__json_push(&rc, row, stamp);
    ps__json_push(&rc, row, json_object_new_int64(m->order_ts));
    if (rc != PS_OK) {
        json_object_put(row);
        return NULL;
    }
    return row;
}

static int64_t chat_updated_ms(const ps_chat *c)
{
    int64_t t = 0;
    if (c->updated_at.value && c->updated_at.ms > t)
        t = c->updated_at.ms;
    if (c->last_modified.value && c->last_modified.ms > t)
        t = c->last_modified.ms;
    if (!t && c->created_at.value)
        t = c->created_at.ms;
    if (!t && c->has_touched)
        t = c->touched.ts;
    return t;
}

ps_code ps__lstore_chat_save(ps_lstore *s, ps_chat *chat, ps_error *err)
{
    sqlite3_stmt *st = NULL;
    void *packed_header = NULL;
    json_object *header = ps__chat_header_to_json(chat);
    if (!header)
        return ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
    ps_code rc =
        prepare_hot(s, HOT_SAVE_CHAT,
                    "INSERT INTO chats(id, header, live, title, archived, created_ms, "
                    "updated_ms) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET "
                    "header = excluded.header, live = excluded.live, title = excluded.title, "
                    "archived = excluded.archived, created_ms = excluded.created_ms, "
                    "updated_ms = excluded.updated_ms RETURNING n",
                    &st, err);
    if (rc != PS_OK)
        goto done;
    size_t len;
    const char *text = ps__json_text(header, &len);
    if (!text) {
        rc = ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
        goto done;
    }
    /* the header packed (no dictionary: a chat may be saved before the
     * store has one): its fields' stamps repeat the device id, and 680
     * bytes a chat of the reference history become ~300 */
    if ((rc = ps__pack(s->pack, 0, text, len, &packed_header, &len, err)) != PS_OK)
        goto done;
    const ps_field *title = ps__chat_field(chat, "title");
    const ps_field *arch = ps__chat_field(chat, "isArchived");
    sqlite3_bind_text(st, 1, chat->id, -1, SQLITE_STATIC);
    sqlite3_bind_blob(st, 2, packed_header, (int)len, SQLITE_STATIC);
    sqlite3_bind_int(st, 3, ps__chat_is_live(chat));
    if (title && json_object_is_type(title->value, json_type_string))
        sqlite3_bind_text(st, 4, json_object_get_string(title->value), -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, 4);
    sqlite3_bind_int(st, 5,
                     arch && json_object_is_type(arch->value, json_type_boolean) &&
                         json_object_get_boolean(arch->value));
    sqlite3_bind_int64(st, 6, chat->created_at.value ? chat->created_at.ms : 0);
    sqlite3_bind_int64(st, 7, chat_updated_ms(chat));
    if (sqlite3_step(st) != SQLITE_ROW) {
        rc = db_fail(s, err, "write chat");
        goto done;
    }
    int64_t chat_n = sqlite3_column_int64(st, 0);
    hot_done(st);
    st = NULL;
    /* the header now holds what the chat's touch held (loaded with it) */
    if ((rc = prepare_hot(s, HOT_TOUCH_DROP, "DELETE FROM touches WHERE chat = ?", &st, err)) !=
        PS_OK)
        goto done;
    sqlite3_bind_int64(st, 1, chat_n);
    if (sqlite3_step(st) != SQLITE_DONE) {
        rc = db_fail(s, err, "write chat");
        goto done;
    }
    hot_done(st);
    st = NULL;
    int64_t dict = 0;
    size_t written = 0;
    if ((rc = ps__pack_current_dict(s->pack, s->db, &dict, err)) != PS_OK)
        goto done;
    if ((rc = prepare_hot(s, HOT_SAVE_ROW,
                          "INSERT INTO messages(chat, id, live, dict, row) VALUES (?, ?, ?, ?, ?) "
                          "ON CONFLICT(chat, id) DO UPDATE SET live = excluded.live, "
                          "dict = excluded.dict, row = excluded.row",
                          &st, err)) != PS_OK)
        goto done;
    for (size_t i = 0; i < chat->nmessages && rc == PS_OK; i++) {
        ps_message *m = &chat->messages[i];
        if (!m->mark.dirty)
            continue;
        json_object *row = message_row(m);
        if (!row) {
            rc = ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
            break;
        }
        const char *rtext = ps__json_text(row, &len), *ptext = NULL;
        char *stripped = NULL;
        void *packed = NULL;
        size_t plen = 0;
        rc = rtext ? strip_id(m->id, rtext, len, &stripped, &ptext, &len, err)
                   : ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
        if (rc == PS_OK)
            rc = ps__pack(s->pack, dict, ptext, len, &packed, &plen, err);
        free(stripped);
        if (rc == PS_OK) {
            sqlite3_reset(st);
            sqlite3_bind_int64(st, 1, chat_n);
            bind_msg_key(st, 2, m->id);
            sqlite3_bind_int(st, 3, m->value != NULL);
            sqlite3_bind_int64(st, 4, dict);
            sqlite3_bind_blob(st, 5, packed, (int)plen, SQLITE_STATIC);
            if (sqlite3_step(st) != SQLITE_DONE)
                rc = db_fail(s, err, "write message");
            written++;
        }
        free(packed);
        json_object_put(row);
    }
    if (rc == PS_OK && written && !dict)
        rc = ps__pack_train(s->pack, s->db, err);
    if (rc == PS_OK)
        ps__chat_clear_dirty(chat);
done:
    hot_done(st);
    free(packed_header);
    json_object_put(header);
    return rc;
}

ps_code ps__lstore_chat_ids(ps_lstore *s, bool live_only, json_object **out, ps_error *err)
{
    *out = NULL;
    sqlite3_stmt *st = NULL;
    json_object *ids = json_object_new_array();
    if (!ids)
        return ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
    ps_code rc = prepare(s,
                         live_only ? "SELECT id FROM chats WHERE live ORDER BY id"
                                   : "SELECT id FROM chats ORDER BY id",
                         &st, err);
    int step = SQLITE_DONE;
    ps_code built = PS_OK;
    while (rc == PS_OK && built == PS_OK && (step = sqlite3_step(st)) == SQLITE_ROW)
        ps__json_push(&built, ids,
                      json_object_new_string((const char *)sqlite3_column_text(st, 0)));
    if (rc == PS_OK && built != PS_OK)
        rc = ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
    else if (rc == PS_OK && step != SQLITE_DONE)
        rc = db_fail(s, err, "list chats");
    sqlite3_finalize(st);
    if (rc != PS_OK) {
        json_object_put(ids);
        return rc;
    }
    *out = ids;
    return PS_OK;
}

static char *dup_col(sqlite3_stmt *st, int col)
{
    const unsigned char *t = sqlite3_column_text(st, col);
    return t ? strdup((const char *)t) : NULL;
}

ps_code ps__lstore_list(ps_lstore *s, ps_chat_info **list, size_t *count, ps_error *err)
{
    *list = NULL;
    *count = 0;
    sqlite3_stmt *st = NULL;
    ps_chat_info *items = NULL;
    size_t n = 0, cap = 0;
    ps_code rc = prepare(s,
                         "SELECT id, title, archived, created_ms, updated_ms, "
                         "(SELECT count(*) FROM messages m WHERE m.chat = c.n AND m.live) "
                         /* same millisecond: the later local change first */
                         "FROM chats c WHERE live ORDER BY updated_ms DESC, "
                         "(SELECT max(seq) FROM changes g WHERE g.chat_id = c.id) DESC, id",
                         &st, err);
    int step = SQLITE_DONE;
    while (rc == PS_OK && (step = sqlite3_step(st)) == SQLITE_ROW) {
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 16;
            ps_chat_info *grown = realloc(items, ncap * sizeof *grown);
            if (!grown) {
                rc = ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
                break;
            }
            items = grown;
            cap = ncap;
        }
        ps_chat_info *it = &items[n++];
        memset(it, 0, sizeof *it);
        it->id = dup_col(st, 0);
        it->title = dup_col(st, 1);
        it->archived = sqlite3_column_int(st, 2) != 0;
        it->created_ms = sqlite3_column_int64(st, 3);
        it->updated_ms = sqlite3_column_int64(st, 4);
        it->message_count = (size_t)sqlite3_column_int64(st, 5);
        if (!it->id || (sqlite3_column_type(st, 1) != SQLITE_NULL && !it->title))
            rc = ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
    }
    if (rc == PS_OK && step != SQLITE_DONE)
        rc = db_fail(s, err, "list chats");
    sqlite3_finalize(st);
    if (rc != PS_OK) {
        ps_chat_info_free(items, n);
        return rc;
    }
    *list = items;
    *count = n;
    return PS_OK;
}

/* ---- the change log ---- */

/* Binds `body` to `st`'s parameter `col`, packed (the caller frees *packed). */
static ps_code bind_body(ps_lstore *s, sqlite3_stmt *st, int col, const char *body, void **packed,
                         ps_error *err)
{
    size_t plen = 0;
    if (!body) /* the caller's ps__json_text ran out of memory */
        return ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
    ps_code rc = ps__pack(s->pack, 0, body, strlen(body), packed, &plen, err);
    if (rc == PS_OK)
        sqlite3_bind_blob(st, col, *packed, (int)plen, SQLITE_STATIC);
    return rc;
}

ps_code ps__lstore_change_add(ps_lstore *s, const char *chat_id, int kind, int64_t clock,
                              json_object *change, ps_error *err)
{
    sqlite3_stmt *st = NULL;
    void *packed = NULL;
    json_object *msgs;
    int64_t count = json_object_object_get_ex(change, "messages", &msgs) &&
                            json_object_is_type(msgs, json_type_array)
                        ? (int64_t)json_object_array_length(msgs)
                        : 0;
    ps_code rc = prepare(s,
                         "INSERT INTO changes(chat_id, kind, clock, messages, packed, body) "
                         "VALUES (?, ?, ?, ?, 1, ?)",
                         &st, err);
    if (rc != PS_OK)
        return rc;
    sqlite3_bind_text(st, 1, chat_id, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 2, kind);
    sqlite3_bind_int64(st, 3, clock);
    sqlite3_bind_int64(st, 4, count);
    rc = bind_body(s, st, 5, ps__json_text(change, NULL), &packed, err);
    if (rc == PS_OK && sqlite3_step(st) != SQLITE_DONE)
        rc = db_fail(s, err, "log a change");
    sqlite3_finalize(st);
    free(packed);
    return rc;
}

void ps__change_rows_free(ps_change_row *rows, size_t n)
{
    for (size_t i = 0; rows && i < n; i++) {
        free(rows[i].chat_id);
        free(rows[i].body);
    }
    free(rows);
}

ps_code ps__lstore_changes(ps_lstore *s, int64_t after, size_t max, size_t max_bytes,
                           ps_change_row **rows, size_t *n, bool *more, ps_error *err)
{
    *rows = NULL;
    *n = 0;
    *more = false;
    sqlite3_stmt *st = NULL;
    ps_change_row *items = NULL;
    size_t count = 0, bytes = 0;
    ps_code rc = prepare(s,
                         "SELECT seq, chat_id, kind, clock, body, packed, messages FROM changes "
                         "WHERE seq > ? ORDER BY seq LIMIT ?",
                         &st, err);
    if (rc != PS_OK)
        return rc;
    if (!(items = calloc(max ? max : 1, sizeof *items))) {
        sqlite3_finalize(st);
        return ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
    }
    sqlite3_bind_int64(st, 1, after);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)max + 1);
    int step;
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        char *body = NULL;
        size_t len = 0;
        bool packed = sqlite3_column_int(st, 5);
        /* the size first: the row after the batch is not unpacked for nothing */
        if (packed &&
            (rc = ps__unpacked_size(sqlite3_column_blob(st, 4), (size_t)sqlite3_column_bytes(st, 4),
                                    &len, err)) != PS_OK)
            break;
        if (!packed)
            len = (size_t)sqlite3_column_bytes(st, 4);
        if (count == max || (count > 0 && bytes + len > max_bytes)) {
            *more = true;
            break;
        }
        if (packed) {
            rc = ps__unpack(s->pack, s->db, 0, sqlite3_column_blob(st, 4),
                            (size_t)sqlite3_column_bytes(st, 4), &body, &len, err);
            if (rc != PS_OK)
                break;
        } else {
            body = dup_col(st, 4);
        }
        ps_change_row *r = &items[count++];
        r->seq = sqlite3_column_int64(st, 0);
        r->chat_id = dup_col(st, 1);
        r->kind = sqlite3_column_int(st, 2);
        r->clock = sqlite3_column_int64(st, 3);
        r->messages = sqlite3_column_int64(st, 6);
        r->body = body;
        r->body_len = len;
        bytes += len;
        if (!r->chat_id || !r->body) {
            rc = ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
            break;
        }
    }
    if (rc == PS_OK && step != SQLITE_DONE && step != SQLITE_ROW)
        rc = db_fail(s, err, "read the change log");
    sqlite3_finalize(st);
    if (rc != PS_OK) {
        ps__change_rows_free(items, count);
        return rc;
    }
    *rows = items;
    *n = count;
    return PS_OK;
}

ps_code ps__lstore_changes_fit(ps_lstore *s, size_t max, size_t max_bytes, bool *fit, ps_error *err)
{
    *fit = true;
    sqlite3_stmt *st = NULL;
    ps_code rc = prepare(s, "SELECT body, packed FROM changes ORDER BY seq LIMIT ?", &st, err);
    if (rc != PS_OK)
        return rc;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)max + 1);
    size_t count = 0, bytes = 0;
    int step = SQLITE_DONE;
    while (*fit && (step = sqlite3_step(st)) == SQLITE_ROW) {
        size_t len = (size_t)sqlite3_column_bytes(st, 0);
        if (sqlite3_column_int(st, 1) &&
            (rc = ps__unpacked_size(sqlite3_column_blob(st, 0), len, &len, err)) != PS_OK)
            break;
        /* the rule of ps__lstore_changes: at least one, then max and max_bytes */
        *fit = count < max && (count == 0 || bytes + len <= max_bytes);
        count++;
        bytes += len;
    }
    if (rc == PS_OK && *fit && step != SQLITE_DONE)
        rc = db_fail(s, err, "read the change log");
    sqlite3_finalize(st);
    return rc;
}

static ps_code exec_int(ps_lstore *s, const char *sql, int64_t a, ps_error *err)
{
    sqlite3_stmt *st = NULL;
    ps_code rc = prepare(s, sql, &st, err);
    if (rc != PS_OK)
        return rc;
    sqlite3_bind_int64(st, 1, a);
    if (sqlite3_step(st) != SQLITE_DONE)
        rc = db_fail(s, err, sql);
    sqlite3_finalize(st);
    return rc;
}

ps_code ps__lstore_changes_delete_upto(ps_lstore *s, int64_t seq, ps_error *err)
{
    return exec_int(s, "DELETE FROM changes WHERE seq <= ?", seq, err);
}

ps_code ps__lstore_changes_clear(ps_lstore *s, ps_error *err)
{
    return exec(s, "DELETE FROM changes", err);
}

ps_code ps__lstore_forget_synced(ps_lstore *s, ps_error *err)
{
    return exec(s,
                "DELETE FROM messages WHERE chat IN (SELECT n FROM chats WHERE id NOT IN "
                "(SELECT chat_id FROM changes));"
                "DELETE FROM chats WHERE id NOT IN (SELECT chat_id FROM changes);"
                "DELETE FROM touches WHERE chat NOT IN (SELECT n FROM chats)",
                err);
}

ps_code ps__lstore_change_update(ps_lstore *s, int64_t seq, int64_t clock, const char *body,
                                 ps_error *err)
{
    sqlite3_stmt *st = NULL;
    void *packed = NULL;
    ps_code rc =
        prepare(s, "UPDATE changes SET clock = ?, body = ?, packed = 1 WHERE seq = ?", &st, err);
    if (rc != PS_OK)
        return rc;
    sqlite3_bind_int64(st, 1, clock);
    rc = bind_body(s, st, 2, body, &packed, err);
    sqlite3_bind_int64(st, 3, seq);
    if (rc == PS_OK && sqlite3_step(st) != SQLITE_DONE)
        rc = db_fail(s, err, "update a change");
    sqlite3_finalize(st);
    free(packed);
    return rc;
}

static ps_code query_int(ps_lstore *s, const char *sql, const char *arg, int64_t *out,
                         ps_error *err)
{
    *out = 0;
    sqlite3_stmt *st = NULL;
    ps_code rc = prepare(s, sql, &st, err);
    if (rc != PS_OK)
        return rc;
    if (arg)
        sqlite3_bind_text(st, 1, arg, -1, SQLITE_STATIC);
    int step = sqlite3_step(st);
    if (step == SQLITE_ROW)
        *out = sqlite3_column_int64(st, 0);
    else if (step != SQLITE_DONE)
        rc = db_fail(s, err, sql);
    sqlite3_finalize(st);
    return rc;
}

ps_code ps__lstore_changes_count(ps_lstore *s, size_t *n, ps_error *err)
{
    int64_t v;
    ps_code rc = query_int(s, "SELECT count(*) FROM changes", NULL, &v, err);
    *n = (size_t)v;
    return rc;
}

ps_code ps__lstore_chat_pending(ps_lstore *s, const char *chat_id, bool *yes, ps_error *err)
{
    int64_t v;
    ps_code rc =
        query_int(s, "SELECT EXISTS (SELECT 1 FROM changes WHERE chat_id = ?)", chat_id, &v, err);
    *yes = v != 0;
    return rc;
}

ps_code ps__lstore_change_high(ps_lstore *s, int64_t *seq, ps_error *err)
{
    return query_int(s,
                     "SELECT coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'changes'), 0)",
                     NULL, seq, err);
}

/* ---- schema 1 -> 2 ---- */

/* Moves schema 1's message rows (renamed messages1) into the new
 * messages, packed; then drops the old tables. A row whose chat has no header is dropped (nothing
 * could load it). Runs inside the migration's transaction. */
static ps_code migrate_rows_2(ps_lstore *s, ps_error *err)
{
    sqlite3_stmt *sel = NULL, *ins = NULL;
    ps_code rc = prepare(s,
                         "SELECT c.n, m.id, m.row, m.live FROM messages1 m "
                         "JOIN chats2 c ON c.id = m.chat_id",
                         &sel, err);
    if (rc == PS_OK)
        rc = prepare(s, "INSERT INTO messages(chat, id, live, dict, row) VALUES (?, ?, ?, ?, ?)",
                     &ins, err);
    int step = SQLITE_DONE;
    int64_t dict = 0, moved = 0;
    while (rc == PS_OK && (step = sqlite3_step(sel)) == SQLITE_ROW) {
        /* as chat_save does: the first rows without a dictionary, then one
         * trained on them (which repacks them) for the rest */
        if (!dict && moved == PS_PACK_TRAIN_AT &&
            ((rc = ps__pack_train(s->pack, s->db, err)) != PS_OK ||
             (rc = ps__pack_current_dict(s->pack, s->db, &dict, err)) != PS_OK))
            break;
        moved++;
        json_object *row = NULL, *rest = NULL;
        ps_error perr;
        if (ps__json_parse((const char *)sqlite3_column_text(sel, 2),
                           (size_t)sqlite3_column_bytes(sel, 2), PS_JSON_MAX_DEPTH + 8, &row,
                           &perr) != PS_OK ||
            !json_object_is_type(row, json_type_array) || json_object_array_length(row) != 4) {
            json_object_put(row);
            rc = ps_error_set(err, PS_ERR_STORE, -1, "", "local store: corrupt message row");
            break;
        }
        ps_code built = PS_OK;
        rest = json_object_new_array_ext(3);
        for (size_t i = 1; i < 4; i++) {
            json_object *v = json_object_array_get_idx(row, i); /* the value may be null */
            ps__json_push_opt(&built, rest, v != NULL, json_object_get(v));
        }
        if (built != PS_OK) {
            json_object_put(rest);
            json_object_put(row);
            rc = ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
            break;
        }
        size_t len;
        const char *text = ps__json_text(rest, &len);
        void *packed = NULL;
        size_t plen = 0;
        rc = text ? ps__pack(s->pack, dict, text, len, &packed, &plen, err)
                  : ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
        if (rc == PS_OK) {
            sqlite3_reset(ins);
            sqlite3_bind_int64(ins, 1, sqlite3_column_int64(sel, 0));
            sqlite3_bind_text(ins, 2, (const char *)sqlite3_column_text(sel, 1), -1,
                              SQLITE_TRANSIENT);
            sqlite3_bind_int(ins, 3, sqlite3_column_int(sel, 3));
            sqlite3_bind_int64(ins, 4, dict);
            sqlite3_bind_blob(ins, 5, packed, (int)plen, SQLITE_STATIC);
            if (sqlite3_step(ins) != SQLITE_DONE)
                rc = db_fail(s, err, "migrate a message");
        }
        free(packed);
        json_object_put(rest);
        json_object_put(row);
    }
    if (rc == PS_OK && step != SQLITE_DONE)
        rc = db_fail(s, err, "migrate messages");
    sqlite3_finalize(sel);
    sqlite3_finalize(ins);
    if (rc == PS_OK)
        rc = exec(s,
                  "DROP TABLE messages1;"
                  "DROP TABLE chats; ALTER TABLE chats2 RENAME TO chats;",
                  err);
    return rc;
}

/* Packs schema 1's change bodies and counts their messages. */
static ps_code migrate_changes_2(ps_lstore *s, ps_error *err)
{
    int64_t after = 0;
    for (;;) {
        sqlite3_stmt *sel = NULL;
        int64_t seq = 0;
        char *body = NULL;
        ps_code rc = prepare(s,
                             "SELECT seq, body FROM changes WHERE seq > ? AND packed = 0 "
                             "ORDER BY seq LIMIT 1",
                             &sel, err);
        if (rc != PS_OK)
            return rc;
        sqlite3_bind_int64(sel, 1, after);
        int step = sqlite3_step(sel);
        if (step == SQLITE_ROW) {
            seq = sqlite3_column_int64(sel, 0);
            body = dup_col(sel, 1);
        }
        sqlite3_finalize(sel);
        if (step == SQLITE_DONE)
            return PS_OK;
        if (step != SQLITE_ROW)
            return db_fail(s, err, "migrate the change log");
        if (!body)
            return ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
        json_object *change = NULL, *msgs;
        ps_error perr;
        int64_t count = -1;
        if (ps__json_parse(body, strlen(body), PS_JSON_MAX_DEPTH, &change, &perr) == PS_OK)
            count = json_object_object_get_ex(change, "messages", &msgs) &&
                            json_object_is_type(msgs, json_type_array)
                        ? (int64_t)json_object_array_length(msgs)
                        : 0;
        json_object_put(change);
        sqlite3_stmt *upd = NULL;
        void *packed = NULL;
        rc = prepare(s, "UPDATE changes SET body = ?, packed = 1, messages = ? WHERE seq = ?", &upd,
                     err);
        if (rc == PS_OK)
            rc = bind_body(s, upd, 1, body, &packed, err);
        if (rc == PS_OK) {
            sqlite3_bind_int64(upd, 2, count);
            sqlite3_bind_int64(upd, 3, seq);
            if (sqlite3_step(upd) != SQLITE_DONE)
                rc = db_fail(s, err, "migrate a change");
        }
        sqlite3_finalize(upd);
        free(packed);
        free(body);
        if (rc != PS_OK)
            return rc;
        after = seq;
    }
}

static ps_code migrate_2(ps_lstore *s, ps_error *err)
{
    ps_code rc = exec(s, SCHEMA_2, err);
    if (rc == PS_OK)
        rc = migrate_rows_2(s, err);
    if (rc == PS_OK)
        rc = migrate_changes_2(s, err);
    if (rc == PS_OK) /* a store of 2,000 rows or more gets its dictionary now */
        rc = ps__pack_train(s->pack, s->db, err);
    return rc;
}
