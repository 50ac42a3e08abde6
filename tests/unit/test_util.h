/*
 * Helpers shared by the unit suites: parse a JSON literal written in a test,
 * build stamps, compare chat states. Header-only (static inline) so each suite
 * stays one self-contained executable.
 */
#ifndef PS_TEST_UTIL_H
#define PS_TEST_UTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "core/chat.h"
#include "core/chat_codec.h"
#include "core/json_parse.h"

#include <stdio.h>
#include <string.h>

/* Parses a JSON literal that the test itself wrote, with plain json-c (not
 * the parser under test); fails the test if the literal is not JSON. */
static inline json_object *tu_json(const char *text)
{
    enum json_tokener_error jerr = json_tokener_success;
    json_object *obj = json_tokener_parse_verbose(text, &jerr);
    if (jerr != json_tokener_success)
        print_error("test literal is not JSON (%s): %s\n", json_tokener_error_desc(jerr), text);
    assert_int_equal(jerr, json_tokener_success);
    return obj;
}

static inline ps_stamp tu_stamp(int64_t ts, int64_t lamport, const char *device)
{
    return (ps_stamp){.ts = ts, .lamport = lamport, .device = (char *)device};
}

/* 2024-01-15T10:00:00.000Z plus `minutes`, in ms. */
static inline int64_t tu_t(int minutes)
{
    return 1705312800000LL + (int64_t)minutes * 60000;
}

static inline ps_chat *tu_from_legacy(const char *legacy_text, const char *device, int64_t now_ms)
{
    json_object *legacy = tu_json(legacy_text);
    ps_ingest in = {.device = device, .now_ms = now_ms, .max_skew_ms = 5 * 60 * 1000};
    ps_chat *chat = NULL;
    assert_int_equal(ps__chat_from_legacy(legacy, &in, &chat), PS_OK);
    assert_non_null(chat);
    json_object_put(legacy);
    return chat;
}

/* Whether two chats have the same state (every register and stamp). */
static inline bool tu_same_state(const ps_chat *a, const ps_chat *b)
{
    json_object *ja = ps__chat_state_to_json(a), *jb = ps__chat_state_to_json(b);
    assert_non_null(ja);
    assert_non_null(jb);
    bool same = json_object_equal(ja, jb);
    if (!same)
        print_message("state a: %s\nstate b: %s\n", ps__json_text(ja, NULL), ps__json_text(jb, NULL));
    json_object_put(ja);
    json_object_put(jb);
    return same;
}

/* The legacy form's "messages" ids, comma-separated, into buf. */
static inline const char *tu_legacy_message_ids(json_object *legacy, char *buf, size_t size)
{
    json_object *msgs;
    buf[0] = '\0';
    if (!json_object_object_get_ex(legacy, "messages", &msgs))
        return buf;
    size_t used = 0;
    for (size_t i = 0; i < json_object_array_length(msgs); i++) {
        json_object *id = json_object_object_get(json_object_array_get_idx(msgs, i), "id");
        int n = snprintf(buf + used, size - used, "%s%s", i ? "," : "", json_object_get_string(id));
        if (n < 0 || (size_t)n >= size - used)
            break;
        used += (size_t)n;
    }
    return buf;
}

/* A string member of a JSON object, or NULL. */
static inline const char *tu_get_str(json_object *obj, const char *key)
{
    json_object *v;
    if (!json_object_object_get_ex(obj, key, &v) || !json_object_is_type(v, json_type_string))
        return NULL;
    return json_object_get_string(v);
}

#endif
