/*
 * libFuzzer driver for the request-body inflater (src/server/gzip.c): the
 * input, split in two pieces at a point the input chooses, is fed as a
 * gzipped body into a buffer capped at 64 KiB. Aborts when the output
 * passes the cap, or when a body that inflated whole and finished cleanly
 * is not what deflating its output back and inflating again gives
 * (round trip through ps_deflater).
 */
#include "server/gzip.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CAP (64 * 1024)

static ps_code inflate_all(const uint8_t *data, size_t size, size_t split, ps_dynbuf *out)
{
    ps_inflater in;
    ps_code rc = ps_inflater_init(&in);
    if (rc != PS_OK)
        return rc;
    rc = ps_inflater_feed(&in, data, split, out);
    if (rc == PS_OK)
        rc = ps_inflater_feed(&in, data + split, size - split, out);
    if (rc == PS_OK)
        rc = ps_inflater_finish(&in);
    ps_inflater_free(&in);
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t split = data[0] % size;
    data++;
    size--;
    if (split > size)
        split = size;
    ps_dynbuf out;
    ps__dynbuf_init(&out, CAP);
    ps_code rc = inflate_all(data, size, split, &out);
    if (out.len > CAP)
        abort();
    if (rc == PS_OK) {
        ps_deflater d;
        ps_dynbuf z, back;
        ps__dynbuf_init(&z, SIZE_MAX);
        ps__dynbuf_init(&back, CAP);
        if (ps_deflater_init(&d) != PS_OK || ps_deflater_feed(&d, out.data, out.len, true, &z) != PS_OK)
            abort();
        ps_deflater_free(&d);
        if (inflate_all((const uint8_t *)z.data, z.len, z.len / 2, &back) != PS_OK ||
            back.len != out.len || (out.len && memcmp(back.data, out.data, out.len) != 0))
            abort();
        ps__dynbuf_free(&z);
        ps__dynbuf_free(&back);
    }
    ps__dynbuf_free(&out);
    return 0;
}
