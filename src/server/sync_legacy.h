/*
 * The seed-compatible sync operations, on a store, with no HTTP in sight:
 * endpoints_legacy.c turns requests into these calls and their results into
 * answers. Each call is one store transaction: all of it lands or none.
 */
#ifndef PS_SYNC_LEGACY_H
#define PS_SYNC_LEGACY_H

#include "server/sync_common.h"

#include <json-c/json.h>

/*
 * The chats of a legacy request: parsed already (`parsed`, a validated
 * array), or as byte ranges of the body text (from ps_json_precheck_outline)
 * that are hashed, and parsed and validated only when not known unchanged.
 */
typedef struct ps_chat_source {
    size_t count;
    json_object *parsed;
    const char *text;
    const size_t *starts, *ends;
} ps_chat_source;

/*
 * Merges a /sync or /pushChats body (`req` validated, its chats in `chats`).
 * With `answer` non-NULL, writes the /sync answer {missing, deletions,
 * serverClock} into it. An invalid chat rolls everything back.
 */
ps_code ps_legacy_sync(const ps_sync_ctx *ctx, json_object *req, const ps_chat_source *chats,
                       ps_dynbuf *answer, ps_error *err);

/* Tombstones each id in `ids` (a validated array of strings). *deleted
 * counts the chats that were live before and are deleted now. */
ps_code ps_legacy_delete(const ps_sync_ctx *ctx, json_object *ids, size_t *deleted, ps_error *err);

/* Writes every live chat of the user as a JSON array. */
ps_code ps_legacy_fetch(const ps_sync_ctx *ctx, ps_dynbuf *out, ps_error *err);

#endif
