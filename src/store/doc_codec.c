/* Compressed legacy renderings (LZ4 frames); see doc_codec.h. */
#include "store/doc_codec.h"

#include <lz4frame.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* A request body is at most 1 GiB: no rendering of one chat comes near. */
#define DOC_MAX ((size_t)1 << 30)

/* LZ4F decodes a block straight into the caller's buffer only when that
 * has room for a whole block of the frame's block size: 64 KB blocks (a
 * chat is mostly one), and that much room kept past the content. */
#define BLOCK_BYTES ((size_t)64 << 10)

/* A thread's contexts, kept across calls: a context allocates its
 * buffers once rather than at every chat (a first upload saves 2,000). */
typedef struct doc_ctx {
    LZ4F_dctx *d;
    LZ4F_cctx *c;
    ps_dynbuf frame; /* ps_doc_pack's answer */
} doc_ctx;

static pthread_key_t ctx_key;
static pthread_once_t ctx_once = PTHREAD_ONCE_INIT;

static void ctx_free(void *p)
{
    doc_ctx *ctx = p;
    LZ4F_freeDecompressionContext(ctx->d);
    LZ4F_freeCompressionContext(ctx->c);
    ps__dynbuf_free(&ctx->frame);
    free(ctx);
}

static void ctx_key_make(void)
{
    (void)pthread_key_create(&ctx_key, ctx_free);
}

/* This thread's contexts; NULL when out of memory. */
static doc_ctx *thread_ctx(void)
{
    pthread_once(&ctx_once, ctx_key_make);
    doc_ctx *ctx = pthread_getspecific(ctx_key);
    if (ctx)
        return ctx;
    if (!(ctx = calloc(1, sizeof *ctx)))
        return NULL;
    ps__dynbuf_init(&ctx->frame, SIZE_MAX - 1);
    if (LZ4F_isError(LZ4F_createDecompressionContext(&ctx->d, LZ4F_VERSION)) ||
        LZ4F_isError(LZ4F_createCompressionContext(&ctx->c, LZ4F_VERSION)) ||
        pthread_setspecific(ctx_key, ctx) != 0) {
        ctx_free(ctx);
        return NULL;
    }
    return ctx;
}

/* One LZ4 frame of `text` into *out (replacing what it held). */
static ps_code frame_into(doc_ctx *ctx, const char *text, size_t len, ps_dynbuf *out)
{
    LZ4F_preferences_t prefs;
    memset(&prefs, 0, sizeof prefs);
    /* linked 64 KB blocks (a long chat's later blocks refer to earlier
     * ones), the size in the header so the reader reserves it once, no
     * checksum (SQLite checks its pages) */
    prefs.frameInfo.blockSizeID = LZ4F_max64KB;
    prefs.frameInfo.blockMode = LZ4F_blockLinked;
    prefs.frameInfo.contentSize = len;
    ps__dynbuf_reset(out);
    size_t bound = LZ4F_compressFrameBound(len, &prefs);
    ps_code rc = ps__dynbuf_reserve(out, bound);
    if (rc != PS_OK)
        return rc;
    /* begin, all of it, end: one frame, with the thread's context */
    size_t n = LZ4F_compressBegin(ctx->c, out->data, bound, &prefs);
    size_t body = LZ4F_isError(n)
                      ? n
                      : LZ4F_compressUpdate(ctx->c, out->data + n, bound - n, text, len, NULL);
    if (!LZ4F_isError(body)) {
        n += body;
        size_t end = LZ4F_compressEnd(ctx->c, out->data + n, bound - n, NULL);
        n = LZ4F_isError(end) ? end : n + end;
    } else {
        n = body;
    }
    if (LZ4F_isError(n))
        return PS_ERR_NOMEM; /* the bound is enough: only an allocation fails */
    out->len = n;
    return PS_OK;
}

ps_code ps_doc_pack(const char *text, size_t len, const void **frame, size_t *frame_len,
                    bool *packed)
{
    *packed = false;
    *frame = NULL;
    *frame_len = 0;
    if (!PS_DOC_COMPRESS || len < PS_DOC_PACK_MIN || len > DOC_MAX)
        return PS_OK;
    doc_ctx *ctx = thread_ctx();
    if (!ctx)
        return PS_ERR_NOMEM;
    ps_code rc = frame_into(ctx, text, len, &ctx->frame);
    if (rc != PS_OK)
        return rc;
    if (ctx->frame.len >= len)
        return PS_OK; /* incompressible: plain is smaller */
    *frame = ctx->frame.data;
    *frame_len = ctx->frame.len;
    *packed = true;
    return PS_OK;
}

ps_code ps_doc_frame(const char *text, size_t len, ps_dynbuf *out)
{
    if (len == 0 || len > DOC_MAX)
        return PS_ERR_STORE; /* ps_doc_unpack_append takes no empty frame */
    doc_ctx *ctx = thread_ctx();
    return ctx ? frame_into(ctx, text, len, out) : PS_ERR_NOMEM;
}

bool ps_doc_is_frame(const void *bytes, size_t len)
{
    static const unsigned char magic[4] = {0x04, 0x22, 0x4d, 0x18}; /* LZ4F_MAGICNUMBER, LE */
    return len >= sizeof magic && memcmp(bytes, magic, sizeof magic) == 0;
}

ps_code ps_doc_unpack_append(const void *frame, size_t len, ps_dynbuf *out)
{
    doc_ctx *ctx = thread_ctx();
    if (!ctx)
        return PS_ERR_NOMEM;
    LZ4F_dctx *d = ctx->d;
    LZ4F_frameInfo_t info;
    memset(&info, 0, sizeof info);
    size_t used = len;
    size_t hint = LZ4F_getFrameInfo(d, &info, frame, &used);
    if (LZ4F_isError(hint) || info.contentSize == 0 || info.contentSize > DOC_MAX) {
        LZ4F_resetDecompressionContext(d);
        return PS_ERR_STORE;
    }
    size_t size = (size_t)info.contentSize;
    ps_code rc = ps__dynbuf_reserve(out, size + BLOCK_BYTES);
    if (rc != PS_OK) {
        LZ4F_resetDecompressionContext(d);
        return rc;
    }
    /* the whole content straight into the buffer (room for a block past
     * it, so LZ4F needs no buffer of its own nor a copy out of it) */
    size_t dst_len = size + BLOCK_BYTES, src_len = len - used;
    size_t left = LZ4F_decompress(d, out->data + out->len, &dst_len, (const char *)frame + used,
                                  &src_len, NULL);
    if (LZ4F_isError(left) || left != 0 || dst_len != size || used + src_len != len) {
        LZ4F_resetDecompressionContext(d);
        return PS_ERR_STORE;
    }
    out->len += size;
    out->data[out->len] = '\0';
    return PS_OK;
}
