/*
 * The numbers of an access line (server/log.c writes them without printf):
 * status, bytes_in and bytes_out as "%u" / "%" PRIu64 write them, the
 * duration as "%.3f" of microseconds / 1000.0 (the oracle, snprintf),
 * over edge and seeded random values, in both formats. The log goes to
 * stderr: the test points stderr at a file and reads the lines back.
 */
#include "test_util.h"
#include "server/log.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Runs `n` access lines through the log (format `fmt`) and returns what it
 * wrote to stderr (free() it). A non-access line after them makes the
 * batch of access lines go out first (log.h: lines keep their order). */
static char *logged(ps_log_format fmt, const ps_access_entry *e, size_t n)
{
    fflush(stderr);
    int saved = dup(STDERR_FILENO);
    FILE *f = tmpfile();
    assert_non_null(f);
    assert_true(dup2(fileno(f), STDERR_FILENO) >= 0);
    ps_log_setup(fmt, PS_LOG_INFO);
    for (size_t i = 0; i < n; i++)
        ps_log_access(&e[i]);
    ps_log_event(PS_LOG_INFO, "end", "end");
    assert_true(dup2(saved, STDERR_FILENO) >= 0);
    close(saved);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    long size = ftell(f);
    assert_true(size > 0);
    rewind(f);
    char *text = calloc(1, (size_t)size + 1);
    assert_non_null(text);
    assert_int_equal(fread(text, 1, (size_t)size, f), (size_t)size);
    fclose(f);
    return text;
}

static ps_access_entry entry(unsigned status, uint64_t in, uint64_t out, int64_t us)
{
    return (ps_access_entry){.request_id = "r",
                             .method = "GET",
                             .route = "/health",
                             .status = status,
                             .bytes_in = in,
                             .bytes_out = out,
                             .duration_us = us,
                             .user = "u",
                             .device = "d",
                             .client = "127.0.0.1"};
}

enum { N = 400 };

/* Edge values first, then seeded random ones of every magnitude. */
static void make_entries(ps_access_entry *e)
{
    const int64_t us[] = {0,
                          1,
                          9,
                          10,
                          999,
                          1000,
                          1001,
                          123456,
                          -1,
                          -999,
                          -1000,
                          -1001,
                          (int64_t)1 << 52,
                          -((int64_t)1 << 52)};
    const uint64_t bytes[] = {0, 9, 10, UINT32_MAX, UINT64_MAX, 1000000};
    size_t i = 0;
    for (; i < sizeof us / sizeof *us; i++)
        e[i] = entry(i % 2 ? 200 : 0, bytes[i % 6], bytes[(i + 3) % 6], us[i]);
    uint64_t rng = 0x2545f4914f6cdd1dull; /* fixed seed */
    for (; i < N; i++) {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        /* |us| < 2^52: us / 1000.0 then prints its exact 3 decimals */
        int64_t d = (int64_t)((rng >> 12) >> (rng % 52));
        e[i] = entry((unsigned)(rng % 600), rng >> (rng % 64), rng >> (rng % 61), i % 3 ? d : -d);
    }
}

static const char *value_after(const char *line, const char *key, char *out, size_t size)
{
    const char *p = strstr(line, key);
    assert_non_null(p);
    p += strlen(key);
    size_t n = strcspn(p, " ,}\n");
    assert_true(n < size);
    memcpy(out, p, n);
    out[n] = '\0';
    return out;
}

static void check_lines(char *text, const ps_access_entry *e, const char *keys[4])
{
    char *save = NULL, *line = strtok_r(text, "\n", &save);
    for (size_t i = 0; i < N; i++, line = strtok_r(NULL, "\n", &save)) {
        assert_non_null(line);
        char want[64], got[64];
        snprintf(want, sizeof want, "%u", e[i].status);
        assert_string_equal(value_after(line, keys[0], got, sizeof got), want);
        snprintf(want, sizeof want, "%" PRIu64, e[i].bytes_in);
        assert_string_equal(value_after(line, keys[1], got, sizeof got), want);
        snprintf(want, sizeof want, "%" PRIu64, e[i].bytes_out);
        assert_string_equal(value_after(line, keys[2], got, sizeof got), want);
        snprintf(want, sizeof want, "%.3f", (double)e[i].duration_us / 1000.0);
        assert_string_equal(value_after(line, keys[3], got, sizeof got), want);
    }
}

static void text_lines_write_numbers_as_printf_does(void **state)
{
    (void)state;
    static ps_access_entry e[N];
    make_entries(e);
    char *text = logged(PS_LOG_TEXT, e, N);
    check_lines(text, e,
                (const char *[]){" status=", " bytes_in=", " bytes_out=", " duration_ms="});
    free(text);
}

static void json_lines_write_numbers_as_printf_does(void **state)
{
    (void)state;
    static ps_access_entry e[N];
    make_entries(e);
    char *text = logged(PS_LOG_JSON, e, N);
    check_lines(
        text, e,
        (const char *[]){"\"status\":", "\"bytes_in\":", "\"bytes_out\":", "\"duration_ms\":"});
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(text_lines_write_numbers_as_printf_does),
        cmocka_unit_test(json_lines_write_numbers_as_printf_does),
    };
    return cmocka_run_group_tests_name("log_numbers", tests, NULL, NULL);
}
