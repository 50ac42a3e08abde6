/*
 * Strict JSON parsing for everything that comes from a client: RFC 8259 only
 * (json-c strict mode), UTF-8 validated, nesting bounded, nothing trailing.
 * Each failure maps to its own ps_code so the server can say which it was.
 */
#ifndef PS_JSON_PARSE_H
#define PS_JSON_PARSE_H

#include "polysync/error.h"

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>

#define PS_JSON_MAX_DEPTH 64

/*
 * Parses `len` bytes at `text`. On success *out is a new reference the caller
 * must json_object_put(). On failure *out is NULL and `err` says why
 * (PS_ERR_MALFORMED, PS_ERR_UTF8 or PS_ERR_TOO_DEEP).
 */
ps_code ps__json_parse(const char *text, size_t len, int max_depth, json_object **out,
                       ps_error *err);

/*
 * Parses JSON that polysync wrote itself (the store), or a slice of a body
 * that already passed the pre-check: json-c only, strict. Same ownership.
 */
ps_code ps__json_parse_trusted(const char *text, size_t len, json_object **out, ps_error *err);

/* Compact serialization used for every answer (no slash escaping). The
 * string belongs to `obj` and lives until obj is freed or changed. */
const char *ps__json_text(json_object *obj, size_t *len);

/*
 * The same text, worked out once and kept with `obj` (json-c's userdata
 * serializer): later serializations of obj, alone or inside a parent (a
 * chat's rendering), copy it instead of walking obj again. For values that
 * are never changed once built — a message's value, hashed for its
 * device's base, stored as a row and rendered inside its chat. Out of
 * memory, the text is not kept (as ps__json_text). Scalars are not kept.
 * The text is kept with its length under a serializer of this module's,
 * which json_object_deep_copy cannot copy (it fails): deep-copy a value
 * before its text is kept, never after (no caller does; a copy would
 * carry a text that no longer matches it once changed anyway).
 */
const char *ps__json_text_kept(json_object *obj, size_t *len);

/* Keeps `text` (len bytes) as container `obj`'s text, as ps__json_text_kept
 * would: for a caller that has it already, the very bytes json-c would
 * write for obj (chat_tree.h: a message sent compact). False out of
 * memory (nothing kept). */
bool ps__json_keep_text(json_object *obj, const char *text, size_t len);

/* The text ps__json_text_kept kept with container `obj` (and *len, its
 * length), or NULL when it has none. */
const char *ps__json_kept(json_object *obj, size_t *len);

#endif
