/*
 * The verification pull: after a push that may have lost without the
 * server saying so, one pull of everything since the push's cursor under a
 * second device name, applied like any pull (see ps__verify_pull); not made
 * when the server says it re-announces the winner of a losing write.
 */
#include "client/sync_run.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Whether a batch may have lost on the server without hearing of it: a
 * local change with a counter below serverClock raced with writes it had
 * not seen (counter 0: an import, older than every counted write). */
static bool may_have_lost(const ps_change_row *rows, size_t n, int64_t S)
{
    for (size_t i = 0; i < n; i++)
        if (rows[i].kind == PS_CHANGE_LOCAL && rows[i].clock < S)
            return true;
    return false;
}

/*
 * Whether a batch holds an import (a local change with counter 0) that may
 * have won on the server yet lost here: an imported value is older than
 * every counted write, so a copy the server sent earlier (merged here at
 * serverClock) keeps it from showing locally, while on the server, against
 * another import, the newer file wins. The server has nothing to re-send
 * (nothing lost there) and does not echo the device's own write: only a
 * pull under another name brings it here, whatever the server says.
 */
static bool has_import(const ps_change_row *rows, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (rows[i].kind == PS_CHANGE_LOCAL && rows[i].clock == 0)
            return true;
    return false;
}

ps_code ps__verify_note(ps_client *c, const ps_change_row *rows, size_t n, int64_t S,
                        const char *req_cursor, ps_error *err)
{
    if (!may_have_lost(rows, n, S))
        return PS_OK;
    /* From the cursor this push went out with, the verification pull will
     * fetch the server's verdict on it; an older pending one covers it. */
    char *pending = NULL;
    ps_code rc = ps__lstore_meta_get(c->store, "verify_cursor", &pending, err);
    if (rc == PS_OK && !pending)
        rc = ps__lstore_meta_set(c->store, "verify_cursor", req_cursor, err);
    free(pending);
    if (rc == PS_OK && has_import(rows, n))
        rc = ps__lstore_meta_set(c->store, "verify_import", "1", err);
    return rc;
}

/* The verification is done (or not needed): no pull is pending. */
static ps_code forget_cursor(ps_client *c, ps_error *err)
{
    ps_code rc = ps__lstore_begin(c->store, err);
    if (rc != PS_OK)
        return rc;
    if ((rc = ps__lstore_meta_set(c->store, "verify_cursor", NULL, err)) == PS_OK &&
        (rc = ps__lstore_meta_set(c->store, "verify_import", NULL, err)) == PS_OK)
        return ps__lstore_commit(c->store, err);
    ps__lstore_rollback(c->store);
    return rc;
}

/*
 * The server does not send a device its own writes, and a server may count
 * a write as the device's even when the write lost: an edit to a chat that
 * another device had deleted leaves the chat deleted, but its header now
 * names this device, so the deletion is never sent here; an import older
 * than the server's copy is kept here and not there. polysyncd re-announces
 * the winner of such a write (server/sync_v2.c, mark_lost_writes) and says
 * so in GET /health (`lostWritesResent`): then no pull is made, unless the
 * push carried an import (see has_import). For a
 * server that does not say it, a push that may have lost is followed by one
 * pull of everything since the push's cursor under a second device name,
 * for which nothing is "own", applied like any pull. It moves no cursor and
 * is resumed by the next sync if it fails (meta verify_cursor).
 */
ps_code ps__verify_pull(sync_run *r, ps_error *err)
{
    ps_client *c = r->c;
    char *cursor = NULL, *device = NULL;
    ps_code rc = ps__lstore_meta_get(c->store, "verify_cursor", &cursor, err);
    if (rc != PS_OK || !cursor)
        return rc;
    char *import = NULL;
    rc = ps__lstore_meta_get(c->store, "verify_import", &import, err);
    bool skip = rc == PS_OK && !import && ps__server_caps(r)->lost_writes_resent;
    free(import);
    if (rc != PS_OK || skip) {
        /* the answer to a losing push, or a later pull, brings the winner */
        free(cursor);
        return rc == PS_OK ? forget_cursor(c, err) : rc;
    }
    if (asprintf(&device, "%.200s~verify", c->device) < 0) {
        free(cursor);
        return ps__sync_nomem(err);
    }
    bool done = false;
    while (rc == PS_OK && !done) {
        ps_dynbuf body;
        ps_http_answer a;
        v2_answer ans = {0};
        ps__dynbuf_init(&body, (size_t)1 << 20);
        ps__http_answer_init(&a);
        a.stream_depth = PS_V2_ANSWER_DEPTH;
        rc = ps__build_v2_pull_request(device, cursor, PAGE_LIMIT, &body, err);
        if (rc == PS_OK)
            rc = ps__http_post(c, "/v2/sync", body.data, body.len, true, r->st, &a, err);
        if (rc != PS_OK) {
            /* said */
        } else if (a.status == 410 || a.status == 400) {
            done = true; /* too old to verify: a later full resync will do */
        } else if (a.status != 200) {
            rc = ps__sync_refused(c, &a, "/v2/sync", err);
        } else if ((rc = ps__parse_v2_answer(c, &a, &ans, err)) == PS_OK &&
                   (rc = ps__lstore_begin(c->store, err)) == PS_OK) {
            size_t n = json_object_array_length(ans.chats);
            size_t before = r->st->chats_received, msgs = r->st->messages_received;
            rc = ps__observe_clock(c, ans.server_clock, err);
            for (size_t i = 0; i < n && rc == PS_OK; i++)
                rc = ps__apply_remote_chat(r, json_object_array_get_idx(ans.chats, i),
                                           ans.server_clock, err);
            /* what it re-sent is not news from elsewhere */
            r->st->chats_received = before;
            r->st->messages_received = msgs;
            if (rc == PS_OK)
                rc = ps__restamp_pending(c, ans.server_clock, err);
            if (rc == PS_OK)
                rc = ps__lstore_commit(c->store, err);
            else
                ps__lstore_rollback(c->store);
            done = !ans.more;
            free(cursor);
            cursor = strdup(ans.cursor);
            if (!cursor && rc == PS_OK)
                rc = ps__sync_nomem(err);
        }
        json_object_put(ans.root);
        ps__http_answer_free(&a);
        ps__dynbuf_free(&body);
    }
    if (rc == PS_OK)
        rc = forget_cursor(c, err);
    free(cursor);
    free(device);
    return rc;
}
