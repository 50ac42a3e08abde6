/*
 * Whether the server knows this device: GET /v2/devices (docs/protocol.md,
 * "Devices") lists the user's devices; this one is known, expired (silent
 * longer than the tombstone retention: its next sync gets 410), or not
 * listed. Asked once, without retries: `polysync status` must answer
 * offline too, so no answer is a state ("unreachable"), not an error. The
 * full resync (full_resync.c) asks it too, to tell an expired device from a
 * server restored from a backup.
 */
#include "client/client_internal.h"
#include "client/http.h"
#include "core/json_parse.h"

#include <string.h>

const char *ps_client_device_known_name(ps_device_known k)
{
    switch (k) {
    case PS_DEVICE_KNOWN:
        return "known";
    case PS_DEVICE_EXPIRED:
        return "expired";
    case PS_DEVICE_UNKNOWN:
        return "unknown";
    case PS_DEVICE_UNREACHABLE:
        break;
    }
    return "unreachable";
}

/* This device's entry in a {"devices": [...]} document. */
static ps_device_known find_device(json_object *doc, const char *device)
{
    json_object *list;
    if (!json_object_is_type(doc, json_type_object) ||
        !json_object_object_get_ex(doc, "devices", &list) ||
        !json_object_is_type(list, json_type_array))
        return PS_DEVICE_UNREACHABLE; /* not an answer from a registry */
    size_t n = json_object_array_length(list);
    for (size_t i = 0; i < n; i++) {
        json_object *d = json_object_array_get_idx(list, i), *id, *expired;
        if (json_object_object_get_ex(d, "id", &id) &&
            strcmp(json_object_get_string(id), device) == 0)
            return json_object_object_get_ex(d, "expired", &expired) &&
                           json_object_get_boolean(expired)
                       ? PS_DEVICE_EXPIRED
                       : PS_DEVICE_KNOWN;
    }
    return PS_DEVICE_UNKNOWN;
}

ps_code ps_client_device_known(ps_client *c, ps_device_known *out, ps_error *err)
{
    ps_error_clear(err);
    *out = PS_DEVICE_UNREACHABLE;
    if (!c->server)
        return PS_OK;
    ps_http_answer a;
    ps_error ignored; /* any failure only means "no answer" */
    ps__http_answer_init(&a);
    int status = c->last_status;
    json_object *doc = NULL;
    if (ps__http_get_once(c, "/v2/devices", NULL, &a, &ignored) == PS_OK && a.status == 200 &&
        ps__json_parse(a.body.data ? a.body.data : "", a.body.len, PS_JSON_MAX_DEPTH, &doc,
                      &ignored) == PS_OK)
        *out = find_device(doc, c->device);
    json_object_put(doc);
    ps__http_answer_free(&a);
    c->last_status = status; /* a sync's status, not this question's */
    return PS_OK;
}
