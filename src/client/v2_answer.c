/*
 * A /v2/sync answer: checked, then applied in one store transaction (the
 * device clock rises to serverClock, the acknowledged entries leave the
 * log, the pulled chats are merged as the server's writes, the cursor
 * moves). A sync killed at any point leaves the store as of the last
 * commit, and the next run resends the log (merging a write twice changes
 * nothing) from the stored cursor (which may be reused).
 */
#include "client/sync_run.h"
#include "core/json_parse.h"
#include "core/timestamp.h"
#include "core/validate.h"

#include <string.h>

ps_code ps__parse_v2_answer(ps_client *c, ps_http_answer *a, v2_answer *ans, ps_error *err)
{
    memset(ans, 0, sizeof *ans);
    json_object *v;
    ps_error perr;
    if (ps__answer_json(a, PS_V2_ANSWER_DEPTH, &ans->root, &perr) != PS_OK)
        return ps_error_set(err, PS_ERR_IO, -1, "", "the answer of %s/v2/sync is not JSON: %s",
                            c->server, perr.message);
    if (!json_object_object_get_ex(ans->root, "chats", &ans->chats) ||
        !json_object_is_type(ans->chats, json_type_array) ||
        !json_object_object_get_ex(ans->root, "cursor", &v) ||
        !json_object_is_type(v, json_type_string) || !json_object_get_string_len(v))
        goto bad;
    ans->cursor = json_object_get_string(v);
    if (!json_object_object_get_ex(ans->root, "more", &v) ||
        !json_object_is_type(v, json_type_boolean))
        goto bad;
    ans->more = json_object_get_boolean(v);
    if (!json_object_object_get_ex(ans->root, "serverClock", &v) || !ps__valid_counter(v))
        goto bad;
    ans->server_clock = json_object_get_int64(v);
    if (json_object_object_get_ex(ans->root, "run", &v) &&
        json_object_is_type(v, json_type_string)) /* optional: older servers lack it */
        ans->run = json_object_get_string(v);
    ps_limits lim = ps__limits_default();
    size_t n = json_object_array_length(ans->chats);
    for (size_t i = 0; i < n; i++) {
        json_object *chat = json_object_array_get_idx(ans->chats, i);
        if (!json_object_is_type(chat, json_type_object) ||
            !json_object_object_get_ex(chat, "id", &v) || !ps__valid_id(v, &lim))
            goto bad;
    }
    return PS_OK;
bad:
    json_object_put(ans->root);
    ans->root = NULL;
    return ps_error_set(err, PS_ERR_IO, -1, "", "the answer of %s/v2/sync is not a sync answer",
                        c->server);
}

/* One chat of a v2 answer: {id, fields?, createdAt?, ..., messages?,
 * deletedMessages?} or {id, deleted: true}. */
ps_code ps__apply_remote_chat(sync_run *r, json_object *chat, int64_t S, ps_error *err)
{
    ps_client *c = r->c;
    json_object *v, *change = json_object_new_object();
    ps_code built = PS_OK;
    const char *id = json_object_get_string(json_object_object_get(chat, "id"));
    ps__json_set(&built, change, "chatId", json_object_new_string(id));
    ps__json_set(&built, change, "clock", json_object_new_int64(S));
    bool deleted = json_object_object_get_ex(chat, "deleted", &v) &&
                   json_object_is_type(v, json_type_boolean) && json_object_get_boolean(v);
    if (deleted) {
        ps__json_set(&built, change, "deleteChat", json_object_new_boolean(1));
    } else {
        json_object *fields = json_object_new_object();
        if (json_object_object_get_ex(chat, "fields", &v) &&
            json_object_is_type(v, json_type_object)) {
            json_object_object_foreach(v, key, val)
                ps__json_set_opt(&built, fields, key, val != NULL, json_object_get(val));
        }
        static const char *const times[3] = {"createdAt", "updatedAt", "lastModified"};
        for (int k = 0; k < 3; k++)
            if (json_object_object_get_ex(chat, times[k], &v))
                ps__json_set_opt(&built, fields, times[k], v != NULL, json_object_get(v));
        ps__json_set(&built, change, "fields", fields);
        /* present but null: left for the validator to refuse, as before */
        if (json_object_object_get_ex(chat, "messages", &v))
            ps__json_set_opt(&built, change, "messages", v != NULL, json_object_get(v));
        if (json_object_object_get_ex(chat, "deletedMessages", &v))
            ps__json_set_opt(&built, change, "deleteMessages", v != NULL, json_object_get(v));
    }
    if (built != PS_OK) {
        json_object_put(change);
        return ps__sync_nomem(err);
    }
    ps_error verr;
    ps_code rc = ps__validate_change(change, c->device, &verr);
    if (rc == PS_ERR_NOMEM) /* no verdict on what the server sent */
        rc = ps__sync_nomem(err);
    else if (rc != PS_OK)
        rc = ps_error_set(err, PS_ERR_IO, -1, "", "the server sent an invalid chat %s: %s", id,
                          verr.message);
    /* The chat's updatedAtLamport (what an export shows the Polyglot app)
     * rises to the server's clock, under the server's own name. */
    ps_lamport tuple = {.counter = S, .id = "server"};
    ps_apply_effect eff = {0};
    /* A chat named by id alone (a first pull lists so every chat the run
     * pushed, for drop_unseen): merging it changes only the touched stamp
     * and the tuple, kept beside the header when that is all it can change
     * (ps__lstore_chat_touch) rather than unpacked, merged and repacked. The
     * stamp is the one ps__apply_change_ex gives a change without `at`. */
    bool kept = false;
    if (rc == PS_OK && json_object_object_length(chat) == 1) {
        char writer[] = PS_SERVER_WRITER;
        ps_stamp stamp = {.ts = ps__time_now_ms(), .lamport = S, .device = writer};
        rc = ps__lstore_chat_touch(c->store, id, &stamp, &tuple, &kept, err);
        eff.was_live = kept; /* and still live: nothing received to count */
    }
    if (rc == PS_OK && !kept)
        rc = ps__apply_change_ex(c, change, PS_SERVER_WRITER, deleted ? NULL : &tuple, &eff, err);
    json_object_put(change);
    ps__count_received(r, rc, deleted, &eff);
    return rc;
}

/* After a whole pull from a null cursor that fit in one answer: a local
 * chat it did not contain is not live on the server (a first pull lists
 * every live chat but those the request sent and holds whole, and no
 * deletions but of those), unless it has changes on the way. */
static ps_code drop_unseen(sync_run *r, json_object *seen, int64_t S, ps_error *err)
{
    json_object *ids = NULL;
    ps_code rc = ps__lstore_chat_ids(r->c->store, true, &ids, err);
    size_t n = rc == PS_OK ? json_object_array_length(ids) : 0;
    for (size_t i = 0; i < n && rc == PS_OK; i++) {
        const char *id = json_object_get_string(json_object_array_get_idx(ids, i));
        bool pending = false;
        if (json_object_object_get_ex(seen, id, NULL))
            continue;
        if ((rc = ps__lstore_chat_pending(r->c->store, id, &pending, err)) != PS_OK || pending)
            continue;
        bool was_live = false;
        if ((rc = ps__apply_deletion(r->c, id, S, &was_live, err)) == PS_OK)
            r->st->deletions_received += was_live;
    }
    json_object_put(ids);
    return rc;
}

ps_code ps__apply_v2_answer(sync_run *r, const v2_answer *ans, const ps_change_row *rows, size_t n,
                            const char *req_cursor, bool push_only, ps_error *err)
{
    ps_client *c = r->c;
    json_object *seen = NULL;
    bool null_cursor = req_cursor == NULL;
    int64_t last_seq = n ? rows[n - 1].seq : 0;
    ps_code rc = ps__lstore_begin(c->store, err);
    if (rc != PS_OK)
        return rc;
    int64_t S = ans->server_clock;
    rc = ps__observe_clock(c, S, err);
    if (rc == PS_OK && last_seq)
        rc = ps__lstore_changes_delete_upto(c->store, last_seq, err);
    /* A null cursor needs no verification: a first pull sends chats whole,
     * deletions of the sent included. */
    if (rc == PS_OK && !null_cursor)
        rc = ps__verify_note(c, rows, n, S, req_cursor, err);
    if (rc == PS_OK && !push_only) {
        bool whole = null_cursor && !ans->more;
        if (whole && !(seen = json_object_new_object()))
            rc = ps__sync_nomem(err);
        /* A chat this request sent is left out when the device holds all of
         * it (no echo), and listed `deleted` when it is not live: unseen is
         * not gone for it. */
        ps_code built = PS_OK;
        for (size_t i = 0; i < n && seen; i++)
            ps__json_set_null(&built, seen, rows[i].chat_id);
        size_t count = json_object_array_length(ans->chats);
        for (size_t i = 0; i < count && rc == PS_OK; i++) {
            json_object *chat = json_object_array_get_idx(ans->chats, i);
            rc = ps__apply_remote_chat(r, chat, S, err);
            if (seen)
                ps__json_set_null(&built, seen,
                                  json_object_get_string(json_object_object_get(chat, "id")));
        }
        /* a chat missing from `seen` would be dropped as unseen */
        if (rc == PS_OK && built != PS_OK)
            rc = ps__sync_nomem(err);
        if (rc == PS_OK && whole)
            rc = drop_unseen(r, seen, S, err);
        if (rc == PS_OK)
            rc = ps__restamp_pending(c, S, err);
        if (rc == PS_OK)
            rc = ps__lstore_meta_set(c->store, "cursor", ans->cursor, err);
    }
    json_object_put(seen);
    if (rc == PS_OK)
        return ps__lstore_commit(c->store, err);
    ps__lstore_rollback(c->store);
    return rc;
}
