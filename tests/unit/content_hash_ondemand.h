/*
 * The content hash the way it was made before the one-pass reader
 * (server/content_hash.h): the structure check (core/json_structure.h)
 * and simdjson's On-Demand parser. For the tests only: the reference
 * ps_content_hash must agree with (same values; no hash where this gives
 * none). Same arguments and results as ps_content_hash.
 */
#ifndef PS_CONTENT_HASH_ONDEMAND_H
#define PS_CONTENT_HASH_ONDEMAND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

bool ps__content_hash_ondemand(const char *text, size_t len, int max_depth, uint64_t *hash,
                               char *id, size_t id_size);

#ifdef __cplusplus
}
#endif

#endif
