/*
 * A legacy body taken chat by chat (core/chat_splitter.h, server/legacy_body.h)
 * against one strict parse of the whole body (chat_stream_diff.h): the same
 * bodies accepted and the same chats, whatever the cuts between feeds and
 * whether the chats wait in memory or in the spool's file. Hand-written
 * edge cases first, then seeded random bodies and their mutations.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "chat_stream_diff.h"
#include "core/chat_splitter.h"
#include "server/body_spool.h"
#include "server/content_hash.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char spool_dir[] = "/tmp/ps-test-splitter-XXXXXX";

/* Every way to cut `text` in two, in memory and through a file, and in
 * pieces of 1 to 7 bytes. */
static void agrees_everywhere(const char *text)
{
    size_t len = strlen(text);
    for (size_t cut = 0; cut <= len; cut++) {
        const char *p = chat_stream_disagreement(text, len, &cut, 1, spool_dir, 1 << 20);
        if (!p)
            p = chat_stream_disagreement(text, len, &cut, 1, spool_dir, 1);
        if (p)
            fail_msg("%s, cut at %zu: %s", p, cut, text);
    }
    size_t cuts[4096], n = 0;
    for (size_t at = 0, step = 1; at < len && n < 4096; step = step % 7 + 1)
        cuts[n++] = at += step;
    const char *p = chat_stream_disagreement(text, len, cuts, n, spool_dir, 8);
    if (p)
        fail_msg("%s, in small pieces: %s", p, text);
}

static void edge_cases(void **state)
{
    (void)state;
    static const char *const bodies[] = {
        "{\"chats\":[]}",
        " { \"chats\" : [ ] } ",
        "{\"chats\":[{\"id\":\"a\"},{\"id\":\"b\",\"messages\":[{\"id\":\"m\"}]}]}",
        "{\"deviceId\":\"d\",\"chats\":[{\"id\":\"a\"}],\"deleted\":[\"x\"]}",
        "{\"chats\":[{\"id\":\"a\\\"],\\\\\"}]}", /* quotes, brackets, escapes in a string */
        "{\"chats\":[{\"t\":\"caf\\u00e9 \xc3\xa9 \xf0\x9f\x98\x80\"}]}",
        "{\"chats\":[1,\"s\",true,null,-1.5e3,[],{}]}",   /* any values: the validator judges */
        "{\"chats\":[{\"chats\":[{\"id\":\"inner\"}]}]}", /* "chats" deeper is not the array */
        "{\"x\":{\"chats\":[1]},\"chats\":[2]}",
        "{\"ch\\u0061ts\":[{\"id\":\"escaped key\"}]}", /* the key as json-c reads it */
        "{\"chats\":[{\"id\":\"first\"}],\"chats\":[{\"id\":\"last\"}]}", /* json-c keeps the last
                                                                           */
        "{\"chats\":[{\"id\" 1}],\"chats\":[{\"id\":\"last\"}]}", /* the dropped one is still JSON
                                                                   */
        "{\"chats\":[{\"id\":\"a\"}],\"chats\":5}",
        "{\"chats\":5,\"chats\":[{\"id\":\"a\"}]}",
        "{\"a\":\"chats\",\"b\":[1]}", /* a value, not a key */
        "[{\"chats\":[1]}]",
        "\"chats\"",
        "",
        "{\"chats\":[,]}",
        "{\"chats\":[{},]}",
        "{\"chats\":[{} {}]}",
        "{\"chats\":[1 2]}",
        "{\"chats\":[1x]}",
        "{\"chats\":[1{]}",
        "{\"chats\":[{}}}",
        "{\"chats\":[{]}",
        "{\"chats\":[{\"a\":[}]]}",
        "{\"chats\":[\"unterminated]}",
        "{\"chats\":[{}",
        "{\"chats\":[{}]",
        "{\"chats\":[{}]}}",
        "{\"chats\":[{}]} x",
        "{\"chats\":[{\"a\":\"\xc3\x28\"}]}", /* bad UTF-8 in a chat */
        "{\"chats\":[{\"a\":\"raw\ncontrol\"}]}",
        "{\"chats\":[{\"a\":01}]}",
        "{\"chats\":[tru]}",
        "{\"chats\":[NaN]}",
        "{\"chats\":[{}],\"deviceId\":\"\xff\"}", /* bad UTF-8 in the envelope */
        "{\"chats\":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]"
        "]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}",
        "{\"chats\":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]"
        "]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}",
    };
    for (size_t i = 0; i < sizeof bodies / sizeof *bodies; i++)
        agrees_everywhere(bodies[i]);
}

/* ---- seeded random bodies ---- */

static uint64_t rng = 0x9E3779B97F4A7C15ULL;
static unsigned pick(unsigned n)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (unsigned)(rng % n);
}

typedef struct text {
    char *p;
    size_t len, cap;
} text;

static void put(text *t, const char *s)
{
    size_t n = strlen(s);
    if (t->len + n + 1 > t->cap) {
        t->cap = (t->len + n + 1) * 2;
        t->p = realloc(t->p, t->cap);
    }
    memcpy(t->p + t->len, s, n + 1);
    t->len += n;
}

static void space(text *t)
{
    static const char *const ws[] = {"", "", "", " ", "\n  ", "\t"};
    put(t, ws[pick(6)]);
}

static void value(text *t, int depth)
{
    static const char *const strings[] = {"\"\"",
                                          "\"plain\"",
                                          "\"q\\\"uote\"",
                                          "\"b\\\\\"",
                                          "\"],{}:,\"",
                                          "\"caf\xc3\xa9\"",
                                          "\"\\u00e9\\ud83d\\ude00\"",
                                          "\"\xe4\xb8\xad\"",
                                          "\"chats\"",
                                          "\"\\/\\b\\f\\n\\r\\t\""};
    static const char *const scalars[] = {"0",        "-1",   "12.5",  "1e5",
                                          "-0.25E-3", "true", "false", "null"};
    static const char *const keys[] = {"\"id\"", "\"messages\"",    "\"chats\"",
                                       "\"x\"",  "\"ch\\u0061ts\"", "\"\""};
    unsigned kind = depth > 4 ? pick(2) : pick(5);
    if (kind == 4) { /* long text: escapes and backslash runs across 64-byte blocks */
        static const char *const pieces[] = {"a",   "bcdefgh",  "\\\\",    "\\\"",
                                             "\\n", "\xc3\xa9", "\\u00e9", "]},{"};
        put(t, "\"");
        for (unsigned k = 40 + pick(200); k > 0; k--)
            put(t, pieces[pick(8)]);
        put(t, "\"");
    } else if (kind == 0) {
        put(t, strings[pick(10)]);
    } else if (kind == 1) {
        put(t, scalars[pick(8)]);
    } else {
        bool object = kind == 2;
        put(t, object ? "{" : "[");
        unsigned n = pick(4);
        for (unsigned i = 0; i < n; i++) {
            space(t);
            if (i)
                put(t, ",");
            space(t);
            if (object) {
                put(t, keys[pick(6)]);
                space(t);
                put(t, ":");
                space(t);
            }
            value(t, depth + 1);
        }
        space(t);
        put(t, object ? "}" : "]");
    }
}

static void body(text *t)
{
    static const char *const keys[] = {"\"deviceId\"", "\"chats\"", "\"deleted\"", "\"x\"",
                                       "\"ch\\u0061ts\""};
    put(t, "{");
    unsigned n = 1 + pick(3);
    for (unsigned i = 0; i < n; i++) {
        space(t);
        if (i)
            put(t, ",");
        unsigned k = i == 0 ? 1 : pick(5);
        put(t, keys[k]);
        space(t);
        put(t, ":");
        space(t);
        if (k == 1 || k == 4 || pick(3) == 0) { /* an array of chats */
            put(t, "[");
            unsigned m = pick(5);
            for (unsigned j = 0; j < m; j++) {
                space(t);
                if (j)
                    put(t, ",");
                space(t);
                bool chat = pick(4) != 0; /* a chat-like object around the value */
                if (chat)
                    put(t, "{\"id\":\"c\",\"messages\":[{\"id\":\"m\",\"content\":");
                value(t, 2);
                if (chat)
                    put(t, "}]}");
            }
            space(t);
            put(t, "]");
        } else {
            value(t, 1);
        }
    }
    space(t);
    put(t, "}");
}

static void mutate(text *t)
{
    static const char bytes[] = "\",[]{}:\\ 1a\xc3\x80\xff\n";
    unsigned n = 1 + pick(3);
    for (unsigned k = 0; k < n && t->len > 0; k++) {
        size_t at = pick((unsigned)t->len);
        switch (pick(3)) {
        case 0: /* delete a byte */
            memmove(t->p + at, t->p + at + 1, t->len - at);
            t->len--;
            break;
        case 1: /* replace one */
            t->p[at] = bytes[pick(sizeof bytes - 1)];
            break;
        default: /* insert one */
            put(t, " ");
            memmove(t->p + at + 1, t->p + at, t->len - at - 1);
            t->p[at] = bytes[pick(sizeof bytes - 1)];
        }
    }
}

static void random_bodies(void **state)
{
    (void)state;
    text t = {0};
    size_t accepted = 0, total = 20000;
    for (size_t round = 0; round < total; round++) {
        t.len = 0;
        body(&t);
        if (round % 2)
            mutate(&t);
        size_t cuts[8], n = pick(8);
        for (size_t k = 0; k < n; k++)
            cuts[k] = t.len ? pick((unsigned)t.len + 1) : 0;
        for (size_t a = 0; a < n; a++) /* increasing */
            for (size_t b = a + 1; b < n; b++)
                if (cuts[b] < cuts[a]) {
                    size_t x = cuts[a];
                    cuts[a] = cuts[b];
                    cuts[b] = x;
                }
        size_t memory_max = pick(2) ? 1 << 20 : 1 + pick(64);
        const char *p = chat_stream_disagreement(t.p, t.len, cuts, n, spool_dir, memory_max);
        if (p)
            fail_msg("round %zu: %s: %.*s", round, p, (int)t.len, t.p);
        json_object *o = NULL;
        if (ps__json_parse(t.p, t.len, PS_JSON_MAX_DEPTH, &o, NULL) == PS_OK)
            accepted++;
        json_object_put(o);
    }
    free(t.p);
    /* both kinds were tried: the generator is not all valid or all broken */
    assert_true(accepted > total / 10);
    assert_true(accepted < total * 9 / 10);
}

/* ---- the SSE2 path and the one chosen for the processor (AVX2) ---- */

/* Everything a splitter hands its sink, in order: "E<bytes>" for envelope
 * bytes, "C<bytes>" for chat bytes, "|<offset>" at a chat's end, "S" at a
 * "chats" array's start. Pieces of one kind run together, so the record
 * does not depend on where the feeds were cut. */
typedef struct recorder {
    text t;
    char last; /* the kind of the last piece */
} recorder;

static ps_code record(recorder *r, char kind, const char *p, size_t n)
{
    if (r->last != kind || (kind != 'E' && kind != 'C'))
        put(&r->t, (char[2]){kind, 0});
    r->last = kind;
    if (r->t.len + n + 1 > r->t.cap) {
        r->t.cap = (r->t.len + n + 1) * 2;
        r->t.p = realloc(r->t.p, r->t.cap);
    }
    memcpy(r->t.p + r->t.len, p, n);
    r->t.len += n;
    r->t.p[r->t.len] = 0;
    return PS_OK;
}
static ps_code rec_envelope(void *cls, const char *p, size_t n)
{
    return record(cls, 'E', p, n);
}
static ps_code rec_chat_part(void *cls, const char *p, size_t n)
{
    return record(cls, 'C', p, n);
}
static ps_code rec_chat_end(void *cls, uint64_t offset)
{
    char at[32];
    snprintf(at, sizeof at, "%llu", (unsigned long long)offset);
    return record(cls, '|', at, strlen(at));
}
static ps_code rec_chats_start(void *cls)
{
    return record(cls, 'S', "", 0);
}

/* What a splitter (the SSE2 path or the chosen one) makes of `body` fed
 * in pieces ending at cuts[0..n): the record, then the outcome. */
static void split_into(recorder *out, bool baseline, const char *body, size_t len,
                       const size_t *cuts, size_t n)
{
    put(&out->t, "");
    ps_chat_splitter_sink sink = {.cls = out,
                                  .envelope = rec_envelope,
                                  .chat_part = rec_chat_part,
                                  .chat_end = rec_chat_end,
                                  .chats_start = rec_chats_start};
    ps_chat_splitter s;
    if (baseline)
        ps__chat_splitter_init_baseline(&s, &sink);
    else
        ps__chat_splitter_init(&s, &sink);
    ps_error err;
    ps_error_clear(&err);
    ps_code rc = PS_OK;
    size_t at = 0;
    for (size_t k = 0; k <= n && rc == PS_OK; k++) {
        size_t end = k < n && cuts[k] < len ? cuts[k] : len;
        if (end < at)
            continue;
        rc = ps__chat_splitter_feed(&s, body + at, end - at, &err);
        at = end;
    }
    if (rc == PS_OK)
        rc = ps__chat_splitter_finish(&s, &err);
    char outcome[300];
    snprintf(outcome, sizeof outcome, "\n=> %d %s", (int)rc, rc == PS_OK ? "" : err.message);
    put(&out->t, outcome);
}

static void paths_agree_on(const char *body, size_t len, const size_t *cuts, size_t n,
                           const char *what)
{
    recorder chosen = {0}, baseline = {0};
    split_into(&chosen, false, body, len, cuts, n);
    split_into(&baseline, true, body, len, cuts, n);
    if (chosen.t.len != baseline.t.len || memcmp(chosen.t.p, baseline.t.p, chosen.t.len) != 0)
        fail_msg("%s: the SSE2 path and the chosen one differ\nchosen:   %.300s\nbaseline: %.300s\n"
                 "body: %.*s",
                 what, chosen.t.p, baseline.t.p, (int)len, body);
    free(chosen.t.p);
    free(baseline.t.p);
}

/* A chat's closing bracket at every place in a 64-byte block, each kind
 * of byte before it in the block (string text, escapes, brackets inside
 * strings, nesting), fed whole and in odd pieces: both paths hand on
 * exactly the chats written, by construction. */
static void chat_ends_anywhere_in_a_block(void **state)
{
    (void)state;
    static const char *const fillers[] = {"a", "\\\\", "\\\"", "]}", "{[", "\xc3\xa9"};
    for (size_t f = 0; f < sizeof fillers / sizeof *fillers; f++) {
        for (size_t pad = 0; pad < 200; pad++) {
            text chat = {0}, body = {0};
            put(&chat, "{\"id\":\"c\",\"m\":[{\"t\":\"");
            for (size_t k = 0; k < pad; k++)
                put(&chat, fillers[f]);
            put(&chat, "\"}]}");
            put(&body, "{\"chats\":[");
            put(&body, chat.p);
            put(&body, ",");
            put(&body, chat.p);
            put(&body, "]}");
            for (int paths = 0; paths < 2; paths++) {
                recorder got = {0};
                split_into(&got, paths == 1, body.p, body.len, NULL, 0);
                char want[64];
                text expect = {0};
                put(&expect, "E{\"chats\":[SC");
                put(&expect, chat.p);
                snprintf(want, sizeof want, "|10C");
                put(&expect, want);
                put(&expect, chat.p);
                snprintf(want, sizeof want, "|%zuE]}\n=> 0 ", 11 + chat.len);
                put(&expect, want);
                if (strcmp(got.t.p, expect.p) != 0)
                    fail_msg("%s path, filler %zu x %zu: got %s", paths ? "SSE2" : "chosen", f, pad,
                             got.t.p);
                free(got.t.p);
                free(expect.p);
            }
            size_t cuts[64], n = 0;
            for (size_t at = 1 + pad % 13; at < body.len && n < 64; at += 7 + pad % 61)
                cuts[n++] = at;
            paths_agree_on(body.p, body.len, cuts, n, "in pieces");
            free(chat.p);
            free(body.p);
        }
    }
}

/* The seeded random bodies of random_bodies (and their mutations, and long
 * chats of many of them in one array) through both paths, cut at random:
 * the same record and the same outcome, byte for byte. */
static void random_bodies_both_paths(void **state)
{
    (void)state;
    text t = {0};
    for (size_t round = 0; round < 6000; round++) {
        t.len = 0;
        if (round % 3 == 2) { /* one array of many chats: blocks of 64 bytes matter */
            put(&t, "{\"chats\":[");
            for (unsigned k = 4 + pick(12); k > 0; k--) {
                put(&t, "{\"id\":\"c\",\"messages\":[");
                value(&t, 3);
                put(&t, ",");
                value(&t, 3);
                put(&t, k > 1 ? "]}," : "]}");
            }
            put(&t, "]}");
        } else {
            body(&t);
        }
        if (round % 2)
            mutate(&t);
        size_t cuts[8], n = pick(8);
        for (size_t k = 0; k < n; k++)
            cuts[k] = t.len ? pick((unsigned)t.len + 1) : 0;
        for (size_t a = 0; a < n; a++) /* increasing */
            for (size_t b = a + 1; b < n; b++)
                if (cuts[b] < cuts[a]) {
                    size_t x = cuts[a];
                    cuts[a] = cuts[b];
                    cuts[b] = x;
                }
        char what[32];
        snprintf(what, sizeof what, "round %zu", round);
        paths_agree_on(t.p, t.len, cuts, n, what);
    }
    free(t.p);
}

/* A chat handed out by the spool has src->padding readable bytes after it
 * (body_spool.h): they are read here (under ASan, a buffer without them
 * fails), and the chat hashes in place as it does copied. */
static void padding_is_there(const ps_chat_source *src, const char *bytes, size_t n)
{
    assert_true(src->padding >= PS_CONTENT_HASH_PADDING);
    volatile unsigned sum = 0;
    for (size_t k = 0; k < src->padding; k++)
        sum += (unsigned char)bytes[n + k];
    (void)sum;
    uint64_t copied = 0, in_place = 0;
    char id[64], id_in_place[64];
    assert_true(ps_content_hash(bytes, n, PS_JSON_MAX_DEPTH, &copied, id, sizeof id));
    assert_true(ps_content_hash_in_place(bytes, n, PS_JSON_MAX_DEPTH, &in_place, id_in_place,
                                         sizeof id_in_place));
    assert_true(copied == in_place);
    assert_string_equal(id, id_in_place);
}

/* Past memory_max the chats go to a file, and come back the same. */
static void spool_file_is_used_and_read_back(void **state)
{
    (void)state;
    text t = {0};
    put(&t, "{\"chats\":[");
    for (int i = 0; i < 300; i++) {
        char chat[128];
        snprintf(chat, sizeof chat, "%s{\"id\":\"c%03d\",\"pad\":\"%0100d\"}", i ? "," : "", i, i);
        put(&t, chat);
    }
    put(&t, "]}");
    ps_legacy_body_config cfg = {.max_bytes = SIZE_MAX,
                                 .max_chats = SIZE_MAX,
                                 .max_depth = PS_JSON_MAX_DEPTH,
                                 .envelope_max = PS_ENVELOPE_MAX_BYTES,
                                 .chat_max = SIZE_MAX,
                                 .spool_dir = spool_dir,
                                 .memory_max = 4096};
    ps_legacy_body *lb = ps_legacy_body_new(&cfg);
    for (size_t at = 0; at < t.len; at += 1000)
        assert_int_equal(ps_legacy_body_feed(lb, t.p + at, t.len - at < 1000 ? t.len - at : 1000),
                         PS_OK);
    ps_error err;
    assert_int_equal(ps_legacy_body_finish(lb, &err), PS_OK);
    assert_true(ps_legacy_body_spooled_bytes(lb) > 30000);
    ps_chat_source src;
    ps_legacy_body_chats(lb, &src);
    assert_int_equal(src.count, 300);
    for (size_t k = 0; k < 600; k++) { /* any order, twice */
        size_t i = (k * 7919) % 300;
        const char *bytes;
        size_t n;
        char want[128];
        snprintf(want, sizeof want, "{\"id\":\"c%03zu\",\"pad\":\"%0100zu\"}", i, i);
        assert_int_equal(ps_chat_source_bytes(&src, i, &bytes, &n, &err), PS_OK);
        assert_int_equal(n, strlen(want));
        assert_memory_equal(bytes, want, n);
        padding_is_there(&src, bytes, n);
    }
    size_t n;
    assert_string_equal(ps_legacy_body_envelope(lb, &n), "{\"chats\":[]}");
    ps_legacy_body_free(lb);
    free(t.p);
}

/* A body a little over the memory budget writes a little to the file: the
 * first memory_max bytes of chats stay in memory (body_spool.c), and every
 * chat still reads back whole, wherever it was kept. */
static void little_over_budget_writes_little(void **state)
{
    (void)state;
    text t = {0};
    put(&t, "{\"chats\":[");
    for (int i = 0; i < 40; i++) { /* 40 chats of 120 bytes: 4,800 bytes */
        char chat[160];
        snprintf(chat, sizeof chat, "%s{\"id\":\"c%03d\",\"pad\":\"%0100d\"}", i ? "," : "", i, i);
        put(&t, chat);
    }
    put(&t, "]}");
    ps_legacy_body_config cfg = {.max_bytes = SIZE_MAX,
                                 .max_chats = SIZE_MAX,
                                 .max_depth = PS_JSON_MAX_DEPTH,
                                 .envelope_max = PS_ENVELOPE_MAX_BYTES,
                                 .chat_max = SIZE_MAX,
                                 .spool_dir = spool_dir,
                                 .memory_max = 4096};
    ps_legacy_body *lb = ps_legacy_body_new(&cfg);
    for (size_t at = 0; at < t.len; at += 100)
        assert_int_equal(ps_legacy_body_feed(lb, t.p + at, t.len - at < 100 ? t.len - at : 100),
                         PS_OK);
    ps_error err;
    assert_int_equal(ps_legacy_body_finish(lb, &err), PS_OK);
    /* 4,800 bytes of chats, 4,096 kept in memory, a 256-byte tail: at most
     * the rest goes to the file (all of the first 4,096 did before) */
    assert_true(ps_legacy_body_spooled_bytes(lb) > 0);
    assert_true(ps_legacy_body_spooled_bytes(lb) <= 4800 - 4096 + 120);
    ps_chat_source src;
    ps_legacy_body_chats(lb, &src);
    assert_int_equal(src.count, 40);
    for (size_t k = 0; k < 80; k++) { /* any order, twice */
        size_t i = (k * 7) % 40;
        const char *bytes;
        size_t n;
        char want[160];
        snprintf(want, sizeof want, "{\"id\":\"c%03zu\",\"pad\":\"%0100zu\"}", i, i);
        assert_int_equal(ps_chat_source_check(&src, i, &err), PS_OK);
        assert_int_equal(ps_chat_source_bytes(&src, i, &bytes, &n, &err), PS_OK);
        assert_int_equal(n, strlen(want));
        assert_memory_equal(bytes, want, n);
        padding_is_there(&src, bytes, n);
    }
    ps_legacy_body_free(lb);
    free(t.p);
}

/* Limits: --max-body as the bytes pass it; too many chats, a bad chat, an
 * oversized envelope are kept for the end, with where they were. */
static void limits_and_first_problem(void **state)
{
    (void)state;
    ps_legacy_body_config cfg = {.max_bytes = 40,
                                 .max_chats = 2,
                                 .max_depth = PS_JSON_MAX_DEPTH,
                                 .envelope_max = 30,
                                 .chat_max = 12,
                                 .spool_dir = spool_dir,
                                 .memory_max = 1 << 20};
    ps_error err;
    ps_legacy_body *lb = ps_legacy_body_new(&cfg);
    assert_int_equal(ps_legacy_body_feed(lb, "{\"chats\":[1,2,3]}", 17), PS_OK);
    assert_int_equal(ps_legacy_body_finish(lb, &err), PS_ERR_TOO_LARGE);
    assert_non_null(strstr(err.message, "3 chats in one request; the limit is 2"));
    ps_legacy_body_free(lb);

    lb = ps_legacy_body_new(&cfg);
    assert_int_equal(ps_legacy_body_feed(lb, "{\"chats\":[{\"a\":01}],\"x\":1", 25), PS_OK);
    assert_int_equal(ps_legacy_body_feed(lb, "23456789012345", 14), PS_OK);
    assert_int_equal(ps_legacy_body_feed(lb, "xx", 2), PS_ERR_TOO_LARGE); /* 41 bytes */
    ps_legacy_body_free(lb);

    /* a bad chat is found when the chat is used (pre-checked then, not as
     * it arrives: legacy_body.h), with the body's offset */
    lb = ps_legacy_body_new(&cfg);
    assert_int_equal(ps_legacy_body_feed(lb, "{\"chats\":[{\"a\":01}]}", 20), PS_OK);
    assert_int_equal(ps_legacy_body_finish(lb, &err), PS_OK);
    ps_chat_source src;
    ps_legacy_body_chats(lb, &src);
    assert_int_equal(src.count, 1);
    assert_int_equal(ps_chat_source_check(&src, 0, &err), PS_ERR_MALFORMED);
    assert_non_null(strstr(err.message, "at byte 15"));                      /* the body's offset */
    assert_int_equal(ps_chat_source_check(&src, 0, &err), PS_ERR_MALFORMED); /* not forgotten */
    assert_int_equal(ps_legacy_body_check_chats(lb, &err), PS_ERR_MALFORMED);
    assert_non_null(strstr(err.message, "at byte 15"));
    ps_legacy_body_free(lb);

    /* a body refused for something found after a bad chat: the bad chat,
     * which a check of the whole body meets first, is the answer */
    lb = ps_legacy_body_new(&cfg);
    assert_int_equal(ps_legacy_body_feed(lb, "{\"chats\":[{},{\"a\":01},3]}", 24), PS_OK);
    assert_int_equal(ps_legacy_body_finish(lb, &err), PS_ERR_MALFORMED);
    assert_non_null(strstr(err.message, "at byte 18"));
    ps_legacy_body_free(lb);
    lb = ps_legacy_body_new(&cfg); /* the same after a good chat: too many chats */
    assert_int_equal(ps_legacy_body_feed(lb, "{\"chats\":[{},{\"a\":1},3]}", 23), PS_OK);
    assert_int_equal(ps_legacy_body_finish(lb, &err), PS_ERR_TOO_LARGE);
    ps_legacy_body_free(lb);

    lb = ps_legacy_body_new(&cfg); /* a chat over chat_max (12 bytes), cut in two */
    assert_int_equal(ps_legacy_body_feed(lb, "{\"chats\":[{},{\"a\":", 18), PS_OK);
    assert_int_equal(ps_legacy_body_feed(lb, "\"12345\"}]}", 10), PS_OK);
    assert_int_equal(ps_legacy_body_finish(lb, &err), PS_ERR_TOO_LARGE);
    assert_non_null(strstr(err.message, "chats[1] is larger than 12 bytes"));
    ps_legacy_body_free(lb);

    lb = ps_legacy_body_new(&cfg);
    assert_int_equal(ps_legacy_body_feed(lb, "{\"deviceId\":\"0123456789012345678\"}", 34), PS_OK);
    assert_int_equal(ps_legacy_body_finish(lb, &err), PS_ERR_TOO_LARGE);
    ps_legacy_body_free(lb);
}

static int make_dir(void **state)
{
    (void)state;
    return mkdtemp(spool_dir) ? 0 : -1;
}

static int remove_dir(void **state)
{
    (void)state;
    return rmdir(spool_dir); /* fails if a spool file was left with a name */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(edge_cases),
        cmocka_unit_test(spool_file_is_used_and_read_back),
        cmocka_unit_test(little_over_budget_writes_little),
        cmocka_unit_test(limits_and_first_problem),
        cmocka_unit_test(random_bodies),
        cmocka_unit_test(chat_ends_anywhere_in_a_block),
        cmocka_unit_test(random_bodies_both_paths),
    };
    return cmocka_run_group_tests(tests, make_dir, remove_dir);
}
