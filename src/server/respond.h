/*
 * What a handler answers, before it becomes an HTTP response: a status, a
 * JSON body and the few headers handlers choose. server.c adds the headers
 * every answer carries (Content-Type, CORS, Cache-Control).
 * Every error answer is {"error": message, "code": code} (+ "chatIndex",
 * "field" when the error is about one chat); docs/protocol.md lists the codes.
 */
#ifndef PS_RESPOND_H
#define PS_RESPOND_H

#include "core/dynbuf.h"
#include "polysync/error.h"

#include <stdint.h>

/* A body produced piece by piece (streamed), instead of `body`. */
typedef struct ps_reply_stream {
    /* Appends the next piece to out; sets *done after the last one. */
    ps_code (*next)(void *ctx, ps_dynbuf *out, bool *done, ps_error *err);
    void (*free)(void *ctx);
    void *ctx; /* NULL: no stream */
} ps_reply_stream;

struct ps_events;

typedef struct ps_reply {
    unsigned status;
    struct ps_events *events; /* answer with the user's live channel (SSE) */
    const char *events_user;
    ps_dynbuf body;         /* JSON; empty for 204 */
    ps_reply_stream stream; /* when set, the body comes from here */
    char allow[64];         /* Allow header for 405, "" if none */
    unsigned retry_after_s; /* Retry-After header when non-zero */
    bool close_connection;
    const char *www_authenticate; /* WWW-Authenticate on 401; static string */
    const char *allow_origin;     /* CORS: Access-Control-Allow-Origin, or NULL */
    bool hsts;                    /* served over TLS: Strict-Transport-Security */
    bool preflight;               /* a CORS preflight answer */
    const char *request_id;       /* X-Request-Id header, or NULL */
    uint64_t *sent_bytes;         /* when set, counts the body bytes sent (log.h) */
    const char *content_type;     /* NULL: JSON */
} ps_reply;

void ps_reply_init(ps_reply *r, size_t body_limit);
void ps_reply_free(ps_reply *r);

/* An error answer with a code from docs/protocol.md and a message: only
 * for the HTTP edge's refusals that no ps_code stands for (405, 415 type,
 * 429 too_many_requests, 503 shutting_down...); a failure with a ps_code
 * goes through ps_reply_from_error / ps_reply_from_code, so each code is
 * answered one way. Both build the body in one place (respond.c). */
void ps_reply_error(ps_reply *r, unsigned status, const char *code, const char *message);

/*
 * The answer for a failed operation: the status and code that fit err->code.
 * Storage and internal failures are logged with their detail and answered
 * with a generic message, so no internals leak to clients.
 */
void ps_reply_from_error(ps_reply *r, const ps_error *err);

/* ps_reply_from_error for a failure found here rather than returned:
 * the same status, code and logging as an err with this code and message. */
void ps_reply_from_code(ps_reply *r, ps_code code, const char *message);

#endif
