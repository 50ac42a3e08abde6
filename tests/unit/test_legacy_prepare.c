/*
 * A legacy sync's per-chat preparation on two threads (sync_legacy.c,
 * prep_run; share.h): the content hash, pre-check, parse and validation of
 * each chat, taken by the request thread and the helper from one counter.
 *
 * What must not change with the second thread:
 * - a bad body's error is its first bad chat's in the body's order (the
 *   rule of legacy_body.h and sync_legacy.c's prepare_chats, as one thread
 *   met the chats), even when a later bad chat failed first. The tests force that
 *   order: the chat source is wrapped so that the early bad chat's
 *   pre-check waits until the later one's failure is recorded, which only
 *   the other thread can do. The oracle is the body as built here (which
 *   chat is bad, where its bad byte is) and the one-thread run of the same
 *   body.
 * - the chats' hashes are those of each chat's own bytes, with chats read
 *   back from the spool's file by two readers at once;
 * - so are the trees and chats the merge loop is handed, made on two
 *   threads (legacy_pipe.h): every chat in order, the ones asked for made,
 *   the others not; a failure stops the loop and is its answer.
 * - the chats the content pass certifies valid (content_hash.h) are not
 *   pre-checked or parsed by the parse pass, the others are, and the
 *   error is the same as when every chat is parsed.
 *
 * The file under test is included to reach its static functions.
 */
#include "../../src/server/sync_legacy.c"

#include "test_util.h"
#include "server/legacy_body.h"

#include <sched.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#define CHATS 48
#define CONTENT_BYTES 12000 /* 48 x 12 KB: over SHARE_MIN_BYTES */

/* A body of CHATS chats; chat `bad_a` and `bad_b` (or -1) are bad as
 * `kind` says: "json" (a bare word where a value goes: malformed JSON) or
 * "message" (a message without an id: invalid). *bad_at[k]: the body's
 * offset of the bad chat's bad byte (json). Caller frees. */
static char *make_body(const char *kind, int bad_a, int bad_b, size_t bad_at[2])
{
    char *content = malloc(CONTENT_BYTES + 1);
    memset(content, 'x', CONTENT_BYTES);
    content[CONTENT_BYTES] = '\0';
    size_t cap = (size_t)CHATS * (CONTENT_BYTES + 200) + 100, len = 0;
    char *body = malloc(cap);
    len += (size_t)snprintf(body + len, cap - len, "{\"deviceId\":\"D\",\"chats\":[");
    for (int i = 0; i < CHATS; i++) {
        bool bad = i == bad_a || i == bad_b;
        bool bad_json = bad && strcmp(kind, "json") == 0;
        bool no_id = bad && strcmp(kind, "message") == 0;
        len += (size_t)snprintf(body + len, cap - len,
                                "%s{\"id\":\"c%d\",\"title\":\"t\",\"messages\":[{%s\"role\":"
                                "\"user\",\"content\":\"%s\",\"timestamp\":1}]",
                                i ? "," : "", i, no_id ? "" : "\"id\":\"m\",", content);
        if (bad_json) {
            bad_at[i == bad_a ? 0 : 1] = len + strlen(",\"x\":");
            len += (size_t)snprintf(body + len, cap - len, ",\"x\":nope");
        }
        len += (size_t)snprintf(body + len, cap - len, "}");
    }
    snprintf(body + len, cap - len, "]}");
    free(content);
    return body;
}

/* The legacy body's source, wrapped: `readers` as given; with `wait_for`,
 * chat `early`'s pre-check waits until the job has recorded chat `late`'s
 * failure; with `meet`, reader 0's first read waits until reader 1 has
 * read (so both threads surely take part). `checks` counts pre-checks. */
typedef struct wrap {
    ps_chat_source inner;
    prep_job *job;
    bool wait_for, meet;
    size_t early, late;
    atomic_bool reader1_seen;
    atomic_size_t checks;
} wrap;

/* Waits until `done` says so; false after a minute (the helper never came). */
static bool wait_until(bool (*done)(wrap *), wrap *w)
{
    time_t end = time(NULL) + 60;
    while (!done(w))
        if (time(NULL) > end)
            return false;
        else
            sched_yield();
    return true;
}

static bool late_recorded(wrap *w)
{
    return atomic_load(&w->job->first_bad) == w->late;
}

static bool reader1_came(wrap *w)
{
    return atomic_load(&w->reader1_seen);
}

static ps_code wrap_bytes(void *cls, unsigned reader, size_t i, const char **text, size_t *len,
                          ps_error *err)
{
    wrap *w = cls;
    if (reader == 1)
        atomic_store(&w->reader1_seen, true);
    if (w->meet && reader == 0 && !wait_until(reader1_came, w))
        fail_msg("the helper thread never took part");
    return w->inner.bytes(w->inner.cls, reader, i, text, len, err);
}

static ps_code wrap_check(void *cls, unsigned reader, size_t i, ps_error *err)
{
    wrap *w = cls;
    atomic_fetch_add(&w->checks, 1);
    if (w->wait_for && i == w->early && !wait_until(late_recorded, w))
        fail_msg("chat %zu's failure was never recorded (no second thread?)", w->late);
    return w->inner.check(w->inner.cls, reader, i, err);
}

static uint64_t wrap_hash(void *cls, size_t i)
{
    wrap *w = cls;
    return w->inner.hash(w->inner.cls, i);
}

static size_t wrap_length(void *cls, size_t i)
{
    wrap *w = cls;
    return w->inner.length(w->inner.cls, i);
}

typedef struct run {
    char dir[64];
    ps_legacy_body *lb;
    wrap w;
    ps_chat_source src;
    prepared p;
    prep_job job;
    ps_limits limits;
    ps_sync_ctx ctx;
} run;

/* `body` taken as the endpoint takes it, its chats in memory up to
 * `memory_max` (then in the spool's file), behind a wrap. */
static run *run_new(const char *body, size_t memory_max, unsigned readers)
{
    run *r = calloc(1, sizeof *r);
    snprintf(r->dir, sizeof r->dir, "/tmp/ps_prepare_XXXXXX");
    assert_non_null(mkdtemp(r->dir));
    ps_legacy_body_config cfg = {.max_bytes = SIZE_MAX,
                                 .max_chats = SIZE_MAX,
                                 .max_depth = PS_JSON_MAX_DEPTH,
                                 .envelope_max = PS_ENVELOPE_MAX_BYTES,
                                 .chat_max = PS_CHAT_MAX_BYTES,
                                 .spool_dir = r->dir,
                                 .memory_max = memory_max};
    r->lb = ps_legacy_body_new(&cfg);
    assert_non_null(r->lb);
    assert_int_equal(ps_legacy_body_feed(r->lb, body, strlen(body)), PS_OK);
    ps_error err;
    assert_int_equal(ps_legacy_body_finish(r->lb, &err), PS_OK);
    ps_legacy_body_chats(r->lb, &r->w.inner);
    assert_int_equal(r->w.inner.count, CHATS);
    r->src = r->w.inner;
    r->src.bytes = wrap_bytes;
    r->src.check = wrap_check;
    r->src.hash = wrap_hash;
    r->src.length = wrap_length;
    r->src.cls = &r->w;
    r->src.readers = readers;
    r->w.job = &r->job;
    atomic_init(&r->w.reader1_seen, false);
    atomic_init(&r->w.checks, 0);
    r->p.hashes = calloc(CHATS, sizeof *r->p.hashes);
    r->p.contents = calloc(CHATS, sizeof *r->p.contents);
    r->p.ids = calloc(CHATS, sizeof *r->p.ids);
    r->p.valid = calloc(CHATS, sizeof *r->p.valid);
    r->p.candidate = calloc(CHATS, sizeof *r->p.candidate); /* all NOT_SENT */
    r->limits = ps__limits_default();
    r->ctx = (ps_sync_ctx){.user = "u", .limits = &r->limits};
    r->job = (prep_job){.ctx = &r->ctx,
                        .src = &r->src,
                        .p = &r->p,
                        .content_hash = ps_content_hash_in_place_checked};
    return r;
}

static void run_free(run *r)
{
    prepared_free(&r->p);
    ps_legacy_body_free(r->lb);
    rmdir(r->dir);
    free(r);
}

/* One pass over `body`: its error in *err. Two threads (readers 2) with
 * chat `early`'s pre-check waiting for chat `late`'s failure, or one. */
static ps_code one_pass(const char *body, enum prep_pass pass, unsigned readers, size_t early,
                        size_t late, ps_error *err)
{
    run *r = run_new(body, 1 << 20, readers);
    r->job.pass = pass;
    r->w.wait_for = readers == 2;
    r->w.early = early;
    r->w.late = late;
    ps_error_clear(err);
    ps_code rc = prep_run(&r->job, err);
    run_free(r);
    return rc;
}

static void assert_same_error(const ps_error *a, const ps_error *b)
{
    assert_int_equal(a->code, b->code);
    assert_int_equal(a->chat_index, b->chat_index);
    assert_string_equal(a->field, b->field);
    assert_string_equal(a->message, b->message);
}

/* Chats 1 and 46 are malformed; 46's failure is recorded first: the error
 * is still chat 1's, naming its bad byte, as one thread reports it. */
static void the_first_malformed_chat_is_reported(void **state)
{
    (void)state;
    size_t at[2] = {0, 0};
    char *body = make_body("json", 1, CHATS - 2, at);
    ps_error two, one;
    assert_int_equal(one_pass(body, CONTENT_PASS, 2, 1, CHATS - 2, &two), PS_ERR_MALFORMED);
    char expected[64];
    snprintf(expected, sizeof expected, "at byte %zu", at[0]);
    if (!strstr(two.message, expected))
        fail_msg("\"%s\" does not name chat 1's bad byte (%s)", two.message, expected);
    assert_int_equal(one_pass(body, CONTENT_PASS, 1, 1, CHATS - 2, &one), PS_ERR_MALFORMED);
    assert_same_error(&two, &one);
    free(body);
}

/* Chats 1 and 46 have a message without an id (docs/protocol.md: every
 * message has one); 46's failure is recorded first: the error is chat
 * 1's, as one thread reports it. */
static void the_first_invalid_chat_is_reported(void **state)
{
    (void)state;
    char *body = make_body("message", 1, CHATS - 2, NULL);
    ps_error two, one;
    assert_int_equal(one_pass(body, PARSE_PASS, 2, 1, CHATS - 2, &two), PS_ERR_INVALID);
    assert_int_equal(two.chat_index, 1);
    assert_int_equal(one_pass(body, PARSE_PASS, 1, 1, CHATS - 2, &one), PS_ERR_INVALID);
    assert_same_error(&two, &one);
    free(body);
}

/* Both passes as prepare_chats runs them, on two threads, chats 1 and 46
 * invalid (a message without an id) and 46's failure recorded first: the
 * content pass certifies every other chat, the parse pass pre-checks (and
 * parses) only the two, and its error is the one every chat's parse gives
 * (the parse pass alone, one thread). A valid body: none is pre-checked. */
static void certified_chats_are_not_parsed_before_their_merge(void **state)
{
    (void)state;
    char *body = make_body("message", 1, CHATS - 2, NULL);
    run *r = run_new(body, 1 << 20, 2);
    r->w.wait_for = true;
    r->w.early = 1;
    r->w.late = CHATS - 2;
    ps_error err, every;
    ps_error_clear(&err);
    r->job.pass = CONTENT_PASS;
    assert_int_equal(prep_run(&r->job, &err), PS_OK);
    assert_int_equal(atomic_load(&r->w.checks), 0); /* every chat has a content hash */
    for (size_t i = 0; i < CHATS; i++)
        if (r->p.valid[i] != (i != 1 && i != CHATS - 2))
            fail_msg("chat %zu %s certified", i, r->p.valid[i] ? "is" : "is not");
    r->job.pass = PARSE_PASS;
    assert_int_equal(prep_run(&r->job, &err), PS_ERR_INVALID);
    assert_int_equal(atomic_load(&r->w.checks), 2);
    assert_int_equal(one_pass(body, PARSE_PASS, 1, 1, CHATS - 2, &every), PS_ERR_INVALID);
    assert_same_error(&err, &every);
    run_free(r);
    free(body);

    body = make_body("none", -1, -1, NULL);
    r = run_new(body, 1 << 20, 2);
    r->job.pass = CONTENT_PASS;
    assert_int_equal(prep_run(&r->job, &err), PS_OK);
    r->job.pass = PARSE_PASS;
    assert_int_equal(prep_run(&r->job, &err), PS_OK);
    for (size_t i = 0; i < CHATS; i++)
        assert_true(r->p.valid[i]);
    assert_int_equal(atomic_load(&r->w.checks), 0);
    run_free(r);
    free(body);
}

/* A valid body whose chats are mostly in the spool's file, prepared on two
 * threads (each reading the file into its own buffer): every chat's
 * content hash and id are those of its own bytes. */
static void both_threads_read_the_spool_file(void **state)
{
    (void)state;
    char *body = make_body("none", -1, -1, NULL);
    run *r = run_new(body, 64 << 10, 2);
    assert_true(ps_legacy_body_spooled_bytes(r->lb) > 0);
    r->w.meet = true;
    ps_error err;
    r->job.pass = CONTENT_PASS;
    assert_int_equal(prep_run(&r->job, &err), PS_OK);
    r->job.pass = PARSE_PASS;
    assert_int_equal(prep_run(&r->job, &err), PS_OK);
    assert_true(atomic_load(&r->w.reader1_seen));
    for (size_t i = 0; i < CHATS; i++) {
        const char *text;
        size_t len;
        assert_int_equal(ps_chat_source_bytes(&r->w.inner, i, &text, &len, &err), PS_OK);
        char copy[PS_ID_MAX_BYTES + 1], id[16];
        uint64_t content = 0;
        assert_true(ps_content_hash(text, len, CHAT_MAX_DEPTH, &content, copy, sizeof copy));
        assert_true(content == r->p.contents[i]);
        snprintf(id, sizeof id, "c%zu", i);
        assert_string_equal(r->p.ids[i], id);
    }
    run_free(r);
    free(body);
}

/* legacy_pipe.h's `wanted`: every chat, or (cls non-NULL) the even ones. */
static bool wanted_chat(void *cls, size_t i)
{
    return !cls || i % 2 == 0;
}

static const char *no_id(void *cls, size_t i)
{
    (void)cls;
    (void)i;
    return NULL;
}

/* What the merge loop's `each` is handed, checked against the body. */
typedef struct handed {
    run *r;
    bool evens;
    size_t next;    /* the chat expected next */
    size_t fail_at; /* answer an error there; CHATS: never */
} handed;

static ps_code check_handed(void *cls, size_t i, json_object *tree, ps_chat *chat, ps_error *err)
{
    handed *h = cls;
    assert_int_equal(i, h->next++);
    bool made = !h->evens || i % 2 == 0;
    assert_int_equal(tree != NULL, made);
    assert_int_equal(chat != NULL, made);
    if (made) {
        const char *text;
        size_t len;
        assert_int_equal(ps_chat_source_bytes(&h->r->w.inner, i, &text, &len, err), PS_OK);
        json_object *want = NULL;
        assert_int_equal(ps__json_parse(text, len, PS_JSON_MAX_DEPTH, &want, err), PS_OK);
        assert_true(json_object_equal(want, tree));
        char id[16];
        snprintf(id, sizeof id, "c%zu", i);
        assert_string_equal(chat->id, id);
        assert_int_equal(chat->nmessages, 1);
        assert_string_equal(chat->messages[0].id, "m");
        assert_true(json_object_equal(
            chat->messages[0].value,
            json_object_array_get_idx(json_object_object_get(want, "messages"), 0)));
        json_object_put(want);
        ps__chat_free(chat);
    }
    if (i == h->fail_at)
        return ps_error_set(err, PS_ERR_STORE, (long)i, "", "planted failure");
    return PS_OK;
}

/* The merge loop over the body's chats (read back from the spool's file),
 * the helper thread making chats with it, each reading as its own reader. */
static void pipe_on_two_threads(bool evens, size_t fail_at)
{
    char *body = make_body("none", -1, -1, NULL);
    run *r = run_new(body, 64 << 10, 2);
    r->w.meet = true;
    ps_ingest in = {.device = "D", .now_ms = 1700000000000};
    ps_legacy_pipe_config cfg = {.src = &r->src,
                                 .in = &in,
                                 .wanted = wanted_chat,
                                 .known_id = no_id,
                                 .cls = evens ? &cfg : NULL};
    handed h = {.r = r, .evens = evens, .fail_at = fail_at};
    ps_error err;
    ps_error_clear(&err);
    ps_code rc = ps_legacy_pipe_run(&cfg, check_handed, &h, &err);
    assert_true(atomic_load(&r->w.reader1_seen)); /* the helper made chats */
    if (fail_at < CHATS) {
        assert_int_equal(rc, PS_ERR_STORE);
        assert_string_equal(err.message, "planted failure");
        assert_int_equal(h.next, fail_at + 1); /* none after it */
    } else {
        assert_int_equal(rc, PS_OK);
        assert_int_equal(h.next, CHATS);
    }
    run_free(r);
    free(body);
}

static void the_merge_loop_gets_every_chat_made_on_two_threads(void **state)
{
    (void)state;
    pipe_on_two_threads(false, CHATS);
}

static void the_merge_loop_gets_only_the_chats_asked_for_made(void **state)
{
    (void)state;
    pipe_on_two_threads(true, CHATS);
}

/* A failure at chat 5, with the helper holding chats made ahead: the loop
 * stops there with it, and what was made and not merged is freed (the
 * ASan build's leak check). */
static void a_failure_stops_the_merge_loop(void **state)
{
    (void)state;
    pipe_on_two_threads(false, 5);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(the_first_malformed_chat_is_reported),
        cmocka_unit_test(the_first_invalid_chat_is_reported),
        cmocka_unit_test(certified_chats_are_not_parsed_before_their_merge),
        cmocka_unit_test(both_threads_read_the_spool_file),
        cmocka_unit_test(the_merge_loop_gets_every_chat_made_on_two_threads),
        cmocka_unit_test(the_merge_loop_gets_only_the_chats_asked_for_made),
        cmocka_unit_test(a_failure_stops_the_merge_loop),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
