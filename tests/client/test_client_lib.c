/*
 * Unit tests of libpolysync's client side: the SSE parser, Retry-After,
 * backoff, where a token may go, and the public API on a temporary store
 * (no server: sync and watch are tested end to end by the Python suites).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "client/client_internal.h"
#include "client/http.h"
#include "client/sse.h"
#include "core/json_parse.h"
#include "polysync/polysync.h"

#include <json-c/json.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- an answer parsed as it arrives (answer_stream.c) ---- */

/* Fed in pieces of every size from 1 byte to whole, the body must come out
 * as ps__json_parse makes it of the whole body: the same tree, or the same
 * error code (the oracle is the one-shot parser the client used before). */
static void test_answer_stream_matches_whole_parse(void **state)
{
    (void)state;
    static const char *const bodies[] = {
        "{\"chats\":[{\"id\":\"c\",\"messages\":[]}],\"more\":false,\"serverClock\":7}",
        "  {\"a\": [1, 2.5, -3e2, true, null, \"\\u00e9\\n\"]}\n\n",
        "12345",                 /* a bare number: complete only at the end */
        "{\"a\":1} x",           /* trailing data */
        "{\"a\":1}{}",           /* a second value */
        "{\"a\":[1,2",           /* cut short */
        "",                      /* empty */
        "{\"a\":\"\xff\"}",      /* not UTF-8 */
        "[[[[[[[[[[1]]]]]]]]]]", /* deeper than the limit below */
        "{\"a\":NaN}",           /* not strict JSON */
        "{\"a\":1,}",            /* a trailing comma */
        /* characters of 2, 3 and 4 bytes: cut at every byte by the pieces */
        "{\"t\":\"caf\xc3\xa9 \xe4\xb8\x96\xe7\x95\x8c \xf0\x9f\x98\x80\",\"u\":[\"\xc3\xa9\"]}",
        "{\"a\":\"\xe4\xb8\"}", /* a character cut short inside the body */
        "{\"a\":1}\xc3",        /* ... after it */
    };
    for (size_t b = 0; b < sizeof bodies / sizeof *bodies; b++) {
        const char *text = bodies[b];
        size_t len = strlen(text);
        json_object *want = NULL;
        ps_error werr;
        ps_code wrc = ps__json_parse(text, len, 8, &want, &werr);
        for (size_t piece = 1; piece <= (len ? len : 1); piece++) {
            ps_http_answer a;
            ps__http_answer_init(&a);
            a.stream_depth = 8;
            ps__answer_stream_reset(&a);
            for (size_t at = 0; at < len; at += piece) {
                size_t n = len - at < piece ? len - at : piece;
                assert_int_equal(ps__dynbuf_add(&a.body, text + at, n), PS_OK);
                ps__answer_stream_feed(&a, text + at, n);
            }
            /* a valid body is parsed as it arrives, however it is cut:
             * never parsed a second time at the end */
            if (wrc == PS_OK && a.stream_failed)
                fail_msg("body %zu in pieces of %zu: the streamed parse failed", b, piece);
            json_object *got = NULL;
            ps_error gerr;
            ps_code grc = ps__answer_json(&a, 8, &got, &gerr);
            if (grc != wrc)
                fail_msg("body %zu in pieces of %zu: %d, whole: %d", b, piece, grc, wrc);
            if (wrc == PS_OK)
                assert_true(json_object_equal(got, want));
            else
                assert_string_equal(gerr.message, werr.message);
            json_object_put(got);
            ps__http_answer_free(&a);
        }
        json_object_put(want);
    }
}

/* ---- SSE ---- */

typedef struct events {
    char names[16][64];
    int n;
} events;

static void record(const char *event, void *ud)
{
    events *e = ud;
    if (e->n < 16)
        snprintf(e->names[e->n++], 64, "%s", event);
}

static void test_sse_basic(void **state)
{
    (void)state;
    ps_sse p;
    events e = {0};
    ps__sse_init(&p);
    const char *stream = "retry: 3000\n: connected\n\nevent: changed\ndata: {}\n\n: keepalive\n\n";
    ps__sse_feed(&p, stream, strlen(stream), record, &e);
    assert_int_equal(e.n, 1);
    assert_string_equal(e.names[0], "changed");
    assert_int_equal(p.retry_ms, 3000);
}

static void test_sse_split_and_line_endings(void **state)
{
    (void)state;
    ps_sse p;
    events e = {0};
    ps__sse_init(&p);
    const char *stream = "event: changed\r\ndata: {}\r\n\r\ndata: x\r\revent:other\ndata\n\n";
    /* byte by byte: every split point */
    for (size_t i = 0; stream[i]; i++)
        ps__sse_feed(&p, stream + i, 1, record, &e);
    assert_int_equal(e.n, 3);
    assert_string_equal(e.names[0], "changed");
    assert_string_equal(e.names[1], "message"); /* no event: line */
    assert_string_equal(e.names[2], "other");
}

static void test_sse_no_data_no_event_and_long_lines(void **state)
{
    (void)state;
    ps_sse p;
    events e = {0};
    ps__sse_init(&p);
    ps__sse_feed(&p, "event: changed\n\n", 16, record, &e);
    assert_int_equal(e.n, 0); /* the standard: no data, no dispatch */
    char *big = malloc(PS_SSE_LINE_MAX * 2 + 32);
    memset(big, 'x', PS_SSE_LINE_MAX * 2);
    strcpy(big + PS_SSE_LINE_MAX * 2, "\nevent: changed\ndata: 1\n\n");
    ps__sse_feed(&p, big, strlen(big), record, &e);
    free(big);
    assert_int_equal(e.n, 1);
    assert_string_equal(e.names[0], "changed");
}

/* ---- HTTP helpers ---- */

static void test_retry_after(void **state)
{
    (void)state;
    assert_int_equal(ps__parse_retry_after("5", 0), 5);
    assert_int_equal(ps__parse_retry_after(" 120\r\n", 0), 120);
    assert_int_equal(ps__parse_retry_after("soon", 0), -1);
    assert_int_equal(ps__parse_retry_after("5x", 0), -1);
    /* Sun, 06 Nov 1994 08:49:37 GMT = 784111777 */
    assert_int_equal(ps__parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT\r\n", 784111770), 7);
    assert_int_equal(ps__parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", 784111800), 0);
}

static void test_backoff_bounds(void **state)
{
    (void)state;
    ps_client c;
    memset(&c, 0, sizeof c);
    c.rng = 88172645463325252ULL;
    ps_retry_policy_default(&c.retry);
    c.retry.base_delay_ms = 100;
    c.retry.max_delay_ms = 1000;
    for (int round = 0; round < 200; round++) {
        for (unsigned n = 1; n <= 8; n++) {
            unsigned full = 100u << (n - 1);
            if (full > 1000)
                full = 1000;
            unsigned d = ps__backoff_ms(&c, n);
            assert_true(d >= full / 2);
            assert_true(d <= full);
        }
    }
}

static void test_token_destinations(void **state)
{
    (void)state;
    assert_true(ps__url_is_safe_for_token("https://sync.example.com"));
    assert_true(ps__url_is_safe_for_token("http://127.0.0.1:4001"));
    assert_true(ps__url_is_safe_for_token("http://127.8.9.10"));
    assert_true(ps__url_is_safe_for_token("http://localhost:4001/base"));
    assert_true(ps__url_is_safe_for_token("http://[::1]:4001"));
    assert_false(ps__url_is_safe_for_token("http://sync.example.com"));
    assert_false(ps__url_is_safe_for_token("http://10.0.0.1:4001"));
    assert_false(ps__url_is_safe_for_token("http://127.0.0.1.evil.example"));
}

/* ---- the API on a temporary store ---- */

typedef struct fixture {
    char dir[64];
    char path[128];
    ps_client *c;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/ps-client-test-XXXXXX");
    if (!mkdtemp(f->dir))
        return -1;
    snprintf(f->path, sizeof f->path, "%s/store.db", f->dir);
    ps_error err;
    if (ps_client_open(f->path, &f->c, &err) != PS_OK)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    ps_client_close(f->c);
    char cmd[200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
    if (system(cmd) != 0)
        return -1;
    free(f);
    return 0;
}

static void test_device_id_is_stable(void **state)
{
    fixture *f = *state;
    char first[64];
    snprintf(first, sizeof first, "%s", ps_client_device_id(f->c));
    assert_int_equal(strlen(first), 36);
    ps_client_close(f->c);
    ps_error err;
    assert_int_equal(ps_client_open(f->path, &f->c, &err), PS_OK);
    assert_string_equal(ps_client_device_id(f->c), first);
    struct stat st;
    assert_int_equal(stat(f->path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
}

static void test_chat_operations(void **state)
{
    fixture *f = *state;
    ps_error err;
    char *a = NULL, *b = NULL, *m = NULL;
    assert_int_equal(ps_client_chat_create(f->c, "First", &a, &err), PS_OK);
    assert_int_equal(ps_client_chat_create(f->c, "Second", &b, &err), PS_OK);
    assert_int_equal(ps_client_msg_add(f->c, a, "user", "hello", &m, &err), PS_OK);
    assert_int_equal(ps_client_chat_rename(f->c, a, "First, renamed", &err), PS_OK);
    assert_int_equal(ps_client_msg_edit(f->c, a, m, "hello again", &err), PS_OK);
    assert_int_equal(ps_client_chat_archive(f->c, b, true, &err), PS_OK);

    ps_chat_info *list = NULL;
    size_t n = 0;
    assert_int_equal(ps_client_chat_list(f->c, &list, &n, &err), PS_OK);
    assert_int_equal(n, 2);
    /* most recently updated first: b was archived last */
    assert_string_equal(list[0].id, b);
    assert_true(list[0].archived);
    assert_string_equal(list[1].title, "First, renamed");
    assert_int_equal(list[1].message_count, 1);
    ps_chat_info_free(list, n);

    ps_chat_detail *d = NULL;
    assert_int_equal(ps_client_chat_get(f->c, a, &d, &err), PS_OK);
    assert_string_equal(d->info.title, "First, renamed");
    assert_int_equal(d->info.message_count, 1);
    assert_string_equal(d->messages[0].id, m);
    assert_string_equal(d->messages[0].content, "hello again");
    assert_string_equal(d->messages[0].role, "user");
    assert_true(d->messages[0].timestamp_ms > 0);
    ps_chat_detail_free(d);

    char *json = NULL;
    assert_int_equal(ps_client_chat_json(f->c, a, &json, &err), PS_OK);
    json_object *doc = json_tokener_parse(json);
    assert_non_null(doc);
    json_object *lam = json_object_object_get(doc, "updatedAtLamport");
    assert_int_equal(json_object_array_length(lam), 2);
    assert_string_equal(json_object_get_string(json_object_array_get_idx(lam, 1)),
                        ps_client_device_id(f->c));
    json_object_put(doc);
    ps_free(json);

    assert_int_equal(ps_client_msg_delete(f->c, a, m, &err), PS_OK);
    assert_int_equal(ps_client_msg_edit(f->c, a, m, "gone", &err), PS_ERR_NOT_FOUND);
    assert_int_equal(ps_client_chat_delete(f->c, b, &err), PS_OK);
    assert_int_equal(ps_client_chat_rename(f->c, b, "x", &err), PS_ERR_NOT_FOUND);
    assert_int_equal(ps_client_chat_get(f->c, b, &d, &err), PS_ERR_NOT_FOUND);
    assert_null(d);
    assert_int_equal(ps_client_chat_list(f->c, &list, &n, &err), PS_OK);
    assert_int_equal(n, 1);
    ps_chat_info_free(list, n);

    size_t pending = 0;
    assert_int_equal(ps_client_pending(f->c, &pending, &err), PS_OK);
    assert_int_equal(pending, 8);
    ps_free(a);
    ps_free(b);
    ps_free(m);
}

static void test_invalid_input_refused(void **state)
{
    fixture *f = *state;
    ps_error err;
    char *id = NULL, *m = NULL;
    assert_int_equal(ps_client_chat_create(f->c, "t", &id, &err), PS_OK);
    assert_int_equal(ps_client_msg_add(f->c, id, "robot", "x", &m, &err), PS_ERR_INVALID);
    assert_int_equal(ps_client_msg_add(f->c, id, "user", "\xff\xfe", &m, &err), PS_ERR_UTF8);
    assert_null(m);
    assert_int_equal(ps_client_msg_add(f->c, "no-such-chat", "user", "x", &m, &err),
                     PS_ERR_NOT_FOUND);
    char longid[300];
    memset(longid, 'a', sizeof longid - 1);
    longid[sizeof longid - 1] = '\0';
    assert_int_not_equal(ps_client_chat_rename(f->c, longid, "x", &err), PS_OK);
    size_t pending = 0;
    assert_int_equal(ps_client_pending(f->c, &pending, &err), PS_OK);
    assert_int_equal(pending, 1); /* only the create */
    ps_free(id);
}

static void test_import_and_export(void **state)
{
    fixture *f = *state;
    ps_error err;
    const char *file =
        "{\"chats\": {\"c1\": {\"id\": \"c1\", \"title\": \"One\", \"messages\": ["
        "{\"id\": \"m1\", \"role\": \"user\", \"content\": \"hi\"},"
        "{\"id\": \"m2\", \"role\": \"user\", \"content\": \"psst\", \"isPrivate\": true}]},"
        "\"c2\": {\"title\": 5}}}";
    ps_import_report *r = NULL;
    assert_int_equal(ps_client_import(f->c, file, strlen(file), &r, &err), PS_OK);
    assert_int_equal(r->chats_imported, 1);
    assert_int_equal(r->messages_imported, 1);
    assert_int_equal(r->private_dropped, 1);
    assert_int_equal(r->skipped_count, 1);
    assert_int_equal(r->reason_count, 1);
    assert_non_null(strstr(r->reasons[0], "chats[\"c2\"]"));
    assert_non_null(strstr(r->reasons[0], "title"));
    ps_import_report_free(r);

    assert_int_equal(ps_client_import(f->c, "[1,", 3, &r, &err), PS_ERR_MALFORMED);
    ps_import_report_free(r);
    assert_int_equal(ps_client_import(f->c, "{}", 2, &r, &err), PS_ERR_INVALID);
    ps_import_report_free(r);

    char *out = NULL;
    size_t len = 0;
    assert_int_equal(ps_client_export(f->c, &out, &len, &err), PS_OK);
    assert_int_equal(strlen(out), len);
    json_object *arr = json_tokener_parse(out);
    assert_int_equal(json_object_array_length(arr), 1);
    json_object *c1 = json_object_array_get_idx(arr, 0);
    assert_string_equal(json_object_get_string(json_object_object_get(c1, "title")), "One");
    assert_int_equal(json_object_array_length(json_object_object_get(c1, "messages")), 1);
    json_object_put(arr);
    ps_free(out);
}

static void test_settings(void **state)
{
    fixture *f = *state;
    ps_error err;
    assert_int_equal(ps_client_set_server(f->c, "ftp://x", &err), PS_ERR_CONFIG);
    assert_int_equal(ps_client_set_server(f->c, "http://a b", &err), PS_ERR_CONFIG);
    assert_int_equal(ps_client_set_server(f->c, "https://sync.example.com///", &err), PS_OK);
    assert_string_equal(f->c->server, "https://sync.example.com");
    assert_int_equal(ps_client_set_token(f->c, "bad token", &err), PS_ERR_CONFIG);
    assert_int_equal(ps_client_set_token(f->c, "bad\r\nX-Injected: 1", &err), PS_ERR_CONFIG);
    assert_int_equal(ps_client_set_token(f->c, "eyJ.abc.def", &err), PS_OK);

    char tok[160];
    snprintf(tok, sizeof tok, "%s/token", f->dir);
    FILE *fp = fopen(tok, "w");
    fputs("  file-token \n second line ignored\n", fp);
    fclose(fp);
    chmod(tok, 0644);
    assert_int_equal(ps_client_set_token_file(f->c, tok, &err), PS_ERR_CONFIG);
    assert_non_null(strstr(err.message, "0644"));
    chmod(tok, 0600);
    assert_int_equal(ps_client_set_token_file(f->c, tok, &err), PS_OK);
    assert_string_equal(f->c->token, "file-token");
    chmod(tok, 0400);
    assert_int_equal(ps_client_set_token_file(f->c, tok, &err), PS_OK);

    assert_int_equal(ps_client_set_cacert(f->c, "/no/such/ca.pem", &err), PS_ERR_CONFIG);

    ps_retry_policy p = {.max_attempts = 2};
    ps_client_set_retry(f->c, &p);
    assert_int_equal(f->c->retry.max_attempts, 2);
    assert_int_equal(f->c->retry.base_delay_ms, 500);

    /* no server, no sync */
    ps_client *other = NULL;
    char path[160];
    snprintf(path, sizeof path, "%s/other.db", f->dir);
    assert_int_equal(ps_client_open(path, &other, &err), PS_OK);
    ps_sync_stats st;
    assert_int_equal(ps_client_sync(other, &st, &err), PS_ERR_CONFIG);
    assert_int_equal(ps_client_watch(other, 1, NULL, NULL, &err), PS_ERR_CONFIG);
    ps_client_close(other);
}

/* Saved settings survive reopening; only the four keys exist; the state
 * of a fresh store says "never synced". */
static void test_saved_settings_and_state(void **state)
{
    fixture *f = *state;
    ps_error err;
    char *v = (char *)"unset";
    assert_int_equal(ps_client_setting_get(f->c, "server", &v, &err), PS_OK);
    assert_null(v);
    assert_int_equal(ps_client_setting_set(f->c, "server", "https://s.example", &err), PS_OK);
    assert_int_equal(ps_client_setting_set(f->c, "token_file", "/home/me/token", &err), PS_OK);
    assert_int_equal(ps_client_setting_set(f->c, "password", "x", &err), PS_ERR_INVALID);
    assert_int_equal(ps_client_setting_get(f->c, "device_id", &v, &err), PS_ERR_INVALID);
    assert_null(v);
    ps_client_close(f->c);
    assert_int_equal(ps_client_open(f->path, &f->c, &err), PS_OK);
    assert_int_equal(ps_client_setting_get(f->c, "server", &v, &err), PS_OK);
    assert_string_equal(v, "https://s.example");
    ps_free(v);
    assert_int_equal(ps_client_setting_set(f->c, "server", NULL, &err), PS_OK);
    assert_int_equal(ps_client_setting_get(f->c, "server", &v, &err), PS_OK);
    assert_null(v);
    assert_int_equal(ps_client_setting_get(f->c, "token_file", &v, &err), PS_OK);
    assert_string_equal(v, "/home/me/token");
    ps_free(v);

    char *id = NULL;
    assert_int_equal(ps_client_chat_create(f->c, "t", &id, &err), PS_OK);
    ps_free(id);
    ps_client_state *st = NULL;
    assert_int_equal(ps_client_state_get(f->c, &st, &err), PS_OK);
    assert_null(st->cursor);
    assert_null(st->cursor_server);
    assert_int_equal(st->last_sync_ms, 0);
    assert_int_equal(st->pending_changes, 1);
    assert_true(st->clock >= 1);
    ps_client_state_free(st);
}

static void test_newer_schema_refused(void **state)
{
    fixture *f = *state;
    ps_client_close(f->c);
    f->c = NULL;
    sqlite3 *db;
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "PRAGMA user_version = 99", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    ps_error err;
    assert_int_equal(ps_client_open(f->path, &f->c, &err), PS_ERR_SCHEMA);
    assert_null(f->c);
    assert_non_null(strstr(err.message, "newer"));
}

static void test_stop_interrupts_sync(void **state)
{
    fixture *f = *state;
    ps_error err;
    /* a port nobody answers: the retry wait is cut short by stop */
    assert_int_equal(ps_client_set_server(f->c, "http://127.0.0.1:9", &err), PS_OK);
    ps_retry_policy p = {.max_attempts = 50, .base_delay_ms = 5000, .max_delay_ms = 5000};
    ps_client_set_retry(f->c, &p);
    ps_client_stop(f->c);
    time_t t0 = time(NULL);
    assert_int_equal(ps_client_sync(f->c, NULL, &err), PS_ERR_IO);
    assert_true(time(NULL) - t0 < 3);
    assert_string_equal(err.message, "interrupted");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_answer_stream_matches_whole_parse),
        cmocka_unit_test(test_sse_basic),
        cmocka_unit_test(test_sse_split_and_line_endings),
        cmocka_unit_test(test_sse_no_data_no_event_and_long_lines),
        cmocka_unit_test(test_retry_after),
        cmocka_unit_test(test_backoff_bounds),
        cmocka_unit_test(test_token_destinations),
        cmocka_unit_test_setup_teardown(test_device_id_is_stable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_chat_operations, setup, teardown),
        cmocka_unit_test_setup_teardown(test_invalid_input_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_import_and_export, setup, teardown),
        cmocka_unit_test_setup_teardown(test_settings, setup, teardown),
        cmocka_unit_test_setup_teardown(test_saved_settings_and_state, setup, teardown),
        cmocka_unit_test_setup_teardown(test_newer_schema_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop_interrupts_sync, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
