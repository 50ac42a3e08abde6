/*
 * A fast 64-bit hash of bytes, to recognise a chat a client sends again
 * unchanged. Not cryptographic: a crafted collision could only make the
 * server skip re-merging the crafter's own chat (docs/performance.md).
 */
#ifndef PS_HASH_H
#define PS_HASH_H

#include <stddef.h>
#include <stdint.h>

uint64_t ps_hash64(const void *data, size_t len);

#endif
