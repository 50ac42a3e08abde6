/*
 * Request validation; see validate.h. Types are checked for the fields whose
 * meaning polysync relies on; any other field is kept verbatim, whatever its
 * type, because a newer client may know what it means.
 */
#include "core/validate.h"
#include "core/timestamp.h"

#include <stdio.h>
#include <string.h>

ps_limits ps__limits_default(void)
{
    return (ps_limits){.max_chats = 50000, .max_id_bytes = 256};
}

bool ps__valid_id(json_object *v, const ps_limits *lim)
{
    if (!json_object_is_type(v, json_type_string))
        return false;
    size_t len = (size_t)json_object_get_string_len(v);
    return len > 0 && len <= lim->max_id_bytes && strlen(json_object_get_string(v)) == len;
}

/* Lamport counters come from JavaScript clients: integers up to 2^53 - 1.
 * The cap also leaves the server clock room to tick without overflow. */
bool ps__valid_counter(json_object *v)
{
    return json_object_is_type(v, json_type_int) && json_object_get_int64(v) >= 0 &&
           json_object_get_int64(v) <= PS_MAX_COUNTER;
}

bool ps__valid_lamport(json_object *v, const ps_limits *lim)
{
    if (!json_object_is_type(v, json_type_array) || json_object_array_length(v) != 2)
        return false;
    json_object *n = json_object_array_get_idx(v, 0);
    json_object *id = json_object_array_get_idx(v, 1);
    return ps__valid_counter(n) && ps__valid_id(id, lim);
}

/* The counters a clientClock object may carry: Polyglot's CoherenceClock
 * snapshot {deviceId, localCounter, observedCounter} and the tuple object
 * {lamport, deviceId} its records use. */
const char *const ps__client_clock_keys[PS_CLIENT_CLOCK_KEYS] = {"lamport", "localCounter",
                                                                "observedCounter"};

bool ps__valid_client_clock(json_object *v, const ps_limits *lim)
{
    if (json_object_is_type(v, json_type_int))
        return ps__valid_counter(v);
    if (json_object_is_type(v, json_type_array))
        return ps__valid_lamport(v, lim);
    if (!json_object_is_type(v, json_type_object))
        return false;
    /* The clock is observed, so what it says must be a counter: at least one,
     * each one valid; a deviceId, when present, an id. Other keys are ignored. */
    json_object *c;
    if (json_object_object_get_ex(v, "deviceId", &c) && !ps__valid_id(c, lim))
        return false;
    size_t counters = 0;
    for (size_t k = 0; k < PS_CLIENT_CLOCK_KEYS; k++) {
        if (!json_object_object_get_ex(v, ps__client_clock_keys[k], &c))
            continue;
        if (!ps__valid_counter(c))
            return false;
        counters++;
    }
    return counters > 0;
}

static bool valid_time(json_object *v)
{
    int64_t ms;
    return v == NULL || ps__time_from_json(v, &ms);
}

static bool string_or_null(json_object *v)
{
    return v == NULL || json_object_is_type(v, json_type_string);
}

/* Where in the request a value is, for error messages: `path` prefixes the
 * human message ("chats[3]", "changes[2]"), `field_base` the field name
 * ("" for legacy chats, whose index goes in chatIndex; "changes[2]." for v2). */
typedef struct where {
    const char *path;
    const char *field_base;
    long chat_index;
} where;

static ps_code fail(ps_error *err, const where *w, const char *field, const char *problem)
{
    char full[128];
    snprintf(full, sizeof full, "%s%s", w->field_base, field);
    return ps_error_set(err, PS_ERR_INVALID, w->chat_index, full, "%s.%s %s", w->path, field,
                        problem);
}

static ps_code validate_message(json_object *msg, const where *w, size_t mi, const ps_limits *lim,
                                ps_error *err)
{
    char field[64];
    json_object *v;
#define MSG_FAIL(name, problem)                                                                    \
    do {                                                                                           \
        snprintf(field, sizeof field, "messages[%zu]%s", mi, name);                                \
        return fail(err, w, field, problem);                                                       \
    } while (0)
    if (!json_object_is_type(msg, json_type_object))
        MSG_FAIL("", "must be an object");
    if (!json_object_object_get_ex(msg, "id", &v) || !ps__valid_id(v, lim))
        MSG_FAIL(".id", "must be a string of 1 to 256 bytes");
    /* {id, deleted: true} is a message tombstone: nothing else needed. */
    if (json_object_object_get_ex(msg, "deleted", &v) &&
        json_object_is_type(v, json_type_boolean) && json_object_get_boolean(v))
        return PS_OK;
    if (!json_object_object_get_ex(msg, "role", &v) || !json_object_is_type(v, json_type_string))
        MSG_FAIL(".role", "is required and must be a string");
    if (!json_object_object_get_ex(msg, "content", &v) ||
        !(json_object_is_type(v, json_type_string) || json_object_is_type(v, json_type_array)))
        MSG_FAIL(".content", "is required (string or array)");
    if (json_object_object_get_ex(msg, "timestamp", &v) &&
        !json_object_is_type(v, json_type_null) && !valid_time(v))
        MSG_FAIL(".timestamp", "must be an ISO 8601 time or epoch milliseconds");
#undef MSG_FAIL
    return PS_OK;
}

/* The chat-level fields whose type polysync relies on, in a legacy chat or a
 * v2 change's `fields`. */
static ps_code validate_known_fields(json_object *obj, const where *w, const char *prefix,
                                     ps_error *err)
{
    char field[64];
    json_object *v;
    static const char *const string_fields[] = {"title", "model", "provider", "currentModel"};
    for (size_t k = 0; k < sizeof string_fields / sizeof *string_fields; k++) {
        if (json_object_object_get_ex(obj, string_fields[k], &v) && !string_or_null(v)) {
            snprintf(field, sizeof field, "%s%s", prefix, string_fields[k]);
            return fail(err, w, field, "must be a string or null");
        }
    }
    if (json_object_object_get_ex(obj, "isArchived", &v) && v &&
        !json_object_is_type(v, json_type_boolean)) {
        snprintf(field, sizeof field, "%sisArchived", prefix);
        return fail(err, w, field, "must be a boolean");
    }
    static const char *const time_fields[] = {"createdAt", "updatedAt", "lastModified"};
    for (size_t k = 0; k < sizeof time_fields / sizeof *time_fields; k++) {
        if (json_object_object_get_ex(obj, time_fields[k], &v) && !valid_time(v)) {
            snprintf(field, sizeof field, "%s%s", prefix, time_fields[k]);
            return fail(err, w, field, "must be an ISO 8601 time or epoch milliseconds");
        }
    }
    return PS_OK;
}

static ps_code validate_messages(json_object *list, const where *w, const ps_limits *lim,
                                 ps_error *err)
{
    if (!json_object_is_type(list, json_type_array))
        return fail(err, w, "messages", "must be an array");
    size_t n = json_object_array_length(list);
    for (size_t mi = 0; mi < n; mi++) {
        ps_code rc = validate_message(json_object_array_get_idx(list, mi), w, mi, lim, err);
        if (rc != PS_OK)
            return rc;
    }
    return PS_OK;
}

ps_code ps__validate_chat(json_object *chat, long ci, const ps_limits *lim, ps_error *err)
{
    char path[32];
    snprintf(path, sizeof path, "chats[%ld]", ci);
    where w = {.path = path, .field_base = "", .chat_index = ci};
    if (!json_object_is_type(chat, json_type_object))
        return ps_error_set(err, PS_ERR_INVALID, ci, "", "chats[%ld] must be an object", ci);
    json_object *v;
    if (!json_object_object_get_ex(chat, "id", &v) || !ps__valid_id(v, lim))
        return fail(err, &w, "id", "must be a string of 1 to 256 bytes");
    ps_code rc = validate_known_fields(chat, &w, "", err);
    if (rc != PS_OK)
        return rc;
    if (json_object_object_get_ex(chat, "updatedAtLamport", &v) && v && !ps__valid_lamport(v, lim))
        return fail(err, &w, "updatedAtLamport",
                    "must be [counter, deviceId] with a counter from 0 to 2^53 - 1");
    if (json_object_object_get_ex(chat, "messages", &v))
        return validate_messages(v, &w, lim, err);
    return PS_OK;
}

/* Checks an optional array member of `root` and runs `check` on each item. */
typedef bool (*item_check)(json_object *item, const ps_limits *lim);

static ps_code validate_list(json_object *root, const char *key, item_check check, const char *what,
                             const ps_limits *lim, ps_error *err)
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
        !json_object_object_get_ex(item, "id", &v) || !ps__valid_id(v, lim))
        return false;
    if (json_object_object_get_ex(item, clock_key, &v) && v && !ps__valid_lamport(v, lim))
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

ps_code ps__validate_sync_request(json_object *root, const ps_limits *lim, ps_error *err)
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
        ps_code rc = ps__validate_chat(json_object_array_get_idx(v, i), (long)i, lim, err);
        if (rc != PS_OK)
            return rc;
    }
    if (json_object_object_get_ex(root, "deviceId", &v) && v && !ps__valid_id(v, lim))
        return ps_error_set(err, PS_ERR_INVALID, -1, "deviceId",
                            "deviceId must be a string of 1 to %zu bytes", lim->max_id_bytes);
    if (json_object_object_get_ex(root, "clientClock", &v) && v && !ps__valid_client_clock(v, lim))
        return ps_error_set(err, PS_ERR_INVALID, -1, "clientClock",
                            "clientClock must be a counter from 0 to 2^53 - 1, [counter, "
                            "deviceId], {lamport, deviceId} or {deviceId, localCounter, "
                            "observedCounter}");
    ps_code rc = validate_list(root, "deleted", ps__valid_id, "a chat id", lim, err);
    if (rc == PS_OK)
        rc = validate_list(root, "deletions", valid_deletion, "{id, lamport?: [n, deviceId]}", lim,
                           err);
    if (rc == PS_OK)
        rc = validate_list(root, "deletionRecords", valid_deletion_record,
                           "{id, deletedAtLamport?: [n, deviceId]}", lim, err);
    return rc;
}

ps_code ps__validate_delete_request(json_object *root, bool many, const ps_limits *lim,
                                   ps_error *err)
{
    if (!json_object_is_type(root, json_type_object))
        return ps_error_set(err, PS_ERR_INVALID, -1, "", "the body must be a JSON object");
    json_object *v;
    if (!many) {
        if (!json_object_object_get_ex(root, "chatId", &v) || !ps__valid_id(v, lim))
            return ps_error_set(err, PS_ERR_INVALID, -1, "chatId",
                                "chatId must be a string of 1 to %zu bytes", lim->max_id_bytes);
        return PS_OK;
    }
    if (!json_object_object_get_ex(root, "chatIds", &v) || !json_object_is_type(v, json_type_array))
        return ps_error_set(err, PS_ERR_INVALID, -1, "chatIds", "chatIds must be an array");
    return validate_list(root, "chatIds", ps__valid_id, "a chat id", lim, err);
}

/* One v2 change: {chatId, clock?, at?, fields?, messages?, deleteMessages?,
 * deleteChat?}. */
static ps_code validate_change(json_object *change, size_t i, const ps_limits *lim, ps_error *err)
{
    char path[32], base[40];
    snprintf(path, sizeof path, "changes[%zu]", i);
    snprintf(base, sizeof base, "changes[%zu].", i);
    where w = {.path = path, .field_base = base, .chat_index = -1};
    if (!json_object_is_type(change, json_type_object))
        return ps_error_set(err, PS_ERR_INVALID, -1, path, "%s must be an object", path);
    json_object *v;
    if (!json_object_object_get_ex(change, "chatId", &v) || !ps__valid_id(v, lim))
        return fail(err, &w, "chatId", "must be a string of 1 to 256 bytes");
    if (json_object_object_get_ex(change, "clock", &v) && !ps__valid_counter(v))
        return fail(err, &w, "clock", "must be an integer from 0 to 2^53 - 1");
    if (json_object_object_get_ex(change, "at", &v) && !valid_time(v))
        return fail(err, &w, "at", "must be an ISO 8601 time or epoch milliseconds");
    if (json_object_object_get_ex(change, "fields", &v)) {
        if (!json_object_is_type(v, json_type_object))
            return fail(err, &w, "fields", "must be an object");
        /* id and messages have their own places in a change */
        if (json_object_object_get_ex(v, "id", NULL) ||
            json_object_object_get_ex(v, "messages", NULL))
            return fail(err, &w, "fields", "cannot set id or messages (use chatId, messages)");
        ps_code rc = validate_known_fields(v, &w, "fields.", err);
        if (rc != PS_OK)
            return rc;
    }
    if (json_object_object_get_ex(change, "messages", &v)) {
        ps_code rc = validate_messages(v, &w, lim, err);
        if (rc != PS_OK)
            return rc;
    }
    if (json_object_object_get_ex(change, "deleteMessages", &v)) {
        size_t n = json_object_is_type(v, json_type_array) ? json_object_array_length(v) : 0;
        if (!json_object_is_type(v, json_type_array))
            return fail(err, &w, "deleteMessages", "must be an array of message ids");
        for (size_t k = 0; k < n; k++) {
            if (!ps__valid_id(json_object_array_get_idx(v, k), lim)) {
                char field[48];
                snprintf(field, sizeof field, "deleteMessages[%zu]", k);
                return fail(err, &w, field, "must be a message id (1 to 256 bytes)");
            }
        }
    }
    if (json_object_object_get_ex(change, "deleteChat", &v) &&
        !json_object_is_type(v, json_type_boolean))
        return fail(err, &w, "deleteChat", "must be a boolean");
    return PS_OK;
}

ps_code ps__validate_v2_request(json_object *root, const ps_limits *lim, ps_error *err)
{
    if (!json_object_is_type(root, json_type_object))
        return ps_error_set(err, PS_ERR_INVALID, -1, "", "the body must be a JSON object");
    json_object *v;
    if (!json_object_object_get_ex(root, "deviceId", &v) || !ps__valid_id(v, lim))
        return ps_error_set(err, PS_ERR_INVALID, -1, "deviceId",
                            "deviceId is required: a string of 1 to %zu bytes", lim->max_id_bytes);
    if (json_object_object_get_ex(root, "cursor", &v) && v &&
        !json_object_is_type(v, json_type_string))
        return ps_error_set(err, PS_ERR_INVALID, -1, "cursor",
                            "cursor must be the string of a previous answer, or null");
    if (json_object_object_get_ex(root, "limit", &v) &&
        !(json_object_is_type(v, json_type_int) && json_object_get_int64(v) >= 1 &&
          json_object_get_int64(v) <= PS_V2_MAX_LIMIT))
        return ps_error_set(err, PS_ERR_INVALID, -1, "limit",
                            "limit must be an integer from 1 to %d", PS_V2_MAX_LIMIT);
    if (!json_object_object_get_ex(root, "changes", &v) || !v)
        return PS_OK;
    if (!json_object_is_type(v, json_type_array))
        return ps_error_set(err, PS_ERR_INVALID, -1, "changes", "changes must be an array");
    size_t n = json_object_array_length(v);
    if (n > lim->max_chats)
        return ps_error_set(err, PS_ERR_TOO_LARGE, -1, "changes",
                            "%zu changes in one request; the limit is %zu", n, lim->max_chats);
    for (size_t i = 0; i < n; i++) {
        ps_code rc = validate_change(json_object_array_get_idx(v, i), i, lim, err);
        if (rc != PS_OK)
            return rc;
    }
    return PS_OK;
}
