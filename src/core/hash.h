/*
 * 64-bit hashes of bytes. Not cryptographic: a crafted collision could only
 * make the server skip re-merging the crafter's own chat, or take one of
 * the crafter's own writes as carried along (docs/performance.md).
 *
 *   ps__hash_bytes  XXH3 (libxxhash): a chat's bytes as a client sent them,
 *                  for the "sent unchanged" skip of a legacy sync. Stored in
 *                  the `sent` table (schema 8), but only ever compared with
 *                  hashes of bytes received later, so it may change with a
 *                  schema migration that empties that table.
 *   ps__hash64      the hash of a device base's values (base.c, the `bases`
 *                  table since schema 6, `chat_bodies.hashes`). FROZEN: a
 *                  base stored by an older release must still match the
 *                  values it was made of, or carried-along values would be
 *                  taken as writes and merge results would change. Never
 *                  change this function; use ps__hash_bytes for new uses.
 */
#ifndef PS_HASH_H
#define PS_HASH_H

#include <stddef.h>
#include <stdint.h>

uint64_t ps__hash_bytes(const void *data, size_t len);
/* The same value without AVX2, whatever the processor (for the tests:
 * ps__hash_bytes takes XXH3's AVX2 code where the processor has it). */
uint64_t ps__hash_bytes_baseline(const void *data, size_t len);
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define PS_HASH_AVX2 1
/* XXH3 with AVX2 (hash_avx2.c): only where the processor has it, as
 * ps__hash_bytes chooses; no 0-to-1 mapping */
uint64_t ps__hash_bytes_avx2(const void *data, size_t len);
#endif
uint64_t ps__hash64(const void *data, size_t len);

#endif
