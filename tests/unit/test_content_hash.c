/*
 * The content hash of a chat's bytes (server/content_hash.h), which lets a
 * legacy sync skip a chat re-sent as the same data in other bytes. The same
 * value written differently (key order, spacing, escapes) hashes the same;
 * any change of a value, a key, an array's order or a number's kind or text
 * changes it; 0 is never returned. No hash for what json-c would read
 * differently from a sum over its keys (a key twice) or what has no id.
 * A chat with a hash passes the pre-check (a chat skipped by its content
 * is never pre-checked, sync_legacy.c): the oracle is ps__json_precheck
 * itself, on chats it refuses written by hand and on random edits of a
 * good one.
 */
#include "test_util.h"
#include "core/json_precheck.h"
#include "core/json_structure.h"
#include "server/content_hash.h"
#include "content_hash_ondemand.h"

/* The hash of {"id":"c", <members>}; the members written as given. */
static uint64_t hash_of(const char *members)
{
    char text[512], id[16];
    snprintf(text, sizeof text, "{\"id\":\"c\",\"v\":%s}", members);
    uint64_t h = 0;
    if (!ps_content_hash(text, strlen(text), PS_JSON_MAX_DEPTH, &h, id, sizeof id))
        fail_msg("no content hash for %s", text);
    assert_string_equal(id, "c");
    assert_true(h != 0);
    return h;
}

static void the_id_and_its_place_do_not_matter_but_its_value_does(void **state)
{
    static const char a[] = "{\"title\":\"t\",\"id\":\"c\"}",
                      b[] = "{\"id\":\"c\",\"title\":\"t\"}",
                      c[] = "{\"id\":\"d\",\"title\":\"t\"}";
    uint64_t ha, hb, hc;
    char id[16];
    assert_true(ps_content_hash(a, strlen(a), PS_JSON_MAX_DEPTH, &ha, id, sizeof id));
    assert_true(ps_content_hash(b, strlen(b), PS_JSON_MAX_DEPTH, &hb, id, sizeof id));
    assert_true(ps_content_hash(c, strlen(c), PS_JSON_MAX_DEPTH, &hc, id, sizeof id));
    assert_string_equal(id, "d");
    assert_true(ha == hb);
    assert_true(ha != hc);
}

static void no_hash_without_one_reading(void **state)
{
    static const char *const none[] = {
        "{\"id\":\"c\",\"a\":1,\"a\":2}", /* a key twice: json-c keeps the last */
        "{\"id\":\"c\",\"m\":{\"x\":1,\"x\":1}}",
        "{\"id\":\"c\",\"id\":\"d\"}",
        /* a long key twice, another between (keys over 16 bytes are compared whole) */
        "{\"id\":\"c\",\"abcdefgh-1-ijklmnop\":1,\"abcdefgh-2-ijklmnop\":1,\"abcdefgh-1-ijklmnop\":"
        "2}",
        "{\"title\":\"no id\"}",
        "{\"id\":7}",
        "{\"id\":[\"c\"]}",
        "{\"id\":{\"c\":1}}",
        "{\"id\":null}",
        "{\"m\":{\"id\":\"x\"}}", /* no root id: only a nested one */
        "{\"id\":\"\"}",
        "{\"id\":\"0123456789abcdef\"}", /* an id that does not fit in id_size */
        "[{\"id\":\"c\"}]",
        /* a key with an escaped NUL: json-c's keys are C strings, cut at
         * the NUL, so this is "a" twice to json-c and the order of the two
         * decides its value (the sum over keys cannot say which) */
        "{\"id\":\"c\",\"a\\u0000b\":1,\"a\":2}",
        "{\"id\":\"c\",\"m\":{\"x\\u0000\":1}}",
    };
    for (size_t k = 0; k < sizeof none / sizeof *none; k++) {
        uint64_t h;
        char id[16];
        if (ps_content_hash(none[k], strlen(none[k]), PS_JSON_MAX_DEPTH, &h, id, sizeof id))
            fail_msg("%s has a content hash", none[k]);
    }
}

static void keys_alike_but_not_the_same_are_not_twice(void **state)
{
    /* the same first and last 8 bytes and length, another middle */
    (void)hash_of("{\"abcdefgh-1-ijklmnop\":1,\"abcdefgh-2-ijklmnop\":1}");
    (void)hash_of("{\"a\":1,\"a \":1,\"\":1}");
}

static void same_value_in_other_bytes_hashes_the_same(void **state)
{
    static const char *const same[][2] = {
        {"{\"a\":1,\"b\":[1,2],\"c\":{\"x\":\"y\",\"z\":null}}",
         "{ \"c\" : { \"z\" : null, \"x\" : \"y\" }, \"b\" : [ 1, 2 ], \"a\" : 1 }"},
        {"{\"t\":\"caf\\u00e9 a/b\"}", "{\"t\":\"café a\\/b\"}"},
        {"{\"m\":[{\"id\":\"m1\",\"role\":\"user\"},{\"role\":\"assistant\",\"id\":\"m2\"}]}",
         "{\"m\":[{\"role\":\"user\",\"id\":\"m1\"},{\"id\":\"m2\",\"role\":\"assistant\"}]}"},
        {"{\"n\":2.50,\"i\":-3}", "{\"i\":-3,\"n\":2.50}"},
    };
    for (size_t k = 0; k < sizeof same / sizeof *same; k++)
        if (hash_of(same[k][0]) != hash_of(same[k][1]))
            fail_msg("%s and %s hash differently", same[k][0], same[k][1]);
}

static void any_change_changes_the_hash(void **state)
{
    static const char *const base = "{\"a\":1,\"b\":[1,2],\"c\":{\"x\":\"y\",\"z\":null}}";
    static const char *const other[] = {
        "{\"a\":2,\"b\":[1,2],\"c\":{\"x\":\"y\",\"z\":null}}",   /* a value */
        "{\"A\":1,\"b\":[1,2],\"c\":{\"x\":\"y\",\"z\":null}}",   /* a key */
        "{\"a\":1,\"b\":[2,1],\"c\":{\"x\":\"y\",\"z\":null}}",   /* array order */
        "{\"a\":1.0,\"b\":[1,2],\"c\":{\"x\":\"y\",\"z\":null}}", /* int vs decimal */
        "{\"a\":\"1\",\"b\":[1,2],\"c\":{\"x\":\"y\",\"z\":null}}",
        "{\"a\":true,\"b\":[1,2],\"c\":{\"x\":\"y\",\"z\":null}}",
        "{\"a\":1,\"b\":[1,2],\"c\":{\"x\":\"y\"}}",             /* a key gone */
        "{\"a\":1,\"b\":[1,2],\"c\":{\"x\":\"y\",\"z\":false}}", /* nested */
        "{\"a\":1,\"b\":[1,2,null],\"c\":{\"x\":\"y\",\"z\":null}}",
        "{\"a\":1,\"b\":[[1,2]],\"c\":{\"x\":\"y\",\"z\":null}}",
        "{\"a\":1,\"b\":{\"0\":1,\"1\":2},\"c\":{\"x\":\"y\",\"z\":null}}",
        "{\"a\":1,\"b\":[1,2],\"c\":{\"x\":\"y \",\"z\":null}}",
        /* a key and its value swapped between two pairs */
        "{\"a\":1,\"b\":[1,2],\"c\":{\"x\":null,\"z\":\"y\"}}",
    };
    uint64_t h = hash_of(base);
    for (size_t k = 0; k < sizeof other / sizeof *other; k++)
        if (hash_of(other[k]) == h)
            fail_msg("%s hashes as %s", other[k], base);
    assert_true(hash_of("2.5") != hash_of("2.50")); /* a decimal's own text */
    assert_true(hash_of("[]") != hash_of("{}"));
    assert_true(hash_of("\"\"") != hash_of("null"));
}

/* Chats the pre-check refuses (by its rules: RFC 8259 numbers and words,
 * well-formed UTF-8, no raw control character in a string, the depth; or
 * bytes after the value): none may have a content hash. */
static void no_hash_for_what_the_precheck_refuses(void **state)
{
    static const char *const bad[] = {
        "{\"id\":\"c\",\"a\":01}",
        "{\"id\":\"c\",\"a\":1.}",
        "{\"id\":\"c\",\"a\":-}",
        "{\"id\":\"c\",\"a\":.5}",
        "{\"id\":\"c\",\"a\":1e}",
        "{\"id\":\"c\",\"a\":-01.5}",
        "{\"id\":\"c\",\"a\":+1}",
        "{\"id\":\"c\",\"a\":NaN}",
        "{\"id\":\"c\",\"a\":Infinity}",
        "{\"id\":\"c\",\"a\":nul}",
        "{\"id\":\"c\",\"a\":nulx}",
        "{\"id\":\"c\",\"a\":[nullnull]}",
        "{\"id\":\"c\",\"a\":True}",
        "{\"id\":\"c\",\"a\":'x'}",
        "{\"id\":\"c\",\"a\":\"x\x01y\"}",
        "{\"id\":\"c\",\"a\":\"\x1f\"}",
        "{\"id\":\"c\",\"a\":\"\xc0\xaf\"}",     /* overlong */
        "{\"id\":\"c\",\"a\":\"\xed\xa0\x80\"}", /* a surrogate */
        "{\"id\":\"c\",\"a\":\"\xf5\x80\x80\x80\"}",
        "{\"id\":\"c\",\"a\":\"\xe2\x82\"}",
        "{\"id\":\"c\",\"a\":1} x",
        "{\"id\":\"c\",\"a\":1}\x01",
    };
    /* what the pre-check leaves to json-c: the structure */
    static const char *const shapeless[] = {
        "{\"id\":\"c1\",\"m\":[\"id\":\"m1\"},{\"id\":\"m2\"}]}", /* a '{' missing */
        "{\"id\":\"c\",\"t\":[\"a\":\"b\"]}",
        "{\"id\":\"c\",\"t\":[1,]}",
        "{\"id\":\"c\",\"t\":[1 2]}",
        "{\"id\":\"c\",\"t\":{\"a\":1,}}",
        "{\"id\":\"c\" \"t\":1}",
        "{\"id\":\"c\",\"t\" 1}",
        "{\"id\":\"c\",\"t\":[}",
        "{\"id\":\"c\",\"t\":{]}",
        "{\"id\":\"c\",\"t\":null1}",
        /* bad escapes (json-c's to refuse, not the pre-check's), past a first good one */
        "{\"id\":\"c\",\"a\":\"\\n\\x\"}",
        "{\"id\":\"c\",\"a\":\"\\n\\u12\"}",
        "{\"id\":\"c\",\"a\":\"\\n\\u12G4\"}",
        "{\"id\":\"c\",\"a\\q\":1}",
        /* a scalar run into a string: one token to simdjson's stage 1 */
        "{\"id\":\"c\",\"t\":1\"x\"}",
        "{\"id\":\"c\",\"t\":true\"x\"}",
        "{\"id\":\"c\",\"t\":null\"x\"}",
        "{\"id\":\"c\",\"t\":[false\"x\"]}",
        "{\"id\":\"c\",\"t\":\"x\"1}",
        "{\"id\":\"c\",\"t\":\"x\"\"y\"}",
        "{\"id\":\"c\"1,\"t\":2}",
        "{\"id\":\"c\",\"t\":{}\"x\"}",
        "{\"id\":\"c\",\"t\":\"x}",
        "{\"id\":\"c\",\"t\":\"x\\\"}",
        "{\"id\":\"c\",1:2}",
        "{\"id\":\"c\",\"t\":[1]:2}",
        "{\"id\":\"c\"}{}",
        "{\"id\":\"c\",,\"t\":1}",
        "{\"id\":\"c\",\"a\":1}}",
    };
    for (size_t k = 0; k < sizeof shapeless / sizeof *shapeless; k++) {
        uint64_t h;
        char id[16];
        ps_error err;
        json_object *parsed = NULL;
        size_t n = strlen(shapeless[k]);
        assert_int_not_equal(ps__json_parse(shapeless[k], n, PS_JSON_MAX_DEPTH, &parsed, &err),
                             PS_OK);
        if (ps_content_hash(shapeless[k], n, PS_JSON_MAX_DEPTH, &h, id, sizeof id))
            fail_msg("%s has a content hash", shapeless[k]);
    }
    for (size_t k = 0; k < sizeof bad / sizeof *bad; k++) {
        uint64_t h;
        char id[16];
        ps_error err;
        size_t n = strlen(bad[k]);
        if (ps__json_precheck(bad[k], n, PS_JSON_MAX_DEPTH, &err) == PS_OK)
            fail_msg("the pre-check passes %s", bad[k]);
        if (ps_content_hash(bad[k], n, PS_JSON_MAX_DEPTH, &h, id, sizeof id))
            fail_msg("%s has a content hash", bad[k]);
    }
    /* the depth: as deep as allowed, and one more */
    for (int depth = 3; depth <= 5; depth++) {
        char text[64];
        int n = snprintf(text, sizeof text, "{\"id\":\"c\",\"a\":%.*s1%.*s}", depth - 1, "[[[[[[[[",
                         depth - 1, "]]]]]]]]");
        uint64_t h;
        char id[16];
        ps_error err;
        bool hashed = ps_content_hash(text, (size_t)n, 4, &h, id, sizeof id);
        bool checked = ps__json_precheck(text, (size_t)n, 4, &err) == PS_OK;
        assert_true(checked == (depth <= 4));
        assert_true(hashed == checked);
    }
}

/* ps_content_hash, asserted to give what the On-Demand reader it replaced
 * gives (tests/unit/content_hash_ondemand.cpp: the structure check, then
 * simdjson's On-Demand parser): the same verdict, hash and id; and
 * ps_content_hash_in_place the same again. A text the old reader refused
 * and the new one hashes fails here. */
static bool hashed_as_before(const char *text, size_t n, int max_depth, uint64_t *h, char *id,
                             size_t id_size)
{
    uint64_t before = 0;
    char id_before[64] = "";
    bool now = ps_content_hash(text, n, max_depth, h, id, id_size);
    bool then = ps__content_hash_ondemand(text, n, max_depth, &before, id_before,
                                          id_size < sizeof id_before ? id_size : sizeof id_before);
    if (now != then)
        fail_msg("hashed %s, before %s (max_depth %d): %.*s", now ? "now" : "not now",
                 then ? "yes" : "no", max_depth, (int)n, text);
    if (now && (*h != before || strcmp(id, id_before) != 0))
        fail_msg("another hash or id than before (%s vs %s): %.*s", id, id_before, (int)n, text);
    /* and read where it lies, exactly PS_CONTENT_HASH_PADDING bytes of
     * anything after it (ASan: reading further fails) */
    char *lying = malloc(n + PS_CONTENT_HASH_PADDING);
    assert_non_null(lying);
    memcpy(lying, text, n);
    for (size_t k = 0; k < PS_CONTENT_HASH_PADDING; k++)
        lying[n + k] = "\"\\}]1 x"[k % 7];
    uint64_t in_place = 0;
    char id_in_place[64] = "";
    if (ps_content_hash_in_place(lying, n, max_depth, &in_place, id_in_place,
                                 id_size < sizeof id_in_place ? id_size : sizeof id_in_place) !=
            now ||
        (now && (in_place != *h || strcmp(id, id_in_place) != 0)))
        fail_msg("in place, another verdict, hash or id: %.*s", (int)n, text);
    free(lying);
    return now;
}

/* A chat of over 4 MiB (stage1.hpp lets a thread's buffers go after one),
 * hashed between small ones and again: the same answers as the On-Demand
 * reader each time, so the buffers made anew for each text are whole
 * (ASan: nothing read from a freed one). */
static void big_chats_between_small_ones(void **state)
{
    (void)state;
    const char *small = "{\"id\":\"s\",\"messages\":[{\"id\":\"m\",\"content\":\"a\\nb\"}]}";
    size_t n = 0, cap = (size_t)5 << 20;
    char *big = malloc(cap + 64);
    assert_non_null(big);
    n += (size_t)sprintf(big, "{\"id\":\"b\\u0041\",\"messages\":[");
    for (int i = 0; n < cap - 200; i++)
        n += (size_t)sprintf(big + n, "%s{\"id\":\"m%d\",\"content\":\"text \\\"%d\\\" \\u00e9\"}",
                             i ? "," : "", i, i);
    n += (size_t)sprintf(big + n, "]}");
    uint64_t h[4];
    char id[4][64];
    assert_true(hashed_as_before(small, strlen(small), 64, &h[0], id[0], sizeof id[0]));
    assert_true(hashed_as_before(big, n, 64, &h[1], id[1], sizeof id[1]));
    assert_true(hashed_as_before(small, strlen(small), 64, &h[2], id[2], sizeof id[2]));
    assert_true(hashed_as_before(big, n, 64, &h[3], id[3], sizeof id[3]));
    assert_true(h[0] == h[2] && h[1] == h[3] && h[0] != h[1]);
    assert_string_equal(id[1], "bA");
    free(big);
}

/* Appends one of a few pieces of string text: plain words, every kind of
 * escape (a surrogate pair among them), raw UTF-8. */
static size_t string_piece(char *out, uint64_t r)
{
    static const char *const pieces[] = {
        "hello",
        " world ",
        "a",
        "\\n",
        "\\\"",
        "\\\\",
        "\\/",
        "\\t",
        "\\u00e9",
        "\\ud83d\\ude00",
        "\\u0000",
        "caf\xc3\xa9",
        "\xe4\xb8\xad",
        "\xf0\x9f\x98\x80",
        "{}[],:",
        "0123456789",
        "   ",
        "\\b\\f\\r",
    };
    const char *p = pieces[r % (sizeof pieces / sizeof *pieces)];
    size_t len = strlen(p);
    memcpy(out, p, len);
    return len;
}

static uint64_t next_random(uint64_t *seed)
{
    *seed = *seed * 6364136223846793005ULL + 1442695040888963407ULL;
    return *seed >> 17;
}

static void put(char *text, size_t *n, const char *s)
{
    memcpy(text + *n, s, strlen(s));
    *n += strlen(s);
}

/* Random chats with long strings (crossing stage 1's 64-byte blocks, escapes
 * at any offset), nested values and spaces, most then edited at random a
 * byte at a time: ps_content_hash agrees with the reader it replaced
 * (hashed_as_before) at several depth limits, and whatever it hashes json-c
 * reads. Fixed seed. */
static void agrees_with_the_on_demand_reader(void **state)
{
    static const char edit_bytes[] = "\"\\{}[],:0123456789abcdefuUD-+.eEtrlsn \t\nx\x01\x1f\x7f"
                                     "\x80\xbf\xc0\xc3\xe4\xed\xf0\xf4\xff";
    static const int depths[] = {PS_JSON_MAX_DEPTH, 3, 4, 1, 100};
    enum { TEXT_MAX = 16384 };
    char *text = malloc(TEXT_MAX + 64);
    assert_non_null(text);
    uint64_t seed = 0x2545F4914F6CDD1DULL;
#define NEXT() next_random(&seed)
#define PUT(s) put(text, &n, (s))
#define SPACE() PUT(((const char *const[]){"", "", " ", "\n  ", "\t"})[NEXT() % 5])
    size_t hashed = 0;
    for (int round = 0; round < 6000; round++) {
        size_t n = 0;
        PUT("{");
        SPACE();
        PUT("\"id\"");
        SPACE();
        PUT(":");
        PUT(NEXT() % 7 ? "\"chat-7\"" : "\"ch\\u0061t\"");
        PUT(",\"messages\":[");
        int messages = (int)(NEXT() % 6);
        for (int m = 0; m < messages; m++) {
            if (m)
                PUT(",");
            SPACE();
            PUT("{\"id\":\"m");
            text[n++] = (char)('0' + m);
            PUT("\",");
            SPACE();
            PUT(NEXT() % 2 ? "\"content\":\"" : "\"t\\u0065xt\":\"");
            int pieces = (int)(NEXT() % 40);
            for (int k = 0; k < pieces && n < TEXT_MAX - 512; k++)
                n += string_piece(text + n, NEXT());
            PUT("\",");
            SPACE();
            PUT(((const char *const[]){"\"n\":-12.5e+3", "\"n\":0", "\"ok\":true", "\"v\":null",
                                       "\"tags\":[[1,{\"k\":[false]}],\"x\"]",
                                       "\"deep\":{\"a\":{\"b\":{\"c\":[]}}}"})[NEXT() % 6]);
            SPACE();
            PUT("}");
        }
        SPACE();
        PUT("]}");
        SPACE();
        int edits = round % 4 == 0 ? 0 : (int)(1 + NEXT() % 3);
        for (int e = 0; e < edits && n > 1; e++) {
            size_t at = NEXT() % n;
            char c = edit_bytes[NEXT() % (sizeof edit_bytes - 1)];
            switch (NEXT() % 3) {
            case 0:
                text[at] = c;
                break;
            case 1:
                memmove(text + at + 1, text + at, n - at);
                text[at] = c;
                n++;
                break;
            default:
                memmove(text + at, text + at + 1, n - at - 1);
                n--;
            }
        }
        for (size_t d = 0; d < sizeof depths / sizeof *depths; d++) {
            uint64_t h;
            char id[16];
            if (!hashed_as_before(text, n, depths[d], &h, id, sizeof id))
                continue;
            hashed++;
            ps_error err;
            json_object *parsed = NULL;
            if (ps__json_parse(text, n, PS_JSON_MAX_DEPTH, &parsed, &err) != PS_OK)
                fail_msg("hashed but refused by json-c (%s): %.*s", err.message, (int)n, text);
            json_object_put(parsed);
        }
    }
#undef NEXT
#undef PUT
#undef SPACE
    free(text);
    assert_true(hashed > 6000); /* many chats stay good */
}

/* Random edits of a good chat (a byte replaced, inserted or dropped, one
 * to three times, from bytes that matter to JSON): whenever the result has
 * a content hash, the pre-check passes it and json-c reads it (a strict
 * parse of the text, ps__json_parse). Fixed seed. */
static void a_hash_means_the_precheck_passes(void **state)
{
    static const char good[] =
        "{\"id\":\"c1\",\"title\":\"Caf\u00e9 \\\"quoted\\\" \\n\",\"n\":-12.5e+3,"
        "\"ok\":true,\"no\":false,\"none\":null,\"tags\":[\"x\",1,[2,{\"k\":\"v\"}]],"
        "\"messages\":[{\"id\":\"m1\",\"role\":\"user\",\"content\":\"h\\u00e9llo \xe4\xb8\xad \\/ "
        "end\","
        "\"timestamp\":\"2026-01-01T10:00:00.000Z\"},{\"id\":\"m2\",\"content\":\"\",\"v\":0}]}";
    static const char bytes[] =
        "\"\\{}[],:0123456789-+.eEtrufalsn \t\nx\x01\x7f\x80\xbf\xc0\xc3\xe4"
        "\xed\xf0\xf4\xf5\xff";
    uint64_t seed = 0x9e3779b97f4a7c15ULL;
    size_t hashed = 0;
    for (int round = 0; round < 40000; round++) {
        char text[sizeof good + 8];
        size_t n = sizeof good - 1;
        memcpy(text, good, n);
        int edits = 1 + round % 3;
        for (int e = 0; e < edits; e++) {
            seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
            size_t at = (size_t)(seed >> 33) % n;
            char c = bytes[(seed >> 17) % (sizeof bytes - 1)];
            switch ((seed >> 8) % 3) {
            case 0:
                text[at] = c;
                break;
            case 1:
                memmove(text + at + 1, text + at, n - at);
                text[at] = c;
                n++;
                break;
            default:
                memmove(text + at, text + at + 1, n - at - 1);
                n--;
            }
        }
        uint64_t h;
        char id[16];
        ps_error err;
        json_object *read = NULL;
        /* and the structure check refuses nothing json-c reads (a chat it
         * refused would only be merged, not skipped) */
        if (ps__json_parse(text, n, PS_JSON_MAX_DEPTH, &read, &err) == PS_OK &&
            !ps__json_structure_ok(text, n, PS_JSON_MAX_DEPTH))
            fail_msg("json-c reads what the structure check refuses: %.*s", (int)n, text);
        json_object_put(read);
        if (ps__json_structure_ok(text, n, PS_JSON_MAX_DEPTH) !=
            ps__json_structure_ok_baseline(text, n, PS_JSON_MAX_DEPTH))
            fail_msg("the AVX2 and baseline structure checks differ: %.*s", (int)n, text);
        if (!hashed_as_before(text, n, PS_JSON_MAX_DEPTH, &h, id, sizeof id))
            continue;
        hashed++;
        if (ps__json_precheck(text, n, PS_JSON_MAX_DEPTH, &err) != PS_OK)
            fail_msg("hashed but refused by the pre-check (%s): %.*s", err.message, (int)n, text);
        json_object *parsed = NULL;
        if (ps__json_parse(text, n, PS_JSON_MAX_DEPTH, &parsed, &err) != PS_OK)
            fail_msg("hashed but refused by json-c (%s): %.*s", err.message, (int)n, text);
        json_object_put(parsed);
    }
    assert_true(hashed > 1000); /* the edits leave many chats good */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(same_value_in_other_bytes_hashes_the_same),
        cmocka_unit_test(any_change_changes_the_hash),
        cmocka_unit_test(the_id_and_its_place_do_not_matter_but_its_value_does),
        cmocka_unit_test(no_hash_without_one_reading),
        cmocka_unit_test(keys_alike_but_not_the_same_are_not_twice),
        cmocka_unit_test(no_hash_for_what_the_precheck_refuses),
        cmocka_unit_test(a_hash_means_the_precheck_passes),
        cmocka_unit_test(agrees_with_the_on_demand_reader),
        cmocka_unit_test(big_chats_between_small_ones),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
