/*
 * The pre-parse check; see json_precheck.h. UTF-8 is validated by the table
 * of well-formed sequences in Unicode 15, section 3.9 (table 3-7), which
 * rules out overlongs, surrogates and values past U+10FFFF by the range of
 * the second byte.
 */
#include "core/json_precheck.h"

#include <stdbool.h>
#include <stdint.h>

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

/* Bytes that may stand outside strings: structure, whitespace, and the
 * letters and signs of numbers, true, false and null. */
static bool allowed_outside_string(unsigned char c)
{
    switch (c) {
    case '{': case '}': case '[': case ']': case ':': case ',':
    case ' ': case '\t': case '\n': case '\r':
    case '-': case '+': case '.':
        return true;
    default:
        return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
    }
}

ps_code ps_json_precheck(const char *text, size_t len, ps_error *err)
{
    const unsigned char *p = (const unsigned char *)text;
    bool in_string = false;
    size_t i = 0;
    while (i < len) {
        unsigned char c = p[i];
        if (c >= 0x80) {
            size_t n = utf8_sequence(p + i, len - i);
            if (n == 0)
                return ps_error_set(err, PS_ERR_UTF8, -1, "",
                                    "invalid UTF-8 in JSON text at byte %zu", i);
            if (!in_string)
                return ps_error_set(err, PS_ERR_MALFORMED, -1, "",
                                    "malformed JSON: unexpected character at byte %zu", i);
            i += n;
            continue;
        }
        if (in_string) {
            if (c < 0x20)
                return ps_error_set(err, PS_ERR_MALFORMED, -1, "",
                                    "malformed JSON: raw control character in a string at "
                                    "byte %zu (escape it)", i);
            if (c == '\\')
                i++; /* the escaped character cannot end the string */
            else if (c == '"')
                in_string = false;
        } else if (c == '"') {
            in_string = true;
        } else if (!allowed_outside_string(c)) {
            return ps_error_set(err, PS_ERR_MALFORMED, -1, "",
                                "malformed JSON: unexpected character at byte %zu", i);
        }
        i++;
    }
    return PS_OK; /* an unterminated string is json-c's to report */
}
