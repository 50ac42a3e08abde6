/*
 * Validation of what clients send, before anything is merged or stored: the
 * whole request is checked first, so a rejected request changes nothing.
 * Errors name the chat index and the field ("chats[3].messages[2].role").
 */
#ifndef PS_VALIDATE_H
#define PS_VALIDATE_H

#include "polysync/error.h"

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct ps_limits {
    size_t max_chats;    /* chats (and deletions) in one request */
    size_t max_id_bytes; /* chat, message and device ids */
} ps_limits;

/* The defaults documented in docs/operations.md. */
ps_limits ps__limits_default(void);

/* One chat as the legacy endpoints accept it; `index` is for the message. */
ps_code ps__validate_chat(json_object *chat, long index, const ps_limits *lim, ps_error *err);

/* A chat or message id: a string of 1..max_id_bytes bytes without NUL. */
bool ps__valid_id(json_object *v, const ps_limits *lim);

/* Largest Lamport counter accepted: 2^53 - 1, JavaScript's safe integers. */
#define PS_MAX_COUNTER 9007199254740991LL

/* A Lamport counter: an integer in [0, PS_MAX_COUNTER]. */
bool ps__valid_counter(json_object *v);
/* A Lamport tuple [counter, "id"]. */
bool ps__valid_lamport(json_object *v, const ps_limits *lim);

/*
 * A request's clientClock, in every shape clients send (docs/protocol.md): a
 * counter, [counter, deviceId], {lamport, deviceId} or Polyglot's
 * {deviceId, localCounter, observedCounter}. An object needs at least one of
 * the counter keys below, each a valid counter; other keys are ignored.
 */
#define PS_CLIENT_CLOCK_KEYS 3
extern const char *const ps__client_clock_keys[PS_CLIENT_CLOCK_KEYS];
bool ps__valid_client_clock(json_object *v, const ps_limits *lim);

/*
 * A /sync or /pushChats body: {chats:[...], deviceId?, clientClock?,
 * deleted?, deletions?, deletionRecords?}; any other top-level member is
 * ignored, whatever its type. `chats` is required.
 */
ps_code ps__validate_sync_request(json_object *root, const ps_limits *lim, ps_error *err);

/* Most chats one v2 answer may carry (`limit`). */
#define PS_V2_MAX_LIMIT 5000

/* A /v2/sync body: {deviceId, cursor?, limit?, changes?: [...]}; see
 * docs/protocol.md. Errors name the field as "changes[2].messages[0].role". */
ps_code ps__validate_v2_request(json_object *root, const ps_limits *lim, ps_error *err);

/* {chatId} for /deleteChat, {chatIds:[...]} for /deleteChats. */
ps_code ps__validate_delete_request(json_object *root, bool many, const ps_limits *lim,
                                   ps_error *err);

#endif
