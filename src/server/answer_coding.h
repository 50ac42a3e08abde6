/*
 * The content coding of an answer (docs/protocol.md, "Compression"): zstd
 * when the client accepts it, else gzip when it accepts that, else none.
 *
 * zstd because browsers ask for it (Chromium sends "gzip, deflate, br,
 * zstd"; Firefox from 126) and a fresh device's pull is the biggest answer
 * there is: on the 63 MB reference history zstd level 1 takes ~1/3 of
 * zlib level 1's CPU for fewer bytes, and the browser decodes it ~4×
 * faster (docs/performance.md, "zstd answers"). gzip stays for every
 * other client (Safari, curl without zstd); requests stay gzip (gzip.h).
 */
#ifndef PS_ANSWER_CODING_H
#define PS_ANSWER_CODING_H

#include "core/dynbuf.h"
#include "server/gzip.h"

#include <stdbool.h>
#include <zstd.h>

typedef enum ps_coding { PS_CODING_IDENTITY, PS_CODING_GZIP, PS_CODING_ZSTD } ps_coding;

/* Whether an Accept-Encoding value accepts `coding` ("gzip", "zstd"): named
 * with a q-value above 0, or covered by "*" with one and not named with
 * q=0 (RFC 9110, 12.5.3). */
bool ps_accepts_coding(const char *accept_encoding, const char *coding);
/* The coding answers to this Accept-Encoding value get. */
ps_coding ps_coding_choose(const char *accept_encoding);
/* "gzip" or "zstd"; NULL for identity. */
const char *ps_coding_name(ps_coding coding);

/* Compresses one answer, whole or piece by piece. */
typedef struct ps_encoder {
    ps_coding coding;
    ps_deflater gzip;
    ZSTD_CCtx *zstd;
} ps_encoder;

ps_code ps_encoder_init(ps_encoder *e, ps_coding coding);
/* Appends the coded `len` bytes to `out` (with `last`, the end of the
 * stream); some may be held back until the next call. */
ps_code ps_encoder_feed(ps_encoder *e, const void *data, size_t len, bool last, ps_dynbuf *out);
void ps_encoder_free(ps_encoder *e);

#endif
