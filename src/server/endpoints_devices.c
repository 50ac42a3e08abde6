/*
 * GET /v2/devices: the authenticated user's own devices as the registry
 * holds them (docs/protocol.md, "Devices"), so a client can show whether
 * the server knows it (`polysync status`) without the operator's tools.
 */
#include "core/json_build.h"
#include "core/timestamp.h"
#include "server/devices.h"
#include "server/router.h"

typedef struct listing {
    json_object *rows;
    int64_t now_ms, retention_ms;
    ps_code rc; /* PS_ERR_NOMEM: a row could not be built (the listing stopped) */
} listing;

static int add_device(void *ctx, const ps_device_row *d)
{
    listing *l = ctx;
    ps__json_push(&l->rc, l->rows, ps_device_row_json(d, l->now_ms, l->retention_ms));
    return l->rc != PS_OK;
}

void ps_handle_v2_devices(const ps_handler_env *env, json_object *body, ps_reply *reply)
{
    ps_error err;
    ps_error_clear(&err);
    listing l = {.rows = json_object_new_array(),
                 .now_ms = ps__time_now_ms(),
                 .retention_ms = env->tombstone_retention_ms};
    ps_store *st = env->store;
    ps_code rc = l.rows ? ps_store_begin(st, false, &err) : PS_ERR_NOMEM;
    if (rc == PS_OK) {
        rc = st->ops->device_list(st, env->user, add_device, &l, &err);
        if (rc == PS_OK)
            rc = l.rc;
        if (rc == PS_OK)
            rc = ps_store_commit(st, &err);
        else
            ps_store_rollback(st);
    }
    json_object *doc = rc == PS_OK ? json_object_new_object() : NULL;
    if (rc == PS_OK && !doc)
        rc = ps_error_set(&err, PS_ERR_NOMEM, -1, "", "out of memory");
    if (rc != PS_OK) {
        if (rc == PS_ERR_NOMEM)
            ps_error_set(&err, PS_ERR_NOMEM, -1, "", "out of memory");
        json_object_put(l.rows);
        ps_reply_from_error(reply, &err);
        return;
    }
    ps__json_set(&rc, doc, "devices", l.rows);
    const char *text = rc == PS_OK
                           ? json_object_to_json_string_ext(doc, JSON_C_TO_STRING_PLAIN |
                                                                     JSON_C_TO_STRING_NOSLASHESCAPE)
                           : NULL;
    if (!text)
        ps_reply_from_code(reply, PS_ERR_NOMEM, "building the device list");
    else if (ps__dynbuf_adds(&reply->body, text) != PS_OK)
        ps_reply_from_code(reply, PS_ERR_INTERNAL, "could not build the answer");
    json_object_put(doc);
}
