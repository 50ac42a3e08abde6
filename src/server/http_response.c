/* ps_reply -> MHD response; see http_response.h. */
#include "server/http_response.h"
#include "server/events.h"
#include "server/answer_coding.h"
#include "server/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STREAM_BLOCK (256 * 1024)
#define STREAM_PIECE_LIMIT (64u * 1024 * 1024) /* one piece; a chat is far smaller */

static void add_headers(struct MHD_Response *resp, const ps_reply *reply, ps_coding coding)
{
    if (reply->status != 204 && !reply->events) {
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
                                reply->content_type ? reply->content_type
                                                    : "application/json; charset=utf-8");
        MHD_add_response_header(resp, MHD_HTTP_HEADER_VARY, "Accept-Encoding");
    }
    if (coding != PS_CODING_IDENTITY)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_ENCODING, ps_coding_name(coding));
    /* CORS (docs/security.md): never Allow-Credentials; bearer tokens are
     * sent by scripts explicitly, not by the browser. */
    if (reply->allow_origin) {
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ACCESS_CONTROL_ALLOW_ORIGIN,
                                reply->allow_origin);
        MHD_add_response_header(resp, "Access-Control-Expose-Headers",
                                "Retry-After, WWW-Authenticate, X-Request-Id");
        if (strcmp(reply->allow_origin, "*") != 0)
            MHD_add_response_header(resp, MHD_HTTP_HEADER_VARY, "Origin");
        if (reply->preflight) {
            MHD_add_response_header(resp, MHD_HTTP_HEADER_ACCESS_CONTROL_ALLOW_METHODS,
                                    "GET, HEAD, POST, OPTIONS");
            MHD_add_response_header(resp, MHD_HTTP_HEADER_ACCESS_CONTROL_ALLOW_HEADERS,
                                    "Content-Type, Authorization, Content-Encoding, "
                                    "Accept-Encoding");
            MHD_add_response_header(resp, MHD_HTTP_HEADER_ACCESS_CONTROL_MAX_AGE, "600");
        }
    }
    if (reply->preflight)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, "GET, HEAD, POST, OPTIONS");
    if (reply->hsts)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_STRICT_TRANSPORT_SECURITY,
                                "max-age=31536000");
    if (reply->www_authenticate)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE, reply->www_authenticate);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    if (reply->allow[0])
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, reply->allow);
    if (reply->retry_after_s) {
        char secs[16];
        snprintf(secs, sizeof secs, "%u", reply->retry_after_s);
        MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, secs);
    }
    if (reply->close_connection)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
    if (reply->request_id)
        MHD_add_response_header(resp, "X-Request-Id", reply->request_id);
}

static enum MHD_Result queue(struct MHD_Connection *conn, ps_reply *reply,
                             struct MHD_Response *resp, ps_coding coding)
{
    if (!resp)
        return MHD_NO;
    add_headers(resp, reply, coding);
    enum MHD_Result r = MHD_queue_response(conn, reply->status, resp);
    MHD_destroy_response(resp);
    return r;
}

/* ---- a streamed body ---- */

typedef struct stream_state {
    ps_reply_stream src;
    ps_dynbuf pending; /* produced before the headers went out */
    ps_dynbuf piece;   /* the latest piece, uncompressed */
    ps_dynbuf out;     /* what goes to the socket next */
    size_t off;
    uint64_t *sent_bytes; /* the request's counter (ps_reply.sent_bytes) */
    bool finished;
    ps_encoder encoder; /* identity: the pieces go out as they are */
} stream_state;

static void stream_free(void *cls)
{
    stream_state *st = cls;
    if (st->src.free)
        st->src.free(st->src.ctx);
    ps__dynbuf_free(&st->pending);
    ps__dynbuf_free(&st->piece);
    ps__dynbuf_free(&st->out);
    ps_encoder_free(&st->encoder);
    free(st);
}

/* Fills st->out with the next bytes for the socket. */
static ps_code stream_refill(stream_state *st)
{
    bool done = false;
    ps_code rc = PS_OK;
    ps__dynbuf_reset(&st->out);
    st->off = 0;
    ps_dynbuf *piece = &st->piece;
    if (st->pending.len) {
        piece = &st->pending;
    } else {
        ps_error err;
        ps_error_clear(&err);
        ps__dynbuf_reset(&st->piece);
        rc = st->src.next(st->src.ctx, &st->piece, &done, &err);
        if (rc != PS_OK) {
            /* the status line is gone: all that is left is to cut the body */
            ps_log_event(PS_LOG_ERROR, "stream_failed", "streamed answer failed: %s", err.message);
            return rc;
        }
    }
    if (st->encoder.coding != PS_CODING_IDENTITY) {
        rc = ps_encoder_feed(&st->encoder, piece->data, piece->len, done, &st->out);
    } else { /* the piece goes out as it is: swapped in, not copied */
        ps_dynbuf sent = st->out;
        st->out = *piece;
        *piece = sent;
    }
    ps__dynbuf_reset(piece);
    st->finished = done;
    return rc;
}

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    stream_state *st = cls;
    while (st->off == st->out.len) {
        if (st->finished)
            return MHD_CONTENT_READER_END_OF_STREAM;
        if (stream_refill(st) != PS_OK)
            return MHD_CONTENT_READER_END_WITH_ERROR;
    }
    size_t n = st->out.len - st->off;
    if (n > max)
        n = max;
    memcpy(buf, st->out.data + st->off, n);
    st->off += n;
    if (st->sent_bytes)
        *st->sent_bytes += n;
    return (ssize_t)n;
}

/* Produces the start of a streamed body: if it all fits under the
 * compression threshold it becomes a plain body, else a stream with what
 * was made. */
static enum MHD_Result send_stream(struct MHD_Connection *conn, ps_reply *reply, ps_coding coding)
{
    stream_state *st = calloc(1, sizeof *st);
    if (!st)
        return MHD_NO;
    st->src = reply->stream;
    st->sent_bytes = reply->sent_bytes;
    reply->stream = (ps_reply_stream){0};
    ps__dynbuf_init(&st->pending, STREAM_PIECE_LIMIT);
    ps__dynbuf_init(&st->piece, STREAM_PIECE_LIMIT);
    ps__dynbuf_init(&st->out, STREAM_PIECE_LIMIT + 1024);
    bool done = false;
    ps_error err;
    ps_error_clear(&err);
    ps_code rc = PS_OK;
    while (rc == PS_OK && !done && st->pending.len <= PS_COMPRESS_MIN_BYTES)
        rc = st->src.next(st->src.ctx, &st->pending, &done, &err);
    if (rc != PS_OK || done) {
        if (rc == PS_OK &&
            (rc = ps__dynbuf_add(&reply->body, st->pending.data, st->pending.len)) != PS_OK)
            ps_error_set(&err, rc, -1, "", "out of memory writing the answer");
        if (rc != PS_OK)
            ps_reply_from_error(reply, &err);
        stream_free(st);
        return ps__send_reply(conn, reply, coding);
    }
    if (ps_encoder_init(&st->encoder, coding) != PS_OK) { /* sent as it is then */
        ps_encoder_free(&st->encoder);
        (void)ps_encoder_init(&st->encoder, PS_CODING_IDENTITY);
    }
    struct MHD_Response *resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, STREAM_BLOCK,
                                                                  stream_read, st, stream_free);
    if (!resp) {
        stream_free(st);
        return MHD_NO;
    }
    return queue(conn, reply, resp, st->encoder.coding);
}

enum MHD_Result ps__send_reply(struct MHD_Connection *conn, ps_reply *reply, ps_coding coding)
{
    if (reply->events) {
        struct MHD_Response *resp = ps_events_response(reply->events, conn, reply->events_user);
        if (resp)
            return queue(conn, reply, resp, PS_CODING_IDENTITY);
        reply->events = NULL;
        reply->retry_after_s = 5;
        ps_reply_from_code(reply, PS_ERR_OVERLOADED, "too many live streams; retry later");
    }
    if (reply->stream.ctx)
        return send_stream(conn, reply, coding);
    ps_coding sent_as = PS_CODING_IDENTITY;
    if (coding != PS_CODING_IDENTITY && reply->body.len > PS_COMPRESS_MIN_BYTES) {
        ps_encoder e;
        ps_dynbuf packed;
        ps__dynbuf_init(&packed, reply->body.limit + 1024);
        if (ps_encoder_init(&e, coding) == PS_OK &&
            ps_encoder_feed(&e, reply->body.data, reply->body.len, true, &packed) == PS_OK) {
            ps__dynbuf_free(&reply->body);
            reply->body = packed;
            sent_as = coding;
        }
        ps_encoder_free(&e);
        if (sent_as == PS_CODING_IDENTITY) /* could not compress: send it as it is */
            ps__dynbuf_free(&packed);
    }
    size_t len = 0;
    char *body = ps__dynbuf_take(&reply->body, &len);
    if (reply->sent_bytes)
        *reply->sent_bytes += len;
    struct MHD_Response *resp =
        body ? MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE)
             : MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
    if (!resp)
        free(body);
    return queue(conn, reply, resp, sent_as);
}
