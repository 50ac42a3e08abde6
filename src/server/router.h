/*
 * The route table: which path and method go to which handler. A path that
 * exists with another method answers 405 with Allow; no path, 404.
 */
#ifndef PS_ROUTER_H
#define PS_ROUTER_H

#include "server/respond.h"
#include "server/sync_legacy.h"

#include <json-c/json.h>
#include <stdbool.h>

/* Everything a handler may use; owned by the server. */
/* Where a committed change is announced: the SSE streams and the live
 * sockets (server-lifetime; built by server.c). */
typedef struct ps_live {
    struct ps_events *events;
    struct ps_ws *ws;
    ps_store *store;
} ps_live;

typedef struct ps_handler_env {
    ps_store *store;
    const ps_limits *limits;
    int64_t max_skew_ms;
    size_t max_response_bytes;
    int64_t started_ms;
    const char *user; /* the authenticated user */
    bool auth;        /* users authenticate: /health hides data */
    int64_t quota_bytes;
    struct ps_events *events;
    /* the store probe behind /health (health.h) */
    struct ps_health *health;
    const ps_live *live; /* NULL: changes are announced nowhere */
    /* the body of a PS_BODY_RAW route, taken chat by chat (legacy_body.h) */
    struct ps_legacy_body *legacy_body;
    const char *user_agent; /* the request's User-Agent, "" when none (device registry) */
    int64_t tombstone_retention_ms; /* devices silent longer are expired */
} ps_handler_env;

/* What a route's handler gets of the body. */
typedef enum {
    PS_BODY_NONE, /* no body */
    PS_BODY_JSON, /* parsed JSON (pre-checked, strict) */
    PS_BODY_RAW,  /* a legacy body received chat by chat (env->legacy_body) */
} ps_body_kind;

/* body: the parsed JSON body for PS_BODY_JSON routes, else NULL. */
typedef void (*ps_handler_fn)(const ps_handler_env *env, json_object *body, ps_reply *reply);

typedef struct ps_route {
    const char *method;
    const char *path;
    ps_body_kind body;
    ps_handler_fn handler;
} ps_route;

typedef enum { PS_ROUTE_FOUND, PS_ROUTE_NO_PATH, PS_ROUTE_BAD_METHOD } ps_route_result;

#define PS_ALLOW_MAX 64

/* Finds the route; on PS_ROUTE_BAD_METHOD `allow` gets the Allow header. */
ps_route_result ps_route_find(const char *method, const char *path, const ps_route **out,
                              char allow[PS_ALLOW_MAX]);

/* The sync context of a request (endpoints_legacy.c). */
ps_sync_ctx ps__sync_ctx(const ps_handler_env *env);

/* Handlers, in endpoints_legacy.c. */
void ps_handle_sync(const ps_handler_env *env, json_object *body, ps_reply *reply);
void ps_handle_push_chats(const ps_handler_env *env, json_object *body, ps_reply *reply);
void ps_handle_fetch_chats(const ps_handler_env *env, json_object *body, ps_reply *reply);
void ps_handle_delete_chat(const ps_handler_env *env, json_object *body, ps_reply *reply);
void ps_handle_delete_chats(const ps_handler_env *env, json_object *body, ps_reply *reply);
void ps_handle_health(const ps_handler_env *env, json_object *body, ps_reply *reply);
/* In endpoints_v2.c. */
void ps_handle_v2_sync(const ps_handler_env *env, json_object *body, ps_reply *reply);
void ps_handle_v2_events(const ps_handler_env *env, json_object *body, ps_reply *reply);
/* In endpoints_devices.c. */
void ps_handle_v2_devices(const ps_handler_env *env, json_object *body, ps_reply *reply);

#endif
