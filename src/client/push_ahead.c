/*
 * A push of several batches with two requests in flight (docs/client.md,
 * "A push of several batches"). A sync whose log takes several requests
 * sends all but the last push-only (limit 1); each used to go out only once
 * the answer to the one before was saved, so the client and polysyncd took
 * turns, and the server's parse of a body never overlapped the write
 * transaction of the one before. Now, once the run is named (the first
 * answer's `run`, which every later request of the sync carries), the
 * push-only batches go out two at a time, each on its own thread and curl
 * handle: while polysyncd merges and commits one, it reads and parses the
 * next, and the client builds the one after.
 *
 * What keeps it the same sync:
 * - Only the main thread touches the store, and answers are applied in the
 *   order their requests were built: applying one deletes the log up to its
 *   last entry, so a later answer is never applied before an earlier one.
 *   An answer that is not a 200 (or none at all) ends the phase: the request
 *   after it is stopped and its answer, if any, dropped, and the sync's loop
 *   sends the oldest entries again itself, with its retries and its handling
 *   of 410 and 413. A batch the server merged but whose answer was dropped
 *   is merged again when resent: the same writes, no change.
 * - Two requests in flight never carry changes to the same chat, so the
 *   order polysyncd happens to take them in (each is one transaction, on its
 *   own connection) cannot matter: each chat's changes are merged in log
 *   order. A batch that shares a chat with the one in flight waits for it.
 * - The last batch, which pulls (a first pull's `seen` must hold every chat
 *   the run pushed), is never sent ahead: the loop sends it once every
 *   earlier answer is saved.
 */
#include "client/v2_call.h"

#include <stdlib.h>
#include <string.h>

#define PUSHES_IN_FLIGHT 2

typedef struct push_req {
    ps_v2_call call;
    ps_change_row *rows;
    size_t n;
    json_object *chats; /* the chat ids it carries, as a set */
} push_req;

/* Whether rows[0..n) change a chat that a request in flight changes. */
static bool shares_chat(push_req *q, size_t head, size_t count, const ps_change_row *rows, size_t n)
{
    for (size_t k = 0; k < count; k++) {
        json_object *chats = q[(head + k) % PUSHES_IN_FLIGHT].chats;
        for (size_t i = 0; i < n; i++)
            if (json_object_object_get_ex(chats, rows[i].chat_id, NULL))
                return true;
    }
    return false;
}

static void release(push_req *p)
{
    ps__v2_call_free(&p->call);
    json_object_put(p->chats);
    ps__change_rows_free(p->rows, p->n);
    memset(p, 0, sizeof *p);
}

/* Builds the push-only request for rows[0..n) (taken: freed by release)
 * and sends it on its own thread. False: not started (p released). */
static bool start(sync_run *r, push_req *p, CURL *curl, const char *cursor, ps_change_row *rows,
                  size_t n)
{
    ps_error err;
    memset(p, 0, sizeof *p);
    ps__v2_call_init(&p->call, r->c, curl, true, (size_t)1 << 30);
    p->rows = rows;
    p->n = n;
    bool ok = (p->chats = json_object_new_object()) != NULL;
    for (size_t i = 0; ok && i < n; i++)
        ok = json_object_object_add(p->chats, rows[i].chat_id, NULL) == 0;
    if (ok &&
        ps__build_v2_request(r->c, cursor, r->run, 1, rows, n, NULL, &p->call.body, &err) ==
            PS_OK &&
        ps__v2_call_start(&p->call))
        return true;
    release(p);
    return false;
}

/* Joins the request's thread; true when its answer is a 200 sync answer. */
static bool finish(sync_run *r, push_req *p)
{
    bool ok = ps__v2_call_join(r, &p->call);
    if (ok)
        r->c->last_status = 200;
    return ok;
}

ps_code ps__push_ahead(sync_run *r, size_t batch_max, ps_error *err)
{
    ps_client *c = r->c;
    if (!r->run[0])
        return PS_OK; /* the first request names the run; a server without runs */
    char *cursor = NULL;
    ps_code rc = ps__lstore_meta_get(c->store, "cursor", &cursor, err);
    push_req q[PUSHES_IN_FLIGHT];
    size_t head = 0, count = 0, slot = 0;
    int64_t after = 0; /* the last log entry sent */
    bool filling = true;
    while (rc == PS_OK) {
        while (filling && count < PUSHES_IN_FLIGHT && !ps__stopped(c)) {
            ps_change_row *rows = NULL;
            size_t n = 0;
            bool more = false;
            if ((rc = ps__lstore_changes(c->store, after, batch_max, BATCH_BYTES, &rows, &n, &more,
                                         err)) != PS_OK)
                break;
            /* the last batch pulls: the loop sends it, after every answer */
            if (n == 0 || !more || shares_chat(q, head, count, rows, n)) {
                ps__change_rows_free(rows, n);
                filling = false;
                break;
            }
            after = rows[n - 1].seq;
            /* made on first use; none: the loop sends them one at a time */
            if (!r->push_curl[slot])
                r->push_curl[slot] = curl_easy_init();
            if (!r->push_curl[slot])
                ps__change_rows_free(rows, n);
            if (!r->push_curl[slot] || !start(r, &q[(head + count) % PUSHES_IN_FLIGHT],
                                              r->push_curl[slot], cursor, rows, n)) {
                filling = false; /* start() freed the rows */
                break;
            }
            slot = (slot + 1) % PUSHES_IN_FLIGHT;
            count++;
        }
        if (rc != PS_OK || count == 0)
            break;
        push_req *p = &q[head];
        head = (head + 1) % PUSHES_IN_FLIGHT;
        count--;
        bool ok = finish(r, p) && !ps__stopped(c);
        if (ok) {
            rc = ps__apply_v2_answer(r, &p->call.ans, p->rows, p->n, cursor, true, err);
            if (rc == PS_OK)
                rc = ps__note_pushed(r, p->rows, p->n, err);
        }
        release(p);
        if (!ok)
            break; /* the loop sends it again; what follows is dropped */
    }
    /* after a failure, a store error or a stop: what is still in flight is
     * dropped unapplied (its entries stay in the log, sent again) */
    for (; count > 0; count--, head = (head + 1) % PUSHES_IN_FLIGHT) {
        atomic_store(&q[head].call.cancel, true);
        finish(r, &q[head]);
        release(&q[head]);
    }
    free(cursor);
    return rc;
}
