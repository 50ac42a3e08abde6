/*
 * Building json-c trees without losing an allocation failure. Every
 * json_object_new_* may return NULL, and json_object_object_add /
 * json_object_array_add may fail; checked one by one they bury the code
 * that builds a document. These calls carry a sticky result instead: each
 * is a no-op once *rc is not PS_OK, a NULL container or value (a
 * json_object_new_* that failed) or a failed add sets *rc to PS_ERR_NOMEM,
 * and the caller checks *rc once when the document is built.
 *
 * Ownership: like json_object_object_add, each call takes over the
 * caller's reference to `value` — on failure it is released here, so a
 * failed build leaks nothing; the container stays the caller's.
 * Inline: the codec builds every stored chat state with these.
 */
#ifndef PS_CORE_JSON_BUILD_H
#define PS_CORE_JSON_BUILD_H

#include "polysync/error.h"

#include <json-c/json.h>
#include <stdbool.h>

/* obj[key] = value (value NULL: a failed allocation, not JSON null). */
static inline void ps__json_set(ps_code *rc, json_object *obj, const char *key, json_object *value)
{
    if (*rc == PS_OK && obj && value && json_object_object_add(obj, key, value) == 0)
        return;
    if (*rc == PS_OK)
        *rc = PS_ERR_NOMEM;
    json_object_put(value);
}

/* obj[key] = null, on purpose. */
static inline void ps__json_set_null(ps_code *rc, json_object *obj, const char *key)
{
    if (*rc == PS_OK && (!obj || json_object_object_add(obj, key, NULL) != 0))
        *rc = PS_ERR_NOMEM;
}

/* obj[key] = value when `present`, else null on purpose (a NULL value
 * while present is a failed allocation). */
static inline void ps__json_set_opt(ps_code *rc, json_object *obj, const char *key, bool present,
                                    json_object *value)
{
    if (present)
        ps__json_set(rc, obj, key, value);
    else
        ps__json_set_null(rc, obj, key);
}

/* Appends value to arr (value NULL: a failed allocation). */
static inline void ps__json_push(ps_code *rc, json_object *arr, json_object *value)
{
    if (*rc == PS_OK && arr && value && json_object_array_add(arr, value) == 0)
        return;
    if (*rc == PS_OK)
        *rc = PS_ERR_NOMEM;
    json_object_put(value);
}

/* Appends value when `present`, else null on purpose (a NULL value while
 * present is a failed allocation). */
static inline void ps__json_push_opt(ps_code *rc, json_object *arr, bool present,
                                     json_object *value)
{
    if (present) {
        ps__json_push(rc, arr, value);
    } else if (*rc == PS_OK && (!arr || json_object_array_add(arr, NULL) != 0)) {
        *rc = PS_ERR_NOMEM;
    }
}

#endif
