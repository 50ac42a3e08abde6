/*
 * The chat model the merge works on: a chat is a set of registers, each
 * holding a value and the stamp of the change that wrote it.
 *
 *   fields    one last-writer-wins register per scalar or unknown field
 *   messages  one register per message id; a NULL value is a tombstone
 *   times     createdAt (earliest seen), updatedAt and lastModified (latest)
 *   tombstone the newest deletion of the whole chat, if any
 *   lamport   the updatedAtLamport tuple clients see (largest seen or ticked)
 *
 * Every part merges by a join (max by stamp, min/max by time), which is what
 * makes the merge commutative, associative and idempotent (docs/merge.md).
 *
 * Ownership: a ps_chat owns its strings and holds one reference to every
 * json_object in it; ps_chat_free() releases them all.
 */
#ifndef PS_CHAT_H
#define PS_CHAT_H

#include "polysync/error.h"

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PS_ID_MAX_BYTES 256

/*
 * Who wrote a change and when. Order (ps_stamp_cmp): by lamport first, so a
 * write with a Lamport counter is newer than any without; among writes with
 * one, by (lamport, device) as the Polyglot client decides; among writes
 * without, by (ts, device).
 */
typedef struct ps_stamp {
    int64_t ts;      /* ms since epoch, clamped at ingest */
    int64_t lamport; /* the writer's Lamport counter, 0 if it sent none */
    char *device;    /* writer's device id, "" if unknown; owned */
} ps_stamp;

/*
 * Where a register's current value came from, for incremental pulls: the
 * server's change sequence number when it landed and the device that sent
 * it. The merge knows nothing of these; it only sets `dirty` on what it
 * changed, and the server fills seq and origin of dirty parts before saving.
 */
typedef struct ps_mark {
    int64_t seq;    /* 0 = not stored yet */
    char *origin;   /* owned; NULL = unknown */
    bool dirty;     /* changed since loaded from the store */
    bool restamped; /* same value, new stamp: to be saved, mark kept */
    bool lost;      /* a write to it lost: re-announce it, keeping its origin */
} ps_mark;

typedef struct ps_field {
    char *name;         /* owned */
    json_object *value; /* one reference held */
    ps_stamp stamp;
    ps_mark mark;
} ps_field;

typedef struct ps_message {
    char *id;           /* owned */
    json_object *value; /* the message object; NULL for a deleted message */
    ps_stamp stamp;
    int64_t order_ts; /* the message's own timestamp, for display order */
    ps_mark mark;
} ps_message;

/* createdAt / updatedAt / lastModified as the client wrote them. */
typedef struct ps_time_field {
    json_object *value; /* NULL when never seen */
    int64_t ms;
    ps_mark mark;
} ps_time_field;

typedef struct ps_lamport {
    int64_t counter;
    char *id; /* owned; NULL when counter == 0 */
} ps_lamport;

typedef struct ps_chat {
    char *id;
    ps_field *fields; /* sorted by name, unique */
    size_t nfields, capfields;
    ps_message *messages; /* sorted by id, unique (after ps_chat_normalize) */
    size_t nmessages, capmessages;
    ps_time_field created_at, updated_at, last_modified;
    bool has_touched; /* a write to the chat itself was seen */
    ps_stamp touched; /* the newest write of any kind but a deletion: a chat
                       * exists even empty, and liveness is known without
                       * loading every message */
    bool has_tombstone;
    ps_stamp tombstone;
    ps_lamport deleted_lamport; /* the tombstone's tuple as clients see it */
    ps_lamport lamport;
    ps_mark header;      /* touched, the tombstone and lamport */
    int64_t revived_seq; /* change sequence at which it last came back from deletion */
    bool stored;         /* transient: it was loaded from the store */
    bool stored_live;    /* transient: it was live when loaded */
    int64_t stored_counter; /* transient: its Lamport counter when loaded */
} ps_chat;

/* A new empty chat with a copy of `id`; NULL on allocation failure. */
ps_chat *ps_chat_new(const char *id);
void ps_chat_free(ps_chat *chat);

/* -1, 0, 1 as a is older than, the same as, newer than b. */
int ps_stamp_cmp(const ps_stamp *a, const ps_stamp *b);
ps_code ps_stamp_copy(ps_stamp *dst, const ps_stamp *src);
void ps_stamp_clear(ps_stamp *s);
/* Orders two writes of one register: by stamp, then by value (a NULL value,
 * a tombstone, is oldest), so equal stamps still have one winner. */
int ps_write_cmp(const ps_stamp *sa, json_object *va, const ps_stamp *sb, json_object *vb);
int ps_lamport_cmp(const ps_lamport *a, const ps_lamport *b);
ps_code ps_lamport_set(ps_lamport *l, int64_t counter, const char *id);

/*
 * Joins a field write into the chat: kept if its stamp (then value) is newer
 * than the stored one. Takes over the caller's reference to `value` in every
 * case. Returns PS_OK; *changed tells whether the chat changed.
 */
ps_code ps_chat_put_field(ps_chat *chat, const char *name, json_object *value,
                          const ps_stamp *stamp, bool *changed);
const ps_field *ps_chat_field(const ps_chat *chat, const char *name);

/*
 * Appends a message register without ordering; call ps_chat_normalize() once
 * all are in. Takes over the reference to `value` (NULL = tombstone).
 */
ps_code ps_chat_append_message(ps_chat *chat, const char *id, json_object *value,
                               const ps_stamp *stamp, int64_t order_ts);
/* Frees what a message register owns (not the register itself). */
void ps__message_release(ps_message *m);
/* Sorts messages by id and joins duplicates. */
void ps_chat_normalize(ps_chat *chat);
/* Binary search over normalized messages. */
const ps_message *ps_chat_message(const ps_chat *chat, const char *id);

/* Joins a time field: keeps the earliest (want_min) or latest value. */
bool ps_time_field_join(ps_time_field *into, const ps_time_field *from, bool want_min);

/*
 * Declares the chat's current content one write at `stamp`: every field,
 * live or deleted message and the existence register take it where it is
 * newer, values unchanged. The server does this with its Lamport tick when
 * it returns a merged chat to a legacy client, because that client will
 * send the chat back stamped so: the copy it holds is then exactly this
 * write, and cannot overwrite anything newer than it had (docs/merge.md).
 */
ps_code ps_chat_restamp(ps_chat *chat, const ps_stamp *stamp);

/* Marks every part of the chat clean (just loaded from the store). */
void ps_chat_clear_dirty(ps_chat *chat);
/* Gives every dirty part `seq` and `origin` (copied); parts marked `lost`
 * get the new seq but keep their origin, so the device whose write lost is
 * sent the winner, and the winner's own device is not sent it again. */
ps_code ps_chat_mark_dirty(ps_chat *chat, int64_t seq, const char *origin);
/* Whether any part of the chat is dirty. */
bool ps_chat_is_dirty(const ps_chat *chat);
void ps_mark_clear(ps_mark *m);

/* The newest stamp of any write to the chat; NULL if it has none. */
const ps_stamp *ps_chat_newest_change(const ps_chat *chat);
/* Live unless a tombstone is newer than every change to the chat. */
bool ps_chat_is_live(const ps_chat *chat);

#endif
