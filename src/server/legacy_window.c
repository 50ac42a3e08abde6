/* The next chats a legacy sync merges, made ready on both cores; see
 * legacy_window.h. */
#include "server/legacy_window.h"
#include "core/json_parse.h"
#include "core/share.h"

#include <string.h>

/* Below this many bytes of chats the request thread makes a window alone
 * (as sync_legacy.c's preparation decides: the helper takes ~12 µs to
 * start, json-c parses ~0.2 MB a millisecond). */
#define SHARE_MIN_BYTES ((size_t)256 << 10)

/* Below this many message values a window's are packed in the save as
 * they come (sync_v2.c's rule: a read of the store to move microseconds). */
#define PACK_AHEAD_MIN 64

void ps_legacy_window_init(ps_legacy_window *w)
{
    memset(w, 0, sizeof *w);
}

void ps_legacy_window_clear(ps_legacy_window *w)
{
    for (size_t k = 0; k < w->to - w->from; k++) {
        json_object_put(w->tree[k]);
        ps__chat_free(w->chat[k]);
    }
    ps_values_ahead_free(&w->ahead);
    size_t to = w->to;
    ps_legacy_window_init(w);
    w->from = w->to = to;
}

/* Parses and builds chat from + k, as `lane` (the source's reader). */
static ps_code make_one(ps_legacy_window *w, unsigned lane, size_t k, ps_error *err)
{
    size_t i = w->from + k;
    if (!w->wanted(w->wanted_cls, i))
        return PS_OK;
    const char *text;
    size_t len;
    ps_code rc = ps_chat_source_bytes_as(w->src, lane, i, &text, &len, err);
    if (rc == PS_OK)
        rc = ps__json_parse_trusted(text, len, &w->tree[k], err);
    if (rc == PS_OK && ps__chat_from_legacy(w->tree[k], w->in, &w->chat[k]) != PS_OK)
        rc = ps_error_set(err, PS_ERR_NOMEM, (long)i, "", "out of memory");
    /* each message's text, worked out once and kept with it (json_parse.h):
     * the merge hashes it, the store measures and packs it, on one thread
     * (5 % of a first upload's request thread, docs/performance.md,
     * "window"); out of memory it is worked out there instead */
    for (size_t m = 0; rc == PS_OK && m < w->chat[k]->nmessages; m++)
        if (w->chat[k]->messages[m].value)
            (void)ps__json_text_kept(w->chat[k]->messages[m].value, NULL);
    return rc;
}

/* One lane: the next chat nobody took, until none is left or a lane
 * failed (the request fails then; which chat does not matter). */
static void make_lane(void *cls, unsigned lane)
{
    ps_legacy_window *w = cls;
    size_t n = w->to - w->from;
    for (;;) {
        size_t k = atomic_fetch_add(&w->next, 1);
        if (k >= n)
            return;
        ps_code rc = make_one(w, lane, k, &w->lane[lane].err);
        if (rc != PS_OK) {
            w->lane[lane].rc = rc;
            w->lane[lane].at = k;
            atomic_store(&w->next, n); /* the rest is moot */
            return;
        }
    }
}

/* The window's end from `from`: LEGACY_WINDOW_CHATS chats, fewer when
 * their text passes LEGACY_WINDOW_BYTES; *bytes = what its wanted chats
 * weigh (0 when the source cannot tell). */
static size_t window_end(const ps_chat_source *src, size_t from,
                         bool (*wanted)(void *cls, size_t i), void *wanted_cls, size_t *bytes)
{
    size_t to = from, weight = 0;
    *bytes = 0;
    while (to < src->count && to - from < LEGACY_WINDOW_CHATS &&
           (to == from || weight < LEGACY_WINDOW_BYTES)) {
        size_t len = src->length ? src->length(src->cls, to) : 0;
        weight += len;
        if (wanted(wanted_cls, to))
            *bytes += len;
        to++;
    }
    return to;
}

/* The values and packs of the window's chats made ahead (store.h,
 * values_pack_ahead), in the open write transaction. */
static ps_code pack_ahead(ps_legacy_window *w, ps_store *store, int64_t user, const char *device,
                          ps_error *err)
{
    ps_chat *list[LEGACY_WINDOW_CHATS];
    size_t n = 0, values = 0;
    for (size_t k = 0; k < w->to - w->from; k++)
        if (w->chat[k]) {
            list[n++] = w->chat[k];
            values += w->chat[k]->nmessages;
        }
    if (!store->ops->values_pack_ahead || values < PACK_AHEAD_MIN)
        return PS_OK;
    w->ahead.device = device;
    return store->ops->values_pack_ahead(store, user, list, n, &w->ahead, err);
}

ps_code ps_legacy_window_fill(ps_legacy_window *w, const ps_chat_source *src, size_t from,
                              bool (*wanted)(void *cls, size_t i), void *wanted_cls,
                              const ps_ingest *in, ps_store *store, int64_t user, ps_error *err)
{
    ps_legacy_window_clear(w);
    size_t bytes;
    w->from = from;
    w->to = window_end(src, from, wanted, wanted_cls, &bytes);
    w->src = src;
    w->in = in;
    w->wanted = wanted;
    w->wanted_cls = wanted_cls;
    atomic_init(&w->next, 0);
    w->lane[0].rc = w->lane[1].rc = PS_OK;
    if (src->readers >= 2 && bytes >= SHARE_MIN_BYTES)
        ps__share_run(make_lane, w);
    else
        make_lane(w, 0);
    int lane = w->lane[0].rc == PS_OK;
    if (w->lane[lane].rc != PS_OK) {
        *err = w->lane[lane].err;
        return w->lane[lane].rc;
    }
    return store ? pack_ahead(w, store, user, in->device, err) : PS_OK;
}

bool ps_legacy_window_take(ps_legacy_window *w, size_t i, json_object **tree, ps_chat **chat)
{
    if (i < w->from || i >= w->to || !w->tree[i - w->from])
        return false;
    *tree = w->tree[i - w->from];
    *chat = w->chat[i - w->from];
    w->tree[i - w->from] = NULL;
    w->chat[i - w->from] = NULL;
    return true;
}
