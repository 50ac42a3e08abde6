/* The two hashes of hash.h. */
#include "core/hash.h"

#include <string.h>

/* header-only: no library to link (libpolysync compiles this file too) */
#define XXH_INLINE_ALL
#include <xxhash.h>

/* XXH3's AVX2 code only pays past a few hundred bytes (its short inputs
 * take no vectors): below this the call stays here */
#define AVX2_FROM 1024

uint64_t ps__hash_bytes(const void *data, size_t len)
{
    uint64_t h;
#ifdef PS_HASH_AVX2
    if (len >= AVX2_FROM && __builtin_cpu_supports("avx2"))
        h = ps__hash_bytes_avx2(data, len);
    else
#endif
        h = XXH3_64bits(data, len);
    return h ? h : 1; /* 0 means "no hash" where hashes are stored */
}

uint64_t ps__hash_bytes_baseline(const void *data, size_t len)
{
    uint64_t h = XXH3_64bits(data, len);
    return h ? h : 1;
}

/* ps__hash64, frozen (hash.h): four independent 8-byte lanes (each a
 * multiply-rotate step, so the CPU runs them side by side instead of
 * waiting on one chain of multiplies), folded together with the tail and a
 * final avalanche (MurmurHash3's fmix64). */

#define PRIME1 0x87c37b91114253d5ULL
#define PRIME2 0x4cf5ad432745937fULL

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

static uint64_t step(uint64_t h, const unsigned char *p)
{
    uint64_t w;
    memcpy(&w, p, 8);
    return rotl(h ^ (w * PRIME1), 31) * PRIME2;
}

uint64_t ps__hash64(const void *data, size_t len)
{
    const unsigned char *p = data;
    uint64_t seed = 0x9e3779b97f4a7c15ULL ^ (uint64_t)len;
    uint64_t lane[4] = {seed, seed + PRIME1, seed ^ PRIME2, seed - PRIME1};
    size_t i = 0;
    for (; i + 32 <= len; i += 32)
        for (int k = 0; k < 4; k++)
            lane[k] = step(lane[k], p + i + 8 * k);
    uint64_t h = lane[0];
    for (int k = 1; k < 4; k++)
        h = rotl(h, 17) ^ (lane[k] * PRIME2);
    for (; i + 8 <= len; i += 8)
        h = step(h, p + i);
    uint64_t tail = 0;
    memcpy(&tail, p + i, len - i);
    h ^= tail * PRIME1;
    h = fmix(h);
    return h ? h : 1; /* 0 means "no hash" where hashes are stored */
}
