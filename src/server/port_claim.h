/*
 * A claim on a TCP port among polysyncd processes.
 *
 * The main port is served by one libmicrohttpd daemon per --threads, each
 * with its own listening socket on the port (SO_REUSEPORT), so the kernel
 * spreads new connections over the threads (server.c says why). The cost
 * of SO_REUSEPORT is that a second polysyncd started on the same port by
 * the same user would silently join the group and take part of the
 * traffic, where one listening socket made it fail with "in use". The
 * claim gives that failure back: before its listeners join the port, a
 * polysyncd binds an abstract Unix socket named after the port, which the
 * kernel lets only one process hold per network namespace (the namespace
 * of the TCP port too) and frees when the process exits, however it ends.
 * Programs other than polysyncd are not held off by it; they would also
 * have to set SO_REUSEPORT and run as the same user to join.
 */
#ifndef PS_SERVER_PORT_CLAIM_H
#define PS_SERVER_PORT_CLAIM_H

/* The claim's descriptor (close it with ps_port_release), or -1 with errno
 * set: EADDRINUSE when another polysyncd holds the port. */
int ps_port_claim(unsigned port);

/* Gives the claim up (fd -1: none). */
void ps_port_release(int fd);

#endif
