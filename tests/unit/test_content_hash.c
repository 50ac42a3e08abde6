/*
 * The content hash of a chat's bytes (server/content_hash.h), which lets a
 * legacy sync skip a chat re-sent as the same data in other bytes. The same
 * value written differently (key order, spacing, escapes) hashes the same;
 * any change of a value, a key, an array's order or a number's kind or text
 * changes it; 0 is never returned. No hash for what json-c would read
 * differently from a sum over its keys (a key twice) or what has no id.
 */
#include "test_util.h"
#include "server/content_hash.h"

/* The hash of {"id":"c", <members>}; the members written as given. */
static uint64_t hash_of(const char *members)
{
    char text[512], id[16];
    snprintf(text, sizeof text, "{\"id\":\"c\",\"v\":%s}", members);
    uint64_t h = 0;
    if (!ps_content_hash(text, strlen(text), &h, id, sizeof id))
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
    assert_true(ps_content_hash(a, strlen(a), &ha, id, sizeof id));
    assert_true(ps_content_hash(b, strlen(b), &hb, id, sizeof id));
    assert_true(ps_content_hash(c, strlen(c), &hc, id, sizeof id));
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
        "{\"title\":\"no id\"}",
        "{\"id\":7}",
        "{\"id\":\"\"}",
        "{\"id\":\"0123456789abcdef\"}", /* an id that does not fit in id_size */
        "[{\"id\":\"c\"}]",
    };
    for (size_t k = 0; k < sizeof none / sizeof *none; k++) {
        uint64_t h;
        char id[16];
        if (ps_content_hash(none[k], strlen(none[k]), &h, id, sizeof id))
            fail_msg("%s has a content hash", none[k]);
    }
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(same_value_in_other_bytes_hashes_the_same),
        cmocka_unit_test(any_change_changes_the_hash),
        cmocka_unit_test(the_id_and_its_place_do_not_matter_but_its_value_does),
        cmocka_unit_test(no_hash_without_one_reading),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
