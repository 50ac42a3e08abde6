/* Compressed legacy renderings; see doc_codec.h. */
#include "store/doc_codec.h"

#include <pthread.h>
#include <stdlib.h>
#define ZSTD_STATIC_LINKING_ONLY
#include <zstd.h>
#include <zstd_errors.h>

/* A request body is at most 1 GiB: no rendering of one chat comes near. */
#define DOC_MAX ((size_t)1 << 30)

/* zstd's level for renderings: see docs/storage.md for the levels measured. */
#define DOC_LEVEL 3

typedef struct doc_ctx {
    ZSTD_CCtx *c;
    ZSTD_DCtx *d;
} doc_ctx;

static pthread_key_t ctx_key;
static pthread_once_t ctx_once = PTHREAD_ONCE_INIT;

static void ctx_free(void *p)
{
    doc_ctx *ctx = p;
    ZSTD_freeCCtx(ctx->c);
    ZSTD_freeDCtx(ctx->d);
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
    ctx->c = ZSTD_createCCtx();
    ctx->d = ZSTD_createDCtx();
    if (!ctx->c || !ctx->d || pthread_setspecific(ctx_key, ctx) != 0) {
        ctx_free(ctx);
        return NULL;
    }
    return ctx;
}

ps_code ps_doc_pack(const char *text, size_t len, ps_dynbuf *out, bool *packed)
{
    *packed = false;
    ps__dynbuf_reset(out);
    if (len < PS_DOC_PACK_MIN)
        return PS_OK;
    doc_ctx *ctx = thread_ctx();
    if (!ctx)
        return PS_ERR_NOMEM;
    size_t bound = ZSTD_compressBound(len);
    ps_code rc = ps__dynbuf_reserve(out, bound);
    if (rc != PS_OK)
        return rc;
    /* EXPERIMENT (store3): level and literal mode from the environment */
    static int level = -100, nolit = 0;
    if (level == -100) {
        const char *e = getenv("PS_DOC_LEVEL");
        level = e ? atoi(e) : DOC_LEVEL;
        nolit = getenv("PS_DOC_NOLIT") != NULL;
    }
    if (level == 0)
        return PS_OK;
    ZSTD_CCtx_reset(ctx->c, ZSTD_reset_session_and_parameters);
    ZSTD_CCtx_setParameter(ctx->c, ZSTD_c_compressionLevel, level);
    if (nolit)
        ZSTD_CCtx_setParameter(ctx->c, ZSTD_c_literalCompressionMode, ZSTD_ps_disable);
    size_t n = ZSTD_compress2(ctx->c, out->data, bound, text, len);
    if (ZSTD_isError(n))
        return ZSTD_getErrorCode(n) == ZSTD_error_memory_allocation ? PS_ERR_NOMEM : PS_ERR_STORE;
    if (n >= len)
        return PS_OK; /* incompressible: plain is smaller */
    out->len = n;
    *packed = true;
    return PS_OK;
}

ps_code ps_doc_unpack_append(const void *frame, size_t len, ps_dynbuf *out)
{
    doc_ctx *ctx = thread_ctx();
    if (!ctx)
        return PS_ERR_NOMEM;
    unsigned long long size = ZSTD_getFrameContentSize(frame, len);
    if (size == ZSTD_CONTENTSIZE_ERROR || size == ZSTD_CONTENTSIZE_UNKNOWN || size > DOC_MAX)
        return PS_ERR_STORE;
    ps_code rc = ps__dynbuf_reserve(out, (size_t)size);
    if (rc != PS_OK)
        return rc;
    size_t n = ZSTD_decompressDCtx(ctx->d, out->data + out->len, (size_t)size, frame, len);
    if (ZSTD_isError(n) || n != size)
        return ZSTD_isError(n) && ZSTD_getErrorCode(n) == ZSTD_error_memory_allocation
                   ? PS_ERR_NOMEM
                   : PS_ERR_STORE;
    out->len += n;
    out->data[out->len] = '\0';
    return PS_OK;
}
