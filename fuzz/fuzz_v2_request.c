/*
 * libFuzzer driver for the /v2/sync push path, minus HTTP and storage:
 * strict parse -> v2 validation -> v2 ingest of every change
 * (ps__chat_from_change) -> merge into the accumulated chat of its id, both
 * ways. Aborts when a validated change does not ingest, or the merge is not
 * commutative (acc+change != change+acc) or not idempotent.
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

static ps_chat *copy(const ps_chat *c)
{
    ps_chat *out = ps__chat_new(c->id);
    bool changed;
    if (!out || ps__chat_merge(out, c, &changed) != PS_OK)
        abort();
    return out;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_object *root = NULL, *changes;
    ps_limits lim = ps__limits_default();
    if (ps__json_parse((const char *)data, size, PS_JSON_MAX_DEPTH, &root, NULL) != PS_OK)
        return 0;
    if (ps__validate_v2_request(root, &lim, NULL) == PS_OK &&
        json_object_object_get_ex(root, "changes", &changes)) {
        const char *device = json_object_get_string(json_object_object_get(root, "deviceId"));
        ps_ingest in = {.device = device, .now_ms = 1780000000000LL, .max_skew_ms = 300000};
        size_t n = json_object_array_length(changes), k;
        ps_chat **acc = calloc(n + 1, sizeof *acc);
        for (size_t i = 0; i < n; i++) {
            ps_chat *chat = NULL;
            bool changed;
            if (ps__chat_from_change(json_object_array_get_idx(changes, i), &in, &chat) != PS_OK)
                abort();
            for (k = 0; acc[k] && strcmp(acc[k]->id, chat->id) != 0; k++)
                ;
            if (!acc[k])
                acc[k] = ps__chat_new(chat->id);
            ps_chat *other_way = copy(chat);
            if (ps__chat_merge(other_way, acc[k], &changed) != PS_OK ||
                ps__chat_merge(acc[k], chat, &changed) != PS_OK || !same_state(acc[k], other_way))
                abort();
            if (ps__chat_merge(acc[k], chat, &changed) != PS_OK || changed)
                abort(); /* not idempotent */
            json_object_put(ps__chat_to_legacy(acc[k]));
            ps__chat_free(other_way);
            ps__chat_free(chat);
        }
        for (k = 0; acc[k]; k++)
            ps__chat_free(acc[k]);
        free(acc);
    }
    json_object_put(root);
    return 0;
}
