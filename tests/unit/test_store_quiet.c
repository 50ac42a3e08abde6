/*
 * quiet_user (store.h; SQLite: store/sqlite_quiet.h): a user's row given
 * without a transaction must be what a transaction begun now reads. The
 * oracle is the file itself: after any commit — through this store, or by
 * another process writing the file with SQLite directly, as `polysyncd
 * import` does on a live store — the row must not come back from memory
 * until a transaction has read it again, and then it must be the row that
 * transaction read (the other process's value).
 *
 * The other process is this program run again (posix_spawn of
 * /proc/self/exe, a fresh process: SQLite connections must not cross a
 * fork) with
 * `--commit-elsewhere FILE NAME SEQ`.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "store/store.h"
#include "store_fixture.h"

#include <spawn.h>
#include <sqlite3.h>
#include <stdio.h>
#include <sys/wait.h>

extern char **environ;
static const char *self_path;

static int setup(void **state)
{
    return store_fixture_sqlite(state, "quiet", "q.db");
}

static ps_store *open_store(void **state)
{
    fixture *f = *state;
    ps_store *s = NULL;
    ps_error err;
    ps_error_clear(&err);
    assert_int_equal(ps_store_open(f->url, &s, &err), PS_OK);
    assert_non_null(s->ops->quiet_user);
    return s;
}

/* Sets the user's sequence in a write transaction of the store (making
 * the user when new); its id. */
static int64_t commit_seq(ps_store *s, const char *name, int64_t seq)
{
    ps_error err;
    ps_error_clear(&err);
    ps_user u;
    assert_int_equal(ps_store_begin(s, true, &err), PS_OK);
    assert_int_equal(s->ops->user_load(s, name, &u, &err), PS_OK);
    u.seq = seq;
    assert_int_equal(s->ops->user_save(s, &u, &err), PS_OK);
    assert_int_equal(ps_store_commit(s, &err), PS_OK);
    return u.id;
}

/* The row as a read transaction reads it (and, SQLite, notes it). */
static ps_user read_in_transaction(ps_store *s, const char *name)
{
    ps_error err;
    ps_error_clear(&err);
    ps_user u;
    bool found = false;
    assert_int_equal(ps_store_begin_user_find(s, name, &u, &found, &err), PS_OK);
    assert_true(found);
    assert_int_equal(ps_store_commit(s, &err), PS_OK);
    return u;
}

/* quiet_user's answer: found or not, and the row. */
static bool quiet(ps_store *s, const char *name, ps_user *out)
{
    ps_error err;
    ps_error_clear(&err);
    bool found = true;
    assert_int_equal(s->ops->quiet_user(s, name, out, &found, &err), PS_OK);
    return found;
}

static void commit_in_another_process(const char *path, const char *name, int64_t seq)
{
    char seq_text[32];
    snprintf(seq_text, sizeof seq_text, "%lld", (long long)seq);
    char *argv[] = {
        (char *)self_path, "--commit-elsewhere", (char *)path, (char *)name, seq_text, NULL};
    pid_t pid;
    assert_int_equal(posix_spawn(&pid, self_path, NULL, NULL, argv, environ), 0);
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

static void given_back_only_while_nothing_is_committed(void **state)
{
    ps_store *s = open_store(state);
    int64_t id = commit_seq(s, "alice", 5);
    ps_user got;
    assert_false(quiet(s, "alice", &got)); /* never read yet */
    assert_false(quiet(s, "nobody", &got));

    ps_user read = read_in_transaction(s, "alice");
    assert_int_equal(read.seq, 5);
    assert_true(quiet(s, "alice", &got));
    assert_int_equal(got.id, id);
    assert_int_equal(got.seq, 5);
    assert_memory_equal(&got, &read, sizeof got);
    assert_true(quiet(s, "alice", &got)); /* and again: reading changes nothing */

    commit_seq(s, "alice", 6); /* this store's own commit */
    assert_false(quiet(s, "alice", &got));
    assert_int_equal(read_in_transaction(s, "alice").seq, 6);
    assert_true(quiet(s, "alice", &got));
    assert_int_equal(got.seq, 6);

    /* another user's row is its own: alice's is not given for bob */
    commit_seq(s, "bob", 40);
    assert_int_equal(read_in_transaction(s, "bob").seq, 40);
    assert_true(quiet(s, "bob", &got));
    assert_int_equal(got.seq, 40);
    ps_store_close(s);
}

static void another_process_commit_is_never_hidden(void **state)
{
    fixture *f = *state;
    ps_store *s = open_store(state);
    commit_seq(s, "alice", 6);
    assert_int_equal(read_in_transaction(s, "alice").seq, 6);
    ps_user got;
    assert_true(quiet(s, "alice", &got));

    commit_in_another_process(f->path, "alice", 9);
    assert_false(quiet(s, "alice", &got));
    assert_int_equal(read_in_transaction(s, "alice").seq, 9);
    assert_true(quiet(s, "alice", &got));
    assert_int_equal(got.seq, 9);

    /* a second time: the log keeps growing, or restarts after a checkpoint */
    commit_in_another_process(f->path, "alice", 12);
    assert_false(quiet(s, "alice", &got));
    assert_int_equal(read_in_transaction(s, "alice").seq, 12);
    ps_store_close(s);
}

/* Many commits by another process, each followed at once by a look: none
 * may be missed, whatever the log's state (grown, checkpointed, restarted). */
static void every_commit_of_another_process_is_seen(void **state)
{
    fixture *f = *state;
    ps_store *s = open_store(state);
    commit_seq(s, "alice", 1);
    for (int64_t seq = 2; seq < 40; seq++) {
        ps_user got;
        assert_int_equal(read_in_transaction(s, "alice").seq, seq - 1);
        assert_true(quiet(s, "alice", &got));
        if (seq % 3 == 0) { /* the log copied into the file and restarted */
            sqlite3 *db = NULL;
            assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
            assert_int_equal(
                sqlite3_wal_checkpoint_v2(db, NULL, SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL),
                SQLITE_OK);
            sqlite3_close(db);
        }
        commit_in_another_process(f->path, "alice", seq);
        assert_false(quiet(s, "alice", &got));
    }
    ps_store_close(s);
}

/* The other process: a plain SQLite connection, as another program has. */
static int commit_elsewhere(const char *path, const char *name, const char *seq)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    int ok = sqlite3_open(path, &db) == SQLITE_OK &&
             sqlite3_prepare_v2(db, "UPDATE users SET seq = ?2 WHERE name = ?1", -1, &st, NULL) ==
                 SQLITE_OK;
    if (ok) {
        sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, atoll(seq));
        ok = sqlite3_step(st) == SQLITE_DONE && sqlite3_changes(db) == 1;
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    return ok ? 0 : 1;
}

int main(int argc, char **argv)
{
    if (argc == 5 && strcmp(argv[1], "--commit-elsewhere") == 0)
        return commit_elsewhere(argv[2], argv[3], argv[4]);
    self_path = "/proc/self/exe";
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(given_back_only_while_nothing_is_committed, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(another_process_commit_is_never_hidden, setup, teardown),
        cmocka_unit_test_setup_teardown(every_commit_of_another_process_is_seen, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
