/*
 * The shared merge cases (tests/cases/merge/, one JSON file per case; format
 * in docs/testing.md) through the C merge: each change becomes registers
 * with the v2 ingest (ps__chat_from_change, after the v2 validator accepted
 * it), and the
 * registers are folded with ps__chat_merge into an empty chat in EVERY order
 * (above 6 changes, 200 seeded shuffles). Each order must give the case's
 * expected chat: live or deleted, exactly its scalar fields, its live
 * message ids in display order, and its message tombstones. The oracle is
 * the case file, worked out by hand from docs/merge.md.
 */
#include "test_util.h"
#include "core/merge.h"
#include "core/validate.h"

#include <dirent.h>
#include <stdlib.h>

#ifndef PS_MERGE_CASES_DIR
#error "PS_MERGE_CASES_DIR must name tests/cases/merge"
#endif

#define MAX_CHANGES 16
#define SHUFFLES 200
/* The server's clock in every case: mid-2026, after every `at` a case uses,
 * so no time is clamped; a change without `at` is stamped with it. */
#define NOW_MS 1780000000000LL

typedef struct one_case {
    const char *file;
    json_object *doc;
    ps_chat *changes[MAX_CHANGES];
    size_t n;
    unsigned orders; /* how many orders were checked */
} one_case;

/* The expected answer, as text, for a readable failure message. */
static void fail_case(const one_case *c, const size_t *order, const char *what, const char *got,
                      const char *want)
{
    char seq[128] = "";
    for (size_t i = 0; i < c->n; i++)
        snprintf(seq + strlen(seq), sizeof seq - strlen(seq), "%s%zu", i ? "," : "", order[i]);
    print_error("%s: order [%s]: %s\n   got: %s\n  want: %s\n", c->file, seq, what, got, want);
    fail();
}

static void check_result(const one_case *c, const size_t *order, const ps_chat *chat)
{
    json_object *expect = json_object_object_get(c->doc, "expect");
    bool want_live = json_object_get_boolean(json_object_object_get(expect, "live"));
    bool live = ps__chat_is_live(chat);
    if (live != want_live)
        fail_case(c, order, "live", live ? "true" : "false", want_live ? "true" : "false");
    if (!want_live)
        return;

    /* fields: exactly these scalar fields (registers holding a value) */
    json_object *fields = json_object_new_object();
    for (size_t k = 0; k < chat->nfields; k++)
        if (chat->fields[k].value)
            json_object_object_add(fields, chat->fields[k].name,
                                   json_object_get(chat->fields[k].value));
    json_object *want_fields = json_object_object_get(expect, "fields");
    if (!json_object_equal(fields, want_fields))
        fail_case(c, order, "fields", json_object_to_json_string(fields),
                  json_object_to_json_string(want_fields));
    json_object_put(fields);

    /* messages: live ids in display order, as clients are shown them */
    json_object *legacy = ps__chat_to_legacy(chat);
    assert_non_null(legacy);
    json_object *ids = json_object_new_array();
    json_object *msgs = json_object_object_get(legacy, "messages");
    for (size_t k = 0; msgs && k < json_object_array_length(msgs); k++)
        json_object_array_add(
            ids, json_object_get(json_object_object_get(json_object_array_get_idx(msgs, k), "id")));
    json_object *want_ids = json_object_object_get(expect, "messages");
    if (!json_object_equal(ids, want_ids))
        fail_case(c, order, "messages", json_object_to_json_string(ids),
                  json_object_to_json_string(want_ids));
    json_object_put(ids);
    json_object_put(legacy);

    /* deletedMessages: each must be a tombstone register */
    json_object *dead = json_object_object_get(expect, "deletedMessages");
    for (size_t k = 0; dead && k < json_object_array_length(dead); k++) {
        const char *id = json_object_get_string(json_object_array_get_idx(dead, k));
        const ps_message *m = ps__chat_message(chat, id);
        if (!m || m->value)
            fail_case(c, order, "deletedMessages", m ? "a live message" : "no register", id);
    }
}

static void run_order(one_case *c, const size_t *order)
{
    const char *chat_id = json_object_get_string(json_object_object_get(c->doc, "chatId"));
    ps_chat *chat = ps__chat_new(chat_id);
    assert_non_null(chat);
    for (size_t i = 0; i < c->n; i++) {
        bool changed;
        assert_int_equal(ps__chat_merge(chat, c->changes[order[i]], &changed), PS_OK);
    }
    check_result(c, order, chat);
    ps__chat_free(chat);
    c->orders++;
}

/* Every permutation of order[k..n-1] (Heap-style recursion by swapping). */
static void permute(one_case *c, size_t *order, size_t k)
{
    if (k == c->n) {
        run_order(c, order);
        return;
    }
    for (size_t i = k; i < c->n; i++) {
        size_t t = order[k];
        order[k] = order[i];
        order[i] = t;
        permute(c, order, k + 1);
        order[i] = order[k];
        order[k] = t;
    }
}

static uint64_t next_rand(uint64_t *s)
{
    /* splitmix64: a fixed, seeded sequence, the same on every run */
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static void load_changes(one_case *c)
{
    const char *chat_id = json_object_get_string(json_object_object_get(c->doc, "chatId"));
    json_object *changes = json_object_object_get(c->doc, "changes");
    assert_non_null(chat_id);
    assert_non_null(changes);
    c->n = json_object_array_length(changes);
    assert_true(c->n >= 1 && c->n <= MAX_CHANGES);
    ps_limits lim = ps__limits_default();
    for (size_t i = 0; i < c->n; i++) {
        json_object *src = json_object_array_get_idx(changes, i);
        const char *device = json_object_get_string(json_object_object_get(src, "device"));
        assert_non_null(device);
        /* the change as a device sends it: chatId added, `device` is the
         * request's deviceId */
        json_object *change = json_object_new_object();
        json_object_object_foreach(src, key, val)
        {
            if (strcmp(key, "device") != 0)
                json_object_object_add(change, key, json_object_get(val));
        }
        json_object_object_add(change, "chatId", json_object_new_string(chat_id));
        json_object *req = json_object_new_object();
        json_object_object_add(req, "deviceId", json_object_new_string(device));
        json_object *arr = json_object_new_array();
        json_object_array_add(arr, change);
        json_object_object_add(req, "changes", arr);
        ps_error err = {0};
        if (ps__validate_v2_request(req, &lim, &err) != PS_OK) {
            print_error("%s: change %zu is not a valid v2 change: %s (%s)\n", c->file, i,
                        err.message, err.field);
            fail();
        }
        ps_ingest in = {.device = device, .now_ms = NOW_MS, .max_skew_ms = 5 * 60 * 1000};
        assert_int_equal(ps__chat_from_change(change, &in, &c->changes[i]), PS_OK);
        json_object_put(req);
    }
}

static void run_case(const char *dir, const char *name)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    one_case c = {.file = name, .doc = json_object_from_file(path)};
    if (!c.doc) {
        print_error("%s: not JSON\n", path);
        fail();
    }
    load_changes(&c);
    size_t order[MAX_CHANGES];
    for (size_t i = 0; i < c.n; i++)
        order[i] = i;
    if (c.n <= 6) {
        permute(&c, order, 0);
    } else {
        uint64_t seed = 12;
        run_order(&c, order);
        for (int s = 1; s < SHUFFLES; s++) {
            for (size_t i = c.n - 1; i > 0; i--) { /* Fisher-Yates */
                size_t j = (size_t)(next_rand(&seed) % (i + 1));
                size_t t = order[i];
                order[i] = order[j];
                order[j] = t;
            }
            run_order(&c, order);
        }
    }
    for (size_t i = 0; i < c.n; i++)
        ps__chat_free(c.changes[i]);
    json_object_put(c.doc);
}

static int by_name(const struct dirent **a, const struct dirent **b)
{
    return strcmp((*a)->d_name, (*b)->d_name);
}

static int is_case(const struct dirent *e)
{
    size_t n = strlen(e->d_name);
    return n > 5 && strcmp(e->d_name + n - 5, ".json") == 0;
}

static void every_case_in_every_order(void **state)
{
    (void)state;
    const char *dir = getenv("PS_MERGE_CASES_DIR");
    if (!dir || !*dir)
        dir = PS_MERGE_CASES_DIR;
    struct dirent **names = NULL;
    int n = scandir(dir, &names, is_case, by_name);
    assert_true(n > 0); /* an empty folder would pass by checking nothing */
    for (int i = 0; i < n; i++) {
        run_case(dir, names[i]->d_name);
        free(names[i]);
    }
    free(names);
    print_message("%d merge cases, each in every order\n", n);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(every_case_in_every_order)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
