/*
 * Stored legacy renderings (chat_bodies.doc), compressed: one zstd frame per
 * chat, without a dictionary. The SQLite backend tells a frame (BLOB) from
 * a plain rendering (TEXT, written before schema 10) by the column's type.
 *
 * Why whole chats and no dictionary: a rendering is tens of KB, enough for
 * zstd to learn from by itself (3.3x at level 3 on the benchmark's chats;
 * 3.7x with the user's message dictionary, but decompressing 40 % slower),
 * and a fresh device's pull decompresses every chat it is sent, so decoding
 * speed is what the pull pays (docs/storage.md, "Renderings, compressed").
 * Contexts are per thread (created on first use, freed with the thread).
 */
#ifndef PS_DOC_CODEC_H
#define PS_DOC_CODEC_H

#include "core/dynbuf.h"
#include "polysync/error.h"

#include <stdbool.h>
#include <stddef.h>

/* Renderings shorter than this stay plain: a frame buys little on them. */
#define PS_DOC_PACK_MIN 256

/*
 * Compresses a rendering into *out (replaced). *packed false when it is to
 * be stored as it is (short, or the frame would not be smaller); *out is
 * then empty.
 */
PS_MUST_CHECK ps_code ps_doc_pack(const char *text, size_t len, ps_dynbuf *out, bool *packed);

/* Appends the rendering a frame of ps_doc_pack holds to *out (a piece of
 * an answer being made). PS_ERR_STORE when it is not such a frame. */
PS_MUST_CHECK ps_code ps_doc_unpack_append(const void *frame, size_t len, ps_dynbuf *out);

#endif
