/*
 * A chat's legacy rendering (what ps__chat_to_legacy makes: the JSON legacy
 * clients receive) put together from what the store keeps of it: the
 * chat-level state, rendered with no messages, and the stored text of each
 * live message spliced into its "messages" array in display order. The
 * messages are copied as text, never parsed, so serving a chat costs about
 * what copying a stored rendering did, while each message is stored once
 * (docs/storage.md, "Each message once").
 */
#ifndef PS_DOC_RENDER_H
#define PS_DOC_RENDER_H

#include "core/chat.h"
#include "core/dynbuf.h"
#include "polysync/error.h"

#include <stddef.h>

typedef struct ps_doc_builder {
    ps_dynbuf own;   /* the rendering, when made here */
    ps_dynbuf *doc;  /* where it is being made: &own, or the caller's buffer */
    size_t from;     /* where it begins in *doc */
    ps_dynbuf tail;  /* what follows the messages array's '[' in the shell */
    size_t messages; /* added so far */
} ps_doc_builder;

void ps_doc_builder_init(ps_doc_builder *b);
void ps_doc_builder_free(ps_doc_builder *b);

/* The chat rendered with no messages (its "shell"), kept beside its state
 * so a read need not parse the state: *out replaced. */
PS_MUST_CHECK ps_code ps_doc_shell(const ps_chat *chat, ps_dynbuf *out);

/* Starts a chat from its shell (ps_doc_shell's) or, when none was kept
 * (shell_len 0: saved before schema 8), from its stored state JSON
 * (chat_codec.h's, no messages). `into`: the buffer it is appended to (a
 * piece of an answer: no copy of the chat afterwards), or NULL: the
 * builder's own. On failure the caller cuts `into` back to b->from. */
PS_MUST_CHECK ps_code ps_doc_start(ps_doc_builder *b, ps_dynbuf *into, const char *shell,
                                   size_t shell_len, const char *state, size_t state_len,
                                   ps_error *err);
/* Appends one message's JSON text (the next in display order). */
PS_MUST_CHECK ps_code ps_doc_add_message(ps_doc_builder *b, const char *json, size_t len);
/* Or: the buffer to append the next message's text to, the separator
 * already added (for text decompressed in place). */
PS_MUST_CHECK ps_code ps_doc_next_message(ps_doc_builder *b, ps_dynbuf **into);
/* Closes the array; *doc (its bytes in *b->doc, valid until the next start
 * or that buffer's next growth) and *len. */
PS_MUST_CHECK ps_code ps_doc_finish(ps_doc_builder *b, const char **doc, size_t *len);

#endif
