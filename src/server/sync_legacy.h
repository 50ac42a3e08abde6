/*
 * The seed-compatible sync operations, on a store, with no HTTP in sight:
 * endpoints_legacy.c turns requests into these calls and their results into
 * answers. Each call is one store transaction: all of it lands or none.
 */
#ifndef PS_SYNC_LEGACY_H
#define PS_SYNC_LEGACY_H

#include "server/legacy_answer.h"
#include "server/sync_common.h"

#include <json-c/json.h>

/*
 * The chats of a legacy request, one at a time (legacy_body.h produces
 * them as the body arrives): chat i's bytes are exactly one JSON value, to
 * be hashed, and pre-checked, parsed (json-c, strict) and validated only
 * when not known unchanged. Any order, any number of times; the bytes are
 * owned by the source and valid until its next call, so a caller holds one
 * chat's bytes at a time, never the body.
 *
 * `check` (NULL: the source's chats are pre-checked already) pre-checks
 * chat i (json_precheck.h, once; the error names the body's byte): a chat's
 * bytes are trusted JSON only after it (or a content hash, content_hash.h),
 * so whoever uses them calls ps_chat_source_check first, in the chats'
 * order. `hash` (NULL: hash the
 * bytes) gives ps__hash_bytes of chat i's bytes, worked out as they came.
 *
 * Two threads (`readers`: how many may; 1 or PS_CHAT_SOURCE_READERS) may
 * call `bytes`, `check` and `hash` at the same time, each passing its own
 * `reader` number (below `readers`) and each on chats the other is not
 * using: a reader's bytes are valid until that reader's next call (the
 * legacy body gives each reader its own buffer for chats read back from
 * its spool file, body_spool.h). The ps_chat_source_bytes and
 * ps_chat_source_check wrappers are reader 0's. `length` too is safe
 * on two threads.
 */
#define PS_CHAT_SOURCE_READERS 2u
typedef struct ps_chat_source {
    size_t count;
    ps_code (*bytes)(void *cls, unsigned reader, size_t i, const char **text, size_t *len,
                     ps_error *err);
    ps_code (*check)(void *cls, unsigned reader, size_t i, ps_error *err);
    uint64_t (*hash)(void *cls, size_t i);
    size_t (*length)(void *cls, size_t i); /* of chat i's bytes, without reading them;
                                            * NULL: unknown */
    void *cls;
    size_t padding;   /* bytes readable after each chat's bytes (0: none) */
    unsigned readers; /* threads that may read at once (0 is 1) */
} ps_chat_source;

/* Chat i's bytes as `reader` (see ps_chat_source). */
static inline ps_code ps_chat_source_bytes_as(const ps_chat_source *src, unsigned reader, size_t i,
                                              const char **text, size_t *len, ps_error *err)
{
    return src->bytes(src->cls, reader, i, text, len, err);
}

/* Pre-checks chat i as `reader` (see ps_chat_source). */
static inline ps_code ps_chat_source_check_as(const ps_chat_source *src, unsigned reader, size_t i,
                                              ps_error *err)
{
    return src->check ? src->check(src->cls, reader, i, err) : PS_OK;
}

/* Chat i's bytes (see ps_chat_source). */
static inline ps_code ps_chat_source_bytes(const ps_chat_source *src, size_t i, const char **text,
                                           size_t *len, ps_error *err)
{
    return ps_chat_source_bytes_as(src, 0, i, text, len, err);
}

/* Pre-checks chat i (see ps_chat_source). */
static inline ps_code ps_chat_source_check(const ps_chat_source *src, size_t i, ps_error *err)
{
    return ps_chat_source_check_as(src, 0, i, err);
}

/*
 * Merges a /sync or /pushChats body (`req` validated, its chats in `chats`).
 * With `answer` non-NULL, *answer (the caller's, NULL on failure) is the
 * /sync answer {missing, deletions, serverClock}, planned in the sync's
 * transaction and streamed after it (legacy_answer.h). An invalid chat
 * rolls everything back.
 */
ps_code ps_legacy_sync(const ps_sync_ctx *ctx, json_object *req, const ps_chat_source *chats,
                       ps_legacy_answer **answer, ps_error *err);

/* Tombstones each id in `ids` (a validated array of strings). *deleted
 * counts the chats that were live before and are deleted now. */
ps_code ps_legacy_delete(const ps_sync_ctx *ctx, json_object *ids, size_t *deleted, ps_error *err);

/* Every live chat of the user as a JSON array, streamed: *out (the
 * caller's) makes it piece by piece (legacy_answer.h). */
ps_code ps_legacy_fetch(const ps_sync_ctx *ctx, ps_legacy_answer **out, ps_error *err);

#endif
