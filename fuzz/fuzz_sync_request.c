/*
 * libFuzzer driver for the /sync request path, minus HTTP and storage:
 * strict parse -> validation -> legacy ingest of every chat -> merge into the
 * accumulated chat of its id -> legacy output -> stored state round trip.
 * Aborts when a valid request breaks an invariant of the merge: the stored
 * state reloads to the same state, merging a state into itself changes
 * nothing, and merging in either order gives the same state.
 */
#include "core/chat_codec.h"
#include "core/json_parse.h"
#include "core/merge.h"
#include "core/validate.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool same_state(const ps_chat *a, const ps_chat *b)
{
    json_object *x = ps__chat_state_to_json(a), *y = ps__chat_state_to_json(b);
    bool same = json_object_equal(x, y);
    json_object_put(x);
    json_object_put(y);
    return same;
}

/* The chat through its stored form, as the store writes and reads it. */
static ps_chat *reload(const ps_chat *chat)
{
    json_object *st = ps__chat_state_to_json(chat), *parsed = NULL;
    const char *text = ps__json_text(st, NULL);
    ps_chat *back = NULL;
    if (ps__json_parse(text, strlen(text), 10000, &parsed, NULL) != PS_OK ||
        ps__chat_state_from_json(parsed, &back, NULL) != PS_OK || !same_state(chat, back))
        abort();
    json_object_put(parsed);
    json_object_put(st);
    return back;
}

static void merge_or_abort(ps_chat *into, const ps_chat *from, bool must_not_change)
{
    bool changed;
    if (ps__chat_merge(into, from, &changed) != PS_OK || (must_not_change && changed))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_object *root = NULL, *chats;
    ps_limits lim = ps__limits_default();
    if (ps__json_parse((const char *)data, size, PS_JSON_MAX_DEPTH, &root, NULL) != PS_OK)
        return 0;
    if (ps__validate_sync_request(root, &lim, NULL) == PS_OK &&
        json_object_object_get_ex(root, "chats", &chats)) {
        ps_ingest in = {.device = "fuzz", .now_ms = 1705312800000LL, .max_skew_ms = 300000};
        size_t n = json_object_array_length(chats), k;
        ps_chat **acc = calloc(n + 1, sizeof *acc); /* one merged chat per id */
        for (size_t i = 0; i < n; i++) {
            ps_chat *chat = NULL;
            if (ps__chat_from_legacy(json_object_array_get_idx(chats, i), &in, &chat) != PS_OK)
                abort();
            ps_chat *self = reload(chat);
            merge_or_abort(self, chat, true);
            for (k = 0; acc[k] && strcmp(acc[k]->id, chat->id) != 0; k++)
                ;
            if (!acc[k])
                acc[k] = ps__chat_new(chat->id);
            ps_chat *other_way = reload(chat);
            merge_or_abort(other_way, acc[k], false);
            merge_or_abort(acc[k], chat, false);
            if (!same_state(acc[k], other_way))
                abort(); /* merge(acc, chat) != merge(chat, acc) */
            json_object_put(ps__chat_to_legacy(acc[k]));
            ps__chat_free(other_way);
            ps__chat_free(self);
            ps__chat_free(chat);
        }
        for (k = 0; acc[k]; k++) {
            ps__chat_free(reload(acc[k]));
            ps__chat_free(acc[k]);
        }
        free(acc);
    }
    json_object_put(root);
    return 0;
}
