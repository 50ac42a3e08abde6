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
 * json_object in it; ps__chat_free() releases them all.
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
 * Who wrote a change and when. Order (ps__stamp_cmp, docs/merge.md "Which
 * write is newer"): by lamport first; at equal lamport a time-only write
 * placed there is newer than the Lamport write it was placed after; Lamport
 * writes then by (device, ts) as the Polyglot client decides, time-only
 * writes by (ts, device).
 *
 * A time-only write (no client counter) is placed by the server on arrival
 * (ps__chat_time_place): at the highest counter among the chat's writes
 * older in time than it, with `timed` set, so it is newer than the writes
 * its time follows and older than those made after it, of either kind.
 */
typedef struct ps_stamp {
    int64_t ts;      /* ms since epoch, clamped at ingest */
    int64_t lamport; /* the writer's Lamport counter, or the arrival position */
    char *device;    /* writer's device id, "" if unknown; owned */
    bool timed;      /* a time-only write placed by the server (lamport > 0) */
} ps_stamp;

/*
 * Where a register's current value came from, for incremental pulls: the
 * server's change sequence number when it landed and the device that sent
 * it. The merge knows nothing of these; it only sets `dirty` on what it
 * changed, and the server fills seq and origin of dirty parts before saving.
 */
typedef struct ps_mark {
    int64_t seq;  /* 0 = not stored yet */
    char *origin; /* owned; NULL = unknown */
    bool dirty;   /* changed since loaded from the store */
    bool lost;    /* a write to it lost: re-announce it (see ps__chat_mark_dirty) */
} ps_mark;

typedef struct ps_field {
    char *name;         /* owned */
    json_object *value; /* one reference held */
    ps_stamp stamp;
    ps_mark mark;
} ps_field;

/*
 * A message value as the server's store writes it, made ahead of the write
 * transaction (store.h, values_pack_ahead): the value's text packed with
 * dictionary `dict` of store user `user` into `frame` (packed false: the
 * text is stored as it is). The save uses it only when `user` and `dict`
 * are what it would pack with then; else it packs the text itself.
 */
typedef struct ps_value_form {
    const void *frame;
    size_t len;
    int64_t user;
    uint32_t dict;
    bool packed;
} ps_value_form;

/*
 * A new chat's pack as the server's store writes it, made ahead of the
 * write transaction (store.h, values_pack_ahead): `raw`, the pack's bytes
 * as the save would lay them out (pack_codec.h, a based pack: every seq
 * relative to the chat's, unknown until then), compressed with dictionary
 * `dict` of store user `user` into `frame`. The save uses the frame only
 * when `raw` is what it would lay out then (each entry read back and
 * compared with the message it saves), and `user` and `dict` are what it
 * would compress with; else it compresses them itself.
 */
typedef struct ps_pack_form {
    const char *raw;
    size_t raw_len;
    const void *frame;
    size_t len;
    int64_t user;
    uint32_t dict; /* the zstd dictionary it was compressed with (0: none) */
    bool lz4;      /* an LZ4 frame (a legacy save's pack), not zstd */
} ps_pack_form;

typedef struct ps_message {
    char *id;           /* owned */
    json_object *value; /* the message object; NULL for a deleted message */
    ps_stamp stamp;
    int64_t order_ts; /* the message's own timestamp, for display order */
    /* When the server first received it, for display order among equal
     * timestamps: >= 0 as numbered by the store; -(i + 1) for the i-th
     * message of an upload not numbered yet (ps__chat_number_received). */
    int64_t received;
    ps_mark mark;
    /* value's stored form made ahead, or NULL; borrowed (its maker, the
     * request, outlives the save) and carried with value by the merge */
    const ps_value_form *form;
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
    ps_message *messages; /* sorted by id, unique (after ps__chat_normalize) */
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
    ps_mark header;        /* touched, the tombstone and lamport */
    int64_t revived_seq;   /* change sequence at which it last came back from deletion */
    int64_t next_received; /* the receive number the next new message gets */
    bool stored;           /* transient: it was loaded from the store */
    bool stored_live;      /* transient: it was live when loaded */
    /* transient: a deletion of it lost (it stays live): devices that dropped
     * it on their own deletion need it whole again, with a fresh tuple */
    bool deletion_lost;
    int64_t stored_counter; /* transient: its Lamport counter when loaded */
    /* transient: its pack made ahead, or NULL; borrowed (its maker, the
     * request, outlives the save) */
    const ps_pack_form *pack_form;
} ps_chat;

/* A new empty chat with a copy of `id`; NULL on allocation failure. */
ps_chat *ps__chat_new(const char *id);
void ps__chat_free(ps_chat *chat);

/* -1, 0, 1 as a is older than, the same as, newer than b. */
int ps__stamp_cmp(const ps_stamp *a, const ps_stamp *b);
ps_code ps__stamp_copy(ps_stamp *dst, const ps_stamp *src);
void ps__stamp_clear(ps_stamp *s);
/* Orders two writes of one register: by stamp, then by value (a NULL value,
 * a tombstone, is oldest), so equal stamps still have one winner. */
int ps__write_cmp(const ps_stamp *sa, json_object *va, const ps_stamp *sb, json_object *vb);
int ps__lamport_cmp(const ps_lamport *a, const ps_lamport *b);
ps_code ps__lamport_set(ps_lamport *l, int64_t counter, const char *id);

/*
 * Joins a field write into the chat: kept if its stamp (then value) is newer
 * than the stored one. Takes over the caller's reference to `value` in every
 * case. Returns PS_OK; *changed tells whether the chat changed.
 */
ps_code ps__chat_put_field(ps_chat *chat, const char *name, json_object *value,
                           const ps_stamp *stamp, bool *changed);
const ps_field *ps__chat_field(const ps_chat *chat, const char *name);

/*
 * Appends a message register without ordering; call ps__chat_normalize() once
 * all are in. Takes over the reference to `value` (NULL = tombstone).
 */
ps_code ps__chat_append_message(ps_chat *chat, const char *id, json_object *value,
                                const ps_stamp *stamp, int64_t order_ts);
/* Frees what a message register owns (not the register itself). */
void ps__message_release(ps_message *m);
/* Sorts messages by id and joins duplicates. */
void ps__chat_normalize(ps_chat *chat);
/* Binary search over normalized messages. */
const ps_message *ps__chat_message(const ps_chat *chat, const char *id);

/* Joins a time field: keeps the earliest (want_min) or latest value. */
bool ps__time_field_join(ps_time_field *into, const ps_time_field *from, bool want_min);

/*
 * Where a time-only write made at `ts` goes in the Lamport order of `stored`:
 * the highest counter among the stamps it holds (fields, loaded messages,
 * existence, deletion) whose time is before `ts`; 0 when none.
 */
int64_t ps__chat_time_place(const ps_chat *stored, int64_t ts);
/* Gives every time-only write of `incoming` (lamport 0) the counter
 * `place` (flagged `timed`); nothing when place is 0. */
void ps__chat_place_time_only(ps_chat *incoming, int64_t place);

/* Display order of two messages: timestamp, then first received, then id
 * (only for two never numbered, which cannot both be in one chat). */
int ps__message_order_cmp(const ps_message *a, const ps_message *b);

/* Gives messages not numbered yet (received < 0) the chat's next receive
 * numbers, in the order they arrived. */
void ps__chat_number_received(ps_chat *chat);

/* Marks every part of the chat clean (just loaded from the store). */
void ps__chat_clear_dirty(ps_chat *chat);
/* Gives every dirty part `seq` and `origin` (copied). Parts marked `lost`
 * (a write from `origin` lost to them) get the new seq but keep the origin
 * of their value, so the winner's own device is not sent it again — unless
 * that origin is `origin` itself, the device that now holds another value:
 * then the origin becomes "" so that device's pulls carry the winner. */
ps_code ps__chat_mark_dirty(ps_chat *chat, int64_t seq, const char *origin);
/* Whether any part of the chat is dirty. */
bool ps__chat_is_dirty(const ps_chat *chat);
void ps__mark_clear(ps_mark *m);

/* The newest stamp of any write to the chat; NULL if it has none. */
const ps_stamp *ps__chat_newest_change(const ps_chat *chat);
/* Live unless a tombstone is newer than every change to the chat. */
bool ps__chat_is_live(const ps_chat *chat);

#endif
