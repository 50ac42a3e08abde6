/*
 * Request framing checks (RFC 9112 §6.3, §5): what libmicrohttpd 0.9.75
 * lets through and a proxy in front of us might read differently, so that
 * one request could hide another in its body (request smuggling).
 *
 * libmicrohttpd 0.9.75 (Debian bookworm) accepts two Content-Length headers
 * (it uses the first), Content-Length together with Transfer-Encoding (it
 * uses chunked), a name with whitespace before the colon (kept as a header
 * named "Content-Length ", so the body is read as the next request), and
 * obsolete line folding (the continuation is glued into the previous
 * header's *name*). docs/security.md lists what it does check.
 *
 * The check runs on the headers, before any handler: a request that fails
 * it is answered 400 with Connection: close, so the bytes after its head
 * are never read as a request.
 */
#ifndef PS_SERVER_FRAMING_H
#define PS_SERVER_FRAMING_H

#include <stdbool.h>
#include <stddef.h>

struct MHD_Connection;

/* Whether the request's headers frame it unambiguously; when not, *why
 * (a static string) says what is wrong. */
bool ps_framing_ok(struct MHD_Connection *conn, const char **why);

#endif
