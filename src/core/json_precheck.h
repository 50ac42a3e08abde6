/*
 * What json-c's strict mode lets through and RFC 8259 does not: overlong or
 * surrogate UTF-8 and code points above U+10FFFF (json-c checks only the
 * byte pattern), raw control characters inside strings, and single-quoted
 * strings, numbers outside RFC 8259 (NaN, Infinity, 00, 1.), and it counts
 * depth as containers only (json-c counts a scalar as a level too). One
 * linear pass before json-c parses; json-c still does all the parsing.
 */
#ifndef PS_JSON_PRECHECK_H
#define PS_JSON_PRECHECK_H

#include "polysync/error.h"

#include <stdbool.h>
#include <stddef.h>

/* PS_OK, PS_ERR_UTF8, PS_ERR_TOO_DEEP (more than max_depth nested objects
 * and arrays) or PS_ERR_MALFORMED, with the byte offset in err. */
ps_code ps__json_precheck(const char *text, size_t len, int max_depth, ps_error *err);
/* The same for a piece of a body that starts at byte `base` of it (one
 * chat, chat_splitter.h): offsets in errors are the body's. */
ps_code ps__json_precheck_at(const char *text, size_t len, int max_depth, size_t base,
                            ps_error *err);

/* Whether text[0, len) is exactly one number as the pre-check takes them
 * (RFC 8259), for a reader that finds a number's token by other means
 * (content_hash.h). */
bool ps__json_is_number(const char *text, size_t len);

#endif
