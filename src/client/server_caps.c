/*
 * What the server says it does: GET /health's `capabilities` and
 * `maxChanges` (docs/protocol.md). The client carries workarounds for
 * servers that do less than polysyncd: the verification pull
 * (verify_pull.c) for a server that does not re-announce the winner of a
 * write that lost, and a guess at how many probes a request may carry
 * (v2_sync.c). It asks only when one of them is about to run, once per
 * sync, and a handle keeps the answer for its later syncs with the same
 * server (a `watch`); a server that says nothing (an older polysyncd,
 * another implementation, a /health that fails or is not there) gets
 * every workaround.
 */
#include "client/sync_run.h"
#include "core/json_parse.h"
#include "core/validate.h"

#include <stdlib.h>
#include <string.h>

static void read_caps(json_object *doc, ps_server_caps *caps)
{
    json_object *list, *v;
    if (json_object_object_get_ex(doc, "capabilities", &list) &&
        json_object_is_type(list, json_type_array)) {
        caps->said = true;
        size_t n = json_object_array_length(list);
        for (size_t i = 0; i < n; i++) {
            const char *name = json_object_get_string(json_object_array_get_idx(list, i));
            if (!name)
                continue;
            if (strcmp(name, "lostWritesResent") == 0)
                caps->lost_writes_resent = true;
            else if (strcmp(name, "firstPullNamedDeletions") == 0)
                caps->named_deletions = true;
        }
    }
    if (json_object_object_get_ex(doc, "maxChanges", &v) && ps__valid_counter(v) &&
        json_object_get_int64(v) > 0)
        caps->max_changes = (size_t)json_object_get_int64(v);
}

const ps_server_caps *ps__server_caps(sync_run *r)
{
    ps_client *c = r->c;
    ps_server_caps *caps = &r->caps;
    if (caps->asked)
        return caps;
    if (c->caps_server && strcmp(c->caps_server, c->server) == 0) {
        *caps = c->caps; /* an earlier sync of this handle asked */
        return caps;
    }
    caps->asked = true;
    ps_http_answer a;
    ps_error err; /* a failure only means "nothing said" */
    ps__http_answer_init(&a);
    int status = c->last_status;
    json_object *doc = NULL;
    if (ps__http_get_once(c, "/health", r->st, &a, &err) == PS_OK && a.status == 200 &&
        ps__json_parse(a.body.data ? a.body.data : "", a.body.len, PS_JSON_MAX_DEPTH, &doc, &err) ==
            PS_OK &&
        json_object_is_type(doc, json_type_object)) {
        read_caps(doc, caps);
        /* kept for the next syncs of this handle; a failure is not, so a
         * server that was briefly unwell is asked again next time */
        char *server = strdup(c->server);
        if (server) {
            free(c->caps_server);
            c->caps_server = server;
            c->caps = *caps;
        }
    }
    json_object_put(doc);
    ps__http_answer_free(&a);
    c->last_status = status; /* the sync's status, not this question's */
    return caps;
}
