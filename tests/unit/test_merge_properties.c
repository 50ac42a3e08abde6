/*
 * Property tests of the merge (core/merge.h): over thousands of random chat
 * states, merge is commutative, associative and idempotent, has the empty
 * chat as identity, never drops a message id either input has, keeps for
 * every register the newer of the two writes (judged by the reference model
 * of docs/merge.md, merge_model.h, not by the implementation's own
 * comparisons), reports `changed` exactly when
 * the state changed, and survives the stored-state round trip. States are
 * built the ways the server builds them: legacy uploads (with private
 * messages, message tombstones {id, deleted: true}, clamped future times,
 * Lamport tuples, a request device), chat deletions (client tuples and
 * server-stamped ones), and single field or message writes, all drawn from small pools of names,
 * ids, devices and times so that collisions and exact ties are common. A xorshift PRNG with a fixed
 * seed keeps runs reproducible; PS_PROPERTY_SEED and PS_PROPERTY_CASES
 * override seed and case count, and a failure prints both.
 */
#include "test_util.h"
#include "merge_model.h"
#include "property_rng.h"
#include "core/merge.h"
#include "core/timestamp.h"

#include <inttypes.h>
#include <stdlib.h>

#define NOW 100000 /* the server clock for ingest: some pool times are past now + skew */
#define SKEW 2000

#define DEFAULT_SEED 0x5eed2024c0ffeeULL
#define DEFAULT_CASES 3000

static const char *const FIELD_NAMES[] = {"title", "model", "isArchived", "folder", "x"};
static const char *const FIELD_VALUES[] = {"\"t1\"", "\"t2\"", "\"t3\"",        "true", "false",
                                           "null",   "1",      "{\"k\":[1,2]}", "[]"};
static const char *const MESSAGE_IDS[] = {"m0", "m1", "m2", "m3", "m4", "m5"};
static const char *const CONTENTS[] = {"a", "b", "c"};
static const char *const DEVICES[] = {"", "dev-a", "dev-b", "dev-c"};
/* Times as clients write them: several spellings of one instant, and some
 * beyond NOW + SKEW (clamped at ingest). */
static const char *const TIMES[] = {"1000",
                                    "2000",
                                    "\"1970-01-01T00:00:01Z\"",
                                    "\"1970-01-01T00:00:01.000Z\"",
                                    "\"1970-01-01T00:00:02Z\"",
                                    "3000",
                                    "101000",
                                    "150000",
                                    "\"1970-01-01T00:01:42Z\""};
static const int64_t STAMP_TS[] = {1000, 2000, 102000};

#define N(a) (sizeof(a) / sizeof *(a))

static ps_stamp random_stamp(void)
{
    /* few values, so that equal stamps (and the value tie-break) are common */
    return tu_stamp(STAMP_TS[pick(N(STAMP_TS))], chance(60) ? 0 : 1 + pick(2), DEVICES[pick(3)]);
}

static json_object *parse(const char *text)
{
    return tu_json(text);
}

static void add(json_object *obj, const char *key, const char *json_text)
{
    json_object_object_add(obj, key, parse(json_text));
}

static json_object *random_message(const char *id)
{
    json_object *msg = json_object_new_object();
    json_object_object_add(msg, "id", json_object_new_string(id));
    if (chance(15)) { /* a message deleted on the sending device */
        json_object_object_add(msg, "deleted", json_object_new_boolean(true));
        if (chance(50))
            add(msg, "timestamp", TIMES[pick(N(TIMES))]);
        return msg;
    }
    json_object_object_add(msg, "role", json_object_new_string(chance(50) ? "user" : "assistant"));
    json_object_object_add(msg, "content", json_object_new_string(CONTENTS[pick(N(CONTENTS))]));
    if (chance(70))
        add(msg, "timestamp", TIMES[pick(N(TIMES))]);
    if (chance(10))
        json_object_object_add(msg, "isPrivate", json_object_new_boolean(chance(60)));
    return msg;
}

/* A chat as a legacy client uploads it, through ps__chat_from_legacy. */
static ps_chat *random_legacy_write(void)
{
    json_object *chat = json_object_new_object();
    json_object_object_add(chat, "id", json_object_new_string("c"));
    for (size_t i = 0; i < N(FIELD_NAMES); i++)
        if (chance(40))
            add(chat, FIELD_NAMES[i], FIELD_VALUES[pick(N(FIELD_VALUES))]);
    static const char *const time_keys[] = {"createdAt", "updatedAt", "lastModified"};
    for (size_t i = 0; i < N(time_keys); i++)
        if (chance(60))
            add(chat, time_keys[i], TIMES[pick(N(TIMES))]);
    if (chance(50)) {
        char lam[64];
        snprintf(lam, sizeof lam, "[%u,\"%s\"]", pick(4), DEVICES[1 + pick(N(DEVICES) - 1)]);
        add(chat, "updatedAtLamport", lam);
    }
    if (chance(85)) {
        json_object *msgs = json_object_new_array();
        unsigned n = pick(5);
        for (unsigned i = 0; i < n; i++)
            json_object_array_add(msgs, random_message(MESSAGE_IDS[pick(N(MESSAGE_IDS))]));
        json_object_object_add(chat, "messages", msgs);
    }
    ps_ingest in = {.device = DEVICES[pick(N(DEVICES))], .now_ms = NOW, .max_skew_ms = SKEW};
    ps_chat *out = NULL;
    assert_int_equal(ps__chat_from_legacy(chat, &in, &out), PS_OK);
    json_object_put(chat);
    return out;
}

/* A single register write, as a message-level or field-level sync would. */
static ps_chat *random_register_write(void)
{
    ps_chat *chat = ps__chat_new("c");
    ps_stamp s = random_stamp();
    if (chance(50)) {
        bool changed;
        assert_int_equal(ps__chat_put_field(chat, FIELD_NAMES[pick(N(FIELD_NAMES))],
                                           parse(FIELD_VALUES[pick(N(FIELD_VALUES))]), &s,
                                           &changed),
                         PS_OK);
    } else {
        const char *id = MESSAGE_IDS[pick(N(MESSAGE_IDS))];
        json_object *msg = random_message(id);
        json_object_object_del(msg, "isPrivate");
        json_object *tsv = NULL;
        int64_t order = 0;
        if (json_object_object_get_ex(msg, "timestamp", &tsv))
            ps__time_from_json(tsv, &order);
        if (json_object_object_get_ex(msg, "deleted", NULL)) { /* a tombstone write */
            json_object_put(msg);
            msg = NULL;
        }
        assert_int_equal(ps__chat_append_message(chat, id, msg, &s, order), PS_OK);
        ps__chat_normalize(chat);
    }
    return chat;
}

/* A chat deletion as the server records one (sync_legacy.c, delete_one):
 * with the client's tuple, that tuple is the stamp and what clients are
 * shown; without, the stamp is the server's time and the request's device
 * (with the tick as counter if the client speaks Lamport), and clients are
 * shown a tick of the user clock. */
static ps_chat *random_deletion(void)
{
    ps_chat *chat = ps__chat_new("c");
    ps_stamp s = random_stamp();
    ps_lamport shown;
    if (chance(50)) {
        s.lamport = 1 + pick(3);
        s.device = (char *)DEVICES[1 + pick(N(DEVICES) - 1)];
        shown = (ps_lamport){s.lamport, s.device};
    } else {
        shown = (ps_lamport){1 + pick(4), "server"};
        s.lamport = chance(50) ? shown.counter : 0;
    }
    bool changed;
    assert_int_equal(ps__chat_delete(chat, &s, &shown, &changed), PS_OK);
    assert_true(changed);
    return chat;
}

/* A state: the merge of 0..4 random writes. */
static ps_chat *random_state(void)
{
    ps_chat *state = ps__chat_new("c");
    unsigned n = pick(5);
    for (unsigned i = 0; i < n; i++) {
        unsigned kind = pick(10);
        ps_chat *w = kind < 5   ? random_legacy_write()
                     : kind < 8 ? random_register_write()
                                : random_deletion();
        bool changed;
        assert_int_equal(ps__chat_merge(state, w, &changed), PS_OK);
        ps__chat_free(w);
    }
    return state;
}

static ps_chat *merge2(const ps_chat *a, const ps_chat *b)
{
    ps_chat *out = ps__chat_new("c");
    bool changed;
    assert_int_equal(ps__chat_merge(out, a, &changed), PS_OK);
    assert_int_equal(ps__chat_merge(out, b, &changed), PS_OK);
    return out;
}

static json_object *state_of(const ps_chat *chat)
{
    json_object *st = ps__chat_state_to_json(chat);
    assert_non_null(st);
    return st;
}

static void report(const char *property, const ps_chat *const *inputs, size_t n, const ps_chat *x,
                   const ps_chat *y)
{
    print_error("property '%s' failed: PS_PROPERTY_SEED=%" PRIu64 " case %lu\n", property, seed0,
                current_case);
    for (size_t i = 0; i < n; i++) {
        json_object *st = state_of(inputs[i]);
        print_error("  input %zu: %s\n", i, ps__json_text(st, NULL));
        json_object_put(st);
    }
    json_object *sx = x ? state_of(x) : NULL, *sy = y ? state_of(y) : NULL;
    if (sx)
        print_error("  left:  %s\n", ps__json_text(sx, NULL));
    if (sy)
        print_error("  right: %s\n", ps__json_text(sy, NULL));
    json_object_put(sx);
    json_object_put(sy);
}

/* ps__chat_message, except on a chat without messages, where it passes a
 * NULL array to bsearch() (undefined; test_merge.c checks it separately). */
static const ps_message *find_message(const ps_chat *chat, const char *id)
{
    return chat->nmessages ? ps__chat_message(chat, id) : NULL;
}

static bool same(const ps_chat *x, const ps_chat *y)
{
    json_object *sx = state_of(x), *sy = state_of(y);
    bool eq = json_object_equal(sx, sy);
    json_object_put(sx);
    json_object_put(sy);
    return eq;
}

/* Two register writes ordered by the model's rules (merge_model.h). */
static int model_cmp(const ps_stamp *sa, json_object *va, const ps_stamp *sb, json_object *vb)
{
    mm_stamp a = {sa->ts, sa->lamport, sa->device ? sa->device : "", sa->timed};
    mm_stamp b = {sb->ts, sb->lamport, sb->device ? sb->device : "", sb->timed};
    char *ta = mm_text(va), *tb = mm_text(vb);
    int c = mm_write_cmp(&a, ta, &b, tb);
    free(ta);
    free(tb);
    return c;
}

/* Every message id of `part` is in `whole`, with a write at least as new. */
static bool keeps_messages(const ps_chat *whole, const ps_chat *part)
{
    for (size_t i = 0; i < part->nmessages; i++) {
        const ps_message *m = &part->messages[i];
        const ps_message *w = find_message(whole, m->id);
        if (!w || model_cmp(&w->stamp, w->value, &m->stamp, m->value) < 0)
            return false;
    }
    return true;
}

/* Every field of `part` is in `whole`, with a write at least as new. */
static bool keeps_fields(const ps_chat *whole, const ps_chat *part)
{
    for (size_t i = 0; i < part->nfields; i++) {
        const ps_field *f = &part->fields[i];
        const ps_field *w = ps__chat_field(whole, f->name);
        if (!w || model_cmp(&w->stamp, w->value, &f->stamp, f->value) < 0)
            return false;
    }
    return true;
}

typedef bool (*property_fn)(ps_chat *a, ps_chat *b, ps_chat *c);

static bool commutative(ps_chat *a, ps_chat *b, ps_chat *c)
{
    ps_chat *ab = merge2(a, b), *ba = merge2(b, a);
    bool ok = same(ab, ba);
    if (!ok)
        report("merge(a,b) == merge(b,a)", (const ps_chat *const[]){a, b}, 2, ab, ba);
    ps__chat_free(ab);
    ps__chat_free(ba);
    return ok;
}

static bool associative(ps_chat *a, ps_chat *b, ps_chat *c)
{
    ps_chat *ab = merge2(a, b), *bc = merge2(b, c);
    ps_chat *ab_c = merge2(ab, c), *a_bc = merge2(a, bc);
    bool ok = same(ab_c, a_bc);
    if (!ok)
        report("merge(merge(a,b),c) == merge(a,merge(b,c))", (const ps_chat *const[]){a, b, c}, 3,
               ab_c, a_bc);
    ps__chat_free(ab);
    ps__chat_free(bc);
    ps__chat_free(ab_c);
    ps__chat_free(a_bc);
    return ok;
}

static bool idempotent(ps_chat *a, ps_chat *b, ps_chat *c)
{
    /* merge(a, a) == a, with a separate copy of a as the argument */
    ps_chat *copy = merge2(a, a);
    bool changed = true;
    ps_chat *aa = merge2(a, a);
    assert_int_equal(ps__chat_merge(aa, copy, &changed), PS_OK);
    bool ok = same(aa, a) && same(copy, a) && !changed;
    if (!ok)
        report("merge(a,a) == a, unchanged", (const ps_chat *const[]){a}, 1, aa, a);
    /* and merging what is already in: merge(merge(a,b), b) == merge(a,b) */
    if (ok) {
        ps_chat *ab = merge2(a, b);
        ps_chat *abb = merge2(ab, b);
        ok = same(ab, abb);
        if (!ok)
            report("merge(merge(a,b),b) == merge(a,b)", (const ps_chat *const[]){a, b}, 2, abb, ab);
        ps__chat_free(ab);
        ps__chat_free(abb);
    }
    ps__chat_free(aa);
    ps__chat_free(copy);
    return ok;
}

static bool empty_is_identity(ps_chat *a, ps_chat *b, ps_chat *c)
{
    ps_chat *empty = ps__chat_new("c");
    ps_chat *ea = merge2(empty, a);
    ps_chat *ae = merge2(a, empty);
    bool ok = same(ea, a) && same(ae, a);
    if (!ok)
        report("merge(empty,a) == a == merge(a,empty)", (const ps_chat *const[]){a}, 1, ea, ae);
    ps__chat_free(ea);
    ps__chat_free(ae);
    ps__chat_free(empty);
    return ok;
}

static bool never_loses_a_write(ps_chat *a, ps_chat *b, ps_chat *c)
{
    ps_chat *ab = merge2(a, b);
    bool ok = keeps_messages(ab, a) && keeps_messages(ab, b) && keeps_fields(ab, a) &&
              keeps_fields(ab, b);
    /* and invents nothing */
    for (size_t i = 0; ok && i < ab->nmessages; i++)
        ok = find_message(a, ab->messages[i].id) || find_message(b, ab->messages[i].id);
    for (size_t i = 1; ok && i < ab->nmessages; i++)
        ok = strcmp(ab->messages[i - 1].id, ab->messages[i].id) < 0;
    if (!ok)
        report("every message id and field of a and b is kept, newest write",
               (const ps_chat *const[]){a, b}, 2, ab, NULL);
    ps__chat_free(ab);
    return ok;
}

static bool changed_iff_state_changed(ps_chat *a, ps_chat *b, ps_chat *c)
{
    ps_chat *into = merge2(a, a);
    json_object *before = state_of(into);
    bool changed = false;
    assert_int_equal(ps__chat_merge(into, b, &changed), PS_OK);
    json_object *after = state_of(into);
    bool ok = changed == !json_object_equal(before, after);
    if (!ok) {
        print_error("changed=%d but state %s\n", changed, changed ? "did not change" : "changed");
        report("*changed tells whether into changed", (const ps_chat *const[]){a, b}, 2, into,
               NULL);
    }
    json_object_put(before);
    json_object_put(after);
    ps__chat_free(into);
    return ok;
}

static bool state_round_trip(ps_chat *a, ps_chat *b, ps_chat *c)
{
    json_object *st = state_of(a);
    const char *text = ps__json_text(st, NULL);
    json_object *parsed = NULL;
    ps_chat *back = NULL;
    bool ok = ps__json_parse(text, strlen(text), 10000, &parsed, NULL) == PS_OK &&
              ps__chat_state_from_json(parsed, &back, NULL) == PS_OK && same(a, back) &&
              ps__chat_is_live(a) == ps__chat_is_live(back);
    if (!ok)
        report("state_from_json(state_to_json(a)) == a", (const ps_chat *const[]){a}, 1, back,
               NULL);
    ps__chat_free(back);
    json_object_put(parsed);
    json_object_put(st);
    return ok;
}

/* Messages with equal timestamps are shown in the order the server first
 * received them (#10.3), which depends on the merge order by design; the
 * rest of the legacy view may not. So the views are compared with each
 * run of equal timestamps sorted by id, after checking that timestamps
 * never go down. */
static bool sort_equal_times(json_object *legacy)
{
    json_object *msgs = json_object_object_get(legacy, "messages");
    size_t n = json_object_array_length(msgs);
    int64_t prev = INT64_MIN;
    for (size_t i = 0; i < n; i++) {
        json_object *ts = json_object_object_get(json_object_array_get_idx(msgs, i), "timestamp");
        int64_t ms = 0;
        if (ts)
            ps__time_from_json(ts, &ms);
        if (ms < prev)
            return false;
        prev = ms;
    }
    for (size_t i = 1; i < n; i++) /* insertion sort by (timestamp, id) within runs */
        for (size_t j = i; j > 0; j--) {
            json_object *x = json_object_array_get_idx(msgs, j - 1);
            json_object *y = json_object_array_get_idx(msgs, j);
            int64_t tx = 0, ty = 0;
            json_object *v;
            if ((v = json_object_object_get(x, "timestamp")))
                ps__time_from_json(v, &tx);
            if ((v = json_object_object_get(y, "timestamp")))
                ps__time_from_json(v, &ty);
            const char *ix = json_object_get_string(json_object_object_get(x, "id"));
            const char *iy = json_object_get_string(json_object_object_get(y, "id"));
            if (tx != ty || strcmp(ix, iy) <= 0)
                break;
            json_object_get(x);
            json_object_get(y);
            json_object_array_put_idx(msgs, j - 1, y);
            json_object_array_put_idx(msgs, j, x);
        }
    return true;
}

/* The legacy view is a function of the state and arrival: merge order can
 * only show in the order of messages that share a timestamp. */
static bool legacy_view_converges(ps_chat *a, ps_chat *b, ps_chat *c)
{
    ps_chat *ab = merge2(a, b), *ba = merge2(b, a);
    json_object *la = ps__chat_to_legacy(ab), *lb = ps__chat_to_legacy(ba);
    bool ordered = sort_equal_times(la) && sort_equal_times(lb);
    bool ok = ordered && strcmp(ps__json_text(la, NULL), ps__json_text(lb, NULL)) == 0 &&
              ps__chat_is_live(ab) == ps__chat_is_live(ba);
    if (!ok) {
        print_error("  legacy: %s\n  legacy: %s\n", ps__json_text(la, NULL), ps__json_text(lb, NULL));
        report("to_legacy(merge(a,b)) == to_legacy(merge(b,a))", (const ps_chat *const[]){a, b}, 2,
               ab, ba);
    }
    json_object_put(la);
    json_object_put(lb);
    ps__chat_free(ab);
    ps__chat_free(ba);
    return ok;
}

static void check_property(property_fn fn)
{
    load_settings(DEFAULT_SEED, DEFAULT_CASES);
    rng = seed0;
    int failures = 0;
    for (current_case = 0; current_case < ncases && failures < 3; current_case++) {
        ps_chat *a = random_state(), *b = random_state(), *c = random_state();
        if (!fn(a, b, c))
            failures++;
        ps__chat_free(a);
        ps__chat_free(b);
        ps__chat_free(c);
    }
    if (failures)
        fail_msg("%d failing case(s); rerun with PS_PROPERTY_SEED=%" PRIu64, failures, seed0);
}

static void merge_is_commutative(void **state)
{
    check_property(commutative);
}

static void merge_is_associative(void **state)
{
    check_property(associative);
}

static void merge_is_idempotent(void **state)
{
    check_property(idempotent);
}

static void empty_chat_is_the_identity(void **state)
{
    check_property(empty_is_identity);
}

static void merge_never_loses_a_write(void **state)
{
    check_property(never_loses_a_write);
}

static void changed_flag_is_exact(void **state)
{
    check_property(changed_iff_state_changed);
}

static void stored_state_round_trips(void **state)
{
    check_property(state_round_trip);
}

static void legacy_view_is_order_independent(void **state)
{
    check_property(legacy_view_converges);
}

/* The generator must actually produce what the properties are about. */
static void generator_covers_the_interesting_cases(void **state)
{
    load_settings(DEFAULT_SEED, DEFAULT_CASES);
    rng = seed0;
    unsigned tombstoned_chats = 0, dead_chats = 0, message_tombstones = 0, ties = 0, shared_ids = 0;
    for (int i = 0; i < 2000; i++) {
        ps_chat *a = random_state(), *b = random_state();
        tombstoned_chats += a->has_tombstone;
        dead_chats += a->has_tombstone && !ps__chat_is_live(a);
        for (size_t k = 0; k < a->nmessages; k++) {
            message_tombstones += a->messages[k].value == NULL;
            const ps_message *o = find_message(b, a->messages[k].id);
            if (o) {
                shared_ids++;
                ties += ps__stamp_cmp(&o->stamp, &a->messages[k].stamp) == 0;
            }
        }
        for (size_t k = 0; k < a->nfields; k++) {
            const ps_field *o = ps__chat_field(b, a->fields[k].name);
            if (o)
                ties += ps__stamp_cmp(&o->stamp, &a->fields[k].stamp) == 0;
        }
        ps__chat_free(a);
        ps__chat_free(b);
    }
    print_message(
        "generator: %u tombstoned, %u dead, %u message tombstones, %u shared ids, %u ties\n",
        tombstoned_chats, dead_chats, message_tombstones, shared_ids, ties);
    assert_true(tombstoned_chats > 200);
    assert_true(dead_chats > 100);
    assert_true(message_tombstones > 100);
    assert_true(shared_ids > 300);
    assert_true(ties > 10);
}

int main(void)
{
    load_settings(DEFAULT_SEED, DEFAULT_CASES);
    print_message("merge properties: PS_PROPERTY_SEED=%" PRIu64 " PS_PROPERTY_CASES=%lu\n", seed0,
                  ncases);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(generator_covers_the_interesting_cases),
        cmocka_unit_test(merge_is_commutative),
        cmocka_unit_test(merge_is_associative),
        cmocka_unit_test(merge_is_idempotent),
        cmocka_unit_test(empty_chat_is_the_identity),
        cmocka_unit_test(merge_never_loses_a_write),
        cmocka_unit_test(changed_flag_is_exact),
        cmocka_unit_test(stored_state_round_trips),
        cmocka_unit_test(legacy_view_is_order_independent),
    };
    return cmocka_run_group_tests_name("merge_properties", tests, NULL, NULL);
}
