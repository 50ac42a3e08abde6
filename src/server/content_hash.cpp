// The content hash of a chat's bytes; see content_hash.h.
//
// One pass over the chat's tokens that checks and hashes. simdjson's stage 1
// (the library's own SIMD scan: UTF-8, strings and their escapes, no raw
// control character in a string) lists where every token starts: each
// bracket, comma and colon outside strings, each string's opening quote,
// each scalar's first byte. Those tokens are walked here through the same
// grammar as core/json_structure.c (what may come next, brackets matched,
// the depth) while the value's hash is summed up, so the chat's bytes are
// scanned once, by stage 1. Before (the structure check, then simdjson's
// On-Demand parser over every value; tests/unit/content_hash_ondemand.cpp
// keeps it as the tests' reference) the bytes were scanned twice and the
// On-Demand iterator re-checked what the structure check had passed; the
// measured difference is in docs/performance.md ("bytes: ...").
//
// Stage 1 and string unescaping are simdjson's (`dom_parser_implementation`,
// the runtime-chosen kernel, as its parsers use them); what this file
// checks itself: the grammar and the depth, numbers by RFC 8259
// (ps__json_is_number, the pre-check's grammar), the words true, false and
// null exactly. A scalar glued to a string (`1"a"`) is one token to stage 1
// and fails its own check.
#include "server/content_hash.h"
extern "C" { /* C headers */
#include "core/json_precheck.h"
}

#include <simdjson.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#define XXH_INLINE_ALL
#include <xxhash.h>

namespace
{

// Each kind of value hashes from its own seed: "1", 1 and true differ.
// (The values are those of the On-Demand version: stored hashes stay valid.)
enum : uint64_t { SEED_NULL = 1, SEED_BOOL, SEED_NUMBER, SEED_STRING, SEED_ARRAY, SEED_OBJECT };

uint64_t mix(uint64_t h, uint64_t v)
{
    return XXH3_64bits_withSeed(&v, sizeof v, h);
}

// The deepest nesting the walk keeps, as json_structure.c keeps it.
constexpr int DEPTH_CAP = 64;

// A key as seen in an object, to find one twice: a cheap tag of its bytes
// (its first and last 8 and its length: a key of up to 16 bytes is its
// tag), the key itself for a tag met twice.
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

// Whether a key is there twice (keys: n of them, sorted here). A key twice
// is refused: json-c keeps the last value, a sum would keep both.
bool key_twice(seen_key *keys, size_t n)
{
    std::sort(keys, keys + n, [](const seen_key &a, const seen_key &b) { return a.tag < b.tag; });
    for (size_t i = 0; i < n; i++)
        for (size_t j = i + 1; j < n && keys[j].tag == keys[i].tag; j++)
            if (keys[j].key == keys[i].key)
                return true;
    return false;
}

// What may come next (json_structure.c's states).
enum state { VALUE, VALUE_OR_CLOSE, KEY, KEY_OR_CLOSE, COLON, AFTER_OBJECT, AFTER_ARRAY, DONE };

// An open container: an object's sum of (key, value) hashes (the same in any
// key order) or an array's running mix; its member count; where its keys
// start in the walk's key list; the key whose value comes next.
struct container {
    bool object;
    uint64_t acc, n;
    size_t keys_from;
    std::string_view key;
};

bool is_space(uint8_t c)
{
    return c == ' ' || c == '\n' || c == '\r' || c == '\t';
}

// One parser's state per thread, reused: simdjson's stage 1 and its
// structural indexes, the padded copy of a chat (ps_content_hash), the
// unescaped keys and the walk's stacks.
struct reader {
    std::unique_ptr<simdjson::internal::dom_parser_implementation> stage1;
    std::string padded, unescaped;
    std::vector<container> open;
    std::vector<seen_key> keys;
};

thread_local reader tls;

// The walk. buf: the padded chat; idx: stage 1's n token starts.
class walk
{
  public:
    walk(const uint8_t *buf, size_t len, const uint32_t *idx, uint32_t n, int max_depth,
         const simdjson::internal::dom_parser_implementation &impl, reader &r)
        : buf_(buf), len_(len), idx_(idx), n_(n),
          limit_(max_depth > DEPTH_CAP ? DEPTH_CAP : max_depth), impl_(impl), open_(r.open),
          keys_(r.keys), arena_((uint8_t *)r.unescaped.data())
    {
        open_.clear();
        keys_.clear();
    }

    // The chat's hash and its id (a view into buf or the unescaped keys'
    // buffer); false for anything ps_content_hash gives no hash for.
    bool run(uint64_t *hash, std::string_view *id)
    {
        state s = VALUE;
        for (uint32_t k = 0; k < n_; k++) {
            uint32_t at = idx_[k], next = k + 1 < n_ ? idx_[k + 1] : (uint32_t)len_;
            switch (buf_[at]) {
            case '{':
            case '[': {
                bool object = buf_[at] == '{';
                if ((s != VALUE && s != VALUE_OR_CLOSE) || (open_.empty() && !object) ||
                    (int)open_.size() + 1 > limit_)
                    return false;
                open_.push_back({object, object ? 0 : (uint64_t)SEED_ARRAY, 0, keys_.size(), {}});
                s = object ? KEY_OR_CLOSE : VALUE_OR_CLOSE;
                break;
            }
            case '}': {
                if (s != KEY_OR_CLOSE && s != AFTER_OBJECT)
                    return false;
                container &c = open_.back();
                if (key_twice(keys_.data() + c.keys_from, keys_.size() - c.keys_from))
                    return false;
                uint64_t h = mix(mix(SEED_OBJECT, c.n), c.acc);
                keys_.resize(c.keys_from);
                s = close(h);
                break;
            }
            case ']': {
                if (s != VALUE_OR_CLOSE && s != AFTER_ARRAY)
                    return false;
                container &c = open_.back();
                s = close(mix(c.acc, c.n));
                break;
            }
            case ',':
                if (s == AFTER_OBJECT)
                    s = KEY;
                else if (s == AFTER_ARRAY)
                    s = VALUE;
                else
                    return false;
                break;
            case ':':
                if (s != COLON)
                    return false;
                s = VALUE;
                break;
            case '"': {
                std::string_view text;
                if (s == KEY || s == KEY_OR_CLOSE) {
                    // kept until its object closes (the keys twice)
                    if (!string_at(at, next, true, &text) || text.find('\0') != text.npos)
                        return false; // json-c cuts a key at an escaped NUL
                    open_.back().key = text;
                    keys_.push_back({key_tag(text), text});
                    s = COLON;
                    break;
                }
                if ((s != VALUE && s != VALUE_OR_CLOSE) || open_.empty())
                    return false;
                bool is_id = root_id_next();
                if (!string_at(at, next, is_id, &text))
                    return false;
                if (is_id)
                    *id = text;
                s = value(XXH3_64bits_withSeed(text.data(), text.size(), SEED_STRING));
                break;
            }
            default: {
                if ((s != VALUE && s != VALUE_OR_CLOSE) || open_.empty())
                    return false;
                std::string_view text = scalar_at(at, next);
                uint64_t h;
                if (text == "true" || text == "false") {
                    unsigned char c = text[0] == 't' ? 1 : 0;
                    h = XXH3_64bits_withSeed(&c, 1, SEED_BOOL);
                } else if (text == "null") {
                    h = XXH3_64bits_withSeed("", 0, SEED_NULL);
                } else if (ps__json_is_number(text.data(), text.size())) {
                    h = XXH3_64bits_withSeed(text.data(), text.size(), SEED_NUMBER);
                } else {
                    return false;
                }
                s = value(h);
                break;
            }
            }
        } // (a token after the root finds DONE, which takes none)
        if (s != DONE)
            return false;
        *hash = root_;
        return true;
    }

  private:
    // A value is next to the root object's "id" key: kept if it is a string
    // (another kind leaves the chat without an id, so without a hash).
    bool root_id_next() const
    {
        return open_.size() == 1 && open_.back().object && open_.back().key == "id";
    }

    // A value's hash given to its container; the state after it.
    state value(uint64_t h)
    {
        container &c = open_.back();
        c.n++;
        if (c.object) {
            c.acc += XXH3_64bits_withSeed(c.key.data(), c.key.size(), h);
            c.key = {};
            return AFTER_OBJECT;
        }
        c.acc = mix(c.acc, h);
        return AFTER_ARRAY;
    }

    // The innermost container closed with hash h.
    state close(uint64_t h)
    {
        open_.pop_back();
        if (open_.empty()) {
            root_ = h;
            return DONE;
        }
        return value(h);
    }

    // A scalar's text: from its first byte to the next token, without the
    // spaces before that.
    std::string_view scalar_at(uint32_t at, uint32_t next) const
    {
        while (next > at && is_space(buf_[next - 1]))
            next--;
        return std::string_view((const char *)buf_ + at, next - at);
    }

    // The string whose opening quote is at `at`: its text where it lies when
    // it has no backslash, else unescaped by simdjson (which refuses a bad
    // escape) into the arena; keep: the unescaped text stays (keys, the id).
    bool string_at(uint32_t at, uint32_t next, bool keep, std::string_view *out)
    {
        std::string_view raw = scalar_at(at, next);
        if (raw.size() < 2 || raw.back() != '"')
            return false;
        raw = raw.substr(1, raw.size() - 2);
        if (std::memchr(raw.data(), '\\', raw.size()) == nullptr) {
            *out = raw;
            return true;
        }
        uint8_t *end = impl_.parse_string(buf_ + at + 1, arena_);
        if (end == nullptr)
            return false;
        *out = std::string_view((const char *)arena_, (size_t)(end - arena_));
        if (keep)
            arena_ = end;
        return true;
    }

    const uint8_t *buf_;
    size_t len_;
    const uint32_t *idx_;
    uint32_t n_;
    int limit_;
    const simdjson::internal::dom_parser_implementation &impl_;
    std::vector<container> &open_;
    std::vector<seen_key> &keys_;
    uint8_t *arena_;
    uint64_t root_ = 0;
};

} // namespace

static_assert(simdjson::SIMDJSON_PADDING <= PS_CONTENT_HASH_PADDING,
              "simdjson reads further past a text than promised");

// The hash of `text`, PS_CONTENT_HASH_PADDING readable bytes after it.
static bool hash_padded(const char *text, size_t len, int max_depth, uint64_t *hash, char *id,
                        size_t id_size)
{
    if (max_depth < 1 || len == 0 || len > 0xFFFFFFF0u)
        return false;
    try {
        reader &r = tls;
        if (!r.stage1 || r.stage1->capacity() < len) {
            std::unique_ptr<simdjson::internal::dom_parser_implementation> impl;
            if (simdjson::get_active_implementation()->create_dom_parser_implementation(
                    std::max<size_t>(len, 1 << 16), DEPTH_CAP, impl))
                return false;
            r.stage1 = std::move(impl);
        }
        // the unescaping writes up to SIMDJSON_PADDING bytes past what it
        // unescapes
        if (r.unescaped.size() < len + 2 * simdjson::SIMDJSON_PADDING)
            r.unescaped.resize(len + 2 * simdjson::SIMDJSON_PADDING);
        const uint8_t *buf = (const uint8_t *)text;
        if (r.stage1->stage1(buf, len, simdjson::stage1_mode::regular))
            return false;
        std::string_view chat_id;
        uint64_t h = 0;
        walk w(buf, len, r.stage1->structural_indexes.get(), r.stage1->n_structural_indexes,
               max_depth, *r.stage1, r);
        if (!w.run(&h, &chat_id) || chat_id.empty() || chat_id.size() >= id_size ||
            chat_id.find('\0') != std::string_view::npos)
            return false;
        std::memcpy(id, chat_id.data(), chat_id.size());
        id[chat_id.size()] = '\0';
        *hash = h ? h : 1;
        return true;
    } catch (...) { // std::bad_alloc
        return false;
    }
}

extern "C" bool ps_content_hash_in_place(const char *text, size_t len, int max_depth,
                                         uint64_t *hash, char *id, size_t id_size)
{
    return hash_padded(text, len, max_depth, hash, id, id_size);
}

extern "C" bool ps_content_hash(const char *text, size_t len, int max_depth, uint64_t *hash,
                                char *id, size_t id_size)
{
    // stage 1 and the unescaping read up to SIMDJSON_PADDING bytes past
    // the text: a padded copy
    try {
        tls.padded.assign(text, len);
        tls.padded.append(PS_CONTENT_HASH_PADDING, ' ');
    } catch (...) { // std::bad_alloc
        return false;
    }
    return hash_padded(tls.padded.data(), len, max_depth, hash, id, id_size);
}
