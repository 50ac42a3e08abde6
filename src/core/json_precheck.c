/*
 * The pre-parse check; see json_precheck.h. UTF-8 is validated by the table
 * of well-formed sequences in Unicode 15, section 3.9 (table 3-7), which
 * rules out overlongs, surrogates and values past U+10FFFF by the range of
 * the second byte.
 *
 * Speed matters here: a legacy sync body is tens of MB, nearly all of it
 * string text dense in quotes, escapes and non-ASCII, and every byte passes
 * through this scan before json-c sees it. So the token loop (scan) takes a
 * whole string in one step (string_end), and with SSE2 a string is checked
 * 64 bytes at a time on bit masks (string_end_blocks) with no branch per
 * special byte. That fast path only ever answers "well formed up to this
 * closing quote"; whatever else it meets (an error, an odd case, the last
 * bytes of the text) it hands back, and the exact byte-at-a-time path
 * checks the string again from its start, so errors and their offsets are
 * always the byte-at-a-time path's.
 */
#include "core/json_precheck.h"

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

/* A UTF-8 continuation byte, 80..BF. */
static inline bool utf8_continuation(unsigned char b)
{
    return (unsigned char)(b - 0x80) < 0x40;
}

/* Length of the well-formed UTF-8 sequence at p (at most `left` bytes), or 0. */
static inline size_t utf8_sequence(const unsigned char *p, size_t left)
{
    unsigned char b = p[0];
    unsigned char lo = 0x80, hi = 0xBF;
    size_t n;
    if (b < 0x80)
        return 1;
    /* The common cases first, without the table's special rows: two bytes
     * (Latin, Greek, Cyrillic...) and three with an unrestricted second byte
     * (most of the BMP, CJK included). */
    if (b >= 0xC2 && b <= 0xDF)
        return left >= 2 && utf8_continuation(p[1]) ? 2 : 0;
    if (b >= 0xE1 && b <= 0xEF && b != 0xED)
        return left >= 3 && utf8_continuation(p[1]) && utf8_continuation(p[2]) ? 3 : 0;
    if (b == 0xE0 || b == 0xED) {
        n = 3;
        if (b == 0xE0)
            lo = 0xA0; /* no overlongs */
        else
            hi = 0x9F; /* no surrogates */
    } else if (b >= 0xF0 && b <= 0xF4) {
        n = 4;
        if (b == 0xF0)
            lo = 0x90; /* no overlongs */
        if (b == 0xF4)
            hi = 0x8F; /* nothing past U+10FFFF */
    } else {
        return 0; /* 80..C1 and F5..FF never start a sequence */
    }
    if (left < n || p[1] < lo || p[1] > hi)
        return 0;
    for (size_t i = 2; i < n; i++)
        if (!utf8_continuation(p[i]))
            return 0;
    return n;
}

/* Where the run of well-formed non-ASCII characters starting at p[i] ends.
 * Non-ASCII text comes in runs (a word of Cyrillic, a line of CJK), so they
 * are checked here back to back rather than one per trip round the caller's
 * loop. The run ends at an ASCII byte or at len when all is well; it ends at
 * a byte >= 0x80 where that byte starts no well-formed sequence. */
static inline size_t utf8_run_end(const unsigned char *p, size_t i, size_t len)
{
    while (i < len && p[i] >= 0x80) {
        size_t n = utf8_sequence(p + i, len - i);
        if (n == 0)
            break;
        i += n;
    }
    return i;
}

/* Length of the RFC 8259 number at p, or 0:
 * -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? */
static size_t number_length(const unsigned char *p, size_t left)
{
    size_t i = 0;
#define DIGIT(k) ((k) < left && p[k] >= '0' && p[k] <= '9')
    if (i < left && p[i] == '-')
        i++;
    if (!DIGIT(i))
        return 0;
    if (p[i] == '0')
        i++;
    else
        while (DIGIT(i))
            i++;
    if (i < left && p[i] == '.') {
        i++;
        if (!DIGIT(i))
            return 0;
        while (DIGIT(i))
            i++;
    }
    if (i < left && (p[i] == 'e' || p[i] == 'E')) {
        i++;
        if (i < left && (p[i] == '+' || p[i] == '-'))
            i++;
        if (!DIGIT(i))
            return 0;
        while (DIGIT(i))
            i++;
    }
    /* "00" or "1x": a number must end where a token can end */
    if (DIGIT(i) ||
        (i < left && ((p[i] >= 'a' && p[i] <= 'z') || (p[i] >= 'A' && p[i] <= 'Z') || p[i] == '.')))
        return 0;
#undef DIGIT
    return i;
}

/* Length of true/false/null at p, or 0 (NaN, Infinity, bare words). */
static size_t literal_length(const unsigned char *p, size_t left)
{
    static const char *const words[3] = {"true", "false", "null"};
    size_t n = 0;
    while (n < left && p[n] >= 'a' && p[n] <= 'z')
        n++;
    for (int k = 0; k < 3; k++)
        if (n == strlen(words[k]) && memcmp(p, words[k], n) == 0)
            return n;
    return 0;
}

static ps_code malformed(ps_error *err, size_t at, const char *what)
{
    return ps_error_set(err, PS_ERR_MALFORMED, -1, "", "malformed JSON: %s at byte %zu", what, at);
}

/* True when none of the 8 bytes at p is '"', '\\', < 0x20 or >= 0x80 (the
 * classic "has a zero byte" bit trick, per byte class). */
static bool plain_ascii_word(const unsigned char *p)
{
    uint64_t w;
    memcpy(&w, p, 8);
    const uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
#define HAS_ZERO(v) (((v)-ones) & ~(v)&highs)
    uint64_t quote = w ^ (ones * '"'), backslash = w ^ (ones * '\\');
    uint64_t control = (w - ones * 0x20) & ~w & highs; /* a byte < 0x20 */
    return !((w & highs) | control | HAS_ZERO(quote) | HAS_ZERO(backslash));
#undef HAS_ZERO
}

/* A byte string text cannot simply step over: the end of the string, an
 * escape, a raw control character, or the start of a non-ASCII character. */
static inline bool string_special(unsigned char c)
{
    return c == '"' || c == '\\' || c < 0x20 || c >= 0x80;
}

#if defined(__SSE2__)
static inline __m128i load16(const unsigned char *p)
{
    return _mm_loadu_si128((const __m128i *)(const void *)p);
}

/* One bit per byte of p[0, 16) that is string_special: '"', '\\', or, by
 * one signed compare, below 0x20 or (negative as signed) 0x80 and above. */
static inline unsigned special_mask16(const unsigned char *p)
{
    __m128i v = load16(p);
    __m128i hit = _mm_or_si128(
        _mm_or_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8('"')), _mm_cmpeq_epi8(v, _mm_set1_epi8('\\'))),
        _mm_cmplt_epi8(v, _mm_set1_epi8(0x20)));
    return (unsigned)_mm_movemask_epi8(hit);
}
#endif

/* Index of the first string_special byte in p[i, len), or len (or i, when
 * i is already past len). */
static inline size_t next_special(const unsigned char *p, size_t i, size_t len)
{
#if defined(__SSE2__)
    for (; i + 16 <= len; i += 16) {
        unsigned mask = special_mask16(p + i);
        if (mask)
            return i + (unsigned)__builtin_ctz(mask);
    }
#endif
    while (i + 8 <= len && plain_ascii_word(p + i))
        i += 8;
    while (i < len && !string_special(p[i]))
        i++;
    return i;
}

#if defined(__SSE2__)
/*
 * String text 64 bytes at a time, without a branch per special byte: that
 * text is dense in quotes, escapes and non-ASCII, so stopping at each (as
 * next_special does) costs a mispredicted branch every dozen bytes. Instead
 * each block is turned into bit masks (bit k: byte k), and escapes, the
 * closing quote and UTF-8 well-formedness are worked out on the masks.
 * This only says "all well up to the closing quote"; anything else is left
 * to the byte-at-a-time string_end, which finds and reports it exactly.
 */
typedef struct block_masks {
    uint64_t quote, backslash;
    uint64_t high;         /* 80..FF */
    uint64_t cont;         /* 80..BF: UTF-8 continuation bytes */
    uint64_t lead3, lead4; /* E0..FF, F0..FF: leads wanting 2, 3 continuations */
    uint64_t bad;          /* a control character, a byte never in UTF-8, or
                            * a second byte out of range */
} block_masks;

/* The movemask of chunk c (of 4) of a block, in place in a 64-bit mask. */
static inline uint64_t chunk_bits(__m128i m, int c)
{
    return (uint64_t)(unsigned)_mm_movemask_epi8(m) << (16 * c);
}

/* The 16 bytes at p that are bad wherever they stand in a string: control
 * characters (an escaped one is fine, but rare enough to leave to
 * string_end), C0 and C1 (overlong leads), F5..FF (past U+10FFFF), and
 * second bytes out of table 3-7's narrower ranges: after E0 not 80..9F
 * (overlong), after ED not A0..BF (surrogates), after F0 not 80..8F
 * (overlong), after F4 not 90..BF (past U+10FFFF). A second byte that is
 * no continuation at all may be marked too: it is wrong anyway. */
static inline __m128i bad_bytes16(const unsigned char *p)
{
    __m128i v = load16(p), prev = load16(p - 1);
    __m128i control = _mm_cmpeq_epi8(_mm_min_epu8(v, _mm_set1_epi8(0x1F)), v);
    __m128i c0c1 =
        _mm_cmpeq_epi8(_mm_and_si128(v, _mm_set1_epi8((char)0xFE)), _mm_set1_epi8((char)0xC0));
    __m128i f5ff = _mm_cmpeq_epi8(_mm_max_epu8(v, _mm_set1_epi8((char)0xF5)), v);
    /* signed compares: 80..9F and 80..8F are the lowest values there are */
    __m128i below_a0 = _mm_cmplt_epi8(v, _mm_set1_epi8((char)0xA0));
    __m128i below_90 = _mm_cmplt_epi8(v, _mm_set1_epi8((char)0x90));
    __m128i e0 = _mm_and_si128(_mm_cmpeq_epi8(prev, _mm_set1_epi8((char)0xE0)), below_a0);
    __m128i ed = _mm_andnot_si128(below_a0, _mm_cmpeq_epi8(prev, _mm_set1_epi8((char)0xED)));
    __m128i f0 = _mm_and_si128(_mm_cmpeq_epi8(prev, _mm_set1_epi8((char)0xF0)), below_90);
    __m128i f4 = _mm_andnot_si128(below_90, _mm_cmpeq_epi8(prev, _mm_set1_epi8((char)0xF4)));
    return _mm_or_si128(_mm_or_si128(_mm_or_si128(control, c0c1), _mm_or_si128(f5ff, e0)),
                        _mm_or_si128(_mm_or_si128(ed, f0), f4));
}

/* The masks of p[0, 64). Reads p[-1] too: the lead before a second byte. */
static inline void block_masks_of(const unsigned char *p, block_masks *m)
{
    *m = (block_masks){0};
    for (int c = 0; c < 4; c++) {
        __m128i v = load16(p + 16 * c);
        m->quote |= chunk_bits(_mm_cmpeq_epi8(v, _mm_set1_epi8('"')), c);
        m->backslash |= chunk_bits(_mm_cmpeq_epi8(v, _mm_set1_epi8('\\')), c);
        m->high |= chunk_bits(v, c);
        /* signed compares: 80..FF are below 00..7F (`high` sorts them out) */
        m->cont |= chunk_bits(_mm_cmplt_epi8(v, _mm_set1_epi8((char)0xC0)), c);
        m->lead3 |= chunk_bits(_mm_cmpgt_epi8(v, _mm_set1_epi8((char)0xDF)), c);
        m->lead4 |= chunk_bits(_mm_cmpgt_epi8(v, _mm_set1_epi8((char)0xEF)), c);
        m->bad |= chunk_bits(bad_bytes16(p + 16 * c), c);
    }
    m->lead3 &= m->high;
    m->lead4 &= m->high;
}

/* The bytes of a block that a backslash escapes. In a run of backslashes
 * each escapes the next, so counting from the run's start the odd ones are
 * escaped, and the byte after a run of odd length. *carry: the block's
 * first byte is escaped (by the previous block's last backslash); set for
 * the next block. The branchless form of simdjson's find_escaped: adding a
 * run's start bit to the run carries past its end, which tells runs that
 * start on an even bit from those that start on an odd one. */
static inline uint64_t escaped_bytes(uint64_t backslash, uint64_t *carry)
{
    const uint64_t even_bits = 0x5555555555555555ULL;
    backslash &= ~*carry; /* an escaped backslash escapes nothing */
    uint64_t follows_escape = backslash << 1 | *carry;
    uint64_t odd_starts = backslash & ~even_bits & ~follows_escape;
    uint64_t sum;
    *carry = __builtin_add_overflow(odd_starts, backslash, &sum);
    return (even_bits ^ (sum << 1)) & follows_escape;
}

/* The closing quote of the string text from *at, 64 bytes at a time: true
 * with *at set when all of the string is well formed; false, *at unchanged,
 * when something needs a closer look (an error, an escaped non-ASCII byte)
 * or the string runs into the last 64 bytes of text. p[*at - 1] is the
 * opening quote: ASCII, so the first block's p[-1] adds no second byte, and
 * the carries into it are nil. */
static bool string_end_blocks(const unsigned char *p, size_t len, size_t *at)
{
    uint64_t escape_carry = 0, need_carry = 0;
    for (size_t i = *at; i + 64 <= len; i += 64) {
        block_masks m;
        block_masks_of(p + i, &m);
        uint64_t escaped = escaped_bytes(m.backslash, &escape_carry);
        uint64_t closing = m.quote & ~escaped;
        /* what is checked: the bytes up to the closing quote, and the quote
         * itself (a sequence cut short by it is an error) */
        uint64_t upto = closing ? closing ^ (closing - 1) : ~(uint64_t)0;
        /* UTF-8: the bytes that must be continuations are those within a
         * lead's length after it; they and the continuations must coincide */
        uint64_t lead = m.high & ~m.cont;
        uint64_t need = lead << 1 | m.lead3 << 2 | m.lead4 << 3 | need_carry;
        need_carry = lead >> 63 | m.lead3 >> 62 | m.lead4 >> 61;
        uint64_t wrong = m.bad | (m.high & escaped) | (need ^ m.cont);
        if (wrong & upto)
            return false;
        if (closing) {
            *at = i + (unsigned)__builtin_ctzll(closing);
            return true;
        }
    }
    return false;
}
#endif

static ps_code bad_utf8(ps_error *err, size_t at)
{
    return ps_error_set(err, PS_ERR_UTF8, -1, "", "invalid UTF-8 in JSON text at byte %zu", at);
}

/* Checks the string text from *at (just past the opening quote) and sets
 * *at to its closing quote, or to len or past it when the text ends inside
 * the string (json-c reports that). The whole string is done here, so the
 * caller's token loop sees one step per string, not one per special byte. */
static ps_code string_end(const unsigned char *p, size_t len, size_t *at, size_t base,
                          ps_error *err)
{
    size_t i = *at;
#if defined(__SSE2__)
    /* Short strings (keys, ids, dates) often end in their first 16 bytes
     * with nothing to look at before the quote. */
    if (len - i >= 16) {
        unsigned mask = special_mask16(p + i);
        if (mask && p[i + (unsigned)__builtin_ctz(mask)] == '"') {
            *at = i + (unsigned)__builtin_ctz(mask);
            return PS_OK;
        }
    }
    if (string_end_blocks(p, len, at))
        return PS_OK;
#endif
    for (;;) {
        i = next_special(p, i, len);
        if (i >= len)
            break;
        unsigned char c = p[i];
        if (c == '"')
            break;
        if (c == '\\') {
            i += 2; /* the escaped byte, whatever it is, cannot end the string */
            continue;
        }
        if (c < 0x20)
            return malformed(err, base + i, "raw control character in a string (escape it)");
        i = utf8_run_end(p, i, len);
        if (i < len && p[i] >= 0x80)
            return bad_utf8(err, base + i);
    }
    *at = i;
    return PS_OK;
}

/* JSON whitespace, which may stand between any two tokens. */
static inline bool json_space(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* base: where text starts in the whole body, for the offsets in errors. */
static ps_code scan(const char *text, size_t len, int max_depth, size_t base, ps_error *err)
{
    const unsigned char *p = (const unsigned char *)text;
    int depth = 0;
    size_t i = 0;
    while (i < len) {
        unsigned char c = p[i];
        size_t n = 1;
        switch (c) {
        case '"': {
            size_t end = i + 1;
            ps_code rc = string_end(p, len, &end, base, err);
            if (rc != PS_OK)
                return rc;
            n = end + 1 - i; /* past the closing quote, or past len */
            break;
        }
        case '{':
        case '[':
            if (++depth > max_depth)
                return ps_error_set(err, PS_ERR_TOO_DEEP, -1, "",
                                    "JSON nested deeper than %d levels", max_depth);
            break;
        case '}':
        case ']':
            depth--;
            break;
        case ',':
            break;
        case ' ':
        case '\t':
        case '\n':
        case '\r':
            while (n < len - i && json_space(p[i + n])) /* indentation comes in runs */
                n++;
            break;
        case ':':
            break;
        default:
            if (c == '-' || (c >= '0' && c <= '9'))
                n = number_length(p + i, len - i);
            else if (c >= 'a' && c <= 'z')
                n = literal_length(p + i, len - i);
            else if (c >= 0x80 && utf8_sequence(p + i, len - i) == 0)
                return bad_utf8(err, base + i);
            else
                n = 0;
            if (n == 0)
                return malformed(err, base + i, "unexpected character");
        }
        i += n;
    }
    return PS_OK; /* structure (balance, commas, an unterminated string) is json-c's */
}

bool ps__json_is_number(const char *text, size_t len)
{
    return len > 0 && number_length((const unsigned char *)text, len) == len;
}

ps_code ps__json_precheck(const char *text, size_t len, int max_depth, ps_error *err)
{
    return scan(text, len, max_depth, 0, err);
}

ps_code ps__json_precheck_at(const char *text, size_t len, int max_depth, size_t base,
                             ps_error *err)
{
    return scan(text, len, max_depth, base, err);
}
