/*
 * Numbers as decimal text without printf, for the paths that write them on
 * every request (the access log, JSON answers, IPv4 addresses): printf's
 * format parsing costs more than the digits. One writer, so the digit loop
 * and its INT64_MIN trap live in one place. Each call writes exactly what
 * the printf format named in its comment writes, with no NUL after it
 * (tests/unit/test_decimal.c holds them to snprintf).
 */
#ifndef PS_DECIMAL_H
#define PS_DECIMAL_H

#include <stddef.h>
#include <stdint.h>

/* The longest text either writer makes: UINT64_MAX's 20 digits, or
 * INT64_MIN's sign and 19 digits. */
#define PS_DECIMAL_MAX 20

/* "%0*" PRIu64 with width min_digits (1..PS_DECIMAL_MAX): v's digits,
 * zero-padded on the left to at least min_digits, written at out; returns
 * how many were written (out with PS_DECIMAL_MAX chars always has room). */
size_t ps__decimal_u64(char *out, uint64_t v, unsigned min_digits);

/* "%" PRId64, written at out; returns the length (at most PS_DECIMAL_MAX). */
size_t ps__decimal_i64(char *out, int64_t v);

#endif
