/*
 * The merge judged by a reference model (merge_model.h, written from
 * docs/merge.md), not by the implementation's own comparisons (#12.1).
 *
 * Each case draws 2..8 writes the ways the server makes them: legacy uploads
 * (ps__chat_from_legacy: private messages, message tombstones, clamped future
 * times, Lamport tuples or none, a request device), v2 changes
 * (ps__chat_from_change: clock or none, at or none, deleteMessages,
 * deleteChat), chat deletions (ps__chat_delete), time-only writes placed in the
 * Lamport order (ps__chat_place_time_only), and stale full-state copies whose
 * carried-along values are dropped by a base (ps__chat_drop_carried). Small
 * pools of names, ids, devices, counters and times make overlapping ids and
 * equal stamps common. The generator itself works out, from what it drew,
 * which register writes each one is under the rules; the model keeps the
 * newest of each; the implementation merges the ingested chats in a random
 * order and grouping (through the stored-state form now and then); the two
 * must agree on every register's value and stamp, the deletion, and
 * liveness. PS_PROPERTY_SEED / PS_PROPERTY_CASES as in
 * test_merge_properties.c.
 */
#include "test_util.h"
#include "merge_model.h"
#include "property_rng.h"
#include "core/base.h"
#include "core/chat_codec.h"
#include "core/merge.h"

#include <inttypes.h>
#include <stdlib.h>

#define NOW 100000
#define SKEW 2000
#define MAX_OPS 8

#define DEFAULT_SEED 0x6d6f64656cULL
#define DEFAULT_CASES 3000

#define N(a) (sizeof(a) / sizeof *(a))

static const char *const FIELDS[] = {"title", "model", "isArchived", "folder"};
static const char *const VALUES[] = {"\"t1\"", "\"t2\"", "true", "false", "null", "{\"k\":1}"};
static const char *const IDS[] = {"m0", "m1", "m2", "m3"};
static const char *const CONTENTS[] = {"a", "b"};
static const char *const DEVICES[] = {"", "dev-a", "dev-b", "dev-c"};
/* times as sent, and what they mean in ms (several spellings of one time,
 * and some past NOW + SKEW: clamped) */
static const struct {
    const char *text;
    int64_t ms;
} TIMES[] = {{"1000", 1000},
             {"\"1970-01-01T00:00:01.000Z\"", 1000},
             {"2000", 2000},
             {"\"1970-01-01T00:00:02Z\"", 2000},
             {"101000", 101000},
             {"150000", 150000},
             {"\"1970-01-01T00:02:00Z\"", 120000}};

static int64_t clamp(int64_t ms)
{
    return ms > NOW + SKEW ? NOW + SKEW : ms;
}

static json_object *parse(const char *text)
{
    return tu_json(text);
}

/* A base's values, as the model sees them. */
typedef struct base_value {
    char kind;
    const char *key;
    char *text;
} base_value;

typedef struct draw {
    ps_chat *chat;       /* the implementation's ingested write */
    mm_chat model;       /* its writes under the rules */
    base_value base[16]; /* a stale copy's base (carried-along values) */
    size_t nbase;
} draw;

static bool in_base(const draw *d, char kind, const char *key, const char *text)
{
    for (size_t i = 0; i < d->nbase; i++)
        if (d->base[i].kind == kind && strcmp(d->base[i].key, key) == 0 &&
            ((!text && !d->base[i].text) ||
             (text && d->base[i].text && strcmp(text, d->base[i].text) == 0)))
            return true;
    return false;
}

/* The model's side of one upload: register writes not carried along, and
 * the write to the chat's existence when any is left (or no base). */
typedef struct upload {
    char kind[24];
    const char *key[24];
    char *text[24];
    size_t n;
} upload;

/* A register value's text; NULL for a message tombstone, and for a field's
 * JSON null, which has no value either (docs/merge.md: lowest at a tie). */
static char *value_text(char kind, json_object *value)
{
    (void)kind;
    return mm_text(value);
}

static void upload_add(upload *u, char kind, const char *key, json_object *value)
{
    u->kind[u->n] = kind;
    u->key[u->n] = key;
    u->text[u->n] = value_text(kind, value);
    u->n++;
}

static void model_upload(draw *d, upload *u, const mm_stamp *s, bool touch, bool with_base)
{
    /* one value per register and upload: the newest of its copies (a chat
     * that lists one message twice is merged as two writes would be) */
    mm_chat sent = {0};
    for (size_t i = 0; i < u->n; i++) {
        mm_write(&sent, u->kind[i], u->key[i], u->text[i], s);
        free(u->text[i]);
    }
    size_t writes = 0;
    for (size_t i = 0; i < sent.n; i++) {
        const mm_register *r = &sent.regs[i];
        if (!(with_base && in_base(d, r->kind, r->key, r->text))) {
            mm_write(&d->model, r->kind, r->key, r->text, s);
            writes++;
        }
    }
    mm_free(&sent);
    if (touch && (!with_base || writes > 0))
        mm_touch(&d->model, s);
}

/* Some of the upload's own values and a few others: a stale copy's base. */
static void draw_base(draw *d, const upload *u, ps_base *base)
{
    ps_chat *holder = ps__chat_new("c");
    for (size_t i = 0; i < u->n && d->nbase < N(d->base) - 2; i++) {
        if (!chance(60))
            continue;
        d->base[d->nbase++] =
            (base_value){u->kind[i], u->key[i], u->text[i] ? strdup(u->text[i]) : NULL};
    }
    for (int k = 0; k < 2; k++) { /* values the device held before, not sent now */
        const char *name = FIELDS[pick(N(FIELDS))];
        const char *val = VALUES[pick(N(VALUES))];
        json_object *v = parse(val);
        d->base[d->nbase++] = (base_value){'f', name, value_text('f', v)};
        json_object_put(v);
    }
    ps_stamp st = tu_stamp(1, 0, "");
    for (size_t i = 0; i < d->nbase; i++) {
        bool changed;
        if (d->base[i].kind == 'f') {
            /* a holder chat keeps one value per name: add each through its own */
            ps_chat *one = ps__chat_new("c");
            ps__chat_put_field(one, d->base[i].key, d->base[i].text ? parse(d->base[i].text) : NULL,
                              &st, &changed);
            assert_int_equal(ps__base_add_chat(base, one), PS_OK);
            ps__chat_free(one);
        } else {
            ps_chat *one = ps__chat_new("c");
            ps__chat_append_message(one, d->base[i].key,
                                   d->base[i].text ? parse(d->base[i].text) : NULL, &st, 0);
            assert_int_equal(ps__base_add_chat(base, one), PS_OK);
            ps__chat_free(one);
        }
    }
    ps__chat_free(holder);
    ps__base_seal(base);
}

static json_object *draw_message(const char *id, bool *dead, bool *private_)
{
    json_object *m = json_object_new_object();
    json_object_object_add(m, "id", json_object_new_string(id));
    *dead = chance(15);
    *private_ = false;
    if (*dead) {
        json_object_object_add(m, "deleted", json_object_new_boolean(1));
        return m;
    }
    json_object_object_add(m, "role", json_object_new_string("user"));
    json_object_object_add(m, "content", json_object_new_string(CONTENTS[pick(N(CONTENTS))]));
    if (chance(60))
        json_object_object_add(m, "timestamp", parse(TIMES[pick(N(TIMES))].text));
    if (chance(10)) {
        *private_ = chance(70);
        json_object_object_add(m, "isPrivate", json_object_new_boolean(*private_));
    }
    return m;
}

/* A time-only write may be placed in the Lamport order (the server does so
 * on arrival when the chat has Lamport writes older in time than it). */
static int64_t draw_place(void)
{
    return chance(40) ? 1 + pick(3) : 0;
}

static void apply_place(draw *d, mm_stamp *s, int64_t place)
{
    if (s->lamport == 0 && place > 0) {
        ps__chat_place_time_only(d->chat, place);
        s->lamport = place;
        s->placed = true;
    }
}

static void draw_legacy(draw *d)
{
    json_object *c = json_object_new_object();
    upload u = {0};
    json_object_object_add(c, "id", json_object_new_string("c"));
    for (size_t i = 0; i < N(FIELDS); i++) {
        if (chance(45)) {
            json_object *v = parse(VALUES[pick(N(VALUES))]);
            json_object_object_add(c, FIELDS[i], v);
            upload_add(&u, 'f', FIELDS[i], v);
        }
    }
    static const char *const tkeys[3] = {"createdAt", "updatedAt", "lastModified"};
    int64_t tms[3] = {-1, -1, -1};
    for (int k = 0; k < 3; k++) {
        if (chance(55)) {
            unsigned t = pick(N(TIMES));
            json_object_object_add(c, tkeys[k], parse(TIMES[t].text));
            tms[k] = TIMES[t].ms;
        }
    }
    const char *req_device = DEVICES[pick(N(DEVICES))];
    mm_stamp s = {.device = req_device};
    s.ts = tms[2] >= 0   ? clamp(tms[2])
           : tms[1] >= 0 ? clamp(tms[1])
           : tms[0] >= 0 ? clamp(tms[0])
                         : 0;
    if (chance(50)) {
        unsigned n = pick(4);
        const char *dev = DEVICES[1 + pick(N(DEVICES) - 1)];
        char lam[64];
        snprintf(lam, sizeof lam, "[%u,\"%s\"]", n, dev);
        json_object_object_add(c, "updatedAtLamport", parse(lam));
        s.lamport = n;
        s.device = dev; /* the tuple names the writer */
    }
    if (chance(85)) {
        json_object *msgs = json_object_new_array();
        unsigned n = pick(5);
        for (unsigned i = 0; i < n; i++) {
            const char *id = IDS[pick(N(IDS))];
            bool dead, priv;
            json_object *m = draw_message(id, &dead, &priv);
            json_object_array_add(msgs, m);
            if (!priv)
                upload_add(&u, 'm', id, dead ? NULL : m);
        }
        json_object_object_add(c, "messages", msgs);
    }
    ps_ingest in = {.device = req_device, .now_ms = NOW, .max_skew_ms = SKEW};
    assert_int_equal(ps__chat_from_legacy(c, &in, &d->chat), PS_OK);
    apply_place(d, &s, draw_place());
    bool with_base = chance(35);
    if (with_base) { /* a stale full-state copy: drop what it only carried */
        ps_base base = {0};
        draw_base(d, &u, &base);
        size_t writes;
        ps__chat_drop_carried(d->chat, &base, &writes);
        ps__base_free(&base);
    }
    model_upload(d, &u, &s, true, with_base);
    json_object_put(c);
}

static void draw_v2(draw *d)
{
    json_object *c = json_object_new_object();
    upload u = {0};
    const char *device = DEVICES[1 + pick(N(DEVICES) - 1)];
    mm_stamp s = {.ts = NOW, .device = device};
    json_object_object_add(c, "chatId", json_object_new_string("c"));
    if (chance(60)) {
        s.lamport = pick(4);
        json_object_object_add(c, "clock", json_object_new_int64(s.lamport));
    }
    if (chance(60)) {
        unsigned t = pick(N(TIMES));
        json_object_object_add(c, "at", parse(TIMES[t].text));
        s.ts = clamp(TIMES[t].ms);
    }
    bool delete_chat = chance(15);
    if (delete_chat)
        json_object_object_add(c, "deleteChat", json_object_new_boolean(1));
    if (chance(60)) {
        json_object *f = json_object_new_object();
        for (size_t i = 0; i < N(FIELDS); i++)
            if (chance(40)) {
                json_object *v = parse(VALUES[pick(N(VALUES))]);
                json_object_object_add(f, FIELDS[i], v);
                upload_add(&u, 'f', FIELDS[i], v);
            }
        json_object_object_add(c, "fields", f);
    }
    if (chance(60)) {
        json_object *msgs = json_object_new_array();
        unsigned n = 1 + pick(3);
        for (unsigned i = 0; i < n; i++) {
            const char *id = IDS[pick(N(IDS))];
            bool dead, priv;
            json_object *m = draw_message(id, &dead, &priv);
            json_object_object_del(m, "deleted"); /* v2 deletes with deleteMessages */
            if (dead) {
                json_object_object_add(m, "role", json_object_new_string("user"));
                json_object_object_add(m, "content", json_object_new_string("x"));
            }
            json_object_array_add(msgs, m);
            if (!priv)
                upload_add(&u, 'm', id, m);
        }
        json_object_object_add(c, "messages", msgs);
    }
    if (chance(30)) {
        json_object *del = json_object_new_array();
        const char *id = IDS[pick(N(IDS))];
        json_object_array_add(del, json_object_new_string(id));
        json_object_object_add(c, "deleteMessages", del);
        upload_add(&u, 'm', id, NULL);
    }
    ps_ingest in = {.device = device, .now_ms = NOW, .max_skew_ms = SKEW};
    assert_int_equal(ps__chat_from_change(c, &in, &d->chat), PS_OK);
    apply_place(d, &s, draw_place());
    if (delete_chat)
        mm_delete(&d->model, &s);
    model_upload(d, &u, &s, !delete_chat, false);
    json_object_put(c);
}

static void draw_deletion(draw *d)
{
    d->chat = ps__chat_new("c");
    mm_stamp s = {
        .ts = TIMES[pick(N(TIMES))].ms, .lamport = pick(4), .device = DEVICES[pick(N(DEVICES))]};
    s.placed = s.lamport > 0 && chance(30);
    ps_stamp st = tu_stamp(s.ts, s.lamport, s.device);
    st.timed = s.placed;
    ps_lamport shown = {1 + pick(5), "server"};
    bool changed;
    assert_int_equal(ps__chat_delete(d->chat, &st, &shown, &changed), PS_OK);
    mm_delete(&d->model, &s);
}

static void draw_one(draw *d)
{
    memset(d, 0, sizeof *d);
    unsigned k = pick(10);
    if (k < 5)
        draw_legacy(d);
    else if (k < 8)
        draw_v2(d);
    else
        draw_deletion(d);
}

static void draw_free(draw *d)
{
    ps__chat_free(d->chat);
    mm_free(&d->model);
    for (size_t i = 0; i < d->nbase; i++)
        free(d->base[i].text);
}

/* Replays a drawn write's model into the whole model. */
static void model_join(mm_chat *into, const mm_chat *from)
{
    for (size_t i = 0; i < from->n; i++)
        mm_write(into, from->regs[i].kind, from->regs[i].key, from->regs[i].text,
                 &from->regs[i].stamp);
    if (from->has_touched)
        mm_touch(into, &from->touched);
    if (from->has_deletion)
        mm_delete(into, &from->deletion);
}

static ps_chat *through_store_form(ps_chat *chat)
{
    json_object *st = ps__chat_state_to_json(chat);
    json_object *copy = parse(json_object_to_json_string_ext(st, JSON_C_TO_STRING_PLAIN));
    ps_chat *back = NULL;
    assert_int_equal(ps__chat_state_from_json(copy, &back, NULL), PS_OK);
    json_object_put(st);
    json_object_put(copy);
    ps__chat_free(chat);
    return back;
}

/* The implementation's merge of the drawn chats, in a random order and
 * grouping. */
static ps_chat *merge_all(draw *d, size_t n)
{
    ps_chat *parts[MAX_OPS];
    for (size_t i = 0; i < n; i++) {
        parts[i] = ps__chat_new("c");
        bool changed;
        assert_int_equal(ps__chat_merge(parts[i], d[i].chat, &changed), PS_OK);
    }
    while (n > 1) { /* merge two random parts into one */
        size_t i = pick((unsigned)n), j = pick((unsigned)n - 1);
        if (j >= i)
            j++;
        bool changed;
        assert_int_equal(ps__chat_merge(parts[i], parts[j], &changed), PS_OK);
        ps__chat_free(parts[j]);
        parts[j] = parts[--n];
        if (chance(20))
            parts[i == n ? j : i] = through_store_form(parts[i == n ? j : i]);
    }
    return parts[0];
}

static bool same_stamp(const ps_stamp *a, const mm_stamp *b)
{
    return a->ts == b->ts && a->lamport == b->lamport &&
           strcmp(a->device ? a->device : "", b->device) == 0 && a->timed == b->placed;
}

static bool same_text(char kind, json_object *v, const char *text)
{
    char *t = value_text(kind, v);
    bool eq = (!t && !text) || (t && text && strcmp(t, text) == 0);
    free(t);
    return eq;
}

/* Compares; prints the first difference. */
static bool agrees(const ps_chat *got, const mm_chat *want)
{
    size_t nregs = 0;
    for (size_t i = 0; i < want->n; i++) {
        const mm_register *r = &want->regs[i];
        json_object *v = NULL;
        const ps_stamp *s = NULL;
        if (r->kind == 'f') {
            const ps_field *f = ps__chat_field(got, r->key);
            if (f)
                v = f->value, s = &f->stamp;
        } else {
            const ps_message *m = got->nmessages ? ps__chat_message(got, r->key) : NULL;
            if (m)
                v = m->value, s = &m->stamp;
        }
        if (!s || !same_text(r->kind, v, r->text) || !same_stamp(s, &r->stamp)) {
            char *t = value_text(r->kind, v);
            print_error("register %c:%s: model %s at [%" PRId64 ",%" PRId64 ",%s%s], merge %s\n",
                        r->kind, r->key, r->text ? r->text : "(tombstone)", r->stamp.ts,
                        r->stamp.lamport, r->stamp.device, r->stamp.placed ? ",placed" : "",
                        s ? (t ? t : "(tombstone)") : "(missing)");
            free(t);
            return false;
        }
        nregs++;
    }
    if (nregs != got->nfields + got->nmessages) {
        print_error("the merge has %zu registers, the model %zu\n", got->nfields + got->nmessages,
                    nregs);
        return false;
    }
    if (got->has_tombstone != want->has_deletion ||
        (want->has_deletion && !same_stamp(&got->tombstone, &want->deletion))) {
        print_error("deletion differs from the model's\n");
        return false;
    }
    if (ps__chat_is_live(got) != mm_live(want)) {
        print_error("live: merge %d, model %d\n", ps__chat_is_live(got), mm_live(want));
        return false;
    }
    return true;
}

static void merge_agrees_with_the_model(void **state)
{
    load_settings(DEFAULT_SEED, DEFAULT_CASES);
    rng = seed0;
    int failures = 0;
    unsigned ties = 0, placed = 0, carried = 0, deleted = 0;
    for (current_case = 0; current_case < ncases && failures < 3; current_case++) {
        draw d[MAX_OPS];
        size_t n = 2 + pick(MAX_OPS - 1);
        mm_chat want = {0};
        for (size_t i = 0; i < n; i++) {
            draw_one(&d[i]);
            model_join(&want, &d[i].model);
            carried += d[i].nbase > 0;
            placed += d[i].model.has_touched && d[i].model.touched.placed;
        }
        for (size_t i = 0; i < n; i++)
            for (size_t j = i + 1; j < n; j++)
                for (size_t k = 0; k < d[i].model.n; k++) {
                    const mm_register *o =
                        mm_find(&d[j].model, d[i].model.regs[k].kind, d[i].model.regs[k].key);
                    ties += o && mm_stamp_cmp(&o->stamp, &d[i].model.regs[k].stamp) == 0;
                }
        deleted += want.has_deletion && !mm_live(&want);
        ps_chat *got = merge_all(d, n);
        if (!agrees(got, &want)) {
            for (size_t i = 0; i < n; i++) {
                json_object *st = ps__chat_state_to_json(d[i].chat);
                print_error("  write %zu: %s\n", i, ps__json_text(st, NULL));
                json_object_put(st);
                for (size_t k = 0; k < d[i].model.n; k++)
                    print_error("    model %c:%s = %s at [%" PRId64 ",%" PRId64 ",%s%s]\n",
                                d[i].model.regs[k].kind, d[i].model.regs[k].key,
                                d[i].model.regs[k].text ? d[i].model.regs[k].text : "(tombstone)",
                                d[i].model.regs[k].stamp.ts, d[i].model.regs[k].stamp.lamport,
                                d[i].model.regs[k].stamp.device,
                                d[i].model.regs[k].stamp.placed ? ",placed" : "");
            }
            print_error("case %lu disagrees with the model: PS_PROPERTY_SEED=%" PRIu64 "\n",
                        current_case, seed0);
            json_object *st = ps__chat_state_to_json(got);
            print_error("  merge: %s\n", ps__json_text(st, NULL));
            json_object_put(st);
            failures++;
        }
        ps__chat_free(got);
        mm_free(&want);
        for (size_t i = 0; i < n; i++)
            draw_free(&d[i]);
    }
    print_message("model: %lu cases, %u equal-stamp pairs, %u placed time-only writes, "
                  "%u carried-along copies, %u deleted chats\n",
                  current_case, ties, placed, carried, deleted);
    if (failures)
        fail_msg("%d case(s) disagree with the model; rerun with PS_PROPERTY_SEED=%" PRIu64,
                 failures, seed0);
    /* the generator must reach what the rules are about */
    assert_true(ties > 100 && placed > 100 && carried > 300 && deleted > 100);
}

int main(void)
{
    load_settings(DEFAULT_SEED, DEFAULT_CASES);
    print_message("merge model: PS_PROPERTY_SEED=%" PRIu64 " PS_PROPERTY_CASES=%lu\n", seed0,
                  ncases);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(merge_agrees_with_the_model),
    };
    return cmocka_run_group_tests_name("merge_model", tests, NULL, NULL);
}
