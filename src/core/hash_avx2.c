/*
 * XXH3 built for AVX2, for ps__hash_bytes on processors that have it
 * (hash.c chooses at run time; the build targets baseline x86-64). The
 * same header-only libxxhash as hash.c, compiled a second time with AVX2
 * allowed: XXH3's value does not depend on the vector width, only its
 * speed does (the 31 KB chats of the reference history: ~13 GB/s with
 * SSE2, ~38 GB/s with AVX2; docs/performance.md, "ingest: ...").
 */
#include "core/hash.h"

#ifdef PS_HASH_AVX2
/* GCC defines __AVX2__ from here on, so xxhash.h takes its AVX2 path */
#pragma GCC target("avx2")
#define XXH_INLINE_ALL
#include <xxhash.h>

uint64_t ps__hash_bytes_avx2(const void *data, size_t len)
{
    return XXH3_64bits(data, len);
}
#endif
