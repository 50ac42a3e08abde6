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
//
// The same walk may also follow what ps__validate_chat asks of a legacy
// chat (chat_rules below), so a chat it certifies is not parsed by json-c
// before its merge only to be validated (sync_legacy.c, prepare_chats).
#include "server/content_hash.h"
#include "server/stage1.hpp"
extern "C" { /* C headers */
#include "core/json_precheck.h"
#include "core/timestamp.h"
#include "core/validate.h"
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

// What a value is, to chat_rules.
enum class kind : uint8_t { null, boolean_true, boolean_false, number, string, object, array };

// What ps__validate_chat (core/validate.c) asks of a legacy chat, followed
// on the walk's tokens: passed() at the end only if it surely gives PS_OK.
// Sound, never complete: a value whose json-c reading is subtle (a time
// with an escape or a fraction, a counter written -0, a long number) is
// just not certified, and the chat takes the pre-check, parse and
// validation path, which says what is wrong if anything is.
//
// A token's depth is the number of containers open around it, 1 inside the
// root object. Four places matter, and keys are compared only there: the
// root's keys (depth 1), the elements of its "messages" and
// "updatedAtLamport" arrays (depth 2) and a message's keys (depth 3). Keys
// come in any order, so a message is judged when it closes; a key twice
// never gets here (the walk gives no hash). The root's "id" is the walk's
// own (root_id).
class chat_rules
{
  public:
    explicit chat_rules(size_t max_id_bytes) : max_id_(max_id_bytes) {}

    bool passed() const
    {
        return ok_;
    }

    // The root object's "id" string, as the walk kept it.
    void root_id(std::string_view id)
    {
        ok_ = ok_ && valid_id(id);
    }

    // A key (unescaped) at `depth`.
    void key(size_t depth, std::string_view k)
    {
        if (!ok_)
            return;
        if (depth == 1)
            root_field_ = root_field(k);
        else if (depth == 3 && list_ == MESSAGE_LIST)
            message_field_ = message_field(k);
    }

    // A value at `depth`: a scalar, or a container as it opens. text: a
    // string's (unescaped; escaped: its bytes had a backslash) or a
    // number's.
    void value(size_t depth, kind k, std::string_view text = {}, bool escaped = false)
    {
        if (!ok_)
            return;
        if (depth == 1)
            root_value(k, text, escaped);
        else if (depth == 2 && list_ == MESSAGE_LIST)
            message_opens(k);
        else if (depth == 2 && list_ == LAMPORT_PAIR)
            lamport_value(k, text);
        else if (depth == 3 && list_ == MESSAGE_LIST)
            message_value(k, text, escaped);
    }

    // The container at `depth` closes.
    void close(size_t depth)
    {
        if (!ok_)
            return;
        if (depth == 3 && list_ == MESSAGE_LIST) {
            ok_ = message_.id &&
                  (message_.deleted || (message_.role && message_.content && message_.time_ok));
        } else if (depth == 2) {
            ok_ = list_ != LAMPORT_PAIR || lamport_n_ == 2;
            list_ = OTHER_LIST;
        }
    }

  private:
    // What the value of the key just read must be.
    enum field : uint8_t {
        ANY,
        STRING_OR_NULL,  // title, model, provider, currentModel
        BOOL_OR_NULL,    // isArchived
        TIME_OR_NULL,    // createdAt, updatedAt, lastModified; a message's timestamp
        LAMPORT_OR_NULL, // updatedAtLamport
        MESSAGES,        // an array (null is refused: the key is there)
        MESSAGE_ID,
        DELETED,
        ROLE,
        CONTENT,
    };

    // Which of the root's arrays the container open at depth 2 is.
    enum list : uint8_t { OTHER_LIST, MESSAGE_LIST, LAMPORT_PAIR };

    struct message {
        bool id = false, deleted = false, role = false, content = false, time_ok = true;
    };

    static field root_field(std::string_view k)
    {
        static constexpr struct {
            std::string_view name;
            field f;
        } known[] = {
            {"title", STRING_OR_NULL},
            {"model", STRING_OR_NULL},
            {"provider", STRING_OR_NULL},
            {"currentModel", STRING_OR_NULL},
            {"isArchived", BOOL_OR_NULL},
            {"createdAt", TIME_OR_NULL},
            {"updatedAt", TIME_OR_NULL},
            {"lastModified", TIME_OR_NULL},
            {"updatedAtLamport", LAMPORT_OR_NULL},
            {"messages", MESSAGES},
        };
        for (const auto &f : known)
            if (k == f.name)
                return f.f;
        return ANY;
    }

    static field message_field(std::string_view k)
    {
        if (k == "id")
            return MESSAGE_ID;
        if (k == "deleted")
            return DELETED;
        if (k == "role")
            return ROLE;
        if (k == "content")
            return CONTENT;
        if (k == "timestamp")
            return TIME_OR_NULL;
        return ANY;
    }

    void root_value(kind k, std::string_view text, bool escaped)
    {
        switch (root_field_) {
        case STRING_OR_NULL:
            ok_ = k == kind::string || k == kind::null;
            break;
        case BOOL_OR_NULL:
            ok_ = k == kind::boolean_true || k == kind::boolean_false || k == kind::null;
            break;
        case TIME_OR_NULL:
            ok_ = k == kind::null || valid_time(k, text, escaped);
            break;
        case LAMPORT_OR_NULL:
            ok_ = k == kind::null || k == kind::array;
            list_ = k == kind::array ? LAMPORT_PAIR : OTHER_LIST;
            lamport_n_ = 0;
            break;
        case MESSAGES:
            ok_ = k == kind::array;
            list_ = MESSAGE_LIST;
            break;
        default: // ANY, and a message's fields (not the root's)
            break;
        }
        root_field_ = ANY;
    }

    // An element of "messages": an object, each judged as it closes.
    void message_opens(kind k)
    {
        ok_ = k == kind::object;
        message_ = {};
        message_field_ = ANY;
    }

    void message_value(kind k, std::string_view text, bool escaped)
    {
        switch (message_field_) {
        case MESSAGE_ID:
            message_.id = k == kind::string && valid_id(text);
            break;
        case DELETED: // {id, deleted: true} is a tombstone: nothing else asked
            message_.deleted = k == kind::boolean_true;
            break;
        case ROLE:
            message_.role = k == kind::string;
            break;
        case CONTENT:
            message_.content = k == kind::string || k == kind::array;
            break;
        case TIME_OR_NULL:
            message_.time_ok = k == kind::null || valid_time(k, text, escaped);
            break;
        default:
            break;
        }
        message_field_ = ANY;
    }

    // [counter, device id]: two elements, checked as they come.
    void lamport_value(kind k, std::string_view text)
    {
        switch (lamport_n_++) {
        case 0:
            ok_ = k == kind::number && valid_counter(text);
            break;
        case 1:
            ok_ = k == kind::string && valid_id(text);
            break;
        default:
            ok_ = false;
        }
    }

    // ps__valid_id: 1 to max_id_bytes bytes, no NUL (json-c's length
    // against strlen).
    bool valid_id(std::string_view id) const
    {
        return !id.empty() && id.size() <= max_id_ && id.find('\0') == id.npos;
    }

    static bool all_digits(std::string_view s)
    {
        for (char c : s)
            if (c < '0' || c > '9')
                return false;
        return !s.empty();
    }

    // ps__valid_counter, for plain digits only: json-c reads them as an
    // int, and 16 of them hold PS_MAX_COUNTER without overflow.
    static bool valid_counter(std::string_view n)
    {
        if (n.size() > 16 || !all_digits(n))
            return false;
        int64_t v = 0;
        for (char c : n)
            v = v * 10 + (c - '0');
        return v <= PS_MAX_COUNTER;
    }

    // ps__time_from_json. A json-c int is always a time, and an optional
    // '-' and up to 18 digits is one (it fits an int64); a fraction or an
    // exponent (a double to json-c) is not certified. A string is asked of
    // ps__time_parse_iso itself, when it has no escape and is no longer
    // than any time it takes.
    static bool valid_time(kind k, std::string_view text, bool escaped)
    {
        if (k == kind::number) {
            std::string_view digits = text.substr(!text.empty() && text[0] == '-' ? 1 : 0);
            return digits.size() <= 18 && all_digits(digits);
        }
        constexpr size_t TIME_MAX = 64;
        if (k != kind::string || escaped || text.size() > TIME_MAX || text.find('\0') != text.npos)
            return false;
        char iso[TIME_MAX + 1];
        std::memcpy(iso, text.data(), text.size());
        iso[text.size()] = '\0';
        int64_t ms;
        return ps__time_parse_iso(iso, &ms);
    }

    size_t max_id_;
    bool ok_ = true;
    field root_field_ = ANY, message_field_ = ANY;
    list list_ = OTHER_LIST;
    unsigned lamport_n_ = 0; // elements of updatedAtLamport so far
    message message_;
};

// One parser's state per thread, reused: simdjson's stage 1 with its
// token list and the unescaped keys' room (stage1.hpp), the padded copy of
// a chat (ps_content_hash) and the walk's stacks.
struct reader {
    ps::stage1 scan;
    std::string padded;
    std::vector<container> open;
    std::vector<seen_key> keys;
};

thread_local reader tls;

// The walk over the tokens of r.scan. buf: the padded chat; rules: told
// every key and value (NULL: none).
class walk
{
  public:
    walk(const uint8_t *buf, size_t len, int max_depth, reader &r, chat_rules *rules)
        : buf_(buf), len_(len), idx_(r.scan.tokens()), n_(r.scan.n()),
          limit_(max_depth > DEPTH_CAP ? DEPTH_CAP : max_depth), scan_(r.scan), open_(r.open),
          keys_(r.keys), arena_(r.scan.unescaped()), rules_(rules)
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
                if (rules_ && !open_.empty())
                    rules_->value(open_.size(), object ? kind::object : kind::array);
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
                if (rules_)
                    rules_->close(open_.size());
                uint64_t h = mix(mix(SEED_OBJECT, c.n), c.acc);
                keys_.resize(c.keys_from);
                s = close(h);
                break;
            }
            case ']': {
                if (s != VALUE_OR_CLOSE && s != AFTER_ARRAY)
                    return false;
                if (rules_)
                    rules_->close(open_.size());
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
                    if (rules_)
                        rules_->key(open_.size(), text);
                    s = COLON;
                    break;
                }
                if ((s != VALUE && s != VALUE_OR_CLOSE) || open_.empty())
                    return false;
                bool is_id = root_id_next(), escaped;
                if (!string_at(at, next, is_id, &text, &escaped))
                    return false;
                if (is_id)
                    *id = text;
                if (rules_) // (text stays until the next unescaping: used at once)
                    rules_->value(open_.size(), kind::string, text, escaped);
                s = value(XXH3_64bits_withSeed(text.data(), text.size(), SEED_STRING));
                break;
            }
            default: {
                if ((s != VALUE && s != VALUE_OR_CLOSE) || open_.empty())
                    return false;
                std::string_view text = scalar_at(at, next);
                uint64_t h;
                kind what;
                if (text == "true" || text == "false") {
                    unsigned char c = text[0] == 't' ? 1 : 0;
                    h = XXH3_64bits_withSeed(&c, 1, SEED_BOOL);
                    what = c ? kind::boolean_true : kind::boolean_false;
                } else if (text == "null") {
                    h = XXH3_64bits_withSeed("", 0, SEED_NULL);
                    what = kind::null;
                } else if (ps__json_is_number(text.data(), text.size())) {
                    h = XXH3_64bits_withSeed(text.data(), text.size(), SEED_NUMBER);
                    what = kind::number;
                } else {
                    return false;
                }
                if (rules_)
                    rules_->value(open_.size(), what, text);
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
    // *escaped (optional): it had a backslash.
    bool string_at(uint32_t at, uint32_t next, bool keep, std::string_view *out,
                   bool *escaped = nullptr)
    {
        std::string_view raw = scalar_at(at, next);
        if (raw.size() < 2 || raw.back() != '"')
            return false;
        raw = raw.substr(1, raw.size() - 2);
        bool backslash = std::memchr(raw.data(), '\\', raw.size()) != nullptr;
        if (escaped)
            *escaped = backslash;
        if (!backslash) {
            *out = raw;
            return true;
        }
        uint8_t *end = scan_.unescape(buf_ + at + 1, arena_);
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
    const ps::stage1 &scan_;
    std::vector<container> &open_;
    std::vector<seen_key> &keys_;
    uint8_t *arena_;
    chat_rules *rules_;
    uint64_t root_ = 0;
};

} // namespace

static_assert(simdjson::SIMDJSON_PADDING <= PS_CONTENT_HASH_PADDING,
              "simdjson reads further past a text than promised");

// The hash of `text`, PS_CONTENT_HASH_PADDING readable bytes after it;
// rules (NULL: none) follow the walk.
static bool hash_padded(const char *text, size_t len, int max_depth, uint64_t *hash, char *id,
                        size_t id_size, chat_rules *rules)
{
    if (max_depth < 1)
        return false;
    reader &r = tls;
    const uint8_t *buf = (const uint8_t *)text;
    bool hashed = false;
    try {
        std::string_view chat_id;
        uint64_t h = 0;
        if (r.scan.scan(buf, len)) {
            walk w(buf, len, max_depth, r, rules);
            hashed = w.run(&h, &chat_id) && !chat_id.empty() && chat_id.size() < id_size &&
                     chat_id.find('\0') == std::string_view::npos;
        }
        if (hashed) {
            if (rules)
                rules->root_id(chat_id);
            std::memcpy(id, chat_id.data(), chat_id.size());
            id[chat_id.size()] = '\0';
            *hash = h ? h : 1;
        }
    } catch (...) { // std::bad_alloc
        hashed = false;
    }
    r.scan.done();
    return hashed;
}

extern "C" bool ps_content_hash_in_place(const char *text, size_t len, int max_depth,
                                         uint64_t *hash, char *id, size_t id_size)
{
    return hash_padded(text, len, max_depth, hash, id, id_size, nullptr);
}

// The padded copy ps_content_hash reads (stage 1 and the unescaping read up
// to SIMDJSON_PADDING bytes past the text); NULL out of memory.
static const char *padded_copy(const char *text, size_t len)
{
    try {
        tls.padded.assign(text, len);
        tls.padded.append(PS_CONTENT_HASH_PADDING, ' ');
    } catch (...) { // std::bad_alloc
        return nullptr;
    }
    return tls.padded.data();
}

// Done with padded_copy's copy: it goes if it was a big one (stage1.hpp).
static void padded_done(size_t len)
{
    if (len > ps::stage1::KEEP_BYTES)
        std::string().swap(tls.padded);
}

extern "C" bool ps_content_hash(const char *text, size_t len, int max_depth, uint64_t *hash,
                                char *id, size_t id_size)
{
    const char *padded = padded_copy(text, len);
    bool hashed = padded && hash_padded(padded, len, max_depth, hash, id, id_size, nullptr);
    padded_done(len);
    return hashed;
}

extern "C" bool ps_content_hash_in_place_checked(const char *text, size_t len, int max_depth,
                                                 size_t max_id_bytes, uint64_t *hash, char *id,
                                                 size_t id_size, bool *valid_chat)
{
    chat_rules rules(max_id_bytes);
    bool hashed = hash_padded(text, len, max_depth, hash, id, id_size, &rules);
    *valid_chat = hashed && rules.passed();
    return hashed;
}

extern "C" bool ps_content_hash_checked(const char *text, size_t len, int max_depth,
                                        size_t max_id_bytes, uint64_t *hash, char *id,
                                        size_t id_size, bool *valid_chat)
{
    const char *padded = padded_copy(text, len);
    *valid_chat = false;
    bool hashed = padded && ps_content_hash_in_place_checked(padded, len, max_depth, max_id_bytes,
                                                             hash, id, id_size, valid_chat);
    padded_done(len);
    return hashed;
}
