/*
 * One WebSocket connection's RFC 6455 framing, done by wslay (server side):
 * it parses the client's frames (masked, as the RFC requires of clients),
 * answers pings with pongs and a close with a close, fails the connection
 * on protocol errors (1002), oversized or invalid messages (1009, 1007),
 * and sends the text frames, pings and closes it is given.
 *
 * Data frames from the client are read and dropped: the Polyglot app never
 * sends any, and nothing a client could say on this socket means anything.
 *
 * The bytes go through two callbacks (ps_ws_io), so the same code runs on
 * a socket (ws.c) and on a buffer (fuzz/fuzz_ws_frames.c). Not thread-safe:
 * one thread owns a session.
 */
#ifndef PS_WS_SESSION_H
#define PS_WS_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct ps_ws_io {
    /* Like recv()/send() on a non-blocking socket: bytes moved, 0 from
     * recv at end of stream, -1 with errno (EAGAIN: try again later). */
    ssize_t (*recv)(void *ctx, uint8_t *buf, size_t len);
    ssize_t (*send)(void *ctx, const uint8_t *buf, size_t len);
    void *ctx;
} ps_ws_io;

/* The longest message a client may send (it sends none; pings carry at
 * most 125 bytes). Longer ones fail the connection with 1009. */
#define PS_WS_MAX_CLIENT_MESSAGE 4096

typedef struct ps_ws_session ps_ws_session;

/* NULL when out of memory. `io` is copied. */
ps_ws_session *ps_ws_session_new(const ps_ws_io *io);
void ps_ws_session_free(ps_ws_session *s);

/* Reads what the socket has and acts on it; false when the connection is
 * done with (peer gone, I/O error): then close it without more ado. */
bool ps_ws_session_read(ps_ws_session *s);
/* Writes what is queued, as far as the socket takes it; false as above. */
bool ps_ws_session_write(ps_ws_session *s);

/* Queue a text frame (copied), a ping, or a close with a status code and a
 * short reason (the connection then ends once the peer answers or the
 * caller gives up). false: not queued (closing, or out of memory). */
bool ps_ws_session_send_text(ps_ws_session *s, const char *text, size_t len);
bool ps_ws_session_ping(ps_ws_session *s);
bool ps_ws_session_close(ps_ws_session *s, uint16_t code, const char *reason);

bool ps_ws_session_wants_read(const ps_ws_session *s);
bool ps_ws_session_wants_write(const ps_ws_session *s);
/* Bytes of data frames queued and not yet written. */
size_t ps_ws_session_queued_bytes(const ps_ws_session *s);
/* Frames received from the peer so far (any kind): a sign of life. */
uint64_t ps_ws_session_frames_heard(const ps_ws_session *s);
/* A close has been queued or sent by us. */
bool ps_ws_session_closing(const ps_ws_session *s);
/* Our close frame has been written whole. */
bool ps_ws_session_close_sent(const ps_ws_session *s);
/* Done: nothing more to read or write (closed both ways, or failed). */
bool ps_ws_session_finished(const ps_ws_session *s);

#endif
