/*
 * The next chats a legacy sync merges, made ready together on both cores
 * inside its write transaction (issue #15, a first upload).
 *
 * The merge of a legacy sync is one transaction, chat after chat, on the
 * request's thread. What each chat needs before its merge does not depend
 * on the store: its bytes parsed (json-c), its registers built
 * (ps__chat_from_legacy), and, for a chat new to the store, its pack laid
 * out and compressed (values_pack_ahead, store.h). A window does that for
 * up to LEGACY_WINDOW_CHATS chats at once, shared with the process's
 * helper thread (core/share.h), before they are merged one by one.
 *
 * Why in windows, not all before the transaction: parsed chats take about
 * 2.6 times their text; kept for a whole 63 MB body they grow the heap by
 * hundreds of MB, and the page faults and heap growth cost more than a
 * second parse (docs/performance.md, "window"). A window's trees are freed
 * before the next window's are made, so the same memory serves again.
 *
 * The chats were validated before the transaction (sync_legacy.c,
 * prepare_chats): the parse here is the trusted one, and a failure is out
 * of memory or the body's spool unreadable, never the client's error.
 */
#ifndef PS_SERVER_LEGACY_WINDOW_H
#define PS_SERVER_LEGACY_WINDOW_H

#include "core/chat.h"
#include "core/chat_codec.h"
#include "server/sync_legacy.h"
#include "store/store.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

/* At most this many chats, and about LEGACY_WINDOW_BYTES of their text
 * (at least one chat): two windows' trees stay a few MB. */
#define LEGACY_WINDOW_CHATS 64
#define LEGACY_WINDOW_BYTES ((size_t)1 << 20)

typedef struct ps_legacy_window {
    size_t from, to; /* chats [from, to) of the source */
    /* chat from + k: parsed and built, or NULL (not wanted, or taken) */
    json_object *tree[LEGACY_WINDOW_CHATS];
    ps_chat *chat[LEGACY_WINDOW_CHATS];
    ps_values_ahead ahead; /* the packs and values made ahead; chats point in */
    /* while being filled */
    const ps_chat_source *src;
    const ps_ingest *in;
    bool (*wanted)(void *cls, size_t i);
    void *wanted_cls;
    atomic_size_t next; /* the first chat of the window nobody took yet */
    struct {
        ps_code rc;
        size_t at; /* the chat it failed at */
        ps_error err;
    } lane[2];
} ps_legacy_window;

/* An empty window, before chat 0. */
void ps_legacy_window_init(ps_legacy_window *w);

/*
 * Empties w (what was not taken is freed) and fills it with the chats from
 * `from` on: those wanted(cls, i) parsed and built with `in`, on both
 * cores when there is enough of them. With `store` (its write transaction
 * open, the user's row `user` in it) the values and the packs of the chats
 * new to the store are made ahead too, `in->device` their origin.
 */
PS_MUST_CHECK ps_code ps_legacy_window_fill(ps_legacy_window *w, const ps_chat_source *src,
                                            size_t from, bool (*wanted)(void *cls, size_t i),
                                            void *wanted_cls, const ps_ingest *in, ps_store *store,
                                            int64_t user, ps_error *err);

/* Chat i parsed (*tree) and built (*chat), both the caller's from here;
 * false when the window does not hold it (outside it, or not wanted). */
bool ps_legacy_window_take(ps_legacy_window *w, size_t i, json_object **tree, ps_chat **chat);

/* Frees what w holds. The chats taken from it must be saved or freed
 * first: they point at its packs. */
void ps_legacy_window_clear(ps_legacy_window *w);

#endif
