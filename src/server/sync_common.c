/* Chat load/save shared by both sync protocols; see sync_common.h. */
#include "server/sync_common.h"
#include "core/chat_codec.h"
#include "core/json_parse.h"

ps_code ps__load_or_new(const ps_sync_ctx *ctx, const ps_user *user, const char *id,
                        bool with_messages, ps_chat **out, ps_error *err)
{
    ps_code rc = ctx->store->ops->chat_load(ctx->store, user->id, id, with_messages, out, err);
    if (rc == PS_OK && *out) {
        (*out)->stored = true;
        (*out)->stored_live = ps_chat_is_live(*out);
        (*out)->stored_counter = (*out)->lamport.counter;
    } else if (rc == PS_OK && !(*out = ps_chat_new(id))) {
        rc = ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
    }
    return rc;
}

/* The stamp a legacy client's copy of `chat`, as rendered now, will carry
 * when sent back (see ps_legacy_stamp): the server's tick and the time the
 * rendering shows. Then that copy is exactly the restamped state. */
static ps_code restamp_as_sent(ps_chat *chat)
{
    const ps_time_field *times[3] = {&chat->last_modified, &chat->updated_at, &chat->created_at};
    ps_stamp stamp = {.lamport = chat->lamport.counter, .device = chat->lamport.id};
    for (int k = 0; k < 3; k++) {
        if (times[k]->value) {
            stamp.ts = times[k]->ms;
            break;
        }
    }
    return ps_chat_restamp(chat, &stamp);
}

ps_code ps__save_chat(const ps_sync_ctx *ctx, ps_user *user, ps_chat *chat, const char *origin,
                      bool full, ps_tick tick, ps_error *err)
{
    ps_code rc = PS_OK;
    /* A live chat whose content changed goes out on the live sockets
     * (ws.h), and the Polyglot app stores a pushed chat only if its tuple
     * strictly dominates the copy it holds, which is at most the one the
     * chat had: so a change always moves the tuple above it. */
    if (tick == PS_TICK_IF_NONE && chat->stored && ps_chat_is_dirty(chat) &&
        ps_chat_is_live(chat) && chat->lamport.counter <= chat->stored_counter)
        tick = PS_TICK;
    if (tick != PS_TICK_IF_NONE || chat->lamport.counter == 0)
        rc = ps_lamport_set(&chat->lamport, ++user->clock, PS_SERVER_DEVICE);
    if (rc == PS_OK && tick == PS_TICK_AND_RESTAMP)
        rc = restamp_as_sent(chat);
    /* Only a change of content moves the chat in the change sequence; a
     * Lamport tick for a legacy client is not news to anyone else. */
    int64_t seq = 0;
    if (rc == PS_OK && ps_chat_is_dirty(chat)) {
        seq = ++user->seq;
        rc = ps_chat_mark_dirty(chat, seq, origin);
        /* back from deletion: devices that dropped it need it whole */
        if (chat->stored && !chat->stored_live && ps_chat_is_live(chat))
            chat->revived_seq = seq;
    }
    if (rc != PS_OK)
        return ps_error_set(err, rc, -1, "", "out of memory");
    json_object *doc = NULL;
    const char *text = NULL;
    size_t len = 0;
    if (full) {
        if (!(doc = ps_chat_to_legacy(chat)))
            return ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
        text = ps_json_text(doc, &len);
    }
    rc = ctx->store->ops->chat_save(ctx->store, user->id, chat, text, len, seq, err);
    json_object_put(doc);
    return rc;
}

ps_code ps__append_doc(const ps_sync_ctx *ctx, int64_t user_id, const ps_chat_row *row,
                       ps_dynbuf *out, ps_error *err)
{
    size_t doc_len;
    const char *doc_text = row->doc(row, &doc_len);
    if (doc_text)
        return ps_dynbuf_add(out, doc_text, doc_len);
    ps_chat *chat = NULL;
    ps_code rc = ctx->store->ops->chat_load(ctx->store, user_id, row->id, true, &chat, err);
    if (rc != PS_OK)
        return rc;
    if (!chat)
        return ps_error_set(err, PS_ERR_STORE, -1, "", "chat %s vanished while listed", row->id);
    json_object *doc = ps_chat_to_legacy(chat);
    ps_chat_free(chat);
    if (!doc)
        return ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
    size_t len;
    const char *text = ps_json_text(doc, &len);
    rc = ps_dynbuf_add(out, text, len);
    json_object_put(doc);
    return rc;
}

ps_code ps__commit(const ps_sync_ctx *ctx, int64_t seq_before, const ps_user *user, ps_error *err)
{
    if (ctx->quota_bytes > 0 && user->seq != seq_before) {
        int64_t now = 0;
        ps_code q = ctx->store->ops->user_bytes(ctx->store, user->id, &now, err);
        if (q == PS_OK && now > ctx->quota_bytes && now > user->bytes)
            q = ps_error_set(err, PS_ERR_QUOTA, -1, "",
                             "this would store %lld bytes; the quota is %lld bytes", (long long)now,
                             (long long)ctx->quota_bytes);
        if (q != PS_OK) {
            ps_store_rollback(ctx->store);
            return q;
        }
    }
    /* other instances on the same database hear of it once it commits */
    if (user->seq != seq_before && ctx->store->ops->announce) {
        ps_code a = ctx->store->ops->announce(ctx->store, ctx->user, ctx->device, seq_before,
                                              user->seq, err);
        if (a != PS_OK) {
            ps_store_rollback(ctx->store);
            return a;
        }
    }
    ps_code rc = ps_store_commit(ctx->store, err);
    if (rc == PS_OK && user->seq != seq_before && ctx->changed)
        ctx->changed(ctx->changed_cls, ctx->user, ctx->device, seq_before, user->seq);
    return rc;
}
