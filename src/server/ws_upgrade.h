/*
 * The HTTP side of the live socket: recognising a WebSocket upgrade on `/`,
 * checking the RFC 6455 handshake, the token (browsers cannot set headers
 * on a WebSocket: `?access_token=` or `Sec-WebSocket-Protocol: bearer,
 * <token>`), the origin and the socket caps, then answering 101 (the socket
 * goes to the hub, ws.h) or a JSON error before anything is upgraded.
 */
#ifndef PS_WS_UPGRADE_H
#define PS_WS_UPGRADE_H

#include "server/access.h"
#include "server/auth.h"
#include "server/ws.h"

#include <microhttpd.h>
#include <stdbool.h>

/* What server.c knows of the request that the handshake needs. */
typedef struct ps_ws_gate {
    const ps_auth *auth; /* NULL: no auth, every socket is implicit_user's */
    ps_access *access;   /* revoked tokens and disabled users; NULL: none */
    const char *implicit_user;
    bool draining;       /* shutting down: 503 */
    bool origin_refused; /* an Origin the CORS settings do not allow: 403 */
    bool hsts;
} ps_ws_gate;

/* A socket reserved by a 101 answer until libmicrohttpd hands it over;
 * lives in the request's state (zeroed). */
typedef struct ps_ws_pending {
    ps_ws *ws;
    ps_ws_conn *conn;
    bool taken;      /* the upgrade handler got it */
    unsigned status; /* what the request was answered (101, or a refusal's), for the log */
} ps_ws_pending;

/* A request for the live socket: GET / with `Upgrade: websocket`. */
bool ps_ws_is_upgrade(struct MHD_Connection *conn, const char *method, const char *url);

/* Answers the upgrade request: 101, or 400/401/403/426/429/503 in JSON;
 * pending->status says which. */
enum MHD_Result ps_ws_answer(ps_ws *ws, struct MHD_Connection *conn, const ps_ws_gate *gate,
                             ps_ws_pending *pending);

/* The request is over (libmicrohttpd's completion callback): frees a
 * reservation whose upgrade never happened. */
void ps_ws_pending_done(ps_ws_pending *pending);

/* RFC 6455 4.2.2: base64(SHA-1(key + GUID)) into out (29 bytes with NUL);
 * false when the key is not 16 bytes in base64. For tests too. */
bool ps_ws_accept_key(const char *key, char out[29]);

#endif
