/* Compressed legacy renderings (LZ4 frames); see doc_codec.h. */
#include "store/doc_codec.h"

#include <lz4frame.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* A request body is at most 1 GiB: no rendering of one chat comes near. */
#define DOC_MAX ((size_t)1 << 30)

/* LZ4F decodes a block straight into the caller's buffer only when that
 * has room for a whole block of the frame's block size: 64 KB blocks (a
 * chat is mostly one), and that much room kept past the content. */
#define BLOCK_BYTES ((size_t)64 << 10)

static pthread_key_t ctx_key;
static pthread_once_t ctx_once = PTHREAD_ONCE_INIT;

static void ctx_free(void *p)
{
    LZ4F_freeDecompressionContext(p);
}

static void ctx_key_make(void)
{
    (void)pthread_key_create(&ctx_key, ctx_free);
}

/* This thread's decompression context; NULL when out of memory. */
static LZ4F_dctx *thread_dctx(void)
{
    pthread_once(&ctx_once, ctx_key_make);
    LZ4F_dctx *d = pthread_getspecific(ctx_key);
    if (d)
        return d;
    if (LZ4F_isError(LZ4F_createDecompressionContext(&d, LZ4F_VERSION)))
        return NULL;
    if (pthread_setspecific(ctx_key, d) != 0) {
        LZ4F_freeDecompressionContext(d);
        return NULL;
    }
    return d;
}

ps_code ps_doc_pack(const char *text, size_t len, ps_dynbuf *out, bool *packed)
{
    *packed = false;
    ps__dynbuf_reset(out);
    if (!PS_DOC_COMPRESS || len < PS_DOC_PACK_MIN || len > DOC_MAX)
        return PS_OK;
    LZ4F_preferences_t prefs;
    memset(&prefs, 0, sizeof prefs);
    /* linked 64 KB blocks (a long chat's later blocks refer to earlier
     * ones), the size in the header so the reader reserves it once, no
     * checksum (SQLite checks its pages) */
    prefs.frameInfo.blockSizeID = LZ4F_max64KB;
    prefs.frameInfo.blockMode = LZ4F_blockLinked;
    prefs.frameInfo.contentSize = len;
    size_t bound = LZ4F_compressFrameBound(len, &prefs);
    ps_code rc = ps__dynbuf_reserve(out, bound);
    if (rc != PS_OK)
        return rc;
    size_t n = LZ4F_compressFrame(out->data, bound, text, len, &prefs);
    if (LZ4F_isError(n))
        return PS_ERR_NOMEM; /* the bound is enough: only an allocation fails */
    if (n >= len)
        return PS_OK; /* incompressible: plain is smaller */
    out->len = n;
    *packed = true;
    return PS_OK;
}

ps_code ps_doc_unpack_append(const void *frame, size_t len, ps_dynbuf *out)
{
    LZ4F_dctx *d = thread_dctx();
    if (!d)
        return PS_ERR_NOMEM;
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
