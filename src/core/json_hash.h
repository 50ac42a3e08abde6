/*
 * A 64-bit hash of a parsed JSON value that does not depend on how it was
 * written: objects hash the same whatever the order of their keys, and the
 * text's spacing and escapes are gone once parsed. Arrays keep their order;
 * numbers hash as json-c holds them (an integer, or a decimal's own text), so
 * 1 and 1.0 differ. For the legacy sync's "sent unchanged" skip of a chat
 * re-sent with other bytes (docs/performance.md): equal values, equal
 * hashes; not cryptographic (a crafted collision could only make the server
 * skip re-merging the crafter's own chat).
 */
#ifndef PS_JSON_HASH_H
#define PS_JSON_HASH_H

#include <json-c/json.h>
#include <stdint.h>

/* Never 0 (0 means "no hash" where hashes are stored). */
uint64_t ps_json_value_hash(json_object *value);

#endif
