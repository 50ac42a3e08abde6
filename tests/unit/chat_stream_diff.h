/*
 * The oracle shared by test_chat_splitter and fuzz/fuzz_chat_stream: a
 * legacy body taken chat by chat (legacy_body.h: splitter, spool, per-chat
 * pre-check; then the envelope parsed whole and each chat parsed as the
 * merge parses it) must agree with one strict parse of the whole body
 * (ps__json_parse): the same bodies accepted, and for an accepted one the
 * same chats, in order, and the same everything else.
 */
#ifndef PS_CHAT_STREAM_DIFF_H
#define PS_CHAT_STREAM_DIFF_H

#include "core/json_parse.h"
#include "server/legacy_body.h"

#include <stdint.h>
#include <string.h>

/* NULL when both ways agree, else what differs. The body is fed in pieces
 * ending at cuts[0..ncuts) (increasing, each <= len), then the rest. */
static const char *chat_stream_disagreement(const char *text, size_t len, const size_t *cuts,
                                            size_t ncuts, const char *spool_dir, size_t memory_max)
{
    const char *problem = NULL;
    json_object *whole = NULL, *envelope = NULL, *chats = json_object_new_array();
    bool whole_ok = ps__json_parse(text, len, PS_JSON_MAX_DEPTH, &whole, NULL) == PS_OK;
    ps_legacy_body_config cfg = {.max_bytes = SIZE_MAX,
                                 .max_chats = SIZE_MAX,
                                 .max_depth = PS_JSON_MAX_DEPTH,
                                 .envelope_max = PS_ENVELOPE_MAX_BYTES,
                                 .chat_max = SIZE_MAX,
                                 .spool_dir = spool_dir,
                                 .memory_max = memory_max};
    ps_legacy_body *lb = ps_legacy_body_new(&cfg);
    size_t at = 0;
    for (size_t k = 0; k <= ncuts; k++) {
        size_t end = k < ncuts && cuts[k] < len ? cuts[k] : len;
        if (end < at)
            continue;
        if (ps_legacy_body_feed(lb, text + at, end - at) != PS_OK)
            problem = "feed refused bytes under the limit";
        at = end;
    }
    ps_error err;
    bool stream_ok = ps_legacy_body_finish(lb, &err) == PS_OK;
    ps_chat_source src = {0};
    if (stream_ok) {
        size_t n;
        const char *env = ps_legacy_body_envelope(lb, &n);
        stream_ok = ps__json_parse(env, n, PS_JSON_MAX_DEPTH, &envelope, &err) == PS_OK;
        ps_legacy_body_chats(lb, &src);
    }
    for (size_t i = 0; stream_ok && i < src.count; i++) {
        const char *bytes;
        size_t n;
        json_object *one = NULL;
        /* as a sync uses a chat it has no hash for: pre-checked first */
        stream_ok = ps_chat_source_check(&src, i, &err) == PS_OK &&
                    ps_chat_source_bytes(&src, i, &bytes, &n, &err) == PS_OK;
        /* json-c's parse gives NULL for null: no error, the validator's case */
        if (stream_ok && !(n == 4 && memcmp(bytes, "null", 4) == 0))
            stream_ok = ps__json_parse_trusted(bytes, n, &one, &err) == PS_OK;
        if (stream_ok)
            json_object_array_add(chats, one);
    }
    json_object *whole_chats = NULL, *env_chats = NULL;
    if (problem) {
    } else if (whole_ok != stream_ok) {
        problem = whole_ok ? "chat by chat refused a body a whole parse accepts"
                           : "chat by chat accepted a body a whole parse refuses";
    } else if (whole_ok && json_object_object_get_ex(whole, "chats", &whole_chats) &&
               json_object_is_type(whole_chats, json_type_array)) {
        if (!json_object_equal(whole_chats, chats))
            problem = "the chats differ";
        else if (!json_object_object_get_ex(envelope, "chats", &env_chats) ||
                 !json_object_is_type(env_chats, json_type_array) ||
                 json_object_array_length(env_chats) != 0)
            problem = "the envelope's chats are not []";
        else {
            json_object_object_del(whole, "chats");
            json_object_object_del(envelope, "chats");
            if (!json_object_equal(whole, envelope))
                problem = "the envelopes differ";
        }
    } else if (whole_ok) { /* no "chats" array: the envelope is the body */
        if (!json_object_equal(whole, envelope))
            problem = "the envelope is not the body";
        else if (!json_object_is_type(whole, json_type_object) ||
                 !json_object_object_get_ex(whole, "chats", NULL))
            problem = src.count ? "chats found in a body without any" : NULL;
    }
    json_object_put(whole);
    json_object_put(envelope);
    json_object_put(chats);
    ps_legacy_body_free(lb);
    return problem;
}

#endif
