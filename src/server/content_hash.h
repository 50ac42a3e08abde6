/*
 * The content hash of a legacy chat as a client sent it: a 64-bit hash of
 * the JSON value its bytes hold, the same whatever the key order, spacing
 * or escapes, so a chat re-sent as the same data in other bytes is known
 * unchanged without building its json-c tree (sync_legacy.c). Numbers hash
 * by their own text (1, 1.0 and 1e0 differ), arrays keep their order. Read
 * with simdjson's stage 1 and a walk over its tokens (libsimdjson, C++;
 * docs/performance.md, "bytes: ...", has the measured reason). Not
 * cryptographic: a crafted collision could only make the server skip
 * re-merging the crafter's own chat. The same walk can certify that a
 * legacy chat is valid (ps_content_hash_checked), so that it is not
 * parsed only to be validated.
 */
#ifndef PS_CONTENT_HASH_H
#define PS_CONTENT_HASH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * The content hash of `text` (one JSON object) and its "id" string, copied
 * into `id`. False when it has none to give: not an object, no string id
 * (or one of id_size bytes or more), a key twice in one object (json-c
 * keeps the last, so such bytes are merged, never skipped), a key with an
 * escaped NUL (json-c cuts a key there: another key to it), or out of
 * memory; and whenever the text is not JSON the pre-check
 * (json_precheck.h, ps__json_precheck with max_depth) passes: true means
 * the pre-check would pass it, and it is JSON json-c reads, so a chat
 * skipped by its content needs neither (the structure and the depth are
 * checked here, by json_structure.h's grammar over simdjson's tokens;
 * simdjson checks UTF-8, unescaped control characters in strings and
 * escapes; numbers and words are checked here). Never 0 when true.
 */
bool ps_content_hash(const char *text, size_t len, int max_depth, uint64_t *hash, char *id,
                     size_t id_size);

/* Bytes ps_content_hash_in_place may read past the text (simdjson's
 * padding: its scan and its unescaping read whole 64-byte blocks). */
#define PS_CONTENT_HASH_PADDING 64u

/* The same, reading `text` where it lies: PS_CONTENT_HASH_PADDING bytes
 * after it must be readable (their values do not matter; the body spool's
 * chats have them, body_spool.h). ps_content_hash copies the text into a
 * padded buffer first: 4 % of a re-sync in other bytes (perf). */
bool ps_content_hash_in_place(const char *text, size_t len, int max_depth, uint64_t *hash, char *id,
                              size_t id_size);

/*
 * The same two, also saying whether the chat is valid for sure: the walk
 * follows what ps__validate_chat (core/validate.h) asks of a legacy chat.
 * *valid_chat true (only with a hash) promises that ps__json_parse (with
 * max_depth) reads the text and ps__validate_chat, with limits whose
 * max_id_bytes is this one, returns PS_OK: sync_legacy.c merges such a
 * chat without parsing it once more only to validate it.
 *
 * Sound, never complete: false says nothing. Not certified though valid
 * (json-c's reading of these is subtle, and they are rare): a time string
 * (createdAt, updatedAt, lastModified, a message's timestamp) with an
 * escape or over 64 bytes; a time number with a fraction or exponent, or
 * of over 18 digits; the Lamport counter -0 (json-c's 0: only plain digits
 * are certified); any chat without a hash (above: a key twice among them).
 * No error is said: a chat not certified is pre-checked, parsed and
 * validated, and that says why.
 */
bool ps_content_hash_checked(const char *text, size_t len, int max_depth, size_t max_id_bytes,
                             uint64_t *hash, char *id, size_t id_size, bool *valid_chat);
bool ps_content_hash_in_place_checked(const char *text, size_t len, int max_depth,
                                      size_t max_id_bytes, uint64_t *hash, char *id, size_t id_size,
                                      bool *valid_chat);

#ifdef __cplusplus
}
#endif

#endif
