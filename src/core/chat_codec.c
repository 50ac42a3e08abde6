/*
 * Legacy chat <-> registers <-> stored state; see chat_codec.h.
 *
 * State JSON, versioned by the store schema (docs/storage.md):
 *   {"id", "f": {name: [value, stamp]}, "m": [[id, value|null, stamp, order]],
 *    "c"/"u"/"l": createdAt/updatedAt/lastModified as sent,
 *    "t": stamp (touched), "d": stamp (tombstone), "D": [counter, id] (the
 *    tombstone as clients see it), "L": [counter, id] (updatedAtLamport)}
 * where stamp = [ts, lamport, device].
 */
#include "core/chat_codec.h"
#include "core/json_build.h"
#include "core/timestamp.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static const char *const TIME_KEYS[3] = {"createdAt", "updatedAt", "lastModified"};

static ps_time_field *time_field(ps_chat *chat, int k)
{
    return k == 0 ? &chat->created_at : k == 1 ? &chat->updated_at : &chat->last_modified;
}

static const ps_time_field *time_field_c(const ps_chat *chat, int k)
{
    return time_field((ps_chat *)chat, k);
}

static int time_key_index(const char *key)
{
    for (int k = 0; k < 3; k++)
        if (strcmp(key, TIME_KEYS[k]) == 0)
            return k;
    return -1;
}

static int64_t clamp_ts(int64_t ts, const ps_ingest *in)
{
    int64_t limit = in->now_ms + in->max_skew_ms;
    return ts > limit ? limit : ts;
}

ps_code ps__legacy_stamp(json_object *legacy, const ps_ingest *in, ps_stamp *out)
{
    out->ts = 0;
    out->lamport = 0;
    out->device = NULL;
    out->timed = false;
    for (int k = 2; k >= 0; k--) { /* lastModified, then updatedAt, then createdAt */
        json_object *v;
        int64_t ms;
        if (json_object_object_get_ex(legacy, TIME_KEYS[k], &v) && ps__time_from_json(v, &ms)) {
            out->ts = clamp_ts(ms, in);
            break;
        }
    }
    const char *device = in->device ? in->device : "";
    json_object *lam;
    if (json_object_object_get_ex(legacy, "updatedAtLamport", &lam) &&
        json_object_is_type(lam, json_type_array) && json_object_array_length(lam) == 2) {
        out->lamport = json_object_get_int64(json_object_array_get_idx(lam, 0));
        /* The tuple names the device that made the change; the request's
         * deviceId may only be relaying it. */
        device = json_object_get_string(json_object_array_get_idx(lam, 1));
    }
    out->device = strdup(device);
    return out->device ? PS_OK : PS_ERR_NOMEM;
}

static bool is_private(json_object *msg)
{
    json_object *v;
    return json_object_object_get_ex(msg, "isPrivate", &v) && json_object_get_boolean(v) &&
           json_object_is_type(v, json_type_boolean);
}

/* {id, deleted: true}: the sender deleted this message. */
static bool is_tombstone(json_object *msg)
{
    json_object *v;
    return json_object_object_get_ex(msg, "deleted", &v) &&
           json_object_is_type(v, json_type_boolean) && json_object_get_boolean(v);
}

static int64_t message_order(json_object *msg)
{
    json_object *v;
    int64_t ms = 0;
    if (json_object_object_get_ex(msg, "timestamp", &v))
        ps__time_from_json(v, &ms);
    return ms;
}

/* Stores one time field (createdAt, updatedAt, lastModified) as sent, or
 * clamped when it is further ahead than the skew allows. */
static ps_code ingest_time(ps_chat *chat, int tk, json_object *val, const ps_ingest *in)
{
    int64_t ms;
    if (!ps__time_from_json(val, &ms))
        return PS_OK;
    ps_time_field *tf = time_field(chat, tk);
    int64_t clamped = clamp_ts(ms, in);
    json_object *v;
    if (clamped != ms) { /* store what we believe, not the bad clock */
        char iso[32];
        ps__time_format_iso(clamped, iso);
        v = json_object_new_string(iso);
    } else {
        v = json_object_get(val);
    }
    if (!v)
        return PS_ERR_NOMEM;
    ps_time_field incoming = {.value = v, .ms = clamped};
    ps__time_field_join(tf, &incoming, tk == 0);
    json_object_put(v);
    return PS_OK;
}

/* One key of a chat (or of a v2 change's fields): a time field or a
 * register write. */
static ps_code ingest_key(ps_chat *chat, const char *key, json_object *val, const ps_stamp *stamp,
                          const ps_ingest *in)
{
    int tk = time_key_index(key);
    if (tk >= 0)
        return ingest_time(chat, tk, val, in);
    bool changed;
    return ps__chat_put_field(chat, key, json_object_get(val), stamp, &changed);
}

/* Message writes: private ones dropped, {id, deleted: true} as tombstones. */
static ps_code ingest_messages(ps_chat *chat, json_object *list, const ps_stamp *stamp)
{
    ps_code rc = PS_OK;
    size_t n = json_object_array_length(list);
    for (size_t i = 0; i < n && rc == PS_OK; i++) {
        json_object *msg = json_object_array_get_idx(list, i);
        if (is_private(msg))
            continue;
        const char *mid = json_object_get_string(json_object_object_get(msg, "id"));
        /* A tombstone has no place in the display order: 0, so two equal
         * tombstones are equal in every part. */
        bool dead = is_tombstone(msg);
        rc = ps__chat_append_message(chat, mid, dead ? NULL : json_object_get(msg), stamp,
                                     dead ? 0 : message_order(msg));
    }
    return rc;
}

/* The end of an ingest: a normalized chat for the caller, or nothing. */
static ps_code finish_ingest(ps_chat *chat, ps_code rc, ps_chat **out)
{
    if (rc != PS_OK) {
        ps__chat_free(chat);
        return rc;
    }
    ps__chat_normalize(chat);
    *out = chat;
    return PS_OK;
}

ps_code ps__chat_from_legacy(json_object *legacy, const ps_ingest *in, ps_chat **out)
{
    *out = NULL;
    json_object *idv = json_object_object_get(legacy, "id");
    ps_chat *chat = ps__chat_new(json_object_get_string(idv));
    if (!chat)
        return PS_ERR_NOMEM;
    ps_stamp stamp;
    ps_code rc = ps__legacy_stamp(legacy, in, &stamp);
    if (rc == PS_OK)
        rc = ps__stamp_copy(&chat->touched, &stamp);
    chat->has_touched = true;
    if (rc == PS_OK && stamp.lamport && !stamp.timed)
        rc = ps__lamport_set(&chat->lamport, stamp.lamport, stamp.device);
    json_object_object_foreach(legacy, key, val)
    {
        if (rc != PS_OK)
            break;
        if (strcmp(key, "id") == 0 || strcmp(key, "updatedAtLamport") == 0)
            continue;
        if (strcmp(key, "messages") == 0)
            rc = ingest_messages(chat, val, &stamp);
        else
            rc = ingest_key(chat, key, val, &stamp, in);
    }
    ps__stamp_clear(&stamp);
    return finish_ingest(chat, rc, out);
}

ps_code ps__chat_from_change(json_object *change, const ps_ingest *in, ps_chat **out)
{
    *out = NULL;
    json_object *v;
    ps_chat *chat = ps__chat_new(json_object_get_string(json_object_object_get(change, "chatId")));
    if (!chat)
        return PS_ERR_NOMEM;
    ps_stamp stamp = {.ts = in->now_ms, .device = strdup(in->device ? in->device : "")};
    int64_t ms;
    if (json_object_object_get_ex(change, "at", &v) && ps__time_from_json(v, &ms))
        stamp.ts = clamp_ts(ms, in);
    if (json_object_object_get_ex(change, "clock", &v))
        stamp.lamport = json_object_get_int64(v);
    ps_code rc = stamp.device ? PS_OK : PS_ERR_NOMEM;
    bool delete_chat =
        json_object_object_get_ex(change, "deleteChat", &v) && json_object_get_boolean(v);
    if (rc == PS_OK && delete_chat) {
        /* shown with the change's own tuple; the server ticks one if 0 */
        rc = ps__stamp_copy(&chat->tombstone, &stamp);
        chat->has_tombstone = true;
        if (rc == PS_OK && !stamp.timed)
            rc = ps__lamport_set(&chat->deleted_lamport, stamp.lamport, stamp.device);
    } else if (rc == PS_OK) {
        rc = ps__stamp_copy(&chat->touched, &stamp);
        chat->has_touched = true;
    }
    if (rc == PS_OK && json_object_object_get_ex(change, "fields", &v)) {
        json_object_object_foreach(v, key, val)
        {
            if ((rc = ingest_key(chat, key, val, &stamp, in)) != PS_OK)
                break;
        }
    }
    if (rc == PS_OK && json_object_object_get_ex(change, "messages", &v))
        rc = ingest_messages(chat, v, &stamp);
    if (rc == PS_OK && json_object_object_get_ex(change, "deleteMessages", &v)) {
        size_t n = json_object_array_length(v);
        for (size_t i = 0; i < n && rc == PS_OK; i++)
            rc = ps__chat_append_message(
                chat, json_object_get_string(json_object_array_get_idx(v, i)), NULL, &stamp, 0);
    }
    ps__stamp_clear(&stamp);
    return finish_ingest(chat, rc, out);
}

static int order_cmp(const void *a, const void *b)
{
    return ps__message_order_cmp(*(const ps_message *const *)a, *(const ps_message *const *)b);
}

/* The document built (json_build.h), or NULL when an allocation failed
 * on the way: what the callers of the *_json functions below check. */
static json_object *built(json_object *doc, ps_code rc)
{
    if (rc == PS_OK)
        return doc;
    json_object_put(doc);
    return NULL;
}

/* NULL when out of memory (as json_object_new_* are). */
static json_object *lamport_json(int64_t counter, const char *id)
{
    json_object *arr = json_object_new_array_ext(2);
    ps_code rc = PS_OK;
    ps__json_push(&rc, arr, json_object_new_int64(counter));
    ps__json_push(&rc, arr, json_object_new_string(id ? id : ""));
    return built(arr, rc);
}

json_object *ps__chat_to_legacy(const ps_chat *chat)
{
    json_object *obj = json_object_new_object();
    const ps_message **order = calloc(chat->nmessages + 1, sizeof *order);
    json_object *msgs = json_object_new_array_ext((int)chat->nmessages);
    if (!obj || !order || !msgs) {
        json_object_put(obj);
        json_object_put(msgs);
        free(order);
        return NULL;
    }
    ps_code rc = PS_OK;
    ps__json_set(&rc, obj, "id", json_object_new_string(chat->id));
    for (size_t i = 0; i < chat->nfields; i++)
        ps__json_set_opt(&rc, obj, chat->fields[i].name, chat->fields[i].value,
                         json_object_get(chat->fields[i].value));
    size_t live = 0;
    for (size_t i = 0; i < chat->nmessages; i++)
        if (chat->messages[i].value)
            order[live++] = &chat->messages[i];
    qsort(order, live, sizeof *order, order_cmp);
    for (size_t i = 0; i < live; i++)
        ps__json_push(&rc, msgs, json_object_get(order[i]->value));
    free(order);
    ps__json_set(&rc, obj, "messages", msgs);
    for (int k = 0; k < 3; k++) {
        const ps_time_field *tf = time_field_c(chat, k);
        if (tf->value)
            ps__json_set(&rc, obj, TIME_KEYS[k], json_object_get(tf->value));
    }
    ps__json_set(&rc, obj, "updatedAtLamport",
                 lamport_json(chat->lamport.counter, chat->lamport.id));
    return built(obj, rc);
}

static int pointer_cmp(const void *a, const void *b)
{
    uintptr_t x = (uintptr_t) * (json_object *const *)a, y = (uintptr_t) * (json_object *const *)b;
    return (x > y) - (x < y);
}

/* Whether merged's live messages are, pointer for pointer, the n sent
 * messages themselves: then they are the same with nothing looked up (a
 * value taken from the very tree sent and never changed since; a private
 * message or a tombstone never becomes a value, so each sent one is
 * neither). A new chat's merge is this: the key look-ups of the full
 * comparison below were 4 % of a first upload's CPU. False says nothing. */
static bool sent_are_merged(const ps_chat *merged, json_object *sent_msgs, size_t n)
{
    size_t live = 0;
    for (size_t i = 0; i < merged->nmessages; i++)
        live += merged->messages[i].value != NULL;
    json_object *stack[256], **sent = n <= 256 ? stack : malloc(n * sizeof *sent);
    if (live != n || !sent) {
        if (sent != stack)
            free(sent);
        return false;
    }
    for (size_t i = 0; i < n; i++)
        sent[i] = json_object_array_get_idx(sent_msgs, i);
    qsort(sent, n, sizeof *sent, pointer_cmp);
    bool all = true;
    for (size_t i = 0; i < merged->nmessages && all; i++) {
        json_object *v = merged->messages[i].value;
        all = !v || bsearch(&v, sent, n, sizeof *sent, pointer_cmp) != NULL;
    }
    /* a pointer twice in the array (json-c shares none when parsing) would
     * let n live values match fewer sent messages */
    for (size_t i = 1; i < n && all; i++)
        all = sent[i] != sent[i - 1];
    if (sent != stack)
        free(sent);
    return all;
}

static bool messages_differ(const ps_chat *merged, json_object *sent_msgs,
                            const ps_stamp *sent_stamp)
{
    if (!sent_msgs) { /* not sent: only writes the client cannot have seen */
        for (size_t i = 0; i < merged->nmessages; i++)
            if (ps__stamp_cmp(&merged->messages[i].stamp, sent_stamp) > 0)
                return true;
        return false;
    }
    size_t n = json_object_array_length(sent_msgs), matched = 0;
    if (json_object_is_type(sent_msgs, json_type_array) && sent_are_merged(merged, sent_msgs, n))
        return false;
    for (size_t i = 0; i < n; i++) {
        json_object *msg = json_object_array_get_idx(sent_msgs, i);
        if (is_private(msg))
            continue;
        const ps_message *m =
            ps__chat_message(merged, json_object_get_string(json_object_object_get(msg, "id")));
        if (is_tombstone(msg)) { /* the client has it deleted: so must we */
            if (m && m->value)
                return true;
            continue;
        }
        if (!m || !m->value || !json_object_equal(m->value, msg))
            return true;
        matched++;
    }
    size_t live = 0;
    for (size_t i = 0; i < merged->nmessages; i++)
        live += merged->messages[i].value != NULL;
    /* A duplicated id in the sent list counts twice in `matched`. */
    return live != matched;
}

bool ps__chat_differs_from_sent(const ps_chat *merged, json_object *sent,
                                const ps_stamp *sent_stamp)
{
    json_object *sent_msgs = NULL;
    json_object_object_foreach(sent, key, val)
    {
        int tk = time_key_index(key);
        if (strcmp(key, "id") == 0 || strcmp(key, "updatedAtLamport") == 0)
            continue;
        if (strcmp(key, "messages") == 0) {
            sent_msgs = val;
        } else if (tk >= 0) {
            int64_t ms;
            const ps_time_field *tf = time_field_c(merged, tk);
            if (ps__time_from_json(val, &ms) && (!tf->value || tf->ms != ms))
                return true;
        } else {
            const ps_field *f = ps__chat_field(merged, key);
            if (!f || !json_object_equal(f->value, val))
                return true;
        }
    }
    for (size_t i = 0; i < merged->nfields; i++)
        if (!json_object_object_get_ex(sent, merged->fields[i].name, NULL) &&
            ps__stamp_cmp(&merged->fields[i].stamp, sent_stamp) > 0)
            return true;
    return messages_differ(merged, sent_msgs, sent_stamp);
}

/* ---- internal state ---- */

/* [ts, lamport, device], and a 1 after them for a time-only write the
 * server placed (schema 6 on). */
static json_object *stamp_json(const ps_stamp *s)
{
    json_object *arr = json_object_new_array_ext(4);
    ps_code rc = PS_OK;
    ps__json_push(&rc, arr, json_object_new_int64(s->ts));
    ps__json_push(&rc, arr, json_object_new_int64(s->lamport));
    ps__json_push(&rc, arr, json_object_new_string(s->device ? s->device : ""));
    if (s->timed)
        ps__json_push(&rc, arr, json_object_new_int(1));
    return built(arr, rc);
}

/* Appends [seq, origin] to `arr` when the part has been stored. */
static void add_mark(ps_code *rc, json_object *arr, const ps_mark *m)
{
    if (!m->seq)
        return;
    ps__json_push(rc, arr, json_object_new_int64(m->seq));
    ps__json_push(rc, arr, json_object_new_string(m->origin ? m->origin : ""));
}

static json_object *state_json(const ps_chat *chat, bool with_messages);

json_object *ps__chat_state_to_json(const ps_chat *chat)
{
    return state_json(chat, true);
}

json_object *ps__chat_header_to_json(const ps_chat *chat)
{
    return state_json(chat, false);
}

static json_object *state_json(const ps_chat *chat, bool with_messages)
{
    json_object *st = json_object_new_object();
    json_object *fields = json_object_new_object();
    json_object *msgs = json_object_new_array_ext((int)chat->nmessages);
    if (!st || !fields || !msgs) {
        json_object_put(st);
        json_object_put(fields);
        json_object_put(msgs);
        return NULL;
    }
    ps_code rc = PS_OK;
    ps__json_set(&rc, st, "id", json_object_new_string(chat->id));
    for (size_t i = 0; i < chat->nfields; i++) {
        json_object *pair = json_object_new_array_ext(4);
        if (rc == PS_OK && pair &&
            json_object_array_add(pair, json_object_get(chat->fields[i].value))) {
            json_object_put(chat->fields[i].value); /* json-c kept nothing: ours back */
            rc = PS_ERR_NOMEM; /* a null value is a JSON null here, not a failure */
        }
        ps__json_push(&rc, pair, stamp_json(&chat->fields[i].stamp));
        add_mark(&rc, pair, &chat->fields[i].mark);
        ps__json_set(&rc, fields, chat->fields[i].name, pair);
    }
    ps__json_set(&rc, st, "f", fields);
    for (size_t i = 0; with_messages && i < chat->nmessages; i++) {
        const ps_message *m = &chat->messages[i];
        json_object *row = json_object_new_array_ext(4);
        ps__json_push(&rc, row, json_object_new_string(m->id));
        if (rc == PS_OK && row && json_object_array_add(row, json_object_get(m->value))) {
            json_object_put(m->value); /* json-c kept nothing: ours back */
            rc = PS_ERR_NOMEM;         /* a tombstone's value is null, on purpose */
        }
        ps__json_push(&rc, row, stamp_json(&m->stamp));
        ps__json_push(&rc, row, json_object_new_int64(m->order_ts));
        add_mark(&rc, row, &m->mark);
        ps__json_push(&rc, msgs, row);
    }
    if (with_messages)
        ps__json_set(&rc, st, "m", msgs);
    else
        json_object_put(msgs);
    if (chat->revived_seq)
        ps__json_set(&rc, st, "R", json_object_new_int64(chat->revived_seq));
    /* the receive counter is the store's (its message rows are numbered
     * by it), not part of the merged state */
    if (!with_messages && chat->next_received)
        ps__json_set(&rc, st, "n", json_object_new_int64(chat->next_received));
    if (chat->header.seq) {
        json_object *h = json_object_new_array_ext(2);
        add_mark(&rc, h, &chat->header);
        ps__json_set(&rc, st, "h", h);
    }
    static const char *const keys[3] = {"c", "u", "l"};
    for (int k = 0; k < 3; k++) {
        const ps_time_field *tf = time_field_c(chat, k);
        if (tf->value) {
            json_object *pair = json_object_new_array_ext(4);
            ps__json_push(&rc, pair, json_object_get(tf->value));
            ps__json_push(&rc, pair, json_object_new_int64(tf->ms));
            add_mark(&rc, pair, &tf->mark);
            ps__json_set(&rc, st, keys[k], pair);
        }
    }
    if (chat->has_touched)
        ps__json_set(&rc, st, "t", stamp_json(&chat->touched));
    if (chat->has_tombstone) {
        ps__json_set(&rc, st, "d", stamp_json(&chat->tombstone));
        ps__json_set(&rc, st, "D",
                     lamport_json(chat->deleted_lamport.counter, chat->deleted_lamport.id));
    }
    if (chat->lamport.counter)
        ps__json_set(&rc, st, "L", lamport_json(chat->lamport.counter, chat->lamport.id));
    return built(st, rc);
}

static bool stamp_from_json(json_object *v, ps_stamp *out)
{
    size_t len = json_object_is_type(v, json_type_array) ? json_object_array_length(v) : 0;
    if ((len != 3 && len != 4) ||
        !json_object_is_type(json_object_array_get_idx(v, 2), json_type_string))
        return false;
    out->ts = json_object_get_int64(json_object_array_get_idx(v, 0));
    out->lamport = json_object_get_int64(json_object_array_get_idx(v, 1));
    out->timed = len == 4 && json_object_get_int(json_object_array_get_idx(v, 3)) == 1;
    free(out->device);
    out->device = strdup(json_object_get_string(json_object_array_get_idx(v, 2)));
    return out->device != NULL;
}

/* [..., seq, "origin"] at index `at` of a state array. */
static ps_code mark_from_json(json_object *arr, size_t at, ps_mark *out)
{
    json_object *seq = json_object_array_get_idx(arr, at);
    json_object *origin = json_object_array_get_idx(arr, at + 1);
    if (!json_object_is_type(seq, json_type_int) || !json_object_is_type(origin, json_type_string))
        return PS_ERR_STORE;
    char *copy = strdup(json_object_get_string(origin));
    if (!copy)
        return PS_ERR_NOMEM;
    free(out->origin);
    out->origin = copy;
    out->seq = json_object_get_int64(seq);
    return PS_OK;
}

/* [counter, "id"] as the state stores it. */
static bool lamport_pair(json_object *v)
{
    return json_object_is_type(v, json_type_array) && json_object_array_length(v) == 2 &&
           json_object_is_type(json_object_array_get_idx(v, 1), json_type_string);
}

ps_code ps__chat_state_from_json(json_object *st, ps_chat **out, ps_error *err)
{
    *out = NULL;
    json_object *v, *fields, *msgs = NULL;
    if (!json_object_object_get_ex(st, "id", &v) || !json_object_is_type(v, json_type_string) ||
        !json_object_object_get_ex(st, "f", &fields) ||
        !json_object_is_type(fields, json_type_object) ||
        (json_object_object_get_ex(st, "m", &msgs) && !json_object_is_type(msgs, json_type_array)))
        return ps_error_set(err, PS_ERR_STORE, -1, "", "corrupt chat state");
    ps_chat *chat = ps__chat_new(json_object_get_string(v));
    if (!chat)
        return PS_ERR_NOMEM;
    ps_code rc = PS_OK;
    ps_stamp stamp = {0};
    json_object_object_foreach(fields, name, pair)
    {
        bool changed;
        size_t len =
            json_object_is_type(pair, json_type_array) ? json_object_array_length(pair) : 0;
        if ((len != 2 && len != 4) ||
            !stamp_from_json(json_object_array_get_idx(pair, 1), &stamp)) {
            rc = PS_ERR_STORE;
            break;
        }
        rc = ps__chat_put_field(chat, name, json_object_get(json_object_array_get_idx(pair, 0)),
                                &stamp, &changed);
        if (rc == PS_OK && len == 4)
            rc = mark_from_json(pair, 2, &((ps_field *)ps__chat_field(chat, name))->mark);
        if (rc != PS_OK)
            break;
    }
    size_t n = msgs ? json_object_array_length(msgs) : 0;
    for (size_t i = 0; i < n && rc == PS_OK; i++) {
        json_object *row = json_object_array_get_idx(msgs, i);
        size_t len = json_object_is_type(row, json_type_array) ? json_object_array_length(row) : 0;
        if ((len != 4 && len != 6) ||
            !json_object_is_type(json_object_array_get_idx(row, 0), json_type_string) ||
            !stamp_from_json(json_object_array_get_idx(row, 2), &stamp)) {
            rc = PS_ERR_STORE;
            break;
        }
        json_object *val = json_object_array_get_idx(row, 1);
        rc = ps__chat_append_message(
            chat, json_object_get_string(json_object_array_get_idx(row, 0)),
            json_object_is_type(val, json_type_null) ? NULL : json_object_get(val), &stamp,
            json_object_get_int64(json_object_array_get_idx(row, 3)));
        if (rc == PS_OK && len == 6)
            rc = mark_from_json(row, 4, &chat->messages[chat->nmessages - 1].mark);
    }
    if (rc == PS_OK && json_object_object_get_ex(st, "h", &v))
        rc = mark_from_json(v, 0, &chat->header);
    if (rc == PS_OK && json_object_object_get_ex(st, "R", &v))
        chat->revived_seq = json_object_get_int64(v);
    if (rc == PS_OK && json_object_object_get_ex(st, "n", &v))
        chat->next_received = json_object_get_int64(v);
    static const char *const keys[3] = {"c", "u", "l"};
    for (int k = 0; k < 3 && rc == PS_OK; k++) {
        if (json_object_object_get_ex(st, keys[k], &v) && json_object_is_type(v, json_type_array)) {
            ps_time_field *tf = time_field(chat, k);
            tf->value = json_object_get(json_object_array_get_idx(v, 0));
            tf->ms = json_object_get_int64(json_object_array_get_idx(v, 1));
            if (json_object_array_length(v) == 4)
                rc = mark_from_json(v, 2, &tf->mark);
        }
    }
    if (rc == PS_OK && json_object_object_get_ex(st, "t", &v)) {
        chat->has_touched = true;
        if (!stamp_from_json(v, &chat->touched))
            rc = PS_ERR_STORE;
    }
    if (rc == PS_OK && json_object_object_get_ex(st, "d", &v)) {
        chat->has_tombstone = true;
        if (!stamp_from_json(v, &chat->tombstone))
            rc = PS_ERR_STORE;
        if (rc == PS_OK && json_object_object_get_ex(st, "D", &v) && lamport_pair(v))
            rc = ps__lamport_set(&chat->deleted_lamport,
                                 json_object_get_int64(json_object_array_get_idx(v, 0)),
                                 json_object_get_string(json_object_array_get_idx(v, 1)));
    }
    if (rc == PS_OK && json_object_object_get_ex(st, "L", &v) && lamport_pair(v))
        rc = ps__lamport_set(&chat->lamport, json_object_get_int64(json_object_array_get_idx(v, 0)),
                             json_object_get_string(json_object_array_get_idx(v, 1)));
    ps__stamp_clear(&stamp);
    if (rc != PS_OK) {
        ps__chat_free(chat);
        return ps_error_set(err, rc, -1, "", "corrupt chat state");
    }
    ps__chat_normalize(chat);
    ps__chat_clear_dirty(chat);
    *out = chat;
    return PS_OK;
}
