/* The route table; see router.h. Small enough that a linear scan is fastest. */
#include "server/router.h"

#include <string.h>

static const ps_route ROUTES[] = {
    /* raw: parsed chat by chat, skipping chats known unchanged */
    {"POST", "/sync", PS_BODY_RAW, ps_handle_sync},
    {"POST", "/pushChats", PS_BODY_RAW, ps_handle_push_chats},
    {"GET", "/fetchChats", PS_BODY_NONE, ps_handle_fetch_chats},
    {"HEAD", "/fetchChats", PS_BODY_NONE, ps_handle_fetch_chats},
    {"POST", "/deleteChat", PS_BODY_JSON, ps_handle_delete_chat},
    {"POST", "/deleteChats", PS_BODY_JSON, ps_handle_delete_chats},
    {"GET", "/health", PS_BODY_NONE, ps_handle_health},
    {"HEAD", "/health", PS_BODY_NONE, ps_handle_health},
    {"POST", "/v2/sync", PS_BODY_JSON, ps_handle_v2_sync},
    {"GET", "/v2/events", PS_BODY_NONE, ps_handle_v2_events},
    {"GET", "/v2/devices", PS_BODY_NONE, ps_handle_v2_devices},
};

ps_route_result ps_route_find(const char *method, const char *path, const ps_route **out,
                              char allow[PS_ALLOW_MAX])
{
    allow[0] = '\0';
    *out = NULL;
    bool path_known = false;
    for (size_t i = 0; i < sizeof ROUTES / sizeof *ROUTES; i++) {
        if (strcmp(ROUTES[i].path, path) != 0)
            continue;
        path_known = true;
        if (strcmp(ROUTES[i].method, method) == 0) {
            *out = &ROUTES[i];
            return PS_ROUTE_FOUND;
        }
    }
    if (!path_known)
        return PS_ROUTE_NO_PATH;
    /* Allow lists the path's methods, plus OPTIONS (preflight is answered
     * by the server before routing). */
    for (size_t i = 0; i < sizeof ROUTES / sizeof *ROUTES; i++) {
        if (strcmp(ROUTES[i].path, path) == 0) {
            strncat(allow, ROUTES[i].method, PS_ALLOW_MAX - strlen(allow) - 1);
            strncat(allow, ", ", PS_ALLOW_MAX - strlen(allow) - 1);
        }
    }
    strncat(allow, "OPTIONS", PS_ALLOW_MAX - strlen(allow) - 1);
    return PS_ROUTE_BAD_METHOD;
}
