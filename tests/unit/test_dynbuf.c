/*
 * The capped growable buffer (core/dynbuf.h): appends of bytes, strings and
 * formatted text, growth across many doublings, the hard limit (exactly at
 * it succeeds, one byte past it fails with PS_ERR_TOO_LARGE and leaves the
 * buffer unchanged, for add and addf alike), including the extreme limits 0
 * and SIZE_MAX; NUL termination, embedded NULs, JSON string escaping, and
 * take / reset / free ownership; integers written as printf writes them.
 */
#include "test_util.h"
#include "core/dynbuf.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void starts_empty(void **state)
{
    ps_dynbuf b;
    ps__dynbuf_init(&b, 100);
    assert_null(b.data);
    assert_int_equal(b.len, 0);
    assert_int_equal(b.limit, 100);
    size_t len = 99;
    char *p = ps__dynbuf_take(&b, &len);
    assert_null(p);
    assert_int_equal(len, 0);
    ps__dynbuf_free(&b);
}

static void appends_and_terminates(void **state)
{
    ps_dynbuf b;
    ps__dynbuf_init(&b, 1000);
    assert_int_equal(ps__dynbuf_add(&b, "abc", 3), PS_OK);
    assert_int_equal(ps__dynbuf_adds(&b, "def"), PS_OK);
    assert_int_equal(ps__dynbuf_addf(&b, "-%d-%s-%03d", 42, "x", 7), PS_OK);
    assert_int_equal(ps__dynbuf_add(&b, "", 0), PS_OK);
    assert_string_equal(b.data, "abcdef-42-x-007");
    assert_int_equal(b.len, strlen("abcdef-42-x-007"));
    assert_true(b.cap > b.len);
    /* embedded NULs are bytes like any other */
    assert_int_equal(ps__dynbuf_add(&b, "a\0b", 3), PS_OK);
    assert_int_equal(b.len, 18);
    assert_memory_equal(b.data + 15, "a\0b", 4); /* and still NUL-terminated */
    ps__dynbuf_free(&b);
    assert_null(b.data);
    assert_int_equal(b.len, 0);
}

static void grows_through_many_doublings(void **state)
{
    ps_dynbuf b;
    ps__dynbuf_init(&b, 1 << 20);
    char chunk[97];
    for (int i = 0; i < 97; i++)
        chunk[i] = (char)('a' + i % 26);
    for (int i = 0; i < 5000; i++)
        assert_int_equal(ps__dynbuf_add(&b, chunk, sizeof chunk), PS_OK);
    assert_int_equal(b.len, 5000 * 97);
    assert_true(b.cap >= b.len + 1);
    assert_int_equal(b.data[b.len], '\0');
    for (int i = 0; i < 5000; i++)
        assert_memory_equal(b.data + i * 97, chunk, 97);
    ps__dynbuf_free(&b);
}

static void limit_is_exact(void **state)
{
    ps_dynbuf b;
    ps__dynbuf_init(&b, 10);
    assert_int_equal(ps__dynbuf_add(&b, "0123456789", 10), PS_OK);
    assert_int_equal(b.len, 10);
    assert_string_equal(b.data, "0123456789");
    assert_int_equal(ps__dynbuf_add(&b, "x", 1), PS_ERR_TOO_LARGE);
    assert_int_equal(ps__dynbuf_addf(&b, "%d", 1), PS_ERR_TOO_LARGE);
    assert_int_equal(ps__dynbuf_adds(&b, "x"), PS_ERR_TOO_LARGE);
    assert_int_equal(b.len, 10);
    assert_string_equal(b.data, "0123456789");
    assert_int_equal(ps__dynbuf_add(&b, "", 0), PS_OK);
    ps__dynbuf_free(&b);

    /* a failing append in the middle leaves what was there */
    ps__dynbuf_init(&b, 10);
    assert_int_equal(ps__dynbuf_adds(&b, "abcd"), PS_OK);
    assert_int_equal(ps__dynbuf_adds(&b, "0123456"), PS_ERR_TOO_LARGE);
    assert_int_equal(ps__dynbuf_addf(&b, "%s", "0123456"), PS_ERR_TOO_LARGE);
    assert_string_equal(b.data, "abcd");
    assert_int_equal(b.len, 4);
    assert_int_equal(ps__dynbuf_addf(&b, "%06d", 12), PS_OK);
    assert_string_equal(b.data, "abcd000012");
    ps__dynbuf_free(&b);

    /* sizes that would overflow the arithmetic */
    ps__dynbuf_init(&b, 10);
    assert_int_equal(ps__dynbuf_adds(&b, "ab"), PS_OK);
    assert_int_equal(ps__dynbuf_add(&b, "x", SIZE_MAX), PS_ERR_TOO_LARGE);
    assert_int_equal(ps__dynbuf_add(&b, "x", SIZE_MAX - 1), PS_ERR_TOO_LARGE);
    assert_string_equal(b.data, "ab");
    ps__dynbuf_free(&b);
}

static void zero_limit_takes_nothing(void **state)
{
    ps_dynbuf b;
    ps__dynbuf_init(&b, 0);
    assert_int_equal(ps__dynbuf_add(&b, "x", 1), PS_ERR_TOO_LARGE);
    assert_int_equal(ps__dynbuf_add(&b, "", 0), PS_OK);
    assert_int_equal(b.len, 0);
    ps__dynbuf_free(&b);
}

/* "No limit" spelled SIZE_MAX (what --max-body 18446744073709551615 gives
 * the request body buffer) must still allocate room for what is added. */
static void unlimited_buffer_still_allocates(void **state)
{
    ps_dynbuf b;
    ps__dynbuf_init(&b, SIZE_MAX);
    assert_int_equal(ps__dynbuf_adds(&b, "0123456789"), PS_OK);
    assert_true(b.cap >= b.len + 1);
    assert_string_equal(b.data, "0123456789");
    ps__dynbuf_free(&b);
}

static void json_strings_are_escaped(void **state)
{
    ps_dynbuf b;
    ps__dynbuf_init(&b, 1000);
    assert_int_equal(ps__dynbuf_add_json_string(&b, "plain"), PS_OK);
    assert_int_equal(ps__dynbuf_adds(&b, ","), PS_OK);
    assert_int_equal(ps__dynbuf_add_json_string(&b, "q\"b\\s/n\nt\tc\x01\xc3\xa9"), PS_OK);
    assert_int_equal(ps__dynbuf_adds(&b, ","), PS_OK);
    assert_int_equal(ps__dynbuf_add_json_string(&b, ""), PS_OK);
    assert_string_equal(b.data, "\"plain\",\"q\\\"b\\\\s/n\\nt\\tc\\u0001\xc3\xa9\",\"\"");
    /* and it is JSON that reads back as the original */
    char *text;
    assert_int_equal(asprintf(&text, "[%s]", b.data) > 0, 1);
    json_object *arr = NULL;
    assert_int_equal(ps__json_parse(text, strlen(text), 8, &arr, NULL), PS_OK);
    assert_string_equal(json_object_get_string(json_object_array_get_idx(arr, 1)),
                        "q\"b\\s/n\nt\tc\x01\xc3\xa9");
    json_object_put(arr);
    free(text);
    ps__dynbuf_free(&b);

    ps__dynbuf_init(&b, 4);
    assert_int_equal(ps__dynbuf_add_json_string(&b, "abc"), PS_ERR_TOO_LARGE);
    assert_int_equal(b.len, 0);
    ps__dynbuf_free(&b);
}

static void take_and_reset(void **state)
{
    ps_dynbuf b;
    ps__dynbuf_init(&b, 100);
    assert_int_equal(ps__dynbuf_adds(&b, "hello"), PS_OK);
    size_t len = 0;
    char *p = ps__dynbuf_take(&b, &len);
    assert_string_equal(p, "hello");
    assert_int_equal(len, 5);
    assert_null(b.data);
    assert_int_equal(b.len, 0);
    assert_int_equal(b.cap, 0);
    assert_int_equal(b.limit, 100);
    free(p);
    /* usable again after take, still with its limit */
    assert_int_equal(ps__dynbuf_adds(&b, "again"), PS_OK);
    assert_string_equal(b.data, "again");
    ps__dynbuf_reset(&b);
    assert_int_equal(b.len, 0);
    assert_string_equal(b.data, "");
    /* after a reset the whole limit is available again */
    char big[100];
    memset(big, 'z', sizeof big);
    assert_int_equal(ps__dynbuf_add(&b, big, sizeof big), PS_OK);
    assert_int_equal(ps__dynbuf_add(&b, "z", 1), PS_ERR_TOO_LARGE);
    p = ps__dynbuf_take(&b, NULL);
    assert_int_equal(strlen(p), 100);
    free(p);
    ps__dynbuf_reset(&b); /* on an empty buffer: harmless */
    ps__dynbuf_free(&b);
    ps__dynbuf_free(&b); /* twice: harmless */
}

static void reserve_sizes_once(void **state)
{
    ps_dynbuf b;
    ps__dynbuf_init(&b, 1000);
    assert_int_equal(ps__dynbuf_reserve(&b, 1001), PS_ERR_TOO_LARGE);
    assert_null(b.data);
    assert_int_equal(ps__dynbuf_reserve(&b, 700), PS_OK);
    char *at = b.data;
    assert_true(b.cap >= 701); /* the bytes and the NUL */
    char chunk[100];
    memset(chunk, 'x', sizeof chunk);
    for (int i = 0; i < 7; i++)
        assert_int_equal(ps__dynbuf_add(&b, chunk, sizeof chunk), PS_OK);
    assert_ptr_equal(b.data, at); /* filled in place: no copy */
    assert_int_equal(b.len, 700);
    assert_int_equal(b.data[700], '\0');
    ps__dynbuf_free(&b);
}

/* Oracle: printf's "%" PRId64, for the values at the ends of the range
 * and around each power of ten. */
static void integers_are_written_as_printf_writes_them(void **state)
{
    int64_t values[64] = {0, 1, -1, INT64_MAX, INT64_MIN, INT64_MIN + 1};
    size_t n = 6;
    for (int64_t p = 10; p <= INT64_MAX / 10; p *= 10) {
        values[n++] = p - 1;
        values[n++] = -p;
    }
    for (size_t i = 0; i < n; i++) {
        ps_dynbuf b;
        ps__dynbuf_init(&b, 100);
        char want[32];
        snprintf(want, sizeof want, "x%" PRId64, values[i]);
        assert_int_equal(ps__dynbuf_adds(&b, "x"), PS_OK);
        assert_int_equal(ps__dynbuf_add_int(&b, values[i]), PS_OK);
        assert_string_equal(b.data, want);
        ps__dynbuf_free(&b);
    }
    /* the limit holds for numbers too: all or nothing */
    ps_dynbuf b;
    ps__dynbuf_init(&b, 5);
    assert_int_equal(ps__dynbuf_add_int(&b, 12345), PS_OK);
    ps__dynbuf_reset(&b);
    assert_int_equal(ps__dynbuf_add_int(&b, -12345), PS_ERR_TOO_LARGE);
    assert_int_equal(b.len, 0);
    ps__dynbuf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(starts_empty),
        cmocka_unit_test(appends_and_terminates),
        cmocka_unit_test(grows_through_many_doublings),
        cmocka_unit_test(limit_is_exact),
        cmocka_unit_test(zero_limit_takes_nothing),
        cmocka_unit_test(json_strings_are_escaped),
        cmocka_unit_test(integers_are_written_as_printf_writes_them),
        cmocka_unit_test(take_and_reset),
        cmocka_unit_test(reserve_sizes_once),
        /* last: under ASan a failure here ends the process */
        cmocka_unit_test(unlimited_buffer_still_allocates),
    };
    return cmocka_run_group_tests_name("dynbuf", tests, NULL, NULL);
}
