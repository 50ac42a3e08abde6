/*
 * A device's base: what the server knows a full-state (legacy) device holds
 * of one chat, as a set of 64-bit hashes, one per field value (name, value)
 * and per message value (id, message or tombstone). A value the device
 * re-sends that is in its base was carried along, not written
 * (docs/merge.md, "The base rule").
 *
 * The base of a chat after a sync is everything the device sent, plus
 * everything the server sent back: whichever of the two the device ends up
 * holding (the answer may be lost), its next upload of those values is
 * recognised as carried along.
 */
#ifndef PS_BASE_H
#define PS_BASE_H

#include "core/chat.h"

typedef struct ps_base {
    uint64_t *hashes; /* sorted, unique after ps__base_seal */
    size_t n, cap;
} ps_base;

void ps__base_free(ps_base *b);
/* Adds one hash (ps__base_field_hash's, ps__base_message_hash's). */
ps_code ps__base_add(ps_base *b, uint64_t hash);
/* Adds the hash of every field and message (live or deleted) of `chat`. */
ps_code ps__base_add_chat(ps_base *b, const ps_chat *chat);
/* Sorts and removes duplicates; call before ps__base_has. */
void ps__base_seal(ps_base *b);
bool ps__base_has(const ps_base *b, uint64_t hash);

/* The hash a field value / a message value has in a base. */
uint64_t ps__base_field_hash(const char *name, json_object *value);
uint64_t ps__base_message_hash(const char *id, json_object *value);
/* The same from the value's text (ps__json_text's; NULL: deleted), for a
 * caller that has it already (the store saving the message). */
uint64_t ps__base_message_hash_text(const char *id, const char *text, size_t len);

/*
 * Removes from `incoming` (an upload, as ingested) every field and message
 * whose value is in `base`: the device only carried it along. When nothing
 * is left the upload is no write to the chat's existence either (its
 * `touched` goes). *writes: how many registers are left.
 */
void ps__chat_drop_carried(ps_chat *incoming, const ps_base *base, size_t *writes);

#endif
