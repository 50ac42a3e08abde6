/*
 * The compact JSON text of a json-c value, byte for byte what json-c 0.16
 * writes with JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE
 * (ps__json_text), in one pass into a caller's buffer.
 *
 * Why not json-c's own writer: a first upload serializes every message
 * once (its stored value and its base hash), 63 MB for the reference
 * history, and json-c's writer (a printbuf per value, one append per
 * token, a snprintf per number) took 12 % of that upload's CPU. The text
 * must stay json-c's to the byte: message values and their base hashes
 * (docs/merge.md) were stored from it, so the test (test_json_compact)
 * compares the two on every kind of value.
 */
#include "core/json_compact.h"
#include "core/json_parse.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

/* 1: the byte must be escaped in a string (json-c's json_escape_str) */
static const unsigned char NEEDS_ESCAPE[256] = {
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    ['"'] = 1, ['\\'] = 1,
};

/* The first byte at or after p (before end) that must be escaped, or end.
 * With SSE2, 16 bytes a step: message texts are long runs of plain text
 * (this loop was 4 % of a first upload's request threads, byte by byte). */
static inline const unsigned char *plain_run_end(const unsigned char *p, const unsigned char *end)
{
#if defined(__SSE2__)
    const __m128i quote = _mm_set1_epi8('"'), backslash = _mm_set1_epi8('\\'),
                  control = _mm_set1_epi8(0x1f);
    while (end - p >= 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)p);
        /* below 0x20 unsigned: min(v, 0x1f) == v */
        __m128i hit =
            _mm_or_si128(_mm_cmpeq_epi8(_mm_min_epu8(v, control), v),
                         _mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, backslash)));
        unsigned mask = (unsigned)_mm_movemask_epi8(hit);
        if (mask)
            return p + __builtin_ctz(mask);
        p += 16;
    }
#endif
    while (p < end && !NEEDS_ESCAPE[*p])
        p++;
    return p;
}

static ps_code add_string(ps_dynbuf *b, const char *s, size_t len)
{
    /* room for the text and quotes; an escape reserves its own (never six
     * times the string at once: strings may be megabytes) */
    ps_code rc = ps__dynbuf_reserve(b, len + 2);
    if (rc != PS_OK)
        return rc;
    b->data[b->len++] = '"';
    const unsigned char *p = (const unsigned char *)s, *end = p + len;
    while (p < end) {
        const unsigned char *run = p;
        p = plain_run_end(p, end);
        memcpy(b->data + b->len, run, (size_t)(p - run));
        b->len += (size_t)(p - run);
        if (p == end)
            break;
        unsigned char c = *p++;
        /* this escape (6 at most) and what is left, the closing quote */
        if ((rc = ps__dynbuf_reserve(b, 6 + (size_t)(end - p) + 1)) != PS_OK)
            return rc;
        char *o = b->data + b->len;
        *o++ = '\\';
        switch (c) {
        case '\b': *o++ = 'b'; break;
        case '\n': *o++ = 'n'; break;
        case '\r': *o++ = 'r'; break;
        case '\t': *o++ = 't'; break;
        case '\f': *o++ = 'f'; break;
        case '"': *o++ = '"'; break;
        case '\\': *o++ = '\\'; break;
        default: /* other control characters, lower-case hex as json-c's */
            memcpy(o, "u00", 3);
            o[3] = "0123456789abcdef"[c >> 4];
            o[4] = "0123456789abcdef"[c & 0xf];
            o += 5;
        }
        b->len = (size_t)(o - b->data);
    }
    b->data[b->len++] = '"';
    b->data[b->len] = '\0';
    return PS_OK;
}

/* A value json-c would write some other way than the ones handled here
 * (a double made in code, without its text): json-c's own writer. */
static ps_code add_by_json_c(ps_dynbuf *b, json_object *v)
{
    size_t len = 0;
    const char *text = json_object_to_json_string_length(
        v, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &len);
    return text ? ps__dynbuf_add(b, text, len) : PS_ERR_NOMEM;
}

ps_code ps__json_compact_append(ps_dynbuf *b, json_object *v)
{
    if (!v)
        return ps__dynbuf_add(b, "null", 4);
    /* json-c writes a value with userdata through its serializer: here
     * always the text itself (a container's kept text, set by
     * ps__json_text_kept, with its length; a parsed number's own text, set
     * by the tokener) */
    size_t kept_len;
    const char *kept = ps__json_kept(v, &kept_len);
    if (kept)
        return ps__dynbuf_add(b, kept, kept_len);
    if ((kept = json_object_get_userdata(v)) != NULL)
        return ps__dynbuf_adds(b, kept);
    ps_code rc = PS_OK;
    switch (json_object_get_type(v)) {
    case json_type_null:
        return ps__dynbuf_add(b, "null", 4);
    case json_type_boolean:
        return json_object_get_boolean(v) ? ps__dynbuf_add(b, "true", 4)
                                          : ps__dynbuf_add(b, "false", 5);
    case json_type_int: {
        char num[24];
        int64_t i = json_object_get_int64(v);
        int n = i == INT64_MAX /* or an unsigned value above it */
                    ? snprintf(num, sizeof num, "%" PRIu64, json_object_get_uint64(v))
                    : snprintf(num, sizeof num, "%" PRId64, i);
        return ps__dynbuf_add(b, num, (size_t)n);
    }
    case json_type_double:
        return add_by_json_c(b, v);
    case json_type_string:
        return add_string(b, json_object_get_string(v), (size_t)json_object_get_string_len(v));
    case json_type_array: {
        size_t n = json_object_array_length(v);
        if ((rc = ps__dynbuf_add(b, "[", 1)) != PS_OK)
            return rc;
        for (size_t i = 0; i < n && rc == PS_OK; i++) {
            if (i && (rc = ps__dynbuf_add(b, ",", 1)) != PS_OK)
                break;
            rc = ps__json_compact_append(b, json_object_array_get_idx(v, i));
        }
        return rc == PS_OK ? ps__dynbuf_add(b, "]", 1) : rc;
    }
    case json_type_object: {
        bool first = true;
        if ((rc = ps__dynbuf_add(b, "{", 1)) != PS_OK)
            return rc;
        json_object_object_foreach(v, key, val)
        {
            if ((!first && (rc = ps__dynbuf_add(b, ",", 1)) != PS_OK) ||
                (rc = add_string(b, key, strlen(key))) != PS_OK ||
                (rc = ps__dynbuf_add(b, ":", 1)) != PS_OK ||
                (rc = ps__json_compact_append(b, val)) != PS_OK)
                return rc;
            first = false;
        }
        return ps__dynbuf_add(b, "}", 1);
    }
    }
    return add_by_json_c(b, v);
}
