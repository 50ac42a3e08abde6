/* The key-order-free hash of a JSON value; see json_hash.h. */
#include "core/json_hash.h"
#include "core/json_parse.h"

#include <string.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

/* Each kind of value hashes from its own seed: "1", 1 and true differ. */
enum { SEED_NULL = 1, SEED_BOOL, SEED_INT, SEED_DOUBLE, SEED_STRING, SEED_ARRAY, SEED_OBJECT };

static uint64_t mix(uint64_t h, uint64_t v)
{
    return XXH3_64bits_withSeed(&v, sizeof v, h);
}

static uint64_t value_hash(json_object *v)
{
    switch (json_object_get_type(v)) {
    case json_type_null:
        return XXH3_64bits_withSeed("", 0, SEED_NULL);
    case json_type_boolean: {
        unsigned char b = json_object_get_boolean(v) ? 1 : 0;
        return XXH3_64bits_withSeed(&b, 1, SEED_BOOL);
    }
    case json_type_int: {
        int64_t n = json_object_get_int64(v);
        return XXH3_64bits_withSeed(&n, sizeof n, SEED_INT);
    }
    case json_type_double: {
        size_t len = 0;
        const char *text = ps_json_text(v, &len);
        return XXH3_64bits_withSeed(text, len, SEED_DOUBLE);
    }
    case json_type_string:
        return XXH3_64bits_withSeed(json_object_get_string(v),
                                    (size_t)json_object_get_string_len(v), SEED_STRING);
    case json_type_array: {
        size_t n = json_object_array_length(v);
        uint64_t h = mix(SEED_ARRAY, n);
        for (size_t i = 0; i < n; i++)
            h = mix(h, value_hash(json_object_array_get_idx(v, i)));
        return h;
    }
    case json_type_object: {
        /* a sum of (key, value) hashes: the same in any key order (json-c
         * keeps one value per key, so no pair comes twice) */
        uint64_t sum = 0, n = 0;
        json_object_object_foreach(v, key, val)
        {
            sum += XXH3_64bits_withSeed(key, strlen(key), value_hash(val));
            n++;
        }
        return mix(mix(SEED_OBJECT, n), sum);
    }
    }
    return 0;
}

uint64_t ps_json_value_hash(json_object *value)
{
    uint64_t h = value_hash(value);
    return h ? h : 1;
}
