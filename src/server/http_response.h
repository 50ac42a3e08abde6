/*
 * Turns a handler's ps_reply into a libmicrohttpd response: the headers
 * every answer carries, zstd or gzip when the client accepts it and the
 * body is over 1 KiB (answer_coding.h), and streamed bodies (chunked)
 * that are produced as the socket drains, so a large answer is never
 * whole in memory.
 */
#ifndef PS_HTTP_RESPONSE_H
#define PS_HTTP_RESPONSE_H

#include "server/answer_coding.h"
#include "server/respond.h"

#include <microhttpd.h>

/* Queues `reply` on `conn`; the reply's body and stream are taken over. */
enum MHD_Result ps__send_reply(struct MHD_Connection *conn, ps_reply *reply, ps_coding coding);

/* Answers bigger than this are compressed for clients that accept zstd or
 * gzip. */
#define PS_COMPRESS_MIN_BYTES 1024

#endif
