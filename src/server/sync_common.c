/* Chat load/save shared by both sync protocols; see sync_common.h. */
#include "server/sync_common.h"
#include "server/metrics.h"
#include "core/chat_codec.h"
#include "core/json_compact.h"
#include "core/json_parse.h"

ps_code ps__load_or_new(const ps_sync_ctx *ctx, const ps_user *user, const char *id,
                        bool with_messages, ps_chat **out, ps_error *err)
{
    ps_code rc = ctx->store->ops->chat_load(ctx->store, user->id, id, with_messages, out, err);
    if (rc == PS_OK && *out) {
        (*out)->stored = true;
        (*out)->stored_live = ps__chat_is_live(*out);
        (*out)->stored_counter = (*out)->lamport.counter;
    } else if (rc == PS_OK && !(*out = ps__chat_new(id))) {
        rc = ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
    }
    return rc;
}

/* For /metrics: a chat a sync changed, and its messages that changed
 * (counted when saved; a sync rolled back later still counts). */
static void count_merged(const ps_chat *chat)
{
    uint64_t messages = 0;
    for (size_t i = 0; i < chat->nmessages; i++)
        messages += chat->messages[i].mark.dirty;
    ps_metrics_merged(1, messages);
}

ps_code ps__save_chat(const ps_sync_ctx *ctx, ps_user *user, ps_chat *chat, const char *origin,
                      bool full, ps_tick tick, ps_error *err)
{
    ps_code rc = PS_OK;
    /* Back from deletion, or a deletion of it lost: a Polyglot client that
     * holds a deletion of it takes it back only with a tuple above that
     * deletion's, so it gets a fresh tick (above every tuple shown so far). */
    bool back =
        ps__chat_is_live(chat) && ((chat->stored && !chat->stored_live) || chat->deletion_lost);
    if (back && ps__chat_is_dirty(chat) == false) { /* make it news for v2 pulls too */
        ps__mark_clear(&chat->header);
        chat->header.dirty = true;
    }
    /* A live chat whose content changed goes out on the live sockets
     * (ws.h), and the Polyglot app stores a pushed chat only if its tuple
     * strictly dominates the copy it holds, which is at most the one the
     * chat had: so a change always moves the tuple above it. */
    if (tick == PS_TICK_IF_NONE && chat->stored && ps__chat_is_dirty(chat) &&
        ps__chat_is_live(chat) && chat->lamport.counter <= chat->stored_counter)
        tick = PS_TICK;
    if (tick != PS_TICK_IF_NONE || chat->lamport.counter == 0 || back)
        rc = ps__lamport_set(&chat->lamport, ++user->clock, PS_SERVER_DEVICE);
    /* new messages take their place in the order first received */
    ps__chat_number_received(chat);
    /* Only a change of content moves the chat in the change sequence; a
     * Lamport tick for a legacy client is not news to anyone else. */
    int64_t seq = 0;
    if (rc == PS_OK && ps__chat_is_dirty(chat)) {
        count_merged(chat);
        seq = ++user->seq;
        rc = ps__chat_mark_dirty(chat, seq, origin);
        /* back from deletion: devices that dropped it need it whole */
        if (back)
            chat->revived_seq = seq;
    }
    if (rc != PS_OK)
        return ps_error_set(err, rc, -1, "", "out of memory");
    /* The rendering, by the compact writer (json-c's text, json_compact.h)
     * into a buffer sized once: json-c's own grew a printbuf by doubling
     * and copied every message's kept text through it. */
    ps_dynbuf text;
    ps__dynbuf_init(&text, SIZE_MAX - 1);
    /* A chat new to the store that the store keeps as a pack, from which
     * legacy reads put it together (schema 14): not rendered here. */
    bool from_pack = full && !chat->stored && ctx->store->ops->keeps_legacy_pack &&
                     ctx->store->ops->keeps_legacy_pack(ctx->store, user->id, chat);
    if (full && !from_pack) {
        json_object *doc = ps__chat_to_legacy(chat);
        size_t guess = 256;
        for (size_t i = 0; i < chat->nmessages; i++) {
            size_t n = 0;
            if (chat->messages[i].value && ps__json_text_kept(chat->messages[i].value, &n))
                guess += n + 1;
        }
        rc = !doc ? PS_ERR_NOMEM : ps__dynbuf_reserve(&text, guess);
        if (rc == PS_OK)
            rc = ps__json_compact_append(&text, doc);
        json_object_put(doc);
        if (rc != PS_OK) {
            ps__dynbuf_free(&text);
            return ps_error_set(err, rc, -1, "", "out of memory");
        }
    }
    const char *doc = from_pack ? PS_DOC_FROM_PACK : full ? text.data : NULL;
    rc = ctx->store->ops->chat_save(ctx->store, user->id, chat, doc, text.len, seq, err);
    ps__dynbuf_free(&text);
    return rc;
}

ps_code ps__append_doc(const ps_sync_ctx *ctx, int64_t user_id, const ps_chat_row *row,
                       ps_dynbuf *out, ps_error *err)
{
    ps_code rc;
    if (row->doc_append) { /* straight into the answer: no copy in between */
        bool appended = false;
        if ((rc = row->doc_append(row, out, &appended, err)) != PS_OK || appended)
            return rc;
    } else {
        size_t doc_len;
        const char *doc_text = row->doc(row, &doc_len);
        if (doc_text)
            return ps__dynbuf_add(out, doc_text, doc_len);
    }
    ps_chat *chat = NULL;
    rc = ctx->store->ops->chat_load(ctx->store, user_id, row->id, true, &chat, err);
    if (rc != PS_OK)
        return rc;
    if (!chat)
        return ps_error_set(err, PS_ERR_STORE, -1, "", "chat %s vanished while listed", row->id);
    json_object *doc = ps__chat_to_legacy(chat);
    ps__chat_free(chat);
    if (!doc)
        return ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
    size_t len;
    const char *text = ps__json_text(doc, &len);
    rc = text ? ps__dynbuf_add(out, text, len)
              : ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
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

ps_code ps__base_note_sent(const ps_sync_ctx *ctx, const char *chat_id, const char *device,
                           ps_error *err)
{
    if (!device || !*device)
        return PS_OK;
    ps_user user;
    ps_chat *chat = NULL;
    ps_base base = {0};
    int64_t seq;
    bool found;
    ps_code rc = ps_store_begin(ctx->store, true, err);
    if (rc != PS_OK)
        return rc;
    if ((rc = ctx->store->ops->user_load(ctx->store, ctx->user, &user, err)) == PS_OK &&
        (rc = ctx->store->ops->base_load(ctx->store, user.id, device, chat_id, &base, &seq, &found,
                                         err)) == PS_OK &&
        (rc = ctx->store->ops->chat_load(ctx->store, user.id, chat_id, true, &chat, err)) ==
            PS_OK &&
        chat) {
        if ((rc = ps__base_add_chat(&base, chat)) != PS_OK)
            rc = ps_error_set(err, rc, -1, "", "out of memory");
        ps__base_seal(&base);
        if (rc == PS_OK) /* a union: not the chat as stored (seq 0) */
            rc = ctx->store->ops->base_save(ctx->store, user.id, device, chat_id, &base, 0, err);
    }
    ps__chat_free(chat);
    ps__base_free(&base);
    if (rc == PS_OK)
        return ps_store_commit(ctx->store, err);
    ps_store_rollback(ctx->store);
    return rc;
}
