/* 8 bytes a step, multiply-rotate mixing, a final avalanche (as in
 * MurmurHash3's fmix64); see hash.h. */
#include "core/hash.h"

#include <string.h>

static uint64_t rotl(uint64_t x, int r)
{
    return (x << r) | (x >> (64 - r));
}

static uint64_t fmix(uint64_t h)
{
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    return h;
}

uint64_t ps_hash64(const void *data, size_t len)
{
    const unsigned char *p = data;
    uint64_t h = 0x9e3779b97f4a7c15ULL ^ (uint64_t)len;
    size_t i = 0;
    for (; i + 8 <= len; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        h = rotl(h ^ (w * 0x87c37b91114253d5ULL), 31) * 0x4cf5ad432745937fULL;
    }
    uint64_t tail = 0;
    memcpy(&tail, p + i, len - i);
    h ^= tail * 0x87c37b91114253d5ULL;
    h = fmix(h);
    return h ? h : 1; /* 0 means "no hash" where hashes are stored */
}
