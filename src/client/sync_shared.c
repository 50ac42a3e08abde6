/*
 * What the v2 sync, the legacy sync and the verification pull share: the
 * progress report, what a refusal means, and applying the server's writes.
 *
 * An answer carries values, not the stamps behind them; it is the server's
 * merge result, newer than everything this device pushed (serverClock is
 * above every counter in the request). So pulled parts are merged as writes
 * at (serverClock, PS_SERVER_WRITER), which outrank every write this device
 * had pushed. A log entry made while the request was in flight (another
 * process, another handle) was not in the push: it gets a fresh counter
 * above serverClock and is merged again (ps__restamp_pending), so it wins
 * here and, sent next, on the server too.
 */
#include "client/sync_run.h"
#include "core/json_parse.h"

#include <string.h>

void ps__sync_report(sync_run *r)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    r->st->elapsed_ms =
        (now.tv_sec - r->start.tv_sec) * 1000LL + (now.tv_nsec - r->start.tv_nsec) / 1000000;
    if (r->c->progress)
        r->c->progress(r->st, r->c->progress_ud);
}

/* ---- what a refusal means ---- */

ps_code ps__sync_refused(ps_client *c, const ps_http_answer *a, const char *path, ps_error *err)
{
    const char *detail = a->message[0] ? a->message : "no detail";
    long s = a->status;
    if (s == 401 || s == 403) {
        /* revoked and disabled are the operator's doing: a new token from
         * them, not another try with this one */
        ps_code rc = strcmp(a->code, "token_revoked") == 0   ? PS_ERR_TOKEN_REVOKED
                     : strcmp(a->code, "user_disabled") == 0 ? PS_ERR_USER_DISABLED
                     : c->token                               ? PS_ERR_INVALID_TOKEN
                                                              : PS_ERR_UNAUTHORIZED;
        return ps_error_set(err, rc, -1, "token",
                            "the server refused the credentials (HTTP %ld%s%s): %s; check "
                            "--token, --token-file or POLYSYNC_TOKEN",
                            s, a->code[0] ? " " : "", a->code, detail);
    }
    if (s == 507)
        return ps_error_set(err, PS_ERR_QUOTA, -1, "",
                            "the server refused the sync: storage quota exceeded: %s", detail);
    if (s == 400 || s == 413 || s == 415) {
        ps_code rc = s == 413 ? PS_ERR_TOO_LARGE : s == 415 ? PS_ERR_ENCODING : PS_ERR_INVALID;
        if (strcmp(a->code, "malformed_json") == 0)
            rc = PS_ERR_MALFORMED;
        else if (strcmp(a->code, "invalid_utf8") == 0)
            rc = PS_ERR_UTF8;
        else if (strcmp(a->code, "too_deep") == 0)
            rc = PS_ERR_TOO_DEEP;
        else if (strcmp(a->code, "bad_gzip") == 0)
            rc = PS_ERR_BAD_GZIP;
        else if (strcmp(a->code, "bad_framing") == 0)
            rc = PS_ERR_BAD_FRAMING;
        else if (strcmp(a->code, "body_too_large") == 0)
            rc = PS_ERR_BODY_TOO_LARGE;
        else if (strcmp(a->code, "unsupported_media_type") == 0)
            rc = PS_ERR_MEDIA_TYPE;
        return ps_error_set(err, rc, -1, "", "the server rejected the sync (HTTP %ld%s%s): %s", s,
                            a->code[0] ? " " : "", a->code, detail);
    }
    return ps_error_set(err, s == 405 ? PS_ERR_METHOD_NOT_ALLOWED : PS_ERR_IO, -1, "",
                        "unexpected answer from %s%s: HTTP %ld: %s", c->server, path, s, detail);
}

/* ---- applying what the server sent ---- */

ps_code ps__restamp_pending(ps_client *c, int64_t S, ps_error *err)
{
    int64_t after = 0;
    bool more = true;
    ps_code rc = PS_OK;
    while (rc == PS_OK && more) {
        ps_change_row *rows = NULL;
        size_t n = 0;
        if ((rc = ps__lstore_changes(c->store, after, 500, BATCH_BYTES, &rows, &n, &more, err)) !=
            PS_OK)
            break;
        for (size_t i = 0; i < n && rc == PS_OK; i++) {
            ps_change_row *row = &rows[i];
            after = row->seq;
            if (row->kind != PS_CHANGE_LOCAL || row->clock == 0 || row->clock > S)
                continue;
            json_object *change = NULL;
            int64_t clock;
            if ((rc = ps__json_parse(row->body, row->body_len, PS_JSON_MAX_DEPTH, &change, err)) !=
                PS_OK)
                break;
            if ((rc = ps__tick(c, &clock, err)) == PS_OK) {
                ps__json_set(&rc, change, "clock", json_object_new_int64(clock));
                if (rc != PS_OK) /* never the entry without its clock */
                    rc = ps__sync_nomem(err);
            }
            if (rc == PS_OK)
                rc = ps__lstore_change_update(c->store, row->seq, clock,
                                              ps__json_text(change, NULL), err);
            ps_lamport tuple = {.counter = clock, .id = c->device};
            if (rc == PS_OK)
                rc = ps__apply_change(c, change, c->device, &tuple, err);
            json_object_put(change);
        }
        ps__change_rows_free(rows, n);
    }
    return rc;
}

/* Raises the device clock to at least `S`. */
ps_code ps__observe_clock(ps_client *c, int64_t S, ps_error *err)
{
    int64_t clock;
    ps_code rc = ps__lstore_meta_int(c->store, "clock", 0, &clock, err);
    if (rc == PS_OK && S > clock)
        rc = ps__lstore_meta_set_int(c->store, "clock", S, err);
    return rc;
}

ps_code ps__apply_deletion(ps_client *c, const char *id, int64_t S, bool *was_live, ps_error *err)
{
    json_object *change = json_object_new_object();
    ps_code rc = change ? PS_OK : PS_ERR_NOMEM;
    ps__json_set(&rc, change, "chatId", json_object_new_string(id));
    ps__json_set(&rc, change, "clock", json_object_new_int64(S));
    ps__json_set(&rc, change, "deleteChat", json_object_new_boolean(1));
    *was_live = false;
    if (rc != PS_OK) {
        json_object_put(change);
        return ps__sync_nomem(err);
    }
    ps_apply_effect eff = {0};
    rc = ps__apply_change_ex(c, change, PS_SERVER_WRITER, NULL, &eff, err);
    json_object_put(change);
    *was_live = rc == PS_OK && eff.was_live;
    return rc;
}

size_t ps__json_array_len(json_object *obj, const char *key)
{
    json_object *v;
    return json_object_object_get_ex(obj, key, &v) && json_object_is_type(v, json_type_array)
               ? json_object_array_length(v)
               : 0;
}

/* Counts what a person would call received: what changed here. A chat the
 * server sends back as this device already has it (its own writes echoed,
 * or the same content from another device) is not news. */
void ps__count_received(sync_run *r, ps_code rc, bool deleted, const ps_apply_effect *eff)
{
    if (rc != PS_OK)
        return;
    if (deleted) {
        r->st->deletions_received += eff->was_live;
        return;
    }
    r->st->chats_received += eff->chat_changed;
    r->st->messages_received += eff->messages_changed;
}
