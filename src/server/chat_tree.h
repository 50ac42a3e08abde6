/*
 * A legacy chat's json-c tree built from simdjson's stage 1 instead of
 * json-c's tokener, for the merge of a legacy upload (legacy_pipe.c).
 *
 * Why: a first upload parses every chat once into the json-c tree the
 * merge works on, then writes each message's compact text (its stored
 * value, its base hash). The tokener (a state machine a byte at a time,
 * each key copied twice, the C locale taken and dropped around each
 * parse) and the writer were a quarter of that upload's CPU
 * (docs/performance.md, "the tree from stage 1"). Here stage 1 (the SIMD
 * scan content_hash.cpp already uses) lists the tokens, the tree is made
 * from them with json-c's own constructors, the keys every chat repeats
 * are not copied at all (static, json-c's constant keys), and a message
 * whose bytes already are its compact text keeps those bytes as its text
 * instead of being written out again (most clients send compact JSON).
 */
#ifndef PS_CHAT_TREE_H
#define PS_CHAT_TREE_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * The json-c tree of `text` (len bytes, PS_CONTENT_HASH_PADDING readable
 * bytes after them, of any value), a JSON object that passed the
 * pre-check or the content hash (trusted JSON): exactly the tree
 * ps__json_parse_trusted gives — the same values, json-c types (int or
 * double; null as NULL), key order, a double with its own text. Each
 * object in the root's "messages" array whose bytes are already its
 * compact text (json_compact.h: no space between tokens, strings escaped
 * as json-c writes them, integers as json-c prints them) has those bytes
 * kept as its text (ps__json_kept). *out is a new reference.
 *
 * False, with nothing made, when it does not build the tree: the root is
 * not an object; a key twice in an object or a key with an escaped NUL
 * (json-c keeps the last value, cuts the key); a string with a surrogate
 * escape (json-c's and simdjson's readings of a lone one differ); an
 * integer of over 18 digits (json-c clamps one out of range); out of
 * memory. The caller then parses with json-c, which reads all of these.
 */
bool ps_chat_tree_build(const char *text, size_t len, json_object **out);

#ifdef __cplusplus
}
#endif

#endif
