/*
 * The body of a POST /v2/sync request (docs/protocol.md), built in one
 * place: the device, the cursor, the client's name and version, the page
 * limit, the log entries as they were stored (each already a v2 change)
 * and, on a pull from a null cursor, the probes that name the live local
 * chats.
 */
#include "client/sync_run.h"

#include <string.h>

/*
 * A pull from a null cursor hears of the deletion of a chat only if the
 * request names it (docs/protocol.md). So such a request also names the
 * live local chats it does not already carry (ps__uncarried_chats), each
 * as a change that writes nothing newer than anything: {chatId, clock: 0,
 * at: 0} is an existence write older than every other write, so it never
 * revives or alters a chat the server has (and every local chat reached the
 * server before, as a log entry or in the snapshot).
 */
ps_code ps__uncarried_chats(ps_client *c, const ps_change_row *rows, size_t n, json_object **ids,
                            ps_error *err)
{
    json_object *live = NULL, *carried = json_object_new_object();
    *ids = json_object_new_array();
    if (!carried || !*ids) {
        json_object_put(carried);
        json_object_put(*ids);
        *ids = NULL;
        return ps__sync_nomem(err);
    }
    ps_code rc = PS_OK;
    for (size_t i = 0; i < n; i++)
        ps__json_set_null(&rc, carried, rows[i].chat_id);
    if (rc != PS_OK)
        rc = ps__sync_nomem(err); /* a carried chat would be probed too */
    else
        rc = ps__lstore_chat_ids(c->store, true, &live, err);
    size_t count = rc == PS_OK ? json_object_array_length(live) : 0;
    for (size_t i = 0; i < count && rc == PS_OK; i++) {
        json_object *id = json_object_array_get_idx(live, i);
        if (!json_object_object_get_ex(carried, json_object_get_string(id), NULL)) {
            ps__json_push(&rc, *ids, json_object_get(id)); /* released if not kept */
            if (rc != PS_OK)
                rc = ps__sync_nomem(err);
        }
    }
    json_object_put(live);
    json_object_put(carried);
    if (rc != PS_OK) {
        json_object_put(*ids);
        *ids = NULL;
    }
    return rc;
}

static ps_code add_probes(json_object *probes, ps_dynbuf *out, bool first)
{
    size_t count = json_object_array_length(probes);
    ps_code rc = PS_OK;
    for (size_t i = 0; i < count && rc == PS_OK; i++) {
        rc = ps__dynbuf_adds(out, first && i == 0 ? "{\"chatId\":" : ",{\"chatId\":");
        if (rc == PS_OK)
            rc = ps__dynbuf_add_json_string(
                out, json_object_get_string(json_object_array_get_idx(probes, i)));
        if (rc == PS_OK)
            rc = ps__dynbuf_adds(out, ",\"clock\":0,\"at\":0}");
    }
    return rc;
}

/* What every /v2/sync request this client sends starts with, up to its
 * limit: `{"deviceId":…,"cursor":…[,"ack":…][,"run":…],"client":…,"limit":N`.
 * A NULL cursor or ack is JSON null; `with_ack` false leaves "ack" out (the
 * cursor is then the acknowledgement itself); an empty run leaves it out. */
static ps_code add_request_head(ps_dynbuf *out, const char *device, const char *cursor,
                                bool with_ack, const char *ack, const char *run, int limit)
{
    ps_code rc = ps__dynbuf_adds(out, "{\"deviceId\":");
    if (rc == PS_OK)
        rc = ps__dynbuf_add_json_string(out, device);
    if (rc == PS_OK)
        rc = ps__dynbuf_adds(out, ",\"cursor\":");
    if (rc == PS_OK)
        rc = cursor ? ps__dynbuf_add_json_string(out, cursor) : ps__dynbuf_adds(out, "null");
    if (rc == PS_OK && with_ack) {
        rc = ps__dynbuf_adds(out, ",\"ack\":");
        if (rc == PS_OK)
            rc = ack ? ps__dynbuf_add_json_string(out, ack) : ps__dynbuf_adds(out, "null");
    }
    if (rc == PS_OK && run[0]) {
        rc = ps__dynbuf_adds(out, ",\"run\":");
        if (rc == PS_OK)
            rc = ps__dynbuf_add_json_string(out, run);
    }
    if (rc == PS_OK)
        rc = ps__dynbuf_adds(out, ",\"client\":\"" PS_CLIENT_NAME "\"");
    if (rc == PS_OK)
        rc = ps__dynbuf_addf(out, ",\"limit\":%d", limit);
    return rc;
}

ps_code ps__build_v2_request(ps_client *c, const char *cursor, const char *run, int limit,
                             const ps_change_row *rows, size_t n, json_object *probes,
                             ps_dynbuf *out, ps_error *err)
{
    /* no "ack": the cursor sent is the one saved with the last answer
     * applied (one transaction), so it is the acknowledgement itself */
    ps_code rc = add_request_head(out, c->device, cursor, false, NULL, run, limit);
    if (rc == PS_OK)
        rc = ps__dynbuf_adds(out, ",\"changes\":[");
    for (size_t i = 0; i < n && rc == PS_OK; i++) {
        if (i)
            rc = ps__dynbuf_adds(out, ",");
        if (rc == PS_OK)
            rc = ps__dynbuf_add(out, rows[i].body, rows[i].body_len);
    }
    if (rc != PS_OK)
        return ps__sync_nomem(err);
    if (probes && add_probes(probes, out, n == 0) != PS_OK)
        return ps__sync_nomem(err);
    if (ps__dynbuf_adds(out, "]}") != PS_OK)
        return ps__sync_nomem(err);
    return PS_OK;
}

ps_code ps__build_v2_page_request(ps_client *c, const char *cursor, const char *ack,
                                  const char *run, int limit, ps_dynbuf *out, ps_error *err)
{
    /* the answer `cursor` comes from is not saved yet: the last saved one
     * is what this device acknowledges (docs/protocol.md, "Devices") */
    ps_code rc = add_request_head(out, c->device, cursor, true, ack, run, limit);
    if (rc == PS_OK)
        rc = ps__dynbuf_adds(out, ",\"changes\":[]}");
    return rc == PS_OK ? PS_OK : ps__sync_nomem(err);
}

ps_code ps__build_v2_pull_request(const char *device, const char *cursor, int limit, ps_dynbuf *out,
                                  ps_error *err)
{
    ps_code rc = add_request_head(out, device, cursor, false, NULL, "", limit);
    if (rc == PS_OK)
        rc = ps__dynbuf_adds(out, "}");
    return rc == PS_OK ? PS_OK : ps__sync_nomem(err);
}
