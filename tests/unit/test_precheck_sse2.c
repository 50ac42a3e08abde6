/*
 * Differential test of the JSON pre-check's SSE2 fast path
 * (src/core/json_precheck.c): the same file is compiled a second time with
 * __SSE2__ undefined (tests/CMakeLists.txt), its functions renamed *_scalar,
 * so this binary holds both paths. On seeded random inputs built to hit the
 * fast path's corners (strings dense in quotes, escapes, control bytes,
 * well-formed and broken UTF-8, lengths across the 16- and 64-byte blocks,
 * text ending inside a string), both must give the same verdict, the same
 * error (code, offset in the message), whole or as a piece of a body
 * (ps__json_precheck_at, as each chat of a legacy body is checked). The
 * oracle is the byte-at-a-time path, which the fast path must only speed up.
 * PS_PROPERTY_SEED / PS_PROPERTY_CASES explore further.
 */
#include "test_util.h"
#include "core/json_precheck.h"

#include <stdlib.h>

ps_code ps_json_precheck_scalar(const char *text, size_t len, int max_depth, ps_error *err);
ps_code ps_json_precheck_at_scalar(const char *text, size_t len, int max_depth, size_t base,
                                   ps_error *err);

static uint64_t rng;

static uint64_t next(void)
{
    uint64_t z = (rng += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Pieces string text is made of, well-formed or not. */
static const char *const PIECES[] = {
    "a", "abcdefghijklmnop", "\\\"", "\\\\", "\\n", "\\u00e9", "\\ud83d\\ude00", "\\x", "\\",
    "\x01", "\x1f", "\t", "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80", "\xc3", "\xe2\x82",
    "\xf0\x9f\x98", "\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xff", "\x80", " ", "\"",
    "0123456789012345678901234567890123456789012345678901234567890123",
};

static size_t add(char *buf, size_t n, size_t cap, const char *s)
{
    size_t k = strlen(s);
    if (n + k >= cap)
        return n;
    memcpy(buf + n, s, k);
    return n + k;
}

/* A random body: mostly {"chats":[{"id":"..","title":".."},...]} with
 * strings of random pieces, sometimes cut short or with a stray byte. */
static size_t make_input(char *buf, size_t cap)
{
    size_t n = add(buf, 0, cap, "{\"chats\":[");
    int chats = (int)(next() % 4);
    for (int c = 0; c < chats; c++) {
        n = add(buf, n, cap, c ? ",{\"id\":\"" : "{\"id\":\"");
        int pieces = (int)(next() % 40);
        for (int k = 0; k < pieces; k++) {
            const char *p = PIECES[next() % (sizeof PIECES / sizeof *PIECES)];
            /* mostly well-formed text, so the fast path runs far */
            if (next() % 4 && (strchr("\"\\", p[0]) || (unsigned char)p[0] < 0x20 ||
                               (unsigned char)p[0] >= 0x80))
                p = next() % 2 ? "\\\"" : "\xc3\xa9";
            n = add(buf, n, cap, p);
        }
        n = add(buf, n, cap, "\",\"title\":\"t\",\"n\":[1,2.5e3,-0,true,null]}");
    }
    n = add(buf, n, cap, "]}");
    switch (next() % 6) {
    case 0: /* cut anywhere: the text may end inside a string */
        n = n ? (size_t)(next() % n) : 0;
        break;
    case 1: /* one byte replaced by anything */
        if (n)
            buf[next() % n] = (char)(next() & 0xff);
        break;
    default:
        break;
    }
    return n;
}

static void same_verdicts(void **state)
{
    (void)state;
    const char *seed_env = getenv("PS_PROPERTY_SEED");
    const char *cases_env = getenv("PS_PROPERTY_CASES");
    uint64_t seed = seed_env ? strtoull(seed_env, NULL, 10) : 20261202;
    long cases = cases_env ? strtol(cases_env, NULL, 10) : 50000;
    static char buf[8192];
    long fast_errors = 0;
    for (long i = 0; i < cases; i++) {
        rng = seed + (uint64_t)i;
        size_t n = make_input(buf, sizeof buf);
        ps_error e1 = {0}, e2 = {0};
        ps_code r1 = ps__json_precheck(buf, n, 64, &e1);
        ps_code r2 = ps_json_precheck_scalar(buf, n, 64, &e2);
        bool same = r1 == r2 && strcmp(e1.message, e2.message) == 0 &&
                    strcmp(e1.field, e2.field) == 0;
        ps_error e3 = {0}, e4 = {0};
        same = same && ps__json_precheck_at(buf, n, 64, 1000, &e3) ==
                           ps_json_precheck_at_scalar(buf, n, 64, 1000, &e4) &&
               strcmp(e3.message, e4.message) == 0;
        if (!same) {
            print_error("case %ld (PS_PROPERTY_SEED=%llu): SSE2 %d '%s', scalar %d '%s'\n", i,
                        (unsigned long long)seed, r1, e1.message, r2, e2.message);
            fail();
        }
        fast_errors += r1 != PS_OK;
    }
    /* the generator must reach both verdicts, or the test says little */
    assert_true(fast_errors > cases / 20);
    assert_true(fast_errors < cases - cases / 20);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(same_verdicts)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
