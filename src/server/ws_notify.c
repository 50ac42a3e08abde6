/*
 * "Chats of user U changed": what goes out on the live sockets (ws.h).
 * Every chat the sync changed is read back from the store after the commit
 * and rendered as a legacy answer's `missing` entry holds it (the whole
 * chat with its updatedAtLamport), which is the frame the Polyglot app
 * stores. Reading back, instead of taking the merge's result in memory,
 * keeps this the one entry point for every source of changes: a request of
 * this server, or (later) a change another instance announces.
 */
#include "core/chat_codec.h"
#include "core/json_parse.h"
#include "server/ws.h"

#include <stdio.h>

/* Renders and queues one chat; *more false when no socket takes more. */
static ps_code publish_chat(ps_ws *ws, ps_store *store, const ps_user *user, const char *name,
                            const char *device, const char *id, bool *more, ps_error *err)
{
    ps_chat *chat = NULL;
    ps_code rc = store->ops->chat_load(store, user->id, id, true, &chat, err);
    if (rc != PS_OK || !chat)
        return rc;
    if (ps__chat_is_live(chat)) {
        json_object *doc = ps__chat_to_legacy(chat);
        size_t len = 0;
        const char *text = doc ? ps__json_text(doc, &len) : NULL;
        if (!text)
            rc = ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
        else
            *more = ps_ws_publish(ws, name, device, id, text, len) > 0;
        json_object_put(doc);
    }
    ps__chat_free(chat);
    return rc;
}

void ps_ws_chats_changed(ps_ws *ws, ps_store *store, const char *user, const char *device,
                         int64_t seq_before, int64_t seq_after)
{
    if (!ws || seq_after <= seq_before || !ps_ws_has_listeners(ws, user, device))
        return;
    ps_error err;
    ps_error_clear(&err);
    ps_user u;
    bool found = false;
    if (ps_store_begin(store, false, &err) != PS_OK)
        goto failed;
    if (store->ops->user_find(store, user, &u, &found, &err) != PS_OK)
        goto rollback;
    /* Chats are listed by the sequence number of their last change: those
     * in (before, after] are this sync's. One changed again since has moved
     * past `after`, and that later sync sends its newer state. */
    for (int64_t pos = seq_before; found;) {
        ps_chat *head = NULL;
        int64_t seq = 0;
        if (store->ops->chat_next_changed(store, u.id, pos, &head, &seq, &err) != PS_OK)
            goto rollback;
        if (!head || seq > seq_after) {
            ps__chat_free(head);
            break;
        }
        pos = seq;
        bool more = true;
        ps_code rc = publish_chat(ws, store, &u, user, device, head->id, &more, &err);
        ps__chat_free(head);
        if (rc != PS_OK)
            goto rollback;
        if (!more)
            break;
    }
    if (ps_store_commit(store, &err) == PS_OK)
        return;
    goto failed;
rollback:
    ps_store_rollback(store);
failed:
    /* the sync itself stands: devices get the change at their next sync */
    fprintf(stderr, "polysyncd: live socket: cannot read the changed chats: %s\n", err.message);
}
