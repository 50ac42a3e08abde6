/*
 * /v2/sync; see sync_v2.h and docs/protocol.md.
 *
 * The cursor "c1.BASE.POS" holds where the pull started (BASE: send parts
 * changed after it) and how far it got (POS: chats are visited in order of
 * the sequence number of their last change). Pages of one pull share BASE,
 * so a chat whose older changes fall before POS is still sent whole-since-
 * BASE when its turn comes; a chat that changes again mid-pull reappears
 * later. Only a pull that reached the end moves BASE forward.
 */
#include "server/sync_v2.h"
#include "core/chat_codec.h"
#include "core/json_build.h"
#include "core/json_parse.h"
#include "core/merge.h"
#include "server/cursor.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_LIMIT 500
#define PAGE_BYTES (8u * 1024 * 1024)
/* A piece of the answer: chats are added until it holds this much. */
#define PIECE_BYTES (64u * 1024)
/* What a piece may grow to with its last chat: the piece limit of the
 * server's streamed bodies (http_response.c), so a piece made ahead of
 * time, with the sync, is refused where one made later would be. */
#define PIECE_LIMIT (64u * 1024 * 1024)

struct ps_v2_pull {
    ps_sync_ctx ctx_copy; /* the pull outlives the handler's context */
    const ps_sync_ctx *ctx;
    int64_t user_id;
    char *device;
    bool first;        /* no cursor: whole chats, no deletions */
    int64_t base, pos; /* see the file comment */
    int64_t seq_at_start;
    /* The sync run ("run": one sync of a client, made of several requests
     * when its pushes take several): the user's change sequence before the
     * run's first request. On a first pull, the parts this device wrote
     * after it are parts it holds (its origin stays on a part only while the
     * part has the value it wrote: ps__chat_mark_dirty), so they are not
     * echoed even when an earlier request of the run pushed them. */
    int64_t run_seq;
    bool has_run; /* the request named its run */
    int64_t limit, sent;
    size_t bytes;
    int64_t server_clock;
    size_t accepted;
    enum { OPENING, CHATS, DONE } state;
    bool more;
    bool has_head; /* `head` holds the answer's start, made with the sync */
    ps_dynbuf head;
    json_object *sent_ids; /* chats in this answer: each at most once (made
                            * with the first: an up-to-date device's answer
                            * has none) */
    /* The user as the open read transaction reads it, while the sync's own
     * transaction makes the answer's first piece (sync_quietly); NULL in the
     * pieces made later, each in a transaction of its own. */
    const ps_user *snapshot;
    /* chat id -> the request's changes to it, in order: what it sent */
    json_object *sent_changes;
    /* chat id -> what the device holds of it after this request's changes
     * (see note_held): {"fields": {key: value}, "messages": {id: message}};
     * made for a chat when its delta first compares a value with what the
     * device holds (held_map), so a request whose answer stops early (a
     * push-only one: limit 1), or a chat whose parts are all the device's
     * own of this run (a first upload: none is read), pays nothing */
    json_object *pushed;
};

static void note_held(json_object *pushed, json_object *change);
static void note_sent(json_object *sent_changes, json_object *change);

static ps_code parse_cursor(json_object *v, bool *first, int64_t *base, int64_t *pos, ps_error *err)
{
    *first = !v || json_object_is_type(v, json_type_null);
    *base = *pos = 0;
    if (*first)
        return PS_OK;
    if (!ps__cursor_parse(json_object_get_string(v), base, pos))
        return ps_error_set(err, PS_ERR_BAD_CURSOR, -1, "cursor",
                            "this cursor was not issued by this server; sync with cursor null");
    return PS_OK;
}

/* "run": absent or null, or "r1.SEQ" from an answer of this server. */
static ps_code parse_run(json_object *v, bool *has, int64_t *seq, ps_error *err)
{
    *has = v && !json_object_is_type(v, json_type_null);
    *seq = 0;
    if (!*has)
        return PS_OK;
    const char *s = json_object_is_type(v, json_type_string) ? json_object_get_string(v) : "";
    long long n;
    int used = 0;
    if (sscanf(s, "r1.%lld%n", &n, &used) != 1 || s[used] != '\0' || n < 0)
        return ps_error_set(err, PS_ERR_INVALID, -1, "run",
                            "run must be the `run` of an answer of this server, or null");
    *seq = n;
    return PS_OK;
}

/* Raises the user clock to every change's clock. */
static void observe_clocks(json_object *changes, int64_t *clock)
{
    size_t n = changes ? json_object_array_length(changes) : 0;
    for (size_t i = 0; i < n; i++) {
        json_object *v;
        if (json_object_object_get_ex(json_object_array_get_idx(changes, i), "clock", &v) &&
            json_object_get_int64(v) > *clock)
            *clock = json_object_get_int64(v);
    }
}

/* Marks a stored part lost (see ps_mark) when it kept a value other than
 * the one the change wrote to it. */
static bool lose(ps_mark *m, json_object *kept, json_object *sent)
{
    if (m->dirty || (kept && sent && json_object_equal(kept, sent)) || (!kept && !sent))
        return false;
    m->dirty = m->lost = true;
    return true;
}

/*
 * Where a pushed change lost the merge, the pushing device holds a value the
 * server does not: without this, no-echo would hide the winner from it
 * forever (the parts keep their old origin, or the device's own). So the
 * winning parts are re-announced to everyone. Returns whether any was.
 */
static bool mark_lost_writes(ps_chat *stored, const ps_chat *incoming, char **header_origin)
{
    bool any = false;
    for (size_t i = 0; i < incoming->nfields; i++) {
        ps_field *f = (ps_field *)ps__chat_field(stored, incoming->fields[i].name);
        if (f)
            any |= lose(&f->mark, f->value, incoming->fields[i].value);
    }
    for (size_t i = 0; i < incoming->nmessages; i++) {
        ps_message *m = (ps_message *)ps__chat_message(stored, incoming->messages[i].id);
        if (m)
            any |= lose(&m->mark, m->value, incoming->messages[i].value);
    }
    const ps_time_field *in_t[3] = {&incoming->created_at, &incoming->updated_at,
                                    &incoming->last_modified};
    ps_time_field *st_t[3] = {&stored->created_at, &stored->updated_at, &stored->last_modified};
    for (int k = 0; k < 3; k++)
        if (in_t[k]->value && st_t[k]->value)
            any |= lose(&st_t[k]->mark, st_t[k]->value, in_t[k]->value);
    /* an edit that did not bring a deleted chat back: tell its device */
    if (incoming->has_touched && !ps__chat_is_live(stored)) {
        /* the deletion stands: announce it again as the deleter's */
        free(stored->header.origin);
        stored->header.origin = *header_origin;
        *header_origin = NULL;
        stored->header.dirty = stored->header.lost = true;
        any = true;
    }
    return any;
}

/* Merges one change, `incoming` (taken: freed here), made of it before the
 * write transaction (make_incoming): only the chat-level state and the
 * messages it touches are loaded, so a new message in a long chat costs
 * one message. */
static ps_code push_one(const ps_sync_ctx *ctx, ps_user *user, ps_chat *incoming,
                        const char *device, ps_error *err)
{
    ps_chat *stored = NULL;
    const char **ids = NULL;
    char *header_origin = NULL; /* the header's origin before the merge */
    ps_code rc = ps__load_or_new(ctx, user, incoming->id, false, &stored, err);
    if (rc != PS_OK) {
        ps__chat_free(incoming);
        return rc;
    }
    if (incoming->has_tombstone && incoming->deleted_lamport.counter == 0 &&
        (rc = ps__lamport_set(&incoming->deleted_lamport, ++user->clock, PS_SERVER_DEVICE)) !=
            PS_OK)
        goto nomem;
    if (!(ids = calloc(incoming->nmessages + 1, sizeof *ids)))
        goto nomem;
    for (size_t i = 0; i < incoming->nmessages; i++)
        ids[i] = incoming->messages[i].id;
    /* a chat new to the store has no message rows to look up (they are
     * its children: none outlives it) — a first upload's every chat */
    if (stored->stored && (rc = ctx->store->ops->messages_load(ctx->store, user->id, stored, ids,
                                                               incoming->nmessages, err)) != PS_OK)
        goto done;
    /* a change without a clock takes its place among the chat's writes */
    const ps_stamp *any = incoming->has_touched ? &incoming->touched : &incoming->tombstone;
    if (any->lamport == 0)
        ps__chat_place_time_only(incoming, ps__chat_time_place(stored, any->ts));
    bool changed;
    if (stored->header.origin && !(header_origin = strdup(stored->header.origin)))
        goto nomem;
    if ((rc = ps__chat_merge(stored, incoming, &changed)) != PS_OK)
        goto nomem;
    /* its pack made ahead (pack_ahead), for a chat still new to the store:
     * the save checks it is still what it would make */
    if (!stored->stored)
        stored->pack_form = incoming->pack_form;
    changed |= mark_lost_writes(stored, incoming, &header_origin);
    /* its deletion lost: the device dropped the chat, it must get it whole */
    if (incoming->has_tombstone && ps__chat_is_live(stored)) {
        stored->deletion_lost = true;
        changed = true;
    }
    if (changed)
        rc = ps__save_chat(ctx, user, stored, device, false, PS_TICK_IF_NONE, err);
    goto done;
nomem:
    rc = ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
done:
    free(ids);
    free(header_origin);
    ps__chat_free(incoming);
    ps__chat_free(stored);
    return rc;
}

/* Refuse before pushing: a device told to resync will push again. */
static ps_code check_cursor(const ps_v2_pull *p, const ps_user *user, ps_error *err)
{
    if (p->has_run && p->run_seq > user->seq)
        return ps_error_set(err, PS_ERR_INVALID, -1, "run",
                            "run must be the `run` of an answer of this server, or null");
    if (p->first || (p->base >= user->purged_seq && p->pos <= user->seq))
        return PS_OK;
    return ps_error_set(err, PS_ERR_EXPIRED, -1, "cursor",
                        p->pos > user->seq
                            ? "this cursor is from a future the server does not have (restored "
                              "from a backup?); sync again with cursor null"
                            : "deletions this cursor would need have been forgotten; sync "
                              "again with cursor null");
}

/* What the pull starts from: the user as the push left it. */
static void start_pull(ps_v2_pull *p, const ps_user *user, size_t accepted)
{
    p->user_id = user->id;
    p->accepted = accepted;
    p->server_clock = user->clock;
    p->seq_at_start = user->seq;
}

/*
 * What each change writes, as a chat (ps__chat_from_change), made before
 * the write transaction: it needs nothing stored, so a client with two
 * pushes in flight (docs/client.md) has it made for one request while the
 * other holds the writer. *out: n chats, the caller's (push takes them).
 */
static ps_code make_incoming(const ps_v2_pull *p, json_object *changes, ps_chat ***out, size_t *n,
                             ps_error *err)
{
    const ps_sync_ctx *ctx = p->ctx;
    ps_ingest in = {.device = p->device, .now_ms = ctx->now_ms, .max_skew_ms = ctx->max_skew_ms};
    *n = changes ? json_object_array_length(changes) : 0;
    *out = calloc(*n + 1, sizeof **out);
    for (size_t i = 0; *out && i < *n; i++)
        if (ps__chat_from_change(json_object_array_get_idx(changes, i), &in, &(*out)[i]) != PS_OK) {
            for (size_t k = 0; k < i; k++)
                ps__chat_free((*out)[k]);
            free(*out);
            *out = NULL;
        }
    return *out ? PS_OK : ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
}

/* Below this many message values a push's values are packed inside its
 * write transaction as they come: a one-message delta would pay a read
 * transaction to move microseconds. */
#define PACK_AHEAD_MIN 64

/*
 * The values of the messages of `incoming` packed as the store will write
 * them (values_pack_ahead: zstd with the user's dictionary; ~40% of a
 * first upload's write transactions), in a read transaction before the
 * write one. A client with two pushes in flight (docs/client.md) has one
 * request's values packed while the other holds the writer. *ahead: the
 * caller's, freed once the chats are saved; the save re-packs any value
 * whose dictionary changed in between.
 */
static ps_code pack_ahead(const ps_v2_pull *p, ps_chat **incoming, size_t n, ps_values_ahead *ahead,
                          ps_error *err)
{
    ps_store *store = p->ctx->store;
    size_t values = 0;
    for (size_t i = 0; i < n && values < PACK_AHEAD_MIN; i++)
        values += incoming[i]->nmessages;
    if (!store->ops->values_pack_ahead || values < PACK_AHEAD_MIN)
        return PS_OK;
    ps_user user;
    bool found = false;
    ps_code rc = ps_store_begin(store, false, err);
    if (rc != PS_OK)
        return rc;
    if ((rc = store->ops->user_find(store, p->ctx->user, &user, &found, err)) == PS_OK && found)
        rc = store->ops->values_pack_ahead(store, user.id, incoming, n, ahead, err);
    if (rc != PS_OK) {
        ps_store_rollback(store);
        return rc;
    }
    return ps_store_commit(store, err);
}

/* The push of the n chats `incoming` (taken: freed), in one write
 * transaction, durable when this returns PS_OK. */
static ps_code push(ps_v2_pull *p, json_object *changes, ps_chat **incoming, size_t n,
                    ps_error *err)
{
    size_t next = 0; /* incoming[next..n) not merged (nor freed) yet */
    const ps_sync_ctx *ctx = p->ctx;
    ps_user user;
    ps_code rc = ps_store_begin(ctx->store, true, err);
    if (rc != PS_OK)
        goto done;
    if ((rc = ctx->store->ops->user_load(ctx->store, ctx->user, &user, err)) != PS_OK ||
        (rc = check_cursor(p, &user, err)) != PS_OK)
        goto rollback;
    int64_t seq_before = user.seq;
    if (!p->has_run)
        p->run_seq = seq_before; /* this request starts the run */
    observe_clocks(changes, &user.clock);
    while (next < n)
        if ((rc = push_one(ctx, &user, incoming[next++], p->device, err)) != PS_OK)
            goto rollback;
    user.last_sync_ms = ctx->now_ms;
    if ((rc = ctx->store->ops->user_save(ctx->store, &user, err)) != PS_OK)
        goto rollback;
    if ((rc = ps__commit(ctx, seq_before, &user, err)) == PS_OK)
        start_pull(p, &user, n);
    goto done;
rollback:
    ps_store_rollback(ctx->store);
done:
    while (next < n)
        ps__chat_free(incoming[next++]);
    free(incoming);
    return rc;
}

static ps_code opening(ps_v2_pull *p, ps_dynbuf *out, ps_error *err);
static ps_code chats_piece(ps_v2_pull *p, ps_dynbuf *out, bool *done, ps_error *err);

/*
 * The answer's first piece, for a sync that pushes nothing, from `user` as
 * the store has it now (the open read transaction's, or quiet_user's), and
 * the user's last sync time. The sync changes nothing else (user_seen keeps
 * the time without a write), so it needs no write transaction: no write
 * lock, no WAL frames, no fsync. For a device that is up to date the piece
 * is the whole answer.
 */
static ps_code answer_quietly(ps_v2_pull *p, ps_user *user, ps_error *err)
{
    const ps_sync_ctx *ctx = p->ctx;
    bool done = false;
    ps_code rc = check_cursor(p, user, err);
    if (rc != PS_OK)
        return rc;
    start_pull(p, user, 0);
    if (!p->has_run)
        p->run_seq = user->seq;
    ps__dynbuf_init(&p->head, PIECE_LIMIT);
    p->has_head = true;
    p->snapshot = user;
    rc = opening(p, &p->head, err);
    if (rc == PS_OK)
        rc = chats_piece(p, &p->head, &done, err);
    p->snapshot = NULL;
    if (rc != PS_OK) {
        if (rc == PS_ERR_TOO_LARGE || rc == PS_ERR_NOMEM)
            ps_error_set(err, rc, -1, "", "out of memory building the answer");
        return rc;
    }
    /* last: a sync that failed is no sync */
    return ctx->store->ops->user_seen(ctx->store, ctx->user, ctx->now_ms, err);
}

/*
 * A device polling, up to date (the commonest request), when the store
 * can give the user's row as a transaction begun now would read it
 * (store.h, quiet_user): answered with no transaction at all — nothing is
 * read but that row, as next_chat looks up no chat past the user's
 * sequence. *answered false: read in a transaction instead.
 */
static ps_code sync_from_quiet_user(ps_v2_pull *p, bool *answered, ps_error *err)
{
    const ps_sync_ctx *ctx = p->ctx;
    ps_user user;
    bool found = false;
    *answered = false;
    if (p->first || !ctx->store->ops->quiet_user)
        return PS_OK;
    ps_code rc = ctx->store->ops->quiet_user(ctx->store, ctx->user, &user, &found, err);
    /* a cursor the user's row refuses is refused by the transaction's
     * read, with its error */
    if (rc != PS_OK || !found || p->pos != user.seq || check_cursor(p, &user, NULL) != PS_OK)
        return rc;
    *answered = true;
    return answer_quietly(p, &user, err);
}

/*
 * A sync that pushes nothing: one read transaction (or none, above), which
 * also makes the answer's first piece.
 * *write: the user has no row yet (making one is a write): nothing was done,
 * push() must run instead.
 */
static ps_code sync_quietly(ps_v2_pull *p, bool *write, ps_error *err)
{
    const ps_sync_ctx *ctx = p->ctx;
    ps_user user;
    bool found = false, answered = false;
    *write = false;
    ps_code rc = sync_from_quiet_user(p, &answered, err);
    if (rc != PS_OK || answered)
        return rc;
    rc = ps_store_begin_user_find(ctx->store, ctx->user, &user, &found, err);
    if (rc != PS_OK)
        return rc;
    if (!found || (rc = answer_quietly(p, &user, err)) != PS_OK)
        goto rollback;
    return ps_store_commit(ctx->store, err);
rollback:
    ps_store_rollback(ctx->store);
    *write = rc == PS_OK && !found;
    return rc;
}

/*
 * Each sent message's stored text (its compact JSON, which the store writes
 * as the message's row and packs), made now and kept with the value
 * (ps__json_text_kept), before the write transaction: the merged chat holds
 * these same values, so the save inside the transaction finds the text
 * made. A client with two pushes in flight (docs/client.md) has this done
 * for one request while the other holds the writer; a message the merge
 * drops only wasted its text.
 */
static void keep_message_texts(json_object *changes)
{
    size_t n = changes ? json_object_array_length(changes) : 0;
    for (size_t i = 0; i < n; i++) {
        json_object *msgs;
        if (!json_object_object_get_ex(json_object_array_get_idx(changes, i), "messages", &msgs) ||
            !json_object_is_type(msgs, json_type_array))
            continue;
        size_t k = json_object_array_length(msgs);
        for (size_t j = 0; j < k; j++)
            (void)ps__json_text_kept(json_object_array_get_idx(msgs, j), NULL);
    }
}

ps_code ps_v2_sync(const ps_sync_ctx *ctx, json_object *req, ps_v2_pull **out, ps_error *err)
{
    *out = NULL;
    ps_v2_pull *p = calloc(1, sizeof *p);
    json_object *v, *changes = NULL;
    if (!p)
        return ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
    p->ctx_copy = *ctx;
    p->ctx = &p->ctx_copy;
    p->device = strdup(json_object_get_string(json_object_object_get(req, "deviceId")));
    p->ctx_copy.device = p->device; /* its live channel is not woken by its own push */
    p->limit =
        json_object_object_get_ex(req, "limit", &v) ? json_object_get_int64(v) : DEFAULT_LIMIT;
    json_object_object_get_ex(req, "changes", &changes);
    if (changes && (p->sent_changes = json_object_new_object())) {
        size_t n = json_object_array_length(changes);
        for (size_t i = 0; i < n; i++)
            note_sent(p->sent_changes, json_object_array_get_idx(changes, i));
    }
    ps_code rc =
        parse_cursor(json_object_object_get(req, "cursor"), &p->first, &p->base, &p->pos, err);
    if (rc == PS_OK)
        rc = parse_run(json_object_object_get(req, "run"), &p->has_run, &p->run_seq, err);
    if (rc == PS_OK && !p->device)
        rc = ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
    bool write = changes && json_object_array_length(changes) > 0;
    if (rc == PS_OK && !write)
        rc = sync_quietly(p, &write, err);
    if (rc == PS_OK && write) {
        ps_chat **incoming = NULL;
        size_t n = 0;
        ps_values_ahead ahead = {.device = p->device};
        keep_message_texts(changes);
        if ((rc = make_incoming(p, changes, &incoming, &n, err)) == PS_OK &&
            (rc = pack_ahead(p, incoming, n, &ahead, err)) != PS_OK) {
            for (size_t i = 0; i < n; i++)
                ps__chat_free(incoming[i]);
            free(incoming);
        }
        if (rc == PS_OK)
            rc = push(p, changes, incoming, n, err);
        ps_values_ahead_free(&ahead);
    }
    if (rc != PS_OK) {
        ps_v2_pull_free(p);
        return rc;
    }
    *out = p;
    return PS_OK;
}

/* ---- the pull ---- */

/* Whether a part with this mark is news for the puller. */
static bool wanted(const ps_v2_pull *p, const ps_mark *m, int64_t base, bool skip_own)
{
    return m->seq > base && !(skip_own && m->origin && strcmp(m->origin, p->device) == 0);
}

/* Whether the device holds the part because it wrote it earlier in this
 * run (see run_seq): only on a first pull of a request that named its run. */
static bool held_from_run(const ps_v2_pull *p, const ps_mark *m)
{
    return p->first && p->has_run && m->seq > p->run_seq && m->origin &&
           strcmp(m->origin, p->device) == 0;
}

/* A key of `obj`, made an empty object if absent; NULL out of memory. */
static json_object *member_object(json_object *obj, const char *key)
{
    json_object *v;
    if (json_object_object_get_ex(obj, key, &v))
        return v;
    v = json_object_new_object();
    if (v && json_object_object_add(obj, key, v) != 0) {
        json_object_put(v);
        v = NULL;
    }
    return v;
}

/*
 * No echo on a first sync: the device holds what its request sent (each
 * chat's changes applied in order), so the pull leaves out a part the chat
 * now has with that very value, whoever wrote it. Compared by value, not by
 * origin: a part the device sent but lost (a re-announce), a part another
 * device wrote, and a part the device wrote before but did not send now (it
 * may have lost it) all differ from what it holds, and are sent. Out of
 * memory, less is noted as held: more is sent, never less.
 */
static void note_held(json_object *pushed, json_object *change)
{
    const char *id = json_object_get_string(json_object_object_get(change, "chatId"));
    json_object *chat = member_object(pushed, id), *v;
    json_object *fields = chat ? member_object(chat, "fields") : NULL;
    json_object *messages = chat ? member_object(chat, "messages") : NULL;
    if (!fields || !messages)
        return;
    if (json_object_object_get_ex(change, "deleteChat", &v) && json_object_get_boolean(v)) {
        /* it dropped the chat: should the deletion lose, it needs it all */
        json_object_object_add(chat, "fields", json_object_new_object());
        json_object_object_add(chat, "messages", json_object_new_object());
        return;
    }
    if (json_object_object_get_ex(change, "fields", &v)) {
        json_object_object_foreach(v, key, val)
        {
            json_object_object_add(fields, key, json_object_get(val));
        }
    }
    if (json_object_object_get_ex(change, "messages", &v)) {
        size_t n = json_object_array_length(v);
        for (size_t i = 0; i < n; i++) {
            json_object *msg = json_object_array_get_idx(v, i);
            json_object_object_add(messages,
                                   json_object_get_string(json_object_object_get(msg, "id")),
                                   json_object_get(msg));
        }
    }
    if (json_object_object_get_ex(change, "deleteMessages", &v)) {
        size_t n = json_object_array_length(v);
        for (size_t i = 0; i < n; i++)
            json_object_object_del(messages,
                                   json_object_get_string(json_object_array_get_idx(v, i)));
    }
}

/* Files a change of the request under its chat. Out of memory, less is
 * noted, as note_held says. */
static void note_sent(json_object *sent_changes, json_object *change)
{
    const char *id = json_object_get_string(json_object_object_get(change, "chatId"));
    json_object *list;
    if (!json_object_object_get_ex(sent_changes, id, &list)) {
        list = json_object_new_array();
        if (!list || json_object_object_add(sent_changes, id, list) != 0) {
            json_object_put(list);
            return;
        }
    }
    if (json_object_array_add(list, json_object_get(change)) != 0)
        json_object_put(change);
}

typedef struct held {
    bool any;          /* the request sent some content of the chat */
    json_object *sent; /* the request's changes to the chat; NULL: none */
    ps_v2_pull *p;
    const char *chat_id;
    bool made;             /* fields and messages looked up (held_map) */
    json_object *fields;   /* key -> value held (time fields included) */
    json_object *messages; /* message id -> the message held */
} held;

/* Whether note_held would hold something of a change: fields (an object
 * with a key) or messages (an array with one). */
static bool holds_some(json_object *change)
{
    json_object *v;
    return (json_object_object_get_ex(change, "fields", &v) &&
            json_object_is_type(v, json_type_object) && json_object_object_length(v) > 0) ||
           (json_object_object_get_ex(change, "messages", &v) &&
            json_object_is_type(v, json_type_array) && json_object_array_length(v) > 0);
}

/* What the device holds of the chat, from its changes in this request (a
 * first sync only); `any` told at once from the changes themselves, as
 * note_held would leave it (a deleteChat empties what came before), the
 * values themselves only when asked (held_map). */
static void held_init(held *h, ps_v2_pull *p, const char *chat_id)
{
    json_object *sent = NULL;
    *h = (held){.p = p, .chat_id = chat_id};
    if (!p->first || !p->sent_changes ||
        !json_object_object_get_ex(p->sent_changes, chat_id, &sent))
        return;
    h->sent = sent;
    size_t n = json_object_array_length(sent);
    for (size_t i = 0; i < n; i++) {
        json_object *change = json_object_array_get_idx(sent, i), *v;
        if (json_object_object_get_ex(change, "deleteChat", &v) && json_object_get_boolean(v))
            h->any = false;
        else if (holds_some(change))
            h->any = true;
    }
}

/* The held map `which` ("fields" or "messages"); NULL when nothing is held
 * (or out of memory: less is held, more is sent, as note_held says). */
static json_object *held_map(held *h, const char *which)
{
    if (!h->made && h->sent) {
        ps_v2_pull *p = h->p;
        json_object *chat = NULL;
        h->made = true;
        if (!p->pushed && !(p->pushed = json_object_new_object()))
            return NULL;
        if (!json_object_object_get_ex(p->pushed, h->chat_id, NULL)) {
            /* the chat's changes applied in order (note_held) */
            size_t n = json_object_array_length(h->sent);
            for (size_t i = 0; i < n; i++)
                note_held(p->pushed, json_object_array_get_idx(h->sent, i));
        }
        if (json_object_object_get_ex(p->pushed, h->chat_id, &chat)) {
            json_object_object_get_ex(chat, "fields", &h->fields);
            json_object_object_get_ex(chat, "messages", &h->messages);
        }
    }
    return strcmp(which, "fields") == 0 ? h->fields : h->messages;
}

/* Whether the device holds this value under this key of held map `which`. */
static bool held_value(held *h, const char *which, const char *key, json_object *value)
{
    json_object *sent, *in = value && h->sent ? held_map(h, which) : NULL;
    return in && json_object_object_get_ex(in, key, &sent) && json_object_equal(sent, value);
}

typedef struct message_sink {
    json_object *messages, *deleted; /* made at their first entry (most deltas have none) */
    bool with_deleted;
    int64_t deleted_after; /* tombstones set after this sequence only */
    held *held;            /* see held: messages the device holds */
    const ps_v2_pull *run; /* non-NULL: leave out what held_from_run says it holds */
} message_sink;

static ps_code collect_message(void *vctx, const ps_message *m)
{
    message_sink *sink = vctx;
    if (m->value && (held_value(sink->held, "messages", m->id, m->value) ||
                     (sink->run && held_from_run(sink->run, &m->mark))))
        return PS_OK;
    if (m->value) {
        if (!sink->messages && !(sink->messages = json_object_new_array()))
            return PS_ERR_NOMEM;
        return json_object_array_add(sink->messages, json_object_get(m->value)) ? PS_ERR_NOMEM
                                                                                : PS_OK;
    }
    ps_code rc = PS_OK;
    if (sink->with_deleted && m->mark.seq > sink->deleted_after) {
        if (!sink->deleted && !(sink->deleted = json_object_new_array()))
            return PS_ERR_NOMEM;
        ps__json_push(&rc, sink->deleted, json_object_new_string(m->id)); /* never a null id */
    }
    return rc;
}

/* The delta of one chat for this puller; *out NULL when there is none. */
static ps_code render_delta(ps_v2_pull *p, ps_chat *chat, json_object **out, ps_error *err)
{
    static const char *const time_keys[3] = {"createdAt", "updatedAt", "lastModified"};
    *out = NULL;
    json_object *obj = json_object_new_object();
    json_object *fields = NULL; /* made at its first field */
    bool sent_here = p->sent_changes && json_object_object_get_ex(p->sent_changes, chat->id, NULL);
    held h; /* borrowed from p->pushed */
    held_init(&h, p, chat->id);
    message_sink sink = {NULL, NULL, !p->first, p->base, &h, NULL};
    ps_code rc = obj ? PS_OK : PS_ERR_NOMEM;
    bool any = false;
    if (rc != PS_OK)
        goto done;
    ps__json_set(&rc, obj, "id", json_object_new_string(chat->id));
    if (rc != PS_OK)
        goto done;
    if (!ps__chat_is_live(chat)) {
        /* A first sync hears of deletions only for chats it sent: a device
         * resyncing after 410 must learn that its copy lost. With a run,
         * also of chats deleted since the run began: an earlier request of
         * the run may have sent them. */
        bool told = p->first ? sent_here || (p->has_run && chat->header.seq > p->run_seq)
                             : wanted(p, &chat->header, p->base, true);
        if (told) {
            ps__json_set(&rc, obj, "deleted", json_object_new_boolean(1));
            any = true;
        }
        goto done;
    }
    /* Back from deletion since the cursor: the device may have dropped it,
     * so it gets the chat whole, its own parts included. */
    bool whole = chat->revived_seq > p->base;
    int64_t base = whole ? 0 : p->base;
    /* a first sync may be a device that lost everything: its own parts too */
    bool skip_own = !whole && !p->first;
    /* Sent whole or not, a message deleted since the cursor may still be on
     * the device (deleted, then the chat deleted and brought back: #11.2),
     * so its tombstone goes too. A first pull of a run also hears of the
     * messages deleted since the run began (docs/protocol.md, `run`): the
     * device may hold them from its earlier requests, and later pulls start
     * past those tombstones. */
    sink.with_deleted = !p->first || p->has_run;
    if (p->first)
        sink.deleted_after = p->run_seq;
    /* what the device wrote earlier in this run, it holds (not for a chat
     * back from deletion: the device may have dropped it meanwhile) */
    const ps_v2_pull *run = whole ? NULL : p;
    sink.run = run;
#define HELD_FROM_RUN(mark) (run && held_from_run(run, (mark)))
    for (size_t i = 0; i < chat->nfields; i++) {
        if (wanted(p, &chat->fields[i].mark, base, skip_own) &&
            !HELD_FROM_RUN(&chat->fields[i].mark) &&
            !held_value(&h, "fields", chat->fields[i].name, chat->fields[i].value)) {
            if (!fields && !(fields = json_object_new_object())) {
                rc = PS_ERR_NOMEM;
                goto done;
            }
            json_object_object_add(fields, chat->fields[i].name,
                                   json_object_get(chat->fields[i].value));
            any = true;
        }
    }
    /* at least: the chat exists (a device that sent some of it knows; a
     * change with no content, such as an existence probe, is still told) */
    if (wanted(p, &chat->header, base, skip_own) && !h.any)
        any = true; /* also for a chat of the run's earlier requests: listed by its id
                       alone, so a client that drops the live chats a whole first pull
                       leaves out keeps it */
    const ps_time_field *tf[3] = {&chat->created_at, &chat->updated_at, &chat->last_modified};
    for (int k = 0; k < 3; k++) {
        if (tf[k]->value && wanted(p, &tf[k]->mark, base, skip_own) &&
            !HELD_FROM_RUN(&tf[k]->mark) && !held_value(&h, "fields", time_keys[k], tf[k]->value)) {
            json_object_object_add(obj, time_keys[k], json_object_get(tf[k]->value));
            any = true;
        }
    }
#undef HELD_FROM_RUN
    /* Rows collect_message would leave out unread are not read at all: the
     * device's own (skip_own), or what it wrote in this run (a first pull
     * hears of no tombstones, and held_from_run drops every live one) —
     * on a first upload, every message it just sent. */
    bool skip_run = run && p->first && p->has_run;
    rc = p->ctx->store->ops->messages_since(
        p->ctx->store, p->user_id, chat->id, base, skip_own || skip_run ? p->device : NULL,
        skip_own ? base : p->run_seq, collect_message, &sink, err);
    if (rc != PS_OK)
        goto done;
    if (fields && json_object_object_length(fields)) {
        json_object_object_add(obj, "fields", json_object_get(fields));
    }
    if (sink.messages && json_object_array_length(sink.messages)) {
        json_object_object_add(obj, "messages", json_object_get(sink.messages));
        any = true;
    }
    if (sink.deleted && json_object_array_length(sink.deleted)) {
        json_object_object_add(obj, "deletedMessages", json_object_get(sink.deleted));
        any = true;
    }
done:
    json_object_put(fields);
    json_object_put(sink.messages);
    json_object_put(sink.deleted);
    if (rc == PS_OK && any)
        *out = obj;
    else
        json_object_put(obj);
    if (rc == PS_ERR_NOMEM)
        ps_error_set(err, rc, -1, "", "out of memory");
    return rc;
}

/* Appends the next changed chat; *found false at the end of the page. The
 * caller holds a read transaction. */
static ps_code next_chat(ps_v2_pull *p, ps_dynbuf *out, bool *found, ps_error *err)
{
    ps_store *store = p->ctx->store;
    ps_chat *chat = NULL;
    json_object *delta = NULL;
    int64_t seq = 0;
    if (p->snapshot && p->pos >= p->snapshot->seq) {
        /* A chat's sequence number is one the user's sequence gave (store.h:
         * its last number given), so none is past it: a device up to date
         * costs no look-up of the chats. */
        *found = false;
        return PS_OK;
    }
    ps_code rc = store->ops->chat_next_changed(store, p->user_id, p->pos, &chat, &seq, err);
    if (rc == PS_OK && chat && json_object_object_get_ex(p->sent_ids, chat->id, NULL)) {
        /* It changed again since this answer sent it: end the page here,
         * so the next one sends it once more, without a duplicate here. */
        ps__chat_free(chat);
        p->more = true;
        *found = false;
        return PS_OK;
    }
    if (rc == PS_OK && chat)
        rc = render_delta(p, chat, &delta, err);
    *found = chat != NULL;
    if (rc == PS_OK && chat)
        p->pos = seq;
    if (rc == PS_OK && delta) {
        size_t len, before = out->len;
        const char *text = ps__json_text(delta, &len);
        rc = !text ? ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory")
                   : ps__dynbuf_adds(out, p->sent ? "," : "");
        if (rc == PS_OK)
            rc = ps__dynbuf_add(out, text, len);
        p->bytes += out->len - before;
        p->sent++;
        if (rc == PS_OK && !p->sent_ids && !(p->sent_ids = json_object_new_object()))
            rc = ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
        if (rc == PS_OK && json_object_object_add(p->sent_ids, chat->id, NULL) != 0)
            rc = ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
    }
    json_object_put(delta);
    ps__chat_free(chat);
    return rc;
}

static ps_code opening(ps_v2_pull *p, ps_dynbuf *out, ps_error *err)
{
    p->state = CHATS;
    ps_code rc = ps__dynbuf_adds(out, "{\"accepted\":");
    if (rc == PS_OK)
        rc = ps__dynbuf_add_int(out, (int64_t)p->accepted);
    if (rc == PS_OK)
        rc = ps__dynbuf_adds(out, ",\"chats\":[");
    return rc == PS_OK ? PS_OK : ps_error_set(err, rc, -1, "", "out of memory building the answer");
}

/* The answer's end, read in the transaction of its last chats: the clock
 * then is above every change the answer carried, some of which may have
 * landed after the push. */
static ps_code closing(ps_v2_pull *p, ps_dynbuf *out, ps_error *err)
{
    ps_user user;
    if (p->snapshot) /* the sync's own transaction has read it */
        user = *p->snapshot;
    else {
        ps_code rc = p->ctx->store->ops->user_load(p->ctx->store, p->ctx->user, &user, err);
        if (rc != PS_OK)
            return rc;
    }
    p->server_clock = user.clock;
    int64_t base = p->base, pos = p->pos;
    if (!p->more) { /* reached the end: everything up to here is delivered */
        base = pos = pos > p->seq_at_start ? pos : p->seq_at_start;
    }
    p->state = DONE;
    /* by pieces, not printf: the whole of a no-op sync's answer but its opening */
    ps_code rc = ps__dynbuf_adds(out, p->more ? "],\"more\":true,\"serverClock\":"
                                              : "],\"more\":false,\"serverClock\":");
    if (rc == PS_OK)
        rc = ps__dynbuf_add_int(out, p->server_clock);
    if (rc == PS_OK)
        rc = ps__dynbuf_adds(out, ",\"cursor\":\"c1.");
    if (rc == PS_OK)
        rc = ps__dynbuf_add_int(out, base);
    if (rc == PS_OK)
        rc = ps__dynbuf_adds(out, ".");
    if (rc == PS_OK)
        rc = ps__dynbuf_add_int(out, pos);
    if (rc == PS_OK)
        rc = ps__dynbuf_adds(out, "\",\"run\":\"r1.");
    if (rc == PS_OK)
        rc = ps__dynbuf_add_int(out, p->run_seq);
    if (rc == PS_OK)
        rc = ps__dynbuf_adds(out, "\"}");
    return rc;
}

/*
 * One piece of the chat list, in the caller's read transaction: chats until
 * the piece holds PIECE_BYTES, or to the end of the page — then the closing
 * too (*done), from the same snapshot. One transaction per piece rather than
 * per chat: each costs file locks.
 */
static ps_code chats_piece(ps_v2_pull *p, ps_dynbuf *out, bool *done, ps_error *err)
{
    ps_code rc = PS_OK;
    bool found = true;
    size_t start = out->len;
    *done = false;
    while (rc == PS_OK && found && out->len - start < PIECE_BYTES) {
        if (p->sent >= p->limit || p->bytes >= PAGE_BYTES) {
            /* full page: is there anything left? */
            ps_chat *peek = NULL;
            int64_t seq;
            rc = p->ctx->store->ops->chat_next_changed(p->ctx->store, p->user_id, p->pos, &peek,
                                                       &seq, err);
            p->more = peek != NULL;
            ps__chat_free(peek);
            found = false;
            break;
        }
        rc = next_chat(p, out, &found, err);
    }
    if (rc == PS_OK && !found) {
        rc = closing(p, out, err);
        *done = true;
    }
    return rc;
}

ps_code ps_v2_pull_next(ps_v2_pull *p, ps_dynbuf *out, bool *done, ps_error *err)
{
    ps_store *store = p->ctx->store;
    ps_code rc = PS_OK;
    *done = false;
    if (p->has_head) { /* made with the sync itself */
        rc = ps__dynbuf_add(out, p->head.data, p->head.len);
        ps__dynbuf_free(&p->head);
        p->has_head = false;
        *done = p->state == DONE;
    } else {
        switch (p->state) {
        case OPENING:
            rc = opening(p, out, err);
            break;
        case CHATS:
            if ((rc = ps_store_begin(store, false, err)) != PS_OK)
                break;
            if ((rc = chats_piece(p, out, done, err)) == PS_OK)
                rc = ps_store_commit(store, err);
            else
                ps_store_rollback(store);
            break;
        case DONE:
            *done = true;
            break;
        }
    }
    if (rc == PS_ERR_TOO_LARGE || rc == PS_ERR_NOMEM)
        ps_error_set(err, rc, -1, "", "out of memory building the answer");
    return rc;
}

bool ps_v2_pull_whole(ps_v2_pull *p, ps_dynbuf *out)
{
    if (!p->has_head || p->state != DONE || p->head.len > out->limit)
        return false;
    size_t limit = out->limit;
    ps__dynbuf_free(out);
    *out = p->head; /* moved, not copied */
    out->limit = limit;
    ps__dynbuf_init(&p->head, PIECE_LIMIT);
    p->has_head = false;
    return true;
}

void ps_v2_pull_free(ps_v2_pull *p)
{
    if (!p)
        return;
    free(p->device);
    json_object_put(p->sent_ids);
    json_object_put(p->pushed);
    json_object_put(p->sent_changes);
    ps__dynbuf_free(&p->head);
    free(p);
}
