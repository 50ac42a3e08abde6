/*
 * The chat-bytes hash (core/hash.h) that lets a legacy sync skip chats sent
 * again unchanged: a collision would make a changed chat look unchanged, so
 * every single-bit change of inputs of every length across the four lanes
 * and the tail must change the hash; equal bytes hash equal wherever they
 * lie in memory (no alignment dependence), and 0 is never returned.
 */
#include "test_util.h"
#include "core/hash.h"

#include <stdlib.h>
#include <string.h>

static void every_bit_flip_changes_the_hash(void **state)
{
    unsigned char buf[80];
    for (size_t i = 0; i < sizeof buf; i++)
        buf[i] = (unsigned char)(i * 37 + 11);
    for (size_t len = 1; len <= sizeof buf; len++) {
        uint64_t base = ps_hash64(buf, len);
        for (size_t bit = 0; bit < len * 8; bit++) {
            buf[bit / 8] ^= (unsigned char)(1u << (bit % 8));
            uint64_t flipped = ps_hash64(buf, len);
            buf[bit / 8] ^= (unsigned char)(1u << (bit % 8));
            if (flipped == base)
                fail_msg("flipping bit %zu of %zu bytes left the hash unchanged", bit, len);
        }
    }
}

static void length_is_part_of_the_hash(void **state)
{
    unsigned char zeros[64] = {0};
    uint64_t seen[65];
    for (size_t len = 0; len <= 64; len++) {
        seen[len] = ps_hash64(zeros, len);
        assert_true(seen[len] != 0);
        for (size_t k = 0; k < len; k++)
            assert_true(seen[k] != seen[len]);
    }
}

static void same_bytes_same_hash_at_any_alignment(void **state)
{
    const char *text = "{\"id\":\"c1\",\"title\":\"Ünïcödé — 漢字 🙂\",\"messages\":[]}";
    size_t len = strlen(text);
    uint64_t want = ps_hash64(text, len);
    char *buf = malloc(len + 16);
    assert_non_null(buf);
    for (size_t off = 0; off < 16; off++) {
        memcpy(buf + off, text, len);
        assert_true(ps_hash64(buf + off, len) == want);
    }
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_bit_flip_changes_the_hash),
        cmocka_unit_test(length_is_part_of_the_hash),
        cmocka_unit_test(same_bytes_same_hash_at_any_alignment),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
