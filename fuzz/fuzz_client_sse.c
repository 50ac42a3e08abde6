/*
 * libFuzzer driver for the client's Server-Sent Events parser
 * (src/client/sse.c, compiled in here: the client library is not part of
 * the fuzz build). The input is fed whole, then again one byte at a time;
 * aborts when the two give different events, retry values or more events
 * than lines could make.
 */
#include "client/sse.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct seen {
    size_t count;
    uint64_t hash; /* of the event names in order */
} seen;

static void on_event(const char *event, void *ud)
{
    seen *s = ud;
    s->count++;
    for (const char *p = event; *p; p++)
        s->hash = (s->hash ^ (unsigned char)*p) * 1099511628211ULL;
    s->hash = (s->hash ^ 0xff) * 1099511628211ULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ps_sse a, b;
    seen sa = {0, 1469598103934665603ULL}, sb = {0, 1469598103934665603ULL};
    ps__sse_init(&a);
    ps__sse_init(&b);
    ps__sse_feed(&a, (const char *)data, size, on_event, &sa);
    for (size_t i = 0; i < size; i++)
        ps__sse_feed(&b, (const char *)data + i, 1, on_event, &sb);
    if (sa.count != sb.count || sa.hash != sb.hash || a.retry_ms != b.retry_ms)
        abort();
    if (sa.count > size / 2 + 1)
        abort(); /* an event needs at least a data line and a blank line */
    return 0;
}
