/*
 * The structure check; see json_structure.h. As simdjson's stage 1 does,
 * the text is taken 64 bytes at a time as bit masks (bit k: byte k): the
 * quotes no backslash escapes, the bytes inside strings (a prefix XOR of
 * those quotes), and outside strings the brackets, commas, colons and the
 * first byte of each scalar. Only those tokens are walked, through a state
 * table with a stack of open containers (a bit each: object or array);
 * string text, nearly all of a chat's bytes, is never looked at byte by
 * byte (a byte loop stopping at each escape cost as much as the whole
 * pre-check it was meant to spare). The masks are made 32 bytes at a time
 * where the processor has AVX2 (28 -> 23 ms on the 64 MB of the reference
 * history's chats), else 16 (SSE2). Why not a library's validation: the
 * measured reason is in docs/performance.md ("tidy: the structure check
 * against the libraries").
 */
#include "core/json_structure.h"

#include <stdint.h>
#include <string.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

/* What may come next: the states of the walk. AFTER_OBJECT and
 * AFTER_ARRAY follow a value in an object and in an array. */
enum {
    VALUE,
    VALUE_OR_CLOSE, /* after '[' */
    KEY,
    KEY_OR_CLOSE, /* after '{' */
    COLON,
    AFTER_OBJECT,
    AFTER_ARRAY,
    DONE,
    WRONG,
    /* actions, past the states */
    A_VALUE_DONE,
    A_OPEN_OBJECT,
    A_OPEN_ARRAY,
    A_CLOSE,
};

/* Token classes; a scalar is 0, the class table's default. */
enum {
    C_SCALAR,
    C_OPEN_OBJECT,
    C_OPEN_ARRAY,
    C_CLOSE_OBJECT,
    C_CLOSE_ARRAY,
    C_COMMA,
    C_COLON,
    C_STRING,
    C_COUNT
};

/* The walk, a table: what a token of each class does in each state. A
 * closing bracket is only allowed in a state of its own kind of container,
 * so the table also matches brackets. Columns: scalar, '{', '[', '}', ']',
 * ',', ':', string. */
#define W WRONG
static const unsigned char STEP[DONE + 1][C_COUNT] = {
    [VALUE] = {A_VALUE_DONE, A_OPEN_OBJECT, A_OPEN_ARRAY, W, W, W, W, A_VALUE_DONE},
    [VALUE_OR_CLOSE] = {A_VALUE_DONE, A_OPEN_OBJECT, A_OPEN_ARRAY, W, A_CLOSE, W, W, A_VALUE_DONE},
    [KEY] = {W, W, W, W, W, W, W, COLON},
    [KEY_OR_CLOSE] = {W, W, W, A_CLOSE, W, W, W, COLON},
    [COLON] = {W, W, W, W, W, W, VALUE, W},
    [AFTER_OBJECT] = {W, W, W, A_CLOSE, W, KEY, W, W},
    [AFTER_ARRAY] = {W, W, W, W, A_CLOSE, VALUE, W, W},
    [DONE] = {W, W, W, W, W, W, W, W},
};
#undef W

/* A token's class by its first byte: a table, not a switch (a branch per
 * token; the table took the check from 30 to 28 ms on the 64 MB of the
 * reference history's chats). */
static const unsigned char CLASS[256] = {
    ['{'] = C_OPEN_OBJECT, ['['] = C_OPEN_ARRAY, ['}'] = C_CLOSE_OBJECT, [']'] = C_CLOSE_ARRAY,
    [','] = C_COMMA,       [':'] = C_COLON,      ['"'] = C_STRING,
};

typedef struct block_bits {
    uint64_t backslash, quote, space, structural; /* structural: {}[],: */
} block_bits;

#if defined(__SSE2__)
static inline uint64_t eq16(__m128i v, char c)
{
    return (uint64_t)(unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_set1_epi8(c)));
}
#endif

static block_bits bits_of(const unsigned char *p)
{
    block_bits b = {0, 0, 0, 0};
#if defined(__SSE2__)
    /* unrolled, one load per 16 bytes for all the masks */
#define PS_CHUNK(k)                                                                                \
    do {                                                                                           \
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(p + 16 * (k)));                \
        __m128i folded = _mm_or_si128(v, _mm_set1_epi8(0x20)); /* '{' '[', '}' ']' alike */        \
        b.backslash |= eq16(v, '\\') << (16 * (k));                                                \
        b.quote |= eq16(v, '"') << (16 * (k));                                                     \
        b.space |= (eq16(v, ' ') | eq16(v, '\t') | eq16(v, '\n') | eq16(v, '\r')) << (16 * (k));   \
        b.structural |= (eq16(folded, '{') | eq16(folded, '}') | eq16(v, ',') | eq16(v, ':'))      \
                        << (16 * (k));                                                             \
    } while (0)
    PS_CHUNK(0);
    PS_CHUNK(1);
    PS_CHUNK(2);
    PS_CHUNK(3);
#undef PS_CHUNK
#else
    for (int k = 0; k < 64; k++) {
        unsigned char c = p[k];
        uint64_t bit = (uint64_t)1 << k;
        if (c == '\\')
            b.backslash |= bit;
        else if (c == '"')
            b.quote |= bit;
        else if (c == ' ' || c == '\t' || c == '\n' || c == '\r')
            b.space |= bit;
        else if (c == '{' || c == '[' || c == '}' || c == ']' || c == ',' || c == ':')
            b.structural |= bit;
    }
#endif
    return b;
}

/* The bytes a backslash escapes; *carry: the next block's first byte is
 * escaped (simdjson's find_escaped, as in chat_splitter.c). */
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

/* Bit k set where an odd number of bits at or below k are set in x. */
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

typedef struct walker {
    uint64_t is_object; /* bit d: container d+1 is an object */
    int depth, max_depth;
    int state, after; /* after: the state that follows a value here */
} walker;

/* One token: a structural byte, an opening quote, or a scalar's first. */
static inline void token(walker *w, unsigned char c)
{
    int step = STEP[w->state][CLASS[c]];
    if (step <= WRONG) {
        w->state = step;
    } else if (step == A_VALUE_DONE) {
        w->state = w->after;
    } else if (step == A_CLOSE) {
        w->depth--;
        w->after = w->depth == 0                               ? DONE
                   : (w->is_object >> (w->depth - 1) & 1) != 0 ? AFTER_OBJECT
                                                               : AFTER_ARRAY;
        w->state = w->after;
    } else if (++w->depth > w->max_depth) {
        w->state = WRONG;
    } else if (step == A_OPEN_OBJECT) {
        w->is_object |= (uint64_t)1 << (w->depth - 1);
        w->after = AFTER_OBJECT;
        w->state = KEY_OR_CLOSE;
    } else {
        w->is_object &= ~((uint64_t)1 << (w->depth - 1));
        w->after = AFTER_ARRAY;
        w->state = VALUE_OR_CLOSE;
    }
}

#if defined(__x86_64__) && defined(__GNUC__) && defined(__SSE2__)
#define PS_HAVE_AVX2_PATH 1
#include <immintrin.h>

/* The same masks 32 bytes at a time, for processors with AVX2 (chosen at
 * run time: the build targets baseline x86-64). */
__attribute__((target("avx2"))) static inline uint64_t eq32(__m256i v, char c)
{
    return (uint64_t)(uint32_t)_mm256_movemask_epi8(_mm256_cmpeq_epi8(v, _mm256_set1_epi8(c)));
}

__attribute__((target("avx2"))) static block_bits bits_of_avx2(const unsigned char *p)
{
    block_bits b = {0, 0, 0, 0};
    for (int k = 0; k < 2; k++) {
        __m256i v = _mm256_loadu_si256((const __m256i *)(const void *)(p + 32 * k));
        __m256i folded = _mm256_or_si256(v, _mm256_set1_epi8(0x20));
        b.backslash |= eq32(v, '\\') << (32 * k);
        b.quote |= eq32(v, '"') << (32 * k);
        b.space |= (eq32(v, ' ') | eq32(v, '\t') | eq32(v, '\n') | eq32(v, '\r')) << (32 * k);
        b.structural |= (eq32(folded, '{') | eq32(folded, '}') | eq32(v, ',') | eq32(v, ':'))
                        << (32 * k);
    }
    return b;
}
#endif

/* The check, its masks made by `bits` (inlined into each caller). */
static inline __attribute__((always_inline)) bool
check_with(const char *text, size_t len, int max_depth, block_bits (*bits)(const unsigned char *))
{
    const unsigned char *p = (const unsigned char *)text;
    walker w = {.max_depth = max_depth > 64 ? 64 : max_depth, .state = VALUE, .after = DONE};
    uint64_t escape_carry = 0, inside = 0, scalar_carry = 0;
    unsigned char last[64];
    for (size_t i = 0; i < len && w.state != WRONG; i += 64) {
        const unsigned char *block = p + i;
        if (len - i < 64) { /* the last bytes, padded with spaces */
            memset(last, ' ', sizeof last);
            memcpy(last, p + i, len - i);
            block = last;
        }
        block_bits b = bits(block);
        uint64_t quotes = b.quote & ~escaped_bytes(b.backslash, &escape_carry);
        uint64_t in_string = prefix_xor(quotes) ^ inside; /* opening quotes in, closing out */
        inside = (uint64_t)((int64_t)in_string >> 63);
        uint64_t scalar = ~(b.space | b.structural | b.quote | in_string);
        uint64_t scalar_starts = scalar & ~(scalar << 1 | scalar_carry);
        scalar_carry = scalar >> 63;
        uint64_t tokens = (b.structural & ~in_string) | (quotes & in_string) | scalar_starts;
        for (; tokens && w.state != WRONG; tokens &= tokens - 1)
            token(&w, block[__builtin_ctzll(tokens)]);
    }
    return w.state == DONE && !inside;
}

#ifdef PS_HAVE_AVX2_PATH
__attribute__((target("avx2"))) static bool check_avx2(const char *text, size_t len, int max_depth)
{
    return check_with(text, len, max_depth, bits_of_avx2);
}
#endif

bool ps__json_structure_ok_baseline(const char *text, size_t len, int max_depth)
{
    return check_with(text, len, max_depth, bits_of);
}

bool ps__json_structure_ok(const char *text, size_t len, int max_depth)
{
#ifdef PS_HAVE_AVX2_PATH
    if (__builtin_cpu_supports("avx2"))
        return check_avx2(text, len, max_depth);
#endif
    return ps__json_structure_ok_baseline(text, len, max_depth);
}
