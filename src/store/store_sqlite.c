/*
 * SQLite backend: one database file, WAL journal, synchronous=FULL.
 *
 * FULL, not NORMAL: in WAL mode NORMAL may lose the last commits on power
 * loss, and a 200 answer promises the sync is on disk (docs/storage.md has
 * the measured cost). One connection guarded by a mutex held for the whole
 * transaction: a sync is a read-modify-write of the user's chats, and SQLite
 * serialises writers anyway.
 */
#include "store/store.h"
#include "core/chat_codec.h"
#include "core/json_parse.h"

#include <errno.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Forward migrations: entry i takes the schema from version i to i + 1. */
static const char *const MIGRATIONS[] = {
    /* 0 -> 1: users, their chats as merge state plus the rendered document */
    "CREATE TABLE users ("
    "  id INTEGER PRIMARY KEY,"
    "  name TEXT NOT NULL UNIQUE,"
    "  clock INTEGER NOT NULL DEFAULT 0,"
    "  last_sync_ms INTEGER NOT NULL DEFAULT 0);"
    "CREATE TABLE chats ("
    "  user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,"
    "  id TEXT NOT NULL,"
    "  live INTEGER NOT NULL,"
    "  state TEXT NOT NULL,"
    "  doc TEXT NOT NULL,"
    "  deleted_counter INTEGER NOT NULL DEFAULT 0,"
    "  deleted_device TEXT NOT NULL DEFAULT '',"
    "  PRIMARY KEY (user_id, id)) WITHOUT ROWID;",
    /* 1 -> 2: when each tombstone was made, so old ones can be purged */
    "ALTER TABLE chats ADD COLUMN deleted_at_ms INTEGER NOT NULL DEFAULT 0;"
    "UPDATE chats SET deleted_at_ms = coalesce(json_extract(state, '$.d[0]'), 0)"
    "  WHERE live = 0;"
    "CREATE INDEX chats_tombstones ON chats(deleted_at_ms) WHERE live = 0;",
};
#define SCHEMA_VERSION ((int)(sizeof MIGRATIONS / sizeof *MIGRATIONS))

enum {
    Q_USER_GET,
    Q_USER_ADD,
    Q_USER_SAVE,
    Q_CHAT_GET,
    Q_CHAT_PUT,
    Q_CHAT_EACH,
    Q_STATS,
    Q_PURGE,
    Q_COUNT
};

static const char *const QUERIES[Q_COUNT] = {
    [Q_USER_GET] = "SELECT id, clock, last_sync_ms FROM users WHERE name = ?1",
    [Q_USER_ADD] = "INSERT INTO users(name) VALUES (?1)",
    [Q_USER_SAVE] = "UPDATE users SET clock = ?2, last_sync_ms = ?3 WHERE id = ?1",
    [Q_CHAT_GET] = "SELECT state FROM chats WHERE user_id = ?1 AND id = ?2",
    [Q_CHAT_PUT] = "INSERT INTO chats(user_id, id, live, state, doc, deleted_counter,"
                   " deleted_device, deleted_at_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
                   " ON CONFLICT(user_id, id) DO UPDATE SET live = excluded.live,"
                   " state = excluded.state, doc = excluded.doc,"
                   " deleted_counter = excluded.deleted_counter,"
                   " deleted_device = excluded.deleted_device,"
                   " deleted_at_ms = excluded.deleted_at_ms",
    [Q_CHAT_EACH] = "SELECT id, doc, live, deleted_counter, deleted_device FROM chats"
                    " WHERE user_id = ?1 ORDER BY id",
    [Q_STATS] = "SELECT (SELECT count(*) FROM chats WHERE live = 1),"
                " (SELECT coalesce(max(last_sync_ms), 0) FROM users)",
    [Q_PURGE] = "DELETE FROM chats WHERE live = 0 AND deleted_at_ms < ?1",
};

typedef struct sqlite_store {
    ps_store base;
    sqlite3 *db;
    sqlite3_stmt *stmt[Q_COUNT];
    pthread_mutex_t lock;
} sqlite_store;

static ps_code db_error(sqlite_store *s, ps_error *err, const char *what)
{
    /* The detail goes to the operator's log via err->message; the HTTP layer
     * never shows it to clients. */
    int code = sqlite3_errcode(s->db);
    return ps_error_set(err, code == SQLITE_BUSY ? PS_ERR_BUSY : PS_ERR_STORE, -1, "",
                        "sqlite %s: %s", what, sqlite3_errmsg(s->db));
}

static sqlite3_stmt *stmt(sqlite_store *s, int q)
{
    sqlite3_stmt *st = s->stmt[q];
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return st;
}

static ps_code exec(sqlite_store *s, const char *sql, ps_error *err)
{
    char *msg = NULL;
    if (sqlite3_exec(s->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        ps_error_set(err, PS_ERR_STORE, -1, "", "sqlite: %s", msg ? msg : "error");
        sqlite3_free(msg);
        return PS_ERR_STORE;
    }
    return PS_OK;
}

static int schema_version(sqlite_store *s)
{
    sqlite3_stmt *st = NULL;
    int v = -1;
    if (sqlite3_prepare_v2(s->db, "SELECT max(version) FROM schema_version", -1, &st, NULL) ==
            SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return v;
}

static ps_code migrate(sqlite_store *s, ps_error *err)
{
    ps_code rc = exec(s,
                      "CREATE TABLE IF NOT EXISTS schema_version ("
                      " version INTEGER PRIMARY KEY,"
                      " applied_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ')))",
                      err);
    if (rc != PS_OK)
        return rc;
    int have = schema_version(s);
    if (have < 0)
        return db_error(s, err, "reading schema version");
    if (have > SCHEMA_VERSION)
        return ps_error_set(err, PS_ERR_SCHEMA, -1, "",
                            "the store has schema version %d; this polysyncd knows up to %d",
                            have, SCHEMA_VERSION);
    for (int v = have; v < SCHEMA_VERSION; v++) {
        char record[96];
        snprintf(record, sizeof record, "INSERT INTO schema_version(version) VALUES (%d)", v + 1);
        /* Each step is one transaction: a crash mid-migration leaves the
         * previous version, and the next start retries the step. */
        if ((rc = exec(s, "BEGIN IMMEDIATE", err)) != PS_OK)
            return rc;
        if ((rc = exec(s, MIGRATIONS[v], err)) != PS_OK || (rc = exec(s, record, err)) != PS_OK ||
            (rc = exec(s, "COMMIT", err)) != PS_OK) {
            exec(s, "ROLLBACK", NULL);
            return rc;
        }
    }
    return PS_OK;
}

/* mkdir -p for the folder that will hold `path`. */
static ps_code make_parent_dirs(const char *path, ps_error *err)
{
    char *copy = strdup(path);
    if (!copy)
        return PS_ERR_NOMEM;
    ps_code rc = PS_OK;
    for (char *p = copy + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(copy, 0700) != 0 && errno != EEXIST) {
            rc = ps_error_set(err, PS_ERR_IO, -1, "", "cannot create folder %s: %s", copy,
                              strerror(errno));
            break;
        }
        *p = '/';
    }
    free(copy);
    return rc;
}

static void sqlite_close(ps_store *base)
{
    sqlite_store *s = (sqlite_store *)base;
    for (int i = 0; i < Q_COUNT; i++)
        sqlite3_finalize(s->stmt[i]);
    sqlite3_close(s->db);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

static ps_code sqlite_begin(ps_store *base, bool write, ps_error *err)
{
    sqlite_store *s = (sqlite_store *)base;
    pthread_mutex_lock(&s->lock);
    ps_code rc = exec(s, write ? "BEGIN IMMEDIATE" : "BEGIN", err);
    if (rc != PS_OK)
        pthread_mutex_unlock(&s->lock);
    return rc;
}

static ps_code sqlite_commit(ps_store *base, ps_error *err)
{
    sqlite_store *s = (sqlite_store *)base;
    ps_code rc = exec(s, "COMMIT", err);
    if (rc != PS_OK)
        exec(s, "ROLLBACK", NULL);
    pthread_mutex_unlock(&s->lock);
    return rc;
}

static void sqlite_rollback(ps_store *base)
{
    sqlite_store *s = (sqlite_store *)base;
    exec(s, "ROLLBACK", NULL);
    pthread_mutex_unlock(&s->lock);
}

static ps_code sqlite_user_load(ps_store *base, const char *name, ps_user *out, ps_error *err)
{
    sqlite_store *s = (sqlite_store *)base;
    for (int attempt = 0; attempt < 2; attempt++) {
        sqlite3_stmt *st = stmt(s, Q_USER_GET);
        sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
        int r = sqlite3_step(st);
        if (r == SQLITE_ROW) {
            out->id = sqlite3_column_int64(st, 0);
            out->clock = sqlite3_column_int64(st, 1);
            out->last_sync_ms = sqlite3_column_int64(st, 2);
            sqlite3_reset(st);
            return PS_OK;
        }
        if (r != SQLITE_DONE)
            return db_error(s, err, "loading user");
        st = stmt(s, Q_USER_ADD);
        sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
        if (sqlite3_step(st) != SQLITE_DONE)
            return db_error(s, err, "adding user");
    }
    return db_error(s, err, "loading new user");
}

static ps_code sqlite_user_save(ps_store *base, const ps_user *u, ps_error *err)
{
    sqlite_store *s = (sqlite_store *)base;
    sqlite3_stmt *st = stmt(s, Q_USER_SAVE);
    sqlite3_bind_int64(st, 1, u->id);
    sqlite3_bind_int64(st, 2, u->clock);
    sqlite3_bind_int64(st, 3, u->last_sync_ms);
    return sqlite3_step(st) == SQLITE_DONE ? PS_OK : db_error(s, err, "saving user");
}

static ps_code sqlite_chat_load(ps_store *base, int64_t user, const char *id, ps_chat **out,
                                ps_error *err)
{
    sqlite_store *s = (sqlite_store *)base;
    *out = NULL;
    sqlite3_stmt *st = stmt(s, Q_CHAT_GET);
    sqlite3_bind_int64(st, 1, user);
    sqlite3_bind_text(st, 2, id, -1, SQLITE_STATIC);
    int r = sqlite3_step(st);
    if (r == SQLITE_DONE)
        return PS_OK;
    if (r != SQLITE_ROW)
        return db_error(s, err, "loading chat");
    json_object *state = NULL;
    ps_code rc = ps_json_parse((const char *)sqlite3_column_text(st, 0),
                               (size_t)sqlite3_column_bytes(st, 0), 10000, &state, err);
    sqlite3_reset(st);
    if (rc == PS_OK)
        rc = ps_chat_state_from_json(state, out, err);
    json_object_put(state);
    if (rc != PS_OK && rc != PS_ERR_NOMEM)
        return ps_error_set(err, PS_ERR_STORE, -1, "", "chat %s has a corrupt state", id);
    return rc;
}

static ps_code sqlite_chat_save(ps_store *base, int64_t user, const ps_chat *chat,
                                const char *doc, size_t doc_len, ps_error *err)
{
    sqlite_store *s = (sqlite_store *)base;
    json_object *state = ps_chat_state_to_json(chat);
    if (!state)
        return ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
    size_t state_len;
    const char *state_text = ps_json_text(state, &state_len);
    bool live = ps_chat_is_live(chat);
    sqlite3_stmt *st = stmt(s, Q_CHAT_PUT);
    sqlite3_bind_int64(st, 1, user);
    sqlite3_bind_text(st, 2, chat->id, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 3, live);
    sqlite3_bind_text(st, 4, state_text, (int)state_len, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, doc, (int)doc_len, SQLITE_STATIC);
    const ps_lamport *shown = &chat->deleted_lamport;
    sqlite3_bind_int64(st, 6, chat->has_tombstone ? shown->counter : 0);
    sqlite3_bind_text(st, 7, chat->has_tombstone && shown->id ? shown->id : "", -1,
                      SQLITE_STATIC);
    sqlite3_bind_int64(st, 8, chat->has_tombstone && !live ? chat->tombstone.ts : 0);
    ps_code rc = sqlite3_step(st) == SQLITE_DONE ? PS_OK : db_error(s, err, "saving chat");
    sqlite3_reset(st);
    json_object_put(state);
    return rc;
}

static ps_code sqlite_chat_each(ps_store *base, int64_t user, ps_chat_row_fn fn, void *ctx,
                                ps_error *err)
{
    sqlite_store *s = (sqlite_store *)base;
    sqlite3_stmt *st = stmt(s, Q_CHAT_EACH);
    sqlite3_bind_int64(st, 1, user);
    int r;
    while ((r = sqlite3_step(st)) == SQLITE_ROW) {
        ps_chat_row row = {
            .id = (const char *)sqlite3_column_text(st, 0),
            .doc = (const char *)sqlite3_column_text(st, 1),
            .doc_len = (size_t)sqlite3_column_bytes(st, 1),
            .live = sqlite3_column_int(st, 2) != 0,
            .deleted_counter = sqlite3_column_int64(st, 3),
            .deleted_device = (const char *)sqlite3_column_text(st, 4),
        };
        if (fn(ctx, &row)) {
            sqlite3_reset(st);
            return PS_OK;
        }
    }
    ps_code rc = r == SQLITE_DONE ? PS_OK : db_error(s, err, "listing chats");
    sqlite3_reset(st);
    return rc;
}

static ps_code sqlite_stats(ps_store *base, ps_store_stats *out, ps_error *err)
{
    sqlite_store *s = (sqlite_store *)base;
    sqlite3_stmt *st = stmt(s, Q_STATS);
    if (sqlite3_step(st) != SQLITE_ROW)
        return db_error(s, err, "reading stats");
    out->live_chats = sqlite3_column_int64(st, 0);
    out->last_sync_ms = sqlite3_column_int64(st, 1);
    sqlite3_reset(st);
    return PS_OK;
}

static ps_code sqlite_purge_tombstones(ps_store *base, int64_t older_than_ms, int64_t *purged,
                                       ps_error *err)
{
    sqlite_store *s = (sqlite_store *)base;
    sqlite3_stmt *st = stmt(s, Q_PURGE);
    sqlite3_bind_int64(st, 1, older_than_ms);
    if (sqlite3_step(st) != SQLITE_DONE)
        return db_error(s, err, "purging tombstones");
    *purged = sqlite3_changes64(s->db);
    return PS_OK;
}

static const struct ps_store_ops SQLITE_OPS = {
    .name = "sqlite",
    .begin = sqlite_begin,
    .commit = sqlite_commit,
    .rollback = sqlite_rollback,
    .user_load = sqlite_user_load,
    .user_save = sqlite_user_save,
    .chat_load = sqlite_chat_load,
    .chat_save = sqlite_chat_save,
    .chat_each = sqlite_chat_each,
    .stats = sqlite_stats,
    .purge_tombstones = sqlite_purge_tombstones,
    .close = sqlite_close,
};

ps_code ps__store_sqlite_open(const char *path, ps_store **out, ps_error *err)
{
    *out = NULL;
    ps_code rc = make_parent_dirs(path, err);
    if (rc != PS_OK)
        return rc;
    sqlite_store *s = calloc(1, sizeof *s);
    if (!s)
        return ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
    s->base.ops = &SQLITE_OPS;
    pthread_mutex_init(&s->lock, NULL);
    if (sqlite3_open_v2(path, &s->db,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                        NULL) != SQLITE_OK) {
        rc = ps_error_set(err, PS_ERR_STORE, -1, "", "cannot open %s: %s", path,
                          s->db ? sqlite3_errmsg(s->db) : "out of memory");
        goto fail;
    }
    sqlite3_busy_timeout(s->db, 5000);
    if ((rc = exec(s, "PRAGMA journal_mode=WAL", err)) != PS_OK ||
        (rc = exec(s, "PRAGMA synchronous=FULL", err)) != PS_OK ||
        (rc = exec(s, "PRAGMA foreign_keys=ON", err)) != PS_OK ||
        (rc = migrate(s, err)) != PS_OK)
        goto fail;
    for (int i = 0; i < Q_COUNT; i++) {
        if (sqlite3_prepare_v3(s->db, QUERIES[i], -1, SQLITE_PREPARE_PERSISTENT, &s->stmt[i],
                               NULL) != SQLITE_OK) {
            rc = db_error(s, err, "preparing statements");
            goto fail;
        }
    }
    *out = &s->base;
    return PS_OK;
fail:
    sqlite_close(&s->base);
    return rc;
}
