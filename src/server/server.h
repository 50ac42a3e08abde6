/*
 * The HTTP server: libmicrohttpd with its internal epoll thread pool, the
 * request life cycle (limits, body, JSON parse, route, answer) and a graceful
 * stop that lets in-flight requests finish.
 */
#ifndef PS_SERVER_H
#define PS_SERVER_H

#include "server/config.h"
#include "store/store.h"

typedef struct ps_server ps_server;

/*
 * Starts serving `cfg` with `store` (borrowed; must outlive the server).
 * *out is the caller's, ended with ps_server_stop().
 */
ps_code ps_server_start(const ps_config *cfg, ps_store *store, ps_server **out, ps_error *err);

/* The port actually bound (useful with --port 0). */
unsigned ps_server_port(const ps_server *srv);

/* The --metrics-bind listener's port, 0 when there is none. */
unsigned ps_server_metrics_port(const ps_server *srv);

/* Re-reads --tls-cert and --tls-key for new connections; on failure the
 * current ones stay and err says why (server/tls.h). */
ps_code ps_server_reload_tls(ps_server *srv, ps_error *err);

/*
 * Stops accepting connections, answers 503 to new requests on open ones,
 * waits up to `drain_timeout_s` for in-flight requests, then frees the server.
 * Returns the number of requests still running when it gave up (0 = clean).
 */
unsigned ps_server_stop(ps_server *srv, unsigned drain_timeout_s);

#endif
