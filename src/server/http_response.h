/*
 * Turns a handler's ps_reply into a libmicrohttpd response: the headers
 * every answer carries, gzip when the client accepts it and the body is
 * over 1 KiB, and streamed bodies (chunked) that are produced as the socket
 * drains, so a large answer is never whole in memory.
 */
#ifndef PS_HTTP_RESPONSE_H
#define PS_HTTP_RESPONSE_H

#include "server/respond.h"

#include <microhttpd.h>

/* Queues `reply` on `conn`; the reply's body and stream are taken over. */
enum MHD_Result ps__send_reply(struct MHD_Connection *conn, ps_reply *reply, bool gzip_ok);

/* Answers bigger than this are compressed for clients that accept gzip. */
#define PS_GZIP_MIN_BYTES 1024

#endif
