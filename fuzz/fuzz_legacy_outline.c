/*
 * libFuzzer driver for the legacy /sync body path of endpoints_legacy.c and
 * sync_legacy.c: the pre-check outlines the elements of "chats", each
 * element's bytes are hashed and parsed on their own, validated and
 * ingested. Aborts when the outline disagrees with a whole parse: an outline
 * found on a body the strict parser accepts must have exactly as many
 * elements as the parsed "chats" array, each slice must parse to the same
 * JSON as the element, and a body the pre-check accepts must never make an
 * element slice fail the pre-check.
 */
#include "core/chat_codec.h"
#include "core/hash.h"
#include "core/json_parse.h"
#include "core/json_precheck.h"
#include "core/validate.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    ps_json_outline o = {0};
    if (ps__json_precheck_outline(text, size, PS_JSON_MAX_DEPTH, &o, NULL) != PS_OK) {
        ps__json_outline_free(&o);
        return 0;
    }
    json_object *root = NULL, *chats = NULL;
    bool whole = ps__json_parse(text, size, PS_JSON_MAX_DEPTH, &root, NULL) == PS_OK;
    if (o.found && whole && json_object_object_get_ex(root, "chats", &chats) &&
        json_object_is_type(chats, json_type_array)) {
        if (json_object_array_length(chats) != o.count)
            abort();
        ps_limits lim = ps__limits_default();
        ps_ingest in = {.device = "fuzz", .now_ms = 1705312800000LL, .max_skew_ms = 300000};
        for (size_t i = 0; i < o.count; i++) {
            if (o.starts[i] > o.ends[i] || o.ends[i] > size)
                abort();
            const char *slice = text + o.starts[i];
            size_t len = o.ends[i] - o.starts[i];
            (void)ps__hash_bytes(slice, len);
            json_object *one = NULL;
            if (ps__json_parse(slice, len, PS_JSON_MAX_DEPTH, &one, NULL) != PS_OK)
                abort(); /* an element of a valid body is valid JSON */
            if (!json_object_equal(one, json_object_array_get_idx(chats, i)))
                abort();
            if (ps__validate_chat(one, (long)i, &lim, NULL) == PS_OK) {
                ps_chat *chat = NULL;
                if (ps__chat_from_legacy(one, &in, &chat) != PS_OK)
                    abort();
                ps__chat_free(chat);
            }
            json_object_put(one);
        }
    }
    json_object_put(root);
    ps__json_outline_free(&o);
    return 0;
}
