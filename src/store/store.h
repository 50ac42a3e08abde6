/*
 * The storage interface: one vtable, one file per backend (store_sqlite.c;
 * store_pg.c). The server never knows which backend it has.
 *
 * Every operation runs inside a transaction opened with ps_store_begin() and
 * ended with ps_store_commit() or ps_store_rollback(); a transaction is the
 * unit of durability: when commit returns PS_OK the data is on disk (the one
 * exception, a no-op sync's time, is user_seen's).
 * A store handle may be used from many threads; begin() serialises writers,
 * and a read transaction (begin(s, false)) never waits for one: it reads one
 * snapshot of the data as committed (taken at BEGIN on SQLite, at the first
 * statement on PostgreSQL), and writes nothing.
 */
#ifndef PS_STORE_H
#define PS_STORE_H

#include "core/base.h"
#include "core/chat.h"
#include "core/dynbuf.h"
#include "polysync/error.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

typedef struct ps_store ps_store;

/* A store call that failed must not go unseen (a lost commit error is a
 * lost write). The vtable's function pointers cannot carry the attribute;
 * the entry points below do. */
#define PS_STORE_MUST_CHECK __attribute__((warn_unused_result))

/* A user's row. Created on first use. */
typedef struct ps_user {
    int64_t id;
    int64_t clock;        /* the per-user server Lamport clock */
    int64_t last_sync_ms; /* 0 = never */
    int64_t seq;          /* the user's change sequence: last number given */
    int64_t purged_seq;   /* newest sequence of a forgotten tombstone */
    int64_t bytes;        /* what the user's rows weigh, when loaded */
} ps_user;

/* What values_pack_ahead made: one form per message value it packed
 * (messages point at theirs), their frames in `frames`. The caller's,
 * zeroed before use; freed with ps_values_ahead_free once the messages
 * that point at it are saved or freed. */
typedef struct ps_values_ahead {
    ps_value_form *forms;
    size_t n;
    ps_dynbuf frames;
    /* Set by the caller: the pushing device, every saved message's origin.
     * NULL: no packs are made ahead. */
    const char *device;
    /* The packs made ahead of the chats that will be new to the store
     * (chats point at theirs): the raw bytes of each malloc'd, their
     * frames in `pack_frames`. */
    ps_pack_form *packs;
    size_t npacks;
    ps_dynbuf pack_frames;
} ps_values_ahead;

static inline void ps_values_ahead_free(ps_values_ahead *a)
{
    for (size_t i = 0; i < a->npacks; i++)
        free((void *)a->packs[i].raw);
    ps__dynbuf_free(&a->pack_frames);
    free(a->packs);
    a->packs = NULL;
    a->npacks = 0;
    free(a->forms);
    a->forms = NULL;
    a->n = 0;
    ps__dynbuf_free(&a->frames);
}

/* A pack made by pack_ahead_make, freed (NULL: nothing). */
static inline void ps_pack_form_free(ps_pack_form *f)
{
    if (!f)
        return;
    free((void *)f->raw);
    free((void *)f->frame);
    free(f);
}

/* The backend's maker of packs ahead (pack_ahead_begin). */
typedef struct ps_pack_ahead ps_pack_ahead;

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
    /* Or (NULL when the backend has none): appends that rendering to *out
     * however it is stored (compressed, say) without a copy in between;
     * *appended false (nothing appended) when it is not rendered. */
    ps_code (*doc_append)(const struct ps_chat_row *row, ps_dynbuf *out, bool *appended,
                          ps_error *err);
    void *impl; /* the backend's cursor, for doc() and doc_append() */
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

/* Accounts and tokens (docs/security.md, "Revoking access"). A token
 * minted by `polysyncd token issue`, as the registry holds it. Borrowed
 * strings, valid during the callback. */
typedef struct ps_token_row {
    const char *jti;
    const char *user;
    int64_t issued_ms, expires_ms;
    int64_t revoked_ms; /* 0: not revoked */
} ps_token_row;

/* What the server refuses of a user, by name (kept when the user's rows
 * are deleted, so a deleted user's devices stay refused). */
typedef struct ps_account_row {
    const char *name;
    bool disabled;            /* 403 to every request */
    int64_t tokens_before_ms; /* tokens issued at or before this: 401; 0 none */
} ps_account_row;

/* A device of a user, as the registry holds it (docs/protocol.md,
 * "Devices"). Borrowed strings, valid during the callback. */
typedef struct ps_device_row {
    const char *id;
    int64_t first_seen_ms, last_seen_ms;
    const char *client;   /* User-Agent or the request's `client`; "" unknown */
    const char *protocol; /* "v2" or "legacy" */
    int64_t acked_seq;    /* the change sequence it has applied; -1 none yet */
} ps_device_row;

/* chat_save's `doc` when keeps_legacy_pack said yes (compared by address). */
extern const char ps_doc_from_pack[];
#define PS_DOC_FROM_PACK ps_doc_from_pack

struct ps_store_ops {
    const char *name;
    PS_STORE_MUST_CHECK ps_code (*begin)(ps_store *s, bool write, ps_error *err);
    PS_STORE_MUST_CHECK ps_code (*commit)(ps_store *s, ps_error *err);
    void (*rollback)(ps_store *s);
    /* In a read transaction a backend may load a user without a row as an
     * empty one (id 0, owning nothing) instead of creating it. */
    PS_STORE_MUST_CHECK ps_code (*user_load)(ps_store *s, const char *name, ps_user *out,
                                             ps_error *err);
    /* Like user_load, but never creates the row (so a read transaction
     * stays read-only): *found false, and PS_OK, when the user has none. */
    PS_STORE_MUST_CHECK ps_code (*user_find)(ps_store *s, const char *name, ps_user *out,
                                             bool *found, ps_error *err);
    /* Optional (NULL: begin, then user_find): begins a read transaction
     * whose first read is user_find's. The same as the two calls; a backend
     * may take the transaction's snapshot with that read instead of a read
     * of its own (SQLite: one statement less per v2 no-op sync). On failure
     * no transaction is left open. */
    PS_STORE_MUST_CHECK ps_code (*begin_user_find)(ps_store *s, const char *name, ps_user *out,
                                                   bool *found, ps_error *err);
    /* Optional (NULL: never). The user's row without a transaction, when
     * the backend can tell it is what a read transaction begun now would
     * read; *found false when it cannot (then read it in one). SQLite: the
     * row begin_user_find last read, while nothing — of this process or
     * another — was committed since (sqlite_quiet.h). For the v2 syncs that
     * find nothing new, which then need no transaction at all. */
    PS_STORE_MUST_CHECK ps_code (*quiet_user)(ps_store *s, const char *name, ps_user *out,
                                              bool *found, ps_error *err);
    PS_STORE_MUST_CHECK ps_code (*user_save)(ps_store *s, const ps_user *user, ps_error *err);
    /* Records that the user synced at `ms` and changed nothing else (a v2
     * sync that pushed nothing). In a read transaction, or outside any (a
     * sync answered from quiet_user), nothing is written now: stats()
     * counts the time at once, and the backend writes it with its next
     * write transaction, with the first transaction that ends (or the
     * first such call outside one) a second or more later, or at close —
     * a crash may forget such times
     * since the last of those, never a change. In a write
     * transaction it is written with it. Kept whatever becomes of the
     * transaction, as it happened. */
    PS_STORE_MUST_CHECK ps_code (*user_seen)(ps_store *s, const char *name, int64_t ms,
                                             ps_error *err);
    /* *out = NULL (and PS_OK) when the user has no such chat. Without
     * messages, only the chat-level parts are read (cheap for long chats). */
    PS_STORE_MUST_CHECK ps_code (*chat_load)(ps_store *s, int64_t user, const char *id,
                                             bool with_messages, ps_chat **out, ps_error *err);
    /* Adds the stored registers of the messages `ids` (those that exist). */
    PS_STORE_MUST_CHECK ps_code (*messages_load)(ps_store *s, int64_t user, ps_chat *chat,
                                                 const char *const *ids, size_t n, ps_error *err);
    /* Saves the chat-level state, its dirty messages, the change sequence
     * `seq` (0 = keep the stored one), and `doc` (its rendering for legacy
     * clients; NULL = render it when needed; PS_DOC_FROM_PACK: a legacy
     * save of a chat keeps_legacy_pack said it keeps as a pack). */
    PS_STORE_MUST_CHECK ps_code (*chat_save)(ps_store *s, int64_t user, const ps_chat *chat,
                                             const char *doc, size_t doc_len, int64_t seq,
                                             ps_error *err);
    /* The chat-level state of the chat that changed next after `after_seq`
     * (*out NULL when none), with its sequence number. */
    PS_STORE_MUST_CHECK ps_code (*chat_next_changed)(ps_store *s, int64_t user, int64_t after_seq,
                                                     ps_chat **out, int64_t *seq, ps_error *err);
    /* Messages of a chat set after `after_seq`, but for those `skip_origin`
     * set after `skip_after` (NULL: none left out; skip_after = after_seq:
     * all of its), in display order (timestamp, then `received`, the order
     * first received); deleted ones have value NULL. Message rows keep
     * `received` and the stamp's `timed` flag (schema 6). Rows left out
     * are never read: a pull that knows the device holds them pays nothing
     * for them. */
    PS_STORE_MUST_CHECK ps_code (*messages_since)(ps_store *s, int64_t user, const char *chat_id,
                                                  int64_t after_seq, const char *skip_origin,
                                                  int64_t skip_after, ps_message_fn fn, void *ctx,
                                                  ps_error *err);
    PS_STORE_MUST_CHECK ps_code (*chat_each)(ps_store *s, int64_t user, ps_chat_row_fn fn,
                                             void *ctx, ps_error *err);
    /* The same, from the first chat whose id comes after `after` (byte
     * order; NULL: from the first): a listing continued where it stopped,
     * as a streamed answer does piece by piece, without reading again the
     * rows before. */
    PS_STORE_MUST_CHECK ps_code (*chat_each_after)(ps_store *s, int64_t user, const char *after,
                                                   ps_chat_row_fn fn, void *ctx, ps_error *err);
    PS_STORE_MUST_CHECK ps_code (*stats)(ps_store *s, ps_store_stats *out, ps_error *err);
    /* Lists users: fn(ctx, name, live chats); non-zero from fn stops. */
    PS_STORE_MUST_CHECK ps_code (*user_list)(ps_store *s,
                                             int (*fn)(void *ctx, const char *name, int64_t chats),
                                             void *ctx, ps_error *err);
    /* The chat `device` ("" for none) last sent as bytes hashing to `hash`
     * (id "" if none), and whether it is unchanged since (no change landed
     * after that sync). One hash per (chat, device), so devices that each
     * send their own bytes of a chat do not replace each other's. */
    PS_STORE_MUST_CHECK ps_code (*chat_find_sent)(ps_store *s, int64_t user, const char *device,
                                                  uint64_t hash, char *id, size_t id_size,
                                                  bool *unchanged, ps_error *err);
    /* Records that the chat, as it is now, is what bytes hashing to `hash`
     * from `device` say, and what a value hashing to `content`
     * (ps_json_value_hash: the same data in other bytes) says: that device
     * sending either again changes nothing. */
    PS_STORE_MUST_CHECK ps_code (*chat_set_sent)(ps_store *s, int64_t user, const char *device,
                                                 const char *id, uint64_t hash, uint64_t content,
                                                 ps_error *err);
    /* The content hash chat_set_sent last recorded for (`id`, `device`) (0
     * if none) and whether the chat is unchanged since. */
    PS_STORE_MUST_CHECK ps_code (*chat_sent_content)(ps_store *s, int64_t user, const char *device,
                                                     const char *id, uint64_t *content,
                                                     bool *unchanged, ps_error *err);
    /* What the user's stored rows weigh, in bytes (for quotas). */
    PS_STORE_MUST_CHECK ps_code (*user_bytes)(ps_store *s, int64_t user, int64_t *bytes,
                                              ps_error *err);
    /* Deletes a user and all their data; PS_ERR_NOT_FOUND if none. */
    PS_STORE_MUST_CHECK ps_code (*user_delete)(ps_store *s, const char *name, ps_error *err);
    /* Forgets chats deleted before `older_than_ms` (tombstone retention),
     * raising each user's purged_seq past them. */
    PS_STORE_MUST_CHECK ps_code (*purge_tombstones)(ps_store *s, int64_t older_than_ms,
                                                    int64_t *purged, ps_error *err);
    /*
     * Accounts and tokens. Every function that changes what the server
     * refuses (token_revoke, account_set) also raises the store's access
     * generation, in the same transaction: a running server polls
     * access_generation once a second and reloads the lists when it moved
     * (the change may come from another process, `polysyncd token revoke`).
     */
    /* Records a minted token (jti unique). */
    PS_STORE_MUST_CHECK ps_code (*token_add)(ps_store *s, const char *jti, const char *user,
                                             int64_t issued_ms, int64_t expires_ms, ps_error *err);
    /* Tokens of `user` (NULL: all), by issue time; non-zero from fn stops. */
    PS_STORE_MUST_CHECK ps_code (*token_list)(ps_store *s, const char *user,
                                              int (*fn)(void *ctx, const ps_token_row *row),
                                              void *ctx, ps_error *err);
    /* Revokes one token (jti) or, jti NULL, every unrevoked token of
     * `user`, at now_ms; *count = tokens revoked now (0 is not an error). */
    PS_STORE_MUST_CHECK ps_code (*token_revoke)(ps_store *s, const char *jti, const char *user,
                                                int64_t now_ms, int64_t *count, ps_error *err);
    /* Revoked tokens not yet expired at now_ms (what the server must refuse). */
    PS_STORE_MUST_CHECK ps_code (*token_revoked_each)(ps_store *s, int64_t now_ms,
                                                      int (*fn)(void *ctx, const ps_token_row *row),
                                                      void *ctx, ps_error *err);
    /* Sets a user's refusals: disabled (-1: keep), tokens_before_ms (-1:
     * keep; 0 clears). Creates the row when needed; the user need not exist. */
    PS_STORE_MUST_CHECK ps_code (*account_set)(ps_store *s, const char *name, int disabled,
                                               int64_t tokens_before_ms, ps_error *err);
    /* Every user with a refusal (disabled, or tokens_before_ms set). */
    PS_STORE_MUST_CHECK ps_code (*account_each)(ps_store *s,
                                                int (*fn)(void *ctx, const ps_account_row *row),
                                                void *ctx, ps_error *err);
    /* A number that changes whenever token_revoke or account_set commit. */
    PS_STORE_MUST_CHECK ps_code (*access_generation)(ps_store *s, int64_t *generation,
                                                     ps_error *err);
    /* Renames a user, chats and all; PS_ERR_NOT_FOUND when `from` has no
     * row, PS_ERR_INVALID when `to` has one. */
    PS_STORE_MUST_CHECK ps_code (*user_rename)(ps_store *s, const char *from, const char *to,
                                               ps_error *err);
    /* The device registry. device_seen records that `device` of the user
     * named `user` synced at now_ms with `client`/`protocol`, having applied
     * the user's changes up to acked_seq (-1: says nothing; the stored one
     * is kept). Nothing when the user has no row. */
    PS_STORE_MUST_CHECK ps_code (*device_seen)(ps_store *s, const char *user, const char *device,
                                               const char *client, const char *protocol,
                                               int64_t acked_seq, int64_t now_ms, ps_error *err);
    /* The user's devices, by first sighting; non-zero from fn stops. */
    PS_STORE_MUST_CHECK ps_code (*device_list)(ps_store *s, const char *user,
                                               int (*fn)(void *ctx, const ps_device_row *row),
                                               void *ctx, ps_error *err);
    /* One device of the user, by id: fn is called once with its row, or
     * not at all when the user (or the device) has none. A lookup by key,
     * where device_list reads every device of the user (the legacy quiet
     * commit asks for the syncing device's row on every re-sync). */
    PS_STORE_MUST_CHECK ps_code (*device_get)(ps_store *s, const char *user, const char *device,
                                              int (*fn)(void *ctx, const ps_device_row *row),
                                              void *ctx, ps_error *err);
    /*
     * Tombstone collection by acknowledgement (docs/merge.md): forgets the
     * user's chat and message tombstones that every device seen since
     * active_since_ms has acknowledged (sequence <= the least acked_seq of
     * those devices), raising purged_seq past them so an older cursor gets
     * 410. Nothing when no device was seen since then, when one of them
     * has acknowledged nothing (-1), or when one of them is a legacy device
     * (protocol "legacy", with a deviceId or not: no cursor, so no 410 can
     * make it resync; its user keeps the time rule). *purged: how many.
     */
    PS_STORE_MUST_CHECK ps_code (*purge_acknowledged)(ps_store *s, const char *user,
                                                      int64_t active_since_ms, int64_t *purged,
                                                      ps_error *err);
    /* How many chat and message tombstones the user has (0 when no user):
     * whether an acknowledgement is worth a write now. */
    PS_STORE_MUST_CHECK ps_code (*user_tombstones)(ps_store *s, const char *user, int64_t *count,
                                                   ps_error *err);
    /* Forgets a device; PS_ERR_NOT_FOUND when the user has no such one. */
    PS_STORE_MUST_CHECK ps_code (*device_forget)(ps_store *s, const char *user, const char *device,
                                                 ps_error *err);
    /* Whether the store can be used now (GET /health): reads, and writes a
     * transaction through to disk, so a read-only, full or failing disk
     * shows; a store found corrupt stays unhealthy until it is reopened.
     * With deep_max_bytes non-zero, a store up to that size is also checked
     * page by page for corruption (at start; a backend may have nothing to
     * check). PS_OK, or PS_ERR_STORE with a reason fit for clients (no
     * paths, no data) in err->message. Takes the store's own lock: call it
     * outside any transaction. */
    PS_STORE_MUST_CHECK ps_code (*probe)(ps_store *s, size_t deep_max_bytes, ps_error *err);
    /* A full-state device's base for one chat (docs/merge.md, "The base
     * rule"; core/base.h): the hashes last saved for (user, device, chat),
     * into *out (replaced; NULL: not read), and the `seq` saved with them;
     * *found false when none. Kept until the chat or user is deleted; a
     * purged chat's bases go with it. (Schema 6.) */
    PS_STORE_MUST_CHECK ps_code (*base_load)(ps_store *s, int64_t user, const char *device,
                                             const char *chat_id, ps_base *out, int64_t *seq,
                                             bool *found, ps_error *err);
    /* Replaces that base with `b` (sealed: sorted, unique) and `seq`: the
     * chat's change sequence when the base is exactly the chat as stored
     * then (a chat sent whole), else 0. */
    PS_STORE_MUST_CHECK ps_code (*base_save)(ps_store *s, int64_t user, const char *device,
                                             const char *chat_id, const ps_base *b, int64_t seq,
                                             ps_error *err);
    /* Makes the chat as stored the device's base (with `seq`), from the
     * hashes chat_save keeps with a rendering (chat_save with a `doc` also
     * keeps ps__base_add_chat of the chat, sealed; without one, none).
     * *copied false when the chat has none: work it out from the chat. */
    PS_STORE_MUST_CHECK ps_code (*base_copy)(ps_store *s, int64_t user, const char *device,
                                             const char *chat_id, int64_t seq, bool *copied,
                                             ps_error *err);
    /* Sets every counter of the user's row as given (clock, last sync,
     * sequence, purge point): for `polysyncd migrate`, which copies them. */
    PS_STORE_MUST_CHECK ps_code (*user_restore)(ps_store *s, const ps_user *user, ps_error *err);
    /* Optional (NULL for a backend with one process): says, inside a write
     * transaction, that it moved `user`'s change sequence from seq_before
     * to seq_after (made by `device`, or NULL); other instances hear it
     * once it commits. */
    PS_STORE_MUST_CHECK ps_code (*announce)(ps_store *s, const char *user, const char *device,
                                            int64_t seq_before, int64_t seq_after, ps_error *err);
    /* Optional: calls fn (from a thread of the backend's) for changes other
     * instances commit; fn NULL stops the calls (before ctx goes away). */
    PS_STORE_MUST_CHECK ps_code (*listen)(ps_store *s, ps_store_change_fn fn, void *ctx,
                                          ps_error *err);
    /* Optional (NULL: chat_save packs every value itself): packs the
     * values of the messages of chats[0..n) as chat_save would store them
     * for `user` now (their ps__json_text_kept text, with the user's
     * dictionary) into *ahead, and points each message's `form` at its
     * own. In a read transaction before the write one, so that the
     * packing runs outside the writer's turn (one core packs a request
     * while another request holds the writer); chat_save takes a form only
     * if it was made with the dictionary it would use. Nothing is made
     * while the user has no dictionary. With ahead->device set, a chat
     * that will be new to the store (kept as a pack) gets its whole pack
     * compressed instead (its `pack_form`, one of ahead->packs), which
     * chat_save takes only if its bytes are what it would lay out then
     * (read back entry by entry against the chat it saves). */
    PS_STORE_MUST_CHECK ps_code (*values_pack_ahead)(ps_store *s, int64_t user,
                                                     ps_chat *const *chats, size_t n,
                                                     ps_values_ahead *ahead, ps_error *err);
    /* Optional, the four or none (NULL: chat_save compresses every pack
     * itself): the packs of chats new to the store made ahead of their
     * save, on any thread (a legacy sync's helper thread while its own
     * merges, legacy_pipe.h). pack_ahead_begin: in the open transaction,
     * what makes them for `user` with the dictionary chat_save would
     * compress with now; *out NULL when the user has none (nothing is made
     * ahead, as in values_pack_ahead). */
    PS_STORE_MUST_CHECK ps_code (*pack_ahead_begin)(ps_store *s, int64_t user, ps_pack_ahead **out,
                                                    ps_error *err);
    /* In the open transaction: whether `user` has no chat `id` yet. */
    PS_STORE_MUST_CHECK ps_code (*chat_is_new)(ps_store *s, int64_t user, const char *id,
                                               bool *is_new, ps_error *err);
    /* On any thread, several at once, touching no connection: the pack
     * chat_save would make of `chat` were it new to the store, its
     * messages saved by `device` (values_pack_ahead's guesses; the save
     * takes it only if it is what it lays out then, ps_pack_form). *out
     * NULL when the chat would not be a pack; else the caller's, freed
     * with ps_pack_form_free once the chat is saved. PS_ERR_NOMEM or
     * PS_ERR_STORE (compression failed). */
    PS_STORE_MUST_CHECK ps_code (*pack_ahead_make)(ps_store *s, const ps_pack_ahead *pa,
                                                   const ps_chat *chat, const char *device,
                                                   ps_pack_form **out);
    /* Frees what pack_ahead_begin made (NULL: nothing), once no thread
     * makes packs with it. */
    void (*pack_ahead_end)(ps_store *s, ps_pack_ahead *pa);
    /* Optional (NULL: never): in the open transaction, whether a legacy save
     * of `chat`, new to the store and numbered (ps__chat_number_received),
     * would keep it as a pack with no rendering, from which legacy reads
     * put it together. Then the caller passes chat_save PS_DOC_FROM_PACK
     * instead of rendering it (work the store would throw away). */
    bool (*keeps_legacy_pack)(ps_store *s, int64_t user, const ps_chat *chat);
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
PS_STORE_MUST_CHECK ps_code ps_store_open(const char *url, ps_store **out, ps_error *err);
/* The same with options (NULL = defaults). */
PS_STORE_MUST_CHECK ps_code ps_store_open_opts(const char *url, const ps_store_options *opt,
                                               ps_store **out, ps_error *err);
void ps_store_close(ps_store *s);

/* Transactions begun and the time spent in begin (mostly waiting for the
 * store's lock), for /metrics (server/metrics.h); defined in store.c. */
extern _Atomic uint64_t ps__store_begin_count, ps__store_begin_wait_us;

/* Counts a begin that started at t0 (CLOCK_MONOTONIC) and has returned. */
static inline void ps__store_count_begin(const struct timespec *t0)
{
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    int64_t us = (int64_t)(t1.tv_sec - t0->tv_sec) * 1000000 + (t1.tv_nsec - t0->tv_nsec) / 1000;
    atomic_fetch_add_explicit(&ps__store_begin_count, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&ps__store_begin_wait_us, (uint64_t)(us > 0 ? us : 0),
                              memory_order_relaxed);
}

/* Thin inline dispatch, so call sites read as plain function calls. */
static inline PS_STORE_MUST_CHECK ps_code ps_store_begin(ps_store *s, bool write, ps_error *err)
{
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    ps_code rc = s->ops->begin(s, write, err);
    ps__store_count_begin(&t0);
    return rc;
}
/* A read transaction begun with the user's row read (ops->begin_user_find). */
static inline PS_STORE_MUST_CHECK ps_code ps_store_begin_user_find(ps_store *s, const char *name,
                                                                   ps_user *out, bool *found,
                                                                   ps_error *err)
{
    if (!s->ops->begin_user_find) {
        ps_code rc = ps_store_begin(s, false, err);
        if (rc == PS_OK && (rc = s->ops->user_find(s, name, out, found, err)) != PS_OK)
            s->ops->rollback(s);
        return rc;
    }
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    ps_code rc = s->ops->begin_user_find(s, name, out, found, err);
    ps__store_count_begin(&t0);
    return rc;
}
static inline PS_STORE_MUST_CHECK ps_code ps_store_commit(ps_store *s, ps_error *err)
{
    return s->ops->commit(s, err);
}
static inline void ps_store_rollback(ps_store *s)
{
    s->ops->rollback(s);
}

/* Backend constructors, used by ps_store_open. */
PS_STORE_MUST_CHECK ps_code ps__store_sqlite_open(const char *path, ps_store **out, ps_error *err);
PS_STORE_MUST_CHECK ps_code ps__store_pg_open(const char *url, const ps_store_options *opt,
                                              ps_store **out, ps_error *err);
#ifdef PS_FAULT_INJECTION
/* Test builds: wraps *s in the fault-injecting store of store_fault.c when
 * PS_FAULT_STORE_FILE is set (else leaves it). */
PS_STORE_MUST_CHECK ps_code ps__store_fault_wrap(ps_store **s, ps_error *err);
#endif

#endif
