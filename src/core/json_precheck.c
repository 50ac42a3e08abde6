/*
 * The pre-parse check; see json_precheck.h. UTF-8 is validated by the table
 * of well-formed sequences in Unicode 15, section 3.9 (table 3-7), which
 * rules out overlongs, surrogates and values past U+10FFFF by the range of
 * the second byte.
 */
#include "core/json_precheck.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Length of the well-formed UTF-8 sequence at p (at most `left` bytes), or 0. */
static size_t utf8_sequence(const unsigned char *p, size_t left)
{
    unsigned char b = p[0];
    unsigned char lo = 0x80, hi = 0xBF;
    size_t n;
    if (b < 0x80)
        return 1;
    if (b >= 0xC2 && b <= 0xDF) {
        n = 2;
    } else if (b >= 0xE0 && b <= 0xEF) {
        n = 3;
        if (b == 0xE0)
            lo = 0xA0; /* no overlongs */
        if (b == 0xED)
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
        if (p[i] < 0x80 || p[i] > 0xBF)
            return 0;
    return n;
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

/* Outline bookkeeping: the top-level "chats" array and its elements. */
typedef struct outliner {
    ps_json_outline *o;
    size_t key_start, key_end; /* the last string seen at depth 1 */
    bool in_chats, expect_elem, elem_open, seen_chats;
} outliner;

static ps_code outline_add(ps_json_outline *o, size_t start)
{
    if (o->count == o->cap) {
        size_t cap = o->cap ? o->cap * 2 : 64;
        size_t *st = realloc(o->starts, cap * sizeof *st);
        if (!st)
            return PS_ERR_NOMEM;
        o->starts = st;
        size_t *en = realloc(o->ends, cap * sizeof *en);
        if (!en)
            return PS_ERR_NOMEM;
        o->ends = en;
        o->cap = cap;
    }
    o->starts[o->count] = start;
    o->ends[o->count] = start;
    o->count++;
    return PS_OK;
}

static ps_code scan(const char *text, size_t len, int max_depth, outliner *ol, ps_error *err)
{
    const unsigned char *p = (const unsigned char *)text;
    bool in_string = false;
    int depth = 0;
    size_t i = 0;
    while (i < len) {
        unsigned char c = p[i];
        if (in_string) {
            /* Most of a chat body is plain string text: step over 8 bytes
             * at a time while none is a quote, a backslash, a control
             * character or non-ASCII (the bytes that need a closer look). */
            while (i + 8 <= len && plain_ascii_word(p + i))
                i += 8;
            if (i >= len)
                break;
            c = p[i];
            if (c >= 0x80) {
                size_t n = utf8_sequence(p + i, len - i);
                if (n == 0)
                    return ps_error_set(err, PS_ERR_UTF8, -1, "",
                                        "invalid UTF-8 in JSON text at byte %zu", i);
                i += n;
                continue;
            }
            if (c < 0x20)
                return malformed(err, i, "raw control character in a string (escape it)");
            if (c == '\\') {
                i++; /* the escaped character cannot end the string */
            } else if (c == '"') {
                in_string = false;
                if (ol && depth == 1)
                    ol->key_end = i;
            }
            i++;
            continue;
        }
        /* an element of "chats" starts at its first token */
        if (ol && ol->in_chats && depth == 2 && ol->expect_elem && c != ' ' && c != '\t' &&
            c != '\n' && c != '\r' && c != ']') {
            if (outline_add(ol->o, i) != PS_OK)
                return ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
            ol->expect_elem = false;
            ol->elem_open = true;
        }
        size_t n = 1;
        switch (c) {
        case '"':
            in_string = true;
            if (ol && depth == 1)
                ol->key_start = i + 1;
            break;
        case '{':
        case '[':
            if (ol && depth == 1 && c == '[' && ol->key_end - ol->key_start == 5 &&
                memcmp(text + ol->key_start, "chats", 5) == 0) {
                /* two "chats" keys: json-c keeps the last; do not guess */
                ol->o->found = !ol->seen_chats;
                ol->seen_chats = true;
                ol->in_chats = ol->o->found;
                ol->o->array_start = i;
                ol->expect_elem = true;
            }
            if (++depth > max_depth)
                return ps_error_set(err, PS_ERR_TOO_DEEP, -1, "",
                                    "JSON nested deeper than %d levels", max_depth);
            break;
        case '}':
        case ']':
            if (ol && ol->in_chats && depth == 2) { /* the end of "chats" */
                if (ol->elem_open)
                    ol->o->ends[ol->o->count - 1] = i;
                ol->o->array_end = i + 1;
                ol->in_chats = ol->elem_open = false;
            }
            depth--;
            break;
        case ',':
            if (ol && ol->in_chats && depth == 2) {
                if (ol->elem_open)
                    ol->o->ends[ol->o->count - 1] = i;
                ol->elem_open = false;
                ol->expect_elem = true;
            }
            break;
        case ':':
        case ' ':
        case '\t':
        case '\n':
        case '\r':
            break;
        default:
            if (c == '-' || (c >= '0' && c <= '9'))
                n = number_length(p + i, len - i);
            else if (c >= 'a' && c <= 'z')
                n = literal_length(p + i, len - i);
            else if (c >= 0x80 && utf8_sequence(p + i, len - i) == 0)
                return ps_error_set(err, PS_ERR_UTF8, -1, "",
                                    "invalid UTF-8 in JSON text at byte %zu", i);
            else
                n = 0;
            if (n == 0)
                return malformed(err, i, "unexpected character");
        }
        i += n;
    }
    if (ol && ol->in_chats) /* never closed: json-c reports the error */
        ol->o->found = false;
    return PS_OK; /* structure (balance, commas, an unterminated string) is json-c's */
}

ps_code ps_json_precheck(const char *text, size_t len, int max_depth, ps_error *err)
{
    return scan(text, len, max_depth, NULL, err);
}

ps_code ps_json_precheck_outline(const char *text, size_t len, int max_depth,
                                 ps_json_outline *outline, ps_error *err)
{
    memset(outline, 0, sizeof *outline);
    outliner ol = {.o = outline};
    ps_code rc = scan(text, len, max_depth, &ol, err);
    if (rc != PS_OK)
        ps_json_outline_free(outline);
    return rc;
}

void ps_json_outline_free(ps_json_outline *o)
{
    free(o->starts);
    free(o->ends);
    memset(o, 0, sizeof *o);
}
