/*
 * The members of a message object polysync reads (id, deleted, role,
 * content, timestamp, isPrivate), found in one pass over its keys. A first
 * upload validates and ingests ~100,000 messages, and a json-c lookup per
 * member (hash the name, probe the table, strcmp) was ~3 % of a v2 push's
 * CPU. A member that is absent or null is NULL: every reader treats the
 * two alike (json_object_object_get_ex gives NULL for a null value).
 * Header-only.
 */
#ifndef PS_MESSAGE_KEYS_H
#define PS_MESSAGE_KEYS_H

#include <json-c/json.h>
#include <string.h>

typedef struct ps_message_keys {
    json_object *id, *deleted, *role, *content, *timestamp, *is_private;
} ps_message_keys;

/* All NULL for a `msg` that is not an object (as lookups in it found). */
static inline void ps__message_keys(json_object *msg, ps_message_keys *k)
{
    *k = (ps_message_keys){0};
    if (!json_object_is_type(msg, json_type_object))
        return;
    json_object_object_foreach(msg, key, val)
    {
        switch (key[0]) {
        case 'i':
            if (strcmp(key, "id") == 0)
                k->id = val;
            else if (strcmp(key, "isPrivate") == 0)
                k->is_private = val;
            break;
        case 'd':
            if (strcmp(key, "deleted") == 0)
                k->deleted = val;
            break;
        case 'r':
            if (strcmp(key, "role") == 0)
                k->role = val;
            break;
        case 'c':
            if (strcmp(key, "content") == 0)
                k->content = val;
            break;
        case 't':
            if (strcmp(key, "timestamp") == 0)
                k->timestamp = val;
            break;
        default:
            break;
        }
    }
}

#endif
