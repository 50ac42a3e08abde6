/*
 * Parsing an answer's body while it arrives (http.h, stream_depth): each
 * piece curl hands over goes to json-c's incremental tokener as well as to
 * the body buffer, so a fresh device's 63 MB first pull is parsed while
 * polysyncd is still sending it instead of after (docs/performance.md,
 * "client3"). The outcome is the one ps__json_parse gives on the whole
 * body: the same tokener settings, the JSON pre-check over the whole body
 * at the end, trailing data refused; on any failure the body is parsed
 * again by ps__json_parse for its exact error.
 *
 * json-c 0.16's tokener, asked to validate UTF-8, refuses a character whose
 * bytes are split between two pieces it is fed: curl's pieces end anywhere,
 * so every answer with a non-ASCII character near a piece's end (most real
 * histories) failed here and was parsed a second time, whole, at the end
 * (docs/performance.md, "pull2"). So a piece's last incomplete character is
 * held back (a->carry) and fed with the bytes that complete it.
 */
#include "client/http.h"
#include "core/json_parse.h"
#include "core/json_precheck.h"

#include <ctype.h>
#include <json-c/json.h>
#include <string.h>

void ps__answer_stream_reset(ps_http_answer *a)
{
    if (a->tok)
        json_tokener_free(a->tok);
    a->tok = NULL;
    json_object_put(a->streamed);
    a->streamed = NULL;
    a->stream_failed = false;
    a->carry_len = 0;
    if (a->stream_depth <= 0)
        return;
    /* +1 and the flags: as ps__json_parse */
    if (!(a->tok = json_tokener_new_ex(a->stream_depth + 1))) {
        a->stream_failed = true; /* parsed whole at the end instead */
        return;
    }
    json_tokener_set_flags(a->tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
}

static bool all_space(const char *data, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (!isspace((unsigned char)data[i]))
            return false;
    return true;
}

/* How many bytes the UTF-8 character that starts with byte b has (1 for
 * what starts none: the tokener judges it). */
static size_t utf8_length(unsigned char b)
{
    return (b & 0xE0) == 0xC0 ? 2 : (b & 0xF0) == 0xE0 ? 3 : (b & 0xF8) == 0xF0 ? 4 : 1;
}

/* Where the bytes data[0..len) end but for a last character cut short. */
static size_t whole_characters(const char *data, size_t len)
{
    for (size_t back = 1; back <= 3 && back <= len; back++) {
        unsigned char b = (unsigned char)data[len - back];
        if ((b & 0xC0) != 0x80) /* not a continuation byte: the last character's start */
            return utf8_length(b) > back ? len - back : len;
    }
    return len;
}

static void feed_whole(ps_http_answer *a, const char *data, size_t len);

void ps__answer_stream_feed(ps_http_answer *a, const char *data, size_t len)
{
    if (a->stream_failed || !a->tok)
        return;
    if (a->carry_len) { /* complete the character held back */
        size_t need = utf8_length((unsigned char)a->carry[0]) - a->carry_len;
        size_t take = need < len ? need : len;
        memcpy(a->carry + a->carry_len, data, take);
        a->carry_len += take;
        data += take;
        len -= take;
        if (take < need)
            return;
        feed_whole(a, a->carry, a->carry_len);
        a->carry_len = 0;
    }
    size_t whole = whole_characters(data, len);
    feed_whole(a, data, whole);
    memcpy(a->carry, data + whole, len - whole);
    a->carry_len = len - whole;
}

static void feed_whole(ps_http_answer *a, const char *data, size_t len)
{
    if (a->stream_failed || !a->tok)
        return;
    if (a->streamed) { /* complete: only white space may follow */
        a->stream_failed = !all_space(data, len);
        return;
    }
    while (len > 0 && !a->streamed && !a->stream_failed) {
        int piece = len > (size_t)INT32_MAX ? INT32_MAX : (int)len; /* json-c takes an int */
        json_object *obj = json_tokener_parse_ex(a->tok, data, piece);
        enum json_tokener_error jerr = json_tokener_get_error(a->tok);
        if (jerr == json_tokener_success) {
            size_t end = json_tokener_get_parse_end(a->tok);
            a->streamed = obj;
            a->stream_failed = !all_space(data + end, len - end);
            return;
        }
        if (jerr != json_tokener_continue) {
            json_object_put(obj);
            a->stream_failed = true;
            return;
        }
        data += piece;
        len -= (size_t)piece;
    }
}

ps_code ps__answer_json(ps_http_answer *a, int max_depth, json_object **out, ps_error *err)
{
    const char *text = a->body.data ? a->body.data : "";
    size_t len = a->body.len;
    *out = NULL;
    if (a->carry_len) { /* a character cut short at the very end: the tokener says so */
        feed_whole(a, a->carry, a->carry_len);
        a->carry_len = 0;
    }
    if (a->tok && !a->stream_failed && !a->streamed && len > 0) {
        /* a bare number at the very end may still be "continuing" */
        json_object *obj = json_tokener_parse_ex(a->tok, " ", 1);
        if (json_tokener_get_error(a->tok) == json_tokener_success)
            a->streamed = obj;
        else
            json_object_put(obj);
    }
    bool usable = a->tok && a->stream_depth == max_depth && a->streamed && !a->stream_failed &&
                  len <= (size_t)INT32_MAX;
    /* what ps__json_parse checks before its tokener, on the same bytes */
    if (usable && ps__json_precheck(text, len, max_depth, err) == PS_OK) {
        *out = a->streamed;
        a->streamed = NULL;
        return PS_OK;
    }
    json_object_put(a->streamed);
    a->streamed = NULL;
    return ps__json_parse(text, len, max_depth, out, err);
}
