/*
 * Parsing an answer's body while it arrives (http.h, stream_depth): each
 * piece curl hands over goes to json-c's incremental tokener as well as to
 * the body buffer, so a fresh device's 63 MB first pull is parsed while
 * polysyncd is still sending it instead of after (docs/performance.md,
 * "client3"). The outcome is the one ps__json_parse gives on the whole
 * body: the same tokener settings, the JSON pre-check over the whole body
 * at the end, trailing data refused; on any failure the body is parsed
 * again by ps__json_parse for its exact error.
 */
#include "client/http.h"
#include "core/json_parse.h"
#include "core/json_precheck.h"

#include <ctype.h>
#include <json-c/json.h>

void ps__answer_stream_reset(ps_http_answer *a)
{
    if (a->tok)
        json_tokener_free(a->tok);
    a->tok = NULL;
    json_object_put(a->streamed);
    a->streamed = NULL;
    a->stream_failed = false;
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

void ps__answer_stream_feed(ps_http_answer *a, const char *data, size_t len)
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
