/*
 * The client's local store: one SQLite file (WAL, synchronous=FULL,
 * incremental vacuum) with
 *
 *   meta      device id, Lamport clock, sync cursor and the server it
 *             belongs to
 *   chats     each chat's merge state without its messages (the codec's
 *             header form: fields with stamps, times, tombstone, Lamport
 *             tuple) plus columns for listing, and a number keying its
 *             messages
 *   messages  one row per message register (the codec's row form, packed
 *             with zstd and the store's dictionary: lstore_pack.h), so one
 *             new message in a long chat writes one row
 *   changes   the log of local changes not yet acknowledged, each the v2
 *             change exactly as it will be sent (packed)
 *   zdicts    the zstd dictionary rows are packed with
 *
 * Registers keep stamps, so the local store merges with src/core exactly as
 * the server does. Writers use BEGIN IMMEDIATE; several processes may share
 * a store (busy timeout 10 s).
 */
#ifndef PS_CLIENT_LSTORE_H
#define PS_CLIENT_LSTORE_H

#include "core/chat.h"
#include "polysync/client.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct ps_lstore ps_lstore;

/* Opens or creates the store (mode 0600), migrating it forward. */
ps_code ps__lstore_open(const char *path, ps_lstore **out, ps_error *err);
void ps__lstore_close(ps_lstore *s);

/* A write transaction (BEGIN IMMEDIATE), committed or rolled back. */
ps_code ps__lstore_begin(ps_lstore *s, ps_error *err);
ps_code ps__lstore_commit(ps_lstore *s, ps_error *err);
void ps__lstore_rollback(ps_lstore *s);

/* meta: *value_out is the caller's (free), NULL when the key is absent. */
ps_code ps__lstore_meta_get(ps_lstore *s, const char *key, char **value_out, ps_error *err);
/* NULL value deletes the key. */
ps_code ps__lstore_meta_set(ps_lstore *s, const char *key, const char *value, ps_error *err);
ps_code ps__lstore_meta_int(ps_lstore *s, const char *key, int64_t dflt, int64_t *out,
                            ps_error *err);
ps_code ps__lstore_meta_set_int(ps_lstore *s, const char *key, int64_t value, ps_error *err);

/*
 * Loads a chat: its header and either every message (`all`) or only the
 * `n` named ones. *out NULL when the store has no such chat; else the
 * caller's, clean (not dirty), with `stored` set.
 */
ps_code ps__lstore_chat_load(ps_lstore *s, const char *id, bool all, const char *const *msg_ids,
                             size_t n, ps_chat **out, ps_error *err);

/*
 * The server's write of a chat it named by id alone, at the cost of one row:
 * the chat's touched stamp joined with `stamp` and its Lamport tuple raised
 * to `tuple`, exactly as merging a change that carries nothing would, kept
 * in `touches` and folded in whenever the chat is loaded (into its header
 * when it is next saved) instead of unpacking and repacking the header now.
 * *done false, nothing written: not kept so (no such chat, not live, no
 * createdAt to list it by, or a touch already kept); merge it whole.
 */
ps_code ps__lstore_chat_touch(ps_lstore *s, const char *id, const ps_stamp *stamp,
                              const ps_lamport *tuple, bool *done, ps_error *err);

/* Saves the header and every dirty message of `chat`, then marks it clean. */
ps_code ps__lstore_chat_save(ps_lstore *s, ps_chat *chat, ps_error *err);

/* Ids of the chats (live ones only, or all): a new JSON array for the caller. */
ps_code ps__lstore_chat_ids(ps_lstore *s, bool live_only, json_object **out, ps_error *err);

/* Listing for ps_client_chat_list; see client.h for ownership. */
ps_code ps__lstore_list(ps_lstore *s, ps_chat_info **list, size_t *count, ps_error *err);

/* ---- the change log ---- */

enum { PS_CHANGE_LOCAL = 0, PS_CHANGE_SNAPSHOT = 1 };

typedef struct ps_change_row {
    int64_t seq;
    char *chat_id; /* owned */
    int kind;      /* PS_CHANGE_LOCAL or PS_CHANGE_SNAPSHOT */
    int64_t clock;
    int64_t messages; /* how many it carries; -1 not counted (a log from schema 1) */
    char *body;       /* owned: the v2 change JSON */
    size_t body_len;
} ps_change_row;

/* Logs `change` (borrowed; kept as its JSON text, packed). */
ps_code ps__lstore_change_add(ps_lstore *s, const char *chat_id, int kind, int64_t clock,
                              json_object *change, ps_error *err);
/*
 * Up to `max` rows (and about `max_bytes` of bodies, at least one row) with
 * seq > after, in order. *rows the caller's (ps__change_rows_free); *more:
 * rows remain after these.
 */
ps_code ps__lstore_changes(ps_lstore *s, int64_t after, size_t max, size_t max_bytes,
                           ps_change_row **rows, size_t *n, bool *more, ps_error *err);
void ps__change_rows_free(ps_change_row *rows, size_t n);
/* Whether the whole log fits one request of ps__lstore_changes(s, 0, max,
 * max_bytes, ...) (an empty log does), judged by the bodies' sizes without
 * unpacking them. */
ps_code ps__lstore_changes_fit(ps_lstore *s, size_t max, size_t max_bytes, bool *fit,
                               ps_error *err);
ps_code ps__lstore_changes_delete_upto(ps_lstore *s, int64_t seq, ps_error *err);
ps_code ps__lstore_changes_clear(ps_lstore *s, ps_error *err);
/* Removes every chat (and its messages) the log holds no change to, without
 * a trace: what only the server's answers put here (full_resync.c). */
ps_code ps__lstore_forget_synced(ps_lstore *s, ps_error *err);
ps_code ps__lstore_change_update(ps_lstore *s, int64_t seq, int64_t clock, const char *body,
                                 ps_error *err);
ps_code ps__lstore_changes_count(ps_lstore *s, size_t *n, ps_error *err);
/* Whether the log holds a change to `chat_id`. */
ps_code ps__lstore_chat_pending(ps_lstore *s, const char *chat_id, bool *yes, ps_error *err);
/* The highest seq ever given to a change (grows with every local change). */
ps_code ps__lstore_change_high(ps_lstore *s, int64_t *seq, ps_error *err);

/* After a sync: gives the file's free pages back to the file system when
 * they are many (the acknowledged log of a first upload is half the file). */
ps_code ps__lstore_reclaim(ps_lstore *s, ps_error *err);

/*
 * The same, on a thread and a connection of its own, a step at a time, while
 * the caller waits for something else (the server's answer to a pull): the
 * caller must not write to the store until ps__lstore_reclaim_stop, which
 * stops it after the step under way. NULL when it could not start (then
 * ps__lstore_reclaim at the end of the sync does it all). Only space: a
 * step that fails (the store busy) ends it quietly.
 */
typedef struct ps_lstore_reclaim ps_lstore_reclaim;
ps_lstore_reclaim *ps__lstore_reclaim_start(ps_lstore *s);
void ps__lstore_reclaim_stop(ps_lstore_reclaim *r);

#endif
