/* A chat's legacy rendering from its stored parts; see doc_render.h. */
#include "store/doc_render.h"
#include "core/chat_codec.h"
#include "core/json_parse.h"

#include <string.h>

/* No rendering of one chat comes near this (a request body is at most 1 GiB). */
#define DOC_LIMIT ((size_t)2 << 30)

/* In JSON text an unescaped quote only opens or closes a string, so this
 * occurs once: as the "messages" member that ps__chat_to_legacy adds. */
static const char EMPTY_MESSAGES[] = "\"messages\":[]";

void ps_doc_builder_init(ps_doc_builder *b)
{
    ps__dynbuf_init(&b->own, DOC_LIMIT);
    b->doc = &b->own;
    b->from = 0;
    ps__dynbuf_init(&b->tail, DOC_LIMIT);
    b->messages = 0;
}

void ps_doc_builder_free(ps_doc_builder *b)
{
    ps__dynbuf_free(&b->own);
    ps__dynbuf_free(&b->tail);
}

/* Splits a shell at its messages array: up to the '[' into doc, the rest
 * into tail. */
static ps_code split_shell(ps_doc_builder *b, const char *text, size_t len, ps_error *err)
{
    const char *at = text ? strstr(text, EMPTY_MESSAGES) : NULL;
    if (!at || (size_t)(at - text) >= len)
        return ps_error_set(err, PS_ERR_STORE, -1, "", "a chat rendered without messages");
    size_t head = (size_t)(at - text) + sizeof EMPTY_MESSAGES - 2; /* up to the '[' */
    ps_code rc = ps__dynbuf_add(b->doc, text, head);
    if (rc == PS_OK)
        rc = ps__dynbuf_add(&b->tail, text + head, len - head);
    return rc == PS_OK ? PS_OK : ps_error_set(err, rc, -1, "", "out of memory");
}

ps_code ps_doc_shell(const ps_chat *chat, ps_dynbuf *out)
{
    ps__dynbuf_reset(out);
    ps_chat header = *chat; /* a view without messages: rendered, never freed */
    header.nmessages = 0;
    json_object *shell = ps__chat_to_legacy(&header);
    if (!shell)
        return PS_ERR_NOMEM;
    size_t len;
    const char *text = ps__json_text(shell, &len);
    ps_code rc = text ? ps__dynbuf_add(out, text, len) : PS_ERR_NOMEM;
    json_object_put(shell);
    return rc;
}

ps_code ps_doc_start(ps_doc_builder *b, ps_dynbuf *into, const char *shell, size_t shell_len,
                     const char *state, size_t state_len, ps_error *err)
{
    ps__dynbuf_reset(&b->own);
    b->doc = into ? into : &b->own;
    b->from = b->doc->len;
    ps__dynbuf_reset(&b->tail);
    b->messages = 0;
    if (shell_len)
        return split_shell(b, shell, shell_len, err);
    json_object *parsed = NULL;
    ps_chat *chat = NULL;
    ps_code rc = ps__json_parse_trusted(state, state_len, &parsed, err);
    if (rc == PS_OK)
        rc = ps__chat_state_from_json(parsed, &chat, err);
    json_object_put(parsed);
    if (rc != PS_OK)
        return rc == PS_ERR_NOMEM
                   ? rc
                   : ps_error_set(err, PS_ERR_STORE, -1, "", "a stored chat has a corrupt state");
    json_object *rendered = ps__chat_to_legacy(chat); /* the state holds no messages */
    ps__chat_free(chat);
    if (!rendered)
        return ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
    size_t len;
    const char *text = ps__json_text(rendered, &len);
    rc = text ? split_shell(b, text, len, err)
              : ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
    json_object_put(rendered);
    return rc;
}

ps_code ps_doc_next_message(ps_doc_builder *b, ps_dynbuf **into)
{
    *into = b->doc;
    ps_code rc = b->messages ? ps__dynbuf_add(b->doc, ",", 1) : PS_OK;
    b->messages += rc == PS_OK;
    return rc;
}

ps_code ps_doc_add_message(ps_doc_builder *b, const char *json, size_t len)
{
    ps_code rc = b->messages ? ps__dynbuf_add(b->doc, ",", 1) : PS_OK;
    if (rc == PS_OK)
        rc = ps__dynbuf_add(b->doc, json, len);
    b->messages += rc == PS_OK;
    return rc;
}

ps_code ps_doc_finish(ps_doc_builder *b, const char **doc, size_t *len)
{
    ps_code rc = ps__dynbuf_add(b->doc, b->tail.data, b->tail.len);
    *doc = rc == PS_OK ? b->doc->data + b->from : NULL;
    *len = rc == PS_OK ? b->doc->len - b->from : 0;
    return rc;
}
