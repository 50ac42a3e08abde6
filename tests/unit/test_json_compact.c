/*
 * ps__json_compact_append (core/json_compact.h) against its oracle, json-c
 * 0.16's own writer with the flags of ps__json_text: the two must agree
 * byte for byte, because stored message values and device bases' hashes
 * (docs/merge.md) were made from json-c's text. Covers every escape class
 * (each control byte, quote, backslash, slash, DEL, multi-byte UTF-8,
 * escaped code points the parser turned into bytes, an embedded NUL),
 * numbers in every form the parser keeps (ints at both ends of int64 and
 * past it, doubles in every notation, -0), the literals, empty and nested
 * containers, a duplicated key, values built in code rather than parsed,
 * and texts kept by ps__json_text_kept inside larger values; then 3,000
 * random documents from a fixed seed.
 */
#include "test_util.h"

#include "core/json_compact.h"

/* The oracle's text of v next to ours; fails on the first difference. */
static void check_same(json_object *v, const char *what)
{
    ps_dynbuf ours;
    ps__dynbuf_init(&ours, SIZE_MAX - 1);
    assert_int_equal(ps__json_compact_append(&ours, v), PS_OK);
    size_t len = 0;
    const char *theirs = json_object_to_json_string_length(
        v, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &len);
    if (ours.len != len || memcmp(ours.data, theirs, len) != 0) {
        print_error("%s:\n json-c: %.*s\n  ours: %.*s\n", what, (int)len, theirs, (int)ours.len,
                    ours.data);
        fail();
    }
    ps__dynbuf_free(&ours);
}

static void check_text(const char *text)
{
    json_object *v = NULL;
    ps_error err;
    ps_error_clear(&err);
    assert_int_equal(ps__json_parse(text, strlen(text), 64, &v, &err), PS_OK);
    check_same(v, text);
    json_object_put(v);
}

static void test_literals_and_numbers(void **state)
{
    (void)state;
    static const char *const texts[] = {
        "null", "true", "false", "0", "-0", "7", "-7", "9223372036854775807",
        "-9223372036854775808", "9223372036854775808", "18446744073709551615",
        "18446744073709551616", "1.0", "-0.0", "0.1", "1e5", "1E5", "1e+5", "1e-7", "-2.5E-300",
        "123456789012345678901234567890", "3.141592653589793238462643383279", "1.5e308",
        "[1,2.50,-3e2,9223372036854775807,18446744073709551615]", "{}", "[]", "[[],{}]",
        "{\"a\":{}}", "  { \"a\" : [ 1 , 2 ] , \"b\" : null }  ",
        "{\"k\":1,\"k\":2,\"j\":3}", /* a duplicated key: json-c keeps one */
    };
    for (size_t i = 0; i < sizeof texts / sizeof *texts; i++)
        check_text(texts[i]);
}

static void test_every_escape(void **state)
{
    (void)state;
    /* every byte below 0x20, written as the parser receives it */
    for (int c = 0; c < 0x20; c++) {
        char text[64];
        snprintf(text, sizeof text, "{\"k\\u%04xk\":\"a\\u%04xb\"}", c, c);
        check_text(text);
    }
    static const char *const texts[] = {
        "\"\\\" \\\\ \\/ / \\b\\f\\n\\r\\t\"",
        "\"\x7f DEL and \xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \\u00e9 \\u20ac \\ud83d\\ude00\"",
        "\"\\u0000 NUL inside\"", "\"\"", "\"/* not a comment */ </script>\"",
        "{\"caf\\u00e9\":\"\\u2028\\u2029\",\"\\\"q\\\"\":\"\\\\\"}",
    };
    for (size_t i = 0; i < sizeof texts / sizeof *texts; i++)
        check_text(texts[i]);
}

/* Long strings (the writer scans them 16 bytes a step where it can): each
 * byte that is escaped, and some that are not, at every offset across
 * several steps, alone and with a second one 17 bytes on. */
static void test_escapes_at_every_offset(void **state)
{
    (void)state;
    static const unsigned char bytes[] = {0x00, 0x01, 0x08, 0x0a, 0x1f, '"',  '\\',
                                          '/',  0x20, 0x7f, 0x80, 0xc3, 0xff, 'a'};
    for (size_t b = 0; b < sizeof bytes; b++)
        for (size_t at = 0; at < 50; at++)
            for (int two = 0; two < 2; two++) {
                char text[72];
                memset(text, 'x', sizeof text);
                text[at] = (char)bytes[b];
                if (two)
                    text[at + 17] = (char)bytes[(b + 5) % sizeof bytes];
                json_object *v =
                    json_object_new_string_len(text, (int)(at + 1 + 17 * two + at % 7));
                check_same(v, "escape at an offset");
                json_object_put(v);
            }
}

/* Values json-c did not parse: made in code, the tokener's kept texts gone. */
static void test_values_built_in_code(void **state)
{
    (void)state;
    json_object *o = json_object_new_object();
    json_object_object_add(o, "d", json_object_new_double(0.1));
    json_object_object_add(o, "big", json_object_new_double(1e300));
    json_object_object_add(o, "whole", json_object_new_double(2.0));
    json_object_object_add(o, "i", json_object_new_int64(INT64_MIN));
    json_object_object_add(o, "u", json_object_new_uint64(UINT64_MAX));
    json_object_object_add(o, "nul", json_object_new_string_len("a\0b\x01/", 5));
    json_object_object_add(o, "none", NULL);
    json_object *a = json_object_new_array();
    json_object_array_add(a, NULL);
    json_object_array_add(a, json_object_new_boolean(1));
    json_object_array_put_idx(a, 4, json_object_new_int(3)); /* holes are NULL */
    json_object_object_add(o, "a", a);
    check_same(o, "built");
    json_object_put(o);
}

/* A container whose text was kept (a message) inside a larger value (the
 * rendered chat): its kept text, as json-c's userdata serializer writes it. */
static void test_kept_texts_inside(void **state)
{
    (void)state;
    json_object *chat = tu_json("{\"id\":\"c\",\"messages\":[{\"id\":\"m1\",\"content\":\"a\\nb\","
                                "\"n\":1.50},{\"id\":\"m2\",\"content\":\"\\u0001\"}]}");
    json_object *msgs = json_object_object_get(chat, "messages");
    size_t len = 0;
    const char *kept = ps__json_text_kept(json_object_array_get_idx(msgs, 0), &len);
    assert_string_equal(kept, "{\"id\":\"m1\",\"content\":\"a\\nb\",\"n\":1.50}");
    assert_int_equal(len, strlen(kept));
    check_same(chat, "kept inside");
    json_object_put(chat);
}

/* xorshift64*: fixed seed, the same documents every run */
static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint64_t rnd(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ull;
}

static const char *const PIECES[] = {
    "a", "Z", " ", "/", "\\/", "\\\"", "\\\\", "\\n", "\\t", "\\r", "\\b", "\\f", "\\u0000",
    "\\u001f", "\\u007f", "\\u00e9", "\\ud83d\\ude00", "\xc3\xa9", "\xe6\x97\xa5", "\xf0\x9f\x8c\x8d",
    "\x7f", "'", "<", "}", "]", ",", ":", "0",
};

static void add_random_string(ps_dynbuf *b)
{
    assert_int_equal(ps__dynbuf_add(b, "\"", 1), PS_OK);
    for (int n = (int)(rnd() % 12); n > 0; n--)
        assert_int_equal(ps__dynbuf_adds(b, PIECES[rnd() % (sizeof PIECES / sizeof *PIECES)]), PS_OK);
    assert_int_equal(ps__dynbuf_add(b, "\"", 1), PS_OK);
}

static void add_random_value(ps_dynbuf *b, int depth)
{
    static const char *const SCALARS[] = {"null", "true", "false", "0", "-1", "42", "1.0", "-0.5e-3",
                                          "6.02E23", "9223372036854775807", "18446744073709551615",
                                          "99999999999999999999", "-0"};
    unsigned kind = (unsigned)(rnd() % (depth < 4 ? 5 : 2));
    if (kind == 0) {
        assert_int_equal(ps__dynbuf_adds(b, SCALARS[rnd() % (sizeof SCALARS / sizeof *SCALARS)]),
                         PS_OK);
    } else if (kind == 1) {
        add_random_string(b);
    } else if (kind == 2) {
        assert_int_equal(ps__dynbuf_add(b, "[", 1), PS_OK);
        for (int n = (int)(rnd() % 5), i = 0; i < n; i++) {
            if (i)
                assert_int_equal(ps__dynbuf_add(b, ",", 1), PS_OK);
            add_random_value(b, depth + 1);
        }
        assert_int_equal(ps__dynbuf_add(b, "]", 1), PS_OK);
    } else {
        assert_int_equal(ps__dynbuf_add(b, "{", 1), PS_OK);
        for (int n = (int)(rnd() % 5), i = 0; i < n; i++) {
            if (i)
                assert_int_equal(ps__dynbuf_add(b, " , ", 3), PS_OK);
            add_random_string(b);
            assert_int_equal(ps__dynbuf_add(b, ": ", 2), PS_OK);
            add_random_value(b, depth + 1);
        }
        assert_int_equal(ps__dynbuf_add(b, "}", 1), PS_OK);
    }
}

static void test_random_documents(void **state)
{
    (void)state;
    for (int i = 0; i < 3000; i++) {
        ps_dynbuf text;
        ps__dynbuf_init(&text, SIZE_MAX - 1);
        add_random_value(&text, 0);
        check_text(text.data);
        ps__dynbuf_free(&text);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_literals_and_numbers),
        cmocka_unit_test(test_every_escape),
        cmocka_unit_test(test_escapes_at_every_offset),
        cmocka_unit_test(test_values_built_in_code),
        cmocka_unit_test(test_kept_texts_inside),
        cmocka_unit_test(test_random_documents),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
