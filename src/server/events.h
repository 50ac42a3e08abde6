/*
 * The live channel, GET /v2/events: Server-Sent Events that tell a user's
 * connected devices to pull ("event: changed") whenever one of the user's
 * syncs changed something. An idle stream costs no thread: its connection
 * is suspended in libmicrohttpd and resumed by a change, a keep-alive tick
 * (so proxies and dead peers are noticed) or shutdown.
 */
#ifndef PS_EVENTS_H
#define PS_EVENTS_H

#include "polysync/error.h"

#include <microhttpd.h>

typedef struct ps_events ps_events;

/* NULL on failure. keepalive_s: seconds between comment lines. */
ps_events *ps_events_new(unsigned max_streams, unsigned keepalive_s);
/* Ends every stream (they finish their current write and close). */
void ps_events_close_all(ps_events *ev);
/* Frees the hub; only after the HTTP daemon has stopped. */
void ps_events_free(ps_events *ev);

/* Streams open now (for /metrics). */
unsigned ps_events_open_count(ps_events *ev);

/* Tells `user`'s streams that something changed, except the streams of
 * `device` (opened with ?deviceId=): the device that made the change has it
 * already. device NULL: every stream. Any thread. */
void ps_events_notify(ps_events *ev, const char *user, const char *device);

/* Tells every stream that something may have changed (the store missed
 * other instances' notifications for a while). Any thread. */
void ps_events_notify_all(ps_events *ev);

/* Ends every stream of `user` (its access was revoked or disabled): each
 * finishes its current write and closes; EventSource reconnects and meets
 * the verdict. Any thread. */
void ps_events_close_user(ps_events *ev, const char *user);

/*
 * A streaming response for `user` on `conn`, for the device named by the
 * request's `deviceId` query argument if any (1-256 bytes; else ignored);
 * NULL when the stream limit is reached (answer 503). The response is the
 * caller's to queue and destroy.
 */
struct MHD_Response *ps_events_response(ps_events *ev, struct MHD_Connection *conn,
                                        const char *user);

#endif
