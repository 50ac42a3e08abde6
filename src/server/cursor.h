/*
 * The text of a v2 cursor, "c1.BASE.POS" (sync_v2.c says what the two
 * numbers are): read twice on every /v2/sync (the sync, the device
 * registry's ack), so by hand rather than with sscanf.
 */
#ifndef PS_CURSOR_H
#define PS_CURSOR_H

#include <stdbool.h>
#include <stdint.h>

/* Whether `s` is "c1.BASE.POS" with BASE and POS decimal digits only (no
 * sign, space or leading '+'), each fitting an int64_t, and BASE <= POS:
 * the only cursors this server issues. */
bool ps__cursor_parse(const char *s, int64_t *base, int64_t *pos);

#endif
