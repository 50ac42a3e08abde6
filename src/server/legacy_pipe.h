/*
 * A legacy sync's merge loop with the next chats made ready on the
 * process's helper thread (core/share.h) while this thread merges
 * (issue #15, a first upload).
 *
 * A legacy sync merges its chats one by one in one write transaction, on
 * the request's thread. What a chat needs before its merge does not need
 * the store: its bytes parsed (json-c, the trusted parse: the chats were
 * validated before the transaction, or certified valid by their content
 * hash, sync_legacy.c prepare_chats), its
 * registers built (ps__chat_from_legacy), each message's text kept
 * (json_parse.h), and, for a chat new to the store, its pack laid out and
 * compressed (store.h, pack_ahead_make). The helper makes those for the
 * chats ahead of the one being merged, so on two cores the merge thread
 * does little else than merge and write.
 *
 * Either thread makes a chat, whichever takes it first: when the helper
 * is busy with another request, or lags, this thread makes its next chat
 * itself, so the helper is a speed-up, never a condition. The helper runs
 * at most PIPE_AHEAD_CHATS chats and about PIPE_AHEAD_BYTES of their text
 * ahead of the merge: the chats made and not merged yet stay a few MB
 * (a parsed chat takes about 2.6 times its text; keeping a whole 63 MB
 * body's trees cost more in heap growth and page faults than parsing it
 * twice, docs/performance.md, "pipe").
 *
 * Whether a chat is new to the store is asked on this thread (the store's
 * connection is this thread's) shortly before the helper may take it, by
 * the id its content hash found (a chat without one gets no pack ahead).
 */
#ifndef PS_SERVER_LEGACY_PIPE_H
#define PS_SERVER_LEGACY_PIPE_H

#include "core/chat.h"
#include "core/chat_codec.h"
#include "server/sync_legacy.h"
#include "store/store.h"

#include <stdbool.h>
#include <stddef.h>

#define PIPE_AHEAD_CHATS 64
#define PIPE_AHEAD_BYTES ((size_t)4 << 20)

typedef struct ps_legacy_pipe_config {
    const ps_chat_source *src;
    const ps_ingest *in; /* how chats are built; in->device: the packs' origin */
    /* The chats to make: those merged for sure (the others are handed to
     * `each` unmade). */
    bool (*wanted)(void *cls, size_t i);
    /* Chat i's id when known before it is parsed, else NULL (then no pack
     * is made ahead of it). */
    const char *(*known_id)(void *cls, size_t i);
    void *cls;
    /* With the write transaction open and the user's row `user` in it: the
     * packs of the chats new to the store are made ahead. NULL: none. */
    ps_store *store;
    int64_t user;
} ps_legacy_pipe_config;

/* Merges chat i: `tree` (the pipe's: put once the callee returns, on
 * the helper) and `chat` (the callee's) when it was made, else NULL and
 * NULL. */
typedef ps_code (*ps_legacy_pipe_fn)(void *cls, size_t i, json_object *tree, ps_chat *chat,
                                     ps_error *err);

/*
 * Calls each(each_cls, i, ...) for every chat of cfg->src in order, on this
 * thread, until one fails (its code, *err its error). Making a chat fails
 * only out of memory, or the body's spool unreadable, or a pack's
 * compression failing (never the client's error).
 */
PS_MUST_CHECK ps_code ps_legacy_pipe_run(const ps_legacy_pipe_config *cfg, ps_legacy_pipe_fn each,
                                         void *each_cls, ps_error *err);

#endif
