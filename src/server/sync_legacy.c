/*
 * Legacy /sync, /pushChats, /fetchChats and deletions on top of the merge.
 *
 * The trap this file exists to avoid: today's Polyglot client applies a chat
 * it already holds only if the chat's updatedAtLamport strictly dominates its
 * own copy. So whenever the merged chat differs from what a client sent, the
 * chat gets a fresh tick of the per-user server clock, which first observes
 * every Lamport counter in the request, so the tick is above all of them.
 */
#include "server/sync_legacy.h"
#include "server/legacy_pipe.h"
#include "core/chat_codec.h"
#include "core/json_parse.h"
#include "core/merge.h"
#include "core/hash.h"
#include "server/content_hash.h"
#include "core/timestamp.h"
#include "core/share.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Who asked for a deletion, for stamping it (see delete_one). */
typedef struct deletion_source {
    const char *device;  /* the request's deviceId, or "" */
    bool speaks_lamport; /* the request carried Lamport counters */
} deletion_source;

/* Raises the user clock to every Lamport counter a request carries; true
 * if it carried any. */
static bool observe_clocks(json_object *req, int64_t *clock)
{
    json_object *v, *c, *list;
    bool any = false;
#define OBSERVE(n)                                                                                 \
    do {                                                                                           \
        int64_t n_ = (n);                                                                          \
        any = true;                                                                                \
        if (n_ > *clock)                                                                           \
            *clock = n_;                                                                           \
    } while (0)
    if (json_object_object_get_ex(req, "clientClock", &v) && v) {
        /* every shape ps__valid_client_clock accepts: a counter, [n, id],
         * or an object whose counter keys are all observed */
        if (json_object_is_type(v, json_type_array))
            OBSERVE(json_object_get_int64(json_object_array_get_idx(v, 0)));
        else if (!json_object_is_type(v, json_type_object))
            OBSERVE(json_object_get_int64(v));
        for (size_t k = 0; k < PS_CLIENT_CLOCK_KEYS; k++)
            if (json_object_is_type(v, json_type_object) &&
                json_object_object_get_ex(v, ps__client_clock_keys[k], &c))
                OBSERVE(json_object_get_int64(c));
    }
    static const char *const lists[2][2] = {{"deletions", "lamport"},
                                            {"deletionRecords", "deletedAtLamport"}};
    for (int k = 0; k < 2; k++) {
        if (!json_object_object_get_ex(req, lists[k][0], &list) ||
            !json_object_is_type(list, json_type_array))
            continue;
        size_t n = json_object_array_length(list);
        for (size_t i = 0; i < n; i++)
            if (json_object_object_get_ex(json_object_array_get_idx(list, i), lists[k][1], &v) &&
                json_object_is_type(v, json_type_array))
                OBSERVE(json_object_get_int64(json_object_array_get_idx(v, 0)));
    }
#undef OBSERVE
    return any;
}

/* Saves what `device` holds of a chat after this sync: what it sent and, when
 * the chat goes back to it, what it is sent (docs/merge.md, "The base rule"). */
static ps_code save_base(const ps_sync_ctx *ctx, const ps_user *user, const char *device,
                         const char *id, ps_base *sent, const ps_chat *returned, ps_error *err)
{
    ps_code rc = returned ? ps__base_add_chat(sent, returned) : PS_OK;
    if (rc != PS_OK)
        return ps_error_set(err, rc, -1, "", "out of memory");
    ps__base_seal(sent);
    return ctx->store->ops->base_save(ctx->store, user->id, device, id, sent, 0, err);
}

/* save_base after a merge: `sent` holds the device's base already when
 * `has_base` (worked out before its carried values were dropped), else it
 * is worked out from `incoming`, untouched by the merge. A chat new to the
 * store, saved and not going back (`as_saved`), is on the device exactly
 * as saved: its base is the hashes the save kept (base_copy), not worked
 * out again (a hash of every message: 13 % of a first upload's merging
 * thread). */
static ps_code keep_base(const ps_sync_ctx *ctx, const ps_user *user, const char *device,
                         const char *id, ps_base *sent, bool has_base, const ps_chat *incoming,
                         bool as_saved, const ps_chat *returned, ps_error *err)
{
    bool copied = false;
    ps_code rc = PS_OK;
    if (!has_base && as_saved)
        rc = ctx->store->ops->base_copy(ctx->store, user->id, device, id, 0, &copied, err);
    if (rc != PS_OK || copied)
        return rc;
    if (!has_base && (rc = ps__base_add_chat(sent, incoming)) != PS_OK)
        return ps_error_set(err, rc, -1, "", "out of memory");
    return save_base(ctx, user, device, id, sent, returned, err);
}

/* A copy of a deleted chat that is not newer than the deletion as the client
 * is shown it would never be dropped by a Polyglot client (it drops a chat
 * only for a deletion tuple at least its own): show it a fresh tick. */
static ps_code reshow_deletion(ps_user *user, ps_chat *stored, const ps_stamp *sent_stamp,
                               bool *changed)
{
    if (ps__chat_is_live(stored) || !stored->has_tombstone || sent_stamp->lamport == 0 ||
        sent_stamp->timed)
        return PS_OK;
    ps_lamport copy = {.counter = sent_stamp->lamport, .id = sent_stamp->device};
    if (ps__lamport_cmp(&stored->deleted_lamport, &copy) > 0)
        return PS_OK;
    *changed = true;
    return ps__lamport_set(&stored->deleted_lamport, ++user->clock, PS_SERVER_DEVICE);
}

/*
 * Merges one incoming chat. With a device whose base for the chat is known,
 * values it only carried along are dropped first (the base rule); without
 * one (a new device, no deviceId) every value is a write. `made`: the
 * chat built from `sent` ahead (legacy_pipe.h), taken; NULL: built here.
 * *returned: the client must be sent the result.
 */
static ps_code merge_one(const ps_sync_ctx *ctx, ps_user *user, json_object *sent, ps_chat *made,
                         const ps_ingest *in_req, bool *returned, ps_error *err)
{
    ps_chat *incoming = made, *stored = NULL;
    ps_stamp sent_stamp = {0};
    ps_base sent_base = {0}, known = {0};
    bool has_base = false, with_base = in_req->device && *in_req->device;
    const char *id = json_object_get_string(json_object_object_get(sent, "id"));
    ps_code rc = ps__load_or_new(ctx, user, id, true, &stored, err);
    if (rc != PS_OK)
        goto done;
    ps_ingest in = *in_req;
    if (!incoming)
        rc = ps__chat_from_legacy(sent, &in, &incoming);
    if (rc == PS_OK)
        rc = ps__legacy_stamp(sent, &in, &sent_stamp);
    if (rc == PS_OK && sent_stamp.lamport == 0) { /* a time-only client */
        int64_t place = ps__chat_time_place(stored, sent_stamp.ts);
        ps__chat_place_time_only(incoming, place);
        if (place > 0) {
            sent_stamp.lamport = place;
            sent_stamp.timed = true;
        }
    }
    if (rc != PS_OK) {
        rc = ps_error_set(err, rc, -1, "", "out of memory");
        goto done;
    }
    int64_t base_seq;
    if (with_base && (rc = ctx->store->ops->base_load(ctx->store, user->id, in.device, id, &known,
                                                      &base_seq, &has_base, err)) != PS_OK)
        goto done;
    /* What the device sent, its base after this sync: worked out here
     * only when its carried values are about to be dropped from
     * `incoming`; else after the merge, which only copies from it */
    if (has_base && (rc = ps__base_add_chat(&sent_base, incoming)) != PS_OK) {
        rc = ps_error_set(err, rc, -1, "", "out of memory");
        goto done;
    }
    bool was_new = !stored->stored;
    if (has_base) {
        size_t writes;
        ps__chat_drop_carried(incoming, &known, &writes);
    }
    bool changed;
    if ((rc = ps__chat_merge(stored, incoming, &changed)) != PS_OK ||
        (rc = reshow_deletion(user, stored, &sent_stamp, &changed)) != PS_OK) {
        rc = ps_error_set(err, rc, -1, "", "out of memory");
        goto done;
    }
    /* its pack made ahead (legacy_pipe.h), for a chat still new to the
     * store: the save checks it is still what it would make */
    if (!stored->stored)
        stored->pack_form = incoming->pack_form;
    *returned = ps__chat_is_live(stored) && ps__chat_differs_from_sent(stored, sent, &sent_stamp);
    if (changed || *returned)
        rc = ps__save_chat(ctx, user, stored, in.device, true,
                           *returned ? PS_TICK : PS_TICK_IF_NONE, err);
    if (rc == PS_OK && with_base)
        rc = keep_base(ctx, user, in.device, id, &sent_base, has_base, incoming,
                       was_new && changed && !*returned, *returned ? stored : NULL, err);
done:
    ps__base_free(&sent_base);
    ps__base_free(&known);
    ps__stamp_clear(&sent_stamp);
    ps__chat_free(incoming);
    ps__chat_free(stored);
    return rc;
}

/*
 * Applies one deletion. With the client's Lamport tuple, that is its stamp.
 * Without one the server stamps it after everything it has seen of the chat,
 * in the order its writers use: a tick of the user clock when the request or
 * the chat's newest write speaks Lamport (so stale Lamport copies stay
 * deleted), else a time no earlier than the chat's newest write (so a
 * time-only client's later edit can still bring the chat back).
 * Either way clients are shown a fresh tick, which Lamport clients apply.
 */
static ps_code delete_one(const ps_sync_ctx *ctx, ps_user *user, const char *id,
                          json_object *lamport, json_object *deleted_at, const deletion_source *src,
                          bool *deleted, ps_error *err)
{
    ps_chat *chat = NULL;
    ps_code rc = ps__load_or_new(ctx, user, id, false, &chat, err);
    if (rc != PS_OK)
        return rc;
    bool was_live = ps__chat_is_live(chat);
    const ps_stamp *newest = ps__chat_newest_change(chat);
    ps_stamp stamp = {.ts = ctx->now_ms};
    ps_lamport shown = {0};
    int64_t ms;
    if (deleted_at && ps__time_from_json(deleted_at, &ms))
        stamp.ts = ms < ctx->now_ms + ctx->max_skew_ms ? ms : ctx->now_ms + ctx->max_skew_ms;
    const char *dev = *src->device ? src->device : PS_SERVER_DEVICE;
    if (lamport) {
        stamp.lamport = json_object_get_int64(json_object_array_get_idx(lamport, 0));
        dev = json_object_get_string(json_object_array_get_idx(lamport, 1));
        shown.counter = stamp.lamport;
        shown.id = (char *)dev;
    } else {
        shown.counter = ++user->clock;
        shown.id = PS_SERVER_DEVICE;
        if (src->speaks_lamport || (newest && newest->lamport > 0))
            stamp.lamport = shown.counter;
        else if (newest && newest->ts >= stamp.ts)
            stamp.ts = newest->ts + 1;
    }
    stamp.device = strdup(dev);
    bool changed = false;
    if (!stamp.device)
        rc = ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
    else if ((rc = ps__chat_delete(chat, &stamp, &shown, &changed)) != PS_OK)
        rc = ps_error_set(err, rc, -1, "", "out of memory");
    else if ((chat->deletion_lost = changed && ps__chat_is_live(chat)), changed)
        /* messages not loaded: the rendering is redone on demand */
        rc = ps__save_chat(ctx, user, chat, src->device, false, PS_TICK_IF_NONE, err);
    *deleted = was_live && !ps__chat_is_live(chat);
    ps__stamp_clear(&stamp);
    ps__chat_free(chat);
    return rc;
}

static ps_code apply_deletions(const ps_sync_ctx *ctx, ps_user *user, json_object *req,
                               const deletion_source *src, ps_error *err)
{
    json_object *list;
    bool deleted;
    ps_code rc = PS_OK;
    if (json_object_object_get_ex(req, "deleted", &list) &&
        json_object_is_type(list, json_type_array)) {
        size_t n = json_object_array_length(list);
        for (size_t i = 0; i < n && rc == PS_OK; i++)
            rc = delete_one(ctx, user, json_object_get_string(json_object_array_get_idx(list, i)),
                            NULL, NULL, src, &deleted, err);
    }
    static const char *const kinds[2][2] = {{"deletions", "lamport"},
                                            {"deletionRecords", "deletedAtLamport"}};
    for (int k = 0; k < 2 && rc == PS_OK; k++) {
        if (!json_object_object_get_ex(req, kinds[k][0], &list) ||
            !json_object_is_type(list, json_type_array))
            continue;
        size_t n = json_object_array_length(list);
        for (size_t i = 0; i < n && rc == PS_OK; i++) {
            json_object *item = json_object_array_get_idx(list, i), *lam = NULL, *at = NULL;
            json_object_object_get_ex(item, kinds[k][1], &lam);
            json_object_object_get_ex(item, "deletedAt", &at);
            if (lam && !json_object_is_type(lam, json_type_array))
                lam = NULL;
            rc = delete_one(ctx, user, json_object_get_string(json_object_object_get(item, "id")),
                            lam, at, src, &deleted, err);
        }
    }
    return rc;
}

/* Plans {missing, deletions} while listing the user's chats (the docs are
 * read later, piece by piece: legacy_answer.h). */
typedef struct answer_builder {
    const ps_sync_ctx *ctx;
    int64_t user_id;
    ps_legacy_answer *answer;
    const char *device;    /* whose base a chat it is sent becomes, or "" */
    json_object *sent;     /* id -> true: returned only if in `returned` */
    json_object *returned; /* ids whose merge the client lacks */
    size_t ndeletions;
    ps_code rc;
    ps_error *err;
} answer_builder;

static ps_code add_deletion(ps_dynbuf *b, size_t *count, const ps_chat_row *row)
{
    ps_code rc = ps__dynbuf_adds(b, *count ? ",{\"id\":" : "{\"id\":");
    if (rc == PS_OK)
        rc = ps__dynbuf_add_json_string(b, row->id);
    for (int k = 0; k < 2 && rc == PS_OK; k++) {
        rc = ps__dynbuf_addf(b, k ? ",\"deletedAtLamport\":[%lld," : ",\"lamport\":[%lld,",
                             (long long)row->deleted_counter);
        if (rc == PS_OK)
            rc = ps__dynbuf_add_json_string(b, row->deleted_device);
        if (rc == PS_OK)
            rc = ps__dynbuf_adds(b, "]");
    }
    if (rc == PS_OK)
        rc = ps__dynbuf_adds(b, "}");
    ++*count;
    return rc;
}

/* A chat the device did not send is sent whole: that is its base now (not
 * worked out again while the chat has not changed since). */
static ps_code base_of_download(answer_builder *a, const ps_chat_row *row)
{
    const ps_sync_ctx *ctx = a->ctx;
    const char *id = row->id;
    ps_chat *chat = NULL;
    ps_base base = {0};
    int64_t at_seq = 0;
    bool found = false;
    ps_code rc = ctx->store->ops->base_load(ctx->store, a->user_id, a->device, id, NULL, &at_seq,
                                            &found, a->err);
    if (rc != PS_OK || (found && at_seq == row->seq && row->seq > 0))
        return rc;
    bool copied = false; /* kept with the rendering being sent: the cheap way */
    rc = ctx->store->ops->base_copy(ctx->store, a->user_id, a->device, id, row->seq, &copied,
                                    a->err);
    if (rc != PS_OK || copied)
        return rc;
    rc = ctx->store->ops->chat_load(ctx->store, a->user_id, id, true, &chat, a->err);
    if (rc == PS_OK && chat && (rc = ps__base_add_chat(&base, chat)) != PS_OK)
        rc = ps_error_set(a->err, rc, -1, "", "out of memory");
    if (rc == PS_OK && chat) {
        ps__base_seal(&base);
        rc = ctx->store->ops->base_save(ctx->store, a->user_id, a->device, id, &base, row->seq,
                                        a->err);
    }
    ps__base_free(&base);
    ps__chat_free(chat);
    return rc;
}

static int answer_row(void *vctx, const ps_chat_row *row)
{
    answer_builder *a = vctx;
    if (!row->live) {
        a->rc = add_deletion(ps_legacy_answer_deletions(a->answer), &a->ndeletions, row);
        return a->rc != PS_OK;
    }
    bool was_sent = json_object_object_get_ex(a->sent, row->id, NULL);
    if (was_sent && !json_object_object_get_ex(a->returned, row->id, NULL))
        return 0;
    if (!was_sent && *a->device) /* merge_one saved the base of a sent one */
        a->rc = base_of_download(a, row);
    if (a->rc == PS_OK)
        a->rc = ps_legacy_answer_add_missing(a->answer, row->id);
    return a->rc != PS_OK;
}

/* Plans the /sync answer in the sync's transaction (bases saved, deletions,
 * clock) and makes its first piece: *out streams the rest once committed. */
static ps_code build_answer(const ps_sync_ctx *ctx, const ps_user *user, const char *device,
                            json_object *sent, json_object *returned, ps_legacy_answer **out,
                            ps_error *err)
{
    answer_builder a = {
        .ctx = ctx,
        .user_id = user->id,
        .device = device,
        .sent = sent,
        .returned = returned,
        .err = err,
    };
    ps_code rc = ps_legacy_answer_sync_new(ctx, user->id, &a.answer, err);
    if (rc == PS_OK)
        rc = ctx->store->ops->chat_each(ctx->store, user->id, answer_row, &a, err);
    if (rc == PS_OK)
        rc = a.rc;
    if (rc == PS_ERR_NOMEM || rc == PS_ERR_TOO_LARGE)
        rc = ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
    if (rc == PS_OK) {
        ps_legacy_answer_set_clock(a.answer, user->clock);
        rc = ps_legacy_answer_head(a.answer, err);
    }
    if (rc != PS_OK) {
        ps_legacy_answer_free(a.answer);
        return rc;
    }
    *out = a.answer;
    return PS_OK;
}

/*
 * Raises the clock to a chat's updatedAtLamport counter; true if it had one.
 * The counter of Polyglot's record clock lastMutationLamport {lamport,
 * deviceId} (its page-load body, docs/polyglot.md) is observed too, when it
 * is a valid counter; the field itself stays an ordinary unknown field, so
 * it does not make the request a Lamport one.
 */
static bool observe_chat_clock(json_object *chat, int64_t *clock)
{
    json_object *v, *record_counter;
    if (json_object_object_get_ex(chat, "lastMutationLamport", &v) &&
        json_object_object_get_ex(v, "lamport", &record_counter) &&
        ps__valid_counter(record_counter) && json_object_get_int64(record_counter) > *clock)
        *clock = json_object_get_int64(record_counter);
    if (!json_object_object_get_ex(chat, "updatedAtLamport", &v) ||
        !json_object_is_type(v, json_type_array))
        return false;
    int64_t n = json_object_get_int64(json_object_array_get_idx(v, 0));
    if (n > *clock)
        *clock = n;
    return true;
}

/*
 * The request's chats made ready before the write transaction, so the
 * store's writer is not held while a body is parsed (issue #15). Each
 * chat's bytes are hashed (XXH3) and its content too (content_hash.h: the
 * same data in any key order, spacing or escapes, read by simdjson without
 * a json-c tree); the same walk certifies the chats it sees are valid
 * (ps_content_hash_checked: what ps__validate_chat would say, for sure). In
 * a read transaction, the chats this device re-sends as it last synced
 * them, unchanged since, by bytes or by content, are `candidate`s: skipped
 * unless a write lands before the write transaction (checked again there).
 * Every other chat the walk did not certify is parsed and validated now,
 * and its tree dropped: all are parsed for their merge, a few chats ahead
 * of it (legacy_pipe.h). Keeping the trees cost more than the second parse
 * (a parsed chat takes about 2.6 times its text: the heap's growth and its
 * page faults, docs/performance.md, "pipe"); the certificate spares the
 * first parse of nearly every chat of a first upload.
 */

/* How deep a chat may nest: an element of a body's "chats" sits two
 * containers down (the root object, the array), as legacy_body.c checks. */
#define CHAT_MAX_DEPTH (PS_JSON_MAX_DEPTH - 2)

typedef enum candidate { NOT_SENT, SAME_BYTES, SAME_CONTENT } candidate;

typedef struct prepared {
    uint64_t *hashes;                 /* of the bytes */
    uint64_t *contents;               /* of the content; 0 when it has none */
    char (*ids)[PS_ID_MAX_BYTES + 1]; /* a candidate's or a content hash's chat id */
    bool *valid;                      /* certified valid by its content hash's walk */
    candidate *candidate;
    /* The user's change sequence (and purged one) the candidates were
     * found at, in every read transaction: when the write transaction finds
     * them still there, no chat changed or went since, and the candidates
     * stand without being looked up again. */
    bool seen;
    int64_t seen_seq, seen_purged;
} prepared;

static void prepared_free(prepared *p)
{
    free(p->hashes);
    free(p->contents);
    free(p->ids);
    free(p->valid);
    free(p->candidate);
    *p = (prepared){0};
}

/* Parses and validates chat i of the source, read as `reader`; *len: its
 * bytes. */
static ps_code parse_chat(const ps_sync_ctx *ctx, const ps_chat_source *src, unsigned reader,
                          size_t i, json_object **chat, size_t *len, ps_error *err)
{
    const char *text;
    ps_code rc = ps_chat_source_check_as(src, reader, i, err);
    if (rc == PS_OK)
        rc = ps_chat_source_bytes_as(src, reader, i, &text, len, err);
    if (rc != PS_OK)
        return rc;
    /* pre-checked: these bytes are checked JSON */
    if (ps__json_parse_trusted(text, *len, chat, err) != PS_OK)
        return ps_error_set(err, PS_ERR_MALFORMED, (long)i, "", "chats[%zu] is not valid JSON", i);
    return ps__validate_chat(*chat, (long)i, ctx->limits, err);
}

/* Whether chat i is (still) one the device re-sends unchanged; *skip_id
 * names it then. by_content_only: its bytes were looked up already, in
 * this sync's first read transaction, and not found (looked up again, they
 * were 2,000 index searches more on a re-sync of the reference history in
 * other bytes; a write since that made them the device's would be its own
 * sync of these very bytes, and the chat then goes by its content). */
static ps_code is_unchanged(const ps_sync_ctx *ctx, int64_t user_id, const char *device,
                            const prepared *p, size_t i, bool by_content_only, char *skip_id,
                            size_t skip_id_size, candidate *out, ps_error *err)
{
    bool unchanged = false;
    *out = NOT_SENT;
    ps_code rc = PS_OK;
    if (!by_content_only) {
        rc = ctx->store->ops->chat_find_sent(ctx->store, user_id, device, p->hashes[i], skip_id,
                                             skip_id_size, &unchanged, err);
        if (rc != PS_OK || unchanged) {
            *out = unchanged ? SAME_BYTES : NOT_SENT;
            return rc;
        }
    }
    if (!p->contents[i])
        return PS_OK;
    uint64_t last = 0;
    rc = ctx->store->ops->chat_sent_content(ctx->store, user_id, device, p->ids[i], &last,
                                            &unchanged, err);
    if (rc == PS_OK && unchanged && last == p->contents[i]) {
        *out = SAME_CONTENT;
        snprintf(skip_id, skip_id_size, "%s", p->ids[i]);
    }
    return rc;
}

/* Which chats the device re-sends unchanged, in a read transaction; a
 * user with no row yet has none. First by their bytes; then, once the
 * others' content is hashed (outside any transaction), by content. */
static ps_code find_candidates(const ps_sync_ctx *ctx, const char *device,
                               const ps_chat_source *src, prepared *p, bool by_content,
                               ps_error *err)
{
    ps_user user;
    bool found = false;
    ps_code rc = ps_store_begin(ctx->store, false, err);
    if (rc != PS_OK)
        return rc;
    rc = ctx->store->ops->user_find(ctx->store, ctx->user, &user, &found, err);
    if (rc == PS_OK && found && !by_content) {
        p->seen = true;
        p->seen_seq = user.seq;
        p->seen_purged = user.purged_seq;
    } else if (rc == PS_OK && found &&
               (user.seq != p->seen_seq || user.purged_seq != p->seen_purged)) {
        p->seen = false; /* a write landed between the two: look again */
    }
    for (size_t i = 0; rc == PS_OK && found && i < src->count; i++) {
        char id[PS_ID_MAX_BYTES + 1];
        if (p->candidate[i] == NOT_SENT && (!by_content || p->contents[i]))
            rc = is_unchanged(ctx, user.id, device, p, i, by_content, id, sizeof id,
                              &p->candidate[i], err);
        if (rc == PS_OK && p->candidate[i] == SAME_BYTES)
            memcpy(p->ids[i], id, sizeof id);
    }
    if (rc == PS_OK)
        return ps_store_commit(ctx->store, err);
    ps_store_rollback(ctx->store);
    return rc;
}

/*
 * The per-chat CPU work of prepare_chats — a content hash, or a pre-check,
 * parse and validation — on two threads (share.h) when there is enough of
 * it: both take the next chat from `next` until none is left.
 *
 * A bad body's error must stay its first bad chat's, in the body's order
 * (legacy_body.h; what one thread met first): each lane keeps its first
 * failure (its chats come in increasing order, so that is its lowest),
 * `first_bad` stops both lanes from starting a chat after the lowest
 * failure found so far (every chat before it was taken already, by a lane
 * that goes on with it), and the caller reports the lower of the two
 * lanes' failures.
 *
 * What the lanes share is safe on two threads: the source's functions,
 * each lane reading as its own reader (ps_chat_source, legacy_body.c);
 * the content hash (simdjson's stage 1 and the walk's state are one per
 * thread, content_hash.cpp; simdjson's doc/basics.md, "Thread safety":
 * one parser per thread, and "the CPU detection, which runs the first
 * time parsing is attempted ... is transparent and thread-safe"); the
 * pre-check (no state); json-c's parse, on the thread's own tokener
 * (json_parse.c), and its objects: a tree is built on one lane, and read
 * and freed on the request thread only after ps__share_run's hand-back,
 * never by two threads at once (json-c keeps no state shared between
 * trees but the string hash's seed, set once with a compare-and-swap in
 * linkhash.c, and since 0.13 its tokener changes the locale per thread,
 * uselocale: json-c ChangeLog 0.13, issue #195); validation reads the
 * request's limits only. Each lane writes only its own chats' slots of
 * `prepared` and its own `lane` entry.
 */
enum prep_pass { CONTENT_PASS, PARSE_PASS };

typedef struct prep_job {
    const ps_sync_ctx *ctx;
    const ps_chat_source *src;
    prepared *p;
    enum prep_pass pass;
    bool (*content_hash)(const char *, size_t, int, size_t, uint64_t *, char *, size_t, bool *);
    atomic_size_t next;      /* the first chat nobody took yet */
    atomic_size_t first_bad; /* the lowest failed chat so far; count: none */
    struct {
        ps_code rc; /* its first failure, PS_OK */
        size_t bad; /* at that chat */
        ps_error err;
    } lane[2];
} prep_job;

/* Below this many bytes of chats to work on, the request thread does it
 * alone. The helper starts working 12 µs after the offer (median; 50 µs
 * at p90, docs/performance.md, "upload4"), while json-c parses about
 * 0.2 MB and the content hash about 1 MB a millisecond: 256 KiB is over a
 * millisecond of parsing, a quarter of one of hashing, and a delta of a few
 * chats stays on the request thread. */
#define SHARE_MIN_BYTES ((size_t)256 << 10)

/* Content-hashes chat i, and certifies it valid when its walk can
 * (pre-checks it when it has no content hash). */
static ps_code content_one(prep_job *j, unsigned reader, size_t i, ps_error *err)
{
    prepared *p = j->p;
    const char *text;
    size_t len;
    p->valid[i] = false;
    if (p->candidate[i] != NOT_SENT) {
        p->contents[i] = 0;
        return PS_OK;
    }
    ps_code rc = ps_chat_source_bytes_as(j->src, reader, i, &text, &len, err);
    if (rc == PS_OK &&
        !j->content_hash(text, len, CHAT_MAX_DEPTH, j->ctx->limits->max_id_bytes, &p->contents[i],
                         p->ids[i], sizeof p->ids[i], &p->valid[i])) {
        p->contents[i] = 0;
        rc = ps_chat_source_check_as(j->src, reader, i, err);
    }
    return rc;
}

/* Parses and validates chat i when it is to be merged (its tree is made
 * again for the merge, legacy_pipe.h). A chat its content hash certified
 * is not: the certificate is its validation (ps__json_parse and
 * ps__validate_chat pass it, content_hash.h), and the merge's parse
 * (legacy_pipe.c, trusted: no validation) is its only one. */
static ps_code parse_one(prep_job *j, unsigned reader, size_t i, ps_error *err)
{
    if (j->p->candidate[i] != NOT_SENT || j->p->valid[i])
        return PS_OK;
    size_t len = 0;
    json_object *tree = NULL;
    ps_code rc = parse_chat(j->ctx, j->src, reader, i, &tree, &len, err);
    json_object_put(tree);
    return rc;
}

static void prep_work(void *cls, unsigned lane)
{
    prep_job *j = cls;
    size_t n = j->src->count;
    for (;;) {
        size_t i = atomic_fetch_add(&j->next, 1);
        if (i >= n || i > atomic_load(&j->first_bad))
            return; /* nothing left, or moot after an earlier chat's failure */
        ps_code rc = j->pass == CONTENT_PASS ? content_one(j, lane, i, &j->lane[lane].err)
                                             : parse_one(j, lane, i, &j->lane[lane].err);
        if (rc != PS_OK) {
            j->lane[lane].rc = rc;
            j->lane[lane].bad = i;
            size_t seen = atomic_load(&j->first_bad);
            while (i < seen && !atomic_compare_exchange_weak(&j->first_bad, &seen, i))
                ;
            return;
        }
    }
}

/* One pass over the chats, shared when its chats are SHARE_MIN_BYTES or
 * more (one thread else, or when the source cannot be read by two); the
 * first failing chat's error, in the body's order. */
static ps_code prep_run(prep_job *j, ps_error *err)
{
    const ps_chat_source *src = j->src;
    atomic_init(&j->next, 0);
    atomic_init(&j->first_bad, src->count);
    j->lane[0].rc = j->lane[1].rc = PS_OK;
    size_t bytes = 0;
    bool two = src->readers >= 2 && src->length;
    for (size_t i = 0; two && i < src->count && bytes < SHARE_MIN_BYTES; i++)
        if (j->p->candidate[i] == NOT_SENT)
            bytes += src->length(src->cls, i);
    if (two && bytes >= SHARE_MIN_BYTES)
        ps__share_run(prep_work, j);
    else
        prep_work(j, 0);
    int lane =
        j->lane[1].rc != PS_OK && (j->lane[0].rc == PS_OK || j->lane[1].bad < j->lane[0].bad);
    if (j->lane[lane].rc != PS_OK)
        *err = j->lane[lane].err;
    return j->lane[lane].rc;
}

static ps_code prepare_chats(const ps_sync_ctx *ctx, const char *device, const ps_chat_source *src,
                             prepared *p, ps_error *err)
{
    if (src->count == 0)
        return PS_OK;
    p->hashes = calloc(src->count, sizeof *p->hashes);
    p->contents = calloc(src->count, sizeof *p->contents);
    p->ids = calloc(src->count, sizeof *p->ids);
    p->valid = calloc(src->count, sizeof *p->valid);
    p->candidate = calloc(src->count, sizeof *p->candidate);
    if (!p->hashes || !p->contents || !p->ids || !p->valid || !p->candidate)
        return ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
    /* the source hands out one chat's bytes at a time (read back from the
     * body's spool): each pass below asks for them again */
    const char *text;
    size_t len;
    ps_code rc = PS_OK;
    for (size_t i = 0; rc == PS_OK && i < src->count; i++)
        if (src->hash)
            p->hashes[i] = src->hash(src->cls, i);
        else if ((rc = ps_chat_source_bytes(src, i, &text, &len, err)) == PS_OK)
            p->hashes[i] = ps__hash_bytes(text, len);
    if (rc == PS_OK)
        rc = find_candidates(ctx, device, src, p, false, err);
    /* The chats sent as before are done with, unread: their bytes passed
     * the pre-check when first taken. Every other one is content-hashed,
     * as if in the body's order (prep_run): a chat with a content hash
     * passes the pre-check (content_hash.h), and one without is
     * pre-checked at once, so a bad body's error is its first bad chat's,
     * as when the whole body was checked as it arrived (legacy_body.h),
     * and comes before any chat is parsed. A chat skipped by its content
     * is thus never pre-checked (on a re-sync in other bytes that was a
     * quarter of the server's CPU); one to merge is, before json-c reads
     * it (parse_chat), unless the walk of its content hash certified it
     * valid: that stands for its pre-check, parse and validation. The
     * parse pass then takes the chats to merge that were not certified,
     * in the body's order too; a certified chat is valid, so a bad body's
     * error is still its first bad chat's. */
    prep_job job = {.ctx = ctx, .src = src, .p = p, .pass = CONTENT_PASS};
    /* read where they lie when the source leaves room after each chat */
    job.content_hash = src->padding >= PS_CONTENT_HASH_PADDING ? ps_content_hash_in_place_checked
                                                               : ps_content_hash_checked;
    if (rc == PS_OK)
        rc = prep_run(&job, err);
    bool any = false;
    for (size_t i = 0; rc == PS_OK && i < src->count; i++)
        any |= p->contents[i] != 0;
    if (rc == PS_OK && any)
        rc = find_candidates(ctx, device, src, p, true, err);
    job.pass = PARSE_PASS;
    if (rc == PS_OK)
        rc = prep_run(&job, err);
    return rc;
}

/*
 * Chat i of the request, parsed and validated, inside the write
 * transaction; *skip when it is what this device last synced this chat
 * with, in the same bytes or the same data in other bytes, and nothing
 * changed it since (then *skip_id names it; a merge would change nothing
 * and give the device nothing back). Other bytes of the same data become
 * the device's sent ones. *chat: the caller puts it.
 */
static ps_code next_chat(const ps_sync_ctx *ctx, const ps_user *user, const char *device,
                         const ps_chat_source *src, prepared *p, size_t i, json_object **chat,
                         bool *skip, char *skip_id, size_t skip_id_size, ps_error *err)
{
    *chat = NULL;
    *skip = false;
    ps_code rc = PS_OK;
    candidate now = NOT_SENT;
    if (p->candidate[i] != NOT_SENT && p->seen && user->seq == p->seen_seq &&
        user->purged_seq == p->seen_purged) {
        now = p->candidate[i];
        snprintf(skip_id, skip_id_size, "%s", p->ids[i]);
    } else if (p->candidate[i] != NOT_SENT) {
        rc = is_unchanged(ctx, user->id, device, p, i, false, skip_id, skip_id_size, &now, err);
    }
    p->candidate[i] = now; /* what it turned out to be (ps_legacy_sync asks) */
    if (rc == PS_OK && now == SAME_CONTENT)
        rc = ctx->store->ops->chat_set_sent(ctx->store, user->id, device, skip_id, p->hashes[i],
                                            p->contents[i], err);
    *skip = now != NOT_SENT;
    if (rc != PS_OK || *skip)
        return rc;
    /* A write landed on it since the read transaction (rare): parsed here
     * after all. */
    size_t len;
    return parse_chat(ctx, src, 0, i, chat, &len, err);
}

/*
 * A sync that changed nothing — every chat re-sent as the device last
 * synced it, no deletion, no clock raised — needs no commit when the store
 * already says what it would write, near enough: the device's registry row
 * written by a legacy /sync less than REGISTRY_FRESH_MS ago with this
 * client and this acknowledgement, and the user's last sync time as
 * recent. Then the write transaction is rolled back: the registry's last
 * sight and the user's last sync time lag by at most that, as a v2
 * device's registry row does (devices.c). The commit was a WAL write and
 * an fsync for nothing on every byte-identical re-sync (docs/performance.md,
 * "ingest"). Nothing is left pending in memory (no user_seen): what the
 * store holds is what it will hold.
 */
#define REGISTRY_FRESH_MS 60000

static bool fresh(int64_t written_ms, int64_t now_ms)
{
    return written_ms <= now_ms && now_ms - written_ms < REGISTRY_FRESH_MS;
}

typedef struct registry_probe {
    const char *client;
    int64_t acked, now_ms;
    bool current;
} registry_probe;

static int probe_row(void *cls, const ps_device_row *row)
{
    registry_probe *p = cls;
    p->current = strcmp(row->protocol, "legacy") == 0 &&
                 (!p->client || !*p->client || strcmp(row->client, p->client) == 0) &&
                 (p->acked < 0 || row->acked_seq == p->acked) &&
                 fresh(row->last_seen_ms, p->now_ms);
    return 1;
}

static ps_code registry_current(const ps_sync_ctx *ctx, const char *device, int64_t acked,
                                bool *current, ps_error *err)
{
    registry_probe p = {.client = ctx->client, .acked = acked, .now_ms = ctx->now_ms};
    ps_code rc = ctx->store->ops->device_get(ctx->store, ctx->user, device, probe_row, &p, err);
    *current = rc == PS_OK && p.current;
    return rc;
}

/* legacy_pipe.h's `wanted`: the chats that are merged for sure (a
 * candidate may still be skipped, and is parsed when it is not). */
static bool merged_for_sure(void *cls, size_t i)
{
    const prepared *p = cls;
    return p->candidate[i] == NOT_SENT;
}

/* legacy_pipe.h's `known_id`: the id its content hash found. */
static const char *content_id(void *cls, size_t i)
{
    const prepared *p = cls;
    return p->contents[i] && p->ids[i][0] ? p->ids[i] : NULL;
}

/* The merge loop's state, for merge_next. */
typedef struct merge_loop {
    const ps_sync_ctx *ctx;
    ps_user *user;
    const char *device;
    const ps_chat_source *chats;
    prepared *prep;
    const ps_ingest *in;
    deletion_source *src;
    json_object *sent, *returned; /* the chat ids sent, and those to send back */
    bool wrote;                   /* a chat merged or its sent row written */
} merge_loop;

/* Chat i of the request inside the write transaction (legacy_pipe.h's
 * `each`): skipped when unchanged (next_chat), else merged; `chat` (the
 * pipe's) and `made` (taken): it parsed and built ahead, or NULL. */
static ps_code merge_next(void *cls, size_t i, json_object *chat, ps_chat *made, ps_error *err)
{
    merge_loop *m = cls;
    bool skip = false, ret = false, parsed_here = !chat;
    char known_id[PS_ID_MAX_BYTES + 1];
    ps_code rc = chat ? PS_OK
                      : next_chat(m->ctx, m->user, m->device, m->chats, m->prep, i, &chat, &skip,
                                  known_id, sizeof known_id, err);
    if (rc == PS_OK && skip) {
        /* other bytes of the same data: the sent row was rewritten */
        m->wrote |= m->prep->candidate[i] != SAME_BYTES;
        json_object_object_add(m->sent, known_id, NULL);
        return PS_OK;
    }
    if (rc != PS_OK) {
        ps__chat_free(made);
        return rc;
    }
    m->wrote = true;
    const char *id = json_object_get_string(json_object_object_get(chat, "id"));
    if (observe_chat_clock(chat, &m->user->clock))
        m->src->speaks_lamport = true;
    rc = merge_one(m->ctx, m->user, chat, made, m->in, &ret, err);
    if (rc == PS_OK) {
        json_object_object_add(m->sent, id, NULL);
        if (ret)
            json_object_object_add(m->returned, id, NULL);
        else if (m->prep->hashes) /* the bytes it was sent as: a text source */
            rc = m->ctx->store->ops->chat_set_sent(m->ctx->store, m->user->id, m->device, id,
                                                   m->prep->hashes[i], m->prep->contents[i], err);
    }
    if (parsed_here)
        json_object_put(chat);
    return rc;
}

ps_code ps_legacy_sync(const ps_sync_ctx *ctx, json_object *req, const ps_chat_source *chats,
                       ps_legacy_answer **answer, ps_error *err)
{
    json_object *devv = json_object_object_get(req, "deviceId");
    const char *device = devv ? json_object_get_string(devv) : "";
    ps_ingest in = {.device = device, .now_ms = ctx->now_ms, .max_skew_ms = ctx->max_skew_ms};
    json_object *sent = json_object_new_object();
    json_object *returned = json_object_new_object();
    if (!sent || !returned) {
        json_object_put(sent);
        json_object_put(returned);
        return ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
    }
    ps_user user;
    prepared prep = {0};
    ps_code rc = prepare_chats(ctx, device, chats, &prep, err);
    if (rc != PS_OK || (rc = ps_store_begin(ctx->store, true, err)) != PS_OK)
        goto out;
    if ((rc = ctx->store->ops->user_load(ctx->store, ctx->user, &user, err)) != PS_OK)
        goto rollback;
    int64_t seq_before = user.seq, clock_before = user.clock;
    deletion_source src = {.device = device, .speaks_lamport = observe_clocks(req, &user.clock)};
    merge_loop loop = {.ctx = ctx,
                       .user = &user,
                       .device = device,
                       .chats = chats,
                       .prep = &prep,
                       .in = &in,
                       .src = &src,
                       .sent = sent,
                       .returned = returned};
    ps_legacy_pipe_config made_ahead = {.src = chats,
                                        .in = &in,
                                        .wanted = merged_for_sure,
                                        .known_id = content_id,
                                        .cls = &prep,
                                        .store = ctx->store,
                                        .user = user.id};
    /* prepare_chats made nothing for a body without chats */
    if (chats->count && (rc = ps_legacy_pipe_run(&made_ahead, merge_next, &loop, err)) != PS_OK)
        goto rollback;
    bool wrote = loop.wrote;
    if ((rc = apply_deletions(ctx, &user, req, &src, err)) != PS_OK)
        goto rollback;
    if (answer && (rc = build_answer(ctx, &user, device, sent, returned, answer, err)) != PS_OK)
        goto rollback;
    /* The device registry (docs/protocol.md, "Devices"): a legacy device's
     * /sync is its acknowledgement (the answer holds the state up to
     * user.seq); a client without a deviceId is the device "" that
     * acknowledges nothing. While a legacy device is around its user's
     * tombstones keep the time rule (store.h, purge_acknowledged). */
    bool acks = answer && device[0];
    bool current = false;
    if (!wrote && user.seq == seq_before && user.clock == clock_before &&
        fresh(user.last_sync_ms, ctx->now_ms) &&
        (rc = registry_current(ctx, device, acks ? user.seq : -1, &current, err)) != PS_OK)
        goto rollback;
    if (current) {
        ps_store_rollback(ctx->store);
        goto out;
    }
    if ((rc = ctx->store->ops->device_seen(ctx->store, ctx->user, device, ctx->client, "legacy",
                                           acks ? user.seq : -1, ctx->now_ms, err)) != PS_OK)
        goto rollback;
    user.last_sync_ms = ctx->now_ms;
    if ((rc = ctx->store->ops->user_save(ctx->store, &user, err)) != PS_OK)
        goto rollback;
    rc = ps__commit(ctx, seq_before, &user, err);
    goto out;
rollback:
    ps_store_rollback(ctx->store);
out:
    prepared_free(&prep);
    if (rc != PS_OK && answer) {
        ps_legacy_answer_free(*answer);
        *answer = NULL;
    }
    json_object_put(sent);
    json_object_put(returned);
    return rc;
}

ps_code ps_legacy_delete(const ps_sync_ctx *ctx, json_object *ids, size_t *deleted, ps_error *err)
{
    *deleted = 0;
    ps_user user;
    ps_code rc = ps_store_begin(ctx->store, true, err);
    if (rc != PS_OK)
        return rc;
    if ((rc = ctx->store->ops->user_load(ctx->store, ctx->user, &user, err)) != PS_OK)
        goto rollback;
    int64_t seq_before = user.seq;
    size_t n = json_object_array_length(ids);
    for (size_t i = 0; i < n; i++) {
        bool gone;
        /* /deleteChat(s) carry no clock of their own (see delete_one). */
        static const deletion_source src = {.device = "", .speaks_lamport = false};
        rc = delete_one(ctx, &user, json_object_get_string(json_object_array_get_idx(ids, i)), NULL,
                        NULL, &src, &gone, err);
        if (rc != PS_OK)
            goto rollback;
        *deleted += gone;
    }
    if ((rc = ctx->store->ops->user_save(ctx->store, &user, err)) != PS_OK)
        goto rollback;
    return ps__commit(ctx, seq_before, &user, err);
rollback:
    ps_store_rollback(ctx->store);
    return rc;
}

ps_code ps_legacy_fetch(const ps_sync_ctx *ctx, ps_legacy_answer **out, ps_error *err)
{
    return ps_legacy_answer_fetch_new(ctx, out, err);
}
