/*
 * libFuzzer driver for the live socket's frame path (src/server/ws_session.c,
 * wslay server side): arbitrary bytes arrive from the "client" in pieces of
 * fuzzer-chosen sizes, while the server queues a chat frame, a ping and
 * (sometimes) a close, and its writes are cut short at fuzzer-chosen
 * points (EAGAIN), as a slow socket does.
 *
 * The first two bytes steer: byte 0 = the size of the pieces read (1..64),
 * byte 1 = bit 0: queue a close mid-way; bits 1-7: how many bytes a write
 * may take at a time (0: all). The rest is what the client sends.
 *
 * Aborts when what the server wrote is not a sequence of well-formed server
 * frames (RFC 6455 5.2): unmasked, no reserved bits, known opcodes, control
 * frames final and at most 125 bytes, text frames exactly the queued text
 * and in order; or when frames follow a close.
 */
#include "server/ws_session.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define OUT_MAX (1u << 20)
static const char CHAT[] = "{\"id\":\"c1\",\"updatedAtLamport\":[5,\"A\"],\"title\":\"t\","
                           "\"messages\":[]}";

typedef struct pipe_state {
    const uint8_t *in;
    size_t in_len, in_off, piece;
    uint8_t *out;
    size_t out_len, write_cap;
    bool write_blocked; /* alternate: a write after a short one says EAGAIN */
} pipe_state;

static ssize_t fake_recv(void *ctx, uint8_t *buf, size_t len)
{
    pipe_state *p = ctx;
    if (p->in_off == p->in_len) {
        errno = EAGAIN;
        return -1;
    }
    size_t n = p->in_len - p->in_off;
    if (n > p->piece)
        n = p->piece;
    if (n > len)
        n = len;
    memcpy(buf, p->in + p->in_off, n);
    p->in_off += n;
    return (ssize_t)n;
}

static ssize_t fake_send(void *ctx, const uint8_t *buf, size_t len)
{
    pipe_state *p = ctx;
    if (p->write_blocked) {
        p->write_blocked = false;
        errno = EAGAIN;
        return -1;
    }
    size_t n = len;
    if (p->write_cap && n > p->write_cap) {
        n = p->write_cap;
        p->write_blocked = true;
    }
    if (p->out_len + n > OUT_MAX)
        abort(); /* the server wrote far more than it was given to say */
    memcpy(p->out + p->out_len, buf, n);
    p->out_len += n;
    return (ssize_t)n;
}

/* Checks the server's bytes frame by frame (see the file comment). */
static void check_output(const uint8_t *b, size_t len, unsigned texts_queued)
{
    size_t off = 0;
    unsigned texts = 0;
    bool closed = false;
    while (off < len) {
        if (len - off < 2)
            abort(); /* a cut frame: the writes were resumed wrong */
        uint8_t b0 = b[off], b1 = b[off + 1];
        if (closed || (b0 & 0x70) || (b1 & 0x80))
            abort();
        unsigned op = b0 & 0x0F;
        uint64_t n = b1 & 0x7F;
        size_t head = 2;
        if (n == 126) {
            if (len - off < 4)
                abort();
            n = ((uint64_t)b[off + 2] << 8) | b[off + 3];
            head = 4;
        } else if (n == 127) {
            if (len - off < 10)
                abort();
            n = 0;
            for (int i = 0; i < 8; i++)
                n = (n << 8) | b[off + 2 + i];
            head = 10;
        }
        if (n > len - off - head)
            abort();
        const uint8_t *payload = b + off + head;
        switch (op) {
        case 0x1:
            if (!(b0 & 0x80) || n != sizeof CHAT - 1 || memcmp(payload, CHAT, n) != 0)
                abort();
            texts++;
            break;
        case 0x8:
            closed = true;
            /* fall through */
        case 0x9:
        case 0xA:
            if (!(b0 & 0x80) || n > 125)
                abort();
            break;
        default:
            abort();
        }
        off += head + (size_t)n;
    }
    if (texts > texts_queued)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    static uint8_t out[OUT_MAX];
    pipe_state p = {
        .in = data + 2,
        .in_len = size - 2,
        .piece = (size_t)(data[0] % 64) + 1,
        .out = out,
        .write_cap = (size_t)(data[1] >> 1),
    };
    bool close_midway = data[1] & 1;
    ps_ws_io io = {.recv = fake_recv, .send = fake_send, .ctx = &p};
    ps_ws_session *s = ps_ws_session_new(&io);
    if (!s)
        return 0;
    unsigned texts = 0;
    texts += ps_ws_session_send_text(s, CHAT, sizeof CHAT - 1);
    ps_ws_session_ping(s);
    /* pump: read what the client sent, write what is queued, like the hub */
    for (int round = 0; round < 10000 && !ps_ws_session_finished(s); round++) {
        if (!ps_ws_session_read(s) || !ps_ws_session_write(s))
            break;
        if (round == 2 && close_midway)
            ps_ws_session_close(s, 1001, "server shutting down");
        if (round == 3)
            texts += ps_ws_session_send_text(s, CHAT, sizeof CHAT - 1);
        if (p.in_off == p.in_len && !ps_ws_session_wants_write(s))
            break;
    }
    check_output(out, p.out_len, texts);
    ps_ws_session_free(s);
    return 0;
}
