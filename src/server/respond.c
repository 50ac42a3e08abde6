/* Error answers and the mapping from ps_code to HTTP; see respond.h. */
#include "server/respond.h"
#include "server/log.h"

#include <stdio.h>

void ps_reply_init(ps_reply *r, size_t body_limit)
{
    r->status = 200;
    ps__dynbuf_init(&r->body, body_limit);
    r->allow[0] = '\0';
    r->retry_after_s = 0;
    r->close_connection = false;
    r->stream = (ps_reply_stream){0};
    r->events = NULL;
    r->events_user = NULL;
    r->www_authenticate = NULL;
    r->allow_origin = NULL;
    r->hsts = false;
    r->preflight = false;
    r->request_id = NULL;
    r->sent_bytes = NULL;
    r->content_type = NULL;
}

void ps_reply_free(ps_reply *r)
{
    ps__dynbuf_free(&r->body);
    if (r->stream.ctx && r->stream.free)
        r->stream.free(r->stream.ctx);
    r->stream = (ps_reply_stream){0};
}

static void error_body(ps_reply *r, unsigned status, const char *code, const char *message,
                       long chat_index, const char *field)
{
    r->status = status;
    ps__dynbuf_reset(&r->body);
    /* Error bodies are small; if even this fails the server sends the
     * status with an empty body rather than nothing. */
    if (ps__dynbuf_adds(&r->body, "{\"error\":") != PS_OK ||
        ps__dynbuf_add_json_string(&r->body, message) != PS_OK ||
        ps__dynbuf_adds(&r->body, ",\"code\":") != PS_OK ||
        ps__dynbuf_add_json_string(&r->body, code) != PS_OK)
        goto fail;
    if (chat_index >= 0 && ps__dynbuf_addf(&r->body, ",\"chatIndex\":%ld", chat_index) != PS_OK)
        goto fail;
    if (field && *field &&
        (ps__dynbuf_adds(&r->body, ",\"field\":") != PS_OK ||
         ps__dynbuf_add_json_string(&r->body, field) != PS_OK))
        goto fail;
    if (ps__dynbuf_adds(&r->body, "}") == PS_OK)
        return;
fail:
    ps__dynbuf_reset(&r->body);
}

void ps_reply_from_error(ps_reply *r, const ps_error *err)
{
    switch (err->code) {
    case PS_ERR_MALFORMED:
        error_body(r, 400, "malformed_json", err->message, -1, NULL);
        return;
    case PS_ERR_UTF8:
        error_body(r, 400, "invalid_utf8", err->message, -1, NULL);
        return;
    case PS_ERR_TOO_DEEP:
        error_body(r, 400, "too_deep", err->message, -1, NULL);
        return;
    case PS_ERR_INVALID:
        error_body(r, 400, "invalid_payload", err->message, err->chat_index, err->field);
        return;
    case PS_ERR_TOO_LARGE:
        error_body(r, 413, "too_large", err->message, err->chat_index, err->field);
        return;
    case PS_ERR_BAD_CURSOR:
        error_body(r, 400, "invalid_cursor", err->message, -1, "cursor");
        return;
    case PS_ERR_EXPIRED:
        error_body(r, 410, "cursor_expired", err->message, -1, "cursor");
        return;
    case PS_ERR_BAD_GZIP:
        error_body(r, 400, "bad_gzip", err->message, -1, NULL);
        return;
    case PS_ERR_ENCODING:
        error_body(r, 415, "unsupported_encoding", err->message, -1, NULL);
        return;
    case PS_ERR_UNAUTHORIZED:
        r->www_authenticate = "Bearer realm=\"polysync\"";
        error_body(r, 401, "unauthorized", err->message, -1, NULL);
        return;
    case PS_ERR_INVALID_TOKEN:
        r->www_authenticate = "Bearer realm=\"polysync\", error=\"invalid_token\"";
        error_body(r, 401, "invalid_token", err->message, -1, NULL);
        return;
    case PS_ERR_QUOTA:
        error_body(r, 507, "quota_exceeded", err->message, -1, NULL);
        return;
    case PS_ERR_NOT_FOUND:
        error_body(r, 404, "not_found", err->message, -1, NULL);
        return;
    case PS_ERR_RATE_LIMITED: /* the caller sets Retry-After: it knows when */
        error_body(r, 429, "rate_limited", err->message, -1, NULL);
        return;
    case PS_ERR_BUSY:
        ps_log_event(PS_LOG_WARN, "store_busy", "%s", err->message);
        r->retry_after_s = 1;
        error_body(r, 503, "store_busy", "the store is busy; retry shortly", -1, NULL);
        return;
    case PS_ERR_UNAVAILABLE:
        fprintf(stderr, "polysyncd: store unavailable: %s\n", err->message);
        r->retry_after_s = 2;
        error_body(r, 503, "store_unavailable", "the store cannot be reached; retry shortly", -1,
                   NULL);
        return;
    case PS_ERR_NOMEM:
        ps_log_event(PS_LOG_ERROR, "out_of_memory", "%s", err->message);
        r->retry_after_s = 1;
        error_body(r, 503, "overloaded", "the server is out of memory; retry later", -1, NULL);
        return;
    /* The edge's refusals: the message is the server's own sentence for
     * the client. Retry-After, where there is one, is the caller's: it
     * knows when. */
    case PS_ERR_METHOD_NOT_ALLOWED: /* the caller sets Allow */
        error_body(r, 405, "method_not_allowed", err->message, -1, NULL);
        return;
    case PS_ERR_MEDIA_TYPE:
        error_body(r, 415, "unsupported_media_type", err->message, -1, NULL);
        return;
    case PS_ERR_TOO_MANY_REQUESTS:
        error_body(r, 429, "too_many_requests", err->message, -1, NULL);
        return;
    case PS_ERR_SHUTTING_DOWN:
        error_body(r, 503, "shutting_down", err->message, -1, NULL);
        return;
    case PS_ERR_BAD_FRAMING: /* what follows the head is never read as a request */
        r->close_connection = true;
        error_body(r, 400, "bad_framing", err->message, -1, NULL);
        return;
    case PS_ERR_TOKEN_REVOKED:
        r->www_authenticate = "Bearer realm=\"polysync\", error=\"invalid_token\"";
        error_body(r, 401, "token_revoked", err->message, -1, NULL);
        return;
    case PS_ERR_USER_DISABLED:
        error_body(r, 403, "user_disabled", err->message, -1, NULL);
        return;
    case PS_ERR_BODY_TOO_LARGE:
        error_body(r, 413, "body_too_large", err->message, -1, NULL);
        return;
    case PS_ERR_OVERLOADED:
        error_body(r, 503, "overloaded", err->message, -1, NULL);
        return;
    case PS_ERR_UPLOAD_TOO_SLOW:
        r->close_connection = true;
        error_body(r, 408, "upload_too_slow", err->message, -1, NULL);
        return;
    case PS_ERR_BAD_HANDSHAKE:
        error_body(r, 400, "bad_handshake", err->message, -1, NULL);
        return;
    case PS_ERR_ORIGIN_NOT_ALLOWED:
        error_body(r, 403, "origin_not_allowed", err->message, -1, NULL);
        return;
    case PS_ERR_UPGRADE_REQUIRED:
        error_body(r, 426, "upgrade_required", err->message, -1, NULL);
        return;
    case PS_ERR_TOO_MANY_SOCKETS:
        error_body(r, 429, "too_many_sockets", err->message, -1, NULL);
        return;
    case PS_ERR_INTERNAL:
        ps_log_event(PS_LOG_ERROR, "internal_error", "%s", err->message);
        error_body(r, 500, "internal_error", err->message, -1, NULL);
        return;
    case PS_OK: /* a caller's bug: answered as a failure all the same */
    case PS_ERR_STORE:
    case PS_ERR_IO:
    case PS_ERR_CONFIG:
    case PS_ERR_SCHEMA:
        break; /* no default: a new ps_code without an answer fails -Wswitch */
    }
    ps_log_event(PS_LOG_ERROR, "store_error", "%s: %s", ps_strerror(err->code), err->message);
    error_body(r, 500, "storage_error", "the server could not complete the request", -1, NULL);
}

void ps_reply_from_code(ps_reply *r, ps_code code, const char *message)
{
    ps_error err;
    ps_error_clear(&err);
    ps_error_set(&err, code, -1, "", "%s", message);
    ps_reply_from_error(r, &err);
}

void ps_reply_store_unhealthy(ps_reply *r, const char *reason)
{
    /* not logged here: health.c logs the store's state when it changes */
    error_body(r, 503, "store_unavailable", reason, -1, NULL);
}
