/*
 * Timestamps (core/timestamp.h): ISO 8601 parsing with Z, numeric offsets
 * (with and without a colon), fractions of any length, date-only and
 * minute-precision forms; rejection of garbage, out-of-range fields,
 * calendar dates that do not exist and impossible offsets; epoch-millisecond
 * numbers (int and double) through ps__time_from_json; formatting, and the
 * parse(format(ms)) == ms round trip over a wide range of dates.
 */
#include "test_util.h"
#include "core/timestamp.h"

#include <math.h>

typedef struct iso_case {
    const char *text;
    int64_t ms;
} iso_case;

static void parses_iso_forms(void **state)
{
    static const iso_case cases[] = {
        {"2024-01-15T10:30:00.000Z", 1705314600000LL},
        {"2024-01-15T10:30:00Z", 1705314600000LL},
        {"2024-01-15t10:30:00z", 1705314600000LL},
        {"2024-01-15 10:30:00Z", 1705314600000LL},
        {"2024-01-15T10:30Z", 1705314600000LL},
        {"2024-01-15T10:30:00.5Z", 1705314600500LL},
        {"2024-01-15T10:30:00.12Z", 1705314600120LL},
        {"2024-01-15T10:30:00.123456789Z", 1705314600123LL}, /* truncated, not rounded */
        {"2024-01-15T10:30:00,250Z", 1705314600250LL},
        {"2024-01-15T12:30:00+02:00", 1705314600000LL},
        {"2024-01-15T12:30:00.000+0200", 1705314600000LL},
        {"2024-01-15T05:00:00-05:30", 1705314600000LL},
        {"2024-01-15T10:30:00+00:00", 1705314600000LL},
        {"2024-01-15T10:30:00-00:00", 1705314600000LL},
        {"2024-01-15", 1705276800000LL},
        {"1970-01-01T00:00:00.000Z", 0},
        {"1969-12-31T23:59:59.999Z", -1},
        {"2000-02-29T00:00:00Z", 951782400000LL},
        {"2024-02-29T23:59:59.999Z", 1709251199999LL},
        {"9999-12-31T23:59:59.999Z", 253402300799999LL},
        {"0001-01-01T00:00:00Z", -62135596800000LL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        int64_t ms = 42;
        if (!ps__time_parse_iso(cases[i].text, &ms))
            fail_msg("rejected %s", cases[i].text);
        if (ms != cases[i].ms)
            fail_msg("%s: got %lld, want %lld", cases[i].text, (long long)ms,
                     (long long)cases[i].ms);
    }
}

static void rejects_malformed(void **state)
{
    static const char *const bad[] = {
        "",
        "2024",
        "2024-01",
        "24-01-15",
        "2024-1-15",
        "2024-01-5",
        "2024/01/15",
        "2024-01-15T",
        "2024-01-15T10",
        "2024-01-15T10:3",
        "2024-01-15T1030",
        "2024-01-15T10:30:0Z",
        "2024-01-15T10:30:00.Z",
        "2024-01-15T10:30:00ZZ",
        "2024-01-15T10:30:00Z ",
        " 2024-01-15T10:30:00Z",
        "2024-01-15T10:30:00+",
        "2024-01-15T10:30:00+02:0",
        "2024-01-15T10:30:00 +02:00",
        "2024-01-15X10:30:00Z",
        "yesterday",
        "1705314600000",
        "2024-01-15T10:30:00.000Zjunk",
        "\xc3\xa9",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        int64_t ms = 42;
        if (ps__time_parse_iso(bad[i], &ms))
            fail_msg("accepted \"%s\" as %lld", bad[i], (long long)ms);
    }
}

static void rejects_out_of_range_fields(void **state)
{
    static const char *const bad[] = {
        "2024-00-10T00:00:00Z", "2024-13-01T00:00:00Z", "2024-01-00T00:00:00Z",
        "2024-01-32T00:00:00Z", "2024-01-15T24:00:00Z", "2024-01-15T23:60:00Z",
        "2024-01-15T23:59:61Z",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        int64_t ms = 42;
        if (ps__time_parse_iso(bad[i], &ms))
            fail_msg("accepted \"%s\" as %lld", bad[i], (long long)ms);
    }
}

/* "Strict: a malformed time is reported, never guessed" (timestamp.c):
 * February 30th is not silently read as March 1st. */
static void rejects_dates_that_do_not_exist(void **state)
{
    static const char *const bad[] = {
        "2024-02-30T00:00:00Z", "2023-02-29T00:00:00Z", "2024-04-31T00:00:00Z",
        "2024-06-31",           "2100-02-29T00:00:00Z", "2024-02-31T10:00:00.000Z",
    };
    int wrong = 0;
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        int64_t ms = 42;
        if (ps__time_parse_iso(bad[i], &ms)) {
            char iso[32];
            ps__time_format_iso(ms, iso);
            print_error("accepted \"%s\" as %s\n", bad[i], iso);
            wrong++;
        }
    }
    assert_int_equal(wrong, 0);
}

/* An offset is -23:59..+23:59 (RFC 3339 time-numoffset: hh 00-23, mm 00-59). */
static void rejects_impossible_offsets(void **state)
{
    static const char *const bad[] = {
        "2024-01-15T10:30:00+24:00", "2024-01-15T10:30:00+25:00", "2024-01-15T10:30:00+02:60",
        "2024-01-15T10:30:00+02:99", "2024-01-15T10:30:00-99:00", "2024-01-15T10:30:00+9999",
    };
    int wrong = 0;
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        int64_t ms = 42;
        if (ps__time_parse_iso(bad[i], &ms)) {
            print_error("accepted \"%s\" as %lld\n", bad[i], (long long)ms);
            wrong++;
        }
    }
    assert_int_equal(wrong, 0);
}

static void from_json_accepts_strings_and_numbers(void **state)
{
    json_object *obj = tu_json("{\"iso\":\"2024-01-15T10:30:00.000Z\",\"int\":1705314600000,"
                               "\"neg\":-1000,\"dbl\":1705314600000.0,\"frac\":1705314600123.9,"
                               "\"zero\":0,\"big\":9007199254740992}");
    static const struct {
        const char *key;
        int64_t ms;
    } want[] = {{"iso", 1705314600000LL},   {"int", 1705314600000LL},  {"neg", -1000},
                {"dbl", 1705314600000LL},   {"frac", 1705314600123LL}, {"zero", 0},
                {"big", 9007199254740992LL}};
    for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
        int64_t ms = 42;
        assert_true(ps__time_from_json(json_object_object_get(obj, want[i].key), &ms));
        assert_int_equal(ms, want[i].ms);
    }
    json_object_put(obj);
}

static void from_json_rejects_everything_else(void **state)
{
    json_object *obj = tu_json("{\"s\":\"garbage\",\"empty\":\"\",\"t\":true,\"f\":false,"
                               "\"n\":null,\"o\":{},\"a\":[1705314600000],"
                               "\"huge\":1e300,\"neg_huge\":-1e300}");
    static const char *const keys[] = {"s", "empty", "t", "f", "n", "o", "a", "huge", "neg_huge"};
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++) {
        int64_t ms = 42;
        json_object *v = NULL;
        json_object_object_get_ex(obj, keys[i], &v);
        if (ps__time_from_json(v, &ms))
            fail_msg("accepted %s as %lld", keys[i], (long long)ms);
    }
    json_object_put(obj);
    /* Non-finite doubles cannot come from strict JSON but can from code. */
    json_object *nan = json_object_new_double(NAN), *inf = json_object_new_double(INFINITY);
    int64_t ms;
    assert_false(ps__time_from_json(nan, &ms));
    assert_false(ps__time_from_json(inf, &ms));
    json_object_put(nan);
    json_object_put(inf);
}

static void formats_iso(void **state)
{
    static const iso_case cases[] = {
        {"1970-01-01T00:00:00.000Z", 0},
        {"1970-01-01T00:00:00.001Z", 1},
        {"1969-12-31T23:59:59.999Z", -1},
        {"1969-12-31T23:59:59.000Z", -1000},
        {"2024-01-15T10:30:00.000Z", 1705314600000LL},
        {"2024-01-15T10:30:00.123Z", 1705314600123LL},
        {"2024-02-29T23:59:59.999Z", 1709251199999LL},
        {"9999-12-31T23:59:59.999Z", 253402300799999LL},
        {"0001-01-01T00:00:00.000Z", -62135596800000LL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char out[32];
        memset(out, 'X', sizeof out);
        ps__time_format_iso(cases[i].ms, out);
        assert_string_equal(out, cases[i].text);
    }
}

/* Whatever the value, the output is the documented shape, NUL-terminated in
 * out[32] (a year may have more digits or a sign, nothing else changes). */
static bool well_formed(const char *s)
{
    size_t n = strnlen(s, 32);
    if (n == 32 || n < 24)
        return false;
    const char *p = s + n - 20; /* "-MM-DDTHH:MM:SS.mmmZ" */
    const char *shape = "-dd-ddTdd:dd:dd.dddZ";
    for (int i = 0; i < 20; i++)
        if (shape[i] == 'd' ? !(p[i] >= '0' && p[i] <= '9') : p[i] != shape[i])
            return false;
    for (const char *q = s + (*s == '-' || *s == '+'); q < p; q++)
        if (!(*q >= '0' && *q <= '9'))
            return false;
    return true;
}

static void format_is_well_formed_at_the_extremes(void **state)
{
    static const int64_t values[] = {
        INT64_MAX,          INT64_MIN,           3200000000000000000LL, -3200000000000000000LL,
        8640000000000000LL, -8640000000000000LL, 253402300800000LL};
    int wrong = 0;
    for (size_t i = 0; i < sizeof values / sizeof *values; i++) {
        char out[32];
        memset(out, 'X', sizeof out);
        ps__time_format_iso(values[i], out);
        if (!well_formed(out)) {
            print_error("ps__time_format_iso(%lld) wrote \"%.32s\"\n", (long long)values[i], out);
            wrong++;
        }
    }
    assert_int_equal(wrong, 0);
}

/* parse(format(ms)) == ms over years 0001..9999, with millisecond parts. */
static void format_parse_round_trip(void **state)
{
    const int64_t lo = -62135596800000LL, hi = 253402300799999LL;
    uint64_t x = 0x9E3779B97F4A7C15ULL;
    for (int i = 0; i < 20000; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        int64_t ms = lo + (int64_t)(x % (uint64_t)(hi - lo + 1));
        char out[32];
        ps__time_format_iso(ms, out);
        int64_t back = 0;
        if (!ps__time_parse_iso(out, &back) || back != ms)
            fail_msg("%lld -> %s -> %lld", (long long)ms, out, (long long)back);
    }
}

static void now_is_the_wall_clock(void **state)
{
    int64_t a = ps__time_now_ms();
    int64_t b = ps__time_now_ms();
    assert_true(a > 1700000000000LL); /* after November 2023 */
    assert_true(b >= a);
    assert_true(b - a < 10000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(parses_iso_forms),
        cmocka_unit_test(rejects_malformed),
        cmocka_unit_test(rejects_out_of_range_fields),
        cmocka_unit_test(rejects_dates_that_do_not_exist),
        cmocka_unit_test(rejects_impossible_offsets),
        cmocka_unit_test(from_json_accepts_strings_and_numbers),
        cmocka_unit_test(from_json_rejects_everything_else),
        cmocka_unit_test(formats_iso),
        cmocka_unit_test(format_parse_round_trip),
        cmocka_unit_test(now_is_the_wall_clock),
        /* last: under ASan a failure here ends the process */
        cmocka_unit_test(format_is_well_formed_at_the_extremes),
    };
    return cmocka_run_group_tests_name("timestamp", tests, NULL, NULL);
}
