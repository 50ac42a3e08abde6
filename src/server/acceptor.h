/*
 * The main port's listening socket, accepted on a thread of its own: each
 * connection is handed to libmicrohttpd with MHD_add_connection, which
 * spreads them over its thread pool (by descriptor, round the pool).
 *
 * Why not libmicrohttpd's own accept: each pool thread has the listener in
 * its epoll set and takes up to 10 connections a wake-up, so a burst of
 * new connections (16 devices starting together, or reconnecting after a
 * restart) often all landed on one thread, and the server used one core:
 * 16 connections of v2 no-op syncs ran at 28,000–38,000/s with all the
 * server's CPU on one thread (docs/performance.md, "a burst of connections
 * on one thread").
 *
 * libmicrohttpd 0.9.75 deadlocks its threads when a connection handed over
 * this way finds its connection limit reached, so that limit must never be
 * reached: the acceptor closes a new connection itself once the open ones
 * plus those still being handed over reach `limit`, and the daemon's own
 * limit is set to `limit` per pool thread (server.c).
 */
#ifndef PS_ACCEPTOR_H
#define PS_ACCEPTOR_H

#include "polysync/error.h"

#include <microhttpd.h>
#include <netdb.h>
#include <stdatomic.h>

typedef struct ps_acceptor ps_acceptor;

/* Binds and listens on `ai` (SO_REUSEADDR, IPv6 only for an IPv6 address,
 * as libmicrohttpd did). */
ps_code ps_acceptor_listen(const struct addrinfo *ai, ps_acceptor **out, ps_error *err);
/* The port it listens on (the one the kernel chose for port 0). */
unsigned ps_acceptor_port(const ps_acceptor *a);
/* Starts handing connections to `daemon` (started with
 * MHD_USE_NO_LISTEN_SOCKET); `open` counts the connections the daemon has
 * started and not closed, `limit` caps them with those in hand-over. */
ps_code ps_acceptor_start(ps_acceptor *a, struct MHD_Daemon *daemon, const atomic_uint *open,
                          unsigned limit, ps_error *err);
/* A connection handed over has started (MHD_CONNECTION_NOTIFY_STARTED). */
void ps_acceptor_connection_started(ps_acceptor *a);
/* Stops accepting: the socket is closed, so the kernel refuses new
 * connections; the thread is joined. Safe to call twice. */
void ps_acceptor_stop(ps_acceptor *a);
/* Stops (if needed) and frees; NULL is fine. */
void ps_acceptor_free(ps_acceptor *a);

#endif
