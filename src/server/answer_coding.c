/* Answers' content codings; see answer_coding.h. */
#include "server/answer_coding.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

/*
 * zstd level 1 and a window of at most 8 MiB: RFC 9659 lets an HTTP
 * decoder refuse a larger one (browsers do). Measured on the reference
 * history (63 MB; zstd and gzip command-line tools, one core): zstd -1
 * 0.22 s for 18.1 MB, gzip -1 0.62 s for 19.6 MB; decoding 0.08 s against
 * 0.32 s.
 */
#define ZSTD_ANSWER_LEVEL 1
#define ZSTD_ANSWER_WINDOW_LOG 23

/* q-value of one Accept-Encoding item's parameters (";q=0.5"); 1 if none. */
static double item_q(const char *params, const char *end)
{
    for (const char *p = params; p < end; p++) {
        if (*p != ';')
            continue;
        p++;
        while (p < end && (*p == ' ' || *p == '\t'))
            p++;
        if (end - p >= 2 && (p[0] == 'q' || p[0] == 'Q') && p[1] == '=')
            return strtod(p + 2, NULL);
    }
    return 1.0;
}

bool ps_accepts_coding(const char *ae, const char *coding)
{
    if (!ae)
        return false;
    size_t want = strlen(coding);
    double named = -1, star = -1;
    for (const char *p = ae; *p;) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        const char *item = p, *end = strchr(p, ',');
        if (!end)
            end = p + strlen(p);
        const char *tok_end = item;
        while (tok_end < end && *tok_end != ';' && *tok_end != ' ' && *tok_end != '\t')
            tok_end++;
        size_t n = (size_t)(tok_end - item);
        if (n == want && strncasecmp(item, coding, n) == 0)
            named = item_q(tok_end, end);
        else if (n == 1 && *item == '*')
            star = item_q(tok_end, end);
        p = end;
    }
    return named >= 0 ? named > 0 : star > 0;
}

ps_coding ps_coding_choose(const char *ae)
{
    if (ps_accepts_coding(ae, "zstd"))
        return PS_CODING_ZSTD;
    if (ps_accepts_coding(ae, "gzip"))
        return PS_CODING_GZIP;
    return PS_CODING_IDENTITY;
}

const char *ps_coding_name(ps_coding coding)
{
    switch (coding) {
    case PS_CODING_GZIP:
        return "gzip";
    case PS_CODING_ZSTD:
        return "zstd";
    default:
        return NULL;
    }
}

ps_code ps_encoder_init(ps_encoder *e, ps_coding coding)
{
    memset(e, 0, sizeof *e);
    e->coding = coding;
    if (coding == PS_CODING_GZIP)
        return ps_deflater_init(&e->gzip);
    if (coding != PS_CODING_ZSTD)
        return PS_OK;
    e->zstd = ZSTD_createCCtx();
    if (!e->zstd ||
        ZSTD_isError(ZSTD_CCtx_setParameter(e->zstd, ZSTD_c_compressionLevel, ZSTD_ANSWER_LEVEL)) ||
        ZSTD_isError(ZSTD_CCtx_setParameter(e->zstd, ZSTD_c_windowLog, ZSTD_ANSWER_WINDOW_LOG)) ||
        /* a checksum, as gzip's CRC: a damaged answer is refused, not read */
        ZSTD_isError(ZSTD_CCtx_setParameter(e->zstd, ZSTD_c_checksumFlag, 1))) {
        ZSTD_freeCCtx(e->zstd);
        e->zstd = NULL;
        return PS_ERR_NOMEM;
    }
    return PS_OK;
}

static ps_code zstd_feed(ZSTD_CCtx *cctx, const void *data, size_t len, bool last, ps_dynbuf *out)
{
    ZSTD_inBuffer in = {data, len, 0};
    ZSTD_EndDirective mode = last ? ZSTD_e_end : ZSTD_e_continue;
    for (;;) {
        size_t room = ZSTD_CStreamOutSize();
        if (out->limit - out->len < room) /* the buffer's limit, not zstd's wish */
            room = out->limit - out->len;
        ps_code rc = room ? ps__dynbuf_reserve(out, room) : PS_ERR_TOO_LARGE;
        if (rc != PS_OK)
            return rc;
        ZSTD_outBuffer o = {out->data + out->len, room, 0};
        size_t left = ZSTD_compressStream2(cctx, &o, &in, mode);
        if (ZSTD_isError(left))
            return PS_ERR_NOMEM;
        out->len += o.pos;
        out->data[out->len] = '\0';
        /* done: all input taken, and at the end nothing left to flush */
        if (in.pos == in.size && (!last ? o.pos < room : left == 0))
            return PS_OK;
    }
}

ps_code ps_encoder_feed(ps_encoder *e, const void *data, size_t len, bool last, ps_dynbuf *out)
{
    switch (e->coding) {
    case PS_CODING_GZIP:
        return ps_deflater_feed(&e->gzip, data, len, last, out);
    case PS_CODING_ZSTD:
        return zstd_feed(e->zstd, data, len, last, out);
    default:
        return ps__dynbuf_add(out, data, len);
    }
}

void ps_encoder_free(ps_encoder *e)
{
    if (e->coding == PS_CODING_GZIP)
        ps_deflater_free(&e->gzip);
    ZSTD_freeCCtx(e->zstd);
    e->zstd = NULL;
}
