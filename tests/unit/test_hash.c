/*
 * The hashes of core/hash.h. The chat-bytes hash (ps__hash_bytes, XXH3) lets
 * a legacy sync skip chats sent again unchanged, the base hash (ps__hash64)
 * recognises values a device carried along: a collision would make a
 * changed chat look unchanged, so for both every single-bit change of
 * inputs of every length must change the hash; equal bytes hash equal
 * wherever they lie in memory (no alignment dependence), and 0 is never
 * returned. ps__hash_bytes is XXH3 (its published value for no bytes);
 * ps__hash64 is frozen: the values bases stored by earlier releases hold.
 */
#include "test_util.h"
#include "core/hash.h"

#include <stdlib.h>
#include <string.h>
#include <xxhash.h> /* the shared libxxhash: an oracle built apart from ours */

typedef uint64_t (*hash_fn)(const void *, size_t);
static const hash_fn HASHES[2] = {ps__hash_bytes, ps__hash64};

static void every_bit_flip_changes_the_hash(void **state)
{
    for (int h = 0; h < 2; h++) {
        hash_fn ps_hash = HASHES[h];
        unsigned char buf[80];
        for (size_t i = 0; i < sizeof buf; i++)
            buf[i] = (unsigned char)(i * 37 + 11);
        for (size_t len = 1; len <= sizeof buf; len++) {
            uint64_t base = ps_hash(buf, len);
            for (size_t bit = 0; bit < len * 8; bit++) {
                buf[bit / 8] ^= (unsigned char)(1u << (bit % 8));
                uint64_t flipped = ps_hash(buf, len);
                buf[bit / 8] ^= (unsigned char)(1u << (bit % 8));
                if (flipped == base)
                    fail_msg("hash %d: flipping bit %zu of %zu bytes left it unchanged", h, bit,
                             len);
            }
        }
    }
}

static void length_is_part_of_the_hash(void **state)
{
    for (int h = 0; h < 2; h++) {
        hash_fn ps_hash = HASHES[h];
        unsigned char zeros[64] = {0};
        uint64_t seen[65];
        for (size_t len = 0; len <= 64; len++) {
            seen[len] = ps_hash(zeros, len);
            assert_true(seen[len] != 0);
            for (size_t k = 0; k < len; k++)
                assert_true(seen[k] != seen[len]);
        }
    }
}

static void same_bytes_same_hash_at_any_alignment(void **state)
{
    const char *text = "{\"id\":\"c1\",\"title\":\"Ünïcödé — 漢字 🙂\",\"messages\":[]}";
    size_t len = strlen(text);
    for (int h = 0; h < 2; h++) {
        hash_fn ps_hash = HASHES[h];
        uint64_t want = ps_hash(text, len);
        char *buf = malloc(len + 16);
        assert_non_null(buf);
        for (size_t off = 0; off < 16; off++) {
            memcpy(buf + off, text, len);
            assert_true(ps_hash(buf + off, len) == want);
        }
        free(buf);
    }
}

/* XXH3's published value for no bytes (xxHash's sanity test) */
static void chat_hash_is_xxh3(void **state)
{
    assert_true(ps__hash_bytes("", 0) == 0x2d06800538d394c2ull);
}

/* ps__hash_bytes takes XXH3's AVX2 code where the processor has it, the
 * SSE2 code elsewhere: both must give what Debian's libxxhash (compiled
 * apart, its own choice of code) gives, at every length around XXH3's
 * internal sizes (240-byte short inputs, 64-byte stripes, 1 KiB blocks)
 * and for chat-sized inputs, on seeded random bytes. */
static void chat_hash_same_on_every_path(void **state)
{
    size_t max = 70000;
    unsigned char *buf = malloc(max);
    assert_non_null(buf);
    uint64_t x = 0x9e3779b97f4a7c15ull;
    for (size_t i = 0; i < max; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        buf[i] = (unsigned char)x;
    }
    size_t lens[600], n = 0;
    for (size_t len = 0; len <= 2100; len += len < 300 ? 1 : 7)
        lens[n++] = len;
    for (size_t len = 4000; len <= max && n < 600; len = len * 5 / 4 + 3)
        lens[n++] = len;
    for (size_t k = 0; k < n; k++) {
        for (size_t off = 0; off < 3 && lens[k] + off <= max; off++) {
            uint64_t want = XXH3_64bits(buf + off, lens[k]);
            want = want ? want : 1;
            uint64_t fast = ps__hash_bytes(buf + off, lens[k]);
            uint64_t baseline = ps__hash_bytes_baseline(buf + off, lens[k]);
            if (fast != want || baseline != want)
                fail_msg("%zu bytes at offset %zu: %016llx (chosen), %016llx (SSE2), want %016llx",
                         lens[k], off, (unsigned long long)fast, (unsigned long long)baseline,
                         (unsigned long long)want);
        }
    }
    free(buf);
}

/* What ps__hash64 gave before XXH3 came in, and so what stored bases hold:
 * a field value's hash input ('f', name, NUL, value text), a message's. */
static void base_hash_is_frozen(void **state)
{
    const char *message = "{\"id\":\"m1\",\"role\":\"user\",\"content\":"
                          "\"a longer message text, well over thirty-two bytes\"}";
    assert_true(ps__hash64("", 0) == 0x821862493d7ecaa7ull);
    assert_true(ps__hash64("abc", 3) == 0x92f77231586e5663ull);
    assert_true(ps__hash64("f\0title\0\"Rome\"", 14) == 0x1a0c267c8240b49full);
    assert_true(ps__hash64(message, strlen(message)) == 0x117d7b1a866cd70aull);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_bit_flip_changes_the_hash),
        cmocka_unit_test(length_is_part_of_the_hash),
        cmocka_unit_test(same_bytes_same_hash_at_any_alignment),
        cmocka_unit_test(chat_hash_is_xxh3),
        cmocka_unit_test(chat_hash_same_on_every_path),
        cmocka_unit_test(base_hash_is_frozen),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
