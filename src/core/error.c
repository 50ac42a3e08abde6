/* ps_strerror and the ps_error helpers: the one place error text is made. */
#include "polysync/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

const char *ps_strerror(ps_code code)
{
    switch (code) {
    case PS_OK:
        return "no error";
    case PS_ERR_NOMEM:
        return "out of memory";
    case PS_ERR_MALFORMED:
        return "malformed JSON";
    case PS_ERR_UTF8:
        return "invalid UTF-8";
    case PS_ERR_TOO_DEEP:
        return "JSON nested too deeply";
    case PS_ERR_INVALID:
        return "invalid payload";
    case PS_ERR_TOO_LARGE:
        return "too large";
    case PS_ERR_NOT_FOUND:
        return "not found";
    case PS_ERR_STORE:
        return "storage error";
    case PS_ERR_IO:
        return "I/O error";
    case PS_ERR_CONFIG:
        return "configuration error";
    case PS_ERR_SCHEMA:
        return "store schema is newer than this polysync";
    case PS_ERR_BUSY:
        return "store is busy";
    case PS_ERR_BAD_CURSOR:
        return "invalid sync cursor";
    case PS_ERR_EXPIRED:
        return "sync cursor expired";
    case PS_ERR_BAD_GZIP:
        return "invalid gzip data";
    case PS_ERR_ENCODING:
        return "unsupported content encoding";
    case PS_ERR_UNAUTHORIZED:
        return "authentication required";
    case PS_ERR_INVALID_TOKEN:
        return "invalid token";
    case PS_ERR_RATE_LIMITED:
        return "rate limited";
    case PS_ERR_QUOTA:
        return "storage quota exceeded";
    case PS_ERR_UNAVAILABLE:
        return "store unavailable";
    case PS_ERR_METHOD_NOT_ALLOWED:
        return "method not allowed";
    case PS_ERR_MEDIA_TYPE:
        return "unsupported media type";
    case PS_ERR_TOO_MANY_REQUESTS:
        return "too many requests at once";
    case PS_ERR_SHUTTING_DOWN:
        return "server shutting down";
    case PS_ERR_BAD_FRAMING:
        return "ambiguous request framing";
    case PS_ERR_TOKEN_REVOKED:
        return "token revoked";
    case PS_ERR_USER_DISABLED:
        return "user disabled";
    case PS_ERR_BODY_TOO_LARGE:
        return "request body too large";
    case PS_ERR_INTERNAL:
        return "internal server error";
    case PS_ERR_OVERLOADED:
        return "server overloaded";
    case PS_ERR_UPLOAD_TOO_SLOW:
        return "upload too slow";
    case PS_ERR_BAD_HANDSHAKE:
        return "bad WebSocket handshake";
    case PS_ERR_ORIGIN_NOT_ALLOWED:
        return "origin not allowed";
    case PS_ERR_UPGRADE_REQUIRED:
        return "unsupported WebSocket version";
    case PS_ERR_TOO_MANY_SOCKETS:
        return "too many live sockets";
    }
    return "unknown error";
}

void ps_error_clear(ps_error *err)
{
    if (!err)
        return;
    err->code = PS_OK;
    err->chat_index = -1;
    err->field[0] = '\0';
    err->message[0] = '\0';
}

ps_code ps_error_set(ps_error *err, ps_code code, long chat_index, const char *field,
                     const char *fmt, ...)
{
    if (!err)
        return code;
    err->code = code;
    err->chat_index = chat_index;
    snprintf(err->field, sizeof err->field, "%s", field ? field : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
    return code;
}
