/*
 * The no-op sync times the SQLite store keeps in memory (sqlite_user_seen)
 * are written about once a second, not at every request: a time that comes
 * in while a write transaction writes an older one of the same user starts
 * a new wait. Before, it was left due, and every later read transaction's
 * end wrote it again (one write transaction and fdatasync per request while
 * two server threads took turns at it). Includes the .c file to read the
 * store's flush deadline.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "../../src/store/store_sqlite.c"
#include "sqlite_fixture.h"
#include "store_fixture.h"

#include <pthread.h>
#include <unistd.h>

static int setup(void **state)
{
    return store_fixture_sqlite(state, "seenflush", "p.db");
}

/* A no-op sync's store side: a read transaction that leaves the time. */
static void poll_once(ps_store *s, int64_t ms)
{
    ps_error err;
    ps_user u;
    bool found = false;
    assert_int_equal(ps_store_begin(s, false, &err), PS_OK);
    assert_int_equal(s->ops->user_find(s, "carol", &u, &found, &err), PS_OK);
    assert_true(found);
    assert_int_equal(s->ops->user_seen(s, "carol", ms, &err), PS_OK);
    assert_int_equal(ps_store_commit(s, &err), PS_OK);
}

static void *poll_2000(void *arg)
{
    poll_once(arg, 2000);
    return NULL;
}

/* Waits (on the clock, not on another thread) until the kept times are due. */
static void wait_until_due(sqlite_store *ss)
{
    for (;;) {
        pthread_mutex_lock(&ss->seen_lock);
        int64_t at = ss->seen_flush_at;
        pthread_mutex_unlock(&ss->seen_lock);
        if (ps__time_monotonic_ms() >= at)
            return;
        usleep(20000);
    }
}

static void a_time_kept_past_a_write_waits_again(void **state)
{
    fixture *f = *state;
    ps_error err;
    ps_store *s = NULL;
    ps_user u;
    assert_int_equal(ps_store_open(f->url, &s, &err), PS_OK);
    sqlite_store *ss = (sqlite_store *)s;
    assert_int_equal(ps_store_begin(s, true, &err), PS_OK);
    assert_int_equal(s->ops->user_load(s, "carol", &u, &err), PS_OK);
    assert_int_equal(ps_store_commit(s, &err), PS_OK);

    poll_once(s, 1000); /* kept, not written */
    assert_int_equal(on_disk_last_sync(f->path, "carol"), 0);
    wait_until_due(ss);

    /* A write transaction takes carol's 1000 along; meanwhile another
     * thread's no-op sync leaves 2000 (its end cannot flush: the writer is
     * busy). */
    assert_int_equal(ps_store_begin(s, true, &err), PS_OK);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, poll_2000, s), 0);
    assert_int_equal(pthread_join(t, NULL), 0);
    int64_t before_commit = ps__time_monotonic_ms();
    assert_int_equal(ps_store_commit(s, &err), PS_OK);
    assert_int_equal(on_disk_last_sync(f->path, "carol"), 1000);

    /* 2000 waits a new second from the commit: it is not due now... */
    pthread_mutex_lock(&ss->seen_lock);
    assert_int_equal(ss->nseen, 1);
    assert_int_equal(ss->seen[0].ms, 2000);
    assert_true(ss->seen_flush_at >= before_commit + SEEN_FLUSH_MS);
    pthread_mutex_unlock(&ss->seen_lock);
    /* ...so the next request's end does not write it (unless this machine
     * took a whole second since the commit, when it may) */
    poll_once(s, 2000);
    if (ps__time_monotonic_ms() < before_commit + SEEN_FLUSH_MS)
        assert_int_equal(on_disk_last_sync(f->path, "carol"), 1000);

    /* and it is written once due: nothing is lost */
    wait_until_due(ss);
    poll_once(s, 3000);
    assert_int_equal(on_disk_last_sync(f->path, "carol"), 3000);
    ps_store_close(s);
    assert_int_equal(on_disk_last_sync(f->path, "carol"), 3000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(a_time_kept_past_a_write_waits_again, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
