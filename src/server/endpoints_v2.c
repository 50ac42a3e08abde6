/*
 * HTTP handler of /v2/sync: validate the whole body, run the push, and hand
 * the pull to the server as a streamed body (see sync_v2.h).
 */
#include "core/timestamp.h"
#include "server/devices.h"
#include "server/router.h"
#include "server/sync_v2.h"

static ps_code pull_next(void *ctx, ps_dynbuf *out, bool *done, ps_error *err)
{
    return ps_v2_pull_next(ctx, out, done, err);
}

static void pull_free(void *ctx)
{
    ps_v2_pull_free(ctx);
}

void ps_handle_v2_sync(const ps_handler_env *env, json_object *body, ps_reply *reply)
{
    ps_error err;
    ps_error_clear(&err);
    ps_sync_ctx ctx = ps__sync_ctx(env);
    ps_v2_pull *pull = NULL;
    int64_t acked_seq = -1;
    if (ps__validate_v2_request(body, env->limits, &err) != PS_OK ||
        ps_devices_v2_ack(body, &acked_seq, &err) != PS_OK ||
        ps_v2_sync(&ctx, body, &pull, &err) != PS_OK) {
        ps_reply_from_error(reply, &err);
        return;
    }
    if (ps_devices_note_v2(env->store, env->user, body, env->user_agent, acked_seq, ctx.now_ms,
                           env->tombstone_retention_ms, &err) != PS_OK) {
        ps_v2_pull_free(pull);
        ps_reply_from_error(reply, &err);
        return;
    }
    if (ps_v2_pull_whole(pull, &reply->body)) { /* a plain body: no stream to set up */
        ps_v2_pull_free(pull);
        return;
    }
    reply->stream = (ps_reply_stream){.next = pull_next, .free = pull_free, .ctx = pull};
}

void ps_handle_v2_events(const ps_handler_env *env, json_object *body, ps_reply *reply)
{
    reply->events = env->events;
    reply->events_user = env->user;
}
