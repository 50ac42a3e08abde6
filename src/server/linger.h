/*
 * A lingering close for a request refused before its body was read.
 *
 * polysyncd answers some refusals from the headers alone (413 for a
 * Content-Length over --max-body, 401, 415, 503 while draining...), and
 * libmicrohttpd then closes the connection without reading the body. A
 * socket closed with unread bytes in it is reset by the kernel, and a client
 * still sending (Python's http.client, most HTTP libraries: they send the
 * whole body before reading) sees a broken pipe instead of the answer.
 * So the socket is kept open past libmicrohttpd's close, its write side shut
 * (the answer is out), and what the client still sends is read and dropped,
 * up to a bound of bytes and time, before it is closed for good: the client
 * finishes sending, reads the answer, and closes first.
 */
#ifndef PS_SERVER_LINGER_H
#define PS_SERVER_LINGER_H

#include <stdbool.h>
#include <stddef.h>

/* At most this many sockets linger at once; past it a socket is closed at
 * once (the client may then see a reset, as before). */
#define PS_LINGER_MAX 32

/*
 * Takes `fd` (a dup() of the connection's socket, owned from here on):
 * shuts its write side, then reads and drops up to `max_bytes`, for at most
 * `max_ms` in all and `idle_ms` without a byte, on a thread of its own, and
 * closes it. Never blocks the caller.
 */
void ps_linger_close(int fd, size_t max_bytes, int max_ms, int idle_ms);

#endif
