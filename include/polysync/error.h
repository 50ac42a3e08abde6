/*
 * polysync error codes, shared by the library, the server and the tools.
 *
 * One enum that only ever grows: a value, once released, keeps its number and
 * meaning. Functions return a ps_code; the human detail lives in a ps_error
 * filled by the callee, never printed from deep inside the library.
 */
#ifndef POLYSYNC_ERROR_H
#define POLYSYNC_ERROR_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum ps_code {
    PS_OK = 0,
    PS_ERR_NOMEM = 1,          /* an allocation failed */
    PS_ERR_MALFORMED = 2,      /* not JSON at all, or truncated */
    PS_ERR_UTF8 = 3,           /* a string is not valid UTF-8 */
    PS_ERR_TOO_DEEP = 4,       /* nesting deeper than the limit */
    PS_ERR_INVALID = 5,        /* JSON, but not a valid payload */
    PS_ERR_TOO_LARGE = 6,      /* over a size limit */
    PS_ERR_NOT_FOUND = 7,      /* no such object */
    PS_ERR_STORE = 8,          /* the storage backend failed */
    PS_ERR_IO = 9,             /* a file or socket operation failed */
    PS_ERR_CONFIG = 10,        /* bad option or configuration */
    PS_ERR_SCHEMA = 11,        /* the store was written by a newer polysync */
    PS_ERR_BUSY = 12,          /* the store is locked by someone else */
    PS_ERR_BAD_CURSOR = 13,    /* a sync cursor the server did not issue */
    PS_ERR_EXPIRED = 14,       /* a sync cursor older than the tombstone retention */
    PS_ERR_BAD_GZIP = 15,      /* a compressed body that does not decompress */
    PS_ERR_ENCODING = 16,      /* a content encoding polysync does not speak */
    PS_ERR_UNAUTHORIZED = 17,  /* no credentials where they are needed */
    PS_ERR_INVALID_TOKEN = 18, /* credentials that are not acceptable */
    PS_ERR_RATE_LIMITED = 19,  /* too many requests; retry later */
    PS_ERR_QUOTA = 20,         /* the user's storage quota is used up */
    PS_ERR_UNAVAILABLE = 21,   /* the store cannot be reached now; retry later */
    /* The server's refusals at its edge, each answered with its own status
     * and code (docs/protocol.md, "Errors"); a client sees them too. */
    PS_ERR_METHOD_NOT_ALLOWED = 22, /* the endpoint does not take that method (405) */
    PS_ERR_MEDIA_TYPE = 23,         /* a body that is not application/json (415) */
    PS_ERR_TOO_MANY_REQUESTS = 24,  /* too many requests of one user at once (429) */
    PS_ERR_SHUTTING_DOWN = 25,      /* the server is stopping; retry shortly (503) */
    PS_ERR_BAD_FRAMING = 26,        /* a request head that reads two ways (400) */
    PS_ERR_TOKEN_REVOKED = 27,      /* a valid token the operator revoked (401) */
    PS_ERR_USER_DISABLED = 28,      /* the operator disabled the user (403) */
    PS_ERR_BODY_TOO_LARGE = 29,     /* a request body over the server's limit (413) */
    PS_ERR_INTERNAL = 30,           /* the server could not build its answer (500) */
    PS_ERR_OVERLOADED = 31,         /* the server is at a capacity limit; retry later (503) */
    PS_ERR_UPLOAD_TOO_SLOW = 32,    /* a large body arrived too slowly (408) */
    PS_ERR_BAD_HANDSHAKE = 33,      /* a WebSocket upgrade that is not well formed (400) */
    PS_ERR_ORIGIN_NOT_ALLOWED = 34, /* a WebSocket upgrade from a refused origin (403) */
    PS_ERR_UPGRADE_REQUIRED = 35,   /* a WebSocket version the server does not speak (426) */
    PS_ERR_TOO_MANY_SOCKETS = 36,   /* the user's live sockets are at their cap (429) */
} ps_code;

/* A static English description of `code`; never NULL. */
const char *ps_strerror(ps_code code);

/*
 * Detail for a failed call. `chat_index` and `field` say where in a request
 * the problem is (-1 / "" when it is not about one chat).
 */
typedef struct ps_error {
    ps_code code;
    long chat_index;
    char field[128];
    char message[256];
} ps_error;

/* Resets `err` to "no error". */
void ps_error_clear(ps_error *err);

/* Fills `err` (if not NULL) and returns `code`, so callers can write
 * `return ps_error_set(err, PS_ERR_INVALID, i, "title", "must be a string");` */
ps_code ps_error_set(ps_error *err, ps_code code, long chat_index, const char *field,
                     const char *fmt, ...) __attribute__((format(printf, 5, 6)));

#ifdef __cplusplus
}
#endif
#endif
