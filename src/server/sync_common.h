/*
 * What the legacy and the v2 sync share: the per-request context, loading a
 * chat for a merge, and saving a merged chat — which is where a change gets
 * its sequence number and origin device, so both protocols see each other's
 * changes.
 */
#ifndef PS_SYNC_COMMON_H
#define PS_SYNC_COMMON_H

#include "core/dynbuf.h"
#include "core/validate.h"
#include "store/store.h"

#define PS_SERVER_DEVICE "server"

typedef struct ps_sync_ctx {
    ps_store *store;
    const char *user; /* whose chats */
    int64_t now_ms;   /* the server clock for this request */
    int64_t max_skew_ms;
    size_t max_response_bytes;
    int64_t quota_bytes; /* stored bytes per user; 0 = no quota */
    const ps_limits *limits;
    /* The device whose request this is (its deviceId), or NULL. */
    const char *device;
    const char *client; /* User-Agent, for the device registry; NULL or "" unknown */
    int64_t tombstone_retention_ms; /* devices silent longer do not hold tombstones */
    /* Called after a commit that changed the user's data (live channel,
     * live sockets); `device` made the change, or NULL; the user's change
     * sequence went from seq_before to seq_after. */
    void (*changed)(void *cls, const char *user, const char *device, int64_t seq_before,
                    int64_t seq_after);
    void *changed_cls;
} ps_sync_ctx;

/* Commits and, if the user's change sequence moved, tells `changed`. Over
 * the quota, a request that made the user's data bigger is rolled back
 * instead (PS_ERR_QUOTA); one that shrinks it or leaves it is let through. */
ps_code ps__commit(const ps_sync_ctx *ctx, int64_t seq_before, const ps_user *user, ps_error *err);

/* Loads the stored chat (or a new empty one) for `id`; *out is the caller's. */
ps_code ps__load_or_new(const ps_sync_ctx *ctx, const ps_user *user, const char *id,
                        bool with_messages, ps_chat **out, ps_error *err);

/* What a saved chat's updatedAtLamport becomes (see sync_legacy.c). Only
 * the tuple clients see moves: the content keeps the stamps of its writes
 * (a device's echo of it is no write, by the base rule, docs/merge.md). */
typedef enum ps_tick {
    PS_TICK_IF_NONE, /* keep it; a first tick for a chat that has none */
    PS_TICK,         /* a fresh tick: the chat goes back to a client */
} ps_tick;

/*
 * Saves a merged chat: new messages get receive numbers, its dirty parts get
 * the next sequence number and
 * `origin` (the device whose request changed them), its Lamport tuple as
 * `tick` says (legacy clients need one on every chat). With `full` (all
 * messages loaded) its legacy rendering is stored too; otherwise it is
 * rendered when a legacy client needs it.
 */
ps_code ps__save_chat(const ps_sync_ctx *ctx, ps_user *user, ps_chat *chat, const char *origin,
                      bool full, ps_tick tick, ps_error *err);

/*
 * Adds the chat as stored now to `device`'s base for it (docs/merge.md, "The
 * base rule"), in its own write transaction: for a path that hands a device
 * a whole chat outside a /sync answer (the Polyglot live socket), so that the
 * device's later upload of it counts as carried along, not as its writes.
 */
ps_code ps__base_note_sent(const ps_sync_ctx *ctx, const char *chat_id, const char *device,
                           ps_error *err);

/* Appends the legacy rendering of a listed chat: the stored one, or rendered
 * now from the store when the row has none. */
ps_code ps__append_doc(const ps_sync_ctx *ctx, int64_t user_id, const ps_chat_row *row,
                       ps_dynbuf *out, ps_error *err);

#endif
