/*
 * What the client's sync files share (all internal): the state of one
 * ps_client_sync run, the batch sizes, and the steps the v2 sync, the
 * legacy sync, the full resync and the verification pull have in common.
 *
 *   sync.c          ps_client_sync: the per-store lock, v2 then legacy
 *   v2_sync.c       the v2 loop: batches, pages, 404/410/413 answers
 *   v2_request.c    the body of a /v2/sync request (changes, probes)
 *   v2_answer.c     reading a v2 answer and applying it in one transaction
 *   verify_pull.c   the verification pull after a push that may have lost
 *   pull_ahead.c    a pull's next page asked for while this one is applied
 *   push_ahead.c    push-only batches sent two requests at a time
 *   v2_call.c       a /v2/sync request on a thread of its own (both above)
 *   full_resync.c   the snapshot that replaces the log after a 410
 *   legacy_sync.c   POST /sync, for servers without /v2/sync
 *   sync_shared.c   refusals, progress, applying the server's writes
 *   server_caps.c   what the server says it does (GET /health), which
 *                   decides the verification pull and the probes
 *
 * docs/client.md says what a sync does and why.
 */
#ifndef PS_CLIENT_SYNC_RUN_H
#define PS_CLIENT_SYNC_RUN_H

#include "client/http.h"
#include "core/json_build.h"
#include "core/json_parse.h"

#include <json-c/json.h>
#include <time.h>

/* Most log entries, and bytes of them, in one request. */
#define BATCH_CHANGES 1000
#define BATCH_BYTES ((size_t)4 << 20)
/* Most chats asked for in one answer: a page of a delta pull, a first pull. */
#define PAGE_LIMIT 500
#define FULL_LIMIT 5000

typedef struct sync_run {
    ps_client *c;
    ps_sync_stats *st;
    struct timespec start;
    ps_server_caps caps; /* see ps__server_caps */
    /* The sync run the server named in its first answer ("run", docs/
     * protocol.md): sent with the later requests of this sync so that its
     * first pull leaves out what they pushed. "" until then, or when the
     * server does not name runs. */
    char run[64];
    /* The handle of the pages asked ahead (pull_ahead.c), made on first
     * use, kept for its connection, cleaned up when the v2 sync ends. */
    CURL *ahead_curl;
    /* The handles of the pushes sent two at a time (push_ahead.c), made on
     * first use, cleaned up when the v2 sync ends. */
    CURL *push_curl[2];
} sync_run;

static inline ps_code ps__sync_nomem(ps_error *err)
{
    return ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
}

/* ---- sync_shared.c ---- */

/* Updates the elapsed time and calls the progress callback. */
void ps__sync_report(sync_run *r);

/* The error for a non-2xx answer `a` of `path`: credentials, quota, a
 * rejected body (with the server's code), or anything else unexpected. */
ps_code ps__sync_refused(ps_client *c, const ps_http_answer *a, const char *path, ps_error *err);

/* Re-counts log entries made while a request was in flight above the
 * serverClock `S` and merges them again (docs/client.md). */
ps_code ps__restamp_pending(ps_client *c, int64_t S, ps_error *err);

/* Raises the device clock to at least `S`. */
ps_code ps__observe_clock(ps_client *c, int64_t S, ps_error *err);

/* Deletes chat `id` as the server's write at `S`; *was_live: the chat was
 * live here, so the deletion is news. */
ps_code ps__apply_deletion(ps_client *c, const char *id, int64_t S, bool *was_live, ps_error *err);

/* The length of obj[key] if it is an array, else 0. */
size_t ps__json_array_len(json_object *obj, const char *key);

/* Adds what applying one pulled chat changed here to the received counts. */
void ps__count_received(sync_run *r, ps_code rc, bool deleted, const ps_apply_effect *eff);

/* ---- server_caps.c ---- */

/* What the server says it does: asks GET /health the first time in a sync
 * run (once, no retries; any failure means it says nothing). */
const ps_server_caps *ps__server_caps(sync_run *r);

/* ---- v2_request.c ---- */

/* The body of a /v2/sync request: this device, `cursor` (NULL = a first
 * pull), the sync's `run` ("" = none yet), `limit`, the log entries
 * rows[0..n) and, as probes, the chats whose ids the array `probes` holds
 * (may be NULL). */
ps_code ps__build_v2_request(ps_client *c, const char *cursor, const char *run, int limit,
                             const ps_change_row *rows, size_t n, json_object *probes,
                             ps_dynbuf *out, ps_error *err);

/* The live local chats that rows[0..n) do not carry (*ids: an array of
 * their ids, the caller's), which a first pull names as probes. */
ps_code ps__uncarried_chats(ps_client *c, const ps_change_row *rows, size_t n, json_object **ids,
                            ps_error *err);

/* The body of a page of a pull asked for before the previous answer is
 * saved (pull_ahead.c): `cursor`, that answer's; `ack`, the last cursor
 * saved (NULL: none, sent as null); no changes. */
ps_code ps__build_v2_page_request(ps_client *c, const char *cursor, const char *ack,
                                  const char *run, int limit, ps_dynbuf *out, ps_error *err);

/* The body of a pull without changes under the name `device` (the
 * verification pull). */
ps_code ps__build_v2_pull_request(const char *device, const char *cursor, int limit, ps_dynbuf *out,
                                  ps_error *err);

/* ---- v2_answer.c ---- */

typedef struct v2_answer {
    json_object *root;
    json_object *chats;
    const char *cursor;
    const char *run; /* NULL: the server names no runs */
    bool more;
    int64_t server_clock;
} v2_answer;

/* How deep a /v2/sync answer may nest; set as the answer's stream_depth
 * before the request, so it is parsed while it arrives (answer_stream.c). */
#define PS_V2_ANSWER_DEPTH (PS_JSON_MAX_DEPTH + 4)

/* Parses and checks a 200 answer of /v2/sync; ans->root is the caller's
 * (taken from `a` when it was parsed as it arrived). */
ps_code ps__parse_v2_answer(ps_client *c, ps_http_answer *a, v2_answer *ans, ps_error *err);

/* Merges one chat of a v2 answer as the server's write at `S`. */
ps_code ps__apply_remote_chat(sync_run *r, json_object *chat, int64_t S, ps_error *err);

/* Applies the answer to a request that carried rows[0..n) from
 * `req_cursor`, in one store transaction (a push-only answer moves only the
 * clock and the log). */
ps_code ps__apply_v2_answer(sync_run *r, const v2_answer *ans, const ps_change_row *rows, size_t n,
                            const char *req_cursor, bool push_only, ps_error *err);

/* ---- pull_ahead.c ---- */

typedef struct ps_pull_ahead ps_pull_ahead;

/*
 * Sends, on another thread and r's second handle, the request for the page
 * after an answer with cursor `next_cursor` that is not saved yet; `saved`
 * is the last cursor saved (NULL: none), sent as `ack`. NULL when it could
 * not start (the sync then asks for the page itself).
 */
ps_pull_ahead *ps__pull_ahead_start(sync_run *r, const char *saved, const char *next_cursor,
                                    int limit);

/*
 * Waits for the page asked ahead and frees `p`. True: *ans holds its answer
 * (the caller's, as ps__parse_v2_answer gives it), a 200 sync answer to a
 * request from the cursor `saved` now is; false: nothing usable (a failure,
 * another status, `saved` differs), *ans empty.
 */
bool ps__pull_ahead_take(sync_run *r, ps_pull_ahead *p, const char *saved, v2_answer *ans);

/* Stops the page asked ahead, if any, and frees it. */
void ps__pull_ahead_drop(sync_run *r, ps_pull_ahead *p);

/* ---- push_ahead.c ---- */

/*
 * Once the run is named, sends the push-only batches of the log (all but
 * the last one) two requests at a time, applying each answer in order;
 * stops at the first that fails (the loop sends it again itself), at the
 * last batch, or at a batch that shares a chat with the one in flight.
 * Errors: the store's.
 */
ps_code ps__push_ahead(sync_run *r, size_t batch_max, ps_error *err);

/* ---- v2_sync.c ---- */

/* After the answer to a push of rows[0..n) was saved: the progress counts
 * and report. */
ps_code ps__note_pushed(sync_run *r, const ps_change_row *rows, size_t n, ps_error *err);

/* ---- verify_pull.c ---- */

/* Inside the answer's transaction: if the push rows[0..n), sent from
 * `req_cursor`, may have lost without the server saying so, remembers the
 * cursor for a verification pull. */
ps_code ps__verify_note(ps_client *c, const ps_change_row *rows, size_t n, int64_t S,
                        const char *req_cursor, ps_error *err);

/* Runs the pending verification pull, if any. */
ps_code ps__verify_pull(sync_run *r, ps_error *err);

/* ---- full_resync.c, v2_sync.c, legacy_sync.c ---- */

/* Replaces the log by a snapshot of every local chat and drops the cursor. */
ps_code ps__start_full_resync(sync_run *r, ps_error *err);

/* After a 410 to an expired device (docs/client.md): keeps the log (the
 * pending changes), forgets every chat it holds no change to and drops the
 * cursor, so the next pull from a null cursor brings the server's state
 * back and nothing only received from the server is sent as this device's
 * write (a chat deleted meanwhile, its tombstone collected, stays gone). */
ps_code ps__start_expiry_resync(sync_run *r, ps_error *err);

/* The v2 sync; *not_v2: the server has no /v2/sync (use the legacy one). */
ps_code ps__sync_v2(sync_run *r, bool *not_v2, ps_error *err);

/* The legacy sync (POST /sync). */
ps_code ps__sync_legacy(sync_run *r, ps_error *err);

/* The body of a legacy POST /sync: every chat with log entries, whole, and
 * this device's deletions; *out the caller's, NULL unless PS_OK (never a
 * request missing a piece: an allocation failure is PS_ERR_NOMEM).
 * *max_seq: the newest log entry it covers. Internal; tests/client's
 * test_client_nomem builds it under allocation failures. */
ps_code ps__build_legacy_request(sync_run *r, int64_t *max_seq, size_t *count, json_object **out,
                                 ps_error *err);

/* Applies a /sync answer (parsed) in one transaction: the server's chats
 * merged as its writes, its deletions, the log up to max_seq acknowledged.
 * PS_ERR_IO when it is not a sync answer (nothing changed). Exposed for
 * fuzz/fuzz_client_legacy_answer.c. */
ps_code ps__apply_legacy_answer(sync_run *r, json_object *ans, int64_t max_seq, ps_error *err);

#endif
