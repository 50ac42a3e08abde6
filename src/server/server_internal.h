/*
 * What the server's parts share (server.c, request.c, admission.c,
 * housekeeping.c): the server and request structs and the constants they
 * agree on. Private to src/server; nothing outside the server includes it.
 */
#ifndef PS_SERVER_INTERNAL_H
#define PS_SERVER_INTERNAL_H

#include "server/server.h"
#include "server/access.h"
#include "server/auth.h"
#include "server/conn_guard.h"
#include "server/events.h"
#include "server/gzip.h"
#include "server/health.h"
#include "server/housekeeping.h"
#include "server/http_response.h"
#include "server/lane.h"
#include "server/legacy_body.h"
#include "server/limits.h"
#include "server/router.h"
#include "server/ws.h"
#include "server/ws_upgrade.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#define ERROR_BODY_LIMIT (64 * 1024)
#define IMPLICIT_USER "local"
#define EVENT_STREAMS_MAX 1000
#define EVENT_KEEPALIVE_S 15
#define PS_REQUEST_ID_MAX 64
#define PS_CLIENT_ADDR_MAX INET6_ADDRSTRLEN
#define METRICS_BODY_LIMIT (1024 * 1024)
#define HEALTH_PROBE_INTERVAL_MS 1000
#define WS_CLOSE_WAIT_MS 2000 /* at shutdown, for live sockets' closes to go out */

struct ps_server {
    /* the main port's listeners: one daemon and thread each (server.c) */
    struct MHD_Daemon **daemons;
    unsigned ndaemons;
    int port_claim; /* port_claim.h; -1 when not shared */
    ps_config cfg;
    ps_handler_env env;
    ps_events *events;
    ps_ws *ws;         /* the live socket on / */
    ps_live live;      /* where handlers announce changes */
    ps_auth *auth;     /* NULL: one implicit user */
    ps_access *access; /* revoked tokens, disabled users; with auth */
    ps_limiter *limiter;
    ps_lane *lane;            /* large bodies: admission and worker threads */
    ps_conn_guard *guard;     /* per-address cap, head deadline */
    ps_health *health;        /* the store probe behind /health */
    char *tls_cert, *tls_key; /* PEM, kept for libmicrohttpd */
    atomic_uint connections;  /* open, for --max-connections */
    atomic_uint inflight;
    atomic_uint turned_away_done; /* lane waiters answered 503 at shutdown */
    atomic_bool draining;
    ps_housekeeping *housekeeping; /* the tombstone purge's timer thread */
    unsigned port;
    struct MHD_Daemon *metrics_daemon; /* --metrics-bind, or NULL */
    unsigned metrics_port;
    atomic_uint_fast64_t next_request_id;
    char *web_root; /* real path served under /web/, NULL if none */
    /* where large legacy bodies' chats wait (legacy_body.h) */
    char *spool_dir;
};

typedef struct request {
    ps_server *srv;
    const ps_route *route;
    ps_dynbuf body;        /* decompressed when the body came gzipped */
    long long body_length; /* Content-Length, or -1 */
    bool gzip;             /* Content-Encoding: gzip */
    ps_lane_ticket lane;   /* a large request's place in the lane */
    uint64_t body_bytes;   /* of the body so far, as sent (--min-upload-rate) */
    bool upload_watched;   /* its connection's idle timeout is the upload grace */
    bool lane_wait_over;   /* admitted at once, or past the call after its wait */
    ps_reply reply;        /* prepared by a lane worker... */
    bool reply_ready;      /* ...and sent when the connection resumes */
    ps_inflater inflater;
    ps_code body_error;      /* the first problem while receiving the body */
    ps_coding answer_coding; /* zstd, gzip or none, from Accept-Encoding */
    bool admitted;           /* counted by the limiter: release when done */
    int64_t started_ms;
    const char *allow_origin; /* CORS answer for this request's Origin */
    char user[PS_ID_MAX_BYTES + 1];
    /* for the access log and metrics (log.h, metrics.h) */
    char request_id[PS_REQUEST_ID_MAX + 1];
    char method[16];
    const char *route_path; /* the matched route's, static */
    char device[PS_ID_MAX_BYTES + 1];
    unsigned status; /* of the answer queued; 0 = none yet */
    uint64_t bytes_in, bytes_out;
    int64_t t0_us;        /* monotonic */
    char user_agent[128]; /* for the device registry; cut to fit */
    ps_ws_pending ws;     /* a live socket being opened */
    bool not_inflight;    /* a live socket: ps_ws_close_all ends it, not the drain */
    int linger_fd;        /* answered before its body: a dup() of the socket, or -1 */
    /* the body of a PS_BODY_RAW route, taken chat by chat (legacy_body.h) */
    ps_legacy_body *legacy;
} request;

#define TURN_AWAY_WAIT_MS 2000
#define LANE_KEEP_IDLE_MS 10000 /* kept body buffers outlive the last large sync by this */
/* A refused body is read and dropped for a lingering close up to twice the
 * limit (at least 16 MiB), within the request deadline, 2 s without a byte. */
#define LINGER_MAX_BYTES(srv)                                                                      \
    ((srv)->cfg.max_body_bytes > 8u * 1024 * 1024 ? 2 * (srv)->cfg.max_body_bytes                  \
                                                  : (size_t)16 * 1024 * 1024)
#define LINGER_MAX_MS(srv) ((int)(srv)->cfg.request_timeout_s * 1000)
#define LINGER_IDLE_MS 2000

/* ---- request.c: the request life cycle (libmicrohttpd's callbacks) ---- */

/* MHD_AccessHandlerCallback: called with the headers, per piece of body,
 * and once more to answer (request.c's header comment). */
enum MHD_Result ps__on_request(void *cls, struct MHD_Connection *conn, const char *url,
                               const char *method, const char *version, const char *upload_data,
                               size_t *upload_data_size, void **con_cls);
/* MHD_RequestCompletedCallback: logs, counts and frees the request. */
void ps__on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                      enum MHD_RequestTerminationCode toe);

/* ---- admission.c: who and what is let in ---- */

/* MHD_AcceptPolicyCallback: --max-connections and the per-address cap. */
enum MHD_Result ps__on_accept(void *cls, const struct sockaddr *addr, socklen_t addrlen);
/* MHD_NotifyConnectionCallback: counts open connections for ps__on_accept. */
void ps__on_connection(void *cls, struct MHD_Connection *conn, void **socket_ctx,
                       enum MHD_ConnectionNotificationCode code);
/* The client's address as text into out ("-" when unknown). */
void ps__client_address(struct MHD_Connection *conn, char *out, size_t size);
/* Whether GET /metrics is answered on the main port. */
bool ps__serves_metrics(const ps_server *srv);
/* The Access-Control-Allow-Origin for `origin` (static or cfg-owned), or
 * NULL when that origin may not read answers. */
const char *ps__cors_origin(const ps_server *srv, const char *origin);
/* Fills reply with 503 shutting_down (and closes the connection). */
void ps__shutting_down(ps_reply *reply);
/* The largest body `route` takes (NULL: before routing): --max-body for a
 * legacy body, taken chat by chat; at most 64 MiB for one parsed whole. */
size_t ps__body_limit(const ps_server *srv, const ps_route *route);
/* Decides from the headers alone whether the request is refused; if so,
 * true with the refusal in reply. Sets req->route, req->user, the body's
 * encoding and length. */
bool ps__refuse_early(ps_server *srv, struct MHD_Connection *conn, const char *method,
                      const char *url, request *req, ps_reply *reply);

/* ---- server.c: the daemon's life cycle ---- */

/* The /metrics answer (Prometheus text) into reply. */
void ps__metrics_reply(ps_server *srv, ps_reply *reply);

#endif
