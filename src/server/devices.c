/* The device registry's v2 side; see devices.h. */
#include "server/devices.h"
#include "server/cursor.h"
#include "core/hash.h"
#include "core/json_build.h"
#include "core/timestamp.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#define REWRITE_AFTER_MS 60000
#define RECENT_SLOTS 1024

/* What was last written per (user, device), by hash: a collision only
 * costs a write. */
typedef struct recent {
    uint64_t key;
    int64_t acked_seq, written_ms;
} recent;

static recent recent_writes[RECENT_SLOTS];
static pthread_mutex_t recent_lock = PTHREAD_MUTEX_INITIALIZER;

static ps_code cursor_base(json_object *v, const char *field, int64_t *base, ps_error *err)
{
    int64_t b, p;
    if (!json_object_is_type(v, json_type_string) ||
        !ps__cursor_parse(json_object_get_string(v), &b, &p))
        return ps_error_set(err, PS_ERR_INVALID, -1, field,
                            "%s must be the cursor of an answer this server gave, or null", field);
    /* BASE, not POS: mid-pull, a chat that changed again is still owed to
     * the device with its older parts (sync_v2.c's cursor) */
    *base = b;
    return PS_OK;
}

ps_code ps_devices_v2_ack(json_object *req, int64_t *acked_seq, ps_error *err)
{
    json_object *v = NULL;
    if (json_object_object_get_ex(req, "ack", &v) && v)
        return cursor_base(v, "ack", acked_seq, err);
    if (json_object_object_get_ex(req, "ack", &v)) /* "ack": null */
        return *acked_seq = -1, PS_OK;
    v = json_object_object_get(req, "cursor");
    if (!v) {
        *acked_seq = 0;
        return PS_OK;
    }
    /* a malformed cursor is the sync's to refuse (400 invalid_cursor) */
    return cursor_base(v, "cursor", acked_seq, err) == PS_OK ? PS_OK : (*acked_seq = -1, PS_OK);
}

ps_code ps_devices_note_v2(ps_store *store, const char *user, json_object *req,
                           const char *user_agent, int64_t acked_seq, int64_t now_ms,
                           int64_t retention_ms, ps_error *err)
{
    const char *device = json_object_get_string(json_object_object_get(req, "deviceId"));
    json_object *c = json_object_object_get(req, "client");
    const char *client =
        json_object_is_type(c, json_type_string) && json_object_get_string_len(c) <= 256
            ? json_object_get_string(c)
            : user_agent;
    size_t ulen = strlen(user), dlen = strlen(device);
    char keybuf[2 * 257 + 1];
    if (ulen + dlen + 1 > sizeof keybuf - 1)
        return PS_OK;
    memcpy(keybuf, user, ulen + 1);
    memcpy(keybuf + ulen + 1, device, dlen);
    uint64_t key = ps__hash_bytes(keybuf, ulen + 1 + dlen) | 1; /* 0: an empty slot */
    recent *slot = &recent_writes[key % RECENT_SLOTS];
    pthread_mutex_lock(&recent_lock);
    bool known = slot->key == key && now_ms - slot->written_ms < REWRITE_AFTER_MS;
    bool same = known && slot->acked_seq == acked_seq;
    pthread_mutex_unlock(&recent_lock);
    if (same)
        return PS_OK;
    ps_code rc;
    if (known) {
        /* The ack moved. It matters now only if tombstones wait on it;
         * otherwise it is written with the row's next minutely refresh, so
         * a device that only pulls causes no write (a no-op sync stays
         * read-only: docs/storage.md). */
        int64_t tombstones = 0;
        rc = ps_store_begin(store, false, err);
        if (rc == PS_OK) {
            rc = store->ops->user_tombstones(store, user, &tombstones, err);
            if (rc == PS_OK)
                rc = ps_store_commit(store, err);
            else
                ps_store_rollback(store);
        }
        if (rc == PS_OK && tombstones == 0) {
            /* remembered as seen, not as written (written_ms stays): the
             * next polls with this ack are `same` and cost nothing, where
             * each used to count the user's tombstones again until the
             * minutely refresh (10 ms a poll at 50,000 messages) */
            pthread_mutex_lock(&recent_lock);
            if (slot->key == key)
                slot->acked_seq = acked_seq;
            pthread_mutex_unlock(&recent_lock);
            return PS_OK;
        }
    }
    rc = ps_store_begin(store, true, err);
    if (rc == PS_OK) {
        rc = store->ops->device_seen(store, user, device, client, "v2", acked_seq, now_ms, err);
        int64_t collected = 0;
        if (rc == PS_OK && acked_seq > 0) /* docs/merge.md, tombstone collection */
            rc = store->ops->purge_acknowledged(store, user, now_ms - retention_ms, &collected,
                                                err);
        if (rc == PS_OK)
            rc = ps_store_commit(store, err);
        else
            ps_store_rollback(store);
    }
    if (rc != PS_OK)
        return rc;
    pthread_mutex_lock(&recent_lock);
    *slot = (recent){.key = key, .acked_seq = acked_seq, .written_ms = now_ms};
    pthread_mutex_unlock(&recent_lock);
    return PS_OK;
}

json_object *ps_device_row_json(const ps_device_row *d, int64_t now_ms, int64_t retention_ms)
{
    char first[32], last[32];
    ps__time_format_iso(d->first_seen_ms, first);
    ps__time_format_iso(d->last_seen_ms, last);
    json_object *row = json_object_new_object();
    ps_code rc = PS_OK;
    ps__json_set(&rc, row, "id", json_object_new_string(d->id));
    ps__json_set(&rc, row, "protocol", json_object_new_string(d->protocol));
    ps__json_set(&rc, row, "firstSeen", json_object_new_string(first));
    ps__json_set(&rc, row, "lastSeen", json_object_new_string(last));
    ps__json_set(&rc, row, "client", json_object_new_string(d->client));
    ps__json_set(&rc, row, "ackedSeq", json_object_new_int64(d->acked_seq));
    ps__json_set(&rc, row, "expired",
                 json_object_new_boolean(now_ms - d->last_seen_ms > retention_ms));
    if (rc != PS_OK) {
        json_object_put(row);
        return NULL;
    }
    return row;
}
