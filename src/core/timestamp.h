/*
 * Timestamps as clients send them: ISO 8601 strings ("2024-01-15T10:30:00.000Z",
 * any offset) or numbers of milliseconds since the epoch (JavaScript's
 * Date.now()). Inside polysync every time is int64 milliseconds UTC.
 */
#ifndef PS_TIMESTAMP_H
#define PS_TIMESTAMP_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Parses an ISO 8601 date-time. false if `s` is not one. */
bool ps__time_parse_iso(const char *s, int64_t *ms);
/* Accepts an ISO string or a finite number in a JSON value. */
bool ps__time_from_json(const json_object *v, int64_t *ms);
/* Writes "YYYY-MM-DDTHH:MM:SS.mmmZ" (24 chars + NUL) into out[32]. */
void ps__time_format_iso(int64_t ms, char out[32]);
/* The wall clock, milliseconds since the epoch. */
int64_t ps__time_now_ms(void);
/* Milliseconds of a clock that never jumps: for intervals, not dates. */
int64_t ps__time_monotonic_ms(void);

#endif
