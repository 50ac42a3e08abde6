/*
 * The key-order-free hash of a JSON value (core/json_hash.h), which lets a
 * legacy sync skip a chat re-sent as the same data in other bytes. The same
 * value written differently (key order, spacing, escapes) hashes the same;
 * any change of a value, a key, an array's order or a number's kind or text
 * changes it; 0 is never returned. The values are parsed by plain json-c
 * (tu_json), as the sync does.
 */
#include "test_util.h"
#include "core/json_hash.h"

static uint64_t hash_of(const char *text)
{
    json_object *v = tu_json(text);
    uint64_t h = ps_json_value_hash(v);
    json_object_put(v);
    assert_true(h != 0);
    return h;
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
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
