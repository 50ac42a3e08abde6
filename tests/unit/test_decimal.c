/*
 * The one decimal writer (core/decimal.h) against snprintf, its oracle:
 * the edges (0, 9, 10, every power of ten and its neighbours, INT64_MIN,
 * INT64_MAX, UINT64_MAX), zero-padded widths 1..20, and seeded random
 * values of every magnitude. Each case also checks that nothing is written
 * past the returned length (the writers put no NUL; callers append).
 */
#include "test_util.h"
#include "core/decimal.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#define GUARD 'x'

static void unsigned_as(uint64_t v, unsigned width)
{
    char want[32], got[PS_DECIMAL_MAX + 8];
    int wn = snprintf(want, sizeof want, "%0*" PRIu64, (int)width, v);
    memset(got, GUARD, sizeof got);
    size_t n = ps__decimal_u64(got, v, width);
    assert_int_equal(n, (size_t)wn);
    assert_memory_equal(got, want, n);
    for (size_t i = n; i < sizeof got; i++)
        assert_int_equal(got[i], GUARD);
}

static void signed_as(int64_t v)
{
    char want[32], got[PS_DECIMAL_MAX + 8];
    int wn = snprintf(want, sizeof want, "%" PRId64, v);
    memset(got, GUARD, sizeof got);
    size_t n = ps__decimal_i64(got, v);
    assert_int_equal(n, (size_t)wn);
    assert_true(n <= PS_DECIMAL_MAX);
    assert_memory_equal(got, want, n);
    for (size_t i = n; i < sizeof got; i++)
        assert_int_equal(got[i], GUARD);
}

static void edges_as_snprintf_writes_them(void **state)
{
    (void)state;
    const uint64_t u[] = {0,
                          1,
                          9,
                          10,
                          11,
                          99,
                          100,
                          255,
                          999,
                          1000,
                          UINT32_MAX,
                          (uint64_t)INT64_MAX,
                          (uint64_t)INT64_MAX + 1,
                          UINT64_MAX - 1,
                          UINT64_MAX};
    for (size_t i = 0; i < sizeof u / sizeof *u; i++)
        unsigned_as(u[i], 1);
    const int64_t s[] = {0,   1,         -1,        9,         -9,        10,
                         -10, INT32_MIN, INT32_MAX, INT64_MAX, INT64_MIN, INT64_MIN + 1};
    for (size_t i = 0; i < sizeof s / sizeof *s; i++)
        signed_as(s[i]);
    /* every power of ten and the numbers either side: where a digit is added */
    uint64_t p = 1;
    for (int k = 0; k < 20; k++, p *= 10) {
        unsigned_as(p - 1, 1);
        unsigned_as(p, 1);
        unsigned_as(p + 1, 1);
        if (p <= (uint64_t)INT64_MAX) {
            signed_as((int64_t)p);
            signed_as(-(int64_t)p);
            signed_as(-(int64_t)p + 1);
        }
    }
}

static void padded_as_snprintf_writes_them(void **state)
{
    (void)state;
    const uint64_t u[] = {0, 5, 42, 999, 1000, 123456789, UINT64_MAX};
    for (size_t i = 0; i < sizeof u / sizeof *u; i++)
        for (unsigned width = 1; width <= PS_DECIMAL_MAX; width++)
            unsigned_as(u[i], width);
}

static void random_values_as_snprintf_writes_them(void **state)
{
    (void)state;
    uint64_t rng = 0x9e3779b97f4a7c15ull; /* fixed seed: the run is the same every time */
    for (int i = 0; i < 200000; i++) {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        /* a random magnitude too, or nearly every value would have 19-20 digits */
        uint64_t v = rng >> (rng % 64);
        unsigned_as(v, 1 + (unsigned)(i % 4));
        signed_as((int64_t)v);
        signed_as((int64_t)(0 - v));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(edges_as_snprintf_writes_them),
        cmocka_unit_test(padded_as_snprintf_writes_them),
        cmocka_unit_test(random_values_as_snprintf_writes_them),
    };
    return cmocka_run_group_tests_name("decimal", tests, NULL, NULL);
}
