/* Import and export of one user's chats on a store; see transfer.h. */
#include "server/transfer.h"
#include "core/chat_codec.h"
#include "core/json_parse.h"
#include "core/merge.h"

#include <stdlib.h>
#include <string.h>

/* Keys of Polyglot's stores that say where a copy was, not what it is. */
static const char *const BOOKKEEPING[] = {"updatedAtLamport", "serverMergedAtLamport",
                                          "lastMutationLamport", "is_deleted", "deletedAtLamport"};

static bool is_tombstone_entry(json_object *entry)
{
    json_object *v;
    return json_object_object_get_ex(entry, "is_deleted", &v) &&
           json_object_is_type(v, json_type_boolean) && json_object_get_boolean(v);
}

/* Appends v (a reference taken over; NULL allowed) to arr; on failure v
 * is released and the import ends with out of memory, not a chat short. */
static ps_code append(json_object *arr, json_object *v, ps_error *err)
{
    if (json_object_array_add(arr, v) == 0)
        return PS_OK;
    json_object_put(v);
    return ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
}

/* Collects the file's entries (borrowed references) into `list`. */
static ps_code list_entries(json_object *doc, json_object *list, ps_import_report *r,
                            int64_t *file_clock, ps_error *err)
{
    json_object *chats;
    if (json_object_is_type(doc, json_type_array)) {
        r->format = "a JSON array of chats";
        chats = doc;
    } else if (json_object_is_type(doc, json_type_object) &&
               json_object_object_get_ex(doc, "chats", &chats)) {
        json_object *clock;
        if (json_object_object_get_ex(doc, "lamportClock", &clock) && ps__valid_counter(clock))
            *file_clock = json_object_get_int64(clock);
        if (json_object_is_type(chats, json_type_object)) {
            r->format = "Polyglot's chatStore.json";
            json_object_object_foreach(chats, key, val)
            {
                (void)key;
                if (append(list, json_object_get(val), err) != PS_OK)
                    return err->code;
            }
            return PS_OK;
        }
        if (!json_object_is_type(chats, json_type_array))
            return ps_error_set(err, PS_ERR_INVALID, -1, "chats",
                                "chats must be an object (chatStore.json) or an array");
        r->format = "{chats: [...]}";
    } else if (json_object_is_type(doc, json_type_object) &&
               json_object_object_get_ex(doc, "id", NULL)) {
        r->format = "one chat";
        return append(list, json_object_get(doc), err);
    } else {
        return ps_error_set(err, PS_ERR_INVALID, -1, "",
                            "not a chat file: expected a JSON array of chats, chatStore.json "
                            "({chats: {...}, lamportClock}) or one chat object");
    }
    size_t n = json_object_array_length(chats);
    for (size_t i = 0; i < n; i++)
        if (append(list, json_object_get(json_object_array_get_idx(chats, i)), err) != PS_OK)
            return err->code;
    return PS_OK;
}

/* A tombstone's clock: [n, device] or {lamport, deviceId}. */
static bool tombstone_clock(json_object *entry, const ps_limits *lim, ps_lamport *out)
{
    json_object *v, *n = NULL, *dev = NULL;
    if (!json_object_object_get_ex(entry, "deletedAtLamport", &v))
        return false;
    if (ps__valid_lamport(v, lim)) {
        n = json_object_array_get_idx(v, 0);
        dev = json_object_array_get_idx(v, 1);
    } else if (!json_object_object_get_ex(v, "lamport", &n) ||
               !json_object_object_get_ex(v, "deviceId", &dev) || !ps__valid_counter(n) ||
               !ps__valid_id(dev, lim)) {
        return false;
    }
    out->counter = json_object_get_int64(n);
    out->id = (char *)json_object_get_string(dev);
    return true;
}

/* Raises *clock to the counter of entry[key] ([n, id] or {lamport}). */
static void observe(json_object *entry, const char *key, int64_t *clock)
{
    json_object *v, *n = NULL;
    if (!json_object_object_get_ex(entry, key, &v))
        return;
    if (json_object_is_type(v, json_type_array))
        n = json_object_array_get_idx(v, 0);
    else
        json_object_object_get_ex(v, "lamport", &n);
    if (ps__valid_counter(n) && json_object_get_int64(n) > *clock)
        *clock = json_object_get_int64(n);
}

/* The entry as chat content: a copy without the bookkeeping keys. */
static json_object *content_of(json_object *entry)
{
    json_object *copy = NULL;
    if (json_object_deep_copy(entry, &copy, NULL) != 0)
        return NULL;
    for (size_t k = 0; k < sizeof BOOKKEEPING / sizeof *BOOKKEEPING; k++)
        json_object_object_del(copy, BOOKKEEPING[k]);
    return copy;
}

/* Checks every entry; `contents` gets each chat's content (NULL for a
 * tombstone), index for index. */
static ps_code check_entries(const ps_sync_ctx *ctx, json_object *list, json_object *contents,
                             ps_import_report *r, ps_error *err)
{
    size_t n = json_object_array_length(list);
    if (n > ctx->limits->max_chats)
        return ps_error_set(err, PS_ERR_TOO_LARGE, -1, "", "%zu entries; the limit is %zu", n,
                            ctx->limits->max_chats);
    for (size_t i = 0; i < n; i++) {
        json_object *entry = json_object_array_get_idx(list, i), *v;
        if (json_object_is_type(entry, json_type_object) && is_tombstone_entry(entry)) {
            ps_lamport clock;
            if (!json_object_object_get_ex(entry, "id", &v) || !ps__valid_id(v, ctx->limits))
                return ps_error_set(err, PS_ERR_INVALID, (long)i, "id",
                                    "entry %zu: id must be a string of 1 to %zu bytes", i,
                                    ctx->limits->max_id_bytes);
            if (!tombstone_clock(entry, ctx->limits, &clock))
                return ps_error_set(err, PS_ERR_INVALID, (long)i, "deletedAtLamport",
                                    "entry %zu (%s): a deleted chat needs deletedAtLamport "
                                    "[counter, deviceId] with a counter from 0 to 2^53 - 1",
                                    i, json_object_get_string(v));
            r->tombstones++;
            if (append(contents, NULL, err) != PS_OK)
                return err->code;
            continue;
        }
        json_object *content = json_object_is_type(entry, json_type_object)
                                   ? content_of(entry)
                                   : json_object_get(entry);
        if (!content && json_object_is_type(entry, json_type_object))
            return ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
        if (append(contents, content, err) != PS_OK)
            return err->code;
        ps_code rc = ps__validate_chat(content, (long)i, ctx->limits, err);
        if (rc != PS_OK)
            return rc;
        r->chats++;
    }
    return PS_OK;
}

static ps_code import_chat(const ps_sync_ctx *ctx, ps_user *user, json_object *content,
                           ps_import_report *r, ps_error *err)
{
    ps_ingest in = {
        .device = PS_IMPORT_DEVICE, .now_ms = ctx->now_ms, .max_skew_ms = ctx->max_skew_ms};
    ps_chat *incoming = NULL, *stored = NULL;
    ps_code rc = ps__chat_from_legacy(content, &in, &incoming);
    if (rc != PS_OK)
        return ps_error_set(err, rc, -1, "", "out of memory");
    rc = ps__load_or_new(ctx, user, incoming->id, true, &stored, err);
    bool changed = false;
    if (rc == PS_OK && (rc = ps__chat_merge(stored, incoming, &changed)) != PS_OK)
        rc = ps_error_set(err, rc, -1, "", "out of memory");
    if (rc == PS_OK) {
        bool was_live = stored->stored && stored->stored_live;
        if (!changed)
            r->unchanged++;
        else if (!was_live && ps__chat_is_live(stored))
            r->created++;
        else if (was_live)
            r->updated++;
        else
            r->unchanged++; /* stays deleted: its deletion is newer */
        /* a fresh tick, so app devices holding an older copy take it */
        if (changed)
            rc = ps__save_chat(ctx, user, stored, PS_IMPORT_DEVICE, true, PS_TICK, err);
    }
    ps__chat_free(incoming);
    ps__chat_free(stored);
    return rc;
}

static ps_code import_tombstone(const ps_sync_ctx *ctx, ps_user *user, json_object *entry,
                                ps_import_report *r, ps_error *err)
{
    ps_lamport shown;
    tombstone_clock(entry, ctx->limits, &shown); /* checked already */
    const char *id = json_object_get_string(json_object_object_get(entry, "id"));
    ps_chat *chat = NULL;
    ps_code rc = ps__load_or_new(ctx, user, id, false, &chat, err);
    if (rc != PS_OK)
        return rc;
    bool was_live = ps__chat_is_live(chat), changed = false;
    /* The tuple is the stamp; its time, from which the tombstone's retention
     * runs, is now. A deletion at this very tuple is the same deletion, so
     * a second import leaves it (and its time) alone. */
    ps_stamp stamp = {.ts = ctx->now_ms, .lamport = shown.counter, .device = shown.id};
    if (chat->has_tombstone && chat->tombstone.lamport == shown.counter &&
        strcmp(chat->tombstone.device ? chat->tombstone.device : "", shown.id) == 0)
        rc = PS_OK;
    else if ((rc = ps__chat_delete(chat, &stamp, &shown, &changed)) != PS_OK)
        rc = ps_error_set(err, rc, -1, "", "out of memory");
    else if (changed)
        rc = ps__save_chat(ctx, user, chat, PS_IMPORT_DEVICE, false, PS_TICK_IF_NONE, err);
    if (rc == PS_OK && changed && was_live && !ps__chat_is_live(chat))
        r->deleted++;
    else if (rc == PS_OK && changed)
        r->tombstones_kept++;
    ps__chat_free(chat);
    return rc;
}

ps_code ps_import_doc(const ps_sync_ctx *ctx, json_object *doc, bool dry_run,
                      ps_import_report *report, ps_error *err)
{
    *report = (ps_import_report){0};
    int64_t file_clock = 0;
    json_object *list = json_object_new_array(), *contents = json_object_new_array();
    ps_code rc =
        list && contents ? PS_OK : ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
    if (rc == PS_OK)
        rc = list_entries(doc, list, report, &file_clock, err);
    if (rc == PS_OK)
        rc = check_entries(ctx, list, contents, report, err);
    if (rc != PS_OK)
        goto out;
    if ((rc = ps_store_begin(ctx->store, true, err)) != PS_OK)
        goto out;
    ps_user user;
    if ((rc = ctx->store->ops->user_load(ctx->store, ctx->user, &user, err)) != PS_OK)
        goto rollback;
    const ps_user before = user;
    /* Fresh ticks above every tuple of the file, as a sync's are above its
     * request's: devices holding these chats then take the store's copy. */
    if (file_clock > user.clock)
        user.clock = file_clock;
    size_t n = json_object_array_length(list);
    for (size_t i = 0; i < n; i++)
        for (size_t k = 0; k < sizeof BOOKKEEPING / sizeof *BOOKKEEPING; k++)
            observe(json_object_array_get_idx(list, i), BOOKKEEPING[k], &user.clock);
    for (size_t i = 0; i < n && rc == PS_OK; i++) {
        json_object *content = json_object_array_get_idx(contents, i);
        rc = content
                 ? import_chat(ctx, &user, content, report, err)
                 : import_tombstone(ctx, &user, json_object_array_get_idx(list, i), report, err);
    }
    if (rc != PS_OK)
        goto rollback;
    if (dry_run) {
        ps_store_rollback(ctx->store);
        goto out;
    }
    if (memcmp(&before, &user, sizeof user) != 0 &&
        (rc = ctx->store->ops->user_save(ctx->store, &user, err)) != PS_OK)
        goto rollback;
    rc = ps__commit(ctx, before.seq, &user, err);
    goto out;
rollback:
    ps_store_rollback(ctx->store);
out:
    json_object_put(list);
    json_object_put(contents);
    return rc;
}

typedef struct export_ctx {
    const ps_sync_ctx *ctx;
    int64_t user_id;
    bool tombstones;
    FILE *out;
    ps_dynbuf item; /* one chat at a time: a whole history is never in memory */
    size_t chats, deleted;
    ps_code rc;
    ps_error *err;
} export_ctx;

static int export_row(void *vctx, const ps_chat_row *row)
{
    export_ctx *x = vctx;
    if (!row->live && !x->tombstones)
        return 0;
    x->item.len = 0;
    ps_code rc = ps__dynbuf_adds(&x->item, x->chats + x->deleted ? ",\n" : "\n");
    if (rc == PS_OK && row->live) {
        rc = ps__append_doc(x->ctx, x->user_id, row, &x->item, x->err);
        x->chats++;
    } else if (rc == PS_OK) {
        rc = ps__dynbuf_adds(&x->item, "{\"id\":");
        if (rc == PS_OK)
            rc = ps__dynbuf_add_json_string(&x->item, row->id);
        if (rc == PS_OK)
            rc = ps__dynbuf_addf(&x->item, ",\"is_deleted\":true,\"deletedAtLamport\":[%lld,",
                                (long long)row->deleted_counter);
        if (rc == PS_OK)
            rc = ps__dynbuf_add_json_string(&x->item, row->deleted_device);
        if (rc == PS_OK)
            rc = ps__dynbuf_adds(&x->item, "]}");
        x->deleted++;
    }
    if (rc == PS_OK && fwrite(x->item.data, 1, x->item.len, x->out) != x->item.len)
        rc = ps_error_set(x->err, PS_ERR_IO, -1, "", "cannot write the export");
    else if (rc == PS_ERR_NOMEM || rc == PS_ERR_TOO_LARGE)
        rc = ps_error_set(x->err, rc, -1, "", "out of memory");
    x->rc = rc;
    return rc != PS_OK;
}

ps_code ps_export_user(const ps_sync_ctx *ctx, bool tombstones, FILE *out, size_t *chats,
                       size_t *deleted, ps_error *err)
{
    export_ctx x = {.ctx = ctx, .tombstones = tombstones, .out = out, .err = err};
    ps__dynbuf_init(&x.item, SIZE_MAX);
    ps_user user;
    bool found = false;
    ps_code rc = ps_store_begin(ctx->store, false, err);
    if (rc != PS_OK)
        return rc;
    rc = ctx->store->ops->user_find(ctx->store, ctx->user, &user, &found, err);
    if (rc == PS_OK && fputs("[", out) == EOF)
        rc = ps_error_set(err, PS_ERR_IO, -1, "", "cannot write the export");
    if (rc == PS_OK && found) {
        x.user_id = user.id;
        rc = ctx->store->ops->chat_each(ctx->store, user.id, export_row, &x, err);
        if (rc == PS_OK)
            rc = x.rc;
    }
    if (rc == PS_OK && fputs(x.chats + x.deleted ? "\n]\n" : "]\n", out) == EOF)
        rc = ps_error_set(err, PS_ERR_IO, -1, "", "cannot write the export");
    ps__dynbuf_free(&x.item);
    if (rc == PS_OK)
        rc = ps_store_commit(ctx->store, err);
    else
        ps_store_rollback(ctx->store);
    *chats = x.chats;
    *deleted = x.deleted;
    return rc;
}
