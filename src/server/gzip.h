/*
 * gzip both ways with zlib: request bodies are inflated as they arrive into
 * a capped buffer (a gzip bomb stops at the cap, never past it), answers are
 * deflated whole or piece by piece for streamed answers.
 */
#ifndef PS_GZIP_H
#define PS_GZIP_H

#include "core/dynbuf.h"

#include <stdbool.h>
#include <zlib.h>

typedef struct ps_inflater {
    z_stream zs;
    bool ended; /* the gzip trailer was seen */
} ps_inflater;

ps_code ps_inflater_init(ps_inflater *in);
/* Inflates `len` bytes into `out` (capped by its limit): PS_ERR_TOO_LARGE
 * past the cap, PS_ERR_BAD_GZIP on corrupt data or data after the end. */
ps_code ps_inflater_feed(ps_inflater *in, const void *data, size_t len, ps_dynbuf *out);
/* The same, handing each piece inflated (at most 16 KiB) to sink(cls, ...)
 * as it comes: nothing is gathered. A sink's code other than PS_OK stops
 * it and is returned. */
typedef ps_code (*ps_inflate_sink)(void *cls, const char *p, size_t n);
ps_code ps_inflater_feed_to(ps_inflater *in, const void *data, size_t len, ps_inflate_sink sink,
                            void *cls);
/* PS_ERR_BAD_GZIP if the body ended before the gzip stream did. */
ps_code ps_inflater_finish(ps_inflater *in);
void ps_inflater_free(ps_inflater *in);

typedef struct ps_deflater {
    z_stream zs;
} ps_deflater;

ps_code ps_deflater_init(ps_deflater *d);
/* Compresses `len` bytes (and, with `last`, the gzip trailer) into `out`. */
ps_code ps_deflater_feed(ps_deflater *d, const void *data, size_t len, bool last, ps_dynbuf *out);
void ps_deflater_free(ps_deflater *d);

#endif
