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

#include <stddef.h>

/* PS_OK, PS_ERR_UTF8, PS_ERR_TOO_DEEP (more than max_depth nested objects
 * and arrays) or PS_ERR_MALFORMED, with the byte offset in err. */
ps_code ps_json_precheck(const char *text, size_t len, int max_depth, ps_error *err);

#endif
