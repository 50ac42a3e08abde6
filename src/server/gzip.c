/* zlib wrappers for gzip bodies; see gzip.h. */
#include "server/gzip.h"

#include <string.h>

#define CHUNK 16384
#define GZIP_WINDOW (16 + MAX_WBITS) /* 16: gzip wrapper, not zlib's */

ps_code ps_inflater_init(ps_inflater *in)
{
    memset(in, 0, sizeof *in);
    return inflateInit2(&in->zs, GZIP_WINDOW) == Z_OK ? PS_OK : PS_ERR_NOMEM;
}

ps_code ps_inflater_feed_to(ps_inflater *in, const void *data, size_t len, ps_inflate_sink sink,
                            void *cls)
{
    unsigned char buf[CHUNK];
    if (len && in->ended)
        return PS_ERR_BAD_GZIP; /* bytes after the gzip trailer */
    in->zs.next_in = (unsigned char *)data;
    in->zs.avail_in = (uInt)len;
    while (in->zs.avail_in > 0 && !in->ended) {
        in->zs.next_out = buf;
        in->zs.avail_out = sizeof buf;
        int z = inflate(&in->zs, Z_NO_FLUSH);
        if (z == Z_STREAM_END)
            in->ended = true;
        else if (z != Z_OK && z != Z_BUF_ERROR)
            return z == Z_MEM_ERROR ? PS_ERR_NOMEM : PS_ERR_BAD_GZIP;
        size_t n = sizeof buf - in->zs.avail_out;
        ps_code rc = n ? sink(cls, (const char *)buf, n) : PS_OK;
        if (rc != PS_OK)
            return rc;
        if (z == Z_BUF_ERROR && in->zs.avail_out != 0)
            break; /* needs more input */
    }
    if (in->ended && in->zs.avail_in > 0)
        return PS_ERR_BAD_GZIP;
    return PS_OK;
}

static ps_code add_to_dynbuf(void *cls, const char *p, size_t n)
{
    return ps__dynbuf_add(cls, p, n);
}

ps_code ps_inflater_feed(ps_inflater *in, const void *data, size_t len, ps_dynbuf *out)
{
    return ps_inflater_feed_to(in, data, len, add_to_dynbuf, out);
}

ps_code ps_inflater_finish(ps_inflater *in)
{
    return in->ended ? PS_OK : PS_ERR_BAD_GZIP;
}

void ps_inflater_free(ps_inflater *in)
{
    inflateEnd(&in->zs);
}

ps_code ps_deflater_init(ps_deflater *d)
{
    memset(d, 0, sizeof *d);
    /* Level 1, not zlib's default 6: on the 63 MB reference history (a
     * fresh device's pull) level 6 takes 3.35 s of CPU for 17.3 MB, level 1
     * 0.83 s for 19.6 MB (zlib 1.2.13, one core). The server compresses
     * every answer of every client; 14 % more bytes is the cheaper side. */
    return deflateInit2(&d->zs, 1, Z_DEFLATED, GZIP_WINDOW, 8, Z_DEFAULT_STRATEGY) == Z_OK
               ? PS_OK
               : PS_ERR_NOMEM;
}

ps_code ps_deflater_feed(ps_deflater *d, const void *data, size_t len, bool last, ps_dynbuf *out)
{
    unsigned char buf[CHUNK];
    d->zs.next_in = (unsigned char *)data;
    d->zs.avail_in = (uInt)len;
    int flush = last ? Z_FINISH : Z_NO_FLUSH;
    int z;
    do {
        d->zs.next_out = buf;
        d->zs.avail_out = sizeof buf;
        z = deflate(&d->zs, flush);
        if (z == Z_STREAM_ERROR)
            return PS_ERR_NOMEM;
        ps_code rc = ps__dynbuf_add(out, buf, sizeof buf - d->zs.avail_out);
        if (rc != PS_OK)
            return rc;
    } while (d->zs.avail_out == 0 || (last && z != Z_STREAM_END));
    return PS_OK;
}

void ps_deflater_free(ps_deflater *d)
{
    deflateEnd(&d->zs);
}
