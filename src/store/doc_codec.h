/*
 * Stored legacy renderings (chat_docs.doc, SQLite schema 10), compressed:
 * one LZ4 frame (the standard frame format of Debian's liblz4, with the
 * content size) per chat. The SQLite backend tells a frame (BLOB) from a
 * plain rendering (TEXT: short ones) by the column's type.
 *
 * Why LZ4 and not zstd, which the message values use: a fresh device's
 * pull decompresses every chat it is sent (63 MB for the benchmark's
 * history), so decoding speed is what the pull pays. On the benchmark's
 * chats LZ4 decodes at ~2 GB/s (zstd level 3: ~0.6 GB/s, which doubled the
 * pull's server CPU) for a 2.2x ratio (zstd: 3.3x) — and the store came
 * out the same size either way, as zstd's ~10 KB frames left 40 % of their
 * 16 KiB pages empty. docs/storage.md, "Renderings", has the figures.
 * Contexts are per thread (created on first use, freed with the thread).
 */
#ifndef PS_DOC_CODEC_H
#define PS_DOC_CODEC_H

#include "core/dynbuf.h"
#include "polysync/error.h"

#include <stdbool.h>
#include <stddef.h>

/* 1: renderings are stored as frames; 0: as text (the reader takes both).
 * The trade, measured on the benchmark's history: frames take the store
 * from 123 to 88 MB and add ~20 ms of server CPU (LZ4 decoding) to a
 * fresh device's pull of the whole 63 MB (docs/storage.md, "Renderings").
 * test_store_docs checks the frames of 1. */
#define PS_DOC_COMPRESS 1

/* Renderings shorter than this stay plain: a frame buys little on them. */
#define PS_DOC_PACK_MIN 256

/*
 * Compresses a rendering into this thread's own buffer: *frame (valid
 * until the thread's next call) and *frame_len. *packed false when it is
 * to be stored as it is (short, or the frame would not be smaller). The
 * buffer is kept and reused: a chat's frame costs no allocation of its
 * own (a per-call buffer of a few hundred KB raised the server's peak
 * memory by 10 MB over 80 such chats, glibc's heap keeping freed ones).
 */
PS_MUST_CHECK ps_code ps_doc_pack(const char *text, size_t len, const void **frame,
                                  size_t *frame_len, bool *packed);

/* One LZ4 frame of `text` (1 byte to 1 GiB) into *out, replacing what it
 * held, whatever it saves: a chat's pack saved by a legacy sync (SQLite
 * schema 14, docs/storage.md "Packs"), which legacy reads decode whole as
 * they decode a rendering. PS_ERR_STORE for an empty or larger text. */
PS_MUST_CHECK ps_code ps_doc_frame(const char *text, size_t len, ps_dynbuf *out);

/* Whether `bytes` begin as an LZ4 frame does (its magic number); a zstd
 * frame never does. */
bool ps_doc_is_frame(const void *bytes, size_t len);

/* Appends the rendering a frame of ps_doc_pack or ps_doc_frame holds to *out (a piece of
 * an answer being made), decompressed straight into it. PS_ERR_STORE when
 * it is not such a frame. */
PS_MUST_CHECK ps_code ps_doc_unpack_append(const void *frame, size_t len, ps_dynbuf *out);

#endif
