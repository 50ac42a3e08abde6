/* Server-Sent Events parsing; see sse.h. */
#include "client/sse.h"

#include <stdlib.h>
#include <string.h>

void ps__sse_init(ps_sse *p)
{
    memset(p, 0, sizeof *p);
    p->retry_ms = -1;
}

static void dispatch(ps_sse *p, ps_sse_fn fn, void *ud)
{
    /* An event without data is not dispatched (the standard's rule). */
    if (p->has_data)
        fn(p->event[0] ? p->event : "message", ud);
    p->event[0] = '\0';
    p->has_data = false;
}

static void end_line(ps_sse *p, ps_sse_fn fn, void *ud)
{
    if (p->overflow) {
        p->overflow = false;
        p->len = 0;
        return;
    }
    p->line[p->len] = '\0';
    size_t len = p->len;
    p->len = 0;
    if (len == 0) {
        dispatch(p, fn, ud);
        return;
    }
    if (p->line[0] == ':') /* a comment: keep-alive */
        return;
    char *colon = strchr(p->line, ':');
    const char *value = "";
    if (colon) {
        *colon = '\0';
        value = colon + 1;
        if (*value == ' ')
            value++;
    }
    if (strcmp(p->line, "event") == 0) {
        size_t n = strlen(value);
        if (n >= sizeof p->event)
            n = sizeof p->event - 1;
        memcpy(p->event, value, n);
        p->event[n] = '\0';
    } else if (strcmp(p->line, "data") == 0) {
        p->has_data = true;
    } else if (strcmp(p->line, "retry") == 0) {
        char *end;
        long v = strtol(value, &end, 10);
        if (*value && !*end && v >= 0)
            p->retry_ms = v;
    }
}

void ps__sse_feed(ps_sse *p, const char *data, size_t n, ps_sse_fn fn, void *ud)
{
    for (size_t i = 0; i < n; i++) {
        char ch = data[i];
        if (ch == '\n' && p->last_cr) {
            p->last_cr = false;
            continue;
        }
        p->last_cr = ch == '\r';
        if (ch == '\r' || ch == '\n') {
            end_line(p, fn, ud);
        } else if (p->len + 1 < sizeof p->line) {
            p->line[p->len++] = ch;
        } else {
            p->overflow = true;
        }
    }
}
