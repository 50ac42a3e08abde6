/*
 * For the suites that include src/store/store_sqlite.c to look into the
 * file beside what the store's operations say (test_store_compress,
 * test_store_docs, test_store_hot, test_store_sqlite,
 * test_store_seen_flush): one-value SQL reads on the store's own
 * connection or, where the oracle is the file and not the store, on a
 * connection of their own; and a file built to an older schema by the
 * store's own MIGRATIONS (a migration test's starting point). Include
 * after store_sqlite.c (sqlite_store and MIGRATIONS come from it).
 * Header-only, like test_util.h.
 */
#ifndef PS_SQLITE_FIXTURE_H
#define PS_SQLITE_FIXTURE_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <sqlite3.h>
#include <stdio.h>
#include <string.h>

/* The integer in the first column of `sql`'s first row (which must be). */
static inline int64_t query_int(sqlite_store *s, const char *sql)
{
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(s->db, sql, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int64_t v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

/* The same as text; the caller frees it. */
static inline char *query_text(sqlite_store *s, const char *sql)
{
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(s->db, sql, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    char *v = strdup((const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    return v;
}

/* A user's last_sync_ms as a separate read-only connection sees it on
 * disk (-1: no such user): the oracle is the file, not the store. */
static inline int64_t on_disk_last_sync(const char *path, const char *name)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    int64_t ms = -1;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    assert_int_equal(
        sqlite3_prepare_v2(db, "SELECT last_sync_ms FROM users WHERE name = ?1", -1, &st, NULL),
        SQLITE_OK);
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    if (sqlite3_step(st) == SQLITE_ROW)
        ms = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return ms;
}

/* Stands in for the store's ps_pack_doc, which a migration step names: a
 * file built by hand has no rows then, so the real one is never needed. */
static inline void sqlite_fixture_same_value(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
    (void)argc;
    sqlite3_result_value(ctx, argv[0]);
}

/* Opens the SQLite file `path` (new) and brings it to schema `version` as
 * the store would have, migration by migration, each recorded in
 * schema_version; the caller then writes rows as that schema did, closes
 * it and opens the store on it. */
static inline sqlite3 *sqlite_at_schema(const char *path, int version)
{
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    char *msg = NULL;
    assert_int_equal(sqlite3_exec(db,
                                  "CREATE TABLE schema_version (version INTEGER PRIMARY KEY,"
                                  " applied_at TEXT NOT NULL DEFAULT '')",
                                  NULL, NULL, &msg),
                     SQLITE_OK);
    assert_int_equal(sqlite3_create_function(db, "ps_pack_doc", 1, SQLITE_UTF8, NULL,
                                             sqlite_fixture_same_value, NULL, NULL),
                     SQLITE_OK);
    for (int v = 0; v < version; v++) {
        char rec[80];
        snprintf(rec, sizeof rec, "INSERT INTO schema_version(version) VALUES (%d)", v + 1);
        if (sqlite3_exec(db, MIGRATIONS[v], NULL, NULL, &msg) != SQLITE_OK)
            fail_msg("migration %d: %s", v, msg);
        assert_int_equal(sqlite3_exec(db, rec, NULL, NULL, &msg), SQLITE_OK);
    }
    return db;
}

#endif
