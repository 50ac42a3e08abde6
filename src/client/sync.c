/*
 * ps_client_sync: push the change log, pull what changed elsewhere.
 *
 * v2 (POST /v2/sync). Each request carries the oldest log entries (at most
 * BATCH_CHANGES / BATCH_BYTES); while more entries wait after them the
 * request is push-only (limit 1, its chats ignored, the cursor kept), so
 * every entry made before the sync reaches the server before any pull is
 * applied. Each answer is applied in one store transaction: the device clock
 * rises to serverClock, the acknowledged entries leave the log, the pulled
 * chats are merged, the cursor moves. A sync killed at any point leaves the
 * store as of the last commit, and the next run resends the log (merging a
 * write twice changes nothing) from the stored cursor (which may be reused).
 *
 * Applying what the server sends. An answer carries values, not the stamps
 * behind them; it is the server's merge result, newer than everything this
 * device pushed (serverClock is above every counter in the request). So
 * pulled parts are merged as writes at (serverClock, PS_SERVER_WRITER), which
 * outrank every write this device had pushed. A log entry made while the
 * request was in flight (another process, another handle) was not in the
 * push: it gets a fresh counter above serverClock and is merged again, so
 * it wins here and, sent next, on the server too. A push that may have
 * lost without the server saying so is followed by a verification pull
 * (verify()).
 *
 * Cursor expiry (410) or a new server: the log is replaced by a snapshot of
 * every local chat, each register sent with its own stamp when this device
 * wrote it, and with counter 0 (older than any write with one) when it came
 * from the server, so the snapshot restores what a server lost without
 * overriding anything newer; the null-cursor pull names every live local
 * chat, so it hears which were deleted. See docs/client.md.
 *
 * Legacy (POST /sync), when the server answers 404 to /v2/sync: chats with
 * log entries are sent whole, stamped [newest entry's counter, device];
 * `missing` chats replace local content, `deletions` delete.
 */
#include "client/http.h"
#include "core/chat_codec.h"
#include "core/json_parse.h"
#include "core/timestamp.h"
#include "core/validate.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define BATCH_CHANGES 1000
#define BATCH_BYTES ((size_t)4 << 20)
#define PAGE_LIMIT 500
#define FULL_LIMIT 5000
#define MAX_REQUESTS 100000
#define MAX_RESYNCS 3
#define MAX_PROBES 40000 /* the server takes 50,000 changes per request */

typedef struct sync_run {
    ps_client *c;
    ps_sync_stats *st;
    struct timespec start;
} sync_run;

static void report(sync_run *r)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    r->st->elapsed_ms =
        (now.tv_sec - r->start.tv_sec) * 1000LL + (now.tv_nsec - r->start.tv_nsec) / 1000000;
    if (r->c->progress)
        r->c->progress(r->st, r->c->progress_ud);
}

static ps_code nomem(ps_error *err)
{
    return ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
}

/* ---- what a refusal means ---- */

static ps_code refused(ps_client *c, const ps_http_answer *a, const char *path, ps_error *err)
{
    const char *detail = a->message[0] ? a->message : "no detail";
    long s = a->status;
    if (s == 401 || s == 403)
        return ps_error_set(err, c->token ? PS_ERR_INVALID_TOKEN : PS_ERR_UNAUTHORIZED, -1, "token",
                            "the server refused the credentials (HTTP %ld%s%s): %s; check "
                            "--token, --token-file or POLYSYNC_TOKEN",
                            s, a->code[0] ? " " : "", a->code, detail);
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
        return ps_error_set(err, rc, -1, "", "the server rejected the sync (HTTP %ld%s%s): %s", s,
                            a->code[0] ? " " : "", a->code, detail);
    }
    return ps_error_set(err, PS_ERR_IO, -1, "", "unexpected answer from %s%s: HTTP %ld: %s",
                        c->server, path, s, detail);
}

/* ---- the sync lock: one sync per store at a time ----
 *
 * A file STORE-sync.lock held with flock() while a sync runs, and removed
 * by its holder before it lets go, so none is left beside the store
 * afterwards. The trap of removing a lock file: a waiter that opened the
 * old file may lock it after it was unlinked while a third process creates
 * and locks a new one. So whoever gets the lock checks that the path still
 * names the file it locked, and starts over if not.
 */

typedef struct sync_lock {
    int fd;
    char *path;
} sync_lock;

static ps_code lock_store(ps_client *c, sync_lock *l, ps_error *err)
{
    l->fd = -1;
    if (asprintf(&l->path, "%s-sync.lock", c->path) < 0) {
        l->path = NULL;
        return nomem(err);
    }
    for (;;) {
        int fd = open(l->path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
        if (fd < 0)
            return ps_error_set(err, PS_ERR_STORE, -1, "", "cannot create the sync lock %s: %s",
                                l->path, strerror(errno));
        while (flock(fd, LOCK_EX | LOCK_NB) != 0) {
            if (errno != EWOULDBLOCK && errno != EINTR) {
                close(fd);
                return ps_error_set(err, PS_ERR_STORE, -1, "", "cannot take the sync lock: %s",
                                    strerror(errno));
            }
            if (!ps__sleep(c, 100)) {
                close(fd);
                return ps_error_set(err, PS_ERR_IO, -1, "", "interrupted");
            }
        }
        struct stat held, named;
        if (fstat(fd, &held) == 0 && stat(l->path, &named) == 0 && held.st_dev == named.st_dev &&
            held.st_ino == named.st_ino) {
            l->fd = fd;
            return PS_OK;
        }
        close(fd); /* the holder before us removed it: lock the new one */
    }
}

static void unlock_store(sync_lock *l)
{
    if (l->fd >= 0) {
        unlink(l->path); /* while still held: see above */
        flock(l->fd, LOCK_UN);
        close(l->fd);
    }
    free(l->path);
}

/* ---- applying what the server sent ---- */

/* Re-counts log entries made while a request was in flight above the
 * serverClock `S` and merges them again (see the file comment). */
static ps_code restamp_pending(ps_client *c, int64_t S, ps_error *err)
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
            if ((rc = ps_json_parse(row->body, row->body_len, PS_JSON_MAX_DEPTH, &change, err)) !=
                PS_OK)
                break;
            if ((rc = ps__tick(c, &clock, err)) == PS_OK) {
                json_object_object_add(change, "clock", json_object_new_int64(clock));
                rc = ps__lstore_change_update(c->store, row->seq, clock, ps_json_text(change, NULL),
                                              err);
            }
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
static ps_code observe_clock(ps_client *c, int64_t S, ps_error *err)
{
    int64_t clock;
    ps_code rc = ps__lstore_meta_int(c->store, "clock", 0, &clock, err);
    if (rc == PS_OK && S > clock)
        rc = ps__lstore_meta_set_int(c->store, "clock", S, err);
    return rc;
}

/* *was_live: the chat was live here, so the deletion is news. */
static ps_code apply_deletion(ps_client *c, const char *id, int64_t S, bool *was_live,
                              ps_error *err)
{
    json_object *change = json_object_new_object();
    if (!change)
        return nomem(err);
    json_object_object_add(change, "chatId", json_object_new_string(id));
    json_object_object_add(change, "clock", json_object_new_int64(S));
    json_object_object_add(change, "deleteChat", json_object_new_boolean(1));
    ps_apply_effect eff = {0};
    ps_code rc = ps__apply_change_ex(c, change, PS_SERVER_WRITER, NULL, &eff, err);
    json_object_put(change);
    *was_live = rc == PS_OK && eff.was_live;
    return rc;
}

static size_t array_len(json_object *obj, const char *key)
{
    json_object *v;
    return json_object_object_get_ex(obj, key, &v) && json_object_is_type(v, json_type_array)
               ? json_object_array_length(v)
               : 0;
}

/* Counts what a person would call received: what changed here. A chat the
 * server sends back as this device already has it (its own writes echoed,
 * or the same content from another device) is not news. */
static void count_received(sync_run *r, ps_code rc, bool deleted, const ps_apply_effect *eff)
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

/* One chat of a v2 answer: {id, fields?, createdAt?, ..., messages?,
 * deletedMessages?} or {id, deleted: true}. */
static ps_code apply_remote(sync_run *r, json_object *chat, int64_t S, ps_error *err)
{
    ps_client *c = r->c;
    json_object *v, *change = json_object_new_object();
    if (!change)
        return nomem(err);
    const char *id = json_object_get_string(json_object_object_get(chat, "id"));
    json_object_object_add(change, "chatId", json_object_new_string(id));
    json_object_object_add(change, "clock", json_object_new_int64(S));
    bool deleted = json_object_object_get_ex(chat, "deleted", &v) &&
                   json_object_is_type(v, json_type_boolean) && json_object_get_boolean(v);
    if (deleted) {
        json_object_object_add(change, "deleteChat", json_object_new_boolean(1));
    } else {
        json_object *fields = json_object_new_object();
        if (!fields) {
            json_object_put(change);
            return nomem(err);
        }
        if (json_object_object_get_ex(chat, "fields", &v) &&
            json_object_is_type(v, json_type_object)) {
            json_object_object_foreach(v, key, val)
                json_object_object_add(fields, key, json_object_get(val));
        }
        static const char *const times[3] = {"createdAt", "updatedAt", "lastModified"};
        for (int k = 0; k < 3; k++)
            if (json_object_object_get_ex(chat, times[k], &v))
                json_object_object_add(fields, times[k], json_object_get(v));
        json_object_object_add(change, "fields", fields);
        if (json_object_object_get_ex(chat, "messages", &v))
            json_object_object_add(change, "messages", json_object_get(v));
        if (json_object_object_get_ex(chat, "deletedMessages", &v))
            json_object_object_add(change, "deleteMessages", json_object_get(v));
    }
    ps_error verr;
    ps_code rc = ps__validate_change(change, c->device, &verr);
    if (rc != PS_OK)
        rc = ps_error_set(err, PS_ERR_IO, -1, "", "the server sent an invalid chat %s: %s", id,
                          verr.message);
    /* The chat's updatedAtLamport (what an export shows the Polyglot app)
     * rises to the server's clock, under the server's own name. */
    ps_lamport tuple = {.counter = S, .id = "server"};
    ps_apply_effect eff = {0};
    if (rc == PS_OK)
        rc = ps__apply_change_ex(c, change, PS_SERVER_WRITER, deleted ? NULL : &tuple, &eff, err);
    json_object_put(change);
    count_received(r, rc, deleted, &eff);
    return rc;
}

/* After a whole pull from a null cursor that fit in one answer: a local
 * chat it did not contain is not live on the server (a first pull lists
 * every live chat and no deletions), unless it has changes on the way. */
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
        if ((rc = apply_deletion(r->c, id, S, &was_live, err)) == PS_OK)
            r->st->deletions_received += was_live;
    }
    json_object_put(ids);
    return rc;
}

/* ---- the snapshot sent after a 410 or to a new server ---- */

/* The change of `chat` for registers stamped `s` (grouped by key). */
static json_object *group_for(json_object *groups, const char *chat_id, const ps_stamp *s,
                              const char *device)
{
    bool own = s->device && strcmp(s->device, device) == 0;
    int64_t clock = own ? s->lamport : 0;
    char key[64];
    snprintf(key, sizeof key, "%lld/%lld", (long long)clock, (long long)s->ts);
    json_object *g;
    if (json_object_object_get_ex(groups, key, &g))
        return g;
    g = json_object_new_object();
    if (!g)
        return NULL;
    json_object_object_add(g, "chatId", json_object_new_string(chat_id));
    json_object_object_add(g, "clock", json_object_new_int64(clock));
    json_object_object_add(g, "at", json_object_new_int64(s->ts));
    json_object_object_add(groups, key, g);
    return g;
}

static json_object *member(json_object *g, const char *key, bool array)
{
    json_object *v;
    if (json_object_object_get_ex(g, key, &v))
        return v;
    v = array ? json_object_new_array() : json_object_new_object();
    json_object_object_add(g, key, v);
    return v;
}

static ps_code snapshot_chat(ps_client *c, const ps_chat *chat, ps_error *err)
{
    json_object *groups = json_object_new_object();
    if (!groups)
        return nomem(err);
    ps_code rc = PS_OK;
    json_object *g;
    if (!ps_chat_is_live(chat)) {
        /* a deleted chat: only its deletion, never its old content */
        if (chat->has_tombstone && (g = group_for(groups, chat->id, &chat->tombstone, c->device)))
            json_object_object_add(g, "deleteChat", json_object_new_boolean(1));
    } else {
        if (chat->has_touched)
            group_for(groups, chat->id, &chat->touched, c->device);
        for (size_t i = 0; i < chat->nfields; i++) {
            const ps_field *f = &chat->fields[i];
            if ((g = group_for(groups, chat->id, &f->stamp, c->device)))
                json_object_object_add(member(g, "fields", false), f->name,
                                       json_object_get(f->value));
        }
        for (size_t i = 0; i < chat->nmessages; i++) {
            const ps_message *m = &chat->messages[i];
            bool own = m->stamp.device && strcmp(m->stamp.device, c->device) == 0;
            if (!m->value && !own)
                continue; /* someone else's deletion: theirs to resend */
            if (!(g = group_for(groups, chat->id, &m->stamp, c->device)))
                continue;
            if (m->value)
                json_object_array_add(member(g, "messages", true), json_object_get(m->value));
            else
                json_object_array_add(member(g, "deleteMessages", true),
                                      json_object_new_string(m->id));
        }
        /* the time fields join by min/max: any one change may carry them */
        const ps_time_field *tf[3] = {&chat->created_at, &chat->updated_at, &chat->last_modified};
        static const char *const keys[3] = {"createdAt", "updatedAt", "lastModified"};
        json_object_object_foreach(groups, k0, first)
        {
            (void)k0;
            for (int k = 0; k < 3; k++)
                if (tf[k]->value)
                    json_object_object_add(member(first, "fields", false), keys[k],
                                           json_object_get(tf[k]->value));
            break;
        }
    }
    json_object_object_foreach(groups, key, change)
    {
        (void)key;
        if (rc != PS_OK)
            break;
        if (!json_object_object_length(change)) {
            rc = nomem(err);
            break;
        }
        rc = ps__lstore_change_add(c->store, chat->id, PS_CHANGE_SNAPSHOT,
                                   json_object_get_int64(json_object_object_get(change, "clock")),
                                   ps_json_text(change, NULL), err);
    }
    json_object_put(groups);
    return rc;
}

static ps_code start_full_resync(sync_run *r, ps_error *err)
{
    ps_client *c = r->c;
    json_object *ids = NULL;
    ps_code rc = ps__lstore_begin(c->store, err);
    if (rc != PS_OK)
        return rc;
    if ((rc = ps__lstore_changes_clear(c->store, err)) == PS_OK)
        rc = ps__lstore_chat_ids(c->store, false, &ids, err);
    size_t n = rc == PS_OK ? json_object_array_length(ids) : 0;
    for (size_t i = 0; i < n && rc == PS_OK; i++) {
        ps_chat *chat = NULL;
        rc = ps__lstore_chat_load(c->store,
                                  json_object_get_string(json_object_array_get_idx(ids, i)), true,
                                  NULL, 0, &chat, err);
        if (rc == PS_OK && chat)
            rc = snapshot_chat(c, chat, err);
        ps_chat_free(chat);
    }
    json_object_put(ids);
    if (rc == PS_OK)
        rc = ps__lstore_meta_set(c->store, "cursor", NULL, err);
    if (rc == PS_OK)
        rc = ps__lstore_meta_set(c->store, "verify_cursor", NULL, err);
    if (rc == PS_OK)
        return ps__lstore_commit(c->store, err);
    ps__lstore_rollback(c->store);
    return rc;
}

/* ---- v2 ---- */

typedef struct v2_answer {
    json_object *root;
    json_object *chats;
    const char *cursor;
    bool more;
    int64_t server_clock;
} v2_answer;

static ps_code parse_v2(ps_client *c, const ps_http_answer *a, v2_answer *ans, ps_error *err)
{
    memset(ans, 0, sizeof *ans);
    json_object *v;
    ps_error perr;
    if (ps_json_parse(a->body.data ? a->body.data : "", a->body.len, PS_JSON_MAX_DEPTH + 4,
                      &ans->root, &perr) != PS_OK)
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
    if (!json_object_object_get_ex(ans->root, "serverClock", &v) || !ps_valid_counter(v))
        goto bad;
    ans->server_clock = json_object_get_int64(v);
    ps_limits lim = ps_limits_default();
    size_t n = json_object_array_length(ans->chats);
    for (size_t i = 0; i < n; i++) {
        json_object *chat = json_object_array_get_idx(ans->chats, i);
        if (!json_object_is_type(chat, json_type_object) ||
            !json_object_object_get_ex(chat, "id", &v) || !ps_valid_id(v, &lim))
            goto bad;
    }
    return PS_OK;
bad:
    json_object_put(ans->root);
    ans->root = NULL;
    return ps_error_set(err, PS_ERR_IO, -1, "", "the answer of %s/v2/sync is not a sync answer",
                        c->server);
}

/*
 * A pull from a null cursor hears of the deletion of a chat only if the
 * request names it (docs/protocol.md). So such a request also names every
 * live local chat it does not already carry, as a change that writes
 * nothing newer than anything: {chatId, clock: 0, at: 0} is an existence
 * write older than every other write, so it never revives or alters a chat
 * the server has (and every local chat reached the server before, as a
 * log entry or in the snapshot).
 */
static ps_code add_probes(ps_client *c, const ps_change_row *rows, size_t n, ps_dynbuf *out,
                          bool *first, size_t *added, ps_error *err)
{
    json_object *ids = NULL, *carried = json_object_new_object();
    if (!carried)
        return nomem(err);
    for (size_t i = 0; i < n; i++)
        json_object_object_add(carried, rows[i].chat_id, NULL);
    ps_code rc = ps__lstore_chat_ids(c->store, true, &ids, err);
    size_t count = rc == PS_OK ? json_object_array_length(ids) : 0;
    for (size_t i = 0; i < count && i < MAX_PROBES && rc == PS_OK; i++) {
        const char *id = json_object_get_string(json_object_array_get_idx(ids, i));
        if (json_object_object_get_ex(carried, id, NULL))
            continue;
        rc = ps_dynbuf_adds(out, *first ? "{\"chatId\":" : ",{\"chatId\":");
        if (rc == PS_OK)
            rc = ps_dynbuf_add_json_string(out, id);
        if (rc == PS_OK)
            rc = ps_dynbuf_adds(out, ",\"clock\":0,\"at\":0}");
        *first = false;
        ++*added;
        if (rc != PS_OK)
            rc = nomem(err);
    }
    json_object_put(ids);
    json_object_put(carried);
    return rc;
}

static ps_code build_v2_request(ps_client *c, const char *cursor, int limit,
                                const ps_change_row *rows, size_t n, bool probes, ps_dynbuf *out,
                                size_t *nprobes, ps_error *err)
{
    *nprobes = 0;
    ps_code rc = ps_dynbuf_adds(out, "{\"deviceId\":");
    if (rc == PS_OK)
        rc = ps_dynbuf_add_json_string(out, c->device);
    if (rc == PS_OK)
        rc = ps_dynbuf_adds(out, ",\"cursor\":");
    if (rc == PS_OK)
        rc = cursor ? ps_dynbuf_add_json_string(out, cursor) : ps_dynbuf_adds(out, "null");
    if (rc == PS_OK)
        rc = ps_dynbuf_addf(out, ",\"limit\":%d,\"changes\":[", limit);
    for (size_t i = 0; i < n && rc == PS_OK; i++) {
        if (i)
            rc = ps_dynbuf_adds(out, ",");
        if (rc == PS_OK)
            rc = ps_dynbuf_add(out, rows[i].body, rows[i].body_len);
    }
    if (rc != PS_OK)
        return nomem(err);
    bool first = n == 0;
    if (probes && (rc = add_probes(c, rows, n, out, &first, nprobes, err)) != PS_OK)
        return rc;
    if (ps_dynbuf_adds(out, "]}") != PS_OK)
        return nomem(err);
    return PS_OK;
}

/* What a batch carries, for the progress line. */
static void count_sent(sync_run *r, const ps_change_row *rows, size_t n)
{
    json_object *chats = json_object_new_object();
    for (size_t i = 0; i < n; i++) {
        if (chats && !json_object_object_get_ex(chats, rows[i].chat_id, NULL)) {
            json_object_object_add(chats, rows[i].chat_id, NULL);
            r->st->chats_sent++;
        }
        json_object *change = NULL;
        ps_error perr;
        if (ps_json_parse(rows[i].body, rows[i].body_len, PS_JSON_MAX_DEPTH, &change, &perr) ==
            PS_OK)
            r->st->messages_sent += array_len(change, "messages");
        json_object_put(change);
    }
    json_object_put(chats);
    r->st->changes_sent += n;
}

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

static ps_code apply_v2(sync_run *r, const v2_answer *ans, const ps_change_row *rows, size_t n,
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
    rc = observe_clock(c, S, err);
    if (rc == PS_OK && last_seq)
        rc = ps__lstore_changes_delete_upto(c->store, last_seq, err);
    /* From the cursor this push went out with, a verification pull will
     * fetch the server's verdict on it (see verify()). A null cursor needs
     * none: a first pull sends chats whole, deletions of the sent included. */
    if (rc == PS_OK && !null_cursor && may_have_lost(rows, n, S)) {
        char *pending = NULL;
        rc = ps__lstore_meta_get(c->store, "verify_cursor", &pending, err);
        if (rc == PS_OK && !pending)
            rc = ps__lstore_meta_set(c->store, "verify_cursor", req_cursor, err);
        free(pending);
    }
    if (rc == PS_OK && !push_only) {
        bool whole = null_cursor && !ans->more;
        if (whole && !(seen = json_object_new_object()))
            rc = nomem(err);
        size_t count = json_object_array_length(ans->chats);
        for (size_t i = 0; i < count && rc == PS_OK; i++) {
            json_object *chat = json_object_array_get_idx(ans->chats, i);
            rc = apply_remote(r, chat, S, err);
            if (seen)
                json_object_object_add(
                    seen, json_object_get_string(json_object_object_get(chat, "id")), NULL);
        }
        if (rc == PS_OK && whole)
            rc = drop_unseen(r, seen, S, err);
        if (rc == PS_OK)
            rc = restamp_pending(c, S, err);
        if (rc == PS_OK)
            rc = ps__lstore_meta_set(c->store, "cursor", ans->cursor, err);
    }
    json_object_put(seen);
    if (rc == PS_OK)
        return ps__lstore_commit(c->store, err);
    ps__lstore_rollback(c->store);
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
 * The server does not send a device its own writes, and it counts a write
 * as the device's even when the write lost: an edit to a chat that another
 * device had deleted leaves the chat deleted, but its header now names this
 * device, so the deletion is never sent here; an import older than the
 * server's copy is kept here and not there. polysyncd now re-announces the
 * winner of such a write (sync_v2.c, mark_lost_writes), so this pull
 * normally brings nothing new; it stays for servers that do not, and costs
 * one pull only after a push that raced: a push that may have lost is
 * followed by one pull of everything since the push's cursor under a
 * second device name, for which nothing is "own", applied like any pull. It moves no
 * cursor and is resumed by the next sync if it fails (meta verify_cursor).
 */
static ps_code verify(sync_run *r, ps_error *err)
{
    ps_client *c = r->c;
    char *cursor = NULL, *device = NULL;
    ps_code rc = ps__lstore_meta_get(c->store, "verify_cursor", &cursor, err);
    if (rc != PS_OK || !cursor)
        return rc;
    if (asprintf(&device, "%.200s~verify", c->device) < 0) {
        free(cursor);
        return nomem(err);
    }
    bool done = false;
    while (rc == PS_OK && !done) {
        ps_dynbuf body;
        ps_http_answer a;
        v2_answer ans = {0};
        ps_dynbuf_init(&body, (size_t)1 << 20);
        ps__http_answer_init(&a);
        rc = ps_dynbuf_adds(&body, "{\"deviceId\":");
        if (rc == PS_OK)
            rc = ps_dynbuf_add_json_string(&body, device);
        if (rc == PS_OK)
            rc = ps_dynbuf_adds(&body, ",\"cursor\":");
        if (rc == PS_OK)
            rc = ps_dynbuf_add_json_string(&body, cursor);
        if (rc == PS_OK)
            rc = ps_dynbuf_addf(&body, ",\"limit\":%d}", PAGE_LIMIT);
        if (rc != PS_OK)
            rc = nomem(err);
        if (rc == PS_OK)
            rc = ps__http_post(c, "/v2/sync", body.data, body.len, true, r->st, &a, err);
        if (rc != PS_OK) {
            /* said */
        } else if (a.status == 410 || a.status == 400) {
            done = true; /* too old to verify: a later full resync will do */
        } else if (a.status != 200) {
            rc = refused(c, &a, "/v2/sync", err);
        } else if ((rc = parse_v2(c, &a, &ans, err)) == PS_OK &&
                   (rc = ps__lstore_begin(c->store, err)) == PS_OK) {
            size_t n = json_object_array_length(ans.chats);
            size_t before = r->st->chats_received, msgs = r->st->messages_received;
            rc = observe_clock(c, ans.server_clock, err);
            for (size_t i = 0; i < n && rc == PS_OK; i++)
                rc =
                    apply_remote(r, json_object_array_get_idx(ans.chats, i), ans.server_clock, err);
            /* what it re-sent is not news from elsewhere */
            r->st->chats_received = before;
            r->st->messages_received = msgs;
            if (rc == PS_OK)
                rc = restamp_pending(c, ans.server_clock, err);
            if (rc == PS_OK)
                rc = ps__lstore_commit(c->store, err);
            else
                ps__lstore_rollback(c->store);
            done = !ans.more;
            free(cursor);
            cursor = strdup(ans.cursor);
            if (!cursor && rc == PS_OK)
                rc = nomem(err);
        }
        json_object_put(ans.root);
        ps__http_answer_free(&a);
        ps_dynbuf_free(&body);
    }
    if (rc == PS_OK && (rc = ps__lstore_begin(c->store, err)) == PS_OK) {
        if ((rc = ps__lstore_meta_set(c->store, "verify_cursor", NULL, err)) == PS_OK)
            rc = ps__lstore_commit(c->store, err);
        else
            ps__lstore_rollback(c->store);
    }
    free(cursor);
    free(device);
    return rc;
}

static ps_code sync_v2(sync_run *r, bool *not_v2, ps_error *err)
{
    ps_client *c = r->c;
    *not_v2 = false;
    bool resync;
    ps_code rc = check_server(r, &resync, err);
    if (rc == PS_OK && resync) {
        r->st->full_resync = true;
        rc = start_full_resync(r, err);
    }
    size_t pending = 0, batch_max = BATCH_CHANGES;
    unsigned resyncs = 0;
    bool probes = true; /* off if a server with a low --max-chats refuses them */
    if (rc == PS_OK)
        rc = ps__lstore_changes_count(c->store, &pending, err);
    r->st->changes_total = pending;
    report(r);
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
        ps_change_row *rows = NULL;
        size_t n = 0;
        bool more_pending = false;
        char *cursor = NULL;
        ps_dynbuf body;
        ps_http_answer a;
        v2_answer ans = {0};
        ps_dynbuf_init(&body, (size_t)1 << 30);
        ps__http_answer_init(&a);
        rc = ps__lstore_changes(c->store, 0, batch_max, BATCH_BYTES, &rows, &n, &more_pending, err);
        if (rc == PS_OK)
            rc = ps__lstore_meta_get(c->store, "cursor", &cursor, err);
        bool push_only = more_pending;
        bool null_cursor = cursor == NULL;
        int limit = push_only ? 1 : null_cursor ? FULL_LIMIT : PAGE_LIMIT;
        size_t nprobes = 0;
        if (rc == PS_OK)
            rc = build_v2_request(c, cursor, limit, rows, n, probes && null_cursor && !push_only,
                                  &body, &nprobes, err);
        if (rc == PS_OK)
            rc = ps__http_post(c, "/v2/sync", body.data, body.len, true, r->st, &a, err);
        bool done = false;
        if (rc != PS_OK) {
            /* the error says it */
        } else if (a.status == 200) {
            if ((rc = parse_v2(c, &a, &ans, err)) == PS_OK)
                rc = apply_v2(r, &ans, rows, n, cursor, push_only, err);
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
                if ((rc = start_full_resync(r, err)) == PS_OK &&
                    (rc = ps__lstore_changes_count(c->store, &pending, err)) == PS_OK)
                    r->st->changes_total = r->st->changes_sent + pending;
            }
        } else if (a.status == 413 && nprobes) {
            probes = false; /* the probes made it too large: without them */
        } else if (a.status == 413 && n > 1) {
            batch_max = n / 2; /* too much in one request: smaller batches */
        } else {
            rc = refused(c, &a, "/v2/sync", err);
            if (a.status == 413 && n == 1)
                ps_error_set(err, rc, -1, "", "a change to chat %s is too large for the server: %s",
                             rows[0].chat_id, a.message);
        }
        json_object_put(ans.root);
        ps__http_answer_free(&a);
        ps_dynbuf_free(&body);
        free(cursor);
        ps__change_rows_free(rows, n);
        report(r);
        if (done)
            break;
    }
    if (rc == PS_OK && !*not_v2)
        rc = verify(r, err);
    return rc;
}

/* ---- legacy /sync ---- */

/* Each chat in the log with its oldest and newest counter: {chatId: [old, new]}. */
static ps_code log_chats(ps_client *c, json_object **chats, int64_t *max_seq, size_t *count,
                         ps_error *err)
{
    *max_seq = 0;
    *count = 0;
    if (!(*chats = json_object_new_object()))
        return nomem(err);
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
                v = json_object_new_array_ext(2);
                json_object_array_add(v, json_object_new_int64(rows[i].clock));
                json_object_array_add(v, json_object_new_int64(rows[i].clock));
                json_object_object_add(*chats, rows[i].chat_id, v);
            }
            if (rows[i].clock < json_object_get_int64(json_object_array_get_idx(v, 0)))
                json_object_array_put_idx(v, 0, json_object_new_int64(rows[i].clock));
            if (rows[i].clock > json_object_get_int64(json_object_array_get_idx(v, 1)))
                json_object_array_put_idx(v, 1, json_object_new_int64(rows[i].clock));
            *max_seq = rows[i].seq;
        }
        *count += n;
        ps__change_rows_free(rows, n);
    }
    return rc;
}

static json_object *lamport_json(int64_t counter, const char *id)
{
    json_object *t = json_object_new_array_ext(2);
    if (t) {
        json_object_array_add(t, json_object_new_int64(counter));
        json_object_array_add(t, json_object_new_string(id));
    }
    return t;
}

static ps_code build_legacy_request(sync_run *r, json_object *log, json_object **out, ps_error *err)
{
    ps_client *c = r->c;
    int64_t clock = 0;
    json_object *req = json_object_new_object();
    json_object *chats = json_object_new_array();
    json_object *dels = json_object_new_array();
    ps_code rc = req && chats && dels ? PS_OK : nomem(err);
    if (rc == PS_OK)
        rc = ps__lstore_meta_int(c->store, "clock", 0, &clock, err);
    json_object_object_foreach(log, id, clockv)
    {
        if (rc != PS_OK)
            break;
        ps_chat *chat = NULL;
        if ((rc = ps__lstore_chat_load(c->store, id, true, NULL, 0, &chat, err)) != PS_OK || !chat)
            continue;
        int64_t oldest = json_object_get_int64(json_object_array_get_idx(clockv, 0));
        int64_t newest = json_object_get_int64(json_object_array_get_idx(clockv, 1));
        if (ps_chat_is_live(chat)) {
            json_object *doc = ps_chat_to_legacy(chat);
            if (!doc) {
                rc = nomem(err);
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
                    json_object_object_add(t, "id", json_object_new_string(m->id));
                    json_object_object_add(t, "deleted", json_object_new_boolean(1));
                    json_object_array_add(msgs, t);
                }
                /* The whole chat is one write, at the newest change made here. */
                if (newest > 0)
                    json_object_object_add(doc, "updatedAtLamport",
                                           lamport_json(newest, c->device));
                else if (!chat->lamport.counter || !chat->lamport.id || !*chat->lamport.id)
                    json_object_object_del(doc, "updatedAtLamport");
                r->st->messages_sent += array_len(doc, "messages");
                r->st->chats_sent++;
                json_object_array_add(chats, doc);
            }
        } else if (chat->has_tombstone && chat->deleted_lamport.id &&
                   strcmp(chat->deleted_lamport.id, c->device) == 0) {
            json_object *d = json_object_new_object();
            json_object_object_add(d, "id", json_object_new_string(id));
            json_object_object_add(d, "lamport",
                                   lamport_json(chat->deleted_lamport.counter, c->device));
            json_object_array_add(dels, d);
        }
        ps_chat_free(chat);
    }
    if (rc == PS_OK) {
        json_object_object_add(req, "deviceId", json_object_new_string(c->device));
        json_object_object_add(req, "clientClock", json_object_new_int64(clock));
        json_object_object_add(req, "chats", chats);
        json_object_object_add(req, "deletions", dels);
        *out = req;
        return PS_OK;
    }
    json_object_put(req);
    json_object_put(chats);
    json_object_put(dels);
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
    ps_code rc = change && fields && msgs && dels && returned ? PS_OK : nomem(err);
    ps_lamport tuple = {0};
    if (rc == PS_OK)
        rc = ps__lstore_chat_load(c->store, id, true, NULL, 0, &local, err);
    if (rc != PS_OK)
        goto done;
    json_object_object_foreach(doc, key, val)
    {
        if (strcmp(key, "id") == 0)
            continue;
        if (strcmp(key, "updatedAtLamport") == 0) {
            ps_limits lim = ps_limits_default();
            if (ps_valid_lamport(val, &lim)) {
                tuple.counter = json_object_get_int64(json_object_array_get_idx(val, 0));
                tuple.id = (char *)json_object_get_string(json_object_array_get_idx(val, 1));
            }
        } else if (strcmp(key, "messages") == 0) {
            size_t n = json_object_array_length(val);
            for (size_t i = 0; i < n; i++) {
                json_object *m = json_object_array_get_idx(val, i);
                json_object_array_add(msgs, json_object_get(m));
                json_object_object_add(
                    returned, json_object_get_string(json_object_object_get(m, "id")), NULL);
            }
        } else {
            json_object_object_add(fields, key, json_object_get(val));
        }
    }
    /* what it left out, the server does not have: deleted there */
    for (size_t i = 0; local && i < local->nmessages; i++)
        if (local->messages[i].value &&
            !json_object_object_get_ex(returned, local->messages[i].id, NULL))
            json_object_array_add(dels, json_object_new_string(local->messages[i].id));
    json_object_object_add(change, "chatId", json_object_new_string(id));
    json_object_object_add(change, "clock", json_object_new_int64(S));
    json_object_object_add(change, "fields", json_object_get(fields));
    json_object_object_add(change, "messages", json_object_get(msgs));
    json_object_object_add(change, "deleteMessages", json_object_get(dels));
    ps_error verr;
    if (ps__validate_change(change, c->device, &verr) != PS_OK)
        rc = ps_error_set(err, PS_ERR_IO, -1, "", "the server sent an invalid chat %s: %s", id,
                          verr.message);
    ps_apply_effect eff = {0};
    if (rc == PS_OK)
        rc = ps__apply_change_ex(c, change, PS_SERVER_WRITER, tuple.counter ? &tuple : NULL, &eff,
                                 err);
    count_received(r, rc, false, &eff);
done:
    ps_chat_free(local);
    json_object_put(change);
    json_object_put(fields);
    json_object_put(msgs);
    json_object_put(dels);
    json_object_put(returned);
    return rc;
}

static ps_code apply_legacy(sync_run *r, json_object *ans, int64_t max_seq, ps_error *err)
{
    ps_client *c = r->c;
    json_object *missing = NULL, *dels = NULL, *v;
    ps_limits lim = ps_limits_default();
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
    if (json_object_object_get_ex(ans, "serverClock", &v) && ps_valid_counter(v))
        S = json_object_get_int64(v);
    for (size_t i = 0; i < nm; i++) {
        json_object *doc = json_object_array_get_idx(missing, i);
        ps_error verr;
        if (ps_validate_chat(doc, (long)i, &lim, &verr) != PS_OK)
            return ps_error_set(err, PS_ERR_IO, -1, "", "the server sent an invalid chat: %s",
                                verr.message);
        if (json_object_object_get_ex(doc, "updatedAtLamport", &v) && ps_valid_lamport(v, &lim) &&
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
        rc = observe_clock(c, S, err);
    if (rc == PS_OK && max_seq)
        rc = ps__lstore_changes_delete_upto(c->store, max_seq, err);
    for (size_t i = 0; i < nm && rc == PS_OK; i++)
        rc = apply_legacy_chat(r, json_object_array_get_idx(missing, i), S, err);
    for (size_t i = 0; i < nd && rc == PS_OK; i++) {
        json_object *d = json_object_array_get_idx(dels, i);
        json_object *idv =
            json_object_is_type(d, json_type_object) ? json_object_object_get(d, "id") : NULL;
        if (!ps_valid_id(idv, &lim))
            continue;
        ps_chat *chat = NULL;
        rc =
            ps__lstore_chat_load(c->store, json_object_get_string(idv), false, NULL, 0, &chat, err);
        if (rc == PS_OK && chat && ps_chat_is_live(chat)) {
            bool was_live = false;
            rc = apply_deletion(c, json_object_get_string(idv), S, &was_live, err);
            r->st->deletions_received += was_live;
        }
        ps_chat_free(chat);
    }
    if (rc == PS_OK)
        rc = restamp_pending(c, S, err);
    if (rc == PS_OK)
        return ps__lstore_commit(c->store, err);
    ps__lstore_rollback(c->store);
    return rc;
}

static ps_code sync_legacy(sync_run *r, ps_error *err)
{
    ps_client *c = r->c;
    r->st->protocol = "legacy";
    json_object *log = NULL, *req = NULL, *ans = NULL;
    int64_t max_seq = 0;
    size_t count = 0;
    ps_http_answer a;
    ps__http_answer_init(&a);
    ps_code rc = log_chats(c, &log, &max_seq, &count, err);
    r->st->changes_total = count;
    if (rc == PS_OK)
        rc = build_legacy_request(r, log, &req, err);
    ps_limits lim = ps_limits_default();
    if (rc == PS_OK)
        rc = ps_validate_sync_request(req, &lim, err);
    size_t len = 0;
    const char *text = rc == PS_OK ? ps_json_text(req, &len) : NULL;
    report(r);
    /* Not gzipped: a seed server would not understand it. */
    if (rc == PS_OK)
        rc = ps__http_post(c, "/sync", text, len, false, r->st, &a, err);
    if (rc == PS_OK && a.status == 404)
        rc = ps_error_set(err, PS_ERR_CONFIG, -1, "server",
                          "%s is not a sync server: neither /v2/sync nor /sync exists (404)",
                          c->server);
    else if (rc == PS_OK && a.status != 200)
        rc = refused(c, &a, "/sync", err);
    ps_error perr;
    if (rc == PS_OK && ps_json_parse(a.body.data ? a.body.data : "", a.body.len,
                                     PS_JSON_MAX_DEPTH + 4, &ans, &perr) != PS_OK)
        rc = ps_error_set(err, PS_ERR_IO, -1, "", "the answer of %s/sync is not JSON: %s",
                          c->server, perr.message);
    if (rc == PS_OK)
        rc = apply_legacy(r, ans, max_seq, err);
    if (rc == PS_OK) {
        r->st->changes_sent = count;
        r->st->pages = 1;
    }
    json_object_put(log);
    json_object_put(req);
    json_object_put(ans);
    ps__http_answer_free(&a);
    report(r);
    return rc;
}

ps_code ps_client_sync(ps_client *c, ps_sync_stats *stats, ps_error *err)
{
    ps_sync_stats local;
    ps_sync_stats *st = stats ? stats : &local;
    memset(st, 0, sizeof *st);
    st->protocol = "v2";
    c->last_status = 0;
    if (!c->server)
        return ps_error_set(err, PS_ERR_CONFIG, -1, "server",
                            "no server: set one with --server URL or POLYSYNC_SERVER");
    sync_run r = {.c = c, .st = st};
    clock_gettime(CLOCK_MONOTONIC, &r.start);
    sync_lock lock;
    ps_code rc = lock_store(c, &lock, err);
    bool not_v2 = false;
    if (rc == PS_OK)
        rc = sync_v2(&r, &not_v2, err);
    if (rc == PS_OK && not_v2)
        rc = sync_legacy(&r, err);
    if (rc == PS_OK) /* for `polysync status`; a failure here fails nothing */
        ps__lstore_meta_set_int(c->store, "last_sync_ms", ps_time_now_ms(), NULL);
    unlock_store(&lock);
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    st->elapsed_ms =
        (now.tv_sec - r.start.tv_sec) * 1000LL + (now.tv_nsec - r.start.tv_nsec) / 1000000;
    return rc;
}
