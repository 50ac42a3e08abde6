// A legacy chat's json-c tree from simdjson's stage 1; see chat_tree.h.
//
// Stage 1 (the runtime-chosen SIMD kernel, as content_hash.cpp uses it)
// lists where every token starts. The walk below makes each value with
// json-c's constructors in the order json-c's tokener would and adds it to
// the container open around it, so the tree is the tokener's: what differs
// is only how the bytes are read. The text is trusted (pre-checked or
// content-hashed), so the walk follows the tokens without re-checking the
// grammar, but it never trusts them blindly: a token out of place ends it
// with false, and the caller's json-c parse has the last word.
//
// json-c's tokener, for the record (0.16, strict): a number with '.', 'e'
// or 'E' is a double that keeps its own text; any other is an int64 (one
// above INT64_MAX a uint64, one out of range clamped: not built here, over
// 18 digits); strings are unescaped with their length (an escaped NUL
// kept); a key twice keeps the last value at the first key's place; a key
// is cut at an escaped NUL. tests/unit/test_chat_tree.c holds the two
// readings side by side.
#include "server/chat_tree.h"
#include "server/content_hash.h"
#include "server/stage1.hpp"
extern "C" {
#include "core/json_parse.h"
}

#include <simdjson.h>

#include <cstdlib>
#include <cstring>
#include <locale.h>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace
{

// The keys every chat and message of the Polyglot app (and the
// benchmark's) repeat: added as json-c's constant keys, never copied or
// freed (json-c's tokener copies each key twice and frees one copy: its
// strdup was 6 % of a first upload's CPU).
constexpr std::string_view STATIC_KEYS[] = {
    "id",       "title",     "createdAt",        "updatedAt",    "lastModified", "model",
    "provider", "messages",  "updatedAtLamport", "currentModel", "isArchived",   "role",
    "content",  "timestamp", "isPrivate",        "deleted",      "usedRAG",      "isThinking",
    "type",     "text",
};

// The static copy of key k (a literal: NUL-terminated), or nullptr.
const char *static_key(std::string_view k)
{
    for (std::string_view s : STATIC_KEYS)
        if (k == s)
            return s.data();
    return nullptr;
}

bool is_space(uint8_t c)
{
    return c == ' ' || c == '\n' || c == '\r' || c == '\t';
}

// What a string's escapes are, from its bytes between the quotes.
struct escapes {
    bool surrogate = false; // a \u of a surrogate (D800-DFFF)
    bool as_json_c = true;  // each one is what json-c writes for it
};

bool is_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

// json-c escapes '"', '\\' and control characters only (\b \f \n \r \t
// by name, the others \u00xx in lower case), so a \/ or a \u of anything
// else is another spelling of the same string. From backslash to
// backslash (memchr): a message's text is long and has a few. first: the
// string's first backslash, found already.
escapes read_escapes(std::string_view raw, const char *first)
{
    escapes e;
    const char *p = first, *end = raw.data() + raw.size();
    while ((p = (const char *)std::memchr(p, '\\', (size_t)(end - p))) != nullptr && p + 1 < end) {
        char c = p[1];
        if (c == 'u' && end - p >= 6) {
            if ((p[2] == 'd' || p[2] == 'D') && is_hex(p[3]) && p[3] >= '8')
                e.surrogate = true;
            int v = p[2] == '0' && p[3] == '0' && (p[4] == '0' || p[4] == '1') &&
                            ((p[5] >= '0' && p[5] <= '9') || (p[5] >= 'a' && p[5] <= 'f'))
                        ? (p[4] - '0') * 16 + (p[5] <= '9' ? p[5] - '0' : p[5] - 'a' + 10)
                        : -1;
            if (v < 0 || v == '\b' || v == '\f' || v == '\n' || v == '\r' || v == '\t')
                e.as_json_c = false;
            p += 6;
            continue;
        }
        if (c != '"' && c != '\\' && c != 'b' && c != 'f' && c != 'n' && c != 'r' && c != 't')
            e.as_json_c = false;
        p += 2;
    }
    return e;
}

// The C locale, for strtod as json-c's tokener reads a double.
locale_t c_locale()
{
    static locale_t loc = newlocale(LC_ALL_MASK, "C", (locale_t)0);
    return loc;
}

// An open container: the object or array, whether a key is next (objects),
// members added so far (to see a key twice: json-c's count stays), and
// whether it is the root's "messages" array.
struct open_container {
    json_object *obj;
    bool object, key_next, messages;
    size_t added;
};

// One builder's state per thread, reused: stage 1 with its token list and
// the unescaped strings' room (stage1.hpp), the key of the value to come,
// a double's text, the stack.
struct builder_state {
    ps::stage1 scan;
    std::string key, number;
    std::vector<open_container> open;
};

thread_local builder_state tls;

class builder
{
  public:
    builder(const uint8_t *buf, size_t len, builder_state &st)
        : buf_(buf), len_(len), scan_(st.scan), st_(st)
    {
        st_.open.clear();
    }

    ~builder()
    {
        json_object_put(root_);
    }

    // The tree, or nullptr.
    json_object *run()
    {
        const uint32_t *idx = scan_.tokens();
        uint32_t n = scan_.n();
        for (uint32_t k = 0; k < n; k++) {
            uint32_t at = idx[k], next = k + 1 < n ? idx[k + 1] : (uint32_t)len_;
            if (!token(at, next))
                return nullptr;
            if (message_open_) // (the message's closing brace is not asked)
                compact_ = compact_ && token_end(at, next) == next;
            if (!st_.open.empty() || !root_)
                continue;
            if (k + 1 < n)
                return nullptr; // something after the root
            json_object *tree = root_;
            root_ = nullptr;
            return tree;
        }
        return nullptr; // the root never closed
    }

  private:
    bool token(uint32_t at, uint32_t next)
    {
        uint8_t c = buf_[at];
        switch (c) {
        case '{':
        case '[':
            return open(c == '{', at);
        case '}':
        case ']':
            return close(c == '}', at);
        case ',':
            if (st_.open.empty())
                return false;
            st_.open.back().key_next = st_.open.back().object;
            return true;
        case ':':
            return !st_.open.empty() && st_.open.back().object;
        case '"':
            if (!st_.open.empty() && st_.open.back().object && st_.open.back().key_next)
                return key(at, next);
            return string(at, next);
        default:
            return scalar(at, next);
        }
    }

    // Where the token at `at` ends: after its closing quote (a string),
    // its last byte (a scalar), or its one byte.
    uint32_t token_end(uint32_t at, uint32_t next) const
    {
        uint8_t c = buf_[at];
        if (c == '{' || c == '[' || c == '}' || c == ']' || c == ',' || c == ':')
            return at + 1;
        while (next > at && is_space(buf_[next - 1]))
            next--;
        return next;
    }

    bool open(bool object, uint32_t at)
    {
        if (st_.open.size() >= PS_JSON_MAX_DEPTH)
            return false; // deeper than a trusted text is: json-c decides
        json_object *obj = object ? json_object_new_object() : json_object_new_array();
        if (!obj)
            return false;
        bool messages = false;
        if (st_.open.empty()) {
            if (root_ || !object) {
                json_object_put(obj);
                return false;
            }
            root_ = obj;
        } else {
            const open_container &parent = st_.open.back();
            if (object && parent.messages) { // a message: its bytes may be its text
                message_open_ = true;
                message_depth_ = st_.open.size() + 1;
                message_at_ = at;
                compact_ = true;
            }
            messages = !object && st_.open.size() == 1 && st_.key == "messages";
            if (!add(obj))
                return false;
        }
        st_.open.push_back({obj, object, object, messages, 0});
        return true;
    }

    bool close(bool object, uint32_t at)
    {
        if (st_.open.empty() || st_.open.back().object != object ||
            (object && st_.open.back().key_next && st_.open.back().added))
            return false;
        if (message_open_ && st_.open.size() == message_depth_) {
            message_open_ = false;
            if (compact_ &&
                !ps__json_keep_text(st_.open.back().obj, (const char *)buf_ + message_at_,
                                    at + 1 - message_at_))
                return false;
        }
        st_.open.pop_back();
        return true;
    }

    // The string whose opening quote is at `at`, unescaped (by simdjson)
    // when it has a backslash; *raw: its bytes between the quotes.
    bool read_string(uint32_t at, uint32_t next, std::string_view *raw, std::string_view *out)
    {
        uint32_t end = token_end(at, next);
        if (end < at + 2 || buf_[end - 1] != '"')
            return false;
        *raw = std::string_view((const char *)buf_ + at + 1, end - at - 2);
        const char *backslash = (const char *)std::memchr(raw->data(), '\\', raw->size());
        if (backslash == nullptr) {
            *out = *raw;
            return true;
        }
        escapes e = read_escapes(*raw, backslash);
        if (e.surrogate)
            return false;
        if (message_open_)
            compact_ = compact_ && e.as_json_c;
        uint8_t *dst = scan_.unescaped();
        uint8_t *stop = scan_.unescape(buf_ + at + 1, dst);
        if (stop == nullptr)
            return false;
        *out = std::string_view((const char *)dst, (size_t)(stop - dst));
        return true;
    }

    bool key(uint32_t at, uint32_t next)
    {
        std::string_view raw, k;
        if (!read_string(at, next, &raw, &k) || k.find('\0') != k.npos)
            return false;
        st_.key.assign(k.data(), k.size());
        st_.open.back().key_next = false;
        return true;
    }

    bool string(uint32_t at, uint32_t next)
    {
        std::string_view raw, s;
        if (!read_string(at, next, &raw, &s))
            return false;
        json_object *v = json_object_new_string_len(s.data(), (int)s.size());
        return v && add(v);
    }

    bool scalar(uint32_t at, uint32_t next)
    {
        std::string_view text((const char *)buf_ + at, token_end(at, next) - at);
        if (text == "true" || text == "false") {
            json_object *v = json_object_new_boolean(text[0] == 't');
            return v && add(v);
        }
        if (text == "null")
            return add(nullptr);
        if (text.empty() || (text[0] != '-' && (text[0] < '0' || text[0] > '9')))
            return false;
        if (text.find_first_of(".eE") != text.npos)
            return number_double(text);
        return number_int(text);
    }

    // An integer, as json-c reads one that fits: -0 is 0 (so it is written
    // "0", not as sent).
    bool number_int(std::string_view text)
    {
        bool negative = text[0] == '-';
        std::string_view digits = text.substr(negative ? 1 : 0);
        if (digits.empty() || digits.size() > 18)
            return false;
        int64_t v = 0;
        for (char d : digits) {
            if (d < '0' || d > '9')
                return false;
            v = v * 10 + (d - '0');
        }
        if (message_open_ && negative && v == 0)
            compact_ = false;
        json_object *o = json_object_new_int64(negative ? -v : v);
        return o && add(o);
    }

    // A double, with its own text kept (json-c writes it back as sent).
    bool number_double(std::string_view text)
    {
        st_.number.assign(text.data(), text.size());
        locale_t c = c_locale();
        if (c == (locale_t)0)
            return false; // no C locale to read it in: json-c reads it
        char *end = nullptr;
        double d = strtod_l(st_.number.c_str(), &end, c);
        if (end != st_.number.c_str() + st_.number.size())
            return false;
        json_object *o = json_object_new_double_s(d, st_.number.c_str());
        return o && add(o);
    }

    // Adds v (owned; nullptr is null) to the open container, under the key
    // read last in an object.
    bool add(json_object *v)
    {
        if (st_.open.empty()) {
            json_object_put(v);
            return false;
        }
        open_container &c = st_.open.back();
        int rc;
        if (c.object && c.key_next) { // a value with no key
            json_object_put(v);
            return false;
        }
        if (c.object) {
            const char *fixed = static_key(st_.key);
            rc = fixed ? json_object_object_add_ex(c.obj, fixed, v, JSON_C_OBJECT_KEY_IS_CONSTANT)
                       : json_object_object_add(c.obj, st_.key.c_str(), v);
            // a key twice replaces the first value: json-c's count stays
            if (rc == 0 && (size_t)json_object_object_length(c.obj) != c.added + 1)
                return false;
        } else {
            rc = json_object_array_add(c.obj, v);
        }
        if (rc != 0) {
            json_object_put(v);
            return false;
        }
        c.added++;
        return true;
    }

    const uint8_t *buf_;
    size_t len_;
    ps::stage1 &scan_;
    builder_state &st_;
    json_object *root_ = nullptr;
    // the message being read (an object of the root's "messages"): its
    // first byte, its depth, whether its bytes so far are compact
    bool message_open_ = false, compact_ = false;
    size_t message_depth_ = 0;
    uint32_t message_at_ = 0;
};

} // namespace

static_assert(simdjson::SIMDJSON_PADDING <= PS_CONTENT_HASH_PADDING,
              "simdjson reads further past a text than promised");

extern "C" bool ps_chat_tree_build(const char *text, size_t len, json_object **out)
{
    builder_state &st = tls;
    const uint8_t *buf = (const uint8_t *)text;
    json_object *tree = nullptr;
    try {
        if (st.scan.scan(buf, len))
            tree = builder(buf, len, st).run();
    } catch (...) { // std::bad_alloc (the builder put what it made)
        tree = nullptr;
    }
    st.scan.done();
    if (!tree)
        return false;
    *out = tree;
    return true;
}
