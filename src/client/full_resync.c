/*
 * The full resync, after a 410 (cursor expired), a 400 invalid_cursor, or a
 * cursor that belongs to another server: the log is replaced by a snapshot
 * of every local chat, each register sent with its own stamp when this
 * device wrote it, and with counter 0 (older than any write with one) when
 * it came from the server, so the snapshot restores what a server lost
 * without overriding anything newer. The cursor is dropped, so the next
 * request is a null-cursor pull, which names every live local chat
 * (v2_request.c) and so hears which were deleted. See docs/client.md.
 *
 * A device the server lists as expired gets the other resync: its
 * tombstones may have been collected, so re-sending what it only received
 * would bring deleted chats back. It keeps its pending changes, forgets
 * the rest and pulls everything again (ps__start_expiry_resync).
 */
#include "client/sync_run.h"
#include "core/json_build.h"
#include "core/json_parse.h"

#include <stdio.h>
#include <string.h>

/* The change of `chat` for registers stamped `s` (grouped by key); NULL,
 * with *built set to PS_ERR_NOMEM, when an allocation failed (json_build.h:
 * a NULL container then makes every later call add nothing). */
static json_object *group_for(ps_code *built, json_object *groups, const char *chat_id,
                              const ps_stamp *s, const char *device)
{
    bool own = s->device && strcmp(s->device, device) == 0;
    int64_t clock = own ? s->lamport : 0;
    char key[64];
    snprintf(key, sizeof key, "%lld/%lld", (long long)clock, (long long)s->ts);
    json_object *g;
    if (json_object_object_get_ex(groups, key, &g))
        return g;
    g = json_object_new_object();
    ps__json_set(built, g, "chatId", json_object_new_string(chat_id));
    ps__json_set(built, g, "clock", json_object_new_int64(clock));
    ps__json_set(built, g, "at", json_object_new_int64(s->ts));
    ps__json_set(built, groups, key, g);
    return *built == PS_OK ? g : NULL;
}

static json_object *member(ps_code *built, json_object *g, const char *key, bool array)
{
    json_object *v;
    if (!g)
        return NULL;
    if (json_object_object_get_ex(g, key, &v))
        return v;
    v = array ? json_object_new_array() : json_object_new_object();
    ps__json_set(built, g, key, v);
    return *built == PS_OK ? v : NULL;
}

static ps_code snapshot_chat(ps_client *c, const ps_chat *chat, ps_error *err)
{
    json_object *groups = json_object_new_object();
    if (!groups)
        return ps__sync_nomem(err);
    ps_code rc = PS_OK, built = PS_OK;
    json_object *g;
    if (!ps__chat_is_live(chat)) {
        /* a deleted chat: only its deletion, never its old content */
        if (chat->has_tombstone) {
            g = group_for(&built, groups, chat->id, &chat->tombstone, c->device);
            ps__json_set(&built, g, "deleteChat", json_object_new_boolean(1));
        }
    } else {
        if (chat->has_touched)
            group_for(&built, groups, chat->id, &chat->touched, c->device);
        for (size_t i = 0; i < chat->nfields && built == PS_OK; i++) {
            const ps_field *f = &chat->fields[i];
            g = group_for(&built, groups, chat->id, &f->stamp, c->device);
            ps__json_set_opt(&built, member(&built, g, "fields", false), f->name, f->value != NULL,
                             json_object_get(f->value));
        }
        for (size_t i = 0; i < chat->nmessages && built == PS_OK; i++) {
            const ps_message *m = &chat->messages[i];
            bool own = m->stamp.device && strcmp(m->stamp.device, c->device) == 0;
            if (!m->value && !own)
                continue; /* someone else's deletion: theirs to resend */
            g = group_for(&built, groups, chat->id, &m->stamp, c->device);
            if (m->value)
                ps__json_push(&built, member(&built, g, "messages", true),
                              json_object_get(m->value));
            else
                ps__json_push(&built, member(&built, g, "deleteMessages", true),
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
                    ps__json_set(&built, member(&built, first, "fields", false), keys[k],
                                 json_object_get(tf[k]->value));
            break;
        }
    }
    if (built != PS_OK)
        rc = ps__sync_nomem(err);
    json_object_object_foreach(groups, key, change)
    {
        (void)key;
        if (rc != PS_OK)
            break;
        if (!json_object_object_length(change)) {
            rc = ps__sync_nomem(err);
            break;
        }
        rc = ps__lstore_change_add(c->store, chat->id, PS_CHANGE_SNAPSHOT,
                                   json_object_get_int64(json_object_object_get(change, "clock")),
                                   change, err);
    }
    json_object_put(groups);
    return rc;
}

ps_code ps__start_full_resync(sync_run *r, ps_error *err)
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
        ps__chat_free(chat);
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

ps_code ps__start_expiry_resync(sync_run *r, ps_error *err)
{
    ps_client *c = r->c;
    ps_code rc = ps__lstore_begin(c->store, err);
    if (rc != PS_OK)
        return rc;
    if ((rc = ps__lstore_forget_synced(c->store, err)) == PS_OK &&
        (rc = ps__lstore_meta_set(c->store, "cursor", NULL, err)) == PS_OK &&
        (rc = ps__lstore_meta_set(c->store, "verify_cursor", NULL, err)) == PS_OK)
        return ps__lstore_commit(c->store, err);
    ps__lstore_rollback(c->store);
    return rc;
}
