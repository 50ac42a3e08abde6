/* Sticky-result json-c building; see json_build.h. */
#include "core/json_build.h"

void ps__json_set(ps_code *rc, json_object *obj, const char *key, json_object *value)
{
    if (*rc == PS_OK && obj && value && json_object_object_add(obj, key, value) == 0)
        return;
    if (*rc == PS_OK)
        *rc = PS_ERR_NOMEM;
    json_object_put(value);
}

void ps__json_set_opt(ps_code *rc, json_object *obj, const char *key, bool present,
                      json_object *value)
{
    if (present)
        ps__json_set(rc, obj, key, value);
    else
        ps__json_set_null(rc, obj, key);
}

void ps__json_set_null(ps_code *rc, json_object *obj, const char *key)
{
    if (*rc == PS_OK && (!obj || json_object_object_add(obj, key, NULL) != 0))
        *rc = PS_ERR_NOMEM;
}

void ps__json_push(ps_code *rc, json_object *arr, json_object *value)
{
    if (*rc == PS_OK && arr && value && json_object_array_add(arr, value) == 0)
        return;
    if (*rc == PS_OK)
        *rc = PS_ERR_NOMEM;
    json_object_put(value);
}
