/*
 * A growable byte buffer with a hard cap fixed at creation (after curl's
 * dynbuf): request bodies, decompressed bodies and responses all go through
 * one, so no client can make the server allocate without bound.
 */
#ifndef PS_DYNBUF_H
#define PS_DYNBUF_H

#include "polysync/error.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A failed append leaves the buffer short: every result must be looked at. */
#define PS_MUST_CHECK __attribute__((warn_unused_result))

typedef struct ps_dynbuf {
    char *data; /* owned; always NUL-terminated when not NULL */
    size_t len;
    size_t cap;   /* allocated bytes */
    size_t limit; /* growing past this fails with PS_ERR_TOO_LARGE */
} ps_dynbuf;

void ps__dynbuf_init(ps_dynbuf *b, size_t limit);
/* Makes room for n more bytes at once (a body of known length is then read
 * without the copies of doubling). PS_ERR_TOO_LARGE past the limit. */
PS_MUST_CHECK ps_code ps__dynbuf_reserve(ps_dynbuf *b, size_t n);
/* Makes an empty buffer use `data` (malloc'ed, `cap` bytes, cap >= 1) from
 * now on, freeing what it had. */
void ps__dynbuf_adopt(ps_dynbuf *b, char *data, size_t cap);
/* Appends n bytes. PS_ERR_TOO_LARGE past the limit (buffer unchanged). */
PS_MUST_CHECK ps_code ps__dynbuf_add(ps_dynbuf *b, const void *p, size_t n);
PS_MUST_CHECK ps_code ps__dynbuf_adds(ps_dynbuf *b, const char *s);
PS_MUST_CHECK ps_code ps__dynbuf_addf(ps_dynbuf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Appends v in decimal (what "%" PRId64 writes), without printf: for
 * numbers on every request's path. */
PS_MUST_CHECK ps_code ps__dynbuf_add_int(ps_dynbuf *b, int64_t v);
/* Appends s as a JSON string literal, quotes included. */
PS_MUST_CHECK ps_code ps__dynbuf_add_json_string(ps_dynbuf *b, const char *s);
/* Hands the bytes to the caller (free() them) and resets the buffer. */
char *ps__dynbuf_take(ps_dynbuf *b, size_t *len);
void ps__dynbuf_reset(ps_dynbuf *b);
void ps__dynbuf_free(ps_dynbuf *b);

#endif
