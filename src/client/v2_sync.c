/*
 * The v2 sync (POST /v2/sync). Each request carries the oldest log entries
 * (at most BATCH_CHANGES / BATCH_BYTES); while more entries wait after them
 * the request is push-only (limit 1, its chats ignored, the cursor kept),
 * so every entry made before the sync reaches the server before any pull
 * is applied. Each answer is applied in one transaction (v2_answer.c).
 * A 410 or an unknown cursor starts a full resync (full_resync.c), a 413
 * smaller batches, a 404 on the first request the legacy sync. A push that
 * may have lost is followed by a verification pull (verify_pull.c).
 */
#include "client/sync_run.h"
#include "core/json_parse.h"

#include <string.h>

#define MAX_REQUESTS 100000
#define MAX_RESYNCS 3
/* Probes in one request when the server does not say how many changes it
 * takes: below polysyncd's default of 50,000 (--max-chats). */
#define GUESSED_MAX_PROBES 40000

/* What a batch carries, for the progress line. */
static void count_sent(sync_run *r, const ps_change_row *rows, size_t n)
{
    /* A progress count only: without memory for the set, chats go uncounted. */
    json_object *chats = json_object_new_object();
    for (size_t i = 0; i < n; i++) {
        if (chats && !json_object_object_get_ex(chats, rows[i].chat_id, NULL) &&
            json_object_object_add(chats, rows[i].chat_id, NULL) == 0)
            r->st->chats_sent++;
        if (rows[i].messages >= 0) { /* counted when logged: no parse of the body */
            r->st->messages_sent += (size_t)rows[i].messages;
            continue;
        }
        json_object *change = NULL;
        ps_error perr;
        if (ps__json_parse(rows[i].body, rows[i].body_len, PS_JSON_MAX_DEPTH, &change, &perr) ==
            PS_OK)
            r->st->messages_sent += ps__json_array_len(change, "messages");
        json_object_put(change);
    }
    json_object_put(chats);
    r->st->changes_sent += n;
}

ps_code ps__note_pushed(sync_run *r, const ps_change_row *rows, size_t n, ps_error *err)
{
    count_sent(r, rows, n);
    size_t left = 0;
    ps_code rc = ps__lstore_changes_count(r->c->store, &left, err);
    if (r->st->changes_sent + left > r->st->changes_total)
        r->st->changes_total = r->st->changes_sent + left;
    ps__sync_report(r);
    return rc;
}

/* The cursor belongs to one server: another server means a full resync. */
static ps_code check_server(sync_run *r, bool *resync, ps_error *err)
{
    ps_client *c = r->c;
    char *stored = NULL;
    *resync = false;
    ps_code rc = ps__lstore_begin(c->store, err);
    if (rc != PS_OK)
        return rc;
    rc = ps__lstore_meta_get(c->store, "cursor_server", &stored, err);
    if (rc == PS_OK && (!stored || strcmp(stored, c->server) != 0)) {
        *resync = stored != NULL;
        rc = ps__lstore_meta_set(c->store, "cursor_server", c->server, err);
        if (rc == PS_OK)
            rc = ps__lstore_meta_set(c->store, "cursor", NULL, err);
    }
    free(stored);
    if (rc == PS_OK)
        return ps__lstore_commit(c->store, err);
    ps__lstore_rollback(c->store);
    return rc;
}

/*
 * The probes a first pull carries (v2_request.c): the live local chats the
 * request does not carry, as many as the server takes besides the n
 * changes (its `maxChanges`), or a guess when it does not say; none when it
 * says that a first pull does not answer them. The server is asked only
 * when there is a chat to name.
 */
static ps_code plan_probes(sync_run *r, const ps_change_row *rows, size_t n, json_object **ids,
                           ps_error *err)
{
    ps_code rc = ps__uncarried_chats(r->c, rows, n, ids, err);
    size_t count = rc == PS_OK ? json_object_array_length(*ids) : 0;
    if (count == 0)
        return rc;
    const ps_server_caps *caps = ps__server_caps(r);
    size_t room = GUESSED_MAX_PROBES;
    if (caps->said && !caps->named_deletions)
        room = 0;
    else if (caps->max_changes)
        room = caps->max_changes > n ? caps->max_changes - n : 0;
    if (count > room)
        json_object_array_del_idx(*ids, room, count - room);
    return PS_OK;
}

ps_code ps__sync_v2(sync_run *r, bool *not_v2, ps_error *err)
{
    ps_client *c = r->c;
    *not_v2 = false;
    bool resync;
    ps_code rc = check_server(r, &resync, err);
    if (rc == PS_OK && resync) {
        r->st->full_resync = true;
        rc = ps__start_full_resync(r, err);
    }
    size_t pending = 0, batch_max = BATCH_CHANGES;
    unsigned resyncs = 0;
    bool probes = true; /* off if a server refuses them as too large */
    if (rc == PS_OK)
        rc = ps__lstore_changes_count(c->store, &pending, err);
    r->st->changes_total = pending;
    ps__sync_report(r);
    /* A log of several batches: the first request carries one change, so
     * that its answer names the run at once and the pushes go out two at a
     * time from the second request on (push_ahead.c) instead of polysyncd
     * handling a whole first batch while the client waits. Until a first
     * answer: a retry after a 410 is a first request again. */
    bool answered = false, fit = true;
    if (rc == PS_OK && pending > 1)
        rc = ps__lstore_changes_fit(c->store, batch_max, BATCH_BYTES, &fit, err);
    bool several = !fit;
    ps_pull_ahead *ahead = NULL; /* the next page, asked for while one is applied */
    for (size_t req = 0; rc == PS_OK; req++) {
        if (req >= MAX_REQUESTS) {
            rc = ps_error_set(err, PS_ERR_IO, -1, "", "the sync did not end after %zu requests",
                              req);
            break;
        }
        if (ps__stopped(c)) {
            rc = ps_error_set(err, PS_ERR_IO, -1, "", "interrupted");
            break;
        }
        /* the push-only batches two at a time, once the run is named */
        if (!ahead && (rc = ps__push_ahead(r, batch_max, err)) != PS_OK)
            break;
        if (ps__stopped(c)) {
            rc = ps_error_set(err, PS_ERR_IO, -1, "", "interrupted");
            break;
        }
        ps_change_row *rows = NULL;
        size_t n = 0;
        bool more_pending = false;
        char *cursor = NULL;
        ps_dynbuf body;
        ps_http_answer a;
        v2_answer ans = {0};
        ps__dynbuf_init(&body, (size_t)1 << 30);
        ps__http_answer_init(&a);
        a.stream_depth = PS_V2_ANSWER_DEPTH;
        size_t take = several && !answered ? 1 : batch_max;
        rc = ps__lstore_changes(c->store, 0, take, BATCH_BYTES, &rows, &n, &more_pending, err);
        if (rc == PS_OK)
            rc = ps__lstore_meta_get(c->store, "cursor", &cursor, err);
        /* The page asked ahead answers this request when it went out from
         * the cursor saved now. Changes logged meanwhile (another process
         * writing to the store) go with the next request, as ones logged
         * while a request is in flight do. */
        bool taken = false;
        if (ahead && rc == PS_OK)
            taken = ps__pull_ahead_take(r, ahead, cursor, &ans); /* frees it */
        else
            ps__pull_ahead_drop(r, ahead);
        ahead = NULL;
        if (taken) {
            ps__change_rows_free(rows, n);
            rows = NULL;
            n = 0;
            more_pending = false;
            a.status = 200;
        }
        bool push_only = more_pending;
        bool null_cursor = cursor == NULL;
        int limit = push_only ? 1 : null_cursor ? FULL_LIMIT : PAGE_LIMIT;
        json_object *probe_ids = NULL;
        if (rc == PS_OK && probes && null_cursor && !push_only && !taken)
            rc = plan_probes(r, rows, n, &probe_ids, err);
        size_t nprobes = probe_ids ? json_object_array_length(probe_ids) : 0;
        if (rc == PS_OK && !taken)
            rc = ps__build_v2_request(c, cursor, r->run, limit, rows, n, probe_ids, &body, err);
        json_object_put(probe_ids);
        /* While the server prepares a pull after pushes (the slow request
         * of a first upload), the pages the acknowledged log freed go back
         * to the file system, instead of after the sync (sync.c). */
        ps_lstore_reclaim *bg = NULL;
        if (rc == PS_OK && !taken && !push_only && r->st->changes_sent > 0)
            bg = ps__lstore_reclaim_start(c->store);
        if (rc == PS_OK && !taken)
            rc = ps__http_post(c, "/v2/sync", body.data, body.len, true, r->st, &a, err);
        ps__lstore_reclaim_stop(bg);
        bool done = false;
        if (rc != PS_OK) {
            /* the error says it */
        } else if (a.status == 200) {
            answered = true;
            if (taken || (rc = ps__parse_v2_answer(c, &a, &ans, err)) == PS_OK) {
                if (!r->run[0] && ans.run && strlen(ans.run) < sizeof r->run)
                    snprintf(r->run, sizeof r->run, "%s", ans.run);
                /* more pages: the next one is asked for while this one is
                 * applied, from this answer's cursor, not saved yet */
                if (!push_only && ans.more && !ps__stopped(c))
                    ahead = ps__pull_ahead_start(r, cursor, ans.cursor, PAGE_LIMIT);
                rc = ps__apply_v2_answer(r, &ans, rows, n, cursor, push_only, err);
            }
            if (rc == PS_OK) {
                count_sent(r, rows, n);
                r->st->pages += !push_only;
                size_t left = 0;
                rc = ps__lstore_changes_count(c->store, &left, err);
                if (r->st->changes_sent + left > r->st->changes_total)
                    r->st->changes_total = r->st->changes_sent + left;
                done = rc == PS_OK && !push_only && !ans.more && left == 0;
            }
        } else if ((a.status == 404 || a.status == 405) && r->st->changes_sent == 0 &&
                   r->st->pages == 0) {
            *not_v2 = true; /* no /v2 on this server: the legacy protocol */
            done = true;
        } else if (a.status == 410 || (a.status == 400 && strcmp(a.code, "invalid_cursor") == 0)) {
            if (++resyncs > MAX_RESYNCS) {
                rc = ps_error_set(err, PS_ERR_EXPIRED, -1, "cursor",
                                  "the server keeps refusing the cursor: %s", a.message);
            } else {
                r->st->full_resync = true;
                /* an expired device (its tombstones may be gone) keeps only
                 * what is pending; any other 410 (a server restored from a
                 * backup) or unknown cursor sends everything it holds */
                ps_device_known known = PS_DEVICE_UNREACHABLE;
                if (a.status == 410)
                    ps_client_device_known(c, &known, err);
                if ((rc = known == PS_DEVICE_EXPIRED ? ps__start_expiry_resync(r, err)
                                                     : ps__start_full_resync(r, err)) == PS_OK &&
                    (rc = ps__lstore_changes_count(c->store, &pending, err)) == PS_OK)
                    r->st->changes_total = r->st->changes_sent + pending;
            }
        } else if (a.status == 413 && nprobes) {
            probes = false; /* the probes made it too large: without them */
        } else if (a.status == 413 && n > 1) {
            batch_max = n / 2; /* too much in one request: smaller batches */
        } else {
            rc = ps__sync_refused(c, &a, "/v2/sync", err);
            if (a.status == 413 && n == 1)
                ps_error_set(err, rc, -1, "", "a change to chat %s is too large for the server: %s",
                             rows[0].chat_id, a.message);
        }
        json_object_put(ans.root);
        ps__http_answer_free(&a);
        ps__dynbuf_free(&body);
        free(cursor);
        ps__change_rows_free(rows, n);
        ps__sync_report(r);
        if (done)
            break;
    }
    ps__pull_ahead_drop(r, ahead); /* a sync that failed or stopped mid-pull */
    if (r->ahead_curl)
        curl_easy_cleanup(r->ahead_curl);
    r->ahead_curl = NULL;
    for (size_t i = 0; i < sizeof r->push_curl / sizeof r->push_curl[0]; i++) {
        if (r->push_curl[i])
            curl_easy_cleanup(r->push_curl[i]);
        r->push_curl[i] = NULL;
    }
    if (rc == PS_OK && !*not_v2)
        rc = ps__verify_pull(r, err);
    return rc;
}
