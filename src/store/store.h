/*
 * The storage interface: one vtable, one file per backend (store_sqlite.c;
 * store_pg.c). The server never knows which backend it has.
 *
 * Every operation runs inside a transaction opened with ps_store_begin() and
 * ended with ps_store_commit() or ps_store_rollback(); a transaction is the
 * unit of durability: when commit returns PS_OK the data is on disk (the one
 * exception, a no-op sync's time, is user_seen's).
 * A store handle may be used from many threads; begin() serialises writers.
 */
#ifndef PS_STORE_H
#define PS_STORE_H

#include "core/base.h"
#include "core/chat.h"
#include "polysync/error.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct ps_store ps_store;

/* A user's row. Created on first use. */
typedef struct ps_user {
    int64_t id;
    int64_t clock;        /* the per-user server Lamport clock */
    int64_t last_sync_ms; /* 0 = never */
    int64_t seq;          /* the user's change sequence: last number given */
    int64_t purged_seq;   /* newest sequence of a forgotten tombstone */
    int64_t bytes;        /* what the user's rows weigh, when loaded */
} ps_user;

/* Called per message; the message is borrowed for the call. */
typedef ps_code (*ps_message_fn)(void *ctx, const ps_message *m);

/* A chat as listed: what endpoints send without re-rendering. Borrowed
 * pointers, valid only during the callback. */
typedef struct ps_chat_row {
    const char *id;
    int64_t seq; /* the chat's change sequence number (its last change) */
    /* The chat as legacy clients see it (JSON), read only when asked for
     * (it is most of the row's bytes); NULL = not rendered. */
    const char *(*doc)(const struct ps_chat_row *row, size_t *len);
    void *impl; /* the backend's cursor, for doc() */
    bool live;
    int64_t deleted_counter; /* tombstone's Lamport tuple, when !live */
    const char *deleted_device;
} ps_chat_row;

/* Return non-zero to stop the iteration (the listing then returns PS_OK). */
typedef int (*ps_chat_row_fn)(void *ctx, const ps_chat_row *row);

typedef struct ps_store_stats {
    int64_t live_chats;   /* over every user */
    int64_t last_sync_ms; /* newest of every user's, 0 = never */
} ps_store_stats;

/* A change committed by another instance on the same database: `user`'s
 * change sequence went from seq_before to seq_after, by `device` (NULL:
 * unknown). user NULL: anything may have changed for anyone (the backend
 * missed notifications for a while). */
typedef void (*ps_store_change_fn)(void *ctx, const char *user, const char *device,
                                   int64_t seq_before, int64_t seq_after);

struct ps_store_ops {
    const char *name;
    ps_code (*begin)(ps_store *s, bool write, ps_error *err);
    ps_code (*commit)(ps_store *s, ps_error *err);
    void (*rollback)(ps_store *s);
    ps_code (*user_load)(ps_store *s, const char *name, ps_user *out, ps_error *err);
    /* Like user_load, but never creates the row (so a read transaction
     * stays read-only): *found false, and PS_OK, when the user has none. */
    ps_code (*user_find)(ps_store *s, const char *name, ps_user *out, bool *found, ps_error *err);
    ps_code (*user_save)(ps_store *s, const ps_user *user, ps_error *err);
    /* Records that the user synced at `ms` and changed nothing else (a v2
     * sync that pushed nothing). In a read transaction nothing is written
     * now: stats() counts the time at once, and the backend writes it with
     * its next write transaction, with the first transaction that ends a
     * second or more later, or at close — a crash may forget such times
     * since the last of those, never a change. In a write
     * transaction it is written with it. Kept whatever becomes of the
     * transaction, as it happened. */
    ps_code (*user_seen)(ps_store *s, const char *name, int64_t ms, ps_error *err);
    /* *out = NULL (and PS_OK) when the user has no such chat. Without
     * messages, only the chat-level parts are read (cheap for long chats). */
    ps_code (*chat_load)(ps_store *s, int64_t user, const char *id, bool with_messages,
                         ps_chat **out, ps_error *err);
    /* Adds the stored registers of the messages `ids` (those that exist). */
    ps_code (*messages_load)(ps_store *s, int64_t user, ps_chat *chat, const char *const *ids,
                             size_t n, ps_error *err);
    /* Saves the chat-level state, its dirty messages, the change sequence
     * `seq` (0 = keep the stored one), and `doc` (its rendering for legacy
     * clients; NULL = render it when needed). */
    ps_code (*chat_save)(ps_store *s, int64_t user, const ps_chat *chat, const char *doc,
                         size_t doc_len, int64_t seq, ps_error *err);
    /* The chat-level state of the chat that changed next after `after_seq`
     * (*out NULL when none), with its sequence number. */
    ps_code (*chat_next_changed)(ps_store *s, int64_t user, int64_t after_seq, ps_chat **out,
                                 int64_t *seq, ps_error *err);
    /* Messages of a chat set after `after_seq` by anyone but `skip_origin`,
     * in display order (timestamp, then `received`, the order first
     * received); deleted ones have value NULL. Message rows keep
     * `received` and the stamp's `timed` flag (schema 6). */
    ps_code (*messages_since)(ps_store *s, int64_t user, const char *chat_id, int64_t after_seq,
                              const char *skip_origin, ps_message_fn fn, void *ctx, ps_error *err);
    ps_code (*chat_each)(ps_store *s, int64_t user, ps_chat_row_fn fn, void *ctx, ps_error *err);
    ps_code (*stats)(ps_store *s, ps_store_stats *out, ps_error *err);
    /* Lists users: fn(ctx, name, live chats); non-zero from fn stops. */
    ps_code (*user_list)(ps_store *s, int (*fn)(void *ctx, const char *name, int64_t chats),
                         void *ctx, ps_error *err);
    /* The chat last sent as bytes hashing to `hash` (id "" if none), and
     * whether it is unchanged since (no change landed after that sync). */
    ps_code (*chat_find_sent)(ps_store *s, int64_t user, uint64_t hash, char *id, size_t id_size,
                              bool *unchanged, ps_error *err);
    /* Records that the chat, as it is now, is what bytes hashing to `hash`
     * say: sending them again changes nothing. */
    ps_code (*chat_set_sent)(ps_store *s, int64_t user, const char *id, uint64_t hash,
                             ps_error *err);
    /* What the user's stored rows weigh, in bytes (for quotas). */
    ps_code (*user_bytes)(ps_store *s, int64_t user, int64_t *bytes, ps_error *err);
    /* Deletes a user and all their data; PS_ERR_NOT_FOUND if none. */
    ps_code (*user_delete)(ps_store *s, const char *name, ps_error *err);
    /* Forgets chats deleted before `older_than_ms` (tombstone retention),
     * raising each user's purged_seq past them. */
    ps_code (*purge_tombstones)(ps_store *s, int64_t older_than_ms, int64_t *purged, ps_error *err);
    /* Whether the store can be used now (GET /health): reads, and writes a
     * transaction through to disk, so a read-only, full or failing disk
     * shows; a store found corrupt stays unhealthy until it is reopened.
     * With deep_max_bytes non-zero, a store up to that size is also checked
     * page by page for corruption (at start; a backend may have nothing to
     * check). PS_OK, or PS_ERR_STORE with a reason fit for clients (no
     * paths, no data) in err->message. Takes the store's own lock: call it
     * outside any transaction. */
    ps_code (*probe)(ps_store *s, size_t deep_max_bytes, ps_error *err);
    /* A full-state device's base for one chat (docs/merge.md, "The base
     * rule"; core/base.h): the hashes last saved for (user, device, chat),
     * into *out (replaced; NULL: not read), and the `seq` saved with them;
     * *found false when none. Kept until the chat or user is deleted; a
     * purged chat's bases go with it. (Schema 6.) */
    ps_code (*base_load)(ps_store *s, int64_t user, const char *device, const char *chat_id,
                         ps_base *out, int64_t *seq, bool *found, ps_error *err);
    /* Replaces that base with `b` (sealed: sorted, unique) and `seq`: the
     * chat's change sequence when the base is exactly the chat as stored
     * then (a chat sent whole), else 0. */
    ps_code (*base_save)(ps_store *s, int64_t user, const char *device, const char *chat_id,
                         const ps_base *b, int64_t seq, ps_error *err);
    /* Makes the chat as stored the device's base (with `seq`), from the
     * hashes chat_save keeps with a rendering (chat_save with a `doc` also
     * keeps ps_base_add_chat of the chat, sealed; without one, none).
     * *copied false when the chat has none: work it out from the chat. */
    ps_code (*base_copy)(ps_store *s, int64_t user, const char *device, const char *chat_id,
                         int64_t seq, bool *copied, ps_error *err);
    /* Sets every counter of the user's row as given (clock, last sync,
     * sequence, purge point): for `polysyncd migrate`, which copies them. */
    ps_code (*user_restore)(ps_store *s, const ps_user *user, ps_error *err);
    /* Optional (NULL for a backend with one process): says, inside a write
     * transaction, that it moved `user`'s change sequence from seq_before
     * to seq_after (made by `device`, or NULL); other instances hear it
     * once it commits. */
    ps_code (*announce)(ps_store *s, const char *user, const char *device, int64_t seq_before,
                        int64_t seq_after, ps_error *err);
    /* Optional: calls fn (from a thread of the backend's) for changes other
     * instances commit; fn NULL stops the calls (before ctx goes away). */
    ps_code (*listen)(ps_store *s, ps_store_change_fn fn, void *ctx, ps_error *err);
    void (*close)(ps_store *s);
};

struct ps_store {
    const struct ps_store_ops *ops;
};

/* How a networked backend (PostgreSQL) connects; SQLite ignores them. */
typedef struct ps_store_options {
    unsigned pool;                 /* connections (--db-pool); 0 = 8 */
    unsigned wait_s;               /* retry connecting at start this long (--db-wait) */
    unsigned connect_timeout_s;    /* 0 = 5 */
    unsigned statement_timeout_ms; /* also lock waits and pool waits; 0 = none */
} ps_store_options;

/*
 * Opens the store named by `url`: "sqlite:PATH" (folders created) or
 * "postgres://..." / "postgresql://...". Migrates the schema forward.
 * *out is the caller's, closed with ps_store_close().
 */
ps_code ps_store_open(const char *url, ps_store **out, ps_error *err);
/* The same with options (NULL = defaults). */
ps_code ps_store_open_opts(const char *url, const ps_store_options *opt, ps_store **out,
                           ps_error *err);
void ps_store_close(ps_store *s);

/* Thin inline dispatch, so call sites read as plain function calls. */
static inline ps_code ps_store_begin(ps_store *s, bool write, ps_error *err)
{
    return s->ops->begin(s, write, err);
}
static inline ps_code ps_store_commit(ps_store *s, ps_error *err)
{
    return s->ops->commit(s, err);
}
static inline void ps_store_rollback(ps_store *s)
{
    s->ops->rollback(s);
}

/* Backend constructors, used by ps_store_open. */
ps_code ps__store_sqlite_open(const char *path, ps_store **out, ps_error *err);
ps_code ps__store_pg_open(const char *url, const ps_store_options *opt, ps_store **out,
                          ps_error *err);

#endif
