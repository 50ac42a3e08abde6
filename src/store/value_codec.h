/*
 * Stored message values, compressed (zstd) with a dictionary per user: a
 * message's JSON text is kept as a zstd frame when that saves bytes, else
 * as it is. The SQLite backend tells the two apart by the column's type
 * (BLOB = a frame, TEXT = plain; rows written before schema 8 and every
 * value of a user with too little history to train a dictionary are
 * plain), so no marker byte is needed.
 *
 * Why a dictionary: one message is a few hundred bytes, too little for
 * zstd to learn from; alone it compressed 1.5x and decompressed slowly
 * (each frame carries its own entropy tables). With a dictionary trained
 * on the user's first messages it is 3.2x, as good as compressing whole
 * chats, while one message stays one row. docs/storage.md, "Compression",
 * has the figures.
 *
 * Contexts and digested dictionaries are kept per thread (created on first
 * use, freed when the thread ends), so any thread may read or write
 * without a lock. A dictionary is named by (user, id); ids are random and
 * never reused for other bytes, so a cached copy is never stale.
 */
#ifndef PS_VALUE_CODEC_H
#define PS_VALUE_CODEC_H

#include "core/dynbuf.h"
#include "polysync/error.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Values shorter than this are stored as they are: a frame's own header
 * and zstd's per-call cost buy nothing on them. */
#define PS_VALUE_PACK_MIN 128

/* The zstd level: 3 (zstd's default); see docs/storage.md. */
#define PS_VALUE_PACK_LEVEL 3

/* A user's dictionary is trained once their plain message values reach
 * this many bytes, from up to that many bytes of them. */
#define PS_VALUE_TRAIN_BYTES ((size_t)1 << 20)

/* Messages longer than this (in characters) are not trained on: a
 * dictionary is for what short messages share. */
#define PS_VALUE_SAMPLE_MAX 16384

/* A dictionary's size: 64 KiB measured within 2 % of 110 KiB (the most
 * zstd trains) in ratio, at half the memory per cached copy. */
#define PS_VALUE_DICT_BYTES ((size_t)64 << 10)

/* Loads dictionary `id` of `user` into *dict (replaced); the backend's. */
typedef ps_code (*ps_value_dict_fn)(void *ctx, int64_t user, uint32_t id, ps_dynbuf *dict);

/*
 * Trains a dictionary from n samples laid end to end in `samples` (sizes
 * in `sizes`) into *dict (replaced), with *id a fresh random id (never 0)
 * written into it. PS_ERR_INVALID when the samples are too few or too
 * alike to train on (store plain, try again later).
 */
PS_MUST_CHECK ps_code ps_value_train(const char *samples, const size_t *sizes, unsigned n,
                                     ps_dynbuf *dict, uint32_t *id);

/*
 * Compresses `text` (len bytes) with dictionary (user, id) into *out
 * (replaced; the caller's buffer, reused across calls); `load` fetches the
 * dictionary when this thread has not digested it yet. *packed false when
 * the text is to be stored as it is (shorter than PS_VALUE_PACK_MIN, or
 * the frame would not be smaller); *out is then empty.
 */
PS_MUST_CHECK ps_code ps_value_pack(const char *text, size_t len, int64_t user, uint32_t id,
                                    ps_value_dict_fn load, void *load_ctx, ps_dynbuf *out,
                                    bool *packed);

/* One value of ps_value_pack_many: `text`/`len` in; where its frame is in
 * the batch's buffer out (packed false: store the text as it is). */
typedef struct ps_value_item {
    const char *text;
    size_t len;
    size_t frame_at, frame_len;
    bool packed;
} ps_value_item;

/*
 * ps_value_pack of each of n values, frames laid in *frames (replaced; the
 * caller's buffer). A batch of some size is shared with the process's
 * helper thread (core/share.h; when it is busy with another job the
 * caller does all of it): a first upload compresses 100,000
 * values, 20 % of its time on one core, while the machine's other core
 * mostly waits. Same frames as ps_value_pack's, in the same time or less.
 */
PS_MUST_CHECK ps_code ps_value_pack_many(ps_value_item *items, size_t n, int64_t user, uint32_t id,
                                         ps_value_dict_fn load, void *load_ctx, ps_dynbuf *frames);

/* Decompresses a frame written by ps_value_pack for `user`, appending the
 * text to *out (a legacy rendering being put together, doc_render.h). */
PS_MUST_CHECK ps_code ps_value_unpack_append(const void *frame, size_t len, int64_t user,
                                             ps_value_dict_fn load, void *load_ctx, ps_dynbuf *out);

/* Decompresses a frame written by ps_value_pack for `user` into this
 * thread's own buffer: *text (NUL-terminated) is valid until the thread's
 * next call. PS_ERR_STORE when it is not such a frame (a corrupt store). */
PS_MUST_CHECK ps_code ps_value_unpack(const void *frame, size_t len, int64_t user,
                                      ps_value_dict_fn load, void *load_ctx, const char **text,
                                      size_t *text_len);

/*
 * A chat's pack (schema 12, pack_codec.h): `data` compressed into one frame
 * in *out (replaced), with dictionary (user, id) when id is not 0, else
 * without one (a whole chat compresses well alone: ~3.3x). Always a frame,
 * whatever its size.
 */
PS_MUST_CHECK ps_code ps_value_pack_frame(const char *data, size_t len, int64_t user, uint32_t id,
                                          ps_value_dict_fn load, void *load_ctx, ps_dynbuf *out);

/* ps_value_pack_frame of each of n buffers (the packs of a request's new
 * chats), every one a frame laid in *frames (replaced), shared with the
 * helper thread as ps_value_pack_many's values are. */
PS_MUST_CHECK ps_code ps_value_pack_frames(ps_value_item *items, size_t n, int64_t user,
                                           uint32_t id, ps_value_dict_fn load, void *load_ctx,
                                           ps_dynbuf *frames);

/*
 * Dictionary (user, id) digested for compressing packs on several threads
 * at once (a legacy first upload's packs, made ahead on the helper thread
 * while the request's thread merges): made on the calling thread (`load`
 * reads the caller's store), freed by it once no thread uses it.
 */
typedef struct ps_value_packer ps_value_packer;

PS_MUST_CHECK ps_code ps_value_packer_new(int64_t user, uint32_t id, ps_value_dict_fn load,
                                          void *load_ctx, ps_value_packer **out);

/* ps_value_pack_frame's frame of `data` with the packer's dictionary, the
 * same bytes, on any thread. */
PS_MUST_CHECK ps_code ps_value_packer_frame(const ps_value_packer *p, const char *data, size_t len,
                                            ps_dynbuf *out);

void ps_value_packer_free(ps_value_packer *p);

/* Decompresses a frame of ps_value_pack_frame (with its dictionary or
 * none), appending to *out; PS_ERR_STORE when it is not such a frame. */
PS_MUST_CHECK ps_code ps_value_unpack_frame_append(const void *frame, size_t len, int64_t user,
                                                   ps_value_dict_fn load, void *load_ctx,
                                                   ps_dynbuf *out);

#endif
