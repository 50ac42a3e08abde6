/*
 * The legacy sync (POST /sync), when the server answers 404 to /v2/sync:
 * chats with log entries are sent whole, stamped [newest entry's counter,
 * device], with the messages this device deleted as {id, deleted: true};
 * `missing` chats replace local content, `deletions` delete.
 */
#include "client/sync_run.h"
#include "core/chat_codec.h"
#include "core/json_build.h"
#include "core/json_parse.h"
#include "core/validate.h"

#include <string.h>

/* Each chat in the log with its oldest and newest counter: {chatId: [old, new]}. */
static ps_code log_chats(ps_client *c, json_object **chats, int64_t *max_seq, size_t *count,
                         ps_error *err)
{
    *max_seq = 0;
    *count = 0;
    if (!(*chats = json_object_new_object()))
        return ps__sync_nomem(err);
    bool more = true;
    ps_code rc = PS_OK;
    while (rc == PS_OK && more) {
        ps_change_row *rows = NULL;
        size_t n = 0;
        if ((rc = ps__lstore_changes(c->store, *max_seq, 1000, BATCH_BYTES, &rows, &n, &more,
                                     err)) != PS_OK)
            break;
        for (size_t i = 0; i < n; i++) {
            json_object *v; /* [oldest, newest] counter */
            if (!json_object_object_get_ex(*chats, rows[i].chat_id, &v)) {
                ps_code built = PS_OK;
                v = json_object_new_array_ext(2);
                ps__json_push(&built, v, json_object_new_int64(rows[i].clock));
                ps__json_push(&built, v, json_object_new_int64(rows[i].clock));
                ps__json_set(&built, *chats, rows[i].chat_id, v);
                if (built != PS_OK) {
                    rc = ps__sync_nomem(err);
                    break;
                }
            }
            /* in place: no allocation */
            json_object *oldest = json_object_array_get_idx(v, 0);
            json_object *newest = json_object_array_get_idx(v, 1);
            if (rows[i].clock < json_object_get_int64(oldest))
                json_object_set_int64(oldest, rows[i].clock);
            if (rows[i].clock > json_object_get_int64(newest))
                json_object_set_int64(newest, rows[i].clock);
            *max_seq = rows[i].seq;
        }
        *count += n;
        ps__change_rows_free(rows, n);
    }
    if (rc != PS_OK) {
        json_object_put(*chats);
        *chats = NULL;
    }
    return rc;
}

/* [counter, id], or NULL when an allocation failed. */
static json_object *lamport_json(int64_t counter, const char *id)
{
    ps_code rc = PS_OK;
    json_object *t = json_object_new_array_ext(2);
    ps__json_push(&rc, t, json_object_new_int64(counter));
    ps__json_push(&rc, t, json_object_new_string(id));
    if (rc != PS_OK) {
        json_object_put(t);
        return NULL;
    }
    return t;
}

static ps_code build_from_log(sync_run *r, json_object *log, json_object **out, ps_error *err)
{
    ps_client *c = r->c;
    int64_t clock = 0;
    json_object *req = json_object_new_object();
    json_object *chats = json_object_new_array();
    json_object *dels = json_object_new_array();
    ps_code rc = PS_OK;
    ps_code built = req && chats && dels ? PS_OK : PS_ERR_NOMEM; /* sticky, json_build.h */
    if (built == PS_OK)
        rc = ps__lstore_meta_int(c->store, "clock", 0, &clock, err);
    json_object_object_foreach(log, id, clockv)
    {
        if (rc != PS_OK || built != PS_OK)
            break;
        ps_chat *chat = NULL;
        if ((rc = ps__lstore_chat_load(c->store, id, true, NULL, 0, &chat, err)) != PS_OK || !chat)
            continue;
        int64_t oldest = json_object_get_int64(json_object_array_get_idx(clockv, 0));
        int64_t newest = json_object_get_int64(json_object_array_get_idx(clockv, 1));
        if (ps__chat_is_live(chat)) {
            json_object *doc = ps__chat_to_legacy(chat);
            if (!doc) {
                built = PS_ERR_NOMEM;
            } else {
                /* Messages deleted by the changes on the way go as
                 * {id, deleted: true}, which polysyncd's /sync takes as a
                 * deletion (a message merely left out is not one). */
                json_object *msgs = json_object_object_get(doc, "messages");
                for (size_t i = 0; i < chat->nmessages; i++) {
                    const ps_message *m = &chat->messages[i];
                    if (m->value || !m->stamp.device || strcmp(m->stamp.device, c->device) != 0 ||
                        m->stamp.lamport < oldest || m->stamp.lamport == 0)
                        continue;
                    json_object *t = json_object_new_object();
                    ps__json_set(&built, t, "id", json_object_new_string(m->id));
                    ps__json_set(&built, t, "deleted", json_object_new_boolean(1));
                    ps__json_push(&built, msgs, t);
                }
                /* The whole chat is one write, at the newest change made here. */
                if (newest > 0)
                    ps__json_set(&built, doc, "updatedAtLamport", lamport_json(newest, c->device));
                else if (!chat->lamport.counter || !chat->lamport.id || !*chat->lamport.id)
                    json_object_object_del(doc, "updatedAtLamport");
                r->st->messages_sent += ps__json_array_len(doc, "messages");
                r->st->chats_sent++;
                ps__json_push(&built, chats, doc);
            }
        } else if (chat->has_tombstone && chat->deleted_lamport.id &&
                   strcmp(chat->deleted_lamport.id, c->device) == 0) {
            json_object *d = json_object_new_object();
            ps__json_set(&built, d, "id", json_object_new_string(id));
            ps__json_set(&built, d, "lamport",
                         lamport_json(chat->deleted_lamport.counter, c->device));
            ps__json_push(&built, dels, d);
        }
        ps__chat_free(chat);
    }
    if (rc == PS_OK && built == PS_OK) {
        ps__json_set(&built, req, "deviceId", json_object_new_string(c->device));
        ps__json_set(&built, req, "clientClock", json_object_new_int64(clock));
        ps__json_set(&built, req, "chats", chats);
        ps__json_set(&built, req, "deletions", dels);
        if (built == PS_OK) {
            *out = req;
            return PS_OK;
        }
        json_object_put(req); /* holds or has released chats and dels */
        return ps__sync_nomem(err);
    }
    json_object_put(req);
    json_object_put(chats);
    json_object_put(dels);
    return rc != PS_OK ? rc : ps__sync_nomem(err);
}

ps_code ps__build_legacy_request(sync_run *r, int64_t *max_seq, size_t *count, json_object **out,
                                 ps_error *err)
{
    json_object *log = NULL;
    *out = NULL;
    ps_code rc = log_chats(r->c, &log, max_seq, count, err);
    if (rc == PS_OK)
        rc = build_from_log(r, log, out, err);
    json_object_put(log);
    return rc;
}

/* A `missing` chat: the server's whole merged state of it. */
static ps_code apply_legacy_chat(sync_run *r, json_object *doc, int64_t S, ps_error *err)
{
    ps_client *c = r->c;
    const char *id = json_object_get_string(json_object_object_get(doc, "id"));
    ps_chat *local = NULL;
    json_object *change = json_object_new_object();
    json_object *fields = json_object_new_object();
    json_object *msgs = json_object_new_array();
    json_object *dels = json_object_new_array();
    json_object *returned = json_object_new_object();
    ps_code rc = PS_OK;
    ps_code built = change && fields && msgs && dels && returned ? PS_OK : PS_ERR_NOMEM;
    ps_lamport tuple = {0};
    if (built == PS_OK)
        rc = ps__lstore_chat_load(c->store, id, true, NULL, 0, &local, err);
    if (rc != PS_OK)
        goto done;
    json_object_object_foreach(doc, key, val)
    {
        if (strcmp(key, "id") == 0)
            continue;
        if (strcmp(key, "updatedAtLamport") == 0) {
            ps_limits lim = ps__limits_default();
            if (ps__valid_lamport(val, &lim)) {
                tuple.counter = json_object_get_int64(json_object_array_get_idx(val, 0));
                tuple.id = (char *)json_object_get_string(json_object_array_get_idx(val, 1));
            }
        } else if (strcmp(key, "messages") == 0) {
            size_t n = json_object_array_length(val);
            for (size_t i = 0; i < n; i++) {
                json_object *m = json_object_array_get_idx(val, i);
                ps__json_push(&built, msgs, json_object_get(m));
                ps__json_set_null(&built, returned,
                                  json_object_get_string(json_object_object_get(m, "id")));
            }
        } else {
            ps__json_set_opt(&built, fields, key, val != NULL, json_object_get(val));
        }
    }
    /* what it left out, the server does not have: deleted there */
    for (size_t i = 0; local && i < local->nmessages; i++)
        if (local->messages[i].value &&
            !json_object_object_get_ex(returned, local->messages[i].id, NULL))
            ps__json_push(&built, dels, json_object_new_string(local->messages[i].id));
    ps__json_set(&built, change, "chatId", json_object_new_string(id));
    ps__json_set(&built, change, "clock", json_object_new_int64(S));
    ps__json_set(&built, change, "fields", json_object_get(fields));
    ps__json_set(&built, change, "messages", json_object_get(msgs));
    ps__json_set(&built, change, "deleteMessages", json_object_get(dels));
    if (built != PS_OK) {
        rc = ps__sync_nomem(err);
        goto done;
    }
    ps_error verr;
    rc = ps__validate_change(change, c->device, &verr);
    if (rc == PS_ERR_NOMEM) /* no verdict on what the server sent */
        rc = ps__sync_nomem(err);
    else if (rc != PS_OK)
        rc = ps_error_set(err, PS_ERR_IO, -1, "", "the server sent an invalid chat %s: %s", id,
                          verr.message);
    ps_apply_effect eff = {0};
    if (rc == PS_OK)
        rc = ps__apply_change_ex(c, change, PS_SERVER_WRITER, tuple.counter ? &tuple : NULL, &eff,
                                 err);
    ps__count_received(r, rc, false, &eff);
done:
    ps__chat_free(local);
    json_object_put(change);
    json_object_put(fields);
    json_object_put(msgs);
    json_object_put(dels);
    json_object_put(returned);
    return rc;
}

ps_code ps__apply_legacy_answer(sync_run *r, json_object *ans, int64_t max_seq, ps_error *err)
{
    ps_client *c = r->c;
    json_object *missing = NULL, *dels = NULL, *v;
    ps_limits lim = ps__limits_default();
    if (!json_object_is_type(ans, json_type_object) ||
        !json_object_object_get_ex(ans, "missing", &missing) ||
        !json_object_is_type(missing, json_type_array) ||
        (json_object_object_get_ex(ans, "deletions", &dels) &&
         !json_object_is_type(dels, json_type_array)))
        return ps_error_set(err, PS_ERR_IO, -1, "", "the answer of %s/sync is not a sync answer",
                            c->server);
    size_t nm = json_object_array_length(missing);
    size_t nd = dels ? json_object_array_length(dels) : 0;
    int64_t S = 0;
    if (json_object_object_get_ex(ans, "serverClock", &v) && ps__valid_counter(v))
        S = json_object_get_int64(v);
    for (size_t i = 0; i < nm; i++) {
        json_object *doc = json_object_array_get_idx(missing, i);
        ps_error verr;
        if (ps__validate_chat(doc, (long)i, &lim, &verr) != PS_OK)
            return ps_error_set(err, PS_ERR_IO, -1, "", "the server sent an invalid chat: %s",
                                verr.message);
        if (json_object_object_get_ex(doc, "updatedAtLamport", &v) && ps__valid_lamport(v, &lim) &&
            json_object_get_int64(json_object_array_get_idx(v, 0)) > S)
            S = json_object_get_int64(json_object_array_get_idx(v, 0));
    }
    ps_code rc = ps__lstore_begin(c->store, err);
    if (rc != PS_OK)
        return rc;
    int64_t clock = 0;
    rc = ps__lstore_meta_int(c->store, "clock", 0, &clock, err);
    /* Above everything this device sent, so the server's verdict wins here. */
    if (clock > S)
        S = clock;
    if (S == 0)
        S = 1;
    if (rc == PS_OK)
        rc = ps__observe_clock(c, S, err);
    if (rc == PS_OK && max_seq)
        rc = ps__lstore_changes_delete_upto(c->store, max_seq, err);
    for (size_t i = 0; i < nm && rc == PS_OK; i++)
        rc = apply_legacy_chat(r, json_object_array_get_idx(missing, i), S, err);
    for (size_t i = 0; i < nd && rc == PS_OK; i++) {
        json_object *d = json_object_array_get_idx(dels, i);
        json_object *idv =
            json_object_is_type(d, json_type_object) ? json_object_object_get(d, "id") : NULL;
        if (!ps__valid_id(idv, &lim))
            continue;
        ps_chat *chat = NULL;
        rc =
            ps__lstore_chat_load(c->store, json_object_get_string(idv), false, NULL, 0, &chat, err);
        if (rc == PS_OK && chat && ps__chat_is_live(chat)) {
            bool was_live = false;
            rc = ps__apply_deletion(c, json_object_get_string(idv), S, &was_live, err);
            r->st->deletions_received += was_live;
        }
        ps__chat_free(chat);
    }
    if (rc == PS_OK)
        rc = ps__restamp_pending(c, S, err);
    if (rc == PS_OK)
        return ps__lstore_commit(c->store, err);
    ps__lstore_rollback(c->store);
    return rc;
}

ps_code ps__sync_legacy(sync_run *r, ps_error *err)
{
    ps_client *c = r->c;
    r->st->protocol = "legacy";
    json_object *req = NULL, *ans = NULL;
    int64_t max_seq = 0;
    size_t count = 0;
    ps_http_answer a;
    ps__http_answer_init(&a);
    ps_code rc = ps__build_legacy_request(r, &max_seq, &count, &req, err);
    r->st->changes_total = count;
    ps_limits lim = ps__limits_default();
    if (rc == PS_OK)
        rc = ps__validate_sync_request(req, &lim, err);
    size_t len = 0;
    const char *text = rc == PS_OK ? ps__json_text(req, &len) : NULL;
    if (rc == PS_OK && !text)
        rc = ps__sync_nomem(err);
    ps__sync_report(r);
    /* Not gzipped: a seed server would not understand it. */
    if (rc == PS_OK)
        rc = ps__http_post(c, "/sync", text, len, false, r->st, &a, err);
    if (rc == PS_OK && a.status == 404)
        rc = ps_error_set(err, PS_ERR_CONFIG, -1, "server",
                          "%s is not a sync server: neither /v2/sync nor /sync exists (404)",
                          c->server);
    else if (rc == PS_OK && a.status != 200)
        rc = ps__sync_refused(c, &a, "/sync", err);
    ps_error perr;
    if (rc == PS_OK && ps__json_parse(a.body.data ? a.body.data : "", a.body.len,
                                     PS_JSON_MAX_DEPTH + 4, &ans, &perr) != PS_OK)
        rc = ps_error_set(err, PS_ERR_IO, -1, "", "the answer of %s/sync is not JSON: %s",
                          c->server, perr.message);
    if (rc == PS_OK)
        rc = ps__apply_legacy_answer(r, ans, max_seq, err);
    if (rc == PS_OK) {
        r->st->changes_sent = count;
        r->st->pages = 1;
    }
    json_object_put(req);
    json_object_put(ans);
    ps__http_answer_free(&a);
    ps__sync_report(r);
    return rc;
}
