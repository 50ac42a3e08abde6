/*
 * A Server-Sent Events parser (the text/event-stream format of the HTML
 * standard), fed bytes as they arrive. It only needs what the live channel
 * uses: event names, data lines, comments, retry, any line ending.
 */
#ifndef PS_CLIENT_SSE_H
#define PS_CLIENT_SSE_H

#include <stdbool.h>
#include <stddef.h>

#define PS_SSE_LINE_MAX 8192

typedef struct ps_sse {
    char line[PS_SSE_LINE_MAX];
    size_t len;
    bool overflow; /* the current line is longer than the buffer: ignored */
    bool last_cr;  /* the previous byte was CR (a CRLF is one line end) */
    char event[64];
    bool has_data;
    long retry_ms; /* the last retry: field, -1 if none */
} ps_sse;

void ps__sse_init(ps_sse *p);

/* Called once per dispatched event with its name ("message" by default).
 * The live channel's data carries nothing the client needs, so data lines
 * only mark that an event is complete. */
typedef void (*ps_sse_fn)(const char *event, void *ud);

/* Feeds `n` bytes; calls `fn` for each complete event. */
void ps__sse_feed(ps_sse *p, const char *data, size_t n, ps_sse_fn fn, void *ud);

#endif
