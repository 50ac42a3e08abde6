/*
 * Request validation; see validate.h. Types are checked for the fields whose
 * meaning polysync relies on; any other field is kept verbatim, whatever its
 * type, because a newer client may know what it means.
 */
#include "core/validate.h"
#include "core/timestamp.h"

#include <stdio.h>
#include <string.h>

ps_limits ps_limits_default(void)
{
    return (ps_limits){.max_chats = 50000, .max_id_bytes = 256};
}

bool ps_valid_id(json_object *v, const ps_limits *lim)
{
    if (!json_object_is_type(v, json_type_string))
        return false;
    size_t len = (size_t)json_object_get_string_len(v);
    return len > 0 && len <= lim->max_id_bytes && strlen(json_object_get_string(v)) == len;
}

/* Lamport counters come from JavaScript clients: integers up to 2^53 - 1.
 * The cap also leaves the server clock room to tick without overflow. */
bool ps_valid_counter(json_object *v)
{
    return json_object_is_type(v, json_type_int) && json_object_get_int64(v) >= 0 &&
           json_object_get_int64(v) <= PS_MAX_COUNTER;
}

bool ps_valid_lamport(json_object *v, const ps_limits *lim)
{
    if (!json_object_is_type(v, json_type_array) || json_object_array_length(v) != 2)
        return false;
    json_object *n = json_object_array_get_idx(v, 0);
    json_object *id = json_object_array_get_idx(v, 1);
    return ps_valid_counter(n) && ps_valid_id(id, lim);
}

static bool valid_time(json_object *v)
{
    int64_t ms;
    return v == NULL || ps_time_from_json(v, &ms);
}

static bool string_or_null(json_object *v)
{
    return v == NULL || json_object_is_type(v, json_type_string);
}

static ps_code validate_message(json_object *msg, long ci, size_t mi, const ps_limits *lim,
                                ps_error *err)
{
    char field[64];
#define MSG_FAIL(name, ...)                                                                        \
    do {                                                                                           \
        snprintf(field, sizeof field, "messages[%zu]%s", mi, name);                                \
        return ps_error_set(err, PS_ERR_INVALID, ci, field, __VA_ARGS__);                          \
    } while (0)
    if (!json_object_is_type(msg, json_type_object))
        MSG_FAIL("", "chats[%ld].messages[%zu] must be an object", ci, mi);
    json_object *v;
    if (!json_object_object_get_ex(msg, "id", &v) || !ps_valid_id(v, lim))
        MSG_FAIL(".id", "chats[%ld].messages[%zu].id must be a string of 1 to %zu bytes", ci, mi,
                 lim->max_id_bytes);
    /* {id, deleted: true} is a message tombstone: nothing else needed. */
    if (json_object_object_get_ex(msg, "deleted", &v) && json_object_is_type(v, json_type_boolean) &&
        json_object_get_boolean(v))
        return PS_OK;
    if (!json_object_object_get_ex(msg, "role", &v) || !json_object_is_type(v, json_type_string))
        MSG_FAIL(".role", "chats[%ld].messages[%zu].role is required and must be a string", ci,
                 mi);
    if (!json_object_object_get_ex(msg, "content", &v) ||
        !(json_object_is_type(v, json_type_string) || json_object_is_type(v, json_type_array)))
        MSG_FAIL(".content", "chats[%ld].messages[%zu].content is required (string or array)", ci,
                 mi);
    if (json_object_object_get_ex(msg, "timestamp", &v) && !json_object_is_type(v, json_type_null) &&
        !valid_time(v))
        MSG_FAIL(".timestamp", "chats[%ld].messages[%zu].timestamp must be an ISO 8601 time or "
                 "epoch milliseconds", ci, mi);
#undef MSG_FAIL
    return PS_OK;
}

ps_code ps_validate_chat(json_object *chat, long ci, const ps_limits *lim, ps_error *err)
{
    if (!json_object_is_type(chat, json_type_object))
        return ps_error_set(err, PS_ERR_INVALID, ci, "", "chats[%ld] must be an object", ci);
    json_object *v;
    if (!json_object_object_get_ex(chat, "id", &v) || !ps_valid_id(v, lim))
        return ps_error_set(err, PS_ERR_INVALID, ci, "id",
                            "chats[%ld].id must be a string of 1 to %zu bytes", ci,
                            lim->max_id_bytes);
    if (json_object_object_get_ex(chat, "title", &v) && !string_or_null(v))
        return ps_error_set(err, PS_ERR_INVALID, ci, "title", "chats[%ld].title must be a string",
                            ci);
    static const char *const string_fields[] = {"model", "provider", "currentModel"};
    for (size_t k = 0; k < sizeof string_fields / sizeof *string_fields; k++)
        if (json_object_object_get_ex(chat, string_fields[k], &v) && !string_or_null(v))
            return ps_error_set(err, PS_ERR_INVALID, ci, string_fields[k],
                                "chats[%ld].%s must be a string or null", ci, string_fields[k]);
    if (json_object_object_get_ex(chat, "isArchived", &v) && v &&
        !json_object_is_type(v, json_type_boolean))
        return ps_error_set(err, PS_ERR_INVALID, ci, "isArchived",
                            "chats[%ld].isArchived must be a boolean", ci);
    static const char *const time_fields[] = {"createdAt", "updatedAt", "lastModified"};
    for (size_t k = 0; k < sizeof time_fields / sizeof *time_fields; k++)
        if (json_object_object_get_ex(chat, time_fields[k], &v) && !valid_time(v))
            return ps_error_set(err, PS_ERR_INVALID, ci, time_fields[k],
                                "chats[%ld].%s must be an ISO 8601 time or epoch milliseconds",
                                ci, time_fields[k]);
    if (json_object_object_get_ex(chat, "updatedAtLamport", &v) && v &&
        !ps_valid_lamport(v, lim))
        return ps_error_set(err, PS_ERR_INVALID, ci, "updatedAtLamport",
                            "chats[%ld].updatedAtLamport must be [counter, deviceId] with a counter "
                            "from 0 to 2^53 - 1", ci);
    if (json_object_object_get_ex(chat, "messages", &v)) {
        if (!json_object_is_type(v, json_type_array))
            return ps_error_set(err, PS_ERR_INVALID, ci, "messages",
                                "chats[%ld].messages must be an array", ci);
        size_t n = json_object_array_length(v);
        for (size_t mi = 0; mi < n; mi++) {
            ps_code rc = validate_message(json_object_array_get_idx(v, mi), ci, mi, lim, err);
            if (rc != PS_OK)
                return rc;
        }
    }
    return PS_OK;
}

/* Checks an optional array member of `root` and runs `check` on each item. */
typedef bool (*item_check)(json_object *item, const ps_limits *lim);

static ps_code validate_list(json_object *root, const char *key, item_check check,
                             const char *what, const ps_limits *lim, ps_error *err)
{
    json_object *list;
    if (!json_object_object_get_ex(root, key, &list) || json_object_is_type(list, json_type_null))
        return PS_OK;
    if (!json_object_is_type(list, json_type_array))
        return ps_error_set(err, PS_ERR_INVALID, -1, key, "%s must be an array", key);
    size_t n = json_object_array_length(list);
    if (n > lim->max_chats)
        return ps_error_set(err, PS_ERR_TOO_LARGE, -1, key, "%s has %zu entries; the limit is %zu",
                            key, n, lim->max_chats);
    for (size_t i = 0; i < n; i++)
        if (!check(json_object_array_get_idx(list, i), lim))
            return ps_error_set(err, PS_ERR_INVALID, -1, key, "%s[%zu] must be %s", key, i, what);
    return PS_OK;
}

static bool deletion_with(json_object *item, const ps_limits *lim, const char *clock_key)
{
    json_object *v;
    if (!json_object_is_type(item, json_type_object) ||
        !json_object_object_get_ex(item, "id", &v) || !ps_valid_id(v, lim))
        return false;
    if (json_object_object_get_ex(item, clock_key, &v) && v && !ps_valid_lamport(v, lim))
        return false;
    if (json_object_object_get_ex(item, "deletedAt", &v) && !valid_time(v))
        return false;
    return true;
}

static bool valid_deletion(json_object *item, const ps_limits *lim)
{
    return deletion_with(item, lim, "lamport");
}

static bool valid_deletion_record(json_object *item, const ps_limits *lim)
{
    return deletion_with(item, lim, "deletedAtLamport");
}

ps_code ps_validate_sync_request(json_object *root, const ps_limits *lim, ps_error *err)
{
    if (!json_object_is_type(root, json_type_object))
        return ps_error_set(err, PS_ERR_INVALID, -1, "", "the body must be a JSON object");
    json_object *v;
    if (!json_object_object_get_ex(root, "chats", &v) || !json_object_is_type(v, json_type_array))
        return ps_error_set(err, PS_ERR_INVALID, -1, "chats", "chats must be an array");
    size_t n = json_object_array_length(v);
    if (n > lim->max_chats)
        return ps_error_set(err, PS_ERR_TOO_LARGE, -1, "chats",
                            "%zu chats in one request; the limit is %zu", n, lim->max_chats);
    for (size_t i = 0; i < n; i++) {
        ps_code rc = ps_validate_chat(json_object_array_get_idx(v, i), (long)i, lim, err);
        if (rc != PS_OK)
            return rc;
    }
    if (json_object_object_get_ex(root, "deviceId", &v) && v && !ps_valid_id(v, lim))
        return ps_error_set(err, PS_ERR_INVALID, -1, "deviceId",
                            "deviceId must be a string of 1 to %zu bytes", lim->max_id_bytes);
    if (json_object_object_get_ex(root, "clientClock", &v) && v && !ps_valid_counter(v))
        return ps_error_set(err, PS_ERR_INVALID, -1, "clientClock",
                            "clientClock must be an integer from 0 to 2^53 - 1");
    ps_code rc = validate_list(root, "deleted", ps_valid_id, "a chat id", lim, err);
    if (rc == PS_OK)
        rc = validate_list(root, "deletions", valid_deletion, "{id, lamport?: [n, deviceId]}",
                           lim, err);
    if (rc == PS_OK)
        rc = validate_list(root, "deletionRecords", valid_deletion_record,
                           "{id, deletedAtLamport?: [n, deviceId]}", lim, err);
    return rc;
}

ps_code ps_validate_delete_request(json_object *root, bool many, const ps_limits *lim,
                                   ps_error *err)
{
    if (!json_object_is_type(root, json_type_object))
        return ps_error_set(err, PS_ERR_INVALID, -1, "", "the body must be a JSON object");
    json_object *v;
    if (!many) {
        if (!json_object_object_get_ex(root, "chatId", &v) || !ps_valid_id(v, lim))
            return ps_error_set(err, PS_ERR_INVALID, -1, "chatId",
                                "chatId must be a string of 1 to %zu bytes", lim->max_id_bytes);
        return PS_OK;
    }
    if (!json_object_object_get_ex(root, "chatIds", &v) || !json_object_is_type(v, json_type_array))
        return ps_error_set(err, PS_ERR_INVALID, -1, "chatIds", "chatIds must be an array");
    return validate_list(root, "chatIds", ps_valid_id, "a chat id", lim, err);
}
