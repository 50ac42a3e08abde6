/*
 * Answers' content codings (server/answer_coding.h). Oracles outside the
 * code under test: the Accept-Encoding cases are RFC 9110 12.5.3's rules
 * worked out by hand (a coding named with q=0 is refused even under "*";
 * "*" covers what is not named; the preference is the server's: zstd over
 * gzip); what the encoder makes is read back by libzstd's and zlib's own
 * decoders, its frame header checked against RFC 9659 (window at most
 * 8 MiB) and the checksum asked for.
 */
/* ZSTD_getFrameHeader: in the "experimental" part, exported by Debian's
 * libzstd.so (src/store/value_codec.c uses that part too) */
#define ZSTD_STATIC_LINKING_ONLY
#include "test_util.h"
#include "server/answer_coding.h"

#include <stdlib.h>
#include <zlib.h>
#include <zstd.h>

typedef struct ae_case {
    const char *header;
    ps_coding want;
} ae_case;

static void accept_encoding_picks_the_coding(void **state)
{
    (void)state;
    static const ae_case cases[] = {
        {NULL, PS_CODING_IDENTITY},
        {"", PS_CODING_IDENTITY},
        {"identity", PS_CODING_IDENTITY},
        {"br, deflate", PS_CODING_IDENTITY},
        {"gzip", PS_CODING_GZIP},
        {"GZIP", PS_CODING_GZIP},
        {"gzip, deflate, br", PS_CODING_GZIP},
        {"deflate, gzip;q=1.0", PS_CODING_GZIP},
        {"gzip, deflate, br, zstd", PS_CODING_ZSTD}, /* Chromium's */
        {"zstd", PS_CODING_ZSTD},
        {"zstd, gzip", PS_CODING_ZSTD},           /* the CLI's */
        {"gzip;q=1, zstd;q=0.1", PS_CODING_ZSTD}, /* any q above 0 accepts */
        {"zstd;q=0, gzip", PS_CODING_GZIP},
        {"zstd; q=0, gzip", PS_CODING_GZIP},
        {"zstd;q=0.0, gzip;q=0.5", PS_CODING_GZIP},
        {"zstd;q=0.001", PS_CODING_ZSTD},
        {"zstd;q=0, gzip;q=0", PS_CODING_IDENTITY},
        {"*", PS_CODING_ZSTD},
        {"*;q=0", PS_CODING_IDENTITY},
        {"*, zstd;q=0", PS_CODING_GZIP},
        {"zstd;q=0, *", PS_CODING_GZIP},
        {"gzip;q=0, *;q=0.1", PS_CODING_ZSTD},
        {"*;q=0, gzip", PS_CODING_GZIP},
        /* names that only contain a coding's are other codings */
        {"x-gzip", PS_CODING_IDENTITY},
        {"zstdx, gzipped", PS_CODING_IDENTITY},
        {" ,, zstd ,", PS_CODING_ZSTD},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ps_coding got = ps_coding_choose(cases[i].header);
        if (got != cases[i].want)
            print_error("Accept-Encoding \"%s\": got %d, want %d\n",
                        cases[i].header ? cases[i].header : "(none)", got, cases[i].want);
        assert_int_equal(got, cases[i].want);
    }
    assert_string_equal(ps_coding_name(PS_CODING_ZSTD), "zstd");
    assert_string_equal(ps_coding_name(PS_CODING_GZIP), "gzip");
    assert_null(ps_coding_name(PS_CODING_IDENTITY));
}

/* ~3 MiB of JSON-like text, partly repetitive, partly not. */
static char *sample(size_t *len)
{
    size_t n = 3u << 20;
    char *s = malloc(n);
    assert_non_null(s);
    uint32_t x = 12345;
    for (size_t i = 0; i < n; i++) {
        x = x * 1103515245u + 12345u;
        s[i] =
            (i / 4096) % 3 == 0 ? (char)('a' + (x >> 16) % 26) : "{\"id\":\"m\",\"c\":1}"[i % 16];
    }
    *len = n;
    return s;
}

/* Encodes `len` bytes in pieces of `piece` (the last one with `last`). */
static ps_dynbuf encode(ps_coding coding, const char *data, size_t len, size_t piece)
{
    ps_encoder e;
    ps_dynbuf out;
    ps__dynbuf_init(&out, 64u << 20);
    assert_int_equal(ps_encoder_init(&e, coding), PS_OK);
    size_t off = 0;
    do {
        size_t n = len - off < piece ? len - off : piece;
        assert_int_equal(ps_encoder_feed(&e, data + off, n, off + n == len, &out), PS_OK);
        off += n;
    } while (off < len);
    ps_encoder_free(&e);
    assert_int_equal(out.data[out.len], '\0'); /* the buffer's invariant kept */
    return out;
}

/* libzstd's streaming decoder, as a browser reads it: the frame is whole
 * (ended, checksum verified) and holds exactly `data`; frees `z`. */
static void assert_zstd_decodes_to(ps_dynbuf *z, const char *data, size_t n)
{
    ZSTD_DCtx *d = ZSTD_createDCtx();
    char *back = malloc(n + 1);
    ZSTD_inBuffer in = {z->data, z->len, 0};
    ZSTD_outBuffer o = {back, n + 1, 0};
    size_t left = ZSTD_decompressStream(d, &o, &in);
    assert_false(ZSTD_isError(left));
    assert_int_equal(left, 0);
    assert_int_equal(in.pos, z->len);
    assert_int_equal(o.pos, n);
    assert_memory_equal(back, data, n);
    ZSTD_freeDCtx(d);
    free(back);
    ps__dynbuf_free(z);
}

static void zstd_round_trips_in_any_pieces(void **state)
{
    (void)state;
    size_t len;
    char *data = sample(&len);
    static const size_t pieces[] = {1u << 30, 1, 7, 4096, 131072, 1u << 20};
    for (size_t k = 0; k < sizeof pieces / sizeof pieces[0]; k++) {
        /* one byte at a time only for the first 64 KiB: the rest would be slow */
        size_t n = pieces[k] == 1 ? 65536 : len;
        ps_dynbuf z = encode(PS_CODING_ZSTD, data, n, pieces[k]);
        assert_true(z.len < n);
        ZSTD_frameHeader h;
        assert_int_equal(ZSTD_getFrameHeader(&h, z.data, z.len), 0);
        assert_true(h.windowSize <= (8u << 20)); /* RFC 9659 */
        assert_int_equal(h.checksumFlag, 1);
        assert_zstd_decodes_to(&z, data, n);
    }
    free(data);
}

static void gzip_round_trips_as_before(void **state)
{
    (void)state;
    size_t len;
    char *data = sample(&len);
    ps_dynbuf g = encode(PS_CODING_GZIP, data, len, 100000);
    assert_true(g.len < len && (unsigned char)g.data[0] == 0x1f &&
                (unsigned char)g.data[1] == 0x8b);
    z_stream zs = {0};
    assert_int_equal(inflateInit2(&zs, 16 + MAX_WBITS), Z_OK);
    char *back = malloc(len + 1);
    zs.next_in = (unsigned char *)g.data;
    zs.avail_in = (uInt)g.len;
    zs.next_out = (unsigned char *)back;
    zs.avail_out = (uInt)len + 1;
    assert_int_equal(inflate(&zs, Z_FINISH), Z_STREAM_END);
    assert_int_equal(zs.total_out, len);
    assert_memory_equal(back, data, len);
    inflateEnd(&zs);
    free(back);
    ps__dynbuf_free(&g);
    /* identity passes the bytes through */
    ps_dynbuf same = encode(PS_CODING_IDENTITY, data, len, 65536);
    assert_int_equal(same.len, len);
    assert_memory_equal(same.data, data, len);
    ps__dynbuf_free(&same);
    free(data);
}

/* Bytes zstd cannot shrink, in one piece: the frame's end takes several
 * rounds of output after the last input byte is taken. */
static void zstd_flushes_everything_at_the_end(void **state)
{
    (void)state;
    size_t len = 2u << 20;
    char *data = malloc(len);
    assert_non_null(data);
    uint64_t x = 88172645463325252u;
    for (size_t i = 0; i < len; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        data[i] = (char)(x >> 24);
    }
    ps_dynbuf z = encode(PS_CODING_ZSTD, data, len, len);
    assert_zstd_decodes_to(&z, data, len);
    free(data);
}

/* Output past the buffer's limit fails as any dynbuf does, never overruns. */
static void zstd_output_respects_the_limit(void **state)
{
    (void)state;
    size_t len;
    char *data = sample(&len);
    ps_encoder e;
    ps_dynbuf out;
    ps__dynbuf_init(&out, 1000);
    assert_int_equal(ps_encoder_init(&e, PS_CODING_ZSTD), PS_OK);
    assert_int_equal(ps_encoder_feed(&e, data, len, true, &out), PS_ERR_TOO_LARGE);
    assert_true(out.len <= 1000);
    ps_encoder_free(&e);
    ps__dynbuf_free(&out);
    free(data);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(accept_encoding_picks_the_coding),
        cmocka_unit_test(zstd_round_trips_in_any_pieces),
        cmocka_unit_test(zstd_flushes_everything_at_the_end),
        cmocka_unit_test(gzip_round_trips_as_before),
        cmocka_unit_test(zstd_output_respects_the_limit),
    };
    return cmocka_run_group_tests_name("answer_coding", tests, NULL, NULL);
}
