/*
 * Small texts made on every request's path, by hand rather than with
 * printf (whose format parsing cost more than the work): a bounded copy, the
 * server's own request ids and an IPv4 address for the access log. Each
 * writes exactly what the printf-family call named in its comment writes
 * (tests/unit/test_plain_text.c holds them to it).
 */
#ifndef PS_PLAIN_TEXT_H
#define PS_PLAIN_TEXT_H

#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>

/* snprintf(dst, size, "%s", src), size >= 1. */
void ps__copy_text(char *dst, size_t size, const char *src);

/* snprintf(out, 17, "%016llx", n). */
void ps__hex16_text(uint64_t n, char out[17]);

/* inet_ntop(AF_INET, addr, out, INET_ADDRSTRLEN). */
void ps__ipv4_text(const struct in_addr *addr, char out[INET_ADDRSTRLEN]);

#endif
