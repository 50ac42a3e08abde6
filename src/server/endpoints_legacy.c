/*
 * HTTP handlers of the seed-compatible endpoints: validate the whole body,
 * call the operation in sync_legacy.c, shape the answer. Validation happens
 * before any store access, so a rejected request changes nothing.
 */
#include "core/json_parse.h"
#include "server/events.h"
#include "server/health.h"
#include "server/legacy_body.h"
#include "server/router.h"
#include "server/ws.h"
#include "core/timestamp.h"

#include <stdio.h>

static void notify_change(void *cls, const char *user, const char *device, int64_t seq_before,
                          int64_t seq_after)
{
    const ps_live *live = cls;
    ps_events_notify(live->events, user, device);
    ps_ws_chats_changed(live->ws, live->store, user, device, seq_before, seq_after);
}

ps_sync_ctx ps__sync_ctx(const ps_handler_env *env)
{
    return (ps_sync_ctx){
        .store = env->store,
        .user = env->user,
        .now_ms = ps__time_now_ms(),
        .max_skew_ms = env->max_skew_ms,
        .max_response_bytes = env->max_response_bytes,
        .quota_bytes = env->quota_bytes,
        .limits = env->limits,
        .client = env->user_agent,
        .tombstone_retention_ms = env->tombstone_retention_ms,
        .changed = env->live ? notify_change : NULL,
        .changed_cls = (void *)env->live,
    };
}

/*
 * Parses a /sync or /pushChats body for ps_legacy_sync. The body came in
 * chat by chat (legacy_body.h): what is left of it, the envelope, is parsed
 * here whole with "chats" emptied, and each chat later only if its bytes
 * are news (sync_legacy.c).
 */
static ps_code parse_sync_body(const ps_handler_env *env, json_object **root, ps_chat_source *src,
                               ps_error *err)
{
    ps_legacy_body *body = env->legacy_body;
    ps_code rc = ps_legacy_body_finish(body, err);
    if (rc != PS_OK)
        return rc;
    size_t len;
    const char *text = ps_legacy_body_envelope(body, &len);
    if ((rc = ps__json_parse(text, len, PS_JSON_MAX_DEPTH, root, err)) != PS_OK ||
        (rc = ps__validate_sync_request(*root, env->limits, err)) != PS_OK) {
        /* the chats are pre-checked only when used (legacy_body.h): a bad
         * one is still the answer, as a pre-check of the whole body finds
         * it before a parse of the rest */
        ps_error chat_err;
        ps_code chat_rc = ps_legacy_body_check_chats(body, &chat_err);
        if (chat_rc == PS_OK || chat_rc == PS_ERR_IO || chat_rc == PS_ERR_NOMEM)
            return rc;
        if (err)
            *err = chat_err;
        return chat_rc;
    }
    ps_legacy_body_chats(body, src);
    return PS_OK;
}

/*
 * Whether a /sync body is the Polyglot app's page-load call
 * (browserMigrations.runClientMigrations, docs/polyglot.md): {chats} of its
 * raw IndexedDB records, which carry the app's own record clock
 * lastMutationLamport {lamport, deviceId} and no updatedAtLamport, with no
 * deviceId, clientClock or deletions. No seed client sends that field. The
 * app cannot store what such an answer returns (it throws on the first
 * entry), so it is merged like any legacy body but answered with nothing
 * to apply; the app's real sync follows at once and gets it all.
 */
static bool is_polyglot_page_load(json_object *root, const ps_chat_source *src)
{
    static const char *const envelope[] = {"deviceId", "clientClock", "deleted", "deletions",
                                           "deletionRecords"};
    for (size_t k = 0; k < sizeof envelope / sizeof *envelope; k++)
        if (json_object_object_get_ex(root, envelope[k], NULL))
            return false;
    if (src->count == 0)
        return false; /* {"chats": []} is also a seed client's first sync */
    json_object *first = NULL;
    ps_error err;
    const char *text;
    size_t len;
    if (ps_chat_source_check(src, 0, &err) != PS_OK ||
        ps_chat_source_bytes(src, 0, &text, &len, &err) != PS_OK ||
        ps__json_parse_trusted(text, len, &first, &err) != PS_OK)
        return false;
    json_object *clock;
    bool app = json_object_is_type(first, json_type_object) &&
               json_object_object_get_ex(first, "lastMutationLamport", &clock) &&
               json_object_is_type(clock, json_type_object) &&
               !json_object_object_get_ex(first, "updatedAtLamport", NULL);
    json_object_put(first);
    return app;
}

/* A legacy answer as the reply's streamed body (legacy_answer.h). */
static ps_code answer_next(void *ctx, ps_dynbuf *out, bool *done, ps_error *err)
{
    return ps_legacy_answer_next(ctx, out, done, err);
}

static void answer_free(void *ctx)
{
    ps_legacy_answer_free(ctx);
}

static void sync_or_push(const ps_handler_env *env, ps_reply *reply, bool answer)
{
    ps_error err;
    ps_error_clear(&err);
    ps_sync_ctx ctx = ps__sync_ctx(env);
    json_object *root = NULL;
    ps_chat_source src = {0};
    ps_code rc = parse_sync_body(env, &root, &src, &err);
    /* its own answer carries the change: its live channel need not ring */
    json_object *device = json_object_object_get(root, "deviceId");
    if (json_object_is_type(device, json_type_string))
        ctx.device = json_object_get_string(device);
    bool page_load = rc == PS_OK && answer && is_polyglot_page_load(root, &src);
    ps_legacy_answer *streamed = NULL;
    if (rc != PS_OK ||
        ps_legacy_sync(&ctx, root, &src, answer && !page_load ? &streamed : NULL, &err) != PS_OK)
        ps_reply_from_error(reply, &err);
    else if (streamed && ps_legacy_answer_take_whole(streamed, &reply->body))
        ps_legacy_answer_free(streamed); /* small: sent as it was committed */
    else if (streamed)
        reply->stream =
            (ps_reply_stream){.next = answer_next, .free = answer_free, .ctx = streamed};
    else if (page_load &&
             ps__dynbuf_adds(&reply->body, "{\"missing\":[],\"deletions\":[]}") != PS_OK)
        ps_reply_from_code(reply, PS_ERR_INTERNAL, "could not build the answer");
    else if (!answer && !page_load && ps__dynbuf_adds(&reply->body, "{\"ok\":true}") != PS_OK)
        ps_reply_from_code(reply, PS_ERR_INTERNAL, "could not build the answer");
    json_object_put(root);
}

void ps_handle_sync(const ps_handler_env *env, json_object *body, ps_reply *reply)
{
    sync_or_push(env, reply, true);
}

void ps_handle_push_chats(const ps_handler_env *env, json_object *body, ps_reply *reply)
{
    sync_or_push(env, reply, false);
}

void ps_handle_fetch_chats(const ps_handler_env *env, json_object *body, ps_reply *reply)
{
    ps_error err;
    ps_error_clear(&err);
    ps_sync_ctx ctx = ps__sync_ctx(env);
    ps_legacy_answer *streamed = NULL;
    if (ps_legacy_fetch(&ctx, &streamed, &err) != PS_OK)
        ps_reply_from_error(reply, &err);
    else
        reply->stream =
            (ps_reply_stream){.next = answer_next, .free = answer_free, .ctx = streamed};
}

static void delete_ids(const ps_handler_env *env, json_object *body, ps_reply *reply, bool many)
{
    ps_error err;
    ps_error_clear(&err);
    ps_sync_ctx ctx = ps__sync_ctx(env);
    json_object *ids = NULL;
    size_t deleted = 0;
    if (ps__validate_delete_request(body, many, env->limits, &err) != PS_OK)
        goto fail;
    if (many) {
        ids = json_object_get(json_object_object_get(body, "chatIds"));
    } else {
        ids = json_object_new_array_ext(1);
        if (!ids) {
            ps_error_set(&err, PS_ERR_NOMEM, -1, "", "out of memory");
            goto fail;
        }
        json_object_array_add(ids, json_object_get(json_object_object_get(body, "chatId")));
    }
    if (ps_legacy_delete(&ctx, ids, &deleted, &err) != PS_OK)
        goto fail;
    json_object_put(ids);
    ps_code added =
        many ? ps__dynbuf_addf(&reply->body, "{\"ok\":true,\"deletedCount\":%zu}", deleted)
             : ps__dynbuf_addf(&reply->body, "{\"ok\":true,\"deleted\":%s}",
                               deleted ? "true" : "false");
    if (added != PS_OK) {
        /* deleted, but no memory to say so: the client retries, and
         * deleting again changes nothing */
        ps_error_set(&err, PS_ERR_NOMEM, -1, "", "out of memory writing the answer");
        ps_reply_from_error(reply, &err);
    }
    return;
fail:
    json_object_put(ids);
    ps_reply_from_error(reply, &err);
}

void ps_handle_delete_chat(const ps_handler_env *env, json_object *body, ps_reply *reply)
{
    delete_ids(env, body, reply, false);
}

void ps_handle_delete_chats(const ps_handler_env *env, json_object *body, ps_reply *reply)
{
    delete_ids(env, body, reply, true);
}

/* What a client may rely on this server to do (docs/protocol.md, GET
 * /health): it then leaves out the workarounds for servers that do not. */
static ps_code add_capabilities(const ps_handler_env *env, ps_dynbuf *out)
{
    return ps__dynbuf_addf(out,
                           ",\"capabilities\":[\"lostWritesResent\",\"firstPullNamedDeletions\"],"
                           "\"maxChanges\":%zu}",
                           env->limits->max_chats);
}

void ps_handle_health(const ps_handler_env *env, json_object *body, ps_reply *reply)
{
    ps_error err;
    ps_error_clear(&err);
    ps_store_stats stats = {0};
    char reason[256];
    if (env->health && !ps_health_ok(env->health, reason, sizeof reason)) {
        ps_reply_store_unhealthy(reply, reason);
        return;
    }
    ps_code rc = ps_store_begin(env->store, false, &err);
    if (rc == PS_OK) {
        rc = env->store->ops->stats(env->store, &stats, &err);
        if (rc == PS_OK)
            rc = ps_store_commit(env->store, &err);
        else
            ps_store_rollback(env->store);
    }
    if (rc != PS_OK) {
        /* Health must say the store is failing, not just fail. */
        ps_reply_store_unhealthy(reply, "the store cannot be read");
        return;
    }
    int64_t now = ps__time_now_ms();
    if (env->auth) { /* with users, counts and times would tell about them */
        if (ps__dynbuf_addf(&reply->body,
                            "{\"status\":\"healthy\",\"uptime\":%.3f,\"version\":\"%s\","
                            "\"store\":\"%s\"",
                            (double)(now - env->started_ms) / 1000.0, PS_VERSION,
                            env->store->ops->name) != PS_OK ||
            add_capabilities(env, &reply->body) != PS_OK)
            ps_reply_from_code(reply, PS_ERR_NOMEM, "answering /health");
        return;
    }
    char last[40] = "null";
    if (stats.last_sync_ms) {
        char iso[32];
        ps__time_format_iso(stats.last_sync_ms, iso);
        snprintf(last, sizeof last, "\"%s\"", iso);
    }
    if (ps__dynbuf_addf(&reply->body,
                        "{\"status\":\"healthy\",\"chatsCount\":%lld,\"lastSync\":%s,"
                        "\"uptime\":%.3f,\"version\":\"%s\",\"store\":\"%s\"",
                        (long long)stats.live_chats, last, (double)(now - env->started_ms) / 1000.0,
                        PS_VERSION, env->store->ops->name) != PS_OK ||
        add_capabilities(env, &reply->body) != PS_OK)
        ps_reply_from_code(reply, PS_ERR_NOMEM, "answering /health");
}
