/*
 * The chat-by-chat splitter; see chat_splitter.h. A state machine that
 * survives any cut between two feeds: its whole state is the struct. With
 * SSE2 a chat (an object) is crossed 64 bytes at a time on bit masks
 * (container_blocks), and only its last bytes of a feed one by one; the
 * bytes outside the chats (the envelope, between chats) are few. Where the
 * processor has AVX2, PCLMUL and POPCNT the masks are made with them (the
 * reference history alone: 12.3 -> 6.6 ms; both paths must agree, which
 * test_chat_splitter checks).
 */
#include "core/chat_splitter.h"
#include "core/json_parse.h"

#include <string.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

enum { OUTSIDE, BETWEEN, IN_CHAT };              /* where */
enum { NEXT_FIRST, NEXT_VALUE, NEXT_SEPARATOR }; /* after '[', after ',', after a value */
enum { KIND_CONTAINER, KIND_STRING, KIND_SCALAR };
enum { KEY_NONE, KEY_STRING, KEY_COLON }; /* the last tokens at depth 1 */

void ps__chat_splitter_init(ps_chat_splitter *s, const ps_chat_splitter_sink *sink)
{
    memset(s, 0, sizeof *s);
    s->sink = *sink;
#if defined(__x86_64__) && defined(__GNUC__) && defined(__SSE2__)
    s->avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("pclmul") &&
              __builtin_cpu_supports("popcnt");
#endif
}

void ps__chat_splitter_init_baseline(ps_chat_splitter *s, const ps_chat_splitter_sink *sink)
{
    ps__chat_splitter_init(s, sink);
    s->avx2 = false;
}

/* Index of the next '"' or '\\' in p[i, n), or n. */
static inline size_t string_stop(const unsigned char *p, size_t i, size_t n)
{
#if defined(__SSE2__)
    const __m128i quote = _mm_set1_epi8('"'), backslash = _mm_set1_epi8('\\');
    for (; i + 16 <= n; i += 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(p + i));
        unsigned m = (unsigned)_mm_movemask_epi8(
            _mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, backslash)));
        if (m)
            return i + (unsigned)__builtin_ctz(m);
    }
#endif
    while (i < n && p[i] != '"' && p[i] != '\\')
        i++;
    return i;
}

#if defined(__SSE2__)
/* Bit k set where p[k] == c, for p[0, 64). */
static inline uint64_t byte_mask64(const unsigned char *p, char c)
{
    const __m128i want = _mm_set1_epi8(c);
    uint64_t m = 0;
    for (int k = 0; k < 4; k++) {
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(p + 16 * k));
        m |= (uint64_t)(unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(v, want)) << (16 * k);
    }
    return m;
}

/* The bytes of a 64-byte block that a backslash escapes; *carry: the
 * block's first byte is escaped, set for the next block. The same
 * branchless form of simdjson's find_escaped as json_precheck.c's. */
static inline uint64_t escaped_bytes(uint64_t backslash, uint64_t *carry)
{
    const uint64_t even_bits = 0x5555555555555555ULL;
    backslash &= ~*carry;
    uint64_t follows_escape = backslash << 1 | *carry;
    uint64_t odd_starts = backslash & ~even_bits & ~follows_escape;
    uint64_t sum;
    *carry = __builtin_add_overflow(odd_starts, backslash, &sum);
    return (even_bits ^ (sum << 1)) & follows_escape;
}

/* Long string text (message contents, dense in escapes) 64 bytes at a
 * time with no branch per escape: the index just past the closing quote,
 * or where fewer than 64 bytes are left (*escaped: that byte is escaped). */
static size_t string_blocks(const unsigned char *p, size_t i, size_t n, bool *found, bool *escaped)
{
    uint64_t carry = 0;
    for (; i + 64 <= n; i += 64) {
        uint64_t by_backslash = escaped_bytes(byte_mask64(p + i, '\\'), &carry);
        uint64_t closing = byte_mask64(p + i, '"') & ~by_backslash;
        if (closing) {
            *found = true;
            return i + (unsigned)__builtin_ctzll(closing) + 1;
        }
    }
    *escaped = carry != 0;
    return i;
}

/* The masks of a 64-byte block a chat is crossed on (bit k: byte k). */
typedef struct block_bits {
    uint64_t backslash, quote, open, close;
} block_bits;

/* One load per 16 bytes for the four masks; '{' and '[' (and '}' and ']')
 * differ only in bit 0x20, so one compare finds both. */
static inline block_bits block_bits_of(const unsigned char *p)
{
    const __m128i backslash = _mm_set1_epi8('\\'), quote = _mm_set1_epi8('"');
    const __m128i low = _mm_set1_epi8(0x20), open = _mm_set1_epi8('{'), close = _mm_set1_epi8('}');
    block_bits b = {0, 0, 0, 0};
#define PS_CHUNK(k)                                                                                \
    do {                                                                                           \
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(p + 16 * (k)));                \
        __m128i folded = _mm_or_si128(v, low);                                                     \
        b.backslash |= (uint64_t)(unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(v, backslash))         \
                       << (16 * (k));                                                              \
        b.quote |= (uint64_t)(unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(v, quote)) << (16 * (k));  \
        b.open |= (uint64_t)(unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(folded, open))              \
                  << (16 * (k));                                                                   \
        b.close |= (uint64_t)(unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(folded, close))            \
                   << (16 * (k));                                                                  \
    } while (0)
    PS_CHUNK(0);
    PS_CHUNK(1);
    PS_CHUNK(2);
    PS_CHUNK(3);
#undef PS_CHUNK
    return b;
}

/* Bit k set where an odd number of bits at or below k are set in x (the
 * bytes inside a string, from its quotes: simdjson's prefix XOR, without
 * carry-less multiplication, which baseline x86-64 lacks). */
static inline uint64_t prefix_xor(uint64_t x)
{
    x ^= x << 1;
    x ^= x << 2;
    x ^= x << 4;
    x ^= x << 8;
    x ^= x << 16;
    x ^= x << 32;
    return x;
}

/* Set bits of x (SWAR: baseline x86-64 has no popcnt instruction, and
 * __builtin_popcountll becomes a library call). */
static inline int bit_count(uint64_t x)
{
    x -= (x >> 1) & 0x5555555555555555ULL;
    x = (x & 0x3333333333333333ULL) + ((x >> 2) & 0x3333333333333333ULL);
    x = (x + (x >> 4)) & 0x0F0F0F0F0F0F0F0FULL;
    return (int)((x * 0x0101010101010101ULL) >> 56);
}

/* The whole state of container_blocks between two blocks. */
typedef struct block_walk {
    uint64_t carry;  /* the next block's first byte is escaped */
    uint64_t inside; /* all ones when the next block begins in a string */
    int depth;
} block_walk;

/*
 * One 64-byte block of a container chat, its masks given: the quotes no
 * backslash escapes, the bytes inside strings (prefix XOR of those
 * quotes), and the brackets outside strings. A block whose closing
 * brackets cannot bring the depth back to the array's is crossed by
 * counting; only the last block of a chat is walked bracket by bracket.
 * Returns the index in the block just past the chat's closing bracket
 * (1 to 64), or 0 when the chat goes on. Inlined into each path with its
 * own bit instructions (`prefix`, `count`; `cheap_count`: popcnt).
 */
static inline __attribute__((always_inline)) unsigned
container_block(block_walk *w, block_bits bits, uint64_t (*prefix)(uint64_t),
                int (*count)(uint64_t), bool cheap_count)
{
    uint64_t escaped = escaped_bytes(bits.backslash, &w->carry);
    uint64_t in_string = prefix(bits.quote & ~escaped) ^ w->inside;
    w->inside = (uint64_t)((int64_t)in_string >> 63);
    uint64_t opens = bits.open & ~in_string;
    uint64_t closes = bits.close & ~in_string;
    /* With popcnt, no test for a block without brackets: one in five
     * blocks of a chat has some, in no pattern, and the branch
     * mispredicted cost more than counting zero bits (alone over the
     * reference history: 7.6 -> 6.6 ms); the counting without popcnt
     * costs more than the branch. The next one is taken once a chat. */
    if (!cheap_count && !(opens | closes))
        return 0;
    int closing = count(closes);
    if (__builtin_expect(w->depth - closing > 2, 1)) {
        w->depth += count(opens) - closing;
        return 0;
    }
    for (uint64_t b = opens | closes; b; b &= b - 1) {
        unsigned k = (unsigned)__builtin_ctzll(b);
        if (opens >> k & 1)
            w->depth++;
        else if (--w->depth == 2)
            return k + 1;
    }
    return 0;
}

/*
 * A container chat 64 bytes at a time on bit masks, as simdjson's stage 1
 * does (container_block). Returns the index just past the chat's closing
 * bracket (*done) or where fewer than 64 bytes are left, with the state
 * (depth, in a string, the next byte escaped) as the byte-at-a-time loop
 * keeps it.
 */
static inline __attribute__((always_inline)) size_t
container_blocks_with(ps_chat_splitter *s, const unsigned char *p, size_t i, size_t n, bool *done,
                      block_bits (*bits)(const unsigned char *), uint64_t (*prefix)(uint64_t),
                      int (*count)(uint64_t), bool cheap_count)
{
    block_walk w = {.carry = s->escaped, .inside = s->in_string ? ~0ULL : 0, .depth = s->depth};
    for (; i + 64 <= n; i += 64) {
        unsigned end = container_block(&w, bits(p + i), prefix, count, cheap_count);
        if (end) {
            *done = true;
            s->depth = w.depth;
            s->in_string = s->escaped = false;
            return i + end;
        }
    }
    s->depth = w.depth;
    s->in_string = w.inside != 0;
    s->escaped = s->in_string && w.carry;
    return i;
}

static size_t container_blocks_sse2(ps_chat_splitter *s, const unsigned char *p, size_t i, size_t n,
                                    bool *done)
{
    return container_blocks_with(s, p, i, n, done, block_bits_of, prefix_xor, bit_count, false);
}

#if defined(__x86_64__) && defined(__GNUC__)
#define PS_HAVE_AVX2_PATH 1
#include <immintrin.h>

/* The same masks 32 bytes at a time, with carry-less multiplication for
 * the prefix XOR and popcnt for the counts: for processors with AVX2,
 * PCLMUL and POPCNT, chosen at run time (the build targets baseline
 * x86-64). Alone over the reference history in 16 KiB feeds: see
 * docs/performance.md ("ingest: ..."). */
#define PS_AVX2_TARGET __attribute__((target("avx2,pclmul,popcnt")))

PS_AVX2_TARGET static inline uint64_t eq32(__m256i v, __m256i c)
{
    return (uint64_t)(uint32_t)_mm256_movemask_epi8(_mm256_cmpeq_epi8(v, c));
}

PS_AVX2_TARGET static inline block_bits block_bits_avx2(const unsigned char *p)
{
    const __m256i backslash = _mm256_set1_epi8('\\'), quote = _mm256_set1_epi8('"');
    const __m256i low = _mm256_set1_epi8(0x20), open = _mm256_set1_epi8('{');
    const __m256i close = _mm256_set1_epi8('}');
    __m256i lo = _mm256_loadu_si256((const __m256i *)(const void *)p);
    __m256i hi = _mm256_loadu_si256((const __m256i *)(const void *)(p + 32));
    __m256i lo_folded = _mm256_or_si256(lo, low), hi_folded = _mm256_or_si256(hi, low);
    return (block_bits){
        .backslash = eq32(lo, backslash) | eq32(hi, backslash) << 32,
        .quote = eq32(lo, quote) | eq32(hi, quote) << 32,
        .open = eq32(lo_folded, open) | eq32(hi_folded, open) << 32,
        .close = eq32(lo_folded, close) | eq32(hi_folded, close) << 32,
    };
}

/* simdjson's prefix XOR: one carry-less multiplication by all ones. */
PS_AVX2_TARGET static inline uint64_t prefix_xor_clmul(uint64_t x)
{
    __m128i all_ones = _mm_set1_epi8((char)0xFF);
    return (uint64_t)_mm_cvtsi128_si64(
        _mm_clmulepi64_si128(_mm_set_epi64x(0, (long long)x), all_ones, 0));
}

PS_AVX2_TARGET static inline int bit_count_popcnt(uint64_t x)
{
    return (int)_mm_popcnt_u64(x);
}

PS_AVX2_TARGET static size_t container_blocks_avx2(ps_chat_splitter *s, const unsigned char *p,
                                                   size_t i, size_t n, bool *done)
{
    return container_blocks_with(s, p, i, n, done, block_bits_avx2, prefix_xor_clmul,
                                 bit_count_popcnt, true);
}
#endif

static size_t container_blocks(ps_chat_splitter *s, const unsigned char *p, size_t i, size_t n,
                               bool *done)
{
#ifdef PS_HAVE_AVX2_PATH
    if (s->avx2)
        return container_blocks_avx2(s, p, i, n, done);
#endif
    return container_blocks_sse2(s, p, i, n, done);
}
#endif

/* Crosses string text from i: the index just past the closing quote (and
 * in_string cleared), or n when the string goes on in the next feed. */
static size_t through_string(ps_chat_splitter *s, const unsigned char *p, size_t i, size_t n)
{
    while (i < n) {
        if (s->escaped) { /* the byte after a backslash never ends the string */
            s->escaped = false;
            i++;
            continue;
        }
#if defined(__SSE2__)
        /* a short string (a key, an id) ends in its first 16 bytes */
        size_t first = string_stop(p, i, i + 16 <= n ? i + 16 : n);
        if (first < n && p[first] == '"') {
            s->in_string = false;
            return first + 1;
        }
        bool found = false;
        i = string_blocks(p, i, n, &found, &s->escaped);
        if (found) {
            s->in_string = false;
            return i;
        }
        if (s->escaped)
            continue;
#endif
        i = string_stop(p, i, n);
        if (i == n)
            break;
        if (p[i] == '\\') {
            s->escaped = true;
            i++;
            continue;
        }
        s->in_string = false;
        return i + 1;
    }
    return n;
}

/* A byte that can continue a number or a literal (true, false, null, and
 * the wrong words the pre-check will refuse). */
static inline bool scalar_byte(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '-' ||
           c == '+' || c == '.';
}

static inline bool json_space(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* The depth-1 key just read is "chats" as json-c reads it (escapes too). */
static bool key_is_chats(const ps_chat_splitter *s)
{
    if (s->key_long)
        return false;
    if (!s->key_escaped)
        return s->key_len == 5 && memcmp(s->key, "chats", 5) == 0;
    char quoted[PS_SPLITTER_KEY_MAX + 2];
    quoted[0] = '"';
    memcpy(quoted + 1, s->key, s->key_len);
    quoted[s->key_len + 1] = '"';
    json_object *key = NULL;
    ps_error err;
    if (ps__json_parse_trusted(quoted, s->key_len + 2, &key, &err) != PS_OK)
        return false; /* not a valid string: the envelope's parse says so */
    bool chats = json_object_is_type(key, json_type_string) &&
                 json_object_get_string_len(key) == 5 &&
                 memcmp(json_object_get_string(key), "chats", 5) == 0;
    json_object_put(key);
    return chats;
}

static void key_add(ps_chat_splitter *s, const unsigned char *p, size_t n)
{
    if (s->key_long || s->key_len + n > PS_SPLITTER_KEY_MAX) {
        s->key_long = true;
        return;
    }
    memcpy(s->key + s->key_len, p, n);
    s->key_len += n;
}

static ps_code fail(ps_chat_splitter *s, ps_code rc)
{
    s->failed = true;
    s->failed_rc = rc;
    return rc;
}

static ps_code malformed(ps_chat_splitter *s, size_t i, const char *what, ps_error *err)
{
    ps_error_set(err, PS_ERR_MALFORMED, -1, "", "malformed JSON: %s at byte %llu", what,
                 (unsigned long long)(s->pos + i));
    return fail(s, PS_ERR_MALFORMED);
}

/* One byte outside "chats" (not in a string); true when it opens "chats". */
static bool outside_byte(ps_chat_splitter *s, unsigned char c)
{
    switch (c) {
    case '"':
        s->in_string = true;
        s->key_string = s->depth == 1;
        if (s->key_string) {
            s->key_len = 0;
            s->key_long = s->key_escaped = false;
        }
        return false;
    case '[':
        if (s->depth == 1 && s->key_state == KEY_COLON && key_is_chats(s)) {
            s->depth = 2;
            return true;
        }
        /* fall through */
    case '{':
        s->depth++;
        break;
    case '}':
    case ']':
        s->depth--;
        break;
    case ':':
        if (s->depth == 1)
            s->key_state = s->key_state == KEY_STRING ? KEY_COLON : KEY_NONE;
        return false;
    default:
        if (json_space(c))
            return false;
    }
    if (s->depth <= 2) /* a value at depth 1 began or ended: no key pending */
        s->key_state = KEY_NONE;
    return false;
}

ps_code ps__chat_splitter_feed(ps_chat_splitter *s, const char *text, size_t n, ps_error *err)
{
    if (s->failed)
        return s->failed_rc;
    const unsigned char *p = (const unsigned char *)text;
    const ps_chat_splitter_sink *k = &s->sink;
    size_t i = 0, run = 0; /* run: the first byte not yet handed on */
    ps_code rc = PS_OK;
    while (i < n) {
        if (s->where == OUTSIDE) {
            if (s->in_string) {
                size_t from = i;
                i = through_string(s, p, i, n);
                if (s->key_string) {
                    key_add(s, p + from, i - from - !s->in_string);
                    if (memchr(p + from, '\\', i - from))
                        s->key_escaped = true;
                    if (!s->in_string)
                        s->key_state = KEY_STRING;
                }
                continue;
            }
            if (!outside_byte(s, p[i++]))
                continue;
            /* "chats":[ — the envelope keeps the brackets, the chats go apart */
            if ((rc = k->envelope(k->cls, text + run, i - run)) != PS_OK ||
                (rc = k->chats_start(k->cls)) != PS_OK)
                return fail(s, rc);
            s->where = BETWEEN;
            s->next = NEXT_FIRST;
            run = i;
            continue;
        }
        if (s->where == BETWEEN) {
            unsigned char c = p[i];
            if (json_space(c)) {
                run = ++i;
                continue;
            }
            if (c == ']') {
                if (s->next == NEXT_VALUE)
                    return malformed(s, i, "a comma before ']'", err);
                s->where = OUTSIDE;
                s->depth = 1;
                s->key_state = KEY_NONE;
                run = i++; /* the ']' is the envelope's */
                continue;
            }
            if (c == ',') {
                if (s->next != NEXT_SEPARATOR)
                    return malformed(s, i, "unexpected ','", err);
                s->next = NEXT_VALUE;
                run = ++i;
                continue;
            }
            if (s->next == NEXT_SEPARATOR)
                return malformed(s, i, "expected ',' or ']' after a chat", err);
            s->chat_start = s->pos + i;
            s->where = IN_CHAT;
            run = i;
            if (c == '{' || c == '[') {
                s->kind = KIND_CONTAINER;
                s->depth = 3;
                i++;
            } else if (c == '"') {
                s->kind = KIND_STRING;
                s->in_string = true;
                i++;
            } else if (scalar_byte(c)) {
                s->kind = KIND_SCALAR;
            } else {
                return malformed(s, i, "unexpected character", err);
            }
            continue;
        }
        /* IN_CHAT: on to the end of its value */
        bool done = false;
        if (s->kind == KIND_STRING) {
            i = through_string(s, p, i, n);
            done = !s->in_string;
        } else if (s->kind == KIND_SCALAR) {
            while (i < n && scalar_byte(p[i]))
                i++;
            done = i < n;
        } else {
#if defined(__SSE2__)
            i = container_blocks(s, p, i, n, &done);
#endif
            while (i < n && !done) {
                if (s->in_string) {
                    i = through_string(s, p, i, n);
                    continue;
                }
                unsigned char c = p[i++];
                if (c == '"')
                    s->in_string = true;
                else if (c == '{' || c == '[')
                    s->depth++;
                else if ((c == '}' || c == ']') && --s->depth == 2)
                    done = true;
            }
        }
        if (!done)
            break;
        if ((rc = k->chat_part(k->cls, text + run, i - run)) != PS_OK ||
            (rc = k->chat_end(k->cls, s->chat_start)) != PS_OK)
            return fail(s, rc);
        s->depth = 2;
        s->where = BETWEEN;
        s->next = NEXT_SEPARATOR;
        run = i;
    }
    if (run < n && s->where != BETWEEN) {
        rc = s->where == OUTSIDE ? k->envelope(k->cls, text + run, n - run)
                                 : k->chat_part(k->cls, text + run, n - run);
        if (rc != PS_OK)
            return fail(s, rc);
    }
    s->pos += n;
    return PS_OK;
}

ps_code ps__chat_splitter_finish(ps_chat_splitter *s, ps_error *err)
{
    if (s->failed)
        return s->failed_rc;
    if (s->where != OUTSIDE)
        return malformed(s, 0, "the body ends inside \"chats\"", err);
    return PS_OK;
}
