// The content hash as it was made before 2026-12-03 ("bytes" in
// docs/performance.md): json_structure.c's structure check, then simdjson's
// On-Demand parser over every value. Kept for the tests only, as the
// reference the one-pass reader (src/server/content_hash.cpp) must agree
// with: the same hash for every text both hash, and no hash where this
// one had none (content_hash_ondemand.h).
#include "content_hash_ondemand.h"
extern "C" { /* C headers */
#include "core/json_precheck.h"
#include "core/json_structure.h"
}

#include <simdjson.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#define XXH_INLINE_ALL
#include <xxhash.h>

namespace
{

using simdjson::ondemand::json_type;
using simdjson::ondemand::object;
using simdjson::ondemand::value;

// Each kind of value hashes from its own seed: "1", 1 and true differ.
enum : uint64_t { SEED_NULL = 1, SEED_BOOL, SEED_NUMBER, SEED_STRING, SEED_ARRAY, SEED_OBJECT };

uint64_t mix(uint64_t h, uint64_t v)
{
    return XXH3_64bits_withSeed(&v, sizeof v, h);
}

bool value_hash(value v, int depth, int max_depth, uint64_t *out);

// A scalar's own text, without the spaces after it.
std::string_view token_of(value &v)
{
    std::string_view raw = v.raw_json_token();
    while (!raw.empty() &&
           (raw.back() == ' ' || raw.back() == '\n' || raw.back() == '\r' || raw.back() == '\t'))
        raw.remove_suffix(1);
    return raw;
}

// A key's text: where it lies when it has no backslash (the structure
// check and simdjson's stage 1 passed the bytes, so its closing quote is
// there), else unescaped by simdjson into its buffer (that copy, for every
// string, was about a third of hashing a chat; it is left to strings with
// escapes).
bool key_of(simdjson::ondemand::field &field, std::string_view *key)
{
    const char *start = field.key().raw(), *end = start;
    while (*end != '"' && *end != '\\')
        end++;
    if (*end == '"') {
        *key = std::string_view(start, (size_t)(end - start));
        return true;
    }
    // an escaped NUL: json-c's keys are C strings, cut there, so the key
    // is another one to json-c (maybe one it then holds twice): no hash
    return !field.unescaped_key().get(*key) && key->find('\0') == std::string_view::npos;
}

// A sum of (key, value) hashes: the same in any key order. A key twice is
// refused: json-c keeps the last value, a sum would keep both.
// A key as seen in an object, to find one twice: a cheap tag of its bytes
// (its first and last 8 and its length: a key of up to 16 bytes is its
// tag), the key itself for a tag met twice. An XXH3 of each key for this
// was ~3 % of a re-sync in other bytes.
struct seen_key {
    uint64_t tag;
    std::string_view key;
};

uint64_t key_tag(std::string_view k)
{
    uint64_t first = 0, last = 0;
    size_t n = k.size();
    std::memcpy(&first, k.data(), n < 8 ? n : 8);
    if (n > 8)
        std::memcpy(&last, k.data() + n - 8, 8);
    return (first * 0x9E3779B97F4A7C15ULL) ^ (last * 0xC2B2AE3D27D4EB4FULL) ^ n;
}

// Whether a key is there twice (keys: n of them, sorted here).
bool key_twice(seen_key *keys, size_t n)
{
    std::sort(keys, keys + n, [](const seen_key &a, const seen_key &b) { return a.tag < b.tag; });
    for (size_t i = 0; i < n; i++)
        for (size_t j = i + 1; j < n && keys[j].tag == keys[i].tag; j++)
            if (keys[j].key == keys[i].key)
                return true;
    return false;
}

bool object_hash(object obj, int depth, int max_depth, uint64_t *out, std::string_view *id)
{
    uint64_t sum = 0, n = 0;
    // the keys seen: on the stack for the objects of a chat (a message has
    // a dozen keys), on the heap past that (a heap vector per message was
    // ~4 % of hashing a chat)
    seen_key few[64];
    std::vector<seen_key> many;
    simdjson::ondemand::field field_of;
    for (auto field : obj) { // a simdjson_result<field>
        std::string_view key;
        value v;
        if (std::move(field).get(field_of) || !key_of(field_of, &key))
            return false;
        v = std::move(field_of).value();
        seen_key seen = {key_tag(key), key};
        if (n < 64) {
            few[n] = seen;
        } else {
            if (many.empty())
                many.assign(few, few + 64);
            many.push_back(seen);
        }
        if (id && key == "id") {
            if (v.type() != json_type::string || v.get_string().get(*id))
                return false;
            sum += XXH3_64bits_withSeed(key.data(), key.size(),
                                        XXH3_64bits_withSeed(id->data(), id->size(), SEED_STRING));
            n++;
            continue;
        }
        uint64_t h;
        if (!value_hash(v, depth, max_depth, &h))
            return false;
        sum += XXH3_64bits_withSeed(key.data(), key.size(), h);
        n++;
    }
    if (many.empty() ? key_twice(few, (size_t)n) : key_twice(many.data(), many.size()))
        return false;
    *out = mix(mix(SEED_OBJECT, n), sum);
    return true;
}

// depth: of the container v is in (the root object is at 1). A container
// deeper than max_depth is refused, as the pre-check refuses it.
bool value_hash(value v, int depth, int max_depth, uint64_t *out)
{
    json_type type;
    if (v.type().get(type))
        return false;
    if ((type == json_type::object || type == json_type::array) && depth + 1 > max_depth)
        return false;
    switch (type) {
    case json_type::object: {
        object obj;
        return !v.get_object().get(obj) && object_hash(obj, depth + 1, max_depth, out, nullptr);
    }
    case json_type::array: {
        simdjson::ondemand::array arr;
        if (v.get_array().get(arr))
            return false;
        uint64_t h = SEED_ARRAY, n = 0;
        for (auto item : arr) {
            value iv;
            uint64_t ih;
            if (item.get(iv) || !value_hash(iv, depth + 1, max_depth, &ih))
                return false;
            h = mix(h, ih);
            n++;
        }
        *out = mix(h, n);
        return true;
    }
    case json_type::number: { // its own text, an RFC 8259 number (simdjson
                              // only looked at its first byte: 01, 1. and - too)
        std::string_view raw = token_of(v);
        if (!ps__json_is_number(raw.data(), raw.size()))
            return false;
        *out = XXH3_64bits_withSeed(raw.data(), raw.size(), SEED_NUMBER);
        return true;
    }
    case json_type::string: {
        // without a backslash a string's text is its value: hashed where
        // it lies, not unescaped into the parser's buffer first (as for
        // keys, key_of). simdjson's stage 1 checked its UTF-8 and that it
        // has no raw control character.
        std::string_view raw = token_of(v);
        if (raw.size() >= 2 && raw.front() == '"' && raw.back() == '"' &&
            raw.find('\\') == std::string_view::npos) {
            *out = XXH3_64bits_withSeed(raw.data() + 1, raw.size() - 2, SEED_STRING);
            return true;
        }
        std::string_view s;
        if (v.get_string().get(s))
            return false;
        *out = XXH3_64bits_withSeed(s.data(), s.size(), SEED_STRING);
        return true;
    }
    case json_type::boolean: {
        bool b;
        if (v.get_bool().get(b))
            return false;
        unsigned char c = b ? 1 : 0;
        *out = XXH3_64bits_withSeed(&c, 1, SEED_BOOL);
        return true;
    }
    case json_type::null: // simdjson only looked at its first byte
        if (token_of(v) != "null")
            return false;
        *out = XXH3_64bits_withSeed("", 0, SEED_NULL);
        return true;
    }
    return false;
}

// Nothing after the root value (simdjson 3.0's document has no at_end():
// past the last token there is no current location).
bool at_end(simdjson::ondemand::document &doc)
{
    const char *left;
    return doc.current_location().get(left) != simdjson::SUCCESS;
}

// One parser and one padded buffer per thread, reused.
thread_local simdjson::ondemand::parser tls_parser;
thread_local std::string tls_buffer;

} // namespace

extern "C" bool ps__content_hash_ondemand(const char *text, size_t len, int max_depth,
                                          uint64_t *hash, char *id, size_t id_size)
{
    // simdjson's On-Demand parser does not check the structure of all it
    // steps over (json_structure.h): that first
    if (!ps__json_structure_ok(text, len, max_depth))
        return false;
    try {
        tls_buffer.assign(text, len);
        tls_buffer.append(simdjson::SIMDJSON_PADDING, ' ');
        simdjson::ondemand::document doc;
        if (tls_parser.iterate(tls_buffer.data(), len, tls_buffer.size()).get(doc))
            return false;
        object obj;
        std::string_view chat_id;
        uint64_t h = 0;
        if (max_depth < 1 || doc.get_object().get(obj) ||
            !object_hash(obj, 1, max_depth, &h, &chat_id) || !at_end(doc) || chat_id.empty() ||
            chat_id.size() >= id_size || chat_id.find('\0') != std::string_view::npos)
            return false;
        std::memcpy(id, chat_id.data(), chat_id.size());
        id[chat_id.size()] = '\0';
        *hash = h ? h : 1;
        return true;
    } catch (...) { // std::bad_alloc
        return false;
    }
}
