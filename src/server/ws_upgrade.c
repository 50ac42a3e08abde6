/* The WebSocket handshake on `/`; see ws_upgrade.h. */
#include "server/ws_upgrade.h"
#include "core/chat.h"
#include "core/timestamp.h"
#include "server/http_response.h"

#include <openssl/evp.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define TOKEN_MAX 8192
#define BEARER_PROTOCOL "bearer"

/* Whether the comma-separated header value holds `token` (any case). */
static bool has_token(const char *value, const char *token)
{
    size_t n = strlen(token);
    for (const char *p = value; p && *p;) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        size_t len = strcspn(p, ",");
        size_t trimmed = len;
        while (trimmed && (p[trimmed - 1] == ' ' || p[trimmed - 1] == '\t'))
            trimmed--;
        if (trimmed == n && strncasecmp(p, token, n) == 0)
            return true;
        p += len;
    }
    return false;
}

bool ps_ws_is_upgrade(struct MHD_Connection *conn, const char *method, const char *url)
{
    if (strcmp(method, "GET") != 0 || strcmp(url, "/") != 0)
        return false;
    const char *up = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_UPGRADE);
    return up && has_token(up, "websocket");
}

bool ps_ws_accept_key(const char *key, char out[29])
{
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    /* 16 bytes in base64: 22 characters and "==" */
    if (!key || strlen(key) != 24 || key[22] != '=' || key[23] != '=')
        return false;
    for (int i = 0; i < 22; i++)
        if (!strchr(b64, key[i]) || !key[i])
            return false;
    char joined[24 + sizeof WS_GUID];
    memcpy(joined, key, 24);
    memcpy(joined + 24, WS_GUID, sizeof WS_GUID);
    unsigned char digest[SHA_DIGEST_LENGTH];
    SHA1((const unsigned char *)joined, strlen(joined), digest);
    EVP_EncodeBlock((unsigned char *)out, digest, SHA_DIGEST_LENGTH);
    return true;
}

static enum MHD_Result send_error(struct MHD_Connection *conn, const ps_ws_gate *gate,
                                  ps_ws_pending *pending, ps_code code, const char *message,
                                  unsigned retry_after_s)
{
    ps_reply reply;
    ps_reply_init(&reply, 4096);
    reply.hsts = gate->hsts;
    reply.retry_after_s = retry_after_s;
    ps_reply_from_code(&reply, code, message);
    pending->status = reply.status;
    enum MHD_Result r = ps__send_reply(conn, &reply, PS_CODING_IDENTITY);
    ps_reply_free(&reply);
    return r;
}

/*
 * The token a browser could send: ?access_token=, or the element after
 * "bearer" in Sec-WebSocket-Protocol (new WebSocket(url, ["bearer", t])).
 * *offered_bearer: the client offered the "bearer" subprotocol, which the
 * answer must then name (RFC 6455 4.2.2). Returns a malloc'd string.
 */
static char *find_token(struct MHD_Connection *conn, bool *offered_bearer)
{
    *offered_bearer = false;
    char *token = NULL;
    const char *protos =
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Sec-WebSocket-Protocol");
    bool after_bearer = false;
    for (const char *p = protos; p && *p;) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        size_t len = strcspn(p, ", \t");
        if (len == strlen(BEARER_PROTOCOL) && strncmp(p, BEARER_PROTOCOL, len) == 0) {
            *offered_bearer = after_bearer = true;
        } else if (len && after_bearer && !token) {
            token = strndup(p, len);
            after_bearer = false;
        }
        p += len;
    }
    const char *q = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "access_token");
    if (!token && q)
        token = strdup(q);
    return token;
}

/* The user, or an answer already sent (*answered). */
static enum MHD_Result authenticate(struct MHD_Connection *conn, const ps_ws_gate *gate,
                                    ps_ws_pending *pending, char *user, size_t user_size,
                                    bool *offered_bearer, bool *answered)
{
    *answered = false;
    char *token = find_token(conn, offered_bearer);
    if (!gate->auth) {
        free(token);
        snprintf(user, user_size, "%s", gate->implicit_user);
        return MHD_YES;
    }
    ps_error err;
    ps_error_clear(&err);
    char *authz = NULL;
    size_t n = token ? strlen(token) : 0;
    if (n && n <= TOKEN_MAX && (authz = malloc(n + 8)))
        snprintf(authz, n + 8, "Bearer %s", token);
    ps_auth_claims claims;
    ps_code rc = ps_auth_check_claims(gate->auth, n > TOKEN_MAX ? "Bearer too-long" : authz,
                                      ps__time_now_ms() / 1000, user, user_size, &claims, &err);
    free(authz);
    free(token);
    ps_access_verdict verdict =
        rc == PS_OK && gate->access ? ps_access_check(gate->access, user, &claims) : PS_ACCESS_OK;
    if (rc == PS_OK && verdict == PS_ACCESS_OK)
        return MHD_YES;
    /* the token is never logged, nor echoed: err says only what is wrong */
    *answered = true;
    ps_reply reply;
    ps_reply_init(&reply, 4096);
    reply.hsts = gate->hsts;
    if (rc != PS_OK)
        ps_reply_from_error(&reply, &err);
    else
        ps_access_reply(&reply, verdict);
    pending->status = reply.status;
    enum MHD_Result r = ps__send_reply(conn, &reply, PS_CODING_IDENTITY);
    ps_reply_free(&reply);
    return r;
}

static void on_upgraded(void *cls, struct MHD_Connection *connection, void *con_cls,
                        const char *extra_in, size_t extra_in_size, MHD_socket sock,
                        struct MHD_UpgradeResponseHandle *urh)
{
    ps_ws_pending *p = cls;
    p->taken = true;
    ps_ws_attach(p->ws, p->conn, sock, urh, extra_in, extra_in_size);
}

static enum MHD_Result refuse_admit(struct MHD_Connection *conn, const ps_ws_gate *gate,
                                    ps_ws_pending *pending, ps_ws_admit a)
{
    switch (a) {
    case PS_WS_USER_FULL:
        return send_error(conn, gate, pending, PS_ERR_TOO_MANY_SOCKETS,
                          "this user has the most live sockets allowed open; close one", 5);
    case PS_WS_FULL:
        return send_error(conn, gate, pending, PS_ERR_OVERLOADED,
                          "the server has the most live sockets allowed open; retry later", 5);
    case PS_WS_CLOSING:
        return send_error(conn, gate, pending, PS_ERR_SHUTTING_DOWN,
                          "the server is shutting down; retry shortly", 1);
    default:
        return send_error(conn, gate, pending, PS_ERR_NOMEM, "a live socket's place", 1);
    }
}

enum MHD_Result ps_ws_answer(ps_ws *ws, struct MHD_Connection *conn, const ps_ws_gate *gate,
                             ps_ws_pending *pending)
{
    if (gate->draining)
        return refuse_admit(conn, gate, pending, PS_WS_CLOSING);
    const char *version =
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Sec-WebSocket-Version");
    if (!version || strcmp(version, "13") != 0) {
        /* RFC 6455 4.4: 426 naming the version this server speaks */
        ps_reply body;
        ps_reply_init(&body, 4096);
        ps_reply_from_code(&body, PS_ERR_UPGRADE_REQUIRED,
                           "this server speaks WebSocket version 13 (RFC 6455)");
        struct MHD_Response *resp = MHD_create_response_from_buffer(
            body.body.len, body.body.data ? body.body.data : "", MHD_RESPMEM_MUST_COPY);
        ps_reply_free(&body);
        if (!resp)
            return MHD_NO;
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
                                "application/json; charset=utf-8");
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
        MHD_add_response_header(resp, "Sec-WebSocket-Version", "13");
        pending->status = MHD_HTTP_UPGRADE_REQUIRED;
        enum MHD_Result r = MHD_queue_response(conn, MHD_HTTP_UPGRADE_REQUIRED, resp);
        MHD_destroy_response(resp);
        return r;
    }
    const char *connection =
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONNECTION);
    char accept[29];
    if (!connection || !has_token(connection, "upgrade") ||
        !ps_ws_accept_key(MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Sec-WebSocket-Key"),
                          accept))
        return send_error(conn, gate, pending, PS_ERR_BAD_HANDSHAKE,
                          "a WebSocket handshake needs Connection: Upgrade and a "
                          "Sec-WebSocket-Key of 16 bytes in base64",
                          0);
    if (gate->origin_refused)
        return send_error(conn, gate, pending, PS_ERR_ORIGIN_NOT_ALLOWED,
                          "this server does not let pages of that origin open its live socket", 0);
    char user[PS_ID_MAX_BYTES + 1];
    bool bearer, answered;
    enum MHD_Result r = authenticate(conn, gate, pending, user, sizeof user, &bearer, &answered);
    if (answered)
        return r;
    const char *dev = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "deviceId");
    size_t dev_len = dev ? strlen(dev) : 0;
    if (dev_len < 1 || dev_len > PS_ID_MAX_BYTES)
        dev = NULL; /* as on /v2/events: not an id, so no device */
    ps_ws_admit a = ps_ws_reserve(ws, user, dev, &pending->conn);
    if (a != PS_WS_OK)
        return refuse_admit(conn, gate, pending, a);
    pending->ws = ws;
    struct MHD_Response *resp = MHD_create_response_for_upgrade(on_upgraded, pending);
    if (!resp) {
        ps_ws_pending_done(pending);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_UPGRADE, "websocket");
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "Upgrade");
    MHD_add_response_header(resp, "Sec-WebSocket-Accept", accept);
    if (bearer)
        MHD_add_response_header(resp, "Sec-WebSocket-Protocol", BEARER_PROTOCOL);
    pending->status = MHD_HTTP_SWITCHING_PROTOCOLS;
    r = MHD_queue_response(conn, MHD_HTTP_SWITCHING_PROTOCOLS, resp);
    MHD_destroy_response(resp);
    return r;
}

void ps_ws_pending_done(ps_ws_pending *p)
{
    if (p->conn && !p->taken)
        ps_ws_unreserve(p->ws, p->conn);
    p->conn = NULL;
}
