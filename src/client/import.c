/*
 * import: a Polyglot export or a chatStore.json into the local store.
 *
 * Each chat is checked with the server's own validator and becomes one v2
 * change stamped with the chat's own time and Lamport counter 0. Writes
 * without a counter are older than every write with one (docs/merge.md), so
 * an imported backup fills in chats and messages a server lacks and never
 * overrides an edit a device made since; among imports the newer file wins.
 */
#include "client/client_internal.h"
#include "core/json_build.h"
#include "core/json_parse.h"
#include "core/timestamp.h"
#include "core/validate.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_REPORTED 1000 /* skipped chats named one by one; the rest counted */

static void add_reason(ps_import_report *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void add_reason(ps_import_report *r, const char *fmt, ...)
{
    r->skipped_count++;
    if (r->reason_count == MAX_REPORTED) {
        /* the last slot says how many more */
        char **last = &r->reasons[MAX_REPORTED - 1];
        free(*last);
        if (asprintf(last, "... and %zu more", r->skipped_count - MAX_REPORTED + 1) < 0)
            *last = NULL;
        return;
    }
    char **grown = realloc(r->reasons, (r->reason_count + 1) * sizeof *grown);
    if (!grown)
        return;
    r->reasons = grown;
    char *text = NULL;
    va_list ap;
    va_start(ap, fmt);
    if (vasprintf(&text, fmt, ap) < 0)
        text = NULL;
    va_end(ap);
    if (text)
        r->reasons[r->reason_count++] = text;
}

void ps_import_report_free(ps_import_report *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->reason_count; i++)
        free(r->reasons[i]);
    free(r->reasons);
    free(r);
}

static bool is_private(json_object *msg)
{
    json_object *v;
    return json_object_object_get_ex(msg, "isPrivate", &v) &&
           json_object_is_type(v, json_type_boolean) && json_object_get_boolean(v);
}

/* The chat's own time: lastModified, else updatedAt, else createdAt, else 0. */
static int64_t chat_time(json_object *chat)
{
    static const char *const keys[3] = {"lastModified", "updatedAt", "createdAt"};
    for (int k = 0; k < 3; k++) {
        json_object *v;
        int64_t ms;
        if (json_object_object_get_ex(chat, keys[k], &v) && ps__time_from_json(v, &ms))
            return ms;
    }
    return 0;
}

/* One validated legacy chat as a v2 change; *messages_out counts them. */
static json_object *chat_to_change(json_object *chat, size_t *messages_out, size_t *private_out)
{
    ps_code built = PS_OK;
    json_object *change = json_object_new_object();
    json_object *fields = json_object_new_object();
    json_object *msgs = json_object_new_array();
    ps__json_set(&built, change, "chatId", json_object_get(json_object_object_get(chat, "id")));
    ps__json_set(&built, change, "clock", json_object_new_int64(0));
    ps__json_set(&built, change, "at", json_object_new_int64(chat_time(chat)));
    json_object_object_foreach(chat, key, val)
    {
        if (strcmp(key, "id") == 0 || strcmp(key, "updatedAtLamport") == 0)
            continue;
        if (strcmp(key, "messages") == 0) {
            size_t n = json_object_array_length(val);
            for (size_t i = 0; i < n; i++) {
                json_object *m = json_object_array_get_idx(val, i);
                if (is_private(m)) {
                    ++*private_out;
                    continue;
                }
                ps__json_push(&built, msgs, json_object_get(m));
                ++*messages_out;
            }
            continue;
        }
        ps__json_set_opt(&built, fields, key, val != NULL, json_object_get(val));
    }
    ps__json_set(&built, change, "fields", fields);
    ps__json_set(&built, change, "messages", msgs);
    if (built != PS_OK) {
        json_object_put(change);
        return NULL;
    }
    return change;
}

/* The list of chats in any of the accepted shapes; `keys` set for a map. */
static bool find_chats(json_object *root, json_object **list, json_object **map)
{
    *list = *map = NULL;
    if (json_object_is_type(root, json_type_array)) {
        *list = root;
        return true;
    }
    json_object *v;
    if (json_object_is_type(root, json_type_object) &&
        json_object_object_get_ex(root, "chats", &v)) {
        if (json_object_is_type(v, json_type_array))
            *list = v;
        else if (json_object_is_type(v, json_type_object))
            *map = v;
        return *list || *map;
    }
    return false;
}

static ps_code import_one(ps_client *c, json_object *chat, const char *where, ps_import_report *r,
                          ps_error *err)
{
    ps_limits lim = ps__limits_default();
    ps_error verr;
    ps_error_clear(&verr);
    if (ps__validate_chat(chat, (long)0, &lim, &verr) != PS_OK) {
        /* the validator says "chats[0].x"; name the real place instead */
        const char *msg = verr.message;
        if (strncmp(msg, "chats[0]", 8) == 0)
            msg += 8;
        json_object *idv =
            json_object_is_type(chat, json_type_object) ? json_object_object_get(chat, "id") : NULL;
        if (json_object_is_type(idv, json_type_string))
            add_reason(r, "%s (id %s)%s%s", where, json_object_get_string(idv),
                       *msg == '.' ? "" : ": ", msg);
        else
            add_reason(r, "%s%s%s", where, *msg == '.' ? "" : ": ", msg);
        return PS_OK;
    }
    size_t nmsg = 0, npriv = 0;
    json_object *change = chat_to_change(chat, &nmsg, &npriv);
    if (!change)
        return ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
    ps_code rc = ps__validate_change(change, c->device, &verr);
    if (rc == PS_ERR_NOMEM) { /* no verdict on the chat: not a reason to skip it */
        json_object_put(change);
        return ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
    }
    if (rc != PS_OK) {
        add_reason(r, "%s (id %s): %s", where,
                   json_object_get_string(json_object_object_get(chat, "id")), verr.message);
        json_object_put(change);
        return PS_OK;
    }
    rc = ps__apply_change(c, change, c->device, NULL, err);
    if (rc == PS_OK)
        rc = ps__lstore_change_add(c->store,
                                   json_object_get_string(json_object_object_get(chat, "id")),
                                   PS_CHANGE_LOCAL, 0, change, err);
    json_object_put(change);
    if (rc == PS_OK) {
        r->chats_imported++;
        r->messages_imported += nmsg;
        r->private_dropped += npriv;
    }
    return rc;
}

ps_code ps_client_import(ps_client *c, const char *json, size_t len, ps_import_report **report_out,
                         ps_error *err)
{
    *report_out = NULL;
    ps_import_report *r = calloc(1, sizeof *r);
    if (!r)
        return ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
    *report_out = r;
    json_object *root = NULL, *list, *map;
    ps__work(c, "parsing", 0, 1, true);
    ps_code rc = ps__json_parse(json, len, PS_JSON_MAX_DEPTH, &root, err);
    if (rc != PS_OK)
        return rc;
    if (!find_chats(root, &list, &map)) {
        json_object_put(root);
        return ps_error_set(err, PS_ERR_INVALID, -1, "",
                            "expected an array of chats, or an object {\"chats\": [...]} or "
                            "{\"chats\": {id: chat, ...}}");
    }
    if ((rc = ps__lstore_begin(c->store, err)) != PS_OK) {
        json_object_put(root);
        return rc;
    }
    char where[300];
    if (list) {
        size_t n = json_object_array_length(list);
        for (size_t i = 0; i < n && rc == PS_OK; i++) {
            ps__work(c, "importing", i, n, i == 0);
            snprintf(where, sizeof where, "chats[%zu]", i);
            rc = import_one(c, json_object_array_get_idx(list, i), where, r, err);
        }
    } else {
        size_t n = (size_t)json_object_object_length(map), i = 0;
        json_object_object_foreach(map, key, val)
        {
            if (rc != PS_OK)
                break;
            ps__work(c, "importing", i, n, i == 0);
            i++;
            snprintf(where, sizeof where, "chats[\"%.256s\"]", key);
            /* a map entry without its own id takes the key */
            if (json_object_is_type(val, json_type_object) &&
                !json_object_object_get_ex(val, "id", NULL)) {
                ps__json_set(&rc, val, "id", json_object_new_string(key));
                if (rc != PS_OK) {
                    rc = ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
                    break;
                }
            }
            rc = import_one(c, val, where, r, err);
        }
    }
    if (rc == PS_OK) {
        ps__work(c, "saving", 0, 1, true);
        rc = ps__lstore_commit(c->store, err);
    } else {
        ps__lstore_rollback(c->store);
    }
    if (rc != PS_OK) {
        r->chats_imported = r->messages_imported = 0;
    }
    json_object_put(root);
    return rc;
}
