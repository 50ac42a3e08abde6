/* A WebSocket connection's framing by wslay; see ws_session.h. */
#include "server/ws_session.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <wslay/wslay.h>

struct ps_ws_session {
    wslay_event_context_ptr ctx;
    ps_ws_io io;
    uint64_t frames_heard;
    bool failed;  /* an I/O error or end of stream: nothing more to do */
    bool read_over; /* the peer broke the protocol: read no more, but
                     * write what is queued (wslay queued a close) */
    bool closing; /* we queued a close */
};

static ssize_t on_recv(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags,
                       void *user)
{
    ps_ws_session *s = user;
    ssize_t n = s->io.recv(s->io.ctx, buf, len);
    if (n > 0)
        return n;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
    } else {
        s->failed = true; /* 0: the peer closed its side */
        wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
    }
    return -1;
}

static ssize_t on_send(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags,
                       void *user)
{
    ps_ws_session *s = user;
    ssize_t n = s->io.send(s->io.ctx, data, len);
    if (n >= 0)
        return n;
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
    } else {
        s->failed = true;
        wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
    }
    return -1;
}

static void on_frame_start(wslay_event_context_ptr ctx,
                           const struct wslay_event_on_frame_recv_start_arg *arg, void *user)
{
    ((ps_ws_session *)user)->frames_heard++;
}

/* Whole messages: wslay has already answered pings and closes; text and
 * binary messages from a client mean nothing here and are dropped. */
static void on_msg(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *arg,
                   void *user)
{
}

ps_ws_session *ps_ws_session_new(const ps_ws_io *io)
{
    ps_ws_session *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->io = *io;
    struct wslay_event_callbacks cb = {
        .recv_callback = on_recv,
        .send_callback = on_send,
        .on_frame_recv_start_callback = on_frame_start,
        .on_msg_recv_callback = on_msg,
    };
    if (wslay_event_context_server_init(&s->ctx, &cb, s) != 0) {
        free(s);
        return NULL;
    }
    wslay_event_config_set_max_recv_msg_length(s->ctx, PS_WS_MAX_CLIENT_MESSAGE);
    return s;
}

void ps_ws_session_free(ps_ws_session *s)
{
    if (!s)
        return;
    wslay_event_context_free(s->ctx);
    free(s);
}

bool ps_ws_session_read(ps_ws_session *s)
{
    if (s->failed)
        return false;
    if (s->read_over || !wslay_event_want_read(s->ctx))
        return true;
    /* Not an I/O failure (those set s->failed in on_recv): a frame wslay
     * cannot take. wslay has queued a close; it goes out, then the end. */
    if (wslay_event_recv(s->ctx) != 0)
        s->read_over = true;
    return !s->failed;
}

bool ps_ws_session_write(ps_ws_session *s)
{
    if (s->failed)
        return false;
    if (!wslay_event_want_write(s->ctx))
        return true;
    if (wslay_event_send(s->ctx) != 0)
        s->failed = true;
    return !s->failed;
}

bool ps_ws_session_send_text(ps_ws_session *s, const char *text, size_t len)
{
    struct wslay_event_msg m = {
        .opcode = WSLAY_TEXT_FRAME, .msg = (const uint8_t *)text, .msg_length = len};
    return !s->failed && wslay_event_queue_msg(s->ctx, &m) == 0;
}

bool ps_ws_session_ping(ps_ws_session *s)
{
    struct wslay_event_msg m = {.opcode = WSLAY_PING, .msg = NULL, .msg_length = 0};
    return !s->failed && wslay_event_queue_msg(s->ctx, &m) == 0;
}

bool ps_ws_session_close(ps_ws_session *s, uint16_t code, const char *reason)
{
    if (s->failed || s->closing)
        return false;
    s->closing = true;
    size_t n = reason ? strlen(reason) : 0;
    if (n > 122)
        n = 122;
    return wslay_event_queue_close(s->ctx, code, (const uint8_t *)reason, n) == 0;
}

bool ps_ws_session_wants_read(const ps_ws_session *s)
{
    return !s->failed && !s->read_over && wslay_event_want_read(s->ctx);
}

bool ps_ws_session_wants_write(const ps_ws_session *s)
{
    return !s->failed && wslay_event_want_write(s->ctx);
}

size_t ps_ws_session_queued_bytes(const ps_ws_session *s)
{
    return wslay_event_get_queued_msg_length(s->ctx);
}

uint64_t ps_ws_session_frames_heard(const ps_ws_session *s)
{
    return s->frames_heard;
}

bool ps_ws_session_closing(const ps_ws_session *s)
{
    return s->closing || wslay_event_get_close_sent(s->ctx) ||
           wslay_event_get_close_received(s->ctx);
}

bool ps_ws_session_close_sent(const ps_ws_session *s)
{
    return wslay_event_get_close_sent(s->ctx);
}

bool ps_ws_session_finished(const ps_ws_session *s)
{
    return s->failed || (!ps_ws_session_wants_read(s) && !wslay_event_want_write(s->ctx));
}
