/*
 * The connection guard: what keeps one client from filling the connection
 * table (issue 16.2). Two rules, enforced here for every connection:
 *
 * - a per-address cap (--max-connections-per-ip): IPv4 by address, IPv6 by
 *   its /64 (one host usually owns a whole /64); loopback counts too unless
 *   --exempt-loopback says otherwise. Past it, new connections from that
 *   address are closed at accept, so other addresses still get in.
 * - a head deadline (--header-timeout): a connection must deliver its first
 *   request head within S seconds of being accepted (for HTTPS that
 *   includes the TLS handshake), or it is closed. libmicrohttpd only has an
 *   idle timeout, which a client resets by sending a byte now and then.
 *
 * A sweeper thread closes late connections with shutdown(): libmicrohttpd
 * then sees the end of the stream on its own thread and cleans up as for
 * any closed connection. The record of a connection is dropped (under the
 * guard's lock) when libmicrohttpd reports it closed, which it does before
 * it closes the descriptor, so the sweeper never touches a reused one.
 */
#ifndef PS_SERVER_CONN_GUARD_H
#define PS_SERVER_CONN_GUARD_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

struct MHD_Connection;

typedef struct ps_conn_guard ps_conn_guard;

typedef struct ps_conn_guard_config {
    unsigned per_ip_max;     /* 0 = no per-address cap */
    bool exempt_loopback;    /* loopback addresses are not capped */
    unsigned head_timeout_s; /* 0 = no head deadline */
} ps_conn_guard_config;

/* Starts the sweeper. NULL when out of memory or threads. */
ps_conn_guard *ps_conn_guard_new(const ps_conn_guard_config *cfg);
/* Stops the sweeper and frees; call after the daemon has stopped. */
void ps_conn_guard_free(ps_conn_guard *g);

/* At accept: false when the address already has its cap of connections. */
bool ps_conn_guard_admit(ps_conn_guard *g, const struct sockaddr *addr, socklen_t len);
/* libmicrohttpd's NOTIFY_STARTED: starts tracking conn; *socket_ctx gets
 * the record (the guard's). */
void ps_conn_guard_opened(ps_conn_guard *g, struct MHD_Connection *conn, void **socket_ctx);
/* The connection's first request head has arrived: no deadline from now on. */
void ps_conn_guard_head_seen(ps_conn_guard *g, struct MHD_Connection *conn);
/* libmicrohttpd's NOTIFY_CLOSED: the record is dropped and its address
 * uncounted. */
void ps_conn_guard_closed(ps_conn_guard *g, void **socket_ctx);

/* Raises the soft limit on open descriptors towards `need` (capped by the
 * hard limit): at the usual soft 1,024 the connection table could never
 * fill before accept() failed for everyone alike. */
void ps_conn_guard_raise_fd_limit(unsigned need);

/* Connections closed so far for their head deadline (for logs and tests). */
uint64_t ps_conn_guard_cut_count(ps_conn_guard *g);

#endif
