/*
 * An error answer written straight to a plain-HTTP connection's socket, for
 * the one case libmicrohttpd 0.9.75 cannot answer: in the middle of a
 * request body (MHD_queue_response is refused until the body is in). Used to
 * tell a client cut for uploading too slowly why (408) before the
 * connection is closed. Called on the connection's own thread, from the
 * access handler, while libmicrohttpd is reading the body: nothing of its
 * own is being written then (a 100 Continue has gone out whole before the
 * body is read).
 */
#ifndef PS_SERVER_RAW_REPLY_H
#define PS_SERVER_RAW_REPLY_H

#include "polysync/error.h"

#include <stdbool.h>

struct MHD_Connection;

/* Writes "HTTP/1.1 <status> <reason>" with Connection: close and the JSON
 * error body that ps_reply_from_code gives `code` and `message` (its status
 * and code, respond.h); the caller then closes the
 * connection (returns MHD_NO). False (nothing written) over TLS, where the
 * socket's bytes belong to the TLS session, or when the socket would block.
 * The body is built as every error body is (respond.h); allow_origin may be NULL. */
bool ps_raw_error(struct MHD_Connection *conn, bool tls, ps_code code, const char *message,
                  const char *allow_origin);

#endif
