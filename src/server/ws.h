/*
 * The Polyglot app's live socket (a WebSocket on `/`): the hub of every
 * open socket. After a sync changes a user's chats, each changed chat goes,
 * whole and in the legacy shape, as one text frame to the user's other
 * sockets (ps_ws_chats_changed, ws_notify.c). docs/protocol.md, "WebSocket".
 *
 * One thread does all socket I/O (epoll over the upgraded sockets, wslay
 * framing in ws_session.c); request threads only queue frames under a lock
 * and wake it. Each socket has a bounded queue of frames not yet written;
 * a newer frame for the same chat replaces the queued one (it holds the
 * newer state), and a socket whose queue would pass its limit is closed
 * with 1013 ("try again later"): the app reconnects and its next sync
 * brings what it missed. Idle sockets are pinged; one that stays silent a
 * whole interval after the ping is dropped.
 */
#ifndef PS_WS_H
#define PS_WS_H

#include "store/store.h"

#include <microhttpd.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct ps_ws ps_ws;

typedef struct ps_ws_config {
    unsigned max_sockets;      /* open sockets, all users */
    unsigned max_user_sockets; /* open sockets of one user */
    unsigned ping_interval_s;  /* silence before a ping, and the pong's deadline */
    size_t queue_bytes;        /* frames waiting for one slow socket */
} ps_ws_config;

/* NULL when the I/O thread cannot start. */
ps_ws *ps_ws_new(const ps_ws_config *cfg);
/* Closes every socket with 1001 (going away), waiting up to `wait_ms` for
 * the closes to be written, then drops what is left and stops the I/O
 * thread. Call before the HTTP daemon stops. Refuses new sockets after. */
void ps_ws_close_all(ps_ws *ws, unsigned wait_ms);
void ps_ws_free(ps_ws *ws);

/* A socket being opened: a place taken under the caps before the 101 is
 * sent, then given its connection by ps_ws_attach. */
typedef struct ps_ws_conn ps_ws_conn;

typedef enum {
    PS_WS_OK,
    PS_WS_FULL,      /* --ws-max-sockets reached */
    PS_WS_USER_FULL, /* --ws-max-user-sockets reached for this user */
    PS_WS_CLOSING,   /* shutting down */
    PS_WS_NOMEM,
} ps_ws_admit;

/* device: the socket's ?deviceId= (NULL: none). *out NULL unless PS_WS_OK. */
ps_ws_admit ps_ws_reserve(ps_ws *ws, const char *user, const char *device, ps_ws_conn **out);
/* The upgrade did not happen (the client went away before the 101). */
void ps_ws_unreserve(ps_ws *ws, ps_ws_conn *conn);
/* The upgrade happened (from libmicrohttpd's upgrade handler): `extra` is
 * what the client sent after its headers, read already. */
void ps_ws_attach(ps_ws *ws, ps_ws_conn *conn, MHD_socket sock,
                  struct MHD_UpgradeResponseHandle *urh, const char *extra, size_t extra_len);

/* Whether `user` has a socket that is not `device`'s (device NULL: any). */
bool ps_ws_has_listeners(ps_ws *ws, const char *user, const char *device);
/*
 * Queues `text` (one frame; copied) for every socket of `user` except those
 * opened with ?deviceId=`device`; `key` names what it is about (the chat
 * id): a frame still queued with the same key is replaced. Returns how
 * many sockets may still take frames (0: stop producing them).
 */
unsigned ps_ws_publish(ps_ws *ws, const char *user, const char *device, const char *key,
                       const char *text, size_t len);

/*
 * The one entry point for "chats of `user` changed": the sync by `device`
 * (NULL: unknown) moved the user's change sequence from seq_before to
 * seq_after (committed). Sends every chat changed in that range that is
 * live, rendered as a legacy answer holds it, to the user's other sockets.
 * Deletions are not sent (the app has no frame for them). Reads `store` in
 * its own read transaction; any thread. ws NULL: nothing.
 */
void ps_ws_chats_changed(ps_ws *ws, ps_store *store, const char *user, const char *device,
                         int64_t seq_before, int64_t seq_after);

/* Closes every socket of `user` with 1008 (policy violation: access
 * revoked or disabled); a reconnect meets the verdict. Any thread. */
void ps_ws_close_user(ps_ws *ws, const char *user);

/* Open sockets (for tests and metrics). */
unsigned ps_ws_count(ps_ws *ws);

#endif
