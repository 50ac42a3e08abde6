/*
 * Conversions of a ps_chat: from a chat as legacy clients send it, to the
 * chat they expect back, and to and from the internal state the store keeps.
 * The state form carries every stamp, so a stored chat merges exactly as it
 * did in memory.
 */
#ifndef PS_CHAT_CODEC_H
#define PS_CHAT_CODEC_H

#include "core/chat.h"

/* How an incoming legacy chat is stamped. */
typedef struct ps_ingest {
    const char *device;  /* the request's deviceId, or "" */
    int64_t now_ms;      /* the server's clock */
    int64_t max_skew_ms; /* times later than now + this are clamped to it */
} ps_ingest;

/*
 * Turns one validated legacy chat into registers, every write stamped with
 * the chat's lastModified (else updatedAt, else createdAt, else 0), its
 * updatedAtLamport counter and its writer. Messages with isPrivate: true are
 * dropped here, so they never reach the store; a message {id, deleted: true}
 * is a tombstone write. *out is the caller's.
 */
ps_code ps__chat_from_legacy(json_object *legacy, const ps_ingest *in, ps_chat **out);

/*
 * Turns one validated v2 change (docs/protocol.md) into registers, every
 * write stamped (at clamped, else now; clock; the request's device). A
 * change is a write to the chat's existence too, unless it is deleteChat.
 */
ps_code ps__chat_from_change(json_object *change, const ps_ingest *in, ps_chat **out);

/* The stamp ps__chat_from_legacy gives `legacy`; the caller clears it. */
ps_code ps__legacy_stamp(json_object *legacy, const ps_ingest *in, ps_stamp *out);

/*
 * The chat as clients see it: its fields, live messages ordered by timestamp
 * then first received, the time fields, and updatedAtLamport. A new object
 * for the caller.
 */
json_object *ps__chat_to_legacy(const ps_chat *chat);

/*
 * Whether a client that sent `sent` (stamped `sent_stamp`) lacks something of
 * `merged`: a field or message it sent that merged differently, or a write it
 * could not have seen (newer than its copy). Fields it left out on purpose
 * (createdAt, model, ...) do not count.
 */
bool ps__chat_differs_from_sent(const ps_chat *merged, json_object *sent,
                               const ps_stamp *sent_stamp);

/*
 * Internal state, for the store: a new object / a new chat for the caller.
 * The header form leaves the messages out (the store keeps them in rows);
 * from_json reads either form. A chat read back is clean (not dirty).
 */
json_object *ps__chat_state_to_json(const ps_chat *chat);
json_object *ps__chat_header_to_json(const ps_chat *chat);
ps_code ps__chat_state_from_json(json_object *state, ps_chat **out, ps_error *err);

#endif
