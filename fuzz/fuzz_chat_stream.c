/*
 * libFuzzer driver for a legacy body taken chat by chat (src/core/
 * chat_splitter.c, src/server/legacy_body.c, body_spool.c): the input's
 * first two bytes choose how it is cut into feeds and when the spool goes
 * to its file; the rest is the body. Aborts when the chat-by-chat result
 * disagrees with one strict parse of the whole body (tests/unit/
 * chat_stream_diff.h): a body accepted one way and refused the other, or
 * other chats, or another envelope.
 */
#include "chat_stream_diff.h"

#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    size_t step = 1 + data[0] % 64, memory_max = 1 + (size_t)data[1] * 16;
    const char *text = (const char *)data + 2;
    size_t len = size - 2, cuts[4096], n = 0;
    for (size_t at = step; at < len && n < 4096; at += step)
        cuts[n++] = at;
    const char *dir = getenv("TMPDIR");
    if (chat_stream_disagreement(text, len, cuts, n, dir && *dir ? dir : "/tmp", memory_max))
        abort();
    return 0;
}
