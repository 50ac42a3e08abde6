/* A raw error answer mid-body; see raw_reply.h. */
#include "server/raw_reply.h"
#include "server/respond.h"

#include <microhttpd.h>
#include <stdio.h>
#include <sys/socket.h>

bool ps_raw_error(struct MHD_Connection *conn, bool tls, ps_code code, const char *message,
                  const char *allow_origin)
{
    if (tls)
        return false;
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!info)
        return false;
    char head[1024];
    ps_reply error;
    ps_reply_init(&error, 512);
    ps_reply_from_code(&error, code, message); /* as every error is answered */
    unsigned status = error.status;
    char body[512];
    int body_len = snprintf(body, sizeof body, "%s", error.body.data ? error.body.data : "");
    ps_reply_free(&error);
    if (body_len <= 0 || (size_t)body_len >= sizeof body)
        return false;
    char cors[256] = "";
    if (allow_origin)
        snprintf(cors, sizeof cors, "Access-Control-Allow-Origin: %s\r\n", allow_origin);
    int head_len = snprintf(head, sizeof head,
                            "HTTP/1.1 %u %s\r\nConnection: close\r\n"
                            "Content-Type: application/json; charset=utf-8\r\n"
                            "Cache-Control: no-store\r\n%sContent-Length: %d\r\n\r\n%s",
                            status, MHD_get_reason_phrase_for(status), cors, body_len, body);
    if (head_len < 0 || (size_t)head_len >= sizeof head)
        return false;
    /* a few hundred bytes into an idle socket's empty send buffer */
    return send(info->connect_fd, head, (size_t)head_len, MSG_NOSIGNAL | MSG_DONTWAIT) == head_len;
}
