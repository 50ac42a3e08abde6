/*
 * The compact JSON text of a json-c value, identical to json-c's own
 * (ps__json_text: JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE)
 * and several times faster; see json_compact.c.
 */
#ifndef PS_JSON_COMPACT_H
#define PS_JSON_COMPACT_H

#include "core/dynbuf.h"

#include <json-c/json.h>

/* Appends v's compact text (NULL: "null") to b. */
PS_MUST_CHECK ps_code ps__json_compact_append(ps_dynbuf *b, json_object *v);

#endif
