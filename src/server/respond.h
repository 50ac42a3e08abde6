/*
 * What a handler answers, before it becomes an HTTP response: a status, a
 * JSON body and the few headers handlers choose. server.c adds the headers
 * every answer carries (Content-Type, CORS, Cache-Control).
 * Every error answer is {"error": message, "code": code} (+ "chatIndex",
 * "field" when the error is about one chat); docs/protocol.md lists the codes.
 * Every error leaves the server through ps_reply_from_error (one ps_code,
 * one status and code), so each code is answered one way.
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

/*
 * The answer for a failed operation: the status and code that fit err->code
 * (docs/protocol.md, "Errors"). Storage failures and memory exhaustion are
 * logged with their detail and answered with a generic message, so no
 * internals leak to clients; the edge's refusals (PS_ERR_METHOD_NOT_ALLOWED
 * and the codes after it in error.h) and client errors send err->message,
 * the server's own sentence, as it is. PS_ERR_INTERNAL is logged and sent.
 */
void ps_reply_from_error(ps_reply *r, const ps_error *err);

/* ps_reply_from_error for a failure found here rather than returned:
 * the same status, code and logging as an err with this code and message. */
void ps_reply_from_code(ps_reply *r, ps_code code, const char *message);

/* /health's 503 store_unavailable: `reason` is the store probe's verdict
 * (corrupt, read-only, cannot be read), meant for the operator reading the
 * answer, so it is sent as it is, unlike a PS_ERR_UNAVAILABLE of a request,
 * whose detail only the log sees. */
void ps_reply_store_unhealthy(ps_reply *r, const char *reason);

#endif
