/* Stored message values compressed with zstd and per-user dictionaries;
 * see value_codec.h. */
#include "store/value_codec.h"
#include "core/share.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#define ZDICT_STATIC_LINKING_ONLY /* ZDICT_trainFromBuffer_fastCover, in Debian's 1.5 */
#include <zdict.h>
/* for ZSTD_c_forceAttachDict (ps_value_pack_frame): an experimental
 * parameter, in libzstd since 1.3.6 and unchanged through 1.5.x */
#define ZSTD_STATIC_LINKING_ONLY
#include <zstd.h>
#include <zstd_errors.h>

/* A stored value is a message that passed the request's limits; a frame
 * claiming more than this is corrupt, not a message. */
#define UNPACK_MAX ((size_t)256 << 20)

/* Digested dictionaries a thread keeps (a request reads one user's). */
#define CACHED_DICTS 4

typedef struct cached_dict {
    int64_t user;
    uint32_t id; /* 0: empty slot */
    ZSTD_DDict *d;
    ZSTD_CDict *c; /* made on first compression */
    void *bytes;   /* the dictionary, for making c */
    size_t len;
} cached_dict;

typedef struct codec_ctx {
    ZSTD_CCtx *c;
    ZSTD_DCtx *d;
    ps_dynbuf text; /* ps_value_unpack's answer */
    ps_dynbuf load; /* a dictionary being loaded */
    cached_dict dicts[CACHED_DICTS];
    unsigned next_slot;
} codec_ctx;

static pthread_key_t ctx_key;
static pthread_once_t ctx_once = PTHREAD_ONCE_INIT;

static void slot_clear(cached_dict *slot)
{
    ZSTD_freeDDict(slot->d);
    ZSTD_freeCDict(slot->c);
    free(slot->bytes);
    memset(slot, 0, sizeof *slot);
}

static void ctx_free(void *p)
{
    codec_ctx *ctx = p;
    ZSTD_freeCCtx(ctx->c);
    ZSTD_freeDCtx(ctx->d);
    ps__dynbuf_free(&ctx->text);
    ps__dynbuf_free(&ctx->load);
    for (int i = 0; i < CACHED_DICTS; i++)
        slot_clear(&ctx->dicts[i]);
    free(ctx);
}

static void ctx_key_make(void)
{
    (void)pthread_key_create(&ctx_key, ctx_free);
}

/* This thread's contexts; NULL when out of memory. */
static codec_ctx *thread_ctx(void)
{
    pthread_once(&ctx_once, ctx_key_make);
    codec_ctx *ctx = pthread_getspecific(ctx_key);
    if (ctx)
        return ctx;
    if (!(ctx = calloc(1, sizeof *ctx)))
        return NULL;
    ctx->c = ZSTD_createCCtx();
    ctx->d = ZSTD_createDCtx();
    ps__dynbuf_init(&ctx->text, UNPACK_MAX);
    ps__dynbuf_init(&ctx->load, UNPACK_MAX);
    if (!ctx->c || !ctx->d || pthread_setspecific(ctx_key, ctx) != 0) {
        ctx_free(ctx);
        return NULL;
    }
    return ctx;
}

/* Dictionary (user, id), digested for decompression; loaded when missing. */
static ps_code dict_get(codec_ctx *ctx, int64_t user, uint32_t id, ps_value_dict_fn load,
                        void *load_ctx, cached_dict **out)
{
    for (int i = 0; i < CACHED_DICTS; i++)
        if (ctx->dicts[i].id == id && ctx->dicts[i].user == user) {
            *out = &ctx->dicts[i];
            return PS_OK;
        }
    ps_code rc = load(load_ctx, user, id, &ctx->load);
    if (rc != PS_OK)
        return rc;
    cached_dict *slot = &ctx->dicts[ctx->next_slot++ % CACHED_DICTS];
    slot_clear(slot);
    if (!(slot->bytes = malloc(ctx->load.len ? ctx->load.len : 1)))
        return PS_ERR_NOMEM;
    memcpy(slot->bytes, ctx->load.data, ctx->load.len);
    slot->len = ctx->load.len;
    if (!(slot->d = ZSTD_createDDict(slot->bytes, slot->len))) {
        slot_clear(slot);
        return PS_ERR_NOMEM;
    }
    slot->user = user;
    slot->id = id;
    *out = slot;
    return PS_OK;
}

ps_code ps_value_train(const char *samples, const size_t *sizes, unsigned n, ps_dynbuf *dict,
                       uint32_t *id)
{
    ps__dynbuf_reset(dict);
    ps_code rc = ps__dynbuf_reserve(dict, PS_VALUE_DICT_BYTES);
    if (rc != PS_OK)
        return rc;
    uint32_t fresh = 0;
    while (fresh == 0 || fresh >= 0x80000000u) /* random, not 0 (no dictionary) */
        if (getrandom(&fresh, sizeof fresh, 0) != (ssize_t)sizeof fresh)
            return PS_ERR_IO;
    /* fastCover with fixed parameters: 20 ms on 1 MiB where the default
     * trainer takes 130 ms, for 1 % less ratio (docs/storage.md). f = 16:
     * its tables take 2^f x 6 bytes (384 KiB; 6 MiB at zstd's f = 20, for
     * the same ratio on chat messages). */
    ZDICT_fastCover_params_t p;
    memset(&p, 0, sizeof p);
    p.k = 200;
    p.d = 8;
    p.f = 16;
    p.accel = 1;
    p.zParams.compressionLevel = PS_VALUE_PACK_LEVEL;
    p.zParams.dictID = fresh;
    size_t len =
        ZDICT_trainFromBuffer_fastCover(dict->data, PS_VALUE_DICT_BYTES, samples, sizes, n, p);
    if (ZDICT_isError(len))
        return PS_ERR_INVALID;
    dict->len = len;
    dict->data[len] = '\0';
    *id = fresh;
    return PS_OK;
}

ps_code ps_value_pack(const char *text, size_t len, int64_t user, uint32_t id,
                      ps_value_dict_fn load, void *load_ctx, ps_dynbuf *out, bool *packed)
{
    *packed = false;
    ps__dynbuf_reset(out);
    if (len < PS_VALUE_PACK_MIN || id == 0)
        return PS_OK;
    codec_ctx *ctx = thread_ctx();
    if (!ctx)
        return PS_ERR_NOMEM;
    cached_dict *dict;
    ps_code rc = dict_get(ctx, user, id, load, load_ctx, &dict);
    if (rc != PS_OK)
        return rc;
    if (!dict->c && !(dict->c = ZSTD_createCDict(dict->bytes, dict->len, PS_VALUE_PACK_LEVEL)))
        return PS_ERR_NOMEM;
    size_t bound = ZSTD_compressBound(len);
    if ((rc = ps__dynbuf_reserve(out, bound)) != PS_OK)
        return rc;
    size_t n = ZSTD_compress_usingCDict(ctx->c, out->data, bound, text, len, dict->c);
    if (ZSTD_isError(n))
        return ZSTD_getErrorCode(n) == ZSTD_error_memory_allocation ? PS_ERR_NOMEM : PS_ERR_STORE;
    if (n >= len)
        return PS_OK; /* incompressible: plain is smaller */
    out->len = n;
    *packed = true;
    return PS_OK;
}

/* A batch of ps_value_pack_many: both threads take the next few values
 * until none is left, so neither waits for work the other has not begun. */
typedef struct pack_batch {
    ps_value_item *items;
    size_t n;
    atomic_size_t next; /* the first value nobody took yet */
    char *frames;
    const ZSTD_CDict *dict; /* NULL: none (whole frames only) */
    bool whole;             /* ps_value_pack_frames: every item a frame, as a pack's */
    atomic_int rc;          /* the first failure, PS_OK */
} pack_batch;

/* `len` bytes of `data` as one frame into dst (`cap` bytes, at least
 * ZSTD_compressBound(len)) with `dict` attached, or with none; zstd's size
 * or error code. The dictionary's tables are used where they are
 * (attached), not copied into the context first: above 16 KB of input (a
 * pack usually is) zstd copies them for level 3, 768 KB per frame, a third
 * of a first upload's compression (docs/performance.md, "middle"). Same
 * format and level; a few frames come out a few bytes other. */
static size_t frame_compress(ZSTD_CCtx *c, void *dst, size_t cap, const void *data, size_t len,
                             const ZSTD_CDict *dict)
{
    if (!dict)
        return ZSTD_compressCCtx(c, dst, cap, data, len, PS_VALUE_PACK_LEVEL);
    size_t n = ZSTD_CCtx_setParameter(c, ZSTD_c_forceAttachDict, ZSTD_dictForceAttach);
    if (!ZSTD_isError(n))
        n = ZSTD_CCtx_refCDict(c, dict);
    if (!ZSTD_isError(n))
        n = ZSTD_compress2(c, dst, cap, data, len);
    /* the context as the other compressions expect it */
    ZSTD_CCtx_reset(c, ZSTD_reset_session_and_parameters);
    return n;
}

#define PACK_CHUNK 4 /* values taken at once */

static void batch_work(pack_batch *b)
{
    codec_ctx *ctx = thread_ctx();
    if (!ctx) {
        atomic_store(&b->rc, PS_ERR_NOMEM);
        atomic_store(&b->next, b->n);
        return;
    }
    for (;;) {
        size_t chunk = b->whole ? 1 : PACK_CHUNK; /* a pack is ~100 values */
        size_t from = atomic_fetch_add(&b->next, chunk);
        if (from >= b->n)
            return;
        size_t to = from + chunk < b->n ? from + chunk : b->n;
        for (size_t i = from; i < to; i++) {
            ps_value_item *it = &b->items[i];
            if (!b->whole && it->len < PS_VALUE_PACK_MIN)
                continue;
            void *dst = b->frames + it->frame_at;
            size_t cap = ZSTD_compressBound(it->len);
            size_t n = b->whole
                           ? frame_compress(ctx->c, dst, cap, it->text, it->len, b->dict)
                           : ZSTD_compress_usingCDict(ctx->c, dst, cap, it->text, it->len, b->dict);
            if (ZSTD_isError(n)) {
                atomic_store(&b->rc, ZSTD_getErrorCode(n) == ZSTD_error_memory_allocation
                                         ? PS_ERR_NOMEM
                                         : PS_ERR_STORE);
                atomic_store(&b->next, b->n); /* the rest is moot */
                return;
            }
            if (b->whole || n < it->len) { /* else incompressible: plain is smaller */
                it->frame_len = n;
                it->packed = true;
            }
        }
    }
}

/* ps__share_run's form of batch_work: both lanes do the same. */
static void batch_lane(void *cls, unsigned lane)
{
    (void)lane;
    batch_work(cls);
}

/* Below this many bytes a batch is not worth waking the helper for. */
#define SHARE_MIN_BYTES (16u << 10)

/* ps_value_pack_many and ps_value_pack_frames: `whole`, every item a
 * frame, with dictionary `id` or (0) none. */
static ps_code pack_batch_run(ps_value_item *items, size_t n, int64_t user, uint32_t id,
                              ps_value_dict_fn load, void *load_ctx, ps_dynbuf *frames, bool whole)
{
    ps__dynbuf_reset(frames);
    size_t room = 0, bytes = 0;
    for (size_t i = 0; i < n; i++) {
        items[i].packed = false;
        items[i].frame_at = items[i].frame_len = 0;
        if (whole || (items[i].len >= PS_VALUE_PACK_MIN && id != 0)) {
            items[i].frame_at = room;
            room += ZSTD_compressBound(items[i].len);
            bytes += items[i].len;
        }
    }
    if (room == 0)
        return PS_OK;
    codec_ctx *ctx = thread_ctx();
    if (!ctx)
        return PS_ERR_NOMEM;
    cached_dict *dict = NULL; /* got on this thread: loading it reads the caller's store */
    ps_code rc = id ? dict_get(ctx, user, id, load, load_ctx, &dict) : PS_OK;
    if (rc != PS_OK)
        return rc;
    if (dict && !dict->c &&
        !(dict->c = ZSTD_createCDict(dict->bytes, dict->len, PS_VALUE_PACK_LEVEL)))
        return PS_ERR_NOMEM;
    if ((rc = ps__dynbuf_reserve(frames, room)) != PS_OK)
        return rc;
    frames->len = room;
    pack_batch b = {.items = items,
                    .n = n,
                    .frames = frames->data,
                    .dict = dict ? dict->c : NULL,
                    .whole = whole};
    atomic_init(&b.next, 0);
    atomic_init(&b.rc, PS_OK);
    /* an offer the helper has not taken when this thread is done is
     * withdrawn; one taken is at most a few values from done */
    if (bytes >= SHARE_MIN_BYTES)
        ps__share_run(batch_lane, &b);
    else
        batch_work(&b);
    return (ps_code)atomic_load(&b.rc);
}

ps_code ps_value_pack_many(ps_value_item *items, size_t n, int64_t user, uint32_t id,
                           ps_value_dict_fn load, void *load_ctx, ps_dynbuf *frames)
{
    return pack_batch_run(items, n, user, id, load, load_ctx, frames, false);
}

ps_code ps_value_pack_frames(ps_value_item *items, size_t n, int64_t user, uint32_t id,
                             ps_value_dict_fn load, void *load_ctx, ps_dynbuf *frames)
{
    return pack_batch_run(items, n, user, id, load, load_ctx, frames, true);
}

/* Appends the frame's text to *out (NUL-terminated). `plain_ok`: a frame
 * made without a dictionary is one too (a pack's; a value's never is). */
static ps_code unpack_to(codec_ctx *ctx, const void *frame, size_t len, int64_t user,
                         ps_value_dict_fn load, void *load_ctx, ps_dynbuf *out, bool plain_ok)
{
    unsigned long long size = ZSTD_getFrameContentSize(frame, len);
    unsigned id = ZSTD_getDictID_fromFrame(frame, len);
    if (size == ZSTD_CONTENTSIZE_ERROR || size == ZSTD_CONTENTSIZE_UNKNOWN || size > UNPACK_MAX ||
        (id == 0 && !plain_ok))
        return PS_ERR_STORE;
    cached_dict *dict = NULL;
    ps_code rc = id ? dict_get(ctx, user, id, load, load_ctx, &dict) : PS_OK;
    if (rc != PS_OK)
        return rc == PS_ERR_NOMEM ? rc : PS_ERR_STORE;
    if ((rc = ps__dynbuf_reserve(out, (size_t)size)) != PS_OK)
        return rc;
    size_t n = dict ? ZSTD_decompress_usingDDict(ctx->d, out->data + out->len, (size_t)size, frame,
                                                 len, dict->d)
                    : ZSTD_decompressDCtx(ctx->d, out->data + out->len, (size_t)size, frame, len);
    if (ZSTD_isError(n) || n != size)
        return ZSTD_isError(n) && ZSTD_getErrorCode(n) == ZSTD_error_memory_allocation
                   ? PS_ERR_NOMEM
                   : PS_ERR_STORE;
    out->len += n;
    out->data[out->len] = '\0';
    return PS_OK;
}

ps_code ps_value_unpack_append(const void *frame, size_t len, int64_t user, ps_value_dict_fn load,
                               void *load_ctx, ps_dynbuf *out)
{
    codec_ctx *ctx = thread_ctx();
    return ctx ? unpack_to(ctx, frame, len, user, load, load_ctx, out, false) : PS_ERR_NOMEM;
}

ps_code ps_value_unpack(const void *frame, size_t len, int64_t user, ps_value_dict_fn load,
                        void *load_ctx, const char **text, size_t *text_len)
{
    *text = NULL;
    *text_len = 0;
    codec_ctx *ctx = thread_ctx();
    if (!ctx)
        return PS_ERR_NOMEM;
    ps__dynbuf_reset(&ctx->text);
    ps_code rc = unpack_to(ctx, frame, len, user, load, load_ctx, &ctx->text, false);
    if (rc == PS_OK) {
        *text = ctx->text.data;
        *text_len = ctx->text.len;
    }
    return rc;
}

ps_code ps_value_pack_frame(const char *data, size_t len, int64_t user, uint32_t id,
                            ps_value_dict_fn load, void *load_ctx, ps_dynbuf *out)
{
    ps__dynbuf_reset(out);
    codec_ctx *ctx = thread_ctx();
    if (!ctx)
        return PS_ERR_NOMEM;
    cached_dict *dict = NULL;
    ps_code rc = id ? dict_get(ctx, user, id, load, load_ctx, &dict) : PS_OK;
    if (rc != PS_OK)
        return rc;
    if (dict && !dict->c &&
        !(dict->c = ZSTD_createCDict(dict->bytes, dict->len, PS_VALUE_PACK_LEVEL)))
        return PS_ERR_NOMEM;
    size_t bound = ZSTD_compressBound(len);
    if ((rc = ps__dynbuf_reserve(out, bound)) != PS_OK)
        return rc;
    size_t n = frame_compress(ctx->c, out->data, bound, data, len, dict ? dict->c : NULL);
    if (ZSTD_isError(n))
        return ZSTD_getErrorCode(n) == ZSTD_error_memory_allocation ? PS_ERR_NOMEM : PS_ERR_STORE;
    out->len = n;
    return PS_OK;
}

ps_code ps_value_unpack_frame_append(const void *frame, size_t len, int64_t user,
                                     ps_value_dict_fn load, void *load_ctx, ps_dynbuf *out)
{
    codec_ctx *ctx = thread_ctx();
    return ctx ? unpack_to(ctx, frame, len, user, load, load_ctx, out, true) : PS_ERR_NOMEM;
}

struct ps_value_packer {
    ZSTD_CDict *dict;
};

ps_code ps_value_packer_new(int64_t user, uint32_t id, ps_value_dict_fn load, void *load_ctx,
                            ps_value_packer **out)
{
    *out = NULL;
    ps_value_packer *p = calloc(1, sizeof *p);
    if (!p)
        return PS_ERR_NOMEM;
    ps_dynbuf bytes;
    ps__dynbuf_init(&bytes, UNPACK_MAX);
    ps_code rc = load(load_ctx, user, id, &bytes);
    /* its own digest, not a thread's cached one: the threads using it
     * outlive no cache slot of theirs, and none of them evicts it */
    if (rc == PS_OK && !(p->dict = ZSTD_createCDict(bytes.data, bytes.len, PS_VALUE_PACK_LEVEL)))
        rc = PS_ERR_NOMEM;
    ps__dynbuf_free(&bytes);
    if (rc != PS_OK) {
        ps_value_packer_free(p);
        return rc;
    }
    *out = p;
    return PS_OK;
}

ps_code ps_value_packer_frame(const ps_value_packer *p, const char *data, size_t len,
                              ps_dynbuf *out)
{
    ps__dynbuf_reset(out);
    codec_ctx *ctx = thread_ctx();
    if (!ctx)
        return PS_ERR_NOMEM;
    size_t bound = ZSTD_compressBound(len);
    ps_code rc = ps__dynbuf_reserve(out, bound);
    if (rc != PS_OK)
        return rc;
    size_t n = frame_compress(ctx->c, out->data, bound, data, len, p->dict);
    if (ZSTD_isError(n))
        return ZSTD_getErrorCode(n) == ZSTD_error_memory_allocation ? PS_ERR_NOMEM : PS_ERR_STORE;
    out->len = n;
    return PS_OK;
}

void ps_value_packer_free(ps_value_packer *p)
{
    if (!p)
        return;
    ZSTD_freeCDict(p->dict);
    free(p);
}
