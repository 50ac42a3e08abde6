/*
 * What json-c's strict mode lets through and RFC 8259 does not: overlong or
 * surrogate UTF-8 and code points above U+10FFFF (json-c checks only the
 * byte pattern), raw control characters inside strings, and single-quoted
 * strings. One linear pass over the text before json-c parses it; json-c
 * still does all the parsing.
 */
#ifndef PS_JSON_PRECHECK_H
#define PS_JSON_PRECHECK_H

#include "polysync/error.h"

#include <stddef.h>

/* PS_OK, PS_ERR_UTF8 or PS_ERR_MALFORMED (with the byte offset in err). */
ps_code ps_json_precheck(const char *text, size_t len, ps_error *err);

#endif
