/*
 * The v2 sync (docs/protocol.md): a push merged in one transaction, then a
 * pull of what changed since the device's cursor, produced chat by chat so
 * a large pull is streamed to the socket instead of built in memory.
 */
#ifndef PS_SYNC_V2_H
#define PS_SYNC_V2_H

#include "server/sync_common.h"

#include <json-c/json.h>

typedef struct ps_v2_pull ps_v2_pull;

/*
 * Runs the push of a validated /v2/sync body and prepares its pull. The
 * push is durable when this returns PS_OK (a sync without changes takes no
 * write transaction: it has nothing to make durable but its time, which
 * the store's user_seen keeps); *pull (the caller's, freed with
 * ps_v2_pull_free) then writes the answer; it keeps a copy of `ctx`, whose
 * store and user must outlive it.
 * PS_ERR_BAD_CURSOR, PS_ERR_EXPIRED: the cursor cannot be served (nothing
 * was pushed).
 */
ps_code ps_v2_sync(const ps_sync_ctx *ctx, json_object *req, ps_v2_pull **pull, ps_error *err);

/* Appends the next piece of the answer to `out`; *done after the last.
 * Each piece (chats up to ~64 KiB) reads the store in a short transaction
 * of its own, except a no-op sync's first piece, made in the sync's read
 * transaction (often the whole answer). */
ps_code ps_v2_pull_next(ps_v2_pull *pull, ps_dynbuf *out, bool *done, ps_error *err);

/* When the sync's own piece is the whole answer (a device up to date, a
 * small pull), moves it into `out` (replacing what it held) and returns
 * true: the answer needs no stream. False, and nothing moved, otherwise or
 * when it is over `out`'s limit. */
bool ps_v2_pull_whole(ps_v2_pull *pull, ps_dynbuf *out);

void ps_v2_pull_free(ps_v2_pull *pull);

#endif
