/*
 * The client's local SQLite store; see lstore.h. Chat state goes through the
 * core codec (header and message-row forms), so what is stored is exactly
 * what ps_chat_merge works on; nothing here decides what wins.
 */
#include "client/lstore.h"
#include "core/chat_codec.h"
#include "core/json_parse.h"

#include <errno.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Forward migrations: entry i takes the schema from version i to i + 1. */
static const char *const MIGRATIONS[] = {
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
    "CREATE INDEX changes_by_chat ON changes(chat_id);",
};
#define SCHEMA_VERSION ((int)(sizeof MIGRATIONS / sizeof *MIGRATIONS))

struct ps_lstore {
    sqlite3 *db;
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

static ps_code migrate(ps_lstore *s, ps_error *err)
{
    sqlite3_stmt *st = NULL;
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
    for (int v = version; v < SCHEMA_VERSION && rc == PS_OK; v++)
        rc = exec(s, MIGRATIONS[v], err);
    char sql[64];
    snprintf(sql, sizeof sql, "PRAGMA user_version = %d", SCHEMA_VERSION);
    if (rc == PS_OK)
        rc = exec(s, sql, err);
    if (rc == PS_OK)
        return exec(s, "COMMIT", err);
    sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
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
    ps_code rc = exec(s, "PRAGMA journal_mode=WAL", err);
    if (rc == PS_OK)
        rc = exec(s, "PRAGMA synchronous=FULL", err);
    if (rc == PS_OK)
        rc = migrate(s, err);
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
    sqlite3_close(s->db);
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

static ps_code add_rows(ps_lstore *s, sqlite3_stmt *st, json_object *rows, ps_error *err)
{
    int step;
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        json_object *row = NULL;
        const char *text = (const char *)sqlite3_column_text(st, 0);
        ps_error perr;
        if (ps_json_parse(text, (size_t)sqlite3_column_bytes(st, 0), PS_JSON_MAX_DEPTH + 8, &row,
                          &perr) != PS_OK)
            return ps_error_set(err, PS_ERR_STORE, -1, "", "local store: corrupt message row");
        json_object_array_add(rows, row);
    }
    return step == SQLITE_DONE ? PS_OK : db_fail(s, err, "read messages");
}

ps_code ps__lstore_chat_load(ps_lstore *s, const char *id, bool all, const char *const *msg_ids,
                             size_t n, ps_chat **out, ps_error *err)
{
    *out = NULL;
    sqlite3_stmt *st = NULL;
    json_object *state = NULL, *rows = NULL;
    ps_code rc = prepare(s, "SELECT header FROM chats WHERE id = ?", &st, err);
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
    if (ps_json_parse((const char *)sqlite3_column_text(st, 0), (size_t)sqlite3_column_bytes(st, 0),
                      PS_JSON_MAX_DEPTH + 8, &state, &perr) != PS_OK) {
        rc = ps_error_set(err, PS_ERR_STORE, -1, "", "local store: corrupt chat %s", id);
        goto done;
    }
    sqlite3_finalize(st);
    st = NULL;
    if (!(rows = json_object_new_array())) {
        rc = ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
        goto done;
    }
    if (all) {
        if ((rc = prepare(s, "SELECT row FROM messages WHERE chat_id = ?", &st, err)) != PS_OK)
            goto done;
        sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
        rc = add_rows(s, st, rows, err);
    } else if (n) {
        rc = prepare(s, "SELECT row FROM messages WHERE chat_id = ? AND id = ?", &st, err);
        for (size_t i = 0; i < n && rc == PS_OK; i++) {
            sqlite3_reset(st);
            sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
            sqlite3_bind_text(st, 2, msg_ids[i], -1, SQLITE_STATIC);
            rc = add_rows(s, st, rows, err);
        }
    }
    if (rc != PS_OK)
        goto done;
    json_object_object_add(state, "m", rows);
    rows = NULL;
    if ((rc = ps_chat_state_from_json(state, out, err)) == PS_OK)
        (*out)->stored = true;
done:
    sqlite3_finalize(st);
    json_object_put(rows);
    json_object_put(state);
    return rc;
}

static json_object *message_row(const ps_message *m)
{
    json_object *row = json_object_new_array_ext(4);
    json_object *stamp = json_object_new_array_ext(3);
    if (!row || !stamp) {
        json_object_put(row);
        json_object_put(stamp);
        return NULL;
    }
    json_object_array_add(stamp, json_object_new_int64(m->stamp.ts));
    json_object_array_add(stamp, json_object_new_int64(m->stamp.lamport));
    json_object_array_add(stamp, json_object_new_string(m->stamp.device ? m->stamp.device : ""));
    json_object_array_add(row, json_object_new_string(m->id));
    json_object_array_add(row, json_object_get(m->value));
    json_object_array_add(row, stamp);
    json_object_array_add(row, json_object_new_int64(m->order_ts));
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
    json_object *header = ps_chat_header_to_json(chat);
    if (!header)
        return ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
    ps_code rc = prepare(s,
                         "INSERT INTO chats(id, header, live, title, archived, created_ms, "
                         "updated_ms) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET "
                         "header = excluded.header, live = excluded.live, title = excluded.title, "
                         "archived = excluded.archived, created_ms = excluded.created_ms, "
                         "updated_ms = excluded.updated_ms",
                         &st, err);
    if (rc != PS_OK)
        goto done;
    size_t len;
    const char *text = ps_json_text(header, &len);
    const ps_field *title = ps_chat_field(chat, "title");
    const ps_field *arch = ps_chat_field(chat, "isArchived");
    sqlite3_bind_text(st, 1, chat->id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, text, (int)len, SQLITE_STATIC);
    sqlite3_bind_int(st, 3, ps_chat_is_live(chat));
    if (title && json_object_is_type(title->value, json_type_string))
        sqlite3_bind_text(st, 4, json_object_get_string(title->value), -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, 4);
    sqlite3_bind_int(st, 5,
                     arch && json_object_is_type(arch->value, json_type_boolean) &&
                         json_object_get_boolean(arch->value));
    sqlite3_bind_int64(st, 6, chat->created_at.value ? chat->created_at.ms : 0);
    sqlite3_bind_int64(st, 7, chat_updated_ms(chat));
    if (sqlite3_step(st) != SQLITE_DONE) {
        rc = db_fail(s, err, "write chat");
        goto done;
    }
    sqlite3_finalize(st);
    st = NULL;
    if ((rc = prepare(s,
                      "INSERT INTO messages(chat_id, id, row, live) VALUES (?, ?, ?, ?) "
                      "ON CONFLICT(chat_id, id) DO UPDATE SET row = excluded.row, "
                      "live = excluded.live",
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
        const char *rtext = ps_json_text(row, &len);
        sqlite3_reset(st);
        sqlite3_bind_text(st, 1, chat->id, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, m->id, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, rtext, (int)len, SQLITE_STATIC);
        sqlite3_bind_int(st, 4, m->value != NULL);
        if (sqlite3_step(st) != SQLITE_DONE)
            rc = db_fail(s, err, "write message");
        json_object_put(row);
    }
    if (rc == PS_OK)
        ps_chat_clear_dirty(chat);
done:
    sqlite3_finalize(st);
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
    while (rc == PS_OK && (step = sqlite3_step(st)) == SQLITE_ROW)
        json_object_array_add(ids,
                              json_object_new_string((const char *)sqlite3_column_text(st, 0)));
    if (rc == PS_OK && step != SQLITE_DONE)
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
                         "(SELECT count(*) FROM messages m WHERE m.chat_id = c.id AND m.live) "
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

ps_code ps__lstore_change_add(ps_lstore *s, const char *chat_id, int kind, int64_t clock,
                              const char *body, ps_error *err)
{
    sqlite3_stmt *st = NULL;
    ps_code rc =
        prepare(s, "INSERT INTO changes(chat_id, kind, clock, body) VALUES (?, ?, ?, ?)", &st, err);
    if (rc != PS_OK)
        return rc;
    sqlite3_bind_text(st, 1, chat_id, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 2, kind);
    sqlite3_bind_int64(st, 3, clock);
    sqlite3_bind_text(st, 4, body, -1, SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_DONE)
        rc = db_fail(s, err, "log a change");
    sqlite3_finalize(st);
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
                         "SELECT seq, chat_id, kind, clock, body FROM changes WHERE seq > ? "
                         "ORDER BY seq LIMIT ?",
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
        size_t len = (size_t)sqlite3_column_bytes(st, 4);
        if (count == max || (count > 0 && bytes + len > max_bytes)) {
            *more = true;
            break;
        }
        ps_change_row *r = &items[count++];
        r->seq = sqlite3_column_int64(st, 0);
        r->chat_id = dup_col(st, 1);
        r->kind = sqlite3_column_int(st, 2);
        r->clock = sqlite3_column_int64(st, 3);
        r->body = dup_col(st, 4);
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
                "DELETE FROM messages WHERE chat_id NOT IN (SELECT chat_id FROM changes);"
                "DELETE FROM chats WHERE id NOT IN (SELECT chat_id FROM changes)",
                err);
}

ps_code ps__lstore_change_update(ps_lstore *s, int64_t seq, int64_t clock, const char *body,
                                 ps_error *err)
{
    sqlite3_stmt *st = NULL;
    ps_code rc = prepare(s, "UPDATE changes SET clock = ?, body = ? WHERE seq = ?", &st, err);
    if (rc != PS_OK)
        return rc;
    sqlite3_bind_int64(st, 1, clock);
    sqlite3_bind_text(st, 2, body, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, seq);
    if (sqlite3_step(st) != SQLITE_DONE)
        rc = db_fail(s, err, "update a change");
    sqlite3_finalize(st);
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
