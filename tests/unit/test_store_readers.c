/*
 * Readers never wait for writers (store.h): a read transaction begun while
 * another thread holds a write transaction open completes, sees only what
 * was committed (its snapshot stays that even once the writer commits), and a no-op sync's work in
 * it (user_find, user_seen, stats) needs no writer. On the backend PS_TEST_DB names (unset =
 * SQLite; a postgres URL or "@FILE" = a fresh database), as test_store.c. Oracle: store.h's
 * transaction contract and WAL/REPEATABLE READ snapshot semantics. A reader that waited for the
 * writer would not finish within the (generous) wait and fail, not hang: the writer is then let go.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "core/chat_codec.h"
#include "core/json_parse.h"
#include "core/merge.h"
#include "store/store.h"
#include "store_fixture.h"

#include <errno.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* How long the reader may take while the writer holds its transaction:
 * far above any read; a reader behind the writer would wait forever. */
#define READER_WAIT_S 20

static int setup(void **state)
{
    return store_fixture_setup(state, "readers");
}

static int64_t next_seq;

static void save_titled(ps_store *s, int64_t user, const char *id, const char *title)
{
    ps_error err;
    ps_chat *c = ps__chat_new(id);
    ps_stamp st = {.ts = 1000 + next_seq, .lamport = 0, .device = (char *)"dev"};
    bool changed;
    assert_int_equal(ps__chat_put_field(c, "title", json_object_new_string(title), &st, &changed),
                     PS_OK);
    assert_int_equal(ps__lamport_set(&c->lamport, 1, "server"), PS_OK);
    json_object *doc = ps__chat_to_legacy(c);
    size_t len;
    const char *text = ps__json_text(doc, &len);
    assert_int_equal(s->ops->chat_save(s, user, c, text, len, ++next_seq, &err), PS_OK);
    json_object_put(doc);
    ps__chat_free(c);
}

/* The chat's title as the calling thread's transaction sees it; NULL when
 * there is no such chat. Caller frees. */
static char *title_of(ps_store *s, int64_t user, const char *id)
{
    ps_error err;
    ps_chat *c = NULL;
    assert_int_equal(s->ops->chat_load(s, user, id, false, &c, &err), PS_OK);
    char *t = c ? strdup(json_object_get_string(ps__chat_field(c, "title")->value)) : NULL;
    ps__chat_free(c);
    return t;
}

/* A writer thread: begins, changes c1 and adds c2, says it holds the
 * transaction, and commits only when told. */
typedef struct writer {
    ps_store *s;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool holding, go, done;
    ps_code rc;
} writer;

static void *writer_main(void *arg)
{
    writer *w = arg;
    ps_error err;
    ps_user u;
    ps_code rc = ps_store_begin(w->s, true, &err);
    if (rc == PS_OK && (rc = w->s->ops->user_load(w->s, "ann", &u, &err)) == PS_OK) {
        save_titled(w->s, u.id, "c1", "uncommitted");
        save_titled(w->s, u.id, "c2", "uncommitted");
    }
    pthread_mutex_lock(&w->lock);
    w->holding = true;
    pthread_cond_broadcast(&w->cond);
    while (!w->go)
        pthread_cond_wait(&w->cond, &w->lock);
    pthread_mutex_unlock(&w->lock);
    if (rc == PS_OK)
        rc = ps_store_commit(w->s, &err);
    pthread_mutex_lock(&w->lock);
    w->rc = rc;
    w->done = true;
    pthread_cond_broadcast(&w->cond);
    pthread_mutex_unlock(&w->lock);
    return NULL;
}

/* What a reader thread saw, in one read transaction begun while the
 * writer held its own. */
typedef struct read_result {
    ps_store *s;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool finished;
    ps_code rc;
    bool found;
    char *c1, *c2;
    int64_t last_sync_ms;
} read_result;

static void *reader_main(void *arg)
{
    read_result *r = arg;
    ps_error err;
    ps_user u;
    ps_store_stats stats;
    ps_code rc = ps_store_begin(r->s, false, &err);
    if (rc == PS_OK) {
        /* a v2 no-op sync's work: find the user, read, note the time */
        rc = r->s->ops->user_find(r->s, "ann", &u, &r->found, &err);
        if (rc == PS_OK && r->found) {
            r->c1 = title_of(r->s, u.id, "c1");
            r->c2 = title_of(r->s, u.id, "c2");
        }
        if (rc == PS_OK)
            rc = r->s->ops->user_seen(r->s, "ann", 777000, &err);
        if (rc == PS_OK)
            rc = r->s->ops->stats(r->s, &stats, &err);
        r->last_sync_ms = stats.last_sync_ms;
        if (rc == PS_OK)
            rc = ps_store_commit(r->s, &err);
        else
            ps_store_rollback(r->s);
    }
    pthread_mutex_lock(&r->lock);
    r->rc = rc;
    r->finished = true;
    pthread_cond_broadcast(&r->cond);
    pthread_mutex_unlock(&r->lock);
    return NULL;
}

static void wait_holding(writer *w)
{
    pthread_mutex_lock(&w->lock);
    while (!w->holding)
        pthread_cond_wait(&w->cond, &w->lock);
    pthread_mutex_unlock(&w->lock);
}

static void let_go(writer *w)
{
    pthread_mutex_lock(&w->lock);
    w->go = true;
    pthread_cond_broadcast(&w->cond);
    while (!w->done)
        pthread_cond_wait(&w->cond, &w->lock);
    pthread_mutex_unlock(&w->lock);
}

/* The writer started and holding its transaction open. */
static void writer_start(writer *w, pthread_t *t, ps_store *s)
{
    *w = (writer){.s = s};
    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->cond, NULL);
    assert_int_equal(pthread_create(t, NULL, writer_main, w), 0);
    wait_holding(w);
}

/* Let go (if not yet), joined, its commit's result checked. */
static void writer_finish(writer *w, pthread_t t)
{
    let_go(w);
    pthread_join(t, NULL);
    assert_int_equal(w->rc, PS_OK);
    pthread_mutex_destroy(&w->lock);
    pthread_cond_destroy(&w->cond);
}

/* ann's id, found in the calling thread's open transaction. */
static int64_t ann(ps_store *s)
{
    ps_error err;
    ps_user u;
    bool found = false;
    assert_int_equal(s->ops->user_find(s, "ann", &u, &found, &err), PS_OK);
    assert_true(found);
    return u.id;
}

/* The fixture's store, opened, with ann's chat c1 titled "committed". */
static ps_store *open_with_ann(const fixture *f)
{
    ps_error err;
    ps_user u;
    ps_store *s = NULL;
    assert_int_equal(ps_store_open(f->url, &s, &err), PS_OK);
    assert_int_equal(ps_store_begin(s, true, &err), PS_OK);
    assert_int_equal(s->ops->user_load(s, "ann", &u, &err), PS_OK);
    save_titled(s, u.id, "c1", "committed");
    assert_int_equal(ps_store_commit(s, &err), PS_OK);
    return s;
}

static void reader_is_not_blocked_by_an_open_write(void **state)
{
    ps_error err;
    ps_store *s = open_with_ann(*state);

    writer w;
    pthread_t wt, rt;
    writer_start(&w, &wt, s);

    read_result r = {.s = s};
    pthread_mutex_init(&r.lock, NULL);
    pthread_cond_init(&r.cond, NULL);
    assert_int_equal(pthread_create(&rt, NULL, reader_main, &r), 0);
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += READER_WAIT_S;
    pthread_mutex_lock(&r.lock);
    int waited = 0;
    while (!r.finished && waited != ETIMEDOUT)
        waited = pthread_cond_timedwait(&r.cond, &r.lock, &until);
    bool finished_while_held = r.finished;
    pthread_mutex_unlock(&r.lock);

    writer_finish(&w, wt); /* also frees a reader stuck behind the writer */
    pthread_join(rt, NULL);
    assert_true(finished_while_held);
    assert_int_equal(r.rc, PS_OK);
    assert_true(r.found);
    /* only what was committed when the read began */
    assert_non_null(r.c1);
    assert_string_equal(r.c1, "committed");
    assert_null(r.c2);
    assert_int_equal(r.last_sync_ms, 777000); /* user_seen counted at once */
    free(r.c1);
    free(r.c2);

    /* once committed, a new read transaction sees the writer's work */
    assert_int_equal(ps_store_begin(s, false, &err), PS_OK);
    int64_t id = ann(s);
    char *c1 = title_of(s, id, "c1"), *c2 = title_of(s, id, "c2");
    assert_string_equal(c1, "uncommitted");
    assert_string_equal(c2, "uncommitted");
    free(c1);
    free(c2);
    assert_int_equal(ps_store_commit(s, &err), PS_OK);
    ps_store_close(s);
    pthread_mutex_destroy(&r.lock);
    pthread_cond_destroy(&r.cond);
}

/* A read transaction reads one snapshot: a commit landing after its first
 * read is not seen until the next transaction (store.h). */
static void snapshot_holds_for_the_whole_transaction(void **state)
{
    ps_error err;
    ps_store *s = open_with_ann(*state);
    writer w;
    pthread_t wt;
    writer_start(&w, &wt, s);

    assert_int_equal(ps_store_begin(s, false, &err), PS_OK);
    int64_t id = ann(s);
    writer_finish(&w, wt); /* commits while our read transaction is open */
    char *c1 = title_of(s, id, "c1"), *c2 = title_of(s, id, "c2");
    assert_string_equal(c1, "committed");
    assert_null(c2);
    free(c1);
    assert_int_equal(ps_store_commit(s, &err), PS_OK);
    ps_store_close(s);
}

/* A read transaction writes nothing: a user it asks for is not created. */
static void read_transaction_creates_no_user(void **state)
{
    fixture *f = *state;
    ps_error err;
    ps_store *s = NULL;
    ps_user u;
    bool found = true;
    assert_int_equal(ps_store_open(f->url, &s, &err), PS_OK);
    assert_int_equal(ps_store_begin(s, false, &err), PS_OK);
    assert_int_equal(s->ops->user_find(s, "nobody", &u, &found, &err), PS_OK);
    assert_false(found);
    assert_int_equal(ps_store_commit(s, &err), PS_OK);
    assert_int_equal(ps_store_begin(s, false, &err), PS_OK);
    assert_int_equal(s->ops->user_find(s, "nobody", &u, &found, &err), PS_OK);
    assert_false(found);
    assert_int_equal(ps_store_commit(s, &err), PS_OK);
    ps_store_close(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(reader_is_not_blocked_by_an_open_write, setup, teardown),
        cmocka_unit_test_setup_teardown(snapshot_holds_for_the_whole_transaction, setup, teardown),
        cmocka_unit_test_setup_teardown(read_transaction_creates_no_user, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
