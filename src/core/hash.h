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
uint64_t ps__hash64(const void *data, size_t len);

#endif
