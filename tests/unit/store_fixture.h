/*
 * The store fixture of the suites that run on both backends (test_store,
 * test_store_readers): a fresh SQLite file in a temporary folder, or, when
 * PS_TEST_DB names a PostgreSQL server (a URL, or "@FILE" holding one), a
 * fresh database on it; and of the SQLite-only suites that reach into the
 * file (test_store_sqlite, test_store_compress, test_store_docs,
 * test_store_hot): store_fixture_sqlite.
 * Header-only, like test_util.h.
 */
#ifndef PS_STORE_FIXTURE_H
#define PS_STORE_FIXTURE_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct fixture {
    char dir[64];
    char url[1200];
    char path[256]; /* the SQLite file ("" on PostgreSQL) */
} fixture;

/* The PostgreSQL server URL PS_TEST_DB names, or "" for SQLite. */
static inline void store_fixture_pg_base(char *out, size_t size)
{
    const char *v = getenv("PS_TEST_DB");
    out[0] = '\0';
    if (!v)
        return;
    if (v[0] == '@') {
        FILE *f = fopen(v + 1, "r");
        assert_non_null(f);
        assert_non_null(fgets(out, (int)size, f));
        fclose(f);
        out[strcspn(out, "\r\n")] = '\0';
    } else if (strncmp(v, "postgres", 8) == 0) {
        snprintf(out, size, "%s", v);
    }
}

/* A fresh store's URL in *state (a fixture *); `tag` names it (the
 * database ps_<tag>_<pid>_<n>, or the folder /tmp/ps-<tag>-XXXXXX). */
static inline int store_fixture_setup(void **state, const char *tag)
{
    static unsigned n;
    fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    char base[1024];
    store_fixture_pg_base(base, sizeof base);
    if (base[0]) {
        char name[64], sql[128];
        snprintf(name, sizeof name, "ps_%s_%d_%u", tag, (int)getpid(), n++);
        PGconn *pg = PQconnectdb(base);
        assert_int_equal(PQstatus(pg), CONNECTION_OK);
        snprintf(sql, sizeof sql, "CREATE DATABASE %s", name);
        PGresult *r = PQexec(pg, sql);
        assert_int_equal(PQresultStatus(r), PGRES_COMMAND_OK);
        PQclear(r);
        PQfinish(pg);
        char *slash = strrchr(base, '/');
        assert_non_null(slash);
        *slash = '\0';
        snprintf(f->url, sizeof f->url, "%s/%s", base, name);
    } else {
        snprintf(f->dir, sizeof f->dir, "/tmp/ps-%s-XXXXXX", tag);
        assert_non_null(mkdtemp(f->dir));
        snprintf(f->path, sizeof f->path, "%s/p.db", f->dir);
        snprintf(f->url, sizeof f->url, "sqlite:%s", f->path);
    }
    *state = f;
    return 0;
}

/* A fresh SQLite store whatever PS_TEST_DB says: the file `file` (a path
 * under the folder, which the store makes: "p.db", "sub/dir/p.db") in
 * /tmp/ps-<tag>-XXXXXX. */
static inline int store_fixture_sqlite(void **state, const char *tag, const char *file)
{
    fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    snprintf(f->dir, sizeof f->dir, "/tmp/ps-%s-XXXXXX", tag);
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof f->path, "%s/%s", f->dir, file);
    snprintf(f->url, sizeof f->url, "sqlite:%s", f->path);
    *state = f;
    return 0;
}

static inline int teardown(void **state)
{
    fixture *f = *state;
    if (f->dir[0]) {
        char cmd[160];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
        assert_int_equal(system(cmd), 0);
    }
    free(f);
    return 0;
}

#endif
