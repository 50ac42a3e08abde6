/*
 * The `chats` array of a legacy /sync or /pushChats body, split chat by chat
 * as the bytes arrive, so the body is never held whole.
 *
 * A body is fed in pieces of any size, cut anywhere (inside a string, a
 * number, a UTF-8 sequence). Every byte goes to one of three places through
 * the sink: the envelope (everything but the elements of the top-level
 * "chats" array: the body with `"chats":[]` in place of the array), the
 * current chat (one element's bytes, exactly its JSON value, no whitespace
 * around), or nowhere (the whitespace and commas between elements).
 *
 * The one decision to know: this is a splitter, not a parser. It checks
 * only what nobody else will see: the separators between elements (one
 * comma between two values, none trailing, `]` closing the array). Each
 * chat is left to the pre-check and json-c (its bytes are exactly one value
 * when they are JSON at all), and the envelope to ps__json_parse, so the
 * result accepts exactly the bodies a whole parse accepts. The key is
 * matched as json-c reads it ("ch\u0061ts" is "chats"); when a body has
 * several "chats" keys json-c keeps the last, so `chats_start` tells the
 * sink that a later array replaces what came before.
 */
#ifndef PS_CHAT_SPLITTER_H
#define PS_CHAT_SPLITTER_H

#include "polysync/error.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Where the bytes go. Each callback returns PS_OK to go on; any other code
 * stops the splitter and is returned by ps__chat_splitter_feed. */
typedef struct ps_chat_splitter_sink {
    void *cls;
    ps_code (*envelope)(void *cls, const char *p, size_t n);
    /* the next bytes of the current chat */
    ps_code (*chat_part)(void *cls, const char *p, size_t n);
    /* the current chat is complete; `offset`: its first byte in the body */
    ps_code (*chat_end)(void *cls, uint64_t offset);
    /* a top-level "chats" array begins: chats ended before belong to an
     * earlier one, which json-c would drop */
    ps_code (*chats_start)(void *cls);
} ps_chat_splitter_sink;

#define PS_SPLITTER_KEY_MAX 64 /* longer keys cannot spell "chats" */

/* Plain data, no allocation: zero it and set the sink (ps__chat_splitter_init). */
typedef struct ps_chat_splitter {
    ps_chat_splitter_sink sink;
    uint64_t pos; /* bytes taken so far */
    int depth;    /* open containers, the root's included */
    bool in_string, escaped;
    int where; /* outside the array, between its elements, in one */
    int next;  /* between elements: what may come */
    int kind;  /* of the chat being read: container, string, scalar */
    uint64_t chat_start;
    /* the last string at depth 1 and what followed it (is it a key?) */
    char key[PS_SPLITTER_KEY_MAX];
    size_t key_len;
    bool key_string; /* the string being read is at depth 1 */
    bool key_escaped, key_long;
    int key_state;
    bool avx2;   /* chats crossed with AVX2, PCLMUL, POPCNT (else SSE2) */
    bool failed; /* then every call answers failed_rc */
    ps_code failed_rc;
} ps_chat_splitter;

void ps__chat_splitter_init(ps_chat_splitter *s, const ps_chat_splitter_sink *sink);
/* The same, taking the SSE2 path whatever the processor (for the tests:
 * both paths must agree). */
void ps__chat_splitter_init_baseline(ps_chat_splitter *s, const ps_chat_splitter_sink *sink);

/* Takes the next `n` bytes. PS_ERR_MALFORMED (with the byte offset) when
 * the separators of "chats" are wrong; a sink's code when it stops. After
 * a failure nothing more is taken (the same code again). */
ps_code ps__chat_splitter_feed(ps_chat_splitter *s, const char *p, size_t n, ps_error *err);

/* The body is over: PS_ERR_MALFORMED if it ended inside "chats". */
ps_code ps__chat_splitter_finish(ps_chat_splitter *s, ps_error *err);

#endif
